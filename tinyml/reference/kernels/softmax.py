"""SOFTMAX over the last axis.

int8 follows TFLM's reference kernel (``reference_ops::Softmax`` with the parameters of
``SoftmaxPrepare``): the difference to the row maximum is scaled by beta * input_scale into a
Q5.26 value, exponentiated with gemmlowp's fixed-point exp, summed in Q12.19, inverted with
``GetReciprocal`` and multiplied back; differences below ``diff_min`` (whose exp would not fit)
give exactly 0 (-128). The output must be int8 with scale 1/256 and zero point -128, as TFLM
requires.

int16 (16x8 models) follows TFLM's ``SoftmaxInt16``: two interpolated 513-entry tables
(exp and 1 / (1 + x), ``tinyml.reference.lut_int16``) built as TFLM builds them in Prepare.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.ir import Op, Tensor
from tinyml.reference.fixedpoint import (
    quantize_multiplier, rounding_divide_by_pot, saturating_rounding_doubling_high_mul,
    wrap_int32,
)
from tinyml.reference import lut_int16
from tinyml.reference.gemmlowp import (
    calculate_input_radius, exp_on_negative_values, get_reciprocal, rescale,
)
from tinyml.reference.kernels.registry import KernelCall, kernel

#: Integer bits of the scaled difference fed to exp() (Q5.26) and of the sum of exps (Q12.19).
SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


@kernel("SOFTMAX")
def softmax(call: KernelCall) -> np.ndarray:
    if call.quantized:
        if call.in_tensors[0].dtype == "int16":
            return softmax_int16(call)
        return softmax_int8(call)
    x = call.inputs[0].astype(np.float32)
    e = np.exp((x - x.max(axis=-1, keepdims=True)) * np.float32(call.attrs.beta))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def preprocess_softmax_scaling(beta: float, input_scale: float,
                               input_integer_bits: int) -> tuple[int, int]:
    """TFLite ``PreprocessSoftmaxScaling`` (double-rounding build).

    The real multiplier beta * input_scale * 2^(31 - input_integer_bits), capped at 2^31 - 1,
    as (quantized multiplier, left shift). It must exceed 1 (``QuantizeMultiplierGreaterThanOne``).
    """
    real = min(float(beta) * float(input_scale) * float(1 << (31 - input_integer_bits)),
               float((1 << 31) - 1))
    if not real > 1.0:
        raise ValueError(f"beta * input_scale = {float(beta) * float(input_scale):.3g} is too "
                         f"small for TFLM's int8 softmax")
    return quantize_multiplier(real)


def softmax_int8_params(op: Op, x_t: Tensor, out: Tensor) -> tuple[int, int, int]:
    """``SoftmaxPrepare``: (input multiplier, input left shift, diff_min) of TFLM's int8
    softmax, after the checks TFLM makes on the types and the output quantization."""
    if x_t.dtype != "int8" or out.dtype != "int8":
        raise UnsupportedOpError(op.kind, op.name, detail=f"{x_t.dtype} -> {out.dtype} softmax "
                                 f"(int8 -> int8 only)")
    if out.zero_point() != -128 or np.float32(out.scale()) != np.float32(1.0 / 256):
        raise TinymlError(f"layer '{op.name}' (SOFTMAX): int8 output must have scale 1/256 and "
                          f"zero point -128 (TFLM requires it), got scale {out.scale():.6g} and "
                          f"zero point {out.zero_point()}")
    try:
        multiplier, left_shift = preprocess_softmax_scaling(
            op.attrs.beta, x_t.scale(), SCALED_DIFF_INTEGER_BITS)
    except ValueError as exc:
        raise TinymlError(f"layer '{op.name}' (SOFTMAX): {exc}") from None
    diff_min = -calculate_input_radius(SCALED_DIFF_INTEGER_BITS, left_shift)
    return multiplier, left_shift, diff_min


def softmax_int8(call: KernelCall) -> np.ndarray:
    op, x_t = call.op, call.in_tensors[0]
    multiplier, left_shift, diff_min = softmax_int8_params(op, x_t, call.out)

    x = call.inputs[0].astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    used = diff >= diff_min
    # MultiplyByQuantizedMultiplierGreaterThanOne on the kept differences (Q5.26 result).
    scaled = saturating_rounding_doubling_high_mul(
        wrap_int32(np.where(used, diff, 0) << left_shift), multiplier)
    exps = exp_on_negative_values(scaled, SCALED_DIFF_INTEGER_BITS)  # Q0.31
    # Rescale<12> of each exp, summed in Q12.19 (int32 additions).
    sum_of_exps = wrap_int32(np.where(used, rescale(exps, 0, ACCUMULATION_INTEGER_BITS), 0)
                             .sum(axis=-1, keepdims=True))
    reciprocal, num_bits_over_unit = get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
    exponent = num_bits_over_unit + 31 - 8
    if np.any((exponent < 0) | (exponent > 31)):
        raise TinymlError(f"layer '{op.name}' (SOFTMAX): the sum of exponentials over "
                          f"{x.shape[-1]} values overflows TFLM's int8 fixed-point softmax")
    unsaturated = rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(reciprocal, exps), exponent)
    y = np.clip(unsaturated - 128, -128, 127)
    return np.where(used, y, -128).astype(np.int8)


# ---- int16 (16x8 models) ------------------------------------------------------------------

#: The exp table spans [-10, 0]: int16 SOFTMAX scales the difference to the row maximum so
#: that [-65535, 0] is [-10.0, 0.0] (exp(-10) is negligible in the sum).
_INT16_RANGE = 65535


def _exp_transform(value: np.float32) -> np.float32:
    return np.float32(lut_int16.libm_float("expf")(float(value)))


def _one_over_one_plus(value: np.float32) -> np.float32:
    return np.float32(1.0) / (np.float32(1.0) + np.float32(value))


def softmax_int16_tables() -> tuple[np.ndarray, np.ndarray]:
    """The two tables TFLM's ``InitializeLutForInt16`` builds: exp on [-10, 0] (input zero
    point 32767) and 1 / (1 + x) on [0, 1] (input zero point -32768), both into Q0.15."""
    range_ = np.float32(_INT16_RANGE)
    exp_lut = lut_int16.populate(float(np.float32(10.0) / range_), 32767,
                                 float(np.float32(2.0) / range_), 0, _exp_transform)
    reciprocal_lut = lut_int16.populate(float(np.float32(1.0) / range_), -32768,
                                        float(np.float32(2.0) / range_), 0,
                                        _one_over_one_plus)
    return exp_lut, reciprocal_lut


def softmax_int16_params(op: Op, x_t: Tensor, out: Tensor) -> tuple[int, int]:
    """``CalculateSoftmaxParams`` for int16: (input multiplier, input left shift) of
    beta * input_scale / (10 / 65535), after TFLM's checks (zero points 0, output scale
    1/32768)."""
    if out.dtype != "int16":
        raise UnsupportedOpError(op.kind, op.name, detail=f"int16 -> {out.dtype} softmax "
                                 f"(int16 -> int16 only)")
    if x_t.zero_point() != 0 or out.zero_point() != 0 or \
            abs(np.float32(out.scale()) - np.float32(1 / 32768)) > np.float32(0.001 / 32768):
        raise TinymlError(f"layer '{op.name}' (SOFTMAX): int16 input and output need zero "
                          f"point 0 and the output scale 1/32768 (TFLM requires it), got "
                          f"output scale {out.scale():.6g}")
    multiplier, shift = quantize_multiplier(float(x_t.scale()) * float(np.float32(op.attrs.beta))
                                            / (10.0 / 65535.0))
    if shift > 30:
        # TFLM would shift an int32 left by 31 bits or more (undefined behaviour in C++).
        raise TinymlError(f"layer '{op.name}' (SOFTMAX): beta * input scale "
                          f"{float(x_t.scale()) * op.attrs.beta:.6g} is too large for TFLM's "
                          f"int16 softmax")
    return multiplier, shift


def softmax_int16(call: KernelCall) -> np.ndarray:
    """TFLM ``SoftmaxInt16``: each difference to the row maximum is rescaled to [-65535, 0],
    recentred and looked up in the exp table (Q0.15); the sum is normalized by its leading
    zeros, looked up in the 1 / (1 + x) table, and each exp multiplied by that reciprocal
    with one rounding shift; outputs clamp to [0, 32767]."""
    from tinyml.reference.fixedpoint import multiply_by_quantized_multiplier
    from tinyml.reference.gemmlowp import count_leading_zeros_u32
    multiplier, shift = softmax_int16_params(call.op, call.in_tensors[0], call.out)
    exp_lut, reciprocal_lut = softmax_int16_tables()
    x = call.inputs[0].astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    scaled = multiply_by_quantized_multiplier(diff, multiplier, shift)
    exps = lut_int16.lookup(np.clip(scaled + 32767, -32768, 32767), exp_lut)
    sum_of_exps = wrap_int32(exps.sum(axis=-1, keepdims=True))
    headroom_plus_one = count_leading_zeros_u32(sum_of_exps)
    shifted_sum = ((sum_of_exps << (headroom_plus_one - 1)) + (1 << 13)) >> 14
    sym = np.clip(shifted_sum - ((1 << 15) + (1 << 16)), -32768, 32767)
    reciprocal = lut_int16.lookup(sym, reciprocal_lut)
    right_shift = 31 - headroom_plus_one
    result = (exps * reciprocal + (np.int64(1) << (right_shift - 1))) >> right_shift
    return np.clip(wrap_int32(result), 0, 32767).astype(np.int16)
