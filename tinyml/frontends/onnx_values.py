"""The state of an ONNX import: what every ONNX value is in the IR, and how to emit IR ops.

An ONNX value becomes a :class:`Value`, one of

- a *constant* (``data``): initializers, ``Constant`` nodes and everything computed from them
  (shape arithmetic is folded at import, so no SHAPE/GATHER/CONCAT chain survives);
- a *quantized constant* (``data`` holds integers and ``qconst`` their scale/zero point): the
  output of ``DequantizeLinear`` on an int8/int32 initializer, i.e. QDQ weights and biases;
- an *activation* (``stored``): one IR tensor per layout it has been materialized in (see
  :mod:`tinyml.frontends.layout`); with ``view`` set the IR tensors are int8 and the ONNX value
  is their dequantization (the output of ``DequantizeLinear`` on an int8 activation).

:class:`Builder` owns the IR graph under construction and the primitives the op converters
use: materializing a value in a layout (emitting TRANSPOSE or RESHAPE only when needed),
emitting ops with immediate shape inference (later converters need concrete shapes), fusing
activations into their producer, and finding the ``QuantizeLinear`` that ends a QDQ group.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from tinyml.errors import ModelFormatError, UnsupportedOpError
from tinyml.frontends import layout
from tinyml.frontends.layout import Perm
from tinyml.ir import DTYPES, Graph, Op, Quantization, Tensor
from tinyml.ir import ops as irops

#: Clip bounds that TFLite expresses as a fused activation.
FUSED_CLIPS = {(0.0, np.inf): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}


@dataclass(eq=False)
class QParams:
    """Affine quantization read from a QuantizeLinear/DequantizeLinear node.

    ONNX uint8 values are held as int8 with the zero point moved by -128 (``shift``): the real
    values are identical, and TFLM's kernels only take int8. ``axis`` is a logical axis.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    dtype: str  # the IR storage type: int8 or int32
    shift: int = 0

    @property
    def per_tensor(self) -> bool:
        return self.axis is None

    def quantization(self, perm: Perm | None = None, rank_offset: int = 0) -> Quantization:
        axis = None
        if self.axis is not None:
            axis = self.axis + rank_offset
            if perm is not None:
                axis = layout.stored_axis(perm, axis)
        return Quantization(self.scale.copy(), self.zero_point.copy(), axis)

    def matches(self, quant: Quantization | None) -> bool:
        return (quant is not None and quant.axis is None and self.axis is None
                and np.float32(quant.scale[0]) == np.float32(self.scale[0])
                and int(quant.zero_point[0]) == int(self.zero_point[0]))

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        shape = [1] * q.ndim
        if self.axis is not None:
            shape[self.axis] = -1
        scale = self.scale.astype(np.float32).reshape(shape)
        zero = self.zero_point.reshape(shape)
        return (scale * (q.astype(np.int64) - zero).astype(np.float32)).astype(np.float32)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """ONNX QuantizeLinear (round half to even, saturate) into the IR storage type."""
        shape = [1] * x.ndim
        if self.axis is not None:
            shape[self.axis] = -1
        q = np.rint(x.astype(np.float32) / self.scale.reshape(shape)) + self.zero_point.reshape(
            shape)
        info = np.iinfo(DTYPES[self.dtype])
        return np.clip(q, info.min, info.max).astype(DTYPES[self.dtype])


@dataclass(eq=False)
class Value:
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None
    qconst: QParams | None = None
    stored: dict[Perm, str] | None = None
    view: bool = False

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def primary(self) -> Perm:
        if self.stored is None:
            return layout.identity(self.rank)
        return next(iter(self.stored))

    def float_data(self) -> np.ndarray:
        """The logical value of a constant (dequantized when it is a quantized constant)."""
        if self.qconst is not None:
            return self.qconst.dequantize(self.data)
        return self.data


@dataclass
class Sink:
    """The QuantizeLinear that quantizes an op's result, possibly through a Relu/Clip.

    ``activation`` is "NONE", a fused-activation name, or "CLIP" with bounds ``clip``.
    """

    quantize: object  # onnx NodeProto
    params: QParams
    activation: str = "NONE"
    clip: tuple[float, float] = (-np.inf, np.inf)
    absorbed: list = field(default_factory=list)


class Builder:
    """IR graph under construction plus the ONNX value table (see the module docstring)."""

    def __init__(self, name: str, graph_outputs: set[str], consumers: dict[str, list]):
        self.graph = Graph(name)
        self.values: dict[str, Value] = {}
        self.graph_outputs = graph_outputs
        self.consumers = consumers
        self.done: set[int] = set()  # ids of converted (or absorbed) ONNX nodes
        self.read: set[str] = set()  # IR tensors some emitted op reads
        self.producer: dict[str, Op] = {}
        self.values_of: dict[str, list[Value]] = {}
        self.dequantized: dict[str, str] = {}
        self.const_cache: dict[tuple, str] = {}
        self.origin: dict[str, tuple[str, Perm]] = {}  # IR tensor -> (ONNX value, perm)
        self.layer = ""
        self.op_type = ""
        self.opset = 1  # of the default ONNX domain, set by the importer

    # ---- values ---------------------------------------------------------------------------

    def get(self, name: str) -> Value | None:
        if not name:
            return None
        if name not in self.values:
            raise ModelFormatError(f"{self.graph.name}: layer '{self.layer}' ({self.op_type}) "
                                   f"reads '{name}', which no node produces")
        return self.values[name]

    def set(self, value: Value) -> Value:
        self.values[value.name] = value
        for perm, ir in (value.stored or {}).items():
            self.values_of.setdefault(ir, []).append(value)
            self.origin.setdefault(ir, (value.name, perm))
        return value

    def activation(self, name: str, ir: str, perm: Perm, *, view: bool = False,
                   dtype: str | None = None) -> Value:
        """Register ONNX value ``name`` as held by IR tensor ``ir`` in layout ``perm``."""
        t = self.graph.tensors[ir]
        logical = tuple(t.shape[j] for j in layout.invert(perm))
        return self.set(Value(name, logical, dtype or ("float32" if view else t.dtype),
                              stored={perm: ir}, view=view))

    def alias(self, name: str, source: Value, stored: dict[Perm, str] | None = None,
              shape: tuple[int, ...] | None = None) -> Value:
        """A value that reuses ``source``'s IR tensors (identity, transposes, QDQ pairs)."""
        if source.is_const:
            return self.set(replace(source, name=name, shape=shape or source.shape))
        return self.set(Value(name, shape or source.shape, source.dtype,
                              stored=source.stored if stored is None else stored,
                              view=source.view))

    def constant(self, name: str, data: np.ndarray, qconst: QParams | None = None) -> Value:
        data = np.asarray(data)
        dtype = "float32" if qconst is not None else np.dtype(data.dtype).name
        return self.set(Value(name, tuple(data.shape), dtype, data=data, qconst=qconst))

    def const_array(self, value: Value | None, what: str) -> np.ndarray:
        """The data of an input that must be known at import time (weights, shapes, axes)."""
        if value is None or not value.is_const:
            raise UnsupportedOpError(self.op_type, self.layer,
                                     detail=f"{what} must be a constant")
        return value.float_data()

    def shape_of(self, ir: str) -> tuple[int, ...]:
        return self.graph.tensors[ir].shape

    def quant_of(self, ir: str) -> Quantization | None:
        return self.graph.tensors[ir].quant

    # ---- IR emission ----------------------------------------------------------------------

    def emit(self, kind: str, inputs: list[str], attrs=None, *, name: str,
             dtype: str | None = None, quant: Quantization | None = None) -> str:
        """Append an IR op with one output and infer its shape now (converters need it)."""
        first = self.graph.tensors[inputs[0]]
        out = self.graph.unique_name(name)
        self.graph.add_tensor(Tensor(out, (), dtype or first.dtype, quant))
        op = self.graph.add_op(Op(kind, self.layer, list(inputs), [out], attrs))
        ins = self.graph.op_inputs(op)
        (shape, _), = op.spec.infer(op, ins)
        self.graph.tensors[out].shape = tuple(int(d) for d in shape)
        self.read.update(n for n in inputs if n)
        self.producer[out] = op
        return out

    def new_const(self, name: str, data: np.ndarray, quant: Quantization | None = None) -> str:
        data = np.asarray(data)
        if data.dtype == np.float64:
            data = data.astype(np.float32)
        if data.dtype == np.bool_ or np.dtype(data.dtype).name not in DTYPES:
            raise UnsupportedOpError(self.op_type, self.layer,
                                     detail=f"constant of type {data.dtype}")
        out = self.graph.unique_name(name)
        self.graph.add_tensor(Tensor(out, data.shape, np.dtype(data.dtype).name, quant,
                                     data.copy(order="C")))
        return out

    def const_tensor(self, value: Value, perm: Perm | None = None, rank: int | None = None,
                     quantized: bool = False) -> str:
        """An IR constant holding ``value`` in layout ``perm``, first given leading unit axes
        up to ``rank`` (ONNX broadcasting aligns trailing axes). ``quantized`` keeps a
        quantized constant's integers; otherwise the logical (float) values are used."""
        rank = value.rank if rank is None else rank
        perm = layout.identity(rank) if perm is None else perm
        key = (value.name, perm, rank, quantized)
        if key in self.const_cache:
            return self.const_cache[key]
        offset = rank - value.rank
        data = value.data if quantized else value.float_data()
        data = np.transpose(data.reshape((1,) * offset + data.shape), perm)
        quant = None
        if quantized:
            quant = value.qconst.quantization(perm, offset)
        name = value.name if perm == layout.identity(rank) else f"{value.name}/perm"
        out = self.new_const(name, data, quant)
        self.const_cache[key] = out
        return out

    def tensor(self, value: Value, perm: Perm) -> str:
        """The IR tensor holding ``value`` in layout ``perm`` (int8 for a QDQ view)."""
        if value.is_const:
            return self.const_tensor(value, perm, quantized=value.qconst is not None)
        if perm in value.stored:
            return value.stored[perm]
        dst_shape = layout.stored_shape(value.shape, perm)
        # A layout that differs only by unit axes has the same memory order: reshape it.
        for src_perm, src in value.stored.items():
            if layout.only_unit_dims_move(self.shape_of(src),
                                          layout.between(src_perm, perm)):
                out = self.reshaped(src, dst_shape, f"{value.name}/{_tag(perm)}")
                break
        else:
            src_perm, src = next(iter(value.stored.items()))
            out = self.emit("TRANSPOSE", [src],
                            irops.TransposeAttrs(layout.between(src_perm, perm)),
                            name=f"{value.name}/{_tag(perm)}",
                            quant=_copy_quant(self.quant_of(src)))
        value.stored[perm] = out
        self.origin.setdefault(out, (value.name, perm))
        return out

    def reshaped(self, src: str, shape: tuple[int, ...], name: str) -> str:
        """``src`` reshaped to ``shape``. Reshapes of reshapes collapse onto the first source
        (an ONNX NHWC->NCHW reshape followed by the IR's NCHW->NHWC one becomes no op at
        all); the bypassed RESHAPE is pruned at the end if nothing else reads it."""
        quant = self.quant_of(src)
        while True:
            op = self.producer.get(src)
            if op is None or op.kind != "RESHAPE" or len(op.inputs) != 1 or not _same_quant(
                    self.quant_of(op.inputs[0]), quant):
                break
            src = op.inputs[0]
        if self.shape_of(src) == tuple(shape):
            return src
        return self.emit("RESHAPE", [src], irops.ReshapeAttrs(tuple(shape)), name=name,
                         quant=_copy_quant(quant))

    def prune(self) -> None:
        """Drop ops whose outputs nothing reads (layout conversions made redundant)."""
        graph = self.graph
        while True:
            needed = set(graph.outputs)
            for op in graph.ops:
                needed.update(n for n in op.inputs if n)
            dead = [op for op in graph.ops if not any(n in needed for n in op.outputs)]
            if not dead:
                break
            for op in dead:
                graph.ops.remove(op)
                for n in op.outputs:
                    graph.tensors.pop(n, None)
                    self.origin.pop(n, None)
        used = set(graph.inputs) | set(graph.outputs)
        for op in graph.ops:
            used.update(n for n in op.inputs if n)
            used.update(op.outputs)
        for name in [n for n, t in graph.tensors.items() if n not in used]:
            del graph.tensors[name]
            self.origin.pop(name, None)

    def float_tensor(self, value: Value, perm: Perm, rank: int | None = None) -> str:
        """Like :meth:`tensor` but always real-valued: QDQ views get a DEQUANTIZE op."""
        if value.is_const:
            return self.const_tensor(value, perm, rank)
        return self._real(value, self.tensor(value, perm), perm)

    def _real(self, value: Value, ir: str, perm: Perm) -> str:
        if not value.view:
            return ir
        if ir not in self.dequantized:
            self.dequantized[ir] = self.emit("DEQUANTIZE", [ir], name=f"{value.name}/dequant",
                                             dtype="float32")
            self.origin.setdefault(self.dequantized[ir], (value.name, perm))
        return self.dequantized[ir]

    def row_major(self, value: Value, real: bool = False) -> str:
        """A tensor whose memory order is ``value``'s logical row-major order (for reshapes):
        the stored tensor itself when only unit axes are out of place. ``real`` dequantizes
        a QDQ view."""
        ident = layout.identity(value.rank)
        if value.is_const:
            return self.const_tensor(value, ident, quantized=value.qconst is not None
                                     and not real)
        for perm, ir in value.stored.items():
            if layout.only_unit_dims_move(self.shape_of(ir), layout.between(perm, ident)):
                return self._real(value, ir, perm) if real else ir
        ir = self.tensor(value, ident)
        return self._real(value, ir, ident) if real else ir

    # ---- fusion and QDQ groups ------------------------------------------------------------

    def pending_users(self, name: str, node) -> list:
        return [n for n in self.consumers.get(name, [])
                if id(n) not in self.done and n is not node]

    def fuse_activation(self, value: Value, activation: str, node, result: str,
                        params: QParams | None = None) -> bool:
        """Fold a Relu/Clip into the op producing ``value`` (TFLite's fused activation), when
        nothing else reads that op's output. For int8, the producer's output quantization
        must be the one the activation's QuantizeLinear asks for. ``result`` is the ONNX
        value the producer's output now holds."""
        if value.is_const or len(value.stored) != 1:
            return False
        ir = next(iter(value.stored.values()))
        op = self.producer.get(ir)
        if op is None or ir in self.read or getattr(op.attrs, "activation", None) != "NONE":
            return False
        for v in self.values_of.get(ir, [value]):
            if v.name in self.graph_outputs or self.pending_users(v.name, node):
                return False
        if params is not None and not params.matches(self.quant_of(ir)):
            return False
        op.attrs = replace(op.attrs, activation=activation)
        self.origin[ir] = (result, next(iter(value.stored)))  # it now holds the activation's
        return True

    def single_user(self, name: str):
        if name in self.graph_outputs:
            return None
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    def find_sink(self, node) -> Sink | None:
        """The QuantizeLinear that ends ``node``'s QDQ group, directly or behind one Relu/Clip
        (ORT drops the Relu when the quantized range already clamps; when it is kept it
        becomes the fused activation). None when ``node``'s output is not quantized."""
        user = self.single_user(node.output[0])
        if user is None:
            return None
        sink_nodes = []
        activation, clip = "NONE", (-np.inf, np.inf)
        if user.op_type in ("Relu", "Clip"):
            bounds = self.clip_bounds(user)
            if bounds is None:
                return None
            activation = FUSED_CLIPS.get(bounds, "CLIP")
            clip = bounds
            sink_nodes.append(user)
            user = self.single_user(user.output[0])
            if user is None:
                return None
        if user.op_type != "QuantizeLinear":
            return None
        params = self.read_qparams(user, activation=True)
        if params is None:
            return None
        sink_nodes.append(user)
        return Sink(user, params, activation, clip, sink_nodes)

    def clip_bounds(self, node) -> tuple[float, float] | None:
        """(min, max) of a Relu or Clip, or None when the bounds are not constants."""
        if node.op_type == "Relu":
            return (0.0, np.inf)
        lo, hi = -np.inf, np.inf
        attrs = {a.name: a for a in node.attribute}
        if "min" in attrs:
            lo = float(attrs["min"].f)
        if "max" in attrs:
            hi = float(attrs["max"].f)
        for i, current in ((1, lo), (2, hi)):
            if len(node.input) > i and node.input[i]:
                v = self.values.get(node.input[i])
                if v is None or not v.is_const:
                    return None
                bound = float(np.asarray(v.float_data()).reshape(-1)[0])
                lo, hi = (bound, hi) if i == 1 else (lo, bound)
        # ONNX's float limits mean "unbounded".
        lo = -np.inf if lo <= -3.4e38 else lo
        hi = np.inf if hi >= 3.4e38 else hi
        return (lo, hi)

    def read_qparams(self, node, activation: bool = False,
                     rank: int | None = None) -> QParams | None:
        """Scale/zero point of a Q or DQ node; None when they are not constants or the type
        is not one the IR keeps (int8/uint8, int32 for biases). Activations need per-tensor."""
        scale = self.values.get(node.input[1])
        zero = self.values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale is None or not scale.is_const or (zero is not None and not zero.is_const):
            return None
        attrs = {a.name: a for a in node.attribute}
        if "block_size" in attrs and attrs["block_size"].i:
            return None
        if zero is not None:
            zp = np.asarray(zero.data)
        else:
            onnx_type = attrs["output_dtype"].i if "output_dtype" in attrs else 0
            np_type = {0: np.uint8, 2: np.uint8, 3: np.int8, 6: np.int32}.get(onnx_type)
            if np_type is None:
                return None
            zp = np.zeros(np.shape(scale.data), np_type)
        kind = np.dtype(zp.dtype).name
        if kind not in ("int8", "uint8", "int32"):
            return None
        s = np.asarray(scale.data, np.float32).reshape(-1)
        z = np.asarray(zp, np.int64).reshape(-1)
        if z.size == 1 and s.size > 1:
            z = np.repeat(z, s.size)
        if z.size != s.size or not np.all(s > 0):
            return None
        shift = 128 if kind == "uint8" else 0
        axis = None
        if s.size > 1:
            if activation or rank is None:
                return None
            axis = int(attrs["axis"].i) if "axis" in attrs else 1
            if not -rank <= axis < rank:
                return None
            axis %= rank
        return QParams(s, z - shift, axis, "int32" if kind == "int32" else "int8", shift)


def _same_quant(a: Quantization | None, b: Quantization | None) -> bool:
    if a is None or b is None:
        return a is b
    return (a.axis == b.axis and np.array_equal(a.scale, b.scale)
            and np.array_equal(a.zero_point, b.zero_point))


def _copy_quant(q: Quantization | None) -> Quantization | None:
    if q is None:
        return None
    return Quantization(q.scale.copy(), q.zero_point.copy(), q.axis)


def _tag(perm: Perm) -> str:
    if perm == layout.channels_last(len(perm)) and len(perm) >= 3:
        return "channels_last"
    if perm == layout.identity(len(perm)):
        return "logical"
    return "perm" + "".join(str(p) for p in perm)
