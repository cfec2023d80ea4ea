"""TFLM's int16 sigmoid and tanh (``reference_integer_ops::Logistic`` / ``Tanh`` on int16).

Why a module of its own: these are not the int8 kernels' gemmlowp fixed-point functions but a
256-entry table of sigmoid values (``sigmoid_table_uint16``) with linear interpolation
between entries, and the integer LSTM (:mod:`tinyml.reference.kernels.lstm`) runs every gate
through them. The table is TFLM's, recovered by measuring TFLM's own int16 LOGISTIC and TANH
(:mod:`tinyml.reference.sigmoid_table_derivation`), not computed from a formula: 44 of its
entries are not ``round(65536 * sigmoid(i / 24))``.

Both functions take the input rescaling TFLM passes (``input_multiplier``, ``input_left_shift``;
a zero multiplier is the power-of-two case, multiplier ``3 << input_left_shift``) and return
int16 in Q0.15 (sigmoid) or Q0.15 signed (tanh), exactly as the C does in uint32 / int32.
"""

from __future__ import annotations

import numpy as np


def _table(table) -> np.ndarray:
    if table is None:
        from tinyml.reference.sigmoid_table import SIGMOID_TABLE_UINT16
        table = SIGMOID_TABLE_UINT16
    return np.asarray(table, np.int64)


def rescaled_input(x, input_multiplier: int, input_left_shift: int) -> np.ndarray:
    """``((x * multiplier + round) >> left_shift)`` as TFLM computes it (int32, arithmetic
    shift)."""
    if input_multiplier == 0:
        input_multiplier, input_left_shift = 3 << input_left_shift, 0
    rounding = (1 << (input_left_shift - 1)) if input_left_shift > 0 else 0
    return (np.asarray(x, np.int64) * input_multiplier + rounding) >> input_left_shift


def logistic_int16(x, input_multiplier: int = 0, input_left_shift: int = 0,
                   table=None) -> np.ndarray:
    """``reference_integer_ops::Logistic`` (int16 in, int16 out): 9 fractional bits of
    interpolation between table entries ``abs >> 9`` and the next."""
    t = _table(table)
    v = rescaled_input(x, input_multiplier, input_left_shift)
    a = np.abs(v)
    uh = a >> 9
    inside = uh < 255
    i = np.where(inside, uh, 0)
    ua, ub = t[i], t[np.minimum(i + 1, 255)]
    ut = a & 0x1FF
    result = np.where(inside, (ua << 9) + ut * (ub - ua), 0x7FFF << 10)
    result = np.where(v >= 0, result + (1 << 9), (1 << 25) - result + (1 << 9) - 1)
    return ((result & 0xFFFFFFFF) >> 10).astype(np.int16)


def tanh_int16(x, input_multiplier: int = 0, input_left_shift: int = 0,
               table=None) -> np.ndarray:
    """``reference_integer_ops::Tanh`` (int16 in, int16 out): tanh(x) = 2 sigmoid(2x) - 1 on
    the same table, 8 fractional bits of interpolation."""
    t = _table(table)
    v = rescaled_input(x, input_multiplier, input_left_shift)
    a = np.abs(v)
    uh = a >> 8
    inside = uh < 255
    i = np.where(inside, uh, 0)
    ua, ub = t[i], t[np.minimum(i + 1, 255)]
    ut = a & 0xFF
    result = np.where(inside, (ua << 8) + ut * (ub - ua), 0xFFFF << 8)
    result = np.where(v >= 0, result - (1 << 23) + (1 << 7), -result + (1 << 23) + (1 << 7) - 1)
    return (result >> 8).astype(np.int16)


def int16_activation_params(kind: str, input_scale: float) -> tuple[int, int]:
    """(input_multiplier, input_left_shift) TFLM's int16 LOGISTIC or TANH Prepare derives from
    the input scale (``CalculateArithmeticOpDataLogistic``, ``tanh.cc``): 0 and the shift for
    a power-of-two scale 2^-12 (TANH: also 2^-11), else a multiplier in (16383.5, 32767] and
    its shift that rescale the input to 1/(3 * 4096)."""
    log2 = checked_log2(input_scale)
    shift = 12 + log2[0]
    pot = log2[1] and (shift == 0 or (kind == "TANH" and shift == 1))
    if pot:
        return 0, shift
    multiplier = float(np.float32(input_scale)) * 4096.0 * 3.0
    shift = 0
    while multiplier <= 32767.0 / 2.0 and shift <= 30:
        shift += 1
        multiplier *= 2.0
    return int(multiplier), shift


def checked_log2(x: float) -> tuple[int, bool]:
    """``CheckedLog2``: (round(log2 x), whether x is a power of two within 1e-3 in the
    exponent), in float32 as TFLite computes it."""
    from tinyml.reference.fixedpoint import tflite_round
    x_log2 = np.float32(np.log(np.float32(x))) * (np.float32(1.0) / np.log(np.float32(2.0)))
    rounded = np.float32(tflite_round(np.float32(x_log2)))
    return int(rounded), bool(abs(np.float32(x_log2 - rounded)) < np.float32(1e-3))
