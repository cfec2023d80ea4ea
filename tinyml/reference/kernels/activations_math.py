"""TANH, LEAKY_RELU, PRELU, ELU, ABS, RSQRT and LOG_SOFTMAX.

int8 follows TFLM's kernels, each with its own way of reaching the output scale:

- TANH evaluates gemmlowp's fixed-point tanh on the input in Q4.27 (the input moved there as
  LOGISTIC's is) and writes the Q0.31 result in units of 1/128 with no zero point: TFLM
  ignores the output's quantization, which the converter always sets to (1/128, 0). The
  generated C looks the result up in a table of all 256 codes made with this function;
- LEAKY_RELU requantizes x >= 0 with input_scale / output_scale and x < 0 with
  input_scale * alpha / output_scale (both ratios in float32, then QuantizeMultiplier);
- PRELU does the same with a quantized alpha tensor: the negative side multiplies the
  input and alpha offsets in int32 and rescales by input_scale * alpha_scale / output_scale
  (in double); alpha broadcasts against the input (per channel, for Keras' PReLU with
  shared spatial axes);
- ELU is a 256-entry table TFLM builds in Prepare with float arithmetic (``expf``);
- ABS takes |x - input zero point| and rescales it only when the two scales differ;
- RSQRT computes 1/sqrt(x - zero point) with TFLite's fixed-point Newton-Raphson inverse
  square root (``GetInvSqrtQuantizedMultiplierExp``) and two requantizations; TFLM fails the
  inference on an input below the zero point (a negative value);
- LOG_SOFTMAX (over the last axis) sums gemmlowp exps of the scaled differences to the row
  maximum in Q12.19, takes TFLite's fixed-point log of the sum in Q5.26 and subtracts it;
  the output has TFLM's fixed quantization, scale 16/256 and zero point 127.

Where TFLM computes a constant in float32 (LEAKY_RELU's and ABS's scale ratios, ELU's
table), the numpy code does the same operations in ``np.float32`` in the same order.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.ir import Op, Tensor
from tinyml.reference import gemmlowp as gl
from tinyml.reference.fixedpoint import (
    INT32_MAX, INT32_MIN, multiply_by_quantized_multiplier, quantize_multiplier,
    rounding_divide_by_pot, saturating_rounding_doubling_high_mul, tflite_round, wrap_int32)
from tinyml.reference.kernels.registry import KernelCall, kernel
from tinyml.reference.kernels.activations import (LOGISTIC_INPUT_INTEGER_BITS,
                                                  q4_input_params)
from tinyml.reference.kernels.softmax import preprocess_softmax_scaling

#: TANH's Q0.31 result is shifted down to units of 1/128 (TFLM's ``kOutputScale``).
TANH_OUTPUT_BITS = 7


def _int8_only(call: KernelCall) -> None:
    op, x_t, out = call.op, call.in_tensors[0], call.out
    if x_t.dtype != "int8" or out.dtype != "int8":
        raise UnsupportedOpError(op.kind, op.name, detail=f"{x_t.dtype} -> {out.dtype} "
                                 f"(int8 -> int8 only)")


# ---- TANH ----------------------------------------------------------------------------------


@kernel("TANH")
def tanh(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        return np.tanh(call.inputs[0].astype(np.float32)).astype(np.float32)
    if call.in_tensors[0].dtype == "int16":
        from tinyml.reference.kernels.activations import sigmoid_family_int16
        return sigmoid_family_int16(call)
    _int8_only(call)
    return _tanh_int8(call.in_tensors[0], call.inputs[0])


def tanh_int8_table(x_t: Tensor) -> np.ndarray:
    """TANH's output code for every input code (indexed by the code as uint8)."""
    return _tanh_int8(x_t, np.arange(256, dtype=np.uint8).view(np.int8))


def _tanh_int8(x_t: Tensor, codes: np.ndarray) -> np.ndarray:
    """TFLM's ``reference_integer_ops::Tanh`` on int8 ``codes``."""
    multiplier, left_shift, radius = q4_input_params(x_t)
    x = codes.astype(np.int64) - x_t.zero_point()
    inside = (x > -radius) & (x < radius)
    q4 = multiply_by_quantized_multiplier(np.where(inside, x, 0), multiplier, left_shift)
    q0 = gl.tanh(q4, LOGISTIC_INPUT_INTEGER_BITS)
    y = np.clip(rounding_divide_by_pot(q0, 31 - TANH_OUTPUT_BITS), -128, 127)
    y = np.where(x <= -radius, -128, np.where(x >= radius, 127, y))
    return y.astype(np.int8)


# ---- LEAKY_RELU ----------------------------------------------------------------------------


def leaky_relu_int8_params(x_t: Tensor, out: Tensor, alpha: float
                           ) -> tuple[int, int, int, int]:
    """``CalculateOpDataLeakyRelu``: (alpha multiplier, alpha shift, identity multiplier,
    identity shift), from float32 ratios input_scale * alpha / output_scale and
    input_scale / output_scale. A negative alpha gives a negative multiplier."""
    x_scale, out_scale = np.float32(x_t.scale()), np.float32(out.scale())
    alpha_multiplier, alpha_shift = quantize_multiplier(
        float(x_scale * np.float32(alpha) / out_scale))
    identity_multiplier, identity_shift = quantize_multiplier(float(x_scale / out_scale))
    return alpha_multiplier, alpha_shift, identity_multiplier, identity_shift


@kernel("LEAKY_RELU")
def leaky_relu(call: KernelCall) -> np.ndarray:
    alpha = call.attrs.alpha
    if not call.quantized:
        x = call.inputs[0].astype(np.float32)
        return np.where(x > 0, x, x * np.float32(alpha)).astype(np.float32)
    _int8_only(call)
    x_t, out = call.in_tensors[0], call.out
    am, ash, im, ish = leaky_relu_int8_params(x_t, out, alpha)
    x = call.inputs[0].astype(np.int64) - x_t.zero_point()
    # TFLM multiplies by |alpha multiplier| and negates the product for a negative alpha.
    negative_side = multiply_by_quantized_multiplier(x, abs(am), ash)
    negative_side = -negative_side if am < 0 else negative_side
    y = out.zero_point() + np.where(x >= 0, multiply_by_quantized_multiplier(x, im, ish),
                                    negative_side)
    return np.clip(y, -128, 127).astype(np.int8)


# ---- PRELU ---------------------------------------------------------------------------------


def prelu_int8_params(x_t: Tensor, alpha_t: Tensor, out: Tensor
                      ) -> tuple[int, int, int, int]:
    """``CalculatePreluParams``: (multiplier, shift) of the positive side (input_scale /
    output_scale) and of the negative side (input_scale * alpha_scale / output_scale), in
    double from the float32 scales."""
    m1, s1 = quantize_multiplier(float(x_t.scale()) / float(out.scale()))
    m2, s2 = quantize_multiplier(float(x_t.scale()) * float(alpha_t.scale()) /
                                 float(out.scale()))
    return m1, s1, m2, s2


@kernel("PRELU")
def prelu(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        x, alpha = (v.astype(np.float32) for v in call.inputs)
        return np.where(x >= 0, x, x * alpha).astype(np.float32)
    _int8_only(call)
    x_t, alpha_t = call.in_tensors
    out = call.out
    if alpha_t.dtype != "int8" or alpha_t.quant is None:
        raise UnsupportedOpError(call.op.kind, call.op.name,
                                 detail=f"alpha is {alpha_t.dtype}, int8 input needs int8 alpha")
    m1, s1, m2, s2 = prelu_int8_params(x_t, alpha_t, out)
    x, a = np.broadcast_arrays(call.inputs[0].astype(np.int64) - x_t.zero_point(),
                               call.inputs[1].astype(np.int64) - alpha_t.zero_point())
    y = np.where(x >= 0, multiply_by_quantized_multiplier(x, m1, s1),
                 multiply_by_quantized_multiplier(x * a, m2, s2)) + out.zero_point()
    return np.clip(y, -128, 127).astype(np.int8).reshape(out.shape)


# ---- ELU -----------------------------------------------------------------------------------


def _libm_expf():
    """The C library's ``expf``: TFLM builds ELU's table with it, and numpy's float32 exp is
    a different implementation that may round the last bit differently."""
    libm = ctypes.CDLL(ctypes.util.find_library("m") or None)
    fn = libm.expf
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def libm_float(name: str):
    """A float32 function of the C library (``tanhf``, ``erfcf``): TFLite builds its GELU
    tables with them."""
    libm = ctypes.CDLL(ctypes.util.find_library("m") or None)
    fn = getattr(libm, name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def populate_int8_table(op: Op, x_t: Tensor, out: Tensor, transform,
                        non_finite: int | None = None) -> np.ndarray:
    """TFLite's ``PopulateLookupTable``: the output code of every input code (indexed by the
    code as uint8), computed in float32: dequantize, ``transform``, multiply by
    1/output_scale, round, add the zero point, clamp. A result beyond int32 is an error, or,
    given ``non_finite``, that code (what the host's float-to-int conversion then gives)."""
    x_scale = np.float32(x_t.scale())
    inverse_scale = np.float32(1.0) / np.float32(out.scale())
    table = np.zeros(256, np.int8)
    for code in range(-128, 128):
        y = transform(x_scale * np.float32(code - x_t.zero_point()))
        rescaled = np.float32(tflite_round(np.float32(y * inverse_scale)))
        value = np.float32(rescaled + np.float32(out.zero_point()))
        if not abs(float(value)) < 2.0 ** 31 and non_finite is not None:
            table[code & 0xFF] = non_finite
            continue
        if not abs(float(value)) < 2.0 ** 31:
            raise TinymlError(f"layer '{op.name}' ({op.kind}): input code {code} maps to "
                              f"{value:g} output steps, beyond int32 (the table is undefined "
                              f"there)")
        table[code & 0xFF] = int(np.clip(int(value), -128, 127))
    return table


def elu_int8_table(op: Op, x_t: Tensor, out: Tensor) -> np.ndarray:
    """TFLM's table for ELU: expf(x) - 1 below zero, x above."""
    expf = _libm_expf()
    return populate_int8_table(
        op, x_t, out, lambda x: np.float32(expf(float(x))) - np.float32(1.0) if x < 0 else x)


@kernel("ELU")
def elu(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        x = call.inputs[0].astype(np.float32)
        return np.where(x < 0, np.expm1(x), x).astype(np.float32)
    _int8_only(call)
    table = elu_int8_table(call.op, call.in_tensors[0], call.out)
    return table[call.inputs[0].astype(np.int8).view(np.uint8)]


# ---- ABS -----------------------------------------------------------------------------------


def abs_int8_params(x_t: Tensor, out: Tensor) -> tuple[int, int] | None:
    """``PrepareAbsRsqrt`` for ABS: (multiplier, shift) of the float32 ratio input_scale /
    output_scale, or None when the two float32 scales are equal (no rescaling at all)."""
    x_scale, out_scale = np.float32(x_t.scale()), np.float32(out.scale())
    if x_scale == out_scale:
        return None
    return quantize_multiplier(float(x_scale / out_scale))


@kernel("ABS")
def abs_(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        return np.abs(call.inputs[0].astype(np.float32))
    _int8_only(call)
    x_t, out = call.in_tensors[0], call.out
    value = np.abs(call.inputs[0].astype(np.int64) - x_t.zero_point())
    rescale = abs_int8_params(x_t, out)
    if rescale is not None:
        value = multiply_by_quantized_multiplier(value, *rescale)
    return np.clip(value + out.zero_point(), -128, 127).astype(np.int8)


# ---- LOG_SOFTMAX ---------------------------------------------------------------------------

#: TFLM's int8 LOG_SOFTMAX: scaled differences in Q5.26, exps summed in Q12.19, the result
#: (values <= 0) in units of 16/256 from 127.
LOG_SOFTMAX_INPUT_BITS = 5
LOG_SOFTMAX_SUM_BITS = 12
LOG_SOFTMAX_OUTPUT_BITS = 4
LOG_SOFTMAX_OUTPUT = (16.0 / 256.0, 127)


def log_softmax_int8_params(op: Op, x_t: Tensor, out: Tensor) -> tuple[int, int, int, int, int]:
    """``LogSoftmaxPrepare`` (``PreprocessLogSoftmaxScalingExp`` with beta 1): (input
    multiplier, input left shift, reverse scaling divisor, reverse scaling left shift,
    diff_min); refuses an output quantization other than TFLM's (16/256, 127)."""
    scale, zero_point = LOG_SOFTMAX_OUTPUT
    if np.float32(out.scale()) != np.float32(scale) or out.zero_point() != zero_point:
        raise TinymlError(f"layer '{op.name}' (LOG_SOFTMAX): int8 output must have scale "
                          f"16/256 and zero point 127 (TFLM requires it), got scale "
                          f"{out.scale():.6g} and zero point {out.zero_point()}")
    multiplier, left_shift = preprocess_softmax_scaling(1.0, x_t.scale(), LOG_SOFTMAX_INPUT_BITS)
    reverse = float(1 << (31 - left_shift)) / float(multiplier)
    divisor, reverse_shift = quantize_multiplier(reverse)  # < 1: shift <= 0
    diff_min = -gl.calculate_input_radius(LOG_SOFTMAX_INPUT_BITS, left_shift)
    return multiplier, left_shift, divisor, reverse_shift, diff_min


def _shift_left_saturating(x, exponent):
    """TFLite ``SaturatingRoundingMultiplyByPOTParam`` for exponents >= 0 (per element)."""
    x, exponent = np.asarray(x, np.int64), np.asarray(exponent, np.int64)
    threshold = (np.int64(1) << (31 - exponent)) - 1
    shifted = wrap_int32(x << exponent)
    return np.where(exponent == 0, x, np.where(x > threshold, INT32_MAX,
                                               np.where(x < -threshold, INT32_MIN, shifted)))


#: Constants of TFLite's ``log_x_for_x_greater_than_or_equal_to_1_impl``, in Q0.31.
_LOG_2 = 1488522236
_SQRT_SQRT_HALF = 1805811301
_SQRT_HALF = 1518500250
_ONE_QUARTER = 536870912
_ALPHA_N, _ALPHA_D, _ALPHA_I, _ALPHA_F = 117049297, 127690142, 1057819769, 638450708


def log_x_for_x_greater_than_or_equal_to_1(x, input_bits: int, output_bits: int):
    """TFLite's fixed-point natural log: ln(x) in Q(output_bits) for x >= 1 in Q(input_bits).

    x = 2^z * r with r normalized in two ways (around sqrt(1/2) and 1); the better of the two
    is kept, and ln(r) comes from a rational approximation in (r - 2^-1/4)."""
    mul = saturating_rounding_doubling_high_mul
    accum_bits = output_bits + 1
    shifted_quarter = gl.rescale(_ONE_QUARTER, 0, accum_bits)
    z_a = np.asarray(x, np.int64)
    z_a_headroom_plus_1 = gl.count_leading_zeros_u32(z_a)
    r_a_tmp = _shift_left_saturating(z_a, z_a_headroom_plus_1 - 1)
    r_a = _shift_left_saturating(mul(r_a_tmp, _SQRT_HALF), 1)
    z_a_pow_2_adj = np.clip(_shift_left_saturating(input_bits - z_a_headroom_plus_1,
                                                   31 - accum_bits) + shifted_quarter,
                            INT32_MIN, INT32_MAX)
    z_b = mul(z_a, _SQRT_HALF)
    z_b_headroom = gl.count_leading_zeros_u32(z_b) - 1
    r_b = _shift_left_saturating(z_a, z_b_headroom)
    z_b_pow_2_adj = np.clip(_shift_left_saturating(input_bits - z_b_headroom, 31 - accum_bits)
                            - shifted_quarter, INT32_MIN, INT32_MAX)
    r = np.minimum(r_a, r_b)
    z_pow_2_adj = np.maximum(z_a_pow_2_adj, z_b_pow_2_adj)
    p = gl.rounding_half_sum(r, _SQRT_SQRT_HALF)
    q = gl.sub(r, _SQRT_SQRT_HALF)
    q = gl.add(q, q)
    common_sq = mul(q, q)
    num = gl.add(mul(q, r), mul(mul(q, common_sq), _ALPHA_N))
    denom_minus_one = gl.add(mul(p, gl.add(gl.add(_ALPHA_I, q), mul(_ALPHA_D, common_sq))),
                             mul(_ALPHA_F, q))
    recip_denom = gl.one_over_one_plus_x_for_x_in_0_1(denom_minus_one)
    num_scaled = gl.rescale(num, 0, accum_bits)
    return gl.rescale(gl.add(mul(z_pow_2_adj, _LOG_2), mul(num_scaled, recip_denom)),
                      accum_bits, output_bits)


@kernel("LOG_SOFTMAX")
def log_softmax(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        x = call.inputs[0].astype(np.float32)
        shifted = x - x.max(axis=-1, keepdims=True)
        return (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)
    _int8_only(call)
    x_t, out = call.in_tensors[0], call.out
    multiplier, left_shift, divisor, reverse_shift, diff_min = \
        log_softmax_int8_params(call.op, x_t, out)
    x = call.inputs[0].astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    diff_q5 = multiply_by_quantized_multiplier(diff, multiplier, left_shift)
    exps = gl.rescale(gl.exp_on_negative_values(diff_q5, LOG_SOFTMAX_INPUT_BITS), 0,
                      LOG_SOFTMAX_SUM_BITS)
    sum_of_exps = wrap_int32(np.where(diff >= diff_min, exps, 0).sum(axis=-1, keepdims=True))
    log_sum = log_x_for_x_greater_than_or_equal_to_1(sum_of_exps, LOG_SOFTMAX_SUM_BITS,
                                                     LOG_SOFTMAX_INPUT_BITS)
    adjusted_diff_min = np.maximum(diff_min - 1, multiply_by_quantized_multiplier(
        wrap_int32(log_sum + INT32_MIN), divisor, reverse_shift))
    y = rounding_divide_by_pot(wrap_int32(diff_q5 - log_sum),
                               31 - LOG_SOFTMAX_INPUT_BITS - LOG_SOFTMAX_OUTPUT_BITS) + 127
    y = np.where(diff > adjusted_diff_min, np.clip(y, -128, 127), -128)
    return y.astype(np.int8)


# ---- RSQRT ---------------------------------------------------------------------------------

#: RSQRT keeps 1/sqrt(x) shifted left by 20 bits between its two requantizations.
RSQRT_SHIFT = 20


def rsqrt_int8_params(x_t: Tensor, out: Tensor) -> tuple[int, int]:
    """``SetRsqrtOutputMultiplier``: QuantizeMultiplier of 1 / (sqrtf(input_scale) *
    output_scale), the product in float32, the division in double."""
    product = np.sqrt(np.float32(x_t.scale()), dtype=np.float32) * np.float32(out.scale())
    return quantize_multiplier(1.0 / float(product))


def inv_sqrt_quantized_multiplier(value) -> tuple[np.ndarray, np.ndarray]:
    """TFLite ``GetInvSqrtQuantizedMultiplierExp(value, kReverseShift)`` per element of
    ``value`` >= 0: 1/sqrt(value) as (multiplier, left shift), by five Newton-Raphson steps
    in Q3.28 on the value normalized to [2^27, 2^29)."""
    mul = saturating_rounding_doubling_high_mul
    value = np.asarray(value, np.int64)
    small = value <= 1
    v = np.where(small, 4, value)
    shift = np.full(v.shape, 11, np.int64)
    while np.any(v >= 1 << 29):
        big = v >= 1 << 29
        v, shift = np.where(big, v // 4, v), shift + big
    pairs = (gl.count_leading_zeros_u32(v) - 1) // 2 - 1
    shift = shift - pairs
    v = v << (2 * pairs)
    half_input = rounding_divide_by_pot(v >> 1, 1)
    half_three = (1 << 28) + (1 << 27)
    x = np.full(v.shape, 1 << 28, np.int64)  # 1.0 in Q3.28
    for _ in range(5):
        x3 = gl.rescale(mul(mul(x, x), x), 9, 3)
        x = gl.rescale(gl.sub(mul(half_three, x), mul(half_input, x3)), 6, 3)
    x = mul(x, 1518500250)  # * sqrt(2) / 2
    negative = shift < 0
    x = np.where(negative, wrap_int32(x << np.where(negative, -shift, 0)), x)
    shift = np.where(negative, 0, shift)
    # Values 0 and 1 (1 is exact; 0 has no inverse square root) give INT32_MAX, shift 0.
    return np.where(small, INT32_MAX, x), np.where(small, 0, -shift)


def rsqrt_int8_table(x_t: Tensor, out: Tensor) -> np.ndarray:
    """The output code of every input code at or above the input zero point (indexed by the
    code as uint8; codes below it are left 0: TFLM refuses them)."""
    multiplier, shift = rsqrt_int8_params(x_t, out)
    codes = np.arange(x_t.zero_point(), 128, dtype=np.int64)
    value = codes - x_t.zero_point()
    inv_multiplier, inv_shift = inv_sqrt_quantized_multiplier(value)
    data = multiply_by_quantized_multiplier(np.ones_like(value), inv_multiplier,
                                            inv_shift + RSQRT_SHIFT)
    y = multiply_by_quantized_multiplier(data, multiplier, shift - RSQRT_SHIFT) + out.zero_point()
    # TFLM: "any value close to 0 represents the max output value".
    y = np.where(value == 0, 127, y)
    table = np.zeros(256, np.int8)
    table[codes & 0xFF] = np.clip(y, -128, 127)
    return table


@kernel("RSQRT")
def rsqrt(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        x = call.inputs[0].astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.float32(1) / np.sqrt(x)).astype(np.float32)
    _int8_only(call)
    x_t = call.in_tensors[0]
    codes = call.inputs[0].astype(np.int8)
    if codes.size and int(codes.min()) < x_t.zero_point():
        raise TinymlError(f"layer '{call.op.name}' (RSQRT): input code {int(codes.min())} is "
                          f"below the zero point {x_t.zero_point()} (a negative value); "
                          f"TFLM fails the inference there")
    return rsqrt_int8_table(x_t, call.out)[codes.view(np.uint8)]


# ---- GELU ------------------------------------------------------------------------------------
# TFLM has no GELU kernel; LiteRT runs int8 GELU as a table (kernels/gelu.cc) filled with the
# float32 formulas of reference/gelu.h, which are the oracle here.

#: sqrt(2 / pi) and 1 / sqrt(2) as TFLite's float32 constants.
_SQRT_2_OVER_PI = np.float32(1.1283791670955126 * 0.7071067811865476)
_SQRT1_2 = np.float32(0.7071067811865476)


def gelu_float32(approximate: bool):
    """GELU of one float32 value as TFLite computes it: 0.5 x erfc(-x / sqrt 2), or with
    ``approximate`` 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    half, one, cubic = np.float32(0.5), np.float32(1.0), np.float32(0.044715)
    if approximate:
        tanhf = libm_float("tanhf")
        return lambda x: half * x * (one + np.float32(tanhf(float(
            _SQRT_2_OVER_PI * (x + cubic * x * x * x)))))
    erfcf = libm_float("erfcf")
    return lambda x: half * x * np.float32(erfcf(float(x * -_SQRT1_2)))


def gelu_int8_table(op: Op, x_t: Tensor, out: Tensor) -> np.ndarray:
    return populate_int8_table(op, x_t, out, gelu_float32(op.attrs.approximate))


@kernel("GELU")
def gelu(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        f = gelu_float32(call.attrs.approximate)
        x = call.inputs[0].astype(np.float32)
        return np.fromiter((f(v) for v in x.reshape(-1)), np.float32, x.size).reshape(x.shape)
    _int8_only(call)
    table = gelu_int8_table(call.op, call.in_tensors[0], call.out)
    return table[call.inputs[0].astype(np.int8).view(np.uint8)]
