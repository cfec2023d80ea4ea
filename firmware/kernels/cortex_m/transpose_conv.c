/*
 * TRANSPOSE_CONV, int8, for cores with the DSP extension: the portable kernel's gather
 * (portable/transpose_conv.c: same taps, same sums, so TFLM's result bit for bit), organised
 * for speed:
 *
 * - per output pixel, the taps that reach it (input pixel, filter position) are listed once,
 *   not once per output channel (up to TCONV_MAX_TAPS, 16, of them: 4x4 filters at stride
 *   1, anything at stride 2 up to 7x7; a pixel with more taps lists them in chunks per pair
 *   of channels, which only splits the same sum);
 * - two output channels at a time share each input word: SXTAB16 adds the input offset to
 *   two sign-extended input bytes at once, and four SMLADs multiply-accumulate two pairs for
 *   each of the two channels.
 */
#include "tinyml_kernels.h"
#include "dsp_common.h"

#define TCONV_MAX_TAPS 16

static int32_t first_tap(int32_t origin, int32_t stride)
{
    const int32_t r = origin % stride;
    return r < 0 ? r + stride : r;
}

/* acc0 += sum (x[i] + offset) * w0[i], acc1 likewise with w1, over i < n. */
static void offset_dot2(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n,
                        int32_t offset, int32_t offset2, int32_t *acc0, int32_t *acc1)
{
    int32_t a0 = *acc0, a1 = *acc1, i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t xv = tinyml_read_s8x4(x + i);
        const uint32_t v0 = tinyml_read_s8x4(w0 + i);
        const uint32_t v1 = tinyml_read_s8x4(w1 + i);
        const int32_t xa = __sxtab16(offset2, (int32_t)xv);
        const int32_t xb = __sxtab16(offset2, (int32_t)((xv >> 8) | (xv << 24)));
        a0 = __smlad(xa, __sxtb16((int32_t)v0), a0);
        a0 = __smlad(xb, tinyml_sxtb16_ror8(v0), a0);
        a1 = __smlad(xa, __sxtb16((int32_t)v1), a1);
        a1 = __smlad(xb, tinyml_sxtb16_ror8(v1), a1);
    }
    for (; i < n; ++i) {
        const int32_t v = (int32_t)x[i] + offset;
        a0 += v * (int32_t)w0[i];
        a1 += v * (int32_t)w1[i];
    }
    *acc0 = a0;
    *acc1 = a1;
}

/* Adds the taps' sums for output channels oc and oc2 (the same channel when oc is the last,
 * odd one) to acc[0], acc[1]. */
static void taps_dot(const tinyml_transpose_conv_params *p, const int8_t *const *x,
                     const int32_t *w_offset, int32_t taps, int32_t oc, int32_t oc2,
                     int32_t offset2, int32_t *acc)
{
    const int32_t filter_size = p->filter_h * p->filter_w * p->input_c;
    const int8_t *w0 = p->filter + oc * filter_size;
    const int8_t *w1 = p->filter + oc2 * filter_size;
    int32_t t;
    for (t = 0; t < taps; ++t) {
        offset_dot2(x[t], w0 + w_offset[t], w1 + w_offset[t], p->input_c, p->input_offset,
                    offset2, &acc[0], &acc[1]);
    }
}

/* Lists the taps reaching output coordinate (origin_y, origin_x) = output + padding, after
 * skipping the first ``skip``: at most TCONV_MAX_TAPS input pixels and filter offsets.
 * Returns how many were listed. */
static int32_t collect_taps(const tinyml_transpose_conv_params *p, const int8_t *in_b,
                            int32_t origin_y, int32_t origin_x, int32_t skip,
                            const int8_t **x, int32_t *w_offset)
{
    int32_t taps = 0, ky, kx;
    for (ky = first_tap(origin_y, p->stride_h); ky < p->filter_h; ky += p->stride_h) {
        const int32_t iy = (origin_y - ky) / p->stride_h;
        if (iy < 0 || iy >= p->input_h) {
            continue;
        }
        for (kx = first_tap(origin_x, p->stride_w); kx < p->filter_w; kx += p->stride_w) {
            const int32_t ix = (origin_x - kx) / p->stride_w;
            if (ix < 0 || ix >= p->input_w) {
                continue;
            }
            if (skip > 0) {
                --skip;
                continue;
            }
            if (taps == TCONV_MAX_TAPS) {
                return taps;
            }
            x[taps] = in_b + (iy * p->input_w + ix) * p->input_c;
            w_offset[taps] = (ky * p->filter_w + kx) * p->input_c;
            ++taps;
        }
    }
    return taps;
}

void tinyml_transpose_conv_s8(const tinyml_transpose_conv_params *p, const int8_t *input,
                              int8_t *output)
{
    /* (input_offset, input_offset) as two halfwords: SXTAB16 adds it to each byte pair. */
    const int32_t offset2 = (int32_t)(((uint32_t)(uint16_t)p->input_offset << 16) |
                                      (uint32_t)(uint16_t)p->input_offset);
    const int8_t *x[TCONV_MAX_TAPS];
    int32_t w_offset[TCONV_MAX_TAPS];
    int32_t b, oy, ox, oc;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t origin_y = oy + p->pad_top, origin_x = ox + p->pad_left;
                /* One list serves every channel when it holds all the taps. */
                const int32_t first = collect_taps(p, in_b, origin_y, origin_x, 0, x, w_offset);
                const int32_t complete = first < TCONV_MAX_TAPS;
                for (oc = 0; oc < p->output_c; oc += 2) {
                    const int32_t oc2 = oc + 1 < p->output_c ? oc + 1 : oc;
                    int32_t sums[2] = {0, 0};
                    if (complete) {
                        taps_dot(p, x, w_offset, first, oc, oc2, offset2, sums);
                    } else {
                        int32_t done = 0, taps;
                        do {
                            taps = collect_taps(p, in_b, origin_y, origin_x, done, x,
                                                w_offset);
                            taps_dot(p, x, w_offset, taps, oc, oc2, offset2, sums);
                            done += taps;
                        } while (taps == TCONV_MAX_TAPS);
                    }
                    output[oc] = tinyml_requantize(tinyml_wrap_add(sums[0], p->bias[oc]),
                                                   p->multiplier[oc], p->shift[oc],
                                                   p->output_offset, p->act_min, p->act_max);
                    if (oc2 != oc) {
                        output[oc2] = tinyml_requantize(
                            tinyml_wrap_add(sums[1], p->bias[oc2]), p->multiplier[oc2],
                            p->shift[oc2], p->output_offset, p->act_min, p->act_max);
                    }
                }
                output += p->output_c;
            }
        }
    }
}
