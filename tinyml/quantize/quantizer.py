"""From a calibrated float graph to an int8 graph TFLM runs.

Two steps. First every activation gets its quantization (:func:`plan_activations`), by the
rule its producer's int8 kernel imposes in TFLM:

- *own range* (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, MEAN, RELU,
  HARD_SWISH, CLIP): the kernel requantizes to any output scale, so the output gets the
  calibrated range of its values;
- *same as input* (MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE, PAD, TRANSPOSE, RELU6): the kernel
  moves or compares codes without rescaling (TFLM's int8 RELU6 even ignores its output
  quantization), so the output must carry the input's quantization;
- *fixed* (SOFTMAX, LOGISTIC): TFLM requires scale 1/256 and zero point -128; TANH's
  kernel writes units of 1/128 around zero (scale 1/128, zero point 0); LOG_SOFTMAX's
  scale 16/256 and zero point 127;
- CONCATENATION, MAXIMUM, MINIMUM, SELECT_V2 ("shared"): TFLM copies or compares codes, so
  every input needs the output's quantization. The output covers the union of the inputs'
  ranges; an input whose producer has its own range and no other reader simply takes that
  quantization, any other input is requantized by an int8 QUANTIZE op inserted before the op
  (as the TFLite converter does). SELECT_V2's bool condition is not part of it;
- *bool* (the comparisons, LOGICAL_AND/OR/NOT): the output is a BOOL tensor, not quantized;
  a comparison's int8 inputs keep their own quantizations (TFLM rescales both before
  comparing), a constant operand gets its own range as for ADD.
- reductions: SUM gets its own range; REDUCE_MAX/MIN the input's (TFLM requires it);
  L2_NORMALIZATION TANH's fixed scale 1/128 and zero point 0; the int32 indices of
  ARG_MAX/ARG_MIN are not quantized.

HARD_SWISH's output scale is raised just above input_scale / 128 when not above it (TFLM
refuses a smaller one). TFLite has no CLIP builtin: a CLIP to [lo, hi] (lo <= 0 <= hi) becomes an int8->int8
QUANTIZE whose output range is the calibrated range inside [lo, hi]; saturating to int8 then
is the clamp (up to half a step, the zero point's rounding).

Then constants are quantized by role (:mod:`.params`): weights per channel symmetric (axis 0,
or 3 for depthwise filters; int8, or the int4 filters of :mod:`.int4` where asked, those of
FULLY_CONNECTED per tensor), biases int32 at input_scale x weight_scale, constant operands of
ADD/MUL, PRELU's alpha and CONCATENATION per tensor. Requantization multipliers are not
stored: lowering and the reference derive them from these scales exactly as TFLM does.

Optional bias correction (Nagel et al., "Data-free quantization", 2019, in its empirical
form): weight rounding shifts each output channel's mean by ``(W - W_q) . E[x]``; adding that
to the bias, with ``E[x]`` the layer's mean input over the calibration data, removes the shift.

16x8 layers (int16 activations, :mod:`.int16`) follow the same rules with int16's
conventions: symmetric activations, int64 biases, SOFTMAX/LOGISTIC/TANH outputs at 1/32768;
a tensor read by a layer of the other type is requantized by a QUANTIZE op in front of it.

Tensors keep their float names, so the int8 graph pairs with the float one tensor by tensor.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph, Op, Quantization, Tensor
from tinyml.ir.ops import COMPARISONS, OP_SPECS, CastAttrs, kinds_where
from tinyml.quantize.calibrate import Calibration
from tinyml.quantize.int16 import INT16_FIXED_OUTPUT, input_types, quantization_for
from tinyml.quantize.int4 import Int4Filter, mean_shift
from tinyml.quantize.params import (LOG_PROBABILITY, SYMMETRIC_UNIT_INTERVAL, UNIT_INTERVAL,
                                    bias_int32, bias_int64,
                                    dequantize_array, quantize_array, symmetric_weights)
from tinyml.reference.fixedpoint import tflite_round

# The output quantization rule of each op kind is its ``quantize`` trait (tinyml.ir.ops).
SAME_AS_INPUT = kinds_where(quantize="input")
#: (scale, zero point) of the ops whose int8 kernel fixes the output quantization.
FIXED_OUTPUT = {**{k: UNIT_INTERVAL for k in kinds_where(quantize="unit")},
                **{k: SYMMETRIC_UNIT_INTERVAL for k in kinds_where(quantize="symmetric_unit")},
                **{k: LOG_PROBABILITY for k in kinds_where(quantize="log_probability")}}
SHARED = kinds_where(quantize="shared")
BOOLEAN = kinds_where(quantize="bool")
#: Ops whose float constant operands are quantized per tensor with their own range (the
#: kernel rescales each operand on its own).
OWN_RANGE_CONSTANTS = ("ADD", "MUL", "SUB", "SQUARED_DIFFERENCE", "PRELU", "BATCH_MATMUL",
                       *COMPARISONS)
#: Producers whose output may take a concatenation's quantization instead of its own ("range";
#: CLIP's range is its clamp and HARD_SWISH's scale has a floor: "range_pinned").
RETARGETABLE = kinds_where(quantize="range")
QUANTIZABLE = tuple(k for k, spec in OP_SPECS.items() if spec.quantize != "none")
#: reductions: integer index outputs (ARG_MAX, ARG_MIN), which stay unquantized, and the fixed
#: [-1, 1) output of L2_NORMALIZATION (TFLM computes it in Q0.7 whatever the tensor says).
INDEX_OUTPUT = kinds_where(quantize="index")
#: Weight axis that indexes output channels.
WEIGHT_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0,
               "TRANSPOSE_CONV": 0}  # conv ops: TRANSPOSE_CONV's filter is OHWI


@dataclass
class QuantizedGraph:
    graph: Graph
    #: int8 tensor -> the float tensor holding the real values it approximates (names are
    #: shared, except for inserted requantizations).
    float_twin: dict[str, str] = field(default_factory=dict)
    #: Bias shifts bias correction applied, per layer output (real units), if any.
    bias_shift: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ActivationPlan:
    quant: dict[str, Quantization]
    #: (concatenation op, input index) pairs whose input must be requantized.
    requantize: set[tuple[int, int]]
    #: Activation type of each tensor ("int8" or "int16"; absent: int8).
    dtype: dict[str, str] = field(default_factory=dict)
    #: Activation type of each op, by name (absent: int8).
    layer: dict[str, str] = field(default_factory=dict)
    #: (tensor, type) -> quantization of the tensor requantized for readers of the other type.
    cast: dict[tuple[str, str], Quantization] = field(default_factory=dict)

    def seen_as(self, name: str, dtype: str, ranges) -> Quantization:
        """The quantization of tensor ``name`` as a ``dtype`` layer reads it: its own, or
        its calibrated range quantized for ``dtype`` when it has the other type."""
        if self.dtype.get(name, "int8") == dtype:
            return self.quant[name]
        key = (name, dtype)
        if key not in self.cast:
            self.cast[key] = quantization_for(dtype, *ranges[name])
        return self.cast[key]


def _fail(op: Op, message: str) -> TinymlError:
    return TinymlError(f"layer '{op.name}' ({op.kind}): {message}")


def _same(a: Quantization, b: Quantization) -> bool:
    return (np.float32(a.scale[0]), int(a.zero_point[0])) == (np.float32(b.scale[0]),
                                                              int(b.zero_point[0]))


def _is_index(fg: Graph, name: str) -> bool:
    """An integer activation: indices computed by ARG_MAX/ARG_MIN (and moved by reshapes)."""
    t = fg.tensors[name]
    return not t.is_constant and t.dtype in ("int32", "int64")


def plan_activations(fg: Graph, ranges: dict[str, tuple[float, float]],
                     types: dict[str, str] | None = None) -> ActivationPlan:
    """The quantization of every activation of float graph ``fg``; ``types``: each op's
    activation type by name (:func:`tinyml.quantize.int16.layer_types`; default all int8)."""
    types = dict(types or {})
    dtype = input_types(fg, types)
    quant: dict[str, Quantization] = {n: quantization_for(dtype[n], *ranges[n])
                                      for n in fg.inputs}
    requantize: set[tuple[int, int]] = set()
    plan = ActivationPlan(quant, requantize, dtype, types)
    producers = fg.producers()
    consumers = fg.consumers()
    for op in fg.ops:
        if op.kind not in QUANTIZABLE:
            raise _fail(op, f"has no int8 quantization in tinyml (quantizable ops: "
                            f"{', '.join(sorted(QUANTIZABLE))})")
        x = op.inputs[0]
        if op.kind in INDEX_OUTPUT or (op.kind in SAME_AS_INPUT and _is_index(fg, x)):
            continue  # integer indices: not quantized
        kind_type = types.get(op.name, "int8")
        for out in op.outputs:
            dtype[out] = kind_type
        if op.kind in SAME_AS_INPUT:  # SPLIT, UNPACK: every output keeps the input's
            for out in op.outputs:
                quant[out] = plan.seen_as(x, kind_type, ranges)
            continue
        if len(op.outputs) != 1:
            raise _fail(op, "expected one output")
        out = op.outputs[0]
        if kind_type == "int16" and op.kind in INT16_FIXED_OUTPUT:
            scale, zero_point = INT16_FIXED_OUTPUT[op.kind]
            quant[out] = Quantization([scale], [zero_point])
        elif op.kind in FIXED_OUTPUT:
            scale, zero_point = FIXED_OUTPUT[op.kind]
            quant[out] = Quantization([scale], [zero_point])
        elif op.kind in SHARED:
            quant[out] = _plan_concat(fg, op, ranges, plan, producers, consumers)
        elif op.kind in BOOLEAN:
            continue  # a BOOL output: nothing to quantize
        else:
            if op.kind == "CLIP" and not op.attrs.min <= 0.0 <= op.attrs.max:
                raise _fail(op, f"clip to [{op.attrs.min:g}, {op.attrs.max:g}] excludes 0, "
                                f"which int8 activations must represent")
            quant[out] = quantization_for(kind_type, *ranges[out])
            if op.kind == "HARD_SWISH":
                quant[out] = _hard_swish_output(quant[x], quant[out], ranges[out])
    return plan


def _plan_concat(fg, op, ranges, plan: ActivationPlan, producers, consumers) -> Quantization:
    quant, kind_type = plan.quant, plan.layer.get(op.name, "int8")
    activations = [n for n in op.inputs if _shared_operand(fg, n)]
    low = min([ranges[n][0] for n in activations] + [ranges[op.outputs[0]][0]])
    high = max([ranges[n][1] for n in activations] + [ranges[op.outputs[0]][1]])
    q = quantization_for(kind_type, low, high)
    for index, name in enumerate(op.inputs):
        same_type = plan.dtype.get(name, "int8") == kind_type
        if not _shared_operand(fg, name) or (same_type and _same(quant[name], q)):
            continue
        producer = producers.get(name)
        readers = {id(o) for o in consumers.get(name, [])}
        if (same_type and producer is not None and producer.kind in RETARGETABLE
                and readers == {id(op)} and op.inputs.count(name) == 1
                and name not in fg.outputs):
            quant[name] = q
        else:
            plan.requantize.add((id(op), index))
    return q


def _shared_operand(fg: Graph, name: str) -> bool:
    """A float activation input of a "shared" op (not a constant, not a bool condition)."""
    t = fg.tensors[name]
    return not t.is_constant and t.dtype == "float32"


def _hard_swish_output(x: Quantization, out: Quantization, observed) -> Quantization:
    """TFLM needs input_scale / 128 < output_scale (its output multiplier must not shift
    left): the smallest float32 scale its own check accepts, if the calibrated one is not."""
    from tinyml.reference.kernels.activations import hard_swish_int8_params

    x_t = Tensor("x", (1,), "int8", x)
    op = Op("HARD_SWISH", "hard_swish", ["x"], ["y"])
    scale = np.float32(out.scale[0])
    floor = np.float32(1.0 / 128.0) * np.float32(x.scale[0])
    candidate = out if scale > floor else None
    scale = max(scale, floor)
    while True:
        if candidate is not None:
            try:
                hard_swish_int8_params(op, x_t, Tensor("y", (1,), "int8", candidate))
                return candidate
            except TinymlError:
                pass
        scale = np.nextafter(scale, np.float32(np.inf))
        zero = int(np.clip(tflite_round(-128.0 - min(observed[0], 0.0) / float(scale)),
                           -128, 127))
        candidate = Quantization([scale], [zero])


def quantize_graph(fg: Graph, calibration: Calibration, bias_correction: bool = False,
                   int4_weights: dict[str, Int4Filter] | None = None,
                   types: dict[str, str] | None = None) -> QuantizedGraph:
    """The int8 graph of float graph ``fg`` (prepared by :mod:`.prepare`).

    ``int4_weights``: filters to store as int4 (:mod:`.int4`), by the layer's output tensor;
    every other filter is int8. ``types``: the activation type of each op by name
    (:func:`tinyml.quantize.int16.layer_types`; default: all int8)."""
    plan = plan_activations(fg, calibration.ranges, types)
    builder = _Builder(fg, plan, calibration if bias_correction else None, int4_weights or {},
                       calibration.ranges)
    for op in fg.ops:
        builder.convert(op)
    q = builder.graph
    q.inputs, q.outputs = list(fg.inputs), list(fg.outputs)
    return QuantizedGraph(q.finalize(), builder.twin, builder.bias_shift)


class _Builder:
    def __init__(self, fg: Graph, plan: ActivationPlan, calibration: Calibration | None,
                 int4_weights: dict[str, Int4Filter],
                 ranges: dict[str, tuple[float, float]]):
        self.calibration_ranges = ranges
        self.fg = fg
        self.int4_weights = int4_weights
        self.plan = plan
        self.calibration = calibration
        self.graph = Graph(fg.name)
        self.twin: dict[str, str] = {}
        self.bias_shift: dict[str, np.ndarray] = {}
        #: (tensor, type) -> the requantized tensor layers of that type read.
        self.casts: dict[tuple[str, str], str] = {}
        for name in fg.inputs:
            self._activation(name)

    # ---- tensors ----------------------------------------------------------------------------

    def _activation(self, name: str) -> str:
        if name not in self.graph.tensors:
            t = self.fg.tensors[name]
            if t.dtype == "bool":
                self.graph.add_tensor(Tensor(name, t.shape, "bool"))
            else:
                self.graph.add_tensor(Tensor(name, t.shape, self._type(name),
                                             self.plan.quant[name]))
            self.twin[name] = name
        return name

    def _constant(self, name: str, data: np.ndarray, dtype: str,
                  quant: Quantization | None) -> str:
        unique = self.graph.unique_name(name)
        self.graph.add_tensor(Tensor(unique, data.shape, dtype, quant, data))
        return unique

    def _type(self, name: str) -> str:
        """Activation type of a tensor of the float graph."""
        return self.plan.dtype.get(name, "int8")

    def _layer_type(self, op: Op) -> str:
        return self.plan.layer.get(op.name, "int8")

    def _copy_constant(self, name: str) -> str:
        t = self.fg.tensors[name]
        if name in self.graph.tensors:
            return name
        self.graph.add_tensor(Tensor(name, t.shape, t.dtype, t.quant, t.data))
        return name

    def _per_tensor_constant(self, name: str, q: Quantization | None = None,
                             dtype: str = "int8") -> str:
        """A float constant operand as int8 (int16 for a 16x8 layer), per tensor (its own
        range unless ``q``)."""
        data = self.fg.tensors[name].data.astype(np.float32)
        q = q or quantization_for(dtype, float(data.min()), float(data.max()))
        return self._constant(name, quantize_array(data, q, np.dtype(dtype).type), dtype, q)

    # ---- ops --------------------------------------------------------------------------------

    def convert(self, op: Op) -> None:
        fg = self.fg
        if op.kind in INDEX_OUTPUT or (op.kind in SAME_AS_INPUT and _is_index(fg, op.inputs[0])):
            self._index_output(op)
            return
        outs = [self._activation(name) for name in op.outputs]
        out = outs[0]
        if op.kind in WEIGHT_AXIS:
            inputs = self._weighted(op)
        elif op.kind == "CLIP":
            inputs = [self._input(op, 0)]
            self.graph.add_op(Op("QUANTIZE", op.name, inputs, [out], CastAttrs("int8")))
            return
        elif op.kind in SHARED:
            inputs = self._concat_inputs(op)
        else:
            inputs = []
            for i, name in enumerate(op.inputs):
                t = fg.tensors[name] if name else None
                if t is None:
                    inputs.append("")
                elif not t.is_constant:
                    inputs.append(self._input(op, i))
                elif op.kind in OWN_RANGE_CONSTANTS and t.dtype == "float32":
                    inputs.append(self._per_tensor_constant(name,
                                                            dtype=self._layer_type(op)))
                elif t.dtype == "float32":
                    raise _fail(op, f"constant float input '{name}' has no int8 role")
                else:
                    inputs.append(self._copy_constant(name))
        attrs = op.attrs
        if op.kind == "PAD" and attrs.value is not None:
            dtype = self._layer_type(op)
            q = self.plan.seen_as(op.inputs[0], dtype, self.calibration_ranges)
            code = int(quantize_array(np.float32(attrs.value), q, np.dtype(dtype).type))
            attrs = dataclasses.replace(attrs, value=code)
        self.graph.add_op(Op(op.kind, op.name, inputs, outs, attrs))

    def _index_output(self, op: Op) -> None:
        """An op computing integer indices of an int8 activation, or moving such indices
        (a reshape): its output keeps the float graph's integer type, unquantized."""
        out = op.outputs[0]
        t = self.fg.tensors[out]
        if t.dtype not in ("int32", "int64"):
            raise _fail(op, f"output '{out}' is {t.dtype}, expected integer indices")
        self.graph.add_tensor(Tensor(out, t.shape, t.dtype))
        self.twin[out] = out
        source = self._input(op, 0) if op.kind in INDEX_OUTPUT else op.inputs[0]
        inputs = [source] + [self._copy_constant(n) if n else "" for n in op.inputs[1:]]
        self.graph.add_op(Op(op.kind, op.name, inputs, [out], op.attrs))

    def _input(self, op: Op, index: int) -> str:
        """The quantized tensor ``op`` reads as input ``index``: the activation itself, or
        (a tensor of the other activation type) its requantization, made once."""
        name = op.inputs[index]
        t = self.fg.tensors[name]
        if t.dtype not in ("float32", "bool"):
            raise _fail(op, f"input '{name}' is {t.dtype}, not float32 or bool")
        source = self._activation(name)
        dtype = self._layer_type(op)
        if t.dtype == "bool" or self._type(name) == dtype or op.kind in INDEX_OUTPUT:
            return source
        key = (name, dtype)
        if key not in self.casts:
            moved = self.graph.unique_name(f"{name}/{dtype}")
            q = self.plan.seen_as(name, dtype, self.calibration_ranges)
            self.graph.add_tensor(Tensor(moved, t.shape, dtype, q))
            self.twin[moved] = name
            self.graph.add_op(Op("QUANTIZE", f"{name}/to_{dtype}", [source], [moved],
                                 CastAttrs(dtype)))
            self.casts[key] = moved
        return self.casts[key]

    def _concat_inputs(self, op: Op) -> list[str]:
        q = self.plan.quant[op.outputs[0]]
        dtype = self._layer_type(op)
        inputs = []
        for index, name in enumerate(op.inputs):
            t = self.fg.tensors[name]
            if t.is_constant and t.dtype == "float32":
                inputs.append(self._per_tensor_constant(name, q, dtype))
            elif t.is_constant:
                inputs.append(self._copy_constant(name))
            elif (id(op), index) in self.plan.requantize:
                # straight from the producer's tensor, whatever its type: one requantization
                source = self._activation(name)
                moved = self.graph.unique_name(f"{name}/requantized")
                self.graph.add_tensor(Tensor(moved, self.fg.tensors[name].shape, dtype, q))
                self.twin[moved] = name
                self.graph.add_op(Op("QUANTIZE", f"{op.name}/requantize_{index}", [source],
                                     [moved], CastAttrs(dtype)))
                inputs.append(moved)
            else:
                inputs.append(self._input(op, index))
        return inputs

    def _weighted(self, op: Op) -> list[str]:
        fg = self.fg
        x = self._input(op, 0)
        w_t = fg.tensors[op.inputs[1]]
        if not w_t.is_constant or w_t.dtype != "float32":
            raise _fail(op, f"weights '{w_t.name}' must be float32 constants to quantize")
        axis = WEIGHT_AXIS[op.kind]
        int4 = self.int4_weights.get(op.outputs[0])
        if int4 is not None and self._layer_type(op) == "int16":
            raise _fail(op, "int4 filters need int8 activations (TFLM's 16x8 kernels read "
                            "int8 filters only)")
        if int4 is not None:
            codes, w_quant = int4.codes, int4.quant
            if codes.shape != w_t.shape or w_quant.axis not in (axis, None):
                raise _fail(op, f"int4 weights {list(codes.shape)} along axis {w_quant.axis} "
                                f"do not fit filter {list(w_t.shape)} (axis {axis})")
            weights = self._constant(w_t.name, codes, "int4", w_quant)
        else:
            codes, w_quant = symmetric_weights(w_t.data, axis)
            weights = self._constant(w_t.name, codes, "int8", w_quant)

        channels = w_t.shape[axis]
        bias_name = op.inputs[2] if len(op.inputs) > 2 else ""
        bias = np.zeros(channels, np.float64)
        if bias_name:
            b_t = fg.tensors[bias_name]
            if not b_t.is_constant or b_t.dtype != "float32":
                raise _fail(op, f"bias '{bias_name}' must be a float32 constant to quantize")
            bias = b_t.data.astype(np.float64).reshape(channels)
        if self.calibration is not None:
            if int4 is not None and int4.input_mean is not None:
                shift = mean_shift(w_t.data, op.kind, int4)
            else:
                shift = self._bias_shift(op, w_t.data, dequantize_array(codes, w_quant))
            if shift is not None:
                bias = bias + shift
                self.bias_shift[op.outputs[0]] = shift
                bias_name = bias_name or f"{op.name}/bias"
        if not bias_name:
            return [x, weights]
        x_scale = float(self.graph.tensors[x].quant.scale[0])
        if self._layer_type(op) == "int16":
            b_codes, b_quant = bias_int64(bias, x_scale, w_quant.scale)
            return [x, weights, self._constant(bias_name, b_codes, "int64", b_quant)]
        b_codes, b_quant = bias_int32(bias, x_scale, w_quant.scale)
        return [x, weights, self._constant(bias_name, b_codes, "int32", b_quant)]

    def _bias_shift(self, op: Op, w: np.ndarray, w_q: np.ndarray) -> np.ndarray | None:
        mean = self.calibration.input_means.get(op.outputs[0])
        if mean is None:
            return None
        error = w.astype(np.float64) - w_q
        if op.kind == "TRANSPOSE_CONV":
            return None  # an output receives a position-dependent subset of the taps
        if op.kind == "FULLY_CONNECTED":
            return error @ mean
        if op.kind == "DEPTHWISE_CONV_2D":
            multiplier = op.attrs.depth_multiplier
            return error.sum(axis=(0, 1, 2)) * np.repeat(mean, multiplier)
        per_tap = error.sum(axis=(1, 2))                 # [out, in per group]
        cin = per_tap.shape[1]
        groups = mean.size // cin
        per_group = per_tap.shape[0] // groups
        means = np.repeat(mean.reshape(groups, cin), per_group, axis=0)  # [out, in per group]
        return (per_tap * means).sum(axis=1)
