"""CONV_2D and DEPTHWISE_CONV_2D (NHWC input, OHWI / 1HW(C*M) filters)."""

from __future__ import annotations

import numpy as np

from tinyml.errors import UnsupportedOpError
from tinyml.reference.fixedpoint import (INT16_MAX, INT16_MIN, activation_range,
                                         float_activation, per_channel_multipliers, requantize,
                                         requantize_16x8, symmetric_quantize_floats)
from tinyml.reference.kernels.int4 import check_int4_weights
from tinyml.reference.kernels.registry import KernelCall, kernel
from tinyml.reference.kernels.windows import windows

#: Filter types the int8 kernels take. int4 codes are held unpacked (one per int8 element),
#: which is what TFLM's kernels compute on after ``UnpackDenseInt4IntoInt8``: the arithmetic
#: is the int8 arithmetic.
INT_FILTERS = ("int8", "int4")


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


def _bias_int32(call: KernelCall, channels: int) -> np.ndarray:
    if len(call.inputs) > 2 and call.inputs[2] is not None:
        return call.inputs[2].astype(np.int64).reshape(channels)
    return np.zeros(channels, np.int64)


def int64_accumulator(call: KernelCall) -> bool:
    """Whether a 16x8 conv or FULLY_CONNECTED accumulates in int64: TFLM accumulates in the
    bias's type (int64 unless the model has an int32 bias; no bias is the int64 path)."""
    bias = call.in_tensors[2] if len(call.in_tensors) > 2 else None
    return bias is None or bias.dtype == "int64"


def _output_stage(call: KernelCall, acc: np.ndarray) -> np.ndarray:
    """Bias, per-channel requantization and activation clamp, as TFLM's conv kernels end.
    With int16 activations (16x8) the accumulator is the bias's type
    (:func:`requantize_16x8`)."""
    x_t, w_t, out = call.in_tensors[0], call.in_tensors[1], call.out
    channels = acc.shape[-1]
    acc = acc + _bias_int32(call, channels)
    multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, out.scale(),
                                                channels)
    if x_t.dtype == "int16":
        lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point(),
                                  INT16_MIN, INT16_MAX)
        return requantize_16x8(acc, multiplier, shift, out.zero_point(), lo, hi,
                               int64_accumulator(call))
    lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point())
    return requantize(acc, multiplier, shift, out.zero_point(), lo, hi)


def _check_int8_filter(call: KernelCall, axis: int) -> None:
    """int8 weights, or int4 ones (per-channel symmetric, values in [-8, 7]), which TFLM
    computes with exactly the int8 arithmetic on the unpacked values."""
    w_t = call.in_tensors[1]
    if w_t.dtype == "int4":
        check_int4_weights(call, axis)
    if w_t.dtype not in INT_FILTERS or w_t.quant is None:
        raise UnsupportedOpError(call.op.kind, call.op.name,
                                 detail=f"int8 input needs int8 or int4 quantized weights, got "
                                        f"{w_t.dtype}")
    if w_t.quant.per_channel and w_t.quant.axis != axis:
        raise UnsupportedOpError(call.op.kind, call.op.name,
                                 detail=f"weights quantized along axis {w_t.quant.axis}, "
                                        f"TFLM expects axis {axis}")


def _centered_padded_input(call: KernelCall) -> np.ndarray:
    """The input minus its zero point, zero-padded: padding then adds nothing to the
    accumulator, exactly as TFLM skips taps that fall outside the image."""
    a = call.attrs
    x = call.inputs[0].astype(np.int64) - call.in_tensors[0].zero_point()
    pt, pb, pl, pr = a.padding
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))


def _taps(xp: np.ndarray, call: KernelCall, kh: int, kw: int, out_hw: tuple[int, int]):
    """Yield (ky, kx, strided input slice) for every filter tap: the slice holds, for
    every output position, the input pixel that tap multiplies."""
    (sh, sw), (dh, dw) = call.attrs.stride, call.attrs.dilation
    oh, ow = out_hw
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, xp[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw, :]


def conv_2d_int8(call: KernelCall) -> np.ndarray:
    """TFLM ``ConvPerChannel``: acc = sum w * (x - zp_in) over taps inside the image, + bias,
    then per-channel requantization. The filter zero point is ignored (TFLM assumes
    symmetric weights); per-tensor weights use one multiplier for all channels.

    Each tap is a float64 matmul: every product and partial sum is an integer far below
    2^53, so the result is exact whatever order BLAS adds in.
    """
    _check_int8_filter(call, 0)
    w = call.inputs[1].astype(np.float64)
    cout, kh, kw, cin = w.shape
    n, oh, ow, _ = call.out.shape
    xp = _centered_padded_input(call).astype(np.float64)
    groups = xp.shape[3] // cin
    if groups * cin != xp.shape[3] or cout % groups:
        raise UnsupportedOpError("CONV_2D", call.op.name,
                                 detail=f"{xp.shape[3]} input channels do not split into "
                                        f"groups of {cin}")
    per_group = cout // groups
    acc = np.zeros((n, oh, ow, cout), np.float64)
    for ky, kx, xs in _taps(xp, call, kh, kw, (oh, ow)):
        for g in range(groups):
            cols = slice(g * per_group, (g + 1) * per_group)
            acc[..., cols] += xs[..., g * cin:(g + 1) * cin] @ w[cols, ky, kx, :].T
    return _output_stage(call, acc.astype(np.int64))


def depthwise_conv_2d_int8(call: KernelCall) -> np.ndarray:
    """TFLM ``DepthwiseConvPerChannel``: output channel c*M+m reads input channel c with
    filter column c*M+m; same accumulation and output stage as :func:`conv_2d_int8`."""
    _check_int8_filter(call, 3)
    if call.in_tensors[0].dtype == "int16" and not int64_accumulator(call):
        raise UnsupportedOpError("DEPTHWISE_CONV_2D", call.op.name,
                                 detail="int16 input with an int32 bias (TFLM's 16x8 depthwise "
                                        "reads an int64 bias)")
    w = call.inputs[1].astype(np.int64)
    _, kh, kw, channels = w.shape
    n, oh, ow, _ = call.out.shape
    xp = _centered_padded_input(call)
    c = xp.shape[3]
    m = channels // c
    if m * c != channels:
        raise UnsupportedOpError("DEPTHWISE_CONV_2D", call.op.name,
                                 detail=f"{channels} filter channels for {c} input channels")
    w = w.reshape(kh, kw, c, m)
    acc = np.zeros((n, oh, ow, c, m), np.int64)
    for ky, kx, xs in _taps(xp, call, kh, kw, (oh, ow)):
        acc += xs[..., None] * w[ky, kx]
    return _output_stage(call, acc.reshape(n, oh, ow, channels))
