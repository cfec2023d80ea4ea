/*
 * CONV_2D and DEPTHWISE_CONV_2D of 16x8 models, Cortex-M DSP version of
 * portable/conv_s16.c (same arithmetic: int64 accumulation, TFLM's int64 requantization).
 *
 * CONV_2D: a window is one dot product of filter_h * filter_w * filter_c values with each
 * filter row. A 1x1 unpadded convolution reads it straight from the input pixel; otherwise
 * the window of a group is copied into scratch (int16, in filter order, zeros for the taps
 * in the padding: the zero point is 0, so they add nothing, as TFLM skips them). The rows
 * then go two at a time through SMLAD (s16_dot.h).
 *
 * DEPTHWISE_CONV_2D (depth multiplier 1, an even channel count, at most 25 taps): two
 * channels per 32-bit load; inside the image taps pair up in SMLAD (dw_interior), at the
 * border the taps inside are listed first (dw_border). Other layers: the portable loop with
 * the tap bounds computed once per output pixel (dw_pixels).
 */
#include "tinyml_kernels.h"
#include "s16_dot.h"

/* The window of output pixel (in_y0, in_x0) for channels [ic0, ic0 + filter_c). */
static TINYML_NOINLINE void copy_window(const tinyml_conv2d_s16_params *p, const int16_t *in_b,
                                        int32_t in_y0, int32_t in_x0, int32_t ic0,
                                        int16_t *window)
{
    const int32_t fc = p->filter_c;
    int32_t ky, kx, ic;
    for (ky = 0; ky < p->filter_h; ++ky) {
        const int32_t iy = in_y0 + ky * p->dilation_h;
        for (kx = 0; kx < p->filter_w; ++kx) {
            const int32_t ix = in_x0 + kx * p->dilation_w;
            if (iy < 0 || iy >= p->input_h || ix < 0 || ix >= p->input_w) {
                for (ic = 0; ic < fc; ++ic) {
                    window[ic] = 0;
                }
            } else {
                const int16_t *x = in_b + (iy * p->input_w + ix) * p->input_c + ic0;
                for (ic = 0; ic < fc; ++ic) {
                    window[ic] = x[ic];
                }
            }
            window += fc;
        }
    }
}

void tinyml_conv2d_s16(const tinyml_conv2d_s16_params *p, const int16_t *input,
                       int16_t *output, int8_t *scratch)
{
    const int32_t groups = p->input_c / p->filter_c;
    const int32_t per_group = p->output_c / groups;
    const int32_t k = p->filter_h * p->filter_w * p->filter_c;
    /* A 1x1 window inside the image: the input pixel itself (lowering declares no scratch
     * for this case, conv_s16_scratch_bytes). */
    const int32_t direct = p->filter_h == 1 && p->filter_w == 1 && groups == 1 &&
                           p->pad_top == 0 && p->pad_left == 0 &&
                           (p->output_h - 1) * p->stride_h < p->input_h &&
                           (p->output_w - 1) * p->stride_w < p->input_w;
    /* Word-align the window (lowering adds 3 bytes to the scratch for it). */
    int16_t *window = (int16_t *)(void *)((uintptr_t)(scratch + 3) & ~(uintptr_t)3);
    int32_t b, oy, ox, g;
    for (b = 0; b < p->batches; ++b) {
        const int16_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                for (g = 0; g < groups; ++g) {
                    const int32_t oc0 = g * per_group;
                    const int16_t *x;
                    if (direct) {
                        x = in_b + (in_y0 * p->input_w + in_x0) * p->input_c;
                    } else {
                        copy_window(p, in_b, in_y0, in_x0, g * p->filter_c, window);
                        x = window;
                    }
                    tinyml_s16_rows(x, p->filter + oc0 * k, k, per_group, p->bias + oc0,
                                    p->multiplier + oc0, p->shift + oc0,
                                    p->int32_accumulator, p->act_min, p->act_max,
                                    output + oc0);
                }
                output += p->output_c;
            }
        }
    }
}

/* Output pixels [ox0, ox1) of row oy, every channel, with the taps clipped to the image. */
static TINYML_NOINLINE void dw_pixels(const tinyml_depthwise_conv2d_s16_params *p,
                                      const int16_t *in_b, int32_t oy, int32_t ox0, int32_t ox1,
                                      int16_t *output)
{
    const int32_t m_count = p->depth_multiplier;
    const int32_t taps = p->filter_h * p->filter_w;
    int32_t ox, c, m, ky, kx;
    {
        {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            int32_t ky0 = 0, ky1 = p->filter_h;
            while (ky0 < ky1 && in_y0 + ky0 * p->dilation_h < 0) {
                ++ky0;
            }
            while (ky1 > ky0 && in_y0 + (ky1 - 1) * p->dilation_h >= p->input_h) {
                --ky1;
            }
            for (ox = ox0; ox < ox1; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                int32_t kx0 = 0, kx1 = p->filter_w;
                while (kx0 < kx1 && in_x0 + kx0 * p->dilation_w < 0) {
                    ++kx0;
                }
                while (kx1 > kx0 && in_x0 + (kx1 - 1) * p->dilation_w >= p->input_w) {
                    --kx1;
                }
                for (c = 0; c < p->input_c; ++c) {
                    const int16_t *x_c = in_b + c;
                    for (m = 0; m < m_count; ++m) {
                        const int32_t oc = c * m_count + m;
                        const int8_t *w = p->filter + oc * taps;
                        int64_t acc = p->bias[oc]; /* SMLAL per tap */
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int16_t *row = x_c + ((in_y0 + ky * p->dilation_h) *
                                                        p->input_w + in_x0) * p->input_c;
                            const int8_t *w_row = w + ky * p->filter_w;
                            for (kx = kx0; kx < kx1; ++kx) {
                                acc += (int32_t)row[kx * p->dilation_w * p->input_c] *
                                       (int32_t)w_row[kx];
                            }
                        }
                        *output++ = tinyml_s16_output(acc, p->multiplier[oc], p->shift[oc],
                                                      p->int32_accumulator, p->act_min,
                                                      p->act_max);
                    }
                }
            }
        }
    }
}

/* The fast paths' limit: up to 5x5 taps (a channel's sum of products fits int32 up to 256;
 * the tap tables live on the stack, 3 * 4 * 25 bytes). */
#define DW_MAX_TAPS 25

/* Channels c and c + 1 of one output pixel whose taps all lie inside the image: taps t and
 * t + 2 (and t + 1, t + 3) pair up in SMLAD, the lane order SXTB16 gives a word of four
 * filter taps; one 32-bit load reads a tap of both channels, PKHBT/PKHTB split them. */
static TINYML_NOINLINE void dw_interior(const tinyml_depthwise_conv2d_s16_params *p,
                                        const int16_t *base, const int32_t *offsets,
                                        int16_t *output)
{
    const int32_t taps = p->filter_h * p->filter_w;
    int32_t c;
    for (c = 0; c < p->input_c; c += 2) {
        const int16_t *x = base + c;
        const int8_t *w0 = p->filter + c * taps;
        const int8_t *w1 = w0 + taps;
        int32_t a0 = 0, a1 = 0;
        int32_t t = 0;
        for (; t + 4 <= taps; t += 4) {
            const int32_t x0 = tinyml_read_s16x2(x + offsets[t]);
            const int32_t x1 = tinyml_read_s16x2(x + offsets[t + 1]);
            const int32_t x2 = tinyml_read_s16x2(x + offsets[t + 2]);
            const int32_t x3 = tinyml_read_s16x2(x + offsets[t + 3]);
            int32_t we, wo;
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w0 + t), &we, &wo);
            a0 = __smlad(tinyml_pkhbt(x1, x3), wo, __smlad(tinyml_pkhbt(x0, x2), we, a0));
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w1 + t), &we, &wo);
            a1 = __smlad(tinyml_pkhtb(x3, x1), wo, __smlad(tinyml_pkhtb(x2, x0), we, a1));
        }
        for (; t < taps; ++t) {
            const int32_t xt = tinyml_read_s16x2(x + offsets[t]);
            a0 += (int32_t)(int16_t)(uint32_t)xt * w0[t];
            a1 += (xt >> 16) * w1[t];
        }
        output[c] = tinyml_s16_output((int64_t)a0 + p->bias[c], p->multiplier[c], p->shift[c],
                                      p->int32_accumulator, p->act_min, p->act_max);
        output[c + 1] = tinyml_s16_output((int64_t)a1 + p->bias[c + 1], p->multiplier[c + 1],
                                          p->shift[c + 1], p->int32_accumulator, p->act_min,
                                          p->act_max);
    }
}

/* The same two channels at a time for a pixel at the border: only the ``count`` taps inside
 * the image (input offsets and filter indices listed by the caller), one SMLABB/SMLATB-like
 * multiply each. */
static TINYML_NOINLINE void dw_border(const tinyml_depthwise_conv2d_s16_params *p,
                                      const int16_t *base, const int32_t *offsets,
                                      const int32_t *taps_inside, int32_t count,
                                      int16_t *output)
{
    const int32_t taps = p->filter_h * p->filter_w;
    int32_t c, i;
    for (c = 0; c < p->input_c; c += 2) {
        const int16_t *x = base + c;
        const int8_t *w0 = p->filter + c * taps;
        const int8_t *w1 = w0 + taps;
        int32_t a0 = 0, a1 = 0;
        for (i = 0; i < count; ++i) {
            const int32_t xt = tinyml_read_s16x2(x + offsets[i]);
            a0 += (int32_t)(int16_t)(uint32_t)xt * w0[taps_inside[i]];
            a1 += (xt >> 16) * w1[taps_inside[i]];
        }
        output[c] = tinyml_s16_output((int64_t)a0 + p->bias[c], p->multiplier[c], p->shift[c],
                                      p->int32_accumulator, p->act_min, p->act_max);
        output[c + 1] = tinyml_s16_output((int64_t)a1 + p->bias[c + 1], p->multiplier[c + 1],
                                          p->shift[c + 1], p->int32_accumulator, p->act_min,
                                          p->act_max);
    }
}

void tinyml_depthwise_conv2d_s16(const tinyml_depthwise_conv2d_s16_params *p,
                                 const int16_t *input, int16_t *output)
{
    const int32_t taps = p->filter_h * p->filter_w;
    const int32_t fast = p->depth_multiplier == 1 && (p->input_c & 1) == 0 &&
                         taps <= DW_MAX_TAPS;
    const int32_t span_h = (p->filter_h - 1) * p->dilation_h;
    const int32_t span_w = (p->filter_w - 1) * p->dilation_w;
    const int32_t out_c = p->input_c * p->depth_multiplier;
    int32_t offsets[DW_MAX_TAPS];
    int32_t b, oy, ox, ky, kx;
    if (fast) {
        for (ky = 0; ky < p->filter_h; ++ky) {
            for (kx = 0; kx < p->filter_w; ++kx) {
                offsets[ky * p->filter_w + kx] =
                    (ky * p->dilation_h * p->input_w + kx * p->dilation_w) * p->input_c;
            }
        }
    }
    for (b = 0; b < p->batches; ++b) {
        const int16_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            const int32_t rows_inside = in_y0 >= 0 && in_y0 + span_h < p->input_h;
            int16_t *out_row = output + (b * p->output_h + oy) * p->output_w * out_c;
            ox = 0;
            while (ox < p->output_w) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                if (fast && rows_inside && in_x0 >= 0 && in_x0 + span_w < p->input_w) {
                    dw_interior(p, in_b + (in_y0 * p->input_w + in_x0) * p->input_c, offsets,
                                out_row + ox * out_c);
                } else if (fast) {
                    int32_t inside_offsets[DW_MAX_TAPS], taps_inside[DW_MAX_TAPS];
                    int32_t count = 0;
                    for (ky = 0; ky < p->filter_h; ++ky) {
                        const int32_t iy = in_y0 + ky * p->dilation_h;
                        for (kx = 0; kx < p->filter_w; ++kx) {
                            const int32_t ix = in_x0 + kx * p->dilation_w;
                            if (iy >= 0 && iy < p->input_h && ix >= 0 && ix < p->input_w) {
                                inside_offsets[count] = (iy * p->input_w + ix) * p->input_c;
                                taps_inside[count++] = ky * p->filter_w + kx;
                            }
                        }
                    }
                    dw_border(p, in_b, inside_offsets, taps_inside, count, out_row + ox * out_c);
                } else {
                    dw_pixels(p, in_b, oy, ox, ox + 1, out_row + ox * out_c);
                }
                ++ox;
            }
        }
    }
}
