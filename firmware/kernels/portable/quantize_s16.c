/*
 * QUANTIZE and DEQUANTIZE at the int16 edges of 16x8 models: float32 -> int16 (TFLM's
 * AffineQuantize: round half away from zero in float32, + zero point, clamped), int16 ->
 * int16, int8 -> int16 and int16 -> int8 requantization (Requantize: one
 * MultiplyByQuantizedMultiplier; the last two join int8 and 16x8 layers of a mixed model),
 * and int16 -> float32
 * (scale * (x - zero_point) in float32: a float32 scale times an integer below 2^17 rounds
 * once, as the reference's product does).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

void tinyml_quantize_f32_s16(const tinyml_quantize_params *p, const float *input,
                             int16_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        const float v = input[i] / p->scale;
        int32_t q;
        if (!(v > -100000.0f)) {
            q = TINYML_INT16_MIN; /* far below the range, or NaN */
        } else if (v >= 100000.0f) {
            q = TINYML_INT16_MAX;
        } else {
            q = tinyml_min_i32(tinyml_max_i32(tinyml_round_half_away(v) + p->zero_point,
                                              TINYML_INT16_MIN), TINYML_INT16_MAX);
        }
        output[i] = (int16_t)q;
    }
}

/* TFLM's Requantize of one value: (x - input zero point) rescaled, + output zero point, not
 * yet clamped to the output type. */
static int32_t requantized(const tinyml_requantize_params *p, int32_t x)
{
    return tinyml_mbqm(x - p->input_zero_point, p->multiplier, p->shift) +
           p->output_zero_point;
}

void tinyml_requantize_s16(const tinyml_requantize_params *p, const int16_t *input,
                           int16_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = tinyml_clamp_s16(requantized(p, input[i]), TINYML_INT16_MIN,
                                     TINYML_INT16_MAX);
    }
}

void tinyml_requantize_s8_s16(const tinyml_requantize_params *p, const int8_t *input,
                              int16_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = tinyml_clamp_s16(requantized(p, input[i]), TINYML_INT16_MIN,
                                     TINYML_INT16_MAX);
    }
}

void tinyml_requantize_s16_s8(const tinyml_requantize_params *p, const int16_t *input,
                              int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = (int8_t)tinyml_min_i32(tinyml_max_i32(requantized(p, input[i]), -128), 127);
    }
}

void tinyml_dequantize_s16_f32(const tinyml_dequantize_params *p, const int16_t *input,
                               float *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = p->scale * (float)((int32_t)input[i] - p->zero_point);
    }
}
