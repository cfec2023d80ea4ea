"""Convolution variants (the ``conv`` op family): SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND.

The TFLite converter writes a dilated convolution of a graph with a dynamic batch as
SPACE_TO_BATCH_ND -> CONV_2D -> BATCH_TO_SPACE_ND; ``tinyml.passes.fold_dilated_conv`` folds
that back into one dilated convolution. These kernels run the two data-movement ops where the
pattern does not fold. They follow TFLM's reference ``SpaceToBatchND`` and ``BatchToSpaceND``:
a 3-D NHC tensor is an NH1C one (one spatial dimension), output batch ``b`` of
SPACE_TO_BATCH_ND holds the image ``b % N`` shifted by the block offset ``b // N``
(row-major over the block), and BATCH_TO_SPACE_ND is its inverse followed by the crops.

SPACE_TO_BATCH_ND pads with the output zero point (TFLite's ``SpaceToBatchParams``
``output_offset``: real zero). TFLM's port never sets that field and pads with whatever its
persistent buffer holds; models whose padding is real zero with zero point 0, or that pad
nothing, are where TFLM is defined, and where tests compare with it.
"""

from __future__ import annotations

import numpy as np

from tinyml.reference.kernels.registry import KernelCall, kernel


def as_nhwc(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """TFLM's ``ExtendShapeSpaceToBatch``: NHC becomes NH1C."""
    if len(shape) == 4:
        return tuple(shape)
    n, h, c = shape
    return n, h, 1, c


def _two(values, fill):
    """Per-dimension values padded to (H, W) for a 3-D tensor (W has block 1, no padding)."""
    values = tuple(values)
    return values if len(values) == 2 else values + (fill,)


def space_to_batch_pad_value(call: KernelCall) -> int | float:
    t = call.out
    return t.zero_point() if t.is_quantized else 0


@kernel("SPACE_TO_BATCH_ND")
def space_to_batch_nd(call: KernelCall) -> np.ndarray:
    a = call.attrs
    x = call.inputs[0].reshape(as_nhwc(call.inputs[0].shape))
    (bh, bw), pads = _two(a.block, 1), _two(a.pads, (0, 0))
    padded = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)),
                    constant_values=space_to_batch_pad_value(call))
    n, h, w, c = padded.shape
    y = padded.reshape(n, h // bh, bh, w // bw, bw, c).transpose(2, 4, 0, 1, 3, 5)
    return np.ascontiguousarray(y).reshape(call.out.shape).astype(x.dtype)


@kernel("BATCH_TO_SPACE_ND")
def batch_to_space_nd(call: KernelCall) -> np.ndarray:
    a = call.attrs
    x = call.inputs[0].reshape(as_nhwc(call.inputs[0].shape))
    (bh, bw), crops = _two(a.block, 1), _two(a.crops, (0, 0))
    nb, h, w, c = x.shape
    n = nb // (bh * bw)
    y = x.reshape(bh, bw, n, h, w, c).transpose(2, 3, 0, 4, 1, 5).reshape(n, h * bh, w * bw, c)
    y = y[:, crops[0][0]:h * bh - crops[0][1], crops[1][0]:w * bw - crops[1][1]]
    return np.ascontiguousarray(y).reshape(call.out.shape).astype(x.dtype)


# ---- TRANSPOSE_CONV -------------------------------------------------------------------------


def _scatter(call: KernelCall, x: np.ndarray, w: np.ndarray, dtype) -> np.ndarray:
    """The transposed convolution's sums: input pixel (y, x) adds ``x * w[:, ky, kx, :]`` to
    output pixel (y * stride - top + ky, x * stride - left + kx) when that lies inside the
    output (TFLM's scatter loop; integer sums do not depend on the order)."""
    a = call.attrs
    n, h, wd, _ = x.shape
    cout, kh, kw, _ = w.shape
    _, oh, ow, _ = a.output_shape
    (sh, sw), top, left = a.stride, a.padding[0], a.padding[2]
    # A canvas big enough for every scattered tap; the output is the window at (top, left).
    canvas_h = max((h - 1) * sh + kh, top + oh)
    canvas_w = max((wd - 1) * sw + kw, left + ow)
    canvas = np.zeros((n, canvas_h, canvas_w, cout), dtype)
    for ky in range(kh):
        for kx in range(kw):
            canvas[:, ky:ky + (h - 1) * sh + 1:sh, kx:kx + (wd - 1) * sw + 1:sw, :] += \
                x @ w[:, ky, kx, :].T
    return canvas[:, top:top + oh, left:left + ow, :]


@kernel("TRANSPOSE_CONV")
def transpose_conv(call: KernelCall) -> np.ndarray:
    if call.quantized:
        return transpose_conv_int8(call)
    from tinyml.reference.fixedpoint import float_activation
    y = _scatter(call, call.inputs[0].astype(np.float32), call.inputs[1].astype(np.float32),
                 np.float32)
    if len(call.inputs) > 2 and call.inputs[2] is not None:
        y = y + call.inputs[2].astype(np.float32)
    return float_activation(y, call.attrs.activation).astype(np.float32)


def transpose_conv_int8(call: KernelCall) -> np.ndarray:
    """TFLM's ``reference_integer_ops::TransposeConv``: acc = sum of (x - zp_in) * w over the
    taps scattered onto an output element, + bias, then the per-channel requantization and
    clamp of CONV_2D (``PopulateConvolutionQuantizationParams``). The filter zero point is
    ignored, as in TFLM. Sums are computed in float64 (exact: every partial sum is an
    integer far below 2^53) and wrapped to int32 as TFLM's int32 accumulator would."""
    from tinyml.reference.fixedpoint import wrap_int32
    from tinyml.reference.kernels.conv import _check_int8_filter, _output_stage
    _check_int8_filter(call, 0)
    x = call.inputs[0].astype(np.float64) - call.in_tensors[0].zero_point()
    acc = _scatter(call, x, call.inputs[1].astype(np.float64), np.float64)
    return _output_stage(call, wrap_int32(acc.astype(np.int64)))
