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

/* The valid window of one output pixel: its first input pixel (all channels), the rows and
 * pixels per row it spans, and the bytes from one row of it to the next. */
typedef struct {
    const int8_t *first;
    int32_t rows;
    int32_t cols;
    int32_t row_step;
} pool_window;

static pool_window window_of(const tinyml_pool2d_params *p, const int8_t *in_b, int32_t oy,
                             int32_t ox)
{
    const int32_t y0 = oy * p->stride_h - p->pad_top, x0 = ox * p->stride_w - p->pad_left;
    int32_t fy_start, fy_end, fx_start, fx_end;
    pool_window w;
    clip_window(y0, p->filter_h, p->input_h, &fy_start, &fy_end);
    clip_window(x0, p->filter_w, p->input_w, &fx_start, &fx_end);
    w.rows = tinyml_max_i32(fy_end - fy_start, 0);
    w.cols = tinyml_max_i32(fx_end - fx_start, 0);
    w.first = w.rows && w.cols
                  ? in_b + ((y0 + fy_start) * p->input_w + x0 + fx_start) * p->channels
                  : in_b;
    w.row_step = p->input_w * p->channels;
    return w;
}

/* Why channel groups: the window's cells of one channel lie `channels` bytes apart, so a loop
 * per channel over the window pays an address computation per cell. Four channels at a time,
 * their sums (or maxima) in registers, read four adjacent bytes per cell instead, and every
 * output pixel reads its window once per group of four. A pixel's outputs are written after
 * its whole window is read, so the kernels still run in place (the "window" form). */

static int8_t pool_average(int32_t sum, int32_t count, const tinyml_pool2d_params *p)
{
    int32_t average = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
    average = tinyml_max_i32(average, p->act_min);
    return (int8_t)tinyml_min_i32(average, p->act_max);
}

void tinyml_avg_pool2d_s8(const tinyml_pool2d_params *p, const int8_t *input, int8_t *output)
{
    const int32_t c_count = p->channels;
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * c_count;
        for (oy = 0; oy < p->output_h; ++oy) {
            for (ox = 0; ox < p->output_w; ++ox, output += c_count) {
                const pool_window w = window_of(p, in_b, oy, ox);
                const int32_t count = w.rows * w.cols;
                for (c = 0; c + 4 <= c_count; c += 4) {
                    const int8_t *row = w.first + c;
                    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                    for (fy = 0; fy < w.rows; ++fy, row += w.row_step) {
                        const int8_t *cell = row;
                        for (fx = 0; fx < w.cols; ++fx, cell += c_count) {
                            s0 += cell[0];
                            s1 += cell[1];
                            s2 += cell[2];
                            s3 += cell[3];
                        }
                    }
                    output[c] = pool_average(s0, count, p);
                    output[c + 1] = pool_average(s1, count, p);
                    output[c + 2] = pool_average(s2, count, p);
                    output[c + 3] = pool_average(s3, count, p);
                }
                for (; c < c_count; ++c) {
                    const int8_t *row = w.first + c;
                    int32_t sum = 0;
                    for (fy = 0; fy < w.rows; ++fy, row += w.row_step) {
                        for (fx = 0; fx < w.cols; ++fx) {
                            sum += row[fx * c_count];
                        }
                    }
                    output[c] = pool_average(sum, count, p);
                }
            }
        }
    }
}

void tinyml_max_pool2d_s8(const tinyml_pool2d_params *p, const int8_t *input, int8_t *output)
{
    const int32_t c_count = p->channels, lo = p->act_min, hi = p->act_max;
    int32_t b, oy, ox, c, fy, fx;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * c_count;
        for (oy = 0; oy < p->output_h; ++oy) {
            for (ox = 0; ox < p->output_w; ++ox, output += c_count) {
                const pool_window w = window_of(p, in_b, oy, ox);
                /* Starting at act_min instead of -128 is the lower clamp. */
                for (c = 0; c + 4 <= c_count; c += 4) {
                    const int8_t *row = w.first + c;
                    int32_t m0 = lo, m1 = lo, m2 = lo, m3 = lo;
                    for (fy = 0; fy < w.rows; ++fy, row += w.row_step) {
                        const int8_t *cell = row;
                        for (fx = 0; fx < w.cols; ++fx, cell += c_count) {
                            m0 = tinyml_max_i32(m0, cell[0]);
                            m1 = tinyml_max_i32(m1, cell[1]);
                            m2 = tinyml_max_i32(m2, cell[2]);
                            m3 = tinyml_max_i32(m3, cell[3]);
                        }
                    }
                    if (hi < 127) {
                        m0 = tinyml_min_i32(m0, hi);
                        m1 = tinyml_min_i32(m1, hi);
                        m2 = tinyml_min_i32(m2, hi);
                        m3 = tinyml_min_i32(m3, hi);
                    }
                    output[c] = (int8_t)m0;
                    output[c + 1] = (int8_t)m1;
                    output[c + 2] = (int8_t)m2;
                    output[c + 3] = (int8_t)m3;
                }
                if (c < c_count) {
                    /* The last one to three channels, in one pass over the window. */
                    const int32_t rest = c_count - c;
                    const int8_t *row = w.first + c;
                    int32_t m0 = lo, m1 = lo, m2 = lo;
                    for (fy = 0; fy < w.rows; ++fy, row += w.row_step) {
                        const int8_t *cell = row;
                        for (fx = 0; fx < w.cols; ++fx, cell += c_count) {
                            m0 = tinyml_max_i32(m0, cell[0]);
                            if (rest > 1) {
                                m1 = tinyml_max_i32(m1, cell[1]);
                            }
                            if (rest > 2) {
                                m2 = tinyml_max_i32(m2, cell[2]);
                            }
                        }
                    }
                    output[c] = (int8_t)tinyml_min_i32(m0, hi);
                    if (rest > 1) {
                        output[c + 1] = (int8_t)tinyml_min_i32(m1, hi);
                    }
                    if (rest > 2) {
                        output[c + 2] = (int8_t)tinyml_min_i32(m2, hi);
                    }
                }
            }
        }
    }
}
