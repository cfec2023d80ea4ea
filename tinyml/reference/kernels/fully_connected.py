"""FULLY_CONNECTED (TFLite weights [out, in]; ONNX Gemm/MatMul import to this)."""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.reference.fixedpoint import (INT16_MAX, INT16_MIN, activation_range,
                                         float_activation, per_channel_multipliers,
                                         per_tensor_fc_multiplier, requantize, requantize_16x8)
from tinyml.reference.kernels.int4 import check_int4_weights
from tinyml.reference.kernels.registry import KernelCall, kernel


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
    """TFLM ``FullyConnected`` / ``FullyConnectedPerChannel`` on int8.

    Per-tensor weights subtract the filter zero point and use the float32-product
    multiplier (``GetQuantizedConvolutionMultipler``); per-channel weights ignore the filter
    zero point and use one double-precision multiplier per output row. Every leading
    dimension of the input is a batch (``keep_num_dims`` only changes the output shape).
    The matmul runs in float64, exact because all sums stay far below 2^53.
    """
    x_t, w_t, out = call.in_tensors[0], call.in_tensors[1], call.out
    if w_t.dtype == "int4":
        check_int4_weights(call, 0)
    if w_t.dtype not in ("int8", "int4") or w_t.quant is None:
        raise UnsupportedOpError("FULLY_CONNECTED", call.op.name,
                                 detail=f"int8 input needs int8 or int4 quantized weights, "
                                        f"got {w_t.dtype}")
    w = call.inputs[1].astype(np.float64)
    units, depth = out.shape[-1], w.shape[-1]
    w = w.reshape(-1, depth)[:units]
    x = call.inputs[0].astype(np.float64).reshape(-1, depth) - x_t.zero_point()
    if w_t.quant.per_channel:
        if w_t.quant.axis != 0:
            raise UnsupportedOpError("FULLY_CONNECTED", call.op.name,
                                     detail=f"weights quantized along axis {w_t.quant.axis}")
        multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale,
                                                    out.scale(), units)
    else:
        w = w - w_t.zero_point()
        multiplier, shift = per_tensor_fc_multiplier(x_t.scale(), w_t.scale(), out.scale())
        check_bias_scale(call)
    acc = (x @ w.T).astype(np.int64)
    if len(call.inputs) > 2 and call.inputs[2] is not None:
        acc = acc + call.inputs[2].astype(np.int64).reshape(units)
    if x_t.dtype == "int16":
        # 16x8: the accumulator has the bias's type (TFLM's FullyConnected<..., BiasType>).
        from tinyml.reference.kernels.conv import int64_accumulator
        lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point(),
                                  INT16_MIN, INT16_MAX)
        y = requantize_16x8(acc, multiplier, shift, out.zero_point(), lo, hi,
                            int64_accumulator(call))
        return y.reshape(call.out.shape)
    lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point())
    y = requantize(acc, multiplier, shift, out.zero_point(), lo, hi)
    return y.reshape(call.out.shape)


def check_bias_scale(call: KernelCall) -> None:
    """TFLM refuses a per-tensor layer whose bias scale strays from input*filter scale by
    more than 2% of the output scale (the kernel applies the product scale to the bias)."""
    if len(call.in_tensors) < 3 or call.in_tensors[2] is None:
        return
    b_t = call.in_tensors[2]
    if b_t.quant is None or b_t.quant.per_channel:
        return
    x_t, w_t, out = call.in_tensors[0], call.in_tensors[1], call.out
    product = float(x_t.scale()) * float(w_t.scale())
    if abs(product - b_t.scale()) / out.scale() > 0.02:
        raise TinymlError(f"layer '{call.op.name}' (FULLY_CONNECTED): bias scale "
                          f"{b_t.scale():.6g} does not match input scale x weight scale "
                          f"{product:.6g}")
