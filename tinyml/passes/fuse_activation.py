"""Fuse a standalone clamp (RELU, RELU6, CLIP) into its producer's fused activation.

Why: a standalone activation costs a pass over the tensor and a second buffer (or an in-place
slot); a fused one is a free clamp in the producer's output stage.

When it is legal: on int8 the two are *not* the same operation in general. TFLM's RELU
requantizes from its input to its output scale before clamping, RELU6 clamps the input codes
to [zero point, quantized 6.0] and ignores its output quantization, while a fused activation
clamps the producer's int32 result to ``CalculateActivationRangeQuantized`` of the producer's
output quantization. The pass fuses only when the result is provably identical:

- the clamp's input and output have the same per-tensor quantization (the producer keeps
  requantizing to the scale every consumer expects);
- the producer has no activation yet and the clamp is the only reader of its output;
- the standalone clamp, run through its *reference kernel* on all 256 int8 codes, equals
  ``clip(code, lo, hi)`` for the [lo, hi] of some fused activation (RELU, RELU6,
  RELU_N1_TO_1) on that quantization. Since the clamp is a function of the code alone and
  -128 <= lo <= hi <= 127, ``clamp(clip(acc, -128, 127)) == clip(acc, lo, hi)`` for every
  int32 ``acc``: the check is a proof, not a sample.

Float graphs are left alone: only int8 graphs are compiled, and a float RELU and a fused one
can differ in the sign of zero.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.passes.framework import OptimizerPass, only_consumer, producer_of, remove_op
from tinyml.reference.fixedpoint import activation_range

CLAMPS = ("RELU", "RELU6", "CLIP")
FUSED_ACTIVATIONS = ("RELU", "RELU6", "RELU_N1_TO_1")
#: Producers whose int8 kernels end with ``clip(result, activation_range(...))``, and the
#: attribute holding that activation.
PRODUCERS = {
    "CONV_2D": "activation", "DEPTHWISE_CONV_2D": "activation",
    "FULLY_CONNECTED": "activation", "ADD": "activation", "MUL": "activation",
    "AVERAGE_POOL_2D": "activation", "MAX_POOL_2D": "activation",
    "CONV_2D_ADD": "add_activation",
}

_CODES = np.arange(-128, 128, dtype=np.int8)


class FuseActivation(OptimizerPass):
    name = "fuse_activation"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind in CLAMPS and self._plan(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        producer, activation = self._plan(graph, op)
        field = PRODUCERS[producer.kind]
        producer.attrs = dataclasses.replace(producer.attrs, **{field: activation})
        producer.outputs = [op.outputs[0] if n == op.inputs[0] else n for n in producer.outputs]
        remove_op(graph, op)
        return True

    def _plan(self, graph: Graph, op: Op) -> tuple[Op, str] | None:
        x_name, y_name = op.inputs[0], op.outputs[0]
        producer = producer_of(graph, x_name)
        if producer is None or producer.kind not in PRODUCERS:
            return None
        if getattr(producer.attrs, PRODUCERS[producer.kind]) != "NONE":
            return None
        if not only_consumer(graph, x_name, op):
            return None
        x, y = graph.tensors[x_name], graph.tensors[y_name]
        if not same_int8_quantization(x, y):
            return None
        activation = equivalent_activation(op, x, y)
        return None if activation is None else (producer, activation)


def same_int8_quantization(x: Tensor, y: Tensor) -> bool:
    if x.dtype != "int8" or y.dtype != "int8" or x.quant is None or y.quant is None:
        return False
    if x.quant.per_channel or y.quant.per_channel:
        return False
    return (np.float32(x.scale()), x.zero_point()) == (np.float32(y.scale()), y.zero_point())


def clamp_table(op: Op, x: Tensor, y: Tensor) -> np.ndarray | None:
    """The clamp's reference output for every int8 input code, or None if the reference
    kernel refuses this quantization."""
    from tinyml.errors import TinymlError
    from tinyml.reference.kernels import KERNELS, KernelCall
    tx = Tensor(x.name, _CODES.shape, x.dtype, x.quant)
    ty = Tensor(y.name, _CODES.shape, y.dtype, y.quant)
    try:
        return np.asarray(KERNELS[op.kind](KernelCall(op, [_CODES], [tx], [ty])))
    except TinymlError:
        return None


def equivalent_activation(op: Op, x: Tensor, y: Tensor) -> str | None:
    """A fused activation whose clamp on ``y``'s quantization equals the standalone op on
    every int8 code (RELU before RELU6 before RELU_N1_TO_1), or None."""
    table = clamp_table(op, x, y)
    if table is None:
        return None
    for activation in FUSED_ACTIVATIONS:
        try:
            lo, hi = activation_range(activation, y.scale(), y.zero_point())
        except (OverflowError, ValueError):  # 6.0 / scale overflows float32
            continue
        if lo <= hi and np.array_equal(table, np.clip(_CODES.astype(np.int64), lo, hi)):
            return activation
    return None
