"""Turn quantized constant weights of float layers back into float32 constants.

Why: a dynamic-range ("hybrid") TFLite model, such as MLPerf Tiny's
``kws_ref_model_float32.tflite``, stores some convolution weights as int8 with a scale while
its activations stay float. Full-integer quantization must start from float weights: it picks
its own per-channel scales and re-derives the bias scale from the input scale, which an int8
weight tensor with a fixed per-tensor scale would forbid. Dequantizing first (``scale * (q -
zero_point)``, exactly what the hybrid kernel multiplies by) gives the float layer the same
weights the model was exported with.

Only constants read by float computations are rewritten: an int8 graph is left alone.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op
from tinyml.passes.framework import OptimizerPass, consumers_of


class DequantizeWeights(OptimizerPass):
    name = "dequantize_weights"

    def match(self, graph: Graph, op: Op) -> bool:
        return any(self._quantized_constant(graph, op, name) for name in op.inputs[1:])

    def transform(self, graph: Graph, op: Op) -> bool:
        for name in op.inputs[1:]:
            if self._quantized_constant(graph, op, name):
                t = graph.tensors[name]
                shape = [1] * len(t.shape)
                if t.quant.per_channel:
                    shape[t.quant.axis] = -1
                scale = t.quant.scale.astype(np.float64).reshape(shape)
                zero = t.quant.zero_point.reshape(shape)
                t.data = (scale * (t.data.astype(np.int64) - zero)).astype(np.float32)
                t.dtype, t.quant = "float32", None
        return True

    @staticmethod
    def _quantized_constant(graph: Graph, op: Op, name: str) -> bool:
        """``name`` is an integer constant with a quantization that only float ops read."""
        if not name:
            return False
        t = graph.tensors[name]
        if not (t.is_constant and t.dtype in ("int8", "uint8", "int16") and t.quant is not None):
            return False
        return all(_computes_in_float(graph, user) for user in consumers_of(graph, name))


def _computes_in_float(graph: Graph, op: Op) -> bool:
    x = graph.tensors[op.inputs[0]] if op.inputs and op.inputs[0] else None
    return x is not None and not x.is_constant and x.dtype == "float32" and op.kind in (
        "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL")
