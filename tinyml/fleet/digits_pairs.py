"""The fleet benchmark's tasks: 2-way tasks over pairs of handwritten digits (scikit-learn).

What makes meta-learning matter here, and how the data is cut so that nothing leaks:

- The frozen int8 backbone is a small CNN trained on digits 0-4 only (:data:`BACKBONE_DIGITS`).
  Its features separate 0-4 well and 5-9 poorly, so a device that must tell two of 5-9 apart
  from five examples each needs good *trainable* features: the head is two dense layers
  (``--trainable last:2``: features -> hidden ReLU -> 2 logits), and its first layer is what
  a federated init can teach.
- Every task is "digit a vs digit b", a, b in 5-9, with its own random label orientation (a
  may be label 0 on one device and label 1 on the next), so no single model solves all
  tasks: the best global classifier outputs 1/2 everywhere. What transfers between devices is
  how to learn such a task quickly, which is what Reptile optimizes.
- The images of 5-9 are split in two disjoint halves: the fleet's devices hold the first, the
  new devices of the evaluation the second. New tasks draw a pair of 5-9 and an orientation
  at random (there are only 10 pairs, so pairs recur; images and devices do not).

All of it is seeded; the data ships with scikit-learn, nothing is downloaded.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKBONE_DIGITS = (0, 1, 2, 3, 4)
TASK_DIGITS = (5, 6, 7, 8, 9)
PAIRS = list(itertools.combinations(TASK_DIGITS, 2))
#: Head: backbone features -> HIDDEN ReLU units -> 2 logits (both layers train on device).
HIDDEN_UNITS = 64
TRAINABLE = "last:2"
#: Fraction of a fleet device's images kept out of its training, to measure adaptation.
QUERY_FRACTION = 0.3


def load_images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 images as float32 [N, 8, 8, 1] in [0, 1] and their digits, in a seeded order."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    x = (data.images[order] / 16.0).astype(np.float32)[..., None]
    return x, data.target[order].astype(np.int64)


def task_halves(y: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Indices of each task digit: the fleet's half and the evaluation's half (disjoint)."""
    fleet, new = {}, {}
    for d in TASK_DIGITS:
        idx = np.flatnonzero(y == d)
        fleet[d], new[d] = idx[: len(idx) // 2], idx[len(idx) // 2:]
    return fleet, new


# ---- the fleet's data -------------------------------------------------------------------------

def fleet_dataset(devices: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The DATA file of ``tinyml fleet``: every device's images and task labels.

    Arrays: ``x`` images, ``y`` labels (0/1, the device's orientation), ``device`` the device
    index of each row, ``split`` 0 for training rows and 1 for held-out query rows, ``pairs``
    [devices, 2] the digits labelled 0 and 1 on each device. Devices take the 10 pairs in a
    seeded order (a fleet larger than 10 repeats pairs, with new orientations)."""
    x, y = load_images(seed)
    fleet, _ = task_halves(y)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(PAIRS))
    rows_x, rows_y, rows_dev, rows_split, pairs = [], [], [], [], []
    for dev in range(devices):
        a, b = PAIRS[order[dev % len(PAIRS)]]
        if rng.integers(2):
            a, b = b, a                      # a is label 0, b label 1
        pairs.append((a, b))
        for label, digit in ((0, a), (1, b)):
            idx = rng.permutation(fleet[digit])
            n_query = int(round(len(idx) * QUERY_FRACTION))
            rows_x.append(x[idx])
            rows_y.append(np.full(len(idx), label))
            rows_dev.append(np.full(len(idx), dev))
            rows_split.append(np.r_[np.ones(n_query, np.int64), np.zeros(len(idx) - n_query,
                                                                            np.int64)])
    return {"x": np.concatenate(rows_x), "y": np.concatenate(rows_y),
            "device": np.concatenate(rows_dev), "split": np.concatenate(rows_split),
            "pairs": np.asarray(pairs, np.int64)}


@dataclass
class NewTask:
    pair: tuple[int, int]            # digit labelled 0, digit labelled 1
    support_x: np.ndarray
    support_y: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray


def new_tasks(count: int = 20, shots: int = 5, seed: int = 0) -> list[NewTask]:
    """``count`` new devices' tasks from the evaluation half: ``shots`` examples per class to
    adapt on, every other image of the two digits in that half to measure on."""
    x, y = load_images(seed)
    _, new = task_halves(y)
    rng = np.random.default_rng(seed + 1000)
    tasks = []
    for _ in range(count):
        a, b = PAIRS[rng.integers(len(PAIRS))]
        if rng.integers(2):
            a, b = b, a
        support, query = [], []
        for label, digit in ((0, a), (1, b)):
            idx = rng.permutation(new[digit])
            support.append((idx[:shots], label))
            query.append((idx[shots:], label))
        sx = np.concatenate([x[i] for i, _ in support])
        sy = np.concatenate([np.full(len(i), lab) for i, lab in support])
        qx = np.concatenate([x[i] for i, _ in query])
        qy = np.concatenate([np.full(len(i), lab) for i, lab in query])
        tasks.append(NewTask((int(a), int(b)), sx, sy, qx, qy))
    return tasks


# ---- the model --------------------------------------------------------------------------------

def build_model(folder: str | Path, *, hidden: int = HIDDEN_UNITS, epochs: int = 30,
                seed: int = 0) -> Path:
    """Train the backbone on digits 0-4, put a fresh two-layer head (Glorot init) on it, and
    quantize the whole to int8 with tinyml. Returns the .tflite path (cached in ``folder``)."""
    folder = Path(folder)
    tflite = folder / f"digits_pairs_h{hidden}_s{seed}_int8.tflite"
    if tflite.exists():
        return tflite
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from tinyml.quantize import quantize_model

    folder.mkdir(parents=True, exist_ok=True)
    x, y = load_images(seed)
    base = np.isin(y, BACKBONE_DIGITS)
    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers
    inputs = tf.keras.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(32, 3, activation="relu")(h)
    features = L.Flatten()(h)
    pretrain = tf.keras.Model(inputs, L.Softmax()(L.Dense(len(BACKBONE_DIGITS))(features)))
    pretrain.compile("adam", "sparse_categorical_crossentropy")
    pretrain.fit(x[base], y[base], epochs=epochs, batch_size=32, verbose=0)
    # The device's model: the trained backbone, a head that has never seen a task.
    head = L.Dense(hidden, activation="relu")(features)
    model = tf.keras.Model(inputs, L.Softmax()(L.Dense(2)(head)))
    keras_path = folder / f"digits_pairs_h{hidden}_s{seed}.keras"
    model.save(keras_path)
    calib = folder / f"calib_s{seed}.npz"
    pick = np.random.default_rng(seed).choice(len(y), 300, replace=False)
    np.savez(calib, x=x[pick], y=y[pick])
    tflite.write_bytes(quantize_model(keras_path, calib).to_tflite())
    return tflite
