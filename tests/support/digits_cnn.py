"""The scikit-learn digits CNN of ``test_quantize_digits.py`` (batch normalizations, a
depthwise convolution, a 1x1 convolution, max pooling, Flatten -> Dense), trained the same way,
and what the pruning tests and ``benchmarks/prune_digits.py`` measure on it: the pruned
model's int8 accuracy and its instructions on cortex-m4 in QEMU, through the CLI as a user
would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
CALIBRATION_IMAGES = 200


def train_digits_cnn(folder: Path, epochs: int = 30, seed: int = 0) -> dict:
    """Train the CNN on the 70 % training split; write ``digits_cnn.keras``, ``train.npz``
    (the training split, for fine-tuning and calibration) and ``test.npz`` (the 30 % test
    split) in ``folder``."""
    import tensorflow as tf

    from tinyml.learn.digits_task import load_digits_split

    split = load_digits_split(seed=0)
    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers
    inputs = tf.keras.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    h = L.ReLU()(L.BatchNormalization()(h))
    h = L.DepthwiseConv2D(3, padding="same")(h)
    h = L.ReLU(6.0)(L.BatchNormalization()(h))
    h = L.Conv2D(32, 1, activation="relu")(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(32, 3, activation="relu")(h)
    outputs = L.Softmax()(L.Dense(10)(L.Flatten()(h)))
    model = tf.keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(split.x_train, split.y_train, epochs=epochs, batch_size=32, verbose=0)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits_cnn.keras"
    model.save(path)
    np.savez(folder / "train.npz", x=split.x_train, y=split.y_train)
    np.savez(folder / "test.npz", x=split.x_test, y=split.y_test)
    accuracy = float(np.mean(np.argmax(model.predict(split.x_test, verbose=0), 1)
                             == split.y_test))
    return {"path": path, "train": folder / "train.npz", "test": folder / "test.npz",
            "accuracy": accuracy, "folder": folder}


def tinyml(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyml.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def cli_json(*args: str) -> dict:
    """Run a tinyml command with ``--json``; its report (the command must succeed)."""
    result = tinyml(*args, "--json")
    if result.returncode != 0:
        raise AssertionError(f"tinyml {' '.join(args)} failed: {result.stderr}")
    return json.loads(result.stdout)


def prune(digits: dict, sparsity: float, out: Path, *extra: str) -> dict:
    """``tinyml prune`` fine-tuning on the training split, accuracies on the test split."""
    return cli_json("prune", str(digits["path"]), "--data", str(digits["train"]), "--eval",
                    str(digits["test"]), "--sparsity", str(sparsity), "-o", str(out), *extra)


def quantize(digits: dict, model: Path, out: Path) -> dict:
    """``tinyml quantize`` on 200 training images; accuracies on the test split (tinyml's
    reference interpreter for int8)."""
    return cli_json("quantize", str(model), "--calib", str(digits["train"]), "--calib-samples",
                    str(CALIBRATION_IMAGES), "--eval", str(digits["test"]), "-o", str(out))


def cortex_m4_instructions(tflite: Path) -> int:
    """Instructions of one inference of the compiled firmware in QEMU (``tinyml run``)."""
    return int(cli_json("run", str(tflite), "--target", "cortex-m4")["instructions"])
