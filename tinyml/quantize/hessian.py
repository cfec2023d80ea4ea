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
in GPTQ's one-shot use. H is averaged over positions, which does not change the minimizer;
with bias correction it is centered (the covariance, see :meth:`LayerMoments.hessian`). The
mean patch also serves bias correction of int4 layers (:func:`tinyml.quantize.int4.mean_shift`).
Grouped convolutions are skipped (their layers fall back to RTN).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class LayerMoments:
    """The first and second moments of a layer's input patches (X's rows), averaged over
    positions and samples: ``mean`` [k] (depthwise [C, k]) and ``second`` E[x x^T] [k, k]
    (depthwise [C, k, k])."""

    mean: np.ndarray
    second: np.ndarray
    #: Patches (rows of X) the moments average over.
    count: int = 0

    def hessian(self, centered: bool) -> np.ndarray:
        """E[x x^T], or with ``centered`` the covariance E[x x^T] - E[x] E[x]^T.

        Bias correction removes the part of a layer's error that is its weight error times
        the mean input, so with it the error that remains is measured by the covariance; the
        raw second moment, dominated by the mean when inputs are far from zero (kws' MFCC
        features, post-ReLU activations), would make the roundings spend their effort on the
        part bias correction fixes anyway."""
        if not centered:
            return self.second
        return self.second - self.mean[..., :, None] * self.mean[..., None, :]


def collect_moments(graph: Graph, data: Dataset, ops: Iterable[Op],
                    progress: Callable[[int], None] | None = None) -> dict[str, LayerMoments]:
    """The input moments of each of ``ops`` (keyed by the op's output tensor) over every
    sample of ``data``; ops without (grouped convolutions) are left out."""
    ops = list(ops)
    seconds: dict[str, np.ndarray] = {}
    firsts: dict[str, np.ndarray] = {}
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
            seconds[key] = seconds.get(key, 0) + h
            firsts[key] = firsts.get(key, 0) + patches.sum(axis=0)
            counts[key] = counts.get(key, 0) + patches.shape[0]
        if progress:
            progress(1)
    return {key: LayerMoments(firsts[key] / counts[key], seconds[key] / counts[key],
                              counts[key])
            for key in seconds if key not in skipped}
