/*
 * Start-up code for Cortex-M0+/M3/M4/M7/M33: vector table and reset handler.
 *
 * The reset handler copies .data from flash, zeroes .bss, turns the FPU on when the code is
 * built for one, and calls main(); main's return value ends the program (through semihosting
 * on an emulator, or a halt loop on a board). Faults never hang an emulated run: with
 * TINYML_SEMIHOSTING they print one line and exit with a distinct status.
 *
 * Only the 16 system exceptions are listed: the firmware uses no peripheral interrupt. On the
 * Armv8-M machine (mps2-an505) the core resets in the Secure state and runs everything there,
 * so no SAU or TrustZone set-up is needed.
 */
#include <stdint.h>

#include "semihost.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;

int main(void);
void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void SecureFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

typedef void (*vector_t)(void);

__attribute__((section(".isr_vector"), used)) const vector_t tinyml_vectors[16] = {
    (vector_t)(uintptr_t)&_estack,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    SecureFault_Handler,
    0,
    0,
    0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
};

static void stop(int32_t code)
{
#ifdef TINYML_SEMIHOSTING
    semihost_exit(code);
#else
    (void)code;
    for (;;) {
        __asm__ volatile("wfi");
    }
#endif
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata;
    uint32_t *dst;
#if defined(__ARM_FP)
    /* CPACR: full access to coprocessors 10 and 11 (the FPU), before any FP instruction. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    for (dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0;
    }
    stop(main());
}

void HardFault_Handler(void)
{
#ifdef TINYML_SEMIHOSTING
    semihost_write0("tinyml: hard fault\n");
#endif
    stop(3);
}

void Default_Handler(void)
{
#ifdef TINYML_SEMIHOSTING
    semihost_write0("tinyml: unexpected exception\n");
#endif
    stop(4);
}
