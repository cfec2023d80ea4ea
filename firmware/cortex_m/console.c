/* Console output and number formatting (see console.h). */
#include "console.h"

#ifdef TINYML_SEMIHOSTING
#include "semihost.h"
#endif

__attribute__((weak)) void console_write(const char *text)
{
#ifdef TINYML_SEMIHOSTING
    semihost_write0(text);
#else
    (void)text;
#endif
}

char *format_str(char *out, const char *text)
{
    while (*text) {
        *out++ = *text++;
    }
    *out = '\0';
    return out;
}

char *format_u64(char *out, uint64_t value)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (int)(value % 10u));
        value /= 10u;
    } while (value != 0u);
    while (n > 0) {
        *out++ = digits[--n];
    }
    *out = '\0';
    return out;
}

char *format_i32(char *out, int32_t value)
{
    if (value < 0) {
        *out++ = '-';
        return format_u64(out, (uint64_t)(-(int64_t)value));
    }
    return format_u64(out, (uint64_t)value);
}
