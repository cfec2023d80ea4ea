"""TFLite builtins -> IR ops: one import function per builtin, registered with :func:`imports`.

Each function receives the operator as a :class:`TfliteOp` (its tensors already imported, its
options table decoded) and returns the IR op it becomes: ``(ir_kind, attrs, inputs)``. This is
the one place that knows a builtin's options and which of its inputs are really attributes
(RESHAPE's shape, PAD's paddings, MEAN's axes, TRANSPOSE's perm): those become typed attributes
and leave the input list. SAME padding becomes explicit padding; SQUEEZE becomes RESHAPE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from tinyml.errors import ModelFormatError, UnsupportedOpError
from tinyml.ir import ops as irops

if TYPE_CHECKING:
    from tinyml.ir import Graph

#: TFLite's fused activation functions the IR has.
_ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")

Imported = tuple[str, object, list[str]]


@dataclass
class TfliteOp:
    """One TFLite operator during import."""

    kind: str                  # the builtin's name
    layer: str                 # the IR op's name (its first output's name, up to a ';')
    inputs: list[str]          # IR tensor names ("" for an omitted optional input)
    outputs: list[str]
    options: object | None     # the decoded options table (None when absent or of another type)
    graph: "Graph"
    schema: object             # ai_edge_litert's schema_py_generated
    activation_names: dict[int, str]
    #: Shape signatures of the tensors with a dynamic (-1) dimension.
    dynamic: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.tensors[name].shape

    def target_shape(self, name: str) -> tuple[int, ...]:
        """The declared shape of ``name`` as a RESHAPE target: a dynamic dimension (stored as
        1 by the converter) stays -1, so the target holds whatever batch really flows."""
        signature = self.dynamic.get(name)
        if signature is None or sum(d < 0 for d in signature) != 1:
            return self.shape(name)
        return tuple(-1 if s < 0 else d for s, d in zip(signature, self.shape(name)))

    def const(self, position: int, what: str) -> np.ndarray:
        """The data of input ``position``, which must be a constant."""
        name = self.inputs[position] if position < len(self.inputs) else ""
        t = self.graph.tensors.get(name) if name else None
        if t is None or not t.is_constant:
            raise UnsupportedOpError(self.kind, self.layer, detail=f"{what} must be a constant")
        return t.data

    def activation(self) -> str:
        """The fused activation of the options (NONE when there are no options)."""
        if self.options is None:
            return "NONE"
        act = self.activation_names.get(self.options.fusedActivationFunction, "?")
        if act not in _ACTIVATIONS:
            raise UnsupportedOpError(self.kind, self.layer,
                                     detail=f"fused activation {act} is not supported")
        return act

    def padding(self, x_shape, kernel_hw, stride, dilation) -> tuple[int, int, int, int]:
        """The options' SAME or VALID padding made explicit (top, bottom, left, right)."""
        if self.options is None or self.options.padding == self.schema.Padding.VALID:
            return (0, 0, 0, 0)
        top, bottom = irops.same_padding(x_shape[1], kernel_hw[0], stride[0], dilation[0])
        left, right = irops.same_padding(x_shape[2], kernel_hw[1], stride[1], dilation[1])
        return (top, bottom, left, right)

    def fail(self, detail: str) -> UnsupportedOpError:
        return UnsupportedOpError(self.kind, self.layer, detail=detail)


@dataclass(frozen=True)
class Importer:
    convert: Callable[[TfliteOp], Imported]
    #: The options table type it reads (schema class name); another type reads as absent.
    options: str | None
    #: Build the options table with every field at its default when the file has none.
    default_options: bool


TFLITE_IMPORTERS: dict[str, Importer] = {}


def imports(kind: str, options: str | None = None, default_options: bool = False):
    """Register a function as the importer of builtin ``kind``."""
    def register(fn: Callable[[TfliteOp], Imported]):
        assert kind not in TFLITE_IMPORTERS, kind
        TFLITE_IMPORTERS[kind] = Importer(fn, options, default_options)
        return fn
    return register


# ---- convolutions and fully connected ---------------------------------------------------------

@imports("CONV_2D", "Conv2DOptionsT")
@imports("DEPTHWISE_CONV_2D", "DepthwiseConv2DOptionsT")
def _conv(op: TfliteOp) -> Imported:
    w, x = op.shape(op.inputs[1]), op.shape(op.inputs[0])
    if len(w) != 4 or len(x) != 4:
        raise ModelFormatError(f"{op.graph.name}: layer '{op.layer}' ({op.kind}) needs 4-D "
                               f"input and filter")
    o = op.options
    if o is None:
        raise ModelFormatError(f"{op.graph.name}: layer '{op.layer}' ({op.kind}) has no "
                               f"options")
    stride = (o.strideH, o.strideW)
    dilation = (o.dilationHFactor or 1, o.dilationWFactor or 1)
    common = dict(stride=stride, dilation=dilation,
                  padding=op.padding(x, (w[1], w[2]), stride, dilation),
                  activation=op.activation())
    if op.kind == "CONV_2D":
        return "CONV_2D", irops.Conv2DAttrs(**common), op.inputs
    cin = x[3]
    multiplier = w[3] // cin if cin and w[3] % cin == 0 else o.depthMultiplier
    return op.kind, irops.DepthwiseConv2DAttrs(**common, depth_multiplier=int(multiplier)), \
        op.inputs


@imports("FULLY_CONNECTED", "FullyConnectedOptionsT")
def _fully_connected(op: TfliteOp) -> Imported:
    o = op.options
    if o is not None and o.weightsFormat != 0:
        raise op.fail("shuffled weights format")
    return op.kind, irops.FullyConnectedAttrs(
        activation=op.activation(),
        keep_num_dims=bool(o.keepNumDims) if o is not None else False), op.inputs


# ---- element-wise -----------------------------------------------------------------------------

@imports("ADD", "AddOptionsT")
@imports("MUL", "MulOptionsT")
def _binary(op: TfliteOp) -> Imported:
    return op.kind, irops.ElementwiseAttrs(op.activation()), op.inputs


@imports("RELU")
@imports("RELU6")
@imports("LOGISTIC")
@imports("HARD_SWISH")
@imports("DEQUANTIZE")
def _no_attributes(op: TfliteOp) -> Imported:
    return op.kind, None, op.inputs


@imports("QUANTIZE")
@imports("CAST")
def _cast(op: TfliteOp) -> Imported:
    return op.kind, irops.CastAttrs(op.graph.tensors[op.outputs[0]].dtype), op.inputs


# ---- pooling, reductions, softmax -------------------------------------------------------------

@imports("AVERAGE_POOL_2D", "Pool2DOptionsT")
@imports("MAX_POOL_2D", "Pool2DOptionsT")
def _pool(op: TfliteOp) -> Imported:
    o = op.options
    if o is None:
        raise ModelFormatError(f"{op.graph.name}: layer '{op.layer}' ({op.kind}) has no "
                               f"options")
    stride = (o.strideH, o.strideW)
    kernel = (o.filterHeight, o.filterWidth)
    return op.kind, irops.Pool2DAttrs(
        filter=kernel, stride=stride,
        padding=op.padding(op.shape(op.inputs[0]), kernel, stride, (1, 1)),
        activation=op.activation()), op.inputs


@imports("MEAN", "ReducerOptionsT")
def _mean(op: TfliteOp) -> Imported:
    axes = tuple(int(a) for a in np.asarray(op.const(1, "axes")).reshape(-1))
    keep = bool(op.options.keepDims) if op.options is not None else False
    return op.kind, irops.ReduceAttrs(axes=axes, keep_dims=keep), op.inputs[:1]


@imports("SOFTMAX", "SoftmaxOptionsT")
def _softmax(op: TfliteOp) -> Imported:
    beta = float(op.options.beta) if op.options is not None else 1.0
    return op.kind, irops.SoftmaxAttrs(beta=beta), op.inputs


# ---- data movement ----------------------------------------------------------------------------

@imports("RESHAPE", "ReshapeOptionsT")
@imports("SQUEEZE")
def _reshape(op: TfliteOp) -> Imported:
    g, inputs = op.graph, op.inputs
    target = op.target_shape(op.outputs[0])
    if op.kind == "RESHAPE" and len(inputs) > 1 and inputs[1] and \
            not g.tensors[inputs[1]].is_constant:
        return "RESHAPE", irops.ReshapeAttrs(None), inputs[:2]  # resolved at shape inference
    if op.kind == "RESHAPE" and len(inputs) > 1 and inputs[1]:
        target = tuple(int(v) for v in g.tensors[inputs[1]].data.reshape(-1))
    elif op.kind == "RESHAPE" and op.options is not None and op.options.newShape is not None \
            and len(op.options.newShape):
        target = tuple(int(v) for v in op.options.newShape)
    return "RESHAPE", irops.ReshapeAttrs(tuple(target)), inputs[:1]


@imports("CONCATENATION", "ConcatenationOptionsT", default_options=True)
def _concatenation(op: TfliteOp) -> Imported:
    return op.kind, irops.ConcatenationAttrs(axis=int(op.options.axis),
                                             activation=op.activation()), op.inputs


@imports("PAD")
@imports("PADV2")
def _pad(op: TfliteOp) -> Imported:
    pads = np.asarray(op.const(1, "paddings")).reshape(-1, 2)
    value = None
    if op.kind == "PADV2" and len(op.inputs) > 2 and op.inputs[2]:
        value = op.const(2, "constant value").reshape(-1)[0].item()
    return "PAD", irops.PadAttrs(tuple((int(b), int(a)) for b, a in pads), value), \
        op.inputs[:1]


@imports("TRANSPOSE")
def _transpose(op: TfliteOp) -> Imported:
    perm = np.asarray(op.const(1, "perm")).reshape(-1)
    return op.kind, irops.TransposeAttrs(tuple(int(p) for p in perm)), op.inputs[:1]


# ---- shape computations (evaluated at import, then folded) -----------------------------------

@imports("SHAPE")
def _shape(op: TfliteOp) -> Imported:
    return op.kind, None, op.inputs


@imports("STRIDED_SLICE", "StridedSliceOptionsT", default_options=True)
def _strided_slice(op: TfliteOp) -> Imported:
    o = op.options
    if o.ellipsisMask or o.newAxisMask:
        raise op.fail("ellipsis/new-axis masks")
    return op.kind, irops.StridedSliceAttrs(int(o.beginMask), int(o.endMask),
                                            int(o.shrinkAxisMask), bool(o.offset)), op.inputs


@imports("PACK", "PackOptionsT", default_options=True)
def _pack(op: TfliteOp) -> Imported:
    return op.kind, irops.AxisAttrs(int(op.options.axis)), op.inputs


@imports("GATHER", "GatherOptionsT")
def _gather(op: TfliteOp) -> Imported:
    o = op.options
    if o is not None and o.batchDims:
        raise op.fail("batch_dims")
    return op.kind, irops.AxisAttrs(int(o.axis) if o is not None else 0), op.inputs


# ---- conv ops: convolution variants and the shape ops around them --------------------------

@imports("EXPAND_DIMS")
def _expand_dims(op: TfliteOp) -> Imported:
    """EXPAND_DIMS only inserts a dimension of size 1: a RESHAPE (then an alias, no code).
    The converter writes it in front of the CONV_2D of a Keras Conv1D."""
    axis = np.asarray(op.const(1, "axis")).reshape(-1)
    if axis.size != 1:
        raise op.fail(f"axis must be one value, got {axis.tolist()}")
    shape = list(op.target_shape(op.inputs[0]))
    rank = len(shape) + 1
    if not -rank <= int(axis[0]) < rank:
        raise op.fail(f"axis {int(axis[0])} out of range for a {rank}-D output")
    shape.insert(int(axis[0]) % rank, 1)
    return "RESHAPE", irops.ReshapeAttrs(tuple(shape)), op.inputs[:1]


def _spatial_pairs(op: TfliteOp, position: int, what: str) -> tuple[tuple[int, int], ...]:
    pairs = np.asarray(op.const(position, what)).reshape(-1, 2)
    return tuple((int(b), int(a)) for b, a in pairs)


@imports("SPACE_TO_BATCH_ND")
def _space_to_batch(op: TfliteOp) -> Imported:
    block = tuple(int(b) for b in np.asarray(op.const(1, "block shape")).reshape(-1))
    return op.kind, irops.SpaceToBatchAttrs(block, _spatial_pairs(op, 2, "paddings")), \
        op.inputs[:1]


@imports("BATCH_TO_SPACE_ND")
def _batch_to_space(op: TfliteOp) -> Imported:
    block = tuple(int(b) for b in np.asarray(op.const(1, "block shape")).reshape(-1))
    return op.kind, irops.BatchToSpaceAttrs(block, _spatial_pairs(op, 2, "crops")), \
        op.inputs[:1]


@imports("TRANSPOSE_CONV", "TransposeConvOptionsT")
def _transpose_conv(op: TfliteOp) -> Imported:
    """Inputs (output_shape, filter, input[, bias]) become (input, filter[, bias]) with the
    output shape and TFLM's padding as attributes."""
    o = op.options
    if o is None:
        raise ModelFormatError(f"{op.graph.name}: layer '{op.layer}' ({op.kind}) has no "
                               f"options")
    out_shape = tuple(int(d) for d in np.asarray(op.const(0, "output shape")).reshape(-1))
    w = op.shape(op.inputs[1])
    x = op.shape(op.inputs[2])
    if len(out_shape) != 4 or len(w) != 4 or len(x) != 4:
        raise op.fail("needs a 4-D input, filter and output shape")
    same = o.padding == op.schema.Padding.SAME
    stride = (int(o.strideH), int(o.strideW))
    padding = []
    for axis in (0, 1):
        before = irops.transpose_conv_padding(out_shape[1 + axis], w[1 + axis], stride[axis],
                                              same)
        after = (x[1 + axis] - 1) * stride[axis] + w[1 + axis] - out_shape[1 + axis] - before
        padding += [before, after]
    activation = op.activation() if hasattr(o, "fusedActivationFunction") else "NONE"
    inputs = [op.inputs[2], op.inputs[1]]
    if len(op.inputs) > 3 and op.inputs[3]:
        inputs.append(op.inputs[3])
    return op.kind, irops.TransposeConvAttrs(out_shape, stride, tuple(padding), activation), \
        inputs
