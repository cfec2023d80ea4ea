"""Build a generated Cortex-M project and measure the image: sizes from the ELF, stack in QEMU.

Builds go through the project's own Makefile (``templates/firmware/Makefile.j2``), so what
tinyml measures is what a user's ``make`` produces. Three images come from one project:

- ``example.elf``: the project's ``main.c`` (one inference; prints ticks and stack).
- ``harness.elf``: the verification harness (``firmware/harness/cortex_m_harness.c``),
  linked against the same model objects, for ``tinyml run`` and ``tinyml verify``.
- for a board profile, ``build/qemu/example.elf``: the example built with the board's own
  compiler flags (so the model and kernel code are the same instructions) but linked for the
  QEMU machine of the core it names in ``emulated_by``. A board is not emulated; this image
  measures its stack, since the stack depth is a property of the code, not of the memory map.

Sizes (``elf_sizes``) come from the ELF's section headers: code (vector table, ``.text``,
unwind tables), ``.rodata`` (weights and layer parameters), ``.data`` and ``.bss`` (the arena
is a static array). Flash holds code, constants and ``.data``'s initial values; RAM holds
``.data``, ``.bss`` and the stack, whose measured high-water mark ``ram_bytes`` includes.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

from tinyml.errors import TinymlError
from tinyml.paths import FIRMWARE_DIR
from tinyml.sim import qemu
from tinyml.targets import Target, load_target

HARNESS = FIRMWARE_DIR / "harness" / "cortex_m_harness.c"
#: What stack.c reports when the stack grew past the painted area (firmware/cortex_m/stack.h).
STACK_OVERFLOW = 0xFFFFFFFF
#: Where a board project's emulator build goes (removed after the measurement).
EMULATOR_BUILD = "build/qemu"


class MemoryOverflow(TinymlError):
    """The image does not fit the linker script's memory (``region`` is "RAM" or "FLASH")."""

    def __init__(self, message: str, region: str):
        super().__init__(message)
        self.region = region


def _overflowed_region(output: str) -> str | None:
    if "region `FLASH' overflowed" in output:
        return "FLASH"
    if "region `RAM' overflowed" in output or "not enough RAM left for the stack" in output:
        return "RAM"
    return None


def _check_toolchain(target: Target) -> None:
    if shutil.which(target.cc) is None:
        raise TinymlError(f"{target.cc} not found: install gcc-arm-none-eabi and "
                          f"libnewlib-arm-none-eabi (make system-deps)")
    if shutil.which("make") is None:
        raise TinymlError("make not found: it builds the generated firmware project")


#: Variables of the generated Makefile that tinyml sets itself: an inherited environment
#: value (a host CFLAGS, a parent make's flags) must not change what is measured.
_MAKE_ENVIRONMENT = {"CFLAGS", "CPPFLAGS", "LDFLAGS", "LDLIBS", "DEFINES", "EXTRA_DEFINES",
                     "LDSCRIPT", "APP", "ELF", "BUILD", "LIB_BUILD", "CROSS_COMPILE",
                     "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}


def make(project_dir: str | Path, target: Target, *variables: str) -> None:
    """``make`` in the project with ``NAME=value`` overrides; one-line error on failure."""
    _check_toolchain(target)
    jobs = str(min(os.cpu_count() or 1, 4))
    environment = {k: v for k, v in os.environ.items() if k not in _MAKE_ENVIRONMENT}
    result = subprocess.run(["make", "-s", "-j", jobs, *variables], cwd=project_dir,
                            capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        region = _overflowed_region(result.stderr + result.stdout)
        if region:
            raise MemoryOverflow(f"firmware for {target.name} does not fit its {region}", region)
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        first = next((line for line in lines if "error" in line.lower()), lines[0] if lines
                     else f"exit status {result.returncode}")
        raise TinymlError(f"firmware build for {target.name} failed: {first.strip()}")


def build_example(project_dir: str | Path, target: Target) -> Path:
    make(project_dir, target)
    return Path(project_dir) / "example.elf"


def build_harness(project_dir: str | Path, target: Target, profile: bool = False) -> Path:
    """The verification harness against the project's model (``-DTINYML_PROFILE`` when the
    project was generated with profiling hooks). For a board profile it is compiled with the
    board's flags and linked for its emulator's machine (:func:`emulator_of`, which runs it):
    the same model and kernel instructions, measured on QEMU, with the board's budgets. The
    harness fills the arena with junk before each sample (``-DTINYML_ARENA_JUNK``, outside
    the counted instructions; model.c defines the filler only then, so the harness compiles
    its own copy of the library: the same instructions for the layers)."""
    build = "build/harness-profile" if profile else "build/harness"
    defines = "-DTINYML_ARENA_JUNK" + (" -DTINYML_PROFILE" if profile else "")
    variables = [f"APP={HARNESS}", f"ELF={build}/harness.elf", f"BUILD={build}",
                 f"LIB_BUILD={build}/lib", f"EXTRA_DEFINES={defines}"]
    emulator = emulator_of(target)
    if emulator is not target:
        variables += [f"LDSCRIPT={FIRMWARE_DIR / 'linker' / emulator.linker_script}",
                      f"DEFINES=-DTINYML_SEMIHOSTING "
                      f"-DTINYML_QEMU_SYSTICK_HZ={emulator.systick_hz}"]
    make(project_dir, target, *variables)
    return Path(project_dir) / build / "harness.elf"


def emulator_of(target: Target) -> Target:
    """The emulated target that runs ``target``'s code: itself, or a board's ``emulated_by``."""
    if target.is_emulated:
        return target
    if not target.emulated_by:
        raise TinymlError(f"target '{target.name}' is neither emulated nor names an emulated "
                          f"core (emulated_by)")
    emulator = load_target(target.emulated_by)
    if not emulator.is_emulated or emulator.core != target.core:
        raise TinymlError(f"target '{target.name}': emulated_by '{emulator.name}' must be an "
                          f"emulated {target.core} target")
    return emulator


def build_for_emulator(project_dir: str | Path, target: Target) -> tuple[Path, Target]:
    """The example, compiled with ``target``'s flags, linked for its emulator's machine."""
    emulator = emulator_of(target)
    if emulator is target:
        return build_example(project_dir, target), target
    defines = f"-DTINYML_SEMIHOSTING -DTINYML_QEMU_SYSTICK_HZ={emulator.systick_hz}"
    script = FIRMWARE_DIR / "linker" / emulator.linker_script
    # The model's objects (build/lib) are shared with the board image: the same instructions.
    make(project_dir, target, f"BUILD={EMULATOR_BUILD}", f"ELF={EMULATOR_BUILD}/example.elf",
         f"LDSCRIPT={script}", f"DEFINES={defines}")
    return Path(project_dir) / EMULATOR_BUILD / "example.elf", emulator


def measure_example(project_dir: str | Path, target: Target) -> dict[str, int]:
    """Run the example once in QEMU (for a board: on its emulator, see the module docstring):
    ``stack_bytes``, ``ticks`` and ``instructions`` of one inference on the example input;
    ``stack_overflow`` when the stack outgrew the RAM left below .bss (then its outputs and
    stack_bytes mean nothing)."""
    elf, emulator = build_for_emulator(project_dir, target)
    try:
        values = qemu.run_example(elf, emulator)
    finally:
        if emulator is not target:
            shutil.rmtree(Path(project_dir) / EMULATOR_BUILD, ignore_errors=True)
    values["stack_overflow"] = values["stack_bytes"] == STACK_OVERFLOW
    values["instructions"] = emulator.instructions(values["ticks"])
    values["measured_on"] = emulator.qemu_machine
    return values


# ---- ELF section sizes -----------------------------------------------------------------------

_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 0x1, 0x2, 0x4
_SHT_NOBITS = 8
#: Read-only sections counted with code: the vector table and the unwind tables.
_CODE_EXTRAS = {".isr_vector", ".ARM.exidx", ".ARM.extab"}


def elf_sections(elf: str | Path) -> list[tuple[str, int, int, int]]:
    """(name, type, flags, size) of every section of a 32-bit little-endian ELF."""
    data = Path(elf).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise TinymlError(f"{elf} is not a 32-bit little-endian ELF file")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    headers = [struct.unpack_from("<IIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx][4]

    def name(offset: int) -> str:
        end = data.index(b"\0", strtab + offset)
        return data[strtab + offset:end].decode()

    return [(name(h[0]), h[1], h[2], h[5]) for h in headers]


def elf_sizes(elf: str | Path) -> dict[str, int]:
    """text/rodata/data/bss bytes of the image, and the flash they occupy."""
    sizes = dict(text_bytes=0, rodata_bytes=0, data_bytes=0, bss_bytes=0)
    for name, kind, flags, size in elf_sections(elf):
        if not flags & _SHF_ALLOC or size == 0:
            continue
        if kind == _SHT_NOBITS:
            sizes["bss_bytes"] += size
        elif flags & _SHF_EXECINSTR or name in _CODE_EXTRAS:
            sizes["text_bytes"] += size
        elif flags & _SHF_WRITE:
            sizes["data_bytes"] += size
        else:
            sizes["rodata_bytes"] += size
    sizes["flash_bytes"] = sizes["text_bytes"] + sizes["rodata_bytes"] + sizes["data_bytes"]
    return sizes
