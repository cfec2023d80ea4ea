"""Small Keras models for line-buffer patch stages (tinyml.schedule.line_stage): residual
blocks at full resolution, a strided shortcut, a strided first convolution that can overlap
its input layer by layer, odd image sizes (bands of unequal height, the bottom border)."""

from __future__ import annotations


def residual_blocks(x):
    """A stem, a full-resolution residual block (CONV_2D_ADD whose skip input also feeds a
    window), a strided block with a strided 1x1 shortcut, then a classifier."""
    import tensorflow as tf
    L = tf.keras.layers
    a = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(8, 3, padding="same", activation="relu")(a)
    b = L.Conv2D(8, 3, padding="same")(b)
    a = L.ReLU()(L.Add()([a, b]))
    c = L.Conv2D(12, 3, strides=2, padding="same", activation="relu")(a)
    c = L.Conv2D(12, 3, padding="same")(c)
    d = L.Conv2D(12, 1, strides=2)(a)
    e = L.ReLU()(L.Add()([c, d]))
    return L.Dense(4)(L.GlobalAveragePooling2D()(e))


def strided_mobilenet(x):
    """vww's first layers in small: a strided 3x3 convolution, depthwise 3x3, 1x1 expansion,
    a strided depthwise, a VALID window and a max pool."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
    y = L.Conv2D(16, 1, activation="relu")(y)
    y = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu")(y)
    y = L.Conv2D(16, 3, padding="valid", activation="relu")(y)
    y = L.MaxPooling2D(2)(y)
    return L.Dense(3)(L.Flatten()(y))


#: name -> (builder, input shape)
LINE_MODELS = {"residual": (residual_blocks, (1, 19, 14, 3)),
               "strided": (strided_mobilenet, (1, 27, 22, 3))}
