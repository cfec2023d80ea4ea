"""Turn ``relu(x) + k * relu(-x)`` back into PRELU(x, -k).

Why: TensorFlow computes Keras' PReLU as ``relu(x) - alpha * relu(-x)`` and tf2onnx keeps
that decomposition (Relu, Neg, Relu, Mul, Add; the ONNX frontend imports Neg as a MUL by
-1). Quantized as it stands it is four int8 ops with three requantizations and a MUL whose
output range is calibrated separately; TFLM's PRELU computes the same function in one op
with one rounding, which is what the TFLite converter writes for the same layer. The two
forms are equal on real numbers: for x >= 0 both give x, for x < 0 both give -k * x.

Only float graphs. The inner ``relu(-x)`` is matched as a RELU of the MUL by -1 or as that
MUL with its RELU fused (the ONNX frontend and ``fuse_float_activation`` fuse it).
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.ops import NoAttrs
from tinyml.passes.framework import OptimizerPass, producer_of


class PreluFromRelus(OptimizerPass):
    name = "prelu_from_relus"

    def match(self, graph: Graph, op: Op) -> bool:
        return _plan(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        x, k = _plan(graph, op)
        alpha = graph.unique_name(f"{op.outputs[0]}/alpha")
        data = (-k.data).astype(np.float32)
        graph.add_tensor(Tensor(alpha, data.shape, "float32", data=data))
        # The ADD becomes the PRELU in place (its output keeps its name); dead_code drops the
        # RELUs and MULs nobody reads any more.
        op.kind, op.inputs, op.attrs = "PRELU", [x, alpha], NoAttrs()
        return True


def _plain(graph: Graph, name: str, kind: str, activation: str = "NONE") -> Op | None:
    """The producer of ``name`` when it is a float ``kind`` op with that fused activation."""
    op = producer_of(graph, name)
    if op is None or op.kind != kind or graph.tensors[name].dtype != "float32":
        return None
    return op if getattr(op.attrs, "activation", "NONE") == activation else None


def _negated(graph: Graph, name: str) -> str | None:
    """x when ``name`` is relu(x * -1), the RELU standalone or fused into the MUL."""
    negative = _plain(graph, name, "RELU")
    negation = _plain(graph, negative.inputs[0], "MUL") if negative else \
        _plain(graph, name, "MUL", activation="RELU")
    minus = negation and _constant_operand(graph, negation)
    if not minus or not np.all(minus[1].data == -1):
        return None
    return minus[0]


def _constant_operand(graph: Graph, op: Op) -> tuple[str, Tensor] | None:
    """(the activation operand, the constant operand) of a two-input op, or None."""
    a, b = (graph.tensors[n] for n in op.inputs)
    if a.is_constant == b.is_constant:
        return None
    return (op.inputs[1], a) if a.is_constant else (op.inputs[0], b)


def _plan(graph: Graph, op: Op) -> tuple[str, Tensor] | None:
    add = _plain(graph, op.outputs[0], "ADD") if op.kind == "ADD" else None
    if add is None:
        return None
    for k in (0, 1):
        positive = _plain(graph, op.inputs[k], "RELU")
        scaled = _plain(graph, op.inputs[1 - k], "MUL")
        if positive is None or scaled is None:
            continue
        x = positive.inputs[0]
        split = _constant_operand(graph, scaled)
        if split is None:
            continue
        relu_name, slope = split
        if _negated(graph, relu_name) != x:
            continue
        # PRELU broadcasts alpha against x; the output must keep x's shape.
        out_shape = graph.tensors[op.outputs[0]].shape
        if tuple(np.broadcast_shapes(graph.tensors[x].shape, slope.shape)) != out_shape or \
                graph.tensors[x].shape != out_shape:
            continue
        return x, slope
    return None
