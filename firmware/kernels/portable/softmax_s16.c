/*
 * SOFTMAX int16 -> int16, TFLM's SoftmaxInt16: the difference to the row maximum is rescaled
 * so that [-65535, 0] is [-10, 0], recentred and looked up in the exp table (Q0.15, kept in
 * the output row); the sum is normalized by its leading zeros and looked up in the
 * 1 / (1 + x) table; each exp times that reciprocal, one rounding shift, clamped to
 * [0, 32767]. Both tables are TFLite's 513-entry interpolated int16 LUTs (LUTLookup).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

static int16_t lut_lookup(int32_t value, const int16_t *lut)
{
    const int32_t index = 256 + (value >> 7);
    const int32_t offset = value & 0x7F;
    const int32_t base = lut[index];
    const int32_t delta = ((lut[index + 1] - base) * offset + 64) >> 7;
    return (int16_t)(base + delta);
}

void tinyml_softmax_s16(const tinyml_softmax_s16_params *p, const int16_t *input,
                        int16_t *output)
{
    int32_t r, c;
    for (r = 0; r < p->rows; ++r) {
        const int16_t *x = input + r * p->depth;
        int16_t *y = output + r * p->depth;
        int32_t max = TINYML_INT16_MIN;
        int32_t sum = 0;
        int32_t headroom, shifted, right_shift;
        int16_t reciprocal;
        for (c = 0; c < p->depth; ++c) {
            max = tinyml_max_i32(max, x[c]);
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t scaled = tinyml_mbqm((int32_t)x[c] - max, p->input_multiplier,
                                               p->input_left_shift);
            const int32_t sym = tinyml_min_i32(tinyml_max_i32(scaled + 32767, -32768), 32767);
            y[c] = lut_lookup(sym, p->exp_lut);
            sum += y[c];
        }
        headroom = tinyml_clz_u32((uint32_t)sum);
        shifted = (int32_t)((((int64_t)sum << (headroom - 1)) + (1 << 13)) >> 14);
        shifted = tinyml_min_i32(tinyml_max_i32(shifted - ((1 << 15) + (1 << 16)), -32768),
                                 32767);
        reciprocal = lut_lookup(shifted, p->reciprocal_lut);
        right_shift = 31 - headroom;
        for (c = 0; c < p->depth; ++c) {
            const int64_t product = (int64_t)y[c] * reciprocal +
                                    ((int64_t)1 << (right_shift - 1));
            y[c] = (int16_t)tinyml_min_i32(tinyml_max_i32((int32_t)(product >> right_shift), 0),
                                           32767);
        }
    }
}
