"""Which filters get 4 bits: ``--weights int8|int4|mixed`` and the ``--flash`` budget.

Why per layer: layers differ a lot in what 4 bits cost. A wide dense layer holds most of the
bytes and often tolerates int4; a thin first convolution holds few bytes and feeds every
later layer its error. Under a flash budget the right choice is the set of layers whose int4
saves the needed bytes for the least added error.

The rule (``mixed``): starting from int8 everywhere, each eligible layer (a CONV_2D,
DEPTHWISE_CONV_2D or FULLY_CONNECTED filter, :data:`tinyml.quantize.int4.INT4_OPS`) is made
int4 on its own and the graph run by the reference interpreter on up to
:data:`MEASURE_SAMPLES` calibration samples; its cost is the increase of the output's mean
squared error against the float graph (clamped at 0), its gain the bytes it saves (n - ceil(n
/ 2) for n weights). Layers are then switched to int4 greedily in order of increasing cost
per byte saved until the weight bytes fit the budget (ties: the larger saving first); then
every chosen layer the budget can spare goes back to int8, costliest first (the last layer
taken may have saved much more than was missing). This
treats the layers' errors as additive, the usual first-order assumption of mixed-precision
searches; it needs one graph run per layer, not one per combination.

The budget counts the stored bytes of every constant of the quantized graph (filters, int32
biases, other constant operands; int4 filters at two codes per byte): what the model's
weights take in flash, not the code. A budget that even all-int4 filters do not meet is a
one-line :class:`TinymlError` naming the bytes needed and the layer holding the most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph, Op
from tinyml.ir.tensor import packed_bytes, storage_bytes
from tinyml.quantize.calibrate import Calibration
from tinyml.quantize.data import Dataset
from tinyml.quantize.hessian import collect_moments
from tinyml.quantize.int4 import INT4_OPS, Int4Filter, quantize_int4
from tinyml.quantize.params import dequantize_array, quantize_array
from tinyml.quantize.quantizer import QuantizedGraph, quantize_graph
from tinyml.reference import run

WEIGHT_MODES = ("int8", "int4", "mixed")
#: Calibration samples the mixed choice runs each candidate graph on.
MEASURE_SAMPLES = 16

Int4Weights = dict[str, Int4Filter]


def eligible_layers(fg: Graph) -> list[Op]:
    """Layers whose filter may be int4: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with a
    float constant filter."""
    layers = []
    for op in fg.ops:
        if op.kind in INT4_OPS and len(op.inputs) > 1 and op.inputs[1]:
            w = fg.tensors[op.inputs[1]]
            if w.is_constant and w.dtype == "float32":
                layers.append(op)
    return layers


def int4_weights(fg: Graph, data: Dataset, rounding: str, bias_correction: bool = True,
                 progress: Callable[[int], None] | None = None) -> Int4Weights:
    """The int4 filter of every eligible layer, rounded by ``rounding`` (:mod:`.int4`), by
    the layer's output tensor. Roundings other than RTN run the float graph over ``data``
    once more for the layers' input moments (:mod:`.hessian`; centered when bias correction
    will remove the mean error, whose exact mean patch it then uses)."""
    layers = eligible_layers(fg)
    moments = {} if rounding == "rtn" else collect_moments(fg, data, layers, progress)
    weights: Int4Weights = {}
    for op in layers:
        key = op.outputs[0]
        m = moments.get(key)
        codes, quant = quantize_int4(fg.tensors[op.inputs[1]].data, op.kind, rounding,
                                     m.hessian(bias_correction) if m is not None else None,
                                     m.count if m is not None else None)
        weights[key] = Int4Filter(codes, quant, m.mean if m is not None else None)
    return weights


def weight_bytes(graph: Graph) -> int:
    """Stored bytes of the constants of a quantized graph (what the flash budget counts)."""
    return sum(storage_bytes(t) for t in graph.constants() if not t.folded)


def layer_bytes(graph: Graph) -> dict[str, int]:
    """Stored bytes of each op's constant inputs (a constant read twice counted once)."""
    sizes: dict[str, int] = {}
    seen: set[str] = set()
    for op in graph.ops:
        for t in graph.op_inputs(op):
            if t is not None and t.is_constant and not t.folded and t.name not in seen:
                seen.add(t.name)
                sizes[op.name] = sizes.get(op.name, 0) + storage_bytes(t)
    return sizes


@dataclass
class MixedChoice:
    """The outcome of :func:`choose_mixed`: the int4 layers (by output tensor), and per
    eligible layer its measured cost (added output MSE) and bytes saved."""

    int4: list[str]
    cost: dict[str, float]
    saved: dict[str, int]
    budget: int
    int8_bytes: int


def _output_mse(graph: Graph, samples, references) -> float:
    total, count = 0.0, 0
    for sample, reference in zip(samples, references):
        codes = [quantize_array(x, graph.tensors[n].quant) for x, n in zip(sample, graph.inputs)]
        outputs = run(graph, codes)
        for name, want in zip(graph.outputs, reference):
            t = graph.tensors[name]
            have = dequantize_array(outputs[name], t.quant) if t.quant is not None \
                else outputs[name].astype(np.float64)
            total += float(np.sum((have - np.asarray(want, np.float64)) ** 2))
            count += int(np.size(want))
    return total / max(count, 1)


def choose_mixed(fg: Graph, calibration: Calibration, bias_correction: bool,
                 candidates: Int4Weights, data: Dataset, budget: int,
                 progress: Callable[[int], None] | None = None) -> MixedChoice:
    """The layers to make int4 so that the weights fit ``budget`` bytes (module docstring)."""
    everything = quantize_graph(fg, calibration, bias_correction, candidates).graph
    smallest = weight_bytes(everything)
    if smallest > budget:
        sizes = layer_bytes(everything)
        largest = max(sizes, key=sizes.get) if sizes else "none"
        raise TinymlError(f"flash budget {budget:,} B cannot be met: the weights need at least "
                          f"{smallest:,} B with every conv/dense filter int4 (largest layer "
                          f"'{largest}': {sizes.get(largest, 0):,} B)")
    base = quantize_graph(fg, calibration, bias_correction).graph
    int8_bytes = weight_bytes(base)
    saved = {key: packed_bytes("int8", codes.size) - packed_bytes("int4", codes.size)
             for key, codes in ((k, f.codes) for k, f in candidates.items())}
    if int8_bytes <= budget:
        return MixedChoice([], {}, saved, budget, int8_bytes)

    samples = data.subset(MEASURE_SAMPLES).samples
    references = []
    for sample in samples:
        with np.errstate(over="ignore", invalid="ignore"):
            outputs = run(fg, sample)
        references.append([outputs[n] for n in fg.outputs])
    base_mse = _output_mse(base, samples, references)
    cost: dict[str, float] = {}
    for key in candidates:
        one = quantize_graph(fg, calibration, bias_correction, {key: candidates[key]}).graph
        cost[key] = max(_output_mse(one, samples, references) - base_mse, 0.0)
        if progress:
            progress(1)

    order = sorted(candidates, key=lambda k: (cost[k] / max(saved[k], 1), -saved[k]))
    chosen: list[str] = []
    need = int8_bytes
    for key in order:
        if need <= budget:
            break
        chosen.append(key)
        need -= saved[key]
    # The last layer taken may save far more than was missing: give back to int8, costliest
    # first, every chosen layer the budget can spare.
    for key in sorted(chosen, key=lambda k: -cost[k]):
        if need + saved[key] <= budget:
            chosen.remove(key)
            need += saved[key]
    return MixedChoice(chosen, cost, saved, budget, int8_bytes)


def quantize_weights(fg: Graph, calibration: Calibration, bias_correction: bool,
                     data: Dataset, mode: str, rounding: str, budget: int | None = None,
                     progress: Callable[[int], None] | None = None,
                     types: dict[str, str] | None = None
                     ) -> tuple[QuantizedGraph, MixedChoice | None]:
    """The quantized graph with ``mode``'s filters: all int8, all eligible int4, or the
    mixed choice under ``budget`` bytes. ``types``: each layer's activation type
    (:mod:`.int16`); int4 filters need int8 activations."""
    if mode != "int8" and types and "int16" in types.values():
        raise TinymlError(f"--weights {mode} needs int8 activations: TFLM's 16x8 kernels read "
                          f"int8 filters only")
    if mode not in WEIGHT_MODES:
        raise TinymlError(f"unknown weights mode '{mode}' (known: {', '.join(WEIGHT_MODES)})")
    if mode == "mixed" and budget is None:
        raise TinymlError("--weights mixed needs a flash budget (--flash BYTES)")
    if mode == "int8":
        return quantize_graph(fg, calibration, bias_correction, types=types), None
    candidates = int4_weights(fg, data, rounding, bias_correction, progress)
    if mode == "int4":
        return quantize_graph(fg, calibration, bias_correction, candidates), None
    choice = choose_mixed(fg, calibration, bias_correction, candidates, data, budget, progress)
    chosen = {key: candidates[key] for key in choice.int4}
    return quantize_graph(fg, calibration, bias_correction, chosen), choice
