"""The quantizer: observers, conventions, float passes, data loading, the TFLite exporter, and
quantized models checked against TFLM (every tensor, bit for bit), LiteRT (op by op) and the
generated C (``tinyml verify``).

Models are small Keras functions converted to *float* TFLite by the converter
(tests/support/tflite_zoo.py) and small ONNX graphs with batch normalizations, quantized by
tinyml on seeded data; together they reach every op the quantizer handles. The figures on real data (digits,
and MLPerf Tiny vs the TFLite converter) are in test_quantize_digits.py and
test_quantize_mlperf.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from support.onnx_cases import make_model, ort_values
from support.quantize_oracles import litert_op_differences, tflm_tensor_mismatches
from support.tflite_zoo import convert
from tinyml.errors import TinymlError
from tinyml.frontends import load_model
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.quantize import evaluate, load_dataset, quantize_model
from tinyml.quantize.observers import MinMaxObserver, MseObserver, PercentileObserver
from tinyml.quantize.params import (activation_quantization, bias_int32, dequantize_array,
                                    quantize_array, symmetric_weights)
from tinyml.quantize.prepare import prepare
from tinyml.quantize.tflite_export import export_tflite
from tinyml.reference import run


# --------------------------------------------------------------------------------------------
# Observers and parameters


def _quantization_mse(x: np.ndarray, low: float, high: float) -> float:
    q = activation_quantization(low, high)
    return float(np.mean((dequantize_array(quantize_array(x, q), q) - x) ** 2))


def _observe(observer, batches):
    for b in batches:
        observer.observe_extent(b)
    for b in batches:
        observer.observe_histogram(b)
    return observer.range()


def test_minmax_and_percentile_observers():
    rng = np.random.default_rng(0)
    batches = [rng.laplace(0, 1, 4096).astype(np.float32) for _ in range(8)]
    batches[3][7] = 40.0  # one outlier
    data = np.concatenate(batches)
    assert _observe(MinMaxObserver(), batches) == (float(data.min()), 40.0)
    low, high = _observe(PercentileObserver(), batches)
    # 99.99 % of 32768 values: about 3 clipped on each side, the outlier among them.
    assert np.count_nonzero(data > high) in range(1, 7) and high < 40.0
    assert np.count_nonzero(data < low) in range(1, 7)


def test_mse_observer_finds_the_least_error_range():
    """On heavy-tailed values (Student's t, 2 degrees of freedom) the range the MSE observer
    picks from its histogram clips the tails, quantizes the real data with less error than
    min/max, and within 5 % of the best range a brute-force search finds by really quantizing
    the data. (At 8 bits the squared error of clipping a far outlier outweighs rounding
    everything else more finely, so the gain over min/max is modest.)"""
    rng = np.random.default_rng(0)
    batches = [rng.standard_t(2, 4096).astype(np.float32) for _ in range(8)]
    data = np.concatenate(batches)
    low, high = _observe(MseObserver(), batches)
    chosen = _quantization_mse(data, low, high)
    assert high < data.max() and low > data.min()
    assert chosen < _quantization_mse(data, float(data.min()), float(data.max()))
    best = min(_quantization_mse(data, a, b)
               for a in np.linspace(data.min(), 0, 60)[:-1]
               for b in np.linspace(0, data.max(), 60)[1:])
    assert chosen <= 1.05 * best


def test_observers_keep_relu_outputs_at_zero_and_ignore_exact_zeros():
    x = np.concatenate([np.zeros(100_000), np.linspace(0.001, 5.0, 1000)]).astype(np.float32)
    for obs in (PercentileObserver(), MseObserver()):
        obs.observe_extent(x)
        obs.observe_histogram(x)
        low, high = obs.range()
        assert low == 0.0
        # Zeros are exact in int8 and must not pull the range down: a percentile over all
        # values would put 99.99 % at 0.
        assert high > 4.0


def test_activation_quantization_represents_zero_exactly():
    for low, high in [(-3.0, 5.0), (0.0, 6.0), (1.0, 2.0), (-2.0, -1.0), (-0.3, 1e3)]:
        q = activation_quantization(low, high)
        assert quantize_array(np.float32(0.0), q) == q.zero_point[0]
        assert dequantize_array(q.zero_point, q)[0] == 0.0
        lo, hi = min(low, 0.0), max(high, 0.0)
        assert np.isclose(float(q.scale[0]), (hi - lo) / 255, rtol=1e-6)
    assert activation_quantization(0.0, 6.0).zero_point[0] == -128


def test_symmetric_weights_and_bias():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (4, 3, 3, 5)).astype(np.float32)
    w[2] = 0.0
    codes, q = symmetric_weights(w, 0)
    assert q.axis == 0 and not q.zero_point.any() and q.scale[2] == 1.0
    assert codes.min() >= -127 and codes.max() <= 127
    peak = np.abs(codes.reshape(4, -1)).max(axis=1)
    assert list(peak) == [127, 127, 0, 127]
    assert np.abs(dequantize_array(codes, q) - w).max() <= q.scale.max() / 2 + 1e-7
    b_codes, b_q = bias_int32(np.array([1.0, -2.0, 0.0, 3e9]), 0.5, q.scale)
    assert b_codes.dtype == np.int32 and b_codes[3] == 2**31 - 1  # saturated
    assert np.allclose(b_q.scale, np.float32(0.5) * q.scale)
    assert b_codes[0] == round(1.0 / float(b_q.scale[0]))


# --------------------------------------------------------------------------------------------
# Float passes on ONNX graphs with batch normalization


def _bn(name, x, y, channels, rng):
    inits = {f"{name}_s": rng.uniform(0.5, 2, channels).astype(np.float32),
             f"{name}_b": rng.normal(0, 1, channels).astype(np.float32),
             f"{name}_m": rng.normal(0, 1, channels).astype(np.float32),
             f"{name}_v": rng.uniform(0.5, 2, channels).astype(np.float32)}
    node = helper.make_node("BatchNormalization", [x] + list(inits), [y], epsilon=1e-3)
    return node, inits


def bn_model() -> onnx.ModelProto:
    """Conv -> BN -> Relu (folds), MaxPool -> BN (a depthwise 1x1), a conv with padding
    that is neither SAME nor VALID, Gemm -> BN (folds into the dense layer), Relu -> BN on
    2-D (MUL + ADD)."""
    rng = np.random.default_rng(3)
    inits = {"w1": rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32),
             "w2": rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32),
             "wd": rng.normal(0, 0.2, (6, 8 * 2 * 2)).astype(np.float32),
             "bd": rng.normal(0, 0.1, 6).astype(np.float32),
             "shape": np.array([1, -1], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1])]
    for name, x, y, c in (("bn1", "c1", "b1", 8), ("bn2", "p1", "b2", 8), ("bn3", "g", "b3", 6),
                          ("bn4", "r3", "b4", 6)):
        node, extra = _bn(name, x, y, c, rng)
        inits.update(extra)
        if name == "bn1":
            nodes += [node, helper.make_node("Relu", ["b1"], ["r1"]),
                      helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2],
                                       strides=[2, 2])]
        elif name == "bn2":
            nodes += [node, helper.make_node("Conv", ["b2", "w2"], ["c2"], pads=[2, 2, 2, 2]),
                      helper.make_node("Relu", ["c2"], ["r2"]),
                      helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[3, 3],
                                       strides=[3, 3]),
                      helper.make_node("Reshape", ["p2", "shape"], ["f"]),
                      helper.make_node("Gemm", ["f", "wd", "bd"], ["g"], transB=1)]
        elif name == "bn3":
            nodes += [node, helper.make_node("Relu", ["b3"], ["r3"])]
        else:
            nodes += [node]
    return make_model(nodes, {"x": [1, 3, 12, 12]}, ["b4"], inits)


def test_batch_norm_folding_keeps_float_results(tmp_path):
    model = bn_model()
    path = tmp_path / "bn.onnx"
    onnx.save(model, path)
    graph = load_model(path)
    assert sum(op.kind == "BATCH_NORM" for op in graph.ops) == 4
    prepared, counts = prepare(graph)
    kinds = [op.kind for op in prepared.ops]
    assert "BATCH_NORM" not in kinds
    assert counts["fold_batch_norm"] == 2 and counts["batch_norm_to_affine"] == 2
    assert counts["fuse_float_activation"] >= 2
    depthwise = [op for op in prepared.ops if op.kind == "DEPTHWISE_CONV_2D"]
    assert len(depthwise) == 1 and prepared.tensors[depthwise[0].inputs[1]].shape == (1, 1, 1, 8)
    assert kinds[-2:] == ["MUL", "ADD"]
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(0, 1, (1, 3, 12, 12)).astype(np.float32)
        want = ort_values(model, {"x": x})["b4"]
        got = run(prepared, [x])[prepared.outputs[0]]
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


def test_per_channel_mul_add_fold_into_dense_layers(tmp_path):
    """tf2onnx writes Keras' BatchNormalization after a Dense layer as MUL and ADD by
    constants (MLPerf Tiny's ad01.h5): they fold into the dense layer, the ReLU after them
    too; a scalar MUL folds as well."""
    rng = np.random.default_rng(5)
    inits = {"w1": rng.normal(0, 0.3, (16, 10)).astype(np.float32),
             "b1": rng.normal(0, 0.1, 16).astype(np.float32),
             "g": rng.uniform(0.5, 2, (1, 16)).astype(np.float32),
             "h": rng.normal(0, 1, (1, 16)).astype(np.float32),
             "w2": rng.normal(0, 0.3, (4, 16)).astype(np.float32),
             "s": np.array(0.5, np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["y1"], transB=1),
             helper.make_node("Mul", ["y1", "g"], ["m"]),
             helper.make_node("Add", ["h", "m"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Gemm", ["r", "w2"], ["y2"], transB=1),
             helper.make_node("Mul", ["y2", "s"], ["out"])]
    model = make_model(nodes, {"x": [1, 10]}, ["out"], inits)
    path = tmp_path / "affine.onnx"
    onnx.save(model, path)
    prepared, counts = prepare(load_model(path))
    assert [(op.kind, op.attrs.activation) for op in prepared.ops] == [
        ("FULLY_CONNECTED", "RELU"), ("FULLY_CONNECTED", "NONE")]
    assert counts["fold_channel_affine"] == 3
    for _ in range(5):
        x = rng.normal(0, 1, (1, 10)).astype(np.float32)
        want = ort_values(model, {"x": x})["out"]
        got = run(prepared, [x])[prepared.outputs[0]]
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))


def test_quantized_batch_norm_model_runs_bit_exact_in_tflm_and_litert(tmp_path):
    path = tmp_path / "bn.onnx"
    onnx.save(bn_model(), path)
    model = quantize_model(path, "random:-2,2", samples=40)
    exported = model.to_tflite()
    imported = load_tflite_bytes(exported)
    # The conv with padding 2 on a 3x3 kernel got a PAD in front of it.
    assert [op.kind for op in imported.ops].count("PAD") == 1
    samples = _int8_samples(model, 4)
    mismatches, compared = tflm_tensor_mismatches(exported, model.graph, samples)
    assert compared >= 4 * len(model.graph.ops) and not mismatches, mismatches
    _assert_litert_close(litert_op_differences(exported, samples))


# --------------------------------------------------------------------------------------------
# Op coverage: float Keras models quantized by tinyml


def _layers():
    import tensorflow as tf
    return tf.keras.layers


def cnn_mix(x):
    """conv, depthwise (multiplier 2, ReLU6), max pool, residual ADD, average pool, MEAN,
    dense, softmax."""
    L = _layers()
    h = L.Conv2D(6, 3, padding="same", activation="relu", bias_initializer="random_normal")(x)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(h)
    h = L.MaxPooling2D(2)(h)
    y = L.Conv2D(12, 1, bias_initializer="random_normal")(h)
    h = L.ReLU()(L.Add()([h, y]))
    h = L.AveragePooling2D(2)(h)
    h = L.GlobalAveragePooling2D()(h)
    return L.Softmax()(L.Dense(5, bias_initializer="random_normal")(h))


def concat_mix(x):
    """CONCATENATION of a convolution and a max pool (which must be requantized to the
    concatenation's scale), zero padding, MUL by a constant and of two tensors, HARD_SWISH,
    LOGISTIC, TRANSPOSE."""
    import tensorflow as tf
    L = _layers()
    a = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = L.MaxPooling2D(3, strides=1, padding="same")(x)
    h = L.Concatenate()([a, b])
    h = L.ZeroPadding2D(((1, 0), (0, 1)))(h)
    h = L.Lambda(lambda t: t * tf.constant([0.5, -1.0, 2.0, 1.5, 0.25, -0.5]))(h)
    h = L.Conv2D(6, 3, bias_initializer="random_normal")(h)
    h = L.Activation(tf.keras.activations.hard_swish)(h)
    h = L.Multiply()([h, L.Conv2D(6, 1, activation="sigmoid")(h)])
    h = L.Permute((2, 1, 3))(h)
    return L.Dense(3, activation="sigmoid")(L.Flatten()(h))


CASES = {"cnn_mix": (cnn_mix, (1, 10, 10, 3)), "concat_mix": (concat_mix, (1, 9, 9, 2))}


def _float_zoo(name: str):
    build, shape = CASES[name]
    return convert(build, [shape], int8=False)


def _int8_samples(model, count: int, seed: int = 7) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    samples = [[rng.integers(-128, 128, model.graph.tensors[n].shape).astype(np.int8)
                for n in model.graph.inputs] for _ in range(count)]
    samples.append([np.full(model.graph.tensors[n].shape, v, np.int8)
                    for n, v in zip(model.graph.inputs, (-128,) * 8)])
    samples.append([np.full(model.graph.tensors[n].shape, v, np.int8)
                    for n, v in zip(model.graph.inputs, (127,) * 8)])
    return samples


def _assert_litert_close(differences: dict) -> None:
    """Op by op, LiteRT equals the reference except for 1-LSB roundings of its optimized
    convolution and dense kernels (see quantize_oracles.litert_op_differences)."""
    for (index, kind), (worst, _) in differences.items():
        assert kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and worst <= 1, \
            f"LiteRT differs from the reference on op {index} ({kind}) by {worst} LSB"


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("method", ["minmax", "mse"])
def test_quantized_zoo_model_is_bit_exact_with_tflm(name, method):
    path = _float_zoo(name)
    model = quantize_model(path, "random:-1,1", method=method, samples=30)
    kinds = {op.kind for op in model.graph.ops}
    expected = {"cnn_mix": {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "ADD",
                            "AVERAGE_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"},
                "concat_mix": {"CONCATENATION", "QUANTIZE", "PAD", "MUL", "HARD_SWISH",
                               "TRANSPOSE", "LOGISTIC"}}[name]
    assert expected <= kinds, expected - kinds
    for t in model.graph.tensors.values():
        assert t.dtype != "float32", f"{t.name} stayed float"
    exported = model.to_tflite()
    samples = _int8_samples(model, 6)
    mismatches, compared = tflm_tensor_mismatches(exported, model.graph, samples)
    assert compared >= len(samples) * len(model.graph.ops)
    assert not mismatches, f"elements differing from TFLM per tensor: {mismatches}"
    _assert_litert_close(litert_op_differences(exported, samples))


def test_quantized_model_tracks_float_and_reports_layers():
    path = _float_zoo("cnn_mix")
    model = quantize_model(path, "random:-1,1", samples=60)
    report = evaluate(model, load_dataset("random:-1,1", model.float_graph, limit=20, seed=9))
    assert report.samples == 20 and report.synthetic
    assert report.output_sqnr_db is not None and report.output_sqnr_db > 20
    assert report.top1_agreement >= 0.8
    assert len(report.layers) == len(model.graph.ops)
    assert report.worst_layer is not None
    for layer in report.layers:
        if layer.isolated_sqnr_db is not None:
            assert layer.isolated_sqnr_db > 15, layer
    # The same figure from the ORT-independent side: LiteRT's float model vs TFLM's int8.
    from support.quantize_oracles import run_float_litert, run_int8_tflm, sqnr_db
    rng = np.random.default_rng(9)
    xs = [rng.uniform(-1, 1, (1, 10, 10, 3)).astype(np.float32) for _ in range(20)]
    ours = sqnr_db(run_float_litert(path, xs), run_int8_tflm(model.to_tflite(), xs))
    assert abs(ours - report.output_sqnr_db) < 1.0


def test_bias_correction_removes_the_mean_shift():
    """With bias correction the int8 dense layer's output mean over the calibration data is
    the float one (the shift weight rounding caused is gone), without it it is not."""
    path = _float_zoo("cnn_mix")
    rng = np.random.default_rng(2)
    data = [rng.uniform(0, 1, (1, 10, 10, 3)).astype(np.float32) for _ in range(40)]
    shifts = {}
    for correct in (False, True):
        model = quantize_model(path, np.stack(data), bias_correction=correct)
        dense = next(op for op in model.graph.ops if op.kind == "FULLY_CONNECTED")
        x_name = dense.inputs[0]
        errors = []
        for x in data:
            f = run(model.float_graph, [x], keep_all=True)
            # The layer alone, on its quantized float input: only its own rounding counts.
            from tinyml.reference.kernels import KERNELS, KernelCall
            ins = model.graph.op_inputs(dense)
            values = [quantize_array(f[x_name], ins[0].quant)] + [t.data for t in ins[1:]]
            out = model.graph.tensors[dense.outputs[0]]
            y = KERNELS["FULLY_CONNECTED"](KernelCall(dense, values, ins, [out]))
            errors.append(dequantize_array(y, out.quant) - f[dense.outputs[0]])
        shifts[correct] = float(np.abs(np.mean(errors, axis=0)).mean())
    assert shifts[True] < shifts[False]


# --------------------------------------------------------------------------------------------
# The exporter on its own: converter int8 models written back unchanged in behavior


def zoo_int8_block(x):
    L = _layers()
    h = L.Conv2D(4, 3, strides=2, padding="same", activation="relu")(x)
    h = L.DepthwiseConv2D(3, padding="valid")(h)
    h = L.Reshape((-1,))(h)
    return L.Softmax()(L.Dense(6)(h))


def test_exporter_round_trips_converter_int8_model():
    path = convert(zoo_int8_block, [(1, 11, 11, 2)])
    graph = load_model(path)
    exported = export_tflite(graph)
    again = load_tflite_bytes(exported)
    assert [op.kind for op in again.ops] == [op.kind for op in graph.ops]
    assert [op.attrs for op in again.ops] == [op.attrs for op in graph.ops]
    used = {n for op in graph.ops for n in op.inputs + op.outputs if n}
    for name, t in graph.tensors.items():
        if name not in used:
            continue  # e.g. a RESHAPE's shape operand: the IR keeps it as an attribute
        u = again.tensors[name]
        assert (u.shape, u.dtype) == (t.shape, t.dtype)
        if t.is_constant:
            assert np.array_equal(u.data, t.data)
        if t.quant is not None:
            assert np.array_equal(u.quant.scale, t.quant.scale)
            assert np.array_equal(u.quant.zero_point, t.quant.zero_point)
            assert u.quant.axis == t.quant.axis
    # Buffers are 16-byte aligned in the file.
    from ai_edge_litert import schema_py_generated as schema
    m = schema.Model.GetRootAs(exported, 0)
    for i in range(1, m.BuffersLength()):
        b = m.Buffers(i)
        if b.DataLength():
            start = b._tab.Vector(b._tab.Offset(4))
            assert start % 16 == 0
    from support.oracles import tflm_interpreter
    rng = np.random.default_rng(0)
    a, b = tflm_interpreter(path, all_tensors=False), tflm_interpreter(exported, all_tensors=False)
    for _ in range(5):
        x = rng.integers(-128, 128, (1, 11, 11, 2)).astype(np.int8)
        outputs = []
        for it in (a, b):
            it.set_input(x, 0)
            it.invoke()
            outputs.append(it.get_output(0))
        assert np.array_equal(*outputs)


def test_export_refuses_ops_tflite_lacks():
    from tinyml.ir import Graph, Op, Tensor
    from tinyml.ir.ops import ClipAttrs
    g = Graph("clip")
    g.add_tensor(Tensor("x", (1, 4), "float32"))
    g.add_tensor(Tensor("y", (1, 4), "float32"))
    g.add_op(Op("CLIP", "my_clip", ["x"], ["y"], ClipAttrs(-2.0, 3.0)))
    g.inputs, g.outputs = ["x"], ["y"]
    g.finalize()
    with pytest.raises(TinymlError, match="my_clip.*CLIP.*no builtin"):
        export_tflite(g)
    # Quantized, the clip becomes a requantization TFLite has.
    model = quantize_model(g, "random:-4,4", samples=20)
    assert [op.kind for op in model.graph.ops] == ["QUANTIZE"]
    low = dequantize_array(np.int8(-128), model.graph.tensors["y"].quant)
    high = dequantize_array(np.int8(127), model.graph.tensors["y"].quant)
    assert -2.0 - 0.02 <= low <= -2.0 + 0.02 and 3.0 - 0.03 <= high <= 3.0 + 0.03


def test_hard_swish_output_scale_is_raised_to_what_tflm_accepts():
    """Inputs far below -3 make HARD_SWISH's calibrated output scale smaller than
    input_scale / 128, which TFLM refuses: the quantizer raises it just enough."""
    from tinyml.ir import Graph, Op, Tensor
    g = Graph("hswish")
    g.add_tensor(Tensor("x", (1, 16), "float32"))
    g.add_tensor(Tensor("y", (1, 16), "float32"))
    g.add_op(Op("HARD_SWISH", "hswish", ["x"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    g.finalize()
    model = quantize_model(g, "random:-1000,0.5", samples=20)
    x_q, y_q = model.graph.tensors["x"].quant, model.graph.tensors["y"].quant
    calibrated = activation_quantization(*model.calibration.ranges["y"])
    assert calibrated.scale[0] < x_q.scale[0] / 128 < y_q.scale[0] <= 1.001 * x_q.scale[0] / 128
    samples = _int8_samples(model, 5)
    mismatches, compared = tflm_tensor_mismatches(model.to_tflite(), model.graph, samples)
    assert compared and not mismatches


# --------------------------------------------------------------------------------------------
# Calibration data


def test_dataset_formats(tmp_path):
    import tensorflow as tf
    graph = load_model(_float_zoo("cnn_mix"))
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 1, (7, 10, 10, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", batch)
    assert len(load_dataset(tmp_path / "x.npy", graph)) == 7
    np.save(tmp_path / "one.npy", batch[:1])
    assert len(load_dataset(tmp_path / "one.npy", graph)) == 1
    np.savez(tmp_path / "xy.npz", images=batch, labels=np.eye(5)[[0, 1, 2, 3, 4, 0, 1]])
    data = load_dataset(tmp_path / "xy.npz", graph)
    assert list(data.labels) == [0, 1, 2, 3, 4, 0, 1]
    assert data.samples[2][0].shape == (1, 10, 10, 3)
    assert np.array_equal(data.samples[2][0][0], batch[2])
    assert len(load_dataset(tmp_path / "xy.npz", graph, limit=3)) == 3
    for cls in ("cat", "dog"):
        (tmp_path / "img" / cls).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (12, 14, 3)).astype(np.uint8)
            png = tf.io.encode_png(pixels).numpy()
            (tmp_path / "img" / cls / f"{i}.png").write_bytes(png)
    images = load_dataset(tmp_path / "img", graph, image_range=(-1.0, 1.0))
    assert len(images) == 4 and list(images.labels) == [0, 0, 1, 1]
    x = images.samples[0][0]
    assert x.shape == (1, 10, 10, 3) and x.min() >= -1.0 and x.max() <= 1.0
    onnx.save(bn_model(), tmp_path / "nchw.onnx")  # input [1, 3, 12, 12]
    nchw = load_dataset(tmp_path / "img", load_model(tmp_path / "nchw.onnx"))
    from tinyml.ir import Graph, Op, Tensor
    nhwc_graph = Graph("nhwc")
    nhwc_graph.add_tensor(Tensor("x", (1, 12, 12, 3), "float32"))
    nhwc_graph.add_tensor(Tensor("y", (1, 12, 12, 3), "float32"))
    nhwc_graph.add_op(Op("RELU", "relu", ["x"], ["y"]))
    nhwc_graph.inputs, nhwc_graph.outputs = ["x"], ["y"]
    nhwc = load_dataset(tmp_path / "img", nhwc_graph.finalize())
    assert nchw.samples[1][0].shape == (1, 3, 12, 12)
    assert np.array_equal(nchw.samples[1][0], nhwc.samples[1][0].transpose(0, 3, 1, 2))
    random = load_dataset("random:2,3", graph, limit=5)
    assert random.synthetic and len(random) == 5 and random.samples[0][0].min() >= 2.0


@pytest.mark.parametrize("spec, message", [
    ("missing.npy", "no such file"),
    ("bad_shape.npy", r"shape \[4, 7\].*input shape \[1, 10, 10, 3\]"),
    ("random:3,1", "LOW must be below HIGH"),
    ("labels.npz", "labels must be 2 class indices"),
])
def test_dataset_errors_are_clear(tmp_path, spec, message):
    graph = load_model(_float_zoo("cnn_mix"))
    np.save(tmp_path / "bad_shape.npy", np.zeros((4, 7), np.float32))
    np.savez(tmp_path / "labels.npz", x=np.zeros((2, 10, 10, 3)), y=np.zeros(3, np.int64))
    target = spec if spec.startswith("random") else tmp_path / spec
    with pytest.raises(TinymlError, match=message):
        load_dataset(target, graph)


def test_quantize_refuses_an_int8_model():
    path = convert(zoo_int8_block, [(1, 11, 11, 2)])
    with pytest.raises(TinymlError, match="already quantized"):
        quantize_model(path, "random")


# --------------------------------------------------------------------------------------------
# Command line


def tinyml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyml.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_cli_quantize_json_and_verify(tmp_path):
    path = _float_zoo("cnn_mix")
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "calib.npz", x=rng.uniform(-1, 1, (30, 10, 10, 3)).astype(np.float32),
             y=rng.integers(0, 5, 30))
    out = tmp_path / "q.tflite"
    result = tinyml("quantize", str(path), "--calib", str(tmp_path / "calib.npz"), "-o",
                    str(out), "--method", "percentile", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["method"] == "percentile" and report["calibration_samples"] == 30
    assert report["bias_correction"] is True and report["samples"] == 30
    assert 0.0 <= report["int8_accuracy"] <= 1.0 and report["float_accuracy"] is not None
    assert report["output_bytes"] == out.stat().st_size
    assert len(report["layers"]) == len(load_tflite_bytes(out.read_bytes()).ops)
    assert report["inputs"][0]["shape"] == [1, 10, 10, 3]
    verified = tinyml("verify", str(out), "--samples", "10", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["mismatched_outputs"] == 0


def test_cli_quantize_random_warns_and_prints_a_table(tmp_path):
    out = tmp_path / "q.tflite"
    result = tinyml("quantize", str(_float_zoo("concat_mix")), "--calib", "random",
                    "--calib-samples", "10", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "meaningless" in result.stderr
    assert "output SQNR" in result.stdout and "HARD_SWISH" in result.stdout
    assert out.exists()


def test_cli_compile_float_model_with_calibration(tmp_path):
    result = tinyml("compile", str(_float_zoo("cnn_mix")), "--calib", "random",
                    "--calib-samples", "10", "-o", str(tmp_path / "proj"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["macs"] > 0
    assert (tmp_path / "proj" / "model.c").exists()


def test_cli_verify_float_model_with_calibration():
    """``verify --calib`` quantizes like ``compile --calib``, then checks the generated C bit for
    bit against the reference and TFLM running the same int8 graph exported as TFLite."""
    result = tinyml("verify", str(_float_zoo("cnn_mix")), "--calib", "random",
                    "--calib-samples", "10", "--samples", "20", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mismatched_outputs"] == 0 and report["samples"] == 22
    assert report["oracle"] == "reference+tflite-micro"


def test_cli_verify_float_model_without_calibration_says_how():
    result = tinyml("verify", str(_float_zoo("cnn_mix")))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "--calib" in lines[0], result.stderr


@pytest.mark.parametrize("args, message", [
    (["--calib", "nothing.npz"], "no such file"),
    (["--calib", "random", "--method", "best"], "invalid choice"),
    (["--calib", "random", "--calib-samples", "0"], "must be positive"),
    ([], "--calib"),
])
def test_cli_quantize_errors_are_one_line(tmp_path, args, message):
    result = tinyml("quantize", str(_float_zoo("cnn_mix")), "-o", str(tmp_path / "q.tflite"),
                    *args)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyml: error: ") and message in lines[0]
    assert not (tmp_path / "q.tflite").exists()
