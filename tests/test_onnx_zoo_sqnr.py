"""The op zoo through ONNX: float Keras models exported by tf2onnx, quantized by tinyml's own
quantizer (``compile --calib``) and compiled, compute what onnxruntime computes in float.

Each model of ``support.onnx_zoo`` is quantized on 64 samples of its calibration
distribution; the int8 graph (the reference interpreter, which the compiled C equals: the
test compiles it and verifies that on the host) runs on 32 fresh samples of the same
distribution, and its dequantized outputs must reach an SQNR of 25 dB against onnxruntime's
float outputs. Index and BOOL outputs count agreeing elements instead (>= 90 %: a float
near-tie flips under any quantization).

tf2onnx writes several TF ops as decompositions (PReLU, l2_normalize, tf.where,
SquaredDifference, ReverseV2); the tests after the zoo check that the ONNX frontend and the
quantizer's float passes make each the one TFLite op again, computing what onnxruntime
computes.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.onnx_zoo import MIN_AGREEMENT, ZOO, Accuracy, accuracy, export, min_sqnr_db

#: A few seconds each, one per family: activations, binary, reductions, movement, conv.
FAST = ("tanh", "sub", "arg_max", "resize_nearest", "conv2d_transpose")
RESULTS: dict[str, Accuracy] = {}


@pytest.fixture(scope="module")
def onnx_files():
    """Every zoo export, converted once in one child process (cached on disk); at the end,
    the table of what was measured (shown with -s, or with a failure)."""
    yield export()
    print("\n\nmodel                    int8 ops" + " " * 43 + "SQNR dB / agreement")
    for name, result in RESULTS.items():
        print(f"{name:24s} {' '.join(result.int8_ops):50s} {_figures(result)}")


def _figures(result: Accuracy) -> str:
    return " ".join([f"{v:6.1f} dB" for v in result.sqnr.values()] +
                    [f"{100 * v:5.1f} %" for v in result.agreement.values()])


def _check(name: str, path) -> Accuracy:
    from tinyml.verify import verify

    result = accuracy(name, path)
    RESULTS[name] = result
    assert result.sqnr or result.agreement
    for output, db in result.sqnr.items():
        assert db >= min_sqnr_db(name), f"{name}: output {output} at {db:.1f} dB"
    for output, share in result.agreement.items():
        assert share >= MIN_AGREEMENT, f"{name}: output {output} agrees on {100 * share:.1f} %"
    # It compiles: C generated from the int8 graph, built for the host, equal to the
    # reference (and to TFLM running the exported int8 file) on every output.
    report = verify(path, "host", samples=2, profile=False, quantize=lambda _: result.graph)
    assert report.mismatched_outputs == 0 and report.samples == 4, report.to_json()
    return result


@pytest.mark.parametrize("name", FAST)
def test_fast_sample_reaches_sqnr(name, onnx_files):
    _check(name, onnx_files[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in ZOO if n not in FAST])
def test_zoo_reaches_sqnr(name, onnx_files):
    _check(name, onnx_files[name])


def _prepared_kinds(model) -> tuple[list[str], object]:
    from tinyml.frontends.onnx import import_onnx
    from tinyml.quantize.prepare import prepare
    graph, _ = prepare(import_onnx(model, name="case").graph)
    return [op.kind for op in graph.ops], graph


def test_tf2onnx_select_is_select_v2_before_quantization(onnx_files):
    """tf2onnx's float tf.where, cast(c) * a + cast(not c) * b, is SELECT_V2 again in the
    prepared float graph (no CAST or MUL left), computing what onnxruntime computes (to the
    last bit of the means, which sum in another order); masks that are not each other's
    negation stay arithmetic."""
    import onnx
    from onnx import helper
    from support.onnx_cases import make_model, ort_values
    from tinyml.reference import run

    model = onnx.load(str(onnx_files["select"]))
    assert {"Cast", "Mul", "Add"} <= {n.op_type for n in model.graph.node}
    kinds, graph = _prepared_kinds(model)
    assert kinds.count("SELECT_V2") == 2 and not {"CAST", "MUL", "ADD"} & set(kinds), kinds
    rng = np.random.default_rng(5)
    for _ in range(3):
        x = ZOO["select"].sample(rng)
        theirs = ort_values(model, dict(zip(graph.inputs, x)))
        ours = run(graph, x)
        for ir, out in zip(graph.outputs, model.graph.output):
            np.testing.assert_allclose(ours[ir], theirs[out.name], rtol=0, atol=1e-6)

    def masked_sum(second_mask: str):
        nodes = [helper.make_node("Greater", ["a", "b"], ["c"]),
                 helper.make_node("Not", ["c"], ["not_c"]),
                 helper.make_node("Less", ["a", "b"], ["less"]),
                 helper.make_node("Cast", ["c"], ["fc"], to=1),
                 helper.make_node("Cast", [second_mask], ["fn"], to=1),
                 helper.make_node("Mul", ["fc", "a"], ["ta"]),
                 helper.make_node("Mul", ["b", "fn"], ["tb"]),
                 helper.make_node("Add", ["tb", "ta"], ["y"])]
        return make_model(nodes, {"a": [1, 4, 5], "b": [1, 4, 5]}, ["y"])

    kinds, graph = _prepared_kinds(masked_sum("not_c"))
    assert kinds == ["GREATER", "SELECT_V2"], kinds
    select = graph.ops[-1]
    assert [graph.tensors[n].name for n in select.inputs] == ["c", "a", "b"]
    assert "SELECT_V2" not in _prepared_kinds(masked_sum("less"))[0]


def test_tf2onnx_prelu_is_one_prelu_before_quantization(onnx_files):
    """tf2onnx's Keras PReLU, relu(x) + (-alpha) * relu(-x) with Neg imported as a MUL by
    -1, is one PRELU with Keras' alpha in the prepared float graph, computing what
    onnxruntime computes; relu(-y) of another tensor y is left alone."""
    import onnx
    from onnx import helper
    from support.onnx_cases import make_model, ort_values
    from tinyml.reference import run

    model = onnx.load(str(onnx_files["prelu"]))
    assert {"Neg", "Relu", "Mul", "Add"} <= {n.op_type for n in model.graph.node}
    kinds, graph = _prepared_kinds(model)
    assert kinds == ["CONV_2D", "PRELU"], kinds
    alpha = graph.tensors[graph.ops[1].inputs[1]].data
    assert alpha.shape == (1, 1, 1, 6) and -0.4 <= alpha.min() < alpha.max() <= 0.9
    rng = np.random.default_rng(6)
    for _ in range(3):
        x = ZOO["prelu"].sample(rng)
        theirs = ort_values(model, dict(zip(graph.inputs, x)))
        ours = run(graph, x)[graph.outputs[0]]
        np.testing.assert_allclose(ours, theirs[model.graph.output[0].name], rtol=0, atol=1e-5)

    def relus(negated: str):
        nodes = [helper.make_node("Relu", ["x"], ["p"]),
                 helper.make_node("Neg", [negated], ["n"]),
                 helper.make_node("Relu", ["n"], ["r"]),
                 helper.make_node("Mul", ["r", "k"], ["m"]),
                 helper.make_node("Add", ["p", "m"], ["out"])]
        return make_model(nodes, {"x": [1, 5, 3], "y": [1, 5, 3]}, ["out"],
                          {"k": np.array([-0.1, 0.2, -0.3], np.float32)})

    kinds, graph = _prepared_kinds(relus("x"))
    assert kinds == ["PRELU"], kinds
    np.testing.assert_array_equal(graph.tensors[graph.ops[0].inputs[1]].data.ravel(),
                                  np.float32([0.1, -0.2, 0.3]))
    assert "PRELU" not in _prepared_kinds(relus("y"))[0]


def test_tf2onnx_squared_difference_is_one_op_before_quantization(onnx_files):
    """tf2onnx's SquaredDifference, d = a - b then d * d, is one SQUARED_DIFFERENCE in the
    prepared float graph; a difference something else reads too stays a SUB."""
    import onnx
    from onnx import helper
    from support.onnx_cases import make_model

    model = onnx.load(str(onnx_files["squared_difference"]))
    assert {"Sub", "Mul"} <= {n.op_type for n in model.graph.node}
    assert _prepared_kinds(model)[0] == ["MEAN", "SQUARED_DIFFERENCE"]

    def squares(shared: bool):
        nodes = [helper.make_node("Sub", ["a", "b"], ["d"]),
                 helper.make_node("Mul", ["d", "d"], ["y"])]
        outputs = ["y"]
        if shared:
            nodes.append(helper.make_node("Relu", ["d"], ["r"]))
            outputs.append("r")
        return make_model(nodes, {"a": [1, 3, 4], "b": [1, 1, 4]}, outputs)

    kinds, graph = _prepared_kinds(squares(shared=False))
    assert kinds == ["SQUARED_DIFFERENCE"] and graph.ops[0].inputs == ["a", "b"], kinds
    assert "SQUARED_DIFFERENCE" not in _prepared_kinds(squares(shared=True))[0]


def test_tf2onnx_l2_normalize_is_one_l2_normalization_before_quantization(onnx_files):
    """tf2onnx's tf.math.l2_normalize, x * 1 / sqrt(max(sum(x * x), 1e-12)) with Sqrt ->
    Reciprocal imported as RSQRT, is one L2_NORMALIZATION in the prepared float graph,
    computing what onnxruntime computes. A larger epsilon, another axis, or a Sqrt with no
    Reciprocal after it (no int8 SQRT in TFLM) stay as they are or are refused."""
    import onnx
    from onnx import helper
    from support.onnx_cases import make_model, ort_values
    from tinyml.errors import UnsupportedOpError
    from tinyml.frontends.onnx import import_onnx
    from tinyml.reference import run

    model = onnx.load(str(onnx_files["l2_normalization"]))
    assert {"Sqrt", "Reciprocal", "ReduceSum"} <= {n.op_type for n in model.graph.node}
    kinds, graph = _prepared_kinds(model)
    assert kinds == ["CONV_2D", "L2_NORMALIZATION"], kinds
    rng = np.random.default_rng(7)
    for _ in range(3):
        x = ZOO["l2_normalization"].sample(rng)
        theirs = ort_values(model, dict(zip(graph.inputs, x)))
        ours = run(graph, x)[graph.outputs[0]]
        np.testing.assert_allclose(ours, theirs[model.graph.output[0].name], rtol=0, atol=1e-6)

    def normalize(eps: float, axis: int, reciprocal: bool = True):
        nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
                 helper.make_node("ReduceSum", ["sq", "axes"], ["s"], keepdims=1),
                 helper.make_node("Max", ["s", "eps"], ["m"]),
                 helper.make_node("Sqrt", ["m"], ["r"])]
        nodes += [helper.make_node("Reciprocal", ["r"], ["inv"]),
                  helper.make_node("Mul", ["x", "inv"], ["y"])] if reciprocal else [
                  helper.make_node("Div", ["x", "r"], ["y"])]
        return make_model(nodes, {"x": [1, 4, 6]}, ["y"],
                          {"axes": np.array([axis], np.int64),
                           "eps": np.array(eps, np.float32)})

    assert _prepared_kinds(normalize(1e-12, -1))[0] == ["L2_NORMALIZATION"]
    assert "L2_NORMALIZATION" not in _prepared_kinds(normalize(1e-3, -1))[0]
    assert "L2_NORMALIZATION" not in _prepared_kinds(normalize(1e-12, 1))[0]
    with pytest.raises(UnsupportedOpError, match="not followed by Reciprocal"):
        import_onnx(normalize(1e-12, -1, reciprocal=False), name="sqrt")


def test_reverse_sequence_imports_as_reverse_v2(onnx_files):
    """tf2onnx writes TF's ReverseV2 as ReverseSequence over whole sequences (lengths from
    Shape -> Gather -> Expand): one REVERSE_V2, every tensor as onnxruntime computes it. A
    shorter sequence (a per-batch prefix, no TFLite op) is refused in one line."""
    import onnx
    from onnx import helper
    from support.onnx_cases import check_float, make_model
    from tinyml.errors import UnsupportedOpError
    from tinyml.frontends.onnx import import_onnx

    imp, worst = check_float(onnx.load(str(onnx_files["reverse"])))
    assert [op.kind for op in imp.graph.ops] == ["CONV_2D", "REVERSE_V2"] and worst < 1e-4
    node = helper.make_node("ReverseSequence", ["x", "lens"], ["y"], batch_axis=1,
                            time_axis=0)
    whole = make_model([node], {"x": [4, 2, 3]}, ["y"], {"lens": np.array([4, 4], np.int64)})
    assert [op.kind for op in check_float(whole)[0].graph.ops] == ["REVERSE_V2"]
    short = make_model([node], {"x": [4, 2, 3]}, ["y"], {"lens": np.array([4, 2], np.int64)})
    with pytest.raises(UnsupportedOpError, match="only whole sequences reverse"):
        import_onnx(short, name="short")


def test_sqnr_measures_noise_against_the_float_output():
    """The metric itself: 1 % uniform relative noise is 40 dB, a zero output 0 dB, an exact
    one infinite; a sign flip is -6 dB (noise four times the signal)."""
    import numpy as np
    from support.onnx_zoo import sqnr_db
    ref = np.linspace(-3, 3, 1000)
    assert sqnr_db(ref, ref * 1.01) == pytest.approx(40.0)
    assert sqnr_db(ref, np.zeros_like(ref)) == pytest.approx(0.0)
    assert sqnr_db(ref, ref) == float("inf")
    assert sqnr_db(ref, -ref) == pytest.approx(-10 * np.log10(4))
