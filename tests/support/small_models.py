"""Small models the CLI and the corruption fuzzer both read: a TFLite CNN (int8 and float,
converted by TFLiteConverter) and an ONNX CNN (float, and int8 QDQ by onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def zoo_convnet(x):
    """Every MAC-bearing op in the variants that change the count: strided SAME conv, dilated
    conv, depthwise with multiplier 2, 1x1 conv, dense on a 3-D tensor (keep_num_dims) and a
    plain dense layer."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = L.Conv2D(8, 3, dilation_rate=2, padding="valid", activation="relu")(y)
    y = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(y)
    y = L.Conv2D(12, 1)(y)
    y = L.Reshape((-1, 12))(y)
    y = L.Dense(6, activation="relu")(y)
    y = L.Flatten()(y)
    return L.Dense(5, activation="softmax")(y)


ZOO_INPUT = [(1, 20, 18, 3)]


def zoo_models() -> list[Path]:
    """The zoo model as int8 and as float TFLite files (cached by tflite_zoo)."""
    from support.tflite_zoo import convert

    return [convert(zoo_convnet, ZOO_INPUT, int8=True),
            convert(zoo_convnet, ZOO_INPUT, int8=False)]


def small_onnx_model():
    """Conv, batch norm, depthwise conv, pooling, flatten, gemm, softmax, built with
    onnx.helper (NCHW float, as PyTorch exports them)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def const(name, *shape, scale=0.3):
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    inits = [const("w1", 8, 3, 3, 3), const("b1", 8), const("g", 8), const("beta", 8),
             const("mean", 8), numpy_helper.from_array(
                 rng.uniform(0.5, 1.5, 8).astype(np.float32), "var"),
             const("w2", 8, 1, 3, 3), const("b2", 8), const("wf", 5, 8), const("bf", 5)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("MaxPool", ["c2"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["mp"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["prob"]),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def make_onnx_sources(root: Path) -> list[Path]:
    """The small CNN in float, and quantized to int8 QDQ by onnxruntime (the QDQ import path
    reads scales and zero points, which corruption reaches too)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    float_path, int8_path = root / "small_cnn.onnx", root / "small_cnn_int8.onnx"
    model = small_onnx_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # static for calibration
    onnx.save(model, float_path)

    class Samples(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.data = iter([{"x": rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)}
                              for _ in range(8)])

        def get_next(self):
            return next(self.data, None)

    quantize_static(str(float_path), str(int8_path), Samples(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    onnx.save(small_onnx_model(), float_path)  # the float source keeps its symbolic batch
    return [float_path, int8_path]
