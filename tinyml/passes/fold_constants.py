"""Fold ops whose inputs are all constant into constant tensors.

Why: a microcontroller should not spend cycles or RAM on values known at compile time. Keras
Flatten with a dynamic batch leaves a SHAPE -> STRIDED_SLICE -> PACK chain that computes
RESHAPE's target shape; ONNX exporters leave constant subgraphs (a QUANTIZE of float weights,
a TRANSPOSE of a constant). Shape inference already evaluated the shape-only ops; this pass
removes them and evaluates every other all-constant op with its *reference kernel*, so the
folded value is exactly what the interpreter would have computed at run time (bit-exact by
construction). Constants that are no longer read are pruned at the end of the pipeline.

An op producing a graph output is left alone: the output must be computed into the arena
where the caller reads it. So are the variable ops (READ_VARIABLE reads no tensor, yet its
value changes from one invocation to the next; ASSIGN_VARIABLE has an effect, no output).
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import UnsupportedOpError
from tinyml.ir import DTYPES, Graph, Op
from tinyml.ir.ops import VARIABLE_OPS
from tinyml.passes.framework import OptimizerPass, remove_op


class FoldConstants(OptimizerPass):
    name = "fold_constants"

    def match(self, graph: Graph, op: Op) -> bool:
        if op.kind in VARIABLE_OPS:
            return False
        if any(name in graph.outputs for name in op.outputs):
            return False
        outs = graph.op_outputs(op)
        if all(t.is_constant for t in outs):
            return True  # evaluated at shape inference
        ins = [t for t in graph.op_inputs(op) if t is not None]
        return bool(ins) and all(t.is_constant for t in ins)

    def transform(self, graph: Graph, op: Op) -> bool:
        outs = graph.op_outputs(op)
        if not all(t.is_constant for t in outs):
            for t, value in zip(outs, _evaluate(graph, op)):
                t.data = value
        remove_op(graph, op)
        return True


def _evaluate(graph: Graph, op: Op) -> list[np.ndarray]:
    from tinyml.reference.kernels import KERNELS, KernelCall
    kernel = KERNELS.get(op.kind)
    if kernel is None:
        raise UnsupportedOpError(op.kind, op.name, sorted(KERNELS), detail="no reference kernel")
    ins = graph.op_inputs(op)
    outs = graph.op_outputs(op)
    results = kernel(KernelCall(op, [None if t is None else t.data for t in ins], ins, outs))
    if isinstance(results, np.ndarray):
        results = [results]
    values = []
    for t, value in zip(outs, results):
        value = np.asarray(value)
        if value.shape != t.shape or value.dtype != np.dtype(DTYPES[t.dtype]):
            raise AssertionError(f"folding {op.kind} ('{op.name}') produced "
                                 f"{value.dtype}{list(value.shape)}, expected "
                                 f"{t.dtype}{list(t.shape)}")
        values.append(value)
    return values
