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
