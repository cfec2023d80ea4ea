/*
 * DEPTHWISE_CONV_2D (generic and 3x3) for Cortex-M cores with the DSP extension.
 *
 * Results are those of portable/depthwise_conv.c bit for bit: the same int32 sums (in another
 * order; addition modulo 2^32 is associative) and the same requantization (dsp_common.h's
 * forms of it are exact). Like the portable kernel, this one works a channel at a time on a
 * copy of the channel's plane, so it runs in place under the same condition (depth
 * multiplier 1, no more output than input pixels), and the padding holds the input zero point
 * while lowering folds the input offset into the bias.
 *
 * Scheme: the plane is copied as int16 (not int8), rows of S = plane_w rounded up to even
 * values, so that every row starts on a word and one 32-bit load gives two horizontally
 * adjacent values, which is SMLAD's operand. Filter rows become int16 pairs too.
 *
 * - 3x3, horizontal stride 1 or 2 (the depthwise-separable nets): two outputs x, x+1 of a
 *   row at a time. Per filter row (w0, w1, w2) and plane row p, with the packed weights
 *   W01 = (w0, w1) and W12 = (w1, w2) and the plane words P0 = (p[s], p[s+1]),
 *   P1 = (p[s+2], p[s+3]) (s = x * stride):
 *     out x:   SMLAD(P0, W01) + SMLABT(P1, W12)         (p[s]w0 + p[s+1]w1 + p[s+2]w2)
 *     out x+1, stride 1: SMLATB(P0, W01) + SMLAD(P1, W12)
 *     out x+1, stride 2: SMLAD(P1, W01) + SMLABT(P2, W12), P2 = (p[s+4], p[s+5])
 *   i.e. 6 MACs in 2 or 3 loads and 4 multiply-accumulates, the six weight words held in
 *   registers for the whole channel. An odd last output takes the first formula alone; its
 *   P1 may read p[plane_w], which S's rounding provides (a zero-point value, never used).
 *   When the output has more rows than columns, the plane is copied transposed so that these
 *   loops run along the longer side.
 * - filter rows 5 or 7 wide, undilated horizontally, horizontal stride 1 or 2 (MCUNet-style
 *   blocks): two outputs x, x+1 of a row at a time, as 3x3 does it for any width K. With
 *   the plane words P_j = (p[s+2j], p[s+2j+1]) and the weight pairs U_j = (w_2j, w_2j+1),
 *   V_j = (w_2j-1, w_2j) (taps outside 0..K-1 are 0):
 *     out x:   sum over j of SMLAD(P_j, U_j)
 *     out x+1, stride 1: sum over j of SMLAD(P_j, V_j)
 *     out x+1, stride 2: sum over j of SMLAD(P_j+1, U_j)
 *   K / 2 + 1 words of the plane and 2K MACs in K + 1 (stride 1) or K + 1 (stride 2,
 *   rounded up to even) SMLADs per filter row, the filter row loop fully unrolled.
 * - anything else (other sizes, strides, dilations): per output and filter row, SMLAD over
 *   pairs of taps (dilation_w 1) or one SMLABB per tap.
 * - small outputs (at most 100 pixels, at least 12 channels, no depth multiplier: the patches
 *   of patch-based inference, the last layers of a network, 1-D convolutions over a short
 *   time axis) skip the planes and go pixel by pixel, four channels at a time, at most 32
 *   channels per pass, from a ring of NHWC rows (see "small outputs" below); in place too.
 *
 * Requantization per output: the short form with the zero point folded in (as conv.c's
 * conv_channel) for the usual shifts, else the long form; SSAT when the activation range is
 * all of int8, else the clamp.
 *
 * Scratch (lowering's depthwise_scratch_bytes): 2 * plane_h * S bytes for the plane (or the
 * transposed plane, whichever is larger), 8 * filter_h * (filter_w / 2 + 1) for the packed
 * filter of the generic and wide paths, or the pixel path's tables and ring if larger; 3 for word
 * alignment.
 *
 * Packed int4 filters (the *_s4 entry points): every path above reads a channel's filter once
 * per channel (or, on the pixel path, once per call), so the int4 kernels unpack it to int8
 * right there, into the first 4 * filter_h * filter_w bytes of scratch (one channel's taps,
 * or four channels' for the pixel path's tables and its last channels), and then run the int8
 * code unchanged: the unpacking costs a few instructions per tap and channel, against the
 * whole plane of multiply-accumulates each channel's filter serves.
 */
#include <stddef.h>
#include <stdint.h>

#include "tinyml_kernels.h"
#include "dsp_common.h"
#include "int4.h"

/* ---- the plane ---------------------------------------------------------------------------- */

/* int16 values per plane row: `values` rounded up to even (rows start on words). */
static int32_t dw_even(int32_t values)
{
    return (values + 1) & ~1;
}

static int16_t *dw_align(int8_t *scratch)
{
    const uint32_t misalignment = (uint32_t)((uintptr_t)scratch & 3u);
    return (int16_t *)(void *)(scratch + (misalignment ? 4 - misalignment : 0));
}

static TINYML_NO_LIBCALLS void dw_fill(int16_t *dst, int16_t value, int32_t n)
{
    for (; n > 0; --n) {
        *dst++ = value;
    }
}

/* n int8 values src[0], src[step], ... as int16 at dst[0 .. n-1]. */
static TINYML_NOINLINE TINYML_NO_LIBCALLS void dw_copy_run(int16_t *dst, const int8_t *src,
                                                           int32_t step, int32_t n)
{
    const int32_t step2 = 2 * step, step3 = 3 * step, step4 = 4 * step;
    for (; n >= 4; n -= 4, dst += 4, src += step4) {
        const int16_t a = src[0], b = src[step], c = src[step2], d = src[step3];
        dst[0] = a;
        dst[1] = b;
        dst[2] = c;
        dst[3] = d;
    }
    for (; n > 0; --n, src += step) {
        *dst++ = *src;
    }
}

/* Channel c of image in_b as an int16 plane of rows of `stride` values (the values past the
 * plane's width, like the padding, at the input zero point). Transposed: plane row i holds
 * the plane's column i (rows along the image's columns). */
static void dw_copy_plane(const tinyml_depthwise_conv2d_params *p, const int8_t *in_b,
                          int32_t c, int16_t *plane, int32_t stride, int32_t transposed)
{
    const int16_t zero_point = (int16_t)p->input_zero_point;
    /* a: across plane rows; b: along them. */
    const int32_t rows = transposed ? p->plane_w : p->plane_h;
    const int32_t pad_a = transposed ? p->pad_left : p->pad_top;
    const int32_t size_a = transposed ? p->input_w : p->input_h;
    const int32_t pad_b = transposed ? p->pad_top : p->pad_left;
    const int32_t size_b = transposed ? p->input_h : p->input_w;
    const int32_t extent_b = transposed ? p->plane_h : p->plane_w;
    const int32_t step_a = transposed ? p->input_c : p->input_w * p->input_c;
    const int32_t step_b = transposed ? p->input_w * p->input_c : p->input_c;
    /* Plane values [lo, hi) of a row lie in the image. The padding is negative when the
     * windows start inside the input (a patch of patch-based inference reading its stage's
     * whole input, tinyml/codegen/patch_codegen.py). */
    const int32_t lo = pad_b < 0 ? 0 : (pad_b < extent_b ? pad_b : extent_b);
    const int32_t hi = pad_b + size_b < extent_b ? pad_b + size_b : extent_b;
    int32_t a;
    for (a = 0; a < rows; ++a, plane += stride) {
        const int32_t ia = a - pad_a;
        if (ia < 0 || ia >= size_a || hi <= lo) {
            dw_fill(plane, zero_point, stride);
            continue;
        }
        dw_fill(plane, zero_point, lo);
        dw_copy_run(plane + lo, in_b + ia * step_a + (lo - pad_b) * step_b + c, step_b,
                    hi - lo);
        dw_fill(plane + hi, zero_point, stride - hi);
    }
}

/* ---- the output stage --------------------------------------------------------------------- */

/* One output channel's constants. `fast`: the short requantization with the zero point folded
 * into round_high (right shift 2..23, multiplier >= 0), else `rq` and `zero_point`. `full`:
 * the activation range is all of int8. */
typedef struct {
    int32_t bias;
    int32_t multiplier;
    int32_t round_high;
    int32_t high_shift;
    int32_t fast;
    tinyml_dsp_requant rq;
    int32_t zero_point;
    int32_t act_min;
    int32_t act_max;
    int32_t full;
} dw_channel;

static dw_channel dw_prepare(const tinyml_depthwise_conv2d_params *p, int32_t oc)
{
    dw_channel ch;
    const int32_t m = p->multiplier[oc], s = p->shift[oc];
    ch.bias = p->bias[oc];
    ch.fast = tinyml_dsp_short_applies(m, s) && s >= -23;
    ch.multiplier = m;
    ch.high_shift = ch.fast ? -s - 1 : 0;
    ch.round_high = ch.fast ? (int32_t)((1u << (ch.high_shift - 1)) +
                                        ((uint32_t)p->output_offset << ch.high_shift))
                            : 0;
    ch.rq = tinyml_dsp_requant_prepare(m, s);
    ch.zero_point = p->output_offset;
    ch.act_min = p->act_min;
    ch.act_max = p->act_max;
    ch.full = p->act_min == -128 && p->act_max == 127;
    return ch;
}

/* The long requantization (shifts outside the short form's range: rare), out of line so
 * that the many inlined output stages stay small. */
static TINYML_NOINLINE int32_t dw_requantize_long(const dw_channel *ch, int32_t acc)
{
    return tinyml_wrap_add(tinyml_dsp_mbqm(acc, ch->rq), ch->zero_point);
}

/* Any channel: the cheapest exact requantization, the zero point, the clamp. */
static inline int8_t dw_output(const dw_channel *ch, int32_t acc)
{
    int32_t v;
    if (ch->fast) {
        v = tinyml_dsp_mbqm_short_raw(acc, ch->multiplier, ch->round_high, ch->high_shift);
    } else {
        v = dw_requantize_long(ch, acc);
    }
    if (ch->full) {
        return (int8_t)tinyml_ssat8(v);
    }
    v = v < ch->act_min ? ch->act_min : v;
    return (int8_t)(v > ch->act_max ? ch->act_max : v);
}

/* The output stages of the 3x3 loops, chosen once per channel. */
enum {
    DW_FAST_FULL = 0,  /* short form, SSAT */
    DW_FAST_CLAMP = 1, /* short form, clamp to [act_min, act_max] */
    DW_ANY = 2         /* dw_output */
};

/* The output stage of one of the modes above; m, h, e, lo, hi: the channel's multiplier,
 * round_high, high_shift, act_min and act_max (local copies: the int8 stores in between may
 * alias the struct, which would make the compiler read it again). */
static TINYML_ALWAYS_INLINE int8_t dw_output_mode(const dw_channel *ch, int32_t mode, int32_t acc,
                                                  int32_t m, int32_t h, int32_t e, int32_t lo,
                                                  int32_t hi)
{
    int32_t v;
    if (mode == DW_ANY) {
        return dw_output(ch, acc);
    }
    v = tinyml_dsp_mbqm_short_raw(acc, m, h, e);
    if (mode == DW_FAST_FULL) {
        return (int8_t)tinyml_ssat8(v);
    }
    v = v < lo ? lo : v;
    return (int8_t)(v > hi ? hi : v);
}

/* ---- 3x3 ---------------------------------------------------------------------------------- */

/* A 3x3 channel in the orientation of its plane: plane rows (a) and the values along a row
 * (b), either the image's rows and columns or, when the output has more rows than columns,
 * its columns and rows (the plane is then copied transposed, so that the loops below run
 * along the longer side). */
typedef struct {
    const int16_t *plane;
    int32_t stride;     /* int16 values per plane row (even) */
    int32_t rows;       /* output rows */
    int32_t cols;       /* outputs per row */
    int32_t row_advance; /* plane values from one output row's window to the next's */
    int32_t wide;       /* stride 2 along b (else 1) */
    int8_t *out;
    int32_t out_col;    /* output bytes from one output of a row to the next */
    int32_t out_row;    /* and from one output row to the next */
} dw_geometry;

/* The packed filter of a 3x3 channel (in the plane's orientation): per filter row
 * (w0, w1, w2), W01 = (w0, w1) and W12 = (w1, w2). */
typedef struct {
    int32_t w01[3];
    int32_t w12[3];
} dw_filter3;

static dw_filter3 dw_pack3(const int8_t *w, int32_t transposed)
{
    dw_filter3 f;
    int32_t r;
    for (r = 0; r < 3; ++r) {
        const int32_t step = transposed ? 3 : 1;
        const int8_t *row = transposed ? w + r : w + 3 * r;
        f.w01[r] = tinyml_pkhbt(row[0], row[step]);
        f.w12[r] = tinyml_pkhbt(row[step], row[2 * step]);
    }
    return f;
}

/* Words *p and p[1] of a word-aligned pointer, which then advances by one word: one LDRD
 * with post-increment (dsp_common.h's tinyml_read_2words advances by two). */
static inline void dw_read_2words_step1(const int32_t **p, int32_t *first, int32_t *second)
{
#if TINYML_DSP_ASM
    __asm__("ldrd %0, %1, [%2], #4"
            : "=r"(*first), "=r"(*second), "+r"(*p)
            : "m"(*(const tinyml_2words *)(const void *)*p));
#else
    memcpy(first, *p, sizeof *first);
    memcpy(second, *p + 1, sizeof *second);
    *p += 1;
#endif
}

/* The plane words P0, P1 (and P2 when wide) of one filter row for the output pair at q, and
 * q advanced to the next pair. */
static TINYML_ALWAYS_INLINE void dw_read_row(const int32_t **q, int32_t wide, int32_t *p0,
                                             int32_t *p1, int32_t *p2)
{
    if (wide) {
        tinyml_read_2words(q, p0, p1);
        *p2 = **q;
    } else {
        dw_read_2words_step1(q, p0, p1);
        *p2 = 0;
    }
}

/* Every output of a 3x3 channel, two of a row at a time (see the header). Rows are word
 * aligned and output pairs start at even values, so one LDRD reads P0 and P1. */
static TINYML_ALWAYS_INLINE void dw3x3_channel(const dw_geometry *g, const dw_filter3 *f,
                                               const dw_channel *ch, int32_t wide,
                                               int32_t mode)
{
    const int32_t a01 = f->w01[0], a12 = f->w12[0];
    const int32_t b01 = f->w01[1], b12 = f->w12[1];
    const int32_t c01 = f->w01[2], c12 = f->w12[2];
    const int32_t bias = ch->bias, step = g->out_col, stride = g->stride;
    const int32_t m = ch->multiplier, h = ch->round_high, e = ch->high_shift;
    const int32_t lo = ch->act_min, hi = ch->act_max;
    const int16_t *top = g->plane;
    int8_t *out_row = g->out;
    int32_t oy, n;
    for (oy = 0; oy < g->rows; ++oy, top += g->row_advance, out_row += g->out_row) {
        const int32_t *q0 = (const int32_t *)(const void *)top;
        const int32_t *q1 = (const int32_t *)(const void *)(top + stride);
        const int32_t *q2 = (const int32_t *)(const void *)(top + 2 * stride);
        int8_t *out = out_row;
        int32_t acc0, acc1, p0, p1, p2;
        for (n = g->cols >> 1; n > 0; --n) {
            dw_read_row(&q0, wide, &p0, &p1, &p2);
            acc0 = __smlabt(p1, a12, __smlad(p0, a01, bias));
            acc1 = wide ? __smlabt(p2, a12, __smlad(p1, a01, bias))
                        : __smlad(p1, a12, __smlatb(p0, a01, bias));
            dw_read_row(&q1, wide, &p0, &p1, &p2);
            acc0 = __smlabt(p1, b12, __smlad(p0, b01, acc0));
            acc1 = wide ? __smlabt(p2, b12, __smlad(p1, b01, acc1))
                        : __smlad(p1, b12, __smlatb(p0, b01, acc1));
            dw_read_row(&q2, wide, &p0, &p1, &p2);
            acc0 = __smlabt(p1, c12, __smlad(p0, c01, acc0));
            acc1 = wide ? __smlabt(p2, c12, __smlad(p1, c01, acc1))
                        : __smlad(p1, c12, __smlatb(p0, c01, acc1));
            out[0] = dw_output_mode(ch, mode, acc0, m, h, e, lo, hi);
            out += step;
            out[0] = dw_output_mode(ch, mode, acc1, m, h, e, lo, hi);
            out += step;
        }
        if (g->cols & 1) {
            TINYML_READ_2WORDS(q0, 0, p0, p1);
            acc0 = __smlabt(p1, a12, __smlad(p0, a01, bias));
            TINYML_READ_2WORDS(q1, 0, p0, p1);
            acc0 = __smlabt(p1, b12, __smlad(p0, b01, acc0));
            TINYML_READ_2WORDS(q2, 0, p0, p1);
            acc0 = __smlabt(p1, c12, __smlad(p0, c01, acc0));
            *out = dw_output_mode(ch, mode, acc0, m, h, e, lo, hi);
        }
    }
}

/* The variants of dw3x3_channel, each a function of its own (see TINYML_NOINLINE). */
#define DW3X3_VARIANT(name, wide, mode)                                                       \
    static TINYML_NOINLINE void name(const dw_geometry *g, const dw_filter3 *f,               \
                                     const dw_channel *ch)                                    \
    {                                                                                         \
        dw3x3_channel(g, f, ch, wide, mode);                                                  \
    }

DW3X3_VARIANT(dw3x3_s1_full, 0, DW_FAST_FULL)
DW3X3_VARIANT(dw3x3_s1_clamp, 0, DW_FAST_CLAMP)
DW3X3_VARIANT(dw3x3_s1_any, 0, DW_ANY)
DW3X3_VARIANT(dw3x3_s2_full, 1, DW_FAST_FULL)
DW3X3_VARIANT(dw3x3_s2_clamp, 1, DW_FAST_CLAMP)
DW3X3_VARIANT(dw3x3_s2_any, 1, DW_ANY)

static void dw3x3_run(const dw_geometry *g, const dw_filter3 *f, const dw_channel *ch)
{
    const int32_t mode = !ch->fast ? DW_ANY : (ch->full ? DW_FAST_FULL : DW_FAST_CLAMP);
    if (!g->wide) {
        (mode == DW_FAST_FULL ? dw3x3_s1_full
                              : mode == DW_FAST_CLAMP ? dw3x3_s1_clamp : dw3x3_s1_any)(g, f, ch);
    } else {
        (mode == DW_FAST_FULL ? dw3x3_s2_full
                              : mode == DW_FAST_CLAMP ? dw3x3_s2_clamp : dw3x3_s2_any)(g, f, ch);
    }
}

/* ---- any filter --------------------------------------------------------------------------- */

/* The filter of one channel as int16 pairs, ceil(filter_w / 2) words per filter row (an odd
 * row's last word holds its last tap in the low half). */
static void dw_pack(const tinyml_depthwise_conv2d_params *p, const int8_t *w, int32_t *packed)
{
    const int32_t pairs = (p->filter_w + 1) >> 1;
    int32_t ky, kx;
    for (ky = 0; ky < p->filter_h; ++ky, w += p->filter_w) {
        for (kx = 0; kx < pairs; ++kx) {
            const int32_t second = 2 * kx + 1 < p->filter_w ? w[2 * kx + 1] : 0;
            packed[ky * pairs + kx] = tinyml_pkhbt(w[2 * kx], second);
        }
    }
}

/* One output row of any channel: window tops at row + ox * stride_w. */
static TINYML_NOINLINE void dw_row_any(const tinyml_depthwise_conv2d_params *p,
                                       const int16_t *row, int32_t stride,
                                       const int32_t *packed, const dw_channel *ch, int8_t *out,
                                       int32_t step)
{
    const int32_t pairs = p->filter_w >> 1, odd = p->filter_w & 1;
    const int32_t words = pairs + odd;
    const int32_t row_step = p->dilation_h * stride;
    int32_t ox, ky, kx;
    for (ox = 0; ox < p->output_w; ++ox, row += p->stride_w, out += step) {
        const int16_t *line = row;
        const int32_t *w = packed;
        int32_t acc = ch->bias;
        for (ky = 0; ky < p->filter_h; ++ky, line += row_step, w += words) {
            if (p->dilation_w == 1) {
                for (kx = 0; kx < pairs; ++kx) {
                    acc = __smlad(tinyml_read_s16x2(line + 2 * kx), w[kx], acc);
                }
                if (odd) {
                    acc = __smlabb(line[2 * pairs], w[pairs], acc);
                }
            } else {
                for (kx = 0; kx < p->filter_w; ++kx) {
                    const int32_t pair = w[kx >> 1];
                    const int32_t value = line[kx * p->dilation_w];
                    acc = (kx & 1) ? __smlabt(value, pair, acc) : __smlabb(value, pair, acc);
                }
            }
        }
        *out = dw_output(ch, acc);
    }
}

/* ---- filter rows 5 and 7 wide ------------------------------------------------------------- */

/* Pairs (U_j, V_j) per filter row (see the header): `words` = K / 2 + 1 of each. */
static int32_t dw_wide_words(int32_t k)
{
    return k / 2 + 1;
}

static void dw_pack_wide(const tinyml_depthwise_conv2d_params *p, const int8_t *w,
                         int32_t *packed)
{
    const int32_t k = p->filter_w, words = dw_wide_words(k);
    int32_t ky, j;
    for (ky = 0; ky < p->filter_h; ++ky, w += k) {
        for (j = 0; j < words; ++j, packed += 2) {
            const int32_t a = 2 * j < k ? w[2 * j] : 0;
            const int32_t b = 2 * j + 1 < k ? w[2 * j + 1] : 0;
            const int32_t c = 2 * j - 1 < k && j > 0 ? w[2 * j - 1] : 0;
            packed[0] = tinyml_pkhbt(a, b);
            packed[1] = tinyml_pkhbt(c, a);
        }
    }
}

/* One output row, filter rows K wide (a constant), horizontal stride `wide` + 1. */
static TINYML_ALWAYS_INLINE void dw_row_wide(const tinyml_depthwise_conv2d_params *p,
                                             const int16_t *row, int32_t stride,
                                             const int32_t *packed, const dw_channel *ch,
                                             int8_t *out, int32_t step, const int32_t k,
                                             const int32_t wide)
{
    const int32_t words = k / 2 + 1, row_step = p->dilation_h * stride;
    const int32_t advance = wide ? 4 : 2;
    int32_t ox, ky, j;
    for (ox = 0; ox + 2 <= p->output_w; ox += 2, row += advance, out += 2 * step) {
        const int16_t *line = row;
        const int32_t *w = packed;
        int32_t acc0 = ch->bias, acc1 = ch->bias;
        for (ky = 0; ky < p->filter_h; ++ky, line += row_step, w += 2 * words) {
            TINYML_UNROLL
            for (j = 0; j < words; ++j) {
                const int32_t pj = tinyml_read_s16x2(line + 2 * j);
                if (2 * j < k) {
                    acc0 = __smlad(pj, w[2 * j], acc0);
                }
                if (!wide) {
                    acc1 = __smlad(pj, w[2 * j + 1], acc1);
                } else if (j > 0) {
                    acc1 = __smlad(pj, w[2 * j - 2], acc1);
                }
            }
            if (wide && (k & 1)) {
                /* U_(words-1) = (w_(K-1), 0): the plane value after the window is read
                 * (the row's rounding to even, or the next row or the packed filter after
                 * the plane's last row) and multiplied by 0. */
                acc1 = __smlad(tinyml_read_s16x2(line + 2 * words), w[2 * words - 2], acc1);
            }
        }
        out[0] = dw_output(ch, acc0);
        out[step] = dw_output(ch, acc1);
    }
    if (ox < p->output_w) {
        const int16_t *line = row;
        const int32_t *w = packed;
        int32_t acc = ch->bias;
        for (ky = 0; ky < p->filter_h; ++ky, line += row_step, w += 2 * words) {
            TINYML_UNROLL
            for (j = 0; 2 * j < k; ++j) {
                acc = __smlad(tinyml_read_s16x2(line + 2 * j), w[2 * j], acc);
            }
        }
        out[0] = dw_output(ch, acc);
    }
}

static TINYML_NOINLINE void dw_row_5(const tinyml_depthwise_conv2d_params *p,
                                     const int16_t *row, int32_t stride, const int32_t *packed,
                                     const dw_channel *ch, int8_t *out, int32_t step)
{
    dw_row_wide(p, row, stride, packed, ch, out, step, 5, 0);
}

static TINYML_NOINLINE void dw_row_5s2(const tinyml_depthwise_conv2d_params *p,
                                       const int16_t *row, int32_t stride,
                                       const int32_t *packed, const dw_channel *ch,
                                       int8_t *out, int32_t step)
{
    dw_row_wide(p, row, stride, packed, ch, out, step, 5, 1);
}

static TINYML_NOINLINE void dw_row_7(const tinyml_depthwise_conv2d_params *p,
                                     const int16_t *row, int32_t stride, const int32_t *packed,
                                     const dw_channel *ch, int8_t *out, int32_t step)
{
    dw_row_wide(p, row, stride, packed, ch, out, step, 7, 0);
}

static TINYML_NOINLINE void dw_row_7s2(const tinyml_depthwise_conv2d_params *p,
                                       const int16_t *row, int32_t stride,
                                       const int32_t *packed, const dw_channel *ch,
                                       int8_t *out, int32_t step)
{
    dw_row_wide(p, row, stride, packed, ch, out, step, 7, 1);
}

typedef void (*dw_row_fn)(const tinyml_depthwise_conv2d_params *, const int16_t *, int32_t,
                          const int32_t *, const dw_channel *, int8_t *, int32_t);

/* The row function of filter rows 5 or 7 wide, or NULL. */
static dw_row_fn dw_wide_row(const tinyml_depthwise_conv2d_params *p)
{
    if (p->dilation_w != 1 || (p->stride_w != 1 && p->stride_w != 2)) {
        return NULL;
    }
    if (p->filter_w == 5) {
        return p->stride_w == 1 ? dw_row_5 : dw_row_5s2;
    }
    if (p->filter_w == 7) {
        return p->stride_w == 1 ? dw_row_7 : dw_row_7s2;
    }
    return NULL;
}

/* ---- small outputs: pixel by pixel, four channels at a time -------------------------------- */

/* Layers with few output pixels (the patches of patch-based inference, a network's last
 * layers, a 1-D convolution over a short time axis) spend more on copying planes and setting
 * up channels than on arithmetic. Without a depth multiplier they go pixel by pixel instead,
 * in passes of at most pixel_channels channels (so that the tables below stay small
 * whatever the channel count). The rows of the windows are copied, zero-point padded and the
 * pass's channels together (NHWC), into a ring of the window's span of rows
 * ((filter_h - 1) * dilation_h + 1) of plane_w pixels; per output pixel, the taps point into
 * the ring; per group of four channels and tap, one load and two SXTB16 give the inputs as
 * (c0, c2), (c1, c3), one LDRD the weights prepared as the same int16 pairs, and SMLABB /
 * SMLATT the four products. In place (output == input), each plane row is copied before the
 * output rows that overwrite its pixels are written, as long as the output rows are no longer
 * than the input's (output_w <= input_w) and the padding at the top is less than the span;
 * a pass only reads and writes its own channels.
 *
 * Scratch (lowering's depthwise_scratch_bytes, which declares it whenever the invariant
 * conditions below hold): for one pass, the prepared weights (8 bytes per tap and group of
 * four channels), per channel (bias, multiplier, round_high, high_shift), then the ring. */

/* Unrolls the tap loop of a 3x3 filter. */
#if defined(__GNUC__) && !defined(__clang__)
#define DW_UNROLL_TAPS _Pragma("GCC unroll 9")
#else
#define DW_UNROLL_TAPS
#endif

/* The pixel path's limits: taps (fixed for a layer, so lowering sizes the scratch with them)
 * and output pixels (a patch may have fewer than its layer). The channels per pass are the
 * pixel_channels parameter: lowering's depthwise_pixel_channels, 0 when its scratch does not
 * hold the path's tables (more than 32 channels and many output pixels). */
#define DW_PIXEL_MAX_TAPS 25
/* With fewer channels than this, a pixel's tap addresses and loop overheads serve too few
 * multiply-accumulates: the plane path is cheaper (measured on vww's patches). Lowering's
 * scratch does not depend on it. */
#define DW_PIXEL_MIN_CHANNELS 12
#define DW_PIXEL_MAX_OUTPUTS 100

/* Per-call tables in scratch (word aligned). */
typedef struct {
    int32_t *weights;  /* [quad][tap]: (w[c0], w[c2]), (w[c1], w[c3]) */
    int32_t *channels; /* [channel]: bias, multiplier, round_high, high_shift */
    int8_t *ring;      /* span rows of plane_w pixels of `count` channels */
    const int8_t *tail; /* int8 filters of the channels after the last group of four */
    int32_t first;     /* the pass: channels [first, first + count) */
    int32_t count;
    int32_t span;      /* rows of the ring: (filter_h - 1) * dilation_h + 1 */
} dw_pixel_tables;

/* Channels [c, c + count) of the filter as int8 (taps values each): the filter itself, or,
 * with `unpacked` (int4 filters), unpacked there. */
static const int8_t *dw_filter(const tinyml_depthwise_conv2d_params *p, int32_t c,
                               int32_t count, int8_t *unpacked)
{
    const int32_t taps = p->filter_h * p->filter_w;
    int32_t i;
    if (unpacked == NULL) {
        return p->filter + c * taps;
    }
    for (i = 0; i < count; ++i) {
        tinyml_s4_unpack_row(unpacked + i * taps,
                             p->filter + (c + i) * tinyml_s4_row_bytes(taps), taps);
    }
    return unpacked;
}

/* Whether the pixel path applies. */
static int32_t dw_pixel_applies(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                                const int8_t *output)
{
    const int32_t taps = p->filter_h * p->filter_w, c_count = p->input_c;
    const int32_t span = (p->filter_h - 1) * p->dilation_h + 1;
    const uintptr_t in = (uintptr_t)input, out = (uintptr_t)output;
    const uintptr_t in_end = in + (uintptr_t)(p->batches * p->input_h * p->input_w * c_count);
    const uintptr_t out_end =
        out + (uintptr_t)(p->batches * p->output_h * p->output_w * c_count);
    const int32_t in_place_safe = p->output_w <= p->input_w && p->pad_top < span;
    int32_t c;
    if (p->pixel_channels <= 0 || p->depth_multiplier != 1 || taps > DW_PIXEL_MAX_TAPS ||
        c_count < DW_PIXEL_MIN_CHANNELS ||
        p->output_h * p->output_w > DW_PIXEL_MAX_OUTPUTS ||
        (out < in_end && in < out_end && !(out == in && in_place_safe))) {
        return 0;
    }
    for (c = 0; c < c_count; ++c) {
        if (!(tinyml_dsp_short_applies(p->multiplier[c], p->shift[c]) &&
              p->shift[c] >= -23)) {
            return 0;
        }
    }
    return 1;
}

/* The tables of the pass over channels [first, first + count) (count at most
 * pixel_channels). */
static void dw_pixel_prepare(const tinyml_depthwise_conv2d_params *p, int32_t first,
                             int32_t count, int32_t *scratch, dw_pixel_tables *t,
                             int8_t *unpacked)
{
    const int32_t taps = p->filter_h * p->filter_w, c_count = count;
    int32_t c, q, k;
    t->first = first;
    t->count = count;
    t->span = (p->filter_h - 1) * p->dilation_h + 1;
    t->weights = scratch;
    t->channels = scratch + 2 * taps * (c_count >> 2);
    t->ring = (int8_t *)(void *)(t->channels + 4 * c_count);
    for (q = 0; q < (c_count >> 2); ++q) {
        const int8_t *w = dw_filter(p, first + 4 * q, 4, unpacked);
        for (k = 0; k < taps; ++k) {
            int32_t *pair = t->weights + 2 * (q * taps + k);
            pair[0] = tinyml_pkhbt(w[k], w[2 * taps + k]);
            pair[1] = tinyml_pkhbt(w[taps + k], w[3 * taps + k]);
        }
    }
    for (c = 0; c < c_count; ++c) {
        const int32_t e = -p->shift[first + c] - 1;
        int32_t *ch = t->channels + 4 * c;
        ch[0] = p->bias[first + c];
        ch[1] = p->multiplier[first + c];
        ch[2] = (int32_t)((1u << (e - 1)) + ((uint32_t)p->output_offset << e));
        ch[3] = e;
    }
    t->tail = dw_filter(p, first + 4 * (c_count >> 2), c_count & 3, unpacked);
}

/* Plane row r (input row r - pad_top, the pass's channels, zero-point padded) into its ring
 * row; in_b points at the pass's first channel. */
static TINYML_NO_LIBCALLS void dw_ring_row(const tinyml_depthwise_conv2d_params *p,
                                           int32_t c_count, const int8_t *in_b, int32_t r,
                                           int8_t *dst)
{
    const int32_t iy = r - p->pad_top;
    const int8_t zero_point = (int8_t)p->input_zero_point;
    int32_t px, i;
    for (px = 0; px < p->plane_w; ++px, dst += c_count) {
        const int32_t ix = px - p->pad_left;
        if (iy < 0 || iy >= p->input_h || ix < 0 || ix >= p->input_w) {
            for (i = 0; i < c_count; ++i) {
                dst[i] = zero_point;
            }
        } else {
            const int8_t *src = in_b + (iy * p->input_w + ix) * p->input_c;
            for (i = 0; i + 4 <= c_count; i += 4) {
                tinyml_write_s8x4(dst + i, tinyml_read_s8x4(src + i));
            }
            for (; i < c_count; ++i) {
                dst[i] = src[i];
            }
        }
    }
}

/* The fast output stage with the channel's (multiplier, round_high, high_shift) at ch. */
static TINYML_ALWAYS_INLINE int8_t dw_pixel_output(int32_t acc, const int32_t *ch,
                                                   int32_t full, int32_t lo, int32_t hi)
{
    int32_t v = tinyml_dsp_mbqm_short_raw(acc, ch[1], ch[2], ch[3]);
    if (full) {
        return (int8_t)tinyml_ssat8(v);
    }
    v = v < lo ? lo : v;
    return (int8_t)(v > hi ? hi : v);
}

/* All channels of one output pixel, any filter (the taps at at[k] + base). */
static TINYML_ALWAYS_INLINE void dw_pixel(const int8_t *const *at, int32_t base, int32_t taps,
                                          const tinyml_depthwise_conv2d_params *p,
                                          const dw_pixel_tables *t, int8_t *out, int32_t full)
{
    const int32_t lo = p->act_min, hi = p->act_max, quads = t->count >> 2;
    const int32_t *w = t->weights;
    const int32_t *ch = t->channels;
    int32_t q, k, c;
    for (q = 0; q < quads; ++q, out += 4, ch += 16) {
        const int32_t offset = base + 4 * q;
        int32_t a0 = ch[0], a1 = ch[4], a2 = ch[8], a3 = ch[12];
        for (k = 0; k < taps; ++k) {
            int32_t xe, xo, we, wo;
            tinyml_s8x4_interleaved(tinyml_read_s8x4(at[k] + offset), &xe, &xo);
            tinyml_read_2words(&w, &we, &wo);
            a0 = __smlabb(xe, we, a0);
            a2 = __smlatt(xe, we, a2);
            a1 = __smlabb(xo, wo, a1);
            a3 = __smlatt(xo, wo, a3);
        }
        out[0] = dw_pixel_output(a0, ch, full, lo, hi);
        out[1] = dw_pixel_output(a1, ch + 4, full, lo, hi);
        out[2] = dw_pixel_output(a2, ch + 8, full, lo, hi);
        out[3] = dw_pixel_output(a3, ch + 12, full, lo, hi);
    }
    for (c = 4 * quads; c < t->count; ++c, ++out, ch += 4) {
        const int8_t *f = t->tail + (c - 4 * quads) * taps;
        int32_t acc = ch[0];
        for (k = 0; k < taps; ++k) {
            acc += at[k][base + c] * f[k];
        }
        *out = dw_pixel_output(acc, ch, full, lo, hi);
    }
}

/* One output row of a 3x3 filter: rows[ky] is ring row ky of the windows at the row's first
 * output pixel, the next pixel's windows `step` bytes on. The taps of a pixel are then three
 * words of each row, input_c bytes apart, which one register offset reaches. */
static TINYML_ALWAYS_INLINE void dw_pixel_row3(const int8_t *const rows[3], int32_t step,
                                               const tinyml_depthwise_conv2d_params *p,
                                               const dw_pixel_tables *t, int8_t *out,
                                               int32_t full)
{
    const int32_t c_count = t->count, c2 = 2 * t->count, quads = t->count >> 2;
    const int32_t lo = p->act_min, hi = p->act_max;
    int32_t ox, q, k, c;
    for (ox = 0; ox < p->output_w; ++ox, out += p->input_c) {
        const int8_t *r0 = rows[0] + ox * step, *r1 = rows[1] + ox * step;
        const int8_t *r2 = rows[2] + ox * step;
        const int32_t *w = t->weights;
        const int32_t *ch = t->channels;
        int8_t *o = out;
        for (q = 0; q < quads; ++q, o += 4, ch += 16, r0 += 4, r1 += 4, r2 += 4) {
            int32_t a0 = ch[0], a1 = ch[4], a2 = ch[8], a3 = ch[12];
            DW_UNROLL_TAPS
            for (k = 0; k < 9; ++k) {
                const int8_t *row = k < 3 ? r0 : (k < 6 ? r1 : r2);
                const int32_t offset = (k % 3) == 0 ? 0 : ((k % 3) == 1 ? c_count : c2);
                int32_t xe, xo, we, wo;
                tinyml_s8x4_interleaved(tinyml_read_s8x4(row + offset), &xe, &xo);
                tinyml_read_2words(&w, &we, &wo);
                a0 = __smlabb(xe, we, a0);
                a2 = __smlatt(xe, we, a2);
                a1 = __smlabb(xo, wo, a1);
                a3 = __smlatt(xo, wo, a3);
            }
            o[0] = dw_pixel_output(a0, ch, full, lo, hi);
            o[1] = dw_pixel_output(a1, ch + 4, full, lo, hi);
            o[2] = dw_pixel_output(a2, ch + 8, full, lo, hi);
            o[3] = dw_pixel_output(a3, ch + 12, full, lo, hi);
        }
        for (c = 4 * quads; c < c_count; ++c, ++o, ch += 4) {
            const int8_t *f = t->tail + (c - 4 * quads) * 9;
            const int8_t *s0 = rows[0] + ox * step + c, *s1 = rows[1] + ox * step + c;
            const int8_t *s2 = rows[2] + ox * step + c;
            int32_t acc = ch[0];
            for (k = 0; k < 3; ++k) {
                acc += s0[k * c_count] * f[k] + s1[k * c_count] * f[3 + k] +
                       s2[k * c_count] * f[6 + k];
            }
            *o = dw_pixel_output(acc, ch, full, lo, hi);
        }
    }
}

static TINYML_NOINLINE TINYML_NO_SCHEDULE void dw_pixel_row3_full(
    const int8_t *const rows[3], int32_t step, const tinyml_depthwise_conv2d_params *p,
    const dw_pixel_tables *t, int8_t *out)
{
    dw_pixel_row3(rows, step, p, t, out, 1);
}

static TINYML_NOINLINE TINYML_NO_SCHEDULE void dw_pixel_row3_clamp(
    const int8_t *const rows[3], int32_t step, const tinyml_depthwise_conv2d_params *p,
    const dw_pixel_tables *t, int8_t *out)
{
    dw_pixel_row3(rows, step, p, t, out, 0);
}

/* One output row, any filter: at[k] points at tap k of the row's first pixel, the next
 * pixel's taps `step` bytes on. */
static TINYML_NOINLINE TINYML_NO_SCHEDULE void dw_pixel_any(const int8_t *const *at,
                                         int32_t step,
                                         const tinyml_depthwise_conv2d_params *p,
                                         const dw_pixel_tables *t, int8_t *out)
{
    const int32_t taps = p->filter_h * p->filter_w;
    int32_t ox;
    for (ox = 0; ox < p->output_w; ++ox, out += p->input_c) {
        if (p->act_min == -128 && p->act_max == 127) {
            dw_pixel(at, ox * step, taps, p, t, out, 1);
        } else {
            dw_pixel(at, ox * step, taps, p, t, out, 0);
        }
    }
}

/* One pass (t's channels) over every output pixel. */
static void dw_pixel_run(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                         int8_t *output, const dw_pixel_tables *t)
{
    const int32_t c_count = t->count, kh = t->span, dh = p->dilation_h;
    const int32_t row_bytes = p->plane_w * c_count;
    const int32_t three = p->filter_h == 3 && p->filter_w == 3 && p->dilation_w == 1;
    const int32_t full = p->act_min == -128 && p->act_max == 127;
    const int8_t *at[DW_PIXEL_MAX_TAPS];
    int32_t b, oy, ky, kx, next;
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c + t->first;
        int8_t *out = output + b * p->output_h * p->output_w * p->input_c + t->first;
        next = 0; /* the next plane row to copy */
        for (oy = 0; oy < p->output_h; ++oy) {
            const int32_t top = oy * p->stride_h;
            for (; next < top + kh; ++next) {
                if (next >= top) {
                    dw_ring_row(p, c_count, in_b, next, t->ring + (next % kh) * row_bytes);
                }
            }
            if (three) {
                const int8_t *rows[3];
                for (ky = 0; ky < 3; ++ky) {
                    rows[ky] = t->ring + ((top + ky * dh) % kh) * row_bytes;
                }
                (full ? dw_pixel_row3_full : dw_pixel_row3_clamp)(rows, p->stride_w * c_count,
                                                                  p, t, out);
                out += p->output_w * p->input_c;
                continue;
            }
            {
                const int8_t **tap = at;
                for (ky = 0; ky < p->filter_h; ++ky) {
                    const int8_t *row = t->ring + ((top + ky * dh) % kh) * row_bytes;
                    for (kx = 0; kx < p->filter_w; ++kx) {
                        *tap++ = row + kx * p->dilation_w * c_count;
                    }
                }
                dw_pixel_any(at, p->stride_w * c_count, p, t, out);
                out += p->output_w * p->input_c;
            }
        }
    }
}

/* ---- the channel loop --------------------------------------------------------------------- */

/* int16 values the plane takes, in either orientation. */
static int32_t dw_plane_values(const tinyml_depthwise_conv2d_params *p)
{
    const int32_t normal = p->plane_h * dw_even(p->plane_w);
    const int32_t transposed = p->plane_w * dw_even(p->plane_h);
    return normal > transposed ? normal : transposed;
}

/* `unpacked`: NULL for int8 filters; for packed int4 ones, 4 * taps bytes to unpack into. */
static void dw_run(const tinyml_depthwise_conv2d_params *p, const int8_t *input, int8_t *output,
                   int8_t *scratch, int32_t three, int8_t *unpacked)
{
    const int32_t output_c = p->input_c * p->depth_multiplier;
    int16_t *plane = dw_align(scratch);
    int32_t *packed = (int32_t *)(void *)(plane + dw_plane_values(p));
    dw_pixel_tables tables;
    const int32_t rows_ok = p->stride_h == 1 || p->stride_h == 2;
    const int32_t cols_ok = p->stride_w == 1 || p->stride_w == 2;
    int32_t transposed = 0, b, c, m, oy;
    const dw_row_fn wide_row = dw_wide_row(p);
    dw_geometry g;
    if (dw_pixel_applies(p, input, output)) {
        /* Passes of pixel_channels channels, the last one the rest. */
        for (c = 0; c < p->input_c; c += p->pixel_channels) {
            const int32_t rest = p->input_c - c;
            dw_pixel_prepare(p, c, rest < p->pixel_channels ? rest : p->pixel_channels,
                             (int32_t *)(void *)plane, &tables, unpacked);
            dw_pixel_run(p, input, output, &tables);
        }
        return;
    }
    three = three && p->filter_h == 3 && p->filter_w == 3 && p->dilation_w == 1 &&
            p->dilation_h == 1 && (rows_ok || cols_ok);
    if (three) {
        /* Along the longer side of the output, unless only the other stride is 1 or 2. */
        transposed = rows_ok && (!cols_ok || p->output_h > p->output_w);
        g.stride = dw_even(transposed ? p->plane_h : p->plane_w);
        g.rows = transposed ? p->output_w : p->output_h;
        g.cols = transposed ? p->output_h : p->output_w;
        g.row_advance = (transposed ? p->stride_w : p->stride_h) * g.stride;
        g.wide = (transposed ? p->stride_h : p->stride_w) == 2;
        g.out_col = transposed ? p->output_w * output_c : output_c;
        g.out_row = transposed ? output_c : p->output_w * output_c;
        g.plane = plane;
    }
    for (b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + b * p->input_h * p->input_w * p->input_c;
        int8_t *out_b = output + b * p->output_h * p->output_w * output_c;
        for (c = 0; c < p->input_c; ++c) {
            dw_copy_plane(p, in_b, c, plane, three ? g.stride : dw_even(p->plane_w),
                          transposed);
            for (m = 0; m < p->depth_multiplier; ++m) {
                const int32_t oc = c * p->depth_multiplier + m;
                const dw_channel ch = dw_prepare(p, oc);
                if (three) {
                    const dw_filter3 f = dw_pack3(dw_filter(p, oc, 1, unpacked), transposed);
                    g.out = out_b + oc;
                    dw3x3_run(&g, &f, &ch);
                } else {
                    const int32_t stride = dw_even(p->plane_w);
                    const int16_t *row = plane;
                    int8_t *out = out_b + oc;
                    if (wide_row != NULL) {
                        dw_pack_wide(p, dw_filter(p, oc, 1, unpacked), packed);
                    } else {
                        dw_pack(p, dw_filter(p, oc, 1, unpacked), packed);
                    }
                    for (oy = 0; oy < p->output_h; ++oy) {
                        if (wide_row != NULL) {
                            wide_row(p, row, stride, packed, &ch, out, output_c);
                        } else {
                            dw_row_any(p, row, stride, packed, &ch, out, output_c);
                        }
                        row += p->stride_h * stride;
                        out += p->output_w * output_c;
                    }
                }
            }
        }
    }
}

/* ---- entry points ------------------------------------------------------------------------- */

void tinyml_depthwise_conv2d_s8(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                                int8_t *output, int8_t *scratch)
{
    dw_run(p, input, output, scratch, 0, NULL);
}

void tinyml_depthwise_conv2d_s4(const tinyml_depthwise_conv2d_params *p, const int8_t *input,
                                int8_t *output, int8_t *scratch)
{
    const int32_t taps = p->filter_h * p->filter_w;
    dw_run(p, input, output, scratch + 4 * taps, 0, scratch);
}

void tinyml_depthwise_conv2d_3x3_s8(const tinyml_depthwise_conv2d_params *p,
                                    const int8_t *input, int8_t *output, int8_t *scratch)
{
    dw_run(p, input, output, scratch, 1, NULL);
}

void tinyml_depthwise_conv2d_3x3_s4(const tinyml_depthwise_conv2d_params *p,
                                    const int8_t *input, int8_t *output, int8_t *scratch)
{
    dw_run(p, input, output, scratch + 36, 1, scratch);
}
