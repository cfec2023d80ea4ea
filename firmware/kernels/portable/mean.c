/*
 * MEAN, int8, over any axes of an up-to-4-D input: TFLM's QuantizedMeanOrSum. The sum of the
 * averaged elements, minus count * input zero point, is requantized by one multiplier into
 * which lowering folded 1/count.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "reduce_layout.h"

void tinyml_mean_s8(const tinyml_mean_params *p, const int8_t *input, int8_t *output)
{
    int32_t kept[4], averaged[4], stride[4];
    int32_t o0, o1, o2, o3, r0, r1, r2, r3;
    tinyml_reduce_layout(p->shape, p->reduced, kept, averaged, stride);
    for (o0 = 0; o0 < kept[0]; ++o0) {
        for (o1 = 0; o1 < kept[1]; ++o1) {
            for (o2 = 0; o2 < kept[2]; ++o2) {
                for (o3 = 0; o3 < kept[3]; ++o3) {
                    const int8_t *base = input + o0 * stride[0] + o1 * stride[1] +
                                         o2 * stride[2] + o3 * stride[3];
                    int32_t sum = 0;
                    for (r0 = 0; r0 < averaged[0]; ++r0) {
                        for (r1 = 0; r1 < averaged[1]; ++r1) {
                            for (r2 = 0; r2 < averaged[2]; ++r2) {
                                const int8_t *row = base + r0 * stride[0] + r1 * stride[1] +
                                                    r2 * stride[2];
                                for (r3 = 0; r3 < averaged[3]; ++r3) {
                                    sum += row[r3 * stride[3]];
                                }
                            }
                        }
                    }
                    *output++ = tinyml_requantize(tinyml_wrap_add(sum, p->input_offset_sum),
                                                  p->multiplier, p->shift, p->output_offset,
                                                  -128, 127);
                }
            }
        }
    }
}
