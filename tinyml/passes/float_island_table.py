"""Fold an int8 -> float32 -> int8 island of exact float ops into one int8 lookup table.

Why: the TFLite converter keeps an op that has no int8 kernel in float32 between a DEQUANTIZE
and a QUANTIZE, and TFLM runs it in float (Keras' LayerNormalization negates its mean with a
float NEG). The island's int8 input has only 256 codes, so the whole island is a function of
one byte: evaluating TFLM's float arithmetic (DEQUANTIZE, the ops, QUANTIZE) on every code at
compile time gives a 256-entry table (LOOKUP_TABLE), and the device does one load per element
instead of float math, which Cortex-M0+/M3 would emulate in software.

Bit-exact: the tables are computed by the reference's float kernels, which compute what TFLM's
do: exact IEEE float32 operations (sign flips, squares, floor/ceil/round, clamps), or the C
library's ``sinf``/``cosf`` that TFLM on the host calls (:data:`ISLAND_OPS`).

When it is legal (``match``): a QUANTIZE to int8 whose float input comes from a chain of
:data:`ISLAND_OPS`, each read only by the next, starting at a DEQUANTIZE of a per-tensor int8
tensor; no intermediate float tensor is a graph output.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op
from tinyml.ir.ops import TableAttrs
from tinyml.passes.code_tables import EVERY_CODE, as_codes, run_kernel
from tinyml.passes.framework import OptimizerPass, only_consumer, producer_of, remove_op, \
    replace_op

#: Float kernels the reference computes as TFLM does (reference/kernels/float_math.py).
ISLAND_OPS = ("NEG", "SQUARE", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "ABS", "RELU", "RELU6")


def _island(graph: Graph, quantize: Op) -> list[Op] | None:
    """[DEQUANTIZE, float ops..., QUANTIZE] ending at ``quantize``, or None."""
    out = graph.tensors[quantize.outputs[0]]
    if out.dtype != "int8" or out.quant is None or out.quant.per_channel:
        return None
    chain = [quantize]
    tensor = quantize.inputs[0]
    while True:
        producer = producer_of(graph, tensor)
        if producer is None or not only_consumer(graph, tensor, chain[0]):
            return None
        if graph.tensors[tensor].dtype != "float32":
            return None
        chain.insert(0, producer)
        if producer.kind == "DEQUANTIZE":
            source = graph.tensors[producer.inputs[0]]
            if source.dtype != "int8" or source.quant is None or source.quant.per_channel:
                return None
            return chain if len(chain) > 2 else None
        if producer.kind not in ISLAND_OPS or len(producer.inputs) != 1:
            return None
        tensor = producer.inputs[0]


def island_table(graph: Graph, chain: list[Op]) -> np.ndarray:
    """The output code of each input code (indexed by the code's byte), by running the
    reference kernels of the island on all 256 codes."""
    values = EVERY_CODE
    for op in chain:
        values = run_kernel(op, values, as_codes(graph.tensors[op.inputs[0]]),
                            as_codes(graph.tensors[op.outputs[0]]))
    return values.astype(np.int8)


class FloatIslandTable(OptimizerPass):
    name = "float_island_table"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind == "QUANTIZE" and _island(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        chain = _island(graph, op)
        table = island_table(graph, chain)
        names = "+".join(o.kind for o in chain[1:-1])
        replace_op(graph, op, Op("LOOKUP_TABLE", f"{op.name} ({names} as a table)",
                                 [chain[0].inputs[0]], list(op.outputs),
                                 TableAttrs(tuple(int(v) for v in table))))
        for dead in chain[:-1]:
            remove_op(graph, dead)
        return True
