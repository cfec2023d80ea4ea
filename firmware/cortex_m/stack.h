/*
 * Stack high-water mark by painting: fill the unused stack with a pattern, run the code, find
 * the lowest word that no longer holds the pattern.
 *
 * tinyml_stack_measure() measures exactly what `fn` (and any interrupt taken meanwhile, such
 * as SysTick's) pushes below the caller's frame: the stack a model's tinyml_invoke() needs on
 * top of whatever the application already uses. The stack grows down from _estack to
 * __stack_limit, both defined by the linker script (sections.ld).
 */
#ifndef TINYML_STACK_H
#define TINYML_STACK_H

#include <stdint.h>

/* Painting covers at most this many bytes below the current stack pointer (painting the whole
 * of a 4 MB emulated RAM would cost millions of instructions). */
#ifndef TINYML_STACK_PAINT_BYTES
#define TINYML_STACK_PAINT_BYTES (256u * 1024u)
#endif

#define TINYML_STACK_OVERFLOW 0xFFFFFFFFu

/* Bytes of stack `fn` used; TINYML_STACK_OVERFLOW if it reached the end of the painted area.
 * `*result` receives fn's return value. */
uint32_t tinyml_stack_measure(int (*fn)(void), int *result);

#endif /* TINYML_STACK_H */
