/*
 * The LSTM's dot products on cores with the DSP extension: four int8 pairs per step, each
 * word unpacked to two int16x2 halves (SXTB16, interleaved lanes on both operands) and
 * multiplied-accumulated with two SMLADs. Same sums as portable/lstm_dot.c (exact int32
 * arithmetic in a different order).
 */
#include "dsp_common.h"
#include "tinyml_kernels.h"

int32_t tinyml_lstm_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t acc)
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
