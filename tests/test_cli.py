"""``tinyml inspect``: the table, the JSON, and one-line errors.

MACs are checked against a count made here from the model format's own view, not from tinyml's
IR: for TFLite, LiteRT's op list and tensor shapes (conv = output elements x kh x kw x cin,
depthwise = output elements x kh x kw, fully connected = output elements x input features), on
every MLPerf Tiny model (int8 and float) and on a zoo model; for ONNX, onnx.shape_inference.
Parameter bytes are checked against the constant tensors of the raw flatbuffer. Error cases run
the installed ``tinyml`` script and check exit status 2, exactly one ``tinyml: error:`` line on
stderr, nothing on stdout and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FLOAT_TFLITE_MODELS, INT8_MODELS, REPO, mlperf_model
from support.small_models import make_onnx_sources, small_onnx_model, zoo_models
from tinyml.cli import main

TINYML = Path(sys.executable).with_name("tinyml")


# ----------------------------------------------------------------------------------------------
# Zoo models: small Keras models converted by TFLiteConverter (tests/support/small_models.py)


@pytest.fixture(scope="module")
def zoo():
    return zoo_models()


# ----------------------------------------------------------------------------------------------
# Helpers


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The installed console script, as a user runs it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TINYML_DEBUG", None)
    return subprocess.run([str(TINYML), *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)


def inspect_json(path: Path, capsys) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def independent_macs(path: Path) -> list[tuple[str, int]]:
    """(op, MACs) of every conv / depthwise / fully-connected op, from LiteRT's tensors."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    shapes = {d["index"]: [int(v) for v in d["shape"]] for d in it.get_tensor_details()}
    result = []
    for op in it._get_ops_details():
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        filt = shapes[op["inputs"][1]]
        outputs = int(np.prod(shapes[op["outputs"][0]]))
        if name == "CONV_2D":  # filter [cout, kh, kw, cin]
            macs = outputs * filt[1] * filt[2] * filt[3]
        elif name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, cin * multiplier]
            macs = outputs * filt[1] * filt[2]
        else:  # weights [units, features]
            macs = outputs * filt[1]
        result.append((name, macs))
    return result


#: Constant operands that TFLite defines as op parameters rather than data (a shape, axes,
#: paddings, a permutation): not weights, so not parameter bytes.
ATTRIBUTE_OPERANDS = {"RESHAPE": {1}, "MEAN": {1}, "PAD": {1}, "PADV2": {1, 2},
                      "TRANSPOSE": {1}, "STRIDED_SLICE": {1, 2, 3}}


def flatbuffer_constant_bytes(path: Path) -> int:
    """Bytes of the distinct constant tensors operators read as data, from the raw flatbuffer.

    Distinct tensors, not buffers: the converter stores identical constants (two all-zero
    biases) once, but they are separate parameters of separate layers.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sub = model.subgraphs[0]
    used = set()
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = op_names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        skip = ATTRIBUTE_OPERANDS.get(name, set())
        used |= {int(i) for k, i in enumerate(op.inputs) if i >= 0 and k not in skip}
    total = 0
    for i in used:
        buf = model.buffers[sub.tensors[i].buffer]
        if buf.offset and buf.offset > 1:
            total += buf.size
        elif buf.data is not None:
            total += len(buf.data)
    return total


def litert_ops(path: Path) -> list[dict]:
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_path=str(path))._get_ops_details()


# ----------------------------------------------------------------------------------------------
# JSON


def _check_json_against_litert(path: Path, summary: dict):
    assert set(summary) == {"layers", "totals", "notes"}
    totals, layers = summary["totals"], summary["layers"]
    assert totals["layers"] == len(layers) == len(litert_ops(path))
    expected = independent_macs(path)
    assert expected, "the model has no MAC-bearing op: the check would be empty"
    got = [(layer["op"], layer["macs"]) for layer in layers if layer["macs"]]
    assert got == expected
    assert totals["macs"] == sum(m for _, m in expected)
    assert all(isinstance(totals[k], int) for k in ("macs", "param_bytes", "layers"))
    assert totals["param_bytes"] == flatbuffer_constant_bytes(path)
    for layer in layers:
        assert set(layer) >= {"index", "op", "name", "inputs", "outputs", "dtype", "macs",
                              "param_bytes", "activation_bytes"}
        assert ";" not in layer["name"]


@pytest.mark.parametrize("name", INT8_MODELS + FLOAT_TFLITE_MODELS)
def test_json_macs_match_independent_count_mlperf(name, capsys):
    path = mlperf_model(name)
    _check_json_against_litert(path, inspect_json(path, capsys))


def test_json_macs_match_independent_count_zoo(zoo, capsys):
    for path in zoo:
        summary = inspect_json(path, capsys)
        _check_json_against_litert(path, summary)
        ops = [layer["op"] for layer in summary["layers"]]
        assert ops.count("CONV_2D") == 3 and "DEPTHWISE_CONV_2D" in ops
        assert ops.count("FULLY_CONNECTED") == 2


def test_json_layer_fields_kws(capsys):
    path = mlperf_model("kws_ref_model")
    summary = inspect_json(path, capsys)
    first = summary["layers"][0]
    assert first["op"] == "CONV_2D" and first["dtype"] == "int8"
    assert first["inputs"] == [[1, 49, 10, 1]] and first["outputs"] == [[1, 25, 5, 64]]
    # int8 activations: input 490 bytes + output 8000 bytes; 10x4 filter x 64 + int32 bias.
    assert first["activation_bytes"] == 490 + 25 * 5 * 64
    assert first["param_bytes"] == 64 * 10 * 4 * 1 + 64 * 4
    assert summary["totals"]["peak_activation_bytes"] == max(
        layer["activation_bytes"] for layer in summary["layers"])


# ----------------------------------------------------------------------------------------------
# The table


@pytest.mark.parametrize("name", ["vww_96_int8", "pretrainedResnet"])
def test_table_mlperf(name, capsys):
    path = mlperf_model(name)
    summary = inspect_json(path, capsys)
    done = run_cli("inspect", str(path))
    assert done.returncode == 0 and done.stderr == ""
    _check_table(done.stdout, summary)


def test_table_zoo(zoo, capsys):
    summary = inspect_json(zoo[0], capsys)
    assert main(["inspect", str(zoo[0])]) == 0
    _check_table(capsys.readouterr().out, summary)


def _check_table(text: str, summary: dict):
    from tinyml.summary import readable_names

    scope, names = readable_names([layer["name"] for layer in summary["layers"]])
    rows = [line for line in text.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in row.strip("│").split("│")] for row in rows]
    by_index = {c[0]: c for c in cells if c[0].isdigit()}
    assert len(by_index) == len(summary["layers"])
    for layer, short in zip(summary["layers"], names):
        row = by_index[str(layer["index"])]
        assert row[1] == layer["op"]
        assert short.startswith(row[2])  # a long name folds onto continuation lines
        assert row[5] == layer["dtype"]
        assert row[6:9] == [f"{layer['macs']:,}", f"{layer['param_bytes']:,}",
                            f"{layer['activation_bytes']:,}"]
    total = next(c for c in cells if c[1] == "total")
    totals = summary["totals"]
    assert total[6:9] == [f"{totals['macs']:,}", f"{totals['param_bytes']:,}",
                          f"peak {totals['peak_activation_bytes']:,}"]
    if scope:
        assert f"under {scope}" in text


def test_readable_names():
    from tinyml.summary import readable_names

    names = ["model/activation/Relu;model/batch_normalization/FusedBatchNormV3",
             "model/conv2d_1/BiasAdd", "model/dense/MatMul", "Identity"]
    assert readable_names(names) == (
        "model/", ["activation/Relu", "conv2d_1/BiasAdd", "dense/MatMul", "Identity"])
    # No scope shared by most layers: nothing is stripped.
    assert readable_names(["a/x", "b/y", "c"]) == ("", ["a/x", "b/y", "c"])
    assert readable_names(["model/only"]) == ("", ["model/only"])


def test_inspect_does_not_import_tensorflow(zoo, tmp_path):
    code = ("import sys, io, contextlib\n"
            "from tinyml.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['inspect', sys.argv[1], '--json']) == 0\n"
            "heavy = sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules)\n"
            "print(heavy)\n")
    for path in [mlperf_model("vww_96_int8"), zoo[0], *_onnx_sources(tmp_path)]:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, timeout=120, cwd=REPO)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------------
# Errors: exit status 2, exactly one line on stderr, nothing on stdout, no traceback


def assert_user_error(done: subprocess.CompletedProcess, *fragments: str):
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tinyml: error: ")
    assert done.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_error_missing_file(tmp_path):
    missing = tmp_path / "nope.tflite"
    assert_user_error(run_cli("inspect", str(missing)), str(missing), "no such file")


def test_error_unknown_format(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"just some bytes, not a model\n" * 10)
    assert_user_error(run_cli("inspect", str(path)), str(path), "unknown model format")


def test_error_directory_not_a_savedmodel(tmp_path):
    assert_user_error(run_cli("inspect", str(tmp_path)), str(tmp_path), "SavedModel")


def test_error_truncated_tflite(tmp_path):
    data = mlperf_model("vww_96_int8").read_bytes()
    path = tmp_path / "vww_cut.tflite"
    path.write_bytes(data[: len(data) // 2])
    assert_user_error(run_cli("inspect", str(path), "--json"), str(path), "corrupt")


def test_error_tflite_suffix_wrong_header(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"\x00" * 100)
    assert_user_error(run_cli("inspect", str(path)), str(path), "TFLite")


def test_error_unsupported_op(tmp_path):
    import tensorflow as tf
    from support.tflite_zoo import convert

    def running_sum(x):
        return tf.keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1), name="acc")(
            tf.keras.layers.Dense(4, name="proj")(x))

    path = convert(running_sum, [(1, 8)], int8=False)
    cumsum = next(op for op in litert_ops(path) if op["op_name"] == "CUMSUM")
    from ai_edge_litert.interpreter import Interpreter
    names = {d["index"]: d["name"] for d in Interpreter(model_path=str(path)).get_tensor_details()}
    layer = names[cumsum["outputs"][0]].split(";")[0]
    assert_user_error(run_cli("inspect", str(path)), str(path), "unsupported op CUMSUM",
                      f"layer '{layer}'", "supported: ", "CONV_2D")


def test_error_unresolvable_dynamic_shape(zoo, tmp_path):
    """A TFLite file whose input has a -1 dimension (not only in shape_signature)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(zoo[1].read_bytes()), 0)
    sub = model.subgraphs[0]
    sub.tensors[sub.inputs[0]].shape = np.array([1, -1, 18, 3], dtype=np.int32)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "dynamic.tflite"
    path.write_bytes(bytes(builder.Output()))
    assert_user_error(run_cli("inspect", str(path)), str(path), "dynamic shape", "-1")


def test_error_usage():
    assert_user_error(run_cli("inspect"), "required")
    assert_user_error(run_cli("inspect", "--frobnicate", "x.tflite"), "--frobnicate")
    assert_user_error(run_cli("explode"), "invalid choice")


def test_broken_pipe_is_quiet():
    """``tinyml inspect m --json | head -1``: no traceback when the reader goes away."""
    from tinyml.cli import EXIT_BROKEN_PIPE

    path = mlperf_model("kws_ref_model")
    proc = subprocess.Popen([str(TINYML), "inspect", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()  # no reader left: the first write fails with EPIPE
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert err == ""


# ----------------------------------------------------------------------------------------------
# Hostile names and the corrupt-file / tinyml-bug distinction


def _edited_tflite(source: Path, target: Path, edit) -> Path:
    """A copy of ``source`` with ``edit(model, schema)`` applied through the schema's object
    API (how a file with exactly one odd field is made)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(source.read_bytes()), 0)
    edit(model, schema)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    target.write_bytes(bytes(builder.Output()))
    return target


def _rename_first_output(name: bytes):
    def edit(model, schema):
        sub = model.subgraphs[0]
        sub.tensors[sub.operators[0].outputs[0]].name = name
    return edit


def test_table_prints_names_literally(tmp_path, capsys):
    """Layer names are data: rich markup in them is printed, not interpreted."""
    name = b"conv[/x] [bold]odd[/bold]"
    path = _edited_tflite(mlperf_model("kws_ref_model"), tmp_path / "odd.tflite",
                          _rename_first_output(name))
    assert main(["inspect", str(path)]) == 0
    assert "conv[/x] [bold]odd[/bold]" in capsys.readouterr().out


def test_error_line_escapes_control_characters(tmp_path):
    """A layer name with a newline and a terminal escape still gives one printable line."""
    import tensorflow as tf
    from support.tflite_zoo import convert

    def running_sum(x):
        return tf.keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1), name="acc")(
            tf.keras.layers.Dense(4, name="proj")(x))

    source = convert(running_sum, [(1, 8)], int8=False)

    def edit(model, schema):
        sub = model.subgraphs[0]
        codes = model.operatorCodes
        cumsum = next(op for op in sub.operators
                      if max(codes[op.opcodeIndex].builtinCode,
                             codes[op.opcodeIndex].deprecatedBuiltinCode)
                      == schema.BuiltinOperator.CUMSUM)
        sub.tensors[cumsum.outputs[0]].name = b"evil\nname\x1b[2J"

    path = _edited_tflite(source, tmp_path / "evil.tflite", edit)
    line = assert_user_error(run_cli("inspect", str(path)), "unsupported op CUMSUM")
    assert "evil name\\x1b[2J" in line


def test_corrupt_field_is_judged_by_litert(tmp_path):
    """A zero stride makes tinyml's shape code divide by zero; LiteRT rejects the file too, so
    the user gets a one-line corrupt-file error naming both complaints."""
    def edit(model, schema):
        model.subgraphs[0].operators[0].builtinOptions.strideH = 0

    path = _edited_tflite(mlperf_model("kws_ref_model"), tmp_path / "stride0.tflite", edit)
    assert_user_error(run_cli("inspect", str(path)), str(path), "corrupt or invalid TFLite",
                      "LiteRT rejects it too", "stride")


def test_bug_on_a_valid_file_is_not_masked(monkeypatch):
    """If tinyml's own code fails on a file LiteRT accepts, that is a tinyml bug: it must stay
    a traceback, not be blamed on the file. The bug is injected into the importer."""
    from tinyml.frontends import load_model
    from tinyml.frontends import tflite

    def broken(self, index, op):
        raise KeyError("injected bug")

    monkeypatch.setattr(tflite._Importer, "_convert_op", broken)
    with pytest.raises(KeyError, match="injected bug"):
        load_model(mlperf_model("kws_ref_model"))


# ----------------------------------------------------------------------------------------------
# ONNX: the same summary, MACs counted from ONNX's own shape inference


def _onnx_sources(tmp_path) -> list[Path]:
    return make_onnx_sources(tmp_path)


def independent_onnx_macs(path: Path) -> int:
    """Conv: output elements x (C_in / group) x kH x kW; Gemm / MatMul with constant weights:
    output elements x K. Shapes from onnx.shape_inference (symbolic batch = 1)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    g = model.graph
    shapes = {init.name: list(init.dims) for init in g.initializer}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        shapes[v.name] = [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
    total = 0
    for node in g.node:
        if node.op_type == "Conv":
            w = shapes[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * w[1] * w[2] * w[3]
        elif node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            w = shapes[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * (w[1] if trans_b else w[0])
    assert total, "no MAC-bearing node: the check would be empty"
    return total


def test_json_macs_onnx_float_and_int8(tmp_path, capsys):
    for path in _onnx_sources(tmp_path):
        summary = inspect_json(path, capsys)
        assert summary["totals"]["macs"] == independent_onnx_macs(path)
        assert summary["totals"]["layers"] == len(summary["layers"])


def test_error_onnx_dynamic_dimension(tmp_path):
    import onnx

    model = small_onnx_model()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, path)
    assert_user_error(run_cli("inspect", str(path)), str(path), "dynamic shape", "height")
