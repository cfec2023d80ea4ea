"""Keras models with several reductions in one graph, shared by the TFLite and ONNX tests of
the reductions family (module level: tflite_zoo caches conversions by the functions' code)."""

from __future__ import annotations

#: The input shape of both models.
SEVERAL_SHAPE = (1, 6, 6, 3)


def _tf():
    import tensorflow as tf
    return tf


def _lambda(fn):
    return _tf().keras.layers.Lambda(fn)


def several(x):
    """Several reductions in one graph, for the firmware test."""
    tf, layers = _tf(), _tf().keras.layers
    y = layers.Conv2D(6, 3, padding="same", bias_initializer="random_normal")(x)
    y = _lambda(lambda t: tf.math.l2_normalize(t, axis=-1))(y)
    peak = layers.GlobalMaxPooling2D()(y)
    low = _lambda(lambda t: tf.reduce_min(t, axis=[1, 2]))(y)
    total = _lambda(lambda t: tf.reduce_sum(t, axis=[1, 2]))(y)
    mean = _lambda(lambda t: tf.reduce_mean(t, axis=[1, 3]))(y)
    z = layers.Concatenate()([peak, low, total, mean])
    return _lambda(lambda t: tf.math.argmax(t, axis=-1, output_type=tf.int32))(z)


def several_float(x):
    """The float model users quantize with ``tinyml compile --calib``: every reduction, with
    ARG_MAX reading a REDUCE_MAX of an L2-normalized convolution."""
    tf, layers = _tf(), _tf().keras.layers
    y = layers.Conv2D(6, 3, padding="same", bias_initializer="random_normal")(x)
    y = _lambda(lambda t: tf.math.l2_normalize(t, axis=-1))(y)
    peak = _lambda(lambda t: tf.reduce_max(t, axis=[1, 2]))(y)
    low = _lambda(lambda t: tf.reduce_min(t, axis=1))(y)
    total = _lambda(lambda t: tf.reduce_sum(t, axis=[1, 2]))(low)
    mean = _lambda(lambda t: tf.reduce_mean(t, axis=-1))(y)
    index = _lambda(lambda t: tf.math.argmin(t, axis=1, output_type=tf.int32))(mean)
    z = layers.Add()([peak, total])
    return [_lambda(lambda t: tf.math.argmax(t, axis=-1, output_type=tf.int32))(z), index]
