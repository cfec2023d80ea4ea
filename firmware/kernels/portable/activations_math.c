/*
 * int8 LEAKY_RELU, PRELU and ABS, and a 256-entry lookup table (TANH, ELU, RSQRT), element
 * by element: each kernel reads element i before writing element i, so all of them may run
 * in place; and LOG_SOFTMAX row by row (a row is read whole before it is written). Every
 * constant (multipliers, shifts, tables) is derived at compile time by
 * tinyml.codegen.lowering with the reference's own functions.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

static int8_t clamp_s8(int32_t x)
{
    return (int8_t)tinyml_min_i32(tinyml_max_i32(x, -128), 127);
}

void tinyml_leaky_relu_s8(const tinyml_leaky_relu_params *p, const int8_t *input,
                          int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        int32_t y;
        if (x >= 0) {
            y = tinyml_mbqm(x, p->identity_multiplier, p->identity_shift);
        } else {
            y = tinyml_mbqm(x, p->alpha_multiplier, p->alpha_shift);
            y = p->alpha_negative ? -y : y;
        }
        output[i] = clamp_s8(y + p->output_zero_point);
    }
}

/* alpha[i % alpha_period], the element's (broadcast) alpha. */
static void prelu(const tinyml_prelu_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    int32_t a = 0;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        int32_t y;
        if (x >= 0) {
            y = tinyml_mbqm(x, p->identity_multiplier, p->identity_shift);
        } else {
            const int32_t alpha = (int32_t)p->alpha[a] - p->alpha_zero_point;
            y = tinyml_mbqm(x * alpha, p->alpha_multiplier, p->alpha_shift);
        }
        output[i] = clamp_s8(y + p->output_zero_point);
        if (++a == p->alpha_period) {
            a = 0;
        }
    }
}

void tinyml_prelu_s8(const tinyml_prelu_params *p, const int8_t *input, int8_t *output)
{
    prelu(p, input, output);
}

void tinyml_prelu_tiled_s8(const tinyml_prelu_params *p, const int8_t *input, int8_t *output)
{
    prelu(p, input, output);
}

void tinyml_lut_s8(const tinyml_lut_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = p->table[(uint8_t)input[i]];
    }
}

void tinyml_abs_s8(const tinyml_abs_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        int32_t value = x < 0 ? -x : x;
        if (p->rescale) {
            value = tinyml_mbqm(value, p->multiplier, p->shift);
        }
        output[i] = clamp_s8(value + p->output_zero_point);
    }
}

/* ---- LOG_SOFTMAX ---------------------------------------------------------------------------- */

#define LOG_SOFTMAX_INPUT_BITS 5
#define LOG_SOFTMAX_SUM_BITS 12
#define LOG_SOFTMAX_OUTPUT_BITS 4

/* TFLite's SaturatingRoundingMultiplyByPOTParam for exponents >= 0. */
static int32_t shift_left_saturating(int32_t x, int32_t exponent)
{
    int32_t threshold;
    if (exponent == 0) {
        return x;
    }
    threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
    if (x > threshold) {
        return TINYML_INT32_MAX;
    }
    if (x < -threshold) {
        return TINYML_INT32_MIN;
    }
    return tinyml_wrap_shl(x, exponent);
}

static int32_t saturating_add(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    return (int32_t)(sum > TINYML_INT32_MAX ? TINYML_INT32_MAX
                                            : (sum < TINYML_INT32_MIN ? TINYML_INT32_MIN : sum));
}

/* TFLite's log_x_for_x_greater_than_or_equal_to_1: ln(x) in Q(output_bits) for x >= 1 in
 * Q(input_bits) (x = 2^z * r, r normalized two ways, a rational approximation of ln(r)). */
static int32_t log_x_ge_1(int32_t x, int32_t input_bits, int32_t output_bits)
{
    const int32_t log_2 = 1488522236;
    const int32_t sqrt_sqrt_half = 1805811301;
    const int32_t sqrt_half = 1518500250;
    const int32_t alpha_n = 117049297;
    const int32_t alpha_d = 127690142;
    const int32_t alpha_i = 1057819769;
    const int32_t alpha_f = 638450708;
    const int32_t accum_bits = output_bits + 1;
    const int32_t shifted_quarter = tinyml_rescale(536870912, 0, accum_bits);
    const int32_t z_a_headroom_plus_1 = tinyml_clz_u32((uint32_t)x);
    const int32_t r_a_tmp = shift_left_saturating(x, z_a_headroom_plus_1 - 1);
    const int32_t r_a = shift_left_saturating(tinyml_srdhm(r_a_tmp, sqrt_half), 1);
    const int32_t z_a_pow_2_adj = saturating_add(
        shift_left_saturating(input_bits - z_a_headroom_plus_1, 31 - accum_bits),
        shifted_quarter);
    const int32_t z_b = tinyml_srdhm(x, sqrt_half);
    const int32_t z_b_headroom = tinyml_clz_u32((uint32_t)z_b) - 1;
    const int32_t r_b = shift_left_saturating(x, z_b_headroom);
    const int32_t z_b_pow_2_adj = saturating_add(
        shift_left_saturating(input_bits - z_b_headroom, 31 - accum_bits), -shifted_quarter);
    const int32_t r = tinyml_min_i32(r_a, r_b);
    const int32_t z_pow_2_adj = tinyml_max_i32(z_a_pow_2_adj, z_b_pow_2_adj);
    const int32_t p = tinyml_rounding_half_sum(r, sqrt_sqrt_half);
    const int32_t q_half = tinyml_wrap_sub(r, sqrt_sqrt_half);
    const int32_t q = tinyml_wrap_add(q_half, q_half);
    const int32_t common_sq = tinyml_srdhm(q, q);
    const int32_t num = tinyml_wrap_add(tinyml_srdhm(q, r),
                                        tinyml_srdhm(tinyml_srdhm(q, common_sq), alpha_n));
    const int32_t denom_minus_one = tinyml_wrap_add(
        tinyml_srdhm(p, tinyml_wrap_add(tinyml_wrap_add(alpha_i, q),
                                        tinyml_srdhm(alpha_d, common_sq))),
        tinyml_srdhm(alpha_f, q));
    const int32_t recip_denom = tinyml_one_over_one_plus_x_for_x_in_0_1(denom_minus_one);
    const int32_t num_scaled = tinyml_rescale(num, 0, accum_bits);
    return tinyml_rescale(tinyml_wrap_add(tinyml_srdhm(z_pow_2_adj, log_2),
                                          tinyml_srdhm(num_scaled, recip_denom)),
                          accum_bits, output_bits);
}

void tinyml_log_softmax_s8(const tinyml_log_softmax_params *p, const int8_t *input,
                           int8_t *output)
{
    int32_t row, c;
    for (row = 0; row < p->rows; ++row) {
        const int8_t *x = input + row * p->depth;
        int8_t *y = output + row * p->depth;
        int32_t max = -128;
        int32_t sum_of_exps = 0;
        int32_t log_sum, adjusted_diff_min;
        for (c = 0; c < p->depth; ++c) {
            max = tinyml_max_i32(max, x[c]);
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max;
            if (diff >= p->diff_min) {
                const int32_t diff_q5 = tinyml_mbqm(diff, p->input_multiplier,
                                                    p->input_left_shift);
                sum_of_exps = tinyml_wrap_add(
                    sum_of_exps,
                    tinyml_rescale(tinyml_exp_on_negative_values(diff_q5, LOG_SOFTMAX_INPUT_BITS),
                                   0, LOG_SOFTMAX_SUM_BITS));
            }
        }
        log_sum = log_x_ge_1(sum_of_exps, LOG_SOFTMAX_SUM_BITS, LOG_SOFTMAX_INPUT_BITS);
        adjusted_diff_min = tinyml_max_i32(
            p->diff_min - 1,
            tinyml_mbqm(tinyml_wrap_add(log_sum, TINYML_INT32_MIN), p->reverse_scaling_divisor,
                        p->reverse_scaling_shift));
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max;
            int32_t value = -128;
            if (diff > adjusted_diff_min) {
                const int32_t diff_q5 = tinyml_mbqm(diff, p->input_multiplier,
                                                    p->input_left_shift);
                value = tinyml_rdbpot(tinyml_wrap_sub(diff_q5, log_sum),
                                      31 - LOG_SOFTMAX_INPUT_BITS - LOG_SOFTMAX_OUTPUT_BITS) + 127;
                value = tinyml_min_i32(tinyml_max_i32(value, -128), 127);
            }
            y[c] = (int8_t)value;
        }
    }
}
