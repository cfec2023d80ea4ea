"""Fuse a standalone float clamp (RELU, RELU6, CLIP to [-1, 1], [0, 6] or [0, inf)) into its
producer's fused activation, before quantization.

Why: quantization picks each tensor's int8 range from the values it holds. A convolution
followed by a separate RELU has a signed output whose negative half is thrown away next, so
half of its 256 codes are wasted; fused, the convolution's output range starts at 0 and the
clamp costs nothing at run time. The TFLite converter does the same before quantizing.

On float tensors a fused clamp and a standalone one compute the same values (up to the sign of
a zero, which no later layer can observe through int8), so the rewrite needs none of the
code-by-code proof that the int8 :mod:`.fuse_activation` makes. Conditions: the producer is
float, has no activation yet and the clamp is the only reader of its output.
"""

from __future__ import annotations

import dataclasses
import math

from tinyml.ir import Graph, Op
from tinyml.passes.framework import OptimizerPass, only_consumer, producer_of, remove_op
from tinyml.passes.fuse_activation import PRODUCERS

#: Real-valued bounds of each fused activation.
_BOUNDS = {(0.0, math.inf): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}


def fused_equivalent(op: Op) -> str | None:
    """The fused activation a standalone clamp op is, or None."""
    if op.kind in ("RELU", "RELU6"):
        return op.kind
    if op.kind == "CLIP":
        return _BOUNDS.get((float(op.attrs.min), float(op.attrs.max)))
    return None


class FuseFloatActivation(OptimizerPass):
    name = "fuse_float_activation"

    def match(self, graph: Graph, op: Op) -> bool:
        return self._producer(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        producer = self._producer(graph, op)
        field = PRODUCERS[producer.kind]
        producer.attrs = dataclasses.replace(producer.attrs, **{field: fused_equivalent(op)})
        producer.outputs = [op.outputs[0] if n == op.inputs[0] else n for n in producer.outputs]
        remove_op(graph, op)
        return True

    @staticmethod
    def _producer(graph: Graph, op: Op) -> Op | None:
        if fused_equivalent(op) is None:
            return None
        x = graph.tensors[op.inputs[0]]
        if x.is_constant or x.dtype != "float32":
            return None
        producer = producer_of(graph, op.inputs[0])
        if producer is None or producer.kind not in PRODUCERS or producer.kind == "CONV_2D_ADD":
            return None
        if getattr(producer.attrs, PRODUCERS[producer.kind]) != "NONE":
            return None
        if not only_consumer(graph, op.inputs[0], op):
            return None
        return producer
