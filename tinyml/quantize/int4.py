"""Sub-byte weights: int4 codes, how they are packed, and how float weights are rounded to them.

Why int4: on a microcontroller the weights live in flash, and at 4 bits they take half the
bytes of int8. TFLite has an INT4 tensor type that TFLM runs in CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED (filter only): it unpacks the filter to int8 (``UnpackDenseInt4IntoInt8``) and
runs the int8 kernel, so an int4 layer computes exactly what an int8 layer with the same codes
computes. In the IR an int4 filter is a constant of dtype ``"int4"`` whose ``data`` holds one
code in [-8, 7] per np.int8 element (same shape as the int8 filter);
:func:`tinyml.ir.tensor.pack_int4` gives the stored bytes.

Quantization is symmetric, zero point 0, per output channel on the int8 axes (0 for CONV_2D,
3 for DEPTHWISE_CONV_2D), so biases stay int32 at input_scale x weight_scale. Except for
FULLY_CONNECTED: TFLM refuses a per-channel int4 filter there (``fully_connected_common.cc``
accepts per-channel filters only if they are not INT4, in the reference and CMSIS-NN kernels
alike), so an int4 dense filter has one scale for the whole matrix (axis None), and its bias
one scale, input_scale x weight_scale, as TFLM's per-tensor path requires.

Codes use [-8, 7]: TFLM's ``QMinFromTfLiteType(kTfLiteInt4)`` is -8 and its kernels ignore
the (zero) filter zero point, so -8 is a valid code. Round to nearest (RTN),
the baseline, sets scale = max|w| / 7 (the int8 rule max|w| / 127 at 4 bits: the narrow
symmetric range [-7, 7], which the TFLite converter's int4 weights also use), so it never
needs -8; the better roundings may use it.

Roundings (``ROUNDINGS``; ``benchmarks/int4_weights.py`` measures them):

- ``rtn``: round to nearest with scale max|w| / 7;
- ``gptq``: error-feedback rounding (Frantar et al., "GPTQ", 2022) at the RTN scale: the
  columns of the layer's weight matrix (input features; im2col patch elements (ky, kx, c) for
  CONV_2D; the kh x kw taps of each channel for DEPTHWISE_CONV_2D) are rounded in order, and
  each column's rounding error is spread onto the columns not yet rounded through the inverse
  of H = X^T X, X the layer's calibration inputs, so that the layer's output error
  ``(W - Wq) X`` is what is minimized, not the weight error;
- ``search``: RTN with the per-channel scale that minimizes the channel's output error
  ``e H e^T`` (e the channel's weight error) over scales alpha x max|w| / 7, alpha in
  [0.5, 1]: clipping the largest weights is often cheaper than a coarse grid for all;
- ``gptq-search`` (the default): the searched scales, then GPTQ rounding at those scales.

Every rounding but ``rtn`` needs the layer's input second moments (:mod:`.hessian`). Grouped
convolutions (input channels split into groups) fall back to ``rtn``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.ir import Quantization
from tinyml.ir.tensor import INT4_MAX, INT4_MIN, pack_int4, unpack_int4  # noqa: F401 (re-export)
from tinyml.reference.fixedpoint import tflite_round

#: RTN's symmetric range [-RTN_QMAX, RTN_QMAX].
RTN_QMAX = 7
#: Op kinds whose filter (input 1) may be int4, with the axis of its output channels.
INT4_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
#: Op kinds whose int4 filter TFLM only runs with one scale (see the module docstring).
PER_TENSOR_INT4 = ("FULLY_CONNECTED",)
ROUNDINGS = ("rtn", "gptq", "search", "gptq-search")
DEFAULT_ROUNDING = "gptq-search"
#: Scales the search tries, as fractions of the RTN scale.
SEARCH_ALPHAS = np.linspace(0.5, 1.0, 26)
#: GPTQ's damping, a fraction of the mean diagonal of H added to it (as in the paper): keeps
#: the inverse well conditioned when inputs are correlated or few.
DAMPING = 0.01


# ---- the weight matrix of a layer -------------------------------------------------------------


def as_rows(w: np.ndarray, kind: str) -> np.ndarray:
    """The filter as a matrix [output channel, column], columns in the order the layer's
    im2col patch elements come (see :mod:`.hessian`)."""
    w = np.asarray(w, np.float64)
    if kind == "DEPTHWISE_CONV_2D":               # [1, kh, kw, C*M] -> [C*M, kh*kw]
        return w.reshape(-1, w.shape[3]).T.copy()
    return w.reshape(w.shape[0], -1).copy()       # [out, kh*kw*cin] or [out, in]


def from_rows(rows: np.ndarray, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`as_rows`."""
    if kind == "DEPTHWISE_CONV_2D":
        return rows.T.reshape(shape)
    return rows.reshape(shape)


# ---- roundings --------------------------------------------------------------------------------


def rtn_scales(rows: np.ndarray, per_tensor: bool = False) -> np.ndarray:
    """max|w| / 7 per row (1 for an all-zero row), in float32 as TFLite stores scales; with
    ``per_tensor`` the whole matrix's max for every row."""
    peak = np.abs(rows).max(axis=1) if rows.size else np.zeros(rows.shape[0])
    if per_tensor:
        peak = np.full_like(peak, peak.max() if peak.size else 0.0)
    return np.where(peak > 0, peak / RTN_QMAX, 1.0).astype(np.float32)


def round_to_codes(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """round(values / scale) per row, half away from zero in float32 (as the int8 weights
    are rounded, :func:`tinyml.quantize.params.symmetric_weights`), clamped to [-8, 7]."""
    inverse = (np.float32(1.0) / np.asarray(scales, np.float32)).astype(np.float32)
    shape = (-1,) + (1,) * (np.ndim(values) - 1)
    scaled = (np.asarray(values, np.float32) * inverse.reshape(shape)).astype(np.float32)
    return np.clip(tflite_round(scaled), INT4_MIN, INT4_MAX).astype(np.int64)


def _row_hessians(hessian: np.ndarray, rows: int, kind: str) -> np.ndarray:
    """H per row: [rows, k, k] (depthwise: the row's input channel's), or [k, k] shared."""
    if kind != "DEPTHWISE_CONV_2D":
        return hessian
    channels = hessian.shape[0]
    return hessian[np.arange(rows) // (rows // channels)]


def _output_error(errors: np.ndarray, h: np.ndarray) -> np.ndarray:
    """e H e^T per row (h shared [k, k] or per row [rows, k, k])."""
    if h.ndim == 2:
        return np.einsum("rk,rk->r", errors @ h, errors)
    return np.einsum("rk,rkl,rl->r", errors, h, errors)


def search_scales(rows: np.ndarray, h: np.ndarray, per_tensor: bool = False) -> np.ndarray:
    """Per row, the scale alpha x max|w| / 7 (alpha in :data:`SEARCH_ALPHAS`) whose RTN codes
    give the least output error e H e^T; with ``per_tensor`` one alpha for the matrix, the
    one with the least total error."""
    base = rtn_scales(rows, per_tensor)
    best = np.full(rows.shape[0], np.inf)
    chosen = base.copy()
    for alpha in SEARCH_ALPHAS:
        scales = (base * np.float32(alpha)).astype(np.float32)
        errors = rows - round_to_codes(rows, scales) * scales.astype(np.float64)[:, None]
        cost = _output_error(errors, h)
        if per_tensor:
            cost = np.full_like(cost, cost.sum())
        better = cost < best
        best = np.where(better, cost, best)
        chosen = np.where(better, scales, chosen)
    return chosen.astype(np.float32)


def damping(columns: int, count: int | None) -> float:
    """The fraction of H's mean diagonal added to its diagonal: GPTQ's 1 %, plus
    columns / count when H averages ``count`` patches of ``columns`` elements. With fewer
    patches than columns (a 640-input dense layer on 200 samples) H is singular and GPTQ
    would hide the error in directions the calibration data never took but other inputs do;
    shrinking H towards its diagonal in proportion (as covariance shrinkage does) keeps the
    rounding honest there, and fades away when patches are plentiful (convolutions)."""
    return DAMPING + (columns / count if count else 0.0)


def _shrunk(h: np.ndarray, damp: float) -> np.ndarray:
    """H plus ``damp`` times its mean diagonal on the diagonal (per matrix of a stack)."""
    h = np.array(h, np.float64, copy=True)
    index = np.arange(h.shape[-1])
    diagonal = h[..., index, index]
    h[..., index, index] = diagonal + damp * np.maximum(diagonal, 0).mean(axis=-1,
                                                                         keepdims=True)
    return h


def _damped_inverse_cholesky(h: np.ndarray, damp: float = DAMPING) -> np.ndarray:
    """The upper Cholesky factor U of (H + damping)^-1 (U^T U = H^-1), per matrix of a stack
    [..., k, k]. A column whose input is always zero (diagonal 0) gets diagonal 1: any code
    is exact there and it must not make H singular."""
    h = np.array(h, np.float64, copy=True)
    index = np.arange(h.shape[-1])
    diagonal = h[..., index, index]
    diagonal = np.where(diagonal > 0, diagonal, 1.0)
    diagonal = diagonal + damp * diagonal.mean(axis=-1, keepdims=True)
    h[..., index, index] = diagonal
    inverse = np.linalg.inv(h)
    inverse = (inverse + np.swapaxes(inverse, -1, -2)) / 2
    return np.swapaxes(np.linalg.cholesky(inverse), -1, -2)


def gptq_codes(rows: np.ndarray, scales: np.ndarray, h: np.ndarray,
               damp: float = DAMPING) -> np.ndarray:
    """GPTQ rounding of ``rows`` at fixed per-row ``scales``: column j is rounded to nearest,
    then its error, divided by U[j, j], is subtracted from the later columns times U[j, j+1:]
    (U the upper Cholesky factor of H^-1): the optimal update of the not-yet-rounded weights
    for the output error (Frantar et al. 2022, eq. 3 in Cholesky form)."""
    w = rows.copy()
    u = _damped_inverse_cholesky(h, damp)
    codes = np.zeros(w.shape, np.int64)
    s = scales.astype(np.float64)
    for j in range(w.shape[1]):
        codes[:, j] = round_to_codes(w[:, j], scales)
        if u.ndim == 2:
            pivot, tail = u[j, j], u[j, j + 1:]
            error = (w[:, j] - codes[:, j] * s) / pivot
            w[:, j + 1:] -= np.outer(error, tail)
        else:
            pivot, tail = u[:, j, j], u[:, j, j + 1:]
            error = (w[:, j] - codes[:, j] * s) / pivot
            w[:, j + 1:] -= error[:, None] * tail
    return codes


def quantize_int4(w: np.ndarray, kind: str, rounding: str = DEFAULT_ROUNDING,
                  hessian: np.ndarray | None = None, count: int | None = None
                  ) -> tuple[np.ndarray, Quantization]:
    """Int4 codes (np.int8, the filter's shape) and per-channel quantization of float filter
    ``w`` of a ``kind`` layer. ``hessian``: X^T X of the layer's inputs (:mod:`.hessian`;
    [C, k, k] for depthwise, one per input channel), needed by every rounding but ``rtn``
    (without it they fall back to ``rtn``)."""
    if kind not in INT4_OPS:
        raise ValueError(f"{kind} has no int4 filter")
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown int4 rounding '{rounding}' (known: {', '.join(ROUNDINGS)})")
    rows = as_rows(w, kind)
    per_tensor = kind in PER_TENSOR_INT4
    scales = rtn_scales(rows, per_tensor)
    if rounding == "rtn" or hessian is None:
        codes = round_to_codes(rows, scales)
    else:
        damp = damping(rows.shape[1], count)
        h = _row_hessians(np.asarray(hessian, np.float64), rows.shape[0], kind)
        if rounding in ("search", "gptq-search"):
            scales = search_scales(rows, _shrunk(h, damp), per_tensor)
        codes = (gptq_codes(rows, scales, h, damp) if rounding in ("gptq", "gptq-search")
                 else round_to_codes(rows, scales))
    codes = from_rows(codes, kind, np.shape(w)).astype(np.int8)
    if per_tensor:
        return codes, Quantization(scales[:1], [0])
    return codes, Quantization(scales, np.zeros(scales.size, np.int64), INT4_OPS[kind])


@dataclass
class Int4Filter:
    """A layer's int4 filter: codes (np.int8 in [-8, 7], the filter's shape), quantization,
    and the mean of the layer's input patches (:class:`tinyml.quantize.hessian.LayerMoments`
    ``mean``) when known, for :func:`mean_shift`."""

    codes: np.ndarray
    quant: Quantization
    input_mean: np.ndarray | None = None


def mean_shift(w: np.ndarray, kind: str, filt: Int4Filter) -> np.ndarray:
    """Bias correction of an int4 layer: per output channel, (W - Wq) . E[patch].

    The quantizer's generic bias correction multiplies each tap's error by the input
    channel's mean, as if every tap saw it; near a padded border a tap sees zeros instead,
    and at 4 bits the difference is no longer negligible (kws' first convolution pads a
    10x4 kernel over a 49x10 input). The mean patch, zeros included, is exact."""
    rows = as_rows(w, kind)
    scales = np.broadcast_to(filt.quant.scale.astype(np.float64), (rows.shape[0],))
    error = rows - as_rows(filt.codes, kind) * scales[:, None]
    mean = np.asarray(filt.input_mean, np.float64)
    if kind == "DEPTHWISE_CONV_2D":
        per_row = mean[np.arange(rows.shape[0]) // (rows.shape[0] // mean.shape[0])]
        return np.einsum("rk,rk->r", error, per_row)
    return error @ mean
