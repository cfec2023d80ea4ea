"""FULLY_CONNECTED (TFLite weights [out, in]; ONNX Gemm/MatMul import to this)."""

from __future__ import annotations

import numpy as np

from tinyml.reference.fixedpoint import float_activation
from tinyml.reference.kernels import KernelCall, kernel


@kernel("FULLY_CONNECTED")
def fully_connected(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return fully_connected_int8(call)
    w = call.inputs[1].astype(np.float32)
    x = call.inputs[0].astype(np.float32).reshape(-1, w.shape[1])
    y = x @ w.T
    if len(call.inputs) > 2 and call.inputs[2] is not None:
        y = y + call.inputs[2].astype(np.float32)
    y = float_activation(y, call.attrs.activation)
    return y.reshape(call.out.shape).astype(np.float32)


def fully_connected_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 FULLY_CONNECTED")
