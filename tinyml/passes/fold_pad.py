"""Fold a PAD by (real) zeros into the convolution that reads it.

Why: exporters write Keras' ``ZeroPadding2D`` + ``Conv2D(padding="valid")`` (MobileNetV2's
stride-2 blocks) and ONNX ``Pad`` + ``Conv`` as two ops; the PAD costs a copy of the tensor
with its border, and both buffers are alive at once (that pair is MobileNetV2-0.35-96's peak
from ONNX: 110,592 + 115,248 B). A convolution with explicit padding reads the unpadded
tensor in place.

Why it is exact: a convolution skips the taps in its padding, TFLM-style, which adds
nothing to the accumulator; a tap on a padded cell adds ``(zero point - zero point) * w =
0`` in int8 (``x * 0`` in float). So PAD with the zero point (or the float 0) followed by a
convolution equals the convolution with the padding added, bit for bit.

When it folds: the PAD pads only the height and width of a 4-D NHWC tensor, with real zero
(no value, the int8 zero point, or float 0.0), keeps its input's quantization, and its only
reader is a CONV_2D or DEPTHWISE_CONV_2D reading it as input 0. Pooling is left alone: TFLM's
pooling leaves its padding out of the average and the maximum, where a PAD's zeros would count.
"""

from __future__ import annotations

import dataclasses

from tinyml.ir import Graph, Op
from tinyml.passes.framework import OptimizerPass, consumers_of, remove_op
from tinyml.passes.reshape_alias import same_quantization

_INTO = ("CONV_2D", "DEPTHWISE_CONV_2D")


class FoldPad(OptimizerPass):
    name = "fold_pad"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind == "PAD" and _reader(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        conv = _reader(graph, op)
        (_, _), (top, bottom), (left, right), (_, _) = op.attrs.pads
        pt, pb, pl, pr = conv.attrs.padding
        conv.attrs = dataclasses.replace(
            conv.attrs, padding=(pt + top, pb + bottom, pl + left, pr + right))
        conv.inputs = [op.inputs[0]] + conv.inputs[1:]
        remove_op(graph, op)
        return True


def _zero_value(graph: Graph, op: Op) -> bool:
    """Whether PAD pads with real zero."""
    value = op.attrs.value
    if value is None:
        return True
    x = graph.tensors[op.inputs[0]]
    if x.dtype == "int8" and x.quant is not None:
        return int(value) == x.zero_point()
    return x.dtype == "float32" and float(value) == 0.0


def _reader(graph: Graph, op: Op) -> Op | None:
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    if len(x.shape) != 4 or x.is_constant or op.outputs[0] in graph.outputs:
        return None
    pads = op.attrs.pads
    if pads[0] != (0, 0) or pads[3] != (0, 0) or not _zero_value(graph, op):
        return None
    if not same_quantization(x, y) or x.dtype != y.dtype:
        return None
    readers = consumers_of(graph, op.outputs[0])
    if len(readers) != 1 or readers[0].kind not in _INTO:
        return None
    conv = readers[0]
    if conv.inputs[0] != op.outputs[0] or op.outputs[0] in conv.inputs[1:]:
        return None
    return conv
