"""A class-incremental task on scikit-learn's bundled digits: learn 5-9 on top of 0-4.

A small CNN is trained (TensorFlow/Keras) on digits 0-4 only, quantized by tinyml to int8
and compiled with ``--trainable last:1 --max-classes 10``: its classifier head then learns
digits 5-9 on the device from a stream. The stream mixes the new classes with some old ones
(rehearsal, as a deployed device would keep seeing them), so the head learns the new classes
without forgetting the old. Held-out images of both halves measure the result.

Everything is seeded; the data (8x8 images, 1797 samples) ships with scikit-learn, so
nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OLD_CLASSES = (0, 1, 2, 3, 4)
#: The learning-rate schedule of the task (tinyml.learn.stream.decayed_lr): lr / (1 + t / 40).
LEARNING_RATE, LR_DECAY_STEPS = 0.05, 40.0
NEW_CLASSES = (5, 6, 7, 8, 9)


@dataclass
class DigitsSplit:
    x_train: np.ndarray   # float32 [N, 8, 8, 1] in [0, 1]
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int = 0, test_size: float = 0.3) -> DigitsSplit:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=test_size, random_state=seed, stratify=data.target)
    return DigitsSplit(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def train_backbone_model(split: DigitsSplit, folder: str | Path, *, epochs: int = 25,
                         seed: int = 0) -> Path:
    """Train the float CNN on the old classes and quantize it with tinyml (int8 .tflite)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from tinyml.quantize import quantize_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    old = np.isin(split.y_train, OLD_CLASSES)
    x, y = split.x_train[old], split.y_train[old]
    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers
    inputs = tf.keras.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = L.Flatten()(h)
    h = L.Dropout(0.3)(h)
    outputs = L.Softmax()(L.Dense(len(OLD_CLASSES))(h))
    model = tf.keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    keras_path = folder / "digits_0to4.keras"
    model.save(keras_path)
    calib = folder / "calib.npz"
    np.savez(calib, x=x[:200], y=y[:200])
    tflite = folder / "digits_0to4_int8.tflite"
    tflite.write_bytes(quantize_model(keras_path, calib).to_tflite())
    return tflite


def learning_stream(split: DigitsSplit, samples: int = 500, new_fraction: float = 0.6,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` labelled training images, each used once: ``new_fraction`` of them from
    the new classes, the rest rehearsal of old ones, shuffled."""
    rng = np.random.default_rng(seed)
    new = np.flatnonzero(np.isin(split.y_train, NEW_CLASSES))
    old = np.flatnonzero(np.isin(split.y_train, OLD_CLASSES))
    n_new = min(int(round(samples * new_fraction)), new.size)
    n_old = min(samples - n_new, old.size)
    picked = np.concatenate([rng.choice(new, n_new, replace=False),
                             rng.choice(old, n_old, replace=False)])
    rng.shuffle(picked)
    return split.x_train[picked], split.y_train[picked]
