/*
 * The row loop of the sparse kernels with the portable output stage (fixedpoint.h's
 * tinyml_requantize); cortex_m/sparse_rows.c replaces it on cores with the DSP extension.
 */
#include "tinyml_kernels.h"
#include "fixedpoint.h"
#include "sparse_rows.h"

void tinyml_sparse_rows(const tinyml_sparse_rows_t *m, const int8_t *x, int8_t *out)
{
    const int8_t *stream = m->stream;
    int32_t o;
    for (o = 0; o < m->rows; ++o) {
        const int32_t entries = (int32_t)m->row_entries[o];
        int32_t acc = m->value_bits == 4 ? tinyml_sparse_dot4(x, &stream, entries)
                                         : tinyml_sparse_dot8(x, &stream, entries);
        acc = tinyml_wrap_add(acc, m->bias[o]);
        out[o] = tinyml_requantize(acc, m->multiplier[o], m->shift[o], m->output_offset,
                                   m->act_min, m->act_max);
    }
}

void tinyml_sparse_rows2(const tinyml_sparse_rows_t *m, const int8_t *x0, const int8_t *x1,
                         int8_t *out0, int8_t *out1)
{
    tinyml_sparse_rows(m, x0, out0);
    tinyml_sparse_rows(m, x1, out1);
}
