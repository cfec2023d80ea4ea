"""Graph passes preserve the reference interpreter's results bit for bit.

Every pass is checked against the interpreter itself: run the reference interpreter on the
graph before and after ``run_passes`` and compare every graph output and every intermediate
tensor that exists in both graphs, on the MLPerf Tiny int8 models and on the int8 test zoo.
The clamp fusion, whose int8 legality is subtle (TFLM's RELU rescales, a fused RELU clamps), is
also checked against TFLM itself on converted models with a standalone RELU/RELU6 appended,
and over random quantizations. Each test also asserts that the pass really rewrote what it is
about, so none of them passes vacuously.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from conftest import INT8_MODELS, REPO, mlperf_model
from support.oracles import tflm_interpreter
from support.tflite_zoo import convert
from tinyml.frontends.tflite import load_tflite, load_tflite_bytes
from tinyml.ir import Graph, Op, Quantization, Tensor
from tinyml.ir import ops as irops
from tinyml.passes import PASS_NAMES, alias_roots, is_alias, run_passes
from tinyml.reference import run

from support import int8_op_models as zoo


def _random_inputs(graph: Graph, rng: np.random.Generator) -> list[np.ndarray]:
    values = []
    for name in graph.inputs:
        t = graph.tensors[name]
        if t.dtype == "int8":
            values.append(rng.integers(-128, 128, t.shape).astype(np.int8))
        else:
            values.append(rng.normal(0, 2, t.shape).astype(np.float32))
    return values


def _input_sets(graph: Graph, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield _random_inputs(graph, rng)
    if all(graph.tensors[n].dtype == "int8" for n in graph.inputs):
        for code in (-128, 127):
            yield [np.full(graph.tensors[n].shape, code, np.int8) for n in graph.inputs]


def _bits(value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    return value.view(np.int32) if value.dtype == np.float32 else value


def before_after_mismatches(before: Graph, after: Graph, inputs) -> dict[str, int]:
    """Differing elements per tensor between the reference runs of ``before`` and ``after``:
    graph outputs and every non-constant tensor present in both graphs."""
    want = run(before, inputs, keep_all=True)
    got = run(after, inputs, keep_all=True)
    assert after.outputs == before.outputs
    shared = [n for n in after.tensors
              if n in before.tensors and not after.tensors[n].is_constant and n in got]
    counts = {}
    for name in dict.fromkeys(list(before.outputs) + shared):
        a, b = _bits(want[name]), _bits(got[name])
        assert a.shape == b.shape and a.dtype == b.dtype, name
        differ = int(np.count_nonzero(a != b))
        if differ:
            counts[name] = differ
    return counts


def _assert_unchanged(before: Graph, after: Graph, count: int) -> None:
    total: dict[str, int] = {}
    for inputs in _input_sets(before, count):
        for name, n in before_after_mismatches(before, after, inputs).items():
            total[name] = total.get(name, 0) + n
    assert not total, f"passes changed results (differing elements per tensor): {total}"


# --------------------------------------------------------------------------------------------
# Whole models


@pytest.mark.parametrize("name", INT8_MODELS)
def test_mlperf_int8_models_are_bit_identical_after_passes(name):
    graph = load_tflite(mlperf_model(name))
    stats: dict[str, int] = {}
    passed = run_passes(graph, stats=stats)
    _assert_unchanged(graph, passed, count=6)
    reshapes = [op for op in passed.ops if op.kind == "RESHAPE"]
    assert all(len(op.inputs) == 1 and is_alias(passed, op) for op in reshapes)
    fused = [op for op in passed.ops if op.kind == "CONV_2D_ADD"]
    # The ResNet's three residual blocks fuse; the other models have none.
    assert len(fused) == (3 if name == "pretrainedResnet_quant" else 0)
    assert stats["fuse_residual_add"] == len(fused)
    assert len(passed.ops) == len(graph.ops) - len(fused)


@pytest.mark.parametrize("name", list(zoo.CASES))
def test_zoo_models_are_bit_identical_after_passes(name):
    graph = load_tflite_bytes(zoo.model_bytes(zoo.CASES[name]), name=name)
    passed = run_passes(graph)
    _assert_unchanged(graph, passed, count=4)


def test_float_residual_model_is_bit_identical_after_fusion():
    """CONV_2D_ADD composes the float kernels too: same float32 bits."""
    graph = load_tflite(mlperf_model("pretrainedResnet"))
    passed = run_passes(graph)
    assert sum(op.kind == "CONV_2D_ADD" for op in passed.ops) == 3
    _assert_unchanged(graph, passed, count=3)


def test_input_graph_is_not_modified_and_pass_names_are_checked():
    graph = load_tflite(mlperf_model("pretrainedResnet_quant"))
    kinds = [op.kind for op in graph.ops]
    run_passes(graph)
    assert [op.kind for op in graph.ops] == kinds
    only_alias = run_passes(graph, passes=["reshape_alias"])
    assert not any(op.kind == "CONV_2D_ADD" for op in only_alias.ops)
    with pytest.raises(ValueError, match="unknown passes"):
        run_passes(graph, passes=["no_such_pass"])
    assert set(PASS_NAMES) == {"fold_constants", "fuse_activation", "reshape_alias",
                               "fuse_residual_add", "dead_code",
                               "fold_dilated_conv", "fold_pad",  # conv ops
                               "float_island_table",  # attention ops
                               "int8_state", "float_island_movement"}  # streaming ops


# --------------------------------------------------------------------------------------------
# Constant folding


def test_flatten_shape_chain_folds_to_a_static_alias():
    """Keras Flatten with a dynamic batch: SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE."""
    graph = load_tflite(REPO / "examples" / "tiny_kws_int8.tflite")
    assert {"SHAPE", "STRIDED_SLICE", "PACK"} <= {op.kind for op in graph.ops}
    stats: dict[str, int] = {}
    passed = run_passes(graph, stats=stats)
    assert stats["fold_constants"] == 3
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & {op.kind for op in passed.ops}
    reshape = next(op for op in passed.ops if op.kind == "RESHAPE")
    assert len(reshape.inputs) == 1 and reshape.attrs.shape == (1, 16)
    assert alias_roots(passed) == {reshape.outputs[0]: reshape.inputs[0]}
    # Constants nobody reads any more are pruned.
    read = {n for op in passed.ops for n in op.inputs}
    assert all(n in read for n, t in passed.tensors.items() if t.is_constant)
    _assert_unchanged(graph, passed, count=6)


def _fc_graph(weights_op: str | None = None) -> Graph:
    """x int8[1, 6] -> FULLY_CONNECTED(w) -> y, with w computed by ``weights_op`` from a
    constant (QUANTIZE of float weights) or given directly."""
    rng = np.random.default_rng(3)
    g = Graph("fc")
    g.add_tensor(Tensor("x", (1, 6), "int8", Quantization([0.05], [3])))
    wq = Quantization([0.02], [0])
    w_float = rng.normal(0, 1, (4, 6)).astype(np.float32)
    if weights_op == "QUANTIZE":
        g.add_tensor(Tensor("w_float", (4, 6), "float32", data=w_float))
        g.add_tensor(Tensor("w", (4, 6), "int8", wq))
        g.add_op(Op("QUANTIZE", "quantize_weights", ["w_float"], ["w"],
                    irops.CastAttrs("int8")))
    else:
        g.add_tensor(Tensor("w", (4, 6), "int8", wq,
                            data=np.clip(np.round(w_float / 0.02), -127, 127).astype(np.int8)))
    g.add_tensor(Tensor("y", (1, 4), "int8", Quantization([0.1], [-5])))
    g.add_op(Op("FULLY_CONNECTED", "fc", ["x", "w"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    return g.finalize()


def test_all_constant_ops_fold_with_the_reference_kernel():
    graph = _fc_graph("QUANTIZE")
    assert not graph.tensors["w"].is_constant  # QUANTIZE is not evaluated by shape inference
    x = np.random.default_rng(0).integers(-128, 128, (1, 6)).astype(np.int8)
    expected_w = run(graph, [x], keep_all=True)["w"]
    passed = run_passes(graph)
    assert [op.kind for op in passed.ops] == ["FULLY_CONNECTED"]
    assert passed.tensors["w"].is_constant
    np.testing.assert_array_equal(passed.tensors["w"].data, expected_w)
    assert "w_float" not in passed.tensors
    _assert_unchanged(graph, passed, count=8)


# --------------------------------------------------------------------------------------------
# Activation fusion


def _clamp_graph(kind: str, attrs=None, same_quant: bool = True, producer_activation="NONE",
                 extra_reader: bool = False, fc_scale: float = 0.1, fc_zero: int = -5,
                 out_scale: float | None = None, out_zero: int | None = None) -> Graph:
    """FC (wide int32 range) -> standalone clamp; FC output quantized (fc_scale, fc_zero)."""
    rng = np.random.default_rng(5)
    g = Graph("clamp")
    g.add_tensor(Tensor("x", (1, 16), "int8", Quantization([0.05], [3])))
    g.add_tensor(Tensor("w", (8, 16), "int8", Quantization([0.03], [0]),
                        data=rng.integers(-127, 128, (8, 16)).astype(np.int8)))
    g.add_tensor(Tensor("h", (1, 8), "int8", Quantization([fc_scale], [fc_zero])))
    if same_quant:
        out_scale, out_zero = fc_scale, fc_zero
    g.add_tensor(Tensor("y", (1, 8), "int8", Quantization([out_scale], [out_zero])))
    g.add_op(Op("FULLY_CONNECTED", "fc", ["x", "w"], ["h"],
                irops.FullyConnectedAttrs(producer_activation)))
    g.add_op(Op(kind, "clamp", ["h"], ["y"], attrs))
    g.inputs, g.outputs = ["x"], ["y"]
    if extra_reader:
        g.add_tensor(Tensor("z", (1, 8), "int8", Quantization([fc_scale], [fc_zero])))
        g.add_op(Op("RELU", "other", ["h"], ["z"]))
        g.outputs.append("z")
    return g.finalize()


@pytest.mark.parametrize("kind, attrs, activation", [
    ("RELU", None, "RELU"),
    ("RELU6", None, "RELU6"),
    ("CLIP", irops.ClipAttrs(0.0, math.inf), "RELU"),
    ("CLIP", irops.ClipAttrs(0.0, 6.0), "RELU6"),
    ("CLIP", irops.ClipAttrs(-1.0, 1.0), "RELU_N1_TO_1"),
])
def test_standalone_clamp_fuses_into_its_producer(kind, attrs, activation):
    graph = _clamp_graph(kind, attrs, fc_scale=0.06, fc_zero=-20)
    passed = run_passes(graph)
    assert [op.kind for op in passed.ops] == ["FULLY_CONNECTED"]
    assert passed.ops[0].attrs.activation == activation
    assert passed.ops[0].outputs == ["y"]
    _assert_unchanged(graph, passed, count=30)
    # The clamp really cuts on these inputs (otherwise the comparison proves little).
    values = np.concatenate([run(graph, x)["y"].ravel() for x in _input_sets(graph, 30)])
    h = np.concatenate([run(graph, x, keep_all=True)["h"].ravel()
                        for x in _input_sets(graph, 30)])
    assert np.count_nonzero(values != h) > 0


@pytest.mark.parametrize("case, options", [
    ("rescaling RELU", dict(kind="RELU", same_quant=False, out_scale=0.03, out_zero=-128)),
    # TFLM's RELU6 keeps the input codes whatever the output scale, so its table equals a
    # fused RELU6 here, but the producer would requantize to the other scale.
    ("RELU6 with another output scale", dict(kind="RELU6", same_quant=False, out_scale=0.1008,
                                             out_zero=-5)),
    ("CLIP bounds of no fused activation", dict(kind="CLIP", attrs=irops.ClipAttrs(0.5, 3.0))),
    ("producer already clamps", dict(kind="RELU", producer_activation="RELU6")),
    ("another reader", dict(kind="RELU6", extra_reader=True)),
])
def test_clamp_is_not_fused_when_results_could_change(case, options):
    graph = _clamp_graph(**options)
    passed = run_passes(graph)
    assert options["kind"] in [op.kind for op in passed.ops], case
    _assert_unchanged(graph, passed, count=10)


def test_clamp_fusion_is_exact_over_random_quantizations():
    """Fused or not, results never change; and most same-quantization clamps do fuse."""
    rng = np.random.default_rng(11)
    fused = total = 0
    for i in range(60):
        kind = ["RELU", "RELU6", "CLIP"][i % 3]
        attrs = None
        if kind == "CLIP":
            lo = float(rng.choice([0.0, -1.0, -0.5, 0.25]))
            attrs = irops.ClipAttrs(lo, float(rng.choice([1.0, 6.0, math.inf, 2.5])))
        scale = float(10 ** rng.uniform(-3, 0))
        zero = int(rng.integers(-128, 128))
        same = bool(rng.random() < 0.7)
        nearly = bool(rng.random() < 0.5)  # a slightly different scale, same zero point
        graph = _clamp_graph(kind, attrs, same_quant=same, fc_scale=scale, fc_zero=zero,
                             out_scale=scale * float(rng.uniform(1.001, 1.008) if nearly
                                                     else rng.uniform(0.5, 2)),
                             out_zero=zero if nearly else int(rng.integers(-128, 128)))
        passed = run_passes(graph)
        total += 1
        fused += len(passed.ops) == 1
        _assert_unchanged(graph, passed, count=3)
    assert fused >= total // 3


def _append_clamp(kind: str, same_quant: bool):
    """Flatbuffer surgery on the converted 1x1 convolution (no fused activation): widen the
    weights so real outputs pass 6.0, quantize the conv output to (0.12, -10), and append a
    standalone ``kind`` op reading it (output quantized alike, or differently)."""
    def edit(model, schema):
        sub = model.subgraphs[0]
        conv = sub.operators[0]
        wq = sub.tensors[conv.inputs[1]].quantization
        wq.scale = [float(np.float32(s * 4)) for s in wq.scale]
        conv_out = sub.tensors[conv.outputs[0]]
        conv_out.quantization.scale, conv_out.quantization.zeroPoint = [0.12], [-10]
        clamped = copy.deepcopy(conv_out)
        clamped.name = b"clamped"
        if not same_quant:
            clamped.quantization.scale, clamped.quantization.zeroPoint = [0.05], [-128]
        sub.tensors.append(clamped)
        code = schema.OperatorCodeT()
        code.builtinCode = getattr(schema.BuiltinOperator, kind)
        code.deprecatedBuiltinCode = code.builtinCode
        code.version = 1
        model.operatorCodes.append(code)
        op = schema.OperatorT()
        op.opcodeIndex = len(model.operatorCodes) - 1
        op.inputs, op.outputs = [conv.outputs[0]], [len(sub.tensors) - 1]
        sub.operators.append(op)
        sub.outputs = [len(sub.tensors) - 1]
    return edit


@pytest.mark.parametrize("kind", ["RELU", "RELU6"])
@pytest.mark.parametrize("same_quant", [True, False])
def test_clamp_fusion_matches_tflm_running_the_unfused_model(kind, same_quant):
    data = zoo.edit_flatbuffer(convert(zoo.conv_1x1, [(1, 6, 6, 5)]).read_bytes(),
                                _append_clamp(kind, same_quant))
    graph = load_tflite_bytes(data, name=f"conv_{kind}")
    passed = run_passes(graph)
    # RELU6 ignores its output quantization in TFLM, so only equal quantization may fuse.
    assert (len(passed.ops) == 1) is same_quant
    tflm = tflm_interpreter(data)
    cut = 0
    for inputs in _input_sets(graph, 20):
        tflm.set_input(inputs[0], 0)
        tflm.invoke()
        want = tflm.get_output(0)
        got = run(passed, inputs)[passed.outputs[0]]
        np.testing.assert_array_equal(got, want)
        h = run(graph, inputs, keep_all=True)[graph.ops[0].outputs[0]]
        cut += int(np.count_nonzero(h != want)) if same_quant else 0
    assert cut > 0 or not same_quant  # the clamp changed values TFLM computed


# --------------------------------------------------------------------------------------------
# Reshape aliases


def test_reshapes_become_static_aliases_of_the_root_tensor():
    g = Graph("reshapes")
    q = Quantization([0.1], [0])
    g.add_tensor(Tensor("x", (1, 2, 3, 4), "int8", q))
    g.add_tensor(Tensor("target", (2,), "int32", data=np.array([1, -1], np.int32)))
    g.add_tensor(Tensor("a", (1, 24), "int8", q))
    g.add_tensor(Tensor("b", (1, 6, 4), "int8", q))
    g.add_tensor(Tensor("c", (1, 6, 4), "int8", q))
    g.add_tensor(Tensor("d", (1, 6, 4), "int8", q))
    g.add_op(Op("RESHAPE", "dynamic", ["x", "target"], ["a"], irops.ReshapeAttrs(None)))
    g.add_op(Op("RESHAPE", "chain", ["a"], ["b"], irops.ReshapeAttrs((1, 6, 4))))
    g.add_op(Op("RESHAPE", "identity", ["b"], ["c"], irops.ReshapeAttrs((1, 6, 4))))
    g.add_op(Op("RELU", "relu", ["c"], ["d"]))
    g.inputs, g.outputs = ["x"], ["d", "a"]
    g.finalize()
    passed = run_passes(g)
    kinds = [(op.kind, op.inputs) for op in passed.ops]
    # "a" stays (a graph output); "b" reads x directly; the identity reshape is gone.
    assert ("RESHAPE", ["x"]) in kinds and ("RELU", ["b"]) in kinds and len(kinds) == 3
    assert all(op.attrs.shape is not None and len(op.inputs) == 1
               for op in passed.ops if op.kind == "RESHAPE")
    assert alias_roots(passed) == {"a": "x", "b": "x"}
    _assert_unchanged(g, passed, count=4)


# --------------------------------------------------------------------------------------------
# Residual fusion


def test_residual_add_fuses_with_the_conv_output_quantization_recorded():
    graph = load_tflite(mlperf_model("pretrainedResnet_quant"))
    passed = run_passes(graph)
    producers = graph.producers()
    for op in (o for o in passed.ops if o.kind == "CONV_2D_ADD"):
        add = producers[op.outputs[0]]
        assert add.kind == "ADD"
        skip = op.inputs[2]
        conv_out = next(n for n in add.inputs if n != skip)
        conv = producers[conv_out]
        assert conv.kind == "CONV_2D" and conv.inputs[:2] == op.inputs[:2]
        assert conv_out not in passed.tensors  # the conv output no longer exists
        t = graph.tensors[conv_out]
        assert (op.attrs.conv_scale, op.attrs.conv_zero_point) == (t.scale(), t.zero_point())
        assert op.attrs.add_activation == add.attrs.activation
        assert op.attrs.skip_first == (add.inputs[0] == skip)


def test_broadcast_or_shared_conv_outputs_do_not_fuse():
    graph = load_tflite_bytes(zoo.model_bytes(zoo.CASES["add_broadcast_scales"]), "bcast")
    assert not any(op.kind == "CONV_2D_ADD" for op in run_passes(graph).ops)
    # A conv output also read elsewhere must stay a tensor.
    graph = load_tflite_bytes(zoo.model_bytes(zoo.CASES["residual_add_relu"]), "residual")
    add = next(op for op in graph.ops if op.kind == "ADD")
    conv_out = next(n for n in add.inputs if graph.producers().get(n) is not None
                    and graph.producers()[n].kind == "CONV_2D")
    extra = Tensor("extra", graph.tensors[conv_out].shape, "int8",
                   graph.tensors[conv_out].quant)
    graph.add_tensor(extra)
    graph.add_op(Op("RELU", "extra_reader", [conv_out], ["extra"]))
    graph.outputs.append("extra")
    graph.finalize()
    passed = run_passes(graph)
    assert not any(op.kind == "CONV_2D_ADD" for op in passed.ops)
    _assert_unchanged(graph, passed, count=3)
