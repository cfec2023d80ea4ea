"""CONV_2D and DEPTHWISE_CONV_2D (NHWC input, OHWI / 1HW(C*M) filters)."""

from __future__ import annotations

import numpy as np

from tinyml.errors import UnsupportedOpError
from tinyml.reference.fixedpoint import float_activation, symmetric_quantize_floats
from tinyml.reference.kernels import KernelCall, kernel
from tinyml.reference.kernels.windows import windows


def _float_windows(call: KernelCall, kh: int, kw: int) -> np.ndarray:
    a = call.attrs
    x = call.inputs[0].astype(np.float32)
    return windows(x, (kh, kw), a.stride, a.dilation, a.padding, 0.0)


@kernel("CONV_2D")
def conv_2d(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return conv_2d_int8(call)
    if call.in_tensors[1].dtype == "int8":
        return _conv_2d_hybrid(call)
    w = call.inputs[1].astype(np.float32)
    cout, kh, kw, cin = w.shape
    win = _float_windows(call, kh, kw)  # N, OH, OW, C, KH, KW
    groups = win.shape[3] // cin
    per_group = cout // groups
    outs = []
    for g in range(groups):
        wg = w[g * per_group:(g + 1) * per_group]  # O, KH, KW, I
        xg = win[:, :, :, g * cin:(g + 1) * cin]
        outs.append(np.tensordot(xg, wg, axes=([3, 4, 5], [3, 1, 2])))
    y = np.concatenate(outs, axis=-1) if groups > 1 else outs[0]
    if len(call.inputs) > 2 and call.inputs[2] is not None:
        y = y + call.inputs[2].astype(np.float32)
    return float_activation(y, call.attrs.activation).astype(np.float32)


@kernel("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return depthwise_conv_2d_int8(call)
    w = call.inputs[1].astype(np.float32)
    _, kh, kw, channels = w.shape
    win = _float_windows(call, kh, kw)
    c = win.shape[3]
    m = channels // c
    y = np.einsum("nhwcij,ijcm->nhwcm", win, w.reshape(kh, kw, c, m), optimize=True)
    y = y.reshape(y.shape[:3] + (c * m,))
    if len(call.inputs) > 2 and call.inputs[2] is not None:
        y = y + call.inputs[2].astype(np.float32)
    return float_activation(y, call.attrs.activation).astype(np.float32)


def _conv_2d_hybrid(call: KernelCall) -> np.ndarray:
    """Float input, int8 weights (dynamic-range quantized model), as TFLite's ``EvalHybrid``:
    each image is quantized symmetrically at run time, convolved in integers, then scaled."""
    wt = call.in_tensors[1]
    if wt.quant is None or wt.quant.per_channel:
        raise UnsupportedOpError("CONV_2D", call.op.name,
                                 detail="hybrid convolution with per-channel weights")
    w = call.inputs[1].astype(np.int64)
    cout, kh, kw, cin = w.shape
    a = call.attrs
    outs = []
    for image in call.inputs[0].astype(np.float32):
        q, scale = symmetric_quantize_floats(image)
        win = windows(q[None].astype(np.int64), (kh, kw), a.stride, a.dilation, a.padding, 0)
        if win.shape[3] != cin:
            raise UnsupportedOpError("CONV_2D", call.op.name, detail="grouped hybrid convolution")
        acc = np.tensordot(win, w, axes=([3, 4, 5], [3, 1, 2]))
        outs.append(acc.astype(np.float32) * (scale * np.float32(wt.scale())))
    y = np.concatenate(outs, axis=0)
    if len(call.inputs) > 2 and call.inputs[2] is not None:
        y = y + call.inputs[2].astype(np.float32)
    return float_activation(y, a.activation).astype(np.float32)


def conv_2d_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 CONV_2D")


def depthwise_conv_2d_int8(call: KernelCall) -> np.ndarray:
    raise NotImplementedError("int8 DEPTHWISE_CONV_2D")
