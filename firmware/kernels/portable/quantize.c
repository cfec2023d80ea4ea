/*
 * QUANTIZE (float32 -> int8, int8 -> int8) and DEQUANTIZE (int8 -> float32): the only kernels
 * that touch floating point, in float32 only (no libm, no double).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

void tinyml_quantize_f32_s8(const tinyml_quantize_params *p, const float *input,
                            int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const float v = input[i] / p->scale;
        int32_t q;
        if (!(v > -1000.0f)) {
            q = -128; /* far below the range, or NaN */
        } else if (v >= 1000.0f) {
            q = 127;
        } else {
            q = tinyml_round_half_away(v) + p->zero_point;
            q = tinyml_min_i32(tinyml_max_i32(q, -128), 127);
        }
        output[i] = (int8_t)q;
    }
}

void tinyml_requantize_s8(const tinyml_requantize_params *p, const int8_t *input,
                          int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = tinyml_requantize((int32_t)input[i] - p->input_zero_point, p->multiplier,
                                      p->shift, p->output_zero_point, -128, 127);
    }
}

void tinyml_dequantize_s8_f32(const tinyml_dequantize_params *p, const int8_t *input,
                              float *output)
{
    int32_t i;
    /* The product of a float32 scale and an integer below 2^9 rounded once to float32 is
     * what the reference's double product rounded to float32 gives. */
    for (i = 0; i < p->size; ++i) {
        output[i] = p->scale * (float)((int32_t)input[i] - p->zero_point);
    }
}
