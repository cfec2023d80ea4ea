"""Run the float graph on calibration data and record what quantization needs.

Every activation (graph inputs and every op output) gets an observer (:mod:`.observers`); the
float reference interpreter supplies the values, so the ranges are those of the graph that is
quantized, after the float passes. Histogram methods run the data twice (extent, then
histogram); minmax once. The same first pass also records the mean of each convolution's and
dense layer's input per channel, which bias correction uses.

``progress`` is called with the number of samples just processed (a CLI progress bar).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.quantize.data import Dataset
from tinyml.quantize.observers import Observer, make_observer
from tinyml.reference import run

#: Layers whose input channel means bias correction uses.
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass
class Calibration:
    method: str
    samples: int
    #: Real range to quantize, per activation tensor.
    ranges: dict[str, tuple[float, float]]
    #: Mean of each weighted layer's input over the calibration data, by the layer's output
    #: tensor: per channel (last axis) for convolutions, per feature for FULLY_CONNECTED.
    input_means: dict[str, np.ndarray] = field(default_factory=dict)


def passes_needed(method: str) -> int:
    return 2 if make_observer(method).needs_histogram else 1


def calibrate(graph: Graph, data: Dataset, method: str = "minmax",
              progress: Callable[[int], None] | None = None) -> Calibration:
    """Observe every activation of float ``graph`` over ``data``."""
    names = list(graph.inputs) + [n for op in graph.ops for n in op.outputs
                                  if not graph.tensors[n].is_constant
                                  and graph.tensors[n].dtype != "bool"]  # bools: no range
    observers: dict[str, Observer] = {n: make_observer(method) for n in dict.fromkeys(names)}
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    weighted = [op for op in graph.ops if op.kind in WEIGHTED_OPS]

    for sample in data.samples:
        values = _run(graph, sample)
        for name, obs in observers.items():
            obs.observe_extent(values[name])
        for op in weighted:
            x = values[op.inputs[0]]
            features = x.reshape(-1, graph.tensors[op.inputs[1]].shape[1]) \
                if op.kind == "FULLY_CONNECTED" else x.reshape(-1, x.shape[-1])
            key = op.outputs[0]
            sums[key] = sums.get(key, 0) + features.astype(np.float64).sum(axis=0)
            counts[key] = counts.get(key, 0) + features.shape[0]
        if progress:
            progress(1)
    if any(obs.needs_histogram for obs in observers.values()):
        for sample in data.samples:
            values = _run(graph, sample)
            for name, obs in observers.items():
                obs.observe_histogram(values[name])
            if progress:
                progress(1)

    ranges = {}
    for name, obs in observers.items():
        try:
            ranges[name] = obs.range()
        except ValueError as exc:
            raise TinymlError(f"tensor '{name}': {exc}") from None
    means = {key: total / counts[key] for key, total in sums.items()}
    return Calibration(method, len(data), ranges, means)


def _run(graph: Graph, sample: list[np.ndarray]) -> dict[str, np.ndarray]:
    with np.errstate(over="ignore", invalid="ignore"):
        return run(graph, sample, keep_all=True)
