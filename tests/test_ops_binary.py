"""The binary family (SUB, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, the comparisons, SELECT_V2,
LOGICAL_AND/OR/NOT) against TFLM, ONNX Runtime and its own C kernels.

Models come from the TFLite converter (small Keras functions, tests/tflite_zoo.py) and from
hand-built ONNX graphs run by onnxruntime. For each TFLite model the test first checks the
converter emitted the ops the case is about, then requires every tensor of the reference
interpreter to equal TFLM's, bit for bit, on seeded random inputs and on the all-minimum and
all-maximum inputs; the C kernels are then run on TFLM's own tensors (test_kernels_c's
harness, under ASan and UBSan) and must reproduce them.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.c_harness import Harness, check_graph
from support.int8_op_models import compare_all_tensors, tflm_all_tensors
from support.int8_op_models import edit_flatbuffer as _edit_flatbuffer
from support.oracles import tflm_interpreter
from support.tflite_zoo import convert
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.ir.ops import COMPARISONS

SEEDS = range(4)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("kernels"))


# --------------------------------------------------------------------------------------------
# Models (module level: tflite_zoo caches conversions by the function's code)


def _tf():
    import tensorflow as tf
    return tf


def _lambda(fn):
    return _tf().keras.layers.Lambda(fn)


def sub_relu_broadcast(x, y):
    """SUB of a per-channel tensor with its fused RELU, and a same-shape SUB."""
    L = _tf().keras.layers
    per_channel = L.GlobalAveragePooling2D(keepdims=True)(y)
    return L.ReLU()(L.Subtract()([x, per_channel])), L.Subtract()([y, x])


def max_min(x, y):
    """MAXIMUM and MINIMUM, same shape and broadcast (a row against the image)."""
    import keras
    row = keras.layers.AveragePooling2D((x.shape[1], 1))(y)   # (1, 1, W, C)
    return keras.ops.maximum(x, y), keras.ops.minimum(row, x)


def squared_difference(x, y):
    tf = _tf()
    per_channel = tf.keras.layers.GlobalAveragePooling2D(keepdims=True)(y)
    return (_lambda(lambda t: tf.math.squared_difference(t[0], t[1]))([x, y]),
            _lambda(lambda t: tf.math.squared_difference(t[0], t[1]))([per_channel, x]))


def comparisons_select(x, y):
    """The comparisons, combined by the logical ops into SELECT_V2 conditions; one bool
    output and two broadcasting selections. (The converter leaves an int8 NOT_EQUAL in
    float: :func:`equal_to_not_equal` makes one.)"""
    tf = _tf()

    def body(t):
        a, b = t
        col = tf.reduce_mean(b, axis=2, keepdims=True)            # (1, H, 1, C)
        g, ge = tf.greater(a, b), tf.greater_equal(a, col)
        lt, le = tf.less(a, col), tf.less_equal(b, a)
        either = tf.logical_or(tf.logical_and(g, ge), tf.logical_and(lt, le))
        mask = tf.logical_or(either, tf.equal(a, b))
        return tf.logical_not(mask), tf.where(mask, a, col), tf.where(ge, col, a)

    return _lambda(body)([x, y])


def mixed(x, y):
    """Several ops of the family in one model (QEMU, sanitizers, tinyml's quantizer): SUB
    with RELU, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, comparisons (one against a constant),
    logical ops, SELECT_V2, and a bool output."""
    tf = _tf()

    def body(t):
        a, b = t
        col = tf.reduce_mean(b, axis=2, keepdims=True)
        d = tf.nn.relu(a - col)
        hi, lo = tf.maximum(a, b), tf.minimum(col, a)
        sq = tf.math.squared_difference(hi, lo)
        mask = tf.logical_or(tf.greater(sq, d), tf.less_equal(a, -0.25))
        return tf.where(mask, hi, col), tf.logical_and(tf.greater_equal(d, lo), mask)

    return _lambda(body)([x, y])


MIXED_OPS = {"SUB", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "GREATER", "LESS_EQUAL",
             "GREATER_EQUAL", "LOGICAL_OR", "LOGICAL_AND", "SELECT_V2"}


def equal_to_not_equal(model, schema):
    """Turn the converter's int8 EQUAL into NOT_EQUAL (same operands, same TFLM prepare)."""
    for code in model.operatorCodes:
        if code.builtinCode == schema.BuiltinOperator.EQUAL:
            code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.NOT_EQUAL


SHAPES = [(1, 5, 6, 3), (1, 5, 6, 3)]
#: name: (build, ops the converted model must contain, flatbuffer edit)
CASES = {
    "sub": (sub_relu_broadcast, {"SUB"}, None),
    "max_min": (max_min, {"MAXIMUM", "MINIMUM"}, None),
    "squared_difference": (squared_difference, {"SQUARED_DIFFERENCE"}, None),
    "comparisons_select": (comparisons_select,
                           {"GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL",
                            "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "SELECT_V2"}, None),
    "not_equal": (comparisons_select, {"NOT_EQUAL"}, equal_to_not_equal),
    "mixed": (mixed, MIXED_OPS, None),
}


def _calibration(rng, shape):
    """Inputs of different ranges, so the two operands get different scales."""
    return rng.normal(0, 1, shape) * (1.0 + 0.5 * (shape[-1] % 2)) + 0.1


def model_bytes(name: str) -> bytes:
    build, _, edit = CASES[name]
    data = convert(build, SHAPES, calibration=_calibration).read_bytes()
    return data if edit is None else _edit_flatbuffer(data, edit)


def input_sets(graph, seeds=SEEDS) -> list[list[np.ndarray]]:
    """Seeded random int8 inputs, then the all-minimum and all-maximum ones, then inputs
    whose codes are equal (the comparisons' ties)."""
    shapes = [graph.tensors[n].shape for n in graph.inputs]
    sets = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        sets.append([rng.integers(-128, 128, s).astype(np.int8) for s in shapes])
    sets.append([np.full(s, -128, np.int8) for s in shapes])
    sets.append([np.full(s, 127, np.int8) for s in shapes])
    tie = np.random.default_rng(99).integers(-128, 128, shapes[0]).astype(np.int8)
    sets.append([tie.reshape(s) if s == shapes[0] else np.zeros(s, np.int8) for s in shapes])
    return sets


# --------------------------------------------------------------------------------------------
# TFLite int8: reference and C kernels against TFLM


@pytest.mark.parametrize("name", list(CASES))
def test_int8_matches_tflm_on_every_tensor(name, harness):  # noqa: F811
    data = model_bytes(name)
    graph = load_tflite_bytes(data, name=name)
    kinds = {op.kind for op in graph.ops}
    assert CASES[name][1] <= kinds, f"converter emitted {sorted(kinds)}"
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    samples = []
    compared = 0
    for inputs in input_sets(graph):
        for tensor, count in compare_all_tensors(graph, interpreter, inputs).items():
            total[tensor] = total.get(tensor, 0) + count
        values = tflm_all_tensors(interpreter, inputs, len(graph.tensors))
        sample = {n: v for n, v in zip(graph.tensors, values) if v is not None}
        compared = len(sample)
        samples.append(sample)
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"
    assert compared >= len(graph.ops)
    bad = {k: v for k, v in check_graph(harness, graph, samples, name).items() if v}
    assert not bad, f"{name}: C kernels differing from TFLM: {bad}"


# --------------------------------------------------------------------------------------------
# Whole models: generated C on the host (sanitizers) and in QEMU


def _model_file(tmp_path, name: str):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(model_bytes(name))
    return path


def test_mixed_model_verifies_on_host_under_sanitizers(tmp_path):
    from tinyml.verify import verify
    report = verify(_model_file(tmp_path, "mixed"), "host", samples=20, sanitize=True)
    assert report.oracle == "reference+tflite-micro" and report.sanitized
    assert report.samples == 22 and report.mismatched_outputs == 0


def test_mixed_model_verifies_in_qemu_cortex_m4(tmp_path):
    from tinyml.verify import verify
    report = verify(_model_file(tmp_path, "mixed"), "cortex-m4", samples=10, profile=False)
    assert report.oracle == "reference+tflite-micro"
    assert report.samples == 12 and report.mismatched_outputs == 0
    assert report.measured["instructions_per_inference"] > 0


# --------------------------------------------------------------------------------------------
# Float models: the float reference against LiteRT, tinyml's quantizer against TFLM


def _float_model():
    return convert(mixed, SHAPES, int8=False)


def test_float_reference_matches_litert():
    from support.oracles import litert_interpreter
    from tinyml.frontends import load_model
    from tinyml.reference import run
    path = _float_model()
    graph = load_model(path)
    assert MIXED_OPS <= {op.kind for op in graph.ops}
    it = litert_interpreter(path)
    rng = np.random.default_rng(3)
    for _ in range(4):
        xs = [rng.normal(0, 1, s).astype(np.float32) for s in SHAPES]
        for detail, x in zip(it.get_input_details(), xs):
            it.set_tensor(detail["index"], x)
        it.invoke()
        ours = run(graph, xs)
        for detail, name in zip(it.get_output_details(), graph.outputs):
            want = it.get_tensor(detail["index"])
            assert ours[name].dtype == want.dtype
            np.testing.assert_allclose(ours[name], want, rtol=1e-6, atol=1e-6)


def test_float_model_quantized_by_tinyml_is_bit_exact_with_tflm():
    from support.quantize_oracles import tflm_tensor_mismatches
    from tinyml.quantize import quantize_model
    model = quantize_model(_float_model(), "random:-1,1", samples=30)
    kinds = {op.kind for op in model.graph.ops}
    assert MIXED_OPS <= kinds, MIXED_OPS - kinds
    for t in model.graph.tensors.values():
        assert t.dtype in ("int8", "int32", "bool"), f"{t.name} is {t.dtype}"
    for op in model.graph.ops:  # "shared": codes are compared or copied, never rescaled
        if op.kind in ("MAXIMUM", "MINIMUM", "SELECT_V2"):
            quants = {(model.graph.tensors[n].scale(), model.graph.tensors[n].zero_point())
                      for n in op.inputs + op.outputs if model.graph.tensors[n].dtype == "int8"}
            assert len(quants) == 1, (op.name, quants)
    samples = input_sets(model.graph)
    mismatches, compared = tflm_tensor_mismatches(model.to_tflite(), model.graph, samples)
    assert compared >= len(samples) * len(model.graph.ops)
    assert not mismatches, f"elements differing from TFLM per tensor: {mismatches}"
    # The quantization report treats a bool as its own 0/1 value.
    from tinyml.quantize import evaluate, load_dataset
    report = evaluate(model, load_dataset("random:-1,1", model.float_graph, limit=5, seed=2))
    rows = {row.op: row for row in report.layers}
    assert (rows["LOGICAL_AND"].scale, rows["LOGICAL_AND"].zero_point) == (1.0, 0)
    assert report.output_sqnr_db is not None and report.output_sqnr_db > 15


# --------------------------------------------------------------------------------------------
# ONNX: float graphs and QDQ graphs (onnxruntime's quantizer) against onnxruntime

ONNX_SHAPES = {"x": [1, 3, 4, 5], "y": [1, 3, 1, 5]}


def _onnx_float_model():
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [
        helper.make_node("Sub", ["x", "y"], ["d"]),
        helper.make_node("Max", ["x", "y"], ["hi"]),
        helper.make_node("Min", ["d", "y", "x"], ["lo"]),
        helper.make_node("Greater", ["hi", "lo"], ["g"]),
        helper.make_node("LessOrEqual", ["x", "c"], ["le"]),
        helper.make_node("GreaterOrEqual", ["d", "x"], ["ge"]),
        helper.make_node("Less", ["y", "x"], ["lt"]),
        helper.make_node("Equal", ["hi", "x"], ["eq"]),
        helper.make_node("Or", ["g", "le"], ["m"]),
        helper.make_node("Not", ["lt"], ["nlt"]),
        helper.make_node("And", ["ge", "nlt"], ["a"]),
        helper.make_node("Where", ["m", "hi", "lo"], ["w"]),
    ]
    graph = helper.make_graph(
        nodes, "binary",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in ONNX_SHAPES.items()],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 3, 4, 5]),
         helper.make_tensor_value_info("a", TensorProto.BOOL, [1, 3, 4, 5]),
         helper.make_tensor_value_info("eq", TensorProto.BOOL, [1, 3, 4, 5])],
        [numpy_helper.from_array(np.array(0.3, np.float32), "c")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


ONNX_KINDS = {"SUB", "MAXIMUM", "MINIMUM", "GREATER", "LESS_EQUAL", "GREATER_EQUAL", "LESS",
              "EQUAL", "LOGICAL_OR", "LOGICAL_NOT", "LOGICAL_AND", "SELECT_V2"}


def _onnx_feeds(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in ONNX_SHAPES.items()}


def test_onnx_float_matches_onnxruntime():
    from support.onnx_cases import ort_values
    from tinyml.frontends.onnx import import_onnx
    from tinyml.reference import run
    model = _onnx_float_model()
    graph = import_onnx(model, name="binary").graph
    assert ONNX_KINDS <= {op.kind for op in graph.ops}
    for seed in range(3):
        feeds = _onnx_feeds(seed)
        theirs = ort_values(model, feeds)
        ours = run(graph, feeds)
        for name, onnx_name in zip(graph.outputs, ("w", "a", "eq")):
            assert ours[name].dtype == theirs[onnx_name].dtype
            np.testing.assert_array_equal(ours[name], theirs[onnx_name])


def _onnx_qdq_model(tmp_path):
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Data(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([_onnx_feeds(100 + i) for i in range(16)])

        def get_next(self):
            return next(self.feeds, None)

    src, dst = tmp_path / "binary.onnx", tmp_path / "binary-qdq.onnx"
    onnx.save(_onnx_float_model(), str(src))
    quantize_static(str(src), str(dst), Data(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Sub", "Max", "Min", "Greater", "LessOrEqual",
                                          "GreaterOrEqual", "Less", "Equal", "Where"])
    return dst


def test_onnx_qdq_is_int8_and_matches_onnxruntime(tmp_path):
    """The QDQ groups become int8 ops; each int8 op, recomputed from onnxruntime's inputs, is
    within 1 LSB of it (MAXIMUM, MINIMUM and SELECT_V2 exactly: they copy codes). A comparison
    differs from onnxruntime's float one only where its operands are within TFLM's
    resolution (each operand is rescaled to 2^-8 of a real unit and rounded)."""
    import onnx
    from support.onnx_cases import compare_isolated, onnx_names, ort_in_ir, ort_values
    from tinyml.frontends.onnx import import_onnx
    from tinyml.reference.kernels import KERNELS, KernelCall
    path = _onnx_qdq_model(tmp_path)
    model = onnx.load(str(path))
    imp = import_onnx(model, name="binary_qdq")
    g = imp.graph
    for op in g.ops:
        if op.kind in ONNX_KINDS and op.kind not in ("LOGICAL_OR", "LOGICAL_NOT", "LOGICAL_AND"):
            dtypes = [g.tensors[n].dtype for n in op.inputs]
            assert "float32" not in dtypes, (op.kind, dtypes)
    assert ONNX_KINDS <= {op.kind for op in g.ops}
    isolated, compared, near = {}, 0, 0
    for seed in range(6):
        feeds = _onnx_feeds(seed)
        theirs = ort_values(model, feeds, onnx_names(imp), optimize=False)
        compare_isolated(imp, feeds, theirs, isolated)
        for op in g.ops:
            if op.kind not in ("GREATER", "LESS_EQUAL", "GREATER_EQUAL", "LESS", "EQUAL"):
                continue
            ins = [g.tensors[n] for n in op.inputs]
            codes = [t.data if t.is_constant else ort_in_ir(imp, theirs, t.name) for t in ins]
            want = ort_in_ir(imp, theirs, op.outputs[0])
            if want is None:
                want = theirs[imp.origin[op.outputs[0]][0]]
            ours = KERNELS[op.kind](KernelCall(op, codes, ins, g.op_outputs(op)))
            a, b = np.broadcast_arrays(*[(c.astype(np.float64) - t.zero_point()) * t.scale()
                                         for c, t in zip(codes, ins)])
            differ = ours != want
            compared += differ.size
            near += int(np.count_nonzero(np.abs(a - b) <= 2.0 ** -8))
            assert np.all(np.abs(a - b)[differ] <= 2.0 ** -8), (op.kind, np.abs(a - b)[differ])
    assert compared >= 6 * 5 * 60
    exact = ("MAXIMUM", "MINIMUM", "SELECT_V2")
    assert all(d.worst <= (0 if d.op in exact else 1) for d in isolated.values()), isolated
    assert {d.op for d in isolated.values()} >= {"SUB", "MAXIMUM", "MINIMUM", "SELECT_V2"}


def test_onnx_qdq_compiles_and_verifies_under_sanitizers(tmp_path):
    from tinyml.verify import verify
    report = verify(_onnx_qdq_model(tmp_path), "host", samples=20, sanitize=True)
    assert report.samples == 22 and report.mismatched_outputs == 0 and report.sanitized


# --------------------------------------------------------------------------------------------
# Hand-built int8 graphs: quantizations and broadcasts no converter emits (equal scales with
# tied values, scalars, 5-D shapes that merge to 4), exported to TFLite and run by TFLM


#: (shape of input 1, shape of input 2): the output is their broadcast.
BROADCASTS = [((2, 3, 4, 5), (2, 3, 4, 5)), ((1, 4, 1, 6), (3, 1, 5, 1)), ((7,), (2, 1, 7)),
              ((), (3, 4)), ((2, 3, 1, 4, 5), (2, 3, 6, 4, 5))]


def _hand_built(kind: str, shapes, seed: int, tied: bool):
    """One ``kind`` op on random int8 inputs; with ``tied`` both inputs share a quantization
    and take few distinct values, so comparisons meet equal operands."""
    from support.graph_builder import Builder
    from tinyml.ir import Tensor
    from tinyml.ir import ops as irops
    b = Builder(f"{kind.lower()}_{seed}", seed)
    a = b.input(shapes[0])
    sa, za = b.graph.tensors[a].scale(), b.graph.tensors[a].zero_point()
    shared = tied or kind in ("MAXIMUM", "MINIMUM", "SELECT_V2")
    second = b.input(shapes[1], *((sa, za) if shared else (None, None)))
    if tied:
        for name in (a, second):
            b.feeds[name] = b.rng.integers(-3, 3, b.graph.tensors[name].shape).astype(np.int8)
    if kind == "SELECT_V2":
        condition = "condition"
        b.graph.add_tensor(Tensor(condition, shapes[1][-2:], "bool"))
        b.graph.inputs.insert(0, condition)
        b.feeds[condition] = b.rng.integers(0, 2, shapes[1][-2:]).astype(bool)
        out = b.op(kind, [condition, a, second], irops.NoAttrs(), scale=sa, zero_point=za)
    elif kind in irops.COMPARISONS:
        out = b.op(kind, [a, second], irops.NoAttrs(), dtype="bool")
    elif kind == "SUB":
        out = b.op(kind, [a, second], irops.ElementwiseAttrs(("NONE", "RELU")[seed % 2]))
    else:
        out = b.op(kind, [a, second], irops.NoAttrs(), *((sa, za) if shared else (None, None)))
    return b.finish(out)


HAND_BUILT_KINDS = ["SUB", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "SELECT_V2",
                    "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "EQUAL", "NOT_EQUAL"]


@pytest.mark.parametrize("kind", HAND_BUILT_KINDS)
def test_hand_built_graphs_match_tflm_and_c(kind, harness):  # noqa: F811
    """Reference = TFLM on every tensor (inputs random, all-minimum, all-maximum), then the C
    kernels = reference, all graphs of a kind in one sanitized driver."""
    from support.quantize_oracles import tflm_tensor_mismatches
    from support.c_harness import graph_jobs, mismatches
    from tinyml.codegen.lowering import lower
    from tinyml.quantize.tflite_export import export_tflite
    from tinyml.reference import run
    jobs, expected, outputs, compared = [], [], [], 0
    for i, shapes in enumerate(BROADCASTS):
        for tied in (False, True):
            graph, inputs = _hand_built(kind, shapes, 10 * i + tied, tied)
            extremes = [[np.full(x.shape, v).astype(x.dtype) for x in inputs] for v in (0, 127)]
            extremes[0] = [np.full(x.shape, -128, np.int8) if x.dtype == np.int8 else x
                           for x in extremes[0]]
            differ, count = tflm_tensor_mismatches(export_tflite(graph), graph,
                                                   [inputs] + extremes)
            assert not differ, (shapes, tied, differ)
            compared += count
            values = run(graph, inputs, keep_all=True)
            outputs.append(values[graph.outputs[0]])
            batch = graph_jobs(graph, lower(graph), values, f"{shapes}{'-tied' * tied}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    assert compared >= len(BROADCASTS) * 2 * 3 * 3
    bad = {k: v for k, v in mismatches(jobs, harness.run(jobs), expected).items() if v}
    assert not bad, bad
    if kind in COMPARISONS:  # both outcomes occur
        assert 0 < np.mean(np.concatenate([o.ravel() for o in outputs])) < 1


def test_unmergeable_5d_broadcast_is_a_one_line_error():
    from tinyml.codegen.lowering import lower
    from tinyml.errors import UnsupportedOpError
    graph, _ = _hand_built("SUB", ((2, 1, 3, 1, 4), (1, 5, 3, 2, 4)), 0, False)
    with pytest.raises(UnsupportedOpError, match=r"SUB in layer 'y3'.*5 dimensions.*4"):
        lower(graph)


def test_sub_multipliers_are_computed_in_double_as_tflm_does():
    """TFLM's SUB source divides its float32 scales in float, but the tflite-micro release
    (the oracle) computes in double, as ADD does. With these scales the two differ on 24 of
    the 65,536 input pairs: the reference equals TFLM on every pair, float32 would not."""
    from support.oracles import tflm_interpreter
    from tinyml.ir import Graph, Op, Quantization, Tensor
    from tinyml.ir import ops as irops
    from tinyml.quantize.tflite_export import export_tflite
    from tinyml.reference import run
    from tinyml.reference.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier
    scales = [float(np.float32(s)) for s in (0.0479, 0.0159, 0.0402)]
    g = Graph("sub_pairs")
    for name, shape, scale in (("a", (256, 1), scales[0]), ("b", (1, 256), scales[1]),
                               ("y", (), scales[2])):
        g.add_tensor(Tensor(name, shape, "int8", Quantization([scale], [0])))
    g.add_op(Op("SUB", "sub", ["a", "b"], ["y"], irops.ElementwiseAttrs()))
    g.inputs, g.outputs = ["a", "b"], ["y"]
    g.finalize()
    codes = np.arange(-128, 128, dtype=np.int8)
    inputs = [codes.reshape(256, 1), codes.reshape(1, 256)]
    interpreter = tflm_interpreter(export_tflite(g))
    for i, x in enumerate(inputs):
        interpreter.set_input(x, i)
    interpreter.invoke()
    tflm = interpreter.get_output(0)
    np.testing.assert_array_equal(run(g, inputs)["y"], tflm)

    f32 = np.float32  # the source's float arithmetic
    twice_max = f32(2) * max(f32(scales[0]), f32(scales[1]))
    (m1, s1), (m2, s2), (mo, so) = (
        quantize_multiplier(float(f32(scales[0]) / twice_max)),
        quantize_multiplier(float(f32(scales[1]) / twice_max)),
        quantize_multiplier(float(twice_max / (f32(1 << 20) * f32(scales[2])))))
    a, b = (x.astype(np.int64) << 20 for x in inputs)
    diff = multiply_by_quantized_multiplier(a, m1, s1) - multiply_by_quantized_multiplier(b, m2, s2)
    in_float = np.clip(multiply_by_quantized_multiplier(diff, mo, so), -128, 127)
    assert np.count_nonzero(in_float != tflm) == 24


def test_comparison_of_an_input_with_scale_one_or_more_is_a_one_line_error():
    """TFLM aborts (QuantizeMultiplierSmallerThanOneExp) when a comparison's int8 input has a
    scale of 1 or more; tinyml says so, naming the layer, in the reference and in lowering."""
    from tinyml.codegen.lowering import lower
    from tinyml.errors import TinymlError
    from tinyml.reference import run
    graph, inputs = _hand_built("GREATER", ((3, 4), (3, 4)), 0, False)
    graph.tensors[graph.inputs[1]].quant.scale[0] = 2.0
    for action in (lambda: lower(graph), lambda: run(graph, inputs)):
        with pytest.raises(TinymlError, match=r"layer 'y3' \(GREATER\): input 2 scale as "
                                              r"multiplier 2 is outside \(0, 1\)") as info:
            action()
        assert "\n" not in str(info.value)


def test_onnx_shape_arithmetic_with_equal_and_where_is_evaluated_at_import():
    """tf2onnx's Reshape target Where(Equal(target, 0), Shape(x), target): comparisons and
    selections of constants are computed at import, so no integer op is left to compile."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from support.onnx_cases import ort_values
    from tinyml.frontends.onnx import import_onnx
    from tinyml.reference import run
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Equal", ["target", "zero"], ["keep"]),
             helper.make_node("Where", ["keep", "s", "target"], ["shape"]),
             helper.make_node("Reshape", ["x", "shape"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    graph = helper.make_graph(
        nodes, "shape_where", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 5])],
        [numpy_helper.from_array(np.array([0, 3, 0, -1], np.int64), "target"),
         numpy_helper.from_array(np.array(0, np.int64), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    g = import_onnx(model, name="shape_where").graph
    for op in g.ops:
        if op.kind in ("EQUAL", "SELECT_V2"):
            assert all(g.tensors[n].is_constant for n in op.outputs), op.kind
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(run(g, {"x": x})[g.outputs[0]],
                                  ort_values(model, {"x": x})["y"])


def test_onnx_float_model_quantized_by_tinyml_is_bit_exact_with_tflm(tmp_path):
    """The float ONNX graph (a three-input Min, comparisons against a constant, Where) through
    tinyml's quantizer: the int8 graph, exported, equals TFLM on every tensor."""
    import onnx
    from support.quantize_oracles import tflm_tensor_mismatches
    from tinyml.quantize import quantize_model
    path = tmp_path / "binary.onnx"
    onnx.save(_onnx_float_model(), str(path))
    model = quantize_model(path, "random:-1,1", samples=20)
    assert ONNX_KINDS <= {op.kind for op in model.graph.ops}
    samples = input_sets(model.graph)
    mismatches, compared = tflm_tensor_mismatches(model.to_tflite(), model.graph, samples)
    assert compared >= len(samples) * len(model.graph.ops)
    assert not mismatches, mismatches
