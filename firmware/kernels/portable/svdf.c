/*
 * SVDF with TFLM's integer arithmetic (EvalIntegerSvdfReference): int8 input and output, an
 * activation state the kernel updates in place (static storage outside the arena that
 * survives from one tinyml_invoke() to the next), time weights of the state's type (int16,
 * or int8 in TFLM's 8-bit variant), int32 bias.
 *
 * The state is [batch][filter][memory], as TFLM lays it out. Per filter: the row moves one
 * column left (TFLM shifts the whole buffer by one element; the element that crosses into the
 * previous row lands on its newest column, which the next step overwrites, so a per-row shift
 * is the same), the newest column becomes the rescaled feature dot product, then the time dot
 * product reads the row. No scratch: TFLM's two int32 scratch buffers hold sums that are only
 * added together, and int32 addition wraps the same in any order, so each unit's sum is formed
 * directly. Time products and sums are taken modulo 2^32 (unsigned), which is what TFLM's
 * int32 accumulators give and keeps the C free of signed overflow.
 *
 * The two variants differ only in the state's element type, so one body (SVDF_BODY) is
 * instantiated twice: C99 has no templates, and TFLM's kernel is one template too.
 */
#include "fixedpoint.h"
#include "tinyml_kernels.h"

#define SVDF_BODY(state_t, state_min, state_max)                                              \
    const int32_t units = p->filters / p->rank;                                               \
    const int32_t memory = p->memory;                                                         \
    const state_t *weights_time = (const state_t *)p->weights_time;                           \
    int32_t b;                                                                                \
    for (b = 0; b < p->batches; b++) {                                                        \
        const int8_t *x = input + b * p->input_size;                                          \
        state_t *rows = state + b * p->filters * memory;                                      \
        int32_t f, u;                                                                         \
        for (f = 0; f < p->filters; f++) {                                                    \
            state_t *row = rows + f * memory;                                                 \
            const int8_t *w = p->weights_feature + f * p->input_size;                         \
            int32_t dot = 0;                                                                  \
            int32_t i;                                                                        \
            for (i = 0; i < memory - 1; i++) {                                                \
                row[i] = row[i + 1];                                                          \
            }                                                                                 \
            for (i = 0; i < p->input_size; i++) {                                             \
                dot += (int32_t)w[i] * ((int32_t)x[i] + p->input_offset);                     \
            }                                                                                 \
            dot = tinyml_mbqm(dot, p->multiplier_1, p->shift_1);                              \
            dot = tinyml_max_i32(tinyml_min_i32(dot, state_max), state_min);                  \
            /* zero point + value stored in the state type, as TFLM does. */                  \
            row[memory - 1] = (state_t)tinyml_wrap_add(p->state_zero_point, dot);             \
        }                                                                                     \
        for (u = 0; u < units; u++) {                                                         \
            uint32_t acc = (uint32_t)p->bias[u];                                              \
            int32_t r;                                                                        \
            for (r = 0; r < p->rank; r++) {                                                   \
                const int32_t filter = u * p->rank + r;                                       \
                const state_t *row = rows + filter * memory;                                  \
                const state_t *w = weights_time + filter * memory;                            \
                int32_t m;                                                                    \
                for (m = 0; m < memory; m++) {                                                \
                    acc += (uint32_t)(int32_t)w[m] *                                          \
                           (uint32_t)((int32_t)row[m] - p->state_zero_point);                 \
                }                                                                             \
            }                                                                                 \
            output[b * units + u] = tinyml_requantize((int32_t)acc, p->multiplier_2,         \
                                                      p->shift_2, p->output_zero_point,       \
                                                      -128, 127);                             \
        }                                                                                     \
    }

void tinyml_svdf_s8_s16(const tinyml_svdf_params *p, const int8_t *input, int16_t *state,
                        int8_t *output)
{
    SVDF_BODY(int16_t, TINYML_INT16_MIN, TINYML_INT16_MAX)
}

void tinyml_svdf_s8_s8(const tinyml_svdf_params *p, const int8_t *input, int8_t *state,
                       int8_t *output)
{
    SVDF_BODY(int8_t, -128, 127)
}
