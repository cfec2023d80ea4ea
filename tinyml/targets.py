"""Compilation targets, one TOML file each in ``targets/``.

A target says which kernels to use (portable C99 and, later, core-specific ones that override
them by name), how to compile (compiler and flags), and the part's resources (SRAM, flash,
clock) so budgets can be checked. Cortex-M targets add a core, FPU/DSP features, a linker
script and the QEMU machine that emulates them; the code generator does not care which.
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
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_host(self) -> bool:
        return self.core == "host"


_FIELDS = {"name", "description", "core", "kernels", "cc", "cflags", "ldflags", "sram_bytes",
           "flash_bytes", "clock_hz", "fpu", "dsp", "qemu_machine"}


def available_targets() -> list[str]:
    return sorted(p.stem for p in TARGETS_DIR.glob("*.toml"))


def load_target(name: str) -> Target:
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
