"""TFLM's integer arithmetic, vectorized: the building blocks of every int8 kernel.

These reproduce TFLite's ``quantization_util.cc`` and ``common.h`` in TFLM's default build
(double rounding: ``TFLITE_SINGLE_ROUNDING`` off), and gemmlowp's fixed-point primitives they
call. Arrays are computed in int64 so that intermediate products never overflow; results are
the int32 values TFLM's C code produces.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def tflite_round(x):
    """``TfLiteRound`` (std::round): round half away from zero, for scalars or arrays.

    Rounds the exact value: ``floor(|x| + 0.5)`` would be wrong for float32 inputs such as
    0.49999997 (the addition itself rounds up to 1.0), so the fraction is compared instead.
    """
    if np.isscalar(x) and not isinstance(x, np.ndarray):
        x = float(x)
        t = float(math.trunc(x)) if math.isfinite(x) else x
        if math.isfinite(x) and abs(x - t) >= 0.5:
            t += math.copysign(1.0, x)
        return t
    x = np.asarray(x)
    t = np.trunc(x)
    return t + np.where(np.abs(x - t) >= x.dtype.type(0.5), np.sign(x), x.dtype.type(0))


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """``QuantizeMultiplier``: real = q * 2^(shift - 31) with q in [2^30, 2^31).

    Returns (q, shift); shift > 0 is a left shift. Multipliers below 2^-31 flush to zero.
    """
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def quantize_multipliers(real_multipliers) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_multiplier` per element (per-channel requantization)."""
    values = np.asarray(real_multipliers, np.float64).ravel()
    pairs = [quantize_multiplier(float(m)) for m in values]
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values (as int64 arrays)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    # C++ integer division truncates toward zero.
    high = np.where(total >= 0, total >> 31, -((-total) >> 31))
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp ``RoundingDivideByPOT``: x / 2^exponent, rounding half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """``MultiplyByQuantizedMultiplier`` (double rounding), broadcasting over channels."""
    x = wrap_int32(np.asarray(x, dtype=np.int64))
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = wrap_int32(x * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, left_shift):
    """``MultiplyByQuantizedMultiplierSmallerThanOneExp`` (ADD's rescaling): ``left_shift`` <= 0.

    With no left shift this is :func:`multiply_by_quantized_multiplier`; the separate name
    keeps kernels readable next to the C they follow.
    """
    return multiply_by_quantized_multiplier(x, multiplier, left_shift)


def per_channel_multipliers(input_scale: float, filter_scales, output_scale: float,
                            channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Requantization of CONV_2D, DEPTHWISE_CONV_2D and per-channel FULLY_CONNECTED.

    TFLM's ``PopulateConvolutionQuantizationParams`` computes, for each output channel,
    ``double(input_scale) * double(filter_scale) / double(output_scale)`` in double from
    the float32 scales; a per-tensor filter scale is broadcast to all ``channels``.
    """
    scales = np.asarray(filter_scales, dtype=np.float32).reshape(-1)
    if scales.size == 1:
        scales = np.repeat(scales, channels)
    return quantize_multipliers([float(input_scale) * float(s) / float(output_scale)
                                 for s in scales])


def per_tensor_fc_multiplier(input_scale: float, filter_scale: float,
                             output_scale: float) -> tuple[int, int]:
    """Requantization of per-tensor FULLY_CONNECTED (``GetQuantizedConvolutionMultipler``).

    TFLM widens both float32 scales to double *before* multiplying them. Multiplying them in
    float32 and widening the product (as older TFLite code did) gives a different multiplier
    for the last layer of MLPerf Tiny's ad01_int8: an accumulator of -88337 lands on -22
    instead of TFLM's -21 (tests/test_reference_int8_mlperf.py checks 2,000 inputs).
    """
    return quantize_multiplier(float(input_scale) * float(filter_scale) / float(output_scale))


def requantize(acc, multiplier, shift, zero_point: int, qmin: int, qmax: int,
               dtype=np.int8) -> np.ndarray:
    """The output stage shared by int8 kernels: rescale an int32 accumulator with
    :func:`multiply_by_quantized_multiplier`, add the output zero point, clamp to the
    activation range and store as ``dtype``. ``multiplier``/``shift`` broadcast over the
    last axis for per-channel requantization. The zero point is added in int32, wrapping
    on overflow as the C does."""
    y = wrap_int32(multiply_by_quantized_multiplier(acc, multiplier, shift) + int(zero_point))
    return np.clip(y, qmin, qmax).astype(dtype)


def multiply_by_quantized_multiplier_int64(x, multiplier, shift):
    """``MultiplyByQuantizedMultiplier`` of an int64 accumulator (the 16x8 kernels with an
    int64 bias), TFLM's double-rounding build: the multiplier is first reduced to 16 bits,
    ``(q + 2^15) >> 16`` (0x7FFF from 0x7FFF0000 up), then one rounding shift by
    ``15 - shift``; the int64 result is narrowed to int32 without saturation, as the C
    assignment does."""
    x = np.asarray(x, dtype=np.int64)
    multiplier = np.asarray(multiplier, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
    total_shift = 15 - shift
    return wrap_int32((x * reduced + (np.int64(1) << (total_shift - 1))) >> total_shift)


def requantize_16x8(acc, multiplier, shift, zero_point: int, qmin: int, qmax: int,
                    int64_accumulator: bool) -> np.ndarray:
    """The output stage of the 16x8 CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: TFLM
    accumulates in the bias's type, so an int64 bias takes
    :func:`multiply_by_quantized_multiplier_int64` and an int32 bias the int8 path's wrapped
    int32 accumulator and double rounding. Stored as int16."""
    if not int64_accumulator:
        return requantize(wrap_int32(acc), multiplier, shift, zero_point, qmin, qmax,
                          dtype=np.int16)
    y = wrap_int32(multiply_by_quantized_multiplier_int64(acc, multiplier, shift)
                   + int(zero_point))
    return np.clip(y, qmin, qmax).astype(np.int16)


INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


def wrap_int32(x):
    """Two's-complement wrap to int32, as TFLM's int32 accumulators behave on overflow."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def quantize_value(value: float, scale: float, zero_point: int) -> int:
    """TFLM's activation-range quantizer: zero_point + round(value / scale) in float32."""
    q = np.float32(value) / np.float32(scale)
    return int(zero_point) + int(tflite_round(q))


def activation_range(activation: str, scale: float, zero_point: int,
                     qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """``CalculateActivationRangeQuantized``: the clamp a fused activation imposes."""
    if activation == "RELU":
        return max(qmin, quantize_value(0.0, scale, zero_point)), qmax
    if activation == "RELU6":
        return (max(qmin, quantize_value(0.0, scale, zero_point)),
                min(qmax, quantize_value(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(qmin, quantize_value(-1.0, scale, zero_point)),
                min(qmax, quantize_value(1.0, scale, zero_point)))
    return qmin, qmax


def float_activation(x: np.ndarray, activation: str) -> np.ndarray:
    """A fused activation on float values."""
    if activation == "RELU":
        return np.maximum(x, 0)
    if activation == "RELU6":
        return np.clip(x, 0, 6)
    if activation == "RELU_N1_TO_1":
        return np.clip(x, -1, 1)
    return x


def symmetric_quantize_floats(x: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """TFLite ``SymmetricQuantizeFloats``: int8 in [-127, 127] and the scale used.

    Hybrid (dynamic-range) kernels quantize their float input with it at run time.
    """
    x = np.asarray(x, dtype=np.float32)
    value_range = np.float32(max(abs(float(x.min())), abs(float(x.max())))) if x.size else 0
    if value_range == 0:
        return np.zeros(x.shape, np.int8), np.float32(1.0)
    inverse = np.float32(127) / value_range
    q = np.clip(tflite_round(x * inverse), -127, 127).astype(np.int8)
    return q, np.float32(value_range / np.float32(127))
