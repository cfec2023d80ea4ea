"""What the firmware image adds to the compiler's plan, measured on real ELFs of a target.

The compiler's plan gives a candidate's arena and constant bytes exactly, but not the rest of
the image: code (start-up, semihosting, the kernels it links, one call per layer in
``tinyml_invoke``), other static data and the stack. Building and emulating every candidate
would take a minute each, so a few candidates are compiled for real once per target, and their
ELFs give an :class:`ImageModel`:

- code bytes: ``base + sum(bytes of each kernel file linked) + per_call * calls``. Each
  kernel object file (``conv.o``, ...) counts whole, an upper bound: which of its helpers the
  linker keeps depends on the model; the linker's map file says which file holds each
  kernel. ``per_call`` is ``model.o`` (``tinyml_invoke`` and the layer parameter structs)
  and the alignment padding of ``weights.o``, per call; ``base`` is the rest of flash that
  is not the model's (start-up, semihosting, libc);
- RAM besides the arena: the ELF's other ``.data``/``.bss`` and the deepest stack measured in
  QEMU, plus a margin (:data:`STACK_MARGIN`);
- instructions per kernel (:mod:`tinyml.schedule.latency`) from a profiling build of each.

Stored as ``tinyml/nas/data/<target>.json`` (``benchmarks/nas_calibrate.py`` rewrites it).
Kernels change between calibrations, so each search first builds and profiles one small
probe candidate that links every kernel of the space (:func:`refreshed`): its object files
and stack update the sizes, its per-layer instructions rescale each kernel's latency. A
target without stored data is calibrated on demand (:func:`image_model`).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError
from tinyml.schedule.latency import LatencyModel, fit, layer_features
from tinyml.nas.search_space import Arch, Genome, SearchSpace
from tinyml.targets import Target, load_target

DATA_DIR = Path(__file__).parent / "data"
#: Bytes added to the deepest measured stack: kernels of candidates not calibrated on may
#: need a little more (the final firmware is measured, this only keeps the search honest).
STACK_MARGIN = 128
#: Where a search keeps the calibration of a target without stored data (in its output).
CACHE_FILE = "calibration.json"


@dataclass
class ImageModel:
    target: str
    code_base_bytes: int                       # flash besides kernels, calls and constants
    kernel_files: dict[str, str]               # kernel function -> its object file
    file_bytes: dict[str, int]                 # flash linked from each kernel object file
    per_call_bytes: float                      # model.o + weights.o padding, per call
    static_ram_bytes: int                      # .data + .bss besides the arena
    stack_bytes: int                           # deepest measured stack + STACK_MARGIN
    latency: LatencyModel = field(default_factory=LatencyModel)
    samples: list[dict] = field(default_factory=list)  # what each calibration ELF measured

    def code_bytes(self, calls) -> int:
        """Estimated flash of the code (and non-constant data) of an image with ``calls``."""
        files = {self.kernel_files.get(c.function, c.function) for c in calls}
        fallback = max(self.file_bytes.values(), default=4096)
        kernels = sum(self.file_bytes.get(f, fallback) for f in files)
        return int(round(self.code_base_bytes + kernels + self.per_call_bytes * len(calls)))

    def to_json(self) -> dict:
        return {"target": self.target, "code_base_bytes": self.code_base_bytes,
                "kernel_files": dict(sorted(self.kernel_files.items())),
                "file_bytes": dict(sorted(self.file_bytes.items())),
                "per_call_bytes": self.per_call_bytes,
                "static_ram_bytes": self.static_ram_bytes, "stack_bytes": self.stack_bytes,
                "latency": self.latency.to_json(), "samples": self.samples}

    @classmethod
    def from_json(cls, data: dict) -> "ImageModel":
        return cls(data["target"], int(data["code_base_bytes"]),
                   dict(data["kernel_files"]),
                   {k: int(v) for k, v in data["file_bytes"].items()},
                   float(data["per_call_bytes"]), int(data["static_ram_bytes"]),
                   int(data["stack_bytes"]), LatencyModel.from_json(data["latency"]),
                   data.get("samples", []))


def data_path(target: str) -> Path:
    return DATA_DIR / f"{target}.json"


def image_model(target: Target, cache_dir: Path | None = None,
                refresh: bool = True) -> ImageModel:
    """The stored model of ``target``, refreshed on one ELF built now (:func:`refreshed`);
    else one kept in ``cache_dir`` by :func:`keep_calibration`; else calibrate now (a few
    builds and QEMU runs). Nothing is written: the caller keeps a fresh calibration only once
    its output directory is sure to be made (an infeasible search leaves nothing behind)."""
    stored = data_path(target.name)
    if stored.exists():
        model = ImageModel.from_json(json.loads(stored.read_text()))
        return refreshed(model, target) if refresh and target.is_emulated else model
    cached = cache_dir / CACHE_FILE if cache_dir else None
    if cached is not None and cached.exists():
        return ImageModel.from_json(json.loads(cached.read_text()))
    if not target.is_emulated:
        raise TinymlError(f"target '{target.name}' has no NAS calibration data and is not "
                          f"emulated: calibrate on '{target.emulated_by}' or an emulated target")
    return calibrate(target)


def keep_calibration(model: ImageModel, target: Target, cache_dir: Path) -> None:
    """Write ``model`` to the existing ``cache_dir`` when ``target`` has no stored data, so
    that a resumed search reuses it instead of calibrating again."""
    path = cache_dir / CACHE_FILE
    if not data_path(target.name).exists() and not path.exists():
        path.write_text(json.dumps(model.to_json(), indent=1))


#: Calibration candidates: (seed of the genome, resolution, width). They cover kernels 3/5/7,
#: every expansion, residual and non-residual blocks, and small to mid-size layers.
CALIBRATION_SET = ((1, 24, 0.5), (2, 32, 0.35), (3, 16, 0.75))


def probe_arch(classes: int = 10) -> Arch:
    """The candidate each search builds and profiles to refresh the stored model: the first
    calibration candidate, mid-sized (so rescaled latencies stay right for typical layers)
    and linking every kernel the space uses: the stem conv, 3x3 and larger depthwise
    kernels, 1x1 expansions and projections, a fused residual conv-add, mean, fully
    connected, softmax."""
    return calibration_archs(classes)[0]


def refreshed(model: ImageModel, target: Target) -> ImageModel:
    """``model`` brought up to date with one ELF built and profiled now (:func:`probe_arch`):
    kernels edited since the stored calibration change code size, stack and speed. Sizes of
    the kernel files and the rest of the image come from the probe; per-call bytes, static
    RAM and stack keep the larger of stored and probed; each kernel's latency is rescaled by
    measured / predicted instructions on the probe's layers (the others by the probe's
    overall ratio)."""
    with tempfile.TemporaryDirectory(prefix="tinyml-nas-probe-") as tmp:
        sample = measure(probe_arch(), target, Path(tmp), profile=True)
    probe = fit_image_model(model.target, [sample])
    probe.kernel_files = {**model.kernel_files, **probe.kernel_files}
    probe.file_bytes = {**model.file_bytes, **probe.file_bytes}
    probe.per_call_bytes = max(probe.per_call_bytes, model.per_call_bytes)
    probe.static_ram_bytes = max(probe.static_ram_bytes, model.static_ram_bytes)
    probe.stack_bytes = max(probe.stack_bytes, model.stack_bytes)
    probe.latency = rescaled(model.latency, sample.get("layers", []))
    probe.samples = model.samples + [sample]
    return probe


def rescaled(latency: LatencyModel, layers: list[dict]) -> LatencyModel:
    """``latency`` with each kernel's coefficients scaled to fit ``layers`` (measured)."""
    measured: dict[str, float] = {}
    predicted: dict[str, float] = {}
    for layer in layers:
        f = layer["function"]
        measured[f] = measured.get(f, 0.0) + layer["instructions"]
        predicted[f] = predicted.get(f, 0.0) + latency.predict_call(f, layer["features"])
    overall = sum(measured.values()) / max(sum(predicted.values()), 1.0) if layers else 1.0
    coefficients = {}
    for f in set(latency.coefficients) | set(measured):
        base = latency.coefficients.get(f, (latency.fallback_per_unit, 0.0, 0.0, 0.0))
        scale = measured[f] / predicted[f] if predicted.get(f) else overall
        coefficients[f] = tuple(c * scale for c in base)
    return LatencyModel(coefficients, latency.fallback_per_unit * overall)


def calibration_archs(classes: int = 10) -> list[Arch]:
    space = SearchSpace()
    archs = []
    for seed, resolution, width in CALIBRATION_SET:
        genome = space.random_genome(np.random.default_rng(seed))
        archs.append(space.arch(genome, resolution, width, classes))
    # Every kernel size in the first stage, so the 3x3 depthwise special case is measured too.
    base = space.smallest_genome()
    kernels = tuple((3,) * len(k) for k in base.kernels)
    archs.append(space.arch(Genome(base.depths, kernels, base.expands), 20, 0.5, classes))
    return archs


#: Output sections of the image that occupy flash.
FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".data", ".ARM.exidx", ".ARM.extab")
_ENTRY = re.compile(r"^\s+(\S+)?\s*0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)\s+(\S+)\s*$")


def map_sizes(map_file: Path) -> tuple[dict[str, int], dict[str, str]]:
    """From a GNU ld map file: flash bytes linked from each object file (by its file name,
    e.g. ``conv.o``), and the object file defining each kernel (``.text.tinyml_*``)."""
    per_object: dict[str, int] = {}
    kernel_object: dict[str, str] = {}
    lines = map_file.read_text().splitlines()
    try:
        lines = lines[lines.index("Linker script and memory map"):]
    except ValueError:
        raise TinymlError(f"{map_file}: not a GNU ld map file") from None
    output, pending = None, None
    for line in lines:
        if line.startswith(".") or (line and not line[0].isspace()):
            output, pending = line.split()[0], None
            continue
        match = _ENTRY.match(line)
        if match is None:
            words = line.split()
            pending = words[0] if len(words) == 1 and words[0].startswith(".") else None
            continue
        section = match.group(1) or pending
        pending = None
        if output not in FLASH_SECTIONS or section is None or not section.startswith("."):
            continue
        obj = re.sub(r"^.*\((.*)\)$", r"\1", match.group(3)).rsplit("/", 1)[-1]
        per_object[obj] = per_object.get(obj, 0) + int(match.group(2), 16)
        if section.startswith(".text.tinyml_"):
            kernel_object[section[len(".text."):]] = obj
    return per_object, kernel_object


def object_bytes(path: Path) -> int:
    """Flash bytes of everything in an object file: an upper bound of what the linker keeps
    of it (which helpers a kernel file's functions link depends on the model)."""
    from tinyml.firmware import elf_sections

    if not path.exists():
        return 0
    return sum(size for _, kind, flags, size in elf_sections(path)
               if flags & 0x2 and kind != 8)  # SHF_ALLOC, not SHT_NOBITS


def measure(arch: Arch, target: Target, workdir: Path, profile: bool = True) -> dict:
    """Compile ``arch`` (random weights) for ``target``, build and emulate it: the ELF's
    sizes, the model's constant bytes, kernel symbol sizes and per-layer instructions."""
    from tinyml.budget import layer_constant_bytes
    from tinyml.compiler import compile_model
    from tinyml.nas.ir_builder import quantized_graph
    from tinyml.quantize.tflite_export import export_tflite
    from tinyml.verify import make_samples, profile_layers

    workdir.mkdir(parents=True, exist_ok=True)
    model = workdir / "model.tflite"
    model.write_bytes(export_tflite(quantized_graph(arch)))
    result = compile_model(model, target, workdir / "project", patch="off")
    build = workdir / "project" / "build"
    per_object, kernel_object = map_sizes(build / "example" / "app.map")
    kernels_dir = build / "lib" / "kernels"
    functions = sorted({c.function for c in result.calls})
    files = {kernel_object[f] for f in functions if f in kernel_object}
    sample = {"arch": arch.key(), "calls": len(result.calls),
              "arena_bytes": result.plan.arena_bytes,
              "constant_bytes": sum(layer_constant_bytes(result).values()),
              "kernel_files": {f: kernel_object.get(f) for f in functions},
              "file_bytes": {f: max(per_object[f], object_bytes(kernels_dir / f))
                             for f in sorted(files)},
              "model_bytes": per_object.get("model.o", 0),
              "weights_bytes": per_object.get("weights.o", 0),
              "instructions": result.example_run.get("instructions"),
              **{k: result.sizes[k] for k in ("text_bytes", "rodata_bytes", "data_bytes",
                                              "bss_bytes", "flash_bytes", "ram_bytes",
                                              "stack_bytes")}}
    if profile:
        inputs = make_samples(result.source_graph, 1, seed=0)[0]
        layers = profile_layers(model, target, inputs, workdir / "profile", patch="off")
        by_name = {c.op.name: c for c in result.calls}
        sample["layers"] = [
            {"function": by_name[layer["name"]].function,
             "features": list(layer_features(result.graph, by_name[layer["name"]])),
             "instructions": layer["instructions"]}
            for layer in layers if layer["name"] in by_name and layer["instructions"]]
    return sample


def fit_image_model(target: str, samples: list[dict]) -> ImageModel:
    kernel_files: dict[str, str] = {}
    file_bytes: dict[str, int] = {}
    for s in samples:
        kernel_files.update({f: o for f, o in s["kernel_files"].items() if o})
        for f, size in s["file_bytes"].items():
            file_bytes[f] = max(file_bytes.get(f, 0), size)
    # model.o (tinyml_invoke, parameter structs) and the alignment padding of weights.o
    # grow with the number of calls; the constants themselves are counted exactly elsewhere.
    per_call = max((s["model_bytes"] + s["weights_bytes"] - s["constant_bytes"]) / s["calls"]
                   for s in samples)
    base = max(s["flash_bytes"] - sum(s["file_bytes"].values()) - s["model_bytes"]
               - s["weights_bytes"] for s in samples)
    static = max(s["data_bytes"] + s["bss_bytes"] - s["arena_bytes"] for s in samples)
    stack = max(s["stack_bytes"] for s in samples) + STACK_MARGIN
    latency = fit([(layer["function"], layer["features"], layer["instructions"])
                   for s in samples for layer in s.get("layers", [])])
    return ImageModel(target, int(np.ceil(base)), kernel_files, file_bytes, float(per_call),
                      int(static), int(stack), latency, samples)


def calibrate(target: Target | str, archs: list[Arch] | None = None,
              workdir: Path | None = None, profile: bool = True) -> ImageModel:
    """Measure ``archs`` (default :func:`calibration_archs`) on ``target`` and fit."""
    target = load_target(target) if isinstance(target, str) else target
    archs = archs if archs is not None else calibration_archs()
    with tempfile.TemporaryDirectory(prefix="tinyml-nas-calibrate-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        samples = [measure(a, target, root / f"arch{i}", profile) for i, a in enumerate(archs)]
    return fit_image_model(target.name, samples)
