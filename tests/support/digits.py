"""The scikit-learn digits CNN the quantization, int4 and pruning tests train (8x8 images of
handwritten digits, 1797 samples bundled with scikit-learn, no download), and what they
measure on it through the CLI, as a user would run it.

A small CNN with batch normalizations, a depthwise convolution, ReLU and ReLU6, a 1x1
convolution, a max pool, Flatten -> Dense and a softmax, trained for 30 epochs (about 15 s)
with a fixed seed on the 70 % training split (tinyml.learn.digits_task's split); the first
200 training images are the calibration set, the 30 % test split the evaluation set.
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
    """Train the CNN; write ``digits_cnn.keras``, ``train.npz`` (the training split, for
    fine-tuning), ``calib.npz`` (its first 200 images) and ``test.npz`` in ``folder``.
    Returns the paths, the arrays, the float model's test accuracy (``float_accuracy``, also
    ``accuracy``) and the Keras model."""
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

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "digits_cnn.keras"
    model.save(path)
    files = {"train": folder / "train.npz", "calib": folder / "calib.npz",
             "test": folder / "test.npz"}
    np.savez(files["train"], x=split.x_train, y=split.y_train)
    np.savez(files["calib"], x=split.x_train[:CALIBRATION_IMAGES],
             y=split.y_train[:CALIBRATION_IMAGES])
    np.savez(files["test"], x=split.x_test, y=split.y_test)
    accuracy = float(np.mean(np.argmax(model.predict(split.x_test, verbose=0), 1)
                             == split.y_test))
    return dict(path=path, **files, x_train=split.x_train, y_train=split.y_train,
                x_test=split.x_test, y_test=split.y_test, float_accuracy=accuracy,
                accuracy=accuracy, model=model, folder=folder)


def tflm_accuracy(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of an int8 (or 16x8: int16 input) .tflite on (x, y), run in TFLM."""
    from support.oracles import tflm_interpreter
    from tinyml.frontends.tflite import load_tflite_bytes
    from tinyml.quantize.params import quantize_array

    graph = load_tflite_bytes(model)
    x_t = graph.tensors[graph.inputs[0]]
    interpreter = tflm_interpreter(model, all_tensors=False)
    correct = 0
    for image, label in zip(x, y):
        interpreter.set_input(quantize_array(image[None], x_t.quant,
                                             np.dtype(x_t.dtype).type), 0)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_output(0)) == label)
    return correct / len(y)


# ---- through the CLI ---------------------------------------------------------------------------

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


def quantize(digits: dict, model: Path, out: Path, *extra: str) -> dict:
    """``tinyml quantize`` on the 200 calibration images; accuracies on the test split
    (tinyml's reference interpreter for int8)."""
    return cli_json("quantize", str(model), "--calib", str(digits["calib"]), "--eval",
                    str(digits["test"]), "-o", str(out), *extra)


def cortex_m4_instructions(tflite: Path) -> int:
    """Instructions of one inference of the compiled firmware in QEMU (``tinyml run``)."""
    return int(cli_json("run", str(tflite), "--target", "cortex-m4")["instructions"])
