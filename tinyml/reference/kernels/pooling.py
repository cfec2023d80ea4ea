"""AVERAGE_POOL_2D, MAX_POOL_2D and MEAN.

Average pooling divides by the number of *valid* (non-padding) cells, as TFLite does.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError
from tinyml.reference.fixedpoint import (activation_range, float_activation,
                                         quantize_multiplier, requantize, wrap_int32)
from tinyml.reference.kernels.registry import KernelCall, kernel
from tinyml.reference.kernels.windows import windows


@kernel("AVERAGE_POOL_2D")
def average_pool_2d(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return average_pool_2d_int8(call)
    a = call.attrs
    x = call.inputs[0].astype(np.float32)
    total = windows(x, a.filter, a.stride, (1, 1), a.padding, 0.0).sum(axis=(4, 5))
    ones = np.ones((1,) + x.shape[1:3] + (1,), np.float32)
    count = windows(ones, a.filter, a.stride, (1, 1), a.padding, 0.0).sum(axis=(4, 5))
    return float_activation(total / count, a.activation).astype(np.float32)


@kernel("MAX_POOL_2D")
def max_pool_2d(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return max_pool_2d_int8(call)
    a = call.attrs
    x = call.inputs[0].astype(np.float32)
    y = windows(x, a.filter, a.stride, (1, 1), a.padding, -np.inf).max(axis=(4, 5))
    return float_activation(y, a.activation).astype(np.float32)


@kernel("MEAN")
def mean(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return mean_int8(call)
    x = call.inputs[0].astype(np.float32)
    axes = tuple(a % x.ndim for a in call.attrs.axes)
    return x.mean(axis=axes, keepdims=call.attrs.keep_dims).reshape(call.out.shape).astype(
        np.float32)


def int_range(t) -> tuple[int, int]:
    """The value range of a quantized tensor's type: the int8 kernels here are TFLM's
    templates, whose int16 instances (16x8 models) differ only in this range."""
    info = np.iinfo(t.dtype)
    return int(info.min), int(info.max)


def _valid_cells(call: KernelCall) -> np.ndarray:
    """How many cells of each pooling window lie inside the image, shape (1, OH, OW, 1)."""
    a = call.attrs
    ones = np.ones((1,) + call.inputs[0].shape[1:3] + (1,), np.int64)
    return windows(ones, a.filter, a.stride, (1, 1), a.padding, 0).sum(axis=(4, 5))


def average_pool_2d_int8(call: KernelCall) -> np.ndarray:
    """TFLM int8 and int16 ``AveragePool``: the sum of the valid cells divided by their count,
    rounded half away from zero as C does it: ``(sum +/- count/2) / count`` with
    truncating division. There is no rescaling: TFLM reads the result with the input's
    quantization (the converter gives input and output the same)."""
    a = call.attrs
    out = call.out
    x = call.inputs[0].astype(np.int64)
    total = windows(x, a.filter, a.stride, (1, 1), a.padding, 0).sum(axis=(4, 5))
    count = _valid_cells(call)
    if (count == 0).any():
        raise TinymlError(f"layer '{call.op.name}' (AVERAGE_POOL_2D): a pooling window lies "
                          f"entirely in the padding")
    half = count // 2
    mean = np.where(total > 0, (total + half) // count, -((half - total) // count))
    lo, hi = activation_range(a.activation, out.scale(), out.zero_point(), *int_range(out))
    return np.clip(mean, lo, hi).astype(out.dtype)


def max_pool_2d_int8(call: KernelCall) -> np.ndarray:
    """TFLM int8 and int16 ``MaxPool``: the largest valid cell (padding never wins: it holds the
    type's minimum, TFLM's starting value), clamped to the activation range."""
    a = call.attrs
    out = call.out
    x = call.inputs[0]
    y = windows(x, a.filter, a.stride, (1, 1), a.padding, np.iinfo(x.dtype).min).max(axis=(4, 5))
    lo, hi = activation_range(a.activation, out.scale(), out.zero_point(), *int_range(out))
    return np.clip(y, lo, hi).astype(out.dtype)


def mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """MEAN's (multiplier, shift): QuantizeMultiplier(s_in / s_out) with 1/count folded in,
    as ``QuantizedMeanOrSum`` does (see :func:`mean_int8`)."""
    multiplier, shift = quantize_multiplier(float(input_scale) / float(output_scale))
    fold = min(count.bit_length() - 1, 32, 31 + shift)
    return (multiplier << fold) // count, shift - fold


def mean_int8(call: KernelCall) -> np.ndarray:
    """TFLM int8 and int16 MEAN: ``QuantizedMeanOrSum<T>`` (``reference/reduce.h``), whatever
    the axes.

    The sum over the reduced axes, minus count * input zero point, is rescaled by
    QuantizeMultiplier(s_in / s_out) with 1/count folded into the multiplier: it is shifted
    left by floor(log2(count)) (at most 32, and keeping the final shift >= -31), divided
    by count with integer division, and the shift lowered to match.

    Older TFLM releases also had a truncating integer mean when input and output share
    quantization, and ``reference_integer_ops::Mean`` for 4-D keep_dims means over H and W;
    the TFLM we are checked against takes this one path in every case (the tests cover
    equal quantization and both keep_dims settings), so only this path is reproduced.
    """
    x_t, out = call.in_tensors[0], call.out
    x = call.inputs[0].astype(np.int64)
    axes = tuple(sorted({ax % x.ndim for ax in call.attrs.axes}))
    count = int(np.prod([x.shape[ax] for ax in axes], dtype=np.int64))
    if count == 0:
        return np.zeros(out.shape, out.dtype)
    total = x.sum(axis=axes)
    multiplier, shift = mean_multiplier(x_t.scale(), out.scale(), count)
    centered = wrap_int32(total - x_t.zero_point() * count)
    y = requantize(centered, multiplier, shift, out.zero_point(), *int_range(out),
                   dtype=out.dtype)
    return np.asarray(y).reshape(out.shape)  # an array even for a 0-D (all axes) result
