/*
 * The data movement of the convolution variants (the "conv" op family), int8
 * (TRANSPOSE_CONV is in transpose_conv.c, which the Cortex-M DSP kernels replace).
 *
 * SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND follow TFLM's reference kernels loop for loop:
 * they move whole pixels (depth bytes) and compute nothing, so only the indexing has to agree.
 */
#include <string.h>

#include "tinyml_kernels.h"

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
