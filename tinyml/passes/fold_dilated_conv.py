"""Fold SPACE_TO_BATCH_ND -> convolution -> BATCH_TO_SPACE_ND into one dilated convolution.

Why: the TFLite converter writes a dilated Conv2D/DepthwiseConv2D/Conv1D of a model with a
dynamic batch as TensorFlow's "atrous" rewrite: SPACE_TO_BATCH_ND splits the zero-padded
image into block x block phase images stacked on the batch, an undilated VALID convolution
runs on every phase, and BATCH_TO_SPACE_ND interleaves the phases back and crops. The three
ops cost two copies of the tensor and a block-times larger batch; one convolution with
``dilation = block`` reads the same taps in place.

Why it is exact: output pixel ``t`` (in the padded, uncropped frame) of the phase
convolution reads padded input pixels ``t + k * block`` for filter taps ``k``: that is the
dilated convolution of the padded input. BATCH_TO_SPACE_ND's crops (``before``, ``after``)
drop the first and last outputs, which a dilated convolution gets by padding ``pads - crops``
instead of ``pads``: the "extra" padding the converter adds to make the size a multiple of
the block is exactly what it crops away again. Padding with the zero point (TFLite's
SPACE_TO_BATCH_ND) contributes nothing to the accumulator, which is what a convolution does
with the taps it skips in its padding, so int8 results are bit for bit those of the three
ops, and the requantization is untouched.

When it folds: the convolution has stride 1, no padding and (so that the phases do not mix)
each op between SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND is read by the next one alone. For a
Keras Conv1D (3-D NHC tensors) a RESHAPE on each side inserts and removes the size-1 height
(EXPAND_DIMS and SQUEEZE, imported as RESHAPE); the single spatial dimension of the 3-D
block ops is then the convolution's width. Quantization must be equal across the movers (the
converter makes it so); a crop larger than the padding (which would need negative
padding) is left unfolded, and the two ops then run as standalone kernels.
"""

from __future__ import annotations

import dataclasses

from tinyml.ir import Graph, Op
from tinyml.ir.ops import OP_SPECS
from tinyml.passes.framework import OptimizerPass, only_consumer, producer_of, remove_op
from tinyml.passes.reshape_alias import same_quantization

_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclasses.dataclass
class _Match:
    s2b: Op
    pre: Op | None     # RESHAPE between SPACE_TO_BATCH_ND and the convolution (3-D case)
    conv: Op
    post: Op | None    # RESHAPE between the convolution and BATCH_TO_SPACE_ND (3-D case)
    b2s: Op
    dilation: tuple[int, int]
    padding: tuple[int, int, int, int]
    unit_axis: int | None  # the size-1 axis (1: height, 2: width) the 3-D case inserts


class FoldDilatedConv(OptimizerPass):
    name = "fold_dilated_conv"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind == "BATCH_TO_SPACE_ND" and _find(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        m = _find(graph, op)
        source = m.s2b.inputs[0]
        (m.pre or m.conv).inputs[0] = source
        m.conv.attrs = dataclasses.replace(m.conv.attrs, dilation=m.dilation,
                                           padding=m.padding)
        (m.post or m.conv).outputs = [m.b2s.outputs[0]]
        remove_op(graph, m.s2b)
        remove_op(graph, m.b2s)
        # The tensors between the ops now hold one image, not block x block phases.
        if m.pre is not None:
            n, length, c = graph.tensors[source].shape
            shape = (n, 1, length, c) if m.unit_axis == 1 else (n, length, 1, c)
            m.pre.attrs = dataclasses.replace(m.pre.attrs, shape=shape)
            m.post.attrs = dataclasses.replace(m.post.attrs,
                                               shape=graph.tensors[m.b2s.outputs[0]].shape)
        for changed in (m.pre, m.conv, m.post):
            if changed is not None:
                (shape, _), = OP_SPECS[changed.kind].infer(changed, graph.op_inputs(changed))
                graph.tensors[changed.outputs[0]].shape = tuple(shape)
        return True


def _single_producer(graph: Graph, tensor: str, kind: str, reader: Op) -> Op | None:
    """The op of ``kind`` writing ``tensor``, when ``reader`` is that tensor's only reader."""
    op = producer_of(graph, tensor)
    if op is None or op.kind != kind or not only_consumer(graph, tensor, reader):
        return None
    return op


def _same_quant(graph: Graph, a: str, b: str) -> bool:
    return same_quantization(graph.tensors[a], graph.tensors[b])


def _find(graph: Graph, b2s: Op) -> _Match | None:
    x = b2s.inputs[0]
    post = _single_producer(graph, x, "RESHAPE", b2s)
    conv_out = post.inputs[0] if post is not None else x
    conv = producer_of(graph, conv_out)
    if conv is None or conv.kind not in _CONVS or not only_consumer(graph, conv_out,
                                                                  post or b2s):
        return None
    a = conv.attrs
    if tuple(a.stride) != (1, 1) or tuple(a.dilation) != (1, 1) or any(a.padding):
        return None
    pre = _single_producer(graph, conv.inputs[0], "RESHAPE", conv)
    s2b = _single_producer(graph, pre.inputs[0] if pre is not None else conv.inputs[0],
                           "SPACE_TO_BATCH_ND", pre or conv)
    if s2b is None or s2b.attrs.block != b2s.attrs.block:
        return None
    rank = len(graph.tensors[s2b.inputs[0]].shape)
    conv_in = graph.tensors[conv.inputs[0]].shape
    if rank == 4:
        if pre is not None or post is not None:
            return None
        axes, unit = (0, 1), None  # S2B spatial dim -> convolution axis (0: H, 1: W)
    elif rank == 3 and pre is not None and post is not None:
        phase = graph.tensors[s2b.outputs[0]].shape
        if conv_in == (phase[0], 1, phase[1], phase[2]):
            axes, unit = (1,), 1
        elif conv_in == (phase[0], phase[1], 1, phase[2]):
            axes, unit = (0,), 2
        else:
            return None
        conv_out_shape = graph.tensors[conv_out].shape
        if graph.tensors[x].shape != tuple(d for i, d in enumerate(conv_out_shape)
                                           if i != unit):
            return None
    else:
        return None
    chain = [s2b.inputs[0], s2b.outputs[0], conv.inputs[0]]
    out_chain = [conv_out, x, b2s.outputs[0]]
    if not all(_same_quant(graph, chain[0], t) for t in chain[1:]) or \
            not all(_same_quant(graph, out_chain[0], t) for t in out_chain[1:]):
        return None
    dilation, padding = [1, 1], [0, 0, 0, 0]
    for dim, axis in enumerate(axes):
        (pb, pa), (cb, ca) = s2b.attrs.pads[dim], b2s.attrs.crops[dim]
        if cb > pb or ca > pa:
            return None
        dilation[axis] = s2b.attrs.block[dim]
        padding[2 * axis], padding[2 * axis + 1] = pb - cb, pa - ca
    return _Match(s2b, pre, conv, post, b2s, tuple(dilation), tuple(padding), unit)
