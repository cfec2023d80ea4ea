/*
 * Cortex-M verification harness: runs the generated model on samples under QEMU, exchanging
 * data with tinyml through semihosting files in QEMU's working directory.
 *
 * input.bin   samples back to back; a sample is every input's bytes in input order.
 * output.bin  for each sample, every output's bytes in output order.
 * stats.txt   one line per fact:  "sample <i> ticks <n>" (SysTick ticks of tinyml_invoke),
 *             "stack <bytes>" (tinyml_invoke's stack high-water mark), with TINYML_PROFILE
 *             "layer <k> ticks <n>" (per layer, first sample), then "done <samples>".
 *
 * --input-stream rows (TINYML_INPUT_ROWS): the sample is read into the harness's own array
 * and handed over through tinyml_input_rows(), which checks the contract (every row exactly
 * once, in increasing order); a broken contract exits 14.
 *
 * The stack is measured on a separate, untimed run of the first sample with SysTick stopped,
 * so no interrupt frame is counted and the timed runs do not pay for the painting. Exit
 * status: 0, or 10 (cannot open a file), 11 (truncated sample), 12 (tinyml_invoke failed),
 * 13 (a write failed), 14 (tinyml_input_rows' contract broken).
 */
#include <stdint.h>
#include <string.h>

#include "console.h"
#include "counter.h"
#include "model.h"
#include "semihost.h"
#include "stack.h"

#ifdef TINYML_PROFILE
/* Called by the profiling build's model.c: before the first layer, and after layer k. */
static uint64_t layer_ticks[TINYML_NUM_LAYERS];
static uint64_t last_mark;

void tinyml_profile_start(void);
void tinyml_profile_layer(int32_t k);

void tinyml_profile_start(void)
{
    int32_t k;
    for (k = 0; k < TINYML_NUM_LAYERS; ++k) {
        layer_ticks[k] = 0;
    }
    last_mark = tinyml_counter_ticks();
}

/* Adds up: the layers of a patch stage report once per patch. */
void tinyml_profile_layer(int32_t k)
{
    const uint64_t now = tinyml_counter_ticks();
    layer_ticks[k] += now - last_mark;
    last_mark = now;
}
#endif

static int32_t stats_file;

#ifdef TINYML_INPUT_ROWS
static tinyml_input_t sample_input[TINYML_INPUT_ELEMENTS];
static int32_t next_row;     /* the row the next request must start at */
static int contract_broken;

void tinyml_input_rows(int32_t first_row, int32_t count, tinyml_input_t *dst)
{
    if (first_row != next_row || count <= 0 || first_row + count > TINYML_INPUT_ROWS) {
        contract_broken = 1;
        return;
    }
    if (dst != NULL) {
        memcpy(dst, sample_input + first_row * TINYML_INPUT_ROW_ELEMENTS,
               (size_t)count * TINYML_INPUT_ROW_ELEMENTS * sizeof(tinyml_input_t));
    }
    next_row = first_row + count;
}

/* Before each tinyml_invoke(): the next one asks for row 0 first. */
static void rows_restart(void)
{
    next_row = 0;
}

static int rows_complete(void)
{
    return !contract_broken && next_row == TINYML_INPUT_ROWS;
}
#else
static void rows_restart(void)
{
}

static int rows_complete(void)
{
    return 1;
}
#endif

static int emit(const char *line)
{
    uint32_t length = 0;
    while (line[length]) {
        ++length;
    }
    return semihost_write(stats_file, line, length) == 0;
}

static int emit_pair(const char *key, uint64_t index, const char *key2, uint64_t value)
{
    char line[96];
    char *p = format_str(line, key);
    p = format_u64(p, index);
    if (key2) {
        p = format_str(p, key2);
        p = format_u64(p, value);
    }
    format_str(p, "\n");
    return emit(line);
}

static int32_t fail(const char *message, int32_t status)
{
    console_write(message);
    return status;
}

#ifdef TINYML_ARENA_JUNK
void tinyml_arena_junk(uint32_t seed); /* model.c: junk in every arena byte */
static uint32_t junk_seed;
#endif

/* Reads one sample; 1 on success, 0 at the end of the input, -1 if truncated. With
 * TINYML_ARENA_JUNK the arena is filled with junk first (the inputs live in it). */
static int read_sample(int32_t file)
{
    int32_t i;
#ifdef TINYML_ARENA_JUNK
    tinyml_arena_junk(junk_seed++);
#endif
    for (i = 0; i < TINYML_NUM_INPUTS; ++i) {
        const int32_t bytes = tinyml_input_bytes_n(i);
#ifdef TINYML_INPUT_ROWS
        void *into = i == 0 ? (void *)sample_input : tinyml_input_n(i);
#else
        void *into = tinyml_input_n(i);
#endif
        const int32_t missing = semihost_read(file, into, (uint32_t)bytes);
        if (missing == bytes && i == 0) {
            return 0;
        }
        if (missing != 0) {
            return -1;
        }
    }
    return 1;
}

static int write_outputs(int32_t file)
{
    int32_t i;
    for (i = 0; i < TINYML_NUM_OUTPUTS; ++i) {
        const int32_t bytes = tinyml_output_bytes_n(i);
        if (semihost_write(file, tinyml_output_n(i), (uint32_t)bytes) != 0) {
            return 0;
        }
    }
    return 1;
}

int main(void)
{
    const int32_t input_file = semihost_open("input.bin", "rb");
    const int32_t output_file = semihost_open("output.bin", "wb");
    uint64_t sample;
    stats_file = semihost_open("stats.txt", "w");
    tinyml_reset(); /* the samples are one stream (a streaming model's state carries over) */
    if (input_file < 0 || output_file < 0 || stats_file < 0) {
        return fail("harness: cannot open input.bin, output.bin or stats.txt\n", 10);
    }
    for (sample = 0;; ++sample) {
        int status = 0;
        uint64_t start, end;
        int got = read_sample(input_file);
        if (got == 0) {
            break;
        }
        if (sample == 0) {
            uint32_t stack = 0;
            rows_restart();
            stack = got > 0 ? tinyml_stack_measure(tinyml_invoke, &status) : 0;
            if (got > 0 && (status != 0 || !emit_pair("stack ", stack, 0, 0))) {
                return fail("harness: the stack measurement run failed\n", 12);
            }
            /* That run may have overwritten the input inside the arena, and advanced a
             * streaming model's state: reset the state and read the input again. */
            tinyml_reset();
            if (semihost_seek(input_file, 0) != 0) {
                return fail("harness: cannot seek in input.bin\n", 10);
            }
            got = read_sample(input_file);
        }
        if (got < 0) {
            return fail("harness: truncated sample in input.bin\n", 11);
        }
        rows_restart();
        tinyml_counter_start();
        start = tinyml_counter_ticks();
        status = tinyml_invoke();
        end = tinyml_counter_ticks();
        if (status != 0) {
            return fail("harness: tinyml_invoke failed\n", 12);
        }
        if (!rows_complete()) {
            return fail("harness: tinyml_input_rows was not asked for every row once, in "
                        "order\n", 14);
        }
        if (!write_outputs(output_file) || !emit_pair("sample ", sample, " ticks ", end - start)) {
            return fail("harness: cannot write output.bin or stats.txt\n", 13);
        }
    }
#ifdef TINYML_PROFILE
    {
        int32_t k;
        for (k = 0; k < TINYML_NUM_LAYERS; ++k) {
            if (!emit_pair("layer ", (uint64_t)k, " ticks ", layer_ticks[k])) {
                return fail("harness: cannot write stats.txt\n", 13);
            }
        }
    }
#endif
    if (!emit_pair("done ", sample, 0, 0)) {
        return fail("harness: cannot write stats.txt\n", 13);
    }
    semihost_close(input_file);
    semihost_close(output_file);
    semihost_close(stats_file);
    return 0;
}
