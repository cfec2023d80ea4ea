"""Quantization parameters: TFLite's int8 conventions, from ranges and float weights.

These are the conventions TFLM's kernels assume (the TFLite int8 quantization spec):

- activations: asymmetric int8, one scale and zero point per tensor, the real range nudged to
  contain 0 so that zero (padding, ReLU's floor) is exactly representable;
- weights: symmetric per output channel, zero point 0, codes in [-127, 127] (-128 is never
  used, so that a product never needs the asymmetric extra code);
- bias: int32, zero point 0, scale ``input_scale * weight_scale[c]`` per channel, so the
  kernel adds it to the int32 accumulator unscaled (int64 for the 16x8 layers of
  :mod:`.int16`, whose kernels accumulate in int64);
- SOFTMAX and LOGISTIC outputs: scale 1/256, zero point -128 (TFLM refuses anything else).

Rounding is half away from zero (``std::round``), as TFLite's quantizer rounds.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Quantization
from tinyml.reference.fixedpoint import tflite_round

QMIN, QMAX = -128, 127
#: Symmetric weights use [-127, 127].
WEIGHT_QMAX = 127
#: TFLM's fixed output quantization of SOFTMAX and LOGISTIC (probabilities in [0, 1)).
UNIT_INTERVAL = (1.0 / 256.0, -128)
#: The converter's output quantization of TANH (values in [-1, 1)): TFLM's int8 TANH writes
#: codes in units of 1/128 around 0 whatever the output's quantization says.
SYMMETRIC_UNIT_INTERVAL = (1.0 / 128.0, 0)
#: TFLM's fixed output quantization of LOG_SOFTMAX (log-probabilities, <= 0).
LOG_PROBABILITY = (16.0 / 256.0, 127)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def activation_quantization(low: float, high: float) -> Quantization:
    """Per-tensor asymmetric int8 for real values in [low, high].

    The range is widened to contain 0; scale = (high - low) / 255 and the zero point is the
    code of real 0, rounded and clamped to int8 (TFLite's ``GetAsymmetricQuantizationParams``).
    An all-zero tensor gets scale 1 (any scale represents it exactly).
    """
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"non-finite range [{low}, {high}]")
    if high - low <= 0.0:
        return Quantization([1.0], [0])
    scale = np.float32((high - low) / (QMAX - QMIN))
    if scale == 0:  # a range so small float32 rounds its scale to 0
        scale = np.float32(np.finfo(np.float32).tiny)
    zero_from_min = QMIN - low / float(scale)
    zero_point = int(np.clip(tflite_round(zero_from_min), QMIN, QMAX))
    return Quantization([scale], [zero_point])


def representable_range(q: Quantization) -> tuple[float, float]:
    """The real values int8 codes -128 and 127 stand for."""
    scale, zero = float(q.scale[0]), int(q.zero_point[0])
    return scale * (QMIN - zero), scale * (QMAX - zero)


def quantize_array(x: np.ndarray, q: Quantization, dtype=np.int8) -> np.ndarray:
    """Real values to codes with a per-tensor quantization: round(x / scale) + zero point,
    in float32 as TFLM's QUANTIZE computes it, clamped to the type."""
    info = np.iinfo(dtype)
    scaled = np.asarray(np.asarray(x, np.float32) / np.float32(q.scale[0]))
    codes = np.asarray(tflite_round(scaled)).astype(np.int64) + int(q.zero_point[0])
    return np.clip(codes, info.min, info.max).astype(dtype)


def dequantize_array(codes: np.ndarray, q: Quantization) -> np.ndarray:
    """Codes to real values (per-tensor or per-axis), in float64."""
    codes = np.asarray(codes)
    shape = [1] * codes.ndim
    if q.per_channel:
        shape[q.axis] = -1
    scale = q.scale.astype(np.float64).reshape(shape)
    zero = q.zero_point.reshape(shape)
    return scale * (codes.astype(np.int64) - zero)


def symmetric_weights(w: np.ndarray, axis: int) -> tuple[np.ndarray, Quantization]:
    """Per-channel symmetric int8 weights along ``axis``: scale = max|w| / 127 per channel
    (1 for an all-zero channel), codes rounded and clamped to [-127, 127].

    The codes are ``round(w * (1 / scale))`` in float32, as TFLite's quantizer computes them
    (``SymmetricPerChannelQuantizeValues``). It matters for weights that fall on rounding ties,
    such as those of a dynamic-range model dequantized from int8 codes: rounded in float64
    instead, MLPerf Tiny's kws model loses 0.9 dB of output SQNR against the converter's."""
    w = np.asarray(w, np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    peak = np.abs(moved).max(axis=1) if moved.size else np.zeros(w.shape[axis])
    scales = np.where(peak > 0, peak / np.float32(WEIGHT_QMAX), 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    inverse = (np.float32(1.0) / scales).astype(np.float32).reshape(shape)
    codes = tflite_round((w * inverse).astype(np.float32))
    codes = np.clip(codes, -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)
    return codes, Quantization(scales, np.zeros(scales.size, np.int64), axis)


def bias_int32(bias: np.ndarray, input_scale: float, weight_scales: np.ndarray
               ) -> tuple[np.ndarray, Quantization]:
    """int32 bias at scale input_scale x weight_scale[c] (float32 products, as TFLite stores
    them), saturated to the int32 range."""
    scales = (np.float32(input_scale) * np.asarray(weight_scales, np.float32)).astype(np.float32)
    codes = tflite_round(np.asarray(bias, np.float64) / scales.astype(np.float64))
    codes = np.clip(codes, INT32_MIN, INT32_MAX).astype(np.int32)
    axis = 0 if scales.size > 1 else None
    return codes, Quantization(scales, np.zeros(scales.size, np.int64), axis)


def bias_int64(bias: np.ndarray, input_scale: float, weight_scales: np.ndarray
               ) -> tuple[np.ndarray, Quantization]:
    """The bias of a 16x8 layer: int64 at scale input_scale x weight_scale[c] (float32
    products, as the TFLite converter stores them for int16 activations)."""
    scales = (np.float32(input_scale) * np.asarray(weight_scales, np.float32)).astype(np.float32)
    codes = tflite_round(np.asarray(bias, np.float64) / scales.astype(np.float64))
    codes = np.clip(codes, -(2.0 ** 62), 2.0 ** 62).astype(np.int64)
    axis = 0 if scales.size > 1 else None
    return codes, Quantization(scales, np.zeros(scales.size, np.int64), axis)
