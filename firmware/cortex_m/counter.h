/*
 * Instruction counter for emulated cores: SysTick under QEMU's `-icount shift=0`.
 *
 * With `-icount shift=0` QEMU advances its virtual clock by exactly 1 ns per executed guest
 * instruction, and SysTick, clocked by the processor clock (CLKSOURCE = 1), counts that
 * virtual time: on the MPS2 machines (25 MHz) one tick is 40 ns, so 40 instructions. DWT's
 * CYCCNT is not modelled (it reads 0), hence SysTick. The counter is 24 bits wide and counts
 * down; the SysTick interrupt counts wraps so that tinyml_counter_ticks() is a monotonic
 * 64-bit tick count. On a real board the same code counts processor clock cycles.
 *
 * TINYML_SYSTICK_RELOAD (default 0xFFFFFF) sets the period; tests build with a small one to
 * exercise the wrap handling.
 */
#ifndef TINYML_COUNTER_H
#define TINYML_COUNTER_H

#include <stdint.h>

#ifndef TINYML_SYSTICK_RELOAD
#define TINYML_SYSTICK_RELOAD 0xFFFFFFu
#endif

/* Start SysTick from its reload value and enable its wrap interrupt. */
void tinyml_counter_start(void);
/* Ticks since tinyml_counter_start(): monotonic, wraps handled. */
uint64_t tinyml_counter_ticks(void);

#endif /* TINYML_COUNTER_H */
