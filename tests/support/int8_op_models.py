"""The int8 op zoo: small Keras models the TFLite converter quantizes, one op (and variant) each.

Each :class:`Case` names the ops the converter must emit for it and, where needed, a check
of the variant (per-channel weights, bias present, ...). Paths the converter never takes (MEAN
with equal input and output quantization, CONCATENATION of differently quantized inputs) are
reached by editing the converted flatbuffer (:func:`edit_flatbuffer`). The reference
interpreter is compared with TFLM on every tensor by :func:`compare_all_tensors`; the C
kernels and the Cortex-M builds reuse the same models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from support.tflite_zoo import convert
from tinyml.reference import run


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


def op_of_kind(graph, kind):
    return next(op for op in graph.ops if op.kind == kind)


def _weights_per_channel(kind, expected):
    def check(graph):
        op = op_of_kind(graph, kind)
        assert graph.tensors[op.inputs[1]].quant.per_channel is expected
    return check


def _grouped(graph):
    op = op_of_kind(graph, "CONV_2D")
    x, w = (graph.tensors[n] for n in op.inputs[:2])
    assert w.shape[3] * 3 == x.shape[3]


def _fc_bias(present, keep_num_dims=None):
    def check(graph):
        op = op_of_kind(graph, "FULLY_CONNECTED")
        has_bias = len(op.inputs) > 2 and bool(op.inputs[2])
        assert has_bias is present
        if keep_num_dims is not None:
            assert op.attrs.keep_num_dims is keep_num_dims
    return check


def _scales_differ(kind):
    def check(graph):
        op = op_of_kind(graph, kind)
        a, b = (graph.tensors[n] for n in op.inputs)
        assert a.scale() != b.scale()
        assert a.shape != b.shape  # broadcasting
    return check


def _mean(keep_dims, same_quant):
    def check(graph):
        op = op_of_kind(graph, "MEAN")
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        assert op.attrs.keep_dims is keep_dims
        assert ((x.scale(), x.zero_point()) == (y.scale(), y.zero_point())) is same_quant
    return check


def first_op(model, schema, kind):
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
        sub, op = first_op(model, schema, kind)
        q = sub.tensors[op.outputs[0]].quantization
        q.scale, q.zeroPoint = [q.scale[0] * 4], [0]
    return edit


def _clamps(kind, activation):
    def check(graph):
        op = op_of_kind(graph, kind)
        assert op.attrs.activation == activation
        out = graph.tensors[op.outputs[0]]
        assert out.zero_point() == 0
    return check


def _mean_output_like_input(model, schema):
    """Give MEAN's output the input's quantization (older TFLM had a separate path for it)."""
    sub, op = first_op(model, schema, "MEAN")
    src = sub.tensors[op.inputs[0]].quantization
    dst = sub.tensors[op.outputs[0]].quantization
    dst.scale, dst.zeroPoint = list(src.scale), list(src.zeroPoint)


def _requantizes_inputs(graph):
    for concat in (op for op in graph.ops if op.kind == "CONCATENATION"):
        out = graph.tensors[concat.outputs[0]]
        for name in concat.inputs:
            t = graph.tensors[name]
            assert (t.scale(), t.zero_point()) == (out.scale(), out.zero_point())
    requantize = op_of_kind(graph, "QUANTIZE")
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


def model_bytes(case: Case) -> bytes:
    data = convert(case.build, case.shapes, **case.options).read_bytes()
    if case.edit is None:
        return data
    return edit_flatbuffer(data, case.edit)


def edit_flatbuffer(data: bytes, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model, schema)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def random_inputs(graph, rng) -> list[np.ndarray]:
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
