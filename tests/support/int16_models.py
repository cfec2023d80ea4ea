"""The 16x8 op zoo: small Keras models the TFLite converter quantizes with int16 activations.

TFLite's 16x8 scheme (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8``) keeps
int8 per-channel weights, makes every activation int16 with zero point 0 and gives CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED an int64 bias. Each case names the ops the converter
must emit; the tests compare the reference interpreter with TFLM on every tensor and reuse
the same models for the C kernels and the Cortex-M builds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from support.tflite_zoo import convert


def _layers():
    import tensorflow as tf
    return tf.keras.layers


def ds_cnn(x):
    """A small DS-CNN (the MLPerf keyword-spotting architecture in miniature): conv, then
    depthwise + pointwise blocks, average pooling, a dense layer and softmax."""
    L = _layers()
    y = L.Conv2D(8, (5, 3), strides=2, padding="same", use_bias=True,
                 bias_initializer="random_normal")(x)
    y = L.ReLU()(L.BatchNormalization()(y))
    for _ in range(2):
        y = L.DepthwiseConv2D(3, padding="same", bias_initializer="random_normal")(y)
        y = L.ReLU()(y)
        y = L.Conv2D(8, 1, bias_initializer="random_normal")(y)
        y = L.ReLU()(y)
    y = L.AveragePooling2D(pool_size=(y.shape[1], y.shape[2]))(y)
    y = L.Flatten()(y)
    return L.Softmax()(L.Dense(5, bias_initializer="random_normal")(y))


def conv_relu6_stride(x):
    return _layers().Conv2D(6, 3, strides=2, padding="same", activation="relu6",
                            bias_initializer="random_normal")(x)


def conv_valid_dilated(x):
    return _layers().Conv2D(5, (3, 2), dilation_rate=2, padding="valid",
                            bias_initializer="random_normal")(x)


def depthwise_m2(x):
    return _layers().DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same",
                                     bias_initializer="random_normal")(x)


def dense_no_bias(x):
    return _layers().Dense(7, use_bias=False)(x)


def dense_relu(x):
    return _layers().Dense(9, activation="relu", bias_initializer="random_normal")(x)


def pools(x):
    L = _layers()
    a = L.MaxPooling2D(3, strides=2, padding="same")(x)
    b = L.AveragePooling2D(3, strides=2, padding="same")(x)
    return L.Add()([a, b])


def add_mul_concat_pad(x):
    """ADD and MUL of differently scaled operands (one broadcast), CONCATENATION, PAD."""
    L = _layers()
    a = L.Conv2D(4, 1, bias_initializer="random_normal")(x)
    b = L.Conv2D(4, 3, padding="same", bias_initializer="random_normal")(x)
    per_channel = L.GlobalAveragePooling2D(keepdims=True)(b)
    s = L.Add()([a, per_channel])
    m = L.Multiply()([s, b])
    c = L.Concatenate()([m, a])
    return L.ZeroPadding2D(((1, 0), (0, 2)))(c)


def mean_axes(x):
    import keras
    L = _layers()
    y = L.Conv2D(6, 1, bias_initializer="random_normal")(x)
    return keras.ops.mean(y, axis=(1, 2), keepdims=False) + keras.ops.mean(
        keras.ops.mean(y, axis=2), axis=1)


def reshape_transpose_slice(x):
    import keras
    y = _layers().Conv2D(6, 1, bias_initializer="random_normal")(x)
    y = keras.ops.transpose(y, (0, 2, 1, 3))
    y = y[:, 1:5:2, :, 1:]
    return keras.ops.reshape(y, (1, -1))


def conv_wide(x):
    """Odd output channels, 3 groups of windows longer than one SMLAD chunk (3 * 3 * 37)."""
    L = _layers()
    y = L.Conv2D(37, 1, bias_initializer="random_normal")(x)
    return L.Conv2D(7, 3, padding="same", bias_initializer="random_normal")(y)


def dense_wide(x):
    """A depth of 601 (two SMLAD chunks and a remainder of 1) and an odd row count."""
    return _layers().Dense(5, bias_initializer="random_normal")(x)


def conv_dense(x):
    L = _layers()
    y = L.Conv2D(6, 3, padding="same", bias_initializer="random_normal")(x)
    return L.Dense(4, bias_initializer="random_normal")(L.Flatten()(y))


def softmax(x):
    return _layers().Softmax()(_layers().Dense(10, bias_initializer="random_normal")(x))


def logistic_tanh(x):
    L = _layers()
    y = L.Dense(8, bias_initializer="random_normal")(x)
    return L.Add()([L.Activation("sigmoid")(y), L.Activation("tanh")(y)])


@dataclass
class Case:
    build: Callable
    shapes: list[tuple[int, ...]]
    ops: tuple[str, ...]
    options: dict = field(default_factory=dict)


CASES = {
    "ds_cnn": Case(ds_cnn, [(1, 20, 10, 1)],
                   ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED",
                    "SOFTMAX")),
    "conv_relu6_stride": Case(conv_relu6_stride, [(1, 9, 10, 3)], ("CONV_2D",)),
    "conv_valid_dilated": Case(conv_valid_dilated, [(1, 9, 9, 3)], ("CONV_2D",)),
    "depthwise_m2": Case(depthwise_m2, [(1, 8, 7, 3)], ("DEPTHWISE_CONV_2D",)),
    "dense_no_bias": Case(dense_no_bias, [(1, 24)], ("FULLY_CONNECTED",)),
    "dense_relu": Case(dense_relu, [(1, 24)], ("FULLY_CONNECTED",)),
    "conv_dense_per_tensor": Case(conv_dense, [(1, 6, 5, 3)], ("CONV_2D", "FULLY_CONNECTED"),
                                  dict(per_channel=False)),
    "dense_float_io": Case(dense_relu, [(1, 24)], ("QUANTIZE", "FULLY_CONNECTED",
                                                   "DEQUANTIZE"), dict(int8_io=False)),
    "pools": Case(pools, [(1, 9, 8, 3)], ("MAX_POOL_2D", "AVERAGE_POOL_2D", "ADD")),
    "add_mul_concat_pad": Case(add_mul_concat_pad, [(1, 6, 6, 3)],
                               ("ADD", "MUL", "CONCATENATION", "PAD")),
    "mean": Case(mean_axes, [(1, 5, 6, 3)], ("MEAN",)),
    "reshape_transpose_slice": Case(reshape_transpose_slice, [(1, 6, 5, 3)],
                                    ("TRANSPOSE", "STRIDED_SLICE", "RESHAPE")),
    "softmax": Case(softmax, [(1, 12)], ("SOFTMAX",)),
    "conv_dense_bias32": Case(conv_dense, [(1, 6, 5, 3)], ("CONV_2D", "FULLY_CONNECTED"),
                              dict(bias32=True)),
    "conv_wide": Case(conv_wide, [(1, 5, 6, 3)], ("CONV_2D",)),
    "dense_wide": Case(dense_wide, [(1, 601)], ("FULLY_CONNECTED",)),
    "logistic_tanh": Case(logistic_tanh, [(1, 12)], ("LOGISTIC", "TANH")),
}


def model_bytes(case: Case) -> bytes:
    return convert(case.build, case.shapes, activations="int16", **case.options).read_bytes()


def random_inputs(graph, rng) -> list[np.ndarray]:
    """int16 inputs over the whole range (the converter's calibration saw N(0, 1)), float
    inputs N(0, 2)."""
    values = []
    for name in graph.inputs:
        t = graph.tensors[name]
        if t.dtype == "int16":
            values.append(rng.integers(-32768, 32768, t.shape).astype(np.int16))
        else:
            values.append(rng.normal(0, 2, t.shape).astype(np.float32))
    return values
