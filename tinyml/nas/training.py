"""Datasets and Keras training for the search: the proxy (a few epochs) and the final run.

Data (``--data``): a ``.npz`` with ``x_train, y_train, x_test, y_test`` (images ``(N, H, W)``
or ``(N, H, W, C)``, integer labels), or ``digits``: scikit-learn's bundled 8x8 handwritten
digits (1,797 images, no download), split 70/30 stratified with seed 0 as
``tests/test_quantize_digits.py`` does. Images are resized (bilinear) to each candidate's
resolution; the search holds out a stratified fifth of the training split for the proxy
accuracy, so the test split is only used for the final figures.

Training is deliberately light (the machine is shared): Adam with a cosine-decayed learning
rate, batch 32, a small random shift as augmentation, TensorFlow limited to
:data:`THREADS` threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError
from tinyml.nas.search_space import Arch

THREADS = 2
BATCH = 32
LEARNING_RATE = 4e-3
VALIDATION_FRACTION = 0.2


@dataclass
class Data:
    name: str
    x_train: np.ndarray      # (N, H, W, C) float32
    y_train: np.ndarray      # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int
    _resized: dict = field(default_factory=dict, repr=False)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[-1])

    def resized(self, split: str, resolution: int) -> np.ndarray:
        """``x_<split>`` at ``resolution`` x ``resolution`` (cached)."""
        key = (split, resolution)
        if key not in self._resized:
            x = getattr(self, f"x_{split}")
            if x.shape[1:3] == (resolution, resolution):
                self._resized[key] = x
            else:
                import tensorflow as tf
                self._resized[key] = tf.image.resize(x, (resolution, resolution),
                                                     "bilinear").numpy().astype(np.float32)
        return self._resized[key]

    def validation_split(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Stratified (train, validation) indices into the training split."""
        rng = np.random.default_rng(seed)
        train, val = [], []
        for label in np.unique(self.y_train):
            idx = rng.permutation(np.flatnonzero(self.y_train == label))
            cut = max(1, int(round(len(idx) * VALIDATION_FRACTION)))
            val += list(idx[:cut])
            train += list(idx[cut:])
        return np.sort(np.array(train)), np.sort(np.array(val))


def _images(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] == 0 or x.dtype.kind not in "fiu":
        raise TinymlError(f"--data: {what} must be numeric images shaped (N, H, W) or "
                          f"(N, H, W, C), got {x.dtype}{list(x.shape)}")
    if x.dtype.kind in "iu" and x.max() > 1:
        x = x / 255.0
    return x.astype(np.float32)


def _labels(y: np.ndarray, count: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(axis=1)
    y = y.reshape(-1)
    if y.shape[0] != count or y.dtype.kind not in "iu" or (y.size and y.min() < 0):
        raise TinymlError(f"--data: {what} must hold {count} non-negative class indices, got "
                          f"{y.dtype}{list(y.shape)}")
    return y.astype(np.int64)


def load_data(spec: str) -> Data:
    if spec == "digits":
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ImportError:
            raise TinymlError("--data digits needs scikit-learn (pip install scikit-learn)") \
                from None
        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[..., None]
        x_train, x_test, y_train, y_test = train_test_split(
            x, digits.target, test_size=0.3, random_state=0, stratify=digits.target)
        return Data("digits", x_train, y_train.astype(np.int64), x_test,
                    y_test.astype(np.int64), 10)
    path = Path(spec)
    if path.suffix.lower() != ".npz" or not path.is_file():
        raise TinymlError(f"--data {spec}: expected 'digits' or an existing .npz file with "
                          f"x_train, y_train, x_test, y_test")
    try:
        archive = np.load(path, allow_pickle=False)
        arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as exc:
        raise TinymlError(f"--data {spec}: not a readable .npz file ({exc})") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise TinymlError(f"--data {spec}: missing {', '.join(missing)} (found "
                          f"{', '.join(arrays) or 'nothing'})")
    x_train, x_test = _images(arrays["x_train"], "x_train"), _images(arrays["x_test"], "x_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise TinymlError(f"--data {spec}: x_train images are {list(x_train.shape[1:])} but "
                          f"x_test images are {list(x_test.shape[1:])}")
    y_train = _labels(arrays["y_train"], len(x_train), "y_train")
    y_test = _labels(arrays["y_test"], len(x_test), "y_test")
    classes = int(max(y_train.max(), y_test.max())) + 1
    if classes < 2:
        raise TinymlError(f"--data {spec}: the labels hold a single class")
    return Data(path.stem, x_train, y_train, x_test, y_test, classes)


_configured = False


def _tensorflow():
    global _configured
    import tensorflow as tf
    if not _configured:
        # Retracing notes (one model per candidate is the point) would clutter stderr.
        tf.get_logger().setLevel("ERROR")
        try:
            tf.config.threading.set_intra_op_parallelism_threads(THREADS)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # already initialized by the caller: keep its settings
        _configured = True
    return tf


@dataclass
class Trained:
    model: object             # the Keras model
    accuracy: float           # on the evaluation images given to train()
    seconds: float
    epochs: int
    epoch_seconds: float      # one epoch's fit time, without building and tracing the model


def train(arch: Arch, x: np.ndarray, y: np.ndarray, epochs: int, x_eval: np.ndarray,
          y_eval: np.ndarray, seed: int = 0) -> Trained:
    """Train ``arch`` from scratch for ``epochs`` and measure its float accuracy on
    ``(x_eval, y_eval)``."""
    from tinyml.nas.keras_model import build_keras

    tf = _tensorflow()
    start = time.monotonic()
    model = build_keras(arch, seed)
    steps = max(1, int(np.ceil(len(x) / BATCH))) * max(epochs, 1)
    schedule = tf.keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    model.compile(tf.keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    shift = max(1, arch.resolution // 16)
    augment = tf.keras.Sequential([tf.keras.layers.RandomTranslation(
        shift / arch.resolution, shift / arch.resolution, fill_mode="constant", seed=seed)])
    dataset = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
               .batch(BATCH).map(lambda a, b: (augment(a, training=True), b)))
    timer = _EpochTimer(tf)
    model.fit(dataset, epochs=epochs, verbose=0, shuffle=False,  # shuffled by tf.data
              callbacks=[timer.callback])
    accuracy = float_accuracy(model, x_eval, y_eval)
    return Trained(model, accuracy, time.monotonic() - start, epochs, timer.typical())


class _EpochTimer:
    """Wall time of each epoch; the first includes tracing, so later ones are typical."""

    def __init__(self, tf):
        self.times: list[float] = []
        timer = self

        class Callback(tf.keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                timer._start = time.monotonic()

            def on_epoch_end(self, epoch, logs=None):
                timer.times.append(time.monotonic() - timer._start)

        self.callback = Callback()

    def typical(self) -> float:
        later = self.times[1:] or self.times
        return float(np.median(later)) if later else 0.0


def float_accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    predictions = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(predictions, axis=1) == y))
