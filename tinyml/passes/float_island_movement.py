"""Run the converter's float data-movement islands in int8, with a table per leaf.

Why: a streaming model built with ``tf.Variable`` state concatenates the state with the new
frame in float32 (DEQUANTIZE -> CONCATENATION -> QUANTIZE), and TFLM runs that in float. Ops
that only move values (concatenate, reshape, slice, transpose, gather) commute with an
element-wise function, so the island ``QUANTIZE(move(DEQUANTIZE(x_1), ..., DEQUANTIZE(x_n)))``
equals ``move(f_1(x_1), ..., f_n(x_n))`` in int8, where ``f_i`` is the element-wise
``QUANTIZE_out(DEQUANTIZE_i(code))``: a function of one byte, so a 256-entry LOOKUP_TABLE
computed with the reference kernels of TFLM's DEQUANTIZE and QUANTIZE (bit-exact with its
float path), and nothing at all when that table is the identity and the quantizations agree
(a leaf already in the output's quantization, as the state in ``int8_state``).

When it is legal (``_island``): a QUANTIZE to per-tensor int8 reads a float tensor made by a
tree of :data:`MOVEMENT_OPS` (CONCATENATION without a fused activation) whose float inputs are
each read by nothing else and whose leaves are DEQUANTIZEs of per-tensor int8 tensors (a
float constant among the moved values stops it); no float tensor of the island is a graph
output.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tinyml.ir import Graph, Op
from tinyml.ir.ops import TableAttrs
from tinyml.passes.code_tables import EVERY_CODE, as_codes, run_as, same_quant
from tinyml.passes.framework import OptimizerPass, only_consumer, producer_of, remove_op

#: Ops whose output elements are copies of input elements (int8 kernels move bytes).
MOVEMENT_OPS = ("CONCATENATION", "RESHAPE", "STRIDED_SLICE", "SLICE", "TRANSPOSE", "GATHER")


def _island(graph: Graph, quantize: Op) -> tuple[list[Op], list[Op]] | None:
    """(movement ops, leaf DEQUANTIZEs) of the island ending at ``quantize``, or None."""
    out = graph.tensors[quantize.outputs[0]]
    if out.dtype != "int8" or out.quant is None or out.quant.per_channel:
        return None
    moves: list[Op] = []
    leaves: list[Op] = []
    pending = [(quantize.inputs[0], quantize)]
    while pending:
        name, reader = pending.pop()
        tensor = graph.tensors[name]
        if tensor.is_constant:  # a shape, begin/end or indices: not a value that moves
            if tensor.dtype in ("float32", "float16"):
                return None
            continue
        if tensor.dtype != "float32" or not only_consumer(graph, name, reader):
            return None
        producer = producer_of(graph, name)
        if producer is None:
            return None
        if producer.kind == "DEQUANTIZE":
            source = graph.tensors[producer.inputs[0]]
            if source.dtype != "int8" or source.quant is None or source.quant.per_channel:
                return None
            leaves.append(producer)
            continue
        if producer.kind not in MOVEMENT_OPS or len(producer.outputs) != 1:
            return None
        if producer.kind == "CONCATENATION" and producer.attrs.activation != "NONE":
            return None
        moves.append(producer)
        pending.extend((n, producer) for n in dict.fromkeys(producer.inputs) if n)
    return (moves, leaves) if moves else None


def requantize_table(graph: Graph, source: str, target_quant) -> np.ndarray:
    """TFLM's QUANTIZE(DEQUANTIZE(code)) from ``source``'s quantization to ``target_quant``,
    for every int8 code (indexed by the code's byte)."""
    src = as_codes(graph.tensors[source])
    real = dataclasses.replace(src, name="real", dtype="float32", quant=None)
    dst = dataclasses.replace(src, name="requantized", quant=target_quant)
    values = run_as("DEQUANTIZE", EVERY_CODE, src, real)
    return run_as("QUANTIZE", values, real, dst).astype(np.int8)


class FloatIslandMovement(OptimizerPass):
    name = "float_island_movement"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind == "QUANTIZE" and _island(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        moves, leaves = _island(graph, op)
        quant = graph.tensors[op.outputs[0]].quant
        # Leaves: the int8 tensor itself, or its table into the output's quantization.
        for leaf in leaves:
            source = leaf.inputs[0]
            table = requantize_table(graph, source, quant)
            identity = np.array_equal(table, EVERY_CODE)
            if identity and same_quant(graph.tensors[source].quant, quant):
                replacement = source
            else:
                replacement = graph.unique_name(f"{source} (requantized)")
                graph.add_tensor(type(graph.tensors[source])(
                    replacement, graph.tensors[source].shape, "int8", quant))
                position = next(i for i, o in enumerate(graph.ops) if o is leaf)
                graph.ops.insert(position, Op(
                    "LOOKUP_TABLE", f"{leaf.name} (requantized as a table)", [source],
                    [replacement], TableAttrs(tuple(int(v) for v in table))))
            for move in moves:
                move.inputs = [replacement if n == leaf.outputs[0] else n for n in move.inputs]
            remove_op(graph, leaf)
        # The movement ops now run in int8, in the output's quantization; the last one writes
        # the QUANTIZE's output.
        root = producer_of(graph, op.inputs[0])
        for move in moves:
            if move is not root:
                t = graph.tensors[move.outputs[0]]
                t.dtype, t.quant = "int8", quant
        root.outputs = [op.outputs[0]]
        remove_op(graph, op)
        return True
