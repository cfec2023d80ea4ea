"""The data_movement ops (slices, splits, resizes, depth/space, mirror pad, broadcast, reverse,
gathers) against TFLM, on models the TFLite converter makes from small Keras models.

Each case checks that the converter emitted the op (and variant) the case is about, then
requires every tensor of the reference interpreter to equal TFLM's, bit for bit, on seeded
random inputs plus the all-minimum and all-maximum inputs; the compiled C then runs under
AddressSanitizer and UndefinedBehaviorSanitizer (``verify --sanitize``) and must match both
oracles on every sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

from support.int8_op_models import compare_all_tensors
from support.oracles import tflm_interpreter
from support.tflite_zoo import convert
from tinyml.frontends.tflite import load_tflite_bytes

SEEDS = range(4)


def _tf():
    import tensorflow as tf
    return tf


def _lambda(fn):
    return _tf().keras.layers.Lambda(fn)


# ---- models (module level: tflite_zoo caches conversions by their code) ---------------------

def cropping(x):
    return _tf().keras.layers.Cropping2D(((1, 2), (2, 1)))(x)


def strided_slice_shrink(x):
    return _lambda(lambda t: t[:, ::-2, 1:5, 1])(x)


def slice_channels(x):
    return _lambda(lambda t: _tf().slice(t, [0, 1, 0, 1], [1, 3, 4, 2]))(x)


def split_equal(x):
    def f(t):
        a, b, c = _tf().split(t, 3, axis=-1)
        return _tf().concat([c, a, b], axis=-1)
    return _lambda(f)(x)


def split_sizes(x):
    def f(t):
        a, b, c = _tf().split(t, [1, 3, 2], axis=2)
        return _tf().concat([b, c, a], axis=2)
    return _lambda(f)(x)


def unstack_rows(x):
    def f(t):
        return _tf().concat(_tf().unstack(t, axis=1)[::-1], axis=-1)
    return _lambda(f)(x)


def upsample_nearest(x):
    # Keras 3's UpSampling2D(interpolation="nearest") converts to RESHAPE and TILE, and TFLM
    # has no TILE kernel; tf.image.resize is the nearest-neighbour upsampling TFLM runs.
    return _lambda(lambda t: _tf().image.resize(t, (6, 8), "nearest"))(x)


def upsample_bilinear(x):
    return _tf().keras.layers.UpSampling2D((2, 3), interpolation="bilinear")(x)


def resize_bilinear_odd(x):
    return _lambda(lambda t: _tf().image.resize(t, (7, 5), "bilinear"))(x)


def resize_bilinear_align(x):
    return _lambda(lambda t: _tf().compat.v1.image.resize_bilinear(
        t, (9, 4), align_corners=True))(x)


def resize_bilinear_legacy(x):
    return _lambda(lambda t: _tf().compat.v1.image.resize_bilinear(t, (5, 11)))(x)


def resize_nearest_odd(x):
    return _lambda(lambda t: _tf().image.resize(t, (7, 3), "nearest"))(x)


def resize_nearest_align(x):
    return _lambda(lambda t: _tf().compat.v1.image.resize_nearest_neighbor(
        t, (9, 5), align_corners=True))(x)


def depth_to_space(x):
    return _lambda(lambda t: _tf().nn.depth_to_space(t, 2))(x)


def space_to_depth(x):
    return _lambda(lambda t: _tf().nn.space_to_depth(t, 2))(x)


def pad_reflect(x):
    return _lambda(lambda t: _tf().pad(t, [[0, 0], [2, 1], [1, 3], [0, 0]], "REFLECT"))(x)


def pad_symmetric(x):
    return _lambda(lambda t: _tf().pad(t, [[0, 0], [3, 1], [0, 2], [1, 0]], "SYMMETRIC"))(x)


def pad_constant(x):
    return _lambda(lambda t: _tf().pad(t, [[0, 0], [1, 2], [2, 0], [0, 1]],
                                       constant_values=0.75))(x)


def broadcast(x):
    return _lambda(lambda t: _tf().broadcast_to(t, (1, 4, 5, 3)))(x)


def reverse(x):
    return _lambda(lambda t: _tf().reverse(t, [1, 2]))(x)


def gather_rows(x):
    return _lambda(lambda t: _tf().gather(t, [2, 0, 1, 1, 3], axis=1))(x)


def gather_nd(x):
    return _lambda(lambda t: _tf().gather_nd(t, [[0, 1, 2], [0, 0, 0], [0, 3, 1]]))(x)


def several_moves(x):
    tf = _tf()
    layers = tf.keras.layers
    y = layers.Conv2D(8, 3, padding="same", bias_initializer="random_normal")(x)
    y = layers.Cropping2D(((1, 0), (0, 1)))(y)

    def moves(t):
        t = tf.image.resize(t, (10, 12), "bilinear")
        t = tf.pad(t, [[0, 0], [1, 1], [2, 0], [0, 0]], "REFLECT")
        a, b = tf.split(t, 2, axis=-1)
        t = tf.concat([tf.reverse(b, [2]), a], axis=-1)
        t = tf.nn.space_to_depth(t, 2)
        return tf.gather(t, [3, 1, 0], axis=1)
    return _lambda(moves)(y)


@dataclass
class Case:
    build: Callable
    shape: tuple[int, ...]
    ops: tuple[str, ...]
    check: Callable | None = None
    options: dict = field(default_factory=dict)


def _attrs(kind, **expected):
    def check(graph):
        op = next(o for o in graph.ops if o.kind == kind)
        for name, value in expected.items():
            assert getattr(op.attrs, name) == value, (name, op.attrs)
    return check


def _pad_value_nonzero(graph):
    """PADV2: a pad value other than the zero point (0.75 in real terms)."""
    op = next(o for o in graph.ops if o.kind == "PAD")
    assert op.attrs.value is not None and op.attrs.value != graph.tensors[op.inputs[0]]\
        .zero_point(), op.attrs


CASES = {
    "cropping2d": Case(cropping, (1, 7, 8, 3), ("STRIDED_SLICE",)),
    "strided_slice_reverse_shrink": Case(strided_slice_shrink, (1, 7, 6, 3), ("STRIDED_SLICE",),
                                         _attrs("STRIDED_SLICE", shrink_axis_mask=8)),
    "slice": Case(slice_channels, (1, 5, 4, 4), ("SLICE",)),
    "split": Case(split_equal, (1, 4, 5, 6), ("SPLIT", "CONCATENATION")),
    "split_v": Case(split_sizes, (1, 3, 6, 4), ("SPLIT_V",)),
    "unpack": Case(unstack_rows, (1, 3, 4, 5), ("UNPACK",)),
    "upsample_nearest": Case(upsample_nearest, (1, 3, 4, 5), ("RESIZE_NEAREST_NEIGHBOR",)),
    "upsample_bilinear": Case(upsample_bilinear, (1, 4, 3, 5), ("RESIZE_BILINEAR",),
                              _attrs("RESIZE_BILINEAR", half_pixel_centers=True)),
    "resize_bilinear_odd": Case(resize_bilinear_odd, (1, 4, 6, 3), ("RESIZE_BILINEAR",)),
    "resize_bilinear_align_corners": Case(resize_bilinear_align, (1, 5, 6, 3),
                                          ("RESIZE_BILINEAR",),
                                          _attrs("RESIZE_BILINEAR", align_corners=True)),
    "resize_bilinear_legacy": Case(resize_bilinear_legacy, (1, 3, 4, 2), ("RESIZE_BILINEAR",),
                                   _attrs("RESIZE_BILINEAR", align_corners=False,
                                          half_pixel_centers=False)),
    "resize_nearest_odd": Case(resize_nearest_odd, (1, 5, 4, 3),
                               ("RESIZE_NEAREST_NEIGHBOR",)),
    "resize_nearest_align_corners": Case(resize_nearest_align, (1, 4, 3, 2),
                                         ("RESIZE_NEAREST_NEIGHBOR",),
                                         _attrs("RESIZE_NEAREST_NEIGHBOR", align_corners=True)),
    "depth_to_space": Case(depth_to_space, (1, 3, 4, 12), ("DEPTH_TO_SPACE",)),
    "space_to_depth": Case(space_to_depth, (1, 4, 6, 3), ("SPACE_TO_DEPTH",)),
    "mirror_pad_reflect": Case(pad_reflect, (1, 4, 5, 3), ("MIRROR_PAD",),
                               _attrs("MIRROR_PAD", mode="REFLECT")),
    "mirror_pad_symmetric": Case(pad_symmetric, (1, 4, 5, 3), ("MIRROR_PAD",),
                                 _attrs("MIRROR_PAD", mode="SYMMETRIC")),
    "padv2_constant": Case(pad_constant, (1, 3, 4, 2), ("PAD",),
                           lambda g: _pad_value_nonzero(g)),
    "broadcast_to": Case(broadcast, (1, 1, 5, 3), ("BROADCAST_TO",)),
    "reverse": Case(reverse, (1, 3, 4, 5), ("REVERSE_V2",)),
    "gather": Case(gather_rows, (1, 4, 3, 2), ("GATHER",)),
    "gather_nd": Case(gather_nd, (1, 4, 3, 5), ("GATHER_ND",)),
    "several_moves": Case(several_moves, (1, 9, 11, 3),
                          ("STRIDED_SLICE", "RESIZE_BILINEAR", "MIRROR_PAD", "SPLIT",
                           "REVERSE_V2", "SPACE_TO_DEPTH", "GATHER")),
}


def _model_bytes(case: Case) -> bytes:
    return convert(case.build, [case.shape], **case.options).read_bytes()


def _inputs(graph, seed: int) -> list[np.ndarray]:
    t = graph.tensors[graph.inputs[0]]
    if seed == -1:
        return [np.full(t.shape, -128, np.int8)]
    if seed == -2:
        return [np.full(t.shape, 127, np.int8)]
    return [np.random.default_rng(seed).integers(-128, 128, t.shape).astype(np.int8)]


@pytest.mark.parametrize("name", list(CASES))
def test_matches_tflm_on_every_tensor(name):
    case = CASES[name]
    data = _model_bytes(case)
    graph = load_tflite_bytes(data, name=name)
    kinds = {op.kind for op in graph.ops if not all(graph.tensors[t].is_constant
                                                     for t in op.outputs)}
    assert set(case.ops) <= kinds, f"converter emitted {sorted(kinds)}, expected {case.ops}"
    if case.check is not None:
        case.check(graph)
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    compared = 0
    for seed in [*SEEDS, -1, -2]:
        mismatches = compare_all_tensors(graph, interpreter, _inputs(graph, seed))
        compared += 1
        for tensor, count in mismatches.items():
            total[tensor] = total.get(tensor, 0) + count
    assert compared == len(SEEDS) + 2
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"


#: Compiled by default (one per kernel path); the rest run with the slow tests.
#: ("several_moves" runs the three C kernels in one build.)
COMPILED_DEFAULT = {"several_moves", "unpack", "resize_bilinear_align_corners", "gather_nd"}


@pytest.mark.parametrize("name", [n if n in COMPILED_DEFAULT else
                                  pytest.param(n, marks=pytest.mark.slow) for n in CASES])
def test_compiled_c_matches_under_sanitizers(name, tmp_path):
    """The generated C (the C kernels with the lowering's tables), under ASan and UBSan,
    equals the reference and TFLM on random, all-minimum and all-maximum inputs."""
    from tinyml.verify import verify
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(_model_bytes(CASES[name]))
    report = verify(path, "host", samples=4, sanitize=True).to_json()
    assert "tflite-micro" in report["oracle"], report
    assert report["samples"] == 6 and report["mismatched_outputs"] == 0, report


@pytest.mark.parametrize("target", ["cortex-m4", pytest.param("cortex-m0plus",
                                                                 marks=pytest.mark.slow)])
def test_several_ops_bit_exact_in_qemu(target, tmp_path):
    from tinyml.verify import verify
    path = tmp_path / "moves.tflite"
    path.write_bytes(_model_bytes(CASES["several_moves"]))
    graph = load_tflite_bytes(path.read_bytes(), name="moves")
    kinds = {op.kind for op in graph.ops}
    assert {"STRIDED_SLICE", "RESIZE_BILINEAR", "MIRROR_PAD", "SPLIT", "REVERSE_V2",
            "SPACE_TO_DEPTH", "GATHER"} <= kinds, kinds
    report = verify(path, target, samples=4, profile=False).to_json()
    assert "tflite-micro" in report["oracle"], report
    assert report["samples"] == 6 and report["mismatched_outputs"] == 0, report


def float_moves(x):
    """Every op of the family on a float model, for tinyml's own quantizer."""
    tf = _tf()
    layers = tf.keras.layers
    y = layers.Conv2D(6, 3, padding="same", bias_initializer="random_normal")(x)
    y = layers.Cropping2D(((1, 0), (0, 1)))(y)

    def moves(t):
        t = tf.image.resize(t, (8, 10), "bilinear")
        t = tf.pad(t, [[0, 0], [1, 1], [2, 0], [0, 0]], "SYMMETRIC")
        a, b, c = tf.split(t, [1, 3, 2], axis=-1)
        t = tf.concat([tf.reverse(b, [2]), a, c], axis=-1)
        t = tf.slice(t, [0, 0, 1, 0], [1, 10, 8, 6])
        t = tf.nn.depth_to_space(tf.nn.space_to_depth(t, 2), 2)
        t = tf.image.resize(t, (5, 4), "nearest")
        rows = tf.unstack(t, axis=1)
        t = tf.concat(rows[::-1], axis=-1)
        t = tf.gather(t, [1, 3, 0], axis=1)
        t = tf.pad(t, [[0, 0], [1, 0], [0, 2]], constant_values=-0.5)
        t = tf.broadcast_to(t[:, :1], (1, 3, 32))[:, :, 1:]
        return tf.gather_nd(t, [[0, 2], [0, 0]])
    return _lambda(moves)(y)


def test_quantizer_makes_int8_ops_tflm_runs_bit_exact():
    """A float model through tinyml's quantizer (output quantization = input's for every
    op), exported to TFLite: TFLM equals the reference on every tensor."""
    from support.quantize_oracles import tflm_tensor_mismatches
    from tinyml.quantize import quantize_model
    model = quantize_model(convert(float_moves, [(1, 9, 11, 3)], int8=False),
                           "random:-1,1", samples=20)
    kinds = {op.kind for op in model.graph.ops}
    assert {"STRIDED_SLICE", "RESIZE_BILINEAR", "MIRROR_PAD", "SPLIT_V", "REVERSE_V2",
            "SLICE", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "RESIZE_NEAREST_NEIGHBOR",
            "UNPACK", "GATHER", "PAD", "BROADCAST_TO", "GATHER_ND"} <= kinds, kinds
    for op in model.graph.ops:
        if op.kind not in ("CONV_2D", "QUANTIZE", "CONCATENATION"):
            x = model.graph.tensors[op.inputs[0]]
            for name in op.outputs:
                assert model.graph.tensors[name].quant == x.quant, op.name
    rng = np.random.default_rng(3)
    shape = model.graph.tensors[model.graph.inputs[0]].shape
    samples = [[rng.integers(-128, 128, shape).astype(np.int8)] for _ in range(4)]
    samples += [[np.full(shape, v, np.int8)] for v in (-128, 127)]
    mismatches, compared = tflm_tensor_mismatches(model.to_tflite(), model.graph, samples)
    assert compared >= len(samples) * len(model.graph.ops)
    assert not mismatches, f"elements differing from TFLM per tensor: {mismatches}"


# ---- ONNX: float against onnxruntime, QDQ within 1 LSB of its own arithmetic -----------------

def _onnx_moves(resize_mode: str = "nearest", reductions: bool = True):
    """NCHW as PyTorch exports it: conv, DepthToSpace, Resize (nearest x2 and linear to an
    odd size), reflect Pad, SpaceToDepth, a Tile of a unit dimension, Expand, Slice, Split."""
    from onnx import helper
    from support.onnx_cases import make_model
    rng = np.random.default_rng(0)
    w = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    inits = {"w1": w(8, 3, 3, 3), "b1": w(8) / 3,
             "scales": np.array([1, 1, 2, 2], np.float32),
             "sizes": np.array([1, 2, 9, 13], np.int64), "roi": np.array([], np.float32),
             "pads": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64),
             "reps": np.array([1, 1, 1, 4], np.int64),
             "shape": np.array([1, 1, 3, 1], np.int64),
             "starts": np.array([1, 0], np.int64), "ends": np.array([7, 12], np.int64),
             "axes": np.array([2, 3], np.int64), "split": np.array([3, 5], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["c1"], ["d2s"], blocksize=2, mode="DCR"),
        helper.make_node("Resize", ["d2s", "roi", "scales"], ["up"], mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        helper.make_node("Resize", ["up", "roi", "", "sizes"], ["rs"], mode=resize_mode,
                         coordinate_transformation_mode="half_pixel",
                         nearest_mode="round_prefer_ceil"),
        helper.make_node("Pad", ["rs", "pads"], ["pad"], mode="reflect"),
        helper.make_node("Slice", ["pad", "starts", "ends", "axes"], ["sl"]),
        helper.make_node("SpaceToDepth", ["sl"], ["s2d"], blocksize=2),
        helper.make_node("ReduceMean", ["s2d"], ["mean"], axes=[2], keepdims=1),
        helper.make_node("Expand", ["mean", "shape"], ["exp"]),
        helper.make_node("ReduceMean", ["exp"], ["mean2"], axes=[3], keepdims=1),
        helper.make_node("Tile", ["mean2", "reps"], ["tile"]),
        helper.make_node("Split", ["tile", "split"], ["p0", "p1"], axis=1),
        helper.make_node("Concat", ["p1", "p0"], ["y"], axis=1),
    ]
    if not reductions:  # onnxruntime's quantizer leaves them float: no int8 C for them
        nodes[-6:] = [helper.make_node("Split", ["s2d", "split"], ["p0", "p1"], axis=1),
                      helper.make_node("Concat", ["p1", "p0"], ["y"], axis=1)]
    return make_model(nodes, {"x": [1, 3, 6, 7]}, ["y"], inits,
                      name=f"moves_{resize_mode}_{int(reductions)}")


@pytest.mark.parametrize("resize_mode", ["nearest", "linear"])
def test_onnx_float_matches_onnxruntime(resize_mode):
    from support.onnx_cases import check_float, op_counts
    imp, _ = check_float(_onnx_moves(resize_mode))
    kinds = op_counts(imp.graph)
    for kind in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "MIRROR_PAD", "BROADCAST_TO",
                 "RESIZE_BILINEAR" if resize_mode == "linear" else "RESIZE_NEAREST_NEIGHBOR"):
        assert kind in kinds, (kind, kinds)


@pytest.mark.parametrize("resize_mode", ["nearest", "linear"])
def test_onnx_qdq_stays_int8_within_one_lsb(resize_mode, tmp_path):
    from support.onnx_cases import quantize_qdq, run_qdq
    path = quantize_qdq(_onnx_moves(resize_mode), (1, 3, 6, 7), tmp_path, resize_mode,
                     per_channel=True)
    imp, e2e, isolated, _ = run_qdq(path, runs=6)
    graph = imp.graph
    # onnxruntime's quantizer leaves ReduceMean, Expand and Tile float here; the rest of the
    # family must stay int8 (a QDQ view moved, not dequantized).
    moves = [op for op in graph.ops if op.kind in (
        "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "MIRROR_PAD", "STRIDED_SLICE",
        "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR")]
    assert len(moves) == 8, [op.kind for op in graph.ops]
    for op in moves:
        assert graph.tensors[op.inputs[0]].dtype == "int8", op.name
    assert isolated and all(d.worst <= 1 for d in isolated.values()), isolated
    exact = {t: d for t, d in isolated.items() if d.op != "RESIZE_BILINEAR"
             and d.op in {op.kind for op in moves}}
    assert exact and all(d.worst == 0 for d in exact.values()), exact


# ---- constant outputs and refusals -------------------------------------------------------------

def _graph_with(kind, inputs, attrs=None):
    from tinyml.ir import Graph, Op, Quantization, Tensor
    g = Graph(kind.lower())
    q = Quantization(np.float32([0.05]), np.int64([3]))
    g.add_tensor(Tensor("x", (1, 2, 3, 4), "int8", q))
    for name, data in inputs.items():
        g.add_tensor(Tensor(name, np.shape(data), str(np.asarray(data).dtype), None,
                            np.asarray(data)))
    g.add_tensor(Tensor("y", (), "int8", q))
    g.add_op(Op(kind, kind.lower(), ["x", *inputs], ["y"], attrs))
    g.inputs, g.outputs = ["x"], ["y"]
    return g


def test_fill_and_zeros_like_outputs_are_constants_evaluated_at_import():
    from tinyml.ir import Graph, Op, Tensor
    g = Graph("fill")
    g.add_tensor(Tensor("x", (1, 3, 2), "float32"))
    g.add_tensor(Tensor("dims", (2,), "int32", None, np.int32([2, 5])))
    g.add_tensor(Tensor("value", (), "float32", None, np.float32(0.25)))
    g.add_tensor(Tensor("filled", (), "float32"))
    g.add_tensor(Tensor("zeros", (), "float32"))
    g.add_op(Op("FILL", "fill", ["dims", "value"], ["filled"]))
    g.add_op(Op("ZEROS_LIKE", "zeros", ["x"], ["zeros"]))
    g.inputs, g.outputs = ["x"], ["filled", "zeros"]
    g = g.finalize()
    assert g.tensors["filled"].is_constant and g.tensors["zeros"].is_constant
    np.testing.assert_array_equal(g.tensors["filled"].data, np.full((2, 5), 0.25, np.float32))
    np.testing.assert_array_equal(g.tensors["zeros"].data, np.zeros((1, 3, 2), np.float32))


def test_gather_with_activation_indices_is_refused_in_one_line():
    from tinyml.codegen.lowering import lower
    from tinyml.errors import UnsupportedOpError
    from tinyml.ir import Graph, Op, Quantization, Tensor
    g = Graph("gather")
    q = Quantization(np.float32([0.05]), np.int64([3]))
    g.add_tensor(Tensor("x", (1, 4, 3), "int8", q))
    g.add_tensor(Tensor("idx", (2,), "int32"))
    g.add_tensor(Tensor("y", (), "int8", q))
    g.add_op(Op("GATHER", "pick", ["x", "idx"], ["y"], None))
    g.inputs, g.outputs = ["x", "idx"], ["y"]
    with pytest.raises(UnsupportedOpError, match="GATHER.*'pick'.*indices must be constant"):
        lower(g.finalize())


def test_out_of_range_gather_indices_are_refused():
    from tinyml.errors import UnsupportedOpError
    from tinyml.ir.ops import AxisAttrs
    from tinyml.reference import run
    from tinyml.codegen.lowering import lower
    from tinyml.errors import TinymlError
    g = _graph_with("GATHER", {"idx": np.int32([0, 3])}, AxisAttrs(axis=1)).finalize()
    with pytest.raises(UnsupportedOpError, match="GATHER.*indices outside"):
        lower(g)
    with pytest.raises(TinymlError, match="GATHER.*indices outside"):
        run(g, [np.zeros((1, 2, 3, 4), np.int8)])


def test_onnx_qdq_model_compiles_and_matches_under_sanitizers(tmp_path):
    """The int8 graph of a QDQ model (Slice and Split as STRIDED_SLICE, the image moves, the
    int8 bilinear resize) compiles; the C equals the reference under ASan and UBSan."""
    from support.onnx_cases import quantize_qdq
    from tinyml.verify import verify
    path = quantize_qdq(_onnx_moves("linear", reductions=False), (1, 3, 6, 7), tmp_path, "c",
                     per_channel=True)
    report = verify(path, "host", samples=4, sanitize=True).to_json()
    assert report["samples"] == 6 and report["mismatched_outputs"] == 0, report


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_onnx_upsample_opset9_matches_onnxruntime(mode):
    from onnx import helper
    from support.onnx_cases import make_model
    from support.onnx_cases import check_float, op_counts
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Upsample", ["r", "scales"], ["up"], mode=mode),
             helper.make_node("Relu", ["up"], ["y"])]
    model = make_model(nodes, {"x": [1, 2, 3, 4]}, ["y"],
                       {"scales": np.array([1, 1, 2, 3], np.float32)}, opset=9,
                       name=f"upsample_{mode}")
    imp, _ = check_float(model)
    assert ("RESIZE_BILINEAR" if mode == "linear" else "RESIZE_NEAREST_NEIGHBOR") in \
        op_counts(imp.graph)


@pytest.mark.parametrize("name", list(CASES))
def test_tflite_export_runs_bit_exact_in_tflm(name):
    """tinyml's TFLite writer: the imported graph written back runs in TFLM, every tensor
    equal to the reference (the options, constant operands and versions TFLM reads)."""
    from tinyml.quantize.tflite_export import export_tflite
    graph = load_tflite_bytes(_model_bytes(CASES[name]), name=name)
    exported = export_tflite(graph)
    reread = load_tflite_bytes(exported, name=name)
    assert [op.kind for op in reread.ops] == [op.kind for op in graph.ops
                                              if not all(graph.tensors[t].is_constant
                                                         for t in op.outputs)]
    interpreter = tflm_interpreter(exported)
    for seed in (0, -1, -2):
        assert not compare_all_tensors(reread, interpreter, _inputs(reread, seed)), seed
