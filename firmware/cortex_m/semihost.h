/*
 * Arm semihosting: the firmware's only I/O on an emulator or a debugger-attached board.
 *
 * A semihosting call is a `bkpt 0xab` with the operation in r0 and a pointer to its argument
 * block in r1 (the M-profile convention). QEMU run with `-semihosting-config enable=on,
 * target=native` services it on the host: files open relative to QEMU's working directory,
 * which is how the verification harness exchanges binary inputs and outputs with tinyml
 * (exact bytes, no text formatting, one SYS_READ per sample).
 *
 * Without a debugger a real core escalates `bkpt` to a HardFault, so board firmware only calls
 * these when built with TINYML_SEMIHOSTING.
 */
#ifndef TINYML_SEMIHOST_H
#define TINYML_SEMIHOST_H

#include <stdint.h>

/* Open a host file; mode as fopen's ("rb", "wb", ...). Returns a handle, or -1. */
int32_t semihost_open(const char *path, const char *mode);
int32_t semihost_close(int32_t handle);
/* Returns the number of bytes *not* transferred (0 when all were). */
int32_t semihost_read(int32_t handle, void *buffer, uint32_t bytes);
int32_t semihost_write(int32_t handle, const void *buffer, uint32_t bytes);
/* Move to an absolute byte position; 0 on success. */
int32_t semihost_seek(int32_t handle, uint32_t position);
/* Length in bytes of an open file, or -1. */
int32_t semihost_flen(int32_t handle);
/* Write a NUL-terminated string to the debug console (QEMU: its stderr). */
void semihost_write0(const char *text);
/* Stop the program; QEMU exits with `code`. Does not return. */
void semihost_exit(int32_t code) __attribute__((noreturn));

#endif /* TINYML_SEMIHOST_H */
