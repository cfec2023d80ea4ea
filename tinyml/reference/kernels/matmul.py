"""BATCH_MATMUL: the matrix product of two tensors, as attention computes queries x keys and
scores x values.

TFLM (``kernels/batch_matmul.cc``) multiplies ``lhs[..., A, B]`` by ``rhs[..., B, C]`` for
every broadcast batch index; ``adj_x`` / ``adj_y`` mean the operand is stored with its last two
dimensions swapped. On int8 each product is ``(lhs - lhs_zp) * (rhs - rhs_zp)``, summed in
int32 and requantized with one multiplier derived like a per-tensor FULLY_CONNECTED's
(``GetQuantizedConvolutionMultipler``), over the full int8 range: BATCH_MATMUL has no fused
activation. Either operand may be a constant.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import UnsupportedOpError
from tinyml.ir.ops import batch_matmul_dims
from tinyml.reference.fixedpoint import per_tensor_fc_multiplier, requantize
from tinyml.reference.kernels.registry import KernelCall, kernel


def batch_offsets(op, lhs_shape, rhs_shape) -> tuple[np.ndarray, np.ndarray]:
    """Element offset of the lhs and of the rhs matrix of each output matrix, in output
    order: numpy broadcasting of the leading dimensions (a size-1 dimension repeats)."""
    batch, *_ = batch_matmul_dims(op, lhs_shape, rhs_shape)
    offsets = []
    for shape in (lhs_shape, rhs_shape):
        lead = (1,) * (len(batch) - (len(shape) - 2)) + tuple(shape[:-2])
        matrix = int(shape[-1]) * int(shape[-2])
        index = np.arange(int(np.prod(lead, dtype=np.int64)), dtype=np.int64).reshape(lead)
        offsets.append(np.broadcast_to(index, batch).reshape(-1) * matrix)
    return offsets[0], offsets[1]


def _operands(call: KernelCall, lhs: np.ndarray, rhs: np.ndarray):
    a = call.attrs
    return (np.swapaxes(lhs, -1, -2) if a.adj_x else lhs,
            np.swapaxes(rhs, -1, -2) if a.adj_y else rhs)


@kernel("BATCH_MATMUL")
def batch_matmul(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        lhs, rhs = _operands(call, call.inputs[0].astype(np.float32),
                             call.inputs[1].astype(np.float32))
        return np.matmul(lhs, rhs).astype(np.float32).reshape(call.out.shape)
    lhs_t, rhs_t, out = call.in_tensors[0], call.in_tensors[1], call.out
    for t in (lhs_t, rhs_t):
        if t.dtype != "int8" or t.quant is None or t.quant.per_channel:
            raise UnsupportedOpError("BATCH_MATMUL", call.op.name,
                                     detail=f"operand '{t.name}' is not per-tensor int8")
    lhs, rhs = _operands(call, call.inputs[0].astype(np.int64) - lhs_t.zero_point(),
                         call.inputs[1].astype(np.int64) - rhs_t.zero_point())
    acc = np.matmul(lhs, rhs)
    multiplier, shift = per_tensor_fc_multiplier(lhs_t.scale(), rhs_t.scale(), out.scale())
    return requantize(acc, multiplier, shift, out.zero_point(), -128, 127).reshape(out.shape)
