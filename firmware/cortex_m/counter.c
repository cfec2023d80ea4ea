/* SysTick tick counter (see counter.h). */
#include "counter.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)

#define CSR_ENABLE (1u << 0)
#define CSR_TICKINT (1u << 1)
#define CSR_CLKSOURCE_CPU (1u << 2)
#define ICSR_PENDSTSET (1u << 26)

#define PERIOD ((uint64_t)TINYML_SYSTICK_RELOAD + 1u)

static volatile uint32_t wraps;

void SysTick_Handler(void)
{
    wraps = wraps + 1u;
}

void tinyml_counter_start(void)
{
    SYST_CSR = 0;
    SYST_RVR = TINYML_SYSTICK_RELOAD;
    SYST_CVR = 0; /* clears the current value; the next tick loads the reload value */
    wraps = 0;
    SYST_CSR = CSR_ENABLE | CSR_TICKINT | CSR_CLKSOURCE_CPU;
    /* Tick 0 is that first reload: from then on the value only reads 0 after a real 1 -> 0
     * transition, which is when SysTick pends its interrupt. */
    while (SYST_CVR == 0u) {
    }
}

uint64_t tinyml_counter_ticks(void)
{
    uint32_t high, value, pending, pending_after;
    /* A consistent snapshot: the wrap count and the pending flag must not change while the
     * value is read (if the interrupt ran, or a wrap was pended, in between: read again). */
    do {
        high = wraps;
        pending = SCB_ICSR & ICSR_PENDSTSET;
        value = SYST_CVR;
        pending_after = SCB_ICSR & ICSR_PENDSTSET;
    } while (high != wraps || pending != pending_after);
    /* The counter runs RELOAD, ..., 1, 0 and pends its interrupt on the step to 0; the next
     * tick reloads. So a wrap is counted while the value still reads 0 (that tick is the
     * period's last), and a wrap pended but not taken yet (interrupts masked) is added here. */
    if (pending) {
        high += 1u;
    }
    if (value == 0u) {
        return (uint64_t)high * PERIOD - 1u;
    }
    return (uint64_t)high * PERIOD + (uint64_t)(TINYML_SYSTICK_RELOAD - value);
}
