"""The binary family (SUB, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, the comparisons, SELECT_V2,
LOGICAL_AND/OR/NOT) against TFLM, ONNX Runtime and its own C kernels.

Models come from the TFLite converter (small Keras functions, tests/tflite_zoo.py) and from
hand-built ONNX graphs run by onnxruntime. For each TFLite model the test first checks the
converter emitted the ops the case is about, then requires every tensor of the reference
interpreter to equal TFLM's, bit for bit, on seeded random inputs and on the all-minimum and
all-maximum inputs; the C kernels are then run on TFLM's own tensors (test_kernels_c's
harness, under ASan and UBSan) and must reproduce them.
"""

from __future__ import annotations

import numpy as np
import pytest

from oracles import tflm_interpreter
from test_kernels_c import check_graph, harness  # noqa: F401  (the fixture)
from test_reference_int8_ops import _edit_flatbuffer, compare_all_tensors, tflm_all_tensors
from tflite_zoo import convert
from tinyml.frontends.tflite import load_tflite_bytes

SEEDS = range(4)


# --------------------------------------------------------------------------------------------
# Models (module level: tflite_zoo caches conversions by the function's code)


def _tf():
    import tensorflow as tf
    return tf


def _lambda(fn):
    return _tf().keras.layers.Lambda(fn)


def sub_relu_broadcast(x, y):
    """SUB of a per-channel tensor with its fused RELU, and a same-shape SUB."""
    L = _tf().keras.layers
    per_channel = L.GlobalAveragePooling2D(keepdims=True)(y)
    return L.ReLU()(L.Subtract()([x, per_channel])), L.Subtract()([y, x])


def max_min(x, y):
    """MAXIMUM and MINIMUM, same shape and broadcast (a row against the image)."""
    import keras
    row = keras.layers.AveragePooling2D((x.shape[1], 1))(y)   # (1, 1, W, C)
    return keras.ops.maximum(x, y), keras.ops.minimum(row, x)


def squared_difference(x, y):
    tf = _tf()
    per_channel = tf.keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
    return (_lambda(lambda t: tf.math.squared_difference(t[0], t[1]))([x, y]),
            _lambda(lambda t: tf.math.squared_difference(t[0], t[1]))([per_channel, x]))


def comparisons_select(x, y):
    """The comparisons, combined by the logical ops into SELECT_V2 conditions; one bool
    output and two broadcasting selections. (The converter leaves an int8 NOT_EQUAL in
    float: :func:`equal_to_not_equal` makes one.)"""
    tf = _tf()

    def body(t):
        a, b = t
        col = tf.reduce_mean(b, axis=2, keepdims=True)            # (1, H, 1, C)
        g, ge = tf.greater(a, b), tf.greater_equal(a, col)
        lt, le = tf.less(a, col), tf.less_equal(b, a)
        either = tf.logical_or(tf.logical_and(g, ge), tf.logical_and(lt, le))
        mask = tf.logical_or(either, tf.equal(a, b))
        return tf.logical_not(mask), tf.where(mask, a, col), tf.where(ge, col, a)

    return _lambda(body)([x, y])


def mixed(x, y):
    """Several ops of the family in one model (QEMU, sanitizers, tinyml's quantizer): SUB
    with RELU, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, comparisons (one against a constant),
    logical ops, SELECT_V2, and a bool output."""
    tf = _tf()

    def body(t):
        a, b = t
        col = tf.reduce_mean(b, axis=2, keepdims=True)
        d = tf.nn.relu(a - col)
        hi, lo = tf.maximum(a, b), tf.minimum(col, a)
        sq = tf.math.squared_difference(hi, lo)
        mask = tf.logical_or(tf.greater(sq, d), tf.less_equal(a, -0.25))
        return tf.where(mask, hi, col), tf.logical_and(tf.greater_equal(d, lo), mask)

    return _lambda(body)([x, y])


MIXED_OPS = {"SUB", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "GREATER", "LESS_EQUAL",
             "GREATER_EQUAL", "LOGICAL_OR", "LOGICAL_AND", "SELECT_V2"}


def equal_to_not_equal(model, schema):
    """Turn the converter's int8 EQUAL into NOT_EQUAL (same operands, same TFLM prepare)."""
    for code in model.operatorCodes:
        if code.builtinCode == schema.BuiltinOperator.EQUAL:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.NOT_EQUAL


SHAPES = [(1, 5, 6, 3), (1, 5, 6, 3)]
#: name: (build, ops the converted model must contain, flatbuffer edit)
CASES = {
    "sub": (sub_relu_broadcast, {"SUB"}, None),
    "max_min": (max_min, {"MAXIMUM", "MINIMUM"}, None),
    "squared_difference": (squared_difference, {"SQUARED_DIFFERENCE"}, None),
    "comparisons_select": (comparisons_select,
                           {"GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL",
                            "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "SELECT_V2"}, None),
    "not_equal": (comparisons_select, {"NOT_EQUAL"}, equal_to_not_equal),
    "mixed": (mixed, MIXED_OPS, None),
}


def _calibration(rng, shape):
    """Inputs of different ranges, so the two operands get different scales."""
    return rng.normal(0, 1, shape) * (1.0 + 0.5 * (shape[-1] % 2)) + 0.1


def model_bytes(name: str) -> bytes:
    build, _, edit = CASES[name]
    data = convert(build, SHAPES, calibration=_calibration).read_bytes()
    return data if edit is None else _edit_flatbuffer(data, edit)


def input_sets(graph, seeds=SEEDS) -> list[list[np.ndarray]]:
    """Seeded random int8 inputs, then the all-minimum and all-maximum ones, then inputs
    whose codes are equal (the comparisons' ties)."""
    shapes = [graph.tensors[n].shape for n in graph.inputs]
    sets = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        sets.append([rng.integers(-128, 128, s).astype(np.int8) for s in shapes])
    sets.append([np.full(s, -128, np.int8) for s in shapes])
    sets.append([np.full(s, 127, np.int8) for s in shapes])
    tie = np.random.default_rng(99).integers(-128, 128, shapes[0]).astype(np.int8)
    sets.append([tie.reshape(s) if s == shapes[0] else np.zeros(s, np.int8) for s in shapes])
    return sets


# --------------------------------------------------------------------------------------------
# TFLite int8: reference and C kernels against TFLM


@pytest.mark.parametrize("name", list(CASES))
def test_int8_matches_tflm_on_every_tensor(name, harness):  # noqa: F811
    data = model_bytes(name)
    graph = load_tflite_bytes(data, name=name)
    kinds = {op.kind for op in graph.ops}
    assert CASES[name][1] <= kinds, f"converter emitted {sorted(kinds)}"
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    samples = []
    compared = 0
    for inputs in input_sets(graph):
        for tensor, count in compare_all_tensors(graph, interpreter, inputs).items():
            total[tensor] = total.get(tensor, 0) + count
        values = tflm_all_tensors(interpreter, inputs, len(graph.tensors))
        sample = {n: v for n, v in zip(graph.tensors, values) if v is not None}
        compared = len(sample)
        samples.append(sample)
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"
    assert compared >= len(graph.ops)
    bad = {k: v for k, v in check_graph(harness, graph, samples, name).items() if v}
    assert not bad, f"{name}: C kernels differing from TFLM: {bad}"


# --------------------------------------------------------------------------------------------
# Whole models: generated C on the host (sanitizers) and in QEMU


def _model_file(tmp_path, name: str):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(model_bytes(name))
    return path


def test_mixed_model_verifies_on_host_under_sanitizers(tmp_path):
    from tinyml.verify import verify
    report = verify(_model_file(tmp_path, "mixed"), "host", samples=20, sanitize=True)
    assert report.oracle == "reference+tflite-micro" and report.sanitized
    assert report.samples == 22 and report.mismatched_outputs == 0


def test_mixed_model_verifies_in_qemu_cortex_m4(tmp_path):
    from tinyml.verify import verify
    report = verify(_model_file(tmp_path, "mixed"), "cortex-m4", samples=10, profile=False)
    assert report.oracle == "reference+tflite-micro"
    assert report.samples == 12 and report.mismatched_outputs == 0
    assert report.measured["instructions_per_inference"] > 0


# --------------------------------------------------------------------------------------------
# Float models: the float reference against LiteRT, tinyml's quantizer against TFLM


def _float_model():
    return convert(mixed, SHAPES, int8=False)


def test_float_reference_matches_litert():
    from oracles import litert_interpreter
    from tinyml.frontends import load_model
    from tinyml.reference import run
    path = _float_model()
    graph = load_model(path)
    assert MIXED_OPS <= {op.kind for op in graph.ops}
    it = litert_interpreter(path)
    rng = np.random.default_rng(3)
    for _ in range(4):
        xs = [rng.normal(0, 1, s).astype(np.float32) for s in SHAPES]
        for detail, x in zip(it.get_input_details(), xs):
            it.set_tensor(detail["index"], x)
        it.invoke()
        ours = run(graph, xs)
        for detail, name in zip(it.get_output_details(), graph.outputs):
            want = it.get_tensor(detail["index"])
            assert ours[name].dtype == want.dtype
            np.testing.assert_allclose(ours[name], want, rtol=1e-6, atol=1e-6)


def test_float_model_quantized_by_tinyml_is_bit_exact_with_tflm():
    from quantize_oracles import tflm_tensor_mismatches
    from tinyml.quantize import quantize_model
    model = quantize_model(_float_model(), "random:-1,1", samples=30)
    kinds = {op.kind for op in model.graph.ops}
    assert MIXED_OPS <= kinds, MIXED_OPS - kinds
    for t in model.graph.tensors.values():
        assert t.dtype in ("int8", "int32", "bool"), f"{t.name} is {t.dtype}"
    for op in model.graph.ops:  # "shared": codes are compared or copied, never rescaled
        if op.kind in ("MAXIMUM", "MINIMUM", "SELECT_V2"):
            quants = {(model.graph.tensors[n].scale(), model.graph.tensors[n].zero_point())
                      for n in op.inputs + op.outputs if model.graph.tensors[n].dtype == "int8"}
            assert len(quants) == 1, (op.name, quants)
    samples = input_sets(model.graph)
    mismatches, compared = tflm_tensor_mismatches(model.to_tflite(), model.graph, samples)
    assert compared >= len(samples) * len(model.graph.ops)
    assert not mismatches, f"elements differing from TFLM per tensor: {mismatches}"
