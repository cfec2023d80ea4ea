"""gemmlowp's fixed-point math, vectorized: what TFLM's int8 SOFTMAX, LOGISTIC, TANH and
HARD_SWISH compute with.

Why it exists: those kernels do not requantize with one multiplier as convolutions do; they
evaluate exp(), 1/(1+x) and the logistic function in Q-format integers with gemmlowp's
``fixedpoint.h`` (TFLM carries its own copy in ``micro/kernels/internal/fixedpoint.h``), and
HARD_SWISH works on int16 fixed-point values. Every rounding step of those routines shows in
the int8 result, so they are reproduced here operation by operation rather than approximated
with floats. The plain requantization primitives (``SaturatingRoundingDoublingHighMul``,
``RoundingDivideByPOT``, ``QuantizeMultiplier``) live in :mod:`tinyml.reference.fixedpoint`
and are reused.

Conventions: a fixed-point value with ``integer_bits`` = m is a raw int32 in Qm.(31-m) format
(gemmlowp's ``FixedPoint<int32_t, m>``); functions take and return raw values held in int64
numpy arrays. Plain additions and subtractions wrap like the int32 arithmetic of the C code.
The ``*_int16`` functions reproduce the 16-bit specializations.
"""

from __future__ import annotations

import math

import numpy as np

from tinyml.reference.fixedpoint import (
    INT32_MAX, INT32_MIN, rounding_divide_by_pot, saturating_rounding_doubling_high_mul,
    wrap_int32,
)

INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1

# gemmlowp's constants, as the raw int32 values it hard-codes.
_EXP_MINUS_ONE_EIGHTH = 1895147668          # exp(-1/8) in Q0.31
_ONE_THIRD = 715827883                      # 1/3 in Q0.31
_FORTY_EIGHT_OVER_SEVENTEEN = 1515870810    # 48/17 in Q2.29
_MINUS_THIRTY_TWO_OVER_SEVENTEEN = -1010580540  # -32/17 in Q2.29
#: exp(-2^k) in Q0.31 for the barrel shifter of exp_on_negative_values, k = -2..4.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_int16(x):
    """Two's-complement wrap to int16 (a C conversion of an int to ``int16_t``)."""
    x = _i64(x)
    return ((x + (1 << 15)) & 0xFFFF) - (1 << 15)


def add(a, b):
    """gemmlowp ``Add`` on int32: plain addition (wraps on overflow)."""
    return wrap_int32(_i64(a) + _i64(b))


def sub(a, b):
    """gemmlowp ``Sub`` on int32: plain subtraction (wraps on overflow)."""
    return wrap_int32(_i64(a) - _i64(b))


def _divide_by_pot_toward_zero(x, exponent: int):
    """C integer division ``x / 2^exponent``: truncates toward zero."""
    x = _i64(x)
    return np.where(x >= 0, x >> exponent, -((-x) >> exponent))


def rounding_half_sum(a, b):
    """gemmlowp ``RoundingHalfSum`` on int32: (a + b) / 2, ties away from zero."""
    total = _i64(a) + _i64(b)
    return _divide_by_pot_toward_zero(total + np.where(total >= 0, 1, -1), 1)


def saturating_rounding_multiply_by_pot(x, exponent: int, bits: int = 32):
    """gemmlowp ``SaturatingRoundingMultiplyByPOT<exponent>``: x * 2^exponent.

    A positive exponent shifts left, saturating to the ``bits``-wide range; a negative one
    is a rounding right shift (``RoundingDivideByPOT``).
    """
    x = _i64(x)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (bits - 1 - exponent)) - 1
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    shifted = np.clip(x * (1 << exponent), lo, hi)
    return np.where(x > threshold, hi, np.where(x < -threshold, lo, shifted))


def rescale(x, src_integer_bits: int, dst_integer_bits: int):
    """gemmlowp ``Rescale<dst>``: move a raw value from Q(src) to Q(dst), rounding/saturating."""
    return saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)


def count_leading_zeros_u32(x):
    """``CountLeadingZeros`` of the values reinterpreted as uint32 (32 for zero)."""
    u = _i64(x) & 0xFFFFFFFF
    bit_length = np.zeros(u.shape, dtype=np.int64)
    for step in (16, 8, 4, 2, 1):
        high = (u >> step) != 0
        bit_length = np.where(high, bit_length + step, bit_length)
        u = np.where(high, u >> step, u)
    bit_length = bit_length + (u != 0)
    return 32 - bit_length


# ---- exp, 1/(1+x), logistic (int32, FixedPoint<int32_t, m>) -------------------------------


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """exp(a) for a in [-1/4, 0), a in Q0.31: a 4th-order Taylor expansion around -1/8."""
    x = add(a, 1 << 28)  # a + 1/8
    x2 = saturating_rounding_doubling_high_mul(x, x)
    x3 = saturating_rounding_doubling_high_mul(x2, x)
    x4 = saturating_rounding_doubling_high_mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(
        add(saturating_rounding_doubling_high_mul(add(x4_over_4, x3), _ONE_THIRD), x2), 1)
    return add(_EXP_MINUS_ONE_EIGHTH,
               saturating_rounding_doubling_high_mul(_EXP_MINUS_ONE_EIGHTH, add(x, poly)))


def exp_on_negative_values(a, integer_bits: int):
    """gemmlowp ``exp_on_negative_values``: exp(a) in Q0.31 for a <= 0 in Q(integer_bits).

    a = -(k/4 + r) with r in [0, 1/4): exp of the remainder by Taylor series, then one
    multiplication by exp(-2^j) for every set bit j of the quarter count.
    """
    a = _i64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod_quarter_minus_one_quarter = sub(a & (one_quarter - 1), one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = sub(a_mod_quarter_minus_one_quarter, a)
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = 1 << (fractional_bits + exponent)
            result = np.where(remainder & bit,
                              saturating_rounding_doubling_high_mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))  # -32.0
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _reciprocal_of_half_denominator(a):
    """1/((1 + a)/2) in Q2.29 for a in Q0.31: gemmlowp's three Newton-Raphson steps on the
    half denominator, shared by ``one_over_one_plus_x_for_x_in_0_1`` and
    ``one_minus_x_over_one_plus_x_for_x_in_0_1``."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = add(_FORTY_EIGHT_OVER_SEVENTEEN,
            saturating_rounding_doubling_high_mul(half_denominator,
                                                  _MINUS_THIRTY_TWO_OVER_SEVENTEEN))
    one_q2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = saturating_rounding_doubling_high_mul(half_denominator, x)
        one_minus = sub(one_q2, half_denominator_times_x)
        # x * one_minus is in Q4.27; Rescale<2> brings it back to Q2.29.
        x = add(x, rescale(saturating_rounding_doubling_high_mul(x, one_minus), 4, 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: 1/(1+a) in Q0.31 for a in Q0.31."""
    # ExactMulByPot<-1> reinterprets Q2.29 as Q1.30; Rescale<0> then shifts left by one.
    return rescale(_reciprocal_of_half_denominator(a), 1, 0)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp ``one_minus_x_over_one_plus_x_for_x_in_0_1``: (1-a)/(1+a) in Q0.31, as
    2/(1+a) - 1 in Q2.29 brought to Q0.31."""
    return rescale(sub(_reciprocal_of_half_denominator(a), 1 << 29), 2, 0)


def tanh(a, integer_bits: int):
    """gemmlowp ``tanh``: tanh(a) in Q0.31 for a in Q(integer_bits).

    -|a| doubled (``ExactMulByPot<1>`` only relabels the format as Q(integer_bits + 1)) goes
    through exp; (1 - e) / (1 + e) is -tanh of the negative value; the sign is restored.
    """
    a = _i64(a)
    negative = a < 0
    n = np.where(negative, a, wrap_int32(-a))
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, wrap_int32(-t), t))


def logistic(a, integer_bits: int):
    """gemmlowp ``logistic``: 1/(1+exp(-a)) in Q0.31 for a in Q(integer_bits)."""
    a = _i64(a)
    positive = a > 0
    abs_a = np.where(positive, a, wrap_int32(-a))
    if_positive = one_over_one_plus_x_for_x_in_0_1(
        exp_on_negative_values(wrap_int32(-abs_a), integer_bits))
    if_negative = sub(INT32_MAX, if_positive)
    return np.where(a == 0, 1 << 30, np.where(positive, if_positive, if_negative))


def get_reciprocal(x, x_integer_digits: int):
    """TFLite ``GetReciprocal``: 1/x for x > 0 in Q(x_integer_digits).

    Returns (raw Q0.31 value of 2^n / x, n) where n = ``num_bits_over_unit``: x is
    normalized to [1, 2) by its leading zeros and 1/(1 + (x - 1)) is evaluated.
    """
    x = _i64(x)
    headroom_plus_one = count_leading_zeros_u32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted = ((x & 0xFFFFFFFF) << headroom_plus_one) & 0xFFFFFFFF
    shifted_sum_minus_one = wrap_int32(shifted - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit


# ---- int16 variants (FixedPoint<int16_t, m>), used by HARD_SWISH ----------------------------


def saturating_rounding_doubling_high_mul_int16(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int16: round(a * b / 2^15)."""
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    high = wrap_int16(_divide_by_pot_toward_zero(ab + nudge, 15))
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, high)


def saturating_doubling_high_mul_int16(a, b):
    """TFLM's ``SaturatingDoublingHighMul`` (ARM SQDMULH): a * b / 2^15 truncated toward 0.

    HARD_SWISH uses this non-rounding variant on purpose, to cancel the bias of the rounding
    multiplications before it.
    """
    a, b = _i64(a), _i64(b)
    high = wrap_int16(_divide_by_pot_toward_zero(a * b, 15))
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, high)


def rounding_divide_by_pot_int16(x, exponent: int):
    """gemmlowp ``RoundingDivideByPOT`` on int16, including its mask narrowed to int16."""
    x = _i64(x)
    mask = int(wrap_int16((1 << exponent) - 1))
    remainder = wrap_int16(x & mask)
    threshold = wrap_int16((mask >> 1) + (x < 0))
    return wrap_int16((x >> exponent) + (remainder > threshold))


def saturating_left_shift_int16(x, amount: int):
    """TFLM's ``SaturatingLeftShift`` for int16: x * 2^amount clamped to the int16 range."""
    return np.clip(_i64(x) * (1 << amount), INT16_MIN, INT16_MAX)


# ---- parameters computed at Prepare time ---------------------------------------------------


def downscale_int32_to_int16_multiplier(multiplier: int) -> int:
    """TFLite ``DownScaleInt32ToInt16Multiplier``: a Q0.31 multiplier rounded to Q0.15."""
    if multiplier < 0:
        raise ValueError("multiplier must be non-negative")
    if multiplier >= INT32_MAX - (1 << 15):
        return INT16_MAX
    return (multiplier + (1 << 15)) >> 16


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """TFLite ``CalculateInputRadius``: the largest |input| whose rescaled value still fits
    Q(input_integer_bits) once multiplied by 2^input_left_shift (floor, in double)."""
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                          * float(1 << (total_signed_bits - input_integer_bits))
                          / float(1 << input_left_shift))
    return int(math.floor(max_input_rescaled))


__all__ = [
    "INT16_MAX", "INT16_MIN", "INT32_MAX", "INT32_MIN", "add", "calculate_input_radius",
    "count_leading_zeros_u32", "downscale_int32_to_int16_multiplier", "exp_on_negative_values",
    "exp_on_interval_between_negative_one_quarter_and_0_excl", "get_reciprocal", "logistic",
    "one_minus_x_over_one_plus_x_for_x_in_0_1", "one_over_one_plus_x_for_x_in_0_1", "rescale",
    "rounding_divide_by_pot_int16", "rounding_half_sum", "saturating_doubling_high_mul_int16",
    "saturating_left_shift_int16",
    "saturating_rounding_doubling_high_mul_int16", "saturating_rounding_multiply_by_pot", "sub",
    "tanh", "wrap_int16",
]
