"""Keras frontend: .keras, .h5 (Keras 3 and legacy Keras 2) and SavedModel into the graph IR.

Oracles: the Keras model's own ``predict`` (the import is faithful to what the user trained) and
LiteRT without XNNPACK on the float flatbuffer the frontend converted (the IR computes what that
flatbuffer computes). Errors are checked through the ``tinyml`` CLI: exit status 2 and exactly
one ``tinyml: error:`` line on stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import KERAS_H5_MODELS, REPO, mlperf_model
from support.oracles import litert_interpreter, litert_run, relative_error
from tinyml.errors import ModelFormatError, ShapeError, UnsupportedOpError
from tinyml.frontends import load_model
from tinyml.frontends.keras import convert_keras, graph_from_conversion
from tinyml.reference import run

TOLERANCE = 1e-4


def _seeded_inputs(shapes, count: int, seed: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.uniform(-1, 1, shape).astype(np.float32) for shape in shapes]
            for _ in range(count)]


# ---- 1. MLPerf Tiny .h5 models (legacy Keras 2) ----------------------------------------------


@pytest.mark.parametrize("name", KERAS_H5_MODELS)
def test_mlperf_h5_matches_keras_and_litert(name):
    import tf_keras

    path = mlperf_model(name, ".h5")
    started = time.monotonic()
    conversion = convert_keras(path)
    graph = graph_from_conversion(conversion, name)
    seconds = time.monotonic() - started
    keras_model = tf_keras.models.load_model(path, compile=False)
    oracle = litert_interpreter(conversion.tflite)
    shape = graph.tensors[graph.inputs[0]].shape
    batch = np.concatenate([x[0] for x in _seeded_inputs([shape], 8, seed=2024)])
    expected = keras_model.predict(batch, verbose=0)

    # A softmax output can hide errors in the layers before it: compare the logits as well.
    last = keras_model.layers[-1]
    logits_op = None
    if graph.ops[-1].kind == "SOFTMAX" and type(last).__name__ == "Dense":
        features = tf_keras.Model(keras_model.inputs, last.input).predict(batch, verbose=0)
        kernel, bias = last.get_weights()
        keras_logits = features @ kernel + bias
        logits_op = graph.ops[-1].inputs[0]

    vs_litert = vs_keras = vs_logits = 0.0
    for i in range(len(batch)):
        x = batch[i:i + 1]
        values = run(graph, [x], keep_all=True)
        got = values[graph.outputs[0]]
        vs_litert = max(vs_litert, relative_error(litert_run(oracle, x), got))
        vs_keras = max(vs_keras, relative_error(expected[i:i + 1], got))
        if logits_op:
            vs_logits = max(vs_logits, relative_error(keras_logits[i:i + 1], values[logits_op]))
    logits = f", logits vs Keras {vs_logits:.2e}" if logits_op else ""
    print(f"{name}: load {seconds:.1f} s; max relative error vs LiteRT {vs_litert:.2e}, "
          f"vs Keras {vs_keras:.2e}{logits}")
    assert np.ptp(expected, axis=0).max() > 1e-3, "inputs do not exercise the model"
    assert vs_litert < TOLERANCE
    assert vs_keras < TOLERANCE
    assert vs_logits < TOLERANCE
    # Ops carry Keras layer names: the first conv's BatchNorm and ReLU are folded into it.
    keras_names = {layer.name for layer in keras_model.layers}
    assert all(op.name.split("/")[0] in keras_names for op in graph.ops), \
        [op.name for op in graph.ops]
    assert graph.inputs == [keras_model.layers[0].name]


# ---- 2. self-built models in every format ------------------------------------------------------


def _randomize(model, seed: int) -> None:
    """Seeded weights everywhere, with batch-norm statistics far from the identity, so that
    folding BatchNormalization into the convolutions is really exercised."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.weights:
        name, shape = w.name.split("/")[-1].split(":")[0], tuple(w.shape)
        if name in ("gamma", "moving_variance"):
            weights.append(rng.uniform(0.5, 2.0, shape))
        elif name in ("beta", "moving_mean", "bias"):
            weights.append(rng.normal(0, 0.3, shape))
        else:
            weights.append(rng.normal(0, 0.4, shape))
    model.set_weights([w.astype(np.float32) for w in weights])


def _build_cnn(K, hard_swish: bool):
    """conv/BN/ReLU6, depthwise/BN/hard-swish (Keras 3; sigmoid in tf_keras, which has no
    hard-swish), residual add, concat, max/average/global pooling, dense + sigmoid."""
    L = K.layers
    image = K.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="stem")(image)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu6")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.Activation("hard_swish" if hard_swish else "sigmoid", name="dw_act")(y)
    y = L.Conv2D(8, 1, name="pw")(y)
    z = L.Add(name="residual")([x, y])
    z = L.Concatenate(name="concat")([z, x])
    z = L.MaxPooling2D(2, name="maxpool")(z)
    a = L.AveragePooling2D(3, name="avgpool")(z)
    a = L.Flatten(name="flatten")(a)
    a = L.Dense(12, activation="relu6", name="fc1")(a)
    a = L.Dense(4, activation="sigmoid", name="fc2")(a)
    g = L.GlobalAveragePooling2D(name="gap")(z)
    g = L.Dense(3, name="gap_fc")(g)
    out = L.Concatenate(name="heads")([a, g])
    model = K.Model(image, out, name="cnn")
    _randomize(model, seed=7)
    return model


def _build_multi_io(K):
    """Two inputs, two outputs and a nested model (its layers are named backbone/...)."""
    L = K.layers
    inner_in = K.Input((8, 8, 3), name="bb_in")
    inner = L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="bb_conv")(inner_in)
    inner = L.BatchNormalization(name="bb_bn")(inner)
    backbone = K.Model(inner_in, inner, name="backbone")
    pixels = K.Input((8, 8, 3), name="pixels")
    extra = K.Input((5,), name="extra")
    f = L.GlobalAveragePooling2D(name="pool")(backbone(pixels))
    joined = L.Concatenate(name="join")([f, extra])
    logits = L.Dense(4, name="logits")(joined)
    flag = L.Dense(1, activation="sigmoid", name="flag")(extra)
    model = K.Model([pixels, extra], [logits, flag], name="multi")
    _randomize(model, seed=11)
    return model


#: name -> (library, builder, how it is saved)
CASES = {
    "keras3.keras": ("keras", "cnn", ".keras"),
    "keras3.h5": ("keras", "cnn", ".h5"),
    "keras3_export": ("keras", "cnn", "export"),
    "tf_keras.h5": ("tf_keras", "cnn", ".h5"),
    "tf_keras.keras": ("tf_keras", "cnn", ".keras"),
    "tf_keras_savedmodel": ("tf_keras", "cnn", "savedmodel"),
    "multi_io.keras": ("keras", "multi", ".keras"),
}


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Each case saved once: {case: (path, Keras model, inputs, expected outputs)}."""
    import keras
    import tf_keras

    root = tmp_path_factory.mktemp("keras_models")
    saved = {}
    for case, (library, builder, how) in CASES.items():
        K = keras if library == "keras" else tf_keras
        model = _build_cnn(K, hard_swish=library == "keras") if builder == "cnn" \
            else _build_multi_io(K)
        path = root / case
        with warnings.catch_warnings():  # "HDF5 is a legacy format"
            warnings.simplefilter("ignore")
            if how == "export":
                model.export(str(path), verbose=False)
            elif how == "savedmodel":
                model.save(str(path), save_format="tf")
            else:
                model.save(str(path))
        shapes = [(1,) + tuple(t.shape[1:]) for t in model.inputs]
        inputs = _seeded_inputs(shapes, 4, seed=99)
        batch = [np.concatenate(xs) for xs in zip(*inputs)]
        expected = model.predict(batch[0] if len(batch) == 1 else batch, verbose=0)
        expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
        saved[case] = (path, model, inputs, expected)
    return saved


@pytest.mark.parametrize("case", list(CASES))
def test_self_built_model_matches_keras(case, saved_models):
    path, model, inputs, expected = saved_models[case]
    started = time.monotonic()
    graph = load_model(path)
    seconds = time.monotonic() - started
    assert len(graph.outputs) == len(expected)
    worst = 0.0
    for i, xs in enumerate(inputs):
        values = run(graph, xs)
        for name, reference in zip(graph.outputs, expected):
            worst = max(worst, relative_error(reference[i:i + 1], values[name]))
    print(f"{case}: load {seconds:.2f} s, max relative error vs Keras {worst:.2e}")
    assert worst < TOLERANCE

    kinds = {op.kind for op in graph.ops}
    if CASES[case][1] == "cnn":
        # BatchNorm folded away, activations fused or kept as their TFLite builtins.
        assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "CONCATENATION", "MAX_POOL_2D",
                "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED", "LOGISTIC"} <= kinds
        assert "BATCH_NORM" not in kinds
        if CASES[case][0] == "keras":
            assert "HARD_SWISH" in kinds
    if CASES[case][2] != "export":  # a Keras 3 export keeps no Keras layer objects
        layer_names = {layer.name for layer in model._flatten_layers(include_self=False)}
        assert all(op.name.split("/")[0] in layer_names for op in graph.ops), \
            [op.name for op in graph.ops]
        assert graph.inputs == [t.name.split(":")[0] for t in model.inputs] or \
            graph.inputs == list(getattr(model, "input_names", []))
    if CASES[case][1] == "cnn" and CASES[case][2] != "export":
        first_conv = next(op for op in graph.ops if op.kind == "CONV_2D")
        assert first_conv.name == "stem" and first_conv.attrs.activation == "RELU6"
    if case == "multi_io.keras":
        assert graph.inputs == ["pixels", "extra"]
        assert any(op.name == "backbone/bb_conv" for op in graph.ops), \
            [op.name for op in graph.ops]


def test_converted_flatbuffer_matches_litert(saved_models):
    """The IR computes what the converted flatbuffer computes, intermediate tensors included
    (LiteRT keeps every tensor; TFLite tensor i is the i-th tensor of the IR before renaming)."""
    path, _, inputs, _ = saved_models["keras3.keras"]
    conversion = convert_keras(path)
    graph = graph_from_conversion(conversion, "cnn")
    oracle = litert_interpreter(conversion.tflite)
    names = list(graph.tensors)  # the TFLite frontend adds tensors in flatbuffer order
    worst, compared = 0.0, set()
    for xs in inputs:
        litert_run(oracle, xs[0])
        values = run(graph, xs, keep_all=True)
        for index, name in enumerate(names):
            if graph.tensors[name].is_constant or name not in values:
                continue
            worst = max(worst, relative_error(oracle.get_tensor(index), values[name]))
            compared.add(name)
    assert len(compared) >= len(graph.ops)  # every op's output, and the input
    assert worst < TOLERANCE


# ---- 3. errors ----------------------------------------------------------------------------------


def _inspect(path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyml.cli", "inspect", str(path)],
                          capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=dict(os.environ, **env))


def _assert_one_line_error(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyml: error: "), done.stderr[-2000:]
    assert done.stdout == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_cli_success_keeps_stderr_clean(saved_models):
    done = _inspect(saved_models["tf_keras.h5"][0])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "stem" in done.stdout


def test_truncated_h5(saved_models, tmp_path):
    data = saved_models["tf_keras.h5"][0].read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[:len(data) // 2])
    started = time.monotonic()
    done = _inspect(bad)
    print(f"truncated .h5 rejected in {time.monotonic() - started:.2f} s: {done.stderr.strip()}")
    _assert_one_line_error(done, str(bad), "truncated")


def test_zip_that_is_not_a_keras_archive(tmp_path):
    bad = tmp_path / "photos.keras"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("photo.jpg", b"\xff\xd8\xff\xe0 not a model")
    _assert_one_line_error(_inspect(bad), str(bad), "config.json")


def test_savedmodel_with_corrupt_pb(saved_models, tmp_path):
    bad = tmp_path / "corrupt_savedmodel"
    shutil.copytree(saved_models["tf_keras_savedmodel"][0], bad)
    pb = bytearray((bad / "saved_model.pb").read_bytes())
    pb[4:64] = b"\xff" * 60
    (bad / "saved_model.pb").write_bytes(bytes(pb))
    _assert_one_line_error(_inspect(bad), str(bad), "SavedModel")


def test_dynamic_non_batch_dimension(tmp_path):
    import keras

    L = keras.layers
    image = keras.Input((None, None, 3), name="any_size_image")
    out = L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(image)))
    model = keras.Model(image, out)
    path = tmp_path / "dynamic.keras"
    model.save(path)
    _assert_one_line_error(_inspect(path), "any_size_image", "unresolvable dynamic shape")
    # The same model as a SavedModel has no Keras config: TensorFlow's signature is checked.
    exported = tmp_path / "dynamic_savedmodel"
    model.export(str(exported), verbose=False)
    with pytest.raises(ShapeError, match="any_size_image.*unresolvable dynamic shape"):
        load_model(exported)


def test_dynamic_batch_becomes_one(saved_models):
    graph = load_model(saved_models["keras3.h5"][0])  # saved with a None batch
    assert graph.tensors[graph.inputs[0]].shape == (1, 12, 12, 3)


def test_unsupported_layer_names_op_and_keras_layer(tmp_path):
    import keras

    L = keras.layers
    image = keras.Input((6, 6, 2), name="image")
    # softsign: x / (1 + |x|), a float DIV by an activation, which tinyml does not compile
    # (TANH and GELU, used here before, are supported).
    hidden = L.Activation("softsign", name="squash")(L.Conv2D(3, 3, name="conv")(image))
    model = keras.Model(image, L.Dense(2, name="out")(L.Flatten()(hidden)))
    path = tmp_path / "softsign.keras"
    model.save(path)
    with pytest.raises(UnsupportedOpError, match="unsupported op DIV in layer 'squash'"):
        load_model(path)


def test_lambda_layer_is_refused_without_running_it(tmp_path):
    import keras

    image = keras.Input((4,), name="image")
    model = keras.Model(image, keras.layers.Lambda(lambda t: t * 2.0, name="double")(image))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(UnsupportedOpError, match="op Lambda in layer 'double'"):
        load_model(path)


def test_weights_only_h5(saved_models, tmp_path):
    path = tmp_path / "only.weights.h5"
    saved_models["keras3.keras"][1].save_weights(path)
    with pytest.raises(ModelFormatError, match="only weights"):
        load_model(path)


def test_timeout_gives_an_error_and_the_next_load_works(saved_models, monkeypatch):
    path = saved_models["tf_keras.h5"][0]
    monkeypatch.setenv("TINYML_KERAS_TIMEOUT", "0.01")
    with pytest.raises(ModelFormatError, match="did not finish within"):
        load_model(path)
    monkeypatch.delenv("TINYML_KERAS_TIMEOUT")
    assert load_model(path).ops  # a fresh worker replaces the one that was stopped
