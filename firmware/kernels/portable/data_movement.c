/*
 * Data movement for any element type: PAD, TRANSPOSE, CONCATENATION and RESHAPE. Shapes are
 * 4-D (lowering pads lower ranks with leading 1s and merges dimensions that move together).
 */
#include <stdarg.h>
#include <string.h>

#include "tinyml_kernels.h"

/* Fill count elements of size element_size with the pattern held in value's low bytes. */
static void fill(uint8_t *dst, int32_t count, int32_t element_size, int32_t value)
{
    int32_t i;
    if (element_size == 1) {
        memset(dst, (unsigned char)(value & 0xFF), (size_t)count);
    } else if (element_size == 2) {
        const int16_t v16 = (int16_t)value;
        for (i = 0; i < count; ++i) {
            memcpy(dst + 2 * i, &v16, 2);
        }
    } else {
        for (i = 0; i < count; ++i) {
            memcpy(dst + 4 * i, &value, 4);
        }
    }
}

void tinyml_pad(const tinyml_pad_params *p, const void *input, void *output)
{
    const int32_t es = p->element_size;
    const int32_t *in = p->input_shape;
    const int32_t *out = p->output_shape;
    const int32_t *before = p->pad_before;
    const int32_t row_bytes = in[3] * es;
    const int32_t after = out[3] - in[3] - before[3];
    const uint8_t *src = (const uint8_t *)input;
    uint8_t *dst = (uint8_t *)output;
    int32_t i0, i1, i2;
    for (i0 = 0; i0 < out[0]; ++i0) {
        const int32_t j0 = i0 - before[0];
        for (i1 = 0; i1 < out[1]; ++i1) {
            const int32_t j1 = i1 - before[1];
            for (i2 = 0; i2 < out[2]; ++i2) {
                const int32_t j2 = i2 - before[2];
                if (j0 < 0 || j0 >= in[0] || j1 < 0 || j1 >= in[1] || j2 < 0 || j2 >= in[2]) {
                    fill(dst, out[3], es, p->pad_value);
                } else {
                    fill(dst, before[3], es, p->pad_value);
                    memcpy(dst + before[3] * es,
                           src + ((j0 * in[1] + j1) * in[2] + j2) * row_bytes,
                           (size_t)row_bytes);
                    fill(dst + (before[3] + in[3]) * es, after, es, p->pad_value);
                }
                dst += out[3] * es;
            }
        }
    }
}

void tinyml_transpose(const tinyml_transpose_params *p, const void *input, void *output)
{
    const int32_t es = p->element_size;
    const int32_t *d = p->output_shape;
    const int32_t *s = p->input_strides;
    const uint8_t *src = (const uint8_t *)input;
    uint8_t *dst = (uint8_t *)output;
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < d[0]; ++i0) {
        for (i1 = 0; i1 < d[1]; ++i1) {
            for (i2 = 0; i2 < d[2]; ++i2) {
                const uint8_t *row = src + (i0 * s[0] + i1 * s[1] + i2 * s[2]) * es;
                if (es == 1) {
                    for (i3 = 0; i3 < d[3]; ++i3) {
                        *dst++ = row[i3 * s[3]];
                    }
                } else {
                    for (i3 = 0; i3 < d[3]; ++i3) {
                        memcpy(dst, row + i3 * s[3] * es, (size_t)es);
                        dst += es;
                    }
                }
            }
        }
    }
}

void tinyml_concatenation(const tinyml_concatenation_params *p, ...)
{
    va_list args;
    uint8_t *out;
    int32_t total = 0;
    int32_t offset = 0;
    int32_t i, outer;
    /* The output pointer comes after the inputs: find it first. */
    va_start(args, p);
    for (i = 0; i < p->num_inputs; ++i) {
        (void)va_arg(args, const void *);
        total += p->slice_bytes[i];
    }
    out = (uint8_t *)va_arg(args, void *);
    va_end(args);

    va_start(args, p);
    for (i = 0; i < p->num_inputs; ++i) {
        const uint8_t *src = (const uint8_t *)va_arg(args, const void *);
        const int32_t bytes = p->slice_bytes[i];
        for (outer = 0; outer < p->outer_size; ++outer) {
            memcpy(out + outer * total + offset, src + outer * bytes, (size_t)bytes);
        }
        offset += bytes;
    }
    va_end(args);
}

void tinyml_reshape(const tinyml_reshape_params *p, const void *input, void *output)
{
    if (input != output) {
        memmove(output, input, (size_t)p->bytes);
    }
}
