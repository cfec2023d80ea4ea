"""Turn ``(a - b) * (a - b)`` back into SQUARED_DIFFERENCE(a, b).

Why: tf2onnx writes TF's SquaredDifference as Sub then Mul of the difference by itself.
Quantized as it stands, the difference is rounded to int8 before it is squared, so a small
difference keeps few significant bits and its square fewer still; TFLM's SQUARED_DIFFERENCE
subtracts and squares the (left-shifted) inputs in 32-bit integers and rounds once, which
is what the TFLite converter writes for the same layer. On real numbers the forms are equal.

Only float graphs, and only when nothing else reads the difference (it would still need
its own int8 tensor).
"""

from __future__ import annotations

from tinyml.ir import Graph, Op
from tinyml.ir.ops import NoAttrs
from tinyml.passes.framework import OptimizerPass, only_consumer, producer_of


class SquaredDifferenceFromSub(OptimizerPass):
    name = "squared_difference_from_sub"

    def match(self, graph: Graph, op: Op) -> bool:
        return _difference(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        sub = _difference(graph, op)
        # The MUL becomes the squared difference in place (its output keeps its name);
        # dead_code drops the SUB.
        op.kind, op.inputs, op.attrs = "SQUARED_DIFFERENCE", list(sub.inputs), NoAttrs()
        return True


def _plain(op: Op | None, kind: str) -> bool:
    return op is not None and op.kind == kind and \
        getattr(op.attrs, "activation", "NONE") == "NONE"


def _difference(graph: Graph, op: Op) -> Op | None:
    """The SUB whose result ``op`` squares, or None."""
    if not _plain(op, "MUL") or op.inputs[0] != op.inputs[1]:
        return None
    if graph.tensors[op.outputs[0]].dtype != "float32":
        return None
    sub = producer_of(graph, op.inputs[0])
    if not _plain(sub, "SUB") or not only_consumer(graph, op.inputs[0], op):
        return None
    return sub
