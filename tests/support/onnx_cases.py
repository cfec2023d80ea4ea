"""Helpers for the ONNX frontend tests: building small ONNX models, running onnxruntime with
every intermediate value exposed, and comparing tinyml's IR tensors with them.

The importer reports, for each IR tensor, which ONNX value it holds and in which permutation
(``OnnxImport.origin``), so every intermediate can be checked, not only the outputs: an NCHW
value stored NHWC is compared as ``numpy.transpose(ort_value, perm)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from support.oracles import relative_error
from tinyml.frontends.onnx import import_onnx
from tinyml.reference import run
from tinyml.reference.kernels import KERNELS, KernelCall


def make_model(nodes, inputs: dict, outputs: list[str] | dict, inits: dict | None = None,
               opset: int = 13, name: str = "case") -> onnx.ModelProto:
    """A checked model; ``inputs`` maps names to shapes (str dims are symbolic), ``outputs``
    lists names (shapes from ONNX shape inference) or maps them to shapes."""
    if not isinstance(outputs, dict):
        outputs = {n: None for n in outputs}
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs.items()],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    # Output shapes come from ONNX's own shape inference (the checker wants them).
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    onnx.checker.check_model(model)
    return model


def ort_values(model: onnx.ModelProto, feeds: dict, names=(), optimize: bool = True) -> dict:
    """Run onnxruntime, returning the graph outputs and every value in ``names`` that a node
    produces."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    produced = {o for n in m.graph.node for o in n.output}
    present = {o.name for o in m.graph.output}
    for n in sorted(set(names)):
        if n in produced and n not in present:
            m.graph.output.append(helper.make_empty_tensor_value_info(n))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(m.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    results = session.run(None, feeds)
    return dict(zip([o.name for o in session.get_outputs()], results))


def ort_in_ir(imp, ort: dict, tensor: str) -> np.ndarray | None:
    """ORT's value of the ONNX value IR ``tensor`` holds, in the IR's layout and type (int8
    for int8 tensors: uint8 values shifted, dequantized views requantized exactly)."""
    if tensor not in imp.origin:
        return None
    name, perm = imp.origin[tensor]
    if name not in ort:
        return None
    t = imp.graph.tensors[tensor]
    value = np.transpose(np.asarray(ort[name]), perm)
    if t.dtype == "float32":
        return value if value.dtype == np.float32 else None
    if t.dtype != "int8":
        return None
    if value.dtype == np.uint8:
        return (value.astype(np.int16) - 128).astype(np.int8)
    if value.dtype == np.float32 and t.quant is not None and not t.quant.per_channel:
        q = np.rint(value / np.float32(t.scale())) + t.zero_point()
        return np.clip(q, -128, 127).astype(np.int8)
    return value if value.dtype == np.int8 else None


@dataclass
class Diff:
    """Differences of one IR tensor against ORT over all runs."""

    op: str
    count: int = 0
    mismatches: int = 0
    worst: float = 0.0  # LSB for int8, relative to the value range for float
    values: list = field(default_factory=list)

    def add(self, ours: np.ndarray, theirs: np.ndarray) -> None:
        if ours.dtype == np.int8:
            d = np.abs(ours.astype(np.int64) - theirs.astype(np.int64)).astype(np.float64)
        else:
            span = float(np.ptp(theirs)) or 1.0
            d = np.abs(ours.astype(np.float64) - theirs.astype(np.float64)) / span
        self.count += d.size
        self.mismatches += int(np.count_nonzero(d))
        self.worst = max(self.worst, float(d.max()) if d.size else 0.0)


def compare_all(imp, ours: dict, ort: dict, diffs: dict | None = None) -> dict[str, Diff]:
    """Every computed IR tensor with an ORT counterpart, end to end."""
    diffs = {} if diffs is None else diffs
    producers = imp.graph.producers()
    for tensor, op in producers.items():
        if imp.graph.tensors[tensor].is_constant or tensor not in ours:
            continue
        theirs = ort_in_ir(imp, ort, tensor)
        if theirs is None:
            continue
        diffs.setdefault(tensor, Diff(op.kind)).add(np.asarray(ours[tensor]), theirs)
    return diffs


def compare_isolated(imp, feeds: dict, ort: dict, diffs: dict | None = None) -> dict[str, Diff]:
    """Each int8 IR tensor with an ORT counterpart, recomputed from ORT's values of its
    nearest inputs that have one: the rounding of that op (or short chain of IR ops) alone,
    without the differences earlier layers pass on."""
    diffs = {} if diffs is None else diffs
    g = imp.graph
    producers = g.producers()

    def value(tensor: str, top: bool, memo: dict):
        t = g.tensors[tensor]
        if t.is_constant:
            return t.data
        if tensor in feeds:
            return feeds[tensor]
        if not top:
            known = ort_in_ir(imp, ort, tensor)
            if known is not None:
                return known
        if tensor not in memo:
            op = producers[tensor]
            ins = [value(n, False, memo) if n else None for n in op.inputs]
            result = KERNELS[op.kind](KernelCall(op, ins, g.op_inputs(op), g.op_outputs(op)))
            memo[tensor] = result[0] if isinstance(result, list) else result
        return memo[tensor]

    for tensor, op in producers.items():
        if g.tensors[tensor].dtype != "int8" or g.tensors[tensor].is_constant:
            continue
        theirs = ort_in_ir(imp, ort, tensor)
        if theirs is None:
            continue
        ours = np.asarray(value(tensor, True, {}))
        diffs.setdefault(tensor, Diff(op.kind)).add(ours, theirs)
    return diffs


def onnx_names(imp) -> list[str]:
    return sorted({name for name, _ in imp.origin.values()})


def op_counts(graph) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in graph.ops:
        counts[op.kind] = counts.get(op.kind, 0) + 1
    return counts


def check_float(model: onnx.ModelProto, runs: int = 3, seed: int = 0, tol: float = 1e-4):
    """Import ``model``, run it on seeded inputs; every output and intermediate float tensor
    must match onnxruntime within ``tol`` relative to its range. Returns the import and the
    worst relative error."""
    imp = import_onnx(model, name=model.graph.name)
    graph = imp.graph
    rng = np.random.default_rng(seed)
    diffs: dict = {}
    worst_output = 0.0
    for _ in range(runs):
        feeds = {name: rng.uniform(-1, 1, graph.tensors[name].shape).astype(np.float32)
                 for name in graph.inputs}
        theirs = ort_values(model, feeds, onnx_names(imp))
        ours = run(graph, feeds, keep_all=True)
        for out, onnx_out in zip(graph.outputs, [o.name for o in model.graph.output]):
            expected = theirs[onnx_out]
            assert ours[out].shape == expected.shape, (out, ours[out].shape, expected.shape)
            worst_output = max(worst_output, relative_error(expected, ours[out]))
        compare_all(imp, ours, theirs, diffs)
    compared = [t for t, d in diffs.items() if graph.tensors[t].dtype == "float32"]
    assert compared, "no intermediate tensor was compared"
    bad = {t: d.worst for t, d in diffs.items() if d.worst > tol}
    assert worst_output < tol and not bad, (worst_output, bad)
    return imp, max([worst_output] + [d.worst for d in diffs.values()])


def quantize_qdq(model: onnx.ModelProto, shape, tmp_path: Path, tag: str, **options):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Calibration(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(7)
            self.batches = iter([{"x": rng.standard_normal(shape).astype(np.float32)}
                                 for _ in range(32)])

        def get_next(self):
            return next(self.batches, None)

    src, dst = tmp_path / f"{tag}-float.onnx", tmp_path / f"{tag}-qdq.onnx"
    onnx.save(model, str(src))
    options.setdefault("activation_type", QuantType.QInt8)
    quantize_static(str(src), str(dst), Calibration(), quant_format=QuantFormat.QDQ,
                    weight_type=QuantType.QInt8, **options)
    return dst


def run_qdq(path: Path, runs: int, seed: int = 1):
    """End-to-end and per-op (isolated) differences against the QDQ graph's own arithmetic.

    onnxruntime runs with graph optimizations off, so it fuses nothing: each DequantizeLinear,
    float op and QuantizeLinear runs as written, which is the arithmetic the ONNX spec defines
    for a QDQ graph (float32 on exactly dequantized values, round half to even at the
    QuantizeLinear). Its fused integer kernels are no oracle here: on x86 the u8s8 convolution
    path (uint8 activations) sums pairs in 16 bits that can saturate, and which kernel runs
    depends on the CPU and the release. The one rule that still differs from TFLite's is the
    requantization rounding (a float multiply and half-to-even against a fixed-point multiply),
    hence the 1-LSB tolerance at rounding boundaries."""
    model = onnx.load(str(path))
    imp = import_onnx(model, name=path.stem)
    graph = imp.graph
    rng = np.random.default_rng(seed)
    e2e, isolated = {}, {}
    outputs = []
    for _ in range(runs):
        x = rng.standard_normal(graph.tensors[graph.inputs[0]].shape).astype(np.float32)
        feeds = {graph.inputs[0]: x}
        theirs = ort_values(model, feeds, onnx_names(imp), optimize=False)
        ours = run(graph, [x], keep_all=True)
        compare_all(imp, ours, theirs, e2e)
        compare_isolated(imp, feeds, theirs, isolated)
        outputs.append((theirs[model.graph.output[0].name], ours[graph.outputs[0]]))
    return imp, e2e, isolated, outputs


def qdq_report(title: str, diffs: dict) -> str:
    lines = [title]
    for tensor, d in diffs.items():
        if d.count:
            unit = "LSB" if d.op != "DEQUANTIZE" else "of range"
            lines.append(f"  {d.op:<18} {tensor[:48]:<48} {d.mismatches:>6}/{d.count:<6} "
                         f"({100 * d.mismatches / d.count:5.2f}%) max {d.worst:.3g} {unit}")
    return "\n".join(lines)


def assert_int8_graph(graph, float_inputs: int = 1) -> None:
    """The QDQ groups became int8 IR ops: float only at the input QUANTIZE and the output
    DEQUANTIZE, per-tensor int8 activations, symmetric int8 weights, int32 biases."""
    compute = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "MEAN",
               "AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "LOGISTIC", "HARD_SWISH",
               "CONCATENATION", "PAD", "CLIP", "RELU", "RELU6")
    assert op_counts(graph).get("DEQUANTIZE") == 1, op_counts(graph)
    quantizers = [op for op in graph.ops if op.kind == "QUANTIZE"
                  and graph.tensors[op.inputs[0]].dtype == "float32"]
    assert len(quantizers) == float_inputs
    for op in graph.ops:
        if op.kind not in compute:
            continue
        x, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        assert x.dtype == out.dtype == "int8" and not out.quant.per_channel, op
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = graph.tensors[op.inputs[1]]
            assert w.dtype == "int8" and not np.any(w.quant.zero_point), op.name
            if w.quant.per_channel:
                assert w.quant.axis == (3 if op.kind == "DEPTHWISE_CONV_2D" else 0)
                assert w.quant.scale.size == w.shape[w.quant.axis]
            if len(op.inputs) > 2:
                bias = graph.tensors[op.inputs[2]]
                expected = np.float32(x.scale()) * w.quant.scale.astype(np.float32)
                assert bias.dtype == "int32"
                np.testing.assert_allclose(np.broadcast_to(bias.quant.scale, expected.shape),
                                           expected, rtol=1e-6)
