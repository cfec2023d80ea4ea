"""int8 -> int8 functions evaluated at compile time, one entry per input code.

Why one module: the float-island passes (a DEQUANTIZE -> float ops -> QUANTIZE chain has only
256 possible inputs) and the int8-state pass all ask the reference kernels what TFLM computes
for every code, and must ask the same way: the kernels run on 256-element copies of the real
tensors, so their quantization and attributes are the layer's own.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tinyml.ir import Op, Tensor
from tinyml.ir.tensor import Quantization

#: Every int8 code, in the order of its byte (a table built on it is indexed by code & 0xFF).
EVERY_CODE = np.arange(256, dtype=np.uint8).view(np.int8)


def run_kernel(op: Op, values: np.ndarray, source: Tensor, target: Tensor) -> np.ndarray:
    """``op``'s reference kernel on ``values`` (one input), ``source``/``target`` giving the
    input's and output's type and quantization."""
    from tinyml.reference.kernels import KERNELS, KernelCall
    return np.asarray(KERNELS[op.kind](KernelCall(op, [values], [source], [target])))


def run_as(kind: str, values: np.ndarray, source: Tensor, target: Tensor) -> np.ndarray:
    """A kernel of ``kind`` with no attributes (QUANTIZE, DEQUANTIZE) on ``values``."""
    return run_kernel(Op(kind, f"{kind.lower()} of {source.name}", [source.name],
                         [target.name]), values, source, target)


def as_codes(t: Tensor) -> Tensor:
    """``t`` reshaped to hold one value per code (no data: it is not a constant)."""
    return dataclasses.replace(t, shape=(256,), data=None)


def same_quant(a: Quantization, b: Quantization) -> bool:
    return (a.axis is None and b.axis is None and a.scale[0] == b.scale[0]
            and a.zero_point[0] == b.zero_point[0])
