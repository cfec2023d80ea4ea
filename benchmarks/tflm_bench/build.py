"""Compile TFLM (+ CMSIS-NN) for a Cortex-M target and link one firmware image per model.

Flags: the target's own (``targets/<name>.toml``: -mcpu/-mthumb/-mfloat-abi/-mfpu, -O2,
function/data sections), so TFLM and tinyml are compiled alike, plus what TFLM's Makefile
adds for a Cortex-M build (``tools/make/Makefile`` and ``targets/cortex_m_generic_makefile.inc``):
C++17 without RTTI, exceptions or thread-safe statics, no unwind tables, TF_LITE_STATIC_MEMORY,
``-DCMSIS_NN`` with the CMSIS-NN kernels, ARM_NN_ENABLE_F16/F32=0, and the
``release_with_logs`` build type (NDEBUG). Not ``release``: that one defines
TF_LITE_STRIP_ERROR_STRINGS, which also compiles out TFLM's per-operator profiler hooks.
Everything is -O2 (TFLM's Makefile builds its core -Os and its kernels -O2; tinyml builds all
-O2; the kernels are what is measured).

Caching: objects and the static library live under ``<build>/<target>-<kernels>-<key>/``,
where the key hashes the compiler version, the flags and the checkout paths; an object is
rebuilt when its source is newer. A firmware image is relinked when its model, input or op
list changes (its folder is named by their hash).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from tflm_bench import sources
from tflm_bench.sources import Checkouts

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
#: tinyml's Cortex-M support C reused as is: vector table and reset, semihosting, SysTick
#: counter, printf-free console.
SUPPORT_C = ("startup.c", "semihost.c", "counter.c", "console.c")
MAIN = Path(__file__).resolve().parent / "firmware_main.cc"

KERNELS = ("cmsis_nn", "reference")


class BuildError(Exception):
    """A compile or link step failed; the message is one line."""


@dataclass(frozen=True)
class Build:
    """One TFLM library: a target, a kernel set and the checkouts, in a cache folder."""
    target: object            # tinyml.targets.Target
    kernels: str              # "cmsis_nn" or "reference"
    checkouts: Checkouts
    root: Path                # the cache root (--build-dir)

    # ---- flags -------------------------------------------------------------------------

    def arch_flags(self) -> list[str]:
        return [f for f in self.target.cflags if f.startswith("-m")]

    def common_flags(self) -> list[str]:
        kept = [f for f in self.target.cflags
                if f.startswith(("-m", "-O")) or f in ("-ffunction-sections", "-fdata-sections")]
        flags = kept + [
            "-fno-unwind-tables", "-fno-asynchronous-unwind-tables", "-fmessage-length=0",
            "-fomit-frame-pointer", "-funsigned-char", "-mlittle-endian",
            "-DTF_LITE_STATIC_MEMORY", "-DTF_LITE_DISABLE_X86_NEON", "-DTF_LITE_MCU_DEBUG_LOG",
            "-DNDEBUG", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0",
            # TFLM patches flatbuffers' base.h to make this the default; a flag does the same.
            "-DFLATBUFFERS_LOCALE_INDEPENDENT=0"]
        if self.kernels == "cmsis_nn":
            flags.append("-DCMSIS_NN")
        return flags + self.checkouts.includes()

    def cxx_flags(self) -> list[str]:
        return ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics",
                *self.common_flags()]

    def c_flags(self) -> list[str]:
        return ["-std=c17", *self.common_flags()]

    @property
    def cc(self) -> str:
        return self.target.cc

    @property
    def cxx(self) -> str:
        return self.target.cc.removesuffix("gcc") + "g++"

    def key(self) -> str:
        version = subprocess.run([self.cxx, "--version"], capture_output=True,
                                 text=True).stdout.splitlines()[:1]
        blob = json.dumps([version, self.cxx_flags(), self.c_flags(), self.kernels,
                           [str(p) for _, p in self.checkouts.items()]])
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @cached_property
    def folder(self) -> Path:
        return self.root / f"{self.target.name}-{self.kernels}-{self.key()}"

    # ---- the library -------------------------------------------------------------------

    def units(self) -> list[tuple[Path, Path, str]]:
        """(source, object, language) of every file of the library."""
        c = self.checkouts
        units = []
        for rel in sources.core_sources(c.tflm) + sources.kernel_sources(
                c.tflm, self.kernels == "cmsis_nn"):
            units.append((c.tflm / rel, self.folder / "obj" / "tflm" / (rel + ".o"),
                          "c" if rel.endswith(".c") else "c++"))
        if self.kernels == "cmsis_nn":
            for rel in sources.cmsis_nn_sources(c.cmsis_nn):
                units.append((c.cmsis_nn / rel, self.folder / "obj" / "cmsis_nn" / (rel + ".o"),
                              "c"))
        return units

    def compile(self, source: Path, obj: Path, language: str,
                extra: tuple[str, ...] = ()) -> None:
        if obj.exists() and obj.stat().st_mtime >= source.stat().st_mtime:
            return
        obj.parent.mkdir(parents=True, exist_ok=True)
        compiler, flags = ((self.cxx, self.cxx_flags()) if language == "c++"
                           else (self.cc, self.c_flags()))
        command = ["nice", compiler, *flags, *extra, "-c", str(source), "-o", str(obj) + ".tmp"]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if "error" in line]
            raise BuildError(f"{compiler} failed on {source}: "
                             f"{(lines or result.stderr.splitlines() or ['?'])[0].strip()}")
        Path(str(obj) + ".tmp").replace(obj)

    def library(self, jobs: int, log=print) -> Path:
        """The static library (built or brought up to date)."""
        units = self.units()
        lib = self.folder / f"libtflm_{self.kernels}.a"
        stale = [u for u in units
                 if not u[1].exists() or u[1].stat().st_mtime < u[0].stat().st_mtime]
        if stale:
            log(f"compiling {len(stale)} of {len(units)} TFLM files ({self.kernels} kernels, "
                f"{self.target.name}, {jobs} jobs) into {self.folder}")
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(lambda u: self.compile(*u), stale))
        objects = [u[1] for u in units]
        if not lib.exists() or any(o.stat().st_mtime > lib.stat().st_mtime for o in objects):
            lib.unlink(missing_ok=True)
            ar = self.cc.removesuffix("gcc") + "ar"
            result = subprocess.run([ar, "rcs", str(lib), *map(str, objects)],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise BuildError(f"{ar} failed: {result.stderr.strip()[:200]}")
        return lib

    def support_objects(self) -> list[Path]:
        """tinyml's startup, semihosting, counter and console C for this target."""
        defines = ("-DTINYML_SEMIHOSTING",
                   f"-DTINYML_QEMU_SYSTICK_HZ={self.target.systick_hz}")
        objects = []
        for name in SUPPORT_C:
            obj = self.folder / "obj" / "support" / (name + ".o")
            self.compile(FIRMWARE / "cortex_m" / name, obj, "c", defines)
            objects.append(obj)
        return objects

    # ---- one model's firmware ----------------------------------------------------------

    def firmware(self, name: str, model: bytes, inputs: bytes, ops: list[str],
                 jobs: int, arena_bytes: int, log=print) -> Path:
        """Link the firmware for ``model`` with ``inputs`` (every input's bytes, in order)
        and a resolver registering the builtins ``ops`` (BuiltinOperator names)."""
        methods = sources.resolver_methods(self.checkouts.tflm)
        missing = sorted(set(ops) - set(methods))
        if missing:
            raise BuildError(f"{name}: TFLM's op resolver has no method for "
                             f"{', '.join(missing)}")
        lib = self.library(jobs, log)
        support = self.support_objects()
        digest = hashlib.sha1(model + b"\0" + inputs + json.dumps(
            [sorted(set(ops)), arena_bytes]).encode()).hexdigest()[:12]
        folder = self.folder / "models" / f"{name}-{digest}"
        elf = folder / "firmware.elf"
        newest = max(p.stat().st_mtime for p in [lib, MAIN, *support])
        if elf.exists() and elf.stat().st_mtime >= newest:
            return elf
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.tflite").write_bytes(model)
        (folder / "input.bin").write_bytes(inputs)
        (folder / "model_data.S").write_text(model_data_asm())
        (folder / "model_ops.h").write_text(model_ops_header(sorted(set(ops)), methods))
        main_obj = folder / "main.o"
        main_obj.unlink(missing_ok=True)
        self.compile(MAIN, main_obj, "c++", (f"-I{folder}", f"-I{FIRMWARE / 'cortex_m'}",
                                             f"-DTFLM_BENCH_ARENA_BYTES={arena_bytes}"))
        data_obj = folder / "model_data.o"
        self._run([self.cc, *self.arch_flags(), "-c", str(folder / "model_data.S"), "-o",
                   str(data_obj)], folder, "assembling the model")
        script = FIRMWARE / "linker" / self.target.linker_script
        self._run([self.cxx, *self.arch_flags(), "-O2", *self.target.ldflags,
                   "--specs=nosys.specs", f"-L{FIRMWARE / 'linker'}", f"-T{script}",
                   f"-Wl,-Map={folder / 'firmware.map'}", "-o", str(elf), str(main_obj),
                   str(data_obj), *map(str, support), str(lib), "-lm", "-lc", "-lgcc"],
                  folder, "linking")
        _check_no_constructors(elf)
        return elf

    @staticmethod
    def _run(command: list[str], cwd: Path, what: str) -> None:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            first = next((line for line in lines if "error" in line or "undefined" in line),
                         lines[0] if lines else f"exit status {result.returncode}")
            raise BuildError(f"{what} failed: {first.strip()}")


def model_data_asm() -> str:
    """The model and input, linked in as read-only data (``.incbin``: no giant C array);
    16-byte aligned, as TFLM requires of a model buffer."""
    return "\n".join([
        "/* Generated by benchmarks/tflm_cortex_m.py: model.tflite and input.bin. */",
        '    .section .rodata.tflm_bench_model, "a"',
        "    .balign 16",
        "    .global tflm_bench_model",
        "tflm_bench_model:",
        '    .incbin "model.tflite"',
        '    .section .rodata.tflm_bench_input, "a"',
        "    .balign 16",
        "    .global tflm_bench_input",
        "    .global tflm_bench_input_end",
        "tflm_bench_input:",
        '    .incbin "input.bin"',
        "tflm_bench_input_end:",
        ""])


def model_ops_header(ops: list[str], methods: dict[str, str]) -> str:
    """``TFLM_BENCH_OP_COUNT`` and ``tflm_bench_add_ops()`` registering ``ops``."""
    lines = ["/* Generated by benchmarks/tflm_cortex_m.py: the model's builtins. */",
             "#ifndef TFLM_BENCH_MODEL_OPS_H", "#define TFLM_BENCH_MODEL_OPS_H", "",
             f"#define TFLM_BENCH_OP_COUNT {max(len(ops), 1)}", "",
             "template <typename Resolver>",
             "TfLiteStatus tflm_bench_add_ops(Resolver& resolver) {"]
    for op in ops:
        lines.append(f"  if (resolver.{methods[op]}() != kTfLiteOk) return kTfLiteError;"
                     f"  // {op}")
    lines += ["  return kTfLiteOk;", "}", "", "#endif", ""]
    return "\n".join(lines)


def _check_no_constructors(elf: Path) -> None:
    """startup.c calls no C++ static constructors: an image that has some would run with
    objects never constructed."""
    from tinyml.firmware import elf_sections
    for name, _, _, size in elf_sections(elf):
        if name in (".init_array", ".ctors", ".preinit_array") and size:
            raise BuildError(f"{elf.name} has C++ static constructors ({name}, {size} bytes), "
                             f"which tinyml's startup.c does not run")


def toolchain_missing(target) -> str | None:
    cxx = target.cc.removesuffix("gcc") + "g++"
    for tool in (target.cc, cxx):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    return None
