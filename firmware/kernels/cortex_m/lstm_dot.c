/*
 * The LSTM's dot products on cores with the DSP extension: four int8 pairs per step, each
 * word unpacked to two int16x2 halves (SXTB16, interleaved lanes on both operands) and
 * multiplied-accumulated with two SMLADs; four rows at a time share the input's unpacking. Same sums as portable/lstm_dot.c (exact int32
 * arithmetic in a different order).
 */
#include "dsp_common.h"
#include "tinyml_kernels.h"

TINYML_NOINLINE TINYML_NO_SCHEDULE int32_t tinyml_lstm_dot_s8(const int8_t *x, const int8_t *w,
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

/* Rows w, w + stride, w + 2 stride, w + 3 stride: each input word is unpacked once for the
 * four (two row pointers and one offset keep the loop in the 13 registers, as
 * fully_connected.c's fc_group4). */
TINYML_NOINLINE TINYML_NO_SCHEDULE void tinyml_lstm_dot4_s8(const int8_t *x, const int8_t *w,
                                                            int32_t stride, int32_t n,
                                                            int32_t *acc)
{
    const int8_t *wa = w, *wb = w + 2 * stride;
    const int8_t *end = x + (n & ~3);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t i;
    while (x != end) {
        int32_t xe, xo, we, wo;
        tinyml_s8x4_interleaved(tinyml_read_s8x4(x), &xe, &xo);
        tinyml_s8x4_interleaved(tinyml_read_s8x4(wa + stride), &we, &wo);
        a1 = __smlad(xo, wo, __smlad(xe, we, a1));
        tinyml_s8x4_interleaved(tinyml_read_s8x4(wa), &we, &wo);
        a0 = __smlad(xo, wo, __smlad(xe, we, a0));
        tinyml_s8x4_interleaved(tinyml_read_s8x4(wb + stride), &we, &wo);
        a3 = __smlad(xo, wo, __smlad(xe, we, a3));
        tinyml_s8x4_interleaved(tinyml_read_s8x4(wb), &we, &wo);
        a2 = __smlad(xo, wo, __smlad(xe, we, a2));
        x += 4;
        wa += 4;
        wb += 4;
    }
    for (i = 0; i < (n & 3); ++i) {
        const int32_t v = x[i];
        a0 += v * wa[i];
        a1 += v * wa[i + stride];
        a2 += v * wb[i];
        a3 += v * wb[i + stride];
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
