"""Run Cortex-M firmware in QEMU and read back what it measured.

Every run uses ``-icount shift=0``: QEMU then advances its virtual clock by exactly 1 ns per
executed instruction, so SysTick (clocked by the machine's processor clock, e.g. 25 MHz on
the MPS2 boards) counts instructions: ticks * 1e9 / systick_hz. This is deterministic; the
host's speed does not matter. DWT's CYCCNT is not modelled (reads 0), hence SysTick.

I/O is Arm semihosting with ``target=native``: files open relative to QEMU's working
directory (a fresh temporary one per run), so the harness
(``firmware/harness/cortex_m_harness.c``) reads ``input.bin`` and writes ``output.bin`` and
``stats.txt`` in binary, and ``SYS_WRITE0`` text goes to QEMU's stderr (QEMU 7.2 without a
semihosting chardev). The firmware ends the
run with ``SYS_EXIT_EXTENDED``, whose code becomes QEMU's exit status; faults exit with 3 or 4
(``firmware/cortex_m/startup.c``) rather than hang, and a timeout guards the rest.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.sim.streams import decode_outputs, encode_samples
from tinyml.targets import Target

QEMU = "qemu-system-arm"

#: Exit statuses of the firmware (startup.c, cortex_m_harness.c) and what they mean.
EXIT_MEANINGS = {
    1: "the firmware reported a failure",
    3: "hard fault (invalid memory access, undefined instruction or stack overflow)",
    4: "unexpected exception",
    10: "the harness could not open its semihosting files",
    11: "truncated sample in input.bin",
    12: "tinyml_invoke() failed",
    13: "the harness could not write its outputs",
    14: "tinyml_input_rows() was not asked for every input row once, in order",
}


def command(machine: str, elf: str | Path) -> list[str]:
    """The QEMU command line that runs ``elf`` on ``machine`` (also in generated Makefiles)."""
    return [QEMU, "-M", machine, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
            "-kernel", str(elf)]


def available() -> bool:
    return shutil.which(QEMU) is not None


def run_elf(elf: str | Path, target: Target, cwd: str | Path,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``elf`` on the target's machine in ``cwd``; a TinymlError unless it exits 0."""
    if not target.qemu_machine:
        raise TinymlError(f"target '{target.name}' is not emulated (no qemu_machine)")
    if not available():
        raise TinymlError(f"{QEMU} not found: install qemu-system-arm (make system-deps)")
    try:
        result = subprocess.run(command(target.qemu_machine, Path(elf).resolve()), cwd=cwd,
                                stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TinymlError(f"QEMU ({target.qemu_machine}) did not finish {Path(elf).name} within "
                          f"{timeout:.0f} s: the firmware hangs") from None
    if result.returncode != 0:
        said = (result.stdout + result.stderr).decode(errors="replace").strip().splitlines()
        meaning = EXIT_MEANINGS.get(result.returncode, "QEMU failed")
        raise TinymlError(f"{Path(elf).name} on {target.qemu_machine} exited with status "
                          f"{result.returncode}: {meaning}"
                          + (f" ({said[-1]})" if said else ""))
    return result


def console_values(text: str) -> dict[str, int]:
    """``key value`` lines of the example firmware's console output."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    return values


def run_example(elf: str | Path, target: Target, timeout: float = 900) -> dict[str, int]:
    """Run the example firmware (``main.c``): its ``ticks``, ``instructions`` and
    ``stack_bytes`` lines, and its whole console text under ``console``."""
    with tempfile.TemporaryDirectory(prefix="tinyml-qemu-") as tmp:
        result = run_elf(elf, target, tmp, timeout)
    text = (result.stdout + result.stderr).decode(errors="replace")
    values = console_values(text)
    if "stack_bytes" not in values or "ticks" not in values:
        raise TinymlError(f"the example firmware printed no measurements: {text.strip()!r}")
    return {**values, "console": text}


@dataclass
class HarnessRun:
    outputs: list[list[np.ndarray]]   # per sample, one array per graph output
    ticks: list[int]                  # SysTick ticks of each sample's tinyml_invoke()
    instructions: list[int]           # the same in instructions (-icount shift=0)
    stack_bytes: int                  # tinyml_invoke()'s stack high-water mark
    layer_ticks: dict[int, int] = field(default_factory=dict)   # profiling build only


def run_samples(elf: str | Path, target: Target, graph: Graph,
                samples: list[list[np.ndarray]], timeout: float = 1800) -> HarnessRun:
    """Run the harness ELF on ``samples`` (each a list with one array per graph input)."""
    with tempfile.TemporaryDirectory(prefix="tinyml-qemu-") as tmp:
        tmp = Path(tmp)
        (tmp / "input.bin").write_bytes(encode_samples(graph, samples))
        run_elf(elf, target, tmp, timeout)
        data = (tmp / "output.bin").read_bytes()
        stats = (tmp / "stats.txt").read_text()
    outputs = decode_outputs(graph, data, len(samples))
    ticks, layer_ticks, stack, done = {}, {}, None, None
    for line in stats.splitlines():
        parts = line.split()
        if parts[:1] == ["sample"]:
            ticks[int(parts[1])] = int(parts[3])
        elif parts[:1] == ["layer"]:
            layer_ticks[int(parts[1])] = int(parts[3])
        elif parts[:1] == ["stack"]:
            stack = int(parts[1])
        elif parts[:1] == ["done"]:
            done = int(parts[1])
    if done != len(samples) or sorted(ticks) != list(range(len(samples))) or stack is None:
        raise TinymlError(f"the harness's stats.txt is incomplete ({len(ticks)} of "
                          f"{len(samples)} samples)")
    if stack == 0xFFFFFFFF:
        raise TinymlError("tinyml_invoke() used all of the painted stack: the stack overflows")
    counts = [ticks[i] for i in range(len(samples))]
    return HarnessRun(outputs, counts, [target.instructions(t) for t in counts], stack,
                      layer_ticks)
