/*
 * The dot products of the 16x8 DSP kernels (private header): int16 activations times int8
 * weights, two weight rows at a time, with SMLAD.
 *
 * Four activations are two words, (x0, x1) and (x2, x3); PKHBT/PKHTB turn them into
 * (x0, x2) and (x1, x3), the lane order SXTB16 gives the four weights of a word without
 * further packing, and both weight rows share those two packed words. Products are below
 * 2^22 in magnitude, so an int32 SMLAD accumulator holds 256 of them exactly; every 256
 * the partial sum moves into the int64 accumulator TFLM's 16x8 kernels use.
 */
#ifndef TINYML_S16_DOT_H
#define TINYML_S16_DOT_H

#include "dsp_common.h"

/* Values per int32 partial sum (each product is at most 2^22 in magnitude). */
#define TINYML_S16_CHUNK 256

/* *acc0 += x . w0 and *acc1 += x . w1 over n values, in int32 chunks of
 * TINYML_S16_CHUNK: the loop keeps its 12 values in registers. */
static TINYML_ALWAYS_INLINE void tinyml_s16_dot2(const int16_t *x, const int8_t *w0,
                                                 const int8_t *w1, int32_t n, int64_t *acc0,
                                                 int64_t *acc1)
{
    int32_t start = 0;
    do {
        const int32_t end = n - start > TINYML_S16_CHUNK ? start + TINYML_S16_CHUNK : n;
        const int16_t *xi = x + start;
        const int16_t *x_end = xi + ((end - start) & ~3);
        const int8_t *p0 = w0 + start;
        const int8_t *p1 = w1 + start;
        int32_t a0 = 0, a1 = 0;
        while (xi < x_end) {
            const int32_t xa = tinyml_read_s16x2(xi);
            const int32_t xb = tinyml_read_s16x2(xi + 2);
            const int32_t even = tinyml_pkhbt(xa, xb);
            const int32_t odd = tinyml_pkhtb(xb, xa);
            int32_t we, wo;
            tinyml_s8x4_interleaved(tinyml_read_s8x4(p0), &we, &wo);
            a0 = __smlad(odd, wo, __smlad(even, we, a0));
            tinyml_s8x4_interleaved(tinyml_read_s8x4(p1), &we, &wo);
            a1 = __smlad(odd, wo, __smlad(even, we, a1));
            xi += 4;
            p0 += 4;
            p1 += 4;
        }
        for (; xi < x + end; ++xi) {
            a0 += (int32_t)*xi * *p0++;
            a1 += (int32_t)*xi * *p1++;
        }
        *acc0 += a0;
        *acc1 += a1;
        start = end;
    } while (start < n);
}

/* acc += x . w over n values (the odd row left over by tinyml_s16_dot2). */
static TINYML_NOINLINE int64_t tinyml_s16_dot1(const int16_t *x, const int8_t *w, int32_t n,
                                               int64_t acc)
{
    int32_t start = 0;
    while (start < n) {
        const int32_t end = n - start > TINYML_S16_CHUNK ? start + TINYML_S16_CHUNK : n;
        int32_t a = 0;
        int32_t i = start;
        for (; i + 4 <= end; i += 4) {
            const int32_t xa = tinyml_read_s16x2(x + i);
            const int32_t xb = tinyml_read_s16x2(x + i + 2);
            int32_t we, wo;
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w + i), &we, &wo);
            a = __smlad(tinyml_pkhtb(xb, xa), wo, __smlad(tinyml_pkhbt(xa, xb), we, a));
        }
        for (; i < end; ++i) {
            a += (int32_t)x[i] * w[i];
        }
        acc += a;
        start = end;
    }
    return acc;
}

/* The output stage: TFLM's requantization for the bias's type, clamp, int16. */
static inline int16_t tinyml_s16_output(int64_t acc, int32_t multiplier, int32_t shift,
                                        int32_t int32_accumulator, int32_t act_min,
                                        int32_t act_max)
{
    return tinyml_clamp_s16(tinyml_requantize_16x8(acc, multiplier, shift, int32_accumulator),
                            act_min, act_max);
}

/* Output rows [0, rows) of one input vector x (depth values), in pairs: one call per
 * window, so the function's set-up is paid once for all its rows. */
static TINYML_NOINLINE void tinyml_s16_rows(const int16_t *x, const int8_t *filter, int32_t depth,
                                   int32_t rows, const int64_t *bias,
                                   const int32_t *multiplier, const int32_t *shift,
                                   int32_t int32_accumulator, int32_t act_min, int32_t act_max,
                                   int16_t *out)
{
    int32_t o = 0;
    for (; o + 2 <= rows; o += 2) {
        int64_t acc0 = bias[o], acc1 = bias[o + 1];
        tinyml_s16_dot2(x, filter + o * depth, filter + (o + 1) * depth, depth, &acc0, &acc1);
        out[o] = tinyml_s16_output(acc0, multiplier[o], shift[o], int32_accumulator, act_min,
                                   act_max);
        out[o + 1] = tinyml_s16_output(acc1, multiplier[o + 1], shift[o + 1], int32_accumulator,
                                       act_min, act_max);
    }
    if (o < rows) {
        out[o] = tinyml_s16_output(tinyml_s16_dot1(x, filter + o * depth, depth, bias[o]),
                                   multiplier[o], shift[o], int32_accumulator, act_min,
                                   act_max);
    }
}

#endif
