/*
 * SOFTMAX over the last axis, int8 -> int8 (scale 1/256, zero point -128): TFLM's reference
 * int8 softmax. Differences to the row maximum are scaled into Q5.26, exponentiated with
 * gemmlowp's fixed-point exp, summed in Q12.19 and multiplied by the sum's reciprocal;
 * differences below diff_min give exactly -128. In place capable: the last pass reads each
 * input element before writing the output element at the same position.
 *
 * TFLM aborts when the sum of exponentials has too many integer bits (rows of hundreds of
 * near-equal values); this kernel then returns -128 for the affected elements, which is what
 * the rounding division computes once the exponent exceeds 31.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

#define SCALED_DIFF_INTEGER_BITS 5
#define ACCUMULATION_INTEGER_BITS 12

/* Rows of at most this many values (a classifier's classes) keep their exponentials on the
 * stack between the sum and the output pass: the fixed-point exp is most of the kernel's
 * work, and a row's exponentials then cost one evaluation each instead of two. */
#define SOFTMAX_CACHED 32

static int32_t exp_of_diff(const tinyml_softmax_params *p, int32_t diff)
{
    const int32_t scaled = tinyml_srdhm(tinyml_wrap_shl(diff, p->input_left_shift),
                                        p->input_multiplier);
    return tinyml_exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS);
}

void tinyml_softmax_s8(const tinyml_softmax_params *p, const int8_t *input, int8_t *output)
{
    const int32_t cached = p->depth <= SOFTMAX_CACHED;
    int32_t exps[SOFTMAX_CACHED];
    int32_t row, c;
    for (row = 0; row < p->rows; ++row) {
        const int8_t *x = input + row * p->depth;
        int8_t *y = output + row * p->depth;
        int32_t max = -128;
        int32_t sum_of_exps = 0;
        int32_t num_bits_over_unit, reciprocal, exponent;
        for (c = 0; c < p->depth; ++c) {
            max = tinyml_max_i32(max, x[c]);
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max;
            if (diff >= p->diff_min) {
                const int32_t e = exp_of_diff(p, diff);
                if (cached) {
                    exps[c] = e;
                }
                sum_of_exps = tinyml_wrap_add(
                    sum_of_exps, tinyml_rescale(e, 0, ACCUMULATION_INTEGER_BITS));
            }
        }
        reciprocal = tinyml_get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS,
                                           &num_bits_over_unit);
        exponent = num_bits_over_unit + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max;
            int32_t value = -128;
            if (diff >= p->diff_min) {
                const int32_t e = cached ? exps[c] : exp_of_diff(p, diff);
                const int32_t unsaturated =
                    tinyml_rdbpot(tinyml_srdhm(reciprocal, e), exponent);
                value = tinyml_min_i32(tinyml_max_i32(unsaturated - 128, -128), 127);
            }
            y[c] = (int8_t)value;
        }
    }
}
