"""Op kinds of the graph IR: typed attributes, shape inference and MAC counts.

Op kinds are named after their TFLite builtins (CONV_2D, ...) because TFLite's int8 semantics
are the ones every backend must reproduce. Each kind is registered once in :data:`OP_SPECS`
with its attribute dataclass, a shape-inference function and a MAC count; frontends, the
reference interpreter, ``tinyml inspect`` and the code generator all read this table, so a new
op is added here first.

Shape-only ops (SHAPE, STRIDED_SLICE, PACK, GATHER and RESHAPE/CONCATENATION of constants) are
*evaluated* during shape inference when their inputs are known: their outputs get constant data,
which is how a RESHAPE whose target comes from ``SHAPE -> STRIDED_SLICE -> PACK`` resolves to a
static shape. A later pass folds such ops away.

MACs count the multiply-accumulates of CONV_2D (also fused as CONV_2D_ADD), DEPTHWISE_CONV_2D
and FULLY_CONNECTED (the convention of MLPerf Tiny and MCUNet), and of TRANSPOSE_CONV (each
input value times its output channels' filter taps); every other op counts 0.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from tinyml.errors import ShapeError

if TYPE_CHECKING:
    from tinyml.ir.graph import Op
    from tinyml.ir.tensor import Tensor

#: Activations that kernels apply to their output (TFLite's fused activation functions).
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")

Shape = tuple[int, ...]


# --------------------------------------------------------------------------------------------
# Attributes


@dataclass(frozen=True)
class NoAttrs:
    pass


@dataclass(frozen=True)
class Conv2DAttrs:
    """Explicit padding (top, bottom, left, right): TFLite SAME is resolved at import."""

    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    activation: str = "NONE"


@dataclass(frozen=True)
class DepthwiseConv2DAttrs(Conv2DAttrs):
    depth_multiplier: int = 1


@dataclass(frozen=True)
class Conv2DAddAttrs(Conv2DAttrs):
    """CONV_2D_ADD: a CONV_2D (the inherited fields, ``activation`` being the convolution's)
    whose output feeds an ADD with a skip tensor (a residual connection), fused by
    ``tinyml.passes.fuse_residual_add`` so the sum can be written over the skip input in place.

    Inputs: (input, filter, skip) or (input, filter, skip, bias). The convolution's output is
    no tensor of the graph any more, but its value is still computed, rounded and clamped per
    element, so its quantization is kept here (``conv_scale``/``conv_zero_point``; a None
    scale for float graphs). ``skip_first`` records the ADD's operand order and
    ``add_activation`` its fused activation.
    """

    conv_scale: float | None = None
    conv_zero_point: int = 0
    add_activation: str = "NONE"
    skip_first: bool = False


@dataclass(frozen=True)
class FullyConnectedAttrs:
    activation: str = "NONE"
    keep_num_dims: bool = False


@dataclass(frozen=True)
class Pool2DAttrs:
    filter: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    activation: str = "NONE"


@dataclass(frozen=True)
class ElementwiseAttrs:
    """ADD and MUL: numpy broadcasting, optional fused activation."""

    activation: str = "NONE"


@dataclass(frozen=True)
class ReduceAttrs:
    axes: tuple[int, ...] = ()
    keep_dims: bool = False


@dataclass(frozen=True)
class ReshapeAttrs:
    """Target shape; None means "read it from the (constant) second input"."""

    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SoftmaxAttrs:
    """Softmax over the last axis."""

    beta: float = 1.0


@dataclass(frozen=True)
class ConcatenationAttrs:
    axis: int = -1
    activation: str = "NONE"


@dataclass(frozen=True)
class PadAttrs:
    """Padding (before, after) per dimension.

    ``value`` is in the tensor's own element domain (a float for float tensors, the integer
    code for int8 tensors); None pads with real zero, i.e. the zero point for int8.
    """

    pads: tuple[tuple[int, int], ...] = ()
    value: float | int | None = None


@dataclass(frozen=True)
class TransposeAttrs:
    perm: tuple[int, ...] = ()


@dataclass(frozen=True)
class ClipAttrs:
    """Clamp to [min, max] in real values (ONNX Clip with bounds other than ReLU/ReLU6)."""

    min: float = -math.inf
    max: float = math.inf


@dataclass(frozen=True)
class BatchNormAttrs:
    """Inference batch norm over ``axis`` (inputs: x, scale, bias, mean, variance)."""

    epsilon: float = 1e-5
    axis: int = -1


@dataclass(frozen=True)
class StridedSliceAttrs:
    """TFLite STRIDED_SLICE masks (inputs: x, begin, end, strides)."""

    begin_mask: int = 0
    end_mask: int = 0
    shrink_axis_mask: int = 0
    offset: bool = False


@dataclass(frozen=True)
class AxisAttrs:
    """PACK and GATHER."""

    axis: int = 0


@dataclass(frozen=True)
class CastAttrs:
    dtype: str = "float32"


@dataclass(frozen=True)
class LeakyReluAttrs:
    """LEAKY_RELU: x for x >= 0, alpha * x below."""

    alpha: float = 0.2


# ---- reductions ops: attributes
@dataclass(frozen=True)
class ArgAttrs:
    """ARG_MAX and ARG_MIN: the axis searched and the index type of the output."""

    axis: int = -1
    output_type: str = "int32"


# --------------------------------------------------------------------------------------------
# Helpers shared by frontends and kernels


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite SAME padding (before, after) for one spatial dimension.

    The output has ceil(size / stride) positions; the odd pixel, if any, goes after, exactly as
    TFLM's ``ComputePaddingWithOffset`` does.
    """
    effective = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def conv_output_size(size: int, kernel: int, stride: int, dilation: int, before: int,
                     after: int) -> int:
    effective = (kernel - 1) * dilation + 1
    return (size + before + after - effective) // stride + 1


def normalize_axis(axis: int, rank: int, op: "Op") -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"layer '{op.name}' ({op.kind}): axis {axis} out of range for rank {rank}")
    return axis % rank


# --------------------------------------------------------------------------------------------
# Shape inference. Each function gets the op and its input tensors (None for an omitted optional
# input) and returns the output shapes and dtypes; ``evaluate`` functions return constant data.

InferFn = Callable[["Op", list["Tensor | None"]], list[tuple[Shape, str]]]
EvalFn = Callable[["Op", list["Tensor | None"]], list[np.ndarray]]
MacsFn = Callable[["Op", list["Tensor | None"], list["Tensor"]], int]


def _fail(op: "Op", message: str) -> ShapeError:
    return ShapeError(f"layer '{op.name}' ({op.kind}): {message}")


def _rank(op: "Op", t: "Tensor", rank: int, what: str = "input") -> None:
    if len(t.shape) != rank:
        raise _fail(op, f"{what} '{t.name}' must be {rank}-D, got shape {list(t.shape)}")


def _infer_conv(op, ins):
    x, w = ins[0], ins[1]
    _rank(op, x, 4)
    _rank(op, w, 4, "filter")
    a: Conv2DAttrs = op.attrs
    n, h, wd, c = x.shape
    if op.kind == "DEPTHWISE_CONV_2D":
        if w.shape[0] != 1:
            raise _fail(op, f"depthwise filter must be [1,H,W,C*M], got {list(w.shape)}")
        kh, kw, cout = w.shape[1], w.shape[2], w.shape[3]
        if cout != c * a.depth_multiplier:
            raise _fail(op, f"filter has {cout} channels, expected {c} x {a.depth_multiplier}")
    else:
        cout, kh, kw, cin = w.shape
        if cin == 0 or c % cin:
            raise _fail(op, f"input has {c} channels but filter expects {cin}")
    pt, pb, pl, pr = a.padding
    oh = conv_output_size(h, kh, a.stride[0], a.dilation[0], pt, pb)
    ow = conv_output_size(wd, kw, a.stride[1], a.dilation[1], pl, pr)
    if oh <= 0 or ow <= 0:
        raise _fail(op, f"filter {kh}x{kw} larger than padded input {h}x{wd}")
    if len(ins) > 2 and ins[2] is not None and ins[2].size != cout:
        raise _fail(op, f"bias has {ins[2].size} entries, expected {cout}")
    return [((n, oh, ow, cout), x.dtype)]


def _infer_conv_add(op, ins):
    bias = ins[3] if len(ins) > 3 else None
    (shape, dtype), = _infer_conv(op, [ins[0], ins[1], bias])
    skip = ins[2]
    if skip.shape != shape:
        raise _fail(op, f"skip input '{skip.name}' has shape {list(skip.shape)}, the "
                        f"convolution computes {list(shape)}")
    return [(shape, skip.dtype)]


def _infer_fully_connected(op, ins):
    x, w = ins[0], ins[1]
    _rank(op, w, 2, "weights")
    out_units, in_units = w.shape
    if x.size % in_units:
        raise _fail(op, f"input of {x.size} elements is not a multiple of {in_units} features")
    if op.attrs.keep_num_dims:
        if x.shape[-1] != in_units:
            raise _fail(op, f"last input dimension {x.shape[-1]} != {in_units} features")
        shape = tuple(x.shape[:-1]) + (out_units,)
    else:
        shape = (x.size // in_units, out_units)
    return [(shape, x.dtype)]


def _broadcast(op, shapes: list[Shape]) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise _fail(op, f"shapes {[list(s) for s in shapes]} do not broadcast") from None


def _infer_elementwise(op, ins):
    return [(_broadcast(op, [t.shape for t in ins]), ins[0].dtype)]


def _infer_pool(op, ins):
    x = ins[0]
    _rank(op, x, 4)
    a: Pool2DAttrs = op.attrs
    n, h, w, c = x.shape
    pt, pb, pl, pr = a.padding
    oh = conv_output_size(h, a.filter[0], a.stride[0], 1, pt, pb)
    ow = conv_output_size(w, a.filter[1], a.stride[1], 1, pl, pr)
    if oh <= 0 or ow <= 0:
        raise _fail(op, f"pool window {a.filter} larger than input {h}x{w}")
    return [((n, oh, ow, c), x.dtype)]


def _infer_mean(op, ins):
    x = ins[0]
    axes = sorted({normalize_axis(a, len(x.shape), op) for a in op.attrs.axes})
    if op.attrs.keep_dims:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [(shape, x.dtype)]


def _reshape_target(op, ins) -> tuple[int, ...]:
    x = ins[0]
    if len(ins) > 1 and ins[1] is not None:
        if not ins[1].is_constant:
            raise _fail(op, "target shape is not known at compile time")
        target = [int(v) for v in np.asarray(ins[1].data).reshape(-1)]
    elif op.attrs.shape is not None:
        target = list(op.attrs.shape)
    else:
        raise _fail(op, "no target shape")
    # ONNX: 0 copies the input dimension (frontends translate it); here -1 is the only wildcard.
    unknown = [i for i, d in enumerate(target) if d == -1]
    known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    if len(unknown) > 1 or any(d < -1 for d in target):
        raise _fail(op, f"invalid target shape {target}")
    if unknown:
        if known == 0 or x.size % known:
            raise _fail(op, f"cannot reshape {list(x.shape)} to {target}")
        target[unknown[0]] = x.size // known
    if int(np.prod(target, dtype=np.int64)) != x.size:
        raise _fail(op, f"cannot reshape {list(x.shape)} ({x.size} elements) to {target}")
    return tuple(target)


def _infer_reshape(op, ins):
    return [(_reshape_target(op, ins), ins[0].dtype)]


def _eval_reshape(op, ins):
    return [np.asarray(ins[0].data).reshape(_reshape_target(op, ins))]


def _infer_same(op, ins):
    return [(ins[0].shape, ins[0].dtype)]


def _infer_softmax(op, ins):
    if not ins[0].shape:
        raise _fail(op, "softmax of a scalar")
    return _infer_same(op, ins)


def _infer_concat(op, ins):
    rank = len(ins[0].shape)
    axis = normalize_axis(op.attrs.axis, rank, op)
    for t in ins[1:]:
        if len(t.shape) != rank or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, ins[0].shape)) if i != axis):
            raise _fail(op, f"cannot concatenate {[list(t.shape) for t in ins]} on axis {axis}")
    shape = list(ins[0].shape)
    shape[axis] = sum(t.shape[axis] for t in ins)
    return [(tuple(shape), ins[0].dtype)]


def _eval_concat(op, ins):
    return [np.concatenate([np.asarray(t.data) for t in ins], axis=op.attrs.axis)]


def _infer_pad(op, ins):
    x = ins[0]
    pads = op.attrs.pads
    if len(pads) != len(x.shape):
        raise _fail(op, f"{len(pads)} paddings for a {len(x.shape)}-D input")
    if any(b < 0 or a < 0 for b, a in pads):
        raise _fail(op, "negative padding (cropping) is not supported")
    return [(tuple(d + b + a for d, (b, a) in zip(x.shape, pads)), x.dtype)]


def _infer_transpose(op, ins):
    perm = op.attrs.perm
    if sorted(perm) != list(range(len(ins[0].shape))):
        raise _fail(op, f"invalid permutation {list(perm)} for shape {list(ins[0].shape)}")
    return [(tuple(ins[0].shape[p] for p in perm), ins[0].dtype)]


def _eval_transpose(op, ins):
    return [np.transpose(np.asarray(ins[0].data), op.attrs.perm)]


def _infer_quantize(op, ins):
    return [(ins[0].shape, op.attrs.dtype)]


def _infer_dequantize(op, ins):
    return [(ins[0].shape, "float32")]


def _infer_batch_norm(op, ins):
    x = ins[0]
    axis = normalize_axis(op.attrs.axis, len(x.shape), op)
    for t in ins[1:]:
        if t.size != x.shape[axis]:
            raise _fail(op, f"parameter '{t.name}' has {t.size} entries, expected {x.shape[axis]}")
    return _infer_same(op, ins)


def _infer_shape(op, ins):
    return [((len(ins[0].shape),), "int32")]


def _eval_shape(op, ins):
    return [np.asarray(ins[0].shape, dtype=np.int32)]


def _strided_slices(op, ins) -> tuple[tuple, list[int]]:
    x, begin, end, strides = ins[0], ins[1], ins[2], ins[3] if len(ins) > 3 else None
    for t, what in ((begin, "begin"), (end, "end"), (strides, "strides")):
        if t is not None and not t.is_constant:
            raise _fail(op, f"{what} is not known at compile time")
    a: StridedSliceAttrs = op.attrs
    b = [int(v) for v in np.asarray(begin.data).reshape(-1)]
    e = [int(v) for v in np.asarray(end.data).reshape(-1)]
    s = [int(v) for v in np.asarray(strides.data).reshape(-1)] if strides is not None else [1] * len(b)
    if len(b) > len(x.shape):
        raise _fail(op, "more slice dimensions than the input has")
    slices, squeeze = [], []
    for i in range(len(b)):
        if a.shrink_axis_mask >> i & 1:
            slices.append(b[i])
            squeeze.append(i)
            continue
        start = None if a.begin_mask >> i & 1 else b[i]
        stop = None if a.end_mask >> i & 1 else (b[i] + e[i] if a.offset else e[i])
        slices.append(slice(start, stop, s[i]))
    return tuple(slices), squeeze


def _infer_strided_slice(op, ins):
    slices, _ = _strided_slices(op, ins)
    view = np.broadcast_to(np.zeros((), np.int8), ins[0].shape)
    try:
        shape = view[slices].shape
    except IndexError as exc:
        raise _fail(op, f"slice out of range: {exc}") from None
    return [(shape, ins[0].dtype)]


def _eval_strided_slice(op, ins):
    slices, _ = _strided_slices(op, ins)
    return [np.asarray(np.asarray(ins[0].data)[slices])]


def _infer_pack(op, ins):
    shapes = {t.shape for t in ins}
    if len(shapes) != 1:
        raise _fail(op, f"cannot stack shapes {[list(t.shape) for t in ins]}")
    shape = list(ins[0].shape)
    axis = normalize_axis(op.attrs.axis, len(shape) + 1, op)
    shape.insert(axis, len(ins))
    return [(tuple(shape), ins[0].dtype)]


def _eval_pack(op, ins):
    return [np.stack([np.asarray(t.data) for t in ins], axis=op.attrs.axis)]


def _infer_gather(op, ins):
    x, idx = ins
    axis = normalize_axis(op.attrs.axis, len(x.shape), op)
    shape = x.shape[:axis] + idx.shape + x.shape[axis + 1:]
    return [(shape, x.dtype)]


def _eval_gather(op, ins):
    x, idx = np.asarray(ins[0].data), np.asarray(ins[1].data)
    size = x.shape[normalize_axis(op.attrs.axis, x.ndim, op)] if x.ndim else 0
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise _fail(op, f"indices outside [0, {size})")
    return [np.take(x, idx, axis=op.attrs.axis)]


def _eval_cast(op, ins):
    from tinyml.ir.tensor import DTYPES
    return [np.asarray(ins[0].data).astype(DTYPES[op.attrs.dtype])]


def _infer_cast(op, ins):
    return [(ins[0].shape, op.attrs.dtype)]


def _infer_compare(op, ins):
    """Comparisons and binary logical ops: broadcast shape, TFLite BOOL elements."""
    return [(_broadcast(op, [t.shape for t in ins]), "bool")]


def _eval_bool_family(op, ins):
    """Comparisons, logical ops and SELECT_V2 of unquantized constants (shape arithmetic, as
    ONNX's Where(Equal(shape, 0), ...)): computed now, so the graph keeps no integer op.
    Quantized constants are left to the kernels (nothing is returned)."""
    if any(t.quant is not None for t in ins):
        return []
    values = [np.asarray(t.data) for t in ins]
    if op.kind == "SELECT_V2":
        return [np.where(values[0].astype(bool), values[1], values[2])]
    if op.kind == "LOGICAL_NOT":
        return [np.logical_not(values[0].astype(bool))]
    fn = {"GREATER": np.greater, "GREATER_EQUAL": np.greater_equal, "LESS": np.less,
          "LESS_EQUAL": np.less_equal, "EQUAL": np.equal, "NOT_EQUAL": np.not_equal,
          "LOGICAL_AND": np.logical_and, "LOGICAL_OR": np.logical_or}[op.kind]
    return [fn(*values)]


def _infer_select(op, ins):
    """SELECT_V2: condition, x and y broadcast together; elements of x's type."""
    if ins[0].dtype != "bool":
        raise _fail(op, f"condition '{ins[0].name}' is {ins[0].dtype}, not bool")
    return [(_broadcast(op, [t.shape for t in ins]), ins[1].dtype)]

# ---- conv ops: SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND (NHWC, or NHC read as NH1C as TFLM
# does; the block and paddings/crops cover the spatial dimensions only)


@dataclass(frozen=True)
class SpaceToBatchAttrs:
    """Block per spatial dimension and the zero padding (before, after) of each."""

    block: tuple[int, ...] = (1, 1)
    pads: tuple[tuple[int, int], ...] = ((0, 0), (0, 0))


@dataclass(frozen=True)
class BatchToSpaceAttrs:
    """Block per spatial dimension and the crops (before, after) of each."""

    block: tuple[int, ...] = (1, 1)
    crops: tuple[tuple[int, int], ...] = ((0, 0), (0, 0))


def _block_check(op, x, block, pairs, what: str) -> None:
    if len(x.shape) not in (3, 4):
        raise _fail(op, f"input must be 3-D or 4-D, got shape {list(x.shape)}")
    spatial = len(x.shape) - 2
    if len(block) != spatial or len(pairs) != spatial:
        raise _fail(op, f"{len(block)} block sizes and {len(pairs)} {what} for "
                        f"{spatial} spatial dimensions")
    if any(b < 1 for b in block) or any(v < 0 for pair in pairs for v in pair):
        raise _fail(op, f"invalid block {list(block)} or {what} {[list(p) for p in pairs]}")


def _infer_space_to_batch(op, ins):
    x = ins[0]
    a: SpaceToBatchAttrs = op.attrs
    _block_check(op, x, a.block, a.pads, "paddings")
    spatial = []
    for d, b, (before, after) in zip(x.shape[1:-1], a.block, a.pads):
        if (d + before + after) % b:
            raise _fail(op, f"padded size {d + before + after} is not a multiple of block {b}")
        spatial.append((d + before + after) // b)
    batch = x.shape[0] * int(np.prod(a.block))
    return [((batch, *spatial, x.shape[-1]), x.dtype)]


def _infer_batch_to_space(op, ins):
    x = ins[0]
    a: BatchToSpaceAttrs = op.attrs
    _block_check(op, x, a.block, a.crops, "crops")
    blocks = int(np.prod(a.block))
    if x.shape[0] % blocks:
        raise _fail(op, f"batch {x.shape[0]} is not a multiple of the block size {blocks}")
    spatial = [d * b - before - after for d, b, (before, after)
               in zip(x.shape[1:-1], a.block, a.crops)]
    if any(d <= 0 for d in spatial):
        raise _fail(op, f"crops {[list(c) for c in a.crops]} remove the whole output")
    return [((x.shape[0] // blocks, *spatial, x.shape[-1]), x.dtype)]


@dataclass(frozen=True)
class TransposeConvAttrs:
    """TRANSPOSE_CONV (inputs: input, filter OHWI, optional bias). ``output_shape`` is
    TFLite's constant first input; ``padding`` (top, bottom, left, right) is how far the
    scattered input is shifted and trimmed: input pixel (y, x) writes output rows
    ``y * stride - top + ky``. TFLM derives top/left from the output size and the SAME or
    VALID mode (``ComputePaddingHeightWidth``); bottom/right are what the trim leaves."""

    output_shape: tuple[int, int, int, int] = (1, 1, 1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    activation: str = "NONE"


def transpose_conv_padding(out_size: int, kernel: int, stride: int, same: bool) -> int:
    """TFLM's padding of TRANSPOSE_CONV along one axis: ``ComputePaddingHeightWidth`` run on
    the *output* size as if it were a convolution's input (dilation 1), the before part."""
    size = (out_size + stride - 1) // stride if same else (out_size + stride - kernel) // stride
    total = max((size - 1) * stride + kernel - out_size, 0)
    return total // 2


def _infer_transpose_conv(op, ins):
    x, w = ins[0], ins[1]
    _rank(op, x, 4)
    _rank(op, w, 4, "filter")
    a: TransposeConvAttrs = op.attrs
    if len(a.output_shape) != 4 or any(d <= 0 for d in a.output_shape):
        raise _fail(op, f"invalid output shape {list(a.output_shape)}")
    if w.shape[3] != x.shape[3]:
        raise _fail(op, f"input has {x.shape[3]} channels but filter expects {w.shape[3]}")
    if w.shape[0] != a.output_shape[3] or a.output_shape[0] != x.shape[0]:
        raise _fail(op, f"output shape {list(a.output_shape)} does not fit filter "
                        f"{list(w.shape)} and input {list(x.shape)}")
    if len(ins) > 2 and ins[2] is not None and ins[2].size != w.shape[0]:
        raise _fail(op, f"bias has {ins[2].size} entries, expected {w.shape[0]}")
    if a.padding[0] < 0 or a.padding[2] < 0 or min(a.stride) < 1:
        raise _fail(op, f"invalid padding {list(a.padding)} or stride {list(a.stride)}")
    return [(tuple(a.output_shape), x.dtype)]


def _macs_transpose_conv(op, ins, outs):
    w = ins[1]
    return ins[0].size * w.shape[0] * w.shape[1] * w.shape[2]  # every input value x filter


# --------------------------------------------------------------------------------------------
# MAC counts


def _macs_conv(op, ins, outs):
    w = ins[1]
    per_output = w.shape[1] * w.shape[2] * w.shape[3]  # kh * kw * cin
    return outs[0].size * per_output


def _macs_depthwise(op, ins, outs):
    w = ins[1]
    return outs[0].size * w.shape[1] * w.shape[2]


def _macs_fully_connected(op, ins, outs):
    return outs[0].size * ins[1].shape[1]


def _no_macs(op, ins, outs):
    return 0


# --------------------------------------------------------------------------------------------
# The table


# --------------------------------------------------------------------------------------------
# Traits: what the memory planner, the patch scheduler and the quantizer need to know of an op.
# Every spec states them (no defaults), so a new op cannot be skipped by a table it is missing
# from: the tables those modules use are derived from here.

#: How an op's output pixels depend on its input pixels (NHWC images), for receptive fields
#: and patch stages (tinyml.schedule), and for running element-wise ops in place:
SPATIAL = {
    "elementwise": "each output element reads the same element of every activation operand",
    "pixel": "each output pixel reads the same pixel of its activation operands (channels mix)",
    "window": "each output pixel reads a window of input 0 (filter, stride, dilation, padding)",
    "global": "an output pixel may read any input pixel (or the op is not an image op)",
}

#: How tinyml's quantizer gives an op's float output its int8 quantization (tinyml.quantize):
QUANT_RULES = {
    "range": "the output's calibrated range (a consumer may widen it: see 'shared')",
    "range_pinned": "the output's calibrated range, which the op's semantics pin (no widening)",
    "input": "the input's: the op moves, selects or clamps values without rescaling them",
    "unit": "TFLite's fixed [0, 1) output: scale 1/256, zero point -128",
    "symmetric_unit": "TFLite's fixed [-1, 1) output (TANH, L2_NORMALIZATION): scale 1/128, "
                      "zero point 0",
    "log_probability": "TFLite's fixed LOG_SOFTMAX output (<= 0): scale 16/256, zero point 127",
    "shared": "one quantization for every input and the output (their widest range)",
    "bool": "a BOOL output, never quantized: the int8 inputs keep their own quantization",
    "none": "not quantized by tinyml: folded, evaluated or inserted around quantization",
    # ---- reductions rules
    "index": "an integer index output (ARG_MAX, ARG_MIN): not quantized, keeps its int type",
}

SpatialFn = Callable[["Op"], str]


@dataclass(frozen=True)
class OpSpec:
    kind: str
    attrs: type
    infer: InferFn
    #: Number of tensor inputs: (required, maximum); maximum None means variadic.
    arity: tuple[int, int | None]
    #: A :data:`SPATIAL` key, or a function of the op for ops whose geometry depends on their
    #: attributes (a reduction over channels is "pixel", over the image "global").
    spatial: str | SpatialFn
    #: A :data:`QUANT_RULES` key.
    quantize: str
    macs: MacsFn = _no_macs
    #: Computes constant outputs during shape inference when all inputs are constant.
    evaluate: EvalFn | None = None
    #: Evaluated as soon as input *shapes* are known (SHAPE needs no input data).
    needs_input_data: bool = True

    def __post_init__(self):
        assert callable(self.spatial) or self.spatial in SPATIAL, (self.kind, self.spatial)
        assert self.quantize in QUANT_RULES, (self.kind, self.quantize)

    def geometry(self, op: "Op") -> str:
        """This op's :data:`SPATIAL` kind."""
        return self.spatial(op) if callable(self.spatial) else self.spatial


def _channels_only(axes) -> bool:
    """Whether ``axes`` of a 4-D NHWC tensor name the channel axis alone."""
    return tuple(a % 4 for a in axes) == (3,)


def _mean_spatial(op) -> str:
    return "pixel" if _channels_only(op.attrs.axes) else "global"


def _concat_spatial(op) -> str:
    return "pixel" if _channels_only((op.attrs.axis,)) else "global"



# ---- reductions ops: shape inference and spatial traits

def _infer_arg(op, ins):
    """ARG_MAX/ARG_MIN drop the searched axis; the output holds indices of ``output_type``."""
    x = ins[0]
    if not x.shape:
        raise _fail(op, "index of a scalar")
    axis = normalize_axis(op.attrs.axis, len(x.shape), op)
    return [(tuple(d for i, d in enumerate(x.shape) if i != axis), op.attrs.output_type)]


def _arg_spatial(op) -> str:
    return "pixel" if _channels_only((op.attrs.axis,)) else "global"


def _infer_l2_norm(op, ins):
    if not ins[0].shape:
        raise _fail(op, "L2 normalization of a scalar")
    return _infer_same(op, ins)


def _spec(*args, **kwargs) -> OpSpec:
    return OpSpec(*args, **kwargs)


OP_SPECS: dict[str, OpSpec] = {s.kind: s for s in [
    _spec("CONV_2D", Conv2DAttrs, _infer_conv, (2, 3), "window", "range", _macs_conv),
    _spec("DEPTHWISE_CONV_2D", DepthwiseConv2DAttrs, _infer_conv, (2, 3), "window", "range",
          _macs_depthwise),
    # Made by tinyml.passes after quantization; its skip input is read element by element.
    _spec("CONV_2D_ADD", Conv2DAddAttrs, _infer_conv_add, (3, 4), "window", "none", _macs_conv),
    _spec("FULLY_CONNECTED", FullyConnectedAttrs, _infer_fully_connected, (2, 3), "global",
          "range", _macs_fully_connected),
    _spec("ADD", ElementwiseAttrs, _infer_elementwise, (2, 2), "elementwise", "range"),
    _spec("MUL", ElementwiseAttrs, _infer_elementwise, (2, 2), "elementwise", "range"),
    _spec("AVERAGE_POOL_2D", Pool2DAttrs, _infer_pool, (1, 1), "window", "input"),
    _spec("MAX_POOL_2D", Pool2DAttrs, _infer_pool, (1, 1), "window", "input"),
    _spec("MEAN", ReduceAttrs, _infer_mean, (1, 1), _mean_spatial, "range"),
    _spec("RESHAPE", ReshapeAttrs, _infer_reshape, (1, 2), "global", "input",
          evaluate=_eval_reshape),
    _spec("SOFTMAX", SoftmaxAttrs, _infer_softmax, (1, 1), "pixel", "unit"),
    _spec("CONCATENATION", ConcatenationAttrs, _infer_concat, (1, None), _concat_spatial,
          "shared", evaluate=_eval_concat),
    _spec("PAD", PadAttrs, _infer_pad, (1, 1), "global", "input"),
    _spec("TRANSPOSE", TransposeAttrs, _infer_transpose, (1, 1), "global", "input",
          evaluate=_eval_transpose),
    _spec("RELU", NoAttrs, _infer_same, (1, 1), "elementwise", "range"),
    _spec("RELU6", NoAttrs, _infer_same, (1, 1), "elementwise", "input"),
    _spec("CLIP", ClipAttrs, _infer_same, (1, 1), "elementwise", "range_pinned"),
    _spec("LOGISTIC", NoAttrs, _infer_same, (1, 1), "elementwise", "unit"),
    _spec("HARD_SWISH", NoAttrs, _infer_same, (1, 1), "elementwise", "range_pinned"),
    _spec("QUANTIZE", CastAttrs, _infer_quantize, (1, 1), "elementwise", "none"),
    _spec("DEQUANTIZE", NoAttrs, _infer_dequantize, (1, 1), "elementwise", "none"),
    # Import-only: folded into the convolution before it or evaluated at shape inference.
    _spec("BATCH_NORM", BatchNormAttrs, _infer_batch_norm, (5, 5), "elementwise", "none"),
    _spec("SHAPE", NoAttrs, _infer_shape, (1, 1), "global", "none", evaluate=_eval_shape,
          needs_input_data=False),
    _spec("STRIDED_SLICE", StridedSliceAttrs, _infer_strided_slice, (3, 4), "global", "none",
          evaluate=_eval_strided_slice),
    _spec("PACK", AxisAttrs, _infer_pack, (1, None), "global", "none", evaluate=_eval_pack),
    _spec("GATHER", AxisAttrs, _infer_gather, (2, 2), "global", "none", evaluate=_eval_gather),
    _spec("CAST", CastAttrs, _infer_cast, (1, 1), "elementwise", "none", evaluate=_eval_cast),
    # ---- activations_math ops
    _spec("TANH", NoAttrs, _infer_same, (1, 1), "elementwise", "symmetric_unit"),
    _spec("LEAKY_RELU", LeakyReluAttrs, _infer_same, (1, 1), "elementwise", "range"),
    # Input 1 is the (constant) alpha, broadcast against the input (per channel, usually).
    _spec("PRELU", NoAttrs, _infer_elementwise, (2, 2), "elementwise", "range"),
    _spec("ELU", NoAttrs, _infer_same, (1, 1), "elementwise", "range"),
    _spec("ABS", NoAttrs, _infer_same, (1, 1), "elementwise", "range"),
    _spec("RSQRT", NoAttrs, _infer_same, (1, 1), "elementwise", "range"),
    # Over the last axis, as SOFTMAX.
    _spec("LOG_SOFTMAX", NoAttrs, _infer_softmax, (1, 1), "pixel", "log_probability"),
    # ---- binary ops: element-wise with numpy broadcasting, comparisons, selection
    _spec("SUB", ElementwiseAttrs, _infer_elementwise, (2, 2), "elementwise", "range"),
    # TFLM compares raw int8 codes: inputs and output must share one quantization.
    _spec("MAXIMUM", NoAttrs, _infer_elementwise, (2, 2), "elementwise", "shared"),
    _spec("MINIMUM", NoAttrs, _infer_elementwise, (2, 2), "elementwise", "shared"),
    _spec("SQUARED_DIFFERENCE", NoAttrs, _infer_elementwise, (2, 2), "elementwise", "range"),
    *[_spec(kind, NoAttrs, _infer_compare, (2, 2), "elementwise", "bool",
            evaluate=_eval_bool_family)
      for kind in ("GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL",
                   "LOGICAL_AND", "LOGICAL_OR")],
    _spec("LOGICAL_NOT", NoAttrs, _infer_same, (1, 1), "elementwise", "bool",
          evaluate=_eval_bool_family),
    # TFLM copies raw int8 codes of x or y: both and the output share one quantization.
    _spec("SELECT_V2", NoAttrs, _infer_select, (3, 3), "elementwise", "shared",
          evaluate=_eval_bool_family),
    # ---- reductions ops
    _spec("SUM", ReduceAttrs, _infer_mean, (1, 1), _mean_spatial, "range"),
    # TFLM's int8 REDUCE_MAX/MIN require the output quantized as the input.
    _spec("REDUCE_MAX", ReduceAttrs, _infer_mean, (1, 1), _mean_spatial, "input"),
    _spec("REDUCE_MIN", ReduceAttrs, _infer_mean, (1, 1), _mean_spatial, "input"),
    _spec("ARG_MAX", ArgAttrs, _infer_arg, (1, 1), _arg_spatial, "index"),
    _spec("ARG_MIN", ArgAttrs, _infer_arg, (1, 1), _arg_spatial, "index"),
    # Normalizes along the last axis: channels of one pixel for an NHWC image.
    _spec("L2_NORMALIZATION", NoAttrs, _infer_l2_norm, (1, 1), "pixel", "symmetric_unit"),

    # ---- conv ops (convolution variants)
    _spec("SPACE_TO_BATCH_ND", SpaceToBatchAttrs, _infer_space_to_batch, (1, 1), "global",
          "input"),
    _spec("BATCH_TO_SPACE_ND", BatchToSpaceAttrs, _infer_batch_to_space, (1, 1), "global",
          "input"),
    # An output pixel reads the input pixels whose scattered filter covers it: no "window"
    # of input 0 in the patch scheduler's sense.
    _spec("TRANSPOSE_CONV", TransposeConvAttrs, _infer_transpose_conv, (2, 3), "global",
          "range", _macs_transpose_conv),
]}

#: Comparisons of the binary family (int8 or float inputs, BOOL output).
COMPARISONS = ("GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL")


# ---- data_movement ops -----------------------------------------------------------------------
# Ops that move values without arithmetic (RESIZE_BILINEAR interpolates, in its own integer
# arithmetic); FILL and ZEROS_LIKE only ever make constants.


@dataclass(frozen=True)
class SliceAttrs:
    """SLICE: ``size`` entries of -1 mean "to the end of the dimension"."""

    begin: tuple[int, ...] = ()
    size: tuple[int, ...] = ()


@dataclass(frozen=True)
class SplitAttrs:
    """SPLIT and SPLIT_V along ``axis`` into pieces of ``sizes`` (resolved at import)."""

    axis: int = 0
    sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class ResizeAttrs:
    """RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR of NHWC images to ``size`` (height, width)."""

    size: tuple[int, int] = (1, 1)
    align_corners: bool = False
    half_pixel_centers: bool = False


@dataclass(frozen=True)
class BlockAttrs:
    """DEPTH_TO_SPACE and SPACE_TO_DEPTH (TensorFlow's NHWC, DCR channel order)."""

    block_size: int = 2


@dataclass(frozen=True)
class MirrorPadAttrs:
    """MIRROR_PAD: (before, after) per dimension; REFLECT omits the edge, SYMMETRIC repeats it."""

    pads: tuple[tuple[int, int], ...] = ()
    mode: str = "REFLECT"


@dataclass(frozen=True)
class BroadcastToAttrs:
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class AxesAttrs:
    """REVERSE_V2."""

    axes: tuple[int, ...] = ()


def _infer_slice(op, ins):
    x = ins[0]
    a: SliceAttrs = op.attrs
    if len(a.begin) != len(x.shape) or len(a.size) != len(x.shape):
        raise _fail(op, f"begin {list(a.begin)} / size {list(a.size)} do not match the "
                        f"{len(x.shape)}-D input")
    shape = []
    for d, b, s in zip(x.shape, a.begin, a.size):
        s = d - b if s == -1 else s
        if b < 0 or s < 0 or b + s > d:
            raise _fail(op, f"slice begin {list(a.begin)} size {list(a.size)} out of range "
                            f"for shape {list(x.shape)}")
        shape.append(s)
    return [(tuple(shape), x.dtype)]


def _eval_slice(op, ins):
    (shape, _), = _infer_slice(op, ins)
    index = tuple(slice(b, b + s) for b, s in zip(op.attrs.begin, shape))
    return [np.asarray(ins[0].data)[index]]


def _infer_split(op, ins):
    x = ins[0]
    axis = normalize_axis(op.attrs.axis, len(x.shape), op)
    sizes = op.attrs.sizes
    if any(s < 0 for s in sizes) or sum(sizes) != x.shape[axis]:
        raise _fail(op, f"cannot split dimension {axis} of size {x.shape[axis]} into "
                        f"{list(sizes)}")
    return [(x.shape[:axis] + (s,) + x.shape[axis + 1:], x.dtype) for s in sizes]


def _infer_unpack(op, ins):
    x = ins[0]
    axis = normalize_axis(op.attrs.axis, len(x.shape), op)
    return [(x.shape[:axis] + x.shape[axis + 1:], x.dtype)] * x.shape[axis]


def _infer_resize(op, ins):
    x = ins[0]
    _rank(op, x, 4)
    a: ResizeAttrs = op.attrs
    if a.align_corners and a.half_pixel_centers:
        raise _fail(op, "align_corners and half_pixel_centers are exclusive")
    if min(a.size) <= 0:
        raise _fail(op, f"invalid output size {list(a.size)}")
    return [((x.shape[0], a.size[0], a.size[1], x.shape[3]), x.dtype)]


def _infer_depth_to_space(op, ins):
    x = ins[0]
    _rank(op, x, 4)
    b = op.attrs.block_size
    n, h, w, c = x.shape
    if b < 1 or c % (b * b):
        raise _fail(op, f"{c} channels are not a multiple of block size {b} squared")
    return [((n, h * b, w * b, c // (b * b)), x.dtype)]


def _infer_space_to_depth(op, ins):
    x = ins[0]
    _rank(op, x, 4)
    b = op.attrs.block_size
    n, h, w, c = x.shape
    if b < 1 or h % b or w % b:
        raise _fail(op, f"{h}x{w} image is not a multiple of block size {b}")
    return [((n, h // b, w // b, c * b * b), x.dtype)]


def _infer_mirror_pad(op, ins):
    x = ins[0]
    a: MirrorPadAttrs = op.attrs
    if len(a.pads) != len(x.shape):
        raise _fail(op, f"{len(a.pads)} paddings for a {len(x.shape)}-D input")
    limit = 1 if a.mode == "REFLECT" else 0
    for d, (b, e) in zip(x.shape, a.pads):
        if b < 0 or e < 0 or max(b, e) > d - limit:
            raise _fail(op, f"{a.mode} padding {list(a.pads)} too large for shape "
                            f"{list(x.shape)}")
    return [(tuple(d + b + e for d, (b, e) in zip(x.shape, a.pads)), x.dtype)]


def _infer_broadcast_to(op, ins):
    shape = tuple(op.attrs.shape)
    if len(ins[0].shape) > len(shape) or _broadcast(op, [ins[0].shape, shape]) != shape:
        raise _fail(op, f"cannot broadcast {list(ins[0].shape)} to {list(shape)}")
    return [(shape, ins[0].dtype)]


def _infer_reverse(op, ins):
    for axis in op.attrs.axes:
        normalize_axis(axis, len(ins[0].shape), op)
    return _infer_same(op, ins)


def _infer_gather_nd(op, ins):
    x, idx = ins
    if not idx.shape or idx.shape[-1] > len(x.shape):
        raise _fail(op, f"indices of shape {list(idx.shape)} for a {len(x.shape)}-D input")
    return [(idx.shape[:-1] + x.shape[idx.shape[-1]:], x.dtype)]


def _eval_gather_nd(op, ins):
    x, idx = np.asarray(ins[0].data), np.asarray(ins[1].data)
    flat = idx.reshape(-1, idx.shape[-1])
    rows = [x[tuple(int(v) for v in i)] for i in flat]
    return [np.asarray(rows, x.dtype).reshape(idx.shape[:-1] + x.shape[idx.shape[-1]:])]


def _fill_shape(op, ins) -> tuple[int, ...]:
    dims, value = ins
    if not dims.is_constant:
        raise _fail(op, "dims are not known at compile time")
    if value.size != 1:
        raise _fail(op, "the fill value must be a scalar")
    return tuple(int(d) for d in np.asarray(dims.data).reshape(-1))


def _infer_fill(op, ins):
    return [(_fill_shape(op, ins), ins[1].dtype)]


def _eval_fill(op, ins):
    from tinyml.ir.tensor import DTYPES
    value = np.asarray(ins[1].data).reshape(-1)[0]
    return [np.full(_fill_shape(op, ins), value, DTYPES[ins[1].dtype])]


def _eval_zeros_like(op, ins):
    from tinyml.ir.tensor import DTYPES
    return [np.zeros(ins[0].shape, DTYPES[ins[0].dtype])]


OP_SPECS.update({s.kind: s for s in [
    _spec("SLICE", SliceAttrs, _infer_slice, (1, 1), "global", "input", evaluate=_eval_slice),
    _spec("SPLIT", SplitAttrs, _infer_split, (1, 1), "global", "input"),
    _spec("SPLIT_V", SplitAttrs, _infer_split, (1, 1), "global", "input"),
    _spec("UNPACK", AxisAttrs, _infer_unpack, (1, 1), "global", "input"),
    _spec("RESIZE_NEAREST_NEIGHBOR", ResizeAttrs, _infer_resize, (1, 1), "global", "input"),
    # TFLM interpolates the int8 codes themselves: the output must keep the input's
    # quantization (the converter gives it the input's).
    _spec("RESIZE_BILINEAR", ResizeAttrs, _infer_resize, (1, 1), "global", "input"),
    _spec("DEPTH_TO_SPACE", BlockAttrs, _infer_depth_to_space, (1, 1), "global", "input"),
    _spec("SPACE_TO_DEPTH", BlockAttrs, _infer_space_to_depth, (1, 1), "global", "input"),
    _spec("MIRROR_PAD", MirrorPadAttrs, _infer_mirror_pad, (1, 1), "global", "input"),
    _spec("BROADCAST_TO", BroadcastToAttrs, _infer_broadcast_to, (1, 1), "global", "input"),
    _spec("REVERSE_V2", AxesAttrs, _infer_reverse, (1, 1), "global", "input"),
    _spec("GATHER_ND", NoAttrs, _infer_gather_nd, (2, 2), "global", "input",
          evaluate=_eval_gather_nd),
    _spec("FILL", NoAttrs, _infer_fill, (2, 2), "global", "none", evaluate=_eval_fill),
    _spec("ZEROS_LIKE", NoAttrs, _infer_same, (1, 1), "global", "none",
          evaluate=_eval_zeros_like, needs_input_data=False),
]})
# ---- attention ops ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchMatMulAttrs:
    """BATCH_MATMUL: ``lhs @ rhs`` over broadcast leading (batch) dimensions; ``adj_x`` /
    ``adj_y`` take the operand's last two dimensions transposed (TFLite's option names)."""

    adj_x: bool = False
    adj_y: bool = False


def batch_matmul_dims(op, lhs: Shape, rhs: Shape) -> tuple[Shape, int, int, int]:
    """(broadcast batch shape, rows, depth, cols) of ``op``'s product; fails on bad shapes."""
    a: BatchMatMulAttrs = op.attrs
    if not 2 <= len(lhs) <= 5 or not 2 <= len(rhs) <= 5:
        raise _fail(op, f"operands of rank {len(lhs)} and {len(rhs)}: TFLM takes ranks 2 to 5")
    rows, depth = (lhs[-1], lhs[-2]) if a.adj_x else (lhs[-2], lhs[-1])
    rhs_depth, cols = (rhs[-1], rhs[-2]) if a.adj_y else (rhs[-2], rhs[-1])
    if depth != rhs_depth:
        raise _fail(op, f"inner dimensions differ: {list(lhs)} x {list(rhs)} "
                        f"(adj_x={a.adj_x}, adj_y={a.adj_y})")
    return _broadcast(op, [tuple(lhs[:-2]), tuple(rhs[:-2])]), rows, depth, cols


def _infer_batch_matmul(op, ins):
    batch, rows, _, cols = batch_matmul_dims(op, ins[0].shape, ins[1].shape)
    return [(tuple(batch) + (rows, cols), ins[0].dtype)]


def _macs_batch_matmul(op, ins, outs):
    _, _, depth, _ = batch_matmul_dims(op, ins[0].shape, ins[1].shape)
    return outs[0].size * depth


@dataclass(frozen=True)
class GeluAttrs:
    """GELU: the exact form (erf) or, with ``approximate``, the tanh form."""

    approximate: bool = False


@dataclass(frozen=True)
class TableAttrs:
    """LOOKUP_TABLE: the int8 output code of each int8 input code, indexed by the code's
    byte (code & 0xFF), so 256 entries."""

    values: tuple[int, ...] = (0,) * 256


OP_SPECS.update({s.kind: s for s in [
    _spec("BATCH_MATMUL", BatchMatMulAttrs, _infer_batch_matmul, (2, 2), "global", "range",
          _macs_batch_matmul),
    # Float32 only in TFLM: the converter keeps them in float between a DEQUANTIZE and a
    # QUANTIZE (NEG: LayerNormalization's negated mean), which tinyml.passes.
    # float_island_table turns into a LOOKUP_TABLE.
    *[_spec(kind, NoAttrs, _infer_same, (1, 1), "elementwise", "none")
      for kind in ("NEG", "SQUARE", "SIN", "COS", "FLOOR", "CEIL", "ROUND")],
    # int8 builtins TFLM refuses and LiteRT runs as tables.
    *[_spec(kind, NoAttrs, _infer_same, (1, 1), "elementwise", "range")
      for kind in ("EXP", "LOG", "SQRT")],
    # TFLM has no GELU kernel; LiteRT's int8 table is the oracle.
    _spec("GELU", GeluAttrs, _infer_same, (1, 1), "elementwise", "range"),
    # Made by tinyml's passes: an int8 -> int8 function of one code, evaluated at compile time.
    _spec("LOOKUP_TABLE", TableAttrs, _infer_same, (1, 1), "elementwise", "none"),
]})

@dataclass(frozen=True)
class VariableAttrs:
    """READ_VARIABLE / ASSIGN_VARIABLE: the variable (its key in ``Graph.variables``, the
    TFLite resource's shared name) with its shape and element type, which the value read or
    assigned has (kept here because shape inference sees the op, not the graph)."""

    variable: str = ""
    shape: tuple[int, ...] = ()
    dtype: str = "int8"


def _infer_read_variable(op, ins):
    return [(op.attrs.shape, op.attrs.dtype)]


def _infer_assign_variable(op, ins):
    if tuple(ins[0].shape) != tuple(op.attrs.shape) or ins[0].dtype != op.attrs.dtype:
        raise _fail(op, f"assigns {ins[0].dtype}{list(ins[0].shape)} to variable "
                        f"'{op.attrs.variable}' of {op.attrs.dtype}{list(op.attrs.shape)}")
    return []


OP_SPECS.update({s.kind: s for s in [
    # Streaming state (tinyml.ir.graph.Variable): the value of a variable at this point of
    # the invocation, and its new value for what follows (and for the next invocation).
    _spec("READ_VARIABLE", VariableAttrs, _infer_read_variable, (0, 0), "global", "none"),
    _spec("ASSIGN_VARIABLE", VariableAttrs, _infer_assign_variable, (1, 1), "global", "none"),
]})


@dataclass(frozen=True)
class SvdfAttrs:
    """SVDF (TFLite's singular value decomposition filter, the keyword spotters' layer): its
    rank, its fused activation, and the variable holding its activation state (TFLite's
    variable tensor, input 4: ``[batch, memory_size * num_filters]``), which the op reads and
    updates in place, as TFLM does. ``variable``, ``shape`` and ``dtype`` name it as
    :class:`VariableAttrs` does, so the variable checks and ordering treat it alike.

    TFLM's integer kernel (``EvalIntegerSvdfReference``) ignores ``activation``: the output
    is only clamped to int8, whatever the options say; the IR keeps the field for import and
    float semantics."""

    rank: int = 1
    activation: str = "NONE"
    variable: str = ""
    shape: tuple[int, ...] = ()
    dtype: str = "int16"
    #: The state's quantization (the variable's, repeated for the kernels, which see the op).
    state_scale: float = 0.0
    state_zero_point: int = 0


def _infer_svdf(op, ins):
    """inputs: x [batch, input_size], weights_feature [filters, input_size], weights_time
    [filters, memory], bias [units] (filters = units * rank); output [batch, units]."""
    x, feature, time = ins[0], ins[1], ins[2]
    for t, what in ((x, "input"), (feature, "feature weights"), (time, "time weights")):
        _rank(op, t, 2, what)
    rank = op.attrs.rank
    filters, memory = feature.shape[0], time.shape[1]
    if rank < 1 or filters % rank:
        raise _fail(op, f"{filters} filters are not a multiple of rank {rank}")
    if feature.shape[1] != x.shape[1] or time.shape[0] != filters:
        raise _fail(op, f"input {list(x.shape)}, feature weights {list(feature.shape)} and "
                        f"time weights {list(time.shape)} do not match")
    units = filters // rank
    if len(ins) > 3 and ins[3] is not None and tuple(ins[3].shape) != (units,):
        raise _fail(op, f"bias of shape {list(ins[3].shape)}, expected [{units}]")
    if tuple(op.attrs.shape) != (x.shape[0], memory * filters):
        raise _fail(op, f"state variable '{op.attrs.variable}' is {list(op.attrs.shape)}, "
                        f"expected [{x.shape[0]}, {memory * filters}] (batch, memory x filters)")
    return [((x.shape[0], units), x.dtype)]


def _macs_svdf(op, ins, outs):
    batch, filters, memory = ins[0].shape[0], ins[1].shape[0], ins[2].shape[1]
    return batch * filters * (ins[0].shape[1] + memory)


OP_SPECS.update({s.kind: s for s in [
    _spec("SVDF", SvdfAttrs, _infer_svdf, (3, 4), "global", "none", _macs_svdf),
]})

# ---- sequence ops -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LstmAttrs:
    """UNIDIRECTIONAL_SEQUENCE_LSTM, the converter's full-int8 LSTM (TFLM's integer LSTM:
    int8 input, output and hidden state, int16 cell state, int16 gates).

    Inputs: the sequence, then TFLite's weights and biases in TFLite's order (input-to-input,
    -forget, -cell, -output weights; recurrent-to-input, -forget, -cell, -output weights;
    input, forget, cell, output gate biases). The hidden and cell states are variables
    (``Graph.variables``) the op reads and updates in place, as TFLM's variable tensors: they
    carry over to the next invocation. Their quantizations are kept here because the kernel
    needs them and sees the op, not the graph (the graph checks they agree)."""

    hidden: str = ""
    cell: str = ""
    hidden_shape: tuple[int, ...] = ()
    cell_shape: tuple[int, ...] = ()
    hidden_scale: float = 1.0
    hidden_zero_point: int = 0
    cell_scale: float = 1.0
    #: TFLite's cell_clip (0: none).
    cell_clip: float = 0.0
    time_major: bool = False
    #: The cell gate's nonlinearity: "TANH" (TFLM's integer LSTM also runs sigmoid, which
    #: TFLite's ActivationFunctionType cannot name).
    activation: str = "TANH"


def lstm_sizes(op, ins) -> tuple[int, int, int, int]:
    """(batch, time steps, input features, units) of an LSTM, checking its weights."""
    x = ins[0]
    a: LstmAttrs = op.attrs
    _rank(op, x, 3)
    time, batch = (x.shape[0], x.shape[1]) if a.time_major else (x.shape[1], x.shape[0])
    features = x.shape[2]
    units = ins[1].shape[0] if len(ins[1].shape) == 2 else -1
    for i, t in enumerate(ins[1:], start=1):
        want = (units, features) if i <= 4 else (units, units) if i <= 8 else (units,)
        if t is None or tuple(t.shape) != want:
            raise _fail(op, f"input {i} has shape {list(t.shape) if t else None}, expected "
                            f"{list(want)}")
    for what, shape in (("hidden", a.hidden_shape), ("cell", a.cell_shape)):
        if int(np.prod(shape, dtype=np.int64)) != batch * units:
            raise _fail(op, f"{what} state of shape {list(shape)} does not hold {batch} x "
                            f"{units} values")
    return batch, time, features, units


def _infer_lstm(op, ins):
    batch, time, _, units = lstm_sizes(op, ins)
    shape = (time, batch, units) if op.attrs.time_major else (batch, time, units)
    return [(shape, ins[0].dtype)]


def _macs_lstm(op, ins, outs):
    batch, time, features, units = lstm_sizes(op, ins)
    return batch * time * 4 * units * (features + units)


OP_SPECS.update({s.kind: s for s in [
    _spec("UNIDIRECTIONAL_SEQUENCE_LSTM", LstmAttrs, _infer_lstm, (13, 13), "global", "none",
          _macs_lstm),
]})


#: Ops with an effect beyond their outputs (they write a variable): never dead, never
#: reordered across a READ_VARIABLE of the same variable (``Graph.ordering_edges``).
SIDE_EFFECT_OPS = ("ASSIGN_VARIABLE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "SVDF")
#: Ops reading or writing variables, whose relative order per variable is fixed.
VARIABLE_OPS = ("READ_VARIABLE", "ASSIGN_VARIABLE", "UNIDIRECTIONAL_SEQUENCE_LSTM",
                "SVDF")


def variable_uses(op) -> list[tuple[str, tuple[int, ...], str, bool]]:
    """The variables ``op`` uses: (name, shape, dtype, whether it writes it) each."""
    a = op.attrs
    if op.kind in ("READ_VARIABLE", "ASSIGN_VARIABLE"):
        return [(a.variable, tuple(a.shape), a.dtype, op.kind == "ASSIGN_VARIABLE")]
    if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        return [(a.hidden, tuple(a.hidden_shape), "int8", True),
                (a.cell, tuple(a.cell_shape), "int16", True)]
    if op.kind == "SVDF":  # its activation state, updated in place
        return [(a.variable, tuple(a.shape), a.dtype, True)]
    return []


# STRIDED_SLICE and GATHER also run on activations (Cropping2D, tf.gather with constant
# indices): their values move without rescaling.
OP_SPECS["STRIDED_SLICE"] = dataclasses.replace(OP_SPECS["STRIDED_SLICE"], quantize="input")
OP_SPECS["GATHER"] = dataclasses.replace(OP_SPECS["GATHER"], quantize="input")


def kinds_where(spatial: str | None = None, quantize: str | None = None,
                arity: tuple[int, int | None] | None = None) -> tuple[str, ...]:
    """Op kinds whose (attribute-independent) traits match: the tables other modules need."""
    return tuple(k for k, s in OP_SPECS.items()
                 if (spatial is None or s.spatial == spatial)
                 and (quantize is None or s.quantize == quantize)
                 and (arity is None or s.arity == arity))


SUPPORTED_OPS = tuple(OP_SPECS)
