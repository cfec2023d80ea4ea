/*
 * Convolution variants (the "conv" op family) and their data movement, int8.
 *
 * SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND follow TFLM's reference kernels loop for loop:
 * they move whole pixels (depth bytes) and compute nothing, so only the indexing has to agree.
 */
#include <string.h>

#include "tinyml_kernels.h"
#include "fixedpoint.h"

void tinyml_space_to_batch_nd_s8(const tinyml_space_to_batch_params *p, const int8_t *input,
                                 int8_t *output)
{
    int32_t out_b, out_h, out_w;
    for (out_b = 0; out_b < p->output_batches; ++out_b) {
        const int32_t in_b = out_b % p->batches;
        const int32_t shift = out_b / p->batches;
        const int32_t shift_w = shift % p->block_w;
        const int32_t shift_h = shift / p->block_w;
        for (out_h = 0; out_h < p->output_h; ++out_h) {
            const int32_t in_h = out_h * p->block_h + shift_h - p->pad_top;
            for (out_w = 0; out_w < p->output_w; ++out_w) {
                const int32_t in_w = out_w * p->block_w + shift_w - p->pad_left;
                if (in_h < 0 || in_h >= p->input_h || in_w < 0 || in_w >= p->input_w) {
                    memset(output, p->pad_value, (size_t)p->depth);
                } else {
                    memcpy(output,
                           input + ((in_b * p->input_h + in_h) * p->input_w + in_w) * p->depth,
                           (size_t)p->depth);
                }
                output += p->depth;
            }
        }
    }
}

void tinyml_batch_to_space_nd_s8(const tinyml_batch_to_space_params *p, const int8_t *input,
                                 int8_t *output)
{
    int32_t in_b, in_h, in_w;
    for (in_b = 0; in_b < p->input_batches; ++in_b) {
        const int32_t out_b = in_b % p->output_batches;
        const int32_t offset = in_b / p->output_batches;
        for (in_h = 0; in_h < p->input_h; ++in_h) {
            const int32_t out_h = in_h * p->block_h + offset / p->block_w - p->crop_top;
            if (out_h < 0 || out_h >= p->output_h) {
                continue;
            }
            for (in_w = 0; in_w < p->input_w; ++in_w) {
                const int32_t out_w = in_w * p->block_w + offset % p->block_w - p->crop_left;
                if (out_w < 0 || out_w >= p->output_w) {
                    continue;
                }
                memcpy(output + ((out_b * p->output_h + out_h) * p->output_w + out_w) * p->depth,
                       input + ((in_b * p->input_h + in_h) * p->input_w + in_w) * p->depth,
                       (size_t)p->depth);
            }
        }
    }
}

/* The first filter tap k >= 0 with (origin - k) a multiple of stride, for output coordinate
 * origin = out + pad: taps k, k + stride, ... reach input pixels (origin - k) / stride. */
static int32_t first_tap(int32_t origin, int32_t stride)
{
    const int32_t r = origin % stride;
    return r < 0 ? r + stride : r;
}

void tinyml_transpose_conv_s8(const tinyml_transpose_conv_params *p, const int8_t *input,
                              int8_t *output)
{
    int32_t b, oy, ox, oc, ky, kx, ic;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t origin_y = oy + p->pad_top;
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t origin_x = ox + p->pad_left;
                for (oc = 0; oc < p->output_c; ++oc) {
                    const int8_t *w_oc =
                        p->filter + oc * p->filter_h * p->filter_w * p->input_c;
                    int32_t acc = 0;
                    for (ky = first_tap(origin_y, p->stride_h); ky < p->filter_h;
                         ky += p->stride_h) {
                        const int32_t iy = (origin_y - ky) / p->stride_h;
                        if (iy < 0 || iy >= p->input_h) {
                            continue;
                        }
                        for (kx = first_tap(origin_x, p->stride_w); kx < p->filter_w;
                             kx += p->stride_w) {
                            const int32_t ix = (origin_x - kx) / p->stride_w;
                            const int8_t *x;
                            const int8_t *w;
                            if (ix < 0 || ix >= p->input_w) {
                                continue;
                            }
                            x = in_b + (iy * p->input_w + ix) * p->input_c;
                            w = w_oc + (ky * p->filter_w + kx) * p->input_c;
                            for (ic = 0; ic < p->input_c; ++ic) {
                                acc += ((int32_t)x[ic] + p->input_offset) * (int32_t)w[ic];
                            }
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
