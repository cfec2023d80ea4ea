/*
 * LOGISTIC and TANH of 16x8 models: TFLM's reference_integer_ops::Logistic / Tanh on int16.
 * The input is rescaled (x * multiplier + round) >> left_shift (a zero multiplier is the
 * power-of-two case, 3 << left_shift), then TFLM's 256-entry sigmoid table is interpolated:
 * LOGISTIC with 9 fractional bits, TANH (2 sigmoid(2x) - 1) with 8; the table is the one
 * tinyml measures from TFLM (sigmoid_table.h). Element-wise, in place capable.
 */
#include "tinyml_kernels.h"
#include "sigmoid_table.h"

static int32_t rescaled(int16_t x, int32_t multiplier, int32_t left_shift)
{
    const int32_t round = left_shift > 0 ? (int32_t)1 << (left_shift - 1) : 0;
    return ((int32_t)x * multiplier + round) >> left_shift;
}

static void prepare(const tinyml_sigmoid_s16_params *p, int32_t *multiplier,
                    int32_t *left_shift)
{
    *multiplier = p->input_multiplier;
    *left_shift = p->input_left_shift;
    if (*multiplier == 0) { /* power-of-two scale */
        *multiplier = 3 << *left_shift;
        *left_shift = 0;
    }
}

void tinyml_logistic_s16(const tinyml_sigmoid_s16_params *p, const int16_t *input,
                         int16_t *output)
{
    int32_t multiplier, left_shift, i;
    prepare(p, &multiplier, &left_shift);
    for (i = 0; i < p->size; ++i) {
        const int32_t v = rescaled(input[i], multiplier, left_shift);
        const uint32_t a = (uint32_t)(v < 0 ? -v : v);
        const uint32_t uh = a >> 9;
        uint32_t result;
        if (uh >= 255) {
            result = (uint32_t)0x7FFF << 10;
        } else {
            const uint32_t ua = tinyml_sigmoid_table_uint16[uh];
            const uint32_t ub = tinyml_sigmoid_table_uint16[uh + 1];
            result = (ua << 9) + (a & 0x1FF) * (ub - ua);
        }
        result = v >= 0 ? result + (1u << 9) : ((1u << 25) - result + (1u << 9) - 1u);
        output[i] = (int16_t)(result >> 10);
    }
}

void tinyml_tanh_s16(const tinyml_sigmoid_s16_params *p, const int16_t *input,
                     int16_t *output)
{
    int32_t multiplier, left_shift, i;
    prepare(p, &multiplier, &left_shift);
    for (i = 0; i < p->size; ++i) {
        const int32_t v = rescaled(input[i], multiplier, left_shift);
        const uint32_t a = (uint32_t)(v < 0 ? -v : v);
        const uint32_t uh = a >> 8;
        int32_t result;
        if (uh >= 255) {
            result = 0xFFFF << 8;
        } else {
            const uint32_t ua = tinyml_sigmoid_table_uint16[uh];
            const uint32_t ub = tinyml_sigmoid_table_uint16[uh + 1];
            result = (int32_t)((ua << 8) + (a & 0xFF) * (ub - ua));
        }
        result = v >= 0 ? result - (1 << 23) + (1 << 7) : -result + (1 << 23) + (1 << 7) - 1;
        output[i] = (int16_t)(result >> 8);
    }
}
