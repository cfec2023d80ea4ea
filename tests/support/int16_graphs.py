"""A float IR graph with every kind of op whose 16x8 rule differs, for the int16 tests.

Built by hand (no TensorFlow import, so tests using it stay fast), random weights:
CONV_2D with a fused ReLU, PAD, MAX_POOL_2D (input's quantization), DEPTHWISE_CONV_2D,
MUL and ADD of two activations (own range), LOGISTIC and TANH (fixed 1/32768 outputs),
CONCATENATION of the two (shared quantization, inputs requantized), AVERAGE_POOL_2D, MEAN
over the spatial axes, FULLY_CONNECTED and SOFTMAX (1/32768).
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.ops import (ConcatenationAttrs, Conv2DAttrs, DepthwiseConv2DAttrs,
                           ElementwiseAttrs, FullyConnectedAttrs, PadAttrs, Pool2DAttrs,
                           ReduceAttrs, SoftmaxAttrs)

INPUT_SHAPE = (1, 8, 8, 3)


def ops_cnn(seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("int16_ops")

    def tensor(name, shape, data=None):
        g.add_tensor(Tensor(name, shape, "float32", None,
                            None if data is None else np.asarray(data, np.float32)))
        return name

    def weights(name, shape, fan_in):
        return tensor(name, shape, rng.normal(0, 1.5 / np.sqrt(fan_in), shape))

    def bias(name, n):
        return tensor(name, (n,), rng.normal(0, 0.1, n))

    def op(kind, name, inputs, shape, attrs=None):
        out = tensor(name, shape)
        g.add_op(Op(kind, name, inputs, [out], attrs) if attrs is not None
                 else Op(kind, name, inputs, [out]))
        return out

    x = tensor("x", INPUT_SHAPE)
    g.inputs = [x]
    c1 = op("CONV_2D", "conv1", [x, weights("conv1/w", (8, 3, 3, 3), 27), bias("conv1/b", 8)],
            (1, 8, 8, 8), Conv2DAttrs(padding=(1, 1, 1, 1), activation="RELU"))
    padded = op("PAD", "pad", [c1], (1, 10, 10, 8), PadAttrs(pads=((0, 0), (1, 1), (1, 1),
                                                                   (0, 0))))
    pooled = op("MAX_POOL_2D", "pool", [padded], (1, 5, 5, 8),
                Pool2DAttrs(filter=(2, 2), stride=(2, 2)))
    dw = op("DEPTHWISE_CONV_2D", "dw", [pooled, weights("dw/w", (1, 3, 3, 8), 9),
                                        bias("dw/b", 8)], (1, 5, 5, 8),
            DepthwiseConv2DAttrs(padding=(1, 1, 1, 1), depth_multiplier=1))
    mul = op("MUL", "mul", [pooled, dw], (1, 5, 5, 8), ElementwiseAttrs())
    add = op("ADD", "add", [mul, dw], (1, 5, 5, 8), ElementwiseAttrs())
    sig = op("LOGISTIC", "sigmoid", [add], (1, 5, 5, 8))
    tanh = op("TANH", "tanh", [add], (1, 5, 5, 8))
    cat = op("CONCATENATION", "concat", [sig, tanh], (1, 5, 5, 16), ConcatenationAttrs(axis=3))
    avg = op("AVERAGE_POOL_2D", "avg", [cat], (1, 4, 4, 16), Pool2DAttrs(filter=(2, 2)))
    mean = op("MEAN", "mean", [avg], (1, 16), ReduceAttrs(axes=(1, 2)))
    fc = op("FULLY_CONNECTED", "fc", [mean, weights("fc/w", (10, 16), 4), bias("fc/b", 10)],
            (1, 10), FullyConnectedAttrs())
    y = op("SOFTMAX", "softmax", [fc], (1, 10), SoftmaxAttrs())
    g.outputs = [y]
    return g.finalize()


def calibration_inputs(count: int = 24, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count,) + INPUT_SHAPE[1:]) \
        .astype(np.float32)
