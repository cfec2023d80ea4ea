"""QUANTIZE (float -> int8, or int8 -> int8 requantization) and DEQUANTIZE."""

from __future__ import annotations

import numpy as np

from tinyml.ir import DTYPES
from tinyml.reference.fixedpoint import tflite_round
from tinyml.reference.kernels import KernelCall, kernel


@kernel("QUANTIZE")
def quantize(call: KernelCall) -> np.ndarray:
    out = call.out
    info = np.iinfo(DTYPES[out.dtype])
    if call.in_tensors[0].dtype in ("float32", "float16"):
        # TFLM AffineQuantize: round(x / scale) in float32, then add the zero point.
        x = call.inputs[0].astype(np.float32)
        q = tflite_round(x / np.float32(out.scale())).astype(np.int64) + out.zero_point()
        return np.clip(q, info.min, info.max).astype(DTYPES[out.dtype])
    return requantize_int8(call)


@kernel("DEQUANTIZE")
def dequantize(call: KernelCall) -> np.ndarray:
    t = call.in_tensors[0]
    x = call.inputs[0]
    if t.dtype == "float16":
        return x.astype(np.float32)
    q = t.quant
    shape = [1] * x.ndim
    if q.per_channel:
        shape[q.axis] = -1
    scale = q.scale.astype(np.float64).reshape(shape)
    zero = q.zero_point.reshape(shape)
    return (scale * (x.astype(np.int64) - zero)).astype(np.float32)


def requantize_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 -> int8 QUANTIZE")
