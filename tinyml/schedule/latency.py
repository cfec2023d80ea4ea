"""Instructions per inference, predicted per layer from a linear model fitted on QEMU runs.

Why: the NAS and the compiler's schedule (patches or not) rank many candidates; building and
emulating each would take a minute. Per kernel (``tinyml_conv2d_1x1_s8``,
``tinyml_depthwise_conv2d_s8``, ...) the instructions of one call are close to linear in five
counts (:func:`layer_features`): its work (MACs for convolutions and fully connected layers,
elements read and written for the others), its output elements (requantization and stores), its
input elements (padded copies, e.g. the depthwise plane), its weights (per-call repacking, e.g.
for the DSP kernels) and the number of calls (the fixed cost of each: a patch stage calls each
of its kernels once per patch, which MACs do not show). :func:`fit` finds the non-negative
coefficients per kernel by least squares on the per-layer counts of profiling builds
(:mod:`tinyml.nas.calibration` and ``benchmarks/calibrate_cost_model.py`` collect them from
QEMU, ``-icount shift=0``); they are stored as data (``tinyml/nas/data/<target>.json`` for the
NAS's space, ``tinyml/schedule/data/<core>.json`` for the compiler, with a scale per shape
class: :func:`kernel_key`).

A kernel never profiled falls back to the mean instructions per unit of work of all measured
layers: the estimate then says so (``unmodelled``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tinyml.passes.reshape_alias import is_alias


FEATURES = ("work", "outputs", "inputs", "weights", "calls")


def layer_features(graph, call, macs: int | None = None) -> tuple[int, int, int, int, int]:
    """(work, output elements, input elements, weight elements, calls) of one layer run once.
    ``macs`` overrides the layer's MACs (a patch stage recomputes halos): the activation
    counts scale with it. (:func:`stage_features` counts a patch stage's calls.)"""
    op = call.op
    ins = graph.op_inputs(op)
    full = int(op.spec.macs(op, ins, graph.op_outputs(op)))
    inputs = sum(t.size for t in ins if t is not None and not t.is_constant)
    weights = sum(t.size for t in ins if t is not None and t.is_constant)
    outputs = sum(t.size for t in graph.op_outputs(op))
    work = full if full else inputs + outputs
    if macs is not None and full:
        ratio = macs / full
        work, outputs, inputs = macs, round(outputs * ratio), round(inputs * ratio)
    return work, outputs, inputs, weights, 1


def kernel_key(graph, call, pixels: int | None = None) -> str:
    """The kernel function, and for sliding-window and dense layers the shape class its
    kernels branch on (``function|variant``): kernel size, stride, dilation, whether the
    input channels are a multiple of 4, and for sliding windows the output pixels per call in
    powers of 4 (``pixels``: a patch's, in a patch stage). One kernel function runs different
    code paths for a 3x1 dilated depthwise layer with 27 channels, a 5x5 one with 24, and the
    same layer on a small patch (up to 4x apart in instructions per MAC on cortex-m4): a
    linear model per function cannot tell them apart, a scale per shape class measured in
    calibration can. A class calibration never saw takes the scale of the nearest coarser
    class it did see (:func:`coarser_keys`), or none."""
    op = call.op
    ins = graph.op_inputs(op)
    attrs = op.attrs
    if len(ins) < 2 or ins[1] is None or not ins[1].is_constant:
        return call.function
    channels = ins[0].shape[-1] if ins[0] is not None and ins[0].shape else 0
    align = "c4" if channels % 4 == 0 else "c%d" % (channels % 4)
    if len(ins[1].shape) == 4 and hasattr(attrs, "stride"):
        kh, kw = ins[1].shape[1:3]  # OHWI filters, 1HWC depthwise ones
        stride = "s%dx%d" % tuple(attrs.stride)
        dilation = "d%dx%d" % tuple(getattr(attrs, "dilation", (1, 1)))
        if pixels is None:
            out = graph.tensors[op.outputs[0]]
            pixels = out.shape[1] * out.shape[2] if len(out.shape) == 4 else 1
        size = 0
        while pixels > 16 * 4 ** size and size < 4:
            size += 1
        return f"{call.function}|{kh}x{kw} {stride} {dilation} {align} p{size}"
    return f"{call.function}|{align}"


#: The shape-class tokens :func:`coarser_keys` drops, in order, to find a class calibration
#: saw: channel alignment, dilation, stride, then output pixels (the kernel size separates a
#: kernel's code paths the most).
_DROPPED_FIRST = ("c", "d", "s", "p")


#: Instructions of a DSP convolution taking 4-pixel blocks where it would take 7 or 8
#: (``lower(small_blocks=True)``, --optimize memory) over the calibrated figure: measured
#: 1.16-1.22 on 17 layers of kws_ref_model, conv1d_sensor and dilated_ds_kws on cortex-m4
#: (1x1 and windowed kernels; fewer pixels share each filter load and requantization).
SMALL_BLOCK_FACTOR = 1.18


def _small_blocks(call) -> bool:
    params = getattr(call, "params", None) or {}
    return params.get("block") == 4


def coarser_keys(key: str) -> list[str]:
    """``key`` and the coarser classes it belongs to, finest first (``function|3x1 s1x1 d2x1
    c3 p4`` -> ``... d2x1 p4`` -> ``3x1 s1x1 p4`` -> ``3x1 p4`` -> ``3x1``)."""
    function, _, variant = key.partition("|")
    if not variant:
        return [key]
    tokens = variant.split()
    keys = [key]
    for prefix in _DROPPED_FIRST:
        tokens = [t for t in tokens if not (t[0] == prefix and t[1:2].isdigit())]
        coarse = f"{function}|{' '.join(tokens)}"
        if coarse != keys[-1]:
            keys.append(coarse)
    return keys


def stage_features(graph, patch) -> dict[str, tuple[tuple[int, ...], int]]:
    """:func:`layer_features` of each layer of a patch stage, by layer name, with the output
    pixels of its largest patch: MAC layers with their MACs halos included, the others scaled
    by the pixels the patches compute (halos included), every layer called once per patch.
    The window copies between steps count as input elements of the layer they feed."""
    patches = patch.grid[0] * patch.grid[1]
    geometry = patch.geometry
    features: dict[str, tuple[int, ...]] = {}
    by_layer = {step.layer: step for step in patch.steps if not step.is_copy}
    copied: dict[str, int] = {}
    for step in patch.steps:
        if step.is_copy:
            name = step.op.outputs[0]
            channels = graph.tensors[step.op.inputs[0].split("@")[0]].shape[-1]
            copied[step.label] = copied.get(step.label, 0) + geometry.total_area(name) * channels
    for j, index in enumerate(patch.stage):
        op = graph.ops[index]
        step = by_layer.get(j)
        if step is None:
            continue
        out = graph.tensors[op.outputs[0]]
        _, height, width, _ = out.shape
        ratio = geometry.total_area(op.outputs[0]) / max(height * width, 1)
        work, outputs, inputs, weights, _ = layer_features(graph, _Call(op))
        macs = patch.layer_macs.get(j)
        work = macs if macs else round(work * ratio)
        rows, cols = geometry.max_extent(op.outputs[0])
        features[op.name] = ((work, round(outputs * ratio),
                              round(inputs * ratio) + copied.get(op.name, 0),
                              weights * patches, patches), rows * cols)
    return features


@dataclass
class _Call:
    """The part of a kernel call :func:`layer_features` reads."""

    op: object


def padded(features: Sequence[float]) -> tuple[float, ...]:
    """``features`` (or coefficients) stored before a feature was added, zero-filled."""
    return tuple(features) + (0.0,) * (len(FEATURES) - len(features))


@dataclass
class LatencyModel:
    #: kernel function -> instructions per unit of each of :data:`FEATURES`
    coefficients: dict[str, tuple[float, ...]] = field(default_factory=dict)
    fallback_per_unit: float = 10.0
    #: ``function|variant`` (:func:`kernel_key`) -> measured / predicted by the function's
    #: coefficients, for the shape classes calibration saw
    scales: dict[str, float] = field(default_factory=dict)

    def predict_call(self, key: str, features: Sequence[int]) -> float:
        """Instructions of one layer of kernel ``key`` (a function, or :func:`kernel_key`)."""
        function = key.split("|")[0]
        if function in self.coefficients:
            base = float(np.dot(padded(self.coefficients[function]), padded(features)))
            scale = next((self.scales[k] for k in coarser_keys(key) if k in self.scales), 1.0)
            return base * scale
        return self.fallback_per_unit * features[0]

    def predict(self, compilation) -> dict:
        """Instructions of one inference of a planned :class:`~tinyml.compiler.Compilation`:
        total and per layer."""
        return self.predict_schedule(compilation.graph, compilation.calls, compilation.patch)

    def predict_schedule(self, graph, calls, patch=None) -> dict:
        """Instructions of one inference of ``graph`` lowered to ``calls``, layer by layer or
        with the patch stage ``patch`` (a :class:`~tinyml.schedule.patches.PatchSchedule`):
        its layers count their MACs with halos and one call per patch."""
        staged = {} if patch is None else (
            patch.stage_features(graph, layer_features) if hasattr(patch, "stage_features")
            else stage_features(graph, patch))  # a row stage (--input-stream rows) or patches
        layers, unmodelled = [], set()
        for call in calls:
            if getattr(call, "alias", False) or is_alias(graph, call.op):  # no code
                continue
            features, pixels = staged.get(call.op.name) or (layer_features(graph, call), None)
            if call.function not in self.coefficients:
                unmodelled.add(call.function)
            key = kernel_key(graph, call, pixels)
            scale = SMALL_BLOCK_FACTOR if _small_blocks(call) else 1.0
            layers.append({"name": call.op.name, "function": call.function,
                           "features": list(features),
                           "instructions": round(scale * self.predict_call(key, features))})
        return {"instructions": sum(layer["instructions"] for layer in layers),
                "layers": layers, "unmodelled": sorted(unmodelled)}

    def to_json(self) -> dict:
        return {"coefficients": {k: list(v) for k, v in sorted(self.coefficients.items())},
                "fallback_per_unit": self.fallback_per_unit,
                "scales": dict(sorted(self.scales.items()))}

    @classmethod
    def from_json(cls, data: dict) -> "LatencyModel":
        return cls({k: tuple(float(c) for c in v) for k, v in data["coefficients"].items()},
                   float(data["fallback_per_unit"]), dict(data.get("scales", {})))


def nonnegative_lstsq(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least squares with coefficients >= 0: features whose coefficient comes out negative
    are dropped and the rest refitted (enough for a handful of features)."""
    active = list(range(design.shape[1]))
    coefficients = np.zeros(design.shape[1])
    while active:
        solution = np.linalg.lstsq(design[:, active], target, rcond=None)[0]
        if (solution >= 0).all():
            coefficients[active] = solution
            return coefficients
        active.pop(int(np.argmin(solution)))
    return coefficients


def fit(samples: Sequence[tuple[str, Sequence[int], int]], relative: bool = False
        ) -> LatencyModel:
    """``samples``: (kernel function, :data:`FEATURES` counts, measured instructions) per
    profiled layer. A kernel with fewer samples than features gets the work alone.
    ``relative``: minimize each layer's relative error rather than the absolute one, so that
    small layers (and the models made of them) are predicted as well as large ones."""
    by_function: dict[str, list[tuple[Sequence[int], int]]] = {}
    for key, features, instructions in samples:
        by_function.setdefault(key.split("|")[0], []).append((padded(features), instructions))
    coefficients = {}
    for function, points in by_function.items():
        design = np.array([p[0] for p in points], np.float64)
        measured = np.array([p[1] for p in points], np.float64)
        if len(points) > design.shape[1]:
            scale = 1.0 / np.maximum(measured, 1.0) if relative else np.ones(len(points))
            solution = nonnegative_lstsq(design * scale[:, None], measured * scale)
        else:
            solution = np.zeros(design.shape[1])
        if not solution.any():
            solution[0] = measured.sum() / max(design[:, 0].sum(), 1.0)
        coefficients[function] = tuple(float(c) for c in solution)
    total_work = sum(s[1][0] for s in samples)
    fallback = sum(s[2] for s in samples) / total_work if total_work else 10.0
    model = LatencyModel(coefficients, float(fallback))
    measured: dict[str, float] = {}
    predicted: dict[str, float] = {}
    for key, features, instructions in samples:
        base = model.predict_call(key.split("|")[0], features)
        for k in coarser_keys(key)[:None if "|" in key else 0]:
            measured[k] = measured.get(k, 0.0) + instructions
            predicted[k] = predicted.get(k, 0.0) + base
    model.scales = {k: measured[k] / predicted[k] for k in measured if predicted[k] > 0}
    return model
