"""SOFTMAX over the last axis."""

from __future__ import annotations

import numpy as np

from tinyml.reference.kernels import KernelCall, kernel


@kernel("SOFTMAX")
def softmax(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return softmax_int8(call)
    x = call.inputs[0].astype(np.float32)
    e = np.exp((x - x.max(axis=-1, keepdims=True)) * np.float32(call.attrs.beta))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def softmax_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 SOFTMAX")
