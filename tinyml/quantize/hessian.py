"""Second moments H = X^T X of the inputs of weighted layers, over the calibration data.

Why: a layer's output error from weight rounding is ``(W - Wq) X``; its squared norm summed
over the calibration data is ``sum_c e_c H e_c^T`` (e_c the error of output channel c), so H
is what the int4 roundings of :mod:`.int4` minimize against (GPTQ's error feedback, the
per-channel scale search). X holds one row per output position and one column per weight
column, in :func:`tinyml.quantize.int4.as_rows`' order:

- FULLY_CONNECTED: the input features;
- CONV_2D: the im2col patch elements (ky, kx, c), zero in the padding (a padded tap
  contributes nothing, in float as in int8);
- DEPTHWISE_CONV_2D: each input channel on its own, the kh x kw taps: H is [C, k, k], and
  output channel c*M+m uses channel c's.

The inputs are the float graph's (the reference interpreter on the prepared float graph), as
in GPTQ's one-shot use. H is averaged over positions, which does not change the minimizer.
Grouped convolutions are skipped (their layers fall back to RTN).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from tinyml.ir import Graph, Op
from tinyml.quantize.data import Dataset
from tinyml.reference import run
from tinyml.reference.kernels.windows import windows


def layer_patches(op: Op, x: np.ndarray, w_shape: tuple[int, ...]) -> np.ndarray | None:
    """The layer's input as X: [positions, columns] (depthwise: [positions, C, k]); None for
    a grouped convolution."""
    x = np.asarray(x, np.float64)
    if op.kind == "FULLY_CONNECTED":
        return x.reshape(-1, w_shape[1])
    a = op.attrs
    kh, kw = w_shape[1], w_shape[2]
    win = windows(x, (kh, kw), a.stride, a.dilation, a.padding, 0.0)  # N,OH,OW,C,KH,KW
    channels = win.shape[3]
    if op.kind == "DEPTHWISE_CONV_2D":
        return win.reshape(-1, channels, kh * kw)
    if channels != w_shape[3]:
        return None  # grouped
    return np.moveaxis(win, 3, 5).reshape(-1, kh * kw * channels)


def collect_hessians(graph: Graph, data: Dataset, ops: Iterable[Op],
                     progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """H of each of ``ops`` (keyed by the op's output tensor), averaged over the input
    positions of every sample of ``data``; ops without one (grouped) are left out."""
    ops = list(ops)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    skipped: set[str] = set()
    for sample in data.samples:
        with np.errstate(over="ignore", invalid="ignore"):
            values = run(graph, sample, keep_all=True)
        for op in ops:
            key = op.outputs[0]
            if key in skipped:
                continue
            patches = layer_patches(op, values[op.inputs[0]], graph.tensors[op.inputs[1]].shape)
            if patches is None:
                skipped.add(key)
                continue
            if patches.ndim == 3:
                h = np.einsum("pci,pcj->cij", patches, patches)
            else:
                h = patches.T @ patches
            sums[key] = sums.get(key, 0) + h
            counts[key] = counts.get(key, 0) + patches.shape[0]
        if progress:
            progress(1)
    return {key: total / counts[key] for key, total in sums.items() if key not in skipped}
