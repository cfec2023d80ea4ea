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


def add_multipliers(scale1: float, scale2: float, output_scale: float
                    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """ADD's three (multiplier, shift) pairs: each input to twice the larger input scale,
    and the sum (still shifted left by :data:`ADD_LEFT_SHIFT`) to the output scale."""
    twice_max = 2 * float(max(np.float32(scale1), np.float32(scale2)))
    return (quantize_multiplier(float(scale1) / twice_max),
            quantize_multiplier(float(scale2) / twice_max),
            quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * float(output_scale))))


def mul_multiplier(scale1: float, scale2: float, output_scale: float) -> tuple[int, int]:
    """MUL's (multiplier, shift): double(s_a) * double(s_b) / double(s_out)."""
    return quantize_multiplier(float(scale1) * float(scale2) / float(output_scale))


def _int8_operands(call: KernelCall) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs minus their zero points, broadcast against each other (numpy rules are
    TFLite's ``NdArrayDescsForElementwiseBroadcast``)."""
    a, b = (x.astype(np.int64) - t.zero_point() for x, t in zip(call.inputs, call.in_tensors))
    return np.broadcast_arrays(a, b)


def add_int8(call: KernelCall) -> np.ndarray:
    """TFLM ``AddFunc``: both inputs are shifted left 20 bits, rescaled to a common scale
    (twice the larger input scale) by two multipliers below one, summed, and the sum
    rescaled to the output by a third multiplier; all multipliers are computed in double
    from the float32 scales."""
    t1, t2 = call.in_tensors
    out = call.out
    (m1, s1), (m2, s2), (mo, so) = add_multipliers(t1.scale(), t2.scale(), out.scale())
    a, b = _int8_operands(call)
    scaled_a = multiply_by_quantized_multiplier_smaller_than_one_exp(a << ADD_LEFT_SHIFT, m1, s1)
    scaled_b = multiply_by_quantized_multiplier_smaller_than_one_exp(b << ADD_LEFT_SHIFT, m2, s2)
    lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point())
    y = multiply_by_quantized_multiplier_smaller_than_one_exp(
        wrap_int32(scaled_a + scaled_b), mo, so) + out.zero_point()
    return np.clip(y, lo, hi).astype(np.int8).reshape(out.shape)


def mul_int8(call: KernelCall) -> np.ndarray:
    """TFLM ``MulElementwise``: (a - za) * (b - zb) rescaled by one multiplier,
    double(s_a) * double(s_b) / double(s_out)."""
    t1, t2 = call.in_tensors
    out = call.out
    multiplier, shift = mul_multiplier(t1.scale(), t2.scale(), out.scale())
    a, b = _int8_operands(call)
    lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point())
    y = requantize(a * b, multiplier, shift, out.zero_point(), lo, hi)
    return y.reshape(out.shape)
