"""Converters from ONNX nodes to IR ops, one function per ONNX op (see :data:`CONVERTERS`).

Each converter reads its inputs as :class:`~tinyml.frontends.onnx_values.Value` s and registers
its outputs. Layout: convolutions and pools consume NHWC (``channels_last``), element-wise ops
and reductions work in whatever layout their input already has (axes are remapped), reshapes
need the logical row-major order. Quantization: a converter whose inputs are QDQ views and
whose result goes straight into a QuantizeLinear (:meth:`Builder.find_sink`) emits the int8 IR
op with that QuantizeLinear's scale and zero point (:func:`_finish_int8`); data-movement ops
(reshape, transpose, max pool, pad, concat of equal scales, ...) commute with dequantization
and simply run on the int8 tensor; anything else runs in float on dequantized inputs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from tinyml.errors import ModelFormatError, UnsupportedOpError
from tinyml.frontends import layout
from tinyml.frontends.layout import Perm
from tinyml.frontends.onnx_values import FUSED_CLIPS, Builder, QParams, Sink, Value
from tinyml.ir import Quantization
from tinyml.ir import ops as irops

Converter = Callable[[Builder, object, dict], None]
CONVERTERS: dict[str, Converter] = {}

#: TFLM's int8 SOFTMAX and LOGISTIC write a fixed output quantization.
UNIT_INTERVAL_QUANT = (1.0 / 256.0, -128)


def converter(*op_types: str):
    def register(fn: Converter) -> Converter:
        for op_type in op_types:
            CONVERTERS[op_type] = fn
        return fn
    return register


# --------------------------------------------------------------------------------------------
# Shared helpers


def _fail(b: Builder, detail: str) -> UnsupportedOpError:
    return UnsupportedOpError(b.op_type, b.layer, detail=detail)


def _malformed(b: Builder, detail: str) -> ModelFormatError:
    return ModelFormatError(f"{b.graph.name}: layer '{b.layer}' ({b.op_type}): {detail}")


def _inputs(b: Builder, node) -> list[Value | None]:
    return [b.get(n) for n in node.input]


def _activation_input(b: Builder, value: Value | None, what: str = "input") -> Value:
    if value is None:
        raise _malformed(b, f"missing {what}")
    return value


def _ints(values) -> list[int]:
    return [int(v) for v in np.asarray(values).reshape(-1)]


def _normalize_axis(b: Builder, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise _malformed(b, f"axis {axis} out of range for rank {rank}")
    return axis % rank


def _axes_input(b: Builder, node, attrs: dict, index: int) -> list[int] | None:
    """Axes given as an attribute (older opsets) or as input ``index`` (newer ones)."""
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(node.input) > index and node.input[index]:
        return _ints(b.const_array(b.get(node.input[index]), "axes"))
    return None


def _int8_quant(b: Builder, ir: str) -> Quantization | None:
    q = b.quant_of(ir)
    if q is None or q.axis is not None or b.graph.tensors[ir].dtype != "int8":
        return None
    return q


def _int8_weights(w: Value | None, channel_axis: int) -> bool:
    """int8 symmetric weights, per-tensor or per-channel on the output channel axis (TFLite's
    int8 convolution and fully-connected kernels assume exactly this)."""
    return (w is not None and w.is_const and w.qconst is not None and w.qconst.dtype == "int8"
            and not np.any(w.qconst.zero_point) and w.qconst.axis in (None, channel_axis))


def _bias_ok(bias: Value | None) -> bool:
    if bias is None:
        return True
    if not bias.is_const:
        return False
    q = bias.qconst
    return q is None or (q.dtype == "int32" and not np.any(q.zero_point))


def _int8_bias(b: Builder, bias: Value | None, input_scale: float, weight_scale: np.ndarray,
               count: int, beta: float = 1.0) -> str | None:
    """The int32 bias with scale input_scale * weight_scale, as TFLite requires.

    QDQ models store exactly that (ORT quantizes biases with it); a bias stored with another
    scale, or in float, is requantized here.
    """
    if bias is None:
        return None
    expected = (np.float32(input_scale) * weight_scale.astype(np.float32)).astype(np.float32)
    if bias.qconst is not None and beta == 1.0 and np.allclose(
            np.broadcast_to(bias.qconst.scale, expected.shape), expected, rtol=1e-6, atol=0):
        data = bias.data.astype(np.int64).reshape(-1)
    else:
        real = bias.float_data().astype(np.float64).reshape(-1) * beta
        if real.size == 1:
            real = np.repeat(real, count)
        if real.size != count:
            raise _malformed(b, f"bias has {real.size} entries, expected {count}")
        data = np.round(real / np.broadcast_to(expected, real.shape).astype(np.float64))
    if data.size == 1 and count > 1:
        data = np.repeat(data, count)
    if data.size != count:
        raise _malformed(b, f"bias has {data.size} entries, expected {count}")
    data = np.clip(data, -(1 << 31), (1 << 31) - 1).astype(np.int32)
    scales = expected if expected.size > 1 else expected.reshape(1)
    quant = Quantization(scales, np.zeros(scales.size, np.int64),
                         0 if scales.size > 1 else None)
    return b.new_const(bias.name, data, quant)


def _finish_int8(b: Builder, node, sink: Sink, kind: str, inputs: list[str], attrs, perm: Perm,
                 out_quant: Quantization | None = None, register: bool = True) -> str:
    """Emit int8 ``kind`` computing the value ``sink`` quantizes; return its IR tensor.

    ``out_quant`` is the quantization the IR kernel itself must write (TFLM's SOFTMAX and
    LOGISTIC have a fixed one, pooling and RELU6 keep their input's); a QUANTIZE op then
    requantizes to the QuantizeLinear's scale when that differs. A Relu/Clip between the op
    and the QuantizeLinear becomes the op's fused activation when it has one. With
    ``register`` the QuantizeLinear's output value is registered as that tensor.
    """
    target = sink.params.quantization()
    out_quant = out_quant or target
    activation = sink.activation
    if activation in FUSED_CLIPS.values() and hasattr(attrs, "activation"):
        attrs = replace(attrs, activation=activation)
        activation = "NONE"
    name = sink.quantize.output[0]
    clamp = activation != "NONE"
    requantize = not sink.params.matches(out_quant)
    # Only the last op gets the QuantizeLinear's name; intermediates say what they are.
    out = b.emit(kind, inputs, attrs, name=f"{name}/{kind.lower()}" if clamp or requantize
                 else name, dtype="int8", quant=out_quant)
    if clamp:
        out = _emit_clamp(b, out, sink.clip, f"{name}/clamped" if requantize else name)
    if requantize:
        out = b.emit("QUANTIZE", [out], irops.CastAttrs("int8"), name=name, dtype="int8",
                     quant=target)
    b.done.update(id(n) for n in sink.absorbed)
    if register:
        b.activation(name, out, perm, dtype=_int_type(sink.params))
    return out


def _int_type(params: QParams) -> str:
    return "uint8" if params.shift else "int8"


def _emit_clamp(b: Builder, ir: str, bounds: tuple[float, float], name: str) -> str:
    """A standalone Relu/Relu6/Clip on ``ir`` (float, or int8 keeping its quantization)."""
    activation = FUSED_CLIPS.get(bounds)
    quant = b.quant_of(ir)
    if activation in ("RELU", "RELU6"):
        return b.emit(activation, [ir], name=name, quant=quant)
    return b.emit("CLIP", [ir], irops.ClipAttrs(float(bounds[0]), float(bounds[1])), name=name,
                  quant=quant)


def _commuting_output(b: Builder, name: str, source: Value, ir: str, perm: Perm) -> Value:
    """Register the output of a data-movement op: it stays a QDQ view if its input was."""
    return b.activation(name, ir, perm, view=source.view,
                        dtype=source.dtype if not source.view else "float32")


def _pads_2d(b: Builder, attrs: dict, size: tuple[int, int], kernel: tuple[int, int],
             strides: tuple[int, int], dilations: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from ONNX ``pads`` [t, l, b, r] or ``auto_pad``."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        result = []
        for i in range(2):
            before, after = irops.same_padding(size[i], kernel[i], strides[i], dilations[i])
            if auto == "SAME_LOWER":
                before, after = after, before
            result += [before, after]
        return tuple(result)
    if auto == "VALID":
        return (0, 0, 0, 0)
    if auto != "NOTSET":
        raise _fail(b, f"auto_pad {auto}")
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4:
        raise _malformed(b, f"pads {pads} for a 2-D window")
    if any(p < 0 for p in pads):
        raise _fail(b, "negative padding")
    return (pads[0], pads[2], pads[1], pads[3])


def _spatial_2d(b: Builder, node, attrs: dict, x: Value,
                rebuild: Callable[[Value, dict], tuple[Value, str]]) -> Value:
    """Run a 2-D window op on a 1-D (N, C, L) input as (N, C, 1, L).

    ``rebuild`` converts the 2-D op and returns its 4-D result and the ONNX name the squeezed
    result gets (the node's output, or its QuantizeLinear's when the op went int8).
    """
    x4 = _unsqueeze(b, x, [2], f"{x.name}/as_2d")
    widened = dict(attrs)
    for key, fill in (("kernel_shape", 1), ("strides", 1), ("dilations", 1)):
        if key in attrs:
            widened[key] = [fill] + list(attrs[key])
    if "pads" in attrs:
        p = list(attrs["pads"])
        widened["pads"] = [0, p[0], 0, p[1]]
    y4, final = rebuild(x4, widened)
    return _squeeze(b, y4, [2], final)


# ---- layout-only helpers shared by several converters --------------------------------------


def _reshape(b: Builder, x: Value, shape: tuple[int, ...], name: str) -> Value:
    shape = tuple(int(d) for d in shape)
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(x.shape, dtype=np.int64)):
        raise _malformed(b, f"cannot reshape {list(x.shape)} to {list(shape)}")
    if x.is_const:
        q = x.qconst
        if q is not None and not q.per_tensor:
            axis = _reshaped_axis(x.shape, shape, q.axis)
            if axis is None:
                return b.constant(name, x.float_data().reshape(shape))
            q = replace(q, axis=axis)
        return b.constant(name, x.data.reshape(shape), q)
    out = b.reshaped(b.row_major(x), shape, name)
    return _commuting_output(b, name, x, out, layout.identity(len(shape)))


def _reshaped_axis(old: tuple[int, ...], new: tuple[int, ...], axis: int) -> int | None:
    """Where a per-channel axis lands after a reshape that keeps it whole, else None."""
    before = int(np.prod(old[:axis], dtype=np.int64))
    for j, d in enumerate(new):
        if d == old[axis] and int(np.prod(new[:j], dtype=np.int64)) == before:
            return j
    return None


def _copy_quant(q: Quantization | None) -> Quantization | None:
    return None if q is None else Quantization(q.scale.copy(), q.zero_point.copy(), q.axis)


def _squeeze(b: Builder, x: Value, axes: list[int], name: str) -> Value:
    axes = sorted({_normalize_axis(b, a, x.rank) for a in axes})
    if any(x.shape[a] != 1 for a in axes):
        raise _malformed(b, f"cannot squeeze axes {axes} of shape {list(x.shape)}")
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    if x.is_const:
        return _reshape(b, x, shape, name)
    perm = x.primary
    src = x.stored[perm]
    new_perm = layout.drop_axes(perm, axes)
    out = b.reshaped(src, layout.stored_shape(shape, new_perm), name)
    return _commuting_output(b, name, x, out, new_perm)


def _unsqueeze(b: Builder, x: Value, axes: list[int], name: str) -> Value:
    rank = x.rank + len(axes)
    axes = sorted({_normalize_axis(b, a, rank) for a in axes})
    if len(axes) != rank - x.rank:
        raise _malformed(b, "repeated unsqueeze axes")
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    shape = tuple(shape)
    if x.is_const:
        return _reshape(b, x, shape, name)
    perm = x.primary
    src = x.stored[perm]
    new_perm = layout.insert_axes(perm, axes)
    out = b.reshaped(src, layout.stored_shape(shape, new_perm), name)
    return _commuting_output(b, name, x, out, new_perm)


def _transpose(b: Builder, x: Value, perm: Perm, name: str) -> Value:
    shape = tuple(x.shape[p] for p in perm)
    if x.is_const:
        q = x.qconst
        if q is not None and q.axis is not None:
            q = replace(q, axis=perm.index(q.axis))
        return b.constant(name, np.transpose(x.data, perm), q)
    stored = {layout.after_transpose(p, perm): ir for p, ir in x.stored.items()}
    return b.alias(name, x, stored, shape)


def _common_layout(b: Builder, values: list[Value]) -> tuple[int, Perm]:
    """Rank and layout for an op combining ``values`` element-wise: a layout every full-rank
    activation already has if there is one, else the first activation's."""
    rank = max(v.rank for v in values)
    full = [v for v in values if not v.is_const and v.rank == rank]
    if not full:
        return rank, layout.identity(rank)
    for perm in full[0].stored:
        if all(perm in v.stored for v in full[1:]):
            return rank, perm
    return rank, full[0].primary


def _operand(b: Builder, v: Value, rank: int, perm: Perm, quantized: bool) -> str:
    """``v`` as an IR tensor of ``rank`` in layout ``perm`` (leading unit axes added)."""
    if v.is_const:
        return b.const_tensor(v, perm, rank, quantized=quantized)
    if v.rank < rank:
        v = _unsqueeze(b, v, list(range(rank - v.rank)), f"{v.name}/rank{rank}")
    return b.tensor(v, perm) if quantized else b.float_tensor(v, perm)


def _primary_tensor(v: Value) -> str:
    return next(iter(v.stored.values()))


def _is_view8(b: Builder, v: Value | None) -> bool:
    return (v is not None and not v.is_const and v.view
            and _int8_quant(b, _primary_tensor(v)) is not None)


def _is_qconst8(v: Value | None) -> bool:
    return (v is not None and v.is_const and v.qconst is not None and v.qconst.per_tensor
            and v.qconst.dtype == "int8")


# --------------------------------------------------------------------------------------------
# Convolution, fully connected


@converter("Conv")
def conv(b: Builder, node, attrs: dict) -> None:
    ins = _inputs(b, node)
    x = _activation_input(b, ins[0])
    w = ins[1] if len(ins) > 1 else None
    bias = ins[2] if len(ins) > 2 else None
    if w is None or not w.is_const:
        raise _fail(b, "weights must be a constant")
    if bias is not None and not bias.is_const:
        raise _fail(b, "bias must be a constant")
    if x.rank == 3 and w.rank == 3:
        w4 = _unsqueeze(b, w, [2], f"{w.name}/as_2d")
        _spatial_2d(b, node, attrs, x, lambda x4, a4: _conv_2d(b, node, a4, x4, w4, bias, True))
        return
    if x.rank != 4 or w.rank != 4:
        raise _fail(b, f"{x.rank - 2}-D convolution (only 1-D and 2-D)")
    _conv_2d(b, node, attrs, x, w, bias, False)


def _conv_2d(b: Builder, node, attrs: dict, x: Value, w: Value, bias: Value | None,
             internal: bool) -> tuple[Value, str]:
    group = int(attrs.get("group", 1))
    out_ch, in_per_group, kh, kw = w.shape
    channels = x.shape[1]
    if in_per_group * group != channels or out_ch % group:
        raise _malformed(b, f"weights {list(w.shape)} with group {group} do not fit "
                            f"{channels} input channels")
    if "kernel_shape" in attrs and [int(k) for k in attrs["kernel_shape"]] != [kh, kw]:
        raise _malformed(b, f"kernel_shape {list(attrs['kernel_shape'])} does not match "
                            f"weights {list(w.shape)}")
    strides = tuple(int(s) for s in attrs.get("strides", (1, 1)))
    dilations = tuple(int(d) for d in attrs.get("dilations", (1, 1)))
    padding = _pads_2d(b, attrs, x.shape[2:], (kh, kw), strides, dilations)
    depthwise = group == channels and group > 1
    common = dict(stride=strides, dilation=dilations, padding=padding)
    if depthwise:
        kind = "DEPTHWISE_CONV_2D"
        ir_attrs = irops.DepthwiseConv2DAttrs(**common, depth_multiplier=out_ch // channels)
        to_ir = lambda d: np.transpose(d[:, 0], (1, 2, 0))[None]  # noqa: E731  [1,kH,kW,O]
        ir_axis = 3
    else:
        kind = "CONV_2D"
        ir_attrs = irops.Conv2DAttrs(**common)
        to_ir = lambda d: np.transpose(d, (0, 2, 3, 1))  # noqa: E731  [O,kH,kW,I]
        ir_axis = 0
    nhwc = layout.channels_last(4)
    name = node.output[0] if not internal else f"{node.output[0]}/2d"
    sink = b.find_sink(node) if _is_view8(b, x) else None
    if sink is not None and _int8_weights(w, 0) and _bias_ok(bias):
        x_ir = b.tensor(x, nhwc)
        wq = w.qconst
        w_quant = Quantization(wq.scale, wq.zero_point, ir_axis if wq.axis is not None else None)
        w_ir = b.new_const(w.name, to_ir(w.data), w_quant)
        bias_ir = _int8_bias(b, bias, float(b.quant_of(x_ir).scale[0]), wq.scale, out_ch)
        inputs = [x_ir, w_ir] + ([bias_ir] if bias_ir else [])
        out = _finish_int8(b, node, sink, kind, inputs, ir_attrs, nhwc, register=not internal)
        final = sink.quantize.output[0]
        if internal:
            return b.activation(f"{final}/2d", out, nhwc, dtype=_int_type(sink.params)), final
        return b.values[final], final
    x_ir = b.float_tensor(x, nhwc)
    w_ir = b.new_const(w.name, to_ir(w.float_data()).astype(np.float32))
    inputs = [x_ir, w_ir]
    if bias is not None:
        inputs.append(b.new_const(bias.name, bias.float_data().astype(np.float32).reshape(-1)))
    out = b.emit(kind, inputs, ir_attrs, name=name, dtype="float32")
    return b.activation(name, out, nhwc), node.output[0]


def _fully_connected(b: Builder, node, x_ir: str, weights: Value, w_data: np.ndarray,
                     weight_axis: int | None, scale: np.ndarray, bias: Value | None,
                     beta: float, out_perm: Perm, keep_dims: bool, sink: Sink | None,
                     out_name: str) -> None:
    """FULLY_CONNECTED with weights [out, in]; int8 when ``sink`` is given."""
    out_units = w_data.shape[0]
    attrs = irops.FullyConnectedAttrs(keep_num_dims=keep_dims)
    if sink is not None:
        w_quant = Quantization(scale, np.zeros(scale.size, np.int64),
                               0 if weight_axis is not None else None)
        w_ir = b.new_const(weights.name, w_data, w_quant)
        bias_ir = _int8_bias(b, bias, float(b.quant_of(x_ir).scale[0]), scale, out_units, beta)
        _finish_int8(b, node, sink, "FULLY_CONNECTED", [x_ir, w_ir] + ([bias_ir] if bias_ir
                                                                       else []), attrs, out_perm)
        return
    inputs = [x_ir, b.new_const(weights.name, w_data.astype(np.float32))]
    if bias is not None:
        data = (bias.float_data().astype(np.float32) * np.float32(beta)).reshape(-1)
        if data.size == 1 and out_units > 1:
            data = np.repeat(data, out_units)
        if data.size != out_units:
            raise _malformed(b, f"bias has {data.size} entries, expected {out_units}")
        inputs.append(b.new_const(bias.name, data))
    out = b.emit("FULLY_CONNECTED", inputs, attrs, name=out_name, dtype="float32")
    b.activation(out_name, out, out_perm)


@converter("Gemm")
def gemm(b: Builder, node, attrs: dict) -> None:
    ins = _inputs(b, node)
    a, w = _activation_input(b, ins[0]), ins[1]
    c = ins[2] if len(ins) > 2 else None
    if w is None or not w.is_const:
        raise _fail(b, "B (the weights) must be a constant")
    if a.rank != 2 or w.rank != 2:
        raise _malformed(b, "Gemm takes 2-D inputs")
    if int(attrs.get("transA", 0)):
        a = _transpose(b, a, (1, 0), f"{a.name}/transposed")
    trans_b = bool(int(attrs.get("transB", 0)))
    alpha = float(attrs.get("alpha", 1.0))
    beta = float(attrs.get("beta", 1.0))
    out_units = w.shape[0] if trans_b else w.shape[1]
    if c is not None and not c.is_const:
        # A computed bias: FULLY_CONNECTED without bias, then ADD.
        tmp = f"{node.output[0]}/matmul"
        _gemm_core(b, node, a, w, trans_b, alpha, None, 1.0, tmp, quantize=False)
        _binary_float(b, "ADD", b.values[tmp], _scaled(b, c, beta), node.output[0])
        return
    if c is not None and int(np.prod(c.shape)) not in (1, out_units):
        if not (c.rank == 2 and c.shape == (a.shape[0], out_units) and a.shape[0] == 1):
            raise _fail(b, f"bias C of shape {list(c.shape)} (only [N] or [1, N])")
    _gemm_core(b, node, a, w, trans_b, alpha, c, beta, node.output[0], quantize=True)


def _scaled(b: Builder, v: Value, factor: float) -> Value:
    if factor == 1.0:
        return v
    k = b.constant(f"{v.name}/factor", np.full((1,), factor, np.float32))
    return _binary_float(b, "MUL", v, k, f"{v.name}/scaled")


def _gemm_core(b: Builder, node, a: Value, w: Value, trans_b: bool, alpha: float,
               c: Value | None, beta: float, out_name: str, quantize: bool) -> None:
    ident = layout.identity(2)
    sink = b.find_sink(node) if quantize and _is_view8(b, a) else None
    channel_axis = 0 if trans_b else 1
    if sink is not None and _int8_weights(w, channel_axis) and _bias_ok(c) and alpha > 0:
        w_data = w.data if trans_b else w.data.T
        scale = (w.qconst.scale.astype(np.float32) * np.float32(alpha)).astype(np.float32)
        _fully_connected(b, node, b.row_major(a), w, np.ascontiguousarray(w_data),
                         w.qconst.axis, scale, c, beta, ident, False, sink, out_name)
        return
    data = w.float_data().astype(np.float32)
    w_data = (data if trans_b else data.T) * np.float32(alpha)
    x_ir = b.row_major(a, real=True)
    _fully_connected(b, node, x_ir, w, np.ascontiguousarray(w_data), None, np.ones(1), c,
                     beta, ident, False, None, out_name)


@converter("MatMul")
def matmul(b: Builder, node, attrs: dict) -> None:
    a, w = (_activation_input(b, v) for v in _inputs(b, node)[:2])
    if not w.is_const or w.rank != 2 or a.is_const:
        _batch_matmul(b, node, a, w)
        return
    if a.rank < 2:
        raise _fail(b, f"MatMul of shapes {list(a.shape)} and {list(w.shape)} (a 1-D operand)")
    if a.shape[-1] != w.shape[0]:
        raise _malformed(b, f"cannot multiply {list(a.shape)} by {list(w.shape)}")
    rank = a.rank
    # FULLY_CONNECTED (keep_num_dims) works along the last stored axis: any layout that keeps
    # the logical last axis last will do.
    perm = next((p for p in a.stored if p[-1] == rank - 1), layout.identity(rank))
    keep_dims = rank > 2
    if not keep_dims:
        perm = layout.identity(2)
    # A constant added right after is the bias (MatMul + Add, as tf2onnx writes Dense).
    bias, add = None, None
    user = b.single_user(node.output[0])
    if user is not None and user.op_type == "Add":
        other = [n for n in user.input if n != node.output[0]]
        c = b.values.get(other[0]) if len(other) == 1 else None
        n_out = w.shape[1]
        if (c is not None and c.is_const and c.rank <= rank and c.shape[-1:] == (n_out,)
                and int(np.prod(c.shape)) == n_out):
            bias, add = c, user
    if _is_view8(b, a) and _int8_weights(w, 1):
        # int8: the QuantizeLinear follows the MatMul (ORT), or the bias Add (tf2onnx).
        sink = b.find_sink(node)
        fused = None
        if sink is None and add is not None and _bias_ok(bias):
            sink, fused = b.find_sink(add), bias
        if sink is not None:
            if fused is not None:
                sink.absorbed.append(add)
            x_ir = b.tensor(a, perm) if keep_dims else b.row_major(a)
            _fully_connected(b, node, x_ir, w, np.ascontiguousarray(w.data.T), w.qconst.axis,
                             w.qconst.scale.astype(np.float32), fused, 1.0, perm, keep_dims,
                             sink, node.output[0])
            return
    out_name = node.output[0]
    if add is not None:
        out_name = add.output[0]
        b.done.add(id(add))
    x_ir = b.float_tensor(a, perm) if keep_dims else b.row_major(a, real=True)
    _fully_connected(b, node, x_ir, w, np.ascontiguousarray(w.float_data().T), None,
                     np.ones(1), bias, 1.0, perm, keep_dims, None, out_name)


def _batch_matmul(b: Builder, node, a: Value, w: Value) -> None:
    """MatMul of two activations (attention's queries x keys, scores x values), or by a
    constant of rank 3 or more: BATCH_MATMUL over the broadcast leading dimensions, both
    operands in their logical layout. int8 when both are per-tensor int8 (QDQ)."""
    if a.rank < 2 or w.rank < 2:
        raise _fail(b, f"MatMul of shapes {list(a.shape)} and {list(w.shape)} (a 1-D operand)")
    out_rank = max(a.rank, w.rank)
    name = node.output[0]
    if all(_is_view8(b, v) or _is_qconst8(v) for v in (a, w)):
        sink = b.find_sink(node)
        if sink is not None:
            inputs = [_operand(b, v, v.rank, layout.identity(v.rank), True) for v in (a, w)]
            _finish_int8(b, node, sink, "BATCH_MATMUL", inputs, irops.BatchMatMulAttrs(),
                         layout.identity(out_rank))
            return
    inputs = [_operand(b, v, v.rank, layout.identity(v.rank), False) for v in (a, w)]
    out = b.emit("BATCH_MATMUL", inputs, irops.BatchMatMulAttrs(), name=name, dtype="float32")
    b.activation(name, out, layout.identity(out_rank))


# --------------------------------------------------------------------------------------------
# Element-wise


def _binary_float(b: Builder, kind: str, x: Value, y: Value, name: str) -> Value:
    rank, perm = _common_layout(b, [x, y])
    inputs = [_operand(b, v, rank, perm, False) for v in (x, y)]
    out = b.emit(kind, inputs, irops.ElementwiseAttrs(), name=name, dtype="float32")
    return b.activation(name, out, perm)


@converter("Add", "Mul", "Div")
def binary(b: Builder, node, attrs: dict) -> None:
    x, y = (_activation_input(b, v) for v in _inputs(b, node)[:2])
    op = node.op_type
    if op in ("Add", "Mul") and all(_is_view8(b, v) or _is_qconst8(v) for v in (x, y)):
        sink = b.find_sink(node)
        if sink is not None:
            rank, perm = _common_layout(b, [x, y])
            inputs = [_operand(b, v, rank, perm, True) for v in (x, y)]
            _finish_int8(b, node, sink, op.upper(), inputs, irops.ElementwiseAttrs(), perm)
            return
    name = node.output[0]
    if op in ("Add", "Mul"):
        _binary_float(b, op.upper(), x, y, name)
    elif y.is_const:
        _binary_float(b, "MUL", x, b.constant(f"{y.name}/reciprocal", (
            np.float32(1) / y.float_data().astype(np.float32))), name)
    else:
        raise _fail(b, "division by a non-constant")


@converter("Neg")
def neg(b: Builder, node, attrs: dict) -> None:
    """-x as a float MUL by -1, which quantizes (TFLM's NEG is float only). tf2onnx writes
    Keras' PReLU as relu(x) - alpha * relu(-x); the quantizer makes that one PRELU again
    (``tinyml.passes.prelu_from_relus``)."""
    x = _activation_input(b, b.get(node.input[0]))
    minus_one = b.constant(f"{node.output[0]}/minus_one", np.full((1,), -1.0, np.float32))
    _binary_float(b, "MUL", x, minus_one, node.output[0])


@converter("Sqrt")
def sqrt(b: Builder, node, attrs: dict) -> None:
    """Sqrt then Reciprocal (tf2onnx's form of TF's Rsqrt, as in tf.math.l2_normalize) as
    one RSQRT, which TFLM runs in int8; TFLM's SQRT alone is float only."""
    user = b.single_user(node.output[0])
    if user is None or user.op_type != "Reciprocal":
        raise _fail(b, "a square root not followed by Reciprocal (TFLM's SQRT is float only; "
                       "only 1 / sqrt(x), RSQRT, compiles)")
    x = _activation_input(b, b.get(node.input[0]))
    perm = x.primary
    out = b.emit("RSQRT", [b.float_tensor(x, perm)], name=user.output[0], dtype="float32")
    b.activation(user.output[0], out, perm)
    b.done.add(id(user))


@converter("Relu", "Clip")
def clamp(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    bounds = b.clip_bounds(node)
    if bounds is None:
        raise _fail(b, "Clip bounds must be constants")
    activation = FUSED_CLIPS.get(bounds)
    name = node.output[0]
    perm = x.primary
    if bounds == (-np.inf, np.inf):
        b.alias(name, x)
        return
    if _is_view8(b, x):
        sink = b.find_sink(node)
        if sink is not None and sink.activation == "NONE":
            if activation and b.fuse_activation(x, activation, node, sink.quantize.output[0],
                                                  sink.params):
                b.done.update(id(n) for n in sink.absorbed)
                q = b.alias(sink.quantize.output[0], x)
                q.view, q.dtype = False, _int_type(sink.params)
                return
            x_ir = b.tensor(x, perm)
            kind = activation if activation in ("RELU", "RELU6") else "CLIP"
            attrs_ = irops.ClipAttrs(*bounds) if kind == "CLIP" else None
            # TFLM's int8 RELU and CLIP requantize; RELU6 clamps codes at the input's scale.
            keep = b.quant_of(x_ir) if kind == "RELU6" else None
            _finish_int8(b, node, sink, kind, [x_ir], attrs_, perm, _copy_quant(keep))
            return
    if activation and not x.view and b.fuse_activation(x, activation, node, name):
        b.alias(name, x)
        return
    out = _emit_clamp(b, b.float_tensor(x, perm), bounds, name)
    b.activation(name, out, perm)


@converter("Sigmoid", "HardSwish")
def unary(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    kind = {"Sigmoid": "LOGISTIC", "HardSwish": "HARD_SWISH"}[node.op_type]
    perm = x.primary
    if _is_view8(b, x):
        sink = b.find_sink(node)
        if sink is not None:
            fixed = Quantization(*UNIT_INTERVAL_QUANT) if kind == "LOGISTIC" else None
            _finish_int8(b, node, sink, kind, [b.tensor(x, perm)], None, perm, fixed)
            return
    out = b.emit(kind, [b.float_tensor(x, perm)], name=node.output[0], dtype="float32")
    b.activation(node.output[0], out, perm)


@converter("BatchNormalization")
def batch_norm(b: Builder, node, attrs: dict) -> None:
    ins = _inputs(b, node)
    x = _activation_input(b, ins[0])
    if int(attrs.get("training_mode", 0)):
        raise _fail(b, "training mode")
    if any(n and b.consumers.get(n) for n in node.output[1:]):
        raise _fail(b, "running mean/variance outputs")
    if x.rank < 2:
        raise _malformed(b, "batch norm of a rank < 2 input")
    params = [b.const_array(v, "scale/bias/mean/variance") for v in ins[1:5]]
    perm = x.primary
    tensors = [b.new_const(f"{v.name}", np.asarray(p, np.float32).reshape(-1))
               for v, p in zip(ins[1:5], params)]
    a = irops.BatchNormAttrs(epsilon=float(attrs.get("epsilon", 1e-5)),
                             axis=layout.stored_axis(perm, 1))
    out = b.emit("BATCH_NORM", [b.float_tensor(x, perm)] + tensors, a, name=node.output[0],
                 dtype="float32")
    b.activation(node.output[0], out, perm)


# --------------------------------------------------------------------------------------------
# Pooling and reductions


@converter("MaxPool", "AveragePool")
def pool(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    if len(node.output) > 1 and node.output[1] and b.consumers.get(node.output[1]):
        raise _fail(b, "the Indices output")
    if x.rank == 3:
        _spatial_2d(b, node, attrs, x, lambda x4, a4: _pool_2d(b, node, a4, x4, True))
        return
    if x.rank != 4:
        raise _fail(b, f"{x.rank - 2}-D pooling (only 1-D and 2-D)")
    _pool_2d(b, node, attrs, x, False)


def _pool_2d(b: Builder, node, attrs: dict, x: Value, internal: bool) -> tuple[Value, str]:
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    strides = tuple(int(s) for s in attrs.get("strides", (1, 1)))
    if any(int(d) != 1 for d in attrs.get("dilations", (1, 1))):
        raise _fail(b, "dilated pooling")
    padding = list(_pads_2d(b, attrs, x.shape[2:], kernel, strides, (1, 1)))
    maximum = node.op_type == "MaxPool"
    if int(attrs.get("ceil_mode", 0)):
        for i, size in enumerate(x.shape[2:]):
            before, after = padding[2 * i], padding[2 * i + 1]
            span = size + before + after - kernel[i]
            floor_out, ceil_out = span // strides[i] + 1, -(-span // strides[i]) + 1
            if (ceil_out - 1) * strides[i] >= size + before:
                ceil_out -= 1  # the last window may not start in the end padding
            if ceil_out != floor_out:
                if not maximum:
                    raise _fail(b, "ceil_mode changing the output size of an average pool")
                padding[2 * i + 1] += (ceil_out - 1) * strides[i] + kernel[i] - (
                    size + before + after)
    nhwc = layout.channels_last(4)
    name = node.output[0] if not internal else f"{node.output[0]}/2d"
    kind = "MAX_POOL_2D" if maximum else "AVERAGE_POOL_2D"
    if not maximum and int(attrs.get("count_include_pad", 0)) and any(padding):
        # ONNX may count the padding in the average; TFLite never does: pad explicitly.
        pt, pb, pl, pr = padding
        padded = _pad_value(b, x, nhwc, [(0, 0), (0, 0), (pt, pb), (pl, pr)], 0.0,
                            f"{x.name}/padded")
        x, padding = padded, [0, 0, 0, 0]
    ir_attrs = irops.Pool2DAttrs(filter=kernel, stride=strides, padding=tuple(padding))
    if _is_view8(b, x):
        x_ir = b.tensor(x, nhwc)
        if maximum:  # max commutes with dequantization
            out = b.emit(kind, [x_ir], ir_attrs, name=name, quant=_copy_quant(b.quant_of(x_ir)))
            return _commuting_output(b, name, x, out, nhwc), node.output[0]
        sink = b.find_sink(node)
        if sink is not None:
            out = _finish_int8(b, node, sink, kind, [x_ir], ir_attrs, nhwc,
                               _copy_quant(b.quant_of(x_ir)), register=not internal)
            final = sink.quantize.output[0]
            if internal:
                return b.activation(f"{final}/2d", out, nhwc,
                                    dtype=_int_type(sink.params)), final
            return b.values[final], final
    out = b.emit(kind, [b.float_tensor(x, nhwc)], ir_attrs, name=name, dtype="float32")
    return b.activation(name, out, nhwc), node.output[0]


def _reduction_axes(b: Builder, node, attrs: dict, x: Value) -> tuple[list[int], bool] | None:
    """The sorted, normalized axes and keepdims of an ONNX Reduce* node (axes as attribute or,
    from opset 18, input 1; none means all). None when the node is the identity
    (``noop_with_empty_axes``): its output is then an alias of ``x``."""
    axes = _axes_input(b, node, attrs, 1)
    keep = bool(int(attrs.get("keepdims", 1)))
    if not axes:
        if int(attrs.get("noop_with_empty_axes", 0)):
            b.alias(node.output[0], x)
            return None
        axes = list(range(x.rank))
    return sorted({_normalize_axis(b, a, x.rank) for a in axes}), keep


@converter("GlobalAveragePool", "GlobalMaxPool", "ReduceMean")
def reduce(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    op = node.op_type
    if op == "ReduceMean":
        reduced = _reduction_axes(b, node, attrs, x)
        if reduced is None:
            return
        axes, keep = reduced
    else:
        if x.rank < 3:
            raise _malformed(b, "global pooling of a rank < 3 input")
        axes, keep = list(range(2, x.rank)), True
    # TFLM's MEAN and pooling kernels are built for NHWC with spatial axes 1 and 2.
    perm = layout.channels_last(4) if x.rank == 4 and axes == [2, 3] else x.primary
    stored_axes = tuple(sorted(layout.stored_axis(perm, a) for a in axes))
    out_perm = perm if keep else layout.drop_axes(perm, axes)
    name = node.output[0]
    if op == "GlobalMaxPool":
        if x.rank != 4:
            raise _fail(b, "GlobalMaxPool of a non-4-D input")
        x_ir = b.tensor(x, perm)
        a = irops.Pool2DAttrs(filter=tuple(x.shape[2:]), stride=(1, 1))
        out = b.emit("MAX_POOL_2D", [x_ir], a, name=name, quant=_copy_quant(b.quant_of(x_ir)))
        _commuting_output(b, name, x, out, perm)
        return
    mean_attrs = irops.ReduceAttrs(axes=stored_axes, keep_dims=keep)
    if _is_view8(b, x):
        sink = b.find_sink(node)
        if sink is not None:
            _finish_int8(b, node, sink, "MEAN", [b.tensor(x, perm)], mean_attrs, out_perm)
            return
    out = b.emit("MEAN", [b.float_tensor(x, perm)], mean_attrs, name=name, dtype="float32")
    b.activation(name, out, out_perm)


@converter("Softmax", "LogSoftmax")
def softmax(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    default = -1 if b.opset >= 13 else 1
    axis = _normalize_axis(b, int(attrs.get("axis", default)), x.rank)
    name = node.output[0]
    if b.opset < 13 and axis != x.rank - 1 and int(np.prod(x.shape[axis + 1:])) != 1:
        # Opset < 13 normalizes over all axes from ``axis`` on: flatten them.
        rows = int(np.prod(x.shape[:axis], dtype=np.int64))
        flat = _reshape(b, x, (rows, int(np.prod(x.shape[axis:], dtype=np.int64))),
                        f"{name}/2d")
        y = _softmax_last(b, node, flat, f"{name}/2d_out", allow_int8=False)
        _reshape(b, y, x.shape, name)
        return
    _softmax_last(b, node, x, name, allow_int8=True, axis=axis)


def _softmax_last(b: Builder, node, x: Value, name: str, allow_int8: bool,
                  axis: int | None = None) -> Value:
    axis = x.rank - 1 if axis is None else axis
    perm = next((p for p in x.stored if p[-1] == axis), None)
    if perm is None:
        # The logical layout when it will do (no transpose back for the output), else the
        # current one with ``axis`` moved last.
        perm = layout.identity(x.rank) if axis == x.rank - 1 else tuple(
            p for p in x.primary if p != axis) + (axis,)
    # LogSoftmax: TFLM's int8 LOG_SOFTMAX has its own fixed output quantization.
    kind, attrs_, fixed = (("SOFTMAX", irops.SoftmaxAttrs(), UNIT_INTERVAL_QUANT)
                           if node.op_type == "Softmax" else
                           ("LOG_SOFTMAX", None, LOG_SOFTMAX_QUANT))
    if allow_int8 and _is_view8(b, x):
        sink = b.find_sink(node)
        if sink is not None:
            _finish_int8(b, node, sink, kind, [b.tensor(x, perm)], attrs_, perm,
                         Quantization(*fixed))
            return b.values[sink.quantize.output[0]]
    out = b.emit(kind, [b.float_tensor(x, perm)], attrs_, name=name, dtype="float32")
    return b.activation(name, out, perm)


# --------------------------------------------------------------------------------------------
# Data movement


@converter("Reshape")
def reshape(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    if len(node.input) > 1:
        target = _ints(b.const_array(b.get(node.input[1]), "target shape"))
        allow_zero = bool(int(attrs.get("allowzero", 0)))
    else:
        target, allow_zero = [int(s) for s in attrs["shape"]], False
    shape = list(target)
    for i, d in enumerate(shape):
        if d == 0 and not allow_zero:
            if i >= x.rank:
                raise _malformed(b, f"target {target} copies dimension {i} of a rank-"
                                    f"{x.rank} input")
            shape[i] = x.shape[i]
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        raise _malformed(b, f"invalid target shape {target}")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1], dtype=np.int64))
        total = int(np.prod(x.shape, dtype=np.int64))
        if known == 0 or total % known:
            raise _malformed(b, f"cannot reshape {list(x.shape)} to {target}")
        shape[shape.index(-1)] = total // known
    _reshape(b, x, tuple(shape), node.output[0])


@converter("Flatten")
def flatten(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    axis = int(attrs.get("axis", 1))
    axis = axis + x.rank if axis < 0 else axis
    if not 0 <= axis <= x.rank:
        raise _malformed(b, f"axis {axis} out of range")
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    _reshape(b, x, (rows, int(np.prod(x.shape, dtype=np.int64)) // max(rows, 1)),
             node.output[0])


@converter("Squeeze")
def squeeze(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    axes = _axes_input(b, node, attrs, 1)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    _squeeze(b, x, axes, node.output[0])


@converter("Unsqueeze")
def unsqueeze(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    axes = _axes_input(b, node, attrs, 1)
    if axes is None:
        raise _malformed(b, "Unsqueeze without axes")
    _unsqueeze(b, x, axes, node.output[0])


@converter("Transpose")
def transpose(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    perm = tuple(int(p) for p in attrs.get("perm", range(x.rank - 1, -1, -1)))
    if sorted(perm) != list(range(x.rank)):
        raise _malformed(b, f"invalid perm {list(perm)} for rank {x.rank}")
    _transpose(b, x, perm, node.output[0])


@converter("Identity", "Dropout")
def identity(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    if len(node.output) > 1 and node.output[1] and b.consumers.get(node.output[1]):
        raise _fail(b, "the dropout mask output")
    b.alias(node.output[0], x)


@converter("Concat")
def concat(b: Builder, node, attrs: dict) -> None:
    values = [v for v in _inputs(b, node) if v is not None]
    values = [v for v in values if int(np.prod(v.shape)) != 0 or not v.is_const]
    rank = values[0].rank
    if any(v.rank != rank for v in values):
        raise _malformed(b, "inputs of different ranks")
    axis = _normalize_axis(b, int(attrs["axis"]), rank)
    _, perm = _common_layout(b, values)
    stored = layout.stored_axis(perm, axis)
    a = irops.ConcatenationAttrs(axis=stored)
    name = node.output[0]
    if all(_is_view8(b, v) or _is_qconst8(v) for v in values):
        inputs = [_operand(b, v, rank, perm, True) for v in values]
        quants = [b.quant_of(i) for i in inputs]
        first = quants[0]
        same = all(float(q.scale[0]) == float(first.scale[0])
                   and int(q.zero_point[0]) == int(first.zero_point[0]) for q in quants)
        if same and any(not v.is_const for v in values):
            out = b.emit("CONCATENATION", inputs, a, name=name, quant=_copy_quant(first))
            b.activation(name, out, perm, view=True)
            return
        sink = b.find_sink(node)
        if sink is not None:
            # TFLM concatenates int8 only at one common scale: requantize the others.
            target = sink.params.quantization()
            inputs = [i if sink.params.matches(q) else
                      b.emit("QUANTIZE", [i], irops.CastAttrs("int8"), name=f"{i}/requantized",
                             dtype="int8", quant=_copy_quant(target))
                      for i, q in zip(inputs, quants)]
            _finish_int8(b, node, sink, "CONCATENATION", inputs, a, perm)
            return
    inputs = [_operand(b, v, rank, perm, False) for v in values]
    out = b.emit("CONCATENATION", inputs, a, name=name,
                 dtype="float32" if any(v.view for v in values) else None)
    b.activation(name, out, perm)


def _pad_value(b: Builder, x: Value, perm: Perm, pads: list[tuple[int, int]], value: float,
               name: str) -> Value:
    """PAD ``x`` (logical per-axis ``pads``) in layout ``perm``."""
    stored_pads = tuple(pads[p] for p in perm)
    x_ir = b.tensor(x, perm)
    pad_value = None
    q = b.quant_of(x_ir) if x.view else None
    if x.view:
        if value != 0.0:
            code = int(q.zero_point[0]) + int(np.rint(np.float32(value) / q.scale[0]))
            pad_value = int(np.clip(code, -128, 127))
    elif value != 0.0:
        pad_value = float(value)
    out = b.emit("PAD", [x_ir], irops.PadAttrs(stored_pads, pad_value), name=name,
                 quant=_copy_quant(q))
    return _commuting_output(b, name, x, out, perm)


@converter("Pad")
def pad(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "reflect"):
        raise _fail(b, f"{mode} padding (constant and reflect only)")
    if "pads" in attrs:
        raw, value = [int(p) for p in attrs["pads"]], float(attrs.get("value", 0.0))
        axes = list(range(x.rank))
    else:
        raw = _ints(b.const_array(b.get(node.input[1]), "pads"))
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            value = float(np.asarray(b.const_array(b.get(node.input[2]),
                                                   "constant value")).reshape(-1)[0])
        axes = list(range(x.rank))
        if len(node.input) > 3 and node.input[3]:
            axes = [_normalize_axis(b, a, x.rank)
                    for a in _ints(b.const_array(b.get(node.input[3]), "axes"))]
    if len(raw) != 2 * len(axes):
        raise _malformed(b, f"{len(raw)} pads for {len(axes)} axes")
    pads = [(0, 0)] * x.rank
    for i, a in enumerate(axes):
        pads[a] = (raw[i], raw[i + len(axes)])
    if any(p < 0 for pair in pads for p in pair):
        raise _fail(b, "negative padding (cropping)")
    if mode == "reflect":  # data_movement ops
        _mirror_pad(b, x, pads, node.output[0])
        return
    _pad_value(b, x, x.primary, pads, value, node.output[0])


@converter("Gather")
def gather(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    idx_value = b.get(node.input[1])
    indices = np.asarray(b.const_array(idx_value, "indices")).astype(np.int64)
    axis = _normalize_axis(b, int(attrs.get("axis", 0)), x.rank)
    if np.any(indices < -x.shape[axis]) or np.any(indices >= x.shape[axis]):
        raise _malformed(b, "index out of range")
    indices = np.where(indices < 0, indices + x.shape[axis], indices).astype(np.int32)
    if indices.ndim == 0:
        perm = x.primary
        out_perm = layout.drop_axes(perm, [axis])
    else:
        perm = layout.identity(x.rank)
        out_perm = layout.identity(x.rank - 1 + indices.ndim)
    x_ir = b.tensor(x, perm)
    idx_ir = b.new_const(f"{node.input[1]}", indices)
    out = b.emit("GATHER", [x_ir, idx_ir], irops.AxisAttrs(layout.stored_axis(perm, axis)),
                 name=node.output[0], quant=_copy_quant(b.quant_of(x_ir)))
    _commuting_output(b, node.output[0], x, out, out_perm)


def _slice(b: Builder, x: Value, ranges: dict[int, tuple[int, int, int]], name: str) -> Value:
    """STRIDED_SLICE with python-style (start, stop, step) per logical axis."""
    perm = x.primary
    begin, end, strides, end_mask = [], [], [], 0
    for j, axis in enumerate(perm):
        start, stop, step = ranges.get(axis, (0, x.shape[axis], 1))
        begin.append(start)
        strides.append(step)
        if stop < 0:  # a negative step running past index 0
            end_mask |= 1 << j
            end.append(0)
        else:
            end.append(stop)
    x_ir = b.tensor(x, perm)
    consts = [b.new_const(f"{name}/{what}", np.asarray(v, np.int32))
              for what, v in (("begin", begin), ("end", end), ("strides", strides))]
    out = b.emit("STRIDED_SLICE", [x_ir] + consts, irops.StridedSliceAttrs(end_mask=end_mask),
                 name=name, quant=_copy_quant(b.quant_of(x_ir)))
    return _commuting_output(b, name, x, out, perm)


@converter("Slice")
def slice_(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    if "starts" in attrs:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        read = lambda i, what: _ints(b.const_array(b.get(node.input[i]), what))  # noqa: E731
        starts, ends = read(1, "starts"), read(2, "ends")
        has = lambda i: len(node.input) > i and node.input[i]  # noqa: E731
        axes = read(3, "axes") if has(3) else list(range(len(starts)))
        steps = read(4, "steps") if has(4) else [1] * len(starts)
    ranges = {}
    for start, stop, axis, step in zip(starts, ends, axes, steps):
        axis = _normalize_axis(b, int(axis), x.rank)
        if step == 0:
            raise _malformed(b, "slice step 0")
        ranges[axis] = slice(int(start), int(stop), int(step)).indices(x.shape[axis])
    _slice(b, x, ranges, node.output[0])


@converter("Split")
def split(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    axis = _normalize_axis(b, int(attrs.get("axis", 0)), x.rank)
    if "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    elif len(node.input) > 1 and node.input[1]:
        sizes = _ints(b.const_array(b.get(node.input[1]), "split"))
    else:
        parts = int(attrs.get("num_outputs", len(node.output)))
        chunk = -(-x.shape[axis] // parts)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(parts)]
    if sum(sizes) != x.shape[axis] or len(sizes) != len(node.output):
        raise _malformed(b, f"split sizes {sizes} do not cover dimension {x.shape[axis]}")
    start = 0
    for size, out in zip(sizes, node.output):
        if out:
            _slice(b, x, {axis: (start, start + size, 1)}, out)
        start += size


@converter("Cast")
def cast(b: Builder, node, attrs: dict) -> None:
    import onnx

    x = _activation_input(b, b.get(node.input[0]))
    target = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(int(attrs["to"]))).name
    if target == x.dtype or (target.startswith("float") and x.view):
        b.alias(node.output[0], x)
        return
    if target not in ("float32", "int8", "uint8", "int16", "int32", "int64"):
        raise _fail(b, f"cast to {target}")
    perm = x.primary
    out = b.emit("CAST", [b.float_tensor(x, perm)], irops.CastAttrs(target),
                 name=node.output[0], dtype=target)
    b.activation(node.output[0], out, perm)


@converter("Shape", "Size")
def shape(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    dims = np.asarray(x.shape, np.int64)
    if node.op_type == "Size":
        b.constant(node.output[0], np.asarray(int(np.prod(dims)), np.int64))
        return
    start = int(attrs.get("start", 0))
    end = attrs.get("end")
    b.constant(node.output[0], dims[start:None if end is None else int(end)])


# --------------------------------------------------------------------------------------------
# Quantization


@converter("QuantizeLinear")
def quantize_linear(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    params = b.read_qparams(node, activation=not x.is_const, rank=x.rank)
    if params is None or params.dtype != "int8":
        raise _fail(b, "only int8/uint8 quantization with constant scale and zero point "
                       "(per-tensor for activations)")
    name = node.output[0]
    dtype = _int_type(params)
    if x.is_const:
        q = params.quantize(x.float_data())
        b.constant(name, (q.astype(np.int16) + params.shift).astype(dtype))
        return
    perm = x.primary
    if x.view:
        src = b.tensor(x, perm)
        if params.matches(b.quant_of(src)):
            b.alias(name, x).view = False
            b.values[name].dtype = dtype
            return
    elif not x.dtype.startswith("float"):
        raise _fail(b, f"quantizing a {x.dtype} tensor")
    src = b.tensor(x, perm)
    out = b.emit("QUANTIZE", [src], irops.CastAttrs("int8"), name=name, dtype="int8",
                 quant=params.quantization())
    b.activation(name, out, perm, dtype=dtype)


@converter("DequantizeLinear")
def dequantize_linear(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    name = node.output[0]
    if x.is_const:
        params = b.read_qparams(node, rank=x.rank)
        data = np.asarray(x.data)
        if params is None:
            raise _fail(b, "only int8/uint8/int32 quantization with constant scale and zero "
                           "point")
        if data.dtype == np.uint8:
            data = (data.astype(np.int16) - 128).astype(np.int8)
        b.constant(name, data, params)
        return
    params = b.read_qparams(node, activation=True)
    if params is None or params.dtype != "int8" or x.dtype not in ("int8", "uint8"):
        raise _fail(b, "only per-tensor int8/uint8 activations with constant scale and zero "
                       "point")
    if (x.dtype == "uint8") != bool(params.shift):
        raise _malformed(b, "zero point type differs from the input type")
    src = b.tensor(x, x.primary)
    if b.quant_of(src) is None:
        # Raw int8 (a graph input, maybe reshaped): it takes the quantization its
        # DequantizeLinear states, back to where it entered.
        t = src
        while t is not None and b.quant_of(t) is None:
            b.graph.tensors[t].quant = params.quantization()
            op = b.producer.get(t)
            t = op.inputs[0] if op is not None and op.kind in ("RESHAPE", "TRANSPOSE") else None
    if not params.matches(b.quant_of(src)):
        # Reinterpret the same integers with this node's scale: a RESHAPE to the same shape.
        src = b.emit("RESHAPE", [src], irops.ReshapeAttrs(b.shape_of(src)), name=name,
                     quant=params.quantization())
        b.activation(name, src, x.primary, view=True)
        return
    value = b.alias(name, x)
    value.view, value.dtype = True, "float32"


# ---- data_movement ops ------------------------------------------------------------------------
# Image rearrangements run NHWC (TFLite's layout); all but linear Resize commute with
# dequantization, so a QDQ view stays int8 through them.


def _move(b: Builder, x: Value, perm: Perm, kind: str, attrs, name: str) -> Value:
    """A value-moving IR op on ``x`` stored in ``perm``: int8 for a QDQ view, else float."""
    x_ir = b.tensor(x, perm)
    out = b.emit(kind, [x_ir], attrs, name=name, quant=_copy_quant(b.quant_of(x_ir)))
    return _commuting_output(b, name, x, out, perm)


def _image_input(b: Builder, node) -> Value:
    x = _activation_input(b, b.get(node.input[0]))
    if x.rank != 4:
        raise _fail(b, f"{x.rank}-D input (NCHW images only)")
    return x


@converter("DepthToSpace", "SpaceToDepth")
def depth_space(b: Builder, node, attrs: dict) -> None:
    x = _image_input(b, node)
    mode = attrs.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "DCR":
        raise _fail(b, f"mode {mode} (TFLite's DEPTH_TO_SPACE is ONNX's DCR)")
    kind = "DEPTH_TO_SPACE" if node.op_type == "DepthToSpace" else "SPACE_TO_DEPTH"
    _move(b, x, layout.channels_last(4), kind, irops.BlockAttrs(int(attrs["blocksize"])),
          node.output[0])


def _onnx_nearest(out_size: int, in_size: int, scale: float, mode: str,
                  nearest_mode: str) -> np.ndarray | None:
    """ONNX Resize's nearest source index per output coordinate (None: unknown mode)."""
    x = np.arange(out_size, dtype=np.float64)
    coords = {
        "half_pixel": (x + 0.5) / scale - 0.5,
        "pytorch_half_pixel": (x + 0.5) / scale - 0.5 if out_size > 1 else 0 * x,
        "asymmetric": x / scale,
        "tf_half_pixel_for_nn": (x + 0.5) / scale,
        "align_corners": x * (in_size - 1) / (out_size - 1) if out_size > 1 else 0 * x,
    }.get(mode)
    rounding = {"round_prefer_floor": lambda v: np.ceil(v - 0.5),
                "round_prefer_ceil": lambda v: np.floor(v + 0.5),
                "floor": np.floor, "ceil": np.ceil}.get(nearest_mode)
    if coords is None or rounding is None:
        return None
    return np.clip(rounding(coords), 0, in_size - 1).astype(np.int64)


def _resize_flags(b: Builder, mode: str, nearest_mode: str, linear: bool,
                  sizes: list[tuple[int, int, float]]) -> tuple[bool, bool]:
    """TFLite's (align_corners, half_pixel_centers) computing what ONNX's Resize computes
    on these (output, input, scale) axes, or a one-line error."""
    from tinyml.reference.kernels.data_movement import nearest_source
    if linear:
        flags = {"half_pixel": (False, True), "pytorch_half_pixel": (False, True),
                 "align_corners": (True, False), "asymmetric": (False, False)}.get(mode)
        if mode == "pytorch_half_pixel" and any(out == 1 for out, _, _ in sizes):
            flags = None
        if flags is None:
            raise _fail(b, f"linear resize with coordinate_transformation_mode {mode}")
        if mode != "align_corners" and any(np.float32(scale) != np.float32(out) / np.float32(n)
                                           for out, n, scale in sizes):
            raise _fail(b, "scales that are not output size / input size")
        return flags
    for flags in ((False, False), (True, False), (False, True)):
        if all(np.array_equal(nearest_source(out, n, *flags),
                              _onnx_nearest(out, n, scale, mode, nearest_mode))
               for out, n, scale in sizes):
            return flags
    raise _fail(b, f"nearest resize ({mode}, {nearest_mode}) picks pixels no TFLite "
                   f"RESIZE_NEAREST_NEIGHBOR mode picks")


@converter("Resize", "Upsample")
def resize(b: Builder, node, attrs: dict) -> None:
    x = _image_input(b, node)

    def text(key, default):
        v = attrs.get(key, default)
        return v.decode() if isinstance(v, bytes) else v

    mode = text("mode", "nearest")
    if mode not in ("nearest", "linear"):
        raise _fail(b, f"{mode} interpolation (nearest and linear only)")
    if int(attrs.get("antialias", 0)):
        raise _fail(b, "antialiasing")
    if node.op_type == "Upsample":
        transform, nearest_mode = "asymmetric", "floor"
        scale_input = 1 if len(node.input) > 1 else None
        sizes_input = None
    else:
        transform = text("coordinate_transformation_mode", "half_pixel")
        nearest_mode = text("nearest_mode", "round_prefer_floor")
        scale_input = 1 if len(node.input) == 2 else 2  # opset 10: (X, scales)
        sizes_input = 3
        if text("keep_aspect_ratio_policy", "stretch") != "stretch" or "axes" in attrs:
            raise _fail(b, "axes / keep_aspect_ratio_policy")
    has = lambda i: i is not None and len(node.input) > i and node.input[i]  # noqa: E731
    if has(sizes_input):
        out = _ints(b.const_array(b.get(node.input[sizes_input]), "sizes"))
        # ONNX then scales by output / input, as TFLite does.
        scales = [float(np.float32(o) / np.float32(n)) for o, n in zip(out, x.shape)]
    elif has(scale_input):
        scales = [float(s) for s in
                  np.asarray(b.const_array(b.get(node.input[scale_input]), "scales")).reshape(-1)]
        out = [int(np.floor(n * np.float32(s))) for n, s in zip(x.shape, scales)]
    else:
        scales = [float(s) for s in attrs.get("scales", [])]
        out = [int(np.floor(n * np.float32(s))) for n, s in zip(x.shape, scales)]
    if len(out) != 4 or out[:2] != list(x.shape[:2]):
        raise _fail(b, f"resizing {list(x.shape)} to {out} (height and width only)")
    linear = mode == "linear"
    align, half = _resize_flags(b, transform, nearest_mode, linear,
                                [(out[k], x.shape[k], scales[k]) for k in (2, 3)])
    kind = "RESIZE_BILINEAR" if linear else "RESIZE_NEAREST_NEIGHBOR"
    a = irops.ResizeAttrs((out[2], out[3]), align, half)
    nhwc = layout.channels_last(4)
    if not linear:
        _move(b, x, nhwc, kind, a, node.output[0])
        return
    if _is_view8(b, x):
        sink = b.find_sink(node)
        if sink is not None:
            # TFLM interpolates int8 codes at the input's scale; requantized if the
            # QuantizeLinear's differs.
            x_ir = b.tensor(x, nhwc)
            _finish_int8(b, node, sink, kind, [x_ir], a, nhwc, _copy_quant(b.quant_of(x_ir)))
            return
    out_ir = b.emit(kind, [b.float_tensor(x, nhwc)], a, name=node.output[0], dtype="float32")
    b.activation(node.output[0], out_ir, nhwc)


@converter("Tile", "Expand")
def tile(b: Builder, node, attrs: dict) -> None:
    """A broadcast (Tile repeating only unit dimensions, or Expand) as BROADCAST_TO."""
    x = _activation_input(b, b.get(node.input[0]))
    arg = _ints(b.const_array(b.get(node.input[1]),
                              "repeats" if node.op_type == "Tile" else "shape"))
    if node.op_type == "Tile":
        if len(arg) != x.rank or any(r != 1 and d != 1 for d, r in zip(x.shape, arg)):
            raise _fail(b, f"repeats {arg} of shape {list(x.shape)} (only a broadcast of unit "
                           f"dimensions: TFLM has no TILE kernel)")
        shape = [d * r for d, r in zip(x.shape, arg)]
    else:
        try:
            shape = list(np.broadcast_shapes(tuple(x.shape), tuple(arg)))
        except ValueError:
            raise _malformed(b, f"cannot expand {list(x.shape)} to {arg}") from None
    if len(shape) == x.rank:
        perm = x.primary
        stored = tuple(shape[p] for p in perm)
    else:
        perm = layout.identity(len(shape))
        x = _reshape(b, x, (1,) * (len(shape) - x.rank) + tuple(x.shape),
                     f"{node.output[0]}/ranked")
        stored = tuple(shape)
    _move(b, x, perm, "BROADCAST_TO", irops.BroadcastToAttrs(stored), node.output[0])


@converter("ReverseSequence")
def reverse_sequence(b: Builder, node, attrs: dict) -> None:
    """REVERSE_V2 over the time axis when every sequence is reversed whole: tf2onnx writes
    TF's ReverseV2 so (lengths = the time axis' size, from Shape and Expand, known at import).
    Shorter lengths reverse a different prefix per batch entry, which TFLite has no op for."""
    x = _activation_input(b, b.get(node.input[0]))
    time_axis = _normalize_axis(b, int(attrs.get("time_axis", 0)), x.rank)
    lengths = np.asarray(b.const_array(b.get(node.input[1]), "sequence_lens")).reshape(-1)
    if np.any(lengths != x.shape[time_axis]):
        raise _fail(b, f"sequence lengths {lengths.tolist()} other than the time axis' size "
                       f"{x.shape[time_axis]} (only whole sequences reverse, as REVERSE_V2)")
    perm = x.primary
    _move(b, x, perm, "REVERSE_V2", irops.AxesAttrs((layout.stored_axis(perm, time_axis),)),
          node.output[0])


def _mirror_pad(b: Builder, x: Value, pads: list[tuple[int, int]], name: str) -> Value:
    """ONNX Pad mode reflect: TFLite MIRROR_PAD REFLECT."""
    perm = x.primary
    return _move(b, x, perm, "MIRROR_PAD",
                 irops.MirrorPadAttrs(tuple(pads[p] for p in perm), "REFLECT"), name)

# --------------------------------------------------------------------------------------------
# ---- activations_math ops: Tanh, LeakyRelu, Elu, Abs, PRelu

#: The converter's (and TFLM's) int8 TANH output: units of 1/128 around zero.
TANH_QUANT = (1.0 / 128.0, 0)
#: TFLM's fixed int8 LOG_SOFTMAX output (log-probabilities <= 0).
LOG_SOFTMAX_QUANT = (16.0 / 256.0, 127)


@converter("Tanh", "LeakyRelu", "Elu", "Abs")
def activation_math(b: Builder, node, attrs: dict) -> None:
    x = _activation_input(b, b.get(node.input[0]))
    kind = {"Tanh": "TANH", "LeakyRelu": "LEAKY_RELU", "Elu": "ELU", "Abs": "ABS"}[node.op_type]
    attrs_ = None
    if kind == "LEAKY_RELU":
        attrs_ = irops.LeakyReluAttrs(alpha=float(attrs.get("alpha", 0.01)))
    if kind == "ELU" and float(attrs.get("alpha", 1.0)) != 1.0:
        raise _fail(b, f"alpha {float(attrs['alpha']):g} (TFLite's ELU has alpha 1)")
    perm = x.primary
    if _is_view8(b, x):
        sink = b.find_sink(node)
        if sink is not None:
            fixed = Quantization(*TANH_QUANT) if kind == "TANH" else None
            _finish_int8(b, node, sink, kind, [b.tensor(x, perm)], attrs_, perm, fixed)
            return
    out = b.emit(kind, [b.float_tensor(x, perm)], attrs_, name=node.output[0], dtype="float32")
    b.activation(node.output[0], out, perm)


@converter("PRelu")
def prelu(b: Builder, node, attrs: dict) -> None:
    """PRelu's slope broadcasts against the input (ONNX: unidirectionally, e.g. [C, 1, 1]
    per channel of NCHW); it must be a constant, which becomes PRELU's alpha."""
    x, slope = (_activation_input(b, v, what) for v, what in zip(_inputs(b, node)[:2],
                                                                   ("input", "slope")))
    if not slope.is_const:
        raise _fail(b, "the slope must be a constant")
    rank, perm = _common_layout(b, [x, slope])
    if _is_view8(b, x) and (_is_qconst8(slope) or slope.qconst is None):
        sink = b.find_sink(node)
        if sink is not None:
            inputs = [_operand(b, x, rank, perm, True), _int8_slope(b, slope, rank, perm)]
            _finish_int8(b, node, sink, "PRELU", inputs, None, perm)
            return
    inputs = [_operand(b, v, rank, perm, False) for v in (x, slope)]
    out = b.emit("PRELU", inputs, name=node.output[0], dtype="float32")
    b.activation(node.output[0], out, perm)


def _int8_slope(b: Builder, slope: Value, rank: int, perm: Perm) -> str:
    """PRELU's int8 alpha: a quantized slope as it is; a float one (onnxruntime's
    quantize_static leaves PRelu's slope float) per tensor over its own range, as the TFLite
    converter and tinyml's quantizer quantize alpha."""
    from tinyml.quantize.params import activation_quantization, quantize_array
    if slope.qconst is not None:
        return _operand(b, slope, rank, perm, True)
    data = np.asarray(b.graph.tensors[_operand(b, slope, rank, perm, False)].data, np.float32)
    q = activation_quantization(float(data.min()), float(data.max()))
    return b.new_const(f"{slope.name}/int8", quantize_array(data, q), q)

# --------------------------------------------------------------------------------------------
# ---- binary ops: Sub, Max, Min, comparisons, Not/And/Or, Where (the IR's binary family)

#: ONNX comparison -> IR comparison (ONNX has no NotEqual: Not(Equal) stays two ops).
_COMPARISONS = {"Greater": "GREATER", "GreaterOrEqual": "GREATER_EQUAL", "Less": "LESS",
                "LessOrEqual": "LESS_EQUAL", "Equal": "EQUAL"}
_LOGICAL = {"And": "LOGICAL_AND", "Or": "LOGICAL_OR", "Not": "LOGICAL_NOT"}


def _elementwise(b: Builder, kind: str, values: list[Value], name: str, attrs=None, *,
                 quantized: bool = False, dtype: str | None = None,
                 quant: Quantization | None = None) -> tuple[str, Perm]:
    """IR ``kind`` on ``values`` broadcast ONNX's way (trailing axes aligned, one common
    layout); int8 operands when ``quantized``, real values otherwise."""
    rank, perm = _common_layout(b, values)
    inputs = [_operand(b, v, rank, perm, quantized) for v in values]
    out = b.emit(kind, inputs, attrs or irops.NoAttrs(), name=name, dtype=dtype, quant=quant)
    return out, perm


def _int8_operands(b: Builder, values: list[Value]) -> bool:
    return all(_is_view8(b, v) or _is_qconst8(v) for v in values)


def _requantized(b: Builder, ir: str, target: Quantization) -> str:
    """``ir`` at ``target``'s quantization (TFLM compares and copies int8 codes)."""
    q = b.quant_of(ir)
    if q is not None and q.axis is None and (np.float32(q.scale[0]), int(q.zero_point[0])) == (
            np.float32(target.scale[0]), int(target.zero_point[0])):
        return ir
    return b.emit("QUANTIZE", [ir], irops.CastAttrs("int8"), name=f"{ir}/requantized",
                  dtype="int8", quant=_copy_quant(target))


@converter("Sub")
def sub(b: Builder, node, attrs: dict) -> None:
    x, y = (_activation_input(b, v) for v in _inputs(b, node)[:2])
    if _int8_operands(b, [x, y]):
        sink = b.find_sink(node)
        if sink is not None:
            rank, perm = _common_layout(b, [x, y])
            inputs = [_operand(b, v, rank, perm, True) for v in (x, y)]
            _finish_int8(b, node, sink, "SUB", inputs, irops.ElementwiseAttrs(), perm)
            return
    out, perm = _elementwise(b, "SUB", [x, y], node.output[0], irops.ElementwiseAttrs(),
                             dtype="float32")
    b.activation(node.output[0], out, perm)


@converter("Max", "Min")
def max_min(b: Builder, node, attrs: dict) -> None:
    """Variadic Max/Min as a chain of MAXIMUM/MINIMUM. In int8 every operand is first
    requantized to the QuantizeLinear's scale (the codes are compared as they are)."""
    values = [_activation_input(b, v) for v in _inputs(b, node) if v is not None]
    kind = "MAXIMUM" if node.op_type == "Max" else "MINIMUM"
    name = node.output[0]
    if len(values) == 1:
        b.alias(name, values[0])
        return
    sink = b.find_sink(node) if _int8_operands(b, values) else None
    if sink is not None:
        target = sink.params.quantization()
        rank, perm = _common_layout(b, values)
        inputs = [_requantized(b, _operand(b, v, rank, perm, True), target) for v in values]
        while len(inputs) > 2:
            inputs = [b.emit(kind, inputs[:2], irops.NoAttrs(), name=f"{name}/{kind.lower()}",
                             dtype="int8", quant=_copy_quant(target))] + inputs[2:]
        _finish_int8(b, node, sink, kind, inputs, irops.NoAttrs(), perm)
        return
    rank, perm = _common_layout(b, values)
    inputs = [_operand(b, v, rank, perm, False) for v in values]
    out = inputs[0]
    for i, other in enumerate(inputs[1:]):
        last = i == len(inputs) - 2
        out = b.emit(kind, [out, other], irops.NoAttrs(),
                     name=name if last else f"{name}/{kind.lower()}_{i}", dtype="float32")
    b.activation(name, out, perm)


@converter(*_COMPARISONS)
def comparison(b: Builder, node, attrs: dict) -> None:
    """int8 comparison when both operands are int8 (QDQ views or quantized constants): TFLM
    rescales each by its scale at 2^-8 resolution before comparing; else on real values."""
    x, y = (_activation_input(b, v) for v in _inputs(b, node)[:2])
    kind = _COMPARISONS[node.op_type]
    out, perm = _elementwise(b, kind, [x, y], node.output[0],
                             quantized=_int8_operands(b, [x, y]), dtype="bool")
    b.activation(node.output[0], out, perm)


@converter(*_LOGICAL)
def logical(b: Builder, node, attrs: dict) -> None:
    values = [_activation_input(b, v) for v in _inputs(b, node)]
    if any(v.dtype != "bool" for v in values):
        raise _fail(b, f"inputs must be bool, got {[v.dtype for v in values]}")
    out, perm = _elementwise(b, _LOGICAL[node.op_type], values, node.output[0], dtype="bool")
    b.activation(node.output[0], out, perm)


@converter("Where")
def where(b: Builder, node, attrs: dict) -> None:
    """SELECT_V2. In int8 (x and y int8, the result quantized) both are first requantized
    to the QuantizeLinear's scale: TFLM copies codes."""
    condition, x, y = (_activation_input(b, v) for v in _inputs(b, node)[:3])
    if condition.dtype != "bool":
        raise _fail(b, f"condition is {condition.dtype}, not bool")
    name = node.output[0]
    sink = b.find_sink(node) if _int8_operands(b, [x, y]) else None
    if sink is not None:
        target = sink.params.quantization()
        rank, perm = _common_layout(b, [condition, x, y])
        inputs = [_operand(b, condition, rank, perm, False)] + [
            _requantized(b, _operand(b, v, rank, perm, True), target) for v in (x, y)]
        _finish_int8(b, node, sink, "SELECT_V2", inputs, irops.NoAttrs(), perm)
        return
    rank, perm = _common_layout(b, [condition, x, y])
    inputs = [_operand(b, v, rank, perm, False) for v in (condition, x, y)]
    out = b.emit("SELECT_V2", inputs, irops.NoAttrs(), name=name,
                 dtype=b.graph.tensors[inputs[1]].dtype)
    b.activation(name, out, perm)


# --------------------------------------------------------------------------------------------
# ---- reductions ops: ReduceSum, ReduceMax, ReduceMin, ArgMax, ArgMin, LpNormalization

#: TFLM's int8 L2_NORMALIZATION writes Q0.7 (scale 1/128, zero point 0) whatever follows.
SIGNED_UNIT_QUANT = (1.0 / 128.0, 0)
_REDUCERS = {"ReduceSum": "SUM", "ReduceMax": "REDUCE_MAX", "ReduceMin": "REDUCE_MIN"}


@converter("ReduceSum", "ReduceMax", "ReduceMin")
def reduce_sum_max_min(b: Builder, node, attrs: dict) -> None:
    """Reductions run in the input's current layout (axes remapped). Max and min commute
    with dequantization, so a QDQ input is reduced as int8 keeping its quantization; a sum
    needs the QuantizeLinear after it for its output scale."""
    x = _activation_input(b, b.get(node.input[0]))
    reduced = _reduction_axes(b, node, attrs, x)
    if reduced is None:
        return
    axes, keep = reduced
    perm = x.primary
    out_perm = perm if keep else layout.drop_axes(perm, axes)
    kind, name = _REDUCERS[node.op_type], node.output[0]
    ir_attrs = irops.ReduceAttrs(axes=tuple(sorted(layout.stored_axis(perm, a) for a in axes)),
                                 keep_dims=keep)
    if _is_view8(b, x):
        x_ir = b.tensor(x, perm)
        if kind != "SUM":
            out = b.emit(kind, [x_ir], ir_attrs, name=name, quant=_copy_quant(b.quant_of(x_ir)))
            _commuting_output(b, name, x, out, out_perm)
            return
        sink = b.find_sink(node)
        if sink is not None:
            _finish_int8(b, node, sink, kind, [x_ir], ir_attrs, out_perm)
            return
    out = b.emit(kind, [b.float_tensor(x, perm)], ir_attrs, name=name, dtype="float32")
    b.activation(name, out, out_perm)


@converter("ArgMax", "ArgMin")
def arg_min_max(b: Builder, node, attrs: dict) -> None:
    """The index of the first largest (smallest) element. Dequantization is increasing, so a
    QDQ input is searched as int8. Indices are int32, the only type TFLM computes (ONNX
    says int64; the values are the same)."""
    x = _activation_input(b, b.get(node.input[0]))
    if int(attrs.get("select_last_index", 0)):
        raise _fail(b, "select_last_index=1 (TFLite returns the first index of a tie)")
    axis = _normalize_axis(b, int(attrs.get("axis", 0)), x.rank)
    keep = bool(int(attrs.get("keepdims", 1)))
    perm = x.primary
    if layout.drop_axes(perm, [axis]) != layout.identity(x.rank - 1):
        # Search the logical layout, so that the indices need no transpose back: TFLM
        # transposes int8, int16 and float32 tensors only.
        perm = layout.identity(x.rank)
    source = b.tensor(x, perm) if _is_view8(b, x) else b.float_tensor(x, perm)
    kind = "ARG_MAX" if node.op_type == "ArgMax" else "ARG_MIN"
    name = node.output[0]
    dropped = f"{name}/dropped" if keep else name
    out = b.emit(kind, [source], irops.ArgAttrs(layout.stored_axis(perm, axis), "int32"),
                 name=dropped, dtype="int32")
    value = b.activation(dropped, out, layout.drop_axes(perm, [axis]))
    if keep:
        _unsqueeze(b, value, [axis], name)


@converter("LpNormalization")
def lp_normalization(b: Builder, node, attrs: dict) -> None:
    """p=2 only (TFLite's L2_NORMALIZATION), along an axis that is stored last."""
    x = _activation_input(b, b.get(node.input[0]))
    if int(attrs.get("p", 2)) != 2:
        raise _fail(b, f"p={int(attrs['p'])} (only the L2 norm, p=2, has a TFLite kernel)")
    axis = _normalize_axis(b, int(attrs.get("axis", -1)), x.rank)
    perm = next((p for p in x.stored if p[-1] == axis), None)
    if perm is None:
        perm = layout.identity(x.rank) if axis == x.rank - 1 else tuple(
            p for p in x.primary if p != axis) + (axis,)
    name = node.output[0]
    if _is_view8(b, x):
        sink = b.find_sink(node)
        if sink is not None:
            _finish_int8(b, node, sink, "L2_NORMALIZATION", [b.tensor(x, perm)],
                         irops.NoAttrs(), perm, Quantization(*SIGNED_UNIT_QUANT))
            return
    out = b.emit("L2_NORMALIZATION", [b.float_tensor(x, perm)], irops.NoAttrs(), name=name,
                 dtype="float32")
    b.activation(name, out, perm)

# ---- conv ops: convolution variants ----------------------------------------------------------


def _transpose_conv_geometry(b: Builder, attrs: dict, size: tuple[int, int],
                             kernel: tuple[int, int], strides: tuple[int, int]):
    """(output size, pads before) of ONNX ConvTranspose per axis, as the operator's spec
    defines them: ``out = stride * (in - 1) + output_padding + kernel - pads``, or the pads
    derived from ``output_shape`` / ``auto_pad`` (total split with the odd pixel at the end
    for SAME_UPPER, at the start otherwise)."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise _fail(b, f"auto_pad {auto}")
    extra = [int(p) for p in attrs.get("output_padding", [0, 0])]
    full = [strides[i] * (size[i] - 1) + extra[i] + kernel[i] for i in range(2)]
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        shape = [int(d) for d in attrs["output_shape"]][-2:] if "output_shape" in attrs \
            else [size[i] * strides[i] for i in range(2)]
        out, before = [], []
        for i in range(2):
            total = full[i] - shape[i]
            if total < 0:
                raise _fail(b, f"output_shape {shape} larger than the transposed "
                               f"convolution computes")
            before.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
            out.append(shape[i])
        return tuple(out), tuple(before)
    if auto == "VALID":
        return tuple(full), (0, 0)
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if len(pads) != 4 or any(p < 0 for p in pads):
        raise _fail(b, f"pads {pads}")
    out = (full[0] - pads[0] - pads[2], full[1] - pads[1] - pads[3])
    if min(out) <= 0:
        raise _malformed(b, f"pads {pads} leave no output")
    return out, (pads[0], pads[1])


@converter("ConvTranspose")
def conv_transpose(b: Builder, node, attrs: dict) -> None:
    """ConvTranspose (2-D, group 1, dilation 1) as TFLite's TRANSPOSE_CONV: weights
    [C_in, C_out, kH, kW] become OHWI, pads the attribute's shift and trim."""
    ins = _inputs(b, node)
    x = _activation_input(b, ins[0])
    w = ins[1] if len(ins) > 1 else None
    bias = ins[2] if len(ins) > 2 else None
    if w is None or not w.is_const:
        raise _fail(b, "weights must be a constant")
    if bias is not None and not bias.is_const:
        raise _fail(b, "bias must be a constant")
    if x.rank != 4 or w.rank != 4:
        raise _fail(b, f"{x.rank - 2}-D transposed convolution (only 2-D)")
    if int(attrs.get("group", 1)) != 1:
        raise _fail(b, "grouped transposed convolution")
    if any(int(d) != 1 for d in attrs.get("dilations", (1, 1))):
        raise _fail(b, "dilated transposed convolution (TFLite's TRANSPOSE_CONV has none)")
    cin, cout, kh, kw = w.shape
    n, channels, h, wd = x.shape
    if cin != channels:
        raise _malformed(b, f"weights {list(w.shape)} do not fit {channels} input channels")
    strides = tuple(int(s) for s in attrs.get("strides", (1, 1)))
    (oh, ow), (top, left) = _transpose_conv_geometry(b, attrs, (h, wd), (kh, kw), strides)
    padding = (top, (h - 1) * strides[0] + kh - oh - top,
               left, (wd - 1) * strides[1] + kw - ow - left)
    ir_attrs = irops.TransposeConvAttrs((n, oh, ow, cout), strides, padding)
    to_ir = lambda d: np.ascontiguousarray(np.transpose(d, (1, 2, 3, 0)))  # noqa: E731
    nhwc = layout.channels_last(4)
    sink = b.find_sink(node) if _is_view8(b, x) else None
    if sink is not None and _int8_weights(w, 1) and _bias_ok(bias):
        x_ir = b.tensor(x, nhwc)
        wq = w.qconst
        w_quant = Quantization(wq.scale, wq.zero_point, 0 if wq.axis is not None else None)
        w_ir = b.new_const(w.name, to_ir(w.data), w_quant)
        bias_ir = _int8_bias(b, bias, float(b.quant_of(x_ir).scale[0]), wq.scale, cout)
        inputs = [x_ir, w_ir] + ([bias_ir] if bias_ir else [])
        _finish_int8(b, node, sink, "TRANSPOSE_CONV", inputs, ir_attrs, nhwc)
        return
    x_ir = b.float_tensor(x, nhwc)
    inputs = [x_ir, b.new_const(w.name, to_ir(w.float_data()).astype(np.float32))]
    if bias is not None:
        inputs.append(b.new_const(bias.name, bias.float_data().astype(np.float32).reshape(-1)))
    out = b.emit("TRANSPOSE_CONV", inputs, ir_attrs, name=node.output[0], dtype="float32")
    b.activation(node.output[0], out, nhwc)
