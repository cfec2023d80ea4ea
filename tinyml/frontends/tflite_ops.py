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
    options: object | None     # the decoded options table (None for builtins that have none)
    graph: "Graph"
    schema: object             # ai_edge_litert's schema_py_generated
    activation_names: dict[int, str]
    #: Shape signatures of the tensors with a dynamic (-1) dimension.
    dynamic: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: Tensors the file flags ``is_variable`` (state TFLM keeps between invocations).
    variable_tensors: frozenset[str] = frozenset()

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
    #: The options table type it reads (schema class name). A table of another type reads as
    #: absent, and an absent one as TFLM's zero-initialized defaults (see the importer).
    options: str | None
    #: What is unknown when the options are absent, for builtins whose all-zero options cannot
    #: run (a zero stride, pool size, block size or softmax beta); None: zeros are fine.
    needs_options: str | None
    #: The IR op kind the builtin becomes (for ``tinyml ops``; the function decides per op).
    becomes: str


TFLITE_IMPORTERS: dict[str, Importer] = {}


def imports(kind: str, options: str | None = None, becomes: str | None = None,
            needs_options: str | None = None):
    """Register a function as the importer of builtin ``kind``, which becomes the IR op
    ``becomes`` (default: the IR op of the same name). ``needs_options``: see
    :attr:`Importer.needs_options`."""
    def register(fn: Callable[[TfliteOp], Imported]):
        assert kind not in TFLITE_IMPORTERS, kind
        TFLITE_IMPORTERS[kind] = Importer(fn, options, needs_options, becomes or kind)
        return fn
    return register


# ---- convolutions and fully connected ---------------------------------------------------------

@imports("CONV_2D", "Conv2DOptionsT", needs_options="strides are")
@imports("DEPTHWISE_CONV_2D", "DepthwiseConv2DOptionsT", needs_options="strides are")
def _conv(op: TfliteOp) -> Imported:
    w, x = op.shape(op.inputs[1]), op.shape(op.inputs[0])
    if len(w) != 4 or len(x) != 4:
        raise ModelFormatError(f"{op.graph.name}: layer '{op.layer}' ({op.kind}) needs 4-D "
                               f"input and filter")
    o = op.options
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


@imports("SVDF", "SVDFOptionsT")
def _svdf(op: TfliteOp) -> Imported:
    """Input 4, the activation state, is a variable tensor the op updates in place: it
    becomes the op's variable (tinyml.frontends.tflite_variables.variable_tensor)."""
    from tinyml.frontends.tflite_variables import variable_tensor
    if len(op.inputs) != 5:
        raise op.fail(f"{len(op.inputs)} inputs, TFLM's SVDF takes 5 (input, feature "
                      f"weights, time weights, bias, activation state)")
    o = op.options
    if o is not None and o.asymmetricQuantizeInputs:
        raise op.fail("hybrid (float activations, int8 weights) SVDF")
    var = variable_tensor(op.graph, op.inputs[4], op.layer, op.kind)
    q = var.quant
    attrs = irops.SvdfAttrs(
        rank=int(o.rank) if o is not None else 0, activation=op.activation(),
        variable=var.name, shape=tuple(var.shape), dtype=var.dtype,
        state_scale=float(q.scale.reshape(-1)[0]) if q is not None else 0.0,
        state_zero_point=int(q.zero_point.reshape(-1)[0]) if q is not None else 0)
    return op.kind, attrs, op.inputs[:4]


@imports("GELU", "GeluOptionsT")
def _gelu(op: TfliteOp) -> Imported:
    o = op.options
    return op.kind, irops.GeluAttrs(approximate=bool(o.approximate) if o is not None
                                    else False), op.inputs


@imports("BATCH_MATMUL", "BatchMatMulOptionsT")
def _batch_matmul(op: TfliteOp) -> Imported:
    o = op.options
    if o is not None and o.asymmetricQuantizeInputs:
        raise op.fail("hybrid (float activations, int8 constant) matrix product")
    return op.kind, irops.BatchMatMulAttrs(adj_x=bool(o.adjX) if o is not None else False,
                                           adj_y=bool(o.adjY) if o is not None else False), \
        op.inputs


# ---- element-wise -----------------------------------------------------------------------------

@imports("ADD", "AddOptionsT")
@imports("MUL", "MulOptionsT")
def _binary(op: TfliteOp) -> Imported:
    return op.kind, irops.ElementwiseAttrs(op.activation()), op.inputs


@imports("RELU")
@imports("NEG")
@imports("SQUARE")
@imports("SIN")
@imports("COS")
@imports("FLOOR")
@imports("CEIL")
@imports("ROUND")
@imports("EXP")
@imports("LOG")
@imports("SQRT")
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

@imports("AVERAGE_POOL_2D", "Pool2DOptionsT", needs_options="strides are")
@imports("MAX_POOL_2D", "Pool2DOptionsT", needs_options="strides are")
def _pool(op: TfliteOp) -> Imported:
    o = op.options
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


@imports("SOFTMAX", "SoftmaxOptionsT", needs_options="beta is")
def _softmax(op: TfliteOp) -> Imported:
    beta = float(op.options.beta) if op.options is not None else 1.0
    return op.kind, irops.SoftmaxAttrs(beta=beta), op.inputs


# ---- data movement ----------------------------------------------------------------------------

@imports("RESHAPE", "ReshapeOptionsT")
@imports("SQUEEZE", becomes="RESHAPE")
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


@imports("CONCATENATION", "ConcatenationOptionsT")
def _concatenation(op: TfliteOp) -> Imported:
    return op.kind, irops.ConcatenationAttrs(axis=int(op.options.axis),
                                             activation=op.activation()), op.inputs


@imports("PAD")
@imports("PADV2", becomes="PAD")
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


@imports("STRIDED_SLICE", "StridedSliceOptionsT")
def _strided_slice(op: TfliteOp) -> Imported:
    o = op.options
    if o.ellipsisMask or o.newAxisMask:
        raise op.fail("ellipsis/new-axis masks")
    return op.kind, irops.StridedSliceAttrs(int(o.beginMask), int(o.endMask),
                                            int(o.shrinkAxisMask), bool(o.offset)), op.inputs


@imports("PACK", "PackOptionsT")
def _pack(op: TfliteOp) -> Imported:
    return op.kind, irops.AxisAttrs(int(op.options.axis)), op.inputs


@imports("GATHER", "GatherOptionsT")
def _gather(op: TfliteOp) -> Imported:
    o = op.options
    if o is not None and o.batchDims:
        raise op.fail("batch_dims")
    return op.kind, irops.AxisAttrs(int(o.axis) if o is not None else 0), op.inputs


# ---- data_movement ops ------------------------------------------------------------------------

def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in np.asarray(values).reshape(-1))


def _axis(op: TfliteOp, position: int, rank: int) -> int:
    axis = _ints(op.const(position, "axis"))[0]
    if not -rank <= axis < rank:
        raise op.fail(f"axis {axis} out of range for rank {rank}")
    return axis % rank


@imports("SLICE")
def _slice(op: TfliteOp) -> Imported:
    return op.kind, irops.SliceAttrs(_ints(op.const(1, "begin")), _ints(op.const(2, "size"))), \
        op.inputs[:1]


@imports("SPLIT", "SplitOptionsT")
def _split(op: TfliteOp) -> Imported:
    x = op.shape(op.inputs[1])
    axis = _axis(op, 0, len(x))
    count = len(op.outputs)
    if count == 0 or x[axis] % count:
        raise op.fail(f"dimension {axis} of size {x[axis]} does not split into {count}")
    return op.kind, irops.SplitAttrs(axis, (x[axis] // count,) * count), op.inputs[1:2]


@imports("SPLIT_V", "SplitVOptionsT")
def _split_v(op: TfliteOp) -> Imported:
    x = op.shape(op.inputs[0])
    axis = _axis(op, 2, len(x))
    sizes = list(_ints(op.const(1, "size_splits")))
    if sizes.count(-1) == 1:
        sizes[sizes.index(-1)] = x[axis] - (sum(sizes) + 1)
    return op.kind, irops.SplitAttrs(axis, tuple(sizes)), op.inputs[:1]


@imports("UNPACK", "UnpackOptionsT")
def _unpack(op: TfliteOp) -> Imported:
    return op.kind, irops.AxisAttrs(int(op.options.axis)), op.inputs[:1]


@imports("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighborOptionsT")
@imports("RESIZE_BILINEAR", "ResizeBilinearOptionsT")
def _resize(op: TfliteOp) -> Imported:
    size = _ints(op.const(1, "size"))
    if len(size) != 2:
        raise op.fail(f"size {list(size)} is not (height, width)")
    o = op.options
    return op.kind, irops.ResizeAttrs((size[0], size[1]), bool(o.alignCorners),
                                      bool(o.halfPixelCenters)), op.inputs[:1]


@imports("DEPTH_TO_SPACE", "DepthToSpaceOptionsT", needs_options="block size is")
@imports("SPACE_TO_DEPTH", "SpaceToDepthOptionsT", needs_options="block size is")
def _depth_space(op: TfliteOp) -> Imported:
    return op.kind, irops.BlockAttrs(int(op.options.blockSize)), op.inputs[:1]


@imports("MIRROR_PAD", "MirrorPadOptionsT")
def _mirror_pad(op: TfliteOp) -> Imported:
    pads = np.asarray(op.const(1, "paddings")).reshape(-1, 2)
    mode = "REFLECT" if op.options.mode == op.schema.MirrorPadMode.REFLECT else "SYMMETRIC"
    return op.kind, irops.MirrorPadAttrs(tuple((int(b), int(a)) for b, a in pads), mode), \
        op.inputs[:1]


@imports("BROADCAST_TO")
def _broadcast_to(op: TfliteOp) -> Imported:
    return op.kind, irops.BroadcastToAttrs(_ints(op.const(1, "shape"))), op.inputs[:1]


@imports("REVERSE_V2")
def _reverse(op: TfliteOp) -> Imported:
    return op.kind, irops.AxesAttrs(_ints(op.const(1, "axis"))), op.inputs[:1]


@imports("GATHER_ND")
@imports("FILL")
@imports("ZEROS_LIKE")
def _tensor_operands(op: TfliteOp) -> Imported:
    return op.kind, None, op.inputs

# ---- activations_math ops ---------------------------------------------------------------------

@imports("TANH")
@imports("RSQRT")
@imports("LOG_SOFTMAX")
@imports("PRELU")
@imports("ELU")
@imports("ABS")
def _activation_math(op: TfliteOp) -> Imported:
    return op.kind, None, op.inputs


@imports("LEAKY_RELU", "LeakyReluOptionsT")
def _leaky_relu(op: TfliteOp) -> Imported:
    return op.kind, irops.LeakyReluAttrs(alpha=float(op.options.alpha)), op.inputs

# ---- binary ops: element-wise with broadcasting, comparisons, selection ----------------------

@imports("SUB", "SubOptionsT")
def _sub(op: TfliteOp) -> Imported:
    return op.kind, irops.ElementwiseAttrs(op.activation()), op.inputs


@imports("MAXIMUM")
@imports("MINIMUM")
@imports("SQUARED_DIFFERENCE")
@imports("GREATER")
@imports("GREATER_EQUAL")
@imports("LESS")
@imports("LESS_EQUAL")
@imports("EQUAL")
@imports("NOT_EQUAL")
@imports("SELECT_V2")
@imports("LOGICAL_AND")
@imports("LOGICAL_OR")
@imports("LOGICAL_NOT")
def _binary_family(op: TfliteOp) -> Imported:
    return op.kind, irops.NoAttrs(), op.inputs


# ---- reductions ops ---------------------------------------------------------------------------

@imports("SUM", "ReducerOptionsT")
@imports("REDUCE_MAX", "ReducerOptionsT")
@imports("REDUCE_MIN", "ReducerOptionsT")
def _reduce(op: TfliteOp) -> Imported:
    return _mean(op)


@imports("ARG_MAX")
@imports("ARG_MIN")
def _arg_min_max(op: TfliteOp) -> Imported:
    """The axis is a constant input; the index type is the output tensor's (TFLM computes
    int32 indices only, which lowering checks)."""
    axis = np.asarray(op.const(1, "axis")).reshape(-1)
    if axis.size != 1:
        raise op.fail(f"expects one axis, got {axis.size}")
    dtype = op.graph.tensors[op.outputs[0]].dtype
    return op.kind, irops.ArgAttrs(axis=int(axis[0]), output_type=dtype), op.inputs[:1]


@imports("L2_NORMALIZATION", "L2NormOptionsT")
def _l2_normalization(op: TfliteOp) -> Imported:
    if op.activation() != "NONE":  # TFLM's kernel supports no fused activation
        raise op.fail(f"fused activation {op.activation()}")
    return op.kind, irops.NoAttrs(), op.inputs

# ---- conv ops: convolution variants and the shape ops around them --------------------------

@imports("EXPAND_DIMS", becomes="RESHAPE")
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


@imports("TRANSPOSE_CONV", "TransposeConvOptionsT", needs_options="strides are")
def _transpose_conv(op: TfliteOp) -> Imported:
    """Inputs (output_shape, filter, input[, bias]) become (input, filter[, bias]) with the
    output shape and TFLM's padding as attributes."""
    o = op.options
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


# ---- sequence ops -----------------------------------------------------------------------------

#: TFLite's UNIDIRECTIONAL_SEQUENCE_LSTM inputs of the variants TFLM's integer LSTM does not
#: run (``LstmTensors::ValidateTensorStatus`` requires them absent).
_LSTM_VARIANTS = {"peephole": (9, 10, 11), "projection": (16, 17),
                  "layer normalization": (20, 21, 22, 23)}


@imports("UNIDIRECTIONAL_SEQUENCE_LSTM", "UnidirectionalSequenceLSTMOptionsT")
def _lstm(op: TfliteOp) -> Imported:
    """The converter's full-int8 LSTM. Its hidden (input 18) and cell (input 19) state tensors
    are variables TFLM keeps between invocations: they become ``Graph.variables`` (reset as
    TFLM resets variable tensors: int8 to the zero point, int16 to 0) that the IR op updates,
    and leave the input list. The operator's intermediates (gate scales the converter records)
    are not read: TFLM's integer LSTM uses fixed gate scales."""
    from tinyml.ir.graph import Variable
    if len(op.inputs) != 24:
        raise ModelFormatError(f"{op.graph.name}: layer '{op.layer}' ({op.kind}) has "
                               f"{len(op.inputs)} inputs, TFLite's LSTM has 24")
    for variant, positions in _LSTM_VARIANTS.items():
        if any(op.inputs[i] for i in positions):
            raise op.fail(f"{variant} LSTM: TFLM's integer LSTM runs the standard (Keras) "
                          f"LSTM only")
    x = op.graph.tensors[op.inputs[0]]
    weights = [op.graph.tensors[n] if n else None for n in op.inputs[1:9]]
    if any(w is None for w in weights):
        raise op.fail("LSTM without an input gate (CIFG): TFLM's integer LSTM needs all four "
                      "gates")
    if x.dtype == "float32":
        raise op.fail("hybrid LSTM (float activations, int8 weights): only the full-int8 LSTM "
                      "compiles" if weights[0].dtype == "int8" else
                      "float32 LSTM: only the full-int8 LSTM compiles (convert with "
                      "TFLITE_BUILTINS_INT8 and int8 input and output)")
    if x.dtype != "int8":
        raise op.fail(f"{x.dtype} activations: only the full-int8 LSTM (int8 activations, "
                      f"int16 cell state) is supported")
    o = op.options
    if o is not None and o.diagonalRecurrentTensors:
        raise op.fail("diagonal recurrent weights are not run by TFLM")
    act = op.activation_names.get(o.fusedActivationFunction, "?") if o is not None else "NONE"
    if act != "TANH":
        raise op.fail(f"cell activation {act}: TFLM's integer LSTM runs tanh only")
    states = []
    for position, what, dtype in ((18, "hidden", "int8"), (19, "cell", "int16")):
        name = op.inputs[position]
        t = op.graph.tensors.get(name) if name else None
        if t is None or name not in op.variable_tensors:
            raise ModelFormatError(f"{op.graph.name}: layer '{op.layer}' ({op.kind}): its "
                                   f"{what} state (input {position}) is not a variable tensor")
        if t.dtype != dtype or t.quant is None or t.quant.per_channel:
            raise op.fail(f"{what} state '{name}' is {t.dtype}, expected per-tensor quantized "
                          f"{dtype} (the full-int8 LSTM)")
        if name not in op.graph.variables:
            zero = int(t.quant.zero_point[0]) if dtype == "int8" else 0
            op.graph.variables[name] = Variable(name, tuple(t.shape), dtype,
                                                np.full(t.shape, zero, dtype), t.quant)
        states.append(t)
    h, c = states
    attrs = irops.LstmAttrs(
        hidden=h.name, cell=c.name, hidden_shape=tuple(h.shape), cell_shape=tuple(c.shape),
        hidden_scale=float(h.quant.scale[0]), hidden_zero_point=int(h.quant.zero_point[0]),
        cell_scale=float(c.quant.scale[0]), cell_clip=float(o.cellClip) if o else 0.0,
        time_major=bool(o.timeMajor) if o else False, activation=act)
    return op.kind, attrs, [op.inputs[0], *op.inputs[1:9], *op.inputs[12:16]]
