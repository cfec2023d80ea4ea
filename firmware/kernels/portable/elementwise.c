/*
 * ADD and MUL, int8, with numpy broadcasting over 4 dimensions. In place capable: every
 * output element is written after the input elements at the same position are read.
 *
 * ADD follows TFLM's AddElementwise (both inputs shifted left 20 bits and rescaled to a common
 * scale, the sum rescaled to the output); MUL its MulElementwise (the product of the offset
 * inputs rescaled by one multiplier). The zero point is added as the reference adds it: ADD
 * without wrapping, MUL through the shared int32 output stage.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "broadcast.h"

static int8_t add_element(const tinyml_add_params *p, int8_t a, int8_t b)
{
    return tinyml_rescaled_sum((int32_t)a + p->input1_offset, (int32_t)b + p->input2_offset,
                               p->left_shift, p->input1_multiplier, p->input1_shift,
                               p->input2_multiplier, p->input2_shift, p->output_multiplier,
                               p->output_shift, p->output_offset, p->act_min, p->act_max);
}

static int8_t mul_element(const tinyml_mul_params *p, int8_t a, int8_t b)
{
    const int32_t product = ((int32_t)a + p->input1_offset) * ((int32_t)b + p->input2_offset);
    return tinyml_requantize(product, p->output_multiplier, p->output_shift, p->output_offset,
                             p->act_min, p->act_max);
}

void tinyml_add_s8(const tinyml_add_params *p, const int8_t *input1, const int8_t *input2,
                   int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = add_element(p, input1[i], input2[i]);
    }
}

void tinyml_mul_s8(const tinyml_mul_params *p, const int8_t *input1, const int8_t *input2,
                   int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = mul_element(p, input1[i], input2[i]);
    }
}

void tinyml_add_broadcast_s8(const tinyml_add_params *p, const int8_t *input1,
                             const int8_t *input2, int8_t *output)
{
    TINYML_BROADCAST_LOOP(p, int8_t, input1, int8_t, input2, output, add_element);
}

void tinyml_mul_broadcast_s8(const tinyml_mul_params *p, const int8_t *input1,
                             const int8_t *input2, int8_t *output)
{
    TINYML_BROADCAST_LOOP(p, int8_t, input1, int8_t, input2, output, mul_element);
}
