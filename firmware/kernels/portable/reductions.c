/*
 * Reductions and normalization, int8: REDUCE_MAX and REDUCE_MIN (TFLM's ReduceGeneric with its
 * min/max reducers), ARG_MAX and ARG_MIN (reference ArgMinMax) and L2_NORMALIZATION
 * (reference_integer_ops::L2Normalization). SUM shares MEAN's kernel (mean.c).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "reduce_layout.h"

/* ---- REDUCE_MAX / REDUCE_MIN ----------------------------------------------------------- */

/* Walk the kept positions of the 4-D layout and reduce the reduced dimensions of each;
 * the first element starts the running value, which equals TFLM's start at the int8
 * lowest (highest) value for a non-empty reduction. */
static void reduce_min_max(const tinyml_reduce_params *p, const int8_t *input, int8_t *output,
                           int is_max)
{
    int32_t kept[4], reduced[4], stride[4];
    int32_t o0, o1, o2, o3, r0, r1, r2, r3;
    tinyml_reduce_layout(p->shape, p->reduced, kept, reduced, stride);
    for (o0 = 0; o0 < kept[0]; ++o0) {
        for (o1 = 0; o1 < kept[1]; ++o1) {
            for (o2 = 0; o2 < kept[2]; ++o2) {
                for (o3 = 0; o3 < kept[3]; ++o3) {
                    const int8_t *base = input + o0 * stride[0] + o1 * stride[1] +
                                         o2 * stride[2] + o3 * stride[3];
                    int8_t best = base[0];
                    for (r0 = 0; r0 < reduced[0]; ++r0) {
                        for (r1 = 0; r1 < reduced[1]; ++r1) {
                            for (r2 = 0; r2 < reduced[2]; ++r2) {
                                const int8_t *row = base + r0 * stride[0] + r1 * stride[1] +
                                                    r2 * stride[2];
                                for (r3 = 0; r3 < reduced[3]; ++r3) {
                                    const int8_t v = row[r3 * stride[3]];
                                    if (is_max ? v > best : v < best) {
                                        best = v;
                                    }
                                }
                            }
                        }
                    }
                    *output++ = best;
                }
            }
        }
    }
}

void tinyml_reduce_max_s8(const tinyml_reduce_params *p, const int8_t *input, int8_t *output)
{
    reduce_min_max(p, input, output, 1);
}

void tinyml_reduce_min_s8(const tinyml_reduce_params *p, const int8_t *input, int8_t *output)
{
    reduce_min_max(p, input, output, 0);
}

/* ---- ARG_MAX / ARG_MIN ------------------------------------------------------------------ */

/* A candidate replaces the current one only when strictly greater (smaller): ties keep the
 * first index, as TFLM's std::greater / std::less comparison does. */
static void arg_min_max(const tinyml_arg_params *p, const int8_t *input, int32_t *output,
                        int is_max)
{
    int32_t outer, inner, i;
    for (outer = 0; outer < p->outer_size; ++outer) {
        const int8_t *slab = input + outer * p->axis_size * p->inner_size;
        for (inner = 0; inner < p->inner_size; ++inner) {
            int8_t best = slab[inner];
            int32_t index = 0;
            for (i = 1; i < p->axis_size; ++i) {
                const int8_t v = slab[i * p->inner_size + inner];
                if (is_max ? v > best : v < best) {
                    best = v;
                    index = i;
                }
            }
            *output++ = index;
        }
    }
}

void tinyml_arg_max_s8(const tinyml_arg_params *p, const int8_t *input, int32_t *output)
{
    arg_min_max(p, input, output, 1);
}

void tinyml_arg_min_s8(const tinyml_arg_params *p, const int8_t *input, int32_t *output)
{
    arg_min_max(p, input, output, 0);
}

/* ---- L2_NORMALIZATION ------------------------------------------------------------------- */

#define L2_OUTPUT_SHIFT 7                        /* the output is Q0.7 */
#define HALF_THREE_Q3 ((1 << 28) + (1 << 27))    /* 1.5 in FixedPoint<int32_t, 3> */
#define HALF_SQRT_2_Q0 1518500250                /* sqrt(2)/2 in FixedPoint<int32_t, 0> */

/* GetInvSqrtQuantizedMultiplierExp(value, kReverseShift): 1/sqrt(value) as a multiplier and
 * a left shift, by five Newton-Raphson steps in gemmlowp fixed point (Q3.28). */
static void inv_sqrt_multiplier(int32_t value, int32_t *multiplier, int32_t *left_shift)
{
    int32_t shift = 11, pairs, half_input, x, i;
    if (value <= 1) {
        *multiplier = TINYML_INT32_MAX;
        *left_shift = 0;
        return;
    }
    while (value >= (1 << 29)) {
        value /= 4;
        ++shift;
    }
    pairs = (tinyml_clz_u32((uint32_t)value) - 1) / 2 - 1;
    shift -= pairs;
    value = tinyml_wrap_shl(value, 2 * pairs);
    half_input = tinyml_srmbpot(value >> 1, -1);
    x = 1 << 28;  /* 1.0 */
    for (i = 0; i < 5; ++i) {
        const int32_t x3 = tinyml_rescale(tinyml_srdhm(tinyml_srdhm(x, x), x), 9, 3);
        x = tinyml_rescale(tinyml_wrap_sub(tinyml_srdhm(HALF_THREE_Q3, x),
                                           tinyml_srdhm(half_input, x3)), 6, 3);
    }
    x = tinyml_srdhm(x, HALF_SQRT_2_Q0);
    if (shift < 0) {
        x = tinyml_wrap_shl(x, -shift);
        shift = 0;
    }
    *multiplier = x;
    *left_shift = -shift;
}

void tinyml_l2_normalization_s8(const tinyml_l2_normalization_params *p, const int8_t *input,
                                int8_t *output)
{
    int32_t outer, i;
    for (outer = 0; outer < p->outer_size; ++outer) {
        const int8_t *row = input + outer * p->depth;
        int8_t *out = output + outer * p->depth;
        int32_t acc = 0, multiplier, shift;
        for (i = 0; i < p->depth; ++i) {
            const int32_t v = row[i] - p->input_zero_point;
            acc = tinyml_wrap_add(acc, v * v);
        }
        inv_sqrt_multiplier(acc, &multiplier, &shift);
        /* Reads element i before writing it: safe in place. */
        for (i = 0; i < p->depth; ++i) {
            const int32_t v = row[i] - p->input_zero_point;
            const int32_t y = tinyml_mbqm(v, multiplier, shift + L2_OUTPUT_SHIFT);
            out[i] = (int8_t)tinyml_min_i32(127, tinyml_max_i32(-128, y));
        }
    }
}
