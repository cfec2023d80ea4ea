"""Models of the nonlinear int8 ops (SOFTMAX, LOGISTIC, HARD_SWISH, RELU, RELU6), checked
against TFLM on the exact input values TFLM saw.

The converter quantizes each one-op Keras model with one of :data:`CALIBRATIONS` (input
scales orders of magnitude apart); flatbuffer edits reach what it never writes (a softmax
beta other than 1, chosen input and output quantization). :class:`Oracle` loads a model in
tinyml and in TFLM and counts, per tensor, the elements that differ.
"""

from __future__ import annotations

import numpy as np

from support.int8_op_models import edit_flatbuffer
from support.oracles import tflm_interpreter
from support.tflite_zoo import convert
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.reference import run
from tinyml.reference.kernels import KERNELS, KernelCall


#: All 256 int8 codes in one 1x16x16x1 input.
ALL_CODES = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)


#: Representative datasets, input ranges orders of magnitude apart (one lambda per line).
CALIBRATIONS = {
    "tiny": lambda r, s: r.uniform(-0.02, 0.02, s),
    "unit": lambda r, s: r.normal(0.0, 1.0, s),
    "skewed": lambda r, s: r.uniform(-1.0, 7.0, s),
    "negative": lambda r, s: r.uniform(-12.0, 2.0, s),
    "wide": lambda r, s: r.uniform(-30.0, 30.0, s),
    "huge": lambda r, s: r.uniform(-500.0, 500.0, s),
}


def sigmoid(x):
    import tensorflow as tf
    return tf.keras.layers.Activation("sigmoid")(x)


def hard_swish(x):
    import tensorflow as tf
    return tf.keras.layers.Activation(tf.keras.activations.hard_swish)(x)


def relu(x):
    import tensorflow as tf
    return tf.keras.layers.ReLU()(x)


def relu6(x):
    import tensorflow as tf
    return tf.keras.layers.ReLU(6.0)(x)


def softmax(x):
    import tensorflow as tf
    return tf.keras.layers.Softmax(axis=-1)(x)


def dense_softmax(x):
    import tensorflow as tf
    small = tf.keras.initializers.RandomNormal(stddev=0.08, seed=3)
    logits = tf.keras.layers.Dense(12, kernel_initializer=small, bias_initializer=small)(x)
    return tf.keras.layers.Softmax()(logits)


ELEMENTWISE = {"LOGISTIC": sigmoid, "HARD_SWISH": hard_swish, "RELU": relu, "RELU6": relu6}


NONLINEAR = ("SOFTMAX", "LOGISTIC", "HARD_SWISH", "RELU", "RELU6", "CLIP")


def set_softmax_beta(data: bytes, beta: float) -> bytes:
    """The same model with every SOFTMAX's beta set to ``beta``."""
    def edit(model, schema):
        for op in model.subgraphs[0].operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) == \
                    schema.BuiltinOperator.SOFTMAX:
                op.builtinOptions.beta = beta
    return edit_flatbuffer(data, edit)


def set_quantization(data: bytes, edits: dict[str, tuple[float, int]]) -> bytes:
    """The same model with new (scale, zero point) for the graph "input" and/or "output"."""
    def edit(model, schema):
        sub = model.subgraphs[0]
        for which, (scale, zero_point) in edits.items():
            index = (sub.inputs if which == "input" else sub.outputs)[0]
            q = sub.tensors[index].quantization
            q.scale, q.zeroPoint = [float(np.float32(scale))], [int(zero_point)]
    return edit_flatbuffer(data, edit)


class Oracle:
    """A model loaded by tinyml and by TFLM (every tensor preserved)."""

    def __init__(self, data: bytes, name: str):
        self.graph = load_tflite_bytes(data, name=name)
        self.tflm = tflm_interpreter(data)

    def kinds(self) -> list[str]:
        return [op.kind for op in self.graph.ops]

    def tflm_tensors(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor TFLM computed for input ``x``, by graph tensor name (the frontend
        creates graph tensors in flatbuffer order)."""
        self.tflm.set_input(x, 0)
        self.tflm.invoke()
        values = {}
        for i, name in enumerate(self.graph.tensors):
            value = self.tflm.GetTensor(i, 0)["tensor_data"]
            if value is not None:
                values[name] = np.asarray(value).reshape(self.graph.tensors[name].shape)
        return values

    def mismatches(self, x: np.ndarray) -> dict[str, int]:
        """Mismatching elements per output tensor of every nonlinear op, each op fed with
        TFLM's own input values; plus, for graphs of nonlinear ops only, every tensor of an
        end-to-end reference run."""
        expected = self.tflm_tensors(x)
        counts: dict[str, int] = {}
        for op in self.graph.ops:
            if op.kind not in NONLINEAR:
                continue
            call = KernelCall(op, [expected[n] for n in op.inputs], self.graph.op_inputs(op),
                              self.graph.op_outputs(op))
            got = KERNELS[op.kind](call)
            counts[f"{op.kind}:{op.outputs[0]}"] = count_differences(got, expected[op.outputs[0]])
        if all(op.kind in NONLINEAR for op in self.graph.ops):
            values = run(self.graph, [x], keep_all=True)
            for name, value in values.items():
                counts[name] = counts.get(name, 0) + count_differences(value, expected[name])
        return counts


def count_differences(got: np.ndarray, expected: np.ndarray) -> int:
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape and got.dtype == expected.dtype, (got.dtype, expected.dtype)
    return int(np.count_nonzero(got != expected))


def model_bytes(build, shape, calibration="unit", beta=None) -> bytes:
    data = convert(build, [shape], calibration=CALIBRATIONS[calibration]).read_bytes()
    return data if beta is None else set_softmax_beta(data, beta)


def oracle_of(build, shape, calibration="unit", beta=None) -> Oracle:
    return Oracle(model_bytes(build, shape, calibration, beta),
                  name=f"{build.__name__}_{calibration}")


def random_quantization(kind: str, rng: np.random.Generator) -> dict[str, tuple[float, int]]:
    """Input (and, where TFLM allows any, output) quantization drawn over a wide range."""
    scale = 10 ** rng.uniform(-4, 1)
    edits = {"input": (scale, int(rng.integers(-128, 128)))}
    if kind in ("RELU", "RELU6"):
        edits["output"] = (scale * 10 ** rng.uniform(-1.5, 1.5), int(rng.integers(-128, 128)))
    elif kind == "HARD_SWISH":  # TFLM requires output_scale >= input_scale / 128
        edits["output"] = (scale * 10 ** rng.uniform(-2, 1), int(rng.integers(-128, 128)))
    return edits


def softmax_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """int8 inputs whose rows (last axis) mix saturated and spread-out distributions."""
    depth = shape[-1]
    rows = []
    for _ in range(int(np.prod(shape[:-1]))):
        pattern = rng.integers(6)
        if pattern == 0:  # anything
            row = rng.integers(-128, 128, depth)
        elif pattern == 1:  # a narrow spread around a random level: many classes count
            width = int(rng.choice([1, 3, 8, 20]))
            row = rng.integers(-128, 128 - width) + rng.integers(0, width + 1, depth)
        elif pattern == 2:  # one clear winner
            row = np.full(depth, rng.integers(-128, 0))
            row[rng.integers(depth)] = 127
        elif pattern == 3:  # all equal
            row = np.full(depth, rng.integers(-128, 128))
        elif pattern == 4:  # ties at the maximum
            row = rng.integers(-128, 100, depth)
            row[rng.choice(depth, size=max(2, depth // 3), replace=False)] = 100
        else:  # extremes only
            row = rng.choice([-128, 127], depth)
        rows.append(row)
    return np.clip(np.stack(rows), -128, 127).astype(np.int8).reshape(shape)


SOFTMAX_SHAPES = {"1d": (10,), "2d": (1, 10), "4d": (1, 3, 4, 16), "wide": (2, 300)}
