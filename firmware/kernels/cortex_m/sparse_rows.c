/*
 * The row loop of the sparse kernels for Cortex-M cores with the DSP extension.
 *
 * Results are those of portable/sparse_rows.c bit for bit: the same decoding
 * (sparse_rows.h) and sums, and dsp_common.h's exact forms of the requantization. Why a
 * core-specific output stage: a sparse row's dot product is short (at 90 % sparsity a
 * 256-deep row is about 26 entries), so the portable requantization's 64-bit arithmetic
 * would cost as much as the row; here the usual constants (multiplier >= 0, right shift
 * 2..31) take the five-instruction short form, others dsp_common.h's general one. The
 * entry loops are in assembly (below) where GCC's addressing costs a third more, and 1x1
 * convolutions decode each row once for two pixels (tinyml_sparse_rows2); built with
 * the ACLE emulation on the host (tests), the C of sparse_rows.h runs instead.
 */
#include <stdint.h>

#include "tinyml_kernels.h"
#include "dsp_common.h"
#include "fixedpoint.h"
#include "sparse_rows.h"

#if TINYML_DSP_ASM
/* tinyml_sparse_dot8 with its pair loop in assembly: 12 instructions per two entries (the
 * skip byte and both values by post-incremented loads, each input value by a load that
 * steps past it, SMLABB on the sign-extended bytes). */
static TINYML_ALWAYS_INLINE int32_t sparse_dot8(const int8_t *x, const int8_t **stream,
                                                int32_t entries)
{
    const int8_t *s = *stream;
    int32_t acc = 0;
    int32_t pairs = entries >> 1;
    if (pairs > 0) {
        uint32_t t, u;
        int32_t v0, v1, a;
        __asm__("1:\n\t"
                "ldrb %[t], [%[s]], #1\n\t"
                "ldrsb %[v0], [%[s]], #1\n\t"
                "ldrsb %[v1], [%[s]], #1\n\t"
                "and %[u], %[t], #15\n\t"
                "add %[x], %[x], %[u]\n\t"
                "ldrsb %[a], [%[x]], #1\n\t"
                "smlabb %[acc], %[a], %[v0], %[acc]\n\t"
                "add %[x], %[x], %[t], lsr #4\n\t"
                "ldrsb %[a], [%[x]], #1\n\t"
                "smlabb %[acc], %[a], %[v1], %[acc]\n\t"
                "subs %[k], %[k], #1\n\t"
                "bne 1b"
                : [x] "+r"(x), [s] "+r"(s), [acc] "+r"(acc), [k] "+r"(pairs), [t] "=&r"(t),
                  [u] "=&r"(u), [v0] "=&r"(v0), [v1] "=&r"(v1), [a] "=&r"(a)
                :
                : "cc", "memory");
    }
    if (entries & 1) {
        const uint32_t skip = (uint8_t)*s++ & 15u;
        acc += (int32_t)x[skip] * (int32_t)*s++;
    }
    *stream = s;
    return acc;
}

/* tinyml_sparse_dot4 with a loop over four entries in assembly: one (unaligned) word load
 * for four codes, then per entry UBFX of the skip, the input load that steps past it, SBFX
 * of the value and SMLABB: 23 instructions per four entries. */
static TINYML_ALWAYS_INLINE int32_t sparse_dot4(const int8_t *x, const int8_t **stream,
                                                int32_t entries)
{
    const int8_t *s = *stream;
    int32_t acc = 0;
    int32_t quads = entries >> 2;
    int32_t k;
    if (quads > 0) {
        uint32_t w, u;
        int32_t v, a;
        __asm__("1:\n\t"
                "ldr %[w], [%[s]], #4\n\t"
                "and %[u], %[w], #15\n\t"
                "add %[x], %[x], %[u]\n\t"
                "ldrsb %[a], [%[x]], #1\n\t"
                "sbfx %[v], %[w], #4, #4\n\t"
                "smlabb %[acc], %[a], %[v], %[acc]\n\t"
                "ubfx %[u], %[w], #8, #4\n\t"
                "add %[x], %[x], %[u]\n\t"
                "ldrsb %[a], [%[x]], #1\n\t"
                "sbfx %[v], %[w], #12, #4\n\t"
                "smlabb %[acc], %[a], %[v], %[acc]\n\t"
                "ubfx %[u], %[w], #16, #4\n\t"
                "add %[x], %[x], %[u]\n\t"
                "ldrsb %[a], [%[x]], #1\n\t"
                "sbfx %[v], %[w], #20, #4\n\t"
                "smlabb %[acc], %[a], %[v], %[acc]\n\t"
                "ubfx %[u], %[w], #24, #4\n\t"
                "add %[x], %[x], %[u]\n\t"
                "ldrsb %[a], [%[x]], #1\n\t"
                "asr %[v], %[w], #28\n\t"
                "smlabb %[acc], %[a], %[v], %[acc]\n\t"
                "subs %[k], %[k], #1\n\t"
                "bne 1b"
                : [x] "+r"(x), [s] "+r"(s), [acc] "+r"(acc), [k] "+r"(quads), [w] "=&r"(w),
                  [u] "=&r"(u), [v] "=&r"(v), [a] "=&r"(a)
                :
                : "cc", "memory");
    }
    for (k = entries & 3; k > 0; --k) {
        const int32_t c = *s++;
        x += (uint32_t)c & 15u;
        acc += (int32_t)*x++ * (c >> 4);
    }
    *stream = s;
    return acc;
}
/* sparse_dot8 on two input vectors, x and x + d (two pixels): each entry decoded once, 16
 * instructions per two entries for both. Sums in *acc0 (x) and *acc1 (x + d). */
static TINYML_ALWAYS_INLINE void sparse_dot8x2(const int8_t *x, int32_t d, const int8_t **stream,
                                               int32_t entries, int32_t *acc0, int32_t *acc1)
{
    const int8_t *s = *stream;
    int32_t a0 = 0, a1 = 0;
    int32_t pairs = entries >> 1;
    if (pairs > 0) {
        uint32_t t;
        int32_t v, a, b;
        __asm__("1:\n\t"
                "ldrb %[t], [%[s]], #1\n\t"
                "ldrsb %[v], [%[s]], #1\n\t"
                "and %[a], %[t], #15\n\t"
                "add %[x], %[x], %[a]\n\t"
                "ldrsb %[b], [%[x], %[d]]\n\t"
                "ldrsb %[a], [%[x]], #1\n\t"
                "smlabb %[a0], %[a], %[v], %[a0]\n\t"
                "smlabb %[a1], %[b], %[v], %[a1]\n\t"
                "ldrsb %[v], [%[s]], #1\n\t"
                "add %[x], %[x], %[t], lsr #4\n\t"
                "ldrsb %[b], [%[x], %[d]]\n\t"
                "ldrsb %[a], [%[x]], #1\n\t"
                "smlabb %[a0], %[a], %[v], %[a0]\n\t"
                "smlabb %[a1], %[b], %[v], %[a1]\n\t"
                "subs %[k], %[k], #1\n\t"
                "bne 1b"
                : [x] "+r"(x), [s] "+r"(s), [a0] "+r"(a0), [a1] "+r"(a1), [k] "+r"(pairs),
                  [t] "=&r"(t), [v] "=&r"(v), [a] "=&r"(a), [b] "=&r"(b)
                : [d] "r"(d)
                : "cc", "memory");
    }
    if (entries & 1) {
        const uint32_t skip = (uint8_t)*s++ & 15u;
        const int32_t v = *s++;
        a0 += (int32_t)x[skip] * v;
        a1 += (int32_t)(x + skip)[d] * v;
    }
    *stream = s;
    *acc0 = a0;
    *acc1 = a1;
}

/* sparse_dot4 on two input vectors: 4 codes a word, 7 instructions per entry for both. */
static TINYML_ALWAYS_INLINE void sparse_dot4x2(const int8_t *x, int32_t d, const int8_t **stream,
                                               int32_t entries, int32_t *acc0, int32_t *acc1)
{
    const int8_t *s = *stream;
    int32_t a0 = 0, a1 = 0;
    int32_t quads = entries >> 2;
    int32_t k;
    if (quads > 0) {
        uint32_t w;
        int32_t v, a, b;
#define SPARSE_DOT4X2_ENTRY(skip, value)                                                     \
    skip "\n\t"                                                                               \
    "add %[x], %[x], %[a]\n\t"                                                                \
    "ldrsb %[b], [%[x], %[d]]\n\t"                                                            \
    "ldrsb %[a], [%[x]], #1\n\t"                                                              \
    value "\n\t"                                                                              \
    "smlabb %[a0], %[a], %[v], %[a0]\n\t"                                                     \
    "smlabb %[a1], %[b], %[v], %[a1]\n\t"
        __asm__("1:\n\t"
                "ldr %[w], [%[s]], #4\n\t"
                SPARSE_DOT4X2_ENTRY("and %[a], %[w], #15", "sbfx %[v], %[w], #4, #4")
                SPARSE_DOT4X2_ENTRY("ubfx %[a], %[w], #8, #4", "sbfx %[v], %[w], #12, #4")
                SPARSE_DOT4X2_ENTRY("ubfx %[a], %[w], #16, #4", "sbfx %[v], %[w], #20, #4")
                SPARSE_DOT4X2_ENTRY("ubfx %[a], %[w], #24, #4", "asr %[v], %[w], #28")
                "subs %[k], %[k], #1\n\t"
                "bne 1b"
                : [x] "+r"(x), [s] "+r"(s), [a0] "+r"(a0), [a1] "+r"(a1), [k] "+r"(quads),
                  [w] "=&r"(w), [v] "=&r"(v), [a] "=&r"(a), [b] "=&r"(b)
                : [d] "r"(d)
                : "cc", "memory");
#undef SPARSE_DOT4X2_ENTRY
    }
    for (k = entries & 3; k > 0; --k) {
        const int32_t c = *s++;
        x += (uint32_t)c & 15u;
        a0 += (int32_t)x[0] * (c >> 4);
        a1 += (int32_t)x[d] * (c >> 4);
        ++x;
    }
    *stream = s;
    *acc0 = a0;
    *acc1 = a1;
}
#else
#define sparse_dot8 tinyml_sparse_dot8
#define sparse_dot4 tinyml_sparse_dot4

/* The C twins of the paired loops: the same entries on x and x + d. */
static void sparse_dot8x2(const int8_t *x, int32_t d, const int8_t **stream, int32_t entries,
                          int32_t *acc0, int32_t *acc1)
{
    const int8_t *s = *stream;
    int32_t a0 = 0, a1 = 0;
    int32_t k;
    for (k = 0; k < entries; ++k) {
        const uint32_t skips = (uint8_t)s[0];
        const uint32_t skip = (k & 1) ? skips >> 4 : skips & 15u;
        const int32_t v = s[1 + (k & 1)];
        x += skip;
        a0 += (int32_t)x[0] * v;
        a1 += (int32_t)x[d] * v;
        ++x;
        if ((k & 1) || k + 1 == entries) {
            s += (k & 1) ? 3 : 2;
        }
    }
    *stream = s;
    *acc0 = a0;
    *acc1 = a1;
}

static void sparse_dot4x2(const int8_t *x, int32_t d, const int8_t **stream, int32_t entries,
                          int32_t *acc0, int32_t *acc1)
{
    const int8_t *s = *stream;
    int32_t a0 = 0, a1 = 0;
    int32_t k;
    for (k = 0; k < entries; ++k) {
        const int32_t c = *s++;
        x += (uint32_t)c & 15u;
        a0 += (int32_t)x[0] * (c >> 4);
        a1 += (int32_t)x[d] * (c >> 4);
        ++x;
    }
    *stream = s;
    *acc0 = a0;
    *acc1 = a1;
}
#endif

/* The output stage of one row. */
static TINYML_ALWAYS_INLINE int8_t sparse_output(int32_t acc, int32_t multiplier, int32_t shift,
                                                 int32_t zero_point, int32_t act_min,
                                                 int32_t act_max)
{
    if (tinyml_dsp_short_applies(multiplier, shift)) {
        acc = tinyml_dsp_mbqm_short_raw(acc, multiplier, (int32_t)1 << (-shift - 2),
                                        -shift - 1);
    } else {
        acc = tinyml_dsp_mbqm(acc, tinyml_dsp_requant_prepare(multiplier, shift));
    }
    return tinyml_dsp_clamp(acc, zero_point, act_min, act_max);
}

/* The row loop, one per value width: the struct's fields in locals (the assembly's memory
 * clobber would otherwise reload them every row). */
#define SPARSE_ROW_LOOP(dot)                                                                 \
    for (o = 0; o < rows; ++o) {                                                             \
        const int32_t acc = tinyml_wrap_add(dot(x, &stream, (int32_t)entries[o]), bias[o]); \
        out[o] = sparse_output(acc, multiplier[o], shift[o], zero_point, act_min, act_max);  \
    }

void tinyml_sparse_rows(const tinyml_sparse_rows_t *m, const int8_t *x, int8_t *out)
{
    const int8_t *stream = m->stream;
    const uint16_t *entries = m->row_entries;
    const int32_t *bias = m->bias;
    const int32_t *multiplier = m->multiplier;
    const int32_t *shift = m->shift;
    const int32_t rows = m->rows;
    const int32_t zero_point = m->output_offset;
    const int32_t act_min = m->act_min;
    const int32_t act_max = m->act_max;
    int32_t o;
    if (m->value_bits == 4) {
        SPARSE_ROW_LOOP(sparse_dot4)
    } else {
        SPARSE_ROW_LOOP(sparse_dot8)
    }
}

/* The paired row loop: one decode of each row for two pixels. */
#define SPARSE_ROW_LOOP2(dot)                                                                \
    for (o = 0; o < rows; ++o) {                                                             \
        int32_t acc0, acc1;                                                                  \
        dot(x0, d, &stream, (int32_t)entries[o], &acc0, &acc1);                              \
        out0[o] = sparse_output(tinyml_wrap_add(acc0, bias[o]), multiplier[o], shift[o],     \
                                zero_point, act_min, act_max);                               \
        out1[o] = sparse_output(tinyml_wrap_add(acc1, bias[o]), multiplier[o], shift[o],     \
                                zero_point, act_min, act_max);                               \
    }

void tinyml_sparse_rows2(const tinyml_sparse_rows_t *m, const int8_t *x0, const int8_t *x1,
                         int8_t *out0, int8_t *out1)
{
    const int8_t *stream = m->stream;
    const uint16_t *entries = m->row_entries;
    const int32_t *bias = m->bias;
    const int32_t *multiplier = m->multiplier;
    const int32_t *shift = m->shift;
    const int32_t rows = m->rows;
    const int32_t zero_point = m->output_offset;
    const int32_t act_min = m->act_min;
    const int32_t act_max = m->act_max;
    const int32_t d = (int32_t)(x1 - x0);
    int32_t o;
    if (m->value_bits == 4) {
        SPARSE_ROW_LOOP2(sparse_dot4x2)
    } else {
        SPARSE_ROW_LOOP2(sparse_dot8x2)
    }
}
