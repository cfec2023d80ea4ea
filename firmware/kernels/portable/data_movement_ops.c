/*
 * The data_movement family: index copies (slices, gathers, resizes by nearest neighbour,
 * mirror padding, depth/space rearrangements), splits and int8 bilinear resizing. Lowering
 * computes every index; these loops only add table entries and copy bytes.
 */
#include <stdarg.h>
#include <string.h>

#include "tinyml_kernels.h"

void tinyml_index_copy(const tinyml_index_copy_params *p, const void *input, void *output)
{
    const int32_t *d = p->shape;
    const int32_t *t0 = p->offsets;
    const int32_t *t1 = t0 + d[0];
    const int32_t *t2 = t1 + d[1];
    const int32_t *t3 = t2 + d[2];
    const int32_t es = p->element_size;
    const int32_t row_bytes = d[3] * es;
    const uint8_t *src = (const uint8_t *)input;
    uint8_t *dst = (uint8_t *)output;
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < d[0]; ++i0) {
        for (i1 = 0; i1 < d[1]; ++i1) {
            const int32_t o1 = t0[i0] + t1[i1];
            for (i2 = 0; i2 < d[2]; ++i2) {
                const uint8_t *row = src + o1 + t2[i2];
                if (p->inner_contiguous) {
                    memcpy(dst, row + t3[0], (size_t)row_bytes);
                    dst += row_bytes;
                } else if (es == 1) {
                    for (i3 = 0; i3 < d[3]; ++i3) {
                        *dst++ = row[t3[i3]];
                    }
                } else {
                    for (i3 = 0; i3 < d[3]; ++i3) {
                        memcpy(dst, row + t3[i3], (size_t)es);
                        dst += es;
                    }
                }
            }
        }
    }
}

void tinyml_split(const tinyml_split_params *p, const void *input, ...)
{
    va_list args;
    const uint8_t *src = (const uint8_t *)input;
    int32_t total = 0;
    int32_t offset = 0;
    int32_t i, outer;
    for (i = 0; i < p->num_outputs; ++i) {
        total += p->slice_bytes[i];
    }
    va_start(args, input);
    for (i = 0; i < p->num_outputs; ++i) {
        uint8_t *dst = (uint8_t *)va_arg(args, void *);
        const int32_t bytes = p->slice_bytes[i];
        for (outer = 0; outer < p->outer_size; ++outer) {
            memcpy(dst + outer * bytes, src + outer * total + offset, (size_t)bytes);
        }
        offset += bytes;
    }
    va_end(args);
}

void tinyml_resize_bilinear_s8(const tinyml_resize_bilinear_params *p, const int8_t *input,
                               int8_t *output)
{
    const int32_t one = 1 << 10;
    const int32_t row = p->input_w * p->depth;
    int32_t b, y, x, c;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *image = input + b * p->input_h * row;
        for (y = 0; y < p->output_h; ++y) {
            const int8_t *top = image + p->y0[y] * row;
            const int8_t *bottom = image + p->y1[y] * row;
            const int64_t wy = p->wy[y];
            for (x = 0; x < p->output_w; ++x) {
                const int32_t left = p->x0[x] * p->depth;
                const int32_t right = p->x1[x] * p->depth;
                const int64_t wx = p->wx[x];
                for (c = 0; c < p->depth; ++c) {
                    const int64_t sum = (int64_t)top[left + c] * (one - wy) * (one - wx) +
                                        (int64_t)bottom[left + c] * wy * (one - wx) +
                                        (int64_t)top[right + c] * (one - wy) * wx +
                                        (int64_t)bottom[right + c] * wy * wx;
                    const int64_t round = sum > 0 ? (1 << 19) : -(1 << 19);
                    *output++ = (int8_t)((sum + round) / (1 << 20));
                }
            }
        }
    }
}
