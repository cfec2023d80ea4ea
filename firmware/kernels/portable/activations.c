/*
 * Standalone int8 activations, element by element and in place capable:
 * LOGISTIC (gemmlowp fixed-point logistic on the input in Q4.27), HARD_SWISH (int16 fixed
 * point with two 16-bit multipliers), RELU / CLIP (requantize to the output scale, then clamp)
 * and RELU6 (TFLM clamps the input codes and does not rescale).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

#define LOGISTIC_INPUT_INTEGER_BITS 4
#define LOGISTIC_OUTPUT_SHIFT (31 - 8)

void tinyml_logistic_s8(const tinyml_logistic_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        int32_t y;
        if (x <= -p->input_range_radius) {
            y = -128;
        } else if (x >= p->input_range_radius) {
            y = 127;
        } else {
            const int32_t q4 = tinyml_mbqm(x, p->input_multiplier, p->input_left_shift);
            const int32_t q0 = tinyml_logistic_fixed(q4, LOGISTIC_INPUT_INTEGER_BITS);
            y = tinyml_rdbpot(q0, LOGISTIC_OUTPUT_SHIFT) - 128;
            y = tinyml_min_i32(tinyml_max_i32(y, -128), 127);
        }
        output[i] = (int8_t)y;
    }
}

void tinyml_hard_swish_s8(const tinyml_hard_swish_params *p, const int8_t *input,
                          int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t hires = ((int32_t)input[i] - p->input_zero_point) * 128;
        const int32_t preshift_output = tinyml_srdhm_i16(hires, p->output_multiplier);
        int32_t reluish = hires;
        int32_t y;
        if (p->reluish_exponent > 0) {
            reluish = tinyml_saturating_left_shift_i16(reluish, p->reluish_exponent - 1);
        }
        reluish = tinyml_srdhm_i16(reluish, p->reluish_multiplier);
        if (p->reluish_exponent > 0) {
            reluish = tinyml_saturating_left_shift_i16(reluish, 1);
        }
        if (p->reluish_exponent < 0) {
            reluish = tinyml_rdbpot_i16(reluish, -p->reluish_exponent);
        }
        reluish = (reluish + (1 << 15)) >> 1; /* [-1, 1] -> [0, 1] */
        y = tinyml_sdhm_i16(reluish, preshift_output);
        y = tinyml_rdbpot_i16(y, -p->output_exponent);
        y = tinyml_wrap_i16(y + p->output_zero_point);
        output[i] = (int8_t)tinyml_min_i32(tinyml_max_i32(y, -128), 127);
    }
}

void tinyml_relu_s8(const tinyml_relu_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        output[i] = tinyml_add_clamp(tinyml_mbqm(x, p->multiplier, p->shift),
                                     p->output_zero_point, p->act_min, p->act_max);
    }
}

void tinyml_relu6_s8(const tinyml_relu6_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const int32_t x = input[i];
        output[i] = (int8_t)(x > p->upper ? p->upper : (x < p->lower ? p->lower : x));
    }
}
