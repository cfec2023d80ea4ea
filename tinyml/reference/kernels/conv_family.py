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

from tinyml.reference.kernels import KernelCall, kernel


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
