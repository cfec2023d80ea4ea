"""Sliding-window models made by the TFLite converter, for ``compile --stream``.

A keyword spotter sees a window of T frames x F features (NHWC, time on axis 1, the newest
frame last) and classifies it. These are ordinary Keras models (Conv2D / DepthwiseConv2D over
the window, global average pooling, a dense classifier) converted full-int8, as users make
them: ``--stream`` turns them into models that consume one frame per call, and the tests
compare every frame with the ordinary model run on the whole window.

Layers are given as a small spec so each test model states its shape in one line:
``("conv", filters, (kt, kf), dilation_t, stride_t)``, ``("dw", (kt, kf), dilation_t)``,
``("pad_f", 1)`` (zero padding of the feature axis only), ``("res",)`` (x + a conv of x over
the features only), ``("same", filters, (kt, kf))``
(a conv with 'same' padding, time included), ``("conv1d", filters, kt, dilation_t)`` (a
Keras Conv1D over a [T, F] window: the converter wraps it in EXPAND_DIMS / RESHAPE, so time
is axis 2 of the convolution). Conversion takes seconds, so files are cached on
disk keyed by this module's source and the arguments.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_CACHE = Path(tempfile.gettempdir()) / "tinyml-test-stream-window"

#: Several time convs (kernels 3-5 along time, one dilated), feature padding, a pointwise
#: conv; then global average pooling and a dense classifier.
KWS_LAYERS = (("conv", 16, (5, 3), 1, 1), ("pad_f", 1), ("dw", (3, 3), 2),
              ("conv", 24, (1, 1), 1, 1), ("conv", 24, (4, 3), 1, 1),
              ("conv", 32, (3, 3), 1, 1))
#: A strided time conv after the first layer: the streamed prefix stops there.
STRIDED_LAYERS = (("conv", 8, (3, 3), 1, 1), ("conv", 16, (3, 3), 1, 2),
                  ("conv", 16, (3, 1), 1, 1))
#: 'same' padding (time included) on the second conv: the prefix stops there.
SAME_LAYERS = (("conv", 8, (3, 3), 1, 1), ("same", 8, (3, 3)), ("conv", 8, (3, 1), 1, 1))
#: A residual block between time convs (the converter's ADD, fused into CONV_2D_ADD).
RESIDUAL_LAYERS = (("conv", 8, (3, 3), 1, 1), ("res",), ("conv", 8, (3, 3), 2, 1))
#: Keras Conv1D over a [49, 10] window (time on axis 1, features as channels).
CONV1D_LAYERS = (("conv1d", 16, 3, 1), ("conv1d", 16, 3, 2), ("conv1d", 24, 5, 1))
#: The first layer already strides in time: nothing can be streamed.
UNSTREAMABLE_LAYERS = (("conv", 8, (3, 3), 1, 2), ("conv", 8, (3, 1), 1, 1))


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


def window_kws(layers: tuple = KWS_LAYERS, frames: int = 49, features: int = 10,
               classes: int = 12, seed: int = 0) -> Path:
    """A Keras conv keyword spotter over a ``frames`` x ``features`` window, full-int8."""
    def build() -> bytes:
        import tensorflow as tf
        keras = tf.keras
        keras.utils.set_random_seed(seed)
        one_d = all(spec[0] == "conv1d" for spec in layers)
        shape = (frames, features) if one_d else (frames, features, 1)
        inp = keras.Input(shape, batch_size=1)
        x = inp
        for spec in layers:
            kind = spec[0]
            if kind == "conv":
                _, filters, kernel, dilation, stride = spec
                x = keras.layers.Conv2D(filters, kernel, strides=(stride, 1),
                                        dilation_rate=(dilation, 1), activation="relu")(x)
            elif kind == "dw":
                _, kernel, dilation = spec
                x = keras.layers.DepthwiseConv2D(kernel, dilation_rate=(dilation, 1),
                                                 activation="relu")(x)
            elif kind == "pad_f":
                x = keras.layers.ZeroPadding2D(((0, 0), (spec[1], spec[1])))(x)
            elif kind == "conv1d":
                _, filters, kernel, dilation = spec
                x = keras.layers.Conv1D(filters, kernel, dilation_rate=dilation,
                                        activation="relu")(x)
            elif kind == "res":  # x + conv(x) over the features only (time kernel 1)
                y = keras.layers.ZeroPadding2D(((0, 0), (1, 1)))(x)
                y = keras.layers.Conv2D(x.shape[-1], (1, 3), activation="relu")(y)
                x = keras.layers.Add()([x, y])
            elif kind == "same":
                _, filters, kernel = spec
                x = keras.layers.Conv2D(filters, kernel, padding="same", activation="relu")(x)
            else:
                raise ValueError(kind)
        x = (keras.layers.GlobalAveragePooling1D() if one_d else
             keras.layers.GlobalAveragePooling2D())(x)
        x = keras.layers.Dense(classes)(x)
        model = keras.Model(inp, keras.layers.Softmax()(x))
        rng = np.random.default_rng(seed)

        def representative():
            for _ in range(32):
                yield [rng.normal(0, 1, (1,) + shape).astype(np.float32)]

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return converter.convert()
    return _cached("kws", (layers, frames, features, classes, seed), build)


def frame_stream(shape: tuple[int, ...], count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` int8 frames of ``shape`` (1, 1, features...): seeded random codes, with an
    all-minimum and an all-maximum frame among them."""
    rng = np.random.default_rng(seed)
    result = [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(count)]
    if count >= 4:
        result[count // 3] = np.full(shape, -128, np.int8)
        result[2 * count // 3] = np.full(shape, 127, np.int8)
    return result


def windows(frames: list[np.ndarray], length: int, zero_point: int) -> list[np.ndarray]:
    """The full window after each frame: the last ``length`` frames, oldest first, the
    window starting as ``zero_point`` (real 0) before the stream fills it."""
    window = np.full((1, length) + frames[0].shape[2:], zero_point, np.int8)
    result = []
    for frame in frames:
        window = np.concatenate([window[:, 1:], frame], axis=1)
        result.append(window.copy())
    return result
