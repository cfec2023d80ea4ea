"""LSTM models made by the TFLite converter, full-int8 (UNIDIRECTIONAL_SEQUENCE_LSTM).

The converter's full-int8 LSTM (int8 input and output, int16 cell state) is what users get
from a Keras LSTM with ``TFLITE_BUILTINS_INT8``. Keras 3's conversion of it crashes, so the
models are built with tf_keras (``TF_USE_LEGACY_KERAS=1``), in a subprocess because that
switch must be set before TensorFlow is imported. Conversion takes seconds, so files are
cached on disk, keyed by this module's source and the builder's arguments.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_CACHE = Path(tempfile.gettempdir()) / "tinyml-test-lstm"

_SCRIPT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np, tensorflow as tf, tf_keras as K
units, steps, features, sequences, layers, seed, scale, quantize, batch, out = (
    eval(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]),
    int(sys.argv[6]), float(sys.argv[7]), sys.argv[8] == "1", int(sys.argv[9]), sys.argv[10])
K.utils.set_random_seed(seed)
x = K.Input((steps, features), batch_size=batch)
y = x
for i in range(layers):
    y = K.layers.LSTM(units[i], return_sequences=sequences or i < layers - 1)(y)
y = K.layers.Dense(4)(y)
m = K.Model(x, y)
def rep():
    r = np.random.default_rng(seed)
    for _ in range(32):
        yield [r.normal(0, scale, (batch, steps, features)).astype(np.float32)]
c = tf.lite.TFLiteConverter.from_keras_model(m)
if quantize:
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.inference_input_type = tf.int8
    c.inference_output_type = tf.int8
open(out, "wb").write(c.convert())
"""


def lstm_model(units: int | tuple[int, ...] = 8, steps: int = 6, features: int = 5,
               return_sequences: bool = False, seed: int = 0, scale: float = 1.0,
               quantize: bool = True, batch: int = 1) -> Path:
    """Keras ``LSTM(units)`` (a tuple: stacked LSTMs, each returning sequences into the
    next) over ``steps`` x ``features`` inputs, then ``Dense(4)``, converted full-int8
    (``quantize``; else float32), calibrated on normal inputs of standard deviation
    ``scale``; ``batch`` sequences per invocation (each row its own state)."""
    units = (units,) if isinstance(units, int) else tuple(units)
    args = (units, steps, features, return_sequences, seed, scale) + (
        () if quantize else ("float",)) + (() if batch == 1 else (("batch", batch),))
    key = hashlib.sha256(Path(__file__).read_bytes() + repr(args).encode()).hexdigest()[:16]
    path = _CACHE / f"lstm-{key}.tflite"
    if not path.exists():
        _CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, "-c", _SCRIPT, repr(list(units)), str(steps),
                        str(features), "1" if return_sequences else "0", str(len(units)),
                        str(seed), str(scale), "1" if quantize else "0", str(batch), str(tmp)],
                       check=True, capture_output=True, env=env)
        tmp.replace(path)
    return path


def sequences(path: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` int8 input sequences: random codes, then all-minimum and all-maximum."""
    from tinyml.frontends.tflite import load_tflite
    graph = load_tflite(path)
    t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-128, 128, t.shape).astype(np.int8) for _ in range(max(count - 2, 0))]
    return xs + [np.full(t.shape, -128, np.int8), np.full(t.shape, 127, np.int8)][:count]
