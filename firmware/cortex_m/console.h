/*
 * Text output for firmware without printf (newlib's printf alone is larger than many models).
 *
 * console_write() goes to the semihosting console when built with TINYML_SEMIHOSTING
 * (emulators, debugger-attached boards); otherwise it does nothing unless the application
 * defines its own console_write() (e.g. to a UART): the default is a weak symbol.
 * The format helpers write decimal numbers into a caller's buffer, without division by
 * anything but constants, so they work on every core.
 */
#ifndef TINYML_CONSOLE_H
#define TINYML_CONSOLE_H

#include <stdint.h>

void console_write(const char *text);

/* Append the decimal form of a value at `out`; returns the end (NUL-terminated). */
char *format_u64(char *out, uint64_t value);
char *format_i32(char *out, int32_t value);
/* Append a NUL-terminated string; returns the end. */
char *format_str(char *out, const char *text);

#endif /* TINYML_CONSOLE_H */
