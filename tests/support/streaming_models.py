"""Streaming models made by the TFLite converter: state kept in ``tf.Variable``s between calls.

A streaming keyword spotter sees one frame of features per call and keeps the last frames it
needs (and, in a conv stack, the last outputs of each streaming layer) in variables. Written
as a ``tf.Module`` with a ``tf.function`` and converted full-int8 with
``experimental_enable_resource_variables``, the file holds VAR_HANDLE / READ_VARIABLE /
ASSIGN_VARIABLE and a CALL_ONCE initializer subgraph, as users' streaming models do. The
converter keeps the state in float32 between DEQUANTIZE and QUANTIZE.

Conversion takes seconds, so files are cached on disk, keyed by this module's source and the
builder's arguments.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_CACHE = Path(tempfile.gettempdir()) / "tinyml-test-streaming"


def _cached(name: str, args: tuple, build) -> Path:
    source = Path(__file__).read_bytes()
    key = hashlib.sha256(source + repr(args).encode()).hexdigest()[:16]
    path = _CACHE / f"{name}-{key}.tflite"
    if not path.exists():
        data = build()
        _CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _convert(module, frame_shape: tuple[int, ...], seed: int) -> bytes:
    import tensorflow as tf
    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(64):
            yield [rng.normal(0, 1, frame_shape).astype(np.float32)]

    fn = module.__call__.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    converter.experimental_enable_resource_variables = True
    return converter.convert()


def window_model(features: int = 10, window: int = 3, seed: int = 0,
                 decay: float | None = None) -> Path:
    """One variable holding the last ``window - 1`` frames; a conv over the window of frames
    (the new one appended), then a dense layer: the smallest streaming model. With ``decay``
    the state keeps the frames scaled by it (an int8 MUL before the assignment), so the state
    and the frame are quantized differently from their concatenation."""
    def build() -> bytes:
        import tensorflow as tf
        tf.keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed)

        class Stream(tf.Module):
            def __init__(self):
                self.state = tf.Variable(tf.zeros((1, window - 1, features)), trainable=False)
                self.w = tf.constant(rng.normal(0, .3, (window, features, 8)).astype(np.float32))
                self.d = tf.constant(rng.normal(0, .3, (8, 4)).astype(np.float32))

            @tf.function(input_signature=[tf.TensorSpec((1, 1, features), tf.float32)])
            def __call__(self, frame):
                frames = tf.concat([self.state, frame], axis=1)
                self.state.assign(frames[:, 1:, :] if decay is None else
                                  frames[:, 1:, :] * decay)
                h = tf.nn.relu(tf.nn.conv1d(frames, self.w, 1, "VALID"))
                return tf.matmul(tf.reshape(h, (1, 8)), self.d)

        return _convert(Stream(), (1, 1, features), seed)
    return _cached("window", (features, window, seed, decay), build)


def keyword_spotter(features: int = 20, window: int = 5, channels: int = 16,
                    classes: int = 6, seed: int = 0, hidden_init: float = 0.0) -> Path:
    """A small streaming keyword spotter with two variables: the last ``window - 1`` input
    frames feed a first conv (kernel ``window`` frames); the last 2 of its outputs, kept in a
    second variable (initialized to ``hidden_init``), feed a second conv of kernel 3; then a
    dense classifier. Each frame runs both convs once, as a streaming model does."""
    def build() -> bytes:
        import tensorflow as tf
        tf.keras.utils.set_random_seed(seed)
        rng = np.random.default_rng(seed)

        class Spotter(tf.Module):
            def __init__(self):
                self.frames = tf.Variable(tf.zeros((1, window - 1, features)), trainable=False)
                self.hidden = tf.Variable(tf.fill((1, 2, channels), hidden_init), trainable=False)
                self.w1 = tf.constant(rng.normal(0, .25, (window, features, channels))
                                      .astype(np.float32))
                self.b1 = tf.constant(rng.normal(0, .1, (channels,)).astype(np.float32))
                self.w2 = tf.constant(rng.normal(0, .25, (3, channels, channels))
                                      .astype(np.float32))
                self.d = tf.constant(rng.normal(0, .3, (channels, classes)).astype(np.float32))

            @tf.function(input_signature=[tf.TensorSpec((1, 1, features), tf.float32)])
            def __call__(self, frame):
                frames = tf.concat([self.frames, frame], axis=1)
                self.frames.assign(frames[:, 1:, :])
                h1 = tf.nn.relu(tf.nn.conv1d(frames, self.w1, 1, "VALID") + self.b1)
                hidden = tf.concat([self.hidden, h1], axis=1)
                self.hidden.assign(hidden[:, 1:, :])
                h2 = tf.nn.relu(tf.nn.conv1d(hidden, self.w2, 1, "VALID"))
                return tf.matmul(tf.reshape(h2, (1, channels)), self.d)

        return _convert(Spotter(), (1, 1, features), seed)
    return _cached("spotter", (features, window, channels, classes, seed, hidden_init), build)


def frames(path: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` int8 frames for the model at ``path``: seeded random codes, with an
    all-minimum and an all-maximum frame among them."""
    from tinyml.frontends.tflite import load_tflite
    graph = load_tflite(path)
    shape = graph.tensors[graph.inputs[0]].shape
    rng = np.random.default_rng(seed)
    result = [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(count)]
    if count >= 4:
        result[count // 3] = np.full(shape, -128, np.int8)
        result[2 * count // 3] = np.full(shape, 127, np.int8)
    return result
