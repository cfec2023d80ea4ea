"""Turn a float NEG into a MUL by the constant -1 before quantization.

Why: TFLM has no int8 NEG kernel (it runs NEG in float32 only), and the TFLite converter keeps
it in float between a DEQUANTIZE and a QUANTIZE. Keras' LayerNormalization negates its mean
with one. An int8 MUL by a constant -1 (exactly representable: per-tensor scale 1/255, zero
point 127 codes it as -128) is an op TFLM runs in int8, with its own output range, so the
whole normalization quantizes.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.ops import ElementwiseAttrs
from tinyml.passes.framework import OptimizerPass


class NegAsMul(OptimizerPass):
    name = "neg_as_mul"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind == "NEG" and graph.tensors[op.inputs[0]].dtype == "float32"

    def transform(self, graph: Graph, op: Op) -> bool:
        name = f"{op.name}/minus_one"
        while name in graph.tensors:
            name += "_"
        graph.tensors[name] = Tensor(name, (1,), "float32", data=np.full((1,), -1, np.float32))
        op.kind, op.inputs, op.attrs = "MUL", [op.inputs[0], name], ElementwiseAttrs()
        return True
