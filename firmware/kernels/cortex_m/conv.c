/*
 * CONV_2D (generic and 1x1) and CONV_2D_ADD for Cortex-M cores with the DSP extension.
 *
 * Results are those of portable/conv.c bit for bit: the same int32 accumulation, in another
 * order (integer addition modulo 2^32 is associative), then the same requantization
 * (dsp_common.h's forms of it are exact).
 *
 * Scheme: output pixels are taken N at a time (a "block": N = 8, or 4 for windows of more
 * than CONV_WIDE_K values, which bounds the scratch). The input window of each pixel (its
 * "column": K = filter_h * filter_w * filter_c values) is copied to scratch as int16 with the
 * input offset added; taps in the padding become 0, which is what skipping them means. Then
 * each output channel reads its filter row once for the N columns: per group of four values,
 * one load and two SXTB16 unpack the filter bytes, and per pixel one LDRD and two SMLAD do
 * four multiply-accumulates. A column costs about 1.5 instructions per value to build and
 * serves every output channel; a channel's bias and requantization constants serve N
 * outputs.
 *
 * Block layout in scratch (int16 elements, K4 = K rounded down to a multiple of 4): for each
 * group of four values k..k+3, pixel 0's words (v[k], v[k+2]), (v[k+1], v[k+3]), then pixels
 * 1 .. N-1 likewise. That is the lane order SXTB16 and SXTB16 ROR #8 give four filter bytes
 * (dsp_common.h's "interleaved" unpacking), so filters need no reordering. Each of the
 * K - K4 values after the last group takes N/2 words (pixels 0 and 1, 2 and 3, ...), which
 * SMLABB/SMLATB read.
 *
 * Blocks of 7 (conv_mac7) when lowering asks for them (the params' `block`, see
 * conv_block_cap in tinyml/codegen/lowering.py): int8 CONV_2D whose windows are a multiple
 * of four values, when 7 computes fewer pixels than 8; the scratch is then 2 * 7 * K bytes.
 *
 * Blocks of 4 where 8 would be taken when lowering asks for them (`block` 4): plans that
 * put the smallest arena first (--optimize memory), where the block is at the peak; the
 * 4-pixel loop computes the same sums at a few more instructions per MAC.
 *
 * Scratch (lowering's conv_scratch_bytes): 2 * N * K bytes plus 3 for word alignment, and
 * for CONV_2D_ADD 2 KB more for its operand tables (see conv_add).
 *
 * Packed int4 filters (the *_s4 entry points; layout in tinyml/codegen/int4_layout.py): the
 * same columns, blocks and output stages; only the filter side of the multiply-accumulate
 * differs (conv_s4_mac). A filter word holds a group of eight values: (w << 4) & 0xF0F0F0F0
 * holds values 0..3 and w & 0xF0F0F0F0 values 4..7, each as bytes v * 16, which the two
 * SXTB16 unpack to exactly the lanes the int8 loop gets from four filter bytes. So per eight
 * values and 8 pixels the int4 loop runs the int8 loop's 32 LDRD/SMLAD pairs plus 9
 * instructions of filter (two loads of the word, one shift, two masks, four SXTB16) where the
 * int8 loop has 6. The sums are 16 times the true ones, exact in int32 for windows of up to
 * CONV_S4_CHUNK values (|column value| <= 255, |16 w| <= 128), so longer windows are summed
 * in chunks; each chunk's sum / 16 (an exact shift) goes into the accumulator.
 */
#include <stddef.h>
#include <stdint.h>

#include "tinyml_kernels.h"
#include "dsp_common.h"
#include "int4.h"

/* Blocks are 8 pixels for windows of at most CONV_WIDE_K values, else 4 (lowering sizes the
 * scratch with the same rule). */
#define CONV_WIDE_K 256
#define CONV_MAX_BLOCK 8

static int32_t conv_block_pixels(int32_t k)
{
    return k <= CONV_WIDE_K ? 8 : 4;
}

/* The block size for a layer of `pixels` output pixels: 4 rather than 8 when blocks of 8
 * would compute more than 10 % more pixel-channels (each a little cheaper) than blocks of
 * 4, e.g. 4 + 4 + 1 (12) rather than 8 + 1 (16) for 9 pixels. */
static int32_t conv_layer_block(int32_t k, int32_t pixels)
{
    const int32_t computed8 = pixels < 8 ? 8 : (pixels + 7) / 8 * 8;
    const int32_t computed4 = pixels < 4 ? 4 : (pixels + 3) / 4 * 4;
    if (conv_block_pixels(k) == 8 && 10 * computed8 <= 11 * computed4) {
        return 8;
    }
    return 4;
}

/* ---- building columns ----------------------------------------------------------------------- */

/* The word-aligned start of the block inside scratch. */
static int16_t *conv_block_buffer(int8_t *scratch)
{
    const uint32_t misalignment = (uint32_t)((uintptr_t)scratch & 3u);
    return (int16_t *)(void *)(scratch + (misalignment ? 4 - misalignment : 0));
}

/* Stores value k of pixel p's column at its place in a block of n pixels. */
static inline void conv_put(int16_t *block, int32_t n, int32_t k4, int32_t p, int32_t k,
                            int32_t value)
{
    static const int8_t lane[4] = {0, 2, 1, 3};
    const int32_t index = k < k4 ? n * (k & ~3) + 4 * p + lane[k & 3] : n * k + p;
    block[index] = (int16_t)value;
}

/* Values k .. k+len-1 of pixel p's column: src[i] + offset, or 0 when src is NULL. Per
 * aligned group of four values: one load, two SXTAB16, two stores. */
static void conv_fill(int16_t *block, int32_t n, int32_t k4, int32_t p, int32_t k,
                      const int8_t *src, int32_t len, int32_t offset)
{
    const int32_t offset2 = tinyml_dup16(offset);
    int32_t i = 0;
    for (; i < len && (k & 3) != 0; ++i, ++k) {
        conv_put(block, n, k4, p, k, src ? src[i] + offset : 0);
    }
    for (; len - i >= 4 && k < k4; i += 4, k += 4) {
        int16_t *dst = block + n * k + 4 * p;
        int32_t even = 0, odd = 0;
        if (src) {
            tinyml_s8x4_interleaved_offset(tinyml_read_s8x4(src + i), offset2, &even, &odd);
        }
        tinyml_write_s16x2(dst, even);
        tinyml_write_s16x2(dst + 2, odd);
    }
    for (; i < len; ++i, ++k) {
        conv_put(block, n, k4, p, k, src ? src[i] + offset : 0);
    }
}

/* Values k .. k+len-1 of pixel p's column from contiguous int8 values (plus offset), k a
 * multiple of 4 and len one too unless the run ends the column: groups of four with SXTAB16
 * (one load, two SXTAB16, two stores), then the tail values. */
static inline void conv_fill_run(int16_t *block, int32_t n, int32_t p, int32_t k,
                                 const int8_t *src, int32_t len, int32_t offset)
{
    const int32_t offset2 = tinyml_dup16(offset);
    const int32_t end = k + len, end4 = end & ~3;
    int16_t *dst = block + n * k + 4 * p;
    for (; k < end4; k += 4, src += 4, dst += 4 * n) {
        int32_t even, odd;
        tinyml_s8x4_interleaved_offset(tinyml_read_s8x4(src), offset2, &even, &odd);
        tinyml_write_s16x2(dst, even);
        tinyml_write_s16x2(dst + 2, odd);
    }
    for (; k < end; ++k, ++src) {
        block[n * k + p] = (int16_t)(*src + offset);
    }
}

/* Windows of at most this many values are gathered as int8 first (see conv_column). */
#define CONV_STAGE 64

static TINYML_NO_LIBCALLS void conv_copy_bytes(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, dst += 4, src += 4) {
        tinyml_write_s8x4(dst, tinyml_read_s8x4(src));
    }
    for (; n > 0; --n) {
        *dst++ = *src++;
    }
}

static TINYML_NO_LIBCALLS void conv_set_bytes(int8_t *dst, int8_t value, int32_t n)
{
    const uint32_t four = (uint32_t)(uint8_t)value * 0x01010101u;
    for (; n >= 4; n -= 4, dst += 4) {
        tinyml_write_s8x4(dst, four);
    }
    for (; n > 0; --n) {
        *dst++ = value;
    }
}

/* Pixel p's column (block of n pixels) of the window whose top-left tap is input pixel
 * (in_y0, in_x0) of image in_b, input channels ic0 .. ic0 + filter_c - 1. A row of taps is
 * copied as one run when its taps are contiguous in the input (dilation_w 1, one group).
 *
 * Small windows (the first layers, with 1 to 3 input channels) rarely start a row of taps on
 * a group of four values, which the int16 conversion needs to go four at a time; they are
 * gathered as int8 on the stack first (taps in the padding as the input zero point, which
 * the offset turns into 0) and converted in one aligned run. */
static TINYML_ALWAYS_INLINE void conv_column(int16_t *block, int32_t n, int32_t p,
                                             const tinyml_conv2d_params *c,
                                             const int8_t *in_b, int32_t in_y0, int32_t in_x0,
                                             int32_t ic0, int32_t offset)
{
    const int32_t k_total = c->filter_h * c->filter_w * c->filter_c;
    const int32_t k4 = k_total & ~3;
    const int32_t row_values = c->filter_w * c->filter_c;
    const int32_t contiguous = c->dilation_w == 1 && c->filter_c == c->input_c;
    const int32_t staged = k_total <= CONV_STAGE;
    const int8_t zero_point = (int8_t)-offset; /* offset is -zero point */
    int8_t stage[CONV_STAGE];
    int32_t ky, kx, k = 0;
    if (contiguous && in_y0 >= 0 && in_x0 >= 0 &&
        in_y0 + (c->filter_h - 1) * c->dilation_h < c->input_h &&
        in_x0 + c->filter_w <= c->input_w && (staged || (row_values & 3) == 0)) {
        /* The usual case: every tap inside the image, one run per row of taps, converted
         * directly when rows keep groups of four aligned, else gathered first. */
        const int8_t *row = in_b + (in_y0 * c->input_w + in_x0) * c->input_c;
        const int32_t row_stride = c->dilation_h * c->input_w * c->input_c;
        for (ky = 0; ky < c->filter_h; ++ky, k += row_values, row += row_stride) {
            if (staged) {
                conv_copy_bytes(stage + k, row, row_values);
            } else {
                conv_fill_run(block, n, p, k, row, row_values, offset);
            }
        }
        if (staged) {
            conv_fill_run(block, n, p, 0, stage, k_total, offset);
        }
        return;
    }
    for (ky = 0; ky < c->filter_h; ++ky, k += row_values) {
        const int32_t iy = in_y0 + ky * c->dilation_h;
        const int8_t *row;
        if (iy < 0 || iy >= c->input_h) {
            if (staged) {
                conv_set_bytes(stage + k, zero_point, row_values);
            } else {
                conv_fill(block, n, k4, p, k, NULL, row_values, 0);
            }
            continue;
        }
        row = in_b + iy * c->input_w * c->input_c + ic0;
        if (contiguous) {
            /* Taps lo .. hi-1 of the row lie inside the image. */
            const int32_t lo = in_x0 < 0 ? (-in_x0 < c->filter_w ? -in_x0 : c->filter_w) : 0;
            const int32_t end = c->input_w - in_x0;
            const int32_t hi = end < c->filter_w ? (end > lo ? end : lo) : c->filter_w;
            const int8_t *src = row + (in_x0 + lo) * c->input_c;
            if (staged) {
                conv_set_bytes(stage + k, zero_point, lo * c->filter_c);
                conv_copy_bytes(stage + k + lo * c->filter_c, src, (hi - lo) * c->filter_c);
                conv_set_bytes(stage + k + hi * c->filter_c, zero_point,
                               (c->filter_w - hi) * c->filter_c);
            } else {
                conv_fill(block, n, k4, p, k, NULL, lo * c->filter_c, 0);
                conv_fill(block, n, k4, p, k + lo * c->filter_c, src, (hi - lo) * c->filter_c,
                          offset);
                conv_fill(block, n, k4, p, k + hi * c->filter_c, NULL,
                          (c->filter_w - hi) * c->filter_c, 0);
            }
        } else {
            for (kx = 0; kx < c->filter_w; ++kx) {
                const int32_t ix = in_x0 + kx * c->dilation_w;
                const int inside = ix >= 0 && ix < c->input_w;
                const int32_t at = k + kx * c->filter_c;
                if (staged && inside) {
                    conv_copy_bytes(stage + at, row + ix * c->input_c, c->filter_c);
                } else if (staged) {
                    conv_set_bytes(stage + at, zero_point, c->filter_c);
                } else {
                    conv_fill(block, n, k4, p, at, inside ? row + ix * c->input_c : NULL,
                              c->filter_c, offset);
                }
            }
        }
    }
    if (staged) {
        conv_fill_run(block, n, p, 0, stage, k_total, offset);
    }
}

/* ---- multiply-accumulate -------------------------------------------------------------------- */

#if TINYML_DSP_ASM
/* One group of four values for a block of 8 pixels (conv_mac8): 27 instructions, the filter
 * and column pointers advanced by post-increment loads. */
#define CONV_GROUP8_ASM                                                                      \
    "ldr %[odd], [%[w]], #4\n\t"                                                             \
    "sxtb16 %[even], %[odd]\n\t"                                                             \
    "sxtb16 %[odd], %[odd], ror #8\n\t"                                                      \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a0], %[x0], %[even], %[a0]\n\t"                                                 \
    "smlad %[a0], %[x1], %[odd], %[a0]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a1], %[x0], %[even], %[a1]\n\t"                                                 \
    "smlad %[a1], %[x1], %[odd], %[a1]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a2], %[x0], %[even], %[a2]\n\t"                                                 \
    "smlad %[a2], %[x1], %[odd], %[a2]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a3], %[x0], %[even], %[a3]\n\t"                                                 \
    "smlad %[a3], %[x1], %[odd], %[a3]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a4], %[x0], %[even], %[a4]\n\t"                                                 \
    "smlad %[a4], %[x1], %[odd], %[a4]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a5], %[x0], %[even], %[a5]\n\t"                                                 \
    "smlad %[a5], %[x1], %[odd], %[a5]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a6], %[x0], %[even], %[a6]\n\t"                                                 \
    "smlad %[a6], %[x1], %[odd], %[a6]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a7], %[x0], %[even], %[a7]\n\t"                                                 \
    "smlad %[a7], %[x1], %[odd], %[a7]\n\t"
#endif

/* acc[p] += pixel p's column . filter row w (K values), block of 8 pixels. Per group of four
 * values: one LDR and two SXTB16 for the filter, eight LDRD for the columns, sixteen SMLAD:
 * 32 MACs in 27 instructions, and the loop's 3 per two groups. */
static TINYML_ALWAYS_INLINE void conv_mac8(const int16_t *block, int32_t k, const int8_t *w,
                                           int32_t acc[8])
{
    const int32_t *col = (const int32_t *)(const void *)block;
    const int32_t *groups_end = col + 16 * (k >> 2);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
    int32_t even, odd, x0, x1, t;
#if TINYML_DSP_ASM
    /* The loop in assembly, unrolled twice, its end pointer in memory: it needs all 14
     * allocatable registers, and GCC 12 otherwise spills an accumulator as well. An odd
     * group count runs one group first. */
    if ((k >> 2) & 1) {
        __asm__ volatile(CONV_GROUP8_ASM
                         : [col] "+&r"(col), [w] "+&r"(w), [a0] "+&r"(a0), [a1] "+&r"(a1),
                           [a2] "+&r"(a2), [a3] "+&r"(a3), [a4] "+&r"(a4), [a5] "+&r"(a5),
                           [a6] "+&r"(a6), [a7] "+&r"(a7), [even] "=&r"(even),
                           [odd] "=&r"(odd), [x0] "=&r"(x0), [x1] "=&r"(x1)
                         :
                         : "memory");
    }
    if (col != groups_end) {
        __asm__ volatile("1:\n\t" CONV_GROUP8_ASM CONV_GROUP8_ASM
                         "ldr %[x0], %[end]\n\t"
                         "cmp %[col], %[x0]\n\t"
                         "bne 1b"
                         : [col] "+&r"(col), [w] "+&r"(w), [a0] "+&r"(a0), [a1] "+&r"(a1),
                           [a2] "+&r"(a2), [a3] "+&r"(a3), [a4] "+&r"(a4), [a5] "+&r"(a5),
                           [a6] "+&r"(a6), [a7] "+&r"(a7), [even] "=&r"(even),
                           [odd] "=&r"(odd), [x0] "=&r"(x0), [x1] "=&r"(x1)
                         : [end] "m"(groups_end)
                         : "cc", "memory");
    }
#else
    while (col != groups_end) {
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w), &even, &odd);
        w += 4;
        TINYML_READ_2WORDS(col, 0, x0, x1);
        a0 = __smlad(x1, odd, __smlad(x0, even, a0));
        TINYML_READ_2WORDS(col, 2, x0, x1);
        a1 = __smlad(x1, odd, __smlad(x0, even, a1));
        TINYML_READ_2WORDS(col, 4, x0, x1);
        a2 = __smlad(x1, odd, __smlad(x0, even, a2));
        TINYML_READ_2WORDS(col, 6, x0, x1);
        a3 = __smlad(x1, odd, __smlad(x0, even, a3));
        TINYML_READ_2WORDS(col, 8, x0, x1);
        a4 = __smlad(x1, odd, __smlad(x0, even, a4));
        TINYML_READ_2WORDS(col, 10, x0, x1);
        a5 = __smlad(x1, odd, __smlad(x0, even, a5));
        TINYML_READ_2WORDS(col, 12, x0, x1);
        a6 = __smlad(x1, odd, __smlad(x0, even, a6));
        TINYML_READ_2WORDS(col, 14, x0, x1);
        a7 = __smlad(x1, odd, __smlad(x0, even, a7));
        col += 16;
    }
#endif
    for (t = k & 3; t > 0; --t) {
        const int32_t f = *w++;
        TINYML_READ_2WORDS(col, 0, x0, x1);
        a0 = __smlabb(x0, f, a0);
        a1 = __smlatb(x0, f, a1);
        a2 = __smlabb(x1, f, a2);
        a3 = __smlatb(x1, f, a3);
        TINYML_READ_2WORDS(col, 2, x0, x1);
        a4 = __smlabb(x0, f, a4);
        a5 = __smlatb(x0, f, a5);
        a6 = __smlabb(x1, f, a6);
        a7 = __smlatb(x1, f, a7);
        col += 4;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = a4;
    acc[5] = a5;
    acc[6] = a6;
    acc[7] = a7;
}

#if TINYML_DSP_ASM
/* One group of four values for a block of 7 pixels (conv_mac7): CONV_GROUP8_ASM without its
 * last pixel, 24 instructions. */
#define CONV_GROUP7_ASM                                                                      \
    "ldr %[odd], [%[w]], #4\n\t"                                                             \
    "sxtb16 %[even], %[odd]\n\t"                                                             \
    "sxtb16 %[odd], %[odd], ror #8\n\t"                                                      \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a0], %[x0], %[even], %[a0]\n\t"                                                 \
    "smlad %[a0], %[x1], %[odd], %[a0]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a1], %[x0], %[even], %[a1]\n\t"                                                 \
    "smlad %[a1], %[x1], %[odd], %[a1]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a2], %[x0], %[even], %[a2]\n\t"                                                 \
    "smlad %[a2], %[x1], %[odd], %[a2]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a3], %[x0], %[even], %[a3]\n\t"                                                 \
    "smlad %[a3], %[x1], %[odd], %[a3]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a4], %[x0], %[even], %[a4]\n\t"                                                 \
    "smlad %[a4], %[x1], %[odd], %[a4]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a5], %[x0], %[even], %[a5]\n\t"                                                 \
    "smlad %[a5], %[x1], %[odd], %[a5]\n\t"                                                  \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                    \
    "smlad %[a6], %[x0], %[even], %[a6]\n\t"                                                 \
    "smlad %[a6], %[x1], %[odd], %[a6]\n\t"
#endif

/* The same for a block of 7 pixels, windows of a multiple of four values only (lowering's
 * conv_block_cap): 28 MACs in 24 instructions per group. Why 7: a block's int16 columns are
 * the kernel's scratch, 2 * N * K bytes, which adds to the arena where a layer's input and
 * output fill it (kws's 1x1 convolutions: 8,000 B of tensors and 1,024 B of block); and 7 wastes
 * less than 8 on a last short block when the layer's pixels are a little under a multiple
 * of 8 (125 = 17 * 7 + 6), which pays for the 2 % more instructions per MAC. */
static TINYML_ALWAYS_INLINE void conv_mac7(const int16_t *block, int32_t k, const int8_t *w,
                                           int32_t acc[7])
{
    const int32_t *col = (const int32_t *)(const void *)block;
    const int32_t *groups_end = col + 14 * (k >> 2);
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t a4 = acc[4], a5 = acc[5], a6 = acc[6];
    int32_t even, odd, x0, x1;
#if TINYML_DSP_ASM
    if ((k >> 2) & 1) {
        __asm__ volatile(CONV_GROUP7_ASM
                         : [col] "+&r"(col), [w] "+&r"(w), [a0] "+&r"(a0), [a1] "+&r"(a1),
                           [a2] "+&r"(a2), [a3] "+&r"(a3), [a4] "+&r"(a4), [a5] "+&r"(a5),
                           [a6] "+&r"(a6), [even] "=&r"(even), [odd] "=&r"(odd),
                           [x0] "=&r"(x0), [x1] "=&r"(x1)
                         :
                         : "memory");
    }
    if (col != groups_end) {
        __asm__ volatile("1:\n\t" CONV_GROUP7_ASM CONV_GROUP7_ASM
                         "ldr %[x0], %[end]\n\t"
                         "cmp %[col], %[x0]\n\t"
                         "bne 1b"
                         : [col] "+&r"(col), [w] "+&r"(w), [a0] "+&r"(a0), [a1] "+&r"(a1),
                           [a2] "+&r"(a2), [a3] "+&r"(a3), [a4] "+&r"(a4), [a5] "+&r"(a5),
                           [a6] "+&r"(a6), [even] "=&r"(even), [odd] "=&r"(odd),
                           [x0] "=&r"(x0), [x1] "=&r"(x1)
                         : [end] "m"(groups_end)
                         : "cc", "memory");
    }
#else
    while (col != groups_end) {
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w), &even, &odd);
        w += 4;
        TINYML_READ_2WORDS(col, 0, x0, x1);
        a0 = __smlad(x1, odd, __smlad(x0, even, a0));
        TINYML_READ_2WORDS(col, 2, x0, x1);
        a1 = __smlad(x1, odd, __smlad(x0, even, a1));
        TINYML_READ_2WORDS(col, 4, x0, x1);
        a2 = __smlad(x1, odd, __smlad(x0, even, a2));
        TINYML_READ_2WORDS(col, 6, x0, x1);
        a3 = __smlad(x1, odd, __smlad(x0, even, a3));
        TINYML_READ_2WORDS(col, 8, x0, x1);
        a4 = __smlad(x1, odd, __smlad(x0, even, a4));
        TINYML_READ_2WORDS(col, 10, x0, x1);
        a5 = __smlad(x1, odd, __smlad(x0, even, a5));
        TINYML_READ_2WORDS(col, 12, x0, x1);
        a6 = __smlad(x1, odd, __smlad(x0, even, a6));
        col += 14;
    }
#endif
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = a4;
    acc[5] = a5;
    acc[6] = a6;
}

/* The same for a block of 4 pixels: per group of four values, one LDR and two SXTB16, four
 * LDRD, eight SMLAD: 16 MACs in 15 instructions, the loop unrolled twice. */
static TINYML_ALWAYS_INLINE void conv_mac4(const int16_t *block, int32_t k, const int8_t *w,
                                           int32_t acc[4])
{
    const int32_t *col = (const int32_t *)(const void *)block;
    const int32_t *pairs_end = col + 16 * (k >> 3);
    int32_t a = acc[0], b = acc[1], c = acc[2], d = acc[3];
    int32_t even, odd, x0, x1, t;
    while (col != pairs_end) {
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w), &even, &odd);
        TINYML_READ_2WORDS(col, 0, x0, x1);
        a = __smlad(x1, odd, __smlad(x0, even, a));
        TINYML_READ_2WORDS(col, 2, x0, x1);
        b = __smlad(x1, odd, __smlad(x0, even, b));
        TINYML_READ_2WORDS(col, 4, x0, x1);
        c = __smlad(x1, odd, __smlad(x0, even, c));
        TINYML_READ_2WORDS(col, 6, x0, x1);
        d = __smlad(x1, odd, __smlad(x0, even, d));
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w + 4), &even, &odd);
        TINYML_READ_2WORDS(col, 8, x0, x1);
        a = __smlad(x1, odd, __smlad(x0, even, a));
        TINYML_READ_2WORDS(col, 10, x0, x1);
        b = __smlad(x1, odd, __smlad(x0, even, b));
        TINYML_READ_2WORDS(col, 12, x0, x1);
        c = __smlad(x1, odd, __smlad(x0, even, c));
        TINYML_READ_2WORDS(col, 14, x0, x1);
        d = __smlad(x1, odd, __smlad(x0, even, d));
        w += 8;
        col += 16;
    }
    if (k & 4) {
        tinyml_s8x4_interleaved(tinyml_read_s8x4(w), &even, &odd);
        TINYML_READ_2WORDS(col, 0, x0, x1);
        a = __smlad(x1, odd, __smlad(x0, even, a));
        TINYML_READ_2WORDS(col, 2, x0, x1);
        b = __smlad(x1, odd, __smlad(x0, even, b));
        TINYML_READ_2WORDS(col, 4, x0, x1);
        c = __smlad(x1, odd, __smlad(x0, even, c));
        TINYML_READ_2WORDS(col, 6, x0, x1);
        d = __smlad(x1, odd, __smlad(x0, even, d));
        w += 4;
        col += 8;
    }
    for (t = k & 3; t > 0; --t) {
        const int32_t f = *w++;
        TINYML_READ_2WORDS(col, 0, x0, x1);
        a = __smlabb(x0, f, a);
        b = __smlatb(x0, f, b);
        c = __smlabb(x1, f, c);
        d = __smlatb(x1, f, d);
        col += 2;
    }
    acc[0] = a;
    acc[1] = b;
    acc[2] = c;
    acc[3] = d;
}

/* ---- multiply-accumulate, packed int4 filters ---------------------------------------------- */

/* Window values per partial sum of the int4 loops (a multiple of 8): 2^16 products of at
 * most 255 * 128 keep 16 times the sum inside int32. (Tests set a small TINYML_S4_CHUNK to
 * run the chunked path on small layers.) */
#ifdef TINYML_S4_CHUNK
#define CONV_S4_CHUNK TINYML_S4_CHUNK
#else
#define CONV_S4_CHUNK 65536
#endif

#if TINYML_DSP_ASM
/* Half a group of eight packed values for a block of 8 pixels: `load` reads the filter word,
 * `shift` moves values 0..3 into the high nibbles (or is empty for values 4..7); then the
 * int8 loop's eight LDRD and sixteen SMLAD. */
#define CONV_S4_HALF8_ASM(load, shift)                                                      \
    load "\n\t" shift                                                                       \
    "and %[odd], %[odd], #0xF0F0F0F0\n\t"                                                   \
    "sxtb16 %[even], %[odd]\n\t"                                                            \
    "sxtb16 %[odd], %[odd], ror #8\n\t"                                                     \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                   \
    "smlad %[a0], %[x0], %[even], %[a0]\n\t"                                                \
    "smlad %[a0], %[x1], %[odd], %[a0]\n\t"                                                 \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                   \
    "smlad %[a1], %[x0], %[even], %[a1]\n\t"                                                \
    "smlad %[a1], %[x1], %[odd], %[a1]\n\t"                                                 \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                   \
    "smlad %[a2], %[x0], %[even], %[a2]\n\t"                                                \
    "smlad %[a2], %[x1], %[odd], %[a2]\n\t"                                                 \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                   \
    "smlad %[a3], %[x0], %[even], %[a3]\n\t"                                                \
    "smlad %[a3], %[x1], %[odd], %[a3]\n\t"                                                 \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                   \
    "smlad %[a4], %[x0], %[even], %[a4]\n\t"                                                \
    "smlad %[a4], %[x1], %[odd], %[a4]\n\t"                                                 \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                   \
    "smlad %[a5], %[x0], %[even], %[a5]\n\t"                                                \
    "smlad %[a5], %[x1], %[odd], %[a5]\n\t"                                                 \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                   \
    "smlad %[a6], %[x0], %[even], %[a6]\n\t"                                                \
    "smlad %[a6], %[x1], %[odd], %[a6]\n\t"                                                 \
    "ldrd %[x0], %[x1], [%[col]], #8\n\t"                                                   \
    "smlad %[a7], %[x0], %[even], %[a7]\n\t"                                                \
    "smlad %[a7], %[x1], %[odd], %[a7]\n\t"

/* One group of eight values (the word loaded twice: the registers hold 8 accumulators, two
 * pointers, two filter and two column words), the filter pointer advanced by 4. */
#define CONV_S4_GROUP8_ASM                                                                   \
    CONV_S4_HALF8_ASM("ldr %[odd], [%[w]]", "lsl %[odd], %[odd], #4\n\t")                    \
    CONV_S4_HALF8_ASM("ldr %[odd], [%[w]], #4", "")
#endif

/* The unpacked lanes (times 16) of one half of a packed group: values 0..3 (high == 0) or
 * 4..7 of the word. */
static TINYML_ALWAYS_INLINE void conv_s4_half(uint32_t word, int32_t high, int32_t *even,
                                              int32_t *odd)
{
    tinyml_s8x4_interleaved((high ? word : word << 4) & 0xF0F0F0F0u, even, odd);
}

/* One group of four values (even, odd lanes) into the n accumulators; col advances. */
static TINYML_ALWAYS_INLINE void conv_s4_quad(const int32_t **col, int32_t n, int32_t even,
                                              int32_t odd, int32_t *acc)
{
    int32_t p, x0, x1;
    TINYML_UNROLL
    for (p = 0; p < n; ++p) {
        TINYML_READ_2WORDS(*col, 2 * p, x0, x1);
        acc[p] = __smlad(x1, odd, __smlad(x0, even, acc[p]));
    }
    *col += 2 * n;
}

/* acc16[p] += 16 * (column p . filter) over `groups` groups of eight values, block of 8. */
static TINYML_ALWAYS_INLINE void conv_s4_groups8(const int32_t *col, const int8_t *w,
                                                 int32_t groups, int32_t acc[8])
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];
    const int32_t *end = col + 32 * groups;
#if TINYML_DSP_ASM
    if (col != end) {
        int32_t even, odd, x0, x1;
        __asm__ volatile("1:\n\t" CONV_S4_GROUP8_ASM
                         "ldr %[x0], %[end]\n\t"
                         "cmp %[col], %[x0]\n\t"
                         "bne 1b"
                         : [col] "+&r"(col), [w] "+&r"(w), [a0] "+&r"(a0), [a1] "+&r"(a1),
                           [a2] "+&r"(a2), [a3] "+&r"(a3), [a4] "+&r"(a4), [a5] "+&r"(a5),
                           [a6] "+&r"(a6), [a7] "+&r"(a7), [even] "=&r"(even),
                           [odd] "=&r"(odd), [x0] "=&r"(x0), [x1] "=&r"(x1)
                         : [end] "m"(end)
                         : "cc", "memory");
    }
#else
    while (col != end) {
        int32_t lanes[8], even, odd, half;
        const uint32_t word = tinyml_read_s8x4(w);
        for (half = 0; half < 2; ++half) {
            conv_s4_half(word, half, &even, &odd);
            lanes[0] = a0, lanes[1] = a1, lanes[2] = a2, lanes[3] = a3;
            lanes[4] = a4, lanes[5] = a5, lanes[6] = a6, lanes[7] = a7;
            conv_s4_quad(&col, 8, even, odd, lanes);
            a0 = lanes[0], a1 = lanes[1], a2 = lanes[2], a3 = lanes[3];
            a4 = lanes[4], a5 = lanes[5], a6 = lanes[6], a7 = lanes[7];
        }
        w += 4;
    }
#endif
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
    acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;
}

/* The same for a block of 4 (the registers leave room to keep the word). */
static TINYML_ALWAYS_INLINE void conv_s4_groups4(const int32_t *col, const int8_t *w,
                                                 int32_t groups, int32_t acc[4])
{
    const int32_t *end = col + 16 * groups;
    while (col != end) {
        int32_t even, odd;
        const uint32_t word = tinyml_read_s8x4(w);
        conv_s4_half(word, 0, &even, &odd);
        conv_s4_quad(&col, 4, even, odd, acc);
        conv_s4_half(word, 1, &even, &odd);
        conv_s4_quad(&col, 4, even, odd, acc);
        w += 4;
    }
}

/* acc16[p] += 16 * (column p . filter row w) for a window of k <= CONV_S4_CHUNK values
 * (packed int4), block of n pixels: the groups of eight, then the dense tail: a group of four
 * when k mod 8 >= 4 (its two bytes spread to bytes 0 and 2 of a word, which the masks and
 * SXTB16 then unpack as above), and the last k mod 4 values one at a time, as in the int8
 * loops. `col` is the block's first column word of the window's first value. */
static TINYML_ALWAYS_INLINE void conv_s4_mac(const int32_t *col, int32_t n, int32_t k,
                                             const int8_t *w, int32_t *acc16)
{
    const int32_t groups = k >> 3, tail = k & 7;
    int32_t p, i;
    if (n == 8) {
        conv_s4_groups8(col, w, groups, acc16);
    } else {
        conv_s4_groups4(col, w, groups, acc16);
    }
    if (tail == 0) {
        return;
    }
    col += 4 * n * groups;
    w += 4 * groups;
    if (tail >= 4) {
        const uint32_t spread = (uint32_t)(uint8_t)w[0] | ((uint32_t)(uint8_t)w[1] << 16);
        /* Bytes 0 and 2 of each masked word: (v0, v2) and (v1, v3), times 16. */
        const int32_t even = __sxtb16((int32_t)((spread << 4) & 0xF0F0F0F0u));
        const int32_t odd = __sxtb16((int32_t)(spread & 0xF0F0F0F0u));
        conv_s4_quad(&col, n, even, odd, acc16);
    }
    for (i = tail & 4; i < tail; ++i) {
        const uint32_t byte = (uint8_t)w[i >> 1];
        const int32_t f = (int8_t)(uint8_t)((i & 1) ? byte & 0xF0u : (byte << 4) & 0xF0u);
        int32_t x0, x1;
        TINYML_UNROLL
        for (p = 0; p < n; p += 4) {
            TINYML_READ_2WORDS(col, p / 2, x0, x1);
            acc16[p] = __smlabb(x0, f, acc16[p]);
            acc16[p + 1] = __smlatb(x0, f, acc16[p + 1]);
            acc16[p + 2] = __smlabb(x1, f, acc16[p + 2]);
            acc16[p + 3] = __smlatb(x1, f, acc16[p + 3]);
        }
        col += n / 2;
    }
}

/* v[p] = bias + column p . filter row w (k values, packed int4), block of n pixels. Windows
 * of at most CONV_S4_CHUNK values (all but absurd layers) sum 16 times the products straight
 * into v and divide once; longer ones sum chunk by chunk. */
static TINYML_ALWAYS_INLINE void conv_s4_channel_sums(const int16_t *block, int32_t n,
                                                      int32_t k, const int8_t *w, int32_t bias,
                                                      int32_t *v)
{
    const int32_t *col = (const int32_t *)(const void *)block;
    int32_t p, start;
    TINYML_UNROLL
    for (p = 0; p < n; ++p) {
        v[p] = 0;
    }
    if (k <= CONV_S4_CHUNK) {
        conv_s4_mac(col, n, k, w, v);
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            v[p] = tinyml_wrap_add(bias, v[p] >> 4);
        }
        return;
    }
    for (start = 0; start < k; start += CONV_S4_CHUNK) {
        const int32_t len = k - start < CONV_S4_CHUNK ? k - start : CONV_S4_CHUNK;
        int32_t acc16[CONV_MAX_BLOCK];
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            acc16[p] = 0;
        }
        /* Chunks start on groups of eight values: 4 * n column words per four values. */
        conv_s4_mac(col + n / 2 * start, n, len, w + start / 2, acc16);
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            v[p] = tinyml_wrap_add(v[p], acc16[p] >> 4);
        }
    }
    TINYML_UNROLL
    for (p = 0; p < n; ++p) {
        v[p] = tinyml_wrap_add(v[p], bias);
    }
}

/* ---- output stages -------------------------------------------------------------------------- */

/* The layer's output constants, passed by value to the channel loops: the outputs are int8
 * stores, which may alias any memory reached through a pointer, so fields read through the
 * params pointer would be loaded again after every store. */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t k;
    int32_t zero_point;
    int32_t act_min;
    int32_t act_max;
    int32_t stride; /* output_c: from one pixel's outputs to the next pixel's */
} conv_outputs;

/* Channel oc's results for the n pixels of a block (the accumulators start at the bias, take
 * the dot products), requantized, plus the zero point, clamped: v[0 .. n-1].
 *
 * Usual channels (tinyml_dsp_short_applies, right shift at most 23): the short form of the
 * requantization with the zero point folded into its rounding constant: (h + zp * 2^e) >> e
 * is (h >> e) + zp exactly, and the bounds (|h| <= 2^30 + 2^21, |zp| * 2^e <= 2^29) keep the
 * sum inside int32, so five instructions give value + zero point. Other channels take the
 * long form. A single SSAT clamps when the activation range is all of int8. */
static TINYML_ALWAYS_INLINE void conv_channel(const conv_outputs *o, const int16_t *block,
                                              int32_t n, int32_t oc, const int8_t *w,
                                              int32_t v[CONV_MAX_BLOCK], int32_t int4)
{
    const int32_t m = o->multiplier[oc], s = o->shift[oc];
    int32_t p;
    if (int4) {
        conv_s4_channel_sums(block, n, o->k, w, o->bias[oc], v);
    } else {
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            v[p] = o->bias[oc];
        }
        if (n == 8) {
            conv_mac8(block, o->k, w, v);
        } else if (n == 7) {
            conv_mac7(block, o->k, w, v);
        } else {
            conv_mac4(block, o->k, w, v);
        }
    }
    if (tinyml_dsp_short_applies(m, s) && s >= -23) {
        const int32_t e = -s - 1;
        const int32_t h = (int32_t)((1u << (e - 1)) + ((uint32_t)o->zero_point << e));
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            v[p] = tinyml_dsp_mbqm_short_raw(v[p], m, h, e);
        }
    } else {
        const tinyml_dsp_requant r = tinyml_dsp_requant_prepare(m, s);
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            v[p] = tinyml_wrap_add(tinyml_dsp_mbqm_long(v[p], r), o->zero_point);
        }
    }
    /* The clamp as int32 compares (an int8_t result would cost a needless SXTB each): SSAT
     * covers an upper bound of 127 in one instruction, as with RELU. */
    if (o->act_max == 127) {
        const int32_t lo = o->act_min;
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            v[p] = tinyml_ssat8(v[p]);
        }
        if (lo != -128) {
            TINYML_UNROLL
            for (p = 0; p < n; ++p) {
                v[p] = v[p] < lo ? lo : v[p];
            }
        }
    } else {
        const int32_t lo = o->act_min, hi = o->act_max;
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            v[p] = v[p] < lo ? lo : v[p];
            v[p] = v[p] > hi ? hi : v[p];
        }
    }
}

/* Output channels [oc, oc_end) of a full block of n pixels (CONV_2D): each channel's results
 * are stored at out + oc + p * stride. */
static TINYML_ALWAYS_INLINE void conv_channels(const conv_outputs *o, const int16_t *block,
                                               int32_t n, int32_t oc, int32_t oc_end,
                                               int8_t *out, int32_t int4)
{
    const int32_t row_bytes = int4 ? tinyml_s4_row_bytes(o->k) : o->k;
    const int8_t *w = o->filter + oc * row_bytes;
    for (; oc < oc_end; ++oc, w += row_bytes) {
        int32_t v[CONV_MAX_BLOCK], p;
        int8_t *dst = out + oc;
        conv_channel(o, block, n, oc, w, v, int4);
        TINYML_UNROLL
        for (p = 0; p < n; ++p, dst += o->stride) {
            *dst = (int8_t)v[p];
        }
    }
}

/* The variants of conv_channels, each a function of its own (see TINYML_NOINLINE). */
#define CONV_CHANNELS_VARIANT(name, n, int4)                                                  \
    static TINYML_NOINLINE void name(const conv_outputs o, const int16_t *block, int32_t oc, \
                                     int32_t oc_end, int8_t *out)                             \
    {                                                                                         \
        conv_channels(&o, block, n, oc, oc_end, out, int4);                                   \
    }

CONV_CHANNELS_VARIANT(conv_channels8, 8, 0)
CONV_CHANNELS_VARIANT(conv_channels7, 7, 0)
CONV_CHANNELS_VARIANT(conv_channels4, 4, 0)
CONV_CHANNELS_VARIANT(conv_s4_channels8, 8, 1)
CONV_CHANNELS_VARIANT(conv_s4_channels4, 4, 1)

/* ADD of CONV_2D_ADD, prepared. ADD rescales each operand (x + offset) << left_shift by its
 * own multiplier, sums, and rescales the sum. Both operands are int8 codes (the convolution
 * result is already requantized and clamped), so the two operand rescalings are looked up in
 * tables of 256 entries each, built once per call in scratch: per element two loads replace
 * two multiplications with their rounding. Which operand is ADD's first does not matter: the
 * rescaled operands are summed, and lowering has already given each its own multiplier
 * (add_skip_first only says which is which). */
typedef struct {
    const int32_t *conv_table; /* indexed by conv value + 128 */
    const int32_t *skip_table; /* indexed by skip value + 128 */
    tinyml_dsp_requant out_rq;
    int32_t zero_point;
    int32_t act_min;
    int32_t act_max;
} conv_add;

/* Bytes of scratch the two tables take (before the block). */
#define CONV_ADD_TABLES (2 * 256 * (int32_t)sizeof(int32_t))

/* The rescaled operand for every int8 code v: mbqm((v + offset) << left_shift). */
static void conv_add_table(int32_t *table, int32_t offset, int32_t left_shift,
                           tinyml_dsp_requant r)
{
    int32_t v;
    for (v = -128; v < 128; ++v) {
        table[v + 128] = tinyml_dsp_mbqm(tinyml_wrap_shl(v + offset, left_shift), r);
    }
}

/* ADD of one convolution result and one skip element, as tinyml_add_s8 computes it. */
static inline int8_t conv_add_one(const conv_add *a, int32_t conv_value, int32_t skip_value)
{
    const int32_t sum = tinyml_wrap_add(a->conv_table[conv_value + 128],
                                        a->skip_table[skip_value + 128]);
    /* The reference adds the zero point in int64: a saturating add clamps the same way. */
    int32_t y = __qadd(tinyml_dsp_mbqm(sum, a->out_rq), a->zero_point);
    y = y < a->act_min ? a->act_min : y;
    y = y > a->act_max ? a->act_max : y;
    return (int8_t)y;
}

/* CONV_2D_ADD on a full block of n pixels whose ADD output rescaling takes the short form with
 * the zero point folded in (right shift 2..23, as in conv_channel): per element, the skip
 * load, two table loads, five instructions of requantization, the clamp and the store. In
 * place (out == skip), each skip element is read just before its own position is
 * written. */
static TINYML_ALWAYS_INLINE void conv_channels_add(const conv_outputs *o, const conv_add *a,
                                                   const int16_t *block, int32_t n,
                                                   int32_t oc, int32_t oc_end, int8_t *out,
                                                   const int8_t *skip, int32_t int4)
{
    const int32_t *conv_table = a->conv_table + 128, *skip_table = a->skip_table + 128;
    const int32_t m = a->out_rq.multiplier, e = a->out_rq.right - 1;
    const int32_t h =
        (int32_t)((uint32_t)a->out_rq.round_high + ((uint32_t)a->zero_point << e));
    const int32_t full_range = a->act_min == -128 && a->act_max == 127;
    const int32_t row_bytes = int4 ? tinyml_s4_row_bytes(o->k) : o->k;
    const int8_t *w = o->filter + oc * row_bytes;
    for (; oc < oc_end; ++oc, w += row_bytes) {
        int32_t v[CONV_MAX_BLOCK], p;
        conv_channel(o, block, n, oc, w, v, int4);
        TINYML_UNROLL
        for (p = 0; p < n; ++p) {
            const int32_t at = oc + p * o->stride;
            const int32_t sum = tinyml_wrap_add(conv_table[v[p]], skip_table[skip[at]]);
            int32_t y = tinyml_dsp_mbqm_short_raw(sum, m, h, e);
            if (full_range) {
                y = tinyml_ssat8(y);
            } else {
                y = y < a->act_min ? a->act_min : (y > a->act_max ? a->act_max : y);
            }
            out[at] = (int8_t)y;
        }
    }
}

#define CONV_CHANNELS_ADD_VARIANT(name, n, int4)                                              \
    static TINYML_NOINLINE void name(const conv_outputs o, const conv_add a,                  \
                                     const int16_t *block, int32_t oc, int32_t oc_end,        \
                                     int8_t *out, const int8_t *skip)                         \
    {                                                                                         \
        conv_channels_add(&o, &a, block, n, oc, oc_end, out, skip, int4);                     \
    }

CONV_CHANNELS_ADD_VARIANT(conv_channels_add8, 8, 0)
CONV_CHANNELS_ADD_VARIANT(conv_channels_add4, 4, 0)
CONV_CHANNELS_ADD_VARIANT(conv_s4_channels_add8, 8, 1)
CONV_CHANNELS_ADD_VARIANT(conv_s4_channels_add4, 4, 1)

/* Any block of n pixels of which the first `count` are stored (a short last block of
 * CONV_2D_ADD, or a layer with fewer pixels than a block); with add (CONV_2D_ADD) each result
 * first goes through ADD with the skip element at its position (skip + oc + p * stride). In
 * place (out == skip), each skip element is read just before its own position is
 * written. */
static TINYML_ALWAYS_INLINE void conv_channels_any_body(const conv_outputs o,
                                                       const conv_add *add,
                                                       const int16_t *block, int32_t n,
                                                       int32_t oc, int32_t oc_end, int8_t *out,
                                                       const int8_t *skip, int32_t count,
                                                       int32_t int4)
{
    const int32_t row_bytes = int4 ? tinyml_s4_row_bytes(o.k) : o.k;
    const int8_t *w = o.filter + oc * row_bytes;
    int32_t p;
    for (; oc < oc_end; ++oc, w += row_bytes) {
        int32_t v[CONV_MAX_BLOCK];
        if (int4) {
            if (n == 8) {
                conv_channel(&o, block, 8, oc, w, v, 1);
            } else {
                conv_channel(&o, block, 4, oc, w, v, 1);
            }
        } else if (n == 8) {
            conv_channel(&o, block, 8, oc, w, v, 0);
        } else if (n == 7) {
            conv_channel(&o, block, 7, oc, w, v, 0);
        } else {
            conv_channel(&o, block, 4, oc, w, v, 0);
        }
        for (p = 0; p < count; ++p) {
            const int32_t at = oc + p * o.stride;
            out[at] = add ? conv_add_one(add, v[p], skip[at]) : (int8_t)v[p];
        }
    }
}

/* One copy for int8 filters, one for int4: an int8 model links no int4 code. */
static TINYML_NOINLINE void conv_channels_any_s8(const conv_outputs o, const conv_add *add,
                                                 const int16_t *block, int32_t n, int32_t oc,
                                                 int32_t oc_end, int8_t *out,
                                                 const int8_t *skip, int32_t count)
{
    conv_channels_any_body(o, add, block, n, oc, oc_end, out, skip, count, 0);
}

static TINYML_NOINLINE void conv_channels_any_s4(const conv_outputs o, const conv_add *add,
                                                 const int16_t *block, int32_t n, int32_t oc,
                                                 int32_t oc_end, int8_t *out,
                                                 const int8_t *skip, int32_t count)
{
    conv_channels_any_body(o, add, block, n, oc, oc_end, out, skip, count, 1);
}

static TINYML_ALWAYS_INLINE void conv_channels_any(const conv_outputs o, const conv_add *add,
                                                  const int16_t *block, int32_t n, int32_t oc,
                                                  int32_t oc_end, int8_t *out,
                                                  const int8_t *skip, int32_t count,
                                                  int32_t int4)
{
    if (int4) {
        conv_channels_any_s4(o, add, block, n, oc, oc_end, out, skip, count);
    } else {
        conv_channels_any_s8(o, add, block, n, oc, oc_end, out, skip, count);
    }
}

/* ---- the convolution loop ------------------------------------------------------------------- */

/* Whether the output's bytes overlap the input's (both inside the arena). */
static int32_t conv_overlapping(const tinyml_conv2d_params *c, const int8_t *input,
                                const int8_t *output)
{
    const uintptr_t in = (uintptr_t)input, out = (uintptr_t)output;
    const uintptr_t in_bytes = (uintptr_t)(c->batches * c->input_h * c->input_w * c->input_c);
    const uintptr_t out_bytes =
        (uintptr_t)(c->batches * c->output_h * c->output_w * c->output_c);
    return out < in + in_bytes && in < out + out_bytes;
}

/* Runs the convolution c over every block of output pixels; with add != NULL (CONV_2D_ADD)
 * each result goes through ADD with skip before it is stored. `pointwise`: the 1x1 kernel (no
 * padding, one group), whose column is the input pixel itself and whose bias already holds
 * the input offset (lowering), so the columns get none.
 *
 * Blocks are n consecutive output pixels, in order, or the last first when the plan put the
 * output above the input's first byte and inside the input (write_order.conv_delta_above).
 * Without ADD, a short last block is moved back to
 * end at the last pixel (recomputing some pixels, which stores the same values again),
 * unless the output overlaps the input (the memory plan may place it inside the dying
 * input's bytes, tinyml/codegen/write_order.py): the moved block would re-read input pixels
 * the previous blocks' outputs may have overwritten. CONV_2D_ADD, which may run in place,
 * and overlapped layers repeat the last pixel instead and store only the new ones. */
static TINYML_ALWAYS_INLINE void conv_run_body(const tinyml_conv2d_params *c,
                                              const conv_add *add, const int8_t *input,
                                              const int8_t *skip, int8_t *output,
                                              int16_t *block, int32_t pointwise, int32_t int4)
{
    const int32_t groups = c->input_c / c->filter_c;
    const int32_t per_group = c->output_c / groups;
    const int32_t pixels = c->output_h * c->output_w;
    const int32_t offset = pointwise ? 0 : c->input_offset;
    conv_outputs o;
    int32_t n, fast_add, move_back, backward, blocks, bi, j, b, pix, g, p;
    o.filter = c->filter;
    o.bias = c->bias;
    o.multiplier = c->multiplier;
    o.shift = c->shift;
    o.k = c->filter_h * c->filter_w * c->filter_c;
    o.zero_point = c->output_offset;
    o.act_min = c->act_min;
    o.act_max = c->act_max;
    o.stride = c->output_c;
    n = conv_layer_block(o.k, pixels);
    if (n == 8 && (c->block == 7 || c->block == 4)) { /* lowering's conv_block_cap */
        n = c->block;
    }
    fast_add = add != NULL && add->out_rq.form == TINYML_DSP_SHORT && add->out_rq.right <= 23;
    move_back = add == NULL && !conv_overlapping(c, input, output);
    /* The output above the input's first byte, inside it: the plan's backward overlap
     * (write_order.conv_delta_above): the same blocks, the last first. */
    backward = add == NULL && !move_back && (uintptr_t)output > (uintptr_t)input;
    blocks = (pixels + n - 1) / n;
    for (bi = 0; bi < c->batches; ++bi) {
        const int8_t *in_b;
        b = backward ? c->batches - 1 - bi : bi;
        in_b = input + b * c->input_h * c->input_w * c->input_c;
        for (j = 0; j < blocks; ++j) {
            int32_t first, count;
            pix = (backward ? blocks - 1 - j : j) * n;
            first = pix;
            count = pixels - pix < n ? pixels - pix : n;
            int8_t *out;
            if (move_back && count < n && pixels >= n) {
                first = pixels - n;
                count = n;
            }
            out = output + (b * pixels + first) * c->output_c;
            for (g = 0; g < groups; ++g) {
                const int32_t oc = g * per_group, oc_end = (g + 1) * per_group;
                for (p = 0; p < n; ++p) {
                    const int32_t q = first + (p < count ? p : count - 1);
                    const int32_t y = q / c->output_w, x = q - y * c->output_w;
                    if (pointwise) {
                        conv_fill_run(block, n, p, 0,
                                      in_b + (y * c->stride_h * c->input_w + x * c->stride_w) *
                                                 c->input_c,
                                      o.k, 0);
                    } else {
                        conv_column(block, n, p, c, in_b, y * c->stride_h - c->pad_top,
                                    x * c->stride_w - c->pad_left, g * c->filter_c, offset);
                    }
                }
                if (count < n) {
                    conv_channels_any(o, add, block, n, oc, oc_end, out,
                                      skip ? skip + (out - output) : NULL, count, int4);
                } else if (add == NULL) {
                    if (int4) {
                        (n == 8 ? conv_s4_channels8 : conv_s4_channels4)(o, block, oc, oc_end,
                                                                         out);
                    } else if (n == 8) {
                        conv_channels8(o, block, oc, oc_end, out);
                    } else if (n == 7) {
                        conv_channels7(o, block, oc, oc_end, out);
                    } else {
                        conv_channels4(o, block, oc, oc_end, out);
                    }
                } else if (fast_add) {
                    if (int4) {
                        (n == 8 ? conv_s4_channels_add8 : conv_s4_channels_add4)(
                            o, *add, block, oc, oc_end, out, skip + (out - output));
                    } else if (n == 8) {
                        conv_channels_add8(o, *add, block, oc, oc_end, out,
                                           skip + (out - output));
                    } else {
                        conv_channels_add4(o, *add, block, oc, oc_end, out,
                                           skip + (out - output));
                    }
                } else {
                    conv_channels_any(o, add, block, n, oc, oc_end, out, skip + (out - output),
                                      count, int4);
                }
            }
        }
    }
}

/* int8 and int4 filters run separate copies, so an int8 model links no int4 code. */
static TINYML_NOINLINE void conv_run_s8(const tinyml_conv2d_params *c, const conv_add *add,
                                        const int8_t *input, const int8_t *skip,
                                        int8_t *output, int16_t *block, int32_t pointwise)
{
    conv_run_body(c, add, input, skip, output, block, pointwise, 0);
}

static TINYML_NOINLINE void conv_run_s4(const tinyml_conv2d_params *c, const conv_add *add,
                                        const int8_t *input, const int8_t *skip,
                                        int8_t *output, int16_t *block, int32_t pointwise)
{
    conv_run_body(c, add, input, skip, output, block, pointwise, 1);
}

static TINYML_ALWAYS_INLINE void conv_run(const tinyml_conv2d_params *c, const conv_add *add,
                                         const int8_t *input, const int8_t *skip,
                                         int8_t *output, int16_t *block, int32_t pointwise,
                                         int32_t int4)
{
    if (int4) {
        conv_run_s4(c, add, input, skip, output, block, pointwise);
    } else {
        conv_run_s8(c, add, input, skip, output, block, pointwise);
    }
}

/* ---- entry points --------------------------------------------------------------------------- */

void tinyml_conv2d_s8(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                      int8_t *scratch)
{
    conv_run(p, NULL, input, NULL, output, conv_block_buffer(scratch), 0, 0);
}

void tinyml_conv2d_1x1_s8(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                          int8_t *scratch)
{
    conv_run(p, NULL, input, NULL, output, conv_block_buffer(scratch), 1, 0);
}

void tinyml_conv2d_s4(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                      int8_t *scratch)
{
    conv_run(p, NULL, input, NULL, output, conv_block_buffer(scratch), 0, 1);
}

void tinyml_conv2d_1x1_s4(const tinyml_conv2d_params *p, const int8_t *input, int8_t *output,
                          int8_t *scratch)
{
    conv_run(p, NULL, input, NULL, output, conv_block_buffer(scratch), 1, 1);
}

static TINYML_ALWAYS_INLINE void conv_add_run(const tinyml_conv2d_add_params *p,
                                             const int8_t *input, const int8_t *skip,
                                             int8_t *output, int8_t *scratch, int32_t int4)
{
    conv_add add;
    /* Word-aligned scratch: the two tables, then the block. */
    int32_t *tables = (int32_t *)(void *)conv_block_buffer(scratch);
    conv_add_table(tables, p->add_conv_offset, p->add_left_shift,
                   tinyml_dsp_requant_prepare(p->add_conv_multiplier, p->add_conv_shift));
    conv_add_table(tables + 256, p->add_skip_offset, p->add_left_shift,
                   tinyml_dsp_requant_prepare(p->add_skip_multiplier, p->add_skip_shift));
    add.conv_table = tables;
    add.skip_table = tables + 256;
    add.out_rq = tinyml_dsp_requant_prepare(p->add_output_multiplier, p->add_output_shift);
    add.zero_point = p->add_output_offset;
    add.act_min = p->add_act_min;
    add.act_max = p->add_act_max;
    conv_run(&p->conv, &add, input, skip, output, (int16_t *)(void *)(tables + 512), 0, int4);
}

void tinyml_conv2d_add_s8(const tinyml_conv2d_add_params *p, const int8_t *input,
                          const int8_t *skip, int8_t *output, int8_t *scratch)
{
    conv_add_run(p, input, skip, output, scratch, 0);
}

void tinyml_conv2d_add_s4(const tinyml_conv2d_add_params *p, const int8_t *input,
                          const int8_t *skip, int8_t *output, int8_t *scratch)
{
    conv_add_run(p, input, skip, output, scratch, 1);
}
