/*
 * Portable C emulation of the Arm C Language Extensions (ACLE) DSP intrinsics, for tests only.
 *
 * Why: the Cortex-M kernels (firmware/kernels/cortex_m) use <arm_acle.h> intrinsics that only
 * an Arm compiler for a core with the DSP extension provides. Compiling those same sources on
 * the host against this header lets the tests run them under AddressSanitizer and
 * UndefinedBehaviorSanitizer, with random shapes, against the portable kernels. Each function
 * follows the pseudocode of the instruction it stands for in the Armv7-M Architecture
 * Reference Manual (ARM DDI 0403, section A7.7): lanes are extracted as signed or unsigned
 * halfwords/bytes, computed at full precision, and the result is truncated to the destination
 * width exactly as the instruction does (wrap-around where the manual writes
 * "result<31:0>", saturation where it calls SignedSat/UnsignedSat). The Q flag (sticky
 * overflow) is not modelled: no kernel reads it.
 *
 * Names, argument order and types are ACLE's (as GCC's arm_acle.h declares them), plus
 * __ror, __pkhbt and __pkhtb, which ACLE defines but GCC 12's arm_acle.h lacks (the kernels
 * spell those with plain C or inline assembly on the target; the emulation keeps them here
 * so host builds of dsp_common.h find every name). Kernels include this header instead of
 * <arm_acle.h> when compiled with -DTINYML_ACLE_EMULATION (see
 * firmware/kernels/cortex_m/dsp_common.h).
 *
 * Conversions from uint32_t to int32_t assume two's complement, as the kernels do.
 */
#ifndef TINYML_ACLE_EMULATION_H
#define TINYML_ACLE_EMULATION_H

#include <stdint.h>

typedef int32_t int16x2_t;
typedef uint32_t uint16x2_t;
typedef int32_t int8x4_t;
typedef uint32_t uint8x4_t;

/* ---- lane access ---------------------------------------------------------------------- */

/* Signed halfword lane i (0: bits 15:0, 1: bits 31:16). */
static inline int32_t acle_emu_sh(uint32_t x, int lane)
{
    return (int32_t)(int16_t)(uint16_t)(x >> (16 * lane));
}

/* Unsigned halfword lane i. */
static inline uint32_t acle_emu_uh(uint32_t x, int lane)
{
    return (x >> (16 * lane)) & 0xFFFFu;
}

/* Signed byte lane i (0: bits 7:0 ... 3: bits 31:24). */
static inline int32_t acle_emu_sb(uint32_t x, int lane)
{
    return (int32_t)(int8_t)(uint8_t)(x >> (8 * lane));
}

/* Unsigned byte lane i. */
static inline uint32_t acle_emu_ub(uint32_t x, int lane)
{
    return (x >> (8 * lane)) & 0xFFu;
}

/* Two halfwords (low, high), each truncated to 16 bits. */
static inline uint32_t acle_emu_pack16(int64_t low, int64_t high)
{
    return ((uint32_t)(uint64_t)low & 0xFFFFu) | (((uint32_t)(uint64_t)high & 0xFFFFu) << 16);
}

/* Four bytes, each truncated to 8 bits. */
static inline uint32_t acle_emu_pack8(int64_t b0, int64_t b1, int64_t b2, int64_t b3)
{
    return ((uint32_t)(uint64_t)b0 & 0xFFu) | (((uint32_t)(uint64_t)b1 & 0xFFu) << 8) |
           (((uint32_t)(uint64_t)b2 & 0xFFu) << 16) | (((uint32_t)(uint64_t)b3 & 0xFFu) << 24);
}

/* result<31:0> of a full-precision signed result. */
static inline int32_t acle_emu_wrap32(int64_t x)
{
    return (int32_t)(uint32_t)(uint64_t)x;
}

/* SignedSatQ(x, bits) and UnsignedSatQ(x, bits). */
static inline int64_t acle_emu_ssat(int64_t x, unsigned bits)
{
    const int64_t hi = ((int64_t)1 << (bits - 1)) - 1;
    const int64_t lo = -((int64_t)1 << (bits - 1));
    return x > hi ? hi : (x < lo ? lo : x);
}

static inline int64_t acle_emu_usat(int64_t x, unsigned bits)
{
    const int64_t hi = ((int64_t)1 << bits) - 1;
    return x > hi ? hi : (x < 0 ? 0 : x);
}

/* ---- data processing ------------------------------------------------------------------ */

/* ROR: x rotated right by y (mod 32). */
static inline uint32_t __ror(uint32_t x, uint32_t y)
{
    y &= 31u;
    return y == 0 ? x : (x >> y) | (x << (32u - y));
}

/* PKHBT Rd, Rn, Rm, LSL #shift: bottom half of a, top half of (b << shift). */
static inline uint32_t __pkhbt(uint32_t a, uint32_t b, unsigned shift)
{
    return (a & 0xFFFFu) | ((b << (shift & 31u)) & 0xFFFF0000u);
}

/* PKHTB Rd, Rn, Rm, ASR #shift: top half of a, bottom half of (b >> shift), arithmetic
 * (shift 0 encodes ASR #32 in the instruction; here 0 means no shift, as CMSIS's macro). */
static inline uint32_t __pkhtb(uint32_t a, uint32_t b, unsigned shift)
{
    const int32_t shifted = (int32_t)b >> (shift & 31u);
    return (a & 0xFFFF0000u) | ((uint32_t)shifted & 0xFFFFu);
}

/* ---- saturation ----------------------------------------------------------------------- */

/* SSAT: x saturated to a signed `bits`-bit range, 1 <= bits <= 32. */
#define __ssat(x, bits) ((int32_t)acle_emu_ssat((int64_t)(int32_t)(x), (unsigned)(bits)))
/* USAT: x saturated to [0, 2^bits - 1], 0 <= bits <= 31. */
#define __usat(x, bits) ((uint32_t)acle_emu_usat((int64_t)(int32_t)(x), (unsigned)(bits)))

/* QADD, QSUB: saturating 32-bit addition and subtraction. */
static inline int32_t __qadd(int32_t a, int32_t b)
{
    return (int32_t)acle_emu_ssat((int64_t)a + b, 32);
}

static inline int32_t __qsub(int32_t a, int32_t b)
{
    return (int32_t)acle_emu_ssat((int64_t)a - b, 32);
}

/* ---- sign and zero extension ---------------------------------------------------------- */

/* SXTB16: bytes 0 and 2 sign-extended to the two halfwords. */
static inline int16x2_t __sxtb16(int8x4_t x)
{
    const uint32_t u = (uint32_t)x;
    return (int16x2_t)acle_emu_pack16(acle_emu_sb(u, 0), acle_emu_sb(u, 2));
}

/* SXTAB16: a's halfwords plus bytes 0 and 2 of b sign-extended, each modulo 2^16. */
static inline int16x2_t __sxtab16(int16x2_t a, int8x4_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int16x2_t)acle_emu_pack16((int64_t)acle_emu_uh(ua, 0) + acle_emu_sb(ub, 0),
                                      (int64_t)acle_emu_uh(ua, 1) + acle_emu_sb(ub, 2));
}

/* UXTB16: bytes 0 and 2 zero-extended to the two halfwords. */
static inline uint16x2_t __uxtb16(uint8x4_t x)
{
    return (uint16x2_t)acle_emu_pack16(acle_emu_ub(x, 0), acle_emu_ub(x, 2));
}

/* UXTAB16: a's halfwords plus bytes 0 and 2 of b zero-extended, each modulo 2^16. */
static inline uint16x2_t __uxtab16(uint16x2_t a, uint8x4_t b)
{
    return (uint16x2_t)acle_emu_pack16((int64_t)acle_emu_uh(a, 0) + acle_emu_ub(b, 0),
                                       (int64_t)acle_emu_uh(a, 1) + acle_emu_ub(b, 2));
}

/* ---- parallel halfword and byte arithmetic -------------------------------------------- */

/* SADD16, SSUB16: per-halfword signed addition/subtraction, modulo 2^16. */
static inline int16x2_t __sadd16(int16x2_t a, int16x2_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int16x2_t)acle_emu_pack16((int64_t)acle_emu_sh(ua, 0) + acle_emu_sh(ub, 0),
                                      (int64_t)acle_emu_sh(ua, 1) + acle_emu_sh(ub, 1));
}

static inline int16x2_t __ssub16(int16x2_t a, int16x2_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int16x2_t)acle_emu_pack16((int64_t)acle_emu_sh(ua, 0) - acle_emu_sh(ub, 0),
                                      (int64_t)acle_emu_sh(ua, 1) - acle_emu_sh(ub, 1));
}

/* QADD16, QSUB16: per-halfword signed saturating addition/subtraction. */
static inline int16x2_t __qadd16(int16x2_t a, int16x2_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int16x2_t)acle_emu_pack16(
        acle_emu_ssat((int64_t)acle_emu_sh(ua, 0) + acle_emu_sh(ub, 0), 16),
        acle_emu_ssat((int64_t)acle_emu_sh(ua, 1) + acle_emu_sh(ub, 1), 16));
}

static inline int16x2_t __qsub16(int16x2_t a, int16x2_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int16x2_t)acle_emu_pack16(
        acle_emu_ssat((int64_t)acle_emu_sh(ua, 0) - acle_emu_sh(ub, 0), 16),
        acle_emu_ssat((int64_t)acle_emu_sh(ua, 1) - acle_emu_sh(ub, 1), 16));
}

/* SADD8, SSUB8: per-byte signed addition/subtraction, modulo 2^8 (GE flags not modelled). */
static inline int8x4_t __sadd8(int8x4_t a, int8x4_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int8x4_t)acle_emu_pack8(
        (int64_t)acle_emu_sb(ua, 0) + acle_emu_sb(ub, 0),
        (int64_t)acle_emu_sb(ua, 1) + acle_emu_sb(ub, 1),
        (int64_t)acle_emu_sb(ua, 2) + acle_emu_sb(ub, 2),
        (int64_t)acle_emu_sb(ua, 3) + acle_emu_sb(ub, 3));
}

static inline int8x4_t __ssub8(int8x4_t a, int8x4_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int8x4_t)acle_emu_pack8(
        (int64_t)acle_emu_sb(ua, 0) - acle_emu_sb(ub, 0),
        (int64_t)acle_emu_sb(ua, 1) - acle_emu_sb(ub, 1),
        (int64_t)acle_emu_sb(ua, 2) - acle_emu_sb(ub, 2),
        (int64_t)acle_emu_sb(ua, 3) - acle_emu_sb(ub, 3));
}

/* QADD8, QSUB8: per-byte signed saturating addition/subtraction. */
static inline int8x4_t __qadd8(int8x4_t a, int8x4_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int8x4_t)acle_emu_pack8(
        acle_emu_ssat((int64_t)acle_emu_sb(ua, 0) + acle_emu_sb(ub, 0), 8),
        acle_emu_ssat((int64_t)acle_emu_sb(ua, 1) + acle_emu_sb(ub, 1), 8),
        acle_emu_ssat((int64_t)acle_emu_sb(ua, 2) + acle_emu_sb(ub, 2), 8),
        acle_emu_ssat((int64_t)acle_emu_sb(ua, 3) + acle_emu_sb(ub, 3), 8));
}

static inline int8x4_t __qsub8(int8x4_t a, int8x4_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return (int8x4_t)acle_emu_pack8(
        acle_emu_ssat((int64_t)acle_emu_sb(ua, 0) - acle_emu_sb(ub, 0), 8),
        acle_emu_ssat((int64_t)acle_emu_sb(ua, 1) - acle_emu_sb(ub, 1), 8),
        acle_emu_ssat((int64_t)acle_emu_sb(ua, 2) - acle_emu_sb(ub, 2), 8),
        acle_emu_ssat((int64_t)acle_emu_sb(ua, 3) - acle_emu_sb(ub, 3), 8));
}

/* SSAT16: each halfword saturated to a signed `bits`-bit range, 1 <= bits <= 16. */
#define __ssat16(x, bits)                                                                    \
    ((int16x2_t)acle_emu_pack16(                                                             \
        acle_emu_ssat(acle_emu_sh((uint32_t)(x), 0), (unsigned)(bits)),                      \
        acle_emu_ssat(acle_emu_sh((uint32_t)(x), 1), (unsigned)(bits))))

/* USAT16: each halfword saturated to [0, 2^bits - 1], 0 <= bits <= 15. */
#define __usat16(x, bits)                                                                    \
    ((uint16x2_t)acle_emu_pack16(                                                            \
        acle_emu_usat(acle_emu_sh((uint32_t)(x), 0), (unsigned)(bits)),                      \
        acle_emu_usat(acle_emu_sh((uint32_t)(x), 1), (unsigned)(bits))))

/* ---- multiplies ----------------------------------------------------------------------- */

/* SMUAD: a.lo * b.lo + a.hi * b.hi (result<31:0>). */
static inline int32_t __smuad(int16x2_t a, int16x2_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return acle_emu_wrap32((int64_t)acle_emu_sh(ua, 0) * acle_emu_sh(ub, 0) +
                           (int64_t)acle_emu_sh(ua, 1) * acle_emu_sh(ub, 1));
}

/* SMUADX: a.lo * b.hi + a.hi * b.lo. */
static inline int32_t __smuadx(int16x2_t a, int16x2_t b)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return acle_emu_wrap32((int64_t)acle_emu_sh(ua, 0) * acle_emu_sh(ub, 1) +
                           (int64_t)acle_emu_sh(ua, 1) * acle_emu_sh(ub, 0));
}

/* SMLAD: c + a.lo * b.lo + a.hi * b.hi, result<31:0>. */
static inline int32_t __smlad(int16x2_t a, int16x2_t b, int32_t c)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return acle_emu_wrap32((int64_t)c + (int64_t)acle_emu_sh(ua, 0) * acle_emu_sh(ub, 0) +
                           (int64_t)acle_emu_sh(ua, 1) * acle_emu_sh(ub, 1));
}

/* SMLADX: c + a.lo * b.hi + a.hi * b.lo, result<31:0>. */
static inline int32_t __smladx(int16x2_t a, int16x2_t b, int32_t c)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return acle_emu_wrap32((int64_t)c + (int64_t)acle_emu_sh(ua, 0) * acle_emu_sh(ub, 1) +
                           (int64_t)acle_emu_sh(ua, 1) * acle_emu_sh(ub, 0));
}

/* SMLSD: c + a.lo * b.lo - a.hi * b.hi, result<31:0>. */
static inline int32_t __smlsd(int16x2_t a, int16x2_t b, int32_t c)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    return acle_emu_wrap32((int64_t)c + (int64_t)acle_emu_sh(ua, 0) * acle_emu_sh(ub, 0) -
                           (int64_t)acle_emu_sh(ua, 1) * acle_emu_sh(ub, 1));
}

/* SMLALD: 64-bit c + a.lo * b.lo + a.hi * b.hi (modulo 2^64). */
static inline int64_t __smlald(int16x2_t a, int16x2_t b, int64_t c)
{
    const uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
    const int64_t sum = (int64_t)acle_emu_sh(ua, 0) * acle_emu_sh(ub, 0) +
                        (int64_t)acle_emu_sh(ua, 1) * acle_emu_sh(ub, 1);
    return (int64_t)((uint64_t)c + (uint64_t)sum);
}

/* SMLAxy: c + (16-bit lane x of a) * (16-bit lane y of b), result<31:0>. */
static inline int32_t __smlabb(int32_t a, int32_t b, int32_t c)
{
    return acle_emu_wrap32((int64_t)c + (int64_t)acle_emu_sh((uint32_t)a, 0) *
                                            acle_emu_sh((uint32_t)b, 0));
}

static inline int32_t __smlabt(int32_t a, int32_t b, int32_t c)
{
    return acle_emu_wrap32((int64_t)c + (int64_t)acle_emu_sh((uint32_t)a, 0) *
                                            acle_emu_sh((uint32_t)b, 1));
}

static inline int32_t __smlatb(int32_t a, int32_t b, int32_t c)
{
    return acle_emu_wrap32((int64_t)c + (int64_t)acle_emu_sh((uint32_t)a, 1) *
                                            acle_emu_sh((uint32_t)b, 0));
}

static inline int32_t __smlatt(int32_t a, int32_t b, int32_t c)
{
    return acle_emu_wrap32((int64_t)c + (int64_t)acle_emu_sh((uint32_t)a, 1) *
                                            acle_emu_sh((uint32_t)b, 1));
}

/* SMLAWB, SMLAWT: c + (a * halfword of b) >> 16 (the top 32 bits of the 48-bit product). */
static inline int32_t __smlawb(int32_t a, int32_t b, int32_t c)
{
    const int64_t product = (int64_t)a * acle_emu_sh((uint32_t)b, 0);
    return acle_emu_wrap32((int64_t)c + (product >> 16));
}

static inline int32_t __smlawt(int32_t a, int32_t b, int32_t c)
{
    const int64_t product = (int64_t)a * acle_emu_sh((uint32_t)b, 1);
    return acle_emu_wrap32((int64_t)c + (product >> 16));
}

/* USADA8: c + sum of |a.byte[i] - b.byte[i]| (unsigned bytes). */
static inline uint32_t __usada8(uint8x4_t a, uint8x4_t b, uint32_t c)
{
    uint32_t sum = c;
    int i;
    for (i = 0; i < 4; ++i) {
        const int32_t d = (int32_t)acle_emu_ub(a, i) - (int32_t)acle_emu_ub(b, i);
        sum += (uint32_t)(d < 0 ? -d : d);
    }
    return sum;
}

static inline uint32_t __usad8(uint8x4_t a, uint8x4_t b)
{
    return __usada8(a, b, 0u);
}

#endif /* TINYML_ACLE_EMULATION_H */
