"""Where the TFLM, CMSIS-NN, CMSIS and helper checkouts are, and which of their files to build.

TFLM's own Makefile downloads its dependencies and a compiler; this machine (and many CI
runners) has no network, so the benchmark builds from checkouts it is given and reads the
file lists from TFLM's make fragments instead of running make:

- core: ``tensorflow/lite/micro/*.cc`` and its ``arena_allocator``, ``memory_planner`` and
  ``tflite_bridge`` folders, plus the TFLite files TFLM shares (``TFL_CC_SRCS`` in
  ``tools/make/sources.inc``: kernel_util, quantization_util, flatbuffer_conversions, ...),
  without tests, without ``array.cc`` (not built with TF_LITE_STATIC_MEMORY) and without
  ``debug_log.cc`` (the firmware supplies ``DebugLog``, as a TFLM port does);
- kernels: ``MICROLITE_CC_KERNEL_SRCS`` of ``sources.inc``; with CMSIS-NN, each file of
  ``kernels/cmsis_nn/`` replaces the reference file of the same name (what TFLM's
  ``specialize_files.py`` does for ``OPTIMIZED_KERNEL_DIR=cmsis_nn``);
- CMSIS-NN: every ``Source/**/*.c`` but the float16/float32 ones (``ext_libs/cmsis_nn.inc``
  with ``ARM_NN_ENABLE_F16=0 ARM_NN_ENABLE_F32=0``);
- headers only: flatbuffers ``include``, gemmlowp ``fixedpoint``, ruy's profiler
  instrumentation (a no-op without RUY_PROFILER), CMSIS_6's ``CMSIS/Core/Include``.

The op resolver of a model is written from ``micro_mutable_op_resolver.h`` itself: each
``AddX()`` method names the ``BuiltinOperator_Y`` it registers, so no table here can drift
from the checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path

#: One file each checkout must have (what the build includes from it).
MARKERS = {
    "tflm": "tensorflow/lite/micro/micro_interpreter.h",
    "cmsis_nn": "Include/arm_nnfunctions.h",
    "cmsis": "CMSIS/Core/Include/cmsis_compiler.h",
    "flatbuffers": "include/flatbuffers/flatbuffers.h",
    "gemmlowp": "fixedpoint/fixedpoint.h",
    "ruy": "ruy/profiler/instrumentation.h",
}
#: Folder names looked for under ``--third-party-dir`` (GitHub repository names first).
DIR_NAMES = {
    "tflm": ("tflite-micro", "tflm"),
    "cmsis_nn": ("CMSIS-NN", "cmsis_nn", "cmsis-nn"),
    "cmsis": ("CMSIS_6", "cmsis", "CMSIS"),
    "flatbuffers": ("flatbuffers",),
    "gemmlowp": ("gemmlowp",),
    "ruy": ("ruy",),
}
#: Command-line option of each checkout.
OPTIONS = {"tflm": "--tflm-dir", "cmsis_nn": "--cmsis-nn-dir", "cmsis": "--cmsis-dir",
           "flatbuffers": "--flatbuffers-dir", "gemmlowp": "--gemmlowp-dir",
           "ruy": "--ruy-dir"}


@dataclass(frozen=True)
class Checkouts:
    tflm: Path
    cmsis_nn: Path
    cmsis: Path
    flatbuffers: Path
    gemmlowp: Path
    ruy: Path

    def items(self) -> list[tuple[str, Path]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def includes(self) -> list[str]:
        """Include folders, as TFLM's Makefile orders them (``-I.`` is the TFLM root)."""
        return [f"-I{p}" for p in (
            self.tflm, self.flatbuffers / "include", self.gemmlowp, self.ruy, self.cmsis,
            self.cmsis_nn, self.cmsis / "CMSIS" / "Core" / "Include", self.cmsis_nn / "Include")]


def locate(explicit: dict[str, str | None], third_party: str | None) -> tuple[Checkouts | None, str | None]:
    """The checkouts from explicit paths or a folder holding them; (None, why) when one is
    not given at all (the benchmark is then skipped). A path given but wrong raises
    ValueError with a one-line reason."""
    found: dict[str, Path] = {}
    for key, marker in MARKERS.items():
        path = explicit.get(key)
        if path is None and third_party is not None:
            for name in DIR_NAMES[key]:
                if (Path(third_party) / name / marker).exists():
                    path = str(Path(third_party) / name)
                    break
        if path is None:
            where = f" and none of {', '.join(DIR_NAMES[key])} in {third_party}" \
                if third_party else ""
            return None, f"no {key} checkout ({OPTIONS[key]} not given{where})"
        path = Path(path).expanduser().resolve()
        if not (path / marker).exists():
            raise ValueError(f"{OPTIONS[key]} {path}: not a {key} checkout (no {marker})")
        found[key] = path
    return Checkouts(**found), None


def commit_of(path: Path) -> str | None:
    """The git commit of a checkout (None for an exported tree without .git)."""
    if not (path / ".git").exists():
        return None
    result = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                            text=True)
    return result.stdout.strip() or None if result.returncode == 0 else None


def make_variable(text: str, name: str) -> list[str]:
    """The words of ``NAME := a \\ b \\ ...`` in a make fragment (continuation lines joined;
    ``$(TENSORFLOW_ROOT)`` dropped: paths are relative to the TFLM root)."""
    match = re.search(rf"^{re.escape(name)}\s*:=((?:.*\\\n)*.*)$", text, re.MULTILINE)
    if match is None:
        raise ValueError(f"{name} not found")
    words = match.group(1).replace("\\\n", " ").split()
    return [w.replace("$(TENSORFLOW_ROOT)", "") for w in words]


def _sources_inc(tflm: Path) -> str:
    return (tflm / "tensorflow/lite/micro/tools/make/sources.inc").read_text()


def _rel(paths, root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in paths)


def core_sources(tflm: Path) -> list[str]:
    """TFLM's interpreter and the shared TFLite files, relative to the TFLM root."""
    micro = tflm / "tensorflow/lite/micro"
    files = list(micro.glob("*.cc"))
    for sub in ("arena_allocator", "memory_planner", "tflite_bridge"):
        files += list((micro / sub).glob("*.cc"))
    # TFL_CC_SRCS: every .cc/.c under tensorflow/ outside lite/micro and lite/experimental.
    for path in (tflm / "tensorflow").rglob("*"):
        rel = path.relative_to(tflm).as_posix()
        if rel.startswith(("tensorflow/lite/micro/", "tensorflow/lite/experimental/")):
            continue
        if path.suffix in (".cc", ".c") and path.is_file():
            files.append(path)
    excluded = {"tensorflow/lite/array.cc", "tensorflow/lite/micro/debug_log.cc"}
    return [f for f in _rel(files, tflm)
            if not f.endswith("_test.cc") and f not in excluded]


def kernel_sources(tflm: Path, cmsis_nn: bool) -> list[str]:
    """The kernels TFLM builds; with ``cmsis_nn`` the kernels/cmsis_nn files replace the
    reference files of the same name (and any extra file there is added)."""
    kernels = [k for k in make_variable(_sources_inc(tflm), "MICROLITE_CC_KERNEL_SRCS")
               if k.startswith("tensorflow/lite/micro/kernels/")]
    if not cmsis_nn:
        return kernels
    optimized = tflm / "tensorflow/lite/micro/kernels/cmsis_nn"
    overrides = {p.name: p for p in optimized.glob("*.cc")}
    out = [str(overrides.pop(Path(k).name).relative_to(tflm)) if Path(k).name in overrides
           else k for k in kernels]
    return out + _rel(overrides.values(), tflm)


def cmsis_nn_sources(cmsis_nn: Path) -> list[str]:
    """CMSIS-NN's C sources for int8/int16 (no float16/float32 kernels, as TFLM builds it)."""
    return [f for f in _rel((cmsis_nn / "Source").rglob("*.c"), cmsis_nn)
            if not f.endswith(("_f16.c", "_f32.c", "arm_nntables_flt.c"))]


def resolver_methods(tflm: Path) -> dict[str, str]:
    """BuiltinOperator name -> the MicroMutableOpResolver method that registers it with its
    default registration (read from micro_mutable_op_resolver.h)."""
    text = (tflm / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    methods: dict[str, str] = {}
    starts = [m for m in re.finditer(r"TfLiteStatus\s+(Add\w+)\s*\(([^)]*)\)", text)]
    for i, m in enumerate(starts):
        params = m.group(2).strip()
        if params and "=" not in params:
            continue  # needs an argument (AddCustom): no default registration
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[m.end():end]
        op = re.search(r"BuiltinOperator_(\w+)", body)
        if op and op.group(1) != "CUSTOM":
            methods.setdefault(op.group(1), m.group(1))
    return methods


def jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))
