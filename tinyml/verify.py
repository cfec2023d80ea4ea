"""``tinyml verify``: build the generated C, run it on seeded samples, compare bit for bit.

The samples are N seeded random inputs plus the two extremes (every element at the type's
minimum, then at its maximum), which exercise saturation paths random data rarely reaches.
Outputs are compared with tinyml's numpy reference on the imported graph and, for TFLite
models, with TensorFlow Lite Micro itself. A sample counts as mismatched when any output
element differs from any oracle.

On an emulated Cortex-M target the generated firmware runs in QEMU (tinyml.sim.qemu): the
same comparison, plus what the emulator measures: instructions per inference (SysTick under
``-icount shift=0``), the stack high-water mark and, from a profiling build whose model.c
has counter hooks between layers, the instructions of each layer.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinyml import reference
from tinyml.compiler import Compilation, compile_model
from tinyml.errors import TinymlError
from tinyml.frontends.formats import detect_format
from tinyml.ir import DTYPES, Graph
from tinyml.sim import host, tflm
from tinyml.targets import Target, load_target


@dataclass
class VerifyReport:
    model: str
    target: str
    samples: int
    mismatched_outputs: int
    max_abs_diff: float
    oracle: str
    sanitized: bool
    #: Emulated targets: instructions_per_inference, instructions_min/max, stack_bytes,
    #: machine, the image sizes and layer_instructions.
    measured: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"model": self.model, "target": self.target, "samples": self.samples,
                "mismatched_outputs": self.mismatched_outputs,
                "max_abs_diff": self.max_abs_diff, "oracle": self.oracle,
                "sanitized": self.sanitized, **self.measured}


def make_samples(graph: Graph, count: int, seed: int = 0) -> list[list[np.ndarray]]:
    """``count`` seeded random samples, then all-minimum and all-maximum ones."""
    rng = np.random.default_rng(seed)
    samples = []
    for kind in ["random"] * count + ["min", "max"]:
        sample = []
        for name in graph.inputs:
            t = graph.tensors[name]
            dtype = np.dtype(DTYPES[t.dtype])
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                low, high = info.min, info.max
                if kind == "random":
                    x = rng.integers(low, high, t.shape, endpoint=True)
                else:
                    x = np.full(t.shape, low if kind == "min" else high)
            else:
                # Float inputs: the range the model was calibrated for when known, else [-1, 1].
                low, high = -1.0, 1.0
                if t.quant is not None:
                    s, z = float(t.quant.scale[0]), int(t.quant.zero_point[0])
                    low, high = s * (-128 - z), s * (127 - z)
                x = rng.uniform(low, high, t.shape) if kind == "random" else \
                    np.full(t.shape, low if kind == "min" else high)
            sample.append(x.astype(dtype))
        samples.append(sample)
    return samples


def verify(model: str | Path, target: str = "host", samples: int = 100, seed: int = 0,
           sanitize: bool = False, output_dir: str | Path | None = None,
           profile: bool = True, patch: str | None = "auto",
           patch_overhead: float = 0.2,
           quantize: Callable[[Graph], Graph] | None = None,
           optimize: str = "balanced", stream: bool = False,
           input_stream: bool = False) -> VerifyReport:
    """Compile ``model`` for ``target``, run it on the samples, compare with the oracles.
    ``profile`` (emulated targets) adds the per-layer instruction counts. ``patch``,
    ``patch_overhead`` and ``optimize``: patch-based inference, as for ``compile``.
    ``quantize`` turns a float model into the int8 graph that is compiled and verified
    (``verify --calib``, as ``compile --calib``); TFLM then runs that graph exported as an int8 TFLite file.
    ``stream`` (``compile --stream``): the samples are the frames of one stream, and each
    output is compared with the oracles run on the full window after that frame (the window
    starting as the input's zero point). ``input_stream`` (``--input-stream rows``): the
    harnesses hand each sample over through ``tinyml_input_rows``, checking that every row
    is asked for once, in order."""
    model = Path(model)
    target_spec = load_target(target)
    require_runnable(target_spec)
    if sanitize and not target_spec.is_host:
        raise TinymlError("--sanitize builds with the host's AddressSanitizer: use it with "
                          "--target host")
    with tempfile.TemporaryDirectory(prefix="tinyml-verify-") as tmp:
        project = Path(output_dir) if output_dir else Path(tmp) / "project"
        result = compile_model(model, target, project, patch=patch,
                               patch_overhead=patch_overhead, quantize=quantize,
                               optimize=optimize, stream=stream, input_stream=input_stream)
        inputs = make_samples(result.io_graph, samples, seed)
        if result.target.is_host:
            binary = host.build(project, sanitize=sanitize)
            return _compare(result, host.run(binary, result.io_graph, inputs), inputs,
                            sanitize)
        from tinyml import firmware
        from tinyml.sim import qemu
        # A board profile runs on the QEMU machine of its core (firmware.emulator_of).
        emulator = firmware.emulator_of(result.target)
        run = qemu.run_samples(firmware.build_harness(project, result.target), emulator,
                               result.io_graph, inputs)
        report = _compare(result, run.outputs, inputs, False)
        # The random samples (not the two extremes) give the typical count.
        typical = run.instructions[:max(samples, 1)]
        report.measured = {
            "machine": emulator.qemu_machine,
            "instructions_per_inference": int(statistics.median(typical)),
            "instructions_min": min(run.instructions),
            "instructions_max": max(run.instructions),
            "stack_bytes": run.stack_bytes,
            **{k: result.sizes[k] for k in ("text_bytes", "rodata_bytes", "data_bytes",
                                            "bss_bytes", "flash_bytes", "ram_bytes")},
        }
        if profile:
            # A quantized float model is profiled as the int8 graph already made from it.
            report.measured["layer_instructions"] = profile_layers(
                model if quantize is None else result.source_graph, result.target, inputs[0],
                Path(tmp) / "profile", run.outputs[0], patch=patch,
                patch_overhead=patch_overhead, optimize=optimize, stream=stream,
                input_stream=input_stream)
        return report


def require_runnable(target: Target) -> None:
    """The host, emulated targets and board profiles that name their emulated core run code
    (a board on its core's QEMU machine, with the board's flags and budgets)."""
    if target.is_firmware and not target.is_emulated and not target.emulated_by:
        raise TinymlError(f"target '{target.name}' is a board profile with no emulated core "
                          f"(emulated_by): it builds and links but cannot run here")


def profile_layers(model: str | Path | Graph, target: Target, sample: list[np.ndarray],
                   project_dir: str | Path,
                   expected: list[np.ndarray] | None = None, *, patch: str | None = "auto",
                   patch_overhead: float = 0.2, optimize: str = "balanced",
                   stream: bool = False, input_stream: bool = False) -> list[dict]:
    """Instructions of each layer on one sample, from a profiling build (model.c with counter
    hooks between layers; the harness records SysTick at each). Aliases run no code: 0.
    Each hook costs a few instructions, counted in the layer after it. ``expected``: the
    ordinary build's outputs on the same sample, which the profiling build must reproduce."""
    from tinyml import firmware
    from tinyml.sim import qemu
    result = compile_model(model, target, project_dir, profile=True, build=False, patch=patch,
                           patch_overhead=patch_overhead, optimize=optimize, stream=stream,
                           input_stream=input_stream)
    elf = firmware.build_harness(project_dir, result.target, profile=True)
    emulator = firmware.emulator_of(result.target)
    run = qemu.run_samples(elf, emulator, result.io_graph, [sample])
    if expected is not None and not all(np.array_equal(a, b)
                                        for a, b in zip(run.outputs[0], expected)):
        raise TinymlError("the profiling build computed different outputs from the ordinary "
                          "build")
    return [dict(name=layer["name"], op=layer["op"],
                 instructions=0 if layer["alias"] else
                 emulator.instructions(run.layer_ticks.get(index, 0)))
            for index, layer in enumerate(result.project.layers)]


def stream_windows(frames: list[np.ndarray], graph: Graph) -> list[np.ndarray]:
    """The full window of ``graph``'s input after each frame of a stream: the last T frames,
    oldest first, starting as the input's zero point (what ``compile --stream`` defines)."""
    t = graph.tensors[graph.inputs[0]]
    zero = int(t.quant.zero_point[0]) if t.quant is not None else 0
    window = np.full(t.shape, zero, DTYPES[t.dtype])
    result = []
    for frame in frames:
        window = np.concatenate([window[:, 1:], frame.reshape((1, 1) + t.shape[2:])], axis=1)
        result.append(window)
    return result


def _tflite_of(result: Compilation) -> Path | bytes | None:
    """The TFLite model TFLM runs for ``result``: the model file itself, or, for a graph tinyml
    quantized (``--calib``), that graph exported as int8 TFLite (None when it has an op the
    exporter does not write: the reference is then the only oracle)."""
    if not result.quantized:
        return result.model if detect_format(result.model) == "tflite" else None
    from tinyml.quantize.tflite_export import export_tflite
    try:
        return export_tflite(result.source_graph, description="tinyml verify --calib")
    except TinymlError:
        return None


def _compare(result: Compilation, produced: list[list[np.ndarray]],
             samples: list[list[np.ndarray]], sanitize: bool) -> VerifyReport:
    graph = result.source_graph
    oracles = ["reference"]
    runner = None
    if tflm.available():
        tflite = _tflite_of(result)
        if tflite is not None:
            try:
                runner = tflm.TflmRunner(tflite)
                oracles.append("tflite-micro")
            except TinymlError as exc:  # e.g. GELU: the reference is then the only oracle
                oracles[0] = f"reference (not tflite-micro: {exc})"
    mismatched, worst = 0, 0.0
    # The samples are one stream, as the harness runs them: a streaming model's state
    # carries over from each to the next (TFLM's interpreter keeps its variables likewise).
    state = reference.initial_state(graph)
    if result.stream is not None:  # frames: the oracles see the full window after each
        samples = [[w] for w in stream_windows([s[0] for s in samples], graph)]
    for sample, outputs in zip(samples, produced):
        expected = [reference.run(graph, sample, state=state)]
        if runner is not None:
            try:
                expected.append(dict(zip(graph.outputs,
                                         runner.run(sample, len(graph.outputs)))))
            except TinymlError as exc:  # TFLM refuses an op it registers (int8 EXP, SQRT)
                runner, oracles = None, [f"reference (not tflite-micro: {exc})"]
        bad = False
        for want in expected:
            for name, got in zip(graph.outputs, outputs):
                diff = np.abs(got.astype(np.float64) - want[name].astype(np.float64))
                worst = max(worst, float(diff.max()) if diff.size else 0.0)
                bad |= bool((got != want[name]).any())
        mismatched += bad
    return VerifyReport(str(result.model), result.target.name, len(samples), mismatched, worst,
                        "+".join(oracles), sanitize)
