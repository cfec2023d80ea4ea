/*
 * Reading packed int4 filter rows (private header of the *_s4 kernels).
 *
 * The layout (tinyml/codegen/int4_layout.py, which packs them): a row of K values takes
 * (K + 1) / 2 bytes; per full group of 8 values, byte j (0..3) holds value j in its low nibble
 * and value 4 + j in its high nibble; the last K mod 8 values follow two to a byte, low nibble
 * first. Nibbles are two's complement 4-bit values.
 */
#ifndef TINYML_INT4_H
#define TINYML_INT4_H

#include <stdint.h>

/* Bytes of one packed row of k values. */
static inline int32_t tinyml_s4_row_bytes(int32_t k)
{
    return (k + 1) >> 1;
}

/* A nibble (0..15) as its two's complement value (-8..7). */
static inline int32_t tinyml_s4_sign(uint32_t nibble)
{
    return (int32_t)(nibble ^ 8u) - 8;
}

/* Value `index` of a packed row of k values. */
static inline int32_t tinyml_s4_value(const int8_t *row, int32_t index, int32_t k)
{
    const int32_t full = k & ~7;
    uint32_t byte;
    int32_t high;
    if (index < full) {
        byte = (uint8_t)row[((index >> 3) << 2) + (index & 3)];
        high = (index >> 2) & 1;
    } else {
        const int32_t i = index - full;
        byte = (uint8_t)row[(full >> 1) + (i >> 1)];
        high = i & 1;
    }
    return tinyml_s4_sign(high ? byte >> 4 : byte & 15u);
}

/* The k values of a packed row as int8, at dst[0 .. k-1]. */
static inline void tinyml_s4_unpack_row(int8_t *dst, const int8_t *row, int32_t k)
{
    const int32_t full = k & ~7;
    int32_t g, j, i;
    for (g = 0; g < full; g += 8, row += 4, dst += 8) {
        for (j = 0; j < 4; ++j) {
            const uint32_t byte = (uint8_t)row[j];
            dst[j] = (int8_t)tinyml_s4_sign(byte & 15u);
            dst[4 + j] = (int8_t)tinyml_s4_sign(byte >> 4);
        }
    }
    for (i = 0; i < k - full; ++i) {
        const uint32_t byte = (uint8_t)row[i >> 1];
        dst[i] = (int8_t)tinyml_s4_sign((i & 1) ? byte >> 4 : byte & 15u);
    }
}

#endif /* TINYML_INT4_H */
