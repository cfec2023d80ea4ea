/*
 * TRANSPOSE_CONV, int8 with per-channel requantization (TFLM's
 * reference_integer_ops::TransposeConv), portable.
 *
 * TFLM scatters: every input pixel adds (x + input_offset) * w to the output pixels its
 * filter covers, in an int32 canvas the size of the output, then requantizes the canvas.
 * This kernel gathers: each output element sums the same products over the input pixels
 * whose filter covers it. Integer sums do not depend on their order, so the result is TFLM's
 * bit for bit, and no canvas (4 bytes per output value) is needed.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

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
