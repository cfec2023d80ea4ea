"""Int8 reference kernels vs TFLM, op by op, on small models the TFLite converter builds.

Each case is a Keras function quantized by ``tflite_zoo.convert``; the test first checks that
the converter really emitted the op (and variant) the case is about, then runs TFLM with
every tensor preserved and requires every tensor of the reference interpreter to be equal,
bit for bit, on several seeded inputs. Paths the converter never takes (MEAN with equal input
and output quantization, CONCATENATION of differently quantized inputs) are reached by
editing the quantization of one tensor in the converted flatbuffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import numpy as np
import pytest

from oracles import tflm_interpreter
from tflite_zoo import convert
from tinyml.errors import UnsupportedOpError
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.reference import run
from tinyml.reference.fixedpoint import tflite_round

SEEDS = range(6)


# --------------------------------------------------------------------------------------------
# Models. Each build function is module-level: tflite_zoo caches conversions by its source.


def _layers():
    import tensorflow as tf
    return tf.keras.layers


def conv_same_s2(x):
    return _layers().Conv2D(6, 3, strides=2, padding="same", activation="relu",
                            bias_initializer="random_normal")(x)


def conv_valid_s2(x):
    return _layers().Conv2D(5, (3, 2), strides=2, padding="valid",
                            bias_initializer="random_normal")(x)


def conv_dilated(x):
    return _layers().Conv2D(4, 3, dilation_rate=2, padding="same", activation="relu6",
                            bias_initializer="random_normal")(x)


def conv_1x1(x):
    return _layers().Conv2D(8, 1, bias_initializer="random_normal")(x)


def conv_grouped(x):
    return _layers().Conv2D(6, 3, groups=3, padding="same", bias_initializer="random_normal")(x)


def depthwise_dilated(x):
    return _layers().DepthwiseConv2D(3, dilation_rate=2, padding="same",
                                     bias_initializer="random_normal")(x)


def depthwise_m2(x):
    return _layers().DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same",
                                     bias_initializer="random_normal")(x)


def dense_bias(x):
    return _layers().Dense(10, bias_initializer="random_normal")(x)


def dense_no_bias(x):
    return _layers().Dense(10, use_bias=False)(x)


def dense_3d(x):
    return _layers().Dense(7, bias_initializer="random_normal")(x)


def add_broadcast(x):
    L = _layers()
    per_channel = L.GlobalAveragePooling2D(keepdims=True)(
        L.Conv2D(x.shape[-1], 1, kernel_initializer="ones")(x))  # (1, 1, 1, C), another scale
    return L.Add()([x, per_channel])


def mul_broadcast(x):
    L = _layers()
    per_column = L.Conv2D(1, 1, kernel_initializer="ones")(
        L.AveragePooling2D((x.shape[1], 1))(x))  # (1, 1, W, 1), another scale
    return L.Multiply()([x, per_column])


def dense_relu(x):
    return _layers().Dense(10, activation="relu", bias_initializer="random_normal")(x)


def add_constant(x):
    import keras
    return keras.ops.add(x, np.array([0.5, -1.0, 2.0], np.float32))


def residual(x):
    L = _layers()
    y = L.Conv2D(3, 3, padding="same", activation="relu", bias_initializer="random_normal")(x)
    y = L.Conv2D(3, 3, padding="same", bias_initializer="random_normal")(y)
    return L.ReLU()(L.Add()([x, y]))


def avg_pool_same(x):
    return _layers().AveragePooling2D(3, strides=2, padding="same")(x)


def max_pool_same(x):
    return _layers().MaxPooling2D(3, strides=2, padding="same")(x)


def global_avg_pool(x):
    return _layers().GlobalAveragePooling2D()(x)


def global_avg_pool_keep(x):
    return _layers().GlobalAveragePooling2D(keepdims=True)(x)


def mean_one_axis(x):
    import keras
    return keras.ops.mean(x, axis=2, keepdims=True)


def zero_pad(x):
    L = _layers()
    return L.Conv2D(4, 3, bias_initializer="random_normal")(L.ZeroPadding2D(((1, 2), (0, 1)))(x))


def concat_same(x):
    L = _layers()
    a = L.Conv2D(4, 1, bias_initializer="random_normal")(x)
    b = L.Conv2D(3, 1, bias_initializer="random_normal")(x)
    return L.Concatenate()([a, b])


def concat_shared_input(x):
    """``a`` joins a narrow and a wide partner: it cannot have both concatenations' scales,
    so the converter requantizes it (int8 -> int8 QUANTIZE) for one of them."""
    import tensorflow as tf
    L = _layers()
    a = L.Conv2D(2, 1)(x)
    narrow = L.Conv2D(2, 1, kernel_initializer="zeros", bias_initializer="random_normal")(x)
    wide = L.Conv2D(2, 1, kernel_initializer=tf.keras.initializers.Constant(3.0))(x)
    return L.Add()([L.Concatenate()([a, narrow]), L.Concatenate()([a, wide])])


def dense_float_io(x):
    return _layers().Dense(4, bias_initializer="random_normal")(x)


@dataclass
class Case:
    build: Callable
    shapes: list[tuple[int, ...]]
    ops: tuple[str, ...]
    options: dict = field(default_factory=dict)
    check: Callable | None = None  # extra assertion on the loaded graph
    edit: Callable | None = None  # flatbuffer surgery: (model) -> None


def _op(graph, kind):
    return next(op for op in graph.ops if op.kind == kind)


def _weights_per_channel(kind, expected):
    def check(graph):
        op = _op(graph, kind)
        assert graph.tensors[op.inputs[1]].quant.per_channel is expected
    return check


def _grouped(graph):
    op = _op(graph, "CONV_2D")
    x, w = (graph.tensors[n] for n in op.inputs[:2])
    assert w.shape[3] * 3 == x.shape[3]


def _fc_bias(present, keep_num_dims=None):
    def check(graph):
        op = _op(graph, "FULLY_CONNECTED")
        has_bias = len(op.inputs) > 2 and bool(op.inputs[2])
        assert has_bias is present
        if keep_num_dims is not None:
            assert op.attrs.keep_num_dims is keep_num_dims
    return check


def _scales_differ(kind):
    def check(graph):
        op = _op(graph, kind)
        a, b = (graph.tensors[n] for n in op.inputs)
        assert a.scale() != b.scale()
        assert a.shape != b.shape  # broadcasting
    return check


def _mean(keep_dims, same_quant):
    def check(graph):
        op = _op(graph, "MEAN")
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        assert op.attrs.keep_dims is keep_dims
        assert ((x.scale(), x.zero_point()) == (y.scale(), y.zero_point())) is same_quant
    return check


def _first_op(model, schema, kind):
    sub = model.subgraphs[0]
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == getattr(
                schema.BuiltinOperator, kind):
            return sub, op
    raise AssertionError(f"no {kind} in the model")


def _widen_output(kind):
    """Quantize the first ``kind`` op's output over a 4x wider, symmetric range, so that
    its fused RELU/RELU6 clamp really cuts values (the converter calibrates outputs to the
    activation's range, where the clamp is a no-op)."""
    def edit(model, schema):
        sub, op = _first_op(model, schema, kind)
        q = sub.tensors[op.outputs[0]].quantization
        q.scale, q.zeroPoint = [q.scale[0] * 4], [0]
    return edit


def _clamps(kind, activation):
    def check(graph):
        op = _op(graph, kind)
        assert op.attrs.activation == activation
        out = graph.tensors[op.outputs[0]]
        assert out.zero_point() == 0
    return check


def _mean_output_like_input(model, schema):
    """Give MEAN's output the input's quantization (older TFLM had a separate path for it)."""
    sub, op = _first_op(model, schema, "MEAN")
    src = sub.tensors[op.inputs[0]].quantization
    dst = sub.tensors[op.outputs[0]].quantization
    dst.scale, dst.zeroPoint = list(src.scale), list(src.zeroPoint)


def _requantizes_inputs(graph):
    for concat in (op for op in graph.ops if op.kind == "CONCATENATION"):
        out = graph.tensors[concat.outputs[0]]
        for name in concat.inputs:
            t = graph.tensors[name]
            assert (t.scale(), t.zero_point()) == (out.scale(), out.zero_point())
    requantize = _op(graph, "QUANTIZE")
    x, y = graph.tensors[requantize.inputs[0]], graph.tensors[requantize.outputs[0]]
    assert x.dtype == y.dtype == "int8" and x.scale() != y.scale()


CASES = {
    "conv_same_stride2_relu": Case(conv_same_s2, [(1, 9, 10, 3)], ("CONV_2D",),
                                   check=_weights_per_channel("CONV_2D", True)),
    "conv_valid_stride2": Case(conv_valid_s2, [(1, 9, 10, 3)], ("CONV_2D",)),
    "conv_dilated_relu6": Case(conv_dilated, [(1, 9, 9, 3)], ("CONV_2D",)),
    "conv_1x1": Case(conv_1x1, [(1, 6, 6, 5)], ("CONV_2D",)),
    "conv_per_tensor": Case(conv_same_s2, [(1, 9, 10, 3)], ("CONV_2D",),
                            dict(per_channel=False),
                            check=_weights_per_channel("CONV_2D", False)),
    "conv_grouped": Case(conv_grouped, [(1, 7, 7, 6)], ("CONV_2D",), check=_grouped),
    "depthwise_multiplier2": Case(depthwise_m2, [(1, 8, 7, 3)], ("DEPTHWISE_CONV_2D",)),
    "depthwise_dilated": Case(depthwise_dilated, [(1, 9, 9, 4)], ("DEPTHWISE_CONV_2D",)),
    "dense_bias": Case(dense_bias, [(1, 24)], ("FULLY_CONNECTED",), check=_fc_bias(True)),
    "dense_no_bias": Case(dense_no_bias, [(1, 24)], ("FULLY_CONNECTED",),
                          check=_fc_bias(False)),
    "dense_per_tensor": Case(dense_bias, [(1, 24)], ("FULLY_CONNECTED",),
                             dict(per_channel=False),
                             check=_weights_per_channel("FULLY_CONNECTED", False)),
    "dense_3d_keep_num_dims": Case(dense_3d, [(1, 5, 12)], ("FULLY_CONNECTED",),
                                   check=_fc_bias(True, keep_num_dims=True)),
    "add_broadcast_scales": Case(add_broadcast, [(1, 12, 12, 6)], ("ADD",),
                                 check=_scales_differ("ADD")),
    "mul_broadcast_scales": Case(mul_broadcast, [(1, 12, 12, 6)], ("MUL",),
                                 check=_scales_differ("MUL")),
    "add_constant": Case(add_constant, [(1, 4, 4, 3)], ("ADD",)),
    "residual_add_relu": Case(residual, [(1, 12, 12, 3)], ("CONV_2D", "ADD")),
    "conv_relu_clamp": Case(conv_same_s2, [(1, 9, 10, 3)], ("CONV_2D",),
                            edit=_widen_output("CONV_2D"), check=_clamps("CONV_2D", "RELU")),
    "conv_relu6_clamp": Case(conv_dilated, [(1, 9, 9, 3)], ("CONV_2D",),
                             edit=_widen_output("CONV_2D"), check=_clamps("CONV_2D", "RELU6")),
    "dense_relu_clamp": Case(dense_relu, [(1, 24)], ("FULLY_CONNECTED",),
                             edit=_widen_output("FULLY_CONNECTED"),
                             check=_clamps("FULLY_CONNECTED", "RELU")),
    "add_relu_clamp": Case(residual, [(1, 12, 12, 3)], ("ADD",), edit=_widen_output("ADD"),
                           check=_clamps("ADD", "RELU")),
    "avg_pool_same": Case(avg_pool_same, [(1, 7, 8, 4)], ("AVERAGE_POOL_2D",)),
    "max_pool_same": Case(max_pool_same, [(1, 7, 8, 4)], ("MAX_POOL_2D",)),
    "mean_global": Case(global_avg_pool, [(1, 5, 5, 4)], ("MEAN",), check=_mean(False, False)),
    "mean_global_keep_dims": Case(global_avg_pool_keep, [(1, 5, 5, 4)], ("MEAN",),
                                  check=_mean(True, False)),
    "mean_one_axis": Case(mean_one_axis, [(1, 5, 6, 4)], ("MEAN",), check=_mean(True, False)),
    "mean_same_quantization": Case(global_avg_pool, [(1, 5, 5, 4)], ("MEAN",),
                                   check=_mean(False, True), edit=_mean_output_like_input),
    "mean_same_quantization_keep_dims": Case(global_avg_pool_keep, [(1, 5, 5, 4)], ("MEAN",),
                                             check=_mean(True, True),
                                             edit=_mean_output_like_input),
    "pad": Case(zero_pad, [(1, 5, 6, 3)], ("PAD", "CONV_2D")),
    "concat_same_scales": Case(concat_same, [(1, 4, 4, 3)], ("CONCATENATION",)),
    "concat_requantized_input": Case(concat_shared_input, [(1, 4, 4, 3)],
                                     ("QUANTIZE", "CONCATENATION"), check=_requantizes_inputs),
    "float_io_quantize_dequantize": Case(dense_float_io, [(1, 6)],
                                         ("QUANTIZE", "FULLY_CONNECTED", "DEQUANTIZE"),
                                         dict(int8_io=False)),
}


# --------------------------------------------------------------------------------------------
# Running both sides


def _model_bytes(case: Case) -> bytes:
    data = convert(case.build, case.shapes, **case.options).read_bytes()
    if case.edit is None:
        return data
    return _edit_flatbuffer(data, case.edit)


def _edit_flatbuffer(data: bytes, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model, schema)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _random_inputs(graph, rng) -> list[np.ndarray]:
    values = []
    for name in graph.inputs:
        t = graph.tensors[name]
        if t.dtype == "int8":
            values.append(rng.integers(-128, 128, t.shape).astype(np.int8))
        else:
            values.append(rng.normal(0, 2, t.shape).astype(np.float32))
    return values


def tflm_all_tensors(interpreter, inputs, count: int) -> list:
    """Invoke TFLM on every input; return each tensor's value (None where TFLM has none)."""
    for i, x in enumerate(inputs):
        interpreter.set_input(x, i)
    interpreter.invoke()
    return [interpreter.GetTensor(i, 0)["tensor_data"] for i in range(count)]


def compare_all_tensors(graph, interpreter, inputs) -> dict[str, int]:
    """Mismatching element count per tensor (empty when every tensor is bit-exact).

    The TFLite frontend creates graph tensors in flatbuffer order, so graph tensor i is
    TFLM tensor i; shapes and dtypes must agree before values are compared.
    """
    names = list(graph.tensors)
    expected = tflm_all_tensors(interpreter, inputs, len(names))
    got = run(graph, inputs, keep_all=True)
    mismatches = {}
    for name, want in zip(names, expected):
        if want is None or name not in got:
            continue
        have = np.asarray(got[name])
        assert have.shape == want.shape, f"{name}: shape {have.shape} vs TFLM {want.shape}"
        assert have.dtype == want.dtype, f"{name}: dtype {have.dtype} vs TFLM {want.dtype}"
        if have.dtype.kind == "f":
            differ = int((have.view(np.int32 if have.itemsize == 4 else np.int64)
                          != want.view(np.int32 if want.itemsize == 4 else np.int64)).sum())
        else:
            differ = int((have != want).sum())
        if differ:
            mismatches[name] = differ
    return mismatches


# --------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("name", list(CASES))
def test_int8_op_matches_tflm(name):
    case = CASES[name]
    data = _model_bytes(case)
    graph = load_tflite_bytes(data, name=name)
    kinds = {op.kind for op in graph.ops}
    assert set(case.ops) <= kinds, f"converter emitted {sorted(kinds)}, expected {case.ops}"
    if case.check is not None:
        case.check(graph)
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    for seed in SEEDS:
        inputs = _random_inputs(graph, np.random.default_rng(seed))
        for tensor, count in compare_all_tensors(graph, interpreter, inputs).items():
            total[tensor] = total.get(tensor, 0) + count
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"


def test_concatenation_of_differently_quantized_inputs_is_refused_like_tflm():
    """TFLM rejects an int8 CONCATENATION whose inputs are quantized differently from its
    output; so does the reference, with a one-line error naming the layer."""
    def rescale_first_input(model, schema):
        sub, op = _first_op(model, schema, "CONCATENATION")
        q = sub.tensors[op.inputs[0]].quantization
        q.scale = [q.scale[0] * 2]

    data = _edit_flatbuffer(_model_bytes(CASES["concat_same_scales"]), rescale_first_input)
    with pytest.raises(RuntimeError):
        tflm_interpreter(data)
    graph = load_tflite_bytes(data, name="concat")
    x = np.zeros(graph.tensors[graph.inputs[0]].shape, np.int8)
    with pytest.raises(UnsupportedOpError, match="CONCATENATION.*quantized differently"):
        run(graph, [x])


def test_float_quantize_rounds_ties_like_tflm():
    """QUANTIZE float -> int8 at the rounding boundaries: inputs whose x/scale is a half
    integer (ties go away from zero) and their float32 neighbours on both sides."""
    case = CASES["float_io_quantize_dequantize"]
    data = _model_bytes(case)
    graph = load_tflite_bytes(data, name="float_io")
    quantize = _op(graph, "QUANTIZE")
    scale = np.float32(graph.tensors[quantize.outputs[0]].scale())
    halves = (np.arange(-40, 40, dtype=np.float32) + np.float32(0.5)) * scale
    values = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)),
                             np.nextafter(halves, np.float32(-np.inf))])
    shape = graph.tensors[graph.inputs[0]].shape
    values = np.resize(values, (-(-values.size // shape[-1]), shape[-1])).astype(np.float32)
    interpreter = tflm_interpreter(data)
    total = 0
    for row in values:
        total += sum(compare_all_tensors(graph, interpreter, [row.reshape(shape)]).values())
    assert total == 0, f"{total} elements differ from TFLM"


def test_tflite_round_rounds_the_exact_value():
    """``TfLiteRound`` is std::round of the exact value. Adding 0.5 in float32 first is wrong
    for 0.49999997 (the sum rounds up to 1.0); exact rational arithmetic is the oracle."""
    rng = np.random.default_rng(7)
    below_half = np.nextafter(np.float32(0.5), np.float32(0))
    values = np.concatenate([
        np.float32([below_half, -below_half, 0.5, -0.5, 1.5, -2.5, 8388607.5, -8388609.0]),
        (rng.integers(-300, 300, 200) + np.float32(0.5)).astype(np.float32),
        rng.normal(0, 100, 200).astype(np.float32)])
    expected = [math.copysign(math.floor(abs(Fraction(float(v))) + Fraction(1, 2)), v)
                for v in values]
    assert tflite_round(values).tolist() == expected
    assert [tflite_round(v) for v in values] == expected
    assert tflite_round(values.astype(np.float64)).tolist() == expected
