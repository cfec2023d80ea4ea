/*
 * FULLY_CONNECTED for Cortex-M cores with the DSP extension.
 *
 * Results are those of portable/fully_connected.c bit for bit: the same int32 dot products
 * (summed in another order; addition modulo 2^32 is associative), the same filter-offset
 * term and bias, the same requantization (dsp_common.h's exact forms of it).
 *
 * Scheme: no scratch. Output rows are taken four at a time and both operands are read as
 * int8 words: per group of four input values (x0..x3), one load and SXTB16 / SXTB16 ROR #8
 * unpack them to (x0, x2), (x1, x3) once for the four rows; per row, one load and the same two
 * unpack the filter bytes in the same lane order and two SMLAD accumulate: 16 MACs in 23
 * instructions (dot_s8.c, shared with the LSTM). (An int16 copy of the input row would save the two input SXTB16 per group but
 * costs 2 bytes of RAM per input value, which on small models is more than the rest of their
 * arena.) Rows left over (output_depth mod 4) run the same loop for one row; values left over
 * (input_depth mod 4) a scalar tail.
 *
 * The accumulators start at the bias plus the filter-offset term. Requantization: when every
 * output shares one multiplier and shift of the usual kind (per-tensor weights, right shift
 * 2..23), the short form with the zero point folded in (as conv.c's conv_channel), prepared
 * once per call; otherwise each output's own constants in the cheapest exact form. SSAT
 * when the activation range is all of int8, else the clamp.
 *
 * Scratch (lowering's fc_scratch_bytes): none.
 *
 * Packed int4 filters (tinyml_fully_connected_s4; layout in tinyml/codegen/int4_layout.py):
 * the same scheme with groups of eight input values. One filter word holds a row's eight
 * values; (w << 4) & 0xF0F0F0F0 gives values 0..3 and w & 0xF0F0F0F0 values 4..7 as bytes
 * v * 16, which the two SXTB16 unpack to exactly the lanes of the int8 loop. Per group of
 * eight values and four rows: two input words unpacked once, then per row two loads of the
 * word (one per half: the registers hold four accumulators, three pointers, the row offset,
 * the mask, two input halves and two temporaries), the masks, four SXTB16 and four SMLAD.
 * The sums are 16 times the true ones; they are exact in int32 while |sum| < 2^27, so the
 * kernel sums at most FC_S4_CHUNK values at a time (|x| <= 128, |16 w| <= 128) and adds each
 * partial sum / 16 (an exact shift) to the accumulator.
 */
#include <stdint.h>

#include "tinyml_kernels.h"
#include "dsp_common.h"
#include "int4.h"

/* ---- packed int4 rows ----------------------------------------------------------------------- */

/* Input values per partial sum of the int4 loops: 2^16 products of at most 2^14 each keep
 * 16 times the sum inside int32. A multiple of 8 (whole groups). (Tests set a small
 * TINYML_S4_CHUNK to run the chunked path on small layers.) */
#ifdef TINYML_S4_CHUNK
#define FC_S4_CHUNK TINYML_S4_CHUNK
#else
#define FC_S4_CHUNK 65536
#endif

#define FC_S4_MASK 0xF0F0F0F0u

/* The eight values of a packed group, times 16, in the lane order of
 * tinyml_s8x4_interleaved: (v0, v2), (v1, v3), (v4, v6), (v5, v7). */
static TINYML_ALWAYS_INLINE void fc_s4_group(uint32_t word, int32_t *e0, int32_t *o0,
                                             int32_t *e1, int32_t *o1)
{
    tinyml_s8x4_interleaved((word << 4) & FC_S4_MASK, e0, o0);
    tinyml_s8x4_interleaved(word & FC_S4_MASK, e1, o1);
}

#if TINYML_DSP_ASM
/* Half a group (four input values, unpacked in xe, xo) for the four rows: the filter word of
 * each row loaded, masked (`shift`: "lsl #4" for values 0..3, "" for 4..7), unpacked and
 * accumulated. `post` is the post-increment of the loads of rows 0 and 2 ("" or ", #4"). */
#define FC_S4_ROWS_ASM(shift, post)                                                          \
    "ldr %[t], [%[wa], %[d]]\n\t"                                                            \
    "and %[t], %[m], %[t]" shift "\n\t"                                                      \
    "sxtb16 %[u], %[t]\n\t"                                                                  \
    "sxtb16 %[t], %[t], ror #8\n\t"                                                          \
    "smlad %[a1], %[xe], %[u], %[a1]\n\t"                                                    \
    "smlad %[a1], %[xo], %[t], %[a1]\n\t"                                                    \
    "ldr %[t], [%[wa]]" post "\n\t"                                                          \
    "and %[t], %[m], %[t]" shift "\n\t"                                                      \
    "sxtb16 %[u], %[t]\n\t"                                                                  \
    "sxtb16 %[t], %[t], ror #8\n\t"                                                          \
    "smlad %[a0], %[xe], %[u], %[a0]\n\t"                                                    \
    "smlad %[a0], %[xo], %[t], %[a0]\n\t"                                                    \
    "ldr %[t], [%[wb], %[d]]\n\t"                                                            \
    "and %[t], %[m], %[t]" shift "\n\t"                                                      \
    "sxtb16 %[u], %[t]\n\t"                                                                  \
    "sxtb16 %[t], %[t], ror #8\n\t"                                                          \
    "smlad %[a3], %[xe], %[u], %[a3]\n\t"                                                    \
    "smlad %[a3], %[xo], %[t], %[a3]\n\t"                                                    \
    "ldr %[t], [%[wb]]" post "\n\t"                                                          \
    "and %[t], %[m], %[t]" shift "\n\t"                                                      \
    "sxtb16 %[u], %[t]\n\t"                                                                  \
    "sxtb16 %[t], %[t], ror #8\n\t"                                                          \
    "smlad %[a2], %[xe], %[u], %[a2]\n\t"                                                    \
    "smlad %[a2], %[xo], %[t], %[a2]\n\t"

/* One group of eight values for four rows: 56 instructions for 32 MACs. */
#define FC_S4_GROUP_ASM                                                                      \
    "ldr %[xo], [%[x]], #4\n\t"                                                              \
    "sxtb16 %[xe], %[xo]\n\t"                                                                \
    "sxtb16 %[xo], %[xo], ror #8\n\t"                                                        \
    FC_S4_ROWS_ASM(", lsl #4", "")                                                           \
    "ldr %[xo], [%[x]], #4\n\t"                                                              \
    "sxtb16 %[xe], %[xo]\n\t"                                                                \
    "sxtb16 %[xo], %[xo], ror #8\n\t"                                                        \
    FC_S4_ROWS_ASM("", ", #4")
#endif

/* acc16[r] += 16 * (x . row r) over `groups` groups of eight values (rows `d` bytes apart
 * from w; at most FC_S4_CHUNK / 8 groups). */
static TINYML_NOINLINE TINYML_NO_SCHEDULE void fc_s4_dot4_groups(const int8_t *x,
                                                                 const int8_t *w, int32_t d,
                                                                 int32_t groups,
                                                                 int32_t acc16[4])
{
    const int8_t *wa = w, *wb = w + 2 * d;
    const int8_t *end = x + 8 * groups;
    int32_t a0 = acc16[0], a1 = acc16[1], a2 = acc16[2], a3 = acc16[3];
#if TINYML_DSP_ASM
    if (x != end) {
        int32_t xe, xo, t, u;
        __asm__ volatile("1:\n\t" FC_S4_GROUP_ASM
                         "cmp %[x], %[end]\n\t"
                         "bne 1b"
                         : [x] "+&r"(x), [wa] "+&r"(wa), [wb] "+&r"(wb), [a0] "+&r"(a0),
                           [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3), [xe] "=&r"(xe),
                           [xo] "=&r"(xo), [t] "=&r"(t), [u] "=&r"(u)
                         : [d] "r"(d), [end] "r"(end), [m] "r"(FC_S4_MASK)
                         : "cc", "memory");
    }
#else
    for (; x != end; x += 8, wa += 4, wb += 4) {
        int32_t xe0, xo0, xe1, xo1, e0, o0, e1, o1;
        tinyml_s8x4_interleaved(tinyml_read_s8x4(x), &xe0, &xo0);
        tinyml_s8x4_interleaved(tinyml_read_s8x4(x + 4), &xe1, &xo1);
        fc_s4_group(tinyml_read_s8x4(wa), &e0, &o0, &e1, &o1);
        a0 = __smlad(xo1, o1, __smlad(xe1, e1, __smlad(xo0, o0, __smlad(xe0, e0, a0))));
        fc_s4_group(tinyml_read_s8x4(wa + d), &e0, &o0, &e1, &o1);
        a1 = __smlad(xo1, o1, __smlad(xe1, e1, __smlad(xo0, o0, __smlad(xe0, e0, a1))));
        fc_s4_group(tinyml_read_s8x4(wb), &e0, &o0, &e1, &o1);
        a2 = __smlad(xo1, o1, __smlad(xe1, e1, __smlad(xo0, o0, __smlad(xe0, e0, a2))));
        fc_s4_group(tinyml_read_s8x4(wb + d), &e0, &o0, &e1, &o1);
        a3 = __smlad(xo1, o1, __smlad(xe1, e1, __smlad(xo0, o0, __smlad(xe0, e0, a3))));
    }
#endif
    acc16[0] = a0;
    acc16[1] = a1;
    acc16[2] = a2;
    acc16[3] = a3;
}

/* x . the last `tail` (< 8) values of a packed row, which lie two to a byte, low nibble
 * first, at `bytes`: a signed shift of each byte gives its two values. */
static TINYML_ALWAYS_INLINE int32_t fc_s4_tail(const int8_t *x, const int8_t *bytes,
                                               int32_t tail)
{
    int32_t sum = 0, i;
    for (i = 0; i + 2 <= tail; i += 2) {
        const int32_t byte = bytes[i >> 1];
        sum += x[i] * (((int32_t)((uint32_t)byte << 28)) >> 28) + x[i + 1] * (byte >> 4);
    }
    if (tail & 1) {
        sum += x[i] * (((int32_t)((uint32_t)bytes[i >> 1] << 28)) >> 28);
    }
    return sum;
}

/* acc[r] + x . row r for four packed int4 rows of `depth` values, `d` bytes apart. */
static TINYML_NOINLINE void fc_s4_dot4(const int8_t *x, const int8_t *w, int32_t d,
                                       int32_t depth, int32_t acc[4])
{
    const int32_t groups = depth >> 3, tail = depth & 7, per_chunk = FC_S4_CHUNK / 8;
    int32_t g, r;
    for (g = 0; g < groups; g += per_chunk) {
        const int32_t n = groups - g < per_chunk ? groups - g : per_chunk;
        int32_t acc16[4] = {0, 0, 0, 0};
        fc_s4_dot4_groups(x + 8 * g, w + 4 * g, d, n, acc16);
        for (r = 0; r < 4; ++r) {
            acc[r] = tinyml_wrap_add(acc[r], acc16[r] >> 4);
        }
    }
    if (tail) {
        for (r = 0; r < 4; ++r) {
            acc[r] = tinyml_wrap_add(acc[r], fc_s4_tail(x + 8 * groups, w + r * d + 4 * groups,
                                                        tail));
        }
    }
}

/* acc + x . w for one packed int4 row of `depth` values. */
static TINYML_NOINLINE TINYML_NO_SCHEDULE int32_t fc_s4_dot1(const int8_t *x, const int8_t *w,
                                                             int32_t depth, int32_t acc)
{
    const int32_t full = depth & ~7;
    int32_t i = 0, i_end;
    while (i < full) {
        int32_t acc16 = 0;
        i_end = full - i < FC_S4_CHUNK ? full : i + FC_S4_CHUNK;
        for (; i < i_end; i += 8) {
            int32_t xe0, xo0, xe1, xo1, e0, o0, e1, o1;
            tinyml_s8x4_interleaved(tinyml_read_s8x4(x + i), &xe0, &xo0);
            tinyml_s8x4_interleaved(tinyml_read_s8x4(x + i + 4), &xe1, &xo1);
            fc_s4_group(tinyml_read_s8x4(w + i / 2), &e0, &o0, &e1, &o1);
            acc16 = __smlad(xo1, o1, __smlad(xe1, e1, __smlad(xo0, o0, __smlad(xe0, e0, acc16))));
        }
        acc = tinyml_wrap_add(acc, acc16 >> 4);
    }
    return tinyml_wrap_add(acc, fc_s4_tail(x + full, w + full / 2, depth - full));
}

/* The dot products of four rows (int8, or packed int4 rows of `row_bytes` bytes). */
static TINYML_ALWAYS_INLINE void fc_dot4_any(const int8_t *x, const int8_t *w, int32_t depth,
                                             int32_t row_bytes, int32_t acc[4], int32_t int4)
{
    if (int4) {
        fc_s4_dot4(x, w, row_bytes, depth, acc);
    } else {
        tinyml_dot4_s8(x, w, depth, acc);
    }
}

static TINYML_ALWAYS_INLINE int32_t fc_dot1_any(const int8_t *x, const int8_t *w, int32_t depth,
                                                int32_t acc, int32_t int4)
{
    return int4 ? fc_s4_dot1(x, w, depth, acc) : tinyml_dot_s8(x, w, depth, acc);
}

/* The sum of the depth input values (for the filter offset of per-tensor weights with a
 * nonzero zero point). */
static TINYML_NOINLINE int32_t fc_sum(const int8_t *x, int32_t depth)
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

/* The output stage shared by every output (fc_outputs_shared): the short form of the
 * requantization with the zero point folded into its rounding constant, (h + zp * 2^e) >> e
 * being (h >> e) + zp inside int32 for right shifts 2..23 (|h| <= 2^30 + 2^21,
 * |zp| * 2^e <= 2^29), then the clamp. */
typedef struct {
    int32_t m;
    int32_t h;
    int32_t e;
    int32_t act_min;
    int32_t act_max;
} fc_shared;

/* Whether every output has the multiplier and shift of output 0, of the usual kind (right
 * shift 2..23); if so *c gets the constants. Per-tensor weights always share them. */
static TINYML_NOINLINE int fc_outputs_shared(const tinyml_fully_connected_params *p, fc_shared *c)
{
    const int32_t m0 = p->multiplier[0], s0 = p->shift[0];
    int32_t i;
    if (!(tinyml_dsp_short_applies(m0, s0) && s0 >= -23)) {
        return 0;
    }
    for (i = 1; i < p->output_depth; ++i) {
        if (p->multiplier[i] != m0 || p->shift[i] != s0) {
            return 0;
        }
    }
    c->m = m0;
    c->e = -s0 - 1;
    c->h = (int32_t)((1u << (c->e - 1)) + ((uint32_t)p->output_offset << c->e));
    c->act_min = p->act_min;
    c->act_max = p->act_max;
    return 1;
}

/* v clamped to the activation range: SSAT alone when it is all of int8, else SSAT and the
 * two bounds (which lie inside int8, so the SSAT changes nothing). */
static TINYML_ALWAYS_INLINE int8_t fc_clamp(int32_t v, int32_t full, int32_t lo, int32_t hi)
{
    v = tinyml_ssat8(v);
    if (!full) {
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
    }
    return (int8_t)v;
}

/* The outputs of one input row x with shared output constants c. */
static TINYML_ALWAYS_INLINE void fc_rows_shared(const tinyml_fully_connected_params *p,
                                                const fc_shared *cp, const int8_t *x,
                                                int32_t filter_term, int8_t *out, int32_t full,
                                                int32_t int4)
{
    const fc_shared c = *cp;
    const int32_t depth = p->input_depth, units = p->output_depth;
    const int32_t row_bytes = int4 ? tinyml_s4_row_bytes(depth) : depth;
    const int32_t *bias = p->bias;
    const int8_t *w = p->filter;
    int32_t u = 0, r;
    for (; u + 4 <= units; u += 4, w += 4 * row_bytes) {
        int32_t acc[4];
        TINYML_UNROLL
        for (r = 0; r < 4; ++r) {
            acc[r] = tinyml_wrap_add(bias[u + r], filter_term);
        }
        fc_dot4_any(x, w, depth, row_bytes, acc, int4);
        TINYML_UNROLL
        for (r = 0; r < 4; ++r) {
            out[u + r] = fc_clamp(tinyml_dsp_mbqm_short_raw(acc[r], c.m, c.h, c.e), full,
                                  c.act_min, c.act_max);
        }
    }
    for (; u < units; ++u, w += row_bytes) {
        const int32_t acc =
            fc_dot1_any(x, w, depth, tinyml_wrap_add(bias[u], filter_term), int4);
        out[u] = fc_clamp(tinyml_dsp_mbqm_short_raw(acc, c.m, c.h, c.e), full, c.act_min,
                          c.act_max);
    }
}

static TINYML_NOINLINE void fc_rows_shared_full(const tinyml_fully_connected_params *p,
                                                const fc_shared *c, const int8_t *x,
                                                int32_t filter_term, int8_t *out)
{
    fc_rows_shared(p, c, x, filter_term, out, 1, 0);
}

static TINYML_NOINLINE void fc_rows_shared_clamp(const tinyml_fully_connected_params *p,
                                                 const fc_shared *c, const int8_t *x,
                                                 int32_t filter_term, int8_t *out)
{
    fc_rows_shared(p, c, x, filter_term, out, 0, 0);
}

static TINYML_NOINLINE void fc_s4_rows_shared_full(const tinyml_fully_connected_params *p,
                                                   const fc_shared *c, const int8_t *x,
                                                   int32_t filter_term, int8_t *out)
{
    fc_rows_shared(p, c, x, filter_term, out, 1, 1);
}

static TINYML_NOINLINE void fc_s4_rows_shared_clamp(const tinyml_fully_connected_params *p,
                                                    const fc_shared *c, const int8_t *x,
                                                    int32_t filter_term, int8_t *out)
{
    fc_rows_shared(p, c, x, filter_term, out, 0, 1);
}

/* Output u of one input row from its accumulator with its own constants, in the cheapest
 * exact form of the requantization. */
static int8_t fc_output_own(const tinyml_fully_connected_params *p, int32_t acc, int32_t u)
{
    const int32_t m = p->multiplier[u], s = p->shift[u];
    tinyml_dsp_requant r;
    int32_t v;
    if (tinyml_dsp_short_applies(m, s) && s >= -23) {
        /* The usual per-channel constants: the short form with the zero point folded in,
         * as fc_outputs_shared prepares it for shared ones. */
        const int32_t e = -s - 1;
        const int32_t h = (int32_t)((1u << (e - 1)) + ((uint32_t)p->output_offset << e));
        return fc_clamp(tinyml_dsp_mbqm_short_raw(acc, m, h, e), 0, p->act_min, p->act_max);
    }
    r = tinyml_dsp_requant_prepare(m, s);
    v = tinyml_wrap_add(tinyml_dsp_mbqm(acc, r), p->output_offset);
    return fc_clamp(v, 0, p->act_min, p->act_max);
}

/* The units outputs of one input row x, each with its own constants (per-channel weights
 * with different multipliers, or unusual shifts). */
static TINYML_ALWAYS_INLINE void fc_rows_own_body(const tinyml_fully_connected_params *p,
                                                 const int8_t *x, int32_t filter_term,
                                                 int8_t *out, int32_t int4)
{
    const int32_t depth = p->input_depth, units = p->output_depth;
    const int32_t row_bytes = int4 ? tinyml_s4_row_bytes(depth) : depth;
    const int8_t *w = p->filter;
    int32_t u = 0, r;
    for (; u + 4 <= units; u += 4, w += 4 * row_bytes) {
        int32_t acc[4];
        for (r = 0; r < 4; ++r) {
            acc[r] = tinyml_wrap_add(p->bias[u + r], filter_term);
        }
        fc_dot4_any(x, w, depth, row_bytes, acc, int4);
        for (r = 0; r < 4; ++r) {
            out[u + r] = fc_output_own(p, acc[r], u + r);
        }
    }
    for (; u < units; ++u, w += row_bytes) {
        out[u] = fc_output_own(
            p, fc_dot1_any(x, w, depth, tinyml_wrap_add(p->bias[u], filter_term), int4), u);
    }
}

/* Separate int8 and int4 copies: an int8 model links no int4 code. */
static TINYML_NOINLINE void fc_rows_own_s8(const tinyml_fully_connected_params *p,
                                           const int8_t *x, int32_t filter_term, int8_t *out)
{
    fc_rows_own_body(p, x, filter_term, out, 0);
}

static TINYML_NOINLINE void fc_rows_own_s4(const tinyml_fully_connected_params *p,
                                           const int8_t *x, int32_t filter_term, int8_t *out)
{
    fc_rows_own_body(p, x, filter_term, out, 1);
}

/* Inlined into each entry point with int4 constant, so each links only its own loops. */
static TINYML_ALWAYS_INLINE void fc_run(const tinyml_fully_connected_params *p,
                                        const int8_t *input, int8_t *output, int32_t int4)
{
    const int32_t depth = p->input_depth, units = p->output_depth;
    const int32_t full = p->act_min == -128 && p->act_max == 127;
    fc_shared c;
    const int shared = fc_outputs_shared(p, &c);
    int32_t b;
    for (b = 0; b < p->batches; ++b, input += depth, output += units) {
        /* The filter offset's term, wrapped as the reference's int32 arithmetic. */
        const int32_t filter_term =
            p->filter_offset != 0
                ? (int32_t)((uint32_t)fc_sum(input, depth) * (uint32_t)p->filter_offset)
                : 0;
        if (!shared) {
            (int4 ? fc_rows_own_s4 : fc_rows_own_s8)(p, input, filter_term, output);
        } else if (int4) {
            (full ? fc_s4_rows_shared_full : fc_s4_rows_shared_clamp)(p, &c, input,
                                                                      filter_term, output);
        } else if (full) {
            fc_rows_shared_full(p, &c, input, filter_term, output);
        } else {
            fc_rows_shared_clamp(p, &c, input, filter_term, output);
        }
    }
}

void tinyml_fully_connected_s8(const tinyml_fully_connected_params *p, const int8_t *input,
                               int8_t *output, int8_t *scratch)
{
    (void)scratch;
    fc_run(p, input, output, 0);
}

void tinyml_fully_connected_s4(const tinyml_fully_connected_params *p, const int8_t *input,
                               int8_t *output, int8_t *scratch)
{
    (void)scratch;
    fc_run(p, input, output, 1);
}
