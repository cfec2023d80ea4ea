/*
 * Integer arithmetic shared by the portable kernels (private header).
 *
 * These are TFLite's requantization primitives in TFLM's default build (double rounding) and
 * the gemmlowp fixed-point routines its SOFTMAX, LOGISTIC and HARD_SWISH use. They mirror
 * tinyml/reference/fixedpoint.py and tinyml/reference/gemmlowp.py function by function; the
 * tests compare every kernel with those bit for bit.
 *
 * Overflow: TFLM lets int32 arithmetic wrap (undefined behaviour in C). Where the reference
 * wraps on purpose, these helpers wrap through uint32_t, which is defined; conversions back to
 * int32_t rely on two's complement, as every supported compiler provides. Right shifts of
 * negative values are arithmetic (implementation-defined in C99, true on GCC, Clang, Arm and
 * IAR compilers).
 */
#ifndef TINYML_FIXEDPOINT_H
#define TINYML_FIXEDPOINT_H

#include <stdint.h>

#define TINYML_INT32_MIN (-2147483647 - 1)
#define TINYML_INT32_MAX 2147483647
#define TINYML_INT16_MIN (-32768)
#define TINYML_INT16_MAX 32767

/* TfLiteRound (std::round: half away from zero) of |v| < 2^23, as an int32: QUANTIZE from
 * float32. The difference to the truncated value is exact in float32, so ties are decided on
 * the exact value. */
static inline int32_t tinyml_round_half_away(float v)
{
    const int32_t t = (int32_t)v;
    const float fraction = v - (float)t;
    if (fraction >= 0.5f) {
        return t + 1;
    }
    if (fraction <= -0.5f) {
        return t - 1;
    }
    return t;
}

static inline int32_t tinyml_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t tinyml_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }

/* a + b and a - b with two's-complement wrap-around (gemmlowp's Add/Sub on raw int32). */
static inline int32_t tinyml_wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t tinyml_wrap_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* x * 2^shift, 0 <= shift < 32, wrapping like int32 multiplication does in TFLM. */
static inline int32_t tinyml_wrap_shl(int32_t x, int32_t shift)
{
    return (int32_t)((uint32_t)x << shift);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), saturating. */
static inline int32_t tinyml_srdhm(int32_t a, int32_t b)
{
    if (a == TINYML_INT32_MIN && b == TINYML_INT32_MIN) {
        return TINYML_INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero, exponent >= 0.
 * For exponent > 31 every int32 rounds to 0 (the reference computes it in int64). */
static inline int32_t tinyml_rdbpot(int32_t x, int32_t exponent)
{
    if (exponent > 31) {
        return 0;
    }
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier (double rounding): x * multiplier * 2^(shift - 31). */
static inline int32_t tinyml_mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    /* A left shift of 32 or more leaves no low bits: the wrapped product is 0. */
    const int32_t shifted = left > 31 ? 0 : tinyml_wrap_shl(x, left);
    return tinyml_rdbpot(tinyml_srdhm(shifted, multiplier), right);
}

/* The output stage of the int8 kernels: rescale, add the zero point (wrapping, as the
 * reference's requantize does), clamp. */
static inline int8_t tinyml_requantize(int32_t acc, int32_t multiplier, int32_t shift,
                                       int32_t zero_point, int32_t act_min, int32_t act_max)
{
    int32_t y = tinyml_wrap_add(tinyml_mbqm(acc, multiplier, shift), zero_point);
    y = tinyml_max_i32(y, act_min);
    y = tinyml_min_i32(y, act_max);
    return (int8_t)y;
}

/* x + zero_point without wrapping (kernels whose reference adds in int64), clamped. */
static inline int8_t tinyml_add_clamp(int32_t x, int32_t zero_point, int32_t act_min,
                                      int32_t act_max)
{
    int64_t y = (int64_t)x + zero_point;
    if (y < act_min) {
        y = act_min;
    }
    if (y > act_max) {
        y = act_max;
    }
    return (int8_t)y;
}

/* ADD's arithmetic (TFLM AddElementwise) on two inputs already offset by their zero points:
 * each is shifted left, rescaled to the common scale, the sum rescaled to the output; the
 * zero point is added without wrapping (as the reference does) and the result clamped. */
static inline int8_t tinyml_rescaled_sum(int32_t a, int32_t b, int32_t left_shift,
                                         int32_t multiplier1, int32_t shift1,
                                         int32_t multiplier2, int32_t shift2,
                                         int32_t output_multiplier, int32_t output_shift,
                                         int32_t output_offset, int32_t act_min,
                                         int32_t act_max)
{
    const int32_t scaled1 = tinyml_mbqm(tinyml_wrap_shl(a, left_shift), multiplier1, shift1);
    const int32_t scaled2 = tinyml_mbqm(tinyml_wrap_shl(b, left_shift), multiplier2, shift2);
    const int32_t raw = tinyml_mbqm(tinyml_wrap_add(scaled1, scaled2), output_multiplier,
                                    output_shift);
    return tinyml_add_clamp(raw, output_offset, act_min, act_max);
}

/* TFLM's MultiplyByQuantizedMultiplier(int64_t x, ...) (double-rounding build), used by the
 * 16x8 kernels with an int64 bias: the multiplier is reduced to 16 bits, then one rounding
 * shift by 15 - shift; the result is narrowed to int32 as the C++ assignment narrows it. */
static inline int32_t tinyml_mbqm64(int64_t x, int32_t multiplier, int32_t shift)
{
    const int64_t reduced = multiplier < 0x7FFF0000 ? (int64_t)((multiplier + (1 << 15)) >> 16)
                                                    : 0x7FFF;
    const int32_t total_shift = 15 - shift;
    const int64_t y = (x * reduced + ((int64_t)1 << (total_shift - 1))) >> total_shift;
    return (int32_t)(uint32_t)(uint64_t)y;
}

/* The output stage of the 16x8 conv and FC kernels on their int64 sum (bias included): the
 * int64 requantization, or, for an int32 bias, the int32 one on the sum wrapped to int32
 * (TFLM accumulates in the bias's type; modular addition makes the wrapped int64 sum equal
 * the wrapping int32 one). */
static inline int32_t tinyml_requantize_16x8(int64_t acc, int32_t multiplier, int32_t shift,
                                             int32_t int32_accumulator)
{
    if (int32_accumulator) {
        return tinyml_mbqm((int32_t)(uint32_t)(uint64_t)acc, multiplier, shift);
    }
    return tinyml_mbqm64(acc, multiplier, shift);
}

/* A value clamped to [act_min, act_max] as int16 (the activation range lies in int16). */
static inline int16_t tinyml_clamp_s16(int32_t x, int32_t act_min, int32_t act_max)
{
    return (int16_t)tinyml_min_i32(tinyml_max_i32(x, act_min), act_max);
}

/* ---- gemmlowp FixedPoint<int32_t, m> ------------------------------------------------------ */

/* RoundingHalfSum: (a + b) / 2 rounded half away from zero. */
static inline int32_t tinyml_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}

/* SaturatingRoundingMultiplyByPOT<exponent> on int32. */
static inline int32_t tinyml_srmbpot(int32_t x, int32_t exponent)
{
    if (exponent == 0) {
        return x;
    }
    if (exponent < 0) {
        return tinyml_rdbpot(x, -exponent);
    }
    {
        const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
        if (x > threshold) {
            return TINYML_INT32_MAX;
        }
        if (x < -threshold) {
            return TINYML_INT32_MIN;
        }
        return tinyml_wrap_shl(x, exponent);
    }
}

/* Rescale<dst_integer_bits> of a value with src_integer_bits. */
static inline int32_t tinyml_rescale(int32_t x, int32_t src_integer_bits,
                                     int32_t dst_integer_bits)
{
    return tinyml_srmbpot(x, src_integer_bits - dst_integer_bits);
}

/* Number of leading zero bits of x as uint32 (32 for 0). */
static inline int32_t tinyml_clz_u32(uint32_t x)
{
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* exp(a) for a in [-1/4, 0), Q0.31. */
static inline int32_t tinyml_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t exp_minus_one_eighth = 1895147668;
    const int32_t one_third = 715827883;
    const int32_t x = tinyml_wrap_add(a, 1 << 28);
    const int32_t x2 = tinyml_srdhm(x, x);
    const int32_t x3 = tinyml_srdhm(x2, x);
    const int32_t x4 = tinyml_srdhm(x2, x2);
    const int32_t x4_over_4 = tinyml_rdbpot(x4, 2);
    const int32_t poly = tinyml_rdbpot(
        tinyml_wrap_add(tinyml_srdhm(tinyml_wrap_add(x4_over_4, x3), one_third), x2), 1);
    return tinyml_wrap_add(exp_minus_one_eighth,
                           tinyml_srdhm(exp_minus_one_eighth, tinyml_wrap_add(x, poly)));
}

/* exp(a) in Q0.31 for a <= 0 in Q(integer_bits).31-integer_bits, 0 < integer_bits < 31. */
static inline int32_t tinyml_exp_on_negative_values(int32_t a, int32_t integer_bits)
{
    static const int32_t barrel[7][2] = {
        {-2, 1672461947}, {-1, 1302514674}, {0, 790015084}, {1, 290630308},
        {2, 39332535}, {3, 720401}, {4, 242},
    };
    const int32_t fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t a_mod_quarter_minus_one_quarter =
        tinyml_wrap_sub(a & (one_quarter - 1), one_quarter);
    int32_t result = tinyml_exp_on_interval_between_negative_one_quarter_and_0_excl(
        tinyml_rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0));
    const int32_t remainder = tinyml_wrap_sub(a_mod_quarter_minus_one_quarter, a);
    int i;
    for (i = 0; i < 7; ++i) {
        const int32_t exponent = barrel[i][0];
        if (integer_bits > exponent) {
            const uint32_t bit = (uint32_t)1 << (fractional_bits + exponent);
            if ((uint32_t)remainder & bit) {
                result = tinyml_srdhm(result, barrel[i][1]);
            }
        }
    }
    if (integer_bits > 5) {
        const int32_t clamp = -((int32_t)1 << (36 - integer_bits));
        if (a < clamp) {
            result = 0;
        }
    }
    return a == 0 ? TINYML_INT32_MAX : result;
}

/* 1 / (1 + a) in Q0.31 for a in [0, 1) in Q0.31 (three Newton-Raphson steps in Q2.29). */
static inline int32_t tinyml_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    const int32_t half_denominator = tinyml_rounding_half_sum(a, TINYML_INT32_MAX);
    const int32_t forty_eight_over_seventeen = 1515870810;
    const int32_t minus_thirty_two_over_seventeen = -1010580540;
    int32_t x = tinyml_wrap_add(forty_eight_over_seventeen,
                                tinyml_srdhm(half_denominator,
                                             minus_thirty_two_over_seventeen));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = tinyml_srdhm(half_denominator, x);
        const int32_t one_minus = tinyml_wrap_sub((int32_t)1 << 29, half_denominator_times_x);
        x = tinyml_wrap_add(x, tinyml_rescale(tinyml_srdhm(x, one_minus), 4, 2));
    }
    return tinyml_rescale(x, 1, 0);
}

/* logistic(a) = 1 / (1 + exp(-a)) in Q0.31 for a in Q(integer_bits). */
static inline int32_t tinyml_logistic_fixed(int32_t a, int32_t integer_bits)
{
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    {
        const int32_t abs_a = a > 0 ? a : tinyml_wrap_sub(0, a);
        const int32_t if_positive = tinyml_one_over_one_plus_x_for_x_in_0_1(
            tinyml_exp_on_negative_values(tinyml_wrap_sub(0, abs_a), integer_bits));
        return a > 0 ? if_positive : tinyml_wrap_sub(TINYML_INT32_MAX, if_positive);
    }
}

/* GetReciprocal: 1/x for x > 0 in Q(x_integer_digits); returns the Q0.31 value of
 * 2^num_bits_over_unit / x and stores num_bits_over_unit. */
static inline int32_t tinyml_get_reciprocal(int32_t x, int32_t x_integer_digits,
                                            int32_t *num_bits_over_unit)
{
    const int32_t headroom_plus_one = tinyml_clz_u32((uint32_t)x);
    const uint32_t shifted = headroom_plus_one >= 32
                                 ? 0u
                                 : (uint32_t)x << headroom_plus_one;
    *num_bits_over_unit = x_integer_digits - headroom_plus_one;
    return tinyml_one_over_one_plus_x_for_x_in_0_1(
        (int32_t)(shifted - 0x80000000u));
}

/* ---- gemmlowp FixedPoint<int16_t, m> (HARD_SWISH) ----------------------------------------- */

/* Two's-complement wrap to int16. */
static inline int32_t tinyml_wrap_i16(int32_t x)
{
    return (int32_t)(int16_t)(uint16_t)((uint32_t)x & 0xFFFFu);
}

/* C integer division by 2^exponent, truncating toward zero. */
static inline int32_t tinyml_div_pot_toward_zero(int32_t x, int32_t exponent)
{
    return x >= 0 ? (x >> exponent) : -((-x) >> exponent);
}

/* SaturatingRoundingDoublingHighMul on int16: round(a * b / 2^15). */
static inline int32_t tinyml_srdhm_i16(int32_t a, int32_t b)
{
    if (a == TINYML_INT16_MIN && b == TINYML_INT16_MIN) {
        return TINYML_INT16_MAX;
    }
    {
        const int32_t ab = a * b;
        const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
        return tinyml_wrap_i16(tinyml_div_pot_toward_zero(ab + nudge, 15));
    }
}

/* TFLM's SaturatingDoublingHighMul on int16: a * b / 2^15 truncated toward zero. */
static inline int32_t tinyml_sdhm_i16(int32_t a, int32_t b)
{
    if (a == TINYML_INT16_MIN && b == TINYML_INT16_MIN) {
        return TINYML_INT16_MAX;
    }
    return tinyml_wrap_i16(tinyml_div_pot_toward_zero(a * b, 15));
}

/* RoundingDivideByPOT on int16, its mask narrowed to int16 as gemmlowp's is. */
static inline int32_t tinyml_rdbpot_i16(int32_t x, int32_t exponent)
{
    /* Beyond 31 bits nothing changes for int16 values: the mask is all ones, the shift
     * leaves the sign. */
    const int32_t e = exponent > 31 ? 31 : exponent;
    const int32_t mask = tinyml_wrap_i16((int32_t)(((int64_t)1 << e) - 1));
    const int32_t remainder = tinyml_wrap_i16(x & mask);
    const int32_t threshold = tinyml_wrap_i16((mask >> 1) + (x < 0 ? 1 : 0));
    return tinyml_wrap_i16((x >> e) + (remainder > threshold ? 1 : 0));
}

/* SaturatingLeftShift on int16: x * 2^amount clamped to the int16 range, amount >= 0. */
static inline int32_t tinyml_saturating_left_shift_i16(int32_t x, int32_t amount)
{
    const int64_t y = (int64_t)x * ((int64_t)1 << (amount > 32 ? 32 : amount));
    if (y > TINYML_INT16_MAX) {
        return TINYML_INT16_MAX;
    }
    if (y < TINYML_INT16_MIN) {
        return TINYML_INT16_MIN;
    }
    return (int32_t)y;
}

#endif /* TINYML_FIXEDPOINT_H */
