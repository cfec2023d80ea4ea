"""Sparse test layers and models: quantized graphs whose smallest-magnitude weights are zeroed.

Magnitude pruning is what makes real sparse weights (tinyml prune), so the tests prune the
same way: per tensor, the given fraction of the weights with the smallest |q| become 0
(ties broken at random so the fraction is exact). Values may also be pinned to int4's range
and the tensor's dtype set to "int4" (the IR's 4-bit weights: int8 data in [-8, 7]); the
numpy reference computes int4 weights exactly as int8 ones of the same values, so the
oracle runs on the int8 twin of the graph.
"""

from __future__ import annotations

import copy

import numpy as np

from support.graph_builder import ACTIVATIONS, Builder, acc_scale, quantization_of
from tinyml.ir import Graph
from tinyml.ir import ops as irops

#: Ops whose input 1 is a filter sparse storage may hold.
FILTER_OPS = ("FULLY_CONNECTED", "CONV_2D")


def prune(data: np.ndarray, sparsity: float, rng: np.random.Generator) -> np.ndarray:
    """``data`` with round(sparsity * size) of its smallest-magnitude values set to 0."""
    flat = np.asarray(data).reshape(-1).copy()
    count = int(round(sparsity * flat.size))
    order = np.lexsort((rng.random(flat.size), np.abs(flat.astype(np.int64))))
    flat[order[:count]] = 0
    return flat.reshape(np.shape(data))


def to_int4(data: np.ndarray) -> np.ndarray:
    """int8 weights brought into int4's range: q / 16 rounded, clipped to [-8, 7] (test
    values only; tinyml's int4 quantizer chooses its own scales)."""
    return np.clip(np.round(np.asarray(data, np.float64) / 16.0), -8, 7).astype(np.int8)


def sparsify(graph: Graph, sparsity: float, seed: int = 0, int4: bool = False,
             ops: tuple[str, ...] = FILTER_OPS) -> tuple[Graph, Graph]:
    """(the graph to compile, its int8 twin for the reference): the filters of ``ops`` pruned
    to ``sparsity`` (int4 values and dtype when ``int4``). Without int4 both are the same
    graph."""
    rng = np.random.default_rng(seed)
    graph = copy.deepcopy(graph)
    filters = []
    for op in graph.ops:
        if op.kind in ops and len(op.inputs) > 1 and op.inputs[1] in graph.tensors:
            t = graph.tensors[op.inputs[1]]
            if t.is_constant and t.dtype == "int8" and t.name not in filters:
                data = np.asarray(t.data)
                if int4:
                    data = to_int4(data)
                t.data = prune(data, sparsity, rng)
                filters.append(t.name)
    if not int4:
        return graph, graph
    compiled = copy.deepcopy(graph)
    for name in filters:
        compiled.tensors[name].dtype = "int4"
    return compiled, graph


def fc_layer(seed: int, depth: int, units: int, batches: int = 1,
             per_channel: bool = True) -> tuple[Graph, list[np.ndarray]]:
    """One FULLY_CONNECTED layer with random quantization and a bias."""
    b = Builder(f"sparse_fc{seed}", 5000 + seed)
    x = b.input((batches, depth), scale=b.scale(-3.5, -2))
    w = b.int8_const((units, depth), 0 if per_channel else None, scale=b.scale(-3, -1))
    sx, _ = quantization_of(b, x)
    bias = b.bias(units, float(np.float32(sx * float(b.graph.tensors[w].quant.scale[0]))))
    attrs = irops.FullyConnectedAttrs(ACTIVATIONS[seed % 3], False)
    return b.finish(b.op("FULLY_CONNECTED", [x, w, bias], attrs, acc_scale(b, x, w, depth)))


def conv_layer(seed: int, hw: tuple[int, int], cin: int, cout: int, kernel: tuple[int, int],
               stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
               padding: tuple[int, int, int, int] = (0, 0, 0, 0),
               batches: int = 1) -> tuple[Graph, list[np.ndarray]]:
    """One CONV_2D layer (one group, per-channel weights, a bias)."""
    b = Builder(f"sparse_conv{seed}", 6000 + seed)
    x = b.input((batches, hw[0], hw[1], cin), scale=b.scale(-3.5, -2))
    w = b.int8_const((cout, kernel[0], kernel[1], cin), 0)
    sx, _ = quantization_of(b, x)
    bias = b.bias(cout, sx)
    attrs = irops.Conv2DAttrs(stride, dilation, padding, ACTIVATIONS[seed % 3])
    taps = kernel[0] * kernel[1] * cin
    return b.finish(b.op("CONV_2D", [x, w, bias], attrs, acc_scale(b, x, w, taps)))
