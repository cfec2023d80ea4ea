/*
 * CONV_2D (generic and 1x1) and CONV_2D_ADD, int8 with per-channel requantization.
 *
 * Follows TFLM's ConvPerChannel: acc = sum over the taps that fall inside the image of
 * (input + input_offset) * filter, plus the bias, requantized per output channel, plus the
 * output zero point, clamped to the activation range. Skipping the taps in the padding is
 * what makes padding "contribute zero" in the real domain.
 *
 * The *_s4 entry points run the same code on packed int4 filters (int4.h), reading each value
 * where the int8 kernels read a byte: the arithmetic is the int8 kernels' on the unpacked
 * values, as TFLM's.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "int4.h"

/* Output channel oc's filter row (k values). */
static inline const int8_t *conv_row(const int8_t *filter, int32_t oc, int32_t k, int32_t int4)
{
    return filter + oc * (int4 ? tinyml_s4_row_bytes(k) : k);
}

/* One output element of the generic convolution: output channel oc of the window whose top
 * left input pixel is (in_y0, in_x0) in the image in_b. */
static int8_t conv_element(const tinyml_conv2d_params *p, const int8_t *in_b, int32_t in_y0,
                           int32_t in_x0, int32_t oc, int32_t per_group, int32_t int4)
{
    const int32_t ic0 = (oc / per_group) * p->filter_c;
    const int32_t k = p->filter_h * p->filter_w * p->filter_c;
    const int8_t *w = conv_row(p->filter, oc, k, int4);
    int32_t acc = 0;
    int32_t ky, kx, ic;
    for (ky = 0; ky < p->filter_h; ++ky) {
        const int32_t iy = in_y0 + ky * p->dilation_h;
        if (iy < 0 || iy >= p->input_h) {
            continue;
        }
        for (kx = 0; kx < p->filter_w; ++kx) {
            const int32_t ix = in_x0 + kx * p->dilation_w;
            const int8_t *x;
            int32_t at;
            if (ix < 0 || ix >= p->input_w) {
                continue;
            }
            x = in_b + (iy * p->input_w + ix) * p->input_c + ic0;
            at = (ky * p->filter_w + kx) * p->filter_c;
            if (int4) {
                for (ic = 0; ic < p->filter_c; ++ic) {
                    acc += ((int32_t)x[ic] + p->input_offset) * tinyml_s4_value(w, at + ic, k);
                }
            } else {
                for (ic = 0; ic < p->filter_c; ++ic) {
                    acc += ((int32_t)x[ic] + p->input_offset) * (int32_t)w[at + ic];
                }
            }
        }
    }
    acc = tinyml_wrap_add(acc, p->bias[oc]);
    return tinyml_requantize(acc, p->multiplier[oc], p->shift[oc], p->output_offset,
                             p->act_min, p->act_max);
}

/* Whether the output starts inside the input's bytes, above its first byte: the memory plan
 * placed it there for a backward run (tinyml/codegen/write_order.py, conv_delta_above), so
 * the output pixels go last first and each output byte lands on input bytes already read.
 * Otherwise (output below the input, in place, or apart) they go first to last. */
static int32_t conv_backward(const tinyml_conv2d_params *p, const int8_t *input,
                             const int8_t *output)
{
    const uintptr_t in = (uintptr_t)input, out = (uintptr_t)output;
    return out > in &&
           out < in + (uintptr_t)(p->batches * p->input_h * p->input_w * p->input_c);
}

static void conv_run(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                     int32_t int4)
{
    const int32_t groups = p->input_c / p->filter_c;
    const int32_t per_group = p->output_c / groups;
    int32_t b, oy, ox, oc;
    if (conv_backward(p, input, output)) {
        for (b = p->batches - 1; b >= 0; --b) {
            const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
            for (oy = p->output_h - 1; oy >= 0; --oy) {
                const int32_t in_y0 = oy * p->stride_h - p->pad_top;
                for (ox = p->output_w - 1; ox >= 0; --ox) {
                    const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                    int8_t *out = output + ((b * p->output_h + oy) * p->output_w + ox) *
                                               p->output_c;
                    for (oc = 0; oc < p->output_c; ++oc) {
                        out[oc] = conv_element(p, in_b, in_y0, in_x0, oc, per_group, int4);
                    }
                }
            }
        }
        return;
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t in_y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t in_x0 = ox * p->stride_w - p->pad_left;
                for (oc = 0; oc < p->output_c; ++oc) {
                    *output++ = conv_element(p, in_b, in_y0, in_x0, oc, per_group, int4);
                }
            }
        }
    }
}

void tinyml_conv2d_s8(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                      int8_t *scratch)
{
    (void)scratch; /* the portable kernels need none */
    conv_run(p, input, output, 0);
}

void tinyml_conv2d_s4(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                      int8_t *scratch)
{
    (void)scratch;
    conv_run(p, input, output, 1);
}

static void conv_1x1_run(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                         int32_t int4)
{
    const int32_t depth = p->input_c;
    const int32_t backward = conv_backward(p, input, output);
    int32_t bi, yi, xi, oc, ic;
    /* Pixels first to last, or last to first (conv_backward). */
    for (bi = 0; bi < p->batches; ++bi) {
        const int32_t b = backward ? p->batches - 1 - bi : bi;
        const int8_t *in_b = input + b * p->input_h * p->input_w * depth;
        for (yi = 0; yi < p->output_h; ++yi) {
            const int32_t oy = backward ? p->output_h - 1 - yi : yi;
            for (xi = 0; xi < p->output_w; ++xi) {
                const int32_t ox = backward ? p->output_w - 1 - xi : xi;
                const int8_t *x =
                    in_b + (oy * p->stride_h * p->input_w + ox * p->stride_w) * depth;
                int8_t *out = output + ((b * p->output_h + oy) * p->output_w + ox) * p->output_c;
                for (oc = 0; oc < p->output_c; ++oc) {
                    const int8_t *w = conv_row(p->filter, oc, depth, int4);
                    int32_t acc = 0;
                    if (int4) {
                        for (ic = 0; ic < depth; ++ic) {
                            acc += (int32_t)x[ic] * tinyml_s4_value(w, ic, depth);
                        }
                    } else {
                        for (ic = 0; ic < depth; ++ic) {
                            acc += (int32_t)x[ic] * (int32_t)w[ic];
                        }
                    }
                    /* The bias holds bias + input_offset * sum(filter row) (lowering). */
                    acc = tinyml_wrap_add(acc, p->bias[oc]);
                    out[oc] = tinyml_requantize(acc, p->multiplier[oc], p->shift[oc],
                                                p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

void tinyml_conv2d_1x1_s8(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                          int8_t *scratch)
{
    (void)scratch; /* the portable kernels need none */
    conv_1x1_run(p, input, output, 0);
}

void tinyml_conv2d_1x1_s4(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                          int8_t *scratch)
{
    (void)scratch;
    conv_1x1_run(p, input, output, 1);
}

static void conv_add_run(const tinyml_conv2d_add_params *p, const int8_t *input,
                         const int8_t *skip, int8_t *output, int32_t int4)
{
    const tinyml_conv2d_params *conv = &p->conv;
    const int32_t groups = conv->input_c / conv->filter_c;
    const int32_t per_group = conv->output_c / groups;
    int32_t b, oy, ox, oc;
    for (b = 0; b < conv->batches; ++b) {
        const int8_t *in_b = input + b * conv->input_h * conv->input_w * conv->input_c;
        for (oy = 0; oy < conv->output_h; ++oy) {
            const int32_t in_y0 = oy * conv->stride_h - conv->pad_top;
            for (ox = 0; ox < conv->output_w; ++ox) {
                const int32_t in_x0 = ox * conv->stride_w - conv->pad_left;
                for (oc = 0; oc < conv->output_c; ++oc) {
                    /* Read the skip element before the output (possibly the same byte). */
                    const int32_t s = (int32_t)*skip++ + p->add_skip_offset;
                    const int32_t c = (int32_t)conv_element(conv, in_b, in_y0, in_x0, oc,
                                                            per_group, int4) +
                                      p->add_conv_offset;
                    const int32_t first = p->add_skip_first ? s : c;
                    const int32_t second = p->add_skip_first ? c : s;
                    const int32_t first_multiplier =
                        p->add_skip_first ? p->add_skip_multiplier : p->add_conv_multiplier;
                    const int32_t first_shift =
                        p->add_skip_first ? p->add_skip_shift : p->add_conv_shift;
                    const int32_t second_multiplier =
                        p->add_skip_first ? p->add_conv_multiplier : p->add_skip_multiplier;
                    const int32_t second_shift =
                        p->add_skip_first ? p->add_conv_shift : p->add_skip_shift;
                    *output++ = tinyml_rescaled_sum(
                        first, second, p->add_left_shift, first_multiplier, first_shift,
                        second_multiplier, second_shift, p->add_output_multiplier,
                        p->add_output_shift, p->add_output_offset, p->add_act_min,
                        p->add_act_max);
                }
            }
        }
    }
}

void tinyml_conv2d_add_s8(const tinyml_conv2d_add_params *p, const int8_t *input,
                          const int8_t *skip, int8_t *output, int8_t *scratch)
{
    (void)scratch; /* the portable kernels need none */
    conv_add_run(p, input, skip, output, 0);
}

void tinyml_conv2d_add_s4(const tinyml_conv2d_add_params *p, const int8_t *input,
                          const int8_t *skip, int8_t *output, int8_t *scratch)
{
    (void)scratch;
    conv_add_run(p, input, skip, output, 1);
}
