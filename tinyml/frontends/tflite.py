"""TFLite frontend: a ``.tflite`` flatbuffer (float or int8) into the graph IR.

The flatbuffer is decoded with the official schema bindings shipped in ``ai_edge_litert``
(``schema_py_generated``); nothing here decodes bytes by hand. TFLite ops map one to one onto
IR ops (the IR is named after them), SAME padding becomes explicit padding, constant operands
that are really attributes (RESHAPE's shape, PAD's paddings, MEAN's axes, TRANSPOSE's perm)
become typed attributes, and SQUEEZE becomes RESHAPE.

Files are read as TFLM reads them, quirks of older converters included
(:mod:`.tflite_quirks`); what was normalized ends up in ``Graph.notes``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyml.errors import ModelFormatError, ShapeError, UnsupportedOpError
from tinyml.frontends import tflite_quirks
from tinyml.ir import Graph, Op, Tensor
from tinyml.ir import ops as irops

_TENSOR_TYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "INT8": "int8", "UINT8": "uint8",
    "INT16": "int16", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
}

_ACTIVATIONS = {"NONE": "NONE", "RELU": "RELU", "RELU6": "RELU6", "RELU_N1_TO_1": "RELU_N1_TO_1"}

#: TFLite builtins this frontend reads (the IR op they become is built in ``_convert_op``).
SUPPORTED_TFLITE_OPS = (
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "AVERAGE_POOL_2D",
    "MAX_POOL_2D", "MEAN", "RESHAPE", "SQUEEZE", "SOFTMAX", "CONCATENATION", "PAD", "PADV2",
    "RELU", "RELU6", "LOGISTIC", "HARD_SWISH", "QUANTIZE", "DEQUANTIZE", "TRANSPOSE", "SHAPE",
    "STRIDED_SLICE", "PACK", "GATHER", "CAST",
)


#: The options table each op's conversion reads. LiteRT reads a table of another type (a corrupt
#: builtin_options_type) as absent, and so does the importer, instead of failing on the wrong
#: table's missing fields.
_OPTIONS = {
    "CONV_2D": "Conv2DOptionsT", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptionsT",
    "FULLY_CONNECTED": "FullyConnectedOptionsT", "ADD": "AddOptionsT", "MUL": "MulOptionsT",
    "AVERAGE_POOL_2D": "Pool2DOptionsT", "MAX_POOL_2D": "Pool2DOptionsT",
    "MEAN": "ReducerOptionsT", "RESHAPE": "ReshapeOptionsT", "SOFTMAX": "SoftmaxOptionsT",
    "CONCATENATION": "ConcatenationOptionsT", "STRIDED_SLICE": "StridedSliceOptionsT",
    "PACK": "PackOptionsT", "GATHER": "GatherOptionsT",
}


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


def load_tflite(path: str | Path) -> Graph:
    """Read a TFLite model file into a finalized graph."""
    path = Path(path)
    data = path.read_bytes()
    return load_tflite_bytes(data, name=path.stem)


def load_tflite_bytes(data: bytes, name: str = "model") -> Graph:
    schema = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFormatError(f"{name}: not a TFLite flatbuffer (missing 'TFL3' identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # a corrupt flatbuffer fails anywhere inside the generated code
        raise ModelFormatError(
            f"{name}: corrupt or truncated TFLite file ({type(exc).__name__}: {exc})") from None
    # The object API has decoded every table; what fails from here on is our code meeting
    # values it does not expect. load_model decides whether that is the file's fault or ours
    # (tinyml.frontends.validity), so a bug is not reported as a corrupt file.
    return _Importer(schema, model, data, name).run()


class _Importer:
    def __init__(self, schema, model, data: bytes, name: str):
        self.schema = schema
        self.model = model
        self.data = data
        self.graph = Graph(name)
        self.op_names = _enum_names(schema.BuiltinOperator)
        self.type_names = _enum_names(schema.TensorType)
        self.act_names = _enum_names(schema.ActivationFunctionType)
        self.tensor_names: dict[int, str] = {}
        self.quirks = tflite_quirks.Quirks()

    def run(self) -> Graph:
        model = self.model
        if model.version != 3:
            raise ModelFormatError(f"{self.graph.name}: unsupported TFLite schema version "
                                   f"{model.version}")
        if not model.subgraphs:
            raise ModelFormatError(f"{self.graph.name}: TFLite model has no subgraph")
        sub = model.subgraphs[0]
        self.op_codes = [self._code_name(code) for code in model.operatorCodes or []]
        tensors = sub.tensors or []
        self._check_ops(sub, tensors)
        for index, t in enumerate(tensors):
            self._import_tensor(index, t)
        for index, op in enumerate(sub.operators or []):
            self._convert_op(index, op)
        self.graph.inputs = [self._name(i) for i in _ints(sub.inputs)]
        self.graph.outputs = [self._name(i) for i in _ints(sub.outputs)]
        for name in self.graph.inputs:
            if self.graph.tensors[name].is_constant:
                raise ModelFormatError(f"{self.graph.name}: graph input '{name}' is a constant")
        self.graph.notes = self.quirks.notes()
        return self.graph.finalize()

    def _check_ops(self, sub, tensors) -> None:
        """Report an unsupported op before reading any tensor: files that use one often have
        tensors of types the IR lacks too (uint32 in TFLM's audio front ends), and the op is
        what the user needs to hear about."""
        for index, op in enumerate(sub.operators or []):
            kind = self._opcode(op)
            if kind in SUPPORTED_TFLITE_OPS:
                continue
            layer = f"operator #{index}"
            outputs = _ints(op.outputs)
            if outputs and 0 <= outputs[0] < len(tensors):
                raw = tensors[outputs[0]].name
                layer = raw.decode("utf-8", "replace").split(";")[0] if raw else \
                    f"tensor_{outputs[0]}"
            raise UnsupportedOpError(kind, layer, SUPPORTED_TFLITE_OPS)

    # ---- tensors --------------------------------------------------------------------------

    def _name(self, index: int) -> str:
        if index not in self.tensor_names:
            raise ModelFormatError(f"{self.graph.name}: reference to missing tensor #{index}")
        return self.tensor_names[index]

    def _import_tensor(self, index: int, t) -> None:
        raw_name = t.name.decode("utf-8", "replace") if t.name else f"tensor_{index}"
        name = self.graph.unique_name(raw_name)
        type_name = self.type_names.get(t.type, str(t.type))
        if type_name not in _TENSOR_TYPES:
            raise ModelFormatError(f"{self.graph.name}: tensor '{name}' has unsupported element "
                                   f"type {type_name}")
        dtype = _TENSOR_TYPES[type_name]
        shape = tuple(_ints(t.shape))
        signature = tuple(_ints(t.shapeSignature))
        if any(d < 0 for d in shape):
            raise ShapeError(f"{self.graph.name}: tensor '{name}' has unresolvable dynamic shape "
                             f"{list(signature or shape)}")
        if t.sparsity is not None:
            raise ModelFormatError(f"{self.graph.name}: tensor '{name}' is stored sparse: not "
                                   f"supported (TFLM does not read sparse tensors either)")
        quant = tflite_quirks.quantization(t.quantization, shape, name, self.quirks)
        data = self._buffer(t.buffer, dtype, shape, name)
        self.graph.add_tensor(Tensor(name, shape, dtype, quant, data))
        self.tensor_names[index] = name

    def _buffer(self, index: int, dtype: str, shape: tuple[int, ...], name: str):
        buffers = self.model.buffers or []
        if index < 0 or index >= len(buffers):
            if index > 0:
                raise ModelFormatError(f"{self.graph.name}: tensor '{name}' refers to missing "
                                       f"buffer #{index}")
            return None  # index 0 of a file without buffers: no data
        # Buffer 0 is the empty sentinel by convention, but TFLM reads it like any other.
        buf = buffers[index]
        if buf.offset and buf.offset > 1:  # large models keep buffers after the flatbuffer
            raw = self.data[buf.offset:buf.offset + buf.size]
            if len(raw) != buf.size:
                raise ModelFormatError(f"{self.graph.name}: buffer of '{name}' is truncated")
            self.quirks.add("offset_buffers", name)
        elif buf.data is not None and len(buf.data) > 0:
            raw = np.asarray(buf.data, dtype=np.uint8).tobytes()
        else:
            return None
        from tinyml.ir.tensor import DTYPES
        np_dtype = np.dtype(DTYPES[dtype])
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * np_dtype.itemsize:
            raise ModelFormatError(f"{self.graph.name}: tensor '{name}' has {len(raw)} bytes of "
                                   f"data, expected {count * np_dtype.itemsize} for shape "
                                   f"{list(shape)}")
        return np.frombuffer(raw, dtype=np_dtype).reshape(shape).copy()

    def _const(self, index: int, op_name: str, what: str) -> np.ndarray:
        t = self.graph.tensors[self._name(index)]
        if not t.is_constant:
            raise UnsupportedOpError(op_name, self._layer, detail=f"{what} must be a constant")
        return t.data

    # ---- ops ------------------------------------------------------------------------------

    def _opcode(self, op) -> str:
        if not 0 <= op.opcodeIndex < len(self.op_codes):
            raise ModelFormatError(f"{self.graph.name}: operator refers to missing opcode "
                                   f"#{op.opcodeIndex}")
        return self.op_codes[op.opcodeIndex]

    def _code_name(self, code) -> str:
        builtin = tflite_quirks.builtin_code(code, self.quirks, self.op_names)
        name = self.op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            custom = code.customCode.decode("utf-8", "replace") if code.customCode else "?"
            name = f"CUSTOM({custom})"
        return name

    def _default_options(self, kind: str, note: bool = True):
        """Options of an op whose file has none: TFLM parses them into a zero-initialized
        struct (``BuiltinDataAllocator::AllocatePOD``), so every field is 0. Ops whose zeros
        cannot run (a zero stride or pool size; a zero softmax beta, on which TFLM aborts)
        are refused instead."""
        unknown = "beta is" if kind == "SOFTMAX" else "strides are"
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX"):
            raise ModelFormatError(f"{self.graph.name}: layer '{self._layer}' ({kind}) has no "
                                   f"{_OPTIONS[kind][:-1]}: its {unknown} unknown")
        if note:
            self.quirks.add("no_options", self._layer)
        options = getattr(self.schema, _OPTIONS[kind])()
        for field, value in vars(options).items():
            if isinstance(value, (bool, int, float)):
                setattr(options, field, type(value)(0))
        return options

    def _activation(self, options) -> str:
        act = self.act_names.get(options.fusedActivationFunction, "?")
        if act not in _ACTIVATIONS:
            raise UnsupportedOpError(self._kind, self._layer,
                                     detail=f"fused activation {act} is not supported")
        return act

    def _padding(self, options, x_shape, kernel_hw, stride, dilation) -> tuple[int, int, int, int]:
        if options.padding == self.schema.Padding.VALID:
            return (0, 0, 0, 0)
        top, bottom = irops.same_padding(x_shape[1], kernel_hw[0], stride[0], dilation[0])
        left, right = irops.same_padding(x_shape[2], kernel_hw[1], stride[1], dilation[1])
        return (top, bottom, left, right)

    def _convert_op(self, index: int, op) -> None:
        kind = self._opcode(op)
        inputs = [self._name(i) if i >= 0 else "" for i in _ints(op.inputs)]
        outputs = [self._name(i) for i in _ints(op.outputs)]
        if not outputs:
            raise ModelFormatError(f"{self.graph.name}: operator #{index} ({kind}) has no output")
        self._kind = kind
        self._layer = outputs[0].split(";")[0]
        layer = self._layer
        if kind not in SUPPORTED_TFLITE_OPS:
            raise UnsupportedOpError(kind, layer, SUPPORTED_TFLITE_OPS)
        o = op.builtinOptions
        if kind in _OPTIONS and type(o).__name__ != _OPTIONS[kind]:
            o = None
        if o is None and kind in _OPTIONS:
            # RESHAPE with a shape operand needs no options: converters omit them.
            o = self._default_options(kind, note=not (kind == "RESHAPE" and len(inputs) > 1))
        g = self.graph
        shape = lambda name: g.tensors[name].shape  # noqa: E731
        ir_kind, attrs = kind, None

        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            w = shape(inputs[1])
            if len(w) != 4 or len(shape(inputs[0])) != 4:
                raise ModelFormatError(f"{g.name}: layer '{layer}' ({kind}) needs 4-D input "
                                       f"and filter")
            stride = (o.strideH, o.strideW)
            dilation = (o.dilationHFactor or 1, o.dilationWFactor or 1)
            padding = self._padding(o, shape(inputs[0]), (w[1], w[2]), stride, dilation)
            common = dict(stride=stride, dilation=dilation, padding=padding,
                          activation=self._activation(o))
            if kind == "CONV_2D":
                attrs = irops.Conv2DAttrs(**common)
            else:
                cin = shape(inputs[0])[3]
                multiplier = w[3] // cin if cin and w[3] % cin == 0 else o.depthMultiplier
                attrs = irops.DepthwiseConv2DAttrs(**common, depth_multiplier=int(multiplier))
        elif kind == "FULLY_CONNECTED":
            if o.weightsFormat != 0:
                raise UnsupportedOpError(kind, layer, detail="shuffled weights format")
            attrs = irops.FullyConnectedAttrs(
                activation=self._activation(o), keep_num_dims=bool(o.keepNumDims))
        elif kind in ("ADD", "MUL"):
            attrs = irops.ElementwiseAttrs(self._activation(o))
        elif kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            stride = (o.strideH, o.strideW)
            kernel = (o.filterHeight, o.filterWidth)
            attrs = irops.Pool2DAttrs(filter=kernel, stride=stride,
                                      padding=self._padding(o, shape(inputs[0]), kernel, stride,
                                                            (1, 1)),
                                      activation=self._activation(o))
        elif kind == "MEAN":
            axes = tuple(int(a) for a in np.asarray(self._const(op.inputs[1], kind, "axes"))
                         .reshape(-1))
            attrs = irops.ReduceAttrs(axes=axes, keep_dims=bool(o.keepDims))
            inputs = inputs[:1]
        elif kind in ("RESHAPE", "SQUEEZE"):
            ir_kind = "RESHAPE"
            target = shape(outputs[0])
            if kind == "RESHAPE" and len(inputs) > 1 and inputs[1] and \
                    not g.tensors[inputs[1]].is_constant:
                inputs = inputs[:2]  # computed at shape inference (SHAPE/PACK chains)
                attrs = irops.ReshapeAttrs(None)
            else:
                if kind == "RESHAPE" and len(inputs) > 1 and inputs[1]:
                    target = tuple(int(v) for v in g.tensors[inputs[1]].data.reshape(-1))
                elif kind == "RESHAPE" and o.newShape is not None and len(o.newShape):
                    target = tuple(int(v) for v in o.newShape)
                attrs = irops.ReshapeAttrs(tuple(target))
                inputs = inputs[:1]
        elif kind == "SOFTMAX":
            attrs = irops.SoftmaxAttrs(beta=float(o.beta))
        elif kind == "CONCATENATION":
            attrs = irops.ConcatenationAttrs(axis=int(o.axis), activation=self._activation(o))
        elif kind in ("PAD", "PADV2"):
            ir_kind = "PAD"
            pads = np.asarray(self._const(op.inputs[1], kind, "paddings")).reshape(-1, 2)
            value = None
            if kind == "PADV2" and len(inputs) > 2 and inputs[2]:
                value = self._const(op.inputs[2], kind, "constant value").reshape(-1)[0].item()
            attrs = irops.PadAttrs(tuple((int(b), int(a)) for b, a in pads), value)
            inputs = inputs[:1]
        elif kind == "TRANSPOSE":
            perm = np.asarray(self._const(op.inputs[1], kind, "perm")).reshape(-1)
            attrs = irops.TransposeAttrs(tuple(int(p) for p in perm))
            inputs = inputs[:1]
        elif kind == "QUANTIZE":
            attrs = irops.CastAttrs(g.tensors[outputs[0]].dtype)
        elif kind == "CAST":
            attrs = irops.CastAttrs(g.tensors[outputs[0]].dtype)
        elif kind == "STRIDED_SLICE":
            if o.ellipsisMask or o.newAxisMask:
                raise UnsupportedOpError(kind, layer, detail="ellipsis/new-axis masks")
            attrs = irops.StridedSliceAttrs(int(o.beginMask), int(o.endMask),
                                            int(o.shrinkAxisMask), bool(o.offset))
        elif kind == "PACK":
            attrs = irops.AxisAttrs(int(o.axis))
        elif kind == "GATHER":
            if o.batchDims:
                raise UnsupportedOpError(kind, layer, detail="batch_dims")
            attrs = irops.AxisAttrs(int(o.axis))
        g.add_op(Op(ir_kind, layer, inputs, outputs, attrs))


def _ints(values) -> list[int]:
    if values is None:
        return []
    return [int(v) for v in np.asarray(values).reshape(-1)]
