"""Instructions per inference, predicted per layer from a linear model fitted on QEMU runs.

Why: the search ranks many candidates; building and emulating each would take a minute. Per
kernel (``tinyml_conv2d_1x1_s8``, ``tinyml_depthwise_conv2d_s8``, ...) the instructions of one
call are close to linear in four counts (:func:`layer_features`): its work (MACs for
convolutions and fully connected layers, elements read and written for the others), its output
elements (requantization and stores), its input elements (padded copies, e.g. the depthwise
plane) and its weights (per-call repacking, e.g. for the DSP kernels). :func:`fit` finds the
non-negative coefficients per kernel by least squares on the per-layer counts of profiling
builds (:mod:`tinyml.nas.calibration` collects them from QEMU, ``-icount shift=0``); they are
stored as data (``tinyml/nas/data/<target>.json``).

A kernel never profiled falls back to the mean instructions per unit of work of all measured
layers: the estimate then says so (``unmodelled``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


FEATURES = ("work", "outputs", "inputs", "weights")


def layer_features(graph, call, macs: int | None = None) -> tuple[int, int, int, int]:
    """(work, output elements, input elements, weight elements) of one kernel call. ``macs``
    overrides the layer's MACs (a patch stage recomputes halos): the activation counts scale
    with it."""
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
    return work, outputs, inputs, weights


@dataclass
class LatencyModel:
    #: kernel function -> instructions per unit of each of :data:`FEATURES`
    coefficients: dict[str, tuple[float, ...]] = field(default_factory=dict)
    fallback_per_unit: float = 10.0

    def predict_call(self, function: str, features: Sequence[int]) -> float:
        if function in self.coefficients:
            return float(np.dot(self.coefficients[function], features))
        return self.fallback_per_unit * features[0]

    def predict(self, compilation) -> dict:
        """Instructions of one inference of a planned :class:`~tinyml.compiler.Compilation`:
        total and per layer. Layers of a patch stage count their MACs with halos."""
        graph = compilation.graph
        patched: dict[str, int] = {}
        schedule = compilation.patch
        if schedule is not None:
            patched = {graph.ops[i].name: macs for i, macs in
                       ((schedule.stage[j], m) for j, m in schedule.layer_macs.items())}
        layers, unmodelled = [], set()
        for call in compilation.calls:
            if getattr(call, "alias", False):
                continue
            features = layer_features(graph, call, patched.get(call.op.name))
            if call.function not in self.coefficients:
                unmodelled.add(call.function)
            layers.append({"name": call.op.name, "function": call.function,
                           "features": list(features),
                           "instructions": round(self.predict_call(call.function, features))})
        return {"instructions": sum(layer["instructions"] for layer in layers),
                "layers": layers, "unmodelled": sorted(unmodelled)}

    def to_json(self) -> dict:
        return {"coefficients": {k: list(v) for k, v in sorted(self.coefficients.items())},
                "fallback_per_unit": self.fallback_per_unit}

    @classmethod
    def from_json(cls, data: dict) -> "LatencyModel":
        return cls({k: tuple(float(c) for c in v) for k, v in data["coefficients"].items()},
                   float(data["fallback_per_unit"]))


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


def fit(samples: Sequence[tuple[str, Sequence[int], int]]) -> LatencyModel:
    """``samples``: (kernel function, :data:`FEATURES` counts, measured instructions) per
    profiled layer. A kernel with fewer samples than features gets the work alone."""
    by_function: dict[str, list[tuple[Sequence[int], int]]] = {}
    for function, features, instructions in samples:
        by_function.setdefault(function, []).append((features, instructions))
    coefficients = {}
    for function, points in by_function.items():
        design = np.array([p[0] for p in points], np.float64)
        measured = np.array([p[1] for p in points], np.float64)
        if len(points) > design.shape[1]:
            solution = nonnegative_lstsq(design, measured)
        else:
            solution = np.zeros(design.shape[1])
        if not solution.any():
            solution[0] = measured.sum() / max(design[:, 0].sum(), 1.0)
        coefficients[function] = tuple(float(c) for c in solution)
    total_work = sum(s[1][0] for s in samples)
    fallback = sum(s[2] for s in samples) / total_work if total_work else 10.0
    return LatencyModel(coefficients, float(fallback))
