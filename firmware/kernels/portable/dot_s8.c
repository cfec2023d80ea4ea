/*
 * int8 dot products: acc + x . w over n values, and four rows of them at a time. The LSTM
 * (lstm.c) spends nearly all of its time here. A file of its own so the Cortex-M DSP version
 * (firmware/kernels/cortex_m/dot_s8.c, SMLAD on pairs; shared there with FULLY_CONNECTED)
 * replaces just these loops.
 */
#include "tinyml_kernels.h"

int32_t tinyml_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t acc)
{
    int32_t i;
    for (i = 0; i < n; i++) {
        acc += (int32_t)x[i] * (int32_t)w[i];
    }
    return acc;
}

void tinyml_dot4_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t *acc)
{
    int32_t r;
    for (r = 0; r < 4; r++) {
        acc[r] = tinyml_dot_s8(x, w + r * n, n, acc[r]);
    }
}
