/*
 * BATCH_MATMUL, int8 (TFLM's reference BatchMatMul).
 *
 * Each output element is one dot product of an lhs row and an rhs column with both zero
 * points removed, summed in wrapping int32 as TFLM's int32 accumulator, then requantized.
 * The operands are walked through strides, so a transposed (adj_x / adj_y) or broadcast
 * operand is read where it lies instead of being copied to a scratch buffer as TFLM does.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"

void tinyml_batch_matmul_s8(const tinyml_batch_matmul_params *p, const int8_t *lhs,
                            const int8_t *rhs, int8_t *output)
{
    int32_t m, a, c, k;
    for (m = 0; m < p->batches; ++m) {
        const int8_t *lhs_matrix = lhs + p->lhs_offsets[m];
        const int8_t *rhs_matrix = rhs + p->rhs_offsets[m];
        for (a = 0; a < p->rows; ++a) {
            const int8_t *lhs_row = lhs_matrix + a * p->lhs_row_stride;
            for (c = 0; c < p->cols; ++c) {
                const int8_t *rhs_col = rhs_matrix + c * p->rhs_col_stride;
                uint32_t acc = 0;
                for (k = 0; k < p->depth; ++k) {
                    int32_t l = (int32_t)lhs_row[k * p->lhs_depth_stride] + p->lhs_offset;
                    int32_t r = (int32_t)rhs_col[k * p->rhs_depth_stride] + p->rhs_offset;
                    acc += (uint32_t)(l * r);
                }
                *output++ = tinyml_requantize((int32_t)acc, p->multiplier, p->shift,
                                              p->output_offset, -128, 127);
            }
        }
    }
}
