"""16x8 quantization (int16 activations, int8 weights, int64 biases): the conventions, the
per-layer choice (``--int16-layers``) and the exported models run in TFLM.

The oracle is TFLM running the exported .tflite (independent of tinyml's kernels), against
the float model run by LiteRT; the conventions are checked against the TFLite converter's
own 16x8 output (slow: TensorFlow). Fast tests use a hand-built IR graph with every op whose
16x8 rule differs (support/int16_graphs.py); the digits CNN, the converter comparison and
MLPerf Tiny's kws model are slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from support.int4_models import float_cnn
from support.int16_graphs import calibration_inputs, ops_cnn
from support.quantize_oracles import run_float_litert, run_int8_tflm, sqnr_db
from tinyml.errors import TinymlError
from tinyml.quantize import evaluate, load_dataset, quantize_model
from tinyml.quantize.tflite_export import export_tflite

KWS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny" / \
    "kws_ref_model_float32.tflite"


@pytest.fixture(scope="module")
def float_graph():
    return ops_cnn()


@pytest.fixture(scope="module")
def evaluation(float_graph):
    samples = list(calibration_inputs(20, seed=5)[:, None])
    return samples, run_float_litert(export_tflite(float_graph), samples)


@pytest.fixture(scope="module")
def models(float_graph):
    calib = calibration_inputs()
    return {"int8": quantize_model(float_graph, calib),
            "16x8": quantize_model(float_graph, calib, activations="int16"),
            "mixed": quantize_model(float_graph, calib, int16_layers=["dw", "add"])}


def _activations(graph):
    return [t for t in graph.tensors.values() if not t.is_constant]


def _flatbuffer(data: bytes):
    from ai_edge_litert import schema_py_generated as schema
    return schema, schema.ModelT.InitFromPackedBuf(data, 0)


# ---- conventions ------------------------------------------------------------------------------


def test_16x8_tensors_follow_tflites_int16_conventions(models):
    model = models["16x8"]
    g, ranges = model.graph, model.calibration.ranges
    assert all(t.dtype == "int16" and int(t.quant.zero_point[0]) == 0
               for t in _activations(g))
    for name in ("x", "conv1", "dw", "mul", "add", "mean", "fc"):  # own range, symmetric
        low, high = ranges[name]
        assert g.tensors[name].quant.scale[0] == np.float32(max(-low, high) / 32767), name
    for name in ("sigmoid", "tanh", "softmax"):
        assert g.tensors[name].quant.scale[0] == np.float32(1 / 32768)
    for follower, source in (("pad", "conv1"), ("pool", "conv1"), ("avg", "concat")):
        assert g.tensors[follower].quant.scale[0] == g.tensors[source].quant.scale[0]
    concat = next(op for op in g.ops if op.kind == "CONCATENATION")
    assert {float(g.tensors[n].quant.scale[0]) for n in concat.inputs} == \
        {float(g.tensors["concat"].quant.scale[0])}
    assert [op.kind for op in g.ops].count("QUANTIZE") == 2  # logistic, tanh requantized
    for op in g.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            x, w, b = (g.tensors[n] for n in op.inputs)
            assert w.dtype == "int8" and w.quant.scale.size == w.shape[w.quant.axis]
            assert np.abs(w.data).max() == 127
            assert b.dtype == "int64" and b.data.dtype == np.int64
            np.testing.assert_array_equal(b.quant.scale, (np.float32(x.quant.scale[0])
                                                          * w.quant.scale).astype(np.float32))


def test_16x8_file_holds_int16_activations_int64_biases_and_general_scale_adds(models):
    schema, m = _flatbuffer(models["16x8"].to_tflite())
    sub = m.subgraphs[0]
    types = schema.TensorType
    assert sub.tensors[sub.inputs[0]].type == types.INT16
    assert sub.tensors[sub.outputs[0]].type == types.INT16
    kinds = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    seen = set()
    for op in sub.operators:
        kind = kinds[m.operatorCodes[op.opcodeIndex].builtinCode]
        seen.add(kind)
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            assert [sub.tensors[i].type for i in op.inputs] == [types.INT16, types.INT8,
                                                                types.INT64]
        if kind == "ADD":
            assert op.builtinOptions.potScaleInt16 is False
    assert {"CONV_2D", "PAD", "MAX_POOL_2D", "DEPTHWISE_CONV_2D", "MUL", "ADD", "LOGISTIC",
            "TANH", "QUANTIZE", "CONCATENATION", "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED",
            "SOFTMAX"} <= seen


# ---- run in TFLM ------------------------------------------------------------------------------


def test_16x8_export_runs_in_tflm_10_db_closer_to_float_than_int8(models, evaluation):
    """Every op kind of the graph, 16x8, prepared and run by TFLM; its output against the
    float model (LiteRT) 10 dB above the int8 export's (measured: 59.5 vs 40.0 dB)."""
    samples, reference = evaluation
    figures = {k: sqnr_db(reference, run_int8_tflm(models[k].to_tflite(), samples))
               for k in ("int8", "16x8")}
    assert figures["16x8"] >= figures["int8"] + 10, figures


def test_int16_layers_make_a_mixed_model_with_requantizations_tflm_runs(models, evaluation):
    model = models["mixed"]
    g = model.graph
    types = {op.name: g.tensors[op.outputs[0]].dtype for op in g.ops}
    assert types["dw"] == types["add"] == "int16"
    assert {k for k, v in types.items() if v == "int16"} == \
        {"dw", "add", "pool/to_int16", "mul/to_int16"}
    assert model.int16_layers == ["dw", "add"]
    quantize = {op.name: (g.tensors[op.inputs[0]].dtype, g.tensors[op.outputs[0]].dtype)
                for op in g.ops if op.kind == "QUANTIZE" and "requantize" not in op.name}
    assert quantize == {"pool/to_int16": ("int8", "int16"), "dw/to_int8": ("int16", "int8"),
                        "mul/to_int16": ("int8", "int16"), "add/to_int8": ("int16", "int8")}
    assert g.tensors["pool/int16"].quant.zero_point[0] == 0
    samples, reference = evaluation
    mixed = sqnr_db(reference, run_int8_tflm(model.to_tflite(), samples))
    int8 = sqnr_db(reference, run_int8_tflm(models["int8"].to_tflite(), samples))
    assert mixed > int8, (mixed, int8)  # measured 40.4 vs 40.0 dB


def test_layers_that_move_values_follow_an_int16_producer():
    model = quantize_model(float_cnn(), calibration_inputs_4d(), int16_layers=["pw"])
    g = model.graph
    assert g.tensors["flat"].dtype == "int16"       # the RESHAPE after pw: no round trip
    assert g.tensors["flat/int8"].dtype == "int8"   # requantized for fc1
    assert model.int16_layers == ["pw", "flat"]


def calibration_inputs_4d():
    from support.int4_models import calibration_inputs as inputs
    return inputs(8)


# ---- the report -------------------------------------------------------------------------------


def test_report_measures_16x8_models_in_tflm_and_proposes_the_worst_layers(models, float_graph):
    data = load_dataset(calibration_inputs(6, seed=9), float_graph)
    int8 = evaluate(models["int8"], data)
    isolated = {l.layer: l.isolated_sqnr_db for l in int8.layers}
    worst = int8.worst_layers()
    assert len(worst) == 3 and worst[0] == int8.worst_layer.layer
    assert all(isolated[a] <= isolated[b] for a, b in zip(worst, worst[1:]))
    assert all(isolated[n] >= isolated[worst[-1]] for n in isolated
               if n not in worst and isolated[n] is not None
               and not n.startswith("concat/"))
    report = evaluate(models["16x8"], data)
    assert report.output_sqnr_db > int8.output_sqnr_db + 5  # measured 46.4 vs 39.2 dB
    rows = {l.layer: l for l in report.layers}
    assert rows["conv1"].dtype == "int16" and not rows["conv1"].isolated_measured
    # weight rounding bounds a first layer: measured 46.7 vs 42.6 dB
    assert rows["conv1"].sqnr_db > {l.layer: l for l in int8.layers}["conv1"].sqnr_db + 3
    assert report.worst_layers() == []  # nothing left to make 16x8


# ---- errors and the command line --------------------------------------------------------------


def test_bad_int16_requests_fail_in_one_line(float_graph):
    calib = calibration_inputs(4)
    with pytest.raises(TinymlError, match="no layer 'nope'"):
        quantize_model(float_graph, calib, int16_layers=["nope"])
    with pytest.raises(TinymlError, match="unknown activation type 'int4'"):
        quantize_model(float_graph, calib, activations="int4")
    with pytest.raises(TinymlError, match="needs int8 activations"):
        quantize_model(float_graph, calib, activations="int16", weights="int4")


def test_cli_quantize_writes_16x8_and_mixed_models(tmp_path, capsys):
    from tinyml.cli import main

    model, calib, out = tmp_path / "ops.tflite", tmp_path / "calib.npy", tmp_path / "q.tflite"
    model.write_bytes(export_tflite(ops_cnn()))
    np.save(calib, calibration_inputs(8))
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--activations", "int16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["activations"] == "int16" and report["inputs"][0]["dtype"] == "int16"
    assert len(report["int16_layers"]) == 13 and report["worst_layers"] == []
    schema, m = _flatbuffer(out.read_bytes())
    assert m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]].type == schema.TensorType.INT16

    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    hint = next(line for line in text.splitlines() if "--int16-layers" in line)
    picked = hint.split("--int16-layers ")[1].strip()
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--int16-layers", picked, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(picked.split(",")) <= set(report["int16_layers"])
    assert report["inputs"][0]["dtype"] in ("int8", "int16")


@pytest.mark.parametrize("flags, message", [
    (["--int16-layers", ","], "expected comma-separated layer names"),
    (["--activations", "int16", "--int16-layers", "dw"], "already makes every layer int16"),
    (["--int16-layers", "dw,nope"], "no layer 'nope'"),
])
def test_cli_int16_options_refuse_bad_combinations(tmp_path, capsys, flags, message):
    from tinyml.cli import main

    model, calib = tmp_path / "ops.tflite", tmp_path / "calib.npy"
    model.write_bytes(export_tflite(ops_cnn()))
    np.save(calib, calibration_inputs(4))
    assert main(["quantize", str(model), "--calib", str(calib), "-o",
                 str(tmp_path / "out.tflite"), *flags]) != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_activation_types_match_the_library():
    from tinyml.quantize import command, int16
    assert command.ACTIVATION_TYPES == int16.ACTIVATION_TYPES


# ---- slow: TensorFlow, the digits CNN, MLPerf Tiny --------------------------------------------


def _keras_ops_model():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    def init(seed):  # distinct biases (the converter shares identical constant buffers)
        return tf.keras.initializers.RandomNormal(0, 0.1, seed=seed)

    i = tf.keras.Input((8, 8, 3))
    h = L.Conv2D(8, 3, padding="same", activation="relu", bias_initializer=init(1))(i)
    p = L.MaxPooling2D(2)(h)
    d = L.DepthwiseConv2D(3, padding="same", bias_initializer=init(2))(p)
    a = L.Add()([p, d])
    m = L.Multiply()([a, d])
    c = L.Concatenate()([L.Activation("sigmoid")(m), L.Activation("tanh")(a), a])
    g = L.GlobalAveragePooling2D()(c)
    o = L.Softmax()(L.Dense(10, bias_initializer=init(3))(g))
    return tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(i, o)).convert()


@pytest.mark.slow
def test_16x8_export_matches_the_converters_types_and_scales():
    """Op by op, every tensor's type, scale and zero point as the TFLite converter's 16x8
    quantization writes them (same float model, same samples; bias correction off, which the
    converter does not do, so that the biases are comparable too). Scales agree to float32
    rounding: the ranges come from two float interpreters (LiteRT's, tinyml's reference), and
    one in ten scales differs by 1 ulp."""
    from support.quantize_oracles import converter_16x8_tflite
    from tinyml.frontends.tflite import load_tflite_bytes

    float_model = _keras_ops_model()
    samples = [np.random.default_rng(k).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
               for k in range(50)]
    ours = quantize_model(load_tflite_bytes(float_model), np.concatenate(samples),
                          activations="int16", bias_correction=False).to_tflite()
    theirs = converter_16x8_tflite(float_model, samples)

    def signature(data: bytes):
        schema, m = _flatbuffer(data)
        sub = m.subgraphs[0]
        rows = []
        for op in sub.operators:
            row = [m.operatorCodes[op.opcodeIndex].builtinCode]
            for i in list(op.inputs) + list(op.outputs):
                t = sub.tensors[i]
                q = t.quantization
                has = q is not None and q.scale is not None
                row.append((t.type, np.asarray(q.scale, np.float64) if has else None,
                            tuple(q.zeroPoint) if has else None))
            rows.append(row)
        return rows

    mine, converter = signature(ours), signature(theirs)
    assert len(mine) == len(converter) == 13
    for a, b in zip(mine, converter):
        assert a[0] == b[0] and len(a) == len(b), (a, b)
        for (type_a, scale_a, zero_a), (type_b, scale_b, zero_b) in zip(a[1:], b[1:]):
            assert type_a == type_b and zero_a == zero_b, (a[0], type_a, type_b)
            assert (scale_a is None) == (scale_b is None)
            if scale_a is not None:
                np.testing.assert_allclose(scale_a, scale_b, rtol=3e-7)


@pytest.mark.slow
def test_digits_cnn_16x8_accuracy_in_tflm(tmp_path):
    """The issue's bar: the 16x8 digits CNN at least as accurate as the int8 one and within
    0.3 point of float, each run in TFLM; a mixed model (the int8 report's three worst
    layers 16x8) runs too."""
    pytest.importorskip("sklearn", reason="scikit-learn (test extra) not installed")
    from support.digits import tflm_accuracy, train_digits_cnn

    digits = train_digits_cnn(tmp_path)
    x, y = digits["x_test"], digits["y_test"]
    calib = digits["x_train"][:200]
    int8 = quantize_model(digits["path"], calib)
    int16 = quantize_model(digits["path"], calib, activations="int16")
    worst = evaluate(int8, load_dataset(calib, int8.float_graph)).worst_layers()
    mixed = quantize_model(digits["path"], calib, int16_layers=worst)
    accuracy = {k: tflm_accuracy(m.to_tflite(), x, y)
                for k, m in (("int8", int8), ("16x8", int16), ("mixed", mixed))}
    print(f"\ndigits CNN, TFLM: float {digits['float_accuracy']:.4f}, {accuracy}")
    assert accuracy["16x8"] >= accuracy["int8"]
    assert accuracy["16x8"] >= digits["float_accuracy"] - 0.003
    assert accuracy["mixed"] >= accuracy["int8"] - 0.01
    assert len(mixed.int16_layers) >= 3


@pytest.mark.slow
def test_kws_16x8_output_sqnr_is_10_db_above_int8():
    """MLPerf Tiny kws, exported .tflite run in TFLM against the float model in LiteRT
    (measured: int8 21.4 dB, 16x8 35.4 dB, the converter's 16x8 28.6 dB)."""
    if not KWS.exists():
        pytest.skip(f"{KWS} not found (../shared absent)")
    from support.quantize_oracles import mlperf_inputs
    from tinyml.frontends import load_model
    from tinyml.quantize.prepare import prepare

    graph = load_model(KWS)
    calib, samples = mlperf_inputs(KWS.stem, graph.tensors[graph.inputs[0]].shape)
    reference = run_float_litert(export_tflite(prepare(graph)[0]), samples)
    figures = {}
    for label, activations in (("int8", "int8"), ("16x8", "int16")):
        model = quantize_model(graph, np.stack(calib), activations=activations)
        figures[label] = sqnr_db(reference, run_int8_tflm(model.to_tflite(), samples))
    print(f"\nkws output SQNR vs float, TFLM: {figures}")
    assert figures["16x8"] >= figures["int8"] + 10, figures


# ---- tinyml's 16x8 and mixed models compile ------------------------------------------------


@pytest.mark.parametrize("kind", ["16x8", "mixed"])
def test_exported_16x8_models_compile_bit_exact_under_sanitizers(models, tmp_path, kind):
    """The exported file compiles (int8 -> int16 and int16 -> int8 QUANTIZE where a mixed
    model's layers meet) and its C equals tinyml's reference and TFLM on the host under
    ASan/UBSan."""
    from tinyml.verify import verify
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(export_tflite(models[kind].graph))
    report = verify(path, "host", samples=6, sanitize=True)
    assert report.oracle == "reference+tflite-micro"
    assert report.mismatched_outputs == 0 and report.samples == 8


def test_mixed_model_on_cortex_m4(models, tmp_path):
    from tinyml.verify import verify
    path = tmp_path / "mixed.tflite"
    path.write_bytes(export_tflite(models["mixed"].graph))
    report = verify(path, "cortex-m4", samples=6, profile=False)
    assert report.mismatched_outputs == 0 and report.oracle == "reference+tflite-micro"
