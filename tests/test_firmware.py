"""The Cortex-M firmware support on every QEMU machine: boot, SysTick instruction counter,
stack painting, fault handling, ELF size parsing.

Small test programs are compiled with each target's own flags, start-up code and linker
script, and run in QEMU under ``-icount shift=0``. The counter's oracle is arithmetic: a loop
of ``subs; bne`` runs exactly 2 instructions per iteration, and QEMU advances 1 ns per
instruction.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tinyml.errors import TinymlError
from tinyml.firmware import elf_sizes
from tinyml.paths import FIRMWARE_DIR
from tinyml.sim import qemu
from tinyml.targets import load_target

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or not qemu.available(),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (make system-deps)")

EMULATED = ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33"]
#: Instructions per SysTick tick found on QEMU 7.2's machines (1e9 / SysTick clock):
#: MPS2 boards 25 MHz, the AN505 (SSE-200) 20 MHz, the micro:bit's nRF51 16 MHz.
INSTRUCTIONS_PER_TICK = {"cortex-m0plus": 62.5, "cortex-m3": 40, "cortex-m4": 40,
                         "cortex-m7": 40, "cortex-m33": 50}

PROGRAM = r"""
#include <stdint.h>
#include "console.h"
#include "counter.h"
#include "stack.h"

static void report(const char *key, uint64_t value)
{
    char line[48];
    char *p = format_str(line, key);
    p = format_u64(p, value);
    format_str(p, "\n");
    console_write(line);
}

/* Exactly 2 * n instructions: subs + bne per iteration. */
__attribute__((noinline)) static void spin(uint32_t n)
{
    __asm__ volatile(".syntax unified\n1: subs %0, %0, #1\n\tbne 1b" : "+l"(n) :: "cc");
}

/* Touches DEPTH bytes of stack below its frame. */
#define DEPTH 1000
__attribute__((noinline)) static int deep(void)
{
    volatile uint8_t buffer[DEPTH];
    buffer[0] = 1;
    buffer[DEPTH - 1] = 2;
    return buffer[0] + buffer[DEPTH - 1] - 3;
}

int main(void)
{
    uint64_t start, ticks;
    int result = -1;
    uint32_t used = tinyml_stack_measure(deep, &result);
    report("stack ", used);
    report("result ", (uint64_t)result);
    tinyml_counter_start();
    start = tinyml_counter_ticks();
    spin(SPIN);
    ticks = tinyml_counter_ticks() - start;
    report("ticks ", ticks);
#ifdef FAULT
    *(volatile uint32_t *)0xFFFFFFF0u = 1u;  /* no memory there: a bus fault */
#endif
    return 0;
}
"""


def build(tmp_path: Path, target_name: str, *defines: str) -> Path:
    """The test program, linked like the target's firmware."""
    target = load_target(target_name)
    source = tmp_path / "program.c"
    source.write_text(PROGRAM)
    cortex = FIRMWARE_DIR / "cortex_m"
    elf = tmp_path / f"{target_name}.elf"
    command = [target.cc, *target.cflags, *target.ldflags, "-DTINYML_SEMIHOSTING",
               *defines, f"-I{cortex}", str(source),
               *(str(cortex / f) for f in ("startup.c", "semihost.c", "counter.c", "stack.c",
                                           "console.c")),
               f"-L{FIRMWARE_DIR / 'linker'}", f"-T{FIRMWARE_DIR / 'linker' / target.linker_script}",
               "-o", str(elf), "-lc", "-lgcc"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return elf


def run(elf: Path, target_name: str, tmp_path: Path) -> dict[str, int]:
    result = qemu.run_elf(elf, load_target(target_name), tmp_path, timeout=120)
    return qemu.console_values((result.stdout + result.stderr).decode())


@pytest.mark.parametrize("target_name", EMULATED)
def test_machine_boots_and_systick_counts_instructions(tmp_path, target_name):
    spins = 100_000
    values = run(build(tmp_path, target_name, f"-DSPIN={spins}"), target_name, tmp_path)
    per_tick = INSTRUCTIONS_PER_TICK[target_name]
    assert 1e9 / load_target(target_name).systick_hz == per_tick
    measured = values["ticks"] * per_tick
    # 2 instructions per iteration, plus the call and the counter reads: at most 2 ticks off.
    assert abs(measured - 2 * spins) <= 2 * per_tick + 30, (measured, 2 * spins)
    assert values["result"] == 0


@pytest.mark.parametrize("target_name", ["cortex-m4", "cortex-m0plus"])
def test_counter_handles_the_24_bit_wrap(tmp_path, target_name):
    """A 256-tick period wraps hundreds of times during the loop: a lost or doubled wrap
    would shift the count by a whole period (thousands of instructions); what remains is
    the SysTick handler's few instructions per wrap."""
    spins, reload = 2_000_000, 0xFF
    elf = build(tmp_path, target_name, f"-DSPIN={spins}", f"-DTINYML_SYSTICK_RELOAD={reload}")
    values = run(elf, target_name, tmp_path)
    per_tick = INSTRUCTIONS_PER_TICK[target_name]
    measured = values["ticks"] * per_tick
    wraps = values["ticks"] // (reload + 1)
    period = (reload + 1) * per_tick
    assert wraps > 100
    extra = measured - 2 * spins
    assert -2 * per_tick <= extra <= 10 * wraps + 2 * per_tick, (extra, wraps)
    assert extra < period


def test_default_period_needs_no_wrap_for_the_loop(tmp_path):
    """The same loop with the full 24-bit period: no handler runs, the count is exact to one
    tick either way."""
    spins = 2_000_000
    values = run(build(tmp_path, "cortex-m4", f"-DSPIN={spins}"), "cortex-m4", tmp_path)
    assert abs(values["ticks"] * 40 - 2 * spins) <= 80


@pytest.mark.parametrize("target_name", ["cortex-m4", "cortex-m0plus", "cortex-m33"])
def test_stack_painting_measures_a_known_frame(tmp_path, target_name):
    values = run(build(tmp_path, target_name, "-DSPIN=10"), target_name, tmp_path)
    # deep() holds a 1000-byte array; its frame adds alignment and saved registers.
    assert 1000 <= values["stack"] <= 1000 + 64, values


def test_a_fault_ends_the_run_with_a_clear_error(tmp_path):
    elf = build(tmp_path, "cortex-m4", "-DSPIN=10", "-DFAULT")
    with pytest.raises(TinymlError, match="exited with status 3: hard fault"):
        run(elf, "cortex-m4", tmp_path)


def test_elf_sizes_match_arm_none_eabi_size(tmp_path):
    elf = build(tmp_path, "cortex-m4", "-DSPIN=10")
    sizes = elf_sizes(elf)
    # Berkeley format: text (code + read-only data), data, bss.
    fields = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True,
                            text=True).stdout.splitlines()[1].split()
    text, data, bss = map(int, fields[:3])
    assert sizes["text_bytes"] + sizes["rodata_bytes"] == text
    assert sizes["data_bytes"] == data and sizes["bss_bytes"] == bss
    assert sizes["flash_bytes"] == text + data
    assert sizes["text_bytes"] > 0 and sizes["rodata_bytes"] > 0
