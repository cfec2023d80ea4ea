"""Lowering: one :class:`KernelCall` per op, the bridge from the IR to the portable C kernels.

Why a separate step: the C kernels (``firmware/kernels``) never derive a constant. Every
requantization multiplier, shift, activation range and fixed-point parameter is computed here
with the numpy reference's own functions (``tinyml.reference``), so generated C and reference
interpreter cannot drift apart; the C side only reads plain integers and constant arrays.
Lowering also picks the kernel specialization (a 1x1 convolution, a 3x3 depthwise
convolution, element-wise ADD without broadcasting), lays constant arrays out the way the
chosen kernel reads them, and tells the memory planner how much scratch a kernel needs and
which input it may overwrite with its output. Scratch is the one thing that depends on the
target: the Cortex-M DSP kernels (firmware/kernels/cortex_m) that replace some portable ones
may need scratch where the portable kernel needs none (``lower(graph, target)``).

int8 graphs compile, and TFLite's 16x8 graphs (int16 activations with zero point 0, int8
weights, int64 conv/FC bias) for the ops with ``_s16`` kernels (see the "16x8" section). A
float computation or an op without a C kernel raise a :class:`~tinyml.errors.TinymlError`
naming the op and the layer.

Exact arithmetic rearrangements: where every tap of a window lies inside the image (1x1
convolutions, fully connected layers, depthwise convolutions over a zero-point-padded plane),
``sum((x + input_offset) * w) == sum(x * w) + input_offset * sum(w)`` holds in wrapping int32
arithmetic, so the constant part is folded into the bias and the kernels multiply raw int8
values; results stay bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyml.codegen.int4_layout import pack_int4_rows
from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.ops import batch_matmul_dims, normalize_axis
from tinyml.codegen import sparse, write_order
from tinyml.reference.fixedpoint import (activation_range, per_channel_multipliers,
                                         per_tensor_fc_multiplier, wrap_int32)
from tinyml.reference.kernels import KernelCall as ReferenceCall
from tinyml.reference.kernels.activations import (hard_swish_int8_params, logistic_int8_params,
                                                  relu6_int8_bounds, relu_int8_params,
                                                  sigmoid_family_int16_params)
from tinyml.reference.kernels.binary import (COMPARISON_LEFT_SHIFT, SQUARED_DIFFERENCE_LEFT_SHIFT,
                                            SUB_LEFT_SHIFT, comparison_multipliers,
                                            squared_difference_multipliers, sub_multipliers)
from tinyml.reference.kernels.elementwise import (ADD_LEFT_SHIFT, add_left_shift, add_multipliers,
                                                  mul_multiplier)
from tinyml.reference.kernels.fully_connected import check_bias_scale
from tinyml.reference.kernels.int4 import check_int4_weights
from tinyml.reference.kernels.pooling import mean_multiplier
from tinyml.reference.kernels.quantize import requantize_multiplier
from tinyml.reference.kernels.reductions import (  # reductions family
    check_l2_norm, check_same_quantization, sum_multiplier)
from tinyml.reference.kernels.softmax import (softmax_int16_params, softmax_int16_tables,
                                              softmax_int8_params)
from tinyml.targets import Target

#: Dimensions the C kernels iterate over (shapes are padded with leading 1s up to this).
MAX_DIMS = 4
#: The kernel directory (firmware/kernels/) of the Cortex-M DSP kernels.
DSP_KERNELS = "cortex_m"

_CTYPES = {"int8_t": np.int8, "int16_t": np.int16, "int32_t": np.int32, "uint16_t": np.uint16,
           "int64_t": np.int64, "float": np.float32}


@dataclass
class ConstArray:
    """A constant emitted into weights.c (const, flash)."""

    name: str              # C identifier, unique within one lowered graph
    ctype: str             # "int8_t", "int32_t", "int16_t", "uint16_t" or "float"
    values: np.ndarray     # flattened, in the layout the kernel reads


@dataclass
class KernelCall:
    """How to run one op: ``function(&params, args...)``.

    ``args`` name the call arguments after ``&params``: ``"in:<tensor>"`` (an input; it may be
    a constant tensor of the graph, e.g. ADD's constant operand), ``"out:<tensor>"`` or
    ``"scratch"`` (``scratch_bytes`` bytes of arena, contents undefined on entry; a null
    pointer when ``scratch_bytes`` is 0, e.g. the convolutions on targets whose kernels need
    none).
    ``in_place`` is (index into ``op.inputs``, index into ``op.outputs``): the kernel is
    correct when that output is given the very buffer of that input. ``overlap`` is (input
    index, output index, delta): the kernel is also correct when that output starts at most
    ``delta`` bytes above that input's start (inside its bytes when negative and small), by
    the read/write order of :mod:`tinyml.codegen.write_order`.
    """

    op: Op
    function: str
    params_type: str
    params: dict[str, int | float | ConstArray | dict]
    args: list[str]
    scratch_bytes: int = 0
    in_place: tuple[int, int] | None = None
    #: How the kernel runs on one patch (see :class:`Lowering`); None: whole tensors only.
    geometry: str | None = None
    #: How the layer's weights are stored ("dense int8", "sparse4", ... see
    #: tinyml.codegen.flash); None: the layer has no weight filter.
    weight_format: str | None = None
    overlap: tuple[int, int, int] | None = None
    #: (input index, output index, delta): the kernel is also correct when that output starts
    #: at least ``delta`` (> 0) bytes above that input's start, which it then walks backward
    #: (write_order.conv_delta_above); None: only ``overlap``'s side.
    overlap_above: tuple[int, int, int] | None = None

    def fields(self) -> list[tuple[str, int | float | ConstArray]]:
        """The struct's fields in order as (C designator, value). A dict in ``params`` is a
        nested struct: its fields are named through it (``conv.input_h``), as a C99
        designated initializer names them."""
        return list(_flatten(self.params))

    def designator(self, field: str) -> str:
        """Where ``field`` is in the struct: ``input_h``, or ``conv.input_h`` when a nested
        struct holds it."""
        for path, _ in self.fields():
            if path.rpartition(".")[2] == field:
                return path
        raise KeyError(f"{self.params_type} has no field {field}")

    @property
    def arrays(self) -> list[ConstArray]:
        """The constant arrays among ``params`` (what weights.c must define)."""
        return [v for _, v in self.fields() if isinstance(v, ConstArray)]


def _flatten(params: dict, prefix: str = ""):
    for key, value in params.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@dataclass(frozen=True)
class Lowering:
    """How one op kind lowers: the function, and every C kernel it may call with that kernel's
    patch geometry (how tinyml.schedule.patches runs it on one patch: "window", "plane",
    "pointwise", "elementwise"; None: it runs on whole tensors only)."""

    lower: Callable[["_Context"], KernelCall]
    kernels: dict[str, str | None]


_LOWERERS: dict[str, Lowering] = {}


def lowers(*kinds: str, kernels: dict[str, str | None]):
    """Register a function as the lowering of op ``kinds``, declaring the C kernels it calls."""
    def register(fn):
        for kind in kinds:
            assert kind not in _LOWERERS, kind
            _LOWERERS[kind] = Lowering(fn, dict(kernels))
        return fn
    return register


def lowering_for(kind: str) -> Lowering | None:
    """The registered lowering of op ``kind``, if it compiles."""
    return _LOWERERS.get(kind)


def c_kernels() -> dict[str, str | None]:
    """Every C kernel a lowering may call, with its patch geometry."""
    return {name: geometry for lowering in _LOWERERS.values()
            for name, geometry in lowering.kernels.items()}


def lower(graph: Graph, target: Target | None = None, *,
          small_blocks: bool = False) -> list[KernelCall]:
    """One KernelCall per op of ``graph`` (in ``graph.ops`` order).

    ``target`` (None: the host) matters only for scratch: a target whose kernels include the
    Cortex-M DSP ones (``uses_dsp_kernels``) gets the scratch those kernels need; parameters,
    constant arrays and calls are the same for every target.

    Ops whose outputs are all constant (shape-only ops evaluated at shape inference) need no
    code and get no call.

    ``small_blocks``: the DSP convolutions take output pixels 4 at a time where they would
    take 8 (half the scratch, a few more instructions; see :func:`conv_block_cap`).
    """
    dsp = uses_dsp_kernels(target)
    calls: list[KernelCall] = []
    for op in graph.ops:
        outs = graph.op_outputs(op)
        if outs and all(t.is_constant for t in outs):
            continue
        lowerer = _LOWERERS.get(op.kind)
        if lowerer is None:
            raise UnsupportedOpError(op.kind, op.name, sorted(_LOWERERS),
                                     detail="no C kernel for this op")
        ctx = _Context(graph, op, f"k{len(calls)}", dsp, small_blocks)
        for t in graph.op_outputs(op) + [t for t in graph.op_inputs(op) if t is not None]:
            if t.size == 0:
                raise TinymlError(f"layer '{op.name}' ({op.kind}): tensor '{t.name}' is empty "
                                  f"(shape {list(t.shape)})")
        calls.append(lowerer.lower(ctx))
    return calls


def uses_dsp_kernels(target: Target | None) -> bool:
    """Whether ``target`` builds the Cortex-M DSP kernels (``firmware/kernels/cortex_m``),
    which override portable files and may need scratch the portable ones do not."""
    return target is not None and bool(target.dsp) and DSP_KERNELS in target.kernels


def supported_ops() -> list[str]:
    """Op kinds lowering knows (for messages and docs)."""
    return sorted(_LOWERERS)


# --------------------------------------------------------------------------------------------
# Shared helpers


class _Context:
    """The op being lowered, its tensors, and a namer for its constant arrays."""

    def __init__(self, graph: Graph, op: Op, prefix: str, dsp: bool = False,
                 small_blocks: bool = False):
        self.graph = graph
        self.op = op
        self.prefix = prefix
        self.dsp = dsp  # the target runs the Cortex-M DSP kernels
        self.small_blocks = small_blocks  # lower(small_blocks=True)
        self.ins = graph.op_inputs(op)
        self.outs = graph.op_outputs(op)

    @property
    def out(self) -> Tensor:
        return self.outs[0]

    def array(self, field_name: str, ctype: str, values) -> ConstArray:
        dtype = _CTYPES[ctype]
        values = np.asarray(values).reshape(-1)
        if dtype is not np.float32:
            info = np.iinfo(dtype)
            as_int = values.astype(np.int64)
            if as_int.size and (as_int.min() < info.min or as_int.max() > info.max):
                raise AssertionError(f"{self.prefix}_{field_name}: values outside {ctype}")
        return ConstArray(f"{self.prefix}_{field_name}", ctype, values.astype(dtype))

    def fail(self, detail: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.op.kind, self.op.name, detail=detail)

    def error(self, message: str) -> TinymlError:
        return TinymlError(f"layer '{self.op.name}' ({self.op.kind}): {message}")

    def int8(self, t: Tensor, role: str) -> Tensor:
        """Check that ``t`` is an int8 tensor with per-tensor quantization."""
        if t.dtype == "int8":
            if t.quant is None:
                raise self.error(f"{role} '{t.name}' is int8 but not quantized")
            if t.quant.per_channel:
                raise self.fail(f"{role} '{t.name}' is quantized per channel (activations must "
                                f"be per-tensor)")
            return t
        if t.dtype in ("float32", "float16"):
            raise self.fail(f"{role} '{t.name}' is {t.dtype}: only int8-quantized models "
                            f"compile to C (quantize the model first)")
        if t.dtype == "int16":
            raise self.fail(f"{role} '{t.name}' is int16: only int8 activations compile to C")
        raise self.fail(f"{role} '{t.name}' is {t.dtype}: only int8 activations compile to C")

    def constant(self, t: Tensor | None, role: str) -> np.ndarray:
        if t is None or not t.is_constant:
            raise self.fail(f"{role} must be a constant")
        return np.asarray(t.data)

    def weights(self, t: Tensor, axis: int, int4: bool = False) -> np.ndarray:
        """int8 quantized constant weights, per tensor or per channel along ``axis``; with
        ``int4``, int4 ones too (symmetric, values in [-8, 7])."""
        data = self.constant(t, "the weights")
        if int4 and t.dtype == "int4":
            check_int4_weights(self.reference_call(), axis)
            return data.astype(np.int64)
        if t.dtype != "int8" or t.quant is None:
            raise self.fail(f"int8 input needs int8 quantized weights, got {t.dtype}")
        if t.quant.per_channel and t.quant.axis != axis:
            raise self.fail(f"weights quantized along axis {t.quant.axis}, TFLM expects "
                            f"axis {axis}")
        return data.astype(np.int64)

    def bias(self, index: int, channels: int) -> np.ndarray:
        """The int32 bias (zeros when the op has none), as int64."""
        t = self.ins[index] if len(self.ins) > index else None
        if t is None:
            return np.zeros(channels, np.int64)
        data = self.constant(t, "the bias").astype(np.int64).reshape(-1)
        if data.size != channels:
            raise self.error(f"bias '{t.name}' has {data.size} entries, expected {channels}")
        if data.min() < -(1 << 31) or data.max() >= (1 << 31):
            raise self.fail(f"bias '{t.name}' does not fit int32")
        return data

    def reference_call(self) -> ReferenceCall:
        """The reference kernels' view of this op, for their parameter checks."""
        return ReferenceCall(self.op, [None] * len(self.ins), self.ins, self.outs)


def _call(ctx: _Context, function: str, params_type: str, params: dict, args: list[str],
          scratch_bytes: int = 0, in_place: tuple[int, int] | None = None,
          weight_format: str | None = None,
          overlap: tuple[int, int, int] | None = None,
          overlap_above: tuple[int, int, int] | None = None) -> KernelCall:
    declared = _LOWERERS[ctx.op.kind].kernels
    if function not in declared:
        raise AssertionError(f"the lowering of {ctx.op.kind} calls {function}, which it does not "
                             f"declare (lowers(..., kernels=...))")
    return KernelCall(ctx.op, function, params_type, _clean(params), args, int(scratch_bytes),
                      in_place, declared[function], weight_format,
                      None if overlap is None else tuple(int(v) for v in overlap),
                      None if overlap_above is None else tuple(int(v) for v in overlap_above))


def _clean(params: dict) -> dict:
    """Python ints for numpy integers (C literals), nested structs alike."""
    return {k: _clean(v) if isinstance(v, dict) else
            v if isinstance(v, (ConstArray, float)) else int(v) for k, v in params.items()}


def _io_args(ctx: _Context, inputs: list[int] | None = None) -> list[str]:
    """"in:" for the given op inputs (default: the first) and "out:" for the outputs."""
    inputs = [0] if inputs is None else inputs
    return ([f"in:{ctx.op.inputs[i]}" for i in inputs] +
            [f"out:{name}" for name in ctx.op.outputs])


def _multiplier_arrays(ctx: _Context, multiplier, shift) -> dict:
    return {"multiplier": ctx.array("multiplier", "int32_t", multiplier),
            "shift": ctx.array("shift", "int32_t", shift)}


def _pad_shape(shape, rank: int = MAX_DIMS) -> list[int]:
    return [1] * (rank - len(shape)) + [int(d) for d in shape]


def _contiguous_strides(shape) -> list[int]:
    strides, step = [], 1
    for d in reversed(list(shape)):
        strides.append(step)
        step *= int(d)
    return strides[::-1]


def _merge_runs(dims: list[int], keys: list) -> tuple[list[int], list]:
    """Merge adjacent dimensions with equal keys (their product becomes one dimension);
    dimensions of size 1 are dropped. Row-major order makes merged runs contiguous."""
    merged: list[int] = []
    merged_keys: list = []
    for d, key in zip(dims, keys):
        if d == 1:
            continue
        if merged and merged_keys[-1] == key:
            merged[-1] *= d
        else:
            merged.append(d)
            merged_keys.append(key)
    return merged, merged_keys


def _too_many_dims(ctx: _Context, what: str, dims: list[int]) -> TinymlError:
    return ctx.fail(f"{what} needs {len(dims)} dimensions after merging, the C kernel "
                    f"handles {MAX_DIMS}")


# --------------------------------------------------------------------------------------------
# Convolutions and fully connected


def _conv_geometry(ctx: _Context, x_t: Tensor, w_t: Tensor, out: Tensor) -> dict:
    a = ctx.op.attrs
    n, h, w, c = x_t.shape
    cout, kh, kw, cin = w_t.shape
    _, oh, ow, _ = out.shape
    if cin <= 0 or c % cin or cout % (c // cin):
        raise ctx.fail(f"{c} input channels do not split into groups of {cin}")
    return dict(batches=n, input_h=h, input_w=w, input_c=c, output_h=oh, output_w=ow,
                output_c=cout, filter_h=kh, filter_w=kw, filter_c=cin, stride_h=a.stride[0],
                stride_w=a.stride[1], dilation_h=a.dilation[0], dilation_w=a.dilation[1],
                pad_top=a.padding[0], pad_left=a.padding[2])


def _conv_params(ctx: _Context, x_t: Tensor, w_t: Tensor, bias_index: int, conv_out_scale: float,
                 conv_out_zero_point: int, fold_offset: bool) -> dict:
    """The tinyml_conv2d_params fields; ``fold_offset`` folds input_offset into the bias."""
    geometry = _conv_geometry(ctx, x_t, w_t, ctx.out)
    w = ctx.weights(w_t, 0, int4=True)
    cout = w.shape[0]
    bias = ctx.bias(bias_index, cout)
    input_offset = -x_t.zero_point()
    if fold_offset:
        bias = wrap_int32(bias + input_offset * w.reshape(cout, -1).sum(axis=1))
    multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, conv_out_scale,
                                                cout)
    lo, hi = activation_range(ctx.op.attrs.activation, conv_out_scale, conv_out_zero_point)
    return dict(geometry, input_offset=input_offset, output_offset=conv_out_zero_point,
                act_min=lo, act_max=hi, filter=_filter_array(ctx, w_t, w.reshape(cout, -1)),
                bias=ctx.array("bias", "int32_t", bias), **_multiplier_arrays(ctx, multiplier,
                                                                             shift),
                block=0)


def _is_int4(w_t: Tensor) -> bool:
    """Whether the filter is int4: the layer then calls the ``_s4`` kernel of its function."""
    return w_t.dtype == "int4"


def _s4(function: str, w_t: Tensor) -> str:
    """``tinyml_<op>_s8`` or, for an int4 filter, its packed-int4 twin ``tinyml_<op>_s4``."""
    return function[:-3] + "_s4" if _is_int4(w_t) else function


def _filter_array(ctx: _Context, w_t: Tensor, rows: np.ndarray) -> ConstArray:
    """The filter as its kernel reads it: int8 rows, or int4 rows packed two values to a byte
    (tinyml.codegen.int4_layout), which is what weights.c stores and weights_bytes counts."""
    if _is_int4(w_t):
        return ctx.array("filter", "int8_t", pack_int4_rows(rows))
    return ctx.array("filter", "int8_t", rows)


#: The DSP convolutions take output pixels 8 at a time when a window has at most this many
#: values, else 4 (CONV_WIDE_K in firmware/kernels/cortex_m/conv.c).
DSP_CONV_WIDE_K = 256


def conv_scratch_bytes(ctx: _Context, w_t: Tensor, add: bool = False, block: int = 0) -> int:
    """Scratch of the CONV_2D / CONV_2D_ADD kernels: none for the portable ones; the DSP
    kernels (firmware/kernels/cortex_m/conv.c) copy the windows (K = filter_h * filter_w *
    filter_c values) of a block of N output pixels there as int16, 2 * N * K bytes (N = 8, or
    4 when K > DSP_CONV_WIDE_K; ``block`` when it is 7 or 4, see :func:`conv_block_cap`), plus 3 to
    align them to a word; CONV_2D_ADD adds two tables of 256 int32 (its ADD's rescaled
    operands)."""
    if not ctx.dsp:
        return 0
    _, kh, kw, cin = w_t.shape
    k = kh * kw * cin
    pixels = block if block in (4, 7) else 8 if k <= DSP_CONV_WIDE_K else 4
    return 2 * pixels * k + 3 + (2 * 256 * 4 if add else 0)


def conv_block_cap(ctx: _Context, w_t: Tensor, pixels: int) -> int:
    """The ``block`` parameter of an int8 CONV_2D: 7 when the DSP kernels would take output
    pixels 8 at a time (write_order.dsp_conv_block) and blocks of 7 compute fewer pixels
    (125 pixels: 18 blocks of 7 compute 126, 16 blocks of 8 compute 128), for windows of a
    multiple of four values (conv_mac7 has no tail loop); else 0 (the kernels' own rule).
    Why: the blocks are the kernel's scratch, 2 * N * K bytes on top of the layer's tensors
    where those fill the arena (kws's 1x1 convolutions: 1,024 B of block on 8,000 B of
    tensors, 896 B with 7), and the pixels 8 would waste pay for the 2 % more instructions
    per MAC of 7.

    4 for any window when lowering was asked for small blocks (``lower(small_blocks=True)``:
    the compiler tries it under ``--optimize memory`` and keeps it when the arena shrinks)."""
    _, kh, kw, cin = w_t.shape
    k = kh * kw * cin
    if not ctx.dsp or _is_int4(w_t) or write_order.dsp_conv_block(k, pixels) != 8:
        return 0
    if ctx.small_blocks:
        return 4
    if k % 4:
        return 0
    return 7 if -(-pixels // 7) * 7 < -(-pixels // 8) * 8 else 0


@lowers("CONV_2D", kernels={"tinyml_conv2d_s8": "window", "tinyml_conv2d_1x1_s8": "pointwise",
                            "tinyml_conv2d_sparse_s8": "window",
                            "tinyml_conv2d_1x1_sparse_s8": "pointwise",
                            "tinyml_conv2d_s4": "window", "tinyml_conv2d_1x1_s4": "pointwise",
                            "tinyml_fully_connected_s8": None,
                            "tinyml_fully_connected_s4": None,
                            "tinyml_conv2d_s16": None})
def _lower_conv2d(ctx: _Context) -> KernelCall:
    if _is_16x8(ctx):
        return _lower_conv2d_s16(ctx)
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    w_t = ctx.ins[1]
    a = ctx.op.attrs
    pointwise = (w_t.shape[1] == w_t.shape[2] == 1 and not any(a.padding)
                 and w_t.shape[3] == x_t.shape[3])
    if w_t.shape[3] == x_t.shape[3]:  # one group: the sparse kernels' case
        call = _sparse_conv2d(ctx, x_t, w_t, out, pointwise)
        if call is not None:
            return call
    params = _conv_params(ctx, x_t, w_t, 2, out.scale(), out.zero_point(), pointwise)
    if pointwise and x_t.size == x_t.shape[3]:
        return _pointwise_as_fully_connected(ctx, params, w_t)
    function = _s4("tinyml_conv2d_1x1_s8" if pointwise else "tinyml_conv2d_s8", w_t)
    params["block"] = block = conv_block_cap(ctx, w_t, out.shape[1] * out.shape[2])
    # Below the input (or in place) the kernels go forward, above its first byte backward
    # (conv.c's conv_backward): the forward side stops at 0.
    geometry = (params, x_t.shape[3], out.shape[3], w_t.shape[3], ctx.dsp)
    delta = min(0, write_order.conv_delta(*geometry))
    return _call(ctx, function, "tinyml_conv2d_params", params, _io_args(ctx) + ["scratch"],
                 scratch_bytes=conv_scratch_bytes(ctx, w_t, block=block),
                 weight_format=_dense_format(w_t), overlap=(0, 0, delta),
                 overlap_above=(0, 0, write_order.conv_delta_above(*geometry)))


def _pointwise_as_fully_connected(ctx: _Context, params: dict, w_t: Tensor) -> KernelCall:
    """A 1x1 CONV_2D of one input pixel (a classifier head after global pooling) is a fully
    connected layer with per-channel multipliers: the same sums, bias (input offset folded
    in), requantization and clamp. Why: the convolution kernels take output pixels in blocks
    of 4 or 8, so one pixel would pay for four; the fully connected kernel is made for one
    row."""
    fc = dict(batches=1, input_depth=params["filter_c"], output_depth=params["output_c"],
              filter_offset=0, output_offset=params["output_offset"],
              act_min=params["act_min"], act_max=params["act_max"], filter=params["filter"],
              bias=params["bias"], multiplier=params["multiplier"], shift=params["shift"])
    return _call(ctx, _s4("tinyml_fully_connected_s8", w_t), "tinyml_fully_connected_params",
                 fc, _io_args(ctx) + ["scratch"],
                 scratch_bytes=fc_scratch_bytes(ctx, params["filter_c"]),
                 weight_format=_dense_format(w_t))


def _dense_format(w_t: Tensor) -> str:
    """The weight format of a dense filter (tinyml.flash): int8, or int4 packed."""
    return "dense int4" if _is_int4(w_t) else "dense int8"


def _sparse_params(ctx: _Context, rows: "sparse.SparseRows") -> dict:
    return dict(value_bits=rows.value_bits,
                row_entries=ctx.array("row_entries", "uint16_t", rows.row_entries),
                stream=ctx.array("stream", "int8_t", rows.stream))


def _sparse_conv2d(ctx: _Context, x_t: Tensor, w_t: Tensor, out: Tensor,
                   pointwise: bool) -> KernelCall | None:
    """CONV_2D (one group) on sparse rows, when they take less flash than the dense filter
    (tinyml.codegen.sparse.choose); None otherwise. The input offset is folded into the bias
    for every filter: the generic kernel fills the taps outside the image with the input
    zero point, whose products the folded term cancels."""
    w = ctx.weights(w_t, 0, int4=True)
    cout = w.shape[0]
    matrix = w.reshape(cout, -1)
    rows = sparse.choose(matrix, w_t.dtype, ctx.dsp)
    if rows is None:
        return None
    geometry = _conv_geometry(ctx, x_t, w_t, out)
    del geometry["filter_c"]
    input_offset = -x_t.zero_point()
    bias = wrap_int32(ctx.bias(2, cout) + input_offset * matrix.sum(axis=1))
    multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, out.scale(), cout)
    lo, hi = activation_range(ctx.op.attrs.activation, out.scale(), out.zero_point())
    params = dict(geometry, input_zero_point=x_t.zero_point(), output_offset=out.zero_point(),
                  act_min=lo, act_max=hi, **_sparse_params(ctx, rows),
                  bias=ctx.array("bias", "int32_t", bias),
                  **_multiplier_arrays(ctx, multiplier, shift))
    function = "tinyml_conv2d_1x1_sparse_s8" if pointwise else "tinyml_conv2d_sparse_s8"
    scratch = 0 if pointwise else int(matrix.shape[1])
    return _call(ctx, function, "tinyml_conv2d_sparse_params", params,
                 _io_args(ctx) + ["scratch"], scratch_bytes=scratch, weight_format=rows.format)


@lowers("CONV_2D_ADD", kernels={"tinyml_conv2d_add_s8": "window",
                                "tinyml_conv2d_add_s4": "window"})
def _lower_conv2d_add(ctx: _Context) -> KernelCall:
    from tinyml.reference.kernels.fused import conv_add_parts
    conv, mid, add = conv_add_parts(ctx.op, ctx.ins, ctx.out)
    x_t = ctx.int8(ctx.ins[0], "input")
    skip_t = ctx.int8(ctx.ins[2], "skip input")
    out = ctx.int8(ctx.out, "output")
    ctx.int8(mid, "convolution result")
    params = dict(conv=_conv_params(ctx, x_t, ctx.ins[1], 3, mid.scale(), mid.zero_point(),
                                    False))
    first, second = ((skip_t, mid) if ctx.op.attrs.skip_first else (mid, skip_t))
    pair1, pair2, (mo, so) = add_multipliers(first.scale(), second.scale(), out.scale())
    conv_pair, skip_pair = (pair2, pair1) if ctx.op.attrs.skip_first else (pair1, pair2)
    lo, hi = activation_range(add.attrs.activation, out.scale(), out.zero_point())
    params.update(add_skip_first=1 if ctx.op.attrs.skip_first else 0,
                  add_conv_offset=-mid.zero_point(), add_skip_offset=-skip_t.zero_point(),
                  add_left_shift=ADD_LEFT_SHIFT, add_conv_multiplier=conv_pair[0],
                  add_conv_shift=conv_pair[1], add_skip_multiplier=skip_pair[0],
                  add_skip_shift=skip_pair[1], add_output_multiplier=mo, add_output_shift=so,
                  add_output_offset=out.zero_point(), add_act_min=lo, add_act_max=hi)
    # Over the skip input in place; else (the skip lives on) over the convolution's input at
    # the distance the convolution's order allows (the ADD reads the skip element at the
    # output's own position just before it stores it, which changes nothing).
    delta = write_order.conv_delta(params["conv"], x_t.shape[3], out.shape[3],
                                   ctx.ins[1].shape[3], ctx.dsp)
    return _call(ctx, _s4("tinyml_conv2d_add_s8", ctx.ins[1]), "tinyml_conv2d_add_params", params,
                 _io_args(ctx, [0, 2]) + ["scratch"],
                 scratch_bytes=conv_scratch_bytes(ctx, ctx.ins[1], add=True), in_place=(2, 0),
                 weight_format=_dense_format(ctx.ins[1]), overlap=(0, 0, delta))


@lowers("DEPTHWISE_CONV_2D", kernels={
    "tinyml_depthwise_conv2d_s8": "plane",
    "tinyml_depthwise_conv2d_3x3_s8": "plane",
    "tinyml_depthwise_conv2d_s4": "plane",
    "tinyml_depthwise_conv2d_3x3_s4": "plane",
    "tinyml_depthwise_conv2d_s16": None})
def _lower_depthwise(ctx: _Context) -> KernelCall:
    if _is_16x8(ctx):
        return _lower_depthwise_s16(ctx)
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    w_t = ctx.ins[1]
    a = ctx.op.attrs
    n, h, w, c = x_t.shape
    _, kh, kw, channels = w_t.shape
    _, oh, ow, _ = out.shape
    if c <= 0 or channels % c:
        raise ctx.fail(f"{channels} filter channels for {c} input channels")
    m = channels // c
    weights = ctx.weights(w_t, 3, int4=True).reshape(kh, kw, channels).transpose(2, 0, 1)
    # weights: [oc][kh][kw]
    input_offset = -x_t.zero_point()
    bias = wrap_int32(ctx.bias(2, channels) +
                      input_offset * weights.reshape(channels, -1).sum(axis=1))
    multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, out.scale(),
                                                channels)
    lo, hi = activation_range(a.activation, out.scale(), out.zero_point())
    plane_h = (oh - 1) * a.stride[0] + (kh - 1) * a.dilation[0] + 1
    plane_w = (ow - 1) * a.stride[1] + (kw - 1) * a.dilation[1] + 1
    params = dict(batches=n, input_h=h, input_w=w, input_c=c, output_h=oh, output_w=ow,
                  depth_multiplier=m, filter_h=kh, filter_w=kw, stride_h=a.stride[0],
                  stride_w=a.stride[1], dilation_h=a.dilation[0], dilation_w=a.dilation[1],
                  pad_top=a.padding[0], pad_left=a.padding[2], plane_h=plane_h,
                  plane_w=plane_w, input_zero_point=x_t.zero_point(),
                  output_offset=out.zero_point(), act_min=lo, act_max=hi,
                  pixel_channels=depthwise_pixel_channels(ctx, c, m, kh * kw, oh * ow),
                  filter=_filter_array(ctx, w_t, weights.reshape(channels, -1)),
                  bias=ctx.array("bias", "int32_t", bias),
                  **_multiplier_arrays(ctx, multiplier, shift))
    three = kh == kw == 3 and tuple(a.dilation) == (1, 1)
    function = _s4("tinyml_depthwise_conv2d_3x3_s8" if three else "tinyml_depthwise_conv2d_s8",
                   w_t)
    in_place = (0, 0) if m == 1 and oh * ow <= h * w else None
    return _call(ctx, function, "tinyml_depthwise_conv2d_params", params,
                 _io_args(ctx) + ["scratch"],
                 scratch_bytes=depthwise_scratch_bytes(ctx, plane_h, plane_w, kh, kw,
                                                       _is_int4(w_t),
                                                       params["pixel_channels"]),
                 in_place=in_place, weight_format=_dense_format(w_t))


#: The DSP depthwise kernel's pixel-by-pixel path (DW_PIXEL_* in
#: firmware/kernels/cortex_m/depthwise_conv.c): at most this many taps, at least this many
#: channels, all channels in one pass up to DW_PIXEL_ONE_PASS, else passes of DW_PIXEL_PASS
#: channels and at most DW_PIXEL_MAX_OUTPUTS output pixels.
DW_PIXEL_MAX_TAPS, DW_PIXEL_MIN_CHANNELS, DW_PIXEL_MAX_OUTPUTS = 25, 12, 100
DW_PIXEL_ONE_PASS, DW_PIXEL_PASS = 32, 16


def depthwise_pixel_channels(ctx: _Context, channels: int, multiplier: int, taps: int,
                             outputs: int) -> int:
    """Channels per pass of the DSP depthwise kernel's pixel-by-pixel path that the scratch
    holds (its ``pixel_channels`` parameter; 0: the path is off). Up to 32 channels it is
    always declared (a patch of a layer may have few enough output pixels even when the
    largest one does not); with more, only when the call's output is small, so that layers
    with large planes and many channels, which never take the path, keep their small plane
    scratch (and every patch of a layer gets the parameter of its largest patch), and in
    passes of 16 channels, which keep the tables (and the arena) small at a few
    instructions per pass and output pixel."""
    if not ctx.dsp or multiplier != 1 or taps > DW_PIXEL_MAX_TAPS or \
            channels < DW_PIXEL_MIN_CHANNELS:
        return 0
    if channels <= DW_PIXEL_ONE_PASS:
        return channels
    return DW_PIXEL_PASS if outputs <= DW_PIXEL_MAX_OUTPUTS else 0


def depthwise_scratch_bytes(ctx: _Context, plane_h: int, plane_w: int, kh: int, kw: int,
                            int4: bool = False, pixel_channels: int = 0) -> int:
    """Scratch of the DEPTHWISE_CONV_2D kernels: the portable ones copy a channel's plane as
    int8 (plane_h * plane_w bytes); the DSP ones (firmware/kernels/cortex_m/depthwise_conv.c)
    as int16, in rows of an even number of values, possibly transposed (whichever of
    plane_h * even(plane_w) and plane_w * even(plane_h) is larger), then the filter of one
    channel as int16 pairs (4 bytes per pair of taps of a filter row); or, for small outputs,
    the tables of their pixel-by-pixel path, whichever is larger; plus 3 bytes to align to a
    word. The DSP int4 kernels first unpack filters to int8 in 4 * filter_h * filter_w bytes
    before all that (one channel's taps, and the pixel path's last three channels)."""
    if not ctx.dsp:
        return plane_h * plane_w

    def even(n: int) -> int:
        return n + (n & 1)

    values = max(plane_h * even(plane_w), plane_w * even(plane_h))
    attrs = ctx.op.attrs
    # The packed filter: int16 pairs (U_j, V_j) per filter row for rows 5 or 7 wide
    # (undilated horizontally, horizontal stride 1 or 2), else one int16 pair per two taps.
    wide = kw in (5, 7) and attrs.dilation[1] == 1 and attrs.stride[1] in (1, 2)
    plane = 2 * values + (8 * kh * (kw // 2 + 1) if wide else 4 * kh * ((kw + 1) // 2))
    # Small outputs may go pixel by pixel (depthwise_pixel_channels), in passes of
    # pixel_channels channels: per tap and group of four channels of a pass 8 bytes of
    # weights, per channel 16 bytes of constants, and a ring of the window's span of rows
    # ((kh - 1) * dilation_h + 1) of plane_w pixels.
    pixel = 0
    if pixel_channels:
        span = (kh - 1) * attrs.dilation[0] + 1
        pixel = 8 * kh * kw * (pixel_channels // 4) + 16 * pixel_channels + \
            span * plane_w * pixel_channels
    return max(plane, pixel) + 3 + (4 * kh * kw if int4 else 0)


@lowers("FULLY_CONNECTED", kernels={"tinyml_fully_connected_s8": None,
                                    "tinyml_fully_connected_sparse_s8": None,
                                    "tinyml_fully_connected_s4": None,
                                    "tinyml_fully_connected_s16": None})
def _lower_fully_connected(ctx: _Context) -> KernelCall:
    if _is_16x8(ctx):
        return _lower_fully_connected_s16(ctx)
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    w_t = ctx.ins[1]
    w = ctx.weights(w_t, 0, int4=True)
    units, depth = out.shape[-1], w.shape[-1]
    w = w.reshape(-1, depth)[:units]
    if x_t.size % depth:
        raise ctx.error(f"input of {x_t.size} elements is not a multiple of the weights' "
                        f"depth {depth}")
    if w_t.quant.per_channel:
        multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, out.scale(),
                                                    units)
        filter_offset = 0
    else:
        check_bias_scale(ctx.reference_call())
        m, s = per_tensor_fc_multiplier(x_t.scale(), w_t.scale(), out.scale())
        multiplier, shift = np.full(units, m), np.full(units, s)
        filter_offset = -w_t.zero_point()
    bias = wrap_int32(ctx.bias(2, units) + (-x_t.zero_point()) * (w + filter_offset).sum(axis=1))
    lo, hi = activation_range(ctx.op.attrs.activation, out.scale(), out.zero_point())
    # Sparse rows store exact zeros as nothing: only where a zero weight is a zero (offset 0).
    rows = sparse.choose(w, w_t.dtype, ctx.dsp) if filter_offset == 0 else None
    if rows is not None:
        params = dict(batches=x_t.size // depth, input_depth=depth, output_depth=units,
                      output_offset=out.zero_point(), act_min=lo, act_max=hi,
                      **_sparse_params(ctx, rows), bias=ctx.array("bias", "int32_t", bias),
                      **_multiplier_arrays(ctx, multiplier, shift))
        return _call(ctx, "tinyml_fully_connected_sparse_s8",
                     "tinyml_fully_connected_sparse_params", params,
                     _io_args(ctx) + ["scratch"], weight_format=rows.format)
    params = dict(batches=x_t.size // depth, input_depth=depth, output_depth=units,
                  filter_offset=filter_offset, output_offset=out.zero_point(), act_min=lo,
                  act_max=hi, filter=_filter_array(ctx, w_t, w),
                  bias=ctx.array("bias", "int32_t", bias),
                  **_multiplier_arrays(ctx, multiplier, shift))
    return _call(ctx, _s4("tinyml_fully_connected_s8", w_t), "tinyml_fully_connected_params",
                 params, _io_args(ctx) + ["scratch"], scratch_bytes=fc_scratch_bytes(ctx, depth),
                 weight_format=_dense_format(w_t),
                 overlap=(0, 0, write_order.rows(x_t.size // depth, depth, units)))


def fc_scratch_bytes(ctx: _Context, depth: int) -> int:
    """Scratch of the FULLY_CONNECTED kernels: none. The DSP one
    (firmware/kernels/cortex_m/fully_connected.c) reads the int8 input directly rather than
    an int16 copy, which would cost 2 bytes of RAM per input value."""
    return 0


# --------------------------------------------------------------------------------------------
# ADD and MUL


def _broadcast_params(ctx: _Context, operands: list[Tensor], out: Tensor):
    """(shape, strides per operand, flat) of a broadcast over at most 4 merged dimensions.

    Dimensions where every operand broadcasts the same way are merged, so e.g. a per-channel
    (1, 1, 1, C) operand of a (1, H, W, C) tensor is a 2-D (H*W, C) loop. ``flat``: every
    operand has the output's shape (a plain loop over ``size`` elements).
    """
    rank = len(out.shape)
    shapes = [_pad_shape(t.shape, rank) for t in operands]
    keys = [tuple(s[i] == d for s in shapes) for i, d in enumerate(out.shape)]
    dims, merged_keys = _merge_runs(list(out.shape), keys)
    if len(dims) > MAX_DIMS:
        raise _too_many_dims(ctx, "the broadcast", dims)
    flat = all(all(key) for key in merged_keys)
    pad = MAX_DIMS - len(dims)
    strides = []
    for k in range(len(operands)):
        full = [key[k] for key in merged_keys]
        own = _contiguous_strides([d if f else 1 for d, f in zip(dims, full)])
        strides.append([0] * pad + [s if f else 0 for s, f in zip(own, full)])
    return [1] * pad + dims, strides, flat


def _broadcast_operands(ctx: _Context, operands: list[Tensor], out: Tensor
                        ) -> tuple[dict, str, tuple | None]:
    """The broadcast fields (size, shape, strides1..N) of an element-wise kernel, the kernel
    suffix ("_s8" when no operand broadcasts, else "_broadcast_s8") and the in-place pair:
    the first activation operand of the output's size (its element i is read before output
    element i is written)."""
    shape, strides, flat = _broadcast_params(ctx, operands, out)
    params = dict(size=out.size, shape=ctx.array("shape", "int32_t", shape))
    for k, s in enumerate(strides):
        params[f"strides{k + 1}"] = ctx.array(f"strides{k + 1}", "int32_t", s)
    in_place = None
    for index, t in enumerate(operands):
        if t.size == out.size and not t.is_constant and t.nbytes == out.nbytes:
            in_place = (index, 0)
            break
    return params, "_s8" if flat else "_broadcast_s8", in_place


def _elementwise_common(ctx: _Context) -> tuple[Tensor, Tensor, Tensor, dict, str, tuple | None]:
    if _is_16x8(ctx):  # the _s16 kernels: whole tensors, not in place
        a_t = _int16(ctx, ctx.ins[0], "input 1")
        b_t = _int16(ctx, ctx.ins[1], "input 2")
        out = _int16(ctx, ctx.out, "output")
        params, suffix, _ = _broadcast_operands(ctx, [a_t, b_t], out)
        return a_t, b_t, out, params, suffix.replace("_s8", "_s16"), None
    a_t = ctx.int8(ctx.ins[0], "input 1")
    b_t = ctx.int8(ctx.ins[1], "input 2")
    out = ctx.int8(ctx.out, "output")
    params, suffix, in_place = _broadcast_operands(ctx, [a_t, b_t], out)
    return a_t, b_t, out, params, suffix, in_place


@lowers("ADD", kernels={"tinyml_add_s8": "elementwise", "tinyml_add_broadcast_s8": None,
                        "tinyml_add_s16": None, "tinyml_add_broadcast_s16": None})
def _lower_add(ctx: _Context) -> KernelCall:
    a_t, b_t, out, params, suffix, in_place = _elementwise_common(ctx)
    left_shift = add_left_shift(out.dtype)
    (m1, s1), (m2, s2), (mo, so) = add_multipliers(a_t.scale(), b_t.scale(), out.scale(),
                                                   left_shift)
    lo, hi = activation_range(ctx.op.attrs.activation, out.scale(), out.zero_point(),
                              *_value_range(out))
    params.update(input1_offset=-a_t.zero_point(), input2_offset=-b_t.zero_point(),
                  left_shift=left_shift, input1_multiplier=m1, input1_shift=s1,
                  input2_multiplier=m2, input2_shift=s2, output_multiplier=mo,
                  output_shift=so, output_offset=out.zero_point(), act_min=lo, act_max=hi)
    return _call(ctx, "tinyml_add" + suffix, "tinyml_add_params", params,
                 _io_args(ctx, [0, 1]), in_place=in_place)


@lowers("MUL", kernels={"tinyml_mul_s8": "elementwise", "tinyml_mul_broadcast_s8": None,
                        "tinyml_mul_s16": None, "tinyml_mul_broadcast_s16": None})
def _lower_mul(ctx: _Context) -> KernelCall:
    a_t, b_t, out, params, suffix, in_place = _elementwise_common(ctx)
    multiplier, shift = mul_multiplier(a_t.scale(), b_t.scale(), out.scale())
    lo, hi = activation_range(ctx.op.attrs.activation, out.scale(), out.zero_point(),
                              *_value_range(out))
    params.update(input1_offset=-a_t.zero_point(), input2_offset=-b_t.zero_point(),
                  output_multiplier=multiplier, output_shift=shift,
                  output_offset=out.zero_point(), act_min=lo, act_max=hi)
    return _call(ctx, "tinyml_mul" + suffix, "tinyml_mul_params", params,
                 _io_args(ctx, [0, 1]), in_place=in_place)


# --------------------------------------------------------------------------------------------
# Pooling and MEAN


@lowers("AVERAGE_POOL_2D", "MAX_POOL_2D", kernels={
    "tinyml_avg_pool2d_s8": "window",
    "tinyml_max_pool2d_s8": "window",
    "tinyml_avg_pool2d_s16": None,
    "tinyml_max_pool2d_s16": None})
def _lower_pool(ctx: _Context) -> KernelCall:
    s16 = _is_16x8(ctx)
    x_t = _int16(ctx, ctx.ins[0], "input") if s16 else ctx.int8(ctx.ins[0], "input")
    out = _int16(ctx, ctx.out, "output") if s16 else ctx.int8(ctx.out, "output")
    a = ctx.op.attrs
    n, h, w, c = x_t.shape
    _, oh, ow, _ = out.shape
    if ctx.op.kind == "AVERAGE_POOL_2D":
        for size, filt, stride, before, count in ((h, a.filter[0], a.stride[0], a.padding[0], oh),
                                                  (w, a.filter[1], a.stride[1], a.padding[2], ow)):
            for o in range(count):
                origin = o * stride - before
                if min(filt, size - origin) - max(0, -origin) <= 0:
                    raise ctx.error("a pooling window lies entirely in the padding")
    lo, hi = activation_range(a.activation, out.scale(), out.zero_point(), *_value_range(out))
    params = dict(batches=n, input_h=h, input_w=w, channels=c, output_h=oh, output_w=ow,
                  filter_h=a.filter[0], filter_w=a.filter[1], stride_h=a.stride[0],
                  stride_w=a.stride[1], pad_top=a.padding[0], pad_left=a.padding[2],
                  act_min=lo, act_max=hi)
    function = ("tinyml_avg_pool2d_s8" if ctx.op.kind == "AVERAGE_POOL_2D"
                else "tinyml_max_pool2d_s8")
    if s16:  # (the int16 kernels declare no write order: no overlap)
        return _call(ctx, function[:-3] + "_s16", "tinyml_pool2d_params", params,
                     _io_args(ctx))
    delta = write_order.safe_delta(write_order.pixels_interleaved(params, c, c))
    return _call(ctx, function, "tinyml_pool2d_params", params, _io_args(ctx),
                 overlap=(0, 0, delta))


@lowers("MEAN", kernels={"tinyml_mean_s8": None, "tinyml_mean_s16": None})
def _lower_mean(ctx: _Context) -> KernelCall:
    s16 = _is_16x8(ctx)
    x_t = _int16(ctx, ctx.ins[0], "input") if s16 else ctx.int8(ctx.ins[0], "input")
    out = _int16(ctx, ctx.out, "output") if s16 else ctx.int8(ctx.out, "output")
    rank = len(x_t.shape)
    axes = {normalize_axis(ax, rank, ctx.op) for ax in ctx.op.attrs.axes}
    count = int(np.prod([x_t.shape[ax] for ax in axes], dtype=np.int64))
    dims, reduced = _merge_runs(list(x_t.shape), [i in axes for i in range(rank)])
    if len(dims) > MAX_DIMS:
        raise _too_many_dims(ctx, "the mean", dims)
    multiplier, shift = mean_multiplier(x_t.scale(), out.scale(), count)
    params = dict(shape=ctx.array("shape", "int32_t", _pad_shape(dims)),
                  reduced=ctx.array("reduced", "int32_t",
                                    [0] * (MAX_DIMS - len(dims)) + [int(r) for r in reduced]),
                  input_offset_sum=int(wrap_int32(-x_t.zero_point() * count)),
                  multiplier=multiplier, shift=shift, output_offset=out.zero_point())
    return _call(ctx, "tinyml_mean_s16" if s16 else "tinyml_mean_s8", "tinyml_mean_params",
                 params, _io_args(ctx))


# --------------------------------------------------------------------------------------------
# Nonlinear activations


def _unary_int8(ctx: _Context) -> tuple[Tensor, Tensor]:
    return ctx.int8(ctx.ins[0], "input"), ctx.int8(ctx.out, "output")


@lowers("SOFTMAX", kernels={"tinyml_softmax_s8": None, "tinyml_softmax_s16": None})
def _lower_softmax(ctx: _Context) -> KernelCall:
    if _is_16x8(ctx):
        return _lower_softmax_s16(ctx)
    x_t, out = _unary_int8(ctx)
    multiplier, left_shift, diff_min = softmax_int8_params(ctx.op, x_t, out)
    depth = x_t.shape[-1]
    params = dict(rows=x_t.size // depth, depth=depth, input_multiplier=multiplier,
                  input_left_shift=left_shift, diff_min=diff_min)
    return _call(ctx, "tinyml_softmax_s8", "tinyml_softmax_params", params, _io_args(ctx),
                 in_place=(0, 0))


@lowers("LOGISTIC", kernels={"tinyml_logistic_s8": "elementwise", "tinyml_logistic_s16": None})
def _lower_logistic(ctx: _Context) -> KernelCall:
    if _is_16x8(ctx):
        return _lower_sigmoid_family_s16(ctx)
    x_t, out = _unary_int8(ctx)
    multiplier, left_shift, radius = logistic_int8_params(ctx.op, x_t, out)
    params = dict(size=x_t.size, input_zero_point=x_t.zero_point(),
                  input_multiplier=multiplier, input_left_shift=left_shift,
                  input_range_radius=radius)
    return _call(ctx, "tinyml_logistic_s8", "tinyml_logistic_params", params, _io_args(ctx),
                 in_place=(0, 0))


@lowers("HARD_SWISH", kernels={"tinyml_hard_swish_s8": "elementwise"})
def _lower_hard_swish(ctx: _Context) -> KernelCall:
    x_t, out = _unary_int8(ctx)
    om, oe, rm, re = hard_swish_int8_params(ctx.op, x_t, out)
    params = dict(size=x_t.size, input_zero_point=x_t.zero_point(),
                  output_zero_point=out.zero_point(), output_multiplier=om,
                  output_exponent=oe, reluish_multiplier=rm, reluish_exponent=re)
    return _call(ctx, "tinyml_hard_swish_s8", "tinyml_hard_swish_params", params,
                 _io_args(ctx), in_place=(0, 0))


@lowers("RELU", "RELU6", "CLIP", kernels={
    "tinyml_relu_s8": "elementwise",
    "tinyml_relu6_s8": "elementwise"})
def _lower_relu(ctx: _Context) -> KernelCall:
    x_t, out = _unary_int8(ctx)
    if ctx.op.kind == "RELU6":
        lower, upper = relu6_int8_bounds(x_t)
        return _call(ctx, "tinyml_relu6_s8", "tinyml_relu6_params",
                     dict(size=x_t.size, lower=lower, upper=upper), _io_args(ctx),
                     in_place=(0, 0))
    low, high = ((0.0, math.inf) if ctx.op.kind == "RELU"
                 else (ctx.op.attrs.min, ctx.op.attrs.max))
    multiplier, shift, act_min, act_max = relu_int8_params(x_t, out, low, high)
    params = dict(size=x_t.size, input_zero_point=x_t.zero_point(),
                  output_zero_point=out.zero_point(), multiplier=multiplier, shift=shift,
                  act_min=act_min, act_max=act_max)
    return _call(ctx, "tinyml_relu_s8", "tinyml_relu_params", params, _io_args(ctx),
                 in_place=(0, 0))


# --------------------------------------------------------------------------------------------
# QUANTIZE and DEQUANTIZE


@lowers("QUANTIZE", kernels={
    "tinyml_quantize_f32_s8": "elementwise",
    "tinyml_requantize_s8": "elementwise",
    "tinyml_quantize_f32_s16": None,
    "tinyml_requantize_s16": None,
    "tinyml_requantize_s8_s16": None,
    "tinyml_requantize_s16_s8": None})
def _lower_quantize(ctx: _Context) -> KernelCall:
    x_t = ctx.ins[0]
    if "int16" in (x_t.dtype, ctx.out.dtype):
        return _lower_quantize_s16(ctx)
    out = ctx.int8(ctx.out, "output")
    if x_t.dtype == "float32":
        params = dict(size=x_t.size, scale=float(np.float32(out.scale())),
                      zero_point=out.zero_point())
        return _call(ctx, "tinyml_quantize_f32_s8", "tinyml_quantize_params", params,
                     _io_args(ctx), overlap=(0, 0, write_order.elementwise(x_t.size, 4, 1)))
    ctx.int8(x_t, "input")
    multiplier, shift = requantize_multiplier(x_t.scale(), out.scale())
    params = dict(size=x_t.size, input_zero_point=x_t.zero_point(), multiplier=multiplier,
                  shift=shift, output_zero_point=out.zero_point())
    return _call(ctx, "tinyml_requantize_s8", "tinyml_requantize_params", params,
                 _io_args(ctx), in_place=(0, 0))


@lowers("DEQUANTIZE", kernels={"tinyml_dequantize_s8_f32": None,
                                "tinyml_dequantize_s16_f32": None})
def _lower_dequantize(ctx: _Context) -> KernelCall:
    if ctx.ins[0].dtype == "int16":
        x_t = _int16(ctx, ctx.ins[0], "input")
        if ctx.out.dtype != "float32":
            raise ctx.fail(f"int16 -> {ctx.out.dtype} (int16 -> float32 only)")
        params = dict(size=x_t.size, scale=float(np.float32(x_t.scale())),
                      zero_point=x_t.zero_point())
        return _call(ctx, "tinyml_dequantize_s16_f32", "tinyml_dequantize_params", params,
                     _io_args(ctx))
    x_t = ctx.int8(ctx.ins[0], "input")
    if ctx.out.dtype != "float32":
        raise ctx.fail(f"int8 -> {ctx.out.dtype} (int8 -> float32 only)")
    params = dict(size=x_t.size, scale=float(np.float32(x_t.scale())),
                  zero_point=x_t.zero_point())
    return _call(ctx, "tinyml_dequantize_s8_f32", "tinyml_dequantize_params", params,
                 _io_args(ctx), overlap=(0, 0, write_order.elementwise(x_t.size, 1, 4)))


# --------------------------------------------------------------------------------------------
# Data movement (int8 or float32 elements)


def _movable(ctx: _Context, t: Tensor, role: str) -> int:
    """Element size of a tensor a data-movement kernel may copy (int8 activations, float32
    at the float edges of an int8 graph, or the int32 indices ARG_MAX/ARG_MIN compute,
    which an ONNX graph reshapes and transposes back to its layout)."""
    if t.dtype in ("float32", "int32"):
        return 4
    if t.dtype == "int16":
        _int16(ctx, t, role)
        return 2
    ctx.int8(t, role)
    return 1


@lowers("RESHAPE", kernels={"tinyml_reshape": None})
def _lower_reshape(ctx: _Context) -> KernelCall:
    x_t = ctx.ins[0]
    _movable(ctx, x_t, "input")
    if ctx.out.dtype != x_t.dtype:
        raise ctx.error(f"changes the element type ({x_t.dtype} -> {ctx.out.dtype})")
    return _call(ctx, "tinyml_reshape", "tinyml_reshape_params", dict(bytes=x_t.nbytes),
                 _io_args(ctx), in_place=(0, 0))


@lowers("TRANSPOSE", kernels={"tinyml_transpose": None})
def _lower_transpose(ctx: _Context) -> KernelCall:
    x_t = ctx.ins[0]
    size = _movable(ctx, x_t, "input")
    perm = [normalize_axis(p, len(x_t.shape), ctx.op) for p in ctx.op.attrs.perm]
    # Drop size-1 dimensions, then merge runs of input dimensions that stay adjacent.
    kept = [p for p in perm if x_t.shape[p] != 1]
    groups: list[list[int]] = []
    for p in kept:
        if groups and groups[-1][-1] + 1 == p:
            groups[-1].append(p)
        else:
            groups.append([p])
    if len(groups) > MAX_DIMS:
        raise _too_many_dims(ctx, "the transpose", groups)
    by_input = sorted(range(len(groups)), key=lambda g: groups[g][0])
    merged_in = [int(np.prod([x_t.shape[p] for p in groups[g]])) for g in by_input]
    in_strides = dict(zip(by_input, _contiguous_strides(merged_in)))
    out_shape = [int(np.prod([x_t.shape[p] for p in g])) for g in groups]
    strides = [in_strides[g] for g in range(len(groups))]
    pad = MAX_DIMS - len(groups)
    params = dict(element_size=size,
                  output_shape=ctx.array("output_shape", "int32_t", [1] * pad + out_shape),
                  input_strides=ctx.array("input_strides", "int32_t", [0] * pad + strides))
    return _call(ctx, "tinyml_transpose", "tinyml_transpose_params", params, _io_args(ctx))


@lowers("PAD", kernels={"tinyml_pad": None})
def _lower_pad(ctx: _Context) -> KernelCall:
    x_t = ctx.ins[0]
    size = _movable(ctx, x_t, "input")
    pads = [tuple(int(v) for v in p) for p in ctx.op.attrs.pads]
    # Merge a dimension into the next when the next one is not padded: rows of the inner
    # dimension then move as a block.
    dims: list[list[int]] = []  # [size, before, after], innermost last
    for d, (before, after) in zip(x_t.shape, pads):
        if d == 1 and before == after == 0:
            continue
        dims.append([int(d), before, after])
    merged: list[list[int]] = []
    for entry in reversed(dims):
        if merged and merged[0][1] == merged[0][2] == 0:
            inner = merged[0][0]
            merged[0] = [entry[0] * inner, entry[1] * inner, entry[2] * inner]
        else:
            merged.insert(0, entry)
    if len(merged) > MAX_DIMS:
        raise _too_many_dims(ctx, "the padding", merged)
    merged = [[1, 0, 0]] * (MAX_DIMS - len(merged)) + merged
    value = ctx.op.attrs.value
    if x_t.dtype == "float32":
        bits = np.array([0.0 if value is None else value], np.float32).view(np.int32)[0]
    elif x_t.quant is None:  # int32 indices
        bits = 0 if value is None else int(value)
    else:
        bits = x_t.zero_point() if value is None else int(value)
    params = dict(element_size=size,
                  input_shape=ctx.array("input_shape", "int32_t", [m[0] for m in merged]),
                  output_shape=ctx.array("output_shape", "int32_t",
                                         [m[0] + m[1] + m[2] for m in merged]),
                  pad_before=ctx.array("pad_before", "int32_t", [m[1] for m in merged]),
                  pad_value=int(bits))
    return _call(ctx, "tinyml_pad", "tinyml_pad_params", params, _io_args(ctx))


@lowers("CONCATENATION", kernels={"tinyml_concatenation": None})
def _lower_concatenation(ctx: _Context) -> KernelCall:
    out = ctx.out
    size = _movable(ctx, out, "output")
    for i, t in enumerate(ctx.ins):
        if _movable(ctx, t, f"input {i}") != size:
            raise ctx.error(f"input '{t.name}' is {t.dtype}, the output {out.dtype}")
        if out.dtype in ("int8", "int16") and (t.scale(), t.zero_point()) != (out.scale(),
                                                                   out.zero_point()):
            raise ctx.fail(f"{out.dtype} inputs ['{t.name}'] are quantized differently from the "
                           f"output (TFLM requires equal scale and zero point; requantize "
                           f"them first)")
    axis = normalize_axis(ctx.op.attrs.axis, len(out.shape), ctx.op)
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    slices = [int(np.prod(t.shape[axis:], dtype=np.int64)) * size for t in ctx.ins]
    params = dict(num_inputs=len(ctx.ins), outer_size=outer,
                  slice_bytes=ctx.array("slice_bytes", "int32_t", slices))
    return _call(ctx, "tinyml_concatenation", "tinyml_concatenation_params", params,
                 _io_args(ctx, list(range(len(ctx.ins)))))


# ---- data_movement ops ------------------------------------------------------------------------


def _compact_tables(dims: list[int], tables: list[np.ndarray], element_size: int
                    ) -> tuple[list[int], list[np.ndarray], bool]:
    """Index tables (bytes) for the 4-D C loop: size-1 axes folded into the first table,
    neighbours merged while the merged table stays an arithmetic progression (a longer
    contiguous row), leading axes merged (outer sum) beyond four. Returns (dims, tables,
    whether the last table steps by ``element_size``)."""
    base = 0
    kept_dims, kept = [], []
    for d, t in zip(dims, tables):
        if d == 1:
            base += int(t[0])
        else:
            kept_dims.append(int(d))
            kept.append(np.asarray(t, np.int64))

    def affine(t):
        return t.size < 2 or bool((np.diff(t) == t[1] - t[0]).all())

    k = len(kept) - 2
    while k >= 0:
        merged = (kept[k][:, None] + kept[k + 1][None, :]).reshape(-1)
        if affine(kept[k]) and affine(kept[k + 1]) and affine(merged):
            kept[k:k + 2] = [merged]
            kept_dims[k:k + 2] = [kept_dims[k] * kept_dims[k + 1]]
        k -= 1
    while len(kept) > MAX_DIMS:
        kept[:2] = [(kept[0][:, None] + kept[1][None, :]).reshape(-1)]
        kept_dims[:2] = [kept_dims[0] * kept_dims[1]]
    pad = MAX_DIMS - len(kept)
    kept_dims = [1] * pad + kept_dims
    kept = [np.zeros(1, np.int64)] * pad + kept
    kept[0] = kept[0] + base
    inner = kept[-1]
    contiguous = inner.size < 2 or bool((np.diff(inner) == element_size).all())
    return kept_dims, kept, contiguous


@lowers("SLICE", "STRIDED_SLICE", "REVERSE_V2", "BROADCAST_TO", "MIRROR_PAD",
        "RESIZE_NEAREST_NEIGHBOR", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "GATHER", "GATHER_ND",
        kernels={"tinyml_index_copy": None})
def _lower_index_copy(ctx: _Context) -> KernelCall:
    from tinyml.reference.kernels.data_movement import index_tables
    x_t = ctx.ins[0]
    size = _movable(ctx, x_t, "input")
    if ctx.out.dtype != x_t.dtype:
        raise ctx.error(f"changes the element type ({x_t.dtype} -> {ctx.out.dtype})")
    dims, tables = index_tables(ctx.op, ctx.ins, ctx.out.shape)
    dims, tables, contiguous = _compact_tables(dims, [t * size for t in tables], size)
    params = dict(element_size=size, inner_contiguous=int(contiguous),
                  shape=ctx.array("shape", "int32_t", dims),
                  offsets=ctx.array("offsets", "int32_t", np.concatenate(tables)))
    return _call(ctx, "tinyml_index_copy", "tinyml_index_copy_params", params, _io_args(ctx))


@lowers("SPLIT", "SPLIT_V", "UNPACK", kernels={"tinyml_split": None})
def _lower_split(ctx: _Context) -> KernelCall:
    x_t = ctx.ins[0]
    size = _movable(ctx, x_t, "input")
    for t in ctx.outs:
        if t.dtype != x_t.dtype:
            raise ctx.error(f"output '{t.name}' is {t.dtype}, the input {x_t.dtype}")
    axis = normalize_axis(ctx.op.attrs.axis, len(x_t.shape), ctx.op)
    outer = int(np.prod(x_t.shape[:axis], dtype=np.int64))
    slices = [t.size // outer * size for t in ctx.outs]
    params = dict(num_outputs=len(ctx.outs), outer_size=outer,
                  slice_bytes=ctx.array("slice_bytes", "int32_t", slices))
    return _call(ctx, "tinyml_split", "tinyml_split_params", params, _io_args(ctx))


@lowers("RESIZE_BILINEAR", kernels={"tinyml_resize_bilinear_s8": None})
def _lower_resize_bilinear(ctx: _Context) -> KernelCall:
    from tinyml.reference.kernels.data_movement import bilinear_axis
    x_t, out = _unary_int8(ctx)
    a = ctx.op.attrs
    n, h, w, c = x_t.shape
    oh, ow = a.size
    y0, y1, wy = bilinear_axis(oh, h, a.align_corners, a.half_pixel_centers)
    x0, x1, wx = bilinear_axis(ow, w, a.align_corners, a.half_pixel_centers)
    params = dict(batches=n, input_h=h, input_w=w, depth=c, output_h=oh, output_w=ow,
                  y0=ctx.array("y0", "int32_t", y0), y1=ctx.array("y1", "int32_t", y1),
                  wy=ctx.array("wy", "int32_t", wy), x0=ctx.array("x0", "int32_t", x0),
                  x1=ctx.array("x1", "int32_t", x1), wx=ctx.array("wx", "int32_t", wx))
    return _call(ctx, "tinyml_resize_bilinear_s8", "tinyml_resize_bilinear_params", params,
                 _io_args(ctx))

# --------------------------------------------------------------------------------------------
# ---- activations_math ops: LEAKY_RELU, PRELU, ABS, and TANH, ELU, RSQRT as lookup tables
# (element-wise, in place); LOG_SOFTMAX

from tinyml.reference.kernels.activations_math import (  # noqa: E402
    abs_int8_params, elu_int8_table, gelu_int8_table, leaky_relu_int8_params,
    log_softmax_int8_params, prelu_int8_params, rsqrt_int8_table, tanh_int8_table)
from tinyml.reference.kernels.float_math import int8_table as float_math_table  # noqa: E402


@lowers("LEAKY_RELU", kernels={"tinyml_leaky_relu_s8": "elementwise"})
def _lower_leaky_relu(ctx: _Context) -> KernelCall:
    x_t, out = _unary_int8(ctx)
    am, ash, im, ish = leaky_relu_int8_params(x_t, out, ctx.op.attrs.alpha)
    params = dict(size=x_t.size, input_zero_point=x_t.zero_point(),
                  output_zero_point=out.zero_point(), alpha_multiplier=abs(am),
                  alpha_shift=ash, alpha_negative=int(am < 0), identity_multiplier=im,
                  identity_shift=ish)
    return _call(ctx, "tinyml_leaky_relu_s8", "tinyml_leaky_relu_params", params,
                 _io_args(ctx), in_place=(0, 0))


@lowers("PRELU", kernels={"tinyml_prelu_s8": "elementwise", "tinyml_prelu_tiled_s8": None})
def _lower_prelu(ctx: _Context) -> KernelCall:
    """Alpha is a constant array in flash, read at ``i % alpha_period``: the alpha value of
    every output element, broadcast, repeats with that period (1 for a scalar alpha, the
    channel count for a per-channel one, the whole tensor otherwise). A period that divides
    the channel count also holds on any patch of whole pixels."""
    x_t, out = _unary_int8(ctx)
    alpha_t = ctx.ins[1]
    if alpha_t.dtype != "int8" or alpha_t.quant is None:
        raise ctx.fail(f"alpha '{alpha_t.name}' is {alpha_t.dtype}, int8 input needs int8 "
                       f"quantized alpha")
    if alpha_t.quant.per_channel:
        raise ctx.fail(f"alpha '{alpha_t.name}' is quantized per channel (TFLM reads one "
                       f"scale and zero point)")
    if x_t.shape != out.shape:
        raise ctx.fail(f"input {list(x_t.shape)} is broadcast to {list(out.shape)}")
    alpha = np.broadcast_to(ctx.constant(alpha_t, "alpha").astype(np.int64),
                            out.shape).reshape(-1)
    channels = out.shape[-1] if out.shape else 1
    period = next(p for p in (1, channels, alpha.size)
                  if alpha.size % p == 0 and np.array_equal(alpha, np.resize(alpha[:p],
                                                                             alpha.size)))
    m1, s1, m2, s2 = prelu_int8_params(x_t, alpha_t, out)
    params = dict(size=x_t.size, alpha_period=period, input_zero_point=x_t.zero_point(),
                  alpha_zero_point=alpha_t.zero_point(), output_zero_point=out.zero_point(),
                  identity_multiplier=m1, identity_shift=s1, alpha_multiplier=m2,
                  alpha_shift=s2, alpha=ctx.array("alpha", "int8_t", alpha[:period]))
    function = "tinyml_prelu_s8" if channels % period == 0 else "tinyml_prelu_tiled_s8"
    return _call(ctx, function, "tinyml_prelu_params", params, _io_args(ctx), in_place=(0, 0))


@lowers("TANH", "ELU", "RSQRT", "GELU", "EXP", "LOG", "SQRT",
        kernels={"tinyml_lut_s8": "elementwise", "tinyml_tanh_s16": None})
def _lower_lookup_table(ctx: _Context) -> KernelCall:
    """A table of the output code of each of the 256 input codes. ELU's is TFLM's own, GELU's,
    EXP's, LOG's and SQRT's LiteRT's (TFLM has no int8 kernel for them); TANH's
    and RSQRT's are the reference (TFLM's per-element fixed-point arithmetic) evaluated on
    every code, the same values TFLM computes element by element: about 400 Cortex-M4
    instructions per TANH element become a load, for 256 bytes of flash. int16 TANH (16x8)
    runs TFLM's sigmoid-table kernel instead."""
    if ctx.op.kind == "TANH" and _is_16x8(ctx):
        return _lower_sigmoid_family_s16(ctx)
    x_t, out = _unary_int8(ctx)
    kind = ctx.op.kind
    if kind == "SQRT" and x_t.zero_point() != -128:
        raise ctx.fail(f"input zero point {x_t.zero_point()} lets inputs be negative, which "
                       f"LiteRT's int8 SQRT fails the inference on (zero point -128 only)")
    if kind == "RSQRT" and x_t.zero_point() != -128:
        raise ctx.fail(f"input zero point {x_t.zero_point()} lets inputs be negative, which "
                       f"TFLM's int8 RSQRT fails the inference on (zero point -128 only)")
    table = (elu_int8_table(ctx.op, x_t, out) if kind == "ELU" else
             gelu_int8_table(ctx.op, x_t, out) if kind == "GELU" else
             float_math_table(ctx.op, x_t, out) if kind in ("EXP", "LOG", "SQRT") else
             tanh_int8_table(x_t) if kind == "TANH" else rsqrt_int8_table(x_t, out))
    params = dict(size=x_t.size, table=ctx.array("table", "int8_t", table))
    return _call(ctx, "tinyml_lut_s8", "tinyml_lut_params", params, _io_args(ctx),
                 in_place=(0, 0))


@lowers("ABS", kernels={"tinyml_abs_s8": "elementwise"})
def _lower_abs(ctx: _Context) -> KernelCall:
    x_t, out = _unary_int8(ctx)
    rescale = abs_int8_params(x_t, out)
    multiplier, shift = rescale if rescale is not None else (0, 0)
    params = dict(size=x_t.size, input_zero_point=x_t.zero_point(),
                  output_zero_point=out.zero_point(), rescale=int(rescale is not None),
                  multiplier=multiplier, shift=shift)
    return _call(ctx, "tinyml_abs_s8", "tinyml_abs_params", params, _io_args(ctx),
                 in_place=(0, 0))


@lowers("LOG_SOFTMAX", kernels={"tinyml_log_softmax_s8": None})
def _lower_log_softmax(ctx: _Context) -> KernelCall:
    x_t, out = _unary_int8(ctx)
    multiplier, left_shift, divisor, reverse_shift, diff_min = \
        log_softmax_int8_params(ctx.op, x_t, out)
    depth = x_t.shape[-1]
    params = dict(rows=x_t.size // depth, depth=depth, input_multiplier=multiplier,
                  input_left_shift=left_shift, reverse_scaling_divisor=divisor,
                  reverse_scaling_shift=reverse_shift, diff_min=diff_min)
    return _call(ctx, "tinyml_log_softmax_s8", "tinyml_log_softmax_params", params,
                 _io_args(ctx), in_place=(0, 0))


# --------------------------------------------------------------------------------------------
# ---- binary ops: SUB, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, comparisons, SELECT_V2, logical
# All broadcast as ADD and MUL do (_broadcast_operands); the "_s8" variants take operands of
# the output's shape (a flat loop, hence patch geometry "elementwise"), the "_broadcast_s8"
# ones run on whole tensors. BOOL tensors are one byte (0 or 1), uint8_t in C.


def _boolean(ctx: _Context, t: Tensor, role: str) -> Tensor:
    if t.dtype != "bool":
        raise ctx.fail(f"{role} '{t.name}' is {t.dtype}, expected bool")
    return t


def _rescaled_pair_params(ctx: _Context, a_t: Tensor, b_t: Tensor, out: Tensor, left_shift: int,
                          multipliers, act: tuple[int, int]) -> dict:
    """The tinyml_add_params fields SUB and SQUARED_DIFFERENCE share with ADD."""
    (m1, s1), (m2, s2), (mo, so) = multipliers
    return dict(input1_offset=-a_t.zero_point(), input2_offset=-b_t.zero_point(),
                left_shift=left_shift, input1_multiplier=m1, input1_shift=s1,
                input2_multiplier=m2, input2_shift=s2, output_multiplier=mo,
                output_shift=so, output_offset=out.zero_point(), act_min=act[0],
                act_max=act[1])


@lowers("SUB", kernels={"tinyml_sub_s8": "elementwise", "tinyml_sub_broadcast_s8": None})
def _lower_sub(ctx: _Context) -> KernelCall:
    a_t, b_t, out, params, suffix, in_place = _elementwise_common(ctx)
    multipliers = sub_multipliers(a_t.scale(), b_t.scale(), out.scale())
    act = activation_range(ctx.op.attrs.activation, out.scale(), out.zero_point())
    params.update(_rescaled_pair_params(ctx, a_t, b_t, out, SUB_LEFT_SHIFT, multipliers, act))
    return _call(ctx, "tinyml_sub" + suffix, "tinyml_add_params", params,
                 _io_args(ctx, [0, 1]), in_place=in_place)


@lowers("SQUARED_DIFFERENCE", kernels={"tinyml_squared_difference_s8": "elementwise",
                                       "tinyml_squared_difference_broadcast_s8": None})
def _lower_squared_difference(ctx: _Context) -> KernelCall:
    a_t, b_t, out, params, suffix, in_place = _elementwise_common(ctx)
    multipliers = squared_difference_multipliers(ctx.op, a_t.scale(), b_t.scale(), out.scale())
    params.update(_rescaled_pair_params(ctx, a_t, b_t, out, SQUARED_DIFFERENCE_LEFT_SHIFT,
                                        multipliers, (-128, 127)))
    return _call(ctx, "tinyml_squared_difference" + suffix, "tinyml_add_params", params,
                 _io_args(ctx, [0, 1]), in_place=in_place)


@lowers("MAXIMUM", "MINIMUM", kernels={
    "tinyml_maximum_s8": "elementwise", "tinyml_maximum_broadcast_s8": None,
    "tinyml_minimum_s8": "elementwise", "tinyml_minimum_broadcast_s8": None})
def _lower_maximum_minimum(ctx: _Context) -> KernelCall:
    _, _, _, params, suffix, in_place = _elementwise_common(ctx)
    return _call(ctx, f"tinyml_{ctx.op.kind.lower()}" + suffix, "tinyml_broadcast_params",
                 params, _io_args(ctx, [0, 1]), in_place=in_place)


#: The comparison codes of tinyml_compare_params.op (tinyml_kernels.h).
COMPARISON_CODES = {"EQUAL": 0, "NOT_EQUAL": 1, "GREATER": 2, "GREATER_EQUAL": 3, "LESS": 4,
                    "LESS_EQUAL": 5}


@lowers(*COMPARISON_CODES, kernels={"tinyml_compare_s8": "elementwise",
                                    "tinyml_compare_broadcast_s8": None})
def _lower_comparison(ctx: _Context) -> KernelCall:
    a_t = ctx.int8(ctx.ins[0], "input 1")
    b_t = ctx.int8(ctx.ins[1], "input 2")
    out = _boolean(ctx, ctx.out, "output")
    params, suffix, in_place = _broadcast_operands(ctx, [a_t, b_t], out)
    (m1, s1), (m2, s2) = comparison_multipliers(ctx.op, a_t, b_t)
    params.update(op=COMPARISON_CODES[ctx.op.kind], input1_offset=-a_t.zero_point(),
                  input2_offset=-b_t.zero_point(), left_shift=COMPARISON_LEFT_SHIFT,
                  input1_multiplier=m1, input1_shift=s1, input2_multiplier=m2,
                  input2_shift=s2)
    return _call(ctx, "tinyml_compare" + suffix, "tinyml_compare_params", params,
                 _io_args(ctx, [0, 1]), in_place=in_place)


@lowers("SELECT_V2", kernels={"tinyml_select_s8": "elementwise",
                              "tinyml_select_broadcast_s8": None})
def _lower_select(ctx: _Context) -> KernelCall:
    condition = _boolean(ctx, ctx.ins[0], "condition")
    x_t = ctx.int8(ctx.ins[1], "input x")
    y_t = ctx.int8(ctx.ins[2], "input y")
    out = ctx.int8(ctx.out, "output")
    params, suffix, in_place = _broadcast_operands(ctx, [condition, x_t, y_t], out)
    return _call(ctx, "tinyml_select" + suffix, "tinyml_select_params", params,
                 _io_args(ctx, [0, 1, 2]), in_place=in_place)


@lowers("LOGICAL_AND", "LOGICAL_OR", kernels={"tinyml_logical": "elementwise",
                                              "tinyml_logical_broadcast": None})
def _lower_logical(ctx: _Context) -> KernelCall:
    a_t = _boolean(ctx, ctx.ins[0], "input 1")
    b_t = _boolean(ctx, ctx.ins[1], "input 2")
    out = _boolean(ctx, ctx.out, "output")
    params, suffix, in_place = _broadcast_operands(ctx, [a_t, b_t], out)
    params["is_or"] = int(ctx.op.kind == "LOGICAL_OR")
    return _call(ctx, "tinyml_logical" + suffix.replace("_s8", ""), "tinyml_logical_params",
                 params, _io_args(ctx, [0, 1]), in_place=in_place)


@lowers("LOGICAL_NOT", kernels={"tinyml_logical_not": "elementwise"})
def _lower_logical_not(ctx: _Context) -> KernelCall:
    x_t = _boolean(ctx, ctx.ins[0], "input")
    _boolean(ctx, ctx.out, "output")
    return _call(ctx, "tinyml_logical_not", "tinyml_logical_not_params", dict(size=x_t.size),
                 _io_args(ctx), in_place=(0, 0))


# --------------------------------------------------------------------------------------------
# ---- reductions ops: SUM, REDUCE_MAX, REDUCE_MIN, ARG_MAX, ARG_MIN, L2_NORMALIZATION


def _reduction_layout(ctx: _Context, x_t: Tensor, what: str) -> tuple[int, dict]:
    """The number of reduced elements per output, and the (shape, reduced) arrays of the
    up-to-4-D layout the reduction kernels walk (adjacent kept or reduced dimensions merged,
    as for MEAN)."""
    rank = len(x_t.shape)
    axes = {normalize_axis(ax, rank, ctx.op) for ax in ctx.op.attrs.axes}
    count = int(np.prod([x_t.shape[ax] for ax in axes], dtype=np.int64))
    dims, reduced = _merge_runs(list(x_t.shape), [i in axes for i in range(rank)])
    if len(dims) > MAX_DIMS:
        raise _too_many_dims(ctx, what, dims)
    flags = [0] * (MAX_DIMS - len(dims)) + [int(r) for r in reduced]
    return count, dict(shape=ctx.array("shape", "int32_t", _pad_shape(dims)),
                       reduced=ctx.array("reduced", "int32_t", flags))


@lowers("SUM", kernels={"tinyml_mean_s8": None})
def _lower_sum(ctx: _Context) -> KernelCall:
    """TFLM computes SUM and MEAN in one function (``QuantizedMeanOrSum``); SUM's multiplier
    has no 1/count folded in, so MEAN's C kernel runs it with SUM's constants."""
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    count, layout = _reduction_layout(ctx, x_t, "the sum")
    multiplier, shift = sum_multiplier(x_t.scale(), out.scale())
    params = dict(layout, input_offset_sum=int(wrap_int32(-x_t.zero_point() * count)),
                  multiplier=multiplier, shift=shift, output_offset=out.zero_point())
    return _call(ctx, "tinyml_mean_s8", "tinyml_mean_params", params, _io_args(ctx))


@lowers("REDUCE_MAX", "REDUCE_MIN", kernels={"tinyml_reduce_max_s8": None,
                                             "tinyml_reduce_min_s8": None})
def _lower_reduce_min_max(ctx: _Context) -> KernelCall:
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    check_same_quantization(ctx.op, x_t, out)
    if x_t.size == 0:
        raise ctx.fail("an empty input")
    _, layout = _reduction_layout(ctx, x_t, "the reduction")
    function = ("tinyml_reduce_max_s8" if ctx.op.kind == "REDUCE_MAX"
                else "tinyml_reduce_min_s8")
    return _call(ctx, function, "tinyml_reduce_params", layout, _io_args(ctx))


@lowers("ARG_MAX", "ARG_MIN", kernels={"tinyml_arg_max_s8": None, "tinyml_arg_min_s8": None})
def _lower_arg_min_max(ctx: _Context) -> KernelCall:
    x_t = ctx.int8(ctx.ins[0], "input")
    if ctx.out.dtype != "int32":
        raise ctx.fail(f"{ctx.out.dtype} indices (TFLM computes int32 indices only; convert "
                       f"with output_type=tf.int32)")
    axis = normalize_axis(ctx.op.attrs.axis, len(x_t.shape), ctx.op)
    params = dict(outer_size=int(np.prod(x_t.shape[:axis], dtype=np.int64)),
                  axis_size=x_t.shape[axis],
                  inner_size=int(np.prod(x_t.shape[axis + 1:], dtype=np.int64)))
    function = "tinyml_arg_max_s8" if ctx.op.kind == "ARG_MAX" else "tinyml_arg_min_s8"
    return _call(ctx, function, "tinyml_arg_params", params, _io_args(ctx))


@lowers("L2_NORMALIZATION", kernels={"tinyml_l2_normalization_s8": None})
def _lower_l2_normalization(ctx: _Context) -> KernelCall:
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    check_l2_norm(ctx.op, x_t, out)
    depth = x_t.shape[-1]
    params = dict(outer_size=x_t.size // depth if depth else 0, depth=depth,
                  input_zero_point=x_t.zero_point())
    return _call(ctx, "tinyml_l2_normalization_s8", "tinyml_l2_normalization_params", params,
                 _io_args(ctx), in_place=(0, 0))

# --------------------------------------------------------------------------------------------
# ---- conv ops: convolution variants and their data movement


def _block_geometry(ctx: _Context, x_t: Tensor, out: Tensor, block, pairs) -> dict:
    """The NHWC view TFLM takes of a 3-D or 4-D block op (NHC is NH1C, block_w 1)."""
    from tinyml.reference.kernels.conv_family import as_nhwc
    n, h, w, c = as_nhwc(x_t.shape)
    on, oh, ow, _ = as_nhwc(out.shape)
    block = tuple(block) + (1,) * (2 - len(block))
    before = tuple(p[0] for p in pairs) + (0,) * (2 - len(pairs))
    return dict(n=n, h=h, w=w, c=c, on=on, oh=oh, ow=ow, block=block, before=before)


@lowers("SPACE_TO_BATCH_ND", kernels={"tinyml_space_to_batch_nd_s8": None})
def _lower_space_to_batch(ctx: _Context) -> KernelCall:
    from tinyml.reference.kernels.conv_family import space_to_batch_pad_value
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    a = ctx.op.attrs
    g = _block_geometry(ctx, x_t, out, a.block, a.pads)
    params = dict(batches=g["n"], input_h=g["h"], input_w=g["w"], depth=g["c"],
                  block_h=g["block"][0], block_w=g["block"][1], pad_top=g["before"][0],
                  pad_left=g["before"][1], output_batches=g["on"], output_h=g["oh"],
                  output_w=g["ow"],
                  pad_value=space_to_batch_pad_value(ctx.reference_call()))
    return _call(ctx, "tinyml_space_to_batch_nd_s8", "tinyml_space_to_batch_params", params,
                 _io_args(ctx))


@lowers("BATCH_TO_SPACE_ND", kernels={"tinyml_batch_to_space_nd_s8": None})
def _lower_batch_to_space(ctx: _Context) -> KernelCall:
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    a = ctx.op.attrs
    g = _block_geometry(ctx, x_t, out, a.block, a.crops)
    params = dict(input_batches=g["n"], input_h=g["h"], input_w=g["w"], depth=g["c"],
                  block_h=g["block"][0], block_w=g["block"][1], crop_top=g["before"][0],
                  crop_left=g["before"][1], output_batches=g["on"], output_h=g["oh"],
                  output_w=g["ow"])
    return _call(ctx, "tinyml_batch_to_space_nd_s8", "tinyml_batch_to_space_params", params,
                 _io_args(ctx))


@lowers("TRANSPOSE_CONV", kernels={"tinyml_transpose_conv_s8": None})
def _lower_transpose_conv(ctx: _Context) -> KernelCall:
    x_t = ctx.int8(ctx.ins[0], "input")
    out = ctx.int8(ctx.out, "output")
    w_t = ctx.ins[1]
    a = ctx.op.attrs
    w = ctx.weights(w_t, 0)
    cout, kh, kw, cin = w.shape
    n, h, wd, c = x_t.shape
    if cin != c:
        raise ctx.fail(f"{c} input channels, the filter expects {cin}")
    multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, out.scale(),
                                                cout)
    lo, hi = activation_range(a.activation, out.scale(), out.zero_point())
    params = dict(batches=n, input_h=h, input_w=wd, input_c=c, output_h=out.shape[1],
                  output_w=out.shape[2], output_c=cout, filter_h=kh, filter_w=kw,
                  stride_h=a.stride[0], stride_w=a.stride[1], pad_top=a.padding[0],
                  pad_left=a.padding[2], input_offset=-x_t.zero_point(),
                  output_offset=out.zero_point(), act_min=lo, act_max=hi,
                  filter=ctx.array("filter", "int8_t", w),
                  bias=ctx.array("bias", "int32_t", ctx.bias(2, cout)),
                  **_multiplier_arrays(ctx, multiplier, shift))
    return _call(ctx, "tinyml_transpose_conv_s8", "tinyml_transpose_conv_params", params,
                 _io_args(ctx), weight_format="dense int8")


# --------------------------------------------------------------------------------------------
# ---- attention ops: BATCH_MATMUL

from tinyml.reference.kernels.matmul import batch_offsets  # noqa: E402


@lowers("BATCH_MATMUL", kernels={"tinyml_batch_matmul_s8": None})
def _lower_batch_matmul(ctx: _Context) -> KernelCall:
    lhs_t = ctx.int8(ctx.ins[0], "lhs")
    rhs_t = ctx.int8(ctx.ins[1], "rhs")
    out = ctx.int8(ctx.out, "output")
    a = ctx.op.attrs
    _, rows, depth, cols = batch_matmul_dims(ctx.op, lhs_t.shape, rhs_t.shape)
    lhs_offsets, rhs_offsets = batch_offsets(ctx.op, lhs_t.shape, rhs_t.shape)
    # Stored operands: lhs (rows, depth), or (depth, rows) with adj_x; rhs (depth, cols), or
    # (cols, depth) with adj_y.
    lhs_strides = (1, rows) if a.adj_x else (depth, 1)
    rhs_strides = (1, depth) if a.adj_y else (cols, 1)
    multiplier, shift = per_tensor_fc_multiplier(lhs_t.scale(), rhs_t.scale(), out.scale())
    params = dict(batches=lhs_offsets.size,
                  lhs_offsets=ctx.array("lhs_offsets", "int32_t", lhs_offsets),
                  rhs_offsets=ctx.array("rhs_offsets", "int32_t", rhs_offsets),
                  rows=rows, depth=depth, cols=cols, lhs_row_stride=lhs_strides[0],
                  lhs_depth_stride=lhs_strides[1], rhs_depth_stride=rhs_strides[0],
                  rhs_col_stride=rhs_strides[1], lhs_offset=-lhs_t.zero_point(),
                  rhs_offset=-rhs_t.zero_point(), output_offset=out.zero_point(),
                  multiplier=multiplier, shift=shift)
    return _call(ctx, "tinyml_batch_matmul_s8", "tinyml_batch_matmul_params", params,
                 _io_args(ctx, [0, 1]))


@lowers("LOOKUP_TABLE", kernels={"tinyml_lut_s8": "elementwise"})
def _lower_table(ctx: _Context) -> KernelCall:
    """The table a pass computed (tinyml.passes.float_island_table): one load per element."""
    x_t, _ = _unary_int8(ctx)
    params = dict(size=x_t.size, table=ctx.array("table", "int8_t", ctx.op.attrs.values))
    return _call(ctx, "tinyml_lut_s8", "tinyml_lut_params", params, _io_args(ctx),
                 in_place=(0, 0))




@lowers("SVDF", kernels={"tinyml_svdf_s8_s16": None, "tinyml_svdf_s8_s8": None})
def _lower_svdf(ctx: _Context) -> KernelCall:
    """The state is the op's variable (``"state:<name>"``, static storage outside the arena
    that tinyml_reset() restores); the kernel shifts and updates it in place, as TFLM does."""
    from tinyml.ir.tensor import Quantization
    from tinyml.reference.kernels.svdf import svdf_int8_params
    a = ctx.op.attrs
    var = ctx.graph.variables[a.variable]
    x_t, feature_t, time_t = ctx.ins[:3]
    bias_t = ctx.ins[3] if len(ctx.ins) > 3 else None
    p = svdf_int8_params(ctx.op.name, x_t, feature_t, time_t, bias_t, var.dtype,
                         Quantization(np.float32(a.state_scale), a.state_zero_point), ctx.out)
    filters, memory = time_t.shape
    params = dict(batches=x_t.shape[0], input_size=x_t.shape[1], filters=filters,
                  memory=memory, rank=a.rank, input_offset=-p.input_zero_point,
                  state_zero_point=p.state_zero_point, output_zero_point=p.output_zero_point,
                  multiplier_1=p.multiplier_1, shift_1=p.shift_1,
                  multiplier_2=p.multiplier_2, shift_2=p.shift_2,
                  weights_feature=ctx.array("weights_feature", "int8_t",
                                            ctx.constant(feature_t, "the feature weights")),
                  weights_time=ctx.array("weights_time", f"{var.dtype}_t",
                                         ctx.constant(time_t, "the time weights")),
                  bias=ctx.array("bias", "int32_t", ctx.bias(3, filters // a.rank)))
    function = "tinyml_svdf_s8_s16" if var.dtype == "int16" else "tinyml_svdf_s8_s8"
    return _call(ctx, function, "tinyml_svdf_params", params,
                 [f"in:{ctx.op.inputs[0]}", f"state:{var.name}", f"out:{ctx.op.outputs[0]}"])


# ---- streaming ops --------------------------------------------------------------------------


@lowers("READ_VARIABLE", "ASSIGN_VARIABLE", kernels={"tinyml_variable_copy": None})
def _lower_variable(ctx: _Context) -> KernelCall:
    """A variable lives outside the arena (``"state:<name>"`` arguments, see
    tinyml.codegen.project): a read copies it into the arena, an assignment copies the
    new value back. The scheduler keeps each in its place (``Graph.ordering_edges``)."""
    var = ctx.graph.variables[ctx.op.attrs.variable]
    if var.dtype != "int8":
        from tinyml.passes.int8_state import why_not_int8
        raise ctx.fail(f"variable '{var.name}' is {var.dtype}: {why_not_int8(ctx.graph, var)}")
    if ctx.op.kind == "READ_VARIABLE":
        args = [f"state:{var.name}", f"out:{ctx.op.outputs[0]}"]
    else:
        args = [f"in:{ctx.op.inputs[0]}", f"state:{var.name}"]
    return _call(ctx, "tinyml_variable_copy", "tinyml_variable_copy_params",
                 dict(bytes=var.nbytes), args)


# ---- sequence ops ---------------------------------------------------------------------------


@lowers("UNIDIRECTIONAL_SEQUENCE_LSTM", kernels={"tinyml_lstm_s8": None})
def _lower_lstm(ctx: _Context) -> KernelCall:
    """TFLM's integer LSTM; its hidden and cell states are the model's variables
    (``"state:<name>"`` arguments), updated in place. Constants come from
    :func:`tinyml.reference.kernels.lstm.lstm_int8_params`; each FC's input offset is folded
    into its bias. Scratch: the four gates of one row, int16."""
    from tinyml.reference.kernels.lstm import lstm_int8_params
    ctx.int8(ctx.ins[0], "input")
    ctx.int8(ctx.out, "output")
    p = lstm_int8_params(ctx.reference_call())
    a = ctx.op.attrs
    w_in = np.concatenate([ctx.constant(t, "the weights") for t in ctx.ins[1:5]]).astype(np.int64)
    w_rec = np.concatenate([ctx.constant(t, "the weights") for t in ctx.ins[5:9]]).astype(np.int64)
    bias = np.concatenate([ctx.bias(9 + k, p.units) for k in range(4)])
    gates = [p.gates[g] for g in ("input", "forget", "cell", "output")]
    params = dict(
        batch=p.batch, time=p.time, features=p.features, units=p.units,
        time_major=int(a.time_major),
        input_weights=ctx.array("input_weights", "int8_t", w_in),
        recurrent_weights=ctx.array("recurrent_weights", "int8_t", w_rec),
        input_bias=ctx.array("input_bias", "int32_t",
                             wrap_int32(bias + p.input_offset * w_in.sum(axis=1))),
        recurrent_bias=ctx.array("recurrent_bias", "int32_t",
                                 wrap_int32(p.hidden_offset * w_rec.sum(axis=1))),
        input_multiplier=ctx.array("input_multiplier", "int32_t",
                                   [g.input_multiplier for g in gates]),
        input_shift=ctx.array("input_shift", "int32_t", [g.input_shift for g in gates]),
        recurrent_multiplier=ctx.array("recurrent_multiplier", "int32_t",
                                       [g.recurrent_multiplier for g in gates]),
        recurrent_shift=ctx.array("recurrent_shift", "int32_t",
                                  [g.recurrent_shift for g in gates]),
        forget_multiplier=p.forget_mul[0], forget_shift=p.forget_mul[1],
        update_multiplier=p.input_mul[0], update_shift=p.input_mul[1],
        hidden_multiplier=p.output_mul[0], hidden_shift=p.output_mul[1],
        hidden_zero_point=p.hidden_zero_point, cell_clip=p.cell_clip,
        cell_tanh_multiplier=p.cell_tanh[0], cell_tanh_shift=p.cell_tanh[1])
    args = [f"in:{ctx.op.inputs[0]}", f"state:{a.hidden}", f"state:{a.cell}",
            f"out:{ctx.op.outputs[0]}", "scratch"]
    return _call(ctx, "tinyml_lstm_s8", "tinyml_lstm_params", params, args,
                 scratch_bytes=4 * p.units * 2)


# --------------------------------------------------------------------------------------------
# 16x8: int16 activations (zero point 0), int8 weights, int64 bias


def _is_16x8(ctx: _Context) -> bool:
    """Whether the op computes on int16 activations (a TFLite 16x8 layer): its first input
    is int16, or (QUANTIZE from float) its output."""
    first = ctx.ins[0] if ctx.ins and ctx.ins[0] is not None else ctx.out
    return first.dtype == "int16"


def _int16(ctx: _Context, t: Tensor, role: str) -> Tensor:
    """Check that ``t`` is an int16 activation as TFLite's 16x8 scheme makes them:
    per-tensor quantized, zero point 0 (TFLM's int16 kernels require it)."""
    if t.dtype != "int16":
        raise ctx.fail(f"{role} '{t.name}' is {t.dtype}: a 16x8 layer takes int16 "
                       f"activations throughout")
    if t.quant is None or t.quant.per_channel:
        raise ctx.fail(f"{role} '{t.name}' is int16 but not quantized per tensor")
    if t.zero_point() != 0:
        raise ctx.fail(f"{role} '{t.name}' is int16 with zero point {t.zero_point()} "
                       f"(TFLite's 16x8 scheme has zero point 0)")
    return t


def _value_range(t: Tensor) -> tuple[int, int]:
    """The clamp range of ``t``'s type (the activation range of a fused RELU lies in it)."""
    return (-32768, 32767) if t.dtype == "int16" else (-128, 127)


def _bias_s16(ctx: _Context, index: int, channels: int) -> dict:
    """The bias fields of a 16x8 layer: the bias as int64 (zeros when it has none) and
    whether TFLM accumulates in int32 (an int32 bias; the converter writes int64 unless asked
    otherwise). DEPTHWISE_CONV_2D reads an int64 bias only in TFLM."""
    t = ctx.ins[index] if len(ctx.ins) > index else None
    if t is None:
        return dict(int32_accumulator=0,
                    bias=ctx.array("bias", "int64_t", np.zeros(channels, np.int64)))
    if t.dtype not in ("int64", "int32") or (t.dtype == "int32" and
                                              ctx.op.kind == "DEPTHWISE_CONV_2D"):
        allowed = "an int64" if ctx.op.kind == "DEPTHWISE_CONV_2D" else "an int64 or int32"
        raise ctx.fail(f"bias '{t.name}' is {t.dtype}: TFLM's 16x8 {ctx.op.kind} takes "
                       f"{allowed} bias")
    data = ctx.constant(t, "the bias").astype(np.int64).reshape(-1)
    if data.size != channels:
        raise ctx.error(f"bias '{t.name}' has {data.size} entries, expected {channels}")
    return dict(int32_accumulator=int(t.dtype == "int32"),
                bias=ctx.array("bias", "int64_t", data))


def _int8_weights_s16(ctx: _Context, w_t: Tensor, axis: int) -> np.ndarray:
    """Symmetric int8 weights (TFLM's 16x8 kernels ignore a filter zero point)."""
    w = ctx.weights(w_t, axis)
    if np.any(w_t.quant.zero_point != 0):
        raise ctx.fail(f"weights '{w_t.name}' have a non-zero zero point (16x8 weights are "
                       f"symmetric)")
    return w


def _lower_conv2d_s16(ctx: _Context) -> KernelCall:
    x_t = _int16(ctx, ctx.ins[0], "input")
    out = _int16(ctx, ctx.out, "output")
    w_t = ctx.ins[1]
    geometry = _conv_geometry(ctx, x_t, w_t, out)
    w = _int8_weights_s16(ctx, w_t, 0)
    cout = w.shape[0]
    multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, out.scale(), cout)
    lo, hi = activation_range(ctx.op.attrs.activation, out.scale(), 0, -32768, 32767)
    params = dict(geometry, act_min=lo, act_max=hi,
                  filter=ctx.array("filter", "int8_t", w.reshape(cout, -1)),
                  **_bias_s16(ctx, 2, cout), **_multiplier_arrays(ctx, multiplier, shift))
    return _call(ctx, "tinyml_conv2d_s16", "tinyml_conv2d_s16_params", params,
                 _io_args(ctx) + ["scratch"], scratch_bytes=conv_s16_scratch_bytes(ctx, w_t),
                 weight_format="dense int8")


def conv_s16_scratch_bytes(ctx: _Context, w_t: Tensor) -> int:
    """Scratch of tinyml_conv2d_s16: none for the portable kernel; the DSP one
    (firmware/kernels/cortex_m/conv_s16.c) copies one window (filter_h * filter_w * filter_c
    int16 values) there, plus 3 bytes to align it to a word, except for a 1x1 convolution of
    one group whose windows all lie inside the image (it reads the input pixel)."""
    if not ctx.dsp:
        return 0
    x_t, out, a = ctx.ins[0], ctx.out, ctx.op.attrs
    _, kh, kw, cin = w_t.shape
    direct = (kh == kw == 1 and cin == x_t.shape[3] and a.padding[0] == a.padding[2] == 0
              and (out.shape[1] - 1) * a.stride[0] < x_t.shape[1]
              and (out.shape[2] - 1) * a.stride[1] < x_t.shape[2])
    return 0 if direct else 2 * kh * kw * cin + 3


def _lower_depthwise_s16(ctx: _Context) -> KernelCall:
    x_t = _int16(ctx, ctx.ins[0], "input")
    out = _int16(ctx, ctx.out, "output")
    w_t = ctx.ins[1]
    a = ctx.op.attrs
    n, h, w, c = x_t.shape
    _, kh, kw, channels = w_t.shape
    _, oh, ow, _ = out.shape
    if c <= 0 or channels % c:
        raise ctx.fail(f"{channels} filter channels for {c} input channels")
    weights = _int8_weights_s16(ctx, w_t, 3).reshape(kh, kw, channels).transpose(2, 0, 1)
    multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, out.scale(),
                                                channels)
    lo, hi = activation_range(a.activation, out.scale(), 0, -32768, 32767)
    params = dict(batches=n, input_h=h, input_w=w, input_c=c, output_h=oh, output_w=ow,
                  depth_multiplier=channels // c, filter_h=kh, filter_w=kw,
                  stride_h=a.stride[0], stride_w=a.stride[1], dilation_h=a.dilation[0],
                  dilation_w=a.dilation[1], pad_top=a.padding[0], pad_left=a.padding[2],
                  act_min=lo, act_max=hi,
                  filter=ctx.array("filter", "int8_t", weights.reshape(channels, -1)),
                  **_bias_s16(ctx, 2, channels),
                  **_multiplier_arrays(ctx, multiplier, shift))
    return _call(ctx, "tinyml_depthwise_conv2d_s16", "tinyml_depthwise_conv2d_s16_params",
                 params, _io_args(ctx), weight_format="dense int8")


def _lower_fully_connected_s16(ctx: _Context) -> KernelCall:
    x_t = _int16(ctx, ctx.ins[0], "input")
    out = _int16(ctx, ctx.out, "output")
    w_t = ctx.ins[1]
    w = _int8_weights_s16(ctx, w_t, 0)
    units, depth = out.shape[-1], w.shape[-1]
    w = w.reshape(-1, depth)[:units]
    if x_t.size % depth:
        raise ctx.error(f"input of {x_t.size} elements is not a multiple of the weights' "
                        f"depth {depth}")
    if w_t.quant.per_channel:
        multiplier, shift = per_channel_multipliers(x_t.scale(), w_t.quant.scale, out.scale(),
                                                    units)
    else:
        m, s_ = per_tensor_fc_multiplier(x_t.scale(), w_t.scale(), out.scale())
        multiplier, shift = np.full(units, m), np.full(units, s_)
    lo, hi = activation_range(ctx.op.attrs.activation, out.scale(), 0, -32768, 32767)
    params = dict(batches=x_t.size // depth, input_depth=depth, output_depth=units,
                  act_min=lo, act_max=hi, filter=ctx.array("filter", "int8_t", w),
                  **_bias_s16(ctx, 2, units), **_multiplier_arrays(ctx, multiplier, shift))
    return _call(ctx, "tinyml_fully_connected_s16", "tinyml_fully_connected_s16_params",
                 params, _io_args(ctx), weight_format="dense int8")


def _lower_softmax_s16(ctx: _Context) -> KernelCall:
    x_t = _int16(ctx, ctx.ins[0], "input")
    out = ctx.out
    multiplier, shift = softmax_int16_params(ctx.op, x_t, out)
    exp_lut, reciprocal_lut = softmax_int16_tables()
    depth = x_t.shape[-1]
    params = dict(rows=x_t.size // depth, depth=depth, input_multiplier=multiplier,
                  input_left_shift=shift, exp_lut=ctx.array("exp_lut", "int16_t", exp_lut),
                  reciprocal_lut=ctx.array("reciprocal_lut", "int16_t", reciprocal_lut))
    return _call(ctx, "tinyml_softmax_s16", "tinyml_softmax_s16_params", params, _io_args(ctx))


def _lower_quantize_s16(ctx: _Context) -> KernelCall:
    """QUANTIZE at the int16 edges: float32 -> int16, and int16 -> int16, int8 -> int16 and
    int16 -> int8 requantization (TFLM's Requantize: the last two join the int8 and 16x8
    layers of a mixed model)."""
    x_t = ctx.ins[0]
    if x_t.dtype in ("int8", "int16") and x_t.dtype != ctx.out.dtype:
        narrow, wide = (x_t, ctx.out) if x_t.dtype == "int8" else (ctx.out, x_t)
        ctx.int8(narrow, "input" if narrow is x_t else "output")
        _int16(ctx, wide, "input" if wide is x_t else "output")
        multiplier, shift = requantize_multiplier(x_t.scale(), ctx.out.scale())
        params = dict(size=x_t.size, input_zero_point=x_t.zero_point(), multiplier=multiplier,
                      shift=shift, output_zero_point=ctx.out.zero_point())
        function = ("tinyml_requantize_s8_s16" if x_t.dtype == "int8"
                    else "tinyml_requantize_s16_s8")
        return _call(ctx, function, "tinyml_requantize_params", params, _io_args(ctx))
    out = _int16(ctx, ctx.out, "output")
    if x_t.dtype == "float32":
        params = dict(size=x_t.size, scale=float(np.float32(out.scale())), zero_point=0)
        return _call(ctx, "tinyml_quantize_f32_s16", "tinyml_quantize_params", params,
                     _io_args(ctx))
    _int16(ctx, x_t, "input")
    multiplier, shift = requantize_multiplier(x_t.scale(), out.scale())
    params = dict(size=x_t.size, input_zero_point=0, multiplier=multiplier, shift=shift,
                  output_zero_point=0)
    return _call(ctx, "tinyml_requantize_s16", "tinyml_requantize_params", params,
                 _io_args(ctx))


def _lower_sigmoid_family_s16(ctx: _Context) -> KernelCall:
    """int16 LOGISTIC and TANH: TFLM's input rescaling and its sigmoid table (in the C)."""
    x_t = _int16(ctx, ctx.ins[0], "input")
    out = _int16(ctx, ctx.out, "output")
    multiplier, shift = sigmoid_family_int16_params(ctx.op, x_t, out)
    function = "tinyml_logistic_s16" if ctx.op.kind == "LOGISTIC" else "tinyml_tanh_s16"
    return _call(ctx, function, "tinyml_sigmoid_s16_params",
                 dict(size=x_t.size, input_multiplier=multiplier, input_left_shift=shift),
                 _io_args(ctx))
