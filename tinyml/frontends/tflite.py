"""TFLite frontend: a ``.tflite`` flatbuffer (float or int8) into the graph IR.

The flatbuffer is decoded with the official schema bindings shipped in ``ai_edge_litert``
(``schema_py_generated``); nothing here decodes bytes by hand. This module imports tensors
(types, shapes, quantization, buffers) and dispatches each operator to its builtin's import
function in :mod:`tinyml.frontends.tflite_ops`, which maps it onto an IR op (the IR is named
after TFLite's builtins).

Files are read as TFLM reads them, quirks of older converters included
(:mod:`.tflite_quirks`); what was normalized ends up in ``Graph.notes``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyml.errors import ModelFormatError, ShapeError, UnsupportedOpError
from tinyml.frontends import tflite_quirks
from tinyml.frontends.tflite_ops import TFLITE_IMPORTERS, TfliteOp
from tinyml.frontends.tflite_variables import VARIABLE_BUILTINS, Variables
from tinyml.ir import Graph, Op, Tensor

_TENSOR_TYPES = {
    "FLOAT32": "float32", "FLOAT16": "float16", "INT4": "int4", "INT8": "int8", "UINT8": "uint8",
    "INT16": "int16", "INT32": "int32", "INT64": "int64", "BOOL": "bool",
}

#: TFLite builtins this frontend reads (tinyml.frontends.tflite_ops has one function each;
#: the resource-variable builtins are tinyml.frontends.tflite_variables').
SUPPORTED_TFLITE_OPS = tuple(sorted((*TFLITE_IMPORTERS, *VARIABLE_BUILTINS)))


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
        #: Tensors whose shape signature has a dynamic (-1) dimension, with that signature.
        self.dynamic: dict[str, tuple[int, ...]] = {}
        #: Tensors flagged ``is_variable`` (an LSTM's state).
        self.variable_tensors: set[str] = set()

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
        self.variables = Variables(self)
        self.variables.scan(sub)
        for index, t in enumerate(tensors):
            if not self.variables.is_handle(index):  # a RESOURCE handle: no value
                self._import_tensor(index, t)
        for index, op in enumerate(sub.operators or []):
            kind = self._opcode(op)
            if kind in VARIABLE_BUILTINS:
                self.variables.convert(index, kind, op)
            else:
                self._convert_op(index, op)
        self._forget_dynamic_shapes()
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

    def _forget_dynamic_shapes(self) -> None:
        """Computed tensors with a dynamic dimension get their shape from shape inference.

        The converter stores such a dimension as 1 (a dynamic batch), which is wrong inside
        SPACE_TO_BATCH_ND -> ... -> BATCH_TO_SPACE_ND, where the batch is the block size
        times the input's: the declared shape there is a placeholder, not a fact to check.
        (Graph inputs keep batch 1; importers that need an output shape read
        ``TfliteOp.target_shape``, which keeps the dimension dynamic.)"""
        for op in self.graph.ops:
            for name in op.outputs:
                if name in self.dynamic:
                    self.graph.tensors[name].shape = ()

    # ---- tensors --------------------------------------------------------------------------

    def _name(self, index: int) -> str:
        if index not in self.tensor_names:
            raise ModelFormatError(f"{self.graph.name}: reference to missing tensor #{index}")
        return self.tensor_names[index]

    def _tensor_type(self, t, name: str):
        """(dtype, shape, quantization) of a flatbuffer tensor."""
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
        return dtype, shape, tflite_quirks.quantization(t.quantization, shape, name, self.quirks)

    def _import_tensor(self, index: int, t) -> None:
        raw_name = t.name.decode("utf-8", "replace") if t.name else f"tensor_{index}"
        name = self.graph.unique_name(raw_name)
        dtype, shape, quant = self._tensor_type(t, name)
        signature = tuple(_ints(t.shapeSignature))
        if any(d < 0 for d in signature) and len(signature) == len(shape):
            self.dynamic[name] = signature
        data = self._buffer(t.buffer, dtype, shape, name)
        self.graph.add_tensor(Tensor(name, shape, dtype, quant, data))
        self.tensor_names[index] = name
        if t.isVariable:
            self.variable_tensors.add(name)

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
        from tinyml.ir.tensor import DTYPES, packed_bytes
        np_dtype = np.dtype(DTYPES[dtype])
        count = int(np.prod(shape, dtype=np.int64))
        if dtype == "int4":  # two codes per byte: unpacked to one code per int8 element
            from tinyml.ir.tensor import unpack_int4
            if len(raw) != packed_bytes("int4", count):
                raise ModelFormatError(f"{self.graph.name}: tensor '{name}' has {len(raw)} "
                                       f"bytes of int4 data, expected "
                                       f"{packed_bytes('int4', count)} for shape {list(shape)}")
            return unpack_int4(raw, count).reshape(shape)
        if len(raw) != count * np_dtype.itemsize:
            raise ModelFormatError(f"{self.graph.name}: tensor '{name}' has {len(raw)} bytes of "
                                   f"data, expected {count * np_dtype.itemsize} for shape "
                                   f"{list(shape)}")
        return np.frombuffer(raw, dtype=np_dtype).reshape(shape).copy()

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

    def _default_options(self, kind: str, importer, layer: str, note: bool = True):
        """Options of an op whose file has none: TFLM parses them into a zero-initialized
        struct (``BuiltinDataAllocator::AllocatePOD``), so every field is 0. Builtins whose
        zeros cannot run (``Importer.needs_options``: a zero stride or pool size; a zero
        softmax beta, on which TFLM aborts) are refused instead."""
        if importer.needs_options is not None:
            raise ModelFormatError(f"{self.graph.name}: layer '{layer}' ({kind}) has no "
                                   f"{importer.options[:-1]}: its {importer.needs_options} "
                                   f"unknown")
        if note:
            self.quirks.add("no_options", layer)
        options = getattr(self.schema, importer.options)()
        for field, value in vars(options).items():
            if isinstance(value, (bool, int, float)):
                setattr(options, field, type(value)(0))
        return options

    def _convert_op(self, index: int, op) -> None:
        kind = self._opcode(op)
        inputs = [self._name(i) if i >= 0 else "" for i in _ints(op.inputs)]
        outputs = [self._name(i) for i in _ints(op.outputs)]
        if not outputs:
            raise ModelFormatError(f"{self.graph.name}: operator #{index} ({kind}) has no output")
        layer = outputs[0].split(";")[0]
        importer = TFLITE_IMPORTERS.get(kind)
        if importer is None:
            raise UnsupportedOpError(kind, layer, SUPPORTED_TFLITE_OPS)
        options = op.builtinOptions
        if importer.options is not None and type(options).__name__ != importer.options:
            options = None
        if options is None and importer.options is not None:
            # RESHAPE with a shape operand needs no options: converters omit them.
            options = self._default_options(
                kind, importer, layer, note=not (kind == "RESHAPE" and len(inputs) > 1))
        ir_kind, attrs, ir_inputs = importer.convert(TfliteOp(
            kind, layer, inputs, outputs, options, self.graph, self.schema, self.act_names,
            self.dynamic, frozenset(self.variable_tensors)))
        self.graph.add_op(Op(ir_kind, layer, ir_inputs, outputs, attrs))


def _ints(values) -> list[int]:
    if values is None:
        return []
    return [int(v) for v in np.asarray(values).reshape(-1)]
