/* Stack painting (see stack.h). */
#include "stack.h"

#define PATTERN 0xC0FFEE5Au

extern uint32_t __stack_limit; /* lowest stack address (linker script) */

__attribute__((noinline)) uint32_t tinyml_stack_measure(int (*fn)(void), int *result)
{
    uint32_t *sp;
    uint32_t *bottom = &__stack_limit;
    uint32_t *p;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    if ((uint32_t)((uintptr_t)sp - (uintptr_t)bottom) > TINYML_STACK_PAINT_BYTES) {
        bottom = sp - TINYML_STACK_PAINT_BYTES / 4u;
    }
    /* Everything below this function's frame is free: paint it. */
    for (p = bottom; p < sp; ++p) {
        *(volatile uint32_t *)p = PATTERN;
    }
    *result = fn();
    for (p = bottom; p < sp && *(volatile uint32_t *)p == PATTERN; ++p) {
    }
    if (p == bottom) {
        return TINYML_STACK_OVERFLOW;
    }
    return (uint32_t)((uintptr_t)sp - (uintptr_t)p);
}
