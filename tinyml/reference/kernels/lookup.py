"""NEG (float32 only, as in TFLM) and LOOKUP_TABLE, the int8 table tinyml's passes make of a
float island (tinyml.passes.float_island_table)."""

from __future__ import annotations

import numpy as np

from tinyml.errors import UnsupportedOpError
from tinyml.reference.kernels.registry import KernelCall, kernel


@kernel("NEG")
def neg(call: KernelCall) -> np.ndarray:
    if call.quantized:
        raise UnsupportedOpError("NEG", call.op.name,
                                 detail="TFLM has no int8 NEG kernel (it runs NEG in float32)")
    return np.negative(call.inputs[0]).astype(call.inputs[0].dtype)


@kernel("LOOKUP_TABLE")
def lookup_table(call: KernelCall) -> np.ndarray:
    table = np.asarray(call.attrs.values, dtype=np.int8)
    return table[call.inputs[0].astype(np.int8).view(np.uint8)]
