/*
 * The LSTM's dot products (lstm.c): acc + x . w over n int8 values. A file of its own so the
 * Cortex-M DSP version (firmware/kernels/cortex_m/lstm_dot.c, SMLAD on pairs) replaces just
 * this loop, where an LSTM spends nearly all of its time.
 */
#include "tinyml_kernels.h"

int32_t tinyml_lstm_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t acc)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        acc += (int32_t)x[i] * (int32_t)w[i];
    }
    return acc;
}

void tinyml_lstm_dot4_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t *acc)
{
    int32_t r;
    for (r = 0; r < 4; r++) {
        acc[r] = tinyml_lstm_dot_s8(x, w + r * n, n, acc[r]);
    }
}
