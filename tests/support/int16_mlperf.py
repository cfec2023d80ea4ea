"""MLPerf Tiny's keyword-spotting DS-CNN as a TFLite 16x8 model, for the slow 16x8 tests.

../shared holds the float model only as a .tflite file, which the TFLite converter cannot
re-quantize; so the same network is rebuilt in Keras (batch norm is already folded into the
convolutions there), its weights copied from the float file, and the Keras model converted
with ``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`` on a seeded
representative dataset spanning the int8 model's input range. Cached like tflite_zoo.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from support.tflite_zoo import _CACHE


def _float_data(t) -> np.ndarray:
    """A constant's float values: the file stores some convolution filters int8 (hybrid
    weights, per-tensor), which the float kernels dequantize."""
    if t.dtype == "float32":
        return t.data
    assert t.quant is not None and not t.quant.per_channel, t.name
    return ((t.data.astype(np.float32) - t.zero_point()) * np.float32(t.scale()))


def _keras_from_float(graph):
    import tensorflow as tf
    L = tf.keras.layers
    shape = graph.tensors[graph.inputs[0]].shape
    x = inputs = tf.keras.Input(shape=shape[1:], batch_size=1, name="input_00")
    for op in graph.ops:
        ins = [graph.tensors[n] for n in op.inputs]
        a = op.attrs
        act = {"RELU": "relu", "NONE": None}[getattr(a, "activation", "NONE")]
        if op.kind == "CONV_2D":
            w, b = _float_data(ins[1]), ins[2].data
            layer = L.Conv2D(w.shape[0], w.shape[1:3], strides=a.stride, padding="same",
                             activation=act)
            x = layer(x)
            layer.set_weights([w.transpose(1, 2, 3, 0), b])
        elif op.kind == "DEPTHWISE_CONV_2D":
            w, b = _float_data(ins[1]), ins[2].data
            layer = L.DepthwiseConv2D(w.shape[1:3], strides=a.stride, padding="same",
                                      activation=act)
            x = layer(x)
            layer.set_weights([w[0][..., None], b])
        elif op.kind == "AVERAGE_POOL_2D":
            x = L.AveragePooling2D(a.filter, a.stride)(x)
        elif op.kind == "RESHAPE":
            x = L.Flatten()(x)
        elif op.kind == "FULLY_CONNECTED":
            w, b = _float_data(ins[1]), ins[2].data
            layer = L.Dense(w.shape[0])
            x = layer(x)
            layer.set_weights([w.T, b])
        elif op.kind == "SOFTMAX":
            x = L.Softmax()(x)
        else:
            raise AssertionError(f"unexpected {op.kind} in the kws float model")
    return tf.keras.Model(inputs, x)


def kws_16x8(float_path: Path, int8_path: Path) -> Path:
    """The cached 16x8 conversion of the float kws model (calibrated on uniform inputs over
    the int8 model's input range)."""
    key = hashlib.sha256(Path(float_path).read_bytes() + b"v2").hexdigest()[:16]
    path = _CACHE / f"kws_16x8-{key}.tflite"
    if path.exists():
        return path
    import tensorflow as tf

    from tinyml.frontends.tflite import load_tflite
    int8_input = load_tflite(int8_path)
    t = int8_input.tensors[int8_input.inputs[0]]
    low, high = t.scale() * (-128 - t.zero_point()), t.scale() * (127 - t.zero_point())
    model = _keras_from_float(load_tflite(float_path))
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(32):
            yield [rng.uniform(low, high, t.shape).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.inference_input_type = tf.int16
    converter.inference_output_type = tf.int16
    data = converter.convert()
    _CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
