"""Fuse a residual ADD into the CONV_2D producing one of its operands: CONV_2D_ADD.

Why: in a residual block ``y = conv(h) + skip`` the convolution's output, the skip tensor and
the sum are all alive at once; that triple is the peak of ResNet-style models. The fused op
computes each convolution output element, adds it to the skip element at the same position
and writes the sum *over the skip element* (in place), so the convolution's output never
exists as a buffer and the sum needs none of its own.

When it is legal (``match``):

- the ADD does not broadcast: both operands and the result have one shape (the in-place
  write walks the skip tensor element by element);
- the convolution's output is read by this ADD only and is not a graph output (it stops
  existing);
- the convolution's output and the skip tensor are distinct tensors of one element type
  (int8 with per-tensor quantization, or float32).

Results are bit-identical: the CONV_2D_ADD reference kernel (``reference/kernels/fused.py``)
runs the CONV_2D and ADD reference kernels with the convolution output's original
quantization, which this pass records in the op's attributes. Whether the sum may really
overwrite the skip input (no later reader) is the memory planner's decision.

When both operands come from fusable convolutions the one with the smaller input is fused: its
input is what stays alive next to the skip tensor while the fused op runs.
"""

from __future__ import annotations

from tinyml.ir import Graph, Op
from tinyml.ir.ops import Conv2DAddAttrs
from tinyml.passes.framework import (OptimizerPass, only_consumer, producer_of, remove_op,
                                     replace_op)


class FuseResidualAdd(OptimizerPass):
    name = "fuse_residual_add"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind == "ADD" and self._choose(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        conv, conv_index = self._choose(graph, op)
        mid = graph.tensors[conv.outputs[0]]
        skip = op.inputs[1 - conv_index]
        a = conv.attrs
        attrs = Conv2DAddAttrs(
            stride=a.stride, dilation=a.dilation, padding=a.padding, activation=a.activation,
            conv_scale=float(mid.scale()) if mid.quant is not None else None,
            conv_zero_point=mid.zero_point() if mid.quant is not None else 0,
            add_activation=op.attrs.activation, skip_first=conv_index == 1)
        bias = conv.inputs[2:3] if len(conv.inputs) > 2 and conv.inputs[2] else []
        fused = Op("CONV_2D_ADD", f"{conv.name}+{op.name}",
                   [conv.inputs[0], conv.inputs[1], skip] + bias, list(op.outputs), attrs)
        replace_op(graph, op, fused)
        remove_op(graph, conv)
        return True

    def _choose(self, graph: Graph, add: Op) -> tuple[Op, int] | None:
        out = graph.tensors[add.outputs[0]]
        if add.inputs[0] == add.inputs[1]:
            return None
        operands = [graph.tensors[n] for n in add.inputs]
        if any(t.is_constant or t.shape != out.shape or t.dtype != out.dtype for t in operands):
            return None
        if out.dtype == "int8":
            if any(t.quant is None or t.quant.per_channel for t in operands + [out]):
                return None
        elif out.dtype != "float32":
            return None
        position = {id(o): i for i, o in enumerate(graph.ops)}
        candidates = []
        for index, name in enumerate(add.inputs):
            conv = producer_of(graph, name)
            if conv is None or conv.kind != "CONV_2D" or not only_consumer(graph, name, add):
                continue
            # conv(skip) + skip fuses too; the planner then cannot write over the skip input.
            x = graph.tensors[conv.inputs[0]]
            candidates.append((x.nbytes, -position[id(conv)], conv, index))
        if not candidates:
            return None
        _, _, conv, index = min(candidates, key=lambda c: (c[0], c[1]))
        return conv, index
