/*
 * The dot products of the 16x8 DSP kernels (private header): int16 activations times int8
 * weights, four (or two, or one) weight rows at a time, with SMLAD.
 *
 * Four activations are two words, (x0, x1) and (x2, x3); PKHBT/PKHTB turn them into
 * (x0, x2) and (x1, x3), the lane order SXTB16 gives the four weights of a word without
 * further packing, and every weight row shares those two packed words. Products are below
 * 2^22 in magnitude, so an int32 SMLAD accumulator holds 256 of them exactly; every 256
 * the partial sum moves into the int64 accumulator TFLM's 16x8 kernels use.
 */
#ifndef TINYML_S16_DOT_H
#define TINYML_S16_DOT_H

#include "dsp_common.h"

/* Values per int32 partial sum (each product is at most 2^22 in magnitude). */
#define TINYML_S16_CHUNK 256

/* acc0 += x . w0 and acc1 += x . w1 over n values. */
static TINYML_NOINLINE void tinyml_s16_dot2(const int16_t *x, const int8_t *w0,
                                            const int8_t *w1, int32_t n, int64_t *acc0,
                                            int64_t *acc1)
{
    int64_t total0 = *acc0, total1 = *acc1;
    int32_t start = 0;
    while (start < n) {
        const int32_t end = n - start > TINYML_S16_CHUNK ? start + TINYML_S16_CHUNK : n;
        int32_t a0 = 0, a1 = 0;
        int32_t i = start;
        for (; i + 4 <= end; i += 4) {
            const int32_t xa = tinyml_read_s16x2(x + i);
            const int32_t xb = tinyml_read_s16x2(x + i + 2);
            const int32_t even = tinyml_pkhbt(xa, xb);
            const int32_t odd = tinyml_pkhtb(xb, xa);
            int32_t we, wo;
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w0 + i), &we, &wo);
            a0 = __smlad(odd, wo, __smlad(even, we, a0));
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w1 + i), &we, &wo);
            a1 = __smlad(odd, wo, __smlad(even, we, a1));
        }
        for (; i < end; ++i) {
            a0 += (int32_t)x[i] * w0[i];
            a1 += (int32_t)x[i] * w1[i];
        }
        total0 += a0;
        total1 += a1;
        start = end;
    }
    *acc0 = total0;
    *acc1 = total1;
}

/* acc[r] += x . w[r * stride] for r < 4 over n values: one PKHBT/PKHTB pair of the inputs
 * serves four weight rows. */
static TINYML_NOINLINE void tinyml_s16_dot4(const int16_t *x, const int8_t *w, int32_t stride,
                                            int32_t n, int64_t *acc)
{
    int32_t start = 0;
    while (start < n) {
        const int32_t end = n - start > TINYML_S16_CHUNK ? start + TINYML_S16_CHUNK : n;
        const int8_t *w0 = w + start;
        const int16_t *xi = x + start;
        const int16_t *x_end = x + start + ((end - start) & ~3);
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        int32_t i;
        while (xi < x_end) {
            const int32_t xa = tinyml_read_s16x2(xi);
            const int32_t xb = tinyml_read_s16x2(xi + 2);
            const int32_t even = tinyml_pkhbt(xa, xb);
            const int32_t odd = tinyml_pkhtb(xb, xa);
            int32_t we, wo;
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w0), &we, &wo);
            a0 = __smlad(odd, wo, __smlad(even, we, a0));
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w0 + stride), &we, &wo);
            a1 = __smlad(odd, wo, __smlad(even, we, a1));
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w0 + 2 * stride), &we, &wo);
            a2 = __smlad(odd, wo, __smlad(even, we, a2));
            tinyml_s8x4_interleaved(tinyml_read_s8x4(w0 + 3 * stride), &we, &wo);
            a3 = __smlad(odd, wo, __smlad(even, we, a3));
            xi += 4;
            w0 += 4;
        }
        for (i = (int32_t)(xi - x); i < end; ++i) {
            a0 += (int32_t)x[i] * w[i];
            a1 += (int32_t)x[i] * w[i + stride];
            a2 += (int32_t)x[i] * w[i + 2 * stride];
            a3 += (int32_t)x[i] * w[i + 3 * stride];
        }
        acc[0] += a0;
        acc[1] += a1;
        acc[2] += a2;
        acc[3] += a3;
        start = end;
    }
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

/* The output stage: int64 MultiplyByQuantizedMultiplier, clamp, int16. */
static inline int16_t tinyml_s16_output(int64_t acc, int32_t multiplier, int32_t shift,
                                        int32_t act_min, int32_t act_max)
{
    return tinyml_clamp_s16(tinyml_mbqm64(acc, multiplier, shift), act_min, act_max);
}

/* Output rows [0, rows) of one input vector x (depth values): four rows at a time, then
 * two, then one. */
static inline void tinyml_s16_rows(const int16_t *x, const int8_t *filter, int32_t depth,
                                   int32_t rows, const int64_t *bias,
                                   const int32_t *multiplier, const int32_t *shift,
                                   int32_t act_min, int32_t act_max, int16_t *out)
{
    int32_t o = 0;
    for (; o + 4 <= rows; o += 4) {
        int64_t acc[4];
        int32_t r;
        for (r = 0; r < 4; ++r) {
            acc[r] = bias[o + r];
        }
        tinyml_s16_dot4(x, filter + o * depth, depth, depth, acc);
        for (r = 0; r < 4; ++r) {
            out[o + r] = tinyml_s16_output(acc[r], multiplier[o + r], shift[o + r], act_min,
                                           act_max);
        }
    }
    for (; o + 2 <= rows; o += 2) {
        int64_t acc0 = bias[o], acc1 = bias[o + 1];
        tinyml_s16_dot2(x, filter + o * depth, filter + (o + 1) * depth, depth, &acc0, &acc1);
        out[o] = tinyml_s16_output(acc0, multiplier[o], shift[o], act_min, act_max);
        out[o + 1] = tinyml_s16_output(acc1, multiplier[o + 1], shift[o + 1], act_min, act_max);
    }
    if (o < rows) {
        out[o] = tinyml_s16_output(tinyml_s16_dot1(x, filter + o * depth, depth, bias[o]),
                                   multiplier[o], shift[o], act_min, act_max);
    }
}

#endif
