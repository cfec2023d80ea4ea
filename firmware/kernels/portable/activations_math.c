/*
 * int8 TANH, LEAKY_RELU, PRELU, ELU (a lookup table) and ABS, element by element: each
 * kernel reads element i before writing element i, so all of them may run in place. Every
 * constant (multipliers, shifts, radius, table) is derived at compile time by
 * tinyml.codegen.lowering with the reference's own functions.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

#define TANH_INPUT_INTEGER_BITS 4
#define TANH_OUTPUT_SHIFT (31 - 7)

static int8_t clamp_s8(int32_t x)
{
    return (int8_t)tinyml_min_i32(tinyml_max_i32(x, -128), 127);
}

void tinyml_tanh_s8(const tinyml_tanh_params *p, const int8_t *input, int8_t *output)
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
            y = tinyml_rdbpot(tinyml_tanh_fixed(q4, TANH_INPUT_INTEGER_BITS), TANH_OUTPUT_SHIFT);
        }
        output[i] = clamp_s8(y);
    }
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
