"""Make every RESHAPE an alias: a new name and shape for the same bytes, with no code.

Why: in row-major NHWC a reshape does not move a single byte, yet TFLM copies the tensor into a
second buffer. After this pass each RESHAPE has one input and a static target shape
(``ReshapeAttrs.shape``), identity reshapes are gone and chains of reshapes read the original
tensor; the memory planner gives a RESHAPE's output the offset of its input (see
:func:`alias_roots`) and code generators emit nothing for it (see :func:`is_alias`).

Sharing storage is always legal for the values (same bytes, same order); the planner keeps the
shared buffer alive until the last reader of *any* of its names, and never lets an op write in
place over it while another name is still to be read.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.ops import ReshapeAttrs
from tinyml.passes.framework import OptimizerPass, producer_of, remove_op, rename_uses


def is_alias(graph: Graph, op: Op) -> bool:
    """True for ops that compute nothing: their output shares the input's storage."""
    if op.kind != "RESHAPE":
        return False
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    return not x.is_constant and x.dtype == y.dtype and x.nbytes == y.nbytes


def alias_roots(graph: Graph) -> dict[str, str]:
    """For every tensor written by an alias op, the tensor that owns its storage (following
    chains of aliases back to a tensor that some real op, or the caller, writes)."""
    roots: dict[str, str] = {}
    for op in graph.ops:  # topological: an alias's input root is known before the alias
        if is_alias(graph, op):
            source = op.inputs[0]
            roots[op.outputs[0]] = roots.get(source, source)
    return roots


class ReshapeAlias(OptimizerPass):
    name = "reshape_alias"

    def match(self, graph: Graph, op: Op) -> bool:
        if op.kind != "RESHAPE" or graph.tensors[op.inputs[0]].is_constant:
            return False  # reshapes of constants are folded
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if len(op.inputs) > 1 or op.attrs.shape != y.shape:
            return True  # normalize: static target, one input
        if _identity(graph, x, y):
            return True
        source = producer_of(graph, op.inputs[0])
        return source is not None and source.kind == "RESHAPE"  # chain

    def transform(self, graph: Graph, op: Op) -> bool:
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        if len(op.inputs) > 1 or op.attrs.shape != y.shape:
            op.inputs = op.inputs[:1]
            op.attrs = dataclasses.replace(op.attrs or ReshapeAttrs(), shape=tuple(y.shape))
            return True
        if _identity(graph, x, y):
            rename_uses(graph, y.name, x.name)
            remove_op(graph, op)
            return True
        source = producer_of(graph, op.inputs[0])
        op.inputs = [source.inputs[0]]  # the intermediate reshape dies if nobody else reads it
        return True


def _identity(graph: Graph, x: Tensor, y: Tensor) -> bool:
    """A reshape to the same shape and quantization: readers of ``y`` can read ``x``."""
    return (x.shape == y.shape and x.dtype == y.dtype and same_quantization(x, y)
            and y.name not in graph.outputs)


def same_quantization(x: Tensor, y: Tensor) -> bool:
    if x.quant is None or y.quant is None:
        return x.quant is None and y.quant is None
    return (x.quant.axis == y.quant.axis
            and np.array_equal(x.quant.scale, y.quant.scale)
            and np.array_equal(x.quant.zero_point, y.quant.zero_point))
