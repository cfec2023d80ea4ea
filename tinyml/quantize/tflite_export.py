"""Write a graph (int8 or float) as a TFLite flatbuffer that LiteRT and TFLM run.

Why: users take tinyml's quantization to other runtimes (LiteRT on a phone, TFLM on a
microcontroller SDK), and the exported file is also how tests check the quantized graph with
the independent oracles.

The file is built with the official schema's object API (``ai_edge_litert.schema_py_generated``:
``ModelT``, ``SubGraphT``, ``TensorT``, ``OperatorT`` and the options tables) and packed with
the ``flatbuffers`` builder; no byte is laid out by hand. The mapping is the TFLite frontend's,
reversed:

- explicit padding becomes SAME or VALID when it is one of them; a convolution with other
  padding gets a PAD op before it (int8 PAD fills with the zero point, which is exactly what
  the convolution's padding taps contribute); a pooling with other padding is refused (the
  pad value would change what it computes);
- attributes that TFLite passes as tensors (RESHAPE's shape, MEAN's axes, PAD's paddings,
  TRANSPOSE's perm, PADV2's value) become int32 (or element-type) constant tensors;
- operator versions are those TFLite's op versioning assigns to each op's types (int8 kernels
  need version 2 to 4; an int4 filter makes CONV_2D and DEPTHWISE_CONV_2D version 7 and
  FULLY_CONNECTED version 10); a runtime reads them to know which kernel variant the op needs;
- int4 filters (:mod:`.int4`) are INT4 tensors, two codes per byte, low nibble first;
- 16x8 layers (:mod:`.int16`) are written as the converter writes them: INT16 activations,
  INT8 filters, INT64 biases, the versions of the int8 kernels (TFLM does not read versions),
  ADD and SUB with ``pot_scale_int16`` false (their scales are not powers of two).

Constant buffers are 16-byte aligned (the schema's ``force_align: 16``), so runtimes may read
int32 biases in place. Ops the TFLite schema has no builtin for (CLIP, BATCH_NORM, the fused
CONV_2D_ADD of the compiler's passes) are refused with a TinymlError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import DTYPES, Graph, Op, Tensor
from tinyml.ir import ops as irops
from tinyml.ir.tensor import pack_int4

_TYPES = {"float32": "FLOAT32", "float16": "FLOAT16", "int4": "INT4", "int8": "INT8",
          "uint8": "UINT8",
          "int16": "INT16", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}
BUFFER_ALIGNMENT = 16
#: IR op kind -> the function writing it as TFLite operators (see :func:`exports`).
TFLITE_EXPORTERS: dict[str, "ExportFn"] = {}


def exports(*kinds: str):
    """Register ``fn(exporter, op, inputs, outputs)`` as the TFLite writer of IR ``kinds``;
    ``inputs``/``outputs`` are the op's tensors' indices in the file (-1: an omitted input)."""
    def register(fn):
        for kind in kinds:
            assert kind not in TFLITE_EXPORTERS, kind
            TFLITE_EXPORTERS[kind] = fn
        return fn
    return register


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def export_tflite(graph: Graph, description: str = "tinyml") -> bytes:
    """The TFLite flatbuffer of ``graph``."""
    import flatbuffers

    model = _Exporter(graph).model(description)
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def write_tflite(graph: Graph, path: str | Path, description: str = "tinyml") -> int:
    """Write ``graph`` to ``path``; returns the file size."""
    data = export_tflite(graph, description)
    Path(path).write_bytes(data)
    return len(data)


def _aligned_buffer_type(schema):
    class AlignedBuffer(schema.BufferT):
        """A buffer whose data vector starts on a 16-byte boundary (BufferT's own Pack aligns
        byte vectors to 1)."""

        def Pack(self, builder):
            data = None
            if self.data is not None:
                payload = bytes(self.data)
                builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
                builder.head -= len(payload)
                builder.Bytes[builder.head:builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            return schema.BufferEnd(builder)

    return AlignedBuffer


class _Exporter:
    def __init__(self, graph: Graph):
        self.schema = _schema()
        self.graph = graph
        self.tensors: list = []
        self.index: dict[str, int] = {}
        self.buffers: list = [self.schema.BufferT()]  # buffer 0: the empty sentinel
        self.codes: list = []
        self.code_index: dict[tuple[int, int], int] = {}
        self.operators: list = []
        self.Buffer = _aligned_buffer_type(self.schema)

    def model(self, description: str):
        s = self.schema
        for name in self.graph.inputs:
            self._tensor(name)
        for op in self.graph.ops:
            if all(self.graph.tensors[n].is_constant for n in op.outputs):
                continue  # evaluated at import (shape-only ops): their outputs are constants
            self._operator(op)
        sub = s.SubGraphT()
        sub.tensors = self.tensors
        sub.inputs = [self._tensor(n) for n in self.graph.inputs]
        sub.outputs = [self._tensor(n) for n in self.graph.outputs]
        sub.operators = self.operators
        sub.name = "main"
        m = s.ModelT()
        m.version = 3
        m.operatorCodes = self.codes
        m.subgraphs = [sub]
        m.description = description
        m.buffers = self.buffers
        return m

    # ---- tensors ----------------------------------------------------------------------------

    def _tensor(self, name: str) -> int:
        if name in self.index:
            return self.index[name]
        t = self.graph.tensors[name]
        return self._add(t.name, t.shape, t.dtype, t.quant, t.data)

    def _add(self, name: str, shape, dtype: str, quant, data) -> int:
        s = self.schema
        t = s.TensorT()
        t.name = name
        t.shape = [int(d) for d in shape]
        t.type = getattr(s.TensorType, _TYPES[dtype])
        t.buffer = 0
        if data is not None:
            buffer = self.Buffer()
            if dtype == "int4":  # two codes per byte, as TFLM's UnpackDenseInt4IntoInt8 reads
                buffer.data = np.frombuffer(pack_int4(data), np.uint8)
            else:
                little_endian = np.asarray(data).astype(np.dtype(data.dtype).newbyteorder("<"))
                buffer.data = np.frombuffer(np.ascontiguousarray(little_endian).tobytes(),
                                            np.uint8)
            self.buffers.append(buffer)
            t.buffer = len(self.buffers) - 1
        if quant is not None:
            qp = s.QuantizationParametersT()
            qp.scale = [float(v) for v in quant.scale]
            qp.zeroPoint = [int(v) for v in quant.zero_point]
            qp.quantizedDimension = int(quant.axis or 0)
            t.quantization = qp
        self.tensors.append(t)
        self.index[name] = len(self.tensors) - 1
        return self.index[name]

    def constant(self, base: str, values: np.ndarray, like: Tensor | None = None) -> int:
        name = base
        i = 1
        while name in self.index or name in self.graph.tensors:
            name = f"{base}_{i}"
            i += 1
        dtype = str(values.dtype)
        return self._add(name, values.shape, dtype, like.quant if like is not None else None,
                         values)

    # ---- operators --------------------------------------------------------------------------

    def _opcode(self, kind: str, version: int) -> int:
        code = getattr(self.schema.BuiltinOperator, kind)
        key = (code, version)
        if key not in self.code_index:
            oc = self.schema.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, self.schema.BuiltinOperator
                                           .PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = version
            self.codes.append(oc)
            self.code_index[key] = len(self.codes) - 1
        return self.code_index[key]

    def emit(self, kind: str, inputs: list[int], outputs: list[int], options=None,
              options_type: str | None = None, version: int = 1) -> None:
        s = self.schema
        o = s.OperatorT()
        o.opcodeIndex = self._opcode(kind, version)
        o.inputs = inputs
        o.outputs = outputs
        if options is not None:
            o.builtinOptionsType = getattr(s.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.operators.append(o)

    def fail(self, op: Op, detail: str) -> TinymlError:
        return TinymlError(f"layer '{op.name}' ({op.kind}): cannot be written to TFLite: "
                           f"{detail}")

    def fused_activation(self, op: Op, name: str) -> int:
        if name not in irops.ACTIVATIONS:
            raise self.fail(op, f"fused activation {name}")
        return getattr(self.schema.ActivationFunctionType, name)

    def _operator(self, op: Op) -> None:
        exporter = TFLITE_EXPORTERS.get(op.kind)
        if exporter is None:
            raise self.fail(op, f"TFLite has no builtin for it (exportable: "
                                 f"{', '.join(sorted(TFLITE_EXPORTERS))})")
        ins = [self._tensor(n) if n else -1 for n in op.inputs]
        outs = [self._tensor(n) for n in op.outputs]
        exporter(self, op, ins, outs)

    @staticmethod
    def padding_mode(x: Tensor, kernel, stride, dilation, padding) -> int | None:
        """SAME or VALID when the explicit padding is one of them, else None."""
        s = _schema()
        if tuple(padding) == (0, 0, 0, 0):
            return s.Padding.VALID
        same = irops.same_padding(x.shape[1], kernel[0], stride[0], dilation[0]) + \
            irops.same_padding(x.shape[2], kernel[1], stride[1], dilation[1])
        if tuple(padding) == same:
            return s.Padding.SAME
        return None

    def conv_padding(self, op: Op, x: Tensor, kernel, stride, dilation, x_index: int
                      ) -> tuple[int, int]:
        """(padding mode, input index): a PAD op in front when the padding is explicit."""
        a = op.attrs
        mode = self.padding_mode(x, kernel, stride, dilation, a.padding)
        if mode is not None:
            return mode, x_index
        pt, pb, pl, pr = a.padding
        shape = (x.shape[0], x.shape[1] + pt + pb, x.shape[2] + pl + pr, x.shape[3])
        name = f"{op.name}/padded"
        while name in self.index or name in self.graph.tensors:
            name += "_"
        padded = self._add(name, shape, x.dtype, x.quant, None)
        pads = self.constant(f"{op.name}/paddings",
                              np.asarray([[0, 0], [pt, pb], [pl, pr], [0, 0]], np.int32))
        self.emit("PAD", [x_index, pads], [padded], self.schema.PadOptionsT(), "PadOptions",
                   2 if x.dtype in QUANTIZED else 1)
        return self.schema.Padding.VALID, padded


# ---- one writer per op ------------------------------------------------------------------------

ExportFn = Callable[[_Exporter, Op, list[int], list[int]], None]


#: Activation types of quantized kernels: int8, and int16 (16x8 layers, whose kernels the
#: converter writes with the int8 versions of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED,
#: the poolings and SOFTMAX).
QUANTIZED = ("int8", "int16")


def _is_quantized(ex: _Exporter, op: Op) -> bool:
    return ex.graph.tensors[op.inputs[0]].dtype in QUANTIZED


@exports("CONV_2D", "DEPTHWISE_CONV_2D")
def _conv(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    s, g, a = ex.schema, ex.graph, op.attrs
    x, w = g.tensors[op.inputs[0]], g.tensors[op.inputs[1]]
    int8 = x.dtype in QUANTIZED
    kernel = (w.shape[1], w.shape[2])
    padding, ins[0] = ex.conv_padding(op, x, kernel, a.stride, a.dilation, ins[0])
    int4 = w.dtype == "int4"
    if op.kind == "CONV_2D":
        o = s.Conv2DOptionsT()
        grouped = w.shape[3] != x.shape[3]
        version = 6 if grouped else 7 if int4 else 3 if int8 else 1
        options_type = "Conv2DOptions"
    else:
        o = s.DepthwiseConv2DOptionsT()
        o.depthMultiplier = a.depth_multiplier
        version = 7 if int4 else 3 if int8 else 2 if a.dilation != (1, 1) else 1
        options_type = "DepthwiseConv2DOptions"
    o.padding = padding
    o.strideH, o.strideW = a.stride
    o.dilationHFactor, o.dilationWFactor = a.dilation
    o.fusedActivationFunction = ex.fused_activation(op, a.activation)
    ex.emit(op.kind, ins, outs, o, options_type, version)


@exports("FULLY_CONNECTED")
def _fully_connected(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    a = op.attrs
    o = ex.schema.FullyConnectedOptionsT()
    o.fusedActivationFunction = ex.fused_activation(op, a.activation)
    o.keepNumDims = a.keep_num_dims
    has_bias = len(op.inputs) > 2 and op.inputs[2]
    int4 = ex.graph.tensors[op.inputs[1]].dtype == "int4"
    version = (6 if not has_bias else 5 if a.keep_num_dims else 10 if int4
               else 4 if _is_quantized(ex, op) else 1)
    ex.emit(op.kind, ins[:3] if has_bias else ins[:2], outs, o, "FullyConnectedOptions",
             version)


@exports("GELU")
def _gelu(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.GeluOptionsT()
    o.approximate = op.attrs.approximate
    ex.emit(op.kind, ins, outs, o, "GeluOptions", 2 if _is_quantized(ex, op) else 1)


@exports("BATCH_MATMUL")
def _batch_matmul(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.BatchMatMulOptionsT()
    o.adjX, o.adjY = op.attrs.adj_x, op.attrs.adj_y
    ex.emit(op.kind, ins[:2], outs, o, "BatchMatMulOptions", 2 if _is_quantized(ex, op) else 1)


@exports("ADD", "MUL")
def _binary(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    s, g = ex.schema, ex.graph
    o = s.AddOptionsT() if op.kind == "ADD" else s.MulOptionsT()
    o.fusedActivationFunction = ex.fused_activation(op, op.attrs.activation)
    int8 = _is_quantized(ex, op)
    version = 2 if int8 else 1
    if g.tensors[op.inputs[0]].dtype == "int16":
        # 16x8: general scales (LiteRT's int16 ADD otherwise assumes power-of-two scales), as
        # the converter writes it; versions of TFLite's op versioning for int16.
        if op.kind == "ADD":
            o.potScaleInt16 = False
        version = 3 if op.kind == "ADD" else 4
    elif op.kind == "MUL" and int8:
        x, b, out = (g.tensors[n] for n in (op.inputs[0], op.inputs[1], op.outputs[0]))
        if float(x.scale()) * float(b.scale()) / float(out.scale()) >= 1.0:
            version = 3
    ex.emit(op.kind, ins, outs, o, "AddOptions" if op.kind == "ADD" else "MulOptions",
             version)


@exports("AVERAGE_POOL_2D", "MAX_POOL_2D")
def _pool(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    a = op.attrs
    o = ex.schema.Pool2DOptionsT()
    padding = ex.padding_mode(ex.graph.tensors[op.inputs[0]], a.filter, a.stride, (1, 1),
                               a.padding)
    if padding is None:
        raise ex.fail(op, f"explicit padding {list(a.padding)} is neither SAME nor VALID")
    o.padding = padding
    o.strideH, o.strideW = a.stride
    o.filterHeight, o.filterWidth = a.filter
    o.fusedActivationFunction = ex.fused_activation(op, a.activation)
    ex.emit(op.kind, ins, outs, o, "Pool2DOptions", 2 if _is_quantized(ex, op) else 1)


@exports("MEAN")
def _mean(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.ReducerOptionsT()
    o.keepDims = op.attrs.keep_dims
    axes = ex.constant(f"{op.name}/axes", np.asarray(op.attrs.axes, np.int32))
    ex.emit(op.kind, ins + [axes], outs, o, "ReducerOptions", 2 if _is_quantized(ex, op) else 1)


@exports("RESHAPE")
def _reshape(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    out = ex.graph.tensors[op.outputs[0]]
    o = ex.schema.ReshapeOptionsT()
    o.newShape = [int(d) for d in out.shape]
    shape = ex.constant(f"{op.name}/shape", np.asarray(out.shape, np.int32))
    ex.emit(op.kind, ins[:1] + [shape], outs, o, "ReshapeOptions", 1)


@exports("SOFTMAX")
def _softmax(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.SoftmaxOptionsT()
    o.beta = float(op.attrs.beta)
    ex.emit(op.kind, ins, outs, o, "SoftmaxOptions", 2 if _is_quantized(ex, op) else 1)


@exports("CONCATENATION")
def _concatenation(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.ConcatenationOptionsT()
    o.axis = int(op.attrs.axis)
    o.fusedActivationFunction = ex.fused_activation(op, op.attrs.activation)
    ex.emit(op.kind, ins, outs, o, "ConcatenationOptions", 2 if _is_quantized(ex, op) else 1)


@exports("PAD")
def _pad(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    s, a = ex.schema, op.attrs
    x = ex.graph.tensors[op.inputs[0]]
    pads = ex.constant(f"{op.name}/paddings", np.asarray(a.pads, np.int32).reshape(-1, 2))
    version = 2 if x.dtype in QUANTIZED else 1
    if a.value is None:
        ex.emit("PAD", ins + [pads], outs, s.PadOptionsT(), "PadOptions", version)
    else:
        value = ex.constant(f"{op.name}/value", np.asarray([a.value], DTYPES[x.dtype]), like=x)
        ex.emit("PADV2", ins + [pads, value], outs, s.PadV2OptionsT(), "PadV2Options", version)


@exports("TRANSPOSE")
def _transpose(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    x = ex.graph.tensors[op.inputs[0]]
    perm = ex.constant(f"{op.name}/perm", np.asarray(op.attrs.perm, np.int32))
    version = 4 if len(x.shape) > 4 else 2 if x.dtype in QUANTIZED else 1
    ex.emit(op.kind, ins + [perm], outs, ex.schema.TransposeOptionsT(), "TransposeOptions",
             version)


@exports("RELU", "RELU6", "LOGISTIC", "EXP", "LOG", "SQRT")
def _unary(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    ex.emit(op.kind, ins, outs, version=2 if _is_quantized(ex, op) else 1)


@exports("HARD_SWISH", "QUANTIZE", "NEG", "SQUARE", "SIN", "COS", "FLOOR", "CEIL", "ROUND")
def _version_one(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    ex.emit(op.kind, ins, outs, version=1)


@exports("DEQUANTIZE")
def _dequantize(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    dtype = ex.graph.tensors[op.inputs[0]].dtype
    ex.emit(op.kind, ins, outs,
             version=2 if dtype == "int8" else 3 if dtype in ("int16", "float16") else 1)


# ---- data_movement ops ------------------------------------------------------------------------
# Versions: TFLite's op versioning for the element type (int8 kernels are version 2; resizes
# with align_corners / half_pixel_centers need 3).


def _int32(ex: _Exporter, op: Op, what: str, values) -> int:
    return ex.constant(f"{op.name}/{what}", np.asarray(values, np.int32))


@exports("SLICE")
def _slice(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    begin = _int32(ex, op, "begin", op.attrs.begin)
    size = _int32(ex, op, "size", ex.graph.tensors[op.outputs[0]].shape)
    ex.emit(op.kind, ins[:1] + [begin, size], outs, ex.schema.SliceOptionsT(), "SliceOptions",
            2 if _is_quantized(ex, op) else 1)


@exports("STRIDED_SLICE")
def _strided_slice(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    a = op.attrs
    o = ex.schema.StridedSliceOptionsT()
    o.beginMask, o.endMask, o.shrinkAxisMask, o.offset = (a.begin_mask, a.end_mask,
                                                          a.shrink_axis_mask, a.offset)
    ex.emit(op.kind, ins, outs, o, "StridedSliceOptions", 2 if _is_quantized(ex, op) else 1)


@exports("SPLIT", "SPLIT_V")
def _split(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    a = op.attrs
    axis = _int32(ex, op, "axis", [a.axis])
    version = 2 if _is_quantized(ex, op) else 1
    if op.kind == "SPLIT":
        o = ex.schema.SplitOptionsT()
        o.numSplits = len(a.sizes)
        ex.emit(op.kind, [axis] + ins[:1], outs, o, "SplitOptions", version)
    else:
        o = ex.schema.SplitVOptionsT()
        o.numSplits = len(a.sizes)
        sizes = _int32(ex, op, "size_splits", a.sizes)
        ex.emit(op.kind, ins[:1] + [sizes, axis], outs, o, "SplitVOptions", version)


@exports("UNPACK")
def _unpack(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.UnpackOptionsT()
    o.num, o.axis = len(op.outputs), int(op.attrs.axis)
    ex.emit(op.kind, ins, outs, o, "UnpackOptions", 2 if _is_quantized(ex, op) else 1)


@exports("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR")
def _resize(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    a = op.attrs
    bilinear = op.kind == "RESIZE_BILINEAR"
    o = (ex.schema.ResizeBilinearOptionsT() if bilinear
         else ex.schema.ResizeNearestNeighborOptionsT())
    o.alignCorners, o.halfPixelCenters = a.align_corners, a.half_pixel_centers
    flagged = a.half_pixel_centers or (a.align_corners and not bilinear)
    version = 3 if flagged else 2 if _is_quantized(ex, op) else 1
    ex.emit(op.kind, ins + [_int32(ex, op, "size", a.size)], outs, o,
            "ResizeBilinearOptions" if bilinear else "ResizeNearestNeighborOptions", version)


@exports("DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
def _depth_space(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    to_space = op.kind == "DEPTH_TO_SPACE"
    o = ex.schema.DepthToSpaceOptionsT() if to_space else ex.schema.SpaceToDepthOptionsT()
    o.blockSize = int(op.attrs.block_size)
    ex.emit(op.kind, ins, outs, o,
            "DepthToSpaceOptions" if to_space else "SpaceToDepthOptions",
            2 if _is_quantized(ex, op) else 1)


@exports("MIRROR_PAD")
def _mirror_pad(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.MirrorPadOptionsT()
    o.mode = getattr(ex.schema.MirrorPadMode, op.attrs.mode)
    pads = _int32(ex, op, "paddings", np.asarray(op.attrs.pads).reshape(-1, 2))
    ex.emit(op.kind, ins + [pads], outs, o, "MirrorPadOptions", 2 if _is_quantized(ex, op) else 1)


@exports("BROADCAST_TO")
def _broadcast_to(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    shape = _int32(ex, op, "shape", op.attrs.shape)
    ex.emit(op.kind, ins + [shape], outs, ex.schema.BroadcastToOptionsT(),
            "BroadcastToOptions", 2)


@exports("REVERSE_V2")
def _reverse(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    axes = _int32(ex, op, "axis", op.attrs.axes)
    ex.emit(op.kind, ins + [axes], outs, ex.schema.ReverseV2OptionsT(), "ReverseV2Options",
            2 if _is_quantized(ex, op) else 1)


@exports("GATHER")
def _gather(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.GatherOptionsT()
    o.axis = int(op.attrs.axis)
    ex.emit(op.kind, ins, outs, o, "GatherOptions", 2 if _is_quantized(ex, op) else 1)


@exports("GATHER_ND")
def _gather_nd(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    ex.emit(op.kind, ins, outs, ex.schema.GatherNdOptionsT(), "GatherNdOptions",
            2 if _is_quantized(ex, op) else 1)

# ---- activations_math ops


@exports("TANH", "ELU", "ABS", "RSQRT", "LOG_SOFTMAX")
def _unary_math(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    ex.emit(op.kind, ins, outs, version=2 if _is_quantized(ex, op) else 1)


@exports("PRELU")
def _prelu(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    ex.emit(op.kind, ins, outs, version=1)


@exports("LEAKY_RELU")
def _leaky_relu(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.LeakyReluOptionsT()
    o.alpha = float(op.attrs.alpha)
    ex.emit(op.kind, ins, outs, o, "LeakyReluOptions", version=1)

# ---- binary ops: element-wise with broadcasting, comparisons, selection ----------------------
# Versions as TFLite's op versioning gives them (and the converter writes): int8 kernels of
# SUB, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE and the comparisons are version 2, the rest 1.

@exports("SUB")
def _sub(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.SubOptionsT()
    o.fusedActivationFunction = ex.fused_activation(op, op.attrs.activation)
    int16 = ex.graph.tensors[op.inputs[0]].dtype == "int16"
    if int16:
        o.potScaleInt16 = False
    ex.emit(op.kind, ins, outs, o, "SubOptions", 3 if int16 else 2 if _is_quantized(ex, op)
            else 1)


@exports("MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", *irops.COMPARISONS)
def _binary_family(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    ex.emit(op.kind, ins, outs, version=2 if _is_quantized(ex, op) else 1)


@exports("SELECT_V2", "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT")
def _select_logical(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    ex.emit(op.kind, ins, outs, version=1)

# ---- reductions ops ---------------------------------------------------------------------------

@exports("SUM", "REDUCE_MAX", "REDUCE_MIN")
def _reduce(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    _mean(ex, op, ins, outs)


@exports("ARG_MAX", "ARG_MIN")
def _arg_min_max(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    s = ex.schema
    name = "ArgMax" if op.kind == "ARG_MAX" else "ArgMin"
    o = getattr(s, f"{name}OptionsT")()
    o.outputType = getattr(s.TensorType, _TYPES[op.attrs.output_type])
    axis = ex.constant(f"{op.name}/axis", np.asarray([op.attrs.axis], np.int32))
    ex.emit(op.kind, ins + [axis], outs, o, f"{name}Options", 2 if _is_quantized(ex, op) else 1)


@exports("L2_NORMALIZATION")
def _l2_normalization(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    o = ex.schema.L2NormOptionsT()
    ex.emit(op.kind, ins, outs, o, "L2NormOptions", 2 if _is_quantized(ex, op) else 1)

# ---- conv ops: convolution variants and their data movement ----------------------------------

@exports("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND")
def _space_batch(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    """Block shape and paddings/crops as int32 constants; TFLite's op versioning: 3 for 3-D
    tensors, else 2 for int8 and 1 for float."""
    a = op.attrs
    x = ex.graph.tensors[op.inputs[0]]
    space = op.kind == "SPACE_TO_BATCH_ND"
    block = ex.constant(f"{op.name}/block_shape", np.asarray(a.block, np.int32))
    pairs = ex.constant(f"{op.name}/{'paddings' if space else 'crops'}",
                        np.asarray(a.pads if space else a.crops, np.int32).reshape(-1, 2))
    version = 3 if len(x.shape) != 4 else 2 if x.dtype in QUANTIZED else 1
    options = ex.schema.SpaceToBatchNDOptionsT() if space else \
        ex.schema.BatchToSpaceNDOptionsT()
    ex.emit(op.kind, ins + [block, pairs], outs, options,
            "SpaceToBatchNDOptions" if space else "BatchToSpaceNDOptions", version)


@exports("TRANSPOSE_CONV")
def _transpose_conv(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    """TFLite's operand order (output_shape, filter, input[, bias]); SAME or VALID, whichever
    makes TFLM derive this padding. Versions as TFLite's op versioning: 4 with a fused
    activation, 3 with a bias, 2 for int8, else 1."""
    a = op.attrs
    w = ex.graph.tensors[op.inputs[1]]
    s = ex.schema
    mode = None
    for candidate, same in ((s.Padding.SAME, True), (s.Padding.VALID, False)):
        if all(irops.transpose_conv_padding(a.output_shape[1 + i], w.shape[1 + i],
                                            a.stride[i], same) == a.padding[2 * i]
               for i in (0, 1)):
            mode = candidate
            break
    if mode is None:
        raise ex.fail(op, f"padding {list(a.padding)} is neither SAME nor VALID")
    o = s.TransposeConvOptionsT()
    o.padding = mode
    o.strideH, o.strideW = a.stride
    o.fusedActivationFunction = ex.fused_activation(op, a.activation)
    shape = ex.constant(f"{op.name}/output_shape", np.asarray(a.output_shape, np.int32))
    has_bias = len(op.inputs) > 2 and bool(op.inputs[2])
    version = (4 if a.activation != "NONE" else 3 if has_bias
               else 2 if _is_quantized(ex, op) else 1)
    ex.emit(op.kind, [shape, ins[1], ins[0]] + ([ins[2]] if has_bias else []), outs, o,
            "TransposeConvOptions", version)


@exports("SVDF")
def _svdf(ex: _Exporter, op: Op, ins: list[int], outs: list[int]) -> None:
    """The op's state variable is written back as the variable tensor of SVDF's input 4
    (``isVariable``): TFLM gives it persistent storage and resets it to zeros (the zero point
    for int8), so that must be the variable's value at reset."""
    a = op.attrs
    var = ex.graph.variables[a.variable]
    zero = int(var.quant.zero_point.reshape(-1)[0]) if var.dtype == "int8" and var.quant \
        else 0
    if not np.array_equal(np.asarray(var.initial), np.full(var.shape, zero)):
        raise ex.fail(op, f"its state '{var.name}' starts from a value other than TFLM's "
                          f"reset value ({zero})")
    state = ex.index.get(var.name)
    if state is None:
        state = ex._add(var.name, var.shape, var.dtype, var.quant, None)
        ex.tensors[state].isVariable = True
    o = ex.schema.SVDFOptionsT()
    o.rank = a.rank
    o.fusedActivationFunction = ex.fused_activation(op, a.activation)
    bias = ins[3] if len(ins) > 3 else -1
    ex.emit(op.kind, ins[:3] + [bias, state], outs, o, "SVDFOptions",
            3 if _is_quantized(ex, op) else 1)
