"""What quantization cost: float vs int8 on evaluation data, per output and per layer.

Figures (``tinyml quantize`` prints them as a table, ``--json`` as a dict):

- per graph output: SQNR of the dequantized int8 output against the float output,
  ``10 log10(sum f^2 / sum (f - q)^2)`` in dB over all samples, and the fraction of samples
  whose top-1 class (argmax over the last axis) is the same in float and int8;
- with labels: float and int8 top-1 accuracy (first output);
- per layer: the SQNR of its output in the int8 graph run end to end (errors accumulate
  along the graph), and its *isolated* SQNR: the int8 kernel run on the quantized *float*
  inputs of the layer, which shows what that layer alone loses. The layer with the lowest
  isolated SQNR is the one that hurts.

The float side is the prepared float graph (after batch-norm folding and activation fusion,
which change float results only by rounding); its tensors share names with the int8 graph's.
A SQNR of None means the int8 values are exact (or the float tensor is all zero).

Picking ``--int16-layers``: :meth:`QuantizationReport.worst_layers` lists the int8 layers
with the lowest isolated SQNR that TFLM runs 16x8; the report prints them as a ready-made
``--int16-layers`` option.

A graph with 16x8 layers (int16 activations, :mod:`.int16`) is run end to end by TFLM on its
exported .tflite file, every tensor preserved, since tinyml's reference interpreter computes
the int8 kernels; the isolated SQNR is then given for the all-int8 layers only (None for
16x8 layers and the QUANTIZE ops between types).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tinyml.quantize.data import Dataset
from tinyml.quantize.params import dequantize_array, quantize_array
from tinyml.reference import run
from tinyml.reference.kernels import KERNELS, KernelCall

#: Layers the report proposes for ``--int16-layers``.
WORST_LAYERS = 3


def sqnr_db(signal: float, noise: float) -> float | None:
    """10 log10(signal / noise); None when there is no noise (exact) or no signal (an
    all-zero float tensor, where a ratio means nothing)."""
    if noise <= 0.0 or signal <= 0.0:
        return None
    return 10.0 * math.log10(signal / noise)


@dataclass
class _Energy:
    signal: float = 0.0
    noise: float = 0.0

    def add(self, reference: np.ndarray, value: np.ndarray) -> None:
        reference = np.asarray(reference, np.float64)
        self.signal += float(np.sum(reference ** 2))
        self.noise += float(np.sum((reference - value) ** 2))

    @property
    def db(self) -> float | None:
        return sqnr_db(self.signal, self.noise)


@dataclass
class LayerReport:
    layer: str
    op: str
    tensor: str
    scale: float
    zero_point: int
    sqnr_db: float | None
    isolated_sqnr_db: float | None
    dtype: str = "int8"          #: the layer's output type: int8, int16 (16x8) or bool
    #: False when the isolated SQNR was not measured (a 16x8 layer, module docstring)
    isolated_measured: bool = True

    def to_json(self) -> dict:
        return dict(vars(self))


@dataclass
class OutputReport:
    name: str
    sqnr_db: float | None
    top1_agreement: float | None

    def to_json(self) -> dict:
        return dict(vars(self))


@dataclass
class QuantizationReport:
    samples: int
    data: str
    synthetic: bool
    outputs: list[OutputReport]
    layers: list[LayerReport]
    float_accuracy: float | None = None
    int8_accuracy: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def output_sqnr_db(self) -> float | None:
        return self.outputs[0].sqnr_db

    @property
    def top1_agreement(self) -> float | None:
        return self.outputs[0].top1_agreement

    @property
    def worst_layer(self) -> LayerReport | None:
        scored = [l for l in self.layers if l.isolated_sqnr_db is not None]
        return min(scored, key=lambda l: l.isolated_sqnr_db) if scored else None

    def worst_layers(self, count: int = WORST_LAYERS) -> list[str]:
        """Names of the ``count`` layers with the lowest isolated SQNR that TFLM can run
        16x8 (:data:`tinyml.quantize.int16.INT16_KINDS`), lowest first: the candidates for
        ``--int16-layers``."""
        from tinyml.quantize.int16 import INT16_KINDS
        scored = [l for l in self.layers if l.isolated_sqnr_db is not None
                  and l.op in INT16_KINDS and l.dtype == "int8"]
        return [l.layer for l in sorted(scored, key=lambda l: l.isolated_sqnr_db)[:count]]

    def to_json(self) -> dict:
        worst = self.worst_layer
        return {
            "samples": self.samples, "data": self.data, "synthetic_data": self.synthetic,
            "output_sqnr_db": self.output_sqnr_db, "top1_agreement": self.top1_agreement,
            "float_accuracy": self.float_accuracy, "int8_accuracy": self.int8_accuracy,
            "worst_layer": worst.layer if worst else None,
            "worst_layers": self.worst_layers(),
            "outputs": [o.to_json() for o in self.outputs],
            "layers": [l.to_json() for l in self.layers],
            **self.extra,
        }


def evaluate(model, data: Dataset,
             progress: Callable[[int], None] | None = None) -> QuantizationReport:
    """Compare ``model`` (a :class:`tinyml.quantize.QuantizedModel`) with its float graph on
    ``data``."""
    q, fg, twin = model.graph, model.float_graph, model.float_twin
    ops = [op for op in q.ops if not all(q.tensors[n].is_constant for n in op.outputs)]
    cumulative = {op.outputs[0]: _Energy() for op in ops}
    isolated = {op.outputs[0]: _Energy() for op in ops}
    outputs = {name: _Energy() for name in q.outputs}
    agree = {name: 0 for name in q.outputs}
    correct_float = correct_int8 = 0
    labels = data.labels
    int16 = any(t.dtype == "int16" for t in q.tensors.values() if not t.is_constant)
    run_quantized = _TflmValues(model) if int16 else \
        (lambda codes: run(q, codes, keep_all=True))
    alone = [op for op in ops if not int16 or _all_int8(q, op)]

    for index, sample in enumerate(data.samples):
        with np.errstate(over="ignore", invalid="ignore"):
            f_values = run(fg, sample, keep_all=True)
        q_values = run_quantized(model.quantize_inputs(sample))
        for op in ops:
            out = op.outputs[0]
            reference = f_values[twin[out]]
            cumulative[out].add(reference, _real(q_values[out], q.tensors[out]))
        for op in alone:
            out = op.outputs[0]
            isolated[out].add(f_values[twin[out]], _isolated(q, op, f_values, twin))
        for name in q.outputs:
            f_out = f_values[twin[name]]
            q_out = _real(q_values[name], q.tensors[name])
            outputs[name].add(f_out, q_out)
            agree[name] += int(np.array_equal(np.argmax(f_out, axis=-1),
                                              np.argmax(q_out, axis=-1)))
            if labels is not None and name == q.outputs[0]:
                correct_float += int(np.argmax(f_out.reshape(-1)) == labels[index])
                correct_int8 += int(np.argmax(q_out.reshape(-1)) == labels[index])
        if progress:
            progress(1)

    count = len(data)
    layer_rows = [LayerReport(op.name, op.kind, op.outputs[0],
                              *scale_and_zero_point(q.tensors[op.outputs[0]]),
                              cumulative[op.outputs[0]].db, isolated[op.outputs[0]].db,
                              q.tensors[op.outputs[0]].dtype, op in alone)
                  for op in ops]
    output_rows = [OutputReport(name, outputs[name].db,
                                agree[name] / count if q.tensors[name].shape[-1:] != (1,)
                                else None)
                   for name in q.outputs]
    report = QuantizationReport(count, data.source, data.synthetic, output_rows, layer_rows)
    if labels is not None:
        report.float_accuracy = correct_float / count
        report.int8_accuracy = correct_int8 / count
    return report


def _all_int8(q, op) -> bool:
    """No int16 activation among ``op``'s tensors: tinyml's int8 kernel computes it."""
    return all(t is None or t.is_constant or t.dtype != "int16"
               for t in q.op_inputs(op) + q.op_outputs(op))


class _TflmValues:
    """Every tensor of a graph with 16x8 layers, by name, as TFLM computes it on the
    exported .tflite (tensors keep their names through export)."""

    def __init__(self, model):
        from ai_edge_litert import schema_py_generated as schema
        from tflite_micro.python.tflite_micro import runtime

        data = model.to_tflite()
        subgraph = schema.Model.GetRootAsModel(data, 0).Subgraphs(0)
        self.names = [subgraph.Tensors(i).Name().decode()
                      for i in range(subgraph.TensorsLength())]
        self.inputs = len(model.graph.inputs)
        self.interpreter = runtime.Interpreter.from_bytes(
            data, arena_size=max(10 * len(data), 1 << 20),
            intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)

    def __call__(self, codes: list[np.ndarray]) -> dict[str, np.ndarray]:
        for i, x in enumerate(codes):
            self.interpreter.set_input(x, i)
        self.interpreter.invoke()
        values = {}
        for i, name in enumerate(self.names):
            value = self.interpreter.GetTensor(i, 0)["tensor_data"]
            if value is not None:
                values[name] = np.array(value)
        return values


def _isolated(q, op, f_values: dict, twin: dict) -> np.ndarray:
    """``op``'s int8 kernel on its float inputs quantized, dequantized."""
    values, tensors = [], []
    for name in op.inputs:
        t = q.tensors[name] if name else None
        tensors.append(t)
        if t is None:
            values.append(None)
        elif t.is_constant:
            values.append(t.data)
        elif t.quant is None:  # a BOOL operand: its float twin is the same bool
            values.append(f_values[twin[name]])
        else:
            values.append(quantize_array(f_values[twin[name]], t.quant))
    outs = q.op_outputs(op)
    result = KERNELS[op.kind](KernelCall(op, values, tensors, outs))
    result = result[0] if isinstance(result, list) else result
    return _real(result, outs[0])


def _real(values: np.ndarray, t) -> np.ndarray:
    """The real values of an int8 tensor's codes; a BOOL tensor's are its 0s and 1s."""
    if t.quant is None:
        return np.asarray(values).astype(np.float64)
    return dequantize_array(values, t.quant)


def scale_and_zero_point(t) -> tuple[float, int]:
    """An int8 tensor's quantization; (1, 0) for a BOOL tensor, whose codes are its values."""
    if t.quant is None:
        return 1.0, 0
    return float(t.quant.scale[0]), int(t.quant.zero_point[0])
