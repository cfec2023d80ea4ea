"""BATCH_NORM (float graphs only: quantized graphs have it folded into the producer)."""

from __future__ import annotations

import numpy as np

from tinyml.errors import UnsupportedOpError
from tinyml.reference.kernels.registry import KernelCall, kernel


@kernel("BATCH_NORM")
def batch_norm(call: KernelCall) -> np.ndarray:
    if call.quantized:
        raise UnsupportedOpError("BATCH_NORM", call.op.name,
                                 detail="int8 batch norm must be folded before quantization")
    x, scale, bias, mean, var = (v.astype(np.float32) for v in call.inputs)
    axis = call.attrs.axis % x.ndim
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    inv = (scale / np.sqrt(var + np.float32(call.attrs.epsilon))).reshape(shape)
    return ((x - mean.reshape(shape)) * inv + bias.reshape(shape)).astype(np.float32)
