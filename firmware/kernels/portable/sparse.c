/*
 * FULLY_CONNECTED and CONV_2D on sparse weights stored as run-length rows (the format is
 * described in tinyml_kernels.h and tinyml/codegen/sparse.py).
 *
 * Why run-length entries rather than a bitmap: the loop costs one step per stored entry
 * (a non-zero weight, or a filler every 16 zeros), not per weight, so at 80 % sparsity it
 * touches a fifth of the weights and no bit has to be searched for (Cortex-M0+ has no CLZ);
 * the skip travels in the same byte as an int4 value, so a 4-bit row costs one byte per
 * non-zero. The filler entries multiply by 0 instead of branching.
 *
 * Bit-exactness: lowering folds input_offset * sum(row) into the bias, so the kernels add
 * x * w over the stored entries only; the weights they skip are exact zeros, whose products
 * TFLM's dense loop adds as 0. All sums wrap as int32 like the dense kernels'.
 *
 * Signed values: an int4 code is read as int8 and its value is code >> 4, an arithmetic
 * shift of a possibly negative int (implementation-defined in C99, arithmetic on every
 * compiler tinyml targets; fixedpoint.h relies on the same).
 */
#include <string.h>

#include "tinyml_kernels.h"
#include "fixedpoint.h"

/* The dot product of one row of 8-bit entries with x; *stream advances past the row. */
static int32_t sparse_dot8(const int8_t *x, const int8_t **stream, int32_t entries)
{
    const int8_t *s = *stream;
    int32_t acc = 0;
    int32_t k;
    for (k = entries >> 1; k > 0; --k) {
        const uint32_t skips = (uint8_t)s[0];
        x += skips & 15u;
        acc += (int32_t)x[0] * (int32_t)s[1];
        x += 1u + (skips >> 4);
        acc += (int32_t)x[0] * (int32_t)s[2];
        x += 1;
        s += 3;
    }
    if (entries & 1) {
        x += (uint8_t)s[0] & 15u;
        acc += (int32_t)x[0] * (int32_t)s[1];
        s += 2;
    }
    *stream = s;
    return acc;
}

/* The same for 4-bit entries (one byte each: value in the high nibble, skip in the low). */
static int32_t sparse_dot4(const int8_t *x, const int8_t **stream, int32_t entries)
{
    const int8_t *s = *stream;
    int32_t acc = 0;
    int32_t k;
    for (k = entries >> 1; k > 0; --k) {
        const int32_t c0 = s[0];
        const int32_t c1 = s[1];
        x += (uint32_t)c0 & 15u;
        acc += (int32_t)x[0] * (c0 >> 4);
        x += 1u + ((uint32_t)c1 & 15u);
        acc += (int32_t)x[0] * (c1 >> 4);
        x += 1;
        s += 2;
    }
    if (entries & 1) {
        const int32_t c0 = s[0];
        x += (uint32_t)c0 & 15u;
        acc += (int32_t)x[0] * (c0 >> 4);
        s += 1;
    }
    *stream = s;
    return acc;
}

/* Every row on one input vector x: out[o] for o < rows. */
static void sparse_rows(const int8_t *x, int32_t rows, int32_t value_bits,
                        const uint16_t *row_entries, const int8_t *stream, const int32_t *bias,
                        const int32_t *multiplier, const int32_t *shift, int32_t output_offset,
                        int32_t act_min, int32_t act_max, int8_t *out)
{
    int32_t o;
    for (o = 0; o < rows; ++o) {
        int32_t acc = value_bits == 4 ? sparse_dot4(x, &stream, (int32_t)row_entries[o])
                                      : sparse_dot8(x, &stream, (int32_t)row_entries[o]);
        acc = tinyml_wrap_add(acc, bias[o]);
        out[o] = tinyml_requantize(acc, multiplier[o], shift[o], output_offset, act_min,
                                   act_max);
    }
}

void tinyml_fully_connected_sparse_s8(const tinyml_fully_connected_sparse_params *p,
                                      const int8_t *input, int8_t *output, int8_t *scratch)
{
    int32_t b;
    (void)scratch; /* none needed */
    for (b = 0; b < p->batches; ++b) {
        sparse_rows(input + b * p->input_depth, p->output_depth, p->value_bits,
                    p->row_entries, p->stream, p->bias, p->multiplier, p->shift,
                    p->output_offset, p->act_min, p->act_max, output + b * p->output_depth);
    }
}

void tinyml_conv2d_1x1_sparse_s8(const tinyml_conv2d_sparse_params *p, const int8_t *input,
                                 int8_t *output, int8_t *scratch)
{
    const int32_t depth = p->input_c;
    int32_t b, oy, ox;
    (void)scratch; /* none needed */
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * depth;
        for (oy = 0; oy < p->output_h; ++oy) {
            for (ox = 0; ox < p->output_w; ++ox) {
                const int8_t *x =
                    in_b + (oy * p->stride_h * p->input_w + ox * p->stride_w) * depth;
                sparse_rows(x, p->output_c, p->value_bits, p->row_entries, p->stream,
                            p->bias, p->multiplier, p->shift, p->output_offset, p->act_min,
                            p->act_max, output);
                output += p->output_c;
            }
        }
    }
}

/* The window of output pixel (oy, ox) into `window`, H, W, C order, the taps outside the
 * image set to the input zero point. */
static void gather_window(const tinyml_conv2d_sparse_params *p, const int8_t *in_b, int32_t oy,
                          int32_t ox, int8_t *window)
{
    const int32_t c = p->input_c;
    const int32_t in_y0 = oy * p->stride_h - p->pad_top;
    const int32_t in_x0 = ox * p->stride_w - p->pad_left;
    int32_t ky, kx;
    for (ky = 0; ky < p->filter_h; ++ky) {
        const int32_t iy = in_y0 + ky * p->dilation_h;
        for (kx = 0; kx < p->filter_w; ++kx) {
            const int32_t ix = in_x0 + kx * p->dilation_w;
            if (iy < 0 || iy >= p->input_h || ix < 0 || ix >= p->input_w) {
                memset(window, (int8_t)p->input_zero_point, (size_t)c);
            } else {
                memcpy(window, in_b + (iy * p->input_w + ix) * c, (size_t)c);
            }
            window += c;
        }
    }
}

void tinyml_conv2d_sparse_s8(const tinyml_conv2d_sparse_params *p, const int8_t *input,
                             int8_t *output, int8_t *scratch)
{
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            for (ox = 0; ox < p->output_w; ++ox) {
                gather_window(p, in_b, oy, ox, scratch);
                sparse_rows(scratch, p->output_c, p->value_bits, p->row_entries, p->stream,
                            p->bias, p->multiplier, p->shift, p->output_offset, p->act_min,
                            p->act_max, output);
                output += p->output_c;
            }
        }
    }
}
