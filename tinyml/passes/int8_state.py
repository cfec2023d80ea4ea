"""Keep a float variable of a streaming model as int8 codes when that is exact.

Why: the TFLite converter keeps a streaming model's state in float32 even in a full-int8
model: each frame the state is READ (float), concatenated with the DEQUANTIZEd new frame,
QUANTIZEd for the int8 layers, and a slice of that int8 window is DEQUANTIZEd and ASSIGNed
back. The float state then only ever holds dequantized codes of one quantization Q, so
storing the codes instead loses nothing: 1 byte a value instead of 4, and no float math on
the device. A read becomes READ (int8) -> DEQUANTIZE, which the float island passes then fold
into the int8 ops around it.

When it is legal (``_plan``): the variable is float32; every ASSIGN_VARIABLE of it assigns a
DEQUANTIZE of a per-tensor int8 tensor, all with the same scale and zero point Q; and its
initial value is exactly Q's dequantization of some codes (DEQUANTIZE(QUANTIZE(v)) == v bit
for bit, with the reference kernels, which are TFLM's arithmetic), so the first frame reads
the same floats as well.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.graph import Variable
from tinyml.ir.ops import VariableAttrs
from tinyml.ir.tensor import Quantization
from tinyml.passes.code_tables import run_as, same_quant
from tinyml.passes.framework import OptimizerPass, producer_of


def codes_of(values: np.ndarray, quant: Quantization) -> np.ndarray | None:
    """The int8 codes whose dequantization is exactly ``values`` (float32), or None."""
    values = np.asarray(values, np.float32)
    real = Tensor("value", values.shape, "float32")
    codes = Tensor("codes", values.shape, "int8", quant)
    q = run_as("QUANTIZE", values, real, codes)
    back = run_as("DEQUANTIZE", q, codes, real)
    return q.astype(np.int8) if np.array_equal(back.view(np.uint32),
                                               values.view(np.uint32)) else None


def why_not_int8(graph: Graph, var: Variable) -> str:
    """Why ``var`` stayed float (for the error that stops its compilation)."""
    assigns = [op for op in graph.ops
               if op.kind == "ASSIGN_VARIABLE" and op.attrs.variable == var.name]
    if not assigns:
        return "nothing assigns it, so it cannot take an int8 quantization"
    quants = []
    for op in assigns:
        producer = producer_of(graph, op.inputs[0])
        source = None if producer is None or producer.kind != "DEQUANTIZE" else \
            graph.tensors[producer.inputs[0]]
        if source is None or source.dtype != "int8" or source.quant is None \
                or source.quant.per_channel:
            return (f"'{op.name}' assigns a float value that is not a DEQUANTIZE of per-tensor "
                    f"int8, so the state is not int8 codes")
        quants.append(source.quant)
    if any(not same_quant(quants[0], q) for q in quants[1:]):
        return "its assignments dequantize different int8 quantizations"
    return (f"its initial value is not exactly representable in the int8 quantization its "
            f"assignments use ({quants[0]}), so it cannot be stored as codes")


def _plan(graph: Graph, var: Variable) -> tuple[Quantization, np.ndarray] | None:
    """(Q, initial codes) when ``var`` may become int8, else None."""
    if var.dtype != "float32":
        return None
    assigns = [op for op in graph.ops
               if op.kind == "ASSIGN_VARIABLE" and op.attrs.variable == var.name]
    if not assigns:
        return None
    quant = None
    for op in assigns:
        producer = producer_of(graph, op.inputs[0])
        if producer is None or producer.kind != "DEQUANTIZE":
            return None
        source = graph.tensors[producer.inputs[0]]
        if source.dtype != "int8" or source.quant is None or source.quant.per_channel:
            return None
        if quant is not None and not same_quant(quant, source.quant):
            return None
        quant = source.quant
    codes = codes_of(var.initial, quant)
    return None if codes is None else (quant, codes)


class Int8State(OptimizerPass):
    name = "int8_state"

    def match(self, graph: Graph, op: Op) -> bool:
        return (op.kind == "ASSIGN_VARIABLE"
                and _plan(graph, graph.variables[op.attrs.variable]) is not None)

    def transform(self, graph: Graph, op: Op) -> bool:
        var = graph.variables[op.attrs.variable]
        quant, codes = _plan(graph, var)
        var.dtype, var.quant, var.initial = "int8", quant, codes
        attrs = VariableAttrs(var.name, tuple(var.shape), "int8")
        ops: list[Op] = []
        for o in graph.ops:
            ops.append(o)
            if o.kind not in ("READ_VARIABLE", "ASSIGN_VARIABLE") or \
                    o.attrs.variable != var.name:
                continue
            o.attrs = attrs
            if o.kind == "ASSIGN_VARIABLE":
                o.inputs = [producer_of(graph, o.inputs[0]).inputs[0]]
                continue
            # READ (int8) -> DEQUANTIZE to the float tensor the model reads.
            real = o.outputs[0]
            name = graph.unique_name(f"{real} (int8 state)")
            graph.add_tensor(dataclasses.replace(graph.tensors[real], name=name, dtype="int8",
                                                 quant=quant, data=None))
            o.outputs = [name]
            ops.append(Op("DEQUANTIZE", f"{o.name} (dequantize)", [name], [real]))
        graph.ops = ops
        return True
