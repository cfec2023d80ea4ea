/*
 * The 4-D walk shared by the reduction kernels (MEAN and SUM in mean.c, REDUCE_MAX/MIN in
 * reductions.c): from the input shape and the per-dimension "reduced" flags, the extent of
 * the kept positions, the extent of the reduced block under each, and the row-major strides.
 */
#ifndef TINYML_REDUCE_LAYOUT_H
#define TINYML_REDUCE_LAYOUT_H

#include <stdint.h>

static inline void tinyml_reduce_layout(const int32_t *shape, const int32_t *reduced_flags,
                                        int32_t kept[4], int32_t reduced[4], int32_t stride[4])
{
    int32_t k;
    stride[3] = 1;
    for (k = 2; k >= 0; --k) {
        stride[k] = stride[k + 1] * shape[k + 1];
    }
    for (k = 0; k < 4; ++k) {
        kept[k] = reduced_flags[k] ? 1 : shape[k];
        reduced[k] = reduced_flags[k] ? shape[k] : 1;
    }
}

#endif
