/*
 * FULLY_CONNECTED, int8, per-tensor or per-channel weights.
 *
 * TFLM computes acc = sum_i (x_i + input_offset) * (w_i + filter_offset) + bias. Expanded,
 * that is dot(x, w) + filter_offset * sum(x) + [bias + input_offset * sum(w + filter_offset)]:
 * the bracket is a constant that lowering folds into the bias, and all of it is exact in
 * wrapping int32 arithmetic, so the result is bit-identical while the inner loop is a plain
 * int8 dot product.
 *
 * tinyml_fully_connected_s4 runs the same loop on a packed int4 filter (int4.h).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "int4.h"

static void fc_run(const tinyml_fully_connected_params *p, const int8_t *input, int8_t *output,
                   int32_t int4)
{
    const int32_t depth = p->input_depth;
    const int32_t row_bytes = int4 ? tinyml_s4_row_bytes(depth) : depth;
    int32_t b, o, i;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *x = input + b * depth;
        const int8_t *w = p->filter;
        int32_t filter_term = 0;
        if (p->filter_offset != 0) {
            int32_t sum = 0;
            for (i = 0; i < depth; ++i) {
                sum += x[i];
            }
            filter_term = sum * p->filter_offset;
        }
        for (o = 0; o < p->output_depth; ++o) {
            int32_t acc = 0;
            if (int4) {
                for (i = 0; i < depth; ++i) {
                    acc += (int32_t)x[i] * tinyml_s4_value(w, i, depth);
                }
            } else {
                for (i = 0; i < depth; ++i) {
                    acc += (int32_t)x[i] * (int32_t)w[i];
                }
            }
            w += row_bytes;
            acc = tinyml_wrap_add(tinyml_wrap_add(acc, filter_term), p->bias[o]);
            *output++ = tinyml_requantize(acc, p->multiplier[o], p->shift[o], p->output_offset,
                                          p->act_min, p->act_max);
        }
    }
}

void tinyml_fully_connected_s8(const tinyml_fully_connected_params *p, const int8_t *input,
                               int8_t *output, int8_t *scratch)
{
    (void)scratch; /* the portable kernel needs none */
    fc_run(p, input, output, 0);
}

void tinyml_fully_connected_s4(const tinyml_fully_connected_params *p, const int8_t *input,
                               int8_t *output, int8_t *scratch)
{
    (void)scratch;
    fc_run(p, input, output, 1);
}
