/*
 * AVERAGE_POOL_2D, MAX_POOL_2D and MEAN of 16x8 models: TFLM's integer pooling and
 * QuantizedMeanOrSum templates at int16 (the int8 kernels' arithmetic, int16 range).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "reduce_layout.h"

/* The valid part [start, end) of a window starting at input coordinate origin. */
static void clip_window(int32_t origin, int32_t filter, int32_t size, int32_t *start,
                        int32_t *end)
{
    *start = tinyml_max_i32(0, -origin);
    *end = tinyml_min_i32(filter, size - origin);
}

static void pool_s16(const tinyml_pool2d_params *p, const int16_t *input, int16_t *output,
                     int32_t average)
{
    const int32_t c_count = p->channels;
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int16_t *in_b = input + b * p->input_h * p->input_w * c_count;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            int32_t fy_start, fy_end;
            clip_window(y0, p->filter_h, p->input_h, &fy_start, &fy_end);
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                int32_t fx_start, fx_end, count;
                clip_window(x0, p->filter_w, p->input_w, &fx_start, &fx_end);
                count = (fy_end - fy_start) * (fx_end - fx_start);
                for (c = 0; c < c_count; ++c) {
                    int32_t acc = average ? 0 : TINYML_INT16_MIN;
                    for (fy = fy_start; fy < fy_end; ++fy) {
                        const int16_t *row = in_b + ((y0 + fy) * p->input_w + x0) * c_count + c;
                        for (fx = fx_start; fx < fx_end; ++fx) {
                            if (average) {
                                acc += row[fx * c_count];
                            } else {
                                acc = tinyml_max_i32(acc, row[fx * c_count]);
                            }
                        }
                    }
                    if (average) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    *output++ = tinyml_clamp_s16(acc, p->act_min, p->act_max);
                }
            }
        }
    }
}

void tinyml_avg_pool2d_s16(const tinyml_pool2d_params *p, const int16_t *input,
                           int16_t *output)
{
    pool_s16(p, input, output, 1);
}

void tinyml_max_pool2d_s16(const tinyml_pool2d_params *p, const int16_t *input,
                           int16_t *output)
{
    pool_s16(p, input, output, 0);
}

void tinyml_mean_s16(const tinyml_mean_params *p, const int16_t *input, int16_t *output)
{
    int32_t kept[4], averaged[4], stride[4];
    int32_t o0, o1, o2, o3, r0, r1, r2, r3;
    tinyml_reduce_layout(p->shape, p->reduced, kept, averaged, stride);
    for (o0 = 0; o0 < kept[0]; ++o0) {
        for (o1 = 0; o1 < kept[1]; ++o1) {
            for (o2 = 0; o2 < kept[2]; ++o2) {
                for (o3 = 0; o3 < kept[3]; ++o3) {
                    const int16_t *base = input + o0 * stride[0] + o1 * stride[1] +
                                          o2 * stride[2] + o3 * stride[3];
                    int32_t sum = 0;
                    int32_t y;
                    for (r0 = 0; r0 < averaged[0]; ++r0) {
                        for (r1 = 0; r1 < averaged[1]; ++r1) {
                            for (r2 = 0; r2 < averaged[2]; ++r2) {
                                const int16_t *row = base + r0 * stride[0] + r1 * stride[1] +
                                                     r2 * stride[2];
                                for (r3 = 0; r3 < averaged[3]; ++r3) {
                                    sum = tinyml_wrap_add(sum, row[r3 * stride[3]]);
                                }
                            }
                        }
                    }
                    y = tinyml_wrap_add(tinyml_mbqm(tinyml_wrap_add(sum, p->input_offset_sum),
                                                    p->multiplier, p->shift),
                                        p->output_offset);
                    *output++ = tinyml_clamp_s16(y, TINYML_INT16_MIN, TINYML_INT16_MAX);
                }
            }
        }
    }
}
