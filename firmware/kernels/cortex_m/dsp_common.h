/*
 * Inline helpers shared by the Cortex-M DSP kernels (private header).
 *
 * The kernels in this directory replace portable files of the same name on cores with the
 * DSP extension (Armv7E-M, Armv8-M Mainline with DSP). They reach the SIMD instructions
 * through ACLE's <arm_acle.h>; a host build for the tests gets the same names from a C
 * emulation of each instruction (tests/support/acle_emulation.h, selected by
 * -DTINYML_ACLE_EMULATION), so one source runs on the target and under the host's
 * sanitizers. Nothing else may select these files: without the DSP extension the portable
 * kernels are the right ones.
 *
 * What is here:
 * - unaligned 32-bit reads and writes of int8/int16 data (memcpy, which GCC and Clang turn
 *   into a single LDR/STR on cores that allow unaligned access);
 * - int8x4 -> 2 x int16x2 unpacking with SXTB16/SXTAB16. The cheap form ("interleaved")
 *   yields lanes (b0, b2) and (b1, b3): two SXTB16s, one with ROR #8. A dot product does
 *   not care about the order as long as both operands are unpacked the same way, so
 *   kernels pair interleaved inputs with interleaved weights and save the two PKHBT/PKHTB
 *   the natural order (b0, b1), (b2, b3) costs;
 * - the requantization of the int8 kernels (TFLM's MultiplyByQuantizedMultiplier with double
 *   rounding) in forms that are cheaper on a 32-bit core (one SMLAL instead of a 64-bit
 *   division; six instructions in all for the usual right shift of 2 or more) and
 *   bit-identical to fixedpoint.h's tinyml_mbqm for every multiplier except INT32_MIN,
 *   which lowering never produces.
 *
 * GCC 12 neither fuses a C rotate into SXTB16's ROR #8 operand nor emits PKHBT/PKHTB from C,
 * so those few forms use inline assembly on the target (one instruction each) and plain C
 * elsewhere.
 */
#ifndef TINYML_DSP_COMMON_H
#define TINYML_DSP_COMMON_H

#include <stdint.h>
#include <string.h>

#include "fixedpoint.h"

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define TINYML_DSP_ASM 1
#elif defined(TINYML_ACLE_EMULATION)
#include "acle_emulation.h" /* tests only: tests/support */
#define TINYML_DSP_ASM 0
#else
#error "firmware/kernels/cortex_m needs the DSP extension (__ARM_FEATURE_DSP)"
#endif

#if TINYML_DSP_ASM && !defined(__GNUC__)
#undef TINYML_DSP_ASM
#define TINYML_DSP_ASM 0
#endif

/* Keeps a hot loop in a function of its own: inlined into a large caller, its loop-invariant
 * values compete with the caller's for the 13 usable registers and spill. */
#if defined(__GNUC__)
#define TINYML_NOINLINE __attribute__((noinline))
#else
#define TINYML_NOINLINE
#endif

/* Keeps short copy and fill loops as loops: GCC otherwise turns them into memcpy/memset
 * calls, whose set-up costs more than the few bytes a kernel moves at a time. */
#if defined(__GNUC__) && !defined(__clang__)
#define TINYML_NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define TINYML_NO_LIBCALLS
#endif

/* Keeps GCC's first instruction scheduling pass away from a hot loop: it hoists the loop's
 * loads ahead of their uses, which in a loop that needs all the registers spills values and
 * costs more instructions than the reordering saves on an in-order core. */
#if defined(__GNUC__) && !defined(__clang__)
#define TINYML_NO_SCHEDULE __attribute__((optimize("no-schedule-insns")))
#else
#define TINYML_NO_SCHEDULE
#endif

/* Unrolls the next loop completely (a loop over the few pixels of a block): GCC's -O2
 * leaves such loops rolled, with their values in memory. */
#if defined(__GNUC__) && !defined(__clang__)
#define TINYML_UNROLL _Pragma("GCC unroll 8")
#else
#define TINYML_UNROLL
#endif

/* The opposite of TINYML_NOINLINE, for a step of a hot loop that GCC would otherwise call as
 * a function. */
#if defined(__GNUC__)
#define TINYML_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define TINYML_ALWAYS_INLINE inline
#endif

/* ---- memory access ------------------------------------------------------------------------ */

/* Four int8 values as one little-endian word (any alignment). */
static inline uint32_t tinyml_read_s8x4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Two int16 values as one word (any alignment): element 0 in the low half. */
static inline int32_t tinyml_read_s16x2(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void tinyml_write_s8x4(int8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

static inline void tinyml_write_s16x2(int16_t *p, int32_t v)
{
    memcpy(p, &v, sizeof v);
}

/* Two words, the memory operand the LDRD assembly below declares it reads. */
typedef struct {
    int32_t word[2];
} tinyml_2words;

/* Words p[i] and p[i + 1] of a word-aligned int32_t pointer, i a constant: one LDRD (GCC
 * merges such loads only sometimes). */
#if TINYML_DSP_ASM
#define TINYML_READ_2WORDS(p, i, first, second)                                              \
    __asm__("ldrd %0, %1, [%2, %3]"                                                          \
            : "=r"(first), "=r"(second)                                                      \
            : "r"(p), "n"((i) * 4), "m"(*(const tinyml_2words *)(const void *)((p) + (i))))
#else
#define TINYML_READ_2WORDS(p, i, first, second)                                              \
    do {                                                                                     \
        memcpy(&(first), (p) + (i), 4);                                                      \
        memcpy(&(second), (p) + (i) + 1, 4);                                                 \
    } while (0)
#endif

/* Two consecutive words from a word-aligned pointer, which then advances by 8 bytes: one
 * LDRD with post-increment. */
static inline void tinyml_read_2words(const int32_t **p, int32_t *first, int32_t *second)
{
#if TINYML_DSP_ASM
    __asm__("ldrd %0, %1, [%2], #8"
            : "=r"(*first), "=r"(*second), "+r"(*p)
            : "m"(*(const tinyml_2words *)(const void *)*p));
#else
    memcpy(first, *p, sizeof *first);
    memcpy(second, *p + 1, sizeof *second);
    *p += 2;
#endif
}

/* ---- unpacking int8x4 ------------------------------------------------------------------- */

/* SXTB16 of x rotated right by 8: bytes 1 and 3 sign-extended to halfwords. */
static inline int32_t tinyml_sxtb16_ror8(uint32_t x)
{
#if TINYML_DSP_ASM
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return __sxtb16((int32_t)((x >> 8) | (x << 24)));
#endif
}

/* SXTAB16 with x rotated right by 8: a's halfwords plus bytes 1 and 3 of x, sign-extended. */
static inline int32_t tinyml_sxtab16_ror8(int32_t a, uint32_t x)
{
#if TINYML_DSP_ASM
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
#else
    return __sxtab16(a, (int32_t)((x >> 8) | (x << 24)));
#endif
}

/* PKHBT: low half of a, low half of b in the high half. */
static inline int32_t tinyml_pkhbt(int32_t a, int32_t b)
{
#if TINYML_DSP_ASM
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((uint32_t)a & 0xFFFFu) | ((uint32_t)b << 16));
#endif
}

/* PKHTB: high half of b in the low half, high half of a. */
static inline int32_t tinyml_pkhtb(int32_t a, int32_t b)
{
#if TINYML_DSP_ASM
    int32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((uint32_t)a & 0xFFFF0000u) | ((uint32_t)b >> 16));
#endif
}

/* SSAT #8: x clamped to [-128, 127] in one instruction. (ACLE's __ssat is a GCC macro whose
 * builtin returns unsigned int, which -Wsign-conversion rejects inside the macro.) */
static inline int32_t tinyml_ssat8(int32_t x)
{
#if TINYML_DSP_ASM
    int32_t r;
    __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(x));
    return r;
#else
    return x < -128 ? -128 : (x > 127 ? 127 : x);
#endif
}

/* int8x4 (b0, b1, b2, b3) -> *even = (b0, b2), *odd = (b1, b3) as int16x2. */
static inline void tinyml_s8x4_interleaved(uint32_t x, int32_t *even, int32_t *odd)
{
    *even = __sxtb16((int32_t)x);
    *odd = tinyml_sxtb16_ror8(x);
}

/* The same with `offset2` (an int16 offset in both halves) added to every lane: the lanes
 * are (b + offset) modulo 2^16, exact whenever b + offset fits int16 (|offset| <= 32639). */
static inline void tinyml_s8x4_interleaved_offset(uint32_t x, int32_t offset2, int32_t *even,
                                                  int32_t *odd)
{
    *even = __sxtab16(offset2, (int32_t)x);
    *odd = tinyml_sxtab16_ror8(offset2, x);
}

/* int8x4 (b0, b1, b2, b3) -> *low = (b0, b1), *high = (b2, b3): natural order. */
static inline void tinyml_s8x4_natural(uint32_t x, int32_t *low, int32_t *high)
{
    const int32_t even = __sxtb16((int32_t)x);
    const int32_t odd = tinyml_sxtb16_ror8(x);
    *low = tinyml_pkhbt(even, odd);
    *high = tinyml_pkhtb(odd, even);
}

/* An int16 value in both halves of a word (the offset operand of SXTAB16). */
static inline int32_t tinyml_dup16(int32_t v)
{
    return (int32_t)(((uint32_t)v & 0xFFFFu) * 0x00010001u);
}

/* ---- requantization --------------------------------------------------------------------- */

/* Whether tinyml_dsp_mbqm_short (below) applies to (multiplier, shift): multiplier >= 0 and
 * -31 <= shift <= -2 (tinyml_dsp_requant_prepare's TINYML_DSP_SHORT, for raw values). */
static inline int tinyml_dsp_short_applies(int32_t multiplier, int32_t shift)
{
    return multiplier >= 0 && (uint32_t)(-2 - shift) <= 29u;
}

/* Per-channel form of MultiplyByQuantizedMultiplier's constants (tinyml_dsp_requant_prepare):
 * the multiplier, the left and right shifts (both 0..31), which of the forms below computes
 * it, and for the short form round_high = 2^(right - 2). A shift outside [-31, 31] makes
 * every result 0 in the reference (a left shift of 32 or more leaves no bits; a right shift of
 * 32 or more rounds every int32 to 0): multiplier 0 with no shifts reproduces that. */
enum {
    TINYML_DSP_LONG = 0,  /* tinyml_dsp_mbqm_long: any multiplier but INT32_MIN */
    TINYML_DSP_SHORT = 1, /* tinyml_dsp_mbqm_short: multiplier >= 0, right shift 2..31 */
    TINYML_DSP_HALF = 2,  /* tinyml_dsp_mbqm_half: multiplier >= 0, right shift 1 */
    TINYML_DSP_HIGH = 3   /* tinyml_dsp_mbqm_high: multiplier >= 0, no right shift */
};

typedef struct {
    int32_t multiplier;
    int32_t left;
    int32_t right;
    int32_t round_high;
    int32_t form;
} tinyml_dsp_requant;

static inline tinyml_dsp_requant tinyml_dsp_requant_prepare(int32_t multiplier, int32_t shift)
{
    tinyml_dsp_requant r;
    if (shift > 31 || shift < -31) {
        r.multiplier = 0;
        r.left = 0;
        r.right = 0;
    } else {
        r.multiplier = multiplier;
        r.left = shift > 0 ? shift : 0;
        r.right = shift > 0 ? 0 : -shift;
    }
    r.round_high = r.right >= 2 ? (int32_t)1 << (r.right - 2) : 0;
    if (r.multiplier < 0) {
        r.form = TINYML_DSP_LONG;
    } else if (r.right >= 2) {
        r.form = TINYML_DSP_SHORT;
    } else {
        r.form = r.right == 1 ? TINYML_DSP_HALF : TINYML_DSP_HIGH;
    }
    return r;
}

/* SMLAL: the 64-bit (hi:lo) += a * b. GCC does not always see a 32x32->64 multiply through
 * 64-bit C arithmetic once values are hoisted out of loops, hence the assembly. */
static inline void tinyml_smlal(uint32_t *lo, int32_t *hi, int32_t a, int32_t b)
{
#if TINYML_DSP_ASM
    __asm__("smlal %0, %1, %2, %3" : "+r"(*lo), "+r"(*hi) : "r"(a), "r"(b));
#else
    const uint64_t start = ((uint64_t)(uint32_t)*hi << 32) | *lo;
    const uint64_t sum = start + (uint64_t)((int64_t)a * b);
    *lo = (uint32_t)sum;
    *hi = (int32_t)(uint32_t)(sum >> 32);
#endif
}

/* tinyml_mbqm(x, multiplier, shift), any prepared multiplier other than INT32_MIN (which
 * lowering never produces: quantized multipliers lie in [2^30, 2^31) or are 0).
 *
 * SaturatingRoundingDoublingHighMul saturates only for INT32_MIN * INT32_MIN, so its result
 * is floor((a * m + 2^30) / 2^31): gemmlowp's nudge of 1 - 2^30 for negative products
 * followed by a division truncating toward zero is the same floor. That is one SMLAL instead
 * of a 64-bit division; the rounding division by 2^right then follows RoundingDivideByPOT
 * literally. */
static inline int32_t tinyml_dsp_mbqm_long(int32_t x, tinyml_dsp_requant r)
{
    const int32_t a = (int32_t)((uint32_t)x << r.left);
    uint32_t lo = 0x40000000u;
    int32_t hi = 0;
    int32_t high, mask, remainder, threshold;
    tinyml_smlal(&lo, &hi, a, r.multiplier);
    high = (int32_t)(((uint32_t)hi << 1) | (lo >> 31));
    mask = (int32_t)((1u << r.right) - 1u);
    remainder = high & mask;
    threshold = (mask >> 1) + (int32_t)((uint32_t)high >> 31);
    return (high >> r.right) + (remainder > threshold ? 1 : 0);
}

/* tinyml_mbqm(x, multiplier, shift) in five instructions when tinyml_dsp_short_applies;
 * round_high = 2^(right - 2) and high_shift = right - 1, where right = -shift.
 *
 * With P = x * m and h = floor((P + 2^30) / 2^31) the high half above, RoundingDivideByPOT
 * is floor((h + 2^(right-1) - [h < 0]) / 2^right), and floor((floor(u / 2^31) + c) / 2^right)
 * = floor((u + c * 2^31) / 2^(31 + right)), so the whole is one 64-bit sum shifted right by
 * 31 + right >= 33: (P + 2^30 + 2^(30 + right) - [h < 0] * 2^31) >> (31 + right), i.e. the
 * high word shifted right by right - 1. [h < 0] may be replaced by [x < 0]: they differ only
 * when h = 0 (-2^30 <= P < 0, or m = 0), where both give 0 for right >= 1. The 64-bit
 * start value is then (high word 2^(right-2) - [x < 0], low word 2^30 | sign bit of x), and
 * |P| <= 2^62 keeps the sum inside int64. */
static inline int32_t tinyml_dsp_mbqm_short_raw(int32_t x, int32_t multiplier,
                                                int32_t round_high, int32_t high_shift)
{
#if TINYML_DSP_ASM
    /* One block, so that GCC does not hoist the start values of several calls ahead of
     * their SMLALs (which spills them). */
    uint32_t lo;
    int32_t hi;
    __asm__("and %0, %2, #0x80000000\n\t"
            "orr %0, %0, #0x40000000\n\t"
            "add %1, %4, %2, asr #31\n\t"
            "smlal %0, %1, %2, %3\n\t"
            "asr %1, %1, %5"
            : "=&r"(lo), "=&r"(hi)
            : "r"(x), "r"(multiplier), "r"(round_high), "r"(high_shift));
    (void)lo;
    return hi;
#else
    uint32_t lo = ((uint32_t)x & 0x80000000u) | 0x40000000u;
    int32_t hi = round_high + (x < 0 ? -1 : 0);
    tinyml_smlal(&lo, &hi, x, multiplier);
    return hi >> high_shift;
#endif
}

static inline int32_t tinyml_dsp_mbqm_short(int32_t x, tinyml_dsp_requant r)
{
    return tinyml_dsp_mbqm_short_raw(x, r.multiplier, r.round_high, r.right - 1);
}

/* The same for a right shift of 1 (multiplier >= 0): the sum above shifted by exactly 32,
 * i.e. the high word, with the start value 2^30 + 2^31 - [x < 0] * 2^31 (low word
 * 2^30 | (sign bit of x inverted), high word 0). */
static inline int32_t tinyml_dsp_mbqm_half(int32_t x, int32_t multiplier)
{
    uint32_t lo = (~(uint32_t)x & 0x80000000u) | 0x40000000u;
    int32_t hi = 0;
    tinyml_smlal(&lo, &hi, x, multiplier);
    return hi;
}

/* And for no right shift (multiplier >= 0, any left shift): SaturatingRoundingDoublingHighMul
 * alone, floor((a * m + 2^30) / 2^31) with a = x << left (wrapping, as the reference). */
static inline int32_t tinyml_dsp_mbqm_high(int32_t x, int32_t multiplier, int32_t left)
{
    uint32_t lo = 0x40000000u;
    int32_t hi = 0;
    tinyml_smlal(&lo, &hi, (int32_t)((uint32_t)x << left), multiplier);
    return (int32_t)(((uint32_t)hi << 1) | (lo >> 31));
}

/* tinyml_mbqm with prepared constants, in the cheapest form that applies. Kernels that
 * prepare their channels once may pick the form themselves and call it in a loop. */
static inline int32_t tinyml_dsp_mbqm(int32_t x, tinyml_dsp_requant r)
{
    switch (r.form) {
    case TINYML_DSP_SHORT:
        return tinyml_dsp_mbqm_short(x, r);
    case TINYML_DSP_HALF:
        return tinyml_dsp_mbqm_half(x, r.multiplier);
    case TINYML_DSP_HIGH:
        return tinyml_dsp_mbqm_high(x, r.multiplier, r.left);
    default:
        return tinyml_dsp_mbqm_long(x, r);
    }
}

/* x + zero_point (wrapping, as the reference's requantize does) clamped to
 * [act_min, act_max]. */
static inline int8_t tinyml_dsp_clamp(int32_t x, int32_t zero_point, int32_t act_min,
                                      int32_t act_max)
{
    int32_t y = tinyml_wrap_add(x, zero_point);
    y = y < act_min ? act_min : y;
    y = y > act_max ? act_max : y;
    return (int8_t)y;
}

/* The output stage of the int8 kernels (fixedpoint.h's tinyml_requantize). */
static inline int8_t tinyml_dsp_requantize(int32_t acc, tinyml_dsp_requant r,
                                           int32_t zero_point, int32_t act_min,
                                           int32_t act_max)
{
    return tinyml_dsp_clamp(tinyml_dsp_mbqm(acc, r), zero_point, act_min, act_max);
}

#endif /* TINYML_DSP_COMMON_H */
