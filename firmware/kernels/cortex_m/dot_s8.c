/*
 * int8 dot products on cores with the DSP extension, for FULLY_CONNECTED (fully_connected.c)
 * and the LSTM (portable/lstm.c): four int8 pairs per step, each word unpacked to two
 * int16x2 halves (SXTB16, interleaved lanes on both operands) and multiplied-accumulated with
 * two SMLADs; four rows at a time share the input's unpacking: 16 MACs in 23 instructions.
 * Same sums as portable/dot_s8.c (exact int32 arithmetic in a different order).
 */
#include "dsp_common.h"
#include "tinyml_kernels.h"

TINYML_NOINLINE TINYML_NO_SCHEDULE int32_t tinyml_dot_s8(const int8_t *x, const int8_t *w,
                                                              int32_t n, int32_t acc)
{
    const int8_t *end = x + (n & ~3);
    int32_t xe, xo, we, wo, i;
    while (x != end) {
        tinyml_s8x4_interleaved(tinyml_read_s8x4(x), &xe, &xo);
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w), &we, &wo);
        acc = __smlad(xo, wo, __smlad(xe, we, acc));
        x += 4;
        w += 4;
    }
    for (i = 0; i < (n & 3); ++i) {
        acc += x[i] * w[i];
    }
    return acc;
}

/* One group of four values for four rows: the input word at *x, rows 0 and 1 at *wa and
 * *wa + d, rows 2 and 3 at *wb and *wb + d; the three pointers advance by 4. Two row pointers
 * with one register offset keep the loop in 13 registers. */
static TINYML_ALWAYS_INLINE void dot_group4(const int8_t **x, const int8_t **wa,
                                             const int8_t **wb, int32_t d, int32_t *a0,
                                             int32_t *a1, int32_t *a2, int32_t *a3)
{
    int32_t xe, xo, we, wo;
    tinyml_s8x4_interleaved(tinyml_read_s8x4(*x), &xe, &xo);
    tinyml_s8x4_interleaved(tinyml_read_s8x4(*wa + d), &we, &wo);
    *a1 = __smlad(xo, wo, __smlad(xe, we, *a1));
    tinyml_s8x4_interleaved(tinyml_read_s8x4(*wa), &we, &wo);
    *a0 = __smlad(xo, wo, __smlad(xe, we, *a0));
    tinyml_s8x4_interleaved(tinyml_read_s8x4(*wb + d), &we, &wo);
    *a3 = __smlad(xo, wo, __smlad(xe, we, *a3));
    tinyml_s8x4_interleaved(tinyml_read_s8x4(*wb), &we, &wo);
    *a2 = __smlad(xo, wo, __smlad(xe, we, *a2));
    *x += 4;
    *wa += 4;
    *wb += 4;
}

#if TINYML_DSP_ASM
/* One group in assembly: 23 instructions, the pointers advanced by post-increment loads. */
#define DOT_GROUP4_ASM                                                                      \
    "ldr %[xo], [%[x]], #4\n\t"                                                              \
    "ldr %[t], [%[wa], %[d]]\n\t"                                                            \
    "sxtb16 %[xe], %[xo]\n\t"                                                                \
    "sxtb16 %[xo], %[xo], ror #8\n\t"                                                        \
    "sxtb16 %[we], %[t]\n\t"                                                                 \
    "sxtb16 %[t], %[t], ror #8\n\t"                                                          \
    "smlad %[a1], %[xe], %[we], %[a1]\n\t"                                                   \
    "smlad %[a1], %[xo], %[t], %[a1]\n\t"                                                    \
    "ldr %[t], [%[wa]], #4\n\t"                                                              \
    "sxtb16 %[we], %[t]\n\t"                                                                 \
    "sxtb16 %[t], %[t], ror #8\n\t"                                                          \
    "smlad %[a0], %[xe], %[we], %[a0]\n\t"                                                   \
    "smlad %[a0], %[xo], %[t], %[a0]\n\t"                                                    \
    "ldr %[t], [%[wb], %[d]]\n\t"                                                            \
    "sxtb16 %[we], %[t]\n\t"                                                                 \
    "sxtb16 %[t], %[t], ror #8\n\t"                                                          \
    "smlad %[a3], %[xe], %[we], %[a3]\n\t"                                                   \
    "smlad %[a3], %[xo], %[t], %[a3]\n\t"                                                    \
    "ldr %[t], [%[wb]], #4\n\t"                                                              \
    "sxtb16 %[we], %[t]\n\t"                                                                 \
    "sxtb16 %[t], %[t], ror #8\n\t"                                                          \
    "smlad %[a2], %[xe], %[we], %[a2]\n\t"                                                   \
    "smlad %[a2], %[xo], %[t], %[a2]\n\t"
#endif

/* acc[r] += x . row r for rows r = 0..3, n bytes apart from w. On the target the loop over
 * pairs of groups is assembly (48 instructions per 32 MACs): GCC 12 spills its end pointer
 * and adds a separate increment per pointer. */
TINYML_NOINLINE TINYML_NO_SCHEDULE void tinyml_dot4_s8(const int8_t *x, const int8_t *w,
                                                            int32_t n, int32_t *acc)
{
    const int8_t *wa = w, *wb = w + 2 * n;
    const int8_t *pairs_end = x + (n & ~7);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3], i;
#if TINYML_DSP_ASM
    if (x != pairs_end) {
        int32_t xe, xo, we, t;
        __asm__ volatile("1:\n\t" DOT_GROUP4_ASM DOT_GROUP4_ASM
                         "cmp %[x], %[end]\n\t"
                         "bne 1b"
                         : [x] "+&r"(x), [wa] "+&r"(wa), [wb] "+&r"(wb), [a0] "+&r"(a0),
                           [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3), [xe] "=&r"(xe),
                           [xo] "=&r"(xo), [we] "=&r"(we), [t] "=&r"(t)
                         : [d] "r"(n), [end] "r"(pairs_end)
                         : "cc", "memory");
    }
#else
    while (x != pairs_end) {
        dot_group4(&x, &wa, &wb, n, &a0, &a1, &a2, &a3);
        dot_group4(&x, &wa, &wb, n, &a0, &a1, &a2, &a3);
    }
#endif
    if (n & 4) {
        dot_group4(&x, &wa, &wb, n, &a0, &a1, &a2, &a3);
    }
    for (i = 0; i < (n & 3); ++i) {
        const int32_t v = x[i];
        a0 += v * wa[i];
        a1 += v * wa[i + n];
        a2 += v * wb[i];
        a3 += v * wb[i + n];
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
