"""Fused ops created by graph passes (``tinyml.passes``), defined by the kernels they fuse.

CONV_2D_ADD is a CONV_2D whose output feeds a residual ADD. Its reference is literally the
composition of the CONV_2D and ADD reference kernels: the convolution's output is rebuilt as
a temporary tensor with the quantization the unfused graph gave it, computed (requantized and
clamped to int8 per element), then added to the skip input. A fused graph is therefore
bit-identical to the unfused one by construction, and the C kernel, which computes one
convolution output element and immediately adds it to the skip element it overwrites, has
exactly these semantics to match.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Op, Quantization, Tensor
from tinyml.ir.ops import Conv2DAttrs, Conv2DAddAttrs, ElementwiseAttrs
from tinyml.reference.kernels.registry import KERNELS, KernelCall, kernel


def conv_add_parts(op: Op, in_tensors: list[Tensor | None],
                   out: Tensor) -> tuple[Op, Tensor, Op]:
    """The CONV_2D and ADD ops a CONV_2D_ADD stands for, and the convolution's output tensor.

    Shared with the passes' tests and available to code generators, which need the same
    intermediate quantization to derive the convolution's requantization constants.
    """
    a: Conv2DAddAttrs = op.attrs
    x_t = in_tensors[0]
    quant = None
    if a.conv_scale is not None:
        quant = Quantization([a.conv_scale], [a.conv_zero_point])
    mid = Tensor(f"{op.name}:conv", out.shape, x_t.dtype, quant)
    bias = op.inputs[3] if len(op.inputs) > 3 else ""
    conv = Op("CONV_2D", op.name, [op.inputs[0], op.inputs[1], bias], [mid.name],
              Conv2DAttrs(a.stride, a.dilation, a.padding, a.activation))
    pair = [op.inputs[2], mid.name] if a.skip_first else [mid.name, op.inputs[2]]
    add = Op("ADD", op.name, pair, list(op.outputs), ElementwiseAttrs(a.add_activation))
    return conv, mid, add


@kernel("CONV_2D_ADD")
def conv_2d_add(call: KernelCall) -> np.ndarray:
    conv, mid, add = conv_add_parts(call.op, call.in_tensors, call.out)
    x, w, skip = call.inputs[:3]
    bias = call.inputs[3] if len(call.inputs) > 3 else None
    bias_t = call.in_tensors[3] if len(call.in_tensors) > 3 else None
    conv_out = KERNELS["CONV_2D"](KernelCall(conv, [x, w, bias],
                                             [call.in_tensors[0], call.in_tensors[1], bias_t],
                                             [mid]))
    skip_t = call.in_tensors[2]
    if call.op.attrs.skip_first:
        values, tensors = [skip, conv_out], [skip_t, mid]
    else:
        values, tensors = [conv_out, skip], [mid, skip_t]
    return KERNELS["ADD"](KernelCall(add, values, tensors, call.out_tensors))
