"""``tinyml run --learn STREAM.npz``: stream labelled samples through a learning device.

Online learning (TinyOL), batch 1: for every sample the device first predicts it, then takes
one SGD step on its label. The prediction made before the step scores the stream
(prequential accuracy: each sample is a test sample before it is a training sample), so
"accuracy over time" needs no held-out data. When the file also holds ``x_test``/``y_test``,
the held-out accuracy is measured every ``eval_every`` samples and at the end, per class.

STREAM.npz: ``x`` [N, ...] samples (float real values, quantized by the device driver, or
integer codes) and ``y`` [N] integer labels; optionally ``x_test`` and ``y_test``.

The learning rate decays as ``lr / (1 + t / decay_steps)`` (``decay_steps`` 0: constant):
large first steps teach new classes quickly, small late ones stop the last samples from
dominating what was learned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinyml.errors import TinymlError

#: Samples in the sliding window of the prequential accuracy curve.
WINDOW = 50


@dataclass
class LearningStream:
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


def load_stream(path: str | Path, sample_shape: tuple[int, ...] | None = None) -> LearningStream:
    """The stream of ``path``, checked: ``x`` numeric [N, ...], ``y`` [N] integer labels >= 0
    (and the same for ``x_test``/``y_test``); with ``sample_shape`` (the model's input), each
    sample must have that shape (its leading batch dimension of 1 may be left out)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise TinymlError(f"cannot read {path} as an .npz stream: {exc}") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise TinymlError(f"{path}: no '{key}' array (a stream holds x [N, ...] samples and "
                              f"y [N] labels)")
    stream = LearningStream(arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test"))
    for xs, ys, what in ((stream.x, stream.y, ("x", "y")),
                         (stream.x_test, stream.y_test, ("x_test", "y_test"))):
        if xs is None and ys is None:
            continue
        if xs is None or ys is None:
            raise TinymlError(f"{path}: {what[0]} and {what[1]} must both be present")
        _check_pair(path, xs, ys, what, sample_shape)
    if len(stream.x) == 0:
        raise TinymlError(f"{path}: the stream is empty")
    return stream


def _check_pair(path, xs: np.ndarray, ys: np.ndarray, names: tuple[str, str],
                sample_shape: tuple[int, ...] | None) -> None:
    """One-line errors for what would otherwise fail deep inside the device driver."""
    x_name, y_name = names
    if ys.ndim != 1:
        raise TinymlError(f"{path}: {y_name} has shape {list(ys.shape)}; labels must be a 1-D "
                          f"array [N]")
    if ys.dtype.kind not in "iu":
        raise TinymlError(f"{path}: {y_name} labels must be integers, got {ys.dtype}")
    if ys.size and int(ys.min()) < 0:
        raise TinymlError(f"{path}: {y_name} holds the negative label {int(ys.min())}; labels "
                          f"are class indices >= 0")
    if xs.dtype.kind not in "iuf" or xs.ndim < 1:
        raise TinymlError(f"{path}: {x_name} must be a numeric array [N, ...], got {xs.dtype} "
                          f"of shape {list(xs.shape)}")
    if len(xs) != len(ys):
        raise TinymlError(f"{path}: {x_name} has {len(xs)} samples but {y_name} {len(ys)} "
                          f"labels; one label per sample")
    if sample_shape is not None:
        shape = tuple(int(d) for d in sample_shape)
        accepted = [shape] + ([shape[1:]] if len(shape) > 1 and shape[0] == 1 else [])
        if tuple(xs.shape[1:]) not in accepted:
            raise TinymlError(f"{path}: {x_name} samples have shape {list(xs.shape[1:])}, the "
                              f"model's input is {list(shape)}")


def decayed_lr(lr: float, step: int, decay_steps: float) -> float:
    return lr / (1.0 + step / decay_steps) if decay_steps > 0 else lr


@dataclass
class StreamResult:
    labels: np.ndarray               # the stream's labels
    predictions: np.ndarray          # the device's prediction before each step
    applied: np.ndarray              # False where the NaN/Inf guard rejected the step
    evaluations: list[dict] = field(default_factory=list)  # held-out: after N samples

    @property
    def samples_seen(self) -> int:
        return int(self.labels.size)

    @property
    def prequential_accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels))

    def accuracy_curve(self, window: int = WINDOW) -> np.ndarray:
        """Sliding-window prequential accuracy after each sample."""
        correct = (self.predictions == self.labels).astype(np.float64)
        sums = np.cumsum(correct)
        counts = np.minimum(np.arange(1, correct.size + 1), window)
        shifted = np.concatenate([np.zeros(window), sums])[:correct.size]
        return (sums - shifted) / counts

    def final(self) -> dict:
        return self.evaluations[-1] if self.evaluations else {}


def evaluate(device, x: np.ndarray, y: np.ndarray) -> dict:
    """Held-out accuracy overall and per class."""
    predictions = np.array([device.predict(sample) for sample in x])
    per_class = {int(c): float(np.mean(predictions[y == c] == c)) for c in np.unique(y)}
    return {"accuracy": float(np.mean(predictions == y)), "per_class": per_class,
            "predictions": predictions}


def run_stream(device, stream: LearningStream, *, lr: float = 0.05, decay_steps: float = 40.0,
               eval_every: int = 0,
               progress: Callable[[int, int], None] | None = None) -> StreamResult:
    """Predict-then-learn over the stream; ``progress(done, total)`` after each sample."""
    _check_pair("stream", stream.x, stream.y, ("x", "y"), device.input_shape)
    if stream.x_test is not None:
        _check_pair("stream", stream.x_test, stream.y_test, ("x_test", "y_test"),
                    device.input_shape)
    n = len(stream.y)
    bad = [int(v) for v in np.unique(stream.y) if not 0 <= v < device.num_classes]
    if bad:
        raise TinymlError(f"labels {bad} are outside the device's {device.num_classes} classes "
                          f"(compile with a larger --max-classes)")
    predictions = np.zeros(n, np.int64)
    applied = np.zeros(n, bool)
    result = StreamResult(np.asarray(stream.y, np.int64), predictions, applied)
    has_test = stream.x_test is not None
    for t in range(n):
        step = device.step(stream.x[t], int(stream.y[t]), decayed_lr(lr, t, decay_steps))
        predictions[t], applied[t] = step.predicted, step.applied
        if has_test and eval_every and (t + 1) % eval_every == 0 and t + 1 < n:
            result.evaluations.append({"samples": t + 1, **evaluate(device, stream.x_test,
                                                                    stream.y_test)})
        if progress is not None:
            progress(t + 1, n)
    if has_test:
        result.evaluations.append({"samples": n, **evaluate(device, stream.x_test,
                                                             stream.y_test)})
    return result


def group_accuracy(evaluation: dict, y: np.ndarray, classes) -> float:
    """Held-out accuracy over the samples of ``classes``."""
    mask = np.isin(y, list(classes))
    return float(np.mean(evaluation["predictions"][mask] == y[mask]))
