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
 * The decoding and the row loop are in sparse_rows.h / sparse_rows.c (which a core may
 * replace, as cortex_m/sparse_rows.c does); this file walks pixels and batches.
 */
#include <string.h>

#include "tinyml_kernels.h"
#include "sparse_rows.h"

/* The rows and output stage of a sparse FULLY_CONNECTED / CONV_2D. */
#define SPARSE_ROWS(p, count)                                                                \
    {(count), (p)->value_bits, (p)->row_entries, (p)->stream, (p)->bias, (p)->multiplier,    \
     (p)->shift, (p)->output_offset, (p)->act_min, (p)->act_max}

void tinyml_fully_connected_sparse_s8(const tinyml_fully_connected_sparse_params *p,
                                      const int8_t *input, int8_t *output, int8_t *scratch)
{
    const tinyml_sparse_rows_t rows = SPARSE_ROWS(p, p->output_depth);
    int32_t b;
    (void)scratch; /* none needed */
    for (b = 0; b < p->batches; ++b) {
        tinyml_sparse_rows(&rows, input + b * p->input_depth, output + b * p->output_depth);
    }
}

/* The input vector of output pixel (*oy, *ox) of a 1x1 convolution; steps to the next pixel
 * (row-major; no division, which Cortex-M0+ lacks). */
static const int8_t *next_pixel(const tinyml_conv2d_sparse_params *p, const int8_t *in_b,
                                int32_t *oy, int32_t *ox)
{
    const int8_t *x = in_b + (*oy * p->stride_h * p->input_w + *ox * p->stride_w) * p->input_c;
    if (++*ox == p->output_w) {
        *ox = 0;
        ++*oy;
    }
    return x;
}

void tinyml_conv2d_1x1_sparse_s8(const tinyml_conv2d_sparse_params *p, const int8_t *input,
                                 int8_t *output, int8_t *scratch)
{
    const tinyml_sparse_rows_t rows = SPARSE_ROWS(p, p->output_c);
    const int32_t pixels = p->output_h * p->output_w;
    int32_t b, k;
    (void)scratch; /* none needed */
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        int32_t oy = 0, ox = 0;
        /* Output pixels two at a time (tinyml_sparse_rows2), then the odd one. */
        for (k = 0; k + 1 < pixels; k += 2) {
            const int8_t *x0 = next_pixel(p, in_b, &oy, &ox);
            const int8_t *x1 = next_pixel(p, in_b, &oy, &ox);
            tinyml_sparse_rows2(&rows, x0, x1, output, output + p->output_c);
            output += 2 * p->output_c;
        }
        if (k < pixels) {
            tinyml_sparse_rows(&rows, next_pixel(p, in_b, &oy, &ox), output);
            output += p->output_c;
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
    const tinyml_sparse_rows_t rows = SPARSE_ROWS(p, p->output_c);
    int32_t b, oy, ox;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        for (oy = 0; oy < p->output_h; ++oy) {
            for (ox = 0; ox < p->output_w; ++ox) {
                gather_window(p, in_b, oy, ox, scratch);
                tinyml_sparse_rows(&rows, scratch, output);
                output += p->output_c;
            }
        }
    }
}
