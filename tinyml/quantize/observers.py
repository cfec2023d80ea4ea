"""Calibration observers: from the values a tensor takes on calibration data to the real range
its int8 codes will cover.

Three methods, as the user chooses with ``--method``:

- ``minmax``: the smallest and largest value seen. Nothing is clipped, so rare outliers
  stretch the scale for every other value; this is what the TFLite converter does.
- ``percentile``: the 0.01% and 99.99% percentiles (by default): outliers beyond them are
  clipped to the range's ends.
- ``mse``: the range minimizing the expected squared quantization error, i.e. the
  trade-off between clipping outliers (their distance to the range) and rounding everything
  else (``step^2 / 12`` per value, with 255 steps over the range).

Minmax needs one pass over the data. The other two build a histogram, whose bins need the
tensor's extent first: calibration runs the model twice, the first pass feeding
:meth:`Observer.observe_extent`, the second :meth:`Observer.observe_histogram` with the
extent fixed. Exact zeros are counted apart from the histogram: after a ReLU they are often
most of the values, and int8 represents them exactly (the zero point), so they must weigh
neither on the percentiles' tails nor on the rounding error.
"""

from __future__ import annotations

import numpy as np

METHODS = ("minmax", "percentile", "mse")
#: Histogram resolution: 2048 bins give each of the 255 quantization steps about 8 bins.
BINS = 2048
#: Default percentile of the ``percentile`` method.
PERCENTILE = 99.99
#: Candidate clipping points of the ``mse`` search, as fractions of the observed extent.
MSE_FRACTIONS = np.linspace(0.05, 1.0, 96)


class Observer:
    """Accumulates a tensor's values; :meth:`range` gives the real range to quantize."""

    needs_histogram = False

    def __init__(self):
        self.low = np.inf
        self.high = -np.inf
        self.count = 0

    def observe_extent(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        if x.size == 0:
            return
        self.low = min(self.low, float(x.min()))
        self.high = max(self.high, float(x.max()))
        self.count += x.size

    def observe_histogram(self, x: np.ndarray) -> None:
        pass

    @property
    def seen(self) -> bool:
        return self.count > 0

    def extent(self) -> tuple[float, float]:
        if not self.seen:
            return 0.0, 0.0
        if not (np.isfinite(self.low) and np.isfinite(self.high)):
            raise ValueError("non-finite values (inf or NaN) in the calibration run")
        return self.low, self.high

    def range(self) -> tuple[float, float]:
        return self.extent()


class MinMaxObserver(Observer):
    """The full extent of the values seen."""


class _HistogramObserver(Observer):
    needs_histogram = True

    def __init__(self):
        super().__init__()
        self.hist: np.ndarray | None = None
        self.zeros = 0

    def observe_histogram(self, x: np.ndarray) -> None:
        low, high = self.extent()
        if high <= low:
            return
        x = np.asarray(x, np.float64).reshape(-1)
        nonzero = x[x != 0]
        self.zeros += x.size - nonzero.size
        # Uniform bins: numpy computes bin indices directly (no sort).
        counts, _ = np.histogram(nonzero, bins=BINS, range=(low, high))
        self.hist = counts if self.hist is None else self.hist + counts

    def _centers(self) -> np.ndarray:
        low, high = self.extent()
        edges = np.linspace(low, high, BINS + 1)
        return (edges[:-1] + edges[1:]) / 2

    def range(self) -> tuple[float, float]:
        low, high = self.extent()
        if self.hist is None or high <= low or self.hist.sum() == 0:
            return low, high
        return self._choose(self.hist.astype(np.float64), self._centers())

    def _choose(self, hist: np.ndarray, centers: np.ndarray) -> tuple[float, float]:
        raise NotImplementedError


class PercentileObserver(_HistogramObserver):
    """Clip the lowest and highest ``(100 - percentile)`` % of the values."""

    def __init__(self, percentile: float = PERCENTILE):
        super().__init__()
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = percentile

    def _choose(self, hist, centers):
        low, high = self.extent()
        total = hist.sum() + self.zeros
        tail = total * (100.0 - self.percentile) / 100.0
        # Exact zeros sit between the negative and positive bins.
        cumulative = np.cumsum(hist) + np.where(centers > 0, self.zeros, 0)
        below = np.searchsorted(cumulative, tail, side="right")
        above = np.searchsorted(cumulative, total - tail, side="left")
        edges = np.linspace(low, high, BINS + 1)
        lo = edges[min(below, BINS - 1)] if tail > 0 else low
        hi = edges[min(above + 1, BINS)] if tail > 0 else high
        return max(min(lo, 0.0), low), min(max(hi, 0.0), high)


class MseObserver(_HistogramObserver):
    """The clipping range with the least expected squared error (see the module docstring).

    Candidate ends are fractions of the observed extent on each side of zero (a side with no
    values stays at zero). The clipping error splits into a term of the low end and one of the
    high end, so every (low, high) pair is scored from two small tables."""

    def _choose(self, hist, centers):
        low, high = self.extent()
        lows = np.unique(np.minimum(low, 0.0) * MSE_FRACTIONS)
        highs = np.unique(np.maximum(high, 0.0) * MSE_FRACTIONS)
        below = centers[None, :] < lows[:, None]            # values clipped up to each low end
        above = centers[None, :] > highs[:, None]           # values clipped down to each high end
        clip_low = (hist * below * (lows[:, None] - centers[None, :]) ** 2).sum(axis=1)
        clip_high = (hist * above * (centers[None, :] - highs[:, None]) ** 2).sum(axis=1)
        inside = hist.sum() - (hist * below).sum(axis=1)[:, None] - (hist * above).sum(axis=1)
        step = (highs[None, :] - lows[:, None]) / 255.0
        error = clip_low[:, None] + clip_high[None, :] + inside * step ** 2 / 12.0
        i, j = np.unravel_index(np.argmin(error), error.shape)
        return float(lows[i]), float(highs[j])


def make_observer(method: str) -> Observer:
    if method == "minmax":
        return MinMaxObserver()
    if method == "percentile":
        return PercentileObserver()
    if method == "mse":
        return MseObserver()
    raise ValueError(f"unknown calibration method '{method}' (known: {', '.join(METHODS)})")
