"""Remove ops whose results nobody reads.

Why: other rewrites leave such ops behind (the first RESHAPE of a chain once the second reads
the original tensor, a SHAPE whose constant result was folded) and a frontend may import
outputs a model never uses. Every op of the IR is a pure function of its inputs, so an op none
of whose outputs is read by another op or by the caller can go without changing any result.
The exception is an op with an effect of its own (:data:`~tinyml.ir.ops.SIDE_EFFECT_OPS`: an
ASSIGN_VARIABLE writes the state the next invocation reads): it is never dead.
"""

from __future__ import annotations

from tinyml.ir import Graph, Op
from tinyml.ir.ops import SIDE_EFFECT_OPS
from tinyml.passes.framework import OptimizerPass, consumers_of, remove_op


class EliminateDeadOps(OptimizerPass):
    name = "dead_code"

    def match(self, graph: Graph, op: Op) -> bool:
        if op.kind in SIDE_EFFECT_OPS:
            return False
        return not any(name in graph.outputs or consumers_of(graph, name)
                       for name in op.outputs)

    def transform(self, graph: Graph, op: Op) -> bool:
        remove_op(graph, op)
        return True
