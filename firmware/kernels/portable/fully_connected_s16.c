/*
 * FULLY_CONNECTED of TFLite's 16x8 models: int16 input and output (zero point 0), int8
 * weights (per channel or per tensor, symmetric), int64 bias. TFLM's FullyConnected /
 * FullyConnectedPerChannel with BiasType int64: acc (int64) = bias + input . filter row,
 * requantized with the int64 MultiplyByQuantizedMultiplier.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

void tinyml_fully_connected_s16(const tinyml_fully_connected_s16_params *p,
                                const int16_t *input, int16_t *output)
{
    int32_t b, o, d;
    for (b = 0; b < p->batches; ++b) {
        const int16_t *x = input + b * p->input_depth;
        for (o = 0; o < p->output_depth; ++o) {
            const int8_t *w = p->filter + o * p->input_depth;
            int64_t acc = 0;
            int32_t sum = 0;
            /* |x * w| < 2^22: int32 partial sums of 256 products, added in int64. */
            for (d = 0; d < p->input_depth; ++d) {
                sum += (int32_t)x[d] * (int32_t)w[d];
                if ((d & 255) == 255) {
                    acc += sum;
                    sum = 0;
                }
            }
            acc += sum + p->bias[o];
            *output++ = tinyml_clamp_s16(tinyml_requantize_16x8(acc, p->multiplier[o],
                                                                p->shift[o],
                                                                p->int32_accumulator),
                                         p->act_min, p->act_max);
        }
    }
}
