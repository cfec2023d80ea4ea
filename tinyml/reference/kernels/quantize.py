"""QUANTIZE (float -> int8, or int8 -> int8 requantization) and DEQUANTIZE."""

from __future__ import annotations

import numpy as np

from tinyml.ir import DTYPES
from tinyml.errors import UnsupportedOpError
from tinyml.reference.fixedpoint import quantize_multiplier, requantize, tflite_round
from tinyml.reference.kernels.registry import KernelCall, kernel


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


def requantize_multiplier(input_scale: float, output_scale: float) -> tuple[int, int]:
    """Integer QUANTIZE's (multiplier, shift): double(s_in) / double(s_out)."""
    return quantize_multiplier(float(input_scale) / float(output_scale))


def requantize_int8(call: KernelCall) -> np.ndarray:
    """TFLM ``Requantize`` (integer -> integer QUANTIZE): (x - zp_in) rescaled by
    QuantizeMultiplier(double(s_in) / double(s_out)), plus zp_out, clamped to the output
    type. TFLM's int8<->uint8 fast path (a bare 0x80 flip) gives the same values."""
    x_t, out = call.in_tensors[0], call.out
    if x_t.quant is None or x_t.quant.per_channel or out.quant is None or out.quant.per_channel:
        raise UnsupportedOpError("QUANTIZE", call.op.name,
                                 detail="requantization needs per-tensor input and output "
                                        "quantization")
    info = np.iinfo(DTYPES[out.dtype])
    multiplier, shift = requantize_multiplier(x_t.scale(), out.scale())
    x = call.inputs[0].astype(np.int64) - x_t.zero_point()
    return requantize(x, multiplier, shift, out.zero_point(), info.min, info.max,
                      dtype=DTYPES[out.dtype])
