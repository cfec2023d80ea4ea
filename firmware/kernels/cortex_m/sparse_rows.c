/*
 * The row loop of the sparse kernels for Cortex-M cores with the DSP extension.
 *
 * Results are those of portable/sparse_rows.c bit for bit: the same decoding
 * (sparse_rows.h) and sums, and dsp_common.h's exact forms of the requantization. Why a
 * core-specific output stage: a sparse row's dot product is short (at 90 % sparsity a
 * 256-deep row is about 26 entries), so the portable requantization's 64-bit arithmetic
 * would cost as much as the row; here the usual constants (multiplier >= 0, right shift
 * 2..31) take the five-instruction short form, others dsp_common.h's general one.
 */
#include <stdint.h>

#include "tinyml_kernels.h"
#include "dsp_common.h"
#include "fixedpoint.h"
#include "sparse_rows.h"

void tinyml_sparse_rows(const tinyml_sparse_rows_t *m, const int8_t *x, int8_t *out)
{
    const int8_t *stream = m->stream;
    int32_t o;
    for (o = 0; o < m->rows; ++o) {
        const int32_t entries = (int32_t)m->row_entries[o];
        const int32_t multiplier = m->multiplier[o];
        const int32_t shift = m->shift[o];
        int32_t acc = m->value_bits == 4 ? tinyml_sparse_dot4(x, &stream, entries)
                                         : tinyml_sparse_dot8(x, &stream, entries);
        acc = tinyml_wrap_add(acc, m->bias[o]);
        if (tinyml_dsp_short_applies(multiplier, shift)) {
            acc = tinyml_dsp_mbqm_short_raw(acc, multiplier, (int32_t)1 << (-shift - 2),
                                            -shift - 1);
        } else {
            acc = tinyml_dsp_mbqm(acc, tinyml_dsp_requant_prepare(multiplier, shift));
        }
        out[o] = tinyml_dsp_clamp(acc, m->output_offset, m->act_min, m->act_max);
    }
}
