"""int4 weights (TFLite's INT4 tensor type) in the reference kernels.

TFLM runs CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED with int4 filters by unpacking them
to int8 and calling the int8 kernels, so the arithmetic is exactly the int8 arithmetic on the
unpacked values. What differs is only what an int4 filter may be: per-channel symmetric
(zero point 0, along the int8 filter's axis) with values in [-8, 7]. This module checks that,
so a malformed int4 tensor fails with one line naming the layer instead of computing
something TFLM would not.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import UnsupportedOpError
from tinyml.reference.kernels.registry import KernelCall


def check_int4_weights(call: KernelCall, axis: int) -> None:
    """Input 1 of ``call`` is a valid int4 filter for quantization axis ``axis``."""
    w_t = call.in_tensors[1]
    kind, name = call.op.kind, call.op.name
    if w_t.quant is None:
        raise UnsupportedOpError(kind, name, detail=f"int4 weights '{w_t.name}' are not "
                                                    f"quantized")
    if np.any(np.asarray(w_t.quant.zero_point) != 0):
        raise UnsupportedOpError(kind, name, detail=f"int4 weights '{w_t.name}' must be "
                                                    f"symmetric (zero point 0)")
    if w_t.quant.per_channel and w_t.quant.axis != axis:
        raise UnsupportedOpError(kind, name, detail=f"int4 weights quantized along axis "
                                                    f"{w_t.quant.axis}, TFLM expects axis "
                                                    f"{axis}")
    data = call.inputs[1] if call.inputs[1] is not None else w_t.data
    if data is not None and np.asarray(data).size:
        values = np.asarray(data)
        if values.min() < -8 or values.max() > 7:
            raise UnsupportedOpError(kind, name, detail=f"int4 weights '{w_t.name}' hold "
                                                        f"values outside [-8, 7]")
