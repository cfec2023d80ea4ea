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
 * Binary stdio keeps it exact (no text formatting of int8 or float values) and lets one
 * process run hundreds of samples, so a verification costs one compile and one launch.
 */
#include <stdint.h>
#include <stdio.h>

#include "model.h"

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
            if (!read_exact(tinyml_input_n(i), tinyml_input_bytes_n(i))) {
                fprintf(stderr, "harness: truncated sample\n");
                return 1;
            }
        }
        if (tinyml_invoke() != 0) {
            fprintf(stderr, "harness: tinyml_invoke failed\n");
            return 2;
        }
        for (i = 0; i < TINYML_NUM_OUTPUTS; i++) {
            fwrite(tinyml_output_n(i), 1, (size_t)tinyml_output_bytes_n(i), stdout);
        }
    }
}
