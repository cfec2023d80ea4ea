"""Int4 weights: packing, rounding, the mixed choice under a flash budget, TFLite export and
import, and the CLI.

The oracle for the exported models is TFLM: every tensor of an int4 model (kPreserveAllTensors)
must equal tinyml's reference interpreter, the int4 filters compared as the packed bytes TFLM
holds. Fast tests use a hand-built float IR graph (support/int4_models.py) with conv,
depthwise (multiplier 3) and dense layers whose filters have odd element counts; the Keras
model and the scikit-learn digits CNN (accuracy of float, int8, int4 RTN and int4 with the
default rounding) are marked slow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.int4_models import calibration_inputs, float_cnn, keras_cnn
from support.quantize_oracles import tflm_tensor_mismatches
from tinyml.errors import TinymlError
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.ir import Tensor
from tinyml.ir.tensor import pack_int4, storage_bytes, unpack_int4
from tinyml.quantize import int4 as int4_module
from tinyml.quantize import quantize_model
from tinyml.quantize.tflite_export import export_tflite
from tinyml.quantize.weight_bits import weight_bytes
from tinyml.reference import run


def _samples(model, count: int = 6):
    x = calibration_inputs(count, seed=7)
    shape = model.graph.tensors[model.graph.inputs[0]].shape
    extremes = [[np.full(shape, -128, np.int8)], [np.full(shape, 127, np.int8)]]
    return [model.quantize_inputs([x[i:i + 1]]) for i in range(count)] + extremes


@pytest.fixture(scope="module")
def int4_model():
    return quantize_model(float_cnn(), calibration_inputs(), weights="int4")


# ---- storage ----------------------------------------------------------------------------------


def test_pack_int4_puts_the_first_code_in_the_low_nibble():
    # TFLM's UnpackDenseInt4IntoInt8: byte i holds element 2i in bits 0-3 and 2i+1 in bits
    # 4-7, sign-extended; an odd count ends on a low nibble.
    assert pack_int4(np.array([1, -2, 3, -8, 7], np.int8)) == bytes([0xE1, 0x83, 0x07])
    rng = np.random.default_rng(0)
    for count in range(0, 12):
        codes = rng.integers(-8, 8, count).astype(np.int8)
        packed = pack_int4(codes)
        assert len(packed) == (count + 1) // 2
        np.testing.assert_array_equal(unpack_int4(packed, count), codes)
    with pytest.raises(ValueError):
        pack_int4(np.array([8]))


def test_int4_tensors_count_packed_bytes():
    codes = np.zeros((5, 3, 3, 3), np.int8)
    t = Tensor("w", codes.shape, "int4", data=codes)
    assert storage_bytes(t) == t.nbytes == 68          # 135 codes, two per byte
    assert Tensor("w8", codes.shape, "int8", data=codes).nbytes == 135


# ---- rounding ---------------------------------------------------------------------------------


def test_rtn_scales_are_max_over_7_per_channel_and_per_tensor_for_dense():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (6, 3, 3, 4)).astype(np.float32)
    codes, q = int4_module.quantize_int4(w, "CONV_2D", "rtn")
    np.testing.assert_array_equal(q.scale, (np.abs(w).reshape(6, -1).max(1) / 7)
                                  .astype(np.float32))
    assert q.axis == 0 and codes.dtype == np.int8 and np.abs(codes).max() == 7
    assert np.all(np.abs(codes).reshape(6, -1).max(1) == 7)
    dw, q_dw = int4_module.quantize_int4(w[:1], "DEPTHWISE_CONV_2D", "rtn")
    assert q_dw.axis == 3 and q_dw.scale.size == 4
    fc = rng.normal(0, 1, (5, 17)).astype(np.float32)
    _, q_fc = int4_module.quantize_int4(fc, "FULLY_CONNECTED", "rtn")
    assert q_fc.axis is None and q_fc.scale.size == 1  # TFLM: per-channel int4 dense refused
    assert np.float32(q_fc.scale[0]) == np.float32(np.abs(fc).max() / 7)


def test_layer_patches_are_the_columns_of_the_weight_matrix():
    """X (hessian.layer_patches) times the weight matrix (int4.as_rows) is the layer's float
    output, as the reference interpreter computes it: the columns GPTQ feeds its error to
    are the inputs they multiply."""
    from tinyml.quantize.hessian import layer_patches

    graph = float_cnn()
    values = run(graph, [calibration_inputs(1)], keep_all=True)
    for op in graph.ops:
        if op.kind == "RESHAPE":
            continue
        w, b = (graph.tensors[n].data for n in op.inputs[1:3])
        patches = layer_patches(op, values[op.inputs[0]], w.shape)
        rows = int4_module.as_rows(w, op.kind)
        if op.kind == "DEPTHWISE_CONV_2D":
            m = rows.shape[0] // patches.shape[1]
            y = np.einsum("pck,cmk->pcm", patches, rows.reshape(-1, m, rows.shape[1]))
        else:
            y = patches @ rows.T
        y = y.reshape(values[op.outputs[0]].shape) + b
        low, high = {"RELU": (0, np.inf), "RELU6": (0, 6), "NONE": (-np.inf, np.inf)}[
            op.attrs.activation]
        np.testing.assert_allclose(np.clip(y, low, high), values[op.outputs[0]], atol=1e-5)


def test_better_roundings_lower_a_dense_layers_output_error_on_held_out_inputs():
    """The quantity GPTQ and the scale search minimize, ||(W - Wq) X||, measured on inputs the
    rounding never saw: correlated features, as real layer inputs are."""
    rng = np.random.default_rng(2)
    mixing = rng.normal(0, 1, (24, 24))
    train = rng.normal(0, 1, (4000, 24)) @ mixing
    held_out = rng.normal(0, 1, (4000, 24)) @ mixing
    w = rng.normal(0, 1, (16, 24)).astype(np.float32)
    hessian = train.T @ train / len(train)
    errors = {}
    for rounding in int4_module.ROUNDINGS:
        codes, q = int4_module.quantize_int4(w.reshape(16, 1, 1, 24), "CONV_2D", rounding,
                                             hessian, len(train))
        wq = codes.reshape(16, 24) * q.scale[:, None].astype(np.float64)
        errors[rounding] = float(np.sum(((w - wq) @ held_out.T) ** 2))
    assert errors["gptq"] < 0.8 * errors["rtn"]
    assert errors["search"] < errors["rtn"]
    assert errors["gptq-search"] < 0.8 * errors["rtn"]


# ---- the exported model in TFLM ---------------------------------------------------------------


def test_int4_model_runs_bit_exact_in_tflm_on_every_tensor(int4_model):
    graph = int4_model.graph
    assert int4_model.int4_layers == ["conv1", "dw", "pw", "fc1", "fc2"]
    assert [graph.tensors[op.inputs[1]].dtype for op in graph.ops if op.kind != "RESHAPE"] \
        == ["int4"] * 5
    exported = int4_model.to_tflite()
    samples = _samples(int4_model)
    mismatches, compared = tflm_tensor_mismatches(exported, graph, samples)
    assert compared >= len(samples) * (len(graph.ops) + 5) and not mismatches, mismatches


def test_int4_export_uses_tflites_int4_type_and_op_versions(int4_model):
    from ai_edge_litert import schema_py_generated as schema

    exported = int4_model.to_tflite()
    model = schema.ModelT.InitFromPackedBuf(bytearray(exported), 0)
    sub = model.subgraphs[0]
    filters = {}
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        t = sub.tensors[op.inputs[1]]
        if code.builtinCode in (schema.BuiltinOperator.CONV_2D,
                                schema.BuiltinOperator.DEPTHWISE_CONV_2D,
                                schema.BuiltinOperator.FULLY_CONNECTED):
            filters[t.name.decode()] = (t.type, code.version,
                                        len(model.buffers[t.buffer].data))
    # TFLite's op versioning: int8 input with an INT4 filter is CONV_2D and
    # DEPTHWISE_CONV_2D version 7, FULLY_CONNECTED (with bias) version 10.
    assert filters == {"conv1/w": (schema.TensorType.INT4, 7, 68),
                       "dw/w": (schema.TensorType.INT4, 7, 68),
                       "pw/w": (schema.TensorType.INT4, 7, 53),
                       "fc1/w": (schema.TensorType.INT4, 10, 630),
                       "fc2/w": (schema.TensorType.INT4, 10, 23)}


def test_int4_tflite_import_round_trips(int4_model):
    exported = int4_model.to_tflite()
    imported = load_tflite_bytes(exported)
    for op in int4_model.graph.ops:
        if op.kind == "RESHAPE":
            continue
        ours, theirs = int4_model.graph.tensors[op.inputs[1]], imported.tensors[op.inputs[1]]
        assert theirs.dtype == "int4" and theirs.data.dtype == np.int8
        np.testing.assert_array_equal(theirs.data, ours.data)
        np.testing.assert_array_equal(theirs.quant.scale, ours.quant.scale)
        assert theirs.quant.axis == ours.quant.axis
    for sample in _samples(int4_model, 3):
        np.testing.assert_array_equal(run(imported, sample)[imported.outputs[0]],
                                      run(int4_model.graph, sample)[imported.outputs[0]])
    again = load_tflite_bytes(export_tflite(imported))
    for name, t in imported.tensors.items():
        if t.dtype == "int4":
            assert again.tensors[name].dtype == "int4"
            np.testing.assert_array_equal(again.tensors[name].data, t.data)


def test_truncated_int4_buffer_is_a_format_error(int4_model):
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers
    from tinyml.errors import ModelFormatError

    model = schema.ModelT.InitFromPackedBuf(bytearray(int4_model.to_tflite()), 0)
    t = next(t for t in model.subgraphs[0].tensors if t.name == b"fc2/w")
    model.buffers[t.buffer].data = model.buffers[t.buffer].data[:-1]
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelFormatError, match="fc2/w.*22 bytes of int4 data, expected 23"):
        load_tflite_bytes(bytes(builder.Output()))


# ---- mixed: per-layer bits under a flash budget -----------------------------------------------


def test_mixed_weights_fit_the_budget_with_the_fewest_int4_bytes_needed():
    graph, calib = float_cnn(), calibration_inputs()
    int8 = weight_bytes(quantize_model(graph, calib).graph)
    all_int4 = weight_bytes(quantize_model(graph, calib, weights="int4",
                                           int4_rounding="rtn").graph)
    assert all_int4 < int8
    budget = (int8 + all_int4) // 2
    mixed = quantize_model(graph, calib, weights="mixed", flash=budget, int4_rounding="rtn")
    assert weight_bytes(mixed.graph) <= budget
    assert 0 < len(mixed.int4_layers) < 5
    choice = mixed.mixed
    assert choice.int8_bytes == int8 and set(choice.cost) == set(choice.saved)
    # No int4 layer could go back to int8 within the budget.
    need = int8 - sum(choice.saved[k] for k in choice.int4)
    assert need == weight_bytes(mixed.graph)
    assert all(need + choice.saved[k] > budget for k in choice.int4)
    assert all(choice.cost[k] >= 0 for k in choice.cost)

    roomy = quantize_model(graph, calib, weights="mixed", flash=int8, int4_rounding="rtn")
    assert roomy.int4_layers == [] and weight_bytes(roomy.graph) == int8


def test_an_impossible_budget_fails_in_one_line_naming_need_and_largest_layer():
    graph, calib = float_cnn(), calibration_inputs()
    with pytest.raises(TinymlError) as error:
        quantize_model(graph, calib, weights="mixed", flash=200, int4_rounding="rtn")
    message = str(error.value)
    assert "\n" not in message
    need = weight_bytes(quantize_model(graph, calib, weights="int4",
                                       int4_rounding="rtn").graph)
    assert "flash budget 200 B cannot be met" in message
    assert f"at least {need:,} B" in message and "largest layer 'fc1'" in message


# ---- command line -----------------------------------------------------------------------------


def test_cli_quantize_writes_int4_weights(tmp_path, capsys):
    from tinyml.cli import main

    model = tmp_path / "float_cnn.tflite"
    model.write_bytes(export_tflite(float_cnn()))
    calib = tmp_path / "calib.npy"
    np.save(calib, calibration_inputs())
    out = tmp_path / "int4.tflite"
    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--weights", "int4", "--int4-rounding", "rtn", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["weights"] == "int4" and figures["int4_rounding"] == "rtn"
    assert figures["int4_layers"] == ["conv1", "dw", "pw", "fc1", "fc2"]
    graph = load_tflite_bytes(out.read_bytes())
    assert sorted(t.name for t in graph.tensors.values() if t.dtype == "int4") == \
        ["conv1/w", "dw/w", "fc1/w", "fc2/w", "pw/w"]
    assert weight_bytes(graph) == figures["weight_bytes"] + 8  # + the RESHAPE's int32 shape

    assert main(["quantize", str(model), "--calib", str(calib), "-o", str(out),
                 "--weights", "mixed", "--flash", "1K", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["flash_budget"] == 1024 and figures["weight_bytes"] <= 1024


@pytest.mark.parametrize("flags, message", [
    (["--weights", "mixed"], "--weights mixed needs a flash budget"),
    (["--flash", "10K"], "--flash 10K: a weight budget needs --weights mixed"),
    (["--weights", "mixed", "--flash", "ten"], "--flash 'ten': expected a byte count"),
])
def test_cli_weight_options_refuse_bad_combinations(tmp_path, capsys, flags, message):
    from tinyml.cli import main

    model = tmp_path / "float_cnn.tflite"
    model.write_bytes(export_tflite(float_cnn()))
    calib = tmp_path / "calib.npy"
    np.save(calib, calibration_inputs(4))
    code = main(["quantize", str(model), "--calib", str(calib), "-o",
                 str(tmp_path / "out.tflite"), *flags])
    assert code != 0
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_option_lists_match_the_library():
    from tinyml.quantize import command, weight_bits

    assert command.WEIGHT_MODES == weight_bits.WEIGHT_MODES
    assert command.INT4_ROUNDINGS == int4_module.ROUNDINGS
    assert command.DEFAULT_INT4_ROUNDING == int4_module.DEFAULT_ROUNDING


# ---- Keras models (slow: TensorFlow) ----------------------------------------------------------


@pytest.mark.slow
def test_keras_int4_model_runs_bit_exact_in_tflm(tmp_path):
    path = tmp_path / "int4_cnn.keras"
    keras_cnn().save(path)
    model = quantize_model(path, calibration_inputs(), weights="int4")
    assert len(model.int4_layers) == 5
    exported = model.to_tflite()
    samples = _samples(model)
    mismatches, compared = tflm_tensor_mismatches(exported, model.graph, samples)
    assert compared >= len(samples) * len(model.graph.ops) and not mismatches, mismatches


@pytest.mark.slow
def test_digits_cnn_int4_accuracy_and_bit_exactness(tmp_path):
    """Accuracy on the digits test split, each model run in TFLM: float (Keras), int8, int4
    RTN and int4 with the default rounding (the issue's bar: within 1 point of int8)."""
    pytest.importorskip("sklearn", reason="scikit-learn (test extra) not installed")
    from support.digits import tflm_accuracy, train_digits_cnn

    digits = train_digits_cnn(tmp_path)
    x, y = digits["x_test"], digits["y_test"]
    results = {}
    models = {}
    for label, weights, rounding in (("int8", "int8", "rtn"), ("int4 rtn", "int4", "rtn"),
                                     ("int4 " + int4_module.DEFAULT_ROUNDING, "int4",
                                      int4_module.DEFAULT_ROUNDING)):
        model = quantize_model(digits["path"], digits["calib"], weights=weights,
                               int4_rounding=rounding)
        models[label] = model
        results[label] = (tflm_accuracy(model.to_tflite(), x, y),
                          weight_bytes(model.graph))
    print(f"\ndigits CNN, {len(y)} test images, TFLM: float "
          f"{100 * digits['float_accuracy']:.2f} %; " + "; ".join(
              f"{k} {100 * a:.2f} % ({b:,} B of weights)" for k, (a, b) in results.items()))
    better = results["int4 " + int4_module.DEFAULT_ROUNDING][0]
    assert better >= results["int8"][0] - 0.01
    assert results["int4 rtn"][1] < 0.6 * results["int8"][1]

    model = models["int4 " + int4_module.DEFAULT_ROUNDING]
    samples = [model.quantize_inputs([x[i:i + 1]]) for i in range(0, len(x), 60)]
    mismatches, compared = tflm_tensor_mismatches(model.to_tflite(), model.graph, samples)
    assert compared >= len(samples) * len(model.graph.ops) and not mismatches, mismatches
