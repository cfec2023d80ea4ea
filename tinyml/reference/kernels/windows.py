"""Sliding windows over NHWC tensors, shared by convolution and pooling kernels."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            dilation: tuple[int, int], padding: tuple[int, int, int, int],
            pad_value=0) -> np.ndarray:
    """All receptive fields of ``x`` (N,H,W,C) as a view of shape (N, OH, OW, C, KH, KW).

    Padding cells hold ``pad_value``: 0 for float convolution, the input zero point for int8
    (so they contribute nothing once the zero point is subtracted, as TFLM skips them).
    """
    pt, pb, pl, pr = padding
    if any(padding):
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    kh, kw = kernel
    dh, dw = dilation
    view = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    return view[:, ::stride[0], ::stride[1], :, ::dh, ::dw]
