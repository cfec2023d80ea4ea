"""Turn ``x * rsqrt(max(sum(x * x, last axis), eps))`` back into L2_NORMALIZATION(x).

Why: TensorFlow computes ``tf.math.l2_normalize`` that way and tf2onnx keeps it (Mul,
ReduceSum, Max, Sqrt, Reciprocal, Mul; the ONNX frontend imports Sqrt -> Reciprocal as
RSQRT). Quantized as it stands it is five int8 ops, each rounding, the sum of squares
calibrated on its own range; TFLM's L2_NORMALIZATION computes the same function in one op
with a fixed 1/128 output scale, which is what the TFLite converter writes for the same
layer. The forms agree on real numbers: TFLite's kernel computes x / max(norm, 1e-6), and
sqrt(max(s, eps)) = max(sqrt(s), 1e-6) for eps = 1e-12 (TF's default); a smaller eps only
differs for vectors shorter than 1e-6.

Only float graphs, and only over the last (channel) axis, the one TFLite normalizes.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op
from tinyml.ir.ops import NoAttrs
from tinyml.passes.framework import OptimizerPass, producer_of

#: TF's default epsilon: the largest that leaves the result equal to TFLite's kernel.
MAX_EPSILON = 1e-12


class L2FromRsqrt(OptimizerPass):
    name = "l2_from_rsqrt"

    def match(self, graph: Graph, op: Op) -> bool:
        return _plan(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        # The final MUL becomes the normalization in place (its output keeps its name);
        # dead_code drops the chain nobody reads any more.
        op.kind, op.inputs, op.attrs = "L2_NORMALIZATION", [_plan(graph, op)], NoAttrs()
        return True


def _producer(graph: Graph, name: str, kind: str) -> Op | None:
    """The float ``kind`` op producing ``name``, without a fused activation."""
    op = producer_of(graph, name)
    if op is None or op.kind != kind or graph.tensors[name].dtype != "float32":
        return None
    return op if getattr(op.attrs, "activation", "NONE") == "NONE" else None


def _sum_of_squares_of(graph: Graph, name: str) -> str | None:
    """x when ``name`` is max(sum(x * x over the last axis, kept), eps <= MAX_EPSILON)."""
    maximum = _producer(graph, name, "MAXIMUM")
    if maximum is None:
        return None
    tensors = [graph.tensors[n] for n in maximum.inputs]
    consts = [t for t in tensors if t.is_constant]
    if len(consts) != 1 or consts[0].size != 1 or not 0 <= float(
            np.asarray(consts[0].data).ravel()[0]) <= MAX_EPSILON:
        return None
    total = _producer(graph, next(t.name for t in tensors if not t.is_constant), "SUM")
    if total is None or not total.attrs.keep_dims:
        return None
    square = _producer(graph, total.inputs[0], "MUL")
    if square is None or square.inputs[0] != square.inputs[1]:
        return None
    rank = len(graph.tensors[square.inputs[0]].shape)
    if tuple(a % rank for a in total.attrs.axes) != (rank - 1,):
        return None
    return square.inputs[0]


def _plan(graph: Graph, op: Op) -> str | None:
    if op.kind != "MUL" or _producer(graph, op.outputs[0], "MUL") is None:
        return None
    for k in (0, 1):
        rsqrt = _producer(graph, op.inputs[k], "RSQRT")
        x = op.inputs[1 - k]
        if rsqrt is not None and _sum_of_squares_of(graph, rsqrt.inputs[0]) == x and \
                graph.tensors[x].shape == graph.tensors[op.outputs[0]].shape:
            return x
    return None
