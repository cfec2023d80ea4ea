/*
 * DEPTHWISE_CONV_2D, int8, per-channel requantization; in place capable.
 *
 * TinyEngine-style: for each input channel the kernel first copies the channel's plane (the
 * rows and columns the windows span) into scratch, padding it with the input zero point, and
 * only then writes that channel's outputs. With a depth multiplier of 1 an output channel
 * occupies exactly the bytes of its input channel, so output == input is safe as long as the
 * output has no more pixels than the input: each channel is consumed before it is overwritten.
 *
 * Padding holds the zero point, so (pad + input_offset) * w == 0 as in TFLM (which skips those
 * taps); lowering therefore folds input_offset * sum(taps) into the bias and the inner loops
 * multiply raw int8 values.
 */
#include <string.h>

#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "int4.h"

/* The *_s4 entry points read packed int4 filters (int4.h): a channel's taps are its row. */

/* Copy channel c of image in_b into the zero-point-padded plane. */
static void copy_plane(const tinyml_depthwise_conv2d_params *p, const int8_t *in_b, int32_t c,
                       int8_t *plane)
{
    const int8_t zero_point = (int8_t)p->input_zero_point;
    int32_t py, px;
    for (py = 0; py < p->plane_h; ++py) {
        const int32_t iy = py - p->pad_top;
        int8_t *row = plane + py * p->plane_w;
        if (iy < 0 || iy >= p->input_h) {
            memset(row, (unsigned char)zero_point, (size_t)p->plane_w);
            continue;
        }
        {
            const int8_t *src = in_b + iy * p->input_w * p->input_c + c;
            for (px = 0; px < p->plane_w; ++px) {
                const int32_t ix = px - p->pad_left;
                row[px] = (ix >= 0 && ix < p->input_w) ? src[ix * p->input_c] : zero_point;
            }
        }
    }
}

static int8_t output_stage(const tinyml_depthwise_conv2d_params *p, int32_t acc, int32_t oc)
{
    return tinyml_requantize(tinyml_wrap_add(acc, p->bias[oc]), p->multiplier[oc],
                             p->shift[oc], p->output_offset, p->act_min, p->act_max);
}

static void dw_run(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                   int8_t *output, int8_t *scratch, int32_t int4)
{
    const int32_t output_c = p->input_c * p->depth_multiplier;
    const int32_t taps = p->filter_h * p->filter_w;
    int32_t b, c, m, oy, ox, ky, kx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        int8_t *out_b = output + b * p->output_h * p->output_w * output_c;
        for (c = 0; c < p->input_c; ++c) {
            copy_plane(p, in_b, c, scratch);
            for (m = 0; m < p->depth_multiplier; ++m) {
                const int32_t oc = c * p->depth_multiplier + m;
                const int8_t *w = p->filter + oc * (int4 ? tinyml_s4_row_bytes(taps) : taps);
                for (oy = 0; oy < p->output_h; ++oy) {
                    const int8_t *rows = scratch + oy * p->stride_h * p->plane_w;
                    int8_t *out = out_b + oy * p->output_w * output_c + oc;
                    for (ox = 0; ox < p->output_w; ++ox) {
                        const int8_t *window = rows + ox * p->stride_w;
                        int32_t acc = 0;
                        for (ky = 0; ky < p->filter_h; ++ky) {
                            const int8_t *line = window + ky * p->dilation_h * p->plane_w;
                            const int32_t at = ky * p->filter_w;
                            if (int4) {
                                for (kx = 0; kx < p->filter_w; ++kx) {
                                    acc += (int32_t)line[kx * p->dilation_w] *
                                           tinyml_s4_value(w, at + kx, taps);
                                }
                            } else {
                                for (kx = 0; kx < p->filter_w; ++kx) {
                                    acc += (int32_t)line[kx * p->dilation_w] *
                                           (int32_t)w[at + kx];
                                }
                            }
                        }
                        *out = output_stage(p, acc, oc);
                        out += output_c;
                    }
                }
            }
        }
    }
}

void tinyml_depthwise_conv2d_s8(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                                int8_t *output, int8_t *scratch)
{
    dw_run(p, input, output, scratch, 0);
}

void tinyml_depthwise_conv2d_s4(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                                int8_t *output, int8_t *scratch)
{
    dw_run(p, input, output, scratch, 1);
}

static void dw3x3_run(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                      int8_t *output, int8_t *scratch, int32_t int4)
{
    const int32_t output_c = p->input_c * p->depth_multiplier;
    const int32_t pw = p->plane_w;
    int32_t b, c, m, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        int8_t *out_b = output + b * p->output_h * p->output_w * output_c;
        for (c = 0; c < p->input_c; ++c) {
            copy_plane(p, in_b, c, scratch);
            for (m = 0; m < p->depth_multiplier; ++m) {
                const int32_t oc = c * p->depth_multiplier + m;
                int8_t w[9];
                int32_t w0, w1, w2, w3, w4, w5, w6, w7, w8;
                if (int4) {
                    tinyml_s4_unpack_row(w, p->filter + oc * tinyml_s4_row_bytes(9), 9);
                } else {
                    memcpy(w, p->filter + oc * 9, sizeof w);
                }
                w0 = w[0], w1 = w[1], w2 = w[2];
                w3 = w[3], w4 = w[4], w5 = w[5];
                w6 = w[6], w7 = w[7], w8 = w[8];
                for (oy = 0; oy < p->output_h; ++oy) {
                    const int8_t *r0 = scratch + oy * p->stride_h * pw;
                    int8_t *out = out_b + oy * p->output_w * output_c + oc;
                    for (ox = 0; ox < p->output_w; ++ox) {
                        const int8_t *t = r0 + ox * p->stride_w;
                        const int32_t acc =
                            t[0] * w0 + t[1] * w1 + t[2] * w2 +
                            t[pw] * w3 + t[pw + 1] * w4 + t[pw + 2] * w5 +
                            t[2 * pw] * w6 + t[2 * pw + 1] * w7 + t[2 * pw + 2] * w8;
                        *out = output_stage(p, acc, oc);
                        out += output_c;
                    }
                }
            }
        }
    }
}

void tinyml_depthwise_conv2d_3x3_s8(const tinyml_depthwise_conv2d_params *p,
                                    const int8_t *input, int8_t *output, int8_t *scratch)
{
    dw3x3_run(p, input, output, scratch, 0);
}

void tinyml_depthwise_conv2d_3x3_s4(const tinyml_depthwise_conv2d_params *p,
                                    const int8_t *input, int8_t *output, int8_t *scratch)
{
    dw3x3_run(p, input, output, scratch, 1);
}
