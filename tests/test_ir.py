"""Graph IR: building, topological order, shape inference, validation, printing."""

import numpy as np
import pytest

from tinyml.errors import GraphError, ShapeError
from tinyml.ir import Graph, Op, Quantization, Tensor
from tinyml.ir import ops as irops


def _conv_graph(order_reversed=False, padding=(1, 1, 1, 1), stride=(1, 1)):
    g = Graph("t")
    g.add_tensor(Tensor("x", (1, 8, 8, 3), "float32"))
    g.add_tensor(Tensor("w", (4, 3, 3, 3), "float32", data=np.ones((4, 3, 3, 3), np.float32)))
    g.add_tensor(Tensor("y", (), "float32"))
    g.add_tensor(Tensor("z", (), "float32"))
    ops = [Op("CONV_2D", "conv", ["x", "w", ""], ["y"],
              irops.Conv2DAttrs(stride=stride, padding=padding)),
           Op("RELU", "relu", ["y"], ["z"])]
    for op in reversed(ops) if order_reversed else ops:
        g.add_op(op)
    g.inputs, g.outputs = ["x"], ["z"]
    return g


def test_topological_sort_and_shapes():
    g = _conv_graph(order_reversed=True).finalize()
    assert [op.name for op in g.ops] == ["conv", "relu"]
    assert g.tensors["z"].shape == (1, 8, 8, 4)
    text = str(g)
    assert "CONV_2D" in text and "float32[1x8x8x4]" in text


def test_strided_valid_conv_shape():
    g = _conv_graph(padding=(0, 0, 0, 0), stride=(2, 2)).finalize()
    assert g.tensors["y"].shape == (1, 3, 3, 4)


@pytest.mark.parametrize("size,kernel,stride,expected", [
    (49, 10, 2, (4, 5)),   # KWS first conv: 25 outputs, 9 rows of padding, odd one after
    (10, 4, 2, (1, 1)),
    (96, 3, 2, (0, 1)),
    (8, 3, 1, (1, 1)),
    (5, 1, 1, (0, 0)),
])
def test_same_padding_matches_tflite(size, kernel, stride, expected):
    assert irops.same_padding(size, kernel, stride) == expected
    before, after = expected
    assert irops.conv_output_size(size, kernel, stride, 1, before, after) == -(-size // stride)


def test_cycle_is_reported():
    g = Graph("c")
    g.add_tensor(Tensor("a", (1, 4), "float32"))
    g.add_tensor(Tensor("b", (1, 4), "float32"))
    g.add_op(Op("RELU", "r1", ["b"], ["a"]))
    g.add_op(Op("RELU", "r2", ["a"], ["b"]))
    g.outputs = ["b"]
    with pytest.raises(GraphError, match="cycle"):
        g.finalize()


def test_declared_shape_mismatch_names_the_layer():
    g = _conv_graph()
    g.tensors["y"].shape = (1, 7, 7, 4)
    with pytest.raises(ShapeError, match="layer 'conv'"):
        g.finalize()


def test_channel_mismatch_is_a_shape_error():
    g = _conv_graph()
    g.tensors["x"].shape = (1, 8, 8, 5)
    with pytest.raises(ShapeError, match="channels"):
        g.finalize()


def test_missing_tensor_and_bad_arity():
    g = Graph("m")
    g.add_tensor(Tensor("x", (1, 4), "float32"))
    g.add_tensor(Tensor("y", (1, 4), "float32"))
    g.add_op(Op("ADD", "add", ["x"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    with pytest.raises(GraphError, match="1 inputs, expected 2"):
        g.finalize()


def test_shape_only_ops_evaluate_to_constants():
    """SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE resolves statically (Keras Flatten)."""
    g = Graph("flatten")
    g.add_tensor(Tensor("x", (1, 2, 3, 4), "int8", Quantization([0.5], [1])))
    for name, shape, dtype, data in [
            ("shape", (), "int32", None),
            ("begin", (1,), "int32", np.array([0], np.int32)),
            ("end", (1,), "int32", np.array([1], np.int32)),
            ("step", (1,), "int32", np.array([1], np.int32)),
            ("batch", (), "int32", None),
            ("minus1", (), "int32", np.array(-1, np.int32)),
            ("target", (), "int32", None),
            ("y", (), "int8", None)]:
        g.add_tensor(Tensor(name, shape, dtype, data=data))
    g.add_op(Op("SHAPE", "shape", ["x"], ["shape"]))
    g.add_op(Op("STRIDED_SLICE", "slice", ["shape", "begin", "end", "step"], ["batch"],
                irops.StridedSliceAttrs(shrink_axis_mask=1)))
    g.add_op(Op("PACK", "pack", ["batch", "minus1"], ["target"], irops.AxisAttrs(0)))
    g.add_op(Op("RESHAPE", "reshape", ["x", "target"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    g.finalize()
    assert g.tensors["target"].data.tolist() == [1, -1]
    assert g.tensors["y"].shape == (1, 24)


def test_per_channel_quantization_is_validated():
    with pytest.raises(ValueError):
        Quantization([0.1, 0.2], [0, 0])  # two scales need an axis
    g = _conv_graph()
    g.tensors["w"].quant = Quantization(np.ones(3), np.zeros(3), axis=0)
    g.tensors["w"].dtype = "int8"
    with pytest.raises(GraphError, match="3 scales for 4 channels"):
        g.finalize()
