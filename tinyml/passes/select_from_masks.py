"""Turn ``cast(c) * a + cast(not c) * b`` back into SELECT_V2(c, a, b).

Why: tf2onnx writes TF's float SelectV2 (``tf.where``) that way, not as ONNX Where, whether
it converts from Keras or from a TFLite file. The arithmetic form cannot be quantized: the
CAST of a BOOL mask to float has no int8 kernel in TFLM, and the products would spend codes
on zeros. SELECT_V2 is what the model means, and TFLM runs it in int8 (copying codes). For
finite a and b the two forms are equal (one product is exactly 0, the other exactly a or
b); the float graph of an exported model only ever holds finite values.

Only float graphs: the pattern is the exporter's, and no int8 graph contains a CAST to float.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op
from tinyml.ir.ops import NoAttrs
from tinyml.passes.framework import OptimizerPass, producer_of


class SelectFromMasks(OptimizerPass):
    name = "select_from_masks"

    def match(self, graph: Graph, op: Op) -> bool:
        return _plan(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        condition, if_true, if_false = _plan(graph, op)
        # The ADD becomes the select in place: its output keeps its name, the MULs and CASTs
        # left unread go with dead_code.
        op.kind, op.inputs, op.attrs = "SELECT_V2", [condition, if_true, if_false], NoAttrs()
        return True


def _masked(graph: Graph, name: str) -> tuple[str, str] | None:
    """(bool mask, value) when ``name`` is ``mul(cast(mask), value)`` in float (either order)."""
    mul = producer_of(graph, name)
    if mul is None or mul.kind != "MUL" or _activated(mul):
        return None
    for k in (0, 1):
        cast = producer_of(graph, mul.inputs[k])
        if cast is not None and cast.kind == "CAST" and \
                graph.tensors[cast.inputs[0]].dtype == "bool" and \
                graph.tensors[cast.outputs[0]].dtype == "float32":
            return cast.inputs[0], mul.inputs[1 - k]
    return None


def _activated(op: Op) -> bool:
    """A fused activation clamps the result: not a plain product or sum."""
    return getattr(op.attrs, "activation", "NONE") != "NONE"


def _negation_of(graph: Graph, a: str, b: str) -> bool:
    """True when bool tensor ``a`` is LOGICAL_NOT(``b``)."""
    op = producer_of(graph, a)
    return op is not None and op.kind == "LOGICAL_NOT" and op.inputs[0] == b


def _plan(graph: Graph, op: Op) -> tuple[str, str, str] | None:
    if op.kind != "ADD" or _activated(op):
        return None
    if graph.tensors[op.outputs[0]].dtype != "float32":
        return None
    first, second = _masked(graph, op.inputs[0]), _masked(graph, op.inputs[1])
    if first is None or second is None:
        return None
    (c1, v1), (c2, v2) = first, second
    if _negation_of(graph, c2, c1):
        result = c1, v1, v2
    elif _negation_of(graph, c1, c2):
        result = c2, v2, v1
    else:
        return None
    # SELECT_V2 broadcasts its three operands; the sum's shape must be what it makes.
    shapes = [graph.tensors[n].shape for n in result]
    if tuple(np.broadcast_shapes(*shapes)) != tuple(graph.tensors[op.outputs[0]].shape):
        return None
    return result
