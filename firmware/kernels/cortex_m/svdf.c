/*
 * SVDF on Cortex-M cores with the DSP extension (replaces portable/svdf.c there; same
 * functions, same results bit for bit: see the portable file for TFLM's arithmetic).
 *
 * Where the time goes in a keyword spotter's SVDF is the feature dot product (filters x
 * input_size int8 MACs a frame). Here it takes four MACs per two SMLADs: weights and input
 * unpacked to int16 pairs with SXTB16 (the interleaved order, the same for both operands),
 * the input offset added in the unpacking (SXTAB16; x + offset fits int16). The time dot
 * product of the int16 state is one SMLAD per two memory taps straight from memory (int16
 * pairs, state zero point 0 as TFLite's int16 quantization has; another zero point takes the
 * scalar loop); the int8 state is unpacked like the input. The state shift moves a word at a
 * time (TFLM's whole-buffer shift by one element: each filter's newest column, which that
 * shift fills from the next row, is overwritten right after). SMLAD's sum is modulo 2^32, as
 * the portable kernel's unsigned sums are.
 */
#include "dsp_common.h"
#include "tinyml_kernels.h"

/* sum_i w[i] * (x[i] + offset), modulo 2^32. */
static int32_t feature_dot(const int8_t *w, const int8_t *x, int32_t n, int32_t offset)
{
    const int32_t offset2 = tinyml_dup16(offset);
    int32_t acc = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int32_t w_even, w_odd, x_even, x_odd;
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w + i), &w_even, &w_odd);
        tinyml_s8x4_interleaved_offset(tinyml_read_s8x4(x + i), offset2, &x_even, &x_odd);
        acc = __smlad(w_even, x_even, acc);
        acc = __smlad(w_odd, x_odd, acc);
    }
    for (; i < n; i++) {
        acc = tinyml_wrap_add(acc, (int32_t)w[i] * ((int32_t)x[i] + offset));
    }
    return acc;
}

/* feature_dot for two filters (rows w and w + n) at once: each input word is unpacked once
 * for both, which is a third of the instructions of the one-filter loop. */
static void feature_dot2(const int8_t *w, const int8_t *x, int32_t n, int32_t offset,
                         int32_t *dot0, int32_t *dot1)
{
    const int32_t offset2 = tinyml_dup16(offset);
    const int8_t *w1 = w + n;
    int32_t acc0 = 0, acc1 = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int32_t x_even, x_odd, w_even, w_odd;
        tinyml_s8x4_interleaved_offset(tinyml_read_s8x4(x + i), offset2, &x_even, &x_odd);
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w + i), &w_even, &w_odd);
        acc0 = __smlad(w_even, x_even, acc0);
        acc0 = __smlad(w_odd, x_odd, acc0);
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w1 + i), &w_even, &w_odd);
        acc1 = __smlad(w_even, x_even, acc1);
        acc1 = __smlad(w_odd, x_odd, acc1);
    }
    for (; i < n; i++) {
        const int32_t v = (int32_t)x[i] + offset;
        acc0 = tinyml_wrap_add(acc0, (int32_t)w[i] * v);
        acc1 = tinyml_wrap_add(acc1, (int32_t)w1[i] * v);
    }
    *dot0 = acc0;
    *dot1 = acc1;
}

/* The newest columns of every filter of one batch row (state_t's range [lo, hi]): pairs of
 * filters, then the odd one. */
#define NEWEST_COLUMNS(state_t, lo, hi)                                                      \
    for (f = 0; f + 2 <= p->filters; f += 2) {                                               \
        int32_t dot0, dot1;                                                                  \
        feature_dot2(p->weights_feature + f * p->input_size, x, p->input_size,               \
                     p->input_offset, &dot0, &dot1);                                         \
        rows[f * memory + memory - 1] = (state_t)newest_column(p, r1, dot0, lo, hi);         \
        rows[(f + 1) * memory + memory - 1] = (state_t)newest_column(p, r1, dot1, lo, hi);   \
    }                                                                                        \
    if (f < p->filters) {                                                                    \
        const int32_t dot = feature_dot(p->weights_feature + f * p->input_size, x,           \
                                        p->input_size, p->input_offset);                     \
        rows[f * memory + memory - 1] = (state_t)newest_column(p, r1, dot, lo, hi);          \
    }

/* The newest column of a filter: the feature dot product rescaled to the state's scale,
 * clamped to the state type's range, plus the state's zero point. */
static int32_t newest_column(const tinyml_svdf_params *p, tinyml_dsp_requant r1, int32_t dot,
                             int32_t lo, int32_t hi)
{
    int32_t v = tinyml_dsp_mbqm(dot, r1);
    v = v < lo ? lo : (v > hi ? hi : v);
    return tinyml_wrap_add(p->state_zero_point, v);
}

TINYML_NO_LIBCALLS
static void shift_s16(int16_t *state, int32_t n)
{
    int32_t i = 0;
    for (; i + 2 <= n - 1; i += 2) {
        tinyml_write_s16x2(state + i, tinyml_read_s16x2(state + i + 1));
    }
    for (; i < n - 1; i++) {
        state[i] = state[i + 1];
    }
}

TINYML_NO_LIBCALLS
static void shift_s8(int8_t *state, int32_t n)
{
    int32_t i = 0;
    for (; i + 4 <= n - 1; i += 4) {
        tinyml_write_s8x4(state + i, tinyml_read_s8x4(state + i + 1));
    }
    for (; i < n - 1; i++) {
        state[i] = state[i + 1];
    }
}

void tinyml_svdf_s8_s16(const tinyml_svdf_params *p, const int8_t *input, int16_t *state,
                        int8_t *output)
{
    const int32_t units = p->filters / p->rank;
    const int32_t memory = p->memory;
    const int16_t *weights_time = (const int16_t *)p->weights_time;
    const tinyml_dsp_requant r1 = tinyml_dsp_requant_prepare(p->multiplier_1, p->shift_1);
    const tinyml_dsp_requant r2 = tinyml_dsp_requant_prepare(p->multiplier_2, p->shift_2);
    int32_t b;
    shift_s16(state, p->batches * p->filters * memory);
    for (b = 0; b < p->batches; b++) {
        int16_t *rows = state + b * p->filters * memory;
        const int8_t *x = input + b * p->input_size;
        int32_t f, u;
        NEWEST_COLUMNS(int16_t, TINYML_INT16_MIN, TINYML_INT16_MAX)
        for (u = 0; u < units; u++) {
            int32_t acc = p->bias[u];
            const int32_t first = u * p->rank * memory;
            const int32_t taps = p->rank * memory;   /* a unit's filters are adjacent rows */
            const int16_t *row = rows + first;
            const int16_t *w = weights_time + first;
            int32_t m = 0;
            if (p->state_zero_point == 0) {
                for (; m + 2 <= taps; m += 2) {
                    acc = __smlad(tinyml_read_s16x2(w + m), tinyml_read_s16x2(row + m), acc);
                }
            }
            for (; m < taps; m++) {
                acc = (int32_t)((uint32_t)acc + (uint32_t)(int32_t)w[m] *
                                (uint32_t)((int32_t)row[m] - p->state_zero_point));
            }
            output[b * units + u] = tinyml_dsp_requantize(acc, r2, p->output_zero_point,
                                                          -128, 127);
        }
    }
}

void tinyml_svdf_s8_s8(const tinyml_svdf_params *p, const int8_t *input, int8_t *state,
                       int8_t *output)
{
    const int32_t units = p->filters / p->rank;
    const int32_t memory = p->memory;
    const int8_t *weights_time = (const int8_t *)p->weights_time;
    const tinyml_dsp_requant r1 = tinyml_dsp_requant_prepare(p->multiplier_1, p->shift_1);
    const tinyml_dsp_requant r2 = tinyml_dsp_requant_prepare(p->multiplier_2, p->shift_2);
    int32_t b;
    shift_s8(state, p->batches * p->filters * memory);
    for (b = 0; b < p->batches; b++) {
        int8_t *rows = state + b * p->filters * memory;
        const int8_t *x = input + b * p->input_size;
        int32_t f, u;
        NEWEST_COLUMNS(int8_t, -128, 127)
        for (u = 0; u < units; u++) {
            const int32_t first = u * p->rank * memory;
            const int32_t acc = tinyml_wrap_add(
                p->bias[u], feature_dot(weights_time + first, rows + first, p->rank * memory,
                                        -p->state_zero_point));
            output[b * units + u] = tinyml_dsp_requantize(acc, r2, p->output_zero_point,
                                                          -128, 127);
        }
    }
}
