"""Run the converter's float data-movement islands in int8, with a table per leaf.

Why: a streaming model built with ``tf.Variable`` state concatenates the state with the new
frame in float32 (DEQUANTIZE -> CONCATENATION -> QUANTIZE), and an unrolled GRU splits its
first step's gates in float32 (DEQUANTIZE -> SPLIT -> one QUANTIZE per piece); TFLM runs those
in float. Ops that only move values (concatenate, reshape, slice, split, transpose, gather)
commute with an element-wise function, so the island
``QUANTIZE(move(DEQUANTIZE(x_1), ..., DEQUANTIZE(x_n)))`` equals ``move(f_1(x_1), ...,
f_n(x_n))`` in int8, where ``f_i`` is the element-wise ``QUANTIZE_out(DEQUANTIZE_i(code))``: a
function of one byte, so a 256-entry LOOKUP_TABLE computed with the reference kernels of TFLM's
DEQUANTIZE and QUANTIZE (bit-exact with its float path), and nothing at all when that table is
the identity and the quantizations agree (a leaf already in the output's quantization, as the
state in ``int8_state``).

An op with several outputs (SPLIT, SPLIT_V, UNPACK) ends the island with one QUANTIZE per
output read (an output nobody reads just becomes int8). The moves then run in one *working*
quantization: the outputs' own when they all share it (tables at the leaves, as above), else
the single leaf's (no leaf table; a table per output from the leaf's quantization to that
output's instead, ``QUANTIZE_k(DEQUANTIZE(code))`` again). Several leaves into outputs of
different quantizations would need a lossy common quantization: left in float.

When it is legal (``_island``): a QUANTIZE to per-tensor int8 reads a float tensor made by a
tree of :data:`MOVEMENT_OPS` (CONCATENATION without a fused activation) whose float inputs are
each read by nothing else and whose leaves are DEQUANTIZEs of per-tensor int8 tensors (a
float constant among the moved values stops it); every other output of the last op is read by
nothing or by a QUANTIZE to per-tensor int8 alone; no float tensor of the island is a graph
output.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tinyml.ir import Graph, Op
from tinyml.ir.ops import TableAttrs
from tinyml.ir.tensor import Quantization
from tinyml.passes.code_tables import EVERY_CODE, as_codes, run_as, same_quant
from tinyml.passes.framework import (OptimizerPass, consumers_of, only_consumer, producer_of,
                                     remove_op, replace_op)

#: Ops whose output elements are copies of input elements (int8 kernels move bytes).
MOVEMENT_OPS = ("CONCATENATION", "RESHAPE", "STRIDED_SLICE", "SLICE", "TRANSPOSE", "GATHER",
                "SPLIT", "SPLIT_V", "UNPACK")


@dataclasses.dataclass
class Island:
    root: Op                 # the movement op whose outputs are quantized
    moves: list[Op]          # the movement ops, root first
    leaves: list[Op]         # the DEQUANTIZEs feeding them
    quantizes: dict[int, Op]  # root output index -> the QUANTIZE reading that output
    working: Quantization    # the quantization the int8 moves run in


def _int8_per_tensor(tensor) -> bool:
    return tensor.dtype == "int8" and tensor.quant is not None and not tensor.quant.per_channel


def _root_quantizes(graph: Graph, root: Op) -> dict[int, Op] | None:
    """The QUANTIZE reading each read output of ``root``, or None when some output is read by
    anything else (or is a graph output)."""
    quantizes = {}
    for index, name in enumerate(root.outputs):
        if graph.tensors[name].dtype != "float32" or name in graph.outputs:
            return None
        users = consumers_of(graph, name)
        if not users:
            continue
        if (len(users) != 1 or users[0].kind != "QUANTIZE"
                or not _int8_per_tensor(graph.tensors[users[0].outputs[0]])):
            return None
        quantizes[index] = users[0]
    return quantizes


def _island(graph: Graph, quantize: Op) -> Island | None:
    """The island ending at ``quantize`` (and its sibling QUANTIZEs), or None."""
    if not _int8_per_tensor(graph.tensors[quantize.outputs[0]]):
        return None
    root = producer_of(graph, quantize.inputs[0])
    if root is None or root.kind not in MOVEMENT_OPS:
        return None
    quantizes = _root_quantizes(graph, root)
    if quantizes is None:
        return None
    moves: list[Op] = [root]
    leaves: list[Op] = []
    pending = [(n, root) for n in dict.fromkeys(root.inputs) if n]
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
            if not _int8_per_tensor(graph.tensors[producer.inputs[0]]):
                return None
            leaves.append(producer)
            continue
        if producer.kind not in MOVEMENT_OPS or len(producer.outputs) != 1:
            return None
        moves.append(producer)
        pending.extend((n, producer) for n in dict.fromkeys(producer.inputs) if n)
    if any(m.kind == "CONCATENATION" and m.attrs.activation != "NONE" for m in moves):
        return None
    if not leaves:
        return None
    quants = [graph.tensors[q.outputs[0]].quant for q in quantizes.values()]
    if all(same_quant(quants[0], q) for q in quants):
        working = quants[0]
    elif len(leaves) == 1:
        working = graph.tensors[leaves[0].inputs[0]].quant
    else:
        return None
    return Island(root, moves, leaves, quantizes, working)


def requantize_table(graph: Graph, source: str, target_quant) -> np.ndarray:
    """TFLM's QUANTIZE(DEQUANTIZE(code)) from ``source``'s quantization to ``target_quant``,
    for every int8 code (indexed by the code's byte)."""
    src = as_codes(graph.tensors[source])
    real = dataclasses.replace(src, name="real", dtype="float32", quant=None)
    dst = dataclasses.replace(src, name="requantized", quant=target_quant)
    values = run_as("DEQUANTIZE", EVERY_CODE, src, real)
    return run_as("QUANTIZE", values, real, dst).astype(np.int8)


def _needs_table(graph: Graph, source: str, quant: Quantization) -> np.ndarray | None:
    """The table from ``source`` into ``quant``, or None when the codes carry over as they are."""
    table = requantize_table(graph, source, quant)
    if np.array_equal(table, EVERY_CODE) and same_quant(graph.tensors[source].quant, quant):
        return None
    return table


def _table_op(name: str, source: str, target: str, table: np.ndarray) -> Op:
    return Op("LOOKUP_TABLE", name, [source], [target], TableAttrs(tuple(int(v) for v in table)))


class FloatIslandMovement(OptimizerPass):
    name = "float_island_movement"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind == "QUANTIZE" and _island(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        island = _island(graph, op)
        working = island.working
        # Leaves: the int8 tensor itself, or its table into the working quantization.
        for leaf in island.leaves:
            source = leaf.inputs[0]
            replacement = source
            table = _needs_table(graph, source, working)
            if table is not None:
                replacement = graph.unique_name(f"{source} (requantized)")
                graph.add_tensor(type(graph.tensors[source])(
                    replacement, graph.tensors[source].shape, "int8", working))
                position = next(i for i, o in enumerate(graph.ops) if o is leaf)
                graph.ops.insert(position, _table_op(
                    f"{leaf.name} (requantized as a table)", source, replacement, table))
            for move in island.moves:
                move.inputs = [replacement if n == leaf.outputs[0] else n for n in move.inputs]
            remove_op(graph, leaf)
        # The movement ops now run in int8, in the working quantization.
        for move in island.moves:
            for name in move.outputs:
                t = graph.tensors[name]
                t.dtype, t.quant = "int8", working
        # Each QUANTIZE becomes the root's output itself, or a table from the working
        # quantization into its own.
        for index, quantize in island.quantizes.items():
            piece, target = island.root.outputs[index], quantize.outputs[0]
            table = _needs_table(graph, piece, graph.tensors[target].quant)
            if table is None:
                island.root.outputs[index] = target
                remove_op(graph, quantize)
            else:
                replace_op(graph, quantize, _table_op(
                    f"{quantize.name} (requantized as a table)", piece, target, table))
        return True
