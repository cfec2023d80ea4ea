"""ONNX frontend: an ``.onnx`` model (float, or int8 in ORT's QDQ format) into the graph IR.

The model is read with the ``onnx`` package (``onnx.load``, ``onnx.checker``, ``numpy_helper``);
``onnx.shape_inference`` provides an independent check of every shape the import computes.

Layout. The IR is NHWC like TFLite (kernels, memory planner and C code assume it); ONNX is
NCHW. Every ONNX value is tracked with the permutation between its logical ONNX layout and the
IR tensor that stores it (:mod:`tinyml.frontends.layout`), so convolutions and pools consume
NHWC, ONNX ``Transpose`` nodes only change the permutation (the NHWC->NCHW transposes that
converters such as tf2onnx insert cancel out), element-wise ops and reductions work in the
layout their inputs already have (constants are permuted, axes remapped), and a real TRANSPOSE
is emitted only where an op needs the logical order and non-unit dimensions would move
(e.g. Flatten after a convolution with a spatial extent). Graph inputs and outputs keep their
ONNX logical layout. Weights: Conv [O, I/g, kH, kW] -> [O, kH, kW, I]; depthwise (group ==
C_in) -> [1, kH, kW, C*M]; Gemm and MatMul with a constant B -> FULLY_CONNECTED [out, in].

Constants. Everything computable at import is computed at import: initializers, ``Constant``
and any node whose inputs are all known (shape arithmetic such as Shape -> Gather -> Unsqueeze
-> Concat -> Reshape) is evaluated with ``onnx.reference`` on the node alone, so only real
computation reaches the IR. A symbolic batch dimension resolves to 1; any other dynamic
dimension is an error naming the input.

QDQ int8 (``onnxruntime.quantization.quantize_static``, QDQ format): ``DequantizeLinear`` of an
int8/int32 initializer is a quantized constant (weights, biases), ``DequantizeLinear`` of an
int8 activation is a *view* of that int8 tensor, and a compute op whose inputs are views and
whose result feeds a ``QuantizeLinear`` (directly or through a Relu/Clip, which then becomes the
fused activation) becomes the int8 IR op with TFLite conventions: per-tensor int8 activations,
symmetric int8 weights (per-channel on the output channel), int32 bias with scale
input_scale * weight_scale. When ORT removed a Relu/Clip, the QuantizeLinear's range (zero
point -128 at 0.0) does the clamp, exactly as TFLM's fused activation range would. uint8 QDQ
values are held as int8 with the zero point moved by 128 (same real values). Where TFLM's
kernel fixes or keeps the output scale (SOFTMAX and LOGISTIC write 1/256 with zero point -128;
pooling, PAD and RELU6 keep the input's), a QUANTIZE op requantizes to the QuantizeLinear's
scale; int8 CONCATENATION inputs at another scale are requantized first. Ops without an int8
form run in float between DEQUANTIZE and QUANTIZE. Graph inputs stay float with a QUANTIZE op,
outputs get a DEQUANTIZE, as in the QDQ graph.

Rounding versus onnxruntime. The int8 graph follows TFLM, not ORT, so it is not bit-exact with
ORT's QDQ execution: ORT requantizes the int32 accumulator of QLinearConv/QLinearMatMul with a
float multiplier and rounds half to even; TFLM uses a 32-bit fixed-point multiplier, a doubling
high multiplication and a rounding right shift (two roundings, half away from zero). ORT's
QuantizeLinear and average pooling round half to even where TFLM rounds half away from zero,
and ORT's softmax/sigmoid outputs are computed in float and quantized once where TFLM's fixed
1/256 output is requantized. Measured with onnxruntime 1.31 (tests/test_frontend_onnx.py, each
int8 op recomputed from ORT's own inputs, every differing value is off by exactly 1 LSB):

- conv, depthwise and grouped conv: 0.2-0.4% of the values; fully connected 0.5-1%; add, mul,
  max pool, pad, clip: 0; hard-swish 0.4-1.6%; mean 3-8% (TFLM folds 1/count into the
  multiplier with an integer division, then rounds twice);
- average pooling 3% with 3x3 windows, ~20% with 2-wide ones (exact .5 ties, rounded away from
  zero by TFLM and to even by ORT);
- requantization (QUANTIZE int8 -> int8, e.g. a concat input at another scale): 16% for a
  scale ratio in [0.25, 0.5), where TFLM's two roundings move a quarter of the values up;
- softmax and sigmoid with their requantization from 1/256: 18-40%.

End to end, on the small CNN (conv, depthwise, grouped conv, add, global average pool, gemm,
softmax), the int8 output before the final DequantizeLinear differs by 1 LSB in 16-23% of the
values and never more. Inside a network the differences compound: up to 2 LSB in that CNN, and
about 10 LSB after a conv -> sigmoid -> mul gating chain in the op-coverage model, which is why
the tests check each op in isolation. Where the QDQ graph came from an int8 TFLite model (tf2onnx), the import gives
back its ops and every tensor equals TFLM's bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml.errors import GraphError, ModelFormatError, ShapeError, UnsupportedOpError
from tinyml.frontends import layout
from tinyml.frontends.layout import Perm
from tinyml.frontends.onnx_ops import CONVERTERS
from tinyml.frontends.onnx_recurrent import recurrent  # noqa: F401  (registers LSTM, GRU, RNN)
from tinyml.frontends.onnx_values import Builder, Value
from tinyml.ir import Graph, Tensor

#: Ops that only make sense on constants and are evaluated at import (with any other op whose
#: inputs are all constants).
CONSTANT_OPS = ("Constant", "ConstantOfShape", "Range", "Expand", "Equal", "Where")

SUPPORTED_ONNX_OPS = tuple(sorted(set(CONVERTERS) | set(CONSTANT_OPS)))

#: Ops whose converters keep a quantized constant quantized (others see its float value).
_QCONST_AWARE = ("DequantizeLinear", "Transpose", "Identity", "Dropout", "Reshape", "Flatten",
                 "Squeeze", "Unsqueeze")

#: Ops converted even on constant inputs (quantization is kept, shapes need no data).
_NEVER_FOLDED = ("QuantizeLinear", "DequantizeLinear", "Shape", "Size")

_ELEMENT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64",
                  9: "bool", 10: "float16"}


@dataclass
class OnnxImport:
    """A converted model and, for every IR activation, the ONNX value it holds and the
    permutation from that value's logical layout (used to compare intermediates with ORT)."""

    graph: Graph
    origin: dict[str, tuple[str, Perm]]


def load_onnx(path: str | Path) -> Graph:
    """Read an ONNX model file into a finalized graph."""
    return import_onnx(read_onnx(path), name=Path(path).stem).graph


def read_onnx(path: str | Path):
    """``onnx.load`` + ``onnx.checker``; any failure is a one-line ModelFormatError."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises many types on corrupt input
        raise ModelFormatError(f"{path}: corrupt or truncated ONNX file "
                               f"({type(exc).__name__}: {_first_line(exc)})") from None
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelFormatError(f"{path}: invalid ONNX model ({_first_line(exc)})") from None
    return model


def import_onnx(model, name: str = "model") -> OnnxImport:
    """Convert a loaded ``onnx.ModelProto``."""
    return _Importer(model, name).run()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class _Importer:
    def __init__(self, model, name: str):
        self.model = model
        self.name = name
        g = model.graph
        consumers: dict[str, list] = {}
        for node in g.node:
            for n in node.input:
                if n:
                    consumers.setdefault(n, []).append(node)
        self.b = Builder(name, {o.name for o in g.output}, consumers)
        self.b.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                            1)

    def run(self) -> OnnxImport:
        g, b = self.model.graph, self.b
        initializers = {t.name for t in g.initializer}
        for t in g.initializer:
            b.constant(t.name, self._array(t))
        inputs = [i for i in g.input if i.name not in initializers]
        for i in inputs:
            self._add_input(i)
        expected = self._inferred_shapes(inputs)
        for node in g.node:
            if id(node) in b.done:
                continue
            b.layer = node.name or (node.output[0] if node.output else node.op_type)
            b.op_type = node.op_type
            self._convert(node)
            b.done.add(id(node))
            for out in node.output:
                self._check(node, out, expected)
        for o in g.output:
            b.layer, b.op_type = o.name, "graph output"
            b.graph.outputs.append(self._output(o.name))
        b.prune()
        for name in list(b.graph.outputs):
            self._rename(name)
        b.graph.finalize()
        return OnnxImport(b.graph, dict(b.origin))

    # ---- reading --------------------------------------------------------------------------

    def _array(self, tensor) -> np.ndarray:
        from onnx import numpy_helper

        try:
            return numpy_helper.to_array(tensor)
        except Exception as exc:
            raise ModelFormatError(f"{self.name}: initializer '{tensor.name}' is unreadable "
                                   f"({_first_line(exc)})") from None

    def _add_input(self, info) -> None:
        b = self.b
        if not info.type.HasField("tensor_type"):
            raise UnsupportedOpError("graph input", info.name, detail="not a tensor")
        tt = info.type.tensor_type
        dtype = _ELEMENT_TYPES.get(tt.elem_type)
        if dtype is None or dtype == "bool":
            raise UnsupportedOpError("graph input", info.name,
                                     detail=f"element type {tt.elem_type}")
        if not tt.HasField("shape"):
            raise ShapeError(f"{self.name}: input '{info.name}' has an unresolvable dynamic "
                             f"shape (no shape given)")
        dims, shape = [], []
        for i, d in enumerate(tt.shape.dim):
            static = d.HasField("dim_value") and d.dim_value > 0
            dims.append(str(d.dim_value) if static else (d.dim_param or "?"))
            if static:
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(1)  # the batch dimension
            else:
                shape.append(None)
        if None in shape:
            bad = [dims[i] for i, d in enumerate(shape) if d is None]
            raise ShapeError(f"{self.name}: input '{info.name}' has unresolvable dynamic shape "
                             f"[{', '.join(dims)}]: dimension {', '.join(bad)} is not the batch "
                             f"dimension; export the model with a fixed size")
        b.graph.add_tensor(Tensor(info.name, tuple(shape), dtype))
        b.graph.inputs.append(info.name)
        b.activation(info.name, info.name, layout.identity(len(shape)))

    def _inferred_shapes(self, inputs) -> dict[str, tuple[int, ...]]:
        """Static shapes ONNX shape inference finds with the batch dimension set to 1; every
        shape the import computes must agree (a cheap guard against layout mistakes)."""
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        # Shapes the file declares are claims, not inferences: drop them.
        del model.graph.value_info[:]
        for o in model.graph.output:
            o.type.tensor_type.ClearField("shape")
        known = {i.name: self.b.values[i.name].shape for i in inputs}
        for i in model.graph.input:
            if i.name in known:
                for d, size in zip(i.type.tensor_type.shape.dim, known[i.name]):
                    d.Clear()
                    d.dim_value = size
        try:
            inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except Exception:
            return {}
        shapes = {}
        for info in list(inferred.graph.value_info) + list(inferred.graph.output):
            if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField(
                    "shape"):
                continue
            dims = info.type.tensor_type.shape.dim
            if all(d.HasField("dim_value") for d in dims):
                shapes[info.name] = tuple(int(d.dim_value) for d in dims)
        return shapes

    def _check(self, node, name: str, expected: dict) -> None:
        b = self.b
        if not name:
            return
        value = b.values.get(name)
        if value is None:
            if b.pending_users(name, node) or name in b.graph_outputs:
                raise UnsupportedOpError(node.op_type, b.layer,
                                         detail=f"output '{name}' is not supported")
            return
        if name in expected and expected[name] != value.shape:
            if node.op_type in ("Resize", "Upsample"):
                # Output size floor(input * scale) with a scale a hair below n / input, as
                # tf2onnx writes them (6 x 1.6666666f): onnxruntime (and this import, in
                # float32) gives 10, ONNX shape inference 9. The runtime's size is the one
                # models run with; every shape after this one would disagree too, so
                # inference no longer guards the rest of the graph.
                expected.clear()
                return
            raise GraphError(f"{self.name}: layer '{b.layer}' ({node.op_type}): output '{name}' "
                             f"computes to {list(value.shape)} but ONNX shape inference says "
                             f"{list(expected[name])}")

    # ---- conversion -----------------------------------------------------------------------

    def _convert(self, node) -> None:
        from onnx import helper

        b = self.b
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(f"{node.domain}.{node.op_type}", b.layer,
                                     SUPPORTED_ONNX_OPS)
        inputs = [b.get(n) for n in node.input]
        present = [v for v in inputs if v is not None]
        constant = all(v.is_const for v in present)
        keeps_quant = node.op_type in _QCONST_AWARE and any(v.qconst is not None
                                                            for v in present)
        if constant and not keeps_quant and node.op_type not in _NEVER_FOLDED:
            self._fold(node, inputs)
            return
        convert = CONVERTERS.get(node.op_type)
        if convert is None:
            raise UnsupportedOpError(node.op_type, b.layer, SUPPORTED_ONNX_OPS)
        # A converter tripping over a malformed node raises whatever it raises:
        # tinyml.frontends.load_model asks the ONNX checker whether the file or we are at fault.
        convert(b, node, {a.name: helper.get_attribute_value(a) for a in node.attribute})

    def _fold(self, node, inputs: list[Value | None]) -> None:
        """Evaluate a node whose inputs are all known, with ONNX's reference implementation."""
        import onnx
        from onnx import helper
        from onnx.reference import ReferenceEvaluator

        b = self.b
        feeds, infos = {}, []
        for name, v in zip(node.input, inputs):
            if v is None or name in feeds:
                continue
            data = np.asarray(v.float_data())
            feeds[name] = data
            infos.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(data.dtype), data.shape))
        outputs = [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                   for o in node.output if o]
        graph = helper.make_graph([node], "fold", infos, outputs)
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                  ir_version=self.model.ir_version)
        try:
            results = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:
            raise UnsupportedOpError(node.op_type, b.layer, SUPPORTED_ONNX_OPS,
                                     detail=f"cannot evaluate it on constant inputs "
                                            f"({_first_line(exc)})") from None
        for name, data in zip([o for o in node.output if o], results):
            b.constant(name, np.asarray(data))

    # ---- outputs --------------------------------------------------------------------------

    def _output(self, name: str) -> str:
        b = self.b
        value = b.values.get(name)
        if value is None:
            raise ModelFormatError(f"{self.name}: graph output '{name}' is never computed")
        if value.is_const:
            return b.new_const(name, value.float_data())
        if value.dtype == "uint8":
            raise UnsupportedOpError("QuantizeLinear", name,
                                     detail="uint8 graph outputs (dequantize them in the model)")
        return b.float_tensor(value, layout.identity(value.rank))

    def _rename(self, ir: str) -> None:
        """Give an output tensor its ONNX name when an internal name was used for it."""
        b = self.b
        graph = b.graph
        onnx_name = b.origin.get(ir, (ir,))[0]
        if (onnx_name == ir or onnx_name in graph.tensors or ir in graph.inputs
                or graph.tensors[ir].is_constant or graph.outputs.count(ir) > 1
                or onnx_name not in b.graph_outputs):
            return
        t = graph.tensors.pop(ir)
        t.name = onnx_name
        graph.tensors[onnx_name] = t
        for op in graph.ops:
            op.inputs = [onnx_name if n == ir else n for n in op.inputs]
            op.outputs = [onnx_name if n == ir else n for n in op.outputs]
        graph.outputs = [onnx_name if n == ir else n for n in graph.outputs]
        b.origin[onnx_name] = b.origin.pop(ir)

