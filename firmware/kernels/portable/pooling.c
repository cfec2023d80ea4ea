/*
 * AVERAGE_POOL_2D and MAX_POOL_2D, int8 (TFLM's reference integer pooling).
 *
 * Windows are clipped to the image: padding cells are not counted by the average and never
 * win the maximum. The average rounds half away from zero with C's truncating division, and
 * there is no rescaling (TFLM reads the result with the input's quantization).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

/* The valid part [start, end) of a window starting at input coordinate origin. */
static void clip_window(int32_t origin, int32_t filter, int32_t size, int32_t *start,
                        int32_t *end)
{
    *start = tinyml_max_i32(0, -origin);
    *end = tinyml_min_i32(filter, size - origin);
}

void tinyml_avg_pool2d_s8(const tinyml_pool2d_params *p, const int8_t *input, int8_t *output)
{
    const int32_t c_count = p->channels;
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * c_count;
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
                    int32_t sum = 0;
                    int32_t average;
                    for (fy = fy_start; fy < fy_end; ++fy) {
                        const int8_t *row = in_b + ((y0 + fy) * p->input_w + x0) * c_count + c;
                        for (fx = fx_start; fx < fx_end; ++fx) {
                            sum += row[fx * c_count];
                        }
                    }
                    average = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                    average = tinyml_max_i32(average, p->act_min);
                    average = tinyml_min_i32(average, p->act_max);
                    *output++ = (int8_t)average;
                }
            }
        }
    }
}

void tinyml_max_pool2d_s8(const tinyml_pool2d_params *p, const int8_t *input, int8_t *output)
{
    const int32_t c_count = p->channels;
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * c_count;
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            int32_t fy_start, fy_end;
            clip_window(y0, p->filter_h, p->input_h, &fy_start, &fy_end);
            for (ox = 0; ox < p->output_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                int32_t fx_start, fx_end;
                clip_window(x0, p->filter_w, p->input_w, &fx_start, &fx_end);
                for (c = 0; c < c_count; ++c) {
                    int32_t max = -128;
                    for (fy = fy_start; fy < fy_end; ++fy) {
                        const int8_t *row = in_b + ((y0 + fy) * p->input_w + x0) * c_count + c;
                        for (fx = fx_start; fx < fx_end; ++fx) {
                            max = tinyml_max_i32(max, row[fx * c_count]);
                        }
                    }
                    max = tinyml_max_i32(max, p->act_min);
                    max = tinyml_min_i32(max, p->act_max);
                    *output++ = (int8_t)max;
                }
            }
        }
    }
}
