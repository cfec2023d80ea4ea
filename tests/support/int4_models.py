"""Float models for the int4 tests: every layer kind int4 filters exist for, odd sizes.

``float_cnn`` is an IR graph built by hand (no TensorFlow import, so tests using it stay
fast): CONV_2D 3x3 (5x3x3x3 = 135 weights), DEPTHWISE_CONV_2D 3x3 with depth multiplier 3
(1x3x3x15 = 135), a 1x1 CONV_2D (7x1x1x15 = 105), RESHAPE and two FULLY_CONNECTED layers
(9x140 and 5x9 = 45): odd element counts leave the last packed byte half empty.
``keras_cnn`` is the same architecture in Keras, for the frontend path.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.ops import (Conv2DAttrs, DepthwiseConv2DAttrs, FullyConnectedAttrs,
                           ReshapeAttrs)

INPUT_SHAPE = (1, 7, 9, 3)


def float_cnn(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("int4_cnn")

    def tensor(name, shape, data=None):
        g.add_tensor(Tensor(name, shape, "float32", None,
                            None if data is None else np.asarray(data, np.float32)))
        return name

    def weights(name, shape, fan_in):
        return tensor(name, shape, rng.normal(0, 1 / np.sqrt(fan_in), shape))

    def bias(name, n):
        return tensor(name, (n,), rng.normal(0, 0.1, n))

    x = tensor("x", INPUT_SHAPE)
    g.inputs = [x]
    h1 = tensor("conv1", (1, 7, 9, 5))
    g.add_op(Op("CONV_2D", "conv1", [x, weights("conv1/w", (5, 3, 3, 3), 27),
                                     bias("conv1/b", 5)], [h1],
                Conv2DAttrs(padding=(1, 1, 1, 1), activation="RELU")))
    h2 = tensor("dw", (1, 4, 5, 15))
    g.add_op(Op("DEPTHWISE_CONV_2D", "dw", [h1, weights("dw/w", (1, 3, 3, 15), 9),
                                            bias("dw/b", 15)], [h2],
                DepthwiseConv2DAttrs(stride=(2, 2), padding=(1, 1, 1, 1), activation="RELU6",
                                     depth_multiplier=3)))
    h3 = tensor("pw", (1, 4, 5, 7))
    g.add_op(Op("CONV_2D", "pw", [h2, weights("pw/w", (7, 1, 1, 15), 15), bias("pw/b", 7)],
                [h3], Conv2DAttrs(activation="RELU")))
    flat = tensor("flat", (1, 140))
    g.add_op(Op("RESHAPE", "flat", [h3], [flat], ReshapeAttrs((1, 140))))
    h4 = tensor("fc1", (1, 9))
    g.add_op(Op("FULLY_CONNECTED", "fc1", [flat, weights("fc1/w", (9, 140), 140),
                                           bias("fc1/b", 9)], [h4],
                FullyConnectedAttrs(activation="RELU")))
    y = tensor("fc2", (1, 5))
    g.add_op(Op("FULLY_CONNECTED", "fc2", [h4, weights("fc2/w", (5, 9), 9), bias("fc2/b", 5)],
                [y], FullyConnectedAttrs()))
    g.outputs = [y]
    return g.finalize()


def calibration_inputs(count: int = 24, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count,) + INPUT_SHAPE[1:]) \
        .astype(np.float32)


def keras_cnn(seed: int = 0):
    """The architecture of :func:`float_cnn` as a Keras model (random weights)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers
    inputs = tf.keras.Input(INPUT_SHAPE[1:])
    h = L.Conv2D(5, 3, padding="same", activation="relu")(inputs)
    h = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=3)(h)
    h = L.ReLU(6.0)(L.BatchNormalization()(h))
    h = L.Conv2D(7, 1, activation="relu")(h)
    h = L.Dense(9, activation="relu")(L.Flatten()(h))
    outputs = L.Dense(5)(h)
    return tf.keras.Model(inputs, outputs)
