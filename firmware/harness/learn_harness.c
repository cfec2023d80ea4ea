/*
 * Learning device harness: a trainable model (tinyml compile --trainable) as a long-lived
 * device answering commands, for tinyml/learn/device.py.
 *
 * Transport: stdin/stdout on the host; built with TINYML_SEMIHOSTING (Cortex-M in QEMU), the
 * semihosting files "learn.in" and "learn.out" in QEMU's working directory, which the host
 * makes named pipes. Binary, little-endian, no framing beyond fixed sizes:
 *
 *   command byte, payload                     reply (always starts with int32 status)
 *   'H'                                       status 0, u32 version, u32 input bytes,
 *                                             u32 parameters (floats), u32 classes
 *   'P' input                                 status, i32 argmax, float probabilities[classes]
 *   'L' i32 label, f32 lr, input              status (tinyml_learn's), i32 argmax before the
 *                                             step (the prediction the stream is scored on)
 *   'G'                                       status, float params[parameters]
 *   'S' float params[parameters]              status (tinyml_set_params's)
 *   'Q'                                       status 0, then the program ends
 *
 * A failing tinyml_invoke() answers with its status (nonzero) and the rest of the reply
 * zeroed. End of input ends the program (exit 0).
 */
#include <stdint.h>
#include <string.h>

#include "model.h"

#define PROTOCOL_VERSION 1u

#ifdef TINYML_SEMIHOSTING
#include "semihost.h"

static int32_t in_file = -1, out_file = -1;

static int transport_open(void)
{
    in_file = semihost_open("learn.in", "rb");
    out_file = semihost_open("learn.out", "wb");
    return in_file >= 0 && out_file >= 0;
}

/* A pipe may deliver fewer bytes than asked: read until all arrived or the input ended. */
static int read_exact(void *buffer, uint32_t bytes)
{
    uint8_t *p = (uint8_t *)buffer;
    while (bytes > 0) {
        const int32_t missing = semihost_read(in_file, p, bytes);
        const uint32_t got = bytes - (uint32_t)missing;
        if (missing < 0 || got == 0) {
            return 0;
        }
        p += got;
        bytes -= got;
    }
    return 1;
}

static int write_all(const void *buffer, uint32_t bytes)
{
    return semihost_write(out_file, buffer, bytes) == 0;
}

static void flush(void)
{
}
#else
#include <stdio.h>

static int transport_open(void)
{
    return 1;
}

static int read_exact(void *buffer, uint32_t bytes)
{
    return fread(buffer, 1, bytes, stdin) == bytes;
}

static int write_all(const void *buffer, uint32_t bytes)
{
    return fwrite(buffer, 1, bytes, stdout) == bytes;
}

static void flush(void)
{
    fflush(stdout);
}
#endif

static float params[TINYML_PARAMS_COUNT];

static int reply_status(int32_t status)
{
    return write_all(&status, sizeof status);
}

static int32_t argmax(void)
{
    const tinyml_output_t *out = tinyml_output();
    int32_t i, best = 0;
    for (i = 1; i < TINYML_OUTPUT_ELEMENTS; ++i) {
        if (out[i] > out[best]) {
            best = i;
        }
    }
    return best;
}

static int read_input(void)
{
    int32_t i;
    for (i = 0; i < TINYML_NUM_INPUTS; ++i) {
        if (!read_exact(tinyml_input_n(i), (uint32_t)tinyml_input_bytes_n(i))) {
            return 0;
        }
    }
    return 1;
}

static int serve(uint8_t command)
{
    int32_t status, best;
    switch (command) {
    case 'H': {
        const uint32_t info[4] = {PROTOCOL_VERSION, (uint32_t)TINYML_INPUT_BYTES,
                                  (uint32_t)TINYML_PARAMS_COUNT,
                                  (uint32_t)TINYML_OUTPUT_ELEMENTS};
        return reply_status(0) && write_all(info, sizeof info);
    }
    case 'P': {
        static const float zeros[TINYML_OUTPUT_ELEMENTS];
        if (!read_input()) {
            return 0;
        }
        status = tinyml_invoke();
        best = status == 0 ? argmax() : 0;
        return reply_status(status) && write_all(&best, sizeof best) &&
               write_all(status == 0 ? (const void *)tinyml_output() : (const void *)zeros,
                         sizeof zeros);
    }
    case 'L': {
        int32_t label;
        float lr;
        if (!read_exact(&label, sizeof label) || !read_exact(&lr, sizeof lr) || !read_input()) {
            return 0;
        }
        status = tinyml_invoke();
        best = 0;
        if (status == 0) {
            best = argmax();
            status = tinyml_learn((int)label, lr);
        }
        return reply_status(status) && write_all(&best, sizeof best);
    }
    case 'G':
        status = tinyml_get_params(params, sizeof params);
        return reply_status(status) && write_all(params, sizeof params);
    case 'S':
        if (!read_exact(params, sizeof params)) {
            return 0;
        }
        return reply_status(tinyml_set_params(params, sizeof params));
    case 'Q':
        reply_status(0);
        flush();
        return 0;
    default:
        return reply_status(-100);
    }
}

int main(void)
{
    uint8_t command;
    if (!transport_open()) {
        return 10;
    }
    tinyml_reset();
    while (read_exact(&command, 1)) {
        const int more = serve(command);
        flush();
        if (!more) {
            break;
        }
    }
    return 0;
}
