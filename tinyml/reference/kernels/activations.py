"""Standalone activations: RELU, RELU6, CLIP, LOGISTIC, HARD_SWISH."""

from __future__ import annotations

import numpy as np

from tinyml.reference.kernels import KernelCall, kernel


@kernel("RELU", "RELU6", "CLIP")
def clamp(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return clamp_int8(call)
    x = call.inputs[0].astype(np.float32)
    if call.op.kind == "RELU":
        return np.maximum(x, 0)
    if call.op.kind == "RELU6":
        return np.clip(x, 0, 6)
    return np.clip(x, np.float32(call.attrs.min), np.float32(call.attrs.max)).astype(np.float32)


@kernel("LOGISTIC")
def logistic(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return logistic_int8(call)
    x = call.inputs[0].astype(np.float32)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


@kernel("HARD_SWISH")
def hard_swish(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return hard_swish_int8(call)
    x = call.inputs[0].astype(np.float32)
    return (x * np.clip(x + 3, 0, 6) / 6).astype(np.float32)


def clamp_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 RELU/RELU6/CLIP")


def logistic_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 LOGISTIC")


def hard_swish_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 HARD_SWISH")
