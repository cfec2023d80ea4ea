/*
 * TRANSPOSE_CONV, int8, for cores with the DSP extension: the portable kernel's gather
 * (portable/transpose_conv.c: same taps, same sums, so TFLM's result bit for bit) with the
 * channel dot products done four values at a time: SXTAB16 adds the input offset to two
 * sign-extended input bytes at once, SMLAD multiplies and accumulates two pairs.
 */
#include "tinyml_kernels.h"
#include "dsp_common.h"

/* sum over i < n of (x[i] + offset) * w[i]; offset2 holds the offset in both halfwords. */
static int32_t offset_dot(const int8_t *x, const int8_t *w, int32_t n, int32_t offset,
                          int32_t offset2, int32_t acc)
{
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t xv = tinyml_read_s8x4(x + i);
        const uint32_t wv = tinyml_read_s8x4(w + i);
        const uint32_t xv_ror8 = (xv >> 8) | (xv << 24);
        acc = __smlad(__sxtab16(offset2, (int32_t)xv), __sxtb16((int32_t)wv), acc);
        acc = __smlad(__sxtab16(offset2, (int32_t)xv_ror8), tinyml_sxtb16_ror8(wv), acc);
    }
    for (; i < n; ++i) {
        acc += ((int32_t)x[i] + offset) * (int32_t)w[i];
    }
    return acc;
}

static int32_t first_tap(int32_t origin, int32_t stride)
{
    const int32_t r = origin % stride;
    return r < 0 ? r + stride : r;
}

void tinyml_transpose_conv_s8(const tinyml_transpose_conv_params *p, const int8_t *input,
                              int8_t *output)
{
    /* (input_offset, input_offset) as two halfwords: SXTAB16 adds it to each byte pair. */
    const int32_t offset2 = (int32_t)(((uint32_t)(uint16_t)p->input_offset << 16) |
                                      (uint32_t)(uint16_t)p->input_offset);
    const int32_t filter_size = p->filter_h * p->filter_w * p->input_c;
    int32_t b, oy, ox, oc, ky, kx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t origin_y = oy + p->pad_top;
            const int32_t ky0 = first_tap(origin_y, p->stride_h);
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t origin_x = ox + p->pad_left;
                const int32_t kx0 = first_tap(origin_x, p->stride_w);
                const int8_t *w_oc = p->filter;
                for (oc = 0; oc < p->output_c; ++oc, w_oc += filter_size) {
                    int32_t acc = 0;
                    for (ky = ky0; ky < p->filter_h; ky += p->stride_h) {
                        const int32_t iy = (origin_y - ky) / p->stride_h;
                        if (iy < 0 || iy >= p->input_h) {
                            continue;
                        }
                        for (kx = kx0; kx < p->filter_w; kx += p->stride_w) {
                            const int32_t ix = (origin_x - kx) / p->stride_w;
                            if (ix < 0 || ix >= p->input_w) {
                                continue;
                            }
                            acc = offset_dot(in_b + (iy * p->input_w + ix) * p->input_c,
                                             w_oc + (ky * p->filter_w + kx) * p->input_c,
                                             p->input_c, p->input_offset, offset2, acc);
                        }
                    }
                    acc = tinyml_wrap_add(acc, p->bias[oc]);
                    *output++ = tinyml_requantize(acc, p->multiplier[oc], p->shift[oc],
                                                  p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}
