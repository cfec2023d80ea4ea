/*
 * CONV_2D and DEPTHWISE_CONV_2D of TFLite's 16x8 models: int16 input and output (zero point
 * 0), int8 per-channel filters, int64 bias.
 *
 * Follows TFLM's reference_integer_ops::ConvPerChannel / DepthwiseConvPerChannel for int16:
 * acc (int64) = sum over the taps inside the image of input * filter, + bias, then the int64
 * MultiplyByQuantizedMultiplier (tinyml_mbqm64; an int32 bias: the int32 path,
 * tinyml_requantize_16x8) and the activation clamp. There is no input
 * offset (zero point 0), so taps in the padding are simply skipped.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

void tinyml_conv2d_s16(const tinyml_conv2d_s16_params *p, const int16_t *input,
                       int16_t *output, int8_t *scratch)
{
    const int32_t groups = p->input_c / p->filter_c;
    const int32_t per_group = p->output_c / groups;
    const int32_t k = p->filter_h * p->filter_w * p->filter_c;
    int32_t b, oy, ox, oc, ky, kx, ic;
    (void)scratch;
    for (b = 0; b < p->batches; ++b) {
        const int16_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                for (oc = 0; oc < p->output_c; ++oc) {
                    const int32_t ic0 = (oc / per_group) * p->filter_c;
                    const int8_t *w = p->filter + oc * k;
                    int64_t acc = 0;
                    for (ky = 0; ky < p->filter_h; ++ky) {
                        const int32_t iy = in_y0 + ky * p->dilation_h;
                        if (iy < 0 || iy >= p->input_h) {
                            continue;
                        }
                        for (kx = 0; kx < p->filter_w; ++kx) {
                            const int32_t ix = in_x0 + kx * p->dilation_w;
                            const int16_t *x;
                            const int8_t *wt;
                            int32_t sum = 0;
                            if (ix < 0 || ix >= p->input_w) {
                                continue;
                            }
                            x = in_b + (iy * p->input_w + ix) * p->input_c + ic0;
                            wt = w + (ky * p->filter_w + kx) * p->filter_c;
                            /* One tap's channels: |x * w| < 2^22, so int32 holds up to 2^9
                             * channels; wider taps add in int64 in chunks. */
                            for (ic = 0; ic < p->filter_c; ++ic) {
                                sum += (int32_t)x[ic] * (int32_t)wt[ic];
                                if ((ic & 255) == 255) {
                                    acc += sum;
                                    sum = 0;
                                }
                            }
                            acc += sum;
                        }
                    }
                    acc += p->bias[oc];
                    *output++ = tinyml_clamp_s16(
                        tinyml_requantize_16x8(acc, p->multiplier[oc], p->shift[oc],
                                               p->int32_accumulator),
                        p->act_min, p->act_max);
                }
            }
        }
    }
}

void tinyml_depthwise_conv2d_s16(const tinyml_depthwise_conv2d_s16_params *p,
                                 const int16_t *input, int16_t *output)
{
    const int32_t m_count = p->depth_multiplier;
    const int32_t output_c = p->input_c * m_count;
    const int32_t taps = p->filter_h * p->filter_w;
    int32_t b, oy, ox, c, m, ky, kx;
    for (b = 0; b < p->batches; ++b) {
        const int16_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                for (c = 0; c < p->input_c; ++c) {
                    for (m = 0; m < m_count; ++m) {
                        const int32_t oc = c * m_count + m;
                        const int8_t *w = p->filter + oc * taps;
                        int64_t acc = 0;
                        for (ky = 0; ky < p->filter_h; ++ky) {
                            const int32_t iy = in_y0 + ky * p->dilation_h;
                            if (iy < 0 || iy >= p->input_h) {
                                continue;
                            }
                            for (kx = 0; kx < p->filter_w; ++kx) {
                                const int32_t ix = in_x0 + kx * p->dilation_w;
                                if (ix < 0 || ix >= p->input_w) {
                                    continue;
                                }
                                acc += (int32_t)in_b[(iy * p->input_w + ix) * p->input_c + c] *
                                       (int32_t)w[ky * p->filter_w + kx];
                            }
                        }
                        acc += p->bias[oc];
                        output[((b * p->output_h + oy) * p->output_w + ox) * output_c + oc] =
                            tinyml_clamp_s16(tinyml_requantize_16x8(acc, p->multiplier[oc],
                                                                    p->shift[oc],
                                                                    p->int32_accumulator),
                                             p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}
