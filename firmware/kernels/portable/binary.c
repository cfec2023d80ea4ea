/*
 * The binary family, int8 and bool, with numpy broadcasting over 4 dimensions (broadcast.h,
 * shared with ADD and MUL). In place capable: every output element is written after the
 * input elements at the same position are read.
 *
 * SUB follows TFLM's SubElementwise, SQUARED_DIFFERENCE its SquaredDifference, the
 * comparisons ComparisonWithScaling, MAXIMUM / MINIMUM and SELECT_V2 compare or copy stored
 * codes, as TFLM does. Lowering derives every multiplier (tinyml/reference/kernels/binary.py).
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "broadcast.h"

/* An int8 input offset by its zero point, shifted left and rescaled (the first step of SUB,
 * SQUARED_DIFFERENCE and the comparisons). */
static int32_t rescaled_input(int8_t x, int32_t offset, int32_t left_shift, int32_t multiplier,
                              int32_t shift)
{
    return tinyml_mbqm(tinyml_wrap_shl((int32_t)x + offset, left_shift), multiplier, shift);
}

/* ---- SUB, SQUARED_DIFFERENCE ---------------------------------------------------------------- */

static int8_t sub_element(const tinyml_add_params *p, int8_t a, int8_t b)
{
    const int32_t scaled1 = rescaled_input(a, p->input1_offset, p->left_shift,
                                           p->input1_multiplier, p->input1_shift);
    const int32_t scaled2 = rescaled_input(b, p->input2_offset, p->left_shift,
                                           p->input2_multiplier, p->input2_shift);
    const int32_t raw = tinyml_mbqm(tinyml_wrap_sub(scaled1, scaled2), p->output_multiplier,
                                    p->output_shift);
    return tinyml_add_clamp(raw, p->output_offset, p->act_min, p->act_max);
}

static int8_t squared_difference_element(const tinyml_add_params *p, int8_t a, int8_t b)
{
    const int32_t diff = tinyml_wrap_sub(
        rescaled_input(a, p->input1_offset, p->left_shift, p->input1_multiplier,
                       p->input1_shift),
        rescaled_input(b, p->input2_offset, p->left_shift, p->input2_multiplier,
                       p->input2_shift));
    const int32_t squared = (int32_t)((uint32_t)diff * (uint32_t)diff);
    const int32_t raw = tinyml_mbqm(squared, p->output_multiplier, p->output_shift);
    return tinyml_add_clamp(raw, p->output_offset, p->act_min, p->act_max);
}

void tinyml_sub_s8(const tinyml_add_params *p, const int8_t *input1, const int8_t *input2,
                   int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = sub_element(p, input1[i], input2[i]);
    }
}

void tinyml_sub_broadcast_s8(const tinyml_add_params *p, const int8_t *input1,
                             const int8_t *input2, int8_t *output)
{
    TINYML_BROADCAST_LOOP(p, int8_t, input1, int8_t, input2, output, sub_element);
}

void tinyml_squared_difference_s8(const tinyml_add_params *p, const int8_t *input1,
                                  const int8_t *input2, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = squared_difference_element(p, input1[i], input2[i]);
    }
}

void tinyml_squared_difference_broadcast_s8(const tinyml_add_params *p, const int8_t *input1,
                                            const int8_t *input2, int8_t *output)
{
    TINYML_BROADCAST_LOOP(p, int8_t, input1, int8_t, input2, output,
                          squared_difference_element);
}

/* ---- MAXIMUM, MINIMUM ----------------------------------------------------------------------- */

#define TINYML_MAX_ELEMENT(P, A, B) ((A) > (B) ? (A) : (B))
#define TINYML_MIN_ELEMENT(P, A, B) ((A) < (B) ? (A) : (B))

void tinyml_maximum_s8(const tinyml_broadcast_params *p, const int8_t *input1,
                       const int8_t *input2, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = TINYML_MAX_ELEMENT(p, input1[i], input2[i]);
    }
}

void tinyml_maximum_broadcast_s8(const tinyml_broadcast_params *p, const int8_t *input1,
                                 const int8_t *input2, int8_t *output)
{
    TINYML_BROADCAST_LOOP(p, int8_t, input1, int8_t, input2, output, TINYML_MAX_ELEMENT);
}

void tinyml_minimum_s8(const tinyml_broadcast_params *p, const int8_t *input1,
                       const int8_t *input2, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = TINYML_MIN_ELEMENT(p, input1[i], input2[i]);
    }
}

void tinyml_minimum_broadcast_s8(const tinyml_broadcast_params *p, const int8_t *input1,
                                 const int8_t *input2, int8_t *output)
{
    TINYML_BROADCAST_LOOP(p, int8_t, input1, int8_t, input2, output, TINYML_MIN_ELEMENT);
}

/* ---- comparisons ---------------------------------------------------------------------------- */

static uint8_t compare_element(const tinyml_compare_params *p, int8_t a, int8_t b)
{
    const int32_t x = rescaled_input(a, p->input1_offset, p->left_shift, p->input1_multiplier,
                                     p->input1_shift);
    const int32_t y = rescaled_input(b, p->input2_offset, p->left_shift, p->input2_multiplier,
                                     p->input2_shift);
    switch (p->op) {
    case 0: return (uint8_t)(x == y);
    case 1: return (uint8_t)(x != y);
    case 2: return (uint8_t)(x > y);
    case 3: return (uint8_t)(x >= y);
    case 4: return (uint8_t)(x < y);
    default: return (uint8_t)(x <= y);
    }
}

void tinyml_compare_s8(const tinyml_compare_params *p, const int8_t *input1,
                       const int8_t *input2, uint8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = compare_element(p, input1[i], input2[i]);
    }
}

void tinyml_compare_broadcast_s8(const tinyml_compare_params *p, const int8_t *input1,
                                 const int8_t *input2, uint8_t *output)
{
    TINYML_BROADCAST_LOOP(p, int8_t, input1, int8_t, input2, output, compare_element);
}

/* ---- SELECT_V2 ------------------------------------------------------------------------------ */

void tinyml_select_s8(const tinyml_select_params *p, const uint8_t *condition,
                      const int8_t *x, const int8_t *y, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = condition[i] ? x[i] : y[i];
    }
}

/* Three operands: broadcast.h's loop with a third stride vector. */
void tinyml_select_broadcast_s8(const tinyml_select_params *p, const uint8_t *condition,
                                const int8_t *x, const int8_t *y, int8_t *output)
{
    const int32_t *d = p->shape;
    const int32_t *s1 = p->strides1;
    const int32_t *s2 = p->strides2;
    const int32_t *s3 = p->strides3;
    int32_t i0, i1, i2, i3;
    for (i0 = 0; i0 < d[0]; ++i0) {
        for (i1 = 0; i1 < d[1]; ++i1) {
            for (i2 = 0; i2 < d[2]; ++i2) {
                const uint8_t *c = condition + i0 * s1[0] + i1 * s1[1] + i2 * s1[2];
                const int8_t *a = x + i0 * s2[0] + i1 * s2[1] + i2 * s2[2];
                const int8_t *b = y + i0 * s3[0] + i1 * s3[1] + i2 * s3[2];
                for (i3 = 0; i3 < d[3]; ++i3) {
                    *output++ = c[i3 * s1[3]] ? a[i3 * s2[3]] : b[i3 * s3[3]];
                }
            }
        }
    }
}

/* ---- LOGICAL_AND, LOGICAL_OR, LOGICAL_NOT --------------------------------------------------- */

static uint8_t logical_element(const tinyml_logical_params *p, uint8_t a, uint8_t b)
{
    return (uint8_t)(p->is_or ? (a || b) : (a && b));
}

void tinyml_logical(const tinyml_logical_params *p, const uint8_t *input1,
                    const uint8_t *input2, uint8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = logical_element(p, input1[i], input2[i]);
    }
}

void tinyml_logical_broadcast(const tinyml_logical_params *p, const uint8_t *input1,
                              const uint8_t *input2, uint8_t *output)
{
    TINYML_BROADCAST_LOOP(p, uint8_t, input1, uint8_t, input2, output, logical_element);
}

void tinyml_logical_not(const tinyml_logical_not_params *p, const uint8_t *input,
                        uint8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = (uint8_t)!input[i];
    }
}
