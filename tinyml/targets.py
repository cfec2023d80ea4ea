"""Compilation targets, one TOML file each in ``targets/``.

A target says which kernels to use (portable C99 and core-specific ones that override them by
file name), how to compile (compiler and flags), and the resources of a reference part (SRAM,
flash, clock) so budgets can be checked. Cortex-M targets add a core, FPU/DSP features and a
linker script (``firmware/linker/``), and either the QEMU machine that emulates them (the core
targets: cortex-m0plus ... cortex-m33) or, for board profiles that only build and link, the
emulated target whose machine runs the same code to measure its stack (``emulated_by``).
The code generator does not care which.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field

from tinyml.errors import TinymlError
from tinyml.paths import TARGETS_DIR


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    core: str
    kernels: tuple[str, ...]          # kernel directories under firmware/kernels, in priority
    cc: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    sram_bytes: int | None = None
    flash_bytes: int | None = None
    clock_hz: int | None = None
    fpu: str | None = None
    dsp: bool = False
    qemu_machine: str | None = None
    part: str | None = None              # the reference part whose SRAM/flash are the budget
    linker_script: str | None = None     # file name under firmware/linker/
    systick_hz: int | None = None        # SysTick clock of the QEMU machine
    emulated_by: str | None = None       # boards: target whose QEMU machine runs the same code
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_host(self) -> bool:
        return self.core == "host"

    @property
    def is_firmware(self) -> bool:
        """Builds a bare-metal image (startup code, linker script) with a cross compiler."""
        return not self.is_host

    @property
    def is_emulated(self) -> bool:
        return self.qemu_machine is not None

    def instructions(self, ticks: int) -> int:
        """SysTick ticks -> instructions: QEMU's ``-icount shift=0`` runs one instruction
        per nanosecond of virtual time."""
        if not self.systick_hz:
            raise TinymlError(f"target '{self.name}' has no systick_hz: it is not emulated")
        return round(ticks * 1_000_000_000 / self.systick_hz)


_FIELDS = {"name", "description", "core", "kernels", "cc", "cflags", "ldflags", "sram_bytes",
           "flash_bytes", "clock_hz", "fpu", "dsp", "qemu_machine", "part", "linker_script",
           "systick_hz", "emulated_by"}


def available_targets() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load_target(name: str) -> Target:
    if isinstance(name, Target):
        return name
    path = TARGETS_DIR / f"{name}.toml"
    if not path.exists():
        raise TinymlError(f"unknown target '{name}' (available: {', '.join(available_targets())})")
    with path.open("rb") as f:
        data = tomllib.load(f)
    known = {k: v for k, v in data.items() if k in _FIELDS}
    for key in ("kernels", "cflags", "ldflags"):
        if key in known:
            known[key] = tuple(known[key])
    return Target(**known, extra={k: v for k, v in data.items() if k not in _FIELDS})
