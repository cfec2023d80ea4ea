"""ADD and MUL with numpy broadcasting and a fused activation."""

from __future__ import annotations

import numpy as np

from tinyml.reference.fixedpoint import float_activation
from tinyml.reference.kernels import KernelCall, kernel


@kernel("ADD")
def add(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return add_int8(call)
    a, b = (x.astype(np.float32) for x in call.inputs)
    return float_activation(a + b, call.attrs.activation).astype(np.float32)


@kernel("MUL")
def mul(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return mul_int8(call)
    a, b = (x.astype(np.float32) for x in call.inputs)
    return float_activation(a * b, call.attrs.activation).astype(np.float32)


def add_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 ADD")


def mul_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 MUL")
