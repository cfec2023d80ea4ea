"""AVERAGE_POOL_2D, MAX_POOL_2D and MEAN.

Average pooling divides by the number of *valid* (non-padding) cells, as TFLite does.
"""

from __future__ import annotations

import numpy as np

from tinyml.reference.fixedpoint import float_activation
from tinyml.reference.kernels import KernelCall, kernel
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


def average_pool_2d_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 AVERAGE_POOL_2D")


def max_pool_2d_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 MAX_POOL_2D")


def mean_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 MEAN")
