"""ONNX reductions and normalization (ReduceSum, ReduceMax, ReduceMin, ReduceMean over any
axes, ArgMax, ArgMin, LpNormalization with p=2) against onnxruntime: float models on every
intermediate tensor, and QDQ models (quantized by onnxruntime) op by op within the 1 LSB that
separates TFLite's fixed-point rounding from the QDQ float arithmetic."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from support.onnx_cases import check_float as _check_float
from support.onnx_cases import op_counts as _kinds
from support.onnx_cases import ort_values
from support.onnx_cases import qdq_report as _report
from support.onnx_cases import quantize_qdq as _quantize
from support.onnx_cases import run_qdq as _run_qdq
from tinyml.errors import UnsupportedOpError
from tinyml.frontends.onnx import import_onnx
from tinyml.reference import run


def _reductions_model(opset: int = 13) -> onnx.ModelProto:
    """A convolution (so activations are stored NHWC and every axis is remapped), then each
    reduction over several axes; ArgMax/ArgMin read the convolution directly."""
    rng = np.random.default_rng(21)
    w = (rng.standard_normal((6, 3, 3, 3)) * 0.3).astype(np.float32)
    b = (rng.standard_normal(6) * 0.1).astype(np.float32)
    inits = {"w": w, "b": b}

    def reduce(op, out, axes, keepdims):
        """Axes are an attribute before opset 18 (13 for ReduceSum), an input since."""
        if op == "ReduceSum" or opset >= 18:
            inits[f"{out}_axes"] = np.array(axes, np.int64)
            return helper.make_node(op, ["c", f"{out}_axes"], [out], keepdims=keepdims)
        return helper.make_node(op, ["c"], [out], axes=axes, keepdims=keepdims)

    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        reduce("ReduceSum", "sum", [2, 3], 0),
        reduce("ReduceMax", "max", [1], 1),
        reduce("ReduceMin", "min", [-2, -1], 0),
        reduce("ReduceMean", "mean", [1, 3], 1),
        helper.make_node("ArgMax", ["c"], ["argmax"], axis=1, keepdims=0),
        helper.make_node("ArgMin", ["c"], ["argmin"], axis=-1, keepdims=1),
        helper.make_node("LpNormalization", ["c"], ["l2"], axis=1, p=2),
    ]
    outputs = {"sum": [1, 6], "max": [1, 1, 5, 6], "min": [1, 6], "mean": [1, 1, 5, 1],
               "argmax": [1, 5, 6], "argmin": [1, 6, 5, 1], "l2": [1, 6, 5, 6]}
    graph = helper.make_graph(
        nodes, "reductions",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 5, 6])],
        [helper.make_tensor_value_info(n, onnx.TensorProto.INT64 if n.startswith("arg")
                                       else onnx.TensorProto.FLOAT, s)
         for n, s in outputs.items()],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


EXPECTED = {"SUM": 1, "REDUCE_MAX": 1, "REDUCE_MIN": 1, "MEAN": 1, "ARG_MAX": 1, "ARG_MIN": 1,
            "L2_NORMALIZATION": 1}


def _indices_equal(model, graph, inputs):
    """ArgMax/ArgMin: the same indices as onnxruntime (int32 here, int64 there)."""
    names = [o.name for o in model.graph.output]
    for x in inputs:
        theirs = ort_values(model, {"x": x}, optimize=False)
        ours = run(graph, [x])
        for ir, name in zip(graph.outputs, names):
            if name.startswith("arg"):
                assert ours[ir].dtype == np.int32
                np.testing.assert_array_equal(ours[ir], theirs[name])


@pytest.mark.parametrize("opset", [13, 18])
def test_float_reductions_match_onnxruntime_on_every_tensor(opset):
    model = _reductions_model(opset)
    imp, worst = _check_float(model, tol=1e-5)
    kinds = _kinds(imp.graph)
    for kind, count in EXPECTED.items():
        assert kinds.get(kind) == count, (kind, kinds)
    rng = np.random.default_rng(3)
    _indices_equal(model, imp.graph,
                   [rng.uniform(-1, 1, (1, 3, 5, 6)).astype(np.float32) for _ in range(3)])


def test_qdq_reductions_within_one_lsb_of_onnxruntime(tmp_path):
    # onnxruntime quantizes these ops' outputs only when asked to by name.
    path = _quantize(_reductions_model(), (1, 3, 5, 6), tmp_path, "reductions",
                     per_channel=True, op_types_to_quantize=[
                         "Conv", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean", "ArgMax",
                         "ArgMin", "LpNormalization"])
    imp, e2e, isolated, outputs = _run_qdq(path, runs=8)
    graph = imp.graph
    kinds = _kinds(graph)
    for kind in EXPECTED:
        assert kind in kinds, (kind, kinds)
    for op in graph.ops:
        if op.kind in EXPECTED and op.kind not in ("ARG_MAX", "ARG_MIN"):
            assert graph.tensors[op.inputs[0]].dtype == "int8", (op.kind, kinds)
    print(_report("QDQ reductions, each op from onnxruntime's inputs:", isolated))
    reduced = {d.op for d in isolated.values()}
    assert {"SUM", "REDUCE_MAX", "REDUCE_MIN", "MEAN"} <= reduced, reduced
    assert all(d.worst <= 1 for d in isolated.values()), _report("isolated:", isolated)
    for d in isolated.values():
        if d.op in ("REDUCE_MAX", "REDUCE_MIN"):  # selection: exact
            assert d.mismatches == 0, _report("isolated:", isolated)


def test_unsupported_variants_name_the_cause():
    cases = ((helper.make_node("LpNormalization", ["x"], ["y"], axis=1, p=1),
              onnx.TensorProto.FLOAT, [1, 3, 4, 4], "p=1"),
             (helper.make_node("ArgMax", ["x"], ["y"], axis=1, select_last_index=1),
              onnx.TensorProto.INT64, [1, 1, 4, 4], "select_last_index"))
    for node, out_type, out_shape, detail in cases:
        graph = helper.make_graph(
            [node], "bad", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                          [1, 3, 4, 4])],
            [helper.make_tensor_value_info("y", out_type, out_shape)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        with pytest.raises(UnsupportedOpError, match=detail):
            import_onnx(model, name="bad")


def test_qdq_reductions_indices_and_compiled_c(tmp_path):
    """ArgMax/ArgMin of a QDQ model search the int8 codes: the same indices as onnxruntime;
    the whole model (int32 indices reshaped for keepdims included) compiles and the C equals
    the reference under the sanitizers."""
    from tinyml.verify import verify
    path = _quantize(_reductions_model(), (1, 3, 5, 6), tmp_path, "reductions",
                     per_channel=True, op_types_to_quantize=["Conv", "ArgMax", "ArgMin"])
    model = onnx.load(str(path))
    graph = import_onnx(model, name="reductions").graph
    rng = np.random.default_rng(5)
    _indices_equal(model, graph, [rng.standard_normal((1, 3, 5, 6)).astype(np.float32)
                                  for _ in range(4)])
    qdq = _quantize(_reductions_model(), (1, 3, 5, 6), tmp_path, "all", per_channel=True,
                    op_types_to_quantize=["Conv", "ReduceSum", "ReduceMax", "ReduceMin",
                                          "ReduceMean", "ArgMax", "ArgMin", "LpNormalization"])
    report = verify(qdq, "host", samples=6, sanitize=True, profile=False)
    assert report.samples == 8 and report.mismatched_outputs == 0, report.to_json()


def test_float_onnx_quantized_by_tinyml_verifies_with_tflm(tmp_path):
    """``verify --calib`` on the float ONNX model: tinyml's quantizer (indices stay int32
    through the keepdims reshape), the C under the sanitizers, the reference and TFLM running
    the exported int8 graph all agree."""
    import json
    import subprocess
    import sys
    path = tmp_path / "reductions.onnx"
    onnx.save(_reductions_model(), str(path))
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "verify", str(path), "--calib",
                             "random:-1,1", "--calib-samples", "10", "--samples", "6",
                             "--sanitize", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mismatched_outputs"] == 0 and report["samples"] == 8
    assert report["oracle"] == "reference+tflite-micro" and report["sanitized"]


# ---- tf2onnx exports of the converter-made TFLite models ----------------------------------------

_TF2ONNX = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tf2onnx
for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):
    tf2onnx.convert.from_tflite(src, opset=13, output_path=dst)
"""


@pytest.fixture(scope="module")
def tf2onnx_exports():
    """tf2onnx's ONNX of the float and the int8 TFLite models of several reductions (the int8
    one becomes a QDQ graph), converted in a child process and cached next to the TFLite."""
    import subprocess
    import sys
    from support.reduction_models import SEVERAL_SHAPE, several, several_float
    from support.tflite_zoo import convert
    sources = {"float": convert(several_float, [SEVERAL_SHAPE], int8=False),
               "int8": convert(several, [SEVERAL_SHAPE])}
    paths = {kind: src.with_suffix(".tf2onnx.onnx") for kind, src in sources.items()}
    jobs = [str(p) for kind in sources if not paths[kind].exists()
            for p in (sources[kind], paths[kind])]
    if jobs:
        done = subprocess.run([sys.executable, "-c", _TF2ONNX] + jobs, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return sources, paths


def test_tf2onnx_float_export_matches_onnxruntime(tf2onnx_exports):
    _, paths = tf2onnx_exports
    model = onnx.load(str(paths["float"]))
    assert {"ReduceSum", "ReduceMax", "ReduceMin", "ReduceMean", "ArgMax", "ArgMin",
            "LpNormalization"} <= {n.op_type for n in model.graph.node}
    imp, _ = _check_float(model)  # every float intermediate (sums: summation order)
    graph = imp.graph
    rng = np.random.default_rng(8)
    for _ in range(4):
        x = rng.normal(0, 1, (1, 6, 6, 3)).astype(np.float32)
        theirs = ort_values(model, {model.graph.input[0].name: x})
        ours = run(graph, [x])
        for ir, out in zip(graph.outputs, model.graph.output):
            np.testing.assert_array_equal(ours[ir], theirs[out.name])


def test_tf2onnx_qdq_export_is_bit_exact_with_tflm(tf2onnx_exports):
    """The int8 TFLite model through tf2onnx (QDQ) imports to the same int8 ops: its output
    equals TFLM running the original file; onnxruntime's QDQ float arithmetic (no bit-exact
    oracle: each op may round 1 LSB apart) picks an index whose score is within 2 LSB of the
    best one. The C equals the reference."""
    from support.oracles import tflm_interpreter
    from tinyml.verify import verify
    sources, paths = tf2onnx_exports
    model = onnx.load(str(paths["int8"]))
    graph = import_onnx(model, name="several_qdq").graph
    assert set(EXPECTED) - {"ARG_MIN"} <= {op.kind for op in graph.ops}
    arg = next(op for op in graph.ops if op.kind == "ARG_MAX")
    interpreter = tflm_interpreter(sources["int8"])
    rng = np.random.default_rng(9)
    for x in [rng.integers(-128, 128, (1, 6, 6, 3)).astype(np.int8) for _ in range(6)] + [
            np.full((1, 6, 6, 3), v, np.int8) for v in (-128, 127)]:
        interpreter.set_input(x, 0)
        interpreter.invoke()
        values = run(graph, [x], keep_all=True)
        ours = values[graph.outputs[0]]
        np.testing.assert_array_equal(ours, interpreter.get_output(0))
        theirs = ort_values(model, {model.graph.input[0].name: x}, optimize=False)
        scores = values[arg.inputs[0]].astype(np.int64).reshape(-1)
        assert scores.max() - scores[int(theirs[model.graph.output[0].name][0])] <= 2
    report = verify(paths["int8"], "host", samples=6, sanitize=True, profile=False)
    assert report.samples == 8 and report.mismatched_outputs == 0, report.to_json()
