"""Test fixture: int4 graphs made from int8 ones (the kernel tests' hand-built and
converter-made int8 graphs; tinyml's quantizer, tinyml.quantize.int4, starts from float ones).

:func:`requantize_int4` takes a quantized int8 graph and requantizes the filter (input 1) of
every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED to int4 the plainest way, round to
nearest: per output channel (axis 0, or 3 for DEPTHWISE_CONV_2D, as the int8 filters), the
real weights w = scale * (q - zero_point), the new scale max|w| / 7, the int4 values
round(w / scale) in [-7, 7], zero point 0; the bias is re-derived as round(real bias /
(input scale * new scale)). The result is a valid int4 graph (the contract of the int4
kernels: dtype "int4", np.int8 data in [-8, 7], per-channel symmetric), whose accuracy is
whatever RTN gives: it is a fixture for the kernels and code generation, not a quantizer
(tinyml.quantize has that job).
"""

from __future__ import annotations

import copy

import numpy as np

from tinyml.ir import Graph, Quantization, Tensor

#: Ops whose filter may be int4, with the filter's quantization axis and the bias's input
#: (CONV_2D_ADD, the fused CONV_2D + ADD of tinyml.passes, for graphs built already fused).
INT4_OPS = {"CONV_2D": (0, 2), "DEPTHWISE_CONV_2D": (3, 2), "FULLY_CONNECTED": (0, 2),
            "CONV_2D_ADD": (0, 3)}


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """Per-channel ``values`` shaped to broadcast along ``axis`` of an ndim-D array."""
    shape = [1] * ndim
    shape[axis] = -1
    return np.asarray(values, np.float64).reshape(shape)


def requantize_int4(graph: Graph, ops: set[str] | None = None) -> Graph:
    """A copy of ``graph`` with the filters of its conv / fully connected layers in int4 (all
    of them, or those of the layers named in ``ops``)."""
    graph = copy.deepcopy(graph)
    done: set[str] = set()
    for op in graph.ops:
        if op.kind not in INT4_OPS or (ops is not None and op.name not in ops):
            continue
        x_t, w_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        if w_t.name in done or w_t.dtype != "int8" or w_t.quant is None or \
                not w_t.is_constant or x_t.quant is None:
            continue
        axis, bias_input = INT4_OPS[op.kind]
        q = np.asarray(w_t.data, np.float64)
        old = w_t.quant
        if old.per_channel:
            real = (q - _along(old.zero_point, axis, q.ndim)) * _along(old.scale, axis, q.ndim)
        else:
            real = (q - float(old.zero_point[0])) * float(old.scale[0])
        others = tuple(a for a in range(q.ndim) if a != axis)
        peak = np.abs(real).max(axis=others)
        scale = np.where(peak > 0, peak / 7, 1.0).astype(np.float32)
        values = np.clip(np.round(real / _along(scale, axis, q.ndim)), -8, 7).astype(np.int8)
        graph.tensors[w_t.name] = Tensor(w_t.name, w_t.shape, "int4",
                                         Quantization(scale, np.zeros(scale.size), axis),
                                         values)
        done.add(w_t.name)
        if len(op.inputs) > bias_input and op.inputs[bias_input]:
            b_t = graph.tensors[op.inputs[bias_input]]
            if b_t.is_constant and b_t.quant is not None:
                real_bias = np.asarray(b_t.data, np.float64).reshape(-1) * \
                    np.asarray(b_t.quant.scale, np.float64)
                bias_scale = (np.float32(x_t.scale()) * scale).astype(np.float32)
                data = np.clip(np.round(real_bias / bias_scale.astype(np.float64)),
                               -(1 << 31), (1 << 31) - 1).astype(np.int32)
                graph.tensors[b_t.name] = Tensor(
                    b_t.name, b_t.shape, "int32",
                    Quantization(bias_scale, np.zeros(bias_scale.size), 0), data)
    return graph
