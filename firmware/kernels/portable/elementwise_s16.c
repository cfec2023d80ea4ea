/*
 * ADD and MUL of 16x8 models, with numpy broadcasting over 4 dimensions.
 *
 * TFLM's int16 ADD takes the general path (reference_ops::Add with pot_scale false): the int8
 * arithmetic with a left shift of 15 instead of 20 (lowering sets it). MUL is the int8
 * MulElementwise template at int16: the product of two int16 values fits int32.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "broadcast.h"

static int16_t add_element(const tinyml_add_params *p, int16_t a, int16_t b)
{
    const int32_t scaled1 = tinyml_mbqm(tinyml_wrap_shl((int32_t)a + p->input1_offset,
                                                        p->left_shift),
                                        p->input1_multiplier, p->input1_shift);
    const int32_t scaled2 = tinyml_mbqm(tinyml_wrap_shl((int32_t)b + p->input2_offset,
                                                        p->left_shift),
                                        p->input2_multiplier, p->input2_shift);
    const int32_t raw = tinyml_mbqm(tinyml_wrap_add(scaled1, scaled2), p->output_multiplier,
                                    p->output_shift);
    int64_t y = (int64_t)raw + p->output_offset;
    y = y < p->act_min ? p->act_min : y > p->act_max ? p->act_max : y;
    return (int16_t)y;
}

static int16_t mul_element(const tinyml_mul_params *p, int16_t a, int16_t b)
{
    const int32_t product = ((int32_t)a + p->input1_offset) * ((int32_t)b + p->input2_offset);
    return tinyml_clamp_s16(tinyml_wrap_add(tinyml_mbqm(product, p->output_multiplier,
                                                        p->output_shift),
                                            p->output_offset),
                            p->act_min, p->act_max);
}

void tinyml_add_s16(const tinyml_add_params *p, const int16_t *input1, const int16_t *input2,
                    int16_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = add_element(p, input1[i], input2[i]);
    }
}

void tinyml_mul_s16(const tinyml_mul_params *p, const int16_t *input1, const int16_t *input2,
                    int16_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = mul_element(p, input1[i], input2[i]);
    }
}

void tinyml_add_broadcast_s16(const tinyml_add_params *p, const int16_t *input1,
                              const int16_t *input2, int16_t *output)
{
    TINYML_BROADCAST_LOOP(p, int16_t, input1, int16_t, input2, output, add_element);
}

void tinyml_mul_broadcast_s16(const tinyml_mul_params *p, const int16_t *input1,
                              const int16_t *input2, int16_t *output)
{
    TINYML_BROADCAST_LOOP(p, int16_t, input1, int16_t, input2, output, mul_element);
}
