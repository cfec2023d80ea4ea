/*
 * FULLY_CONNECTED for Cortex-M cores with the DSP extension.
 *
 * Results are those of portable/fully_connected.c bit for bit: the same int32 dot products
 * (summed in another order; addition modulo 2^32 is associative), the same filter-offset
 * term and bias, the same requantization (dsp_common.h's exact forms of it).
 *
 * Scheme: the input row is first copied to scratch as int16, per group of four values
 * (x0..x3) the words (x0, x2) and (x1, x3): the "interleaved" lane order in which SXTB16 and
 * SXTB16 ROR #8 unpack four filter bytes. Output rows are then taken four at a time, so that
 * one LDRD of the copy serves four filter rows; per row and group, one load and two SXTB16
 * unpack the filter bytes and two SMLAD accumulate them: 16 MACs in 21 instructions, two
 * groups per loop iteration. Rows left over (output_depth mod 4) run the same loop for one
 * row; values left over (input_depth mod 4) a scalar tail on the int8 input.
 *
 * Requantization per output: the short form with the zero point folded in (as conv.c's
 * conv_channel) for the usual shifts, else the long form; SSAT when the activation range is
 * all of int8, else the clamp.
 *
 * Scratch (lowering's fc_scratch_bytes): 2 * input_depth bytes, plus 3 for word alignment.
 */
#include <stdint.h>

#include "tinyml_kernels.h"
#include "dsp_common.h"

/* The input row x (depth values) as interleaved int16 pairs in xs: 2 words per group of four,
 * the last depth mod 4 values not copied. */
static TINYML_NO_LIBCALLS void fc_convert(const int8_t *x, int32_t depth, int32_t *xs)
{
    int32_t groups = depth >> 2;
    for (; groups > 0; --groups, x += 4, xs += 2) {
        tinyml_s8x4_interleaved(tinyml_read_s8x4(x), &xs[0], &xs[1]);
    }
}

/* One group of four values for four rows: the converted input words at *xs (advanced), the
 * filter bytes at w, w + d1, w + d2, w + d3. */
static TINYML_ALWAYS_INLINE void fc_group4(const int32_t **xs, const int8_t *w, int32_t d1,
                                           int32_t d2, int32_t d3, int32_t *a0, int32_t *a1,
                                           int32_t *a2, int32_t *a3)
{
    int32_t xe, xo, we, wo;
    tinyml_read_2words(xs, &xe, &xo);
    tinyml_s8x4_interleaved(tinyml_read_s8x4(w), &we, &wo);
    *a0 = __smlad(xo, wo, __smlad(xe, we, *a0));
    tinyml_s8x4_interleaved(tinyml_read_s8x4(w + d1), &we, &wo);
    *a1 = __smlad(xo, wo, __smlad(xe, we, *a1));
    tinyml_s8x4_interleaved(tinyml_read_s8x4(w + d2), &we, &wo);
    *a2 = __smlad(xo, wo, __smlad(xe, we, *a2));
    tinyml_s8x4_interleaved(tinyml_read_s8x4(w + d3), &we, &wo);
    *a3 = __smlad(xo, wo, __smlad(xe, we, *a3));
}

/* acc[r] = x . row r (r < 4, rows `depth` bytes apart from w): xs the converted input, x the
 * int8 one (for the tail). One weight pointer with the other rows at register offsets keeps
 * the loop's values in registers. */
static TINYML_NOINLINE TINYML_NO_SCHEDULE void fc_dot4(const int32_t *xs, const int8_t *x,
                                                       const int8_t *w, int32_t depth,
                                                       int32_t acc[4])
{
    const int32_t d1 = depth, d2 = 2 * depth, d3 = 3 * depth;
    const int32_t *pairs_end = xs + 4 * (depth >> 3);
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, i;
    while (xs != pairs_end) {
        fc_group4(&xs, w, d1, d2, d3, &a0, &a1, &a2, &a3);
        w += 4;
        fc_group4(&xs, w, d1, d2, d3, &a0, &a1, &a2, &a3);
        w += 4;
    }
    if (depth & 4) {
        fc_group4(&xs, w, d1, d2, d3, &a0, &a1, &a2, &a3);
        w += 4;
    }
    for (i = depth & ~3; i < depth; ++i, ++w) {
        const int32_t v = x[i];
        a0 += v * w[0];
        a1 += v * w[d1];
        a2 += v * w[d2];
        a3 += v * w[d3];
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* x . w for one row. */
static TINYML_NOINLINE TINYML_NO_SCHEDULE int32_t fc_dot1(const int32_t *xs, const int8_t *x,
                                                          const int8_t *w, int32_t depth)
{
    const int32_t *end = xs + 2 * (depth >> 2);
    int32_t acc = 0, xe, xo, we, wo, i;
    while (xs != end) {
        tinyml_read_2words(&xs, &xe, &xo);
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w), &we, &wo);
        acc = __smlad(xo, wo, __smlad(xe, we, acc));
        w += 4;
    }
    for (i = depth & ~3; i < depth; ++i) {
        acc += x[i] * *w++;
    }
    return acc;
}

/* The sum of the depth input values (for the filter offset of per-tensor weights with a
 * nonzero zero point). */
static int32_t fc_sum(const int8_t *x, int32_t depth)
{
    const int32_t ones = 0x00010001;
    int32_t sum = 0, i = 0, even, odd;
    for (; i + 4 <= depth; i += 4) {
        tinyml_s8x4_interleaved(tinyml_read_s8x4(x + i), &even, &odd);
        sum = __smlad(odd, ones, __smlad(even, ones, sum));
    }
    for (; i < depth; ++i) {
        sum += x[i];
    }
    return sum;
}

/* The usual case first (the short requantization form): GCC otherwise lays the long form out
 * as the straight path. */
#if defined(__GNUC__)
#define FC_LIKELY(x) __builtin_expect(!!(x), 1)
#else
#define FC_LIKELY(x) (x)
#endif

/* The output stage of one output: acc (the dot product, the filter term and the bias)
 * requantized by (m, s), plus the zero point zp, clamped to [lo, hi] (SSAT when `full`).
 * Usual shifts (right shift 2..23) take the short form with the zero point folded into its
 * rounding constant: (h + zp * 2^e) >> e is (h >> e) + zp inside int32, and
 * 2^(e-1) + zp * 2^e = (2 zp + 1) * 2^(e-1) = zp2 << (e - 1). */
static TINYML_ALWAYS_INLINE int8_t fc_output(int32_t acc, int32_t m, int32_t s, int32_t zp,
                                             int32_t zp2, int32_t full, int32_t lo, int32_t hi)
{
    int32_t v;
    if (FC_LIKELY(tinyml_dsp_short_applies(m, s) && s >= -23)) {
        const int32_t e = -s - 1;
        v = tinyml_dsp_mbqm_short_raw(acc, m, (int32_t)((uint32_t)zp2 << (e - 1)), e);
    } else {
        v = tinyml_wrap_add(tinyml_dsp_mbqm(acc, tinyml_dsp_requant_prepare(m, s)), zp);
    }
    if (full) {
        return (int8_t)tinyml_ssat8(v);
    }
    v = v < lo ? lo : v;
    return (int8_t)(v > hi ? hi : v);
}

void tinyml_fully_connected_s8(const tinyml_fully_connected_params *p, const int8_t *input,
                               int8_t *output, int8_t *scratch)
{
    const uint32_t misalignment = (uint32_t)((uintptr_t)scratch & 3u);
    int32_t *xs = (int32_t *)(void *)(scratch + (misalignment ? 4 - misalignment : 0));
    const int32_t depth = p->input_depth, units = p->output_depth;
    const int32_t zp = p->output_offset, zp2 = 2 * p->output_offset + 1;
    const int32_t lo = p->act_min, hi = p->act_max, full = lo == -128 && hi == 127;
    const int32_t *bias = p->bias, *multiplier = p->multiplier, *shift = p->shift;
    int32_t b, o, r;
    for (b = 0; b < p->batches; ++b, output += units) {
        const int8_t *x = input + b * depth;
        const int8_t *w = p->filter;
        /* The filter offset's term, wrapped as the reference's int32 arithmetic. */
        const int32_t filter_term =
            p->filter_offset != 0
                ? (int32_t)((uint32_t)fc_sum(x, depth) * (uint32_t)p->filter_offset)
                : 0;
        fc_convert(x, depth, xs);
        for (o = 0; o + 4 <= units; o += 4, w += 4 * depth) {
            int32_t acc[4];
            fc_dot4(xs, x, w, depth, acc);
            TINYML_UNROLL
            for (r = 0; r < 4; ++r) {
                const int32_t sum = tinyml_wrap_add(tinyml_wrap_add(acc[r], filter_term),
                                                    bias[o + r]);
                output[o + r] =
                    fc_output(sum, multiplier[o + r], shift[o + r], zp, zp2, full, lo, hi);
            }
        }
        for (; o < units; ++o, w += depth) {
            const int32_t sum = tinyml_wrap_add(
                tinyml_wrap_add(fc_dot1(xs, x, w, depth), filter_term), bias[o]);
            output[o] = fc_output(sum, multiplier[o], shift[o], zp, zp2, full, lo, hi);
        }
    }
}
