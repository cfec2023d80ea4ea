"""An :class:`~tinyml.nas.search_space.Arch` as a Keras model, for training.

Conventions match :mod:`tinyml.nas.ir_builder` layer for layer (the constraint check plans
that graph, the final model goes through the Keras frontend; a test compares the two plans):
convolutions without bias followed by batch normalization (folded into the convolution by the
converter) and ReLU6 (fused), linear projections, residual ADD when a block keeps stride 1 and
its channel count, global average pooling (MEAN), a fully connected layer and a softmax.
"""

from __future__ import annotations

from tinyml.nas.search_space import Arch


def _conv_bn(L, x, filters: int, kernel: int, stride: int, relu: bool, name: str):
    x = L.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                 name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def build_keras(arch: Arch, seed: int = 0):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    L = tf.keras.layers
    inputs = tf.keras.Input((arch.resolution, arch.resolution, arch.channels_in), name="image")
    x = _conv_bn(L, inputs, arch.stem, 3, 2, True, "stem")
    channels = arch.stem
    for s, stage in enumerate(arch.stages):
        for b, block in enumerate(stage.blocks):
            name = f"s{s}b{b}"
            stride = stage.stride if b == 0 else 1
            h = x
            if block.expand != 1:
                h = _conv_bn(L, h, channels * block.expand, 1, 1, True, f"{name}_expand")
            h = L.DepthwiseConv2D(block.kernel, strides=stride, padding="same", use_bias=False,
                                  name=f"{name}_dw")(h)
            h = L.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(h)
            h = L.ReLU(6.0, name=f"{name}_dw_relu")(h)
            h = _conv_bn(L, h, stage.channels, 1, 1, False, f"{name}_project")
            if stride == 1 and channels == stage.channels:
                h = L.Add(name=f"{name}_add")([x, h])
            x, channels = h, stage.channels
    x = _conv_bn(L, x, arch.head, 1, 1, True, "head")
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dense(arch.classes, name="classifier")(x)
    outputs = L.Softmax(name="softmax")(x)
    return tf.keras.Model(inputs, outputs, name=arch.family)
