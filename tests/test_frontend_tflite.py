"""TFLite frontend: every tensor and op of the MLPerf models as LiteRT sees them."""

import numpy as np
import pytest

from conftest import FLOAT_TFLITE_MODELS, INT8_MODELS, mlperf_model
from tinyml.errors import ModelFormatError, UnsupportedOpError
from tinyml.frontends import load_model
from tinyml.frontends.tflite import load_tflite_bytes


@pytest.mark.parametrize("name", INT8_MODELS + FLOAT_TFLITE_MODELS)
def test_tensors_and_ops_agree_with_litert(name):
    from ai_edge_litert.interpreter import Interpreter
    path = mlperf_model(name)
    graph = load_model(path)
    litert = Interpreter(model_path=str(path))
    details = sorted(litert.get_tensor_details(), key=lambda d: d["index"])
    tensors = list(graph.tensors.values())
    assert len(tensors) == len(details)
    for t, d in zip(tensors, details):
        assert t.shape == tuple(d["shape"]), t.name
        assert np.dtype(d["dtype"]).name == t.dtype, t.name
        q = d["quantization_parameters"]
        if len(q["scales"]):
            np.testing.assert_array_equal(t.quant.scale, q["scales"])
            np.testing.assert_array_equal(t.quant.zero_point, q["zero_points"])
            if len(q["scales"]) > 1:
                assert t.quant.axis == q["quantized_dimension"]
        else:
            assert t.quant is None, t.name
    ops = litert._get_ops_details()
    assert [op.kind for op in graph.ops] == [
        {"SQUEEZE": "RESHAPE", "PADV2": "PAD"}.get(o["op_name"], o["op_name"]) for o in ops]
    # Constants carry the bytes LiteRT holds.
    for t, d in zip(tensors, details):
        if t.is_constant:
            np.testing.assert_array_equal(t.data, litert.get_tensor(d["index"]))


def test_bundled_example_imports():
    from conftest import REPO
    graph = load_model(REPO / "examples" / "tiny_kws_int8.tflite")
    assert graph.tensors[graph.inputs[0]].shape == (1, 49, 10, 1)
    assert graph.tensors[graph.outputs[0]].shape == (1, 4)
    # Keras Flatten with a dynamic batch: SHAPE/STRIDED_SLICE/PACK resolve at shape inference.
    reshape = next(op for op in graph.ops if op.kind == "RESHAPE")
    assert graph.tensors[reshape.outputs[0]].shape == (1, 16)


def test_unsupported_op_names_op_and_layer():
    from support.tflite_zoo import convert
    import tensorflow as tf

    def cumulative(x):
        return tf.keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=-1))(
            tf.keras.layers.Dense(4)(x))

    path = convert(cumulative, [(1, 8)], int8=False)
    with pytest.raises(UnsupportedOpError) as err:
        load_model(path)
    message = str(err.value)
    assert "CUMSUM" in message and "layer '" in message and "CONV_2D" in message
    assert "\n" not in message


def test_truncated_and_foreign_bytes():
    data = (mlperf_model("ad01_int8")).read_bytes()
    with pytest.raises(ModelFormatError, match="corrupt or truncated"):
        load_tflite_bytes(data[: len(data) // 3], "ad01_int8")
    with pytest.raises(ModelFormatError, match="not a TFLite flatbuffer"):
        load_tflite_bytes(b"\x00" * 64, "zeros")
