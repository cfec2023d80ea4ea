/*
 * Internal to the sparse kernels (sparse.c, sparse_rows.c and cortex_m/sparse_rows.c): the
 * decoding of run-length rows (the format is in tinyml_kernels.h) and the row loop the
 * entry points share. A core-specific sparse_rows.c replaces the portable one (its output
 * stage), the decoding stays the same.
 */
#ifndef TINYML_SPARSE_ROWS_H
#define TINYML_SPARSE_ROWS_H

#include <stdint.h>

/* A filter in run-length rows with its output stage: row o gives output o. */
typedef struct {
    int32_t rows;
    int32_t value_bits;          /* 4 or 8 */
    const uint16_t *row_entries;
    const int8_t *stream;
    const int32_t *bias;         /* input offset folded in */
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
} tinyml_sparse_rows_t;

/* out[o] for every row o on the input vector x. */
void tinyml_sparse_rows(const tinyml_sparse_rows_t *m, const int8_t *x, int8_t *out);

/* The same on two input vectors at once (two pixels of a 1x1 convolution): out0 from x0,
 * out1 from x1. A core may decode each entry once for both. */
void tinyml_sparse_rows2(const tinyml_sparse_rows_t *m, const int8_t *x0, const int8_t *x1,
                         int8_t *out0, int8_t *out1);

/* The dot product of one row of 8-bit entries with x; *stream advances past the row. Written
 * with post-increments so that each entry is an add, a load with write-back, a load and a
 * multiply-accumulate on cores that have them. */
static inline int32_t tinyml_sparse_dot8(const int8_t *x, const int8_t **stream,
                                         int32_t entries)
{
    const int8_t *s = *stream;
    int32_t acc = 0;
    int32_t k;
    for (k = entries >> 1; k > 0; --k) {
        const uint32_t skips = (uint8_t)*s++;
        const int32_t v0 = *s++;
        const int32_t v1 = *s++;
        x += skips & 15u;
        acc += (int32_t)*x++ * v0;
        x += skips >> 4;
        acc += (int32_t)*x++ * v1;
    }
    if (entries & 1) {
        const uint32_t skip = (uint8_t)*s++ & 15u;
        acc += (int32_t)x[skip] * (int32_t)*s++;
    }
    *stream = s;
    return acc;
}

/* The same for 4-bit entries: one byte each, value in the high nibble (code >> 4, an
 * arithmetic shift of a negative int: implementation-defined in C99, arithmetic on every
 * compiler tinyml targets, as fixedpoint.h assumes too), skip in the low one. */
static inline int32_t tinyml_sparse_dot4(const int8_t *x, const int8_t **stream,
                                         int32_t entries)
{
    const int8_t *s = *stream;
    int32_t acc = 0;
    int32_t k;
    for (k = entries >> 1; k > 0; --k) {
        const int32_t c0 = *s++;
        const int32_t c1 = *s++;
        x += (uint32_t)c0 & 15u;
        acc += (int32_t)*x++ * (c0 >> 4);
        x += (uint32_t)c1 & 15u;
        acc += (int32_t)*x++ * (c1 >> 4);
    }
    if (entries & 1) {
        const int32_t c0 = *s++;
        acc += (int32_t)x[(uint32_t)c0 & 15u] * (c0 >> 4);
    }
    *stream = s;
    return acc;
}

#endif /* TINYML_SPARSE_ROWS_H */
