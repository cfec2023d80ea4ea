"""Data-movement ops: RESHAPE, TRANSPOSE, CONCATENATION, PAD and the shape-only ops.

These move values without arithmetic, so one implementation serves float and int8. Int8
CONCATENATION of inputs quantized differently from its output is refused, as TFLM does.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import UnsupportedOpError
from tinyml.ir import DTYPES
from tinyml.reference.kernels.registry import KernelCall, kernel


@kernel("RESHAPE")
def reshape(call: KernelCall) -> np.ndarray:
    return call.inputs[0].reshape(call.out.shape)


@kernel("TRANSPOSE")
def transpose(call: KernelCall) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(call.inputs[0], call.attrs.perm))


@kernel("PAD")
def pad(call: KernelCall) -> np.ndarray:
    x = call.inputs[0]
    value = call.attrs.value
    if value is None:
        t = call.in_tensors[0]
        value = t.zero_point() if t.is_quantized else 0
    return np.pad(x, call.attrs.pads, constant_values=value).astype(x.dtype)


@kernel("CONCATENATION")
def concatenation(call: KernelCall) -> np.ndarray:
    out = call.out
    if out.is_quantized and any(
            (t.scale(), t.zero_point()) != (out.scale(), out.zero_point())
            for t in call.in_tensors):
        return concatenation_requantize(call)
    return np.concatenate(call.inputs, axis=call.attrs.axis).astype(DTYPES[out.dtype])


def concatenation_requantize(call: KernelCall) -> np.ndarray:
    """TFLM does not rescale: its int8 CONCATENATION refuses inputs whose scale or zero
    point differ from the output's (``TF_LITE_ENSURE_EQ`` in ``Prepare``), and the
    TFLite converter inserts int8 QUANTIZE ops so it never emits such a model. We refuse
    it too rather than invent arithmetic no microcontroller runtime would match."""
    out = call.out
    bad = [t.name for t in call.in_tensors
           if (t.scale(), t.zero_point()) != (out.scale(), out.zero_point())]
    raise UnsupportedOpError(
        "CONCATENATION", call.op.name,
        detail=f"int8 inputs {bad} are quantized differently from the output "
               f"(TFLM requires equal scale and zero point; requantize them first)")


def _constant_fold(call: KernelCall):
    # Shape-only ops have constant inputs once shapes are known; evaluate like shape inference.
    from tinyml.ir import Tensor
    tensors = [None if t is None else Tensor(t.name, t.shape, t.dtype, t.quant, v)
               for t, v in zip(call.in_tensors, call.inputs)]
    return call.op.spec.evaluate(call.op, tensors)


@kernel("SHAPE", "STRIDED_SLICE", "PACK", "GATHER", "CAST")
def shape_only(call: KernelCall):
    return [np.asarray(v).astype(DTYPES[t.dtype]) for v, t in
            zip(_constant_fold(call), call.out_tensors)]


