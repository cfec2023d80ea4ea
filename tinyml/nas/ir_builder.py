"""An :class:`~tinyml.nas.search_space.Arch` as a float graph of the IR, without TensorFlow.

Why: the constraint check (:mod:`tinyml.nas.constraints`) must compile hundreds of candidates
before any is trained. Going through Keras and the TFLite converter costs seconds per
candidate; building the graph the converter would produce directly costs milliseconds. The
graph has the ops, shapes and constants of the converted Keras model of the same Arch
(:mod:`tinyml.nas.keras_model`: batch norms folded into conv biases, ReLU6 fused, SAME padding
made explicit, MEAN for global pooling), so quantizing, lowering and planning it gives the same
arena and constant bytes; ``tests/test_nas.py`` checks that against the Keras frontend. Weights
are random (He-normal): memory and flash do not depend on their values.
:func:`quantized_graph` quantizes it with tinyml's quantizer, as the constraint check and the
size calibration (:mod:`tinyml.nas.calibration`) both need it.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.ops import (Conv2DAttrs, DepthwiseConv2DAttrs, ElementwiseAttrs,
                           FullyConnectedAttrs, ReduceAttrs, SoftmaxAttrs, same_padding)
from tinyml.nas.search_space import Arch


class _Builder:
    def __init__(self, arch: Arch, seed: int):
        self.graph = Graph(arch.family)
        self.rng = np.random.default_rng(seed)
        self.size = arch.resolution

    def constant(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        data = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        self.graph.add_tensor(Tensor(name, shape, "float32", data=data))
        return name

    def activation(self, name: str, shape: tuple[int, ...]) -> str:
        self.graph.add_tensor(Tensor(name, shape, "float32"))
        return name

    def conv(self, x: str, name: str, channels_in: int, channels: int, kernel: int,
             stride: int, activation: str, depthwise: bool = False) -> str:
        size = self.size
        pad_h = same_padding(size, kernel, stride)
        padding = (pad_h[0], pad_h[1], pad_h[0], pad_h[1])
        self.size = (size + stride - 1) // stride
        if depthwise:
            w = self.constant(f"{name}/filter", (1, kernel, kernel, channels), kernel * kernel)
            kind, attrs = "DEPTHWISE_CONV_2D", DepthwiseConv2DAttrs(
                (stride, stride), (1, 1), padding, activation, 1)
        else:
            w = self.constant(f"{name}/filter", (channels, kernel, kernel, channels_in),
                              kernel * kernel * channels_in)
            kind, attrs = "CONV_2D", Conv2DAttrs((stride, stride), (1, 1), padding, activation)
        b = self.constant(f"{name}/bias", (channels,), 100)
        out = self.activation(name, (1, self.size, self.size, channels))
        self.graph.add_op(Op(kind, name, [x, w, b], [out], attrs))
        return out


def build_graph(arch: Arch, seed: int = 0) -> Graph:
    """The float graph of ``arch`` (finalized), with random weights."""
    b = _Builder(arch, seed)
    g = b.graph
    x = b.activation("image", (1, arch.resolution, arch.resolution, arch.channels_in))
    g.inputs = [x]
    x = b.conv(x, "stem_conv", arch.channels_in, arch.stem, 3, 2, "RELU6")
    channels = arch.stem
    for s, stage in enumerate(arch.stages):
        for i, block in enumerate(stage.blocks):
            name = f"s{s}b{i}"
            stride = stage.stride if i == 0 else 1
            h, width = x, channels
            if block.expand != 1:
                width = channels * block.expand
                h = b.conv(h, f"{name}_expand_conv", channels, width, 1, 1, "RELU6")
            h = b.conv(h, f"{name}_dw", width, width, block.kernel, stride, "RELU6",
                       depthwise=True)
            h = b.conv(h, f"{name}_project_conv", width, stage.channels, 1, 1, "NONE")
            if stride == 1 and channels == stage.channels:
                out = b.activation(f"{name}_add", g.tensors[h].shape)
                g.add_op(Op("ADD", f"{name}_add", [x, h], [out], ElementwiseAttrs()))
                h = out
            x, channels = h, stage.channels
    x = b.conv(x, "head_conv", channels, arch.head, 1, 1, "RELU6")
    pooled = b.activation("pool", (1, arch.head))
    g.add_op(Op("MEAN", "pool", [x], [pooled], ReduceAttrs((1, 2), False)))
    w = b.constant("classifier/weights", (arch.classes, arch.head), arch.head)
    bias = b.constant("classifier/bias", (arch.classes,), 100)
    logits = b.activation("classifier", (1, arch.classes))
    g.add_op(Op("FULLY_CONNECTED", "classifier", [pooled, w, bias], [logits],
                FullyConnectedAttrs()))
    probs = b.activation("softmax", (1, arch.classes))
    g.add_op(Op("SOFTMAX", "softmax", [logits], [probs], SoftmaxAttrs()))
    g.outputs = [probs]
    return g.finalize()


def quantized_graph(arch: Arch, seed: int = 0) -> Graph:
    """The int8 graph of ``arch`` with random weights, as tinyml's quantizer makes it (on two
    random images: ranges do not change sizes)."""
    from tinyml.quantize import quantize_model

    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 1.0, (2, arch.resolution, arch.resolution, arch.channels_in))
    return quantize_model(build_graph(arch, seed), images.astype(np.float32),
                          bias_correction=False).graph
