"""Reductions and normalization: SUM, REDUCE_MAX, REDUCE_MIN, ARG_MAX, ARG_MIN and
L2_NORMALIZATION (MEAN lives with the pooling kernels and shares SUM's arithmetic).

The int8 paths follow TFLM: ``QuantizedMeanOrSum`` (``reference/reduce.h``) for SUM,
``ReduceGeneric`` with TFLM's min/max reducers for REDUCE_MAX/MIN, ``ArgMinMax``
(``reference/arg_min_max.h``) and ``reference_integer_ops::L2Normalization``.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError
from tinyml.reference import gemmlowp
from tinyml.reference.fixedpoint import (multiply_by_quantized_multiplier, quantize_multiplier,
                                         requantize, saturating_rounding_doubling_high_mul,
                                         wrap_int32)
from tinyml.reference.kernels.registry import KernelCall, kernel


def reduced_axes(call: KernelCall) -> tuple[int, ...]:
    """The reduced axes, made non-negative and deduplicated as TFLM's ``ResolveAxis`` does."""
    rank = call.inputs[0].ndim
    return tuple(sorted({ax % rank for ax in call.attrs.axes}))


# ---- SUM ------------------------------------------------------------------------------------

def sum_multiplier(input_scale: float, output_scale: float) -> tuple[int, int]:
    """SUM's (multiplier, shift): QuantizeMultiplier(s_in / s_out) in double, as TFLM's
    ``PrepareMeanOrSumHelper`` computes it (MEAN then folds in 1/count; SUM does not)."""
    return quantize_multiplier(float(input_scale) / float(output_scale))


@kernel("SUM")
def reduce_sum(call: KernelCall) -> np.ndarray:
    x = call.inputs[0]
    axes = reduced_axes(call)
    if not call.quantized:
        return np.asarray(x.astype(np.float32).sum(axis=axes, dtype=np.float32)).reshape(
            call.out.shape)
    x_t, out = call.in_tensors[0], call.out
    count = int(np.prod([x.shape[ax] for ax in axes], dtype=np.int64))
    if count == 0:
        return np.zeros(out.shape, np.int8)
    total = x.astype(np.int64).sum(axis=axes)
    multiplier, shift = sum_multiplier(x_t.scale(), out.scale())
    centered = wrap_int32(total - x_t.zero_point() * count)
    y = requantize(centered, multiplier, shift, out.zero_point(), -128, 127)
    return np.asarray(y).reshape(out.shape)


# ---- REDUCE_MAX, REDUCE_MIN -------------------------------------------------------------------

def check_same_quantization(op, x_t, out) -> None:
    """TFLM's int8 REDUCE_MAX/MIN require the output quantized exactly as the input (the
    values are selected, never rescaled); it refuses the model otherwise, and so do we."""
    if (np.float32(x_t.scale()), x_t.zero_point()) != (np.float32(out.scale()),
                                                       out.zero_point()):
        raise TinymlError(
            f"layer '{op.name}' ({op.kind}): int8 input and output quantization differ "
            f"(scale {x_t.scale():g}/{out.scale():g}, zero point {x_t.zero_point()}/"
            f"{out.zero_point()}); TFLM requires them equal")


@kernel("REDUCE_MAX", "REDUCE_MIN")
def reduce_min_max(call: KernelCall) -> np.ndarray:
    x = call.inputs[0]
    axes = reduced_axes(call)
    if call.quantized:
        check_same_quantization(call.op, call.in_tensors[0], call.out)
    reducer = np.max if call.op.kind == "REDUCE_MAX" else np.min
    if x.size == 0:  # TFLM leaves the reducer's initial value (lowest / highest)
        info = np.finfo(x.dtype) if x.dtype.kind == "f" else np.iinfo(x.dtype)
        start = info.min if call.op.kind == "REDUCE_MAX" else info.max
        return np.full(call.out.shape, start, x.dtype)
    return np.asarray(reducer(x, axis=axes)).reshape(call.out.shape).astype(x.dtype)


# ---- ARG_MAX, ARG_MIN -------------------------------------------------------------------------

@kernel("ARG_MAX", "ARG_MIN")
def arg_min_max(call: KernelCall) -> np.ndarray:
    """The index of the first largest (smallest) element along the axis: TFLM's ``ArgMinMax``
    replaces its candidate only on a strictly greater (smaller) value, as numpy's argmax
    (argmin) keeps the first occurrence."""
    x = call.inputs[0]
    axis = call.attrs.axis % x.ndim
    find = np.argmax if call.op.kind == "ARG_MAX" else np.argmin
    return find(x, axis=axis).astype(call.out.dtype).reshape(call.out.shape)


# ---- L2_NORMALIZATION -------------------------------------------------------------------------

#: L2_NORMALIZATION's int8 output: TFLite fixes it at scale 1/128, zero point 0.
L2_NORM_OUTPUT = (1.0 / 128.0, 0)
_L2_OUTPUT_SHIFT = 7            # kOutputScale: the output is in Q0.7
_HALF_THREE_Q3 = (1 << 28) + (1 << 27)   # 1.5 in FixedPoint<int32_t, 3>
_HALF_SQRT_2_Q0 = 1518500250             # sqrt(2)/2 in FixedPoint<int32_t, 0>
_ONE_Q3 = 1 << 28


def inv_sqrt_multiplier(value) -> tuple[np.ndarray, np.ndarray]:
    """``GetInvSqrtQuantizedMultiplierExp(value, kReverseShift)``, element-wise: 1/sqrt(value)
    as (multiplier, left shift) by five Newton-Raphson steps in gemmlowp fixed point.
    Values 0 and 1 give (INT32_MAX, 0), as TFLM handles them specially."""
    v = np.asarray(value, np.int64)
    small = v <= 1
    v = np.where(small, 2, v)
    shift = np.full(v.shape, 11, np.int64)
    while (v >= (1 << 29)).any():
        big = v >= (1 << 29)
        v = np.where(big, v // 4, v)
        shift += big
    pairs = (gemmlowp.count_leading_zeros_u32(v) - 1) // 2 - 1
    shift -= pairs
    v = v << (2 * pairs)
    half_input = gemmlowp.saturating_rounding_multiply_by_pot(v >> 1, -1)
    srdhm = saturating_rounding_doubling_high_mul
    x = np.full(v.shape, _ONE_Q3, np.int64)
    for _ in range(5):
        x3 = gemmlowp.rescale(srdhm(srdhm(x, x), x), 9, 3)
        x = gemmlowp.rescale(gemmlowp.sub(srdhm(_HALF_THREE_Q3, x), srdhm(half_input, x3)),
                             6, 3)
    x = srdhm(x, _HALF_SQRT_2_Q0)
    negative = shift < 0
    x = np.where(negative, wrap_int32(x << np.where(negative, -shift, 0)), x)
    shift = np.where(negative, 0, shift)
    return (np.where(small, np.iinfo(np.int32).max, x).astype(np.int64),
            np.where(small, 0, -shift).astype(np.int64))


def check_l2_norm(op, x, out) -> None:
    """TFLM takes inputs of up to 4 dimensions, and computes the int8 output in Q0.7
    whatever the output tensor says; an output quantized otherwise would be misread, so it
    is refused (the converter always writes 1/128 and 0)."""
    if len(x.shape) > 4:
        raise TinymlError(f"layer '{op.name}' ({op.kind}): {len(x.shape)}-D input (TFLM "
                          f"normalizes inputs of up to 4 dimensions)")
    fixed = (np.float32(L2_NORM_OUTPUT[0]), L2_NORM_OUTPUT[1])
    if out.dtype == "int8" and (np.float32(out.scale()), out.zero_point()) != fixed:
        raise TinymlError(f"layer '{op.name}' ({op.kind}): int8 output must be quantized with "
                          f"scale 1/128 and zero point 0 (TFLM's fixed output), got scale "
                          f"{out.scale():g} and zero point {out.zero_point()}")


@kernel("L2_NORMALIZATION")
def l2_normalization(call: KernelCall) -> np.ndarray:
    x = call.inputs[0]
    check_l2_norm(call.op, call.in_tensors[0], call.out)
    if not call.quantized:
        # TFLite's float kernel: x / max(sqrt(sum of squares), 1e-6), in float32.
        x = x.astype(np.float32)
        norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True, dtype=np.float32))
        return (x / np.maximum(norm, np.float32(1e-6))).astype(np.float32)
    centered = x.astype(np.int64) - call.in_tensors[0].zero_point()
    acc = wrap_int32((centered * centered).sum(axis=-1, keepdims=True))  # int32, as TFLM
    multiplier, shift = inv_sqrt_multiplier(acc)
    y = multiply_by_quantized_multiplier(centered, multiplier, shift + _L2_OUTPUT_SHIFT)
    return np.clip(y, -128, 127).astype(np.int8)
