"""Standalone activations: RELU, RELU6, CLIP, LOGISTIC, HARD_SWISH.

int8 follows TFLM's reference kernels, which differ more than their float versions suggest:

- RELU requantizes from the input to the output scale (``MultiplyByQuantizedMultiplier``)
  and clamps at the output zero point;
- RELU6 only clamps the input codes to [input zero point, quantized 6.0 on the input scale]:
  TFLM ignores the output quantization, so the result keeps the input's codes;
- CLIP (from ONNX; TFLite has no such builtin) is RELU's requantize-and-clamp with arbitrary
  real bounds, so CLIP(0, inf) equals RELU exactly;
- LOGISTIC evaluates gemmlowp's fixed-point logistic on the input in Q4.27 (TFLM uses no
  look-up table for int8); the output is in units of 1/256 with zero point -128;
- HARD_SWISH computes on int16 fixed-point values with two 16-bit multipliers.
"""

from __future__ import annotations

import math

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.ir import Op, Tensor
from tinyml.reference import gemmlowp as gl
from tinyml.reference.fixedpoint import (
    multiply_by_quantized_multiplier, quantize_multiplier, rounding_divide_by_pot, tflite_round,
    wrap_int32,
)
from tinyml.reference.kernels.registry import KernelCall, kernel


@kernel("RELU", "RELU6", "CLIP")
def clamp(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return clamp_int8(call)
    x = call.inputs[0].astype(np.float32)
    if call.op.kind == "RELU":
        return np.maximum(x, 0)
    if call.op.kind == "RELU6":
        return np.clip(x, 0, 6)
    return np.clip(x, np.float32(call.attrs.min), np.float32(call.attrs.max)).astype(np.float32)


@kernel("LOGISTIC")
def logistic(call: KernelCall) -> np.ndarray:
    if call.quantized:
        if call.in_tensors[0].dtype == "int16":
            return sigmoid_family_int16(call)
        return logistic_int8(call)
    x = call.inputs[0].astype(np.float32)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


@kernel("HARD_SWISH")
def hard_swish(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return hard_swish_int8(call)
    x = call.inputs[0].astype(np.float32)
    return (x * np.clip(x + 3, 0, 6) / 6).astype(np.float32)


def sigmoid_family_int16_params(op: Op, x_t: Tensor, out: Tensor) -> tuple[int, int]:
    """(input_multiplier, input_left_shift) of TFLM's int16 LOGISTIC or TANH, after its checks
    (int16 -> int16, zero points 0; TFLM reads the output as Q0.15 whatever its scale)."""
    from tinyml.reference.int16_activations import int16_activation_params
    if out.dtype != "int16":
        raise UnsupportedOpError(op.kind, op.name, detail=f"int16 -> {out.dtype} (int16 -> "
                                 f"int16 only)")
    if x_t.zero_point() != 0 or out.zero_point() != 0:
        raise UnsupportedOpError(op.kind, op.name, detail="int16 input and output need zero "
                                 "point 0 (TFLM's int16 kernel requires it)")
    return int16_activation_params(op.kind, x_t.scale())


def sigmoid_family_int16(call: KernelCall) -> np.ndarray:
    """TFLM's int16 LOGISTIC and TANH (``reference_integer_ops::Logistic`` / ``Tanh``): the
    input rescaled, then TFLM's interpolated sigmoid table (tinyml.reference.int16_activations,
    whose table is measured from TFLM)."""
    from tinyml.reference.int16_activations import logistic_int16, tanh_int16
    multiplier, shift = sigmoid_family_int16_params(call.op, call.in_tensors[0], call.out)
    fn = logistic_int16 if call.op.kind == "LOGISTIC" else tanh_int16
    return np.asarray(fn(call.inputs[0], multiplier, shift)).reshape(call.out.shape)


def _int8_only(call: KernelCall) -> None:
    op, x_t, out = call.op, call.in_tensors[0], call.out
    if x_t.dtype != "int8" or out.dtype != "int8":
        raise UnsupportedOpError(op.kind, op.name, detail=f"{x_t.dtype} -> {out.dtype} "
                                 f"(int8 -> int8 only)")


def _float_to_quantized_int8(value: float, scale: float, zero_point: int) -> int:
    """TFLM ``FloatToQuantizedType<int8_t>``: round(value / scale) in float32, plus the zero
    point, clamped to int8."""
    q = np.float32(value) / np.float32(scale)
    if not np.isfinite(q):
        return 127 if q > 0 else -128
    return int(np.clip(int(tflite_round(float(q))) + zero_point, -128, 127))


def relu_int8_params(x_t: Tensor, out: Tensor, low: float, high: float
                     ) -> tuple[int, int, int, int]:
    """``CalculateReluOpData``: (multiplier, shift, act_min, act_max) of TFLM's
    ``ReluQuantized`` with activation bounds [low, high] in real values."""
    multiplier, shift = quantize_multiplier(float(x_t.scale()) / float(out.scale()))
    out_zp = out.zero_point()

    def bound(value: float, limit: int) -> int:
        if math.isinf(value):
            return limit
        # zero point + (int)roundf(value / scale), in float32.
        q = np.float32(value) / np.float32(out.scale())
        return out_zp + int(tflite_round(float(q)))

    return multiplier, shift, max(-128, bound(low, -128)), min(127, bound(high, 127))


def _requantize_and_clamp(call: KernelCall, low: float, high: float) -> np.ndarray:
    """TFLM ``ReluQuantized`` with activation bounds [low, high] in real values."""
    x_t, out = call.in_tensors[0], call.out
    multiplier, shift, act_min, act_max = relu_int8_params(x_t, out, low, high)
    x = call.inputs[0].astype(np.int64) - x_t.zero_point()
    y = out.zero_point() + multiply_by_quantized_multiplier(x, multiplier, shift)
    return np.minimum(np.maximum(y, act_min), act_max).astype(np.int8)


def relu6_int8_bounds(x_t: Tensor) -> tuple[int, int]:
    """``Relu6Prepare``: the input codes RELU6 clamps to, [zero point, quantized 6.0]."""
    return x_t.zero_point(), _float_to_quantized_int8(6.0, x_t.scale(), x_t.zero_point())


def clamp_int8(call: KernelCall) -> np.ndarray:
    _int8_only(call)
    kind = call.op.kind
    if kind == "RELU":
        return _requantize_and_clamp(call, 0.0, math.inf)
    if kind == "CLIP":
        return _requantize_and_clamp(call, call.attrs.min, call.attrs.max)
    # RELU6: Relu6Prepare/Relu6Quantized clamp the input codes; no rescaling.
    lower, upper = relu6_int8_bounds(call.in_tensors[0])
    x = call.inputs[0].astype(np.int64)
    return np.where(x > upper, upper, np.where(x < lower, lower, x)).astype(np.int8)


#: LOGISTIC's input is rescaled to Q4.27; the Q0.31 result is shifted down to 1/256 units.
LOGISTIC_INPUT_INTEGER_BITS = 4
LOGISTIC_OUTPUT_INTEGER_BITS = 8


def logistic_int8_params(op: Op, x_t: Tensor, out: Tensor) -> tuple[int, int, int]:
    """``CalculateArithmeticOpDataLogistic``: (input multiplier, input left shift, input
    radius) of TFLM's int8 LOGISTIC; refuses an output zero point other than -128."""
    if out.zero_point() != -128:
        raise TinymlError(f"layer '{op.name}' (LOGISTIC): int8 output zero point must be -128 "
                          f"(TFLM requires it), got {out.zero_point()}")
    return q4_input_params(x_t)


def q4_input_params(x_t: Tensor) -> tuple[int, int, int]:
    """(input multiplier, input left shift, input radius) that move int8 input codes to
    gemmlowp's Q4.27, as TFLM's int8 LOGISTIC and TANH derive them in Prepare."""
    # frexp of input_scale * 2^27, no renormalization.
    real = float(x_t.scale()) * float(1 << (31 - LOGISTIC_INPUT_INTEGER_BITS))
    fraction, left_shift = math.frexp(real)
    # static_cast<int32_t>: a fraction rounding up to 2^31 would wrap (float32 scales cannot).
    multiplier = int(wrap_int32(int(tflite_round(fraction * (1 << 31)))))
    radius = gl.calculate_input_radius(LOGISTIC_INPUT_INTEGER_BITS, left_shift)
    return multiplier, left_shift, radius


def logistic_int8(call: KernelCall) -> np.ndarray:
    _int8_only(call)
    x_t = call.in_tensors[0]
    multiplier, left_shift, radius = logistic_int8_params(call.op, x_t, call.out)

    x = call.inputs[0].astype(np.int64) - x_t.zero_point()
    inside = (x > -radius) & (x < radius)
    q4 = multiply_by_quantized_multiplier(np.where(inside, x, 0), multiplier, left_shift)
    q0 = gl.logistic(q4, LOGISTIC_INPUT_INTEGER_BITS)
    y = np.clip(rounding_divide_by_pot(q0, 31 - LOGISTIC_OUTPUT_INTEGER_BITS) - 128, -128, 127)
    y = np.where(x <= -radius, -128, np.where(x >= radius, 127, y))
    return y.astype(np.int8)


def hard_swish_int8_params(op: Op, x_t: Tensor, out: Tensor) -> tuple[int, int, int, int]:
    """``HardSwishPrepare``: (output multiplier, output exponent, reluish multiplier,
    reluish exponent), the multipliers downscaled to int16, derived in float32; refuses an
    output scale below input_scale / 128 (TFLM does too)."""
    input_scale = np.float32(x_t.scale())
    hires_input_scale = np.float32(1.0 / 128.0) * input_scale
    reluish_scale = np.float32(3.0) / np.float32(32768.0)
    output_multiplier, output_exponent = quantize_multiplier(
        float(hires_input_scale / np.float32(out.scale())))
    output_multiplier = gl.downscale_int32_to_int16_multiplier(output_multiplier)
    if output_exponent > 0:
        raise TinymlError(f"layer '{op.name}' (HARD_SWISH): output scale {out.scale():.3g} is "
                          f"too small for input scale {x_t.scale():.3g} (TFLM requires "
                          f"input_scale / 128 <= output_scale)")
    reluish_multiplier, reluish_exponent = quantize_multiplier(
        float(hires_input_scale / reluish_scale))
    reluish_multiplier = gl.downscale_int32_to_int16_multiplier(reluish_multiplier)
    return output_multiplier, output_exponent, reluish_multiplier, reluish_exponent


def hard_swish_int8(call: KernelCall) -> np.ndarray:
    """TFLM ``HardSwish`` for int8: x * relu6(x + 3) / 6 on int16 fixed-point values.

    The input is moved to a "hires" scale (x 2^7), multiplied by the output multiplier, and
    by a "reluish" factor in [0, 1] that rescales [-3, 3] to [-1, 1] (saturating) and then to
    [0, 1]; both multipliers are 16-bit, derived in float32 as in ``HardSwishPrepare``.
    """
    _int8_only(call)
    x_t, out = call.in_tensors[0], call.out
    output_multiplier, output_exponent, reluish_multiplier, reluish_exponent = \
        hard_swish_int8_params(call.op, x_t, out)

    hires = (call.inputs[0].astype(np.int64) - x_t.zero_point()) * (1 << 7)
    preshift_output = gl.saturating_rounding_doubling_high_mul_int16(hires, output_multiplier)
    reluish = hires
    if reluish_exponent > 0:
        reluish = gl.saturating_left_shift_int16(reluish, reluish_exponent - 1)
    reluish = gl.saturating_rounding_doubling_high_mul_int16(reluish, reluish_multiplier)
    if reluish_exponent > 0:
        reluish = gl.saturating_left_shift_int16(reluish, 1)
    if reluish_exponent < 0:
        reluish = gl.rounding_divide_by_pot_int16(reluish, -reluish_exponent)
    reluish = (reluish + (1 << 15)) >> 1  # [-1, 1] -> [0, 1]
    y = gl.saturating_doubling_high_mul_int16(reluish, preshift_output)
    y = gl.rounding_divide_by_pot_int16(y, -output_exponent)
    y = gl.wrap_int16(y + out.zero_point())
    return np.clip(y, -128, 127).astype(np.int8)
