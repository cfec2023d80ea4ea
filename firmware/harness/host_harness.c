/*
 * Host verification harness: runs the generated model on a stream of samples.
 *
 * stdin:  samples back to back; a sample is every input's bytes in input order.
 * stdout: for each sample, every output's bytes in output order.
 * Exit status 0 when the input ended on a sample boundary, 1 otherwise.
 *
 * The samples are one stream: the model's state (a streaming model's variables) is reset once
 * at start and carries over from each sample to the next, as on a device.
 *
 * Built with TINYML_ARENA_JUNK (tinyml.sim.host.build does), the arena is filled with junk
 * before each sample: a plan or kernel that reads bytes it did not write shows as a mismatch.
 *
 * A model compiled with --input-stream rows (TINYML_INPUT_ROWS defined) has no input buffer:
 * the harness reads the sample into its own array, outside the model's arena, and hands it
 * over through tinyml_input_rows(), checking the contract (every row exactly once, in
 * increasing order); a broken contract exits 3. TINYML_INPUT_ROWS_TRACE prints each request
 * ("rows <first> <count> read|skip") on stderr.
 *
 * Binary stdio keeps it exact (no text formatting of int8 or float values) and lets one
 * process run hundreds of samples, so a verification costs one compile and one launch.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model.h"

#ifdef TINYML_INPUT_ROWS
static tinyml_input_t sample_input[TINYML_INPUT_ELEMENTS];
static int32_t next_row;     /* the row the next request must start at */
static int contract_broken;

void tinyml_input_rows(int32_t first_row, int32_t count, tinyml_input_t *dst)
{
#ifdef TINYML_INPUT_ROWS_TRACE
    fprintf(stderr, "rows %d %d %s\n", (int)first_row, (int)count, dst ? "read" : "skip");
#endif
    if (first_row != next_row || count <= 0 || first_row + count > TINYML_INPUT_ROWS) {
        contract_broken = 1;
        return;
    }
    if (dst != NULL) {
        memcpy(dst, sample_input + (size_t)first_row * TINYML_INPUT_ROW_ELEMENTS,
               (size_t)count * TINYML_INPUT_ROW_ELEMENTS * sizeof(tinyml_input_t));
    }
    next_row = first_row + count;
}
#endif

#ifdef TINYML_ARENA_JUNK
void tinyml_arena_junk(uint32_t seed); /* model.c: junk in every arena byte */
#endif

static int read_exact(void *buffer, int bytes)
{
    return fread(buffer, 1, (size_t)bytes, stdin) == (size_t)bytes;
}

int main(void)
{
    unsigned sample = 0;
    tinyml_reset();
    for (;; ++sample) {
        int i;
        int c = getchar();
        if (c == EOF) {
            return 0;
        }
        ungetc(c, stdin);
#ifdef TINYML_ARENA_JUNK
        tinyml_arena_junk((uint32_t)sample); /* before the inputs, which live in the arena */
#endif
        for (i = 0; i < TINYML_NUM_INPUTS; i++) {
#ifdef TINYML_INPUT_ROWS
            void *into = i == 0 ? (void *)sample_input : tinyml_input_n(i);
#else
            void *into = tinyml_input_n(i);
#endif
            if (!read_exact(into, tinyml_input_bytes_n(i))) {
                fprintf(stderr, "harness: truncated sample\n");
                return 1;
            }
        }
#ifdef TINYML_INPUT_ROWS
        next_row = 0;
#endif
        if (tinyml_invoke() != 0) {
            fprintf(stderr, "harness: tinyml_invoke failed\n");
            return 2;
        }
#ifdef TINYML_INPUT_ROWS
        if (contract_broken || next_row != TINYML_INPUT_ROWS) {
            fprintf(stderr, "harness: tinyml_input_rows was not asked for every row once, in "
                            "order (sample %u, %d of %d rows)\n", sample, (int)next_row,
                    TINYML_INPUT_ROWS);
            return 3;
        }
#endif
        for (i = 0; i < TINYML_NUM_OUTPUTS; i++) {
            fwrite(tinyml_output_n(i), 1, (size_t)tinyml_output_bytes_n(i), stdout);
        }
    }
}
