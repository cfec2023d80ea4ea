"""Reductions and normalization (MEAN over any axes, SUM, REDUCE_MAX, REDUCE_MIN, ARG_MAX,
ARG_MIN, L2_NORMALIZATION) against TFLM, on models the TFLite converter makes.

Each case checks that the converter emitted the op, then requires every tensor of tinyml's
reference to equal TFLM's bit for bit on seeded random inputs plus the all-minimum and
all-maximum inputs; then the generated C is verified on the host under ASan/UBSan (it must
equal the reference and TFLM on every output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

from support.int8_op_models import compare_all_tensors
from support.int8_op_models import edit_flatbuffer as _edit_flatbuffer
from support.int8_op_models import first_op as _first_op
from support.oracles import tflm_interpreter
from support.reduction_models import SEVERAL_SHAPE, several, several_float
from support.tflite_zoo import convert
from tinyml.errors import TinymlError
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.reference import run

SEEDS = range(4)


def _tf():
    import tensorflow as tf
    return tf


def _lambda(fn):
    return _tf().keras.layers.Lambda(fn)


# ---- models (module level: tflite_zoo caches conversions by their bytecode) -----------------

def mean_channels(x):
    return _lambda(lambda t: _tf().reduce_mean(t, axis=-1, keepdims=True))(x)


def mean_width(x):
    return _lambda(lambda t: _tf().reduce_mean(t, axis=2))(x)


def mean_height_channels(x):
    return _lambda(lambda t: _tf().reduce_mean(t, axis=[1, 3], keepdims=True))(x)


def mean_all(x):
    return _lambda(lambda t: _tf().reduce_mean(t, axis=[1, 2, 3]))(x)


def mean_3d(x):
    return _lambda(lambda t: _tf().reduce_mean(t, axis=1))(x)


def sum_channels(x):
    return _lambda(lambda t: _tf().reduce_sum(t, axis=-1, keepdims=True))(x)


def sum_image(x):
    return _lambda(lambda t: _tf().reduce_sum(t, axis=[1, 2]))(x)


def sum_height_channels(x):
    return _lambda(lambda t: _tf().reduce_sum(t, axis=[1, 3]))(x)


def sum_alternating(x):
    """Kept and reduced axes alternate: four dimensions the kernels walk unmerged."""
    return _lambda(lambda t: _tf().reduce_sum(t, axis=[1, 3], keepdims=True))(x)


def max_alternating(x):
    return _lambda(lambda t: _tf().reduce_max(t, axis=[0, 2]))(x)


def max_channels(x):
    return _lambda(lambda t: _tf().reduce_max(t, axis=-1))(x)


def max_width_keep(x):
    return _lambda(lambda t: _tf().reduce_max(t, axis=2, keepdims=True))(x)


def min_height(x):
    return _lambda(lambda t: _tf().reduce_min(t, axis=1))(x)


def min_all(x):
    return _lambda(lambda t: _tf().reduce_min(t, axis=[1, 2, 3], keepdims=True))(x)


def global_max_pool(x):
    return _tf().keras.layers.GlobalMaxPooling2D()(x)


def global_max_pool_keep(x):
    return _tf().keras.layers.GlobalMaxPooling2D(keepdims=True)(x)


def argmax_channels(x):
    return _lambda(lambda t: _tf().math.argmax(t, axis=-1, output_type=_tf().int32))(x)


def argmin_height(x):
    return _lambda(lambda t: _tf().math.argmin(t, axis=1, output_type=_tf().int32))(x)


def argmax_dense(x):
    """The classifier head users write: logits, then the class index."""
    y = _tf().keras.layers.Dense(6, bias_initializer="random_normal")(x)
    return _lambda(lambda t: _tf().math.argmax(t, axis=-1, output_type=_tf().int32))(y)


def l2_normalize_channels(x):
    return _lambda(lambda t: _tf().math.l2_normalize(t, axis=-1))(x)


def l2_normalize_conv(x):
    y = _tf().keras.layers.Conv2D(8, 3, padding="same", bias_initializer="random_normal")(x)
    return _lambda(lambda t: _tf().math.l2_normalize(t, axis=-1))(y)


@dataclass
class Case:
    build: Callable
    shape: tuple[int, ...]
    ops: tuple[str, ...]
    check: Callable | None = None
    options: dict = field(default_factory=dict)
    edit: Callable | None = None  # flatbuffer surgery: (model, schema) -> None


def _same_quantization(kind):
    def check(graph):
        op = next(o for o in graph.ops if o.kind == kind)
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        assert (x.scale(), x.zero_point()) == (y.scale(), y.zero_point())
    return check


def _finer_sum_output(model, schema):
    """SUM's output scale a third of its input's: QuantizeMultiplier's shift turns positive
    (a left shift before the high multiply), which converter-made sums never have."""
    sub, op = _first_op(model, schema, "SUM")
    x, y = (sub.tensors[i].quantization for i in (op.inputs[0], op.outputs[0]))
    y.scale = [x.scale[0] / 3]


def _left_shift(graph):
    from tinyml.reference.kernels.reductions import sum_multiplier
    op = next(o for o in graph.ops if o.kind == "SUM")
    x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    assert sum_multiplier(x.scale(), y.scale())[1] > 0


def _index_output(graph):
    op = next(o for o in graph.ops if o.kind in ("ARG_MAX", "ARG_MIN"))
    assert graph.tensors[op.outputs[0]].dtype == "int32"


CASES = {
    "mean_channels": Case(mean_channels, (1, 5, 6, 4), ("MEAN",)),
    "mean_width": Case(mean_width, (1, 5, 6, 4), ("MEAN",)),
    "mean_height_channels": Case(mean_height_channels, (1, 5, 6, 4), ("MEAN",)),
    "mean_all": Case(mean_all, (1, 5, 6, 4), ("MEAN",)),
    "mean_3d": Case(mean_3d, (1, 7, 5), ("MEAN",)),
    "sum_channels": Case(sum_channels, (1, 5, 6, 4), ("SUM",)),
    "sum_image": Case(sum_image, (1, 5, 6, 4), ("SUM",)),
    "sum_height_channels": Case(sum_height_channels, (1, 5, 6, 4), ("SUM",)),
    "sum_alternating": Case(sum_alternating, (2, 3, 4, 5), ("SUM",)),
    "max_alternating": Case(max_alternating, (2, 3, 4, 5), ("REDUCE_MAX",)),
    "sum_left_shift": Case(sum_channels, (1, 5, 6, 4), ("SUM",), _left_shift,
                           edit=_finer_sum_output),
    "max_channels": Case(max_channels, (1, 5, 6, 4), ("REDUCE_MAX",),
                         _same_quantization("REDUCE_MAX")),
    "max_width_keep": Case(max_width_keep, (1, 5, 6, 4), ("REDUCE_MAX",)),
    "min_height": Case(min_height, (1, 5, 6, 4), ("REDUCE_MIN",),
                       _same_quantization("REDUCE_MIN")),
    "min_all": Case(min_all, (1, 5, 6, 4), ("REDUCE_MIN",)),
    "global_max_pool": Case(global_max_pool, (1, 5, 6, 4), ("REDUCE_MAX",)),
    "global_max_pool_keep": Case(global_max_pool_keep, (1, 5, 6, 4), ("REDUCE_MAX",)),
    "argmax_channels": Case(argmax_channels, (1, 5, 6, 4), ("ARG_MAX",), _index_output),
    "argmin_height": Case(argmin_height, (1, 5, 6, 4), ("ARG_MIN",), _index_output),
    "argmax_dense": Case(argmax_dense, (1, 12), ("FULLY_CONNECTED", "ARG_MAX"), _index_output),
    "l2_normalize_channels": Case(l2_normalize_channels, (1, 5, 6, 4), ("L2_NORMALIZATION",)),
    "l2_normalize_conv": Case(l2_normalize_conv, (1, 6, 6, 3),
                              ("CONV_2D", "L2_NORMALIZATION")),
}


def _model(case: Case) -> bytes:
    data = convert(case.build, [case.shape], **case.options).read_bytes()
    return data if case.edit is None else _edit_flatbuffer(data, case.edit)


def _inputs(graph, seeds=SEEDS) -> list[list[np.ndarray]]:
    """Seeded random int8 inputs, then the all-minimum and all-maximum inputs."""
    t = graph.tensors[graph.inputs[0]]
    values = [np.random.default_rng(s).integers(-128, 128, t.shape).astype(np.int8)
              for s in seeds]
    values += [np.full(t.shape, -128, np.int8), np.full(t.shape, 127, np.int8)]
    return [[v] for v in values]


@pytest.mark.parametrize("name", list(CASES))
def test_reference_matches_tflm_on_every_tensor(name):
    case = CASES[name]
    data = _model(case)
    graph = load_tflite_bytes(data, name=name)
    kinds = {op.kind for op in graph.ops}
    assert set(case.ops) <= kinds, f"converter emitted {sorted(kinds)}, expected {case.ops}"
    if case.check is not None:
        case.check(graph)
    interpreter = tflm_interpreter(data)
    compared = 0
    for inputs in _inputs(graph):
        assert not compare_all_tensors(graph, interpreter, inputs), name
        compared += 1
    assert compared == len(SEEDS) + 2


# ---- the generated C ------------------------------------------------------------------------

def _model_path(case: Case, directory):
    if case.edit is None:
        return convert(case.build, [case.shape], **case.options)
    path = directory / "edited.tflite"
    path.write_bytes(_model(case))
    return path


def _host_verify(path):
    from tinyml.verify import verify
    return verify(path, "host", samples=8, sanitize=True, profile=False)


#: The cases whose C the default run verifies (the model of several reductions below covers
#: the others' kernels); every case is verified in the slow run (a few seconds each).
C_DEFAULT = ("max_alternating", "argmin_height", "sum_left_shift")


@pytest.mark.parametrize("name", [n if n in C_DEFAULT else pytest.param(n, marks=pytest.mark.slow)
                                  for n in CASES])
def test_c_matches_reference_and_tflm_under_sanitizers(name, tmp_path):
    report = _host_verify(_model_path(CASES[name], tmp_path))
    assert report.oracle == "reference+tflite-micro"
    assert report.samples == 10  # 8 random, all-minimum, all-maximum
    assert report.mismatched_outputs == 0, report.to_json()


SEVERAL = Case(several, SEVERAL_SHAPE, ("CONV_2D", "L2_NORMALIZATION", "REDUCE_MAX", "REDUCE_MIN",
                                       "SUM", "MEAN", "ARG_MAX"))


def test_several_reductions_match_tflm_on_every_tensor():
    data = _model(SEVERAL)
    graph = load_tflite_bytes(data, name="several")
    assert set(SEVERAL.ops) <= {op.kind for op in graph.ops}
    interpreter = tflm_interpreter(data)
    for inputs in _inputs(graph):
        assert not compare_all_tensors(graph, interpreter, inputs)


def test_several_reductions_verify_on_the_host_under_sanitizers():
    report = _host_verify(_model_path(SEVERAL, None))
    assert report.oracle == "reference+tflite-micro" and report.sanitized
    assert report.samples == 10
    assert report.mismatched_outputs == 0, report.to_json()


def test_several_reductions_verify_in_qemu_on_cortex_m4():
    from tinyml.verify import verify
    report = verify(_model_path(SEVERAL, None), "cortex-m4", samples=8, profile=False)
    assert report.oracle == "reference+tflite-micro"
    assert report.samples == 10
    assert report.mismatched_outputs == 0, report.to_json()


# ---- float models quantized by tinyml ---------------------------------------------------------


def test_float_model_quantized_by_tinyml_is_bit_exact_with_tflm():
    """tinyml's quantizer gives SUM and MEAN calibrated ranges, REDUCE_MAX/MIN their input's
    quantization (TFLM's requirement), L2_NORMALIZATION the fixed 1/128 scale and leaves the
    ARG indices int32; the exported file runs in TFLM equal to the reference on every tensor."""
    from support.quantize_oracles import tflm_tensor_mismatches
    from tinyml.quantize import quantize_model

    model = quantize_model(convert(several_float, [(1, 6, 6, 3)], int8=False), "random:-1,1",
                           samples=20)
    g = model.graph
    kinds = {op.kind for op in g.ops}
    assert {"SUM", "MEAN", "REDUCE_MAX", "REDUCE_MIN", "ARG_MAX", "ARG_MIN",
            "L2_NORMALIZATION"} <= kinds, kinds
    for op in g.ops:
        x, y = g.tensors[op.inputs[0]], g.tensors[op.outputs[0]]
        if op.kind in ("REDUCE_MAX", "REDUCE_MIN"):
            assert (x.scale(), x.zero_point()) == (y.scale(), y.zero_point())
        if op.kind in ("ARG_MAX", "ARG_MIN"):
            assert y.dtype == "int32" and y.quant is None
        if op.kind == "L2_NORMALIZATION":
            assert (y.scale(), y.zero_point()) == (1.0 / 128.0, 0)
    samples = _inputs(g)
    mismatches, compared = tflm_tensor_mismatches(model.to_tflite(), g, samples)
    assert compared >= len(samples) * len(g.ops)
    assert not mismatches, mismatches


def test_float_model_verifies_with_calibration_under_sanitizers():
    """``verify --calib``: tinyml quantizes the float model, compiles it, and the C equals
    the reference and TFLM (running the exported int8 graph) on every output."""
    import json
    import subprocess
    import sys
    path = convert(several_float, [(1, 6, 6, 3)], int8=False)
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "verify", str(path), "--calib",
                             "random:-1,1", "--calib-samples", "10", "--samples", "8",
                             "--sanitize", "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mismatched_outputs"] == 0 and report["samples"] == 10
    assert report["oracle"] == "reference+tflite-micro" and report["sanitized"]


# ---- what TFLM refuses is refused, with the cause and the layer --------------------------------

def argmax_int64(x):
    return _lambda(lambda t: _tf().math.argmax(t, axis=-1))(x)


def _requantize_output(kind, factor):
    def edit(model, schema):
        sub, op = _first_op(model, schema, kind)
        q = sub.tensors[op.outputs[0]].quantization
        q.scale = [q.scale[0] * factor]
    return edit


@pytest.mark.parametrize("kind, build, message", [
    ("REDUCE_MAX", max_channels, "input and output quantization differ"),
    ("L2_NORMALIZATION", l2_normalize_channels, "scale 1/128 and zero point 0"),
])
def test_quantization_tflm_refuses_is_refused(kind, build, message, tmp_path):
    """TFLM refuses REDUCE_MAX/MIN whose output is quantized unlike its input; it computes
    L2_NORMALIZATION in Q0.7 whatever the output says. The reference and the compiler refuse
    such files with one line naming the layer."""
    from tinyml.compiler import compile_model
    data = _edit_flatbuffer(_model(Case(build, (1, 5, 6, 4), (kind,))),
                            _requantize_output(kind, 2.0))
    if kind == "REDUCE_MAX":
        with pytest.raises(RuntimeError):
            interpreter = tflm_interpreter(data)
            interpreter.set_input(np.zeros((1, 5, 6, 4), np.int8), 0)
            interpreter.invoke()
    graph = load_tflite_bytes(data, name=kind)
    with pytest.raises(TinymlError, match=message):
        run(graph, [np.zeros((1, 5, 6, 4), np.int8)])
    path = tmp_path / "model.tflite"
    path.write_bytes(data)
    with pytest.raises(TinymlError, match=rf"layer '.*' \({kind}\).*{message}"):
        compile_model(path, "host", tmp_path / "out", build=False)


def test_int64_indices_are_refused_with_the_fix(tmp_path):
    """tf.math.argmax's default int64 output: TFLM fails at invoke; tinyml says so at compile
    time, in one line naming the layer and the fix."""
    import subprocess
    import sys
    path = convert(argmax_int64, [(1, 5, 6, 4)])
    interpreter = tflm_interpreter(path)
    interpreter.set_input(np.zeros((1, 5, 6, 4), np.int8), 0)
    with pytest.raises(RuntimeError):
        interpreter.invoke()
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "compile", str(path),
                             "--target", "host", "-o", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "ARG_MAX" in lines[0] and "int64" in lines[0], result.stderr
    assert "output_type=tf.int32" in lines[0]


# ---- L2_NORMALIZATION's fixed-point edges -------------------------------------------------

def l2_normalize_long(x):
    return _lambda(lambda t: _tf().math.l2_normalize(t, axis=-1))(x)


def _zero_point_127(model, schema):
    """Input zero point 127: an all -128 row then sums 9000 * 255^2 > 2^29 squares, the
    inverse square root's pre-scaling loop (TFLM reads the zero point from the tensor)."""
    sub, op = _first_op(model, schema, "L2_NORMALIZATION")
    sub.tensors[op.inputs[0]].quantization.zeroPoint = [127]


def test_l2_normalization_edges_match_tflm_in_reference_and_c(tmp_path):
    """Rows whose sum of squares is 0 or 1 (TFLM's special case), tiny (the inverse square
    root's negative shift), and above 2^29 (its pre-scaling), through TFLM, the reference
    and the generated C under the sanitizers."""
    from tinyml.compiler import compile_model
    from tinyml.sim import host
    data = _edit_flatbuffer(convert(l2_normalize_long, [(1, 9000)]).read_bytes(),
                            _zero_point_127)
    graph = load_tflite_bytes(data, name="l2_long")
    zp = graph.tensors[graph.ops[0].inputs[0]].zero_point()
    assert zp == 127
    samples = []
    for spike in (0, -1, -2, -3, -50, -255):  # acc = spike^2 (0, 1, 4, 9, ...)
        x = np.full((1, 9000), zp, np.int64)
        x[0, 17] += spike
        samples.append([x.astype(np.int8)])
    samples += [[np.full((1, 9000), -128, np.int8)], [np.full((1, 9000), 127, np.int8)]]
    samples += [[np.random.default_rng(s).integers(-128, 128, (1, 9000)).astype(np.int8)]
                for s in range(2)]
    interpreter = tflm_interpreter(data)
    expected = []
    for inputs in samples:
        assert not compare_all_tensors(graph, interpreter, inputs)
        expected.append(run(graph, inputs)[graph.outputs[0]])
    path = tmp_path / "l2_long.tflite"
    path.write_bytes(data)
    compile_model(path, "host", tmp_path / "project", build=False)
    outputs = host.run(host.build(tmp_path / "project", sanitize=True), graph, samples)
    for want, got in zip(expected, outputs):
        np.testing.assert_array_equal(got[0].reshape(want.shape), want)
    # A lone spike normalizes to -1.0: -128 in Q0.7, the rest of its row 0.
    for want, spike in zip(expected, (0, -1, -2, -3, -50, -255)):
        assert want[0, 17] == (0 if spike == 0 else -128) and not want[0, :17].any()


# ---- float TFLite models: the float reference against LiteRT ----------------------------------

@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].edit is None] + ["several"])
def test_float_reference_matches_litert(name):
    """The float kernels (what tinyml calibrates with) follow TFLite's: every output within
    1e-5 of LiteRT's range, indices equal."""
    from support.oracles import litert_interpreter, relative_error
    case = SEVERAL if name == "several" else CASES[name]
    path = convert(case.build, [case.shape], int8=False)
    graph = load_tflite_bytes(path.read_bytes(), name=name)
    assert set(case.ops) - {"CONV_2D", "FULLY_CONNECTED"} <= {op.kind for op in graph.ops}
    oracle = litert_interpreter(path)
    rng = np.random.default_rng(11)
    for _ in range(4):
        x = rng.normal(0, 1, case.shape).astype(np.float32)
        oracle.set_tensor(oracle.get_input_details()[0]["index"], x)
        oracle.invoke()
        expected = oracle.get_tensor(oracle.get_output_details()[0]["index"])
        got = run(graph, [x])[graph.outputs[0]]
        assert got.dtype == expected.dtype and got.shape == expected.shape
        if got.dtype.kind == "i":
            np.testing.assert_array_equal(got, expected)
        else:
            assert relative_error(expected, got) < 1e-5, name


@pytest.mark.slow  # the Keras frontend's worker loads TensorFlow twice: ~45 s
def test_keras_global_max_pooling_model_verifies_with_calibration(tmp_path):
    """A .keras file with GlobalMaxPooling2D (the converter's REDUCE_MAX): tinyml loads it,
    quantizes it, and the C equals the reference and TFLM running the exported graph."""
    import json
    import subprocess
    import sys
    tf = _tf()
    tf.keras.utils.set_random_seed(3)
    inputs = tf.keras.Input((8, 8, 3), batch_size=1)
    y = tf.keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    y = tf.keras.layers.GlobalMaxPooling2D()(y)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(y))
    path = tmp_path / "gmp.keras"
    model.save(path)
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "verify", str(path), "--calib",
                             "random:-1,1", "--calib-samples", "10", "--samples", "6",
                             "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mismatched_outputs"] == 0 and report["oracle"] == "reference+tflite-micro"
    inspect = subprocess.run([sys.executable, "-m", "tinyml.cli", "inspect", str(path), "--json"],
                             capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr
    assert "REDUCE_MAX" in inspect.stdout
