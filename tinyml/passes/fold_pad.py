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
reader is a CONV_2D or DEPTHWISE_CONV_2D reading it as input 0. A Keras ZeroPadding1D before
a Conv1D is a 3-D PAD whose only reader is the RESHAPE (EXPAND_DIMS) inserting the unit
height or width in front of the convolution; that RESHAPE then reads the unpadded tensor. Pooling is left alone: TFLM's
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
        return op.kind == "PAD" and _plan(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        conv, reshape, pads = _plan(graph, op)
        (top, bottom), (left, right) = pads
        pt, pb, pl, pr = conv.attrs.padding
        conv.attrs = dataclasses.replace(
            conv.attrs, padding=(pt + top, pb + bottom, pl + left, pr + right))
        if reshape is None:
            conv.inputs = [op.inputs[0]] + conv.inputs[1:]
        else:
            n, length, c = graph.tensors[op.inputs[0]].shape
            padded = graph.tensors[op.outputs[0]].shape
            unit_h = graph.tensors[reshape.outputs[0]].shape == (n, 1, padded[1], c)
            shape = (n, 1, length, c) if unit_h else (n, length, 1, c)
            reshape.inputs = [op.inputs[0]]
            reshape.attrs = dataclasses.replace(reshape.attrs, shape=shape)
            graph.tensors[reshape.outputs[0]].shape = shape
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


def _only_reader(graph: Graph, tensor: str, kinds: tuple[str, ...]) -> Op | None:
    """The op of ``kinds`` reading ``tensor`` as its input 0 and nothing else does."""
    if tensor in graph.outputs:
        return None
    readers = consumers_of(graph, tensor)
    if len(readers) != 1 or readers[0].kind not in kinds:
        return None
    reader = readers[0]
    if reader.inputs[0] != tensor or tensor in reader.inputs[1:]:
        return None
    return reader


def _plan(graph: Graph, op: Op):
    """(convolution, RESHAPE in between or None, ((top, bottom), (left, right)))."""
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    pads = op.attrs.pads
    if x.is_constant or len(x.shape) not in (3, 4) or not _zero_value(graph, op):
        return None
    if pads[0] != (0, 0) or pads[-1] != (0, 0):
        return None
    if not same_quantization(x, y) or x.dtype != y.dtype:
        return None
    if len(x.shape) == 4:
        conv = _only_reader(graph, op.outputs[0], _INTO)
        return None if conv is None else (conv, None, (pads[1], pads[2]))
    reshape = _only_reader(graph, op.outputs[0], ("RESHAPE",))
    if reshape is None or len(reshape.inputs) != 1:
        return None
    r = graph.tensors[reshape.outputs[0]]
    if not same_quantization(y, r):
        return None
    n, length, c = y.shape
    if r.shape == (n, 1, length, c):
        spatial = ((0, 0), pads[1])
    elif r.shape == (n, length, 1, c):
        spatial = (pads[1], (0, 0))
    else:
        return None
    conv = _only_reader(graph, reshape.outputs[0], _INTO)
    return None if conv is None else (conv, reshape, spatial)
