"""ADD and MUL with numpy broadcasting and a fused activation."""

from __future__ import annotations

import numpy as np

from tinyml.reference.fixedpoint import (
    activation_range, float_activation, multiply_by_quantized_multiplier_smaller_than_one_exp,
    quantize_multiplier, requantize, wrap_int32)
from tinyml.reference.kernels.registry import KernelCall, kernel


@kernel("ADD")
def add(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return add_int8(call)
    a, b = (x.astype(np.float32) for x in call.inputs)
    return float_activation(a + b, call.attrs.activation).astype(np.float32)


@kernel("MUL")
def mul(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return mul_int8(call)
    a, b = (x.astype(np.float32) for x in call.inputs)
    return float_activation(a * b, call.attrs.activation).astype(np.float32)


#: ADD shifts int8 inputs left by 20 bits before rescaling them (TFLM ``left_shift``).
ADD_LEFT_SHIFT = 20
#: ... and int16 inputs by 15 (TFLM's int16 ADD takes the same general path, not the
#: power-of-two one: ``reference_ops::Add(..., pot_scale=false)``).
ADD_LEFT_SHIFT_INT16 = 15


def add_left_shift(dtype: str) -> int:
    return ADD_LEFT_SHIFT_INT16 if dtype == "int16" else ADD_LEFT_SHIFT


def add_multipliers(scale1: float, scale2: float, output_scale: float,
                    left_shift: int = ADD_LEFT_SHIFT
                    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """ADD's three (multiplier, shift) pairs: each input to twice the larger input scale,
    and the sum (still shifted left by ``left_shift``, :func:`add_left_shift`) to the
    output scale."""
    twice_max = 2 * float(max(np.float32(scale1), np.float32(scale2)))
    return (quantize_multiplier(float(scale1) / twice_max),
            quantize_multiplier(float(scale2) / twice_max),
            quantize_multiplier(twice_max / ((1 << left_shift) * float(output_scale))))


def mul_multiplier(scale1: float, scale2: float, output_scale: float) -> tuple[int, int]:
    """MUL's (multiplier, shift): double(s_a) * double(s_b) / double(s_out)."""
    return quantize_multiplier(float(scale1) * float(scale2) / float(output_scale))


def _int8_operands(call: KernelCall) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs minus their zero points, broadcast against each other (numpy rules are
    TFLite's ``NdArrayDescsForElementwiseBroadcast``)."""
    a, b = (x.astype(np.int64) - t.zero_point() for x, t in zip(call.inputs, call.in_tensors))
    return np.broadcast_arrays(a, b)


def _range(t) -> tuple[int, int]:
    info = np.iinfo(t.dtype)
    return int(info.min), int(info.max)


def add_int8(call: KernelCall) -> np.ndarray:
    """TFLM ``AddFunc``: both inputs are shifted left 20 bits (int16: 15), rescaled to a
    common scale (twice the larger input scale) by two multipliers below one, summed, and
    the sum rescaled to the output by a third multiplier; all multipliers are computed in
    double from the float32 scales."""
    t1, t2 = call.in_tensors
    out = call.out
    left_shift = add_left_shift(out.dtype)
    (m1, s1), (m2, s2), (mo, so) = add_multipliers(t1.scale(), t2.scale(), out.scale(),
                                                   left_shift)
    a, b = _int8_operands(call)
    scaled_a = multiply_by_quantized_multiplier_smaller_than_one_exp(a << left_shift, m1, s1)
    scaled_b = multiply_by_quantized_multiplier_smaller_than_one_exp(b << left_shift, m2, s2)
    lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point(),
                              *_range(out))
    y = multiply_by_quantized_multiplier_smaller_than_one_exp(
        wrap_int32(scaled_a + scaled_b), mo, so) + out.zero_point()
    return np.clip(y, lo, hi).astype(out.dtype).reshape(out.shape)


def mul_int8(call: KernelCall) -> np.ndarray:
    """TFLM ``MulElementwise``: (a - za) * (b - zb) rescaled by one multiplier,
    double(s_a) * double(s_b) / double(s_out); int16 (zero points 0) is the same template."""
    t1, t2 = call.in_tensors
    out = call.out
    multiplier, shift = mul_multiplier(t1.scale(), t2.scale(), out.scale())
    a, b = _int8_operands(call)
    lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point(),
                              *_range(out))
    y = requantize(a * b, multiplier, shift, out.zero_point(), lo, hi, dtype=out.dtype)
    return y.reshape(out.shape)
