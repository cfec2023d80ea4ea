"""Small image models for ``--input-stream rows`` (tinyml.schedule.input_stream), converted to
int8 TFLite by the converter (support.tflite_zoo): odd heights and widths, a stride-2 first
convolution with 'same' padding, a 'valid' one that leaves the last rows unread, pooling
first, depthwise chains, and a float input quantized by the model's first op."""

from __future__ import annotations


def stem_odd(x):
    """MobileNet-like stem on a 15x11 image: stride-2 'same' 3x3 convolution, depthwise, 1x1,
    stride-2 'valid' depthwise, 1x1, then a classifier (the row stage may end anywhere in the
    first five layers)."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
    y = L.Conv2D(16, 1, activation="relu")(y)
    y = L.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(y)
    y = L.Conv2D(12, 1, activation="relu")(y)
    y = L.GlobalAveragePooling2D()(y)
    return L.Dense(4)(y)


STEM_INPUT = [(1, 15, 11, 3)]


def valid_tall(x):
    """A 5x3 'valid' convolution with vertical stride 2 on a 17x9 image (its last row is read
    by no output), max pooling, 'same' average pooling, a dense head."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(6, (5, 3), strides=(2, 1), padding="valid", activation="relu")(x)
    y = L.MaxPooling2D(2)(y)
    y = L.AveragePooling2D(3, strides=1, padding="same")(y)
    y = L.Flatten()(y)
    return L.Dense(3)(y)


VALID_INPUT = [(1, 18, 9, 2)]


def pool_first(x):
    """Pooling reads the image first, then a dilated 3x3 convolution and a dense head."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.MaxPooling2D(3, strides=2, padding="same")(x)
    y = L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu")(y)
    y = L.Conv2D(4, 1)(y)
    y = L.Flatten()(y)
    return L.Dense(3)(y)


POOL_INPUT = [(1, 13, 7, 4)]


def input_skip(x):
    """A residual from the image: the first layer (CONV_2D_ADD after fusion) reads the input
    twice, through its 3x3 window and at the output's own row."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(3, 3, padding="same")(x)
    y = L.Add()([x, y])
    y = L.Flatten()(y)
    return L.Dense(2)(y)


SKIP_INPUT = [(1, 8, 8, 3)]


def rows_only(x):
    """Nothing but a 'valid' stride-2 convolution and a depthwise one: the whole graph can be
    the row stage (its output is the model's)."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(4, 3, strides=2, padding="valid")(x)
    return L.DepthwiseConv2D(3, padding="same")(y)


ROWS_ONLY_INPUT = [(1, 9, 7, 2)]


def residual_blocks(x):
    """MobileNetV2-like: a stem, then two inverted residual blocks (expand 1x1, depthwise
    3x3, project 1x1 + skip) at odd sizes, a strided block, a classifier."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    for _ in range(2):
        e = L.Conv2D(24, 1, activation="relu")(y)
        e = L.DepthwiseConv2D(3, padding="same", activation="relu")(e)
        y = L.Add()([y, L.Conv2D(8, 1)(e)])
    y = L.DepthwiseConv2D(3, strides=2, padding="same")(y)
    y = L.Conv2D(16, 1, activation="relu")(y)
    y = L.GlobalAveragePooling2D()(y)
    return L.Dense(3)(y)


RESIDUAL_INPUT = [(1, 19, 13, 3)]


def flatten_first(x):
    """The image goes straight into a dense layer: nothing can read it row by row."""
    import tensorflow as tf
    L = tf.keras.layers
    return L.Dense(3)(L.Flatten()(x))


FLATTEN_INPUT = [(1, 6, 5, 2)]


def strided_shortcut(x):
    """ResNet-like: a block whose shortcut is a stride-2 1x1 convolution (it reads every
    other row of a dense image) added to two 3x3 convolutions, the first strided."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    a = L.Conv2D(12, 3, strides=2, padding="same", activation="relu")(y)
    a = L.Conv2D(12, 3, padding="same")(a)
    y = L.Activation("relu")(L.Add()([a, L.Conv2D(12, 1, strides=2)(y)]))
    y = L.GlobalAveragePooling2D()(y)
    return L.Dense(3)(y)


SHORTCUT_INPUT = [(1, 15, 14, 3)]
