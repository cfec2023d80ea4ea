/*
 * FULLY_CONNECTED of 16x8 models, Cortex-M DSP version of portable/fully_connected_s16.c:
 * the same int64 accumulation and requantization, the dot products two rows at a time with
 * SMLAD (s16_dot.h).
 */
#include "tinyml_kernels.h"
#include "s16_dot.h"

void tinyml_fully_connected_s16(const tinyml_fully_connected_s16_params *p,
                                const int16_t *input, int16_t *output)
{
    int32_t b;
    for (b = 0; b < p->batches; ++b) {
        tinyml_s16_rows(input + b * p->input_depth, p->filter, p->input_depth, p->output_depth,
                        p->bias, p->multiplier, p->shift, p->int32_accumulator, p->act_min,
                        p->act_max,
                        output + b * p->output_depth);
    }
}
