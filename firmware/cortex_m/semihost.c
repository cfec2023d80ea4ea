/*
 * Arm semihosting calls (see semihost.h). Operation numbers from Arm's "Semihosting for
 * AArch32 and AArch64" specification.
 */
#include "semihost.h"

#include <string.h>

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_SEEK = 0x0A,
    SYS_FLEN = 0x0C,
    SYS_EXIT = 0x18,
    SYS_EXIT_EXTENDED = 0x20,
};

#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int32_t semihost_call(int32_t operation, const void *argument)
{
    register int32_t r0 __asm__("r0") = operation;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

int32_t semihost_open(const char *path, const char *mode)
{
    /* The spec's fopen mode numbers: r, rb, r+, r+b, w, wb, w+, w+b, a, ab, a+, a+b. */
    static const char *const modes[] = {"r", "rb", "r+", "r+b", "w", "wb",
                                        "w+", "w+b", "a", "ab", "a+", "a+b"};
    uint32_t m;
    for (m = 0; m < sizeof modes / sizeof modes[0]; ++m) {
        if (strcmp(mode, modes[m]) == 0) {
            break;
        }
    }
    if (m == sizeof modes / sizeof modes[0]) {
        return -1;
    }
    {
        const uint32_t block[3] = {(uint32_t)(uintptr_t)path, m, (uint32_t)strlen(path)};
        return semihost_call(SYS_OPEN, block);
    }
}

int32_t semihost_close(int32_t handle)
{
    const uint32_t block[1] = {(uint32_t)handle};
    return semihost_call(SYS_CLOSE, block);
}

int32_t semihost_read(int32_t handle, void *buffer, uint32_t bytes)
{
    const uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buffer, bytes};
    return semihost_call(SYS_READ, block);
}

int32_t semihost_write(int32_t handle, const void *buffer, uint32_t bytes)
{
    const uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buffer, bytes};
    return semihost_call(SYS_WRITE, block);
}

int32_t semihost_seek(int32_t handle, uint32_t position)
{
    const uint32_t block[2] = {(uint32_t)handle, position};
    return semihost_call(SYS_SEEK, block);
}

int32_t semihost_flen(int32_t handle)
{
    const uint32_t block[1] = {(uint32_t)handle};
    return semihost_call(SYS_FLEN, block);
}

void semihost_write0(const char *text)
{
    semihost_call(SYS_WRITE0, text);
}

void semihost_exit(int32_t code)
{
    /* SYS_EXIT_EXTENDED carries the exit code (QEMU supports it on AArch32); plain SYS_EXIT
     * only says success or failure, for hosts that lack the extension. */
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    semihost_call(SYS_EXIT_EXTENDED, block);
    semihost_call(SYS_EXIT, (const void *)(uintptr_t)(code == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                                   : 0x20023 /* RunTimeError */));
    for (;;) {
    }
}
