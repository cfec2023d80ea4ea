"""Recurrent layers as the TFLite converter writes them when unrolled.

Keras' SimpleRNN with ``unroll=True`` becomes one FULLY_CONNECTED per step for the input and
the recurrent state, ADD and TANH: ops tinyml compiles. The reference must equal TFLM on every
tensor and the C kernels must reproduce TFLM's tensors under ASan/UBSan. (UNIDIRECTIONAL_
SEQUENCE_LSTM is not supported: see ``tinyml ops``.) Keras' GRU unrolled the same way adds
SPLIT / STRIDED_SLICE, LOGISTIC, MUL and SUB, and a float SPLIT island on its first step;
Keras' LSTM unrolled is the same primitive ops.
(Full-int8 conversion of the GRU that is not unrolled, a WHILE loop, crashes TensorFlow 2.21's
converter with Keras 3 and tf_keras alike.)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

from support.c_harness import Harness, check_graph
from support.int8_op_models import compare_all_tensors, tflm_all_tensors
from support.oracles import tflm_interpreter
from support.tflite_zoo import convert
from tinyml import reference
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.passes import run_passes


@pytest.fixture(scope="module")
def harness():
    """One sanitized build of the kernel library for the module's tests."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Harness(Path(tmp))


def simple_rnn(x):
    import tensorflow as tf
    L = tf.keras.layers
    return L.Dense(4)(L.SimpleRNN(8, unroll=True)(x))


def test_unrolled_simple_rnn_matches_tflm_on_every_tensor(harness):
    data = convert(simple_rnn, [(1, 6, 5)]).read_bytes()
    graph = load_tflite_bytes(data, name="simple_rnn")
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("TANH") == 6 and kinds.count("FULLY_CONNECTED") >= 12, kinds
    interpreter = tflm_interpreter(data)
    samples, total = [], {}
    for seed in range(3):
        x = np.random.default_rng(seed).integers(-128, 128, (1, 6, 5)).astype(np.int8)
        for tensor, count in compare_all_tensors(graph, interpreter, [x]).items():
            total[tensor] = total.get(tensor, 0) + count
        values = tflm_all_tensors(interpreter, [x], len(graph.tensors))
        samples.append({n: v for n, v in zip(graph.tensors, values) if v is not None})
    assert not total, total
    bad = {k: v for k, v in check_graph(harness, run_passes(graph), samples, "rnn").items()
           if v}
    assert not bad, bad


def int8_samples(passed, interpreter, graph, x) -> dict[str, np.ndarray]:
    """Every tensor of ``passed`` on ``x``: TFLM's value, except for the tensors the passes
    turned from float into int8 (an island's piece nobody reads: TFLM holds it in float), which
    take the reference's."""
    values = dict(zip(graph.tensors, tflm_all_tensors(interpreter, [x], len(graph.tensors))))
    own = reference.run(passed, [x], keep_all=True)
    return {n: (values[n] if values.get(n) is not None
                and values[n].dtype == np.dtype(passed.tensors[n].dtype) else own[n])
            for n in passed.tensors if n in own}


def gru(x):
    import tensorflow as tf
    L = tf.keras.layers
    return L.Dense(4)(L.GRU(8, unroll=True)(x))


@pytest.mark.slow  # 14 s; the split islands below are its fast sample
def test_unrolled_gru_matches_tflm_on_every_tensor(harness):
    """Keras' GRU with ``unroll=True``: per step a FULLY_CONNECTED per input and state, SPLIT
    or STRIDED_SLICE into the gates, LOGISTIC, TANH, MUL, SUB, ADD. The converter leaves the
    first step's SPLIT in float (DEQUANTIZE -> SPLIT -> QUANTIZE per gate), which
    ``float_island_movement`` runs in int8 (not every conversion: the converter decides
    differently from run to run, so the island itself is tested on exported graphs below); the
    C then equals TFLM on every tensor."""
    data = convert(gru, [(1, 6, 5)]).read_bytes()
    kinds = [op.kind for op in load_tflite_bytes(data, name="gru").ops]
    assert kinds.count("TANH") == 6 and kinds.count("LOGISTIC") == 11, kinds
    check_against_tflm(data, harness)


@pytest.mark.slow  # 45 s (TensorFlow's start-up and the conversion)
def test_unrolled_tf_keras_gru_matches_tflm_on_every_tensor(harness):
    """tf_keras (Keras 2) writes the unrolled GRU's state gates with SPLIT_V instead of
    STRIDED_SLICEs: the same checks."""
    import tf_keras
    from support.quantize_oracles import converter_int8_keras
    tf_keras.utils.set_random_seed(0)
    x = tf_keras.Input(shape=(6, 5), batch_size=1)
    model = tf_keras.Model(x, tf_keras.layers.Dense(4)(tf_keras.layers.GRU(8, unroll=True)(x)))
    samples = [np.random.default_rng(s).normal(0, 1, (1, 6, 5)).astype(np.float32)
               for s in range(32)]
    data = converter_int8_keras(model, samples)
    kinds = [op.kind for op in load_tflite_bytes(data, name="gru").ops]
    assert kinds.count("SPLIT_V") == 5 and kinds.count("TANH") == 6, kinds
    check_against_tflm(data, harness)


def lstm(x):
    import tensorflow as tf
    L = tf.keras.layers
    return L.Dense(4)(L.LSTM(8, unroll=True)(x))


@pytest.mark.slow  # 20 s
def test_unrolled_lstm_matches_tflm_on_every_tensor(harness):
    """Keras' LSTM with ``unroll=True`` is primitive ops too (FULLY_CONNECTED, SPLIT into the
    four gates, LOGISTIC, TANH, MUL, ADD), not UNIDIRECTIONAL_SEQUENCE_LSTM."""
    data = convert(lstm, [(1, 6, 5)]).read_bytes()
    kinds = [op.kind for op in load_tflite_bytes(data, name="lstm").ops]
    assert kinds.count("TANH") == 12 and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in kinds, kinds
    check_against_tflm(data, harness)


def check_against_tflm(data: bytes, harness: Harness) -> None:
    """The passed int8 graph of ``data`` equals TFLM on every tensor, in the reference and in
    the C kernels (under the sanitizers)."""
    graph = load_tflite_bytes(data, name="recurrent")
    passed = run_passes(graph)
    assert not {"DEQUANTIZE", "QUANTIZE"} & {op.kind for op in passed.ops}
    interpreter = tflm_interpreter(data)
    samples, total = [], {}
    inputs = [np.random.default_rng(seed).integers(-128, 128, (1, 6, 5)).astype(np.int8)
              for seed in range(3)]
    inputs += [np.full((1, 6, 5), -128, np.int8), np.full((1, 6, 5), 127, np.int8)]
    for x in inputs:
        for tensor, count in compare_all_tensors(graph, interpreter, [x]).items():
            total[tensor] = total.get(tensor, 0) + count
        samples.append(int8_samples(passed, interpreter, graph, x))
    assert not total, total
    bad = {k: v for k, v in check_graph(harness, passed, samples[:3], "gru").items() if v}
    assert not bad, bad


def _split_island(kind: str, quants: dict[int, tuple[float, int]]) -> bytes:
    """x (int8, 3 x 256) -> DEQUANTIZE -> ``kind`` into three pieces along axis 0 ->
    QUANTIZE of the pieces in ``quants`` (piece index -> scale, zero point); the other pieces
    are read by nothing. Exported as a .tflite file, so TFLM runs the island in float."""
    from tinyml.ir import Graph, Op, Quantization, Tensor
    from tinyml.ir.ops import AxisAttrs, SplitAttrs
    from tinyml.quantize.tflite_export import export_tflite
    sizes = (1, 2) if kind == "SPLIT_V" else (1, 1, 1)
    g = Graph(f"{kind.lower()}_island")
    g.add_tensor(Tensor("x", (3, 256), "int8", Quantization(np.float32(0.037), 5)))
    g.add_tensor(Tensor("xf", (3, 256), "float32"))
    pieces = [f"piece{i}" for i in range(len(sizes))]
    for name, size in zip(pieces, sizes):
        g.add_tensor(Tensor(name, (256,) if kind == "UNPACK" else (size, 256), "float32"))
    g.add_op(Op("DEQUANTIZE", "dq", ["x"], ["xf"]))
    attrs = AxisAttrs(axis=0) if kind == "UNPACK" else SplitAttrs(axis=0, sizes=sizes)
    g.add_op(Op(kind, "move", ["xf"], pieces, attrs))
    for i, (scale, zero_point) in quants.items():
        g.add_tensor(Tensor(f"y{i}", g.tensors[pieces[i]].shape, "int8",
                            Quantization(np.float32(scale), zero_point)))
        g.add_op(Op("QUANTIZE", f"q{i}", [pieces[i]], [f"y{i}"]))
    g.inputs, g.outputs = ["x"], [f"y{i}" for i in quants]
    return export_tflite(g.finalize())


@pytest.mark.parametrize("kind, quants, tables", [
    # The pieces read share a quantization apart from x's: one table, at the leaf.
    ("SPLIT", {0: (0.05, -3), 2: (0.05, -3)}, 1),
    # Each piece read has its own: the move runs in x's quantization, a table per piece.
    ("SPLIT_V", {0: (0.05, -3), 1: (0.02, 10)}, 2),
    # x's own quantization for one piece: that piece needs no table.
    ("UNPACK", {0: (0.037, 5), 1: (0.1, 0), 2: (0.01, -128)}, 2),
])
def test_float_split_islands_run_in_int8_bit_exact_with_tflm(harness, kind, quants, tables):
    """DEQUANTIZE -> SPLIT / SPLIT_V / UNPACK -> QUANTIZE per piece (the unrolled GRU's first
    step) becomes the int8 move plus LOOKUP_TABLEs, equal to TFLM's float path on every code
    (each row of x holds all 256), in the reference and in the C kernels."""
    data = _split_island(kind, quants)
    graph = load_tflite_bytes(data, name=f"{kind.lower()}_island")
    passed = run_passes(graph)
    kinds = [op.kind for op in passed.ops]
    assert kinds.count(kind) == 1 and kinds.count("LOOKUP_TABLE") == tables, kinds
    assert not {"DEQUANTIZE", "QUANTIZE"} & set(kinds), kinds
    interpreter = tflm_interpreter(data)
    x = np.stack([np.roll(np.arange(-128, 128), 85 * i) for i in range(3)]).astype(np.int8)
    want = dict(zip(graph.tensors, tflm_all_tensors(interpreter, [x], len(graph.tensors))))
    got = reference.run(passed, [x])
    for name in passed.outputs:
        assert np.array_equal(got[name], want[name]), name
    bad = {k: v for k, v in check_graph(harness, passed, [int8_samples(passed, interpreter,
                                                                       graph, x)],
                                         kind).items() if v}
    assert not bad, bad


@pytest.mark.slow  # 10 s
def test_unrolled_gru_verifies_in_qemu_cortex_m4():
    """The GRU compiled for cortex-m4 runs on QEMU equal to the reference and TFLM."""
    import shutil
    from tinyml.verify import verify
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    report = verify(convert(gru, [(1, 6, 5)]), "cortex-m4", samples=2, profile=False)
    assert report.oracle == "reference+tflite-micro"
    assert report.samples == 4 and report.mismatched_outputs == 0
    assert report.measured["instructions_per_inference"] > 6 * 2 * 24 * 8  # the FC MACs


def _graph_island(second_piece: str):
    """DEQUANTIZE(x), DEQUANTIZE(w) -> CONCATENATION -> SPLIT in two -> QUANTIZE of piece 0
    at one scale, piece 1 ``"quantized"`` at another, at the ``"same"``, or ``"float"`` (a
    graph output)."""
    from tinyml.ir import Graph, Op, Quantization, Tensor
    from tinyml.ir.ops import ConcatenationAttrs, SplitAttrs
    g = Graph("split_island")
    for name, scale in (("x", 0.05), ("w", 0.02)):
        g.add_tensor(Tensor(name, (1, 4), "int8", Quantization(np.float32(scale), 1)))
        g.add_tensor(Tensor(f"{name}f", (1, 4), "float32"))
        g.add_op(Op("DEQUANTIZE", f"dq_{name}", [name], [f"{name}f"]))
    g.add_tensor(Tensor("cat", (1, 8), "float32"))
    g.add_op(Op("CONCATENATION", "cat", ["xf", "wf"], ["cat"], ConcatenationAttrs(axis=1)))
    g.add_tensor(Tensor("p0", (1, 4), "float32"))
    g.add_tensor(Tensor("p1", (1, 4), "float32"))
    g.add_op(Op("SPLIT", "split", ["cat"], ["p0", "p1"], SplitAttrs(axis=1, sizes=(4, 4))))
    g.add_tensor(Tensor("y0", (1, 4), "int8", Quantization(np.float32(0.1), 0)))
    g.add_op(Op("QUANTIZE", "q0", ["p0"], ["y0"]))
    g.inputs, g.outputs = ["x", "w"], ["y0", "p1"]
    if second_piece in ("quantized", "same"):
        scale, zero_point = (0.03, -2) if second_piece == "quantized" else (0.1, 0)
        g.add_tensor(Tensor("y1", (1, 4), "int8", Quantization(np.float32(scale), zero_point)))
        g.add_op(Op("QUANTIZE", "q1", ["p1"], ["y1"]))
        g.outputs = ["y0", "y1"]
    return g.finalize()


@pytest.mark.parametrize("second_piece", ["float", "quantized"])
def test_split_islands_that_cannot_run_in_int8_stay_float(second_piece):
    """A piece that stays float (read as a graph output), or two leaves whose pieces are
    quantized apart (no common quantization holds both exactly): the island is left alone."""
    graph = _graph_island(second_piece)
    kinds = [op.kind for op in graph.ops]
    assert [op.kind for op in run_passes(graph, passes=["float_island_movement"]).ops] == kinds


def test_split_island_of_two_leaves_into_one_quantization_runs_in_int8():
    """The same island with both pieces in one quantization: a table per leaf, equal to the
    float island on every code."""
    graph = _graph_island("same")
    passed = run_passes(graph, passes=["float_island_movement"])
    assert [op.kind for op in passed.ops] == ["LOOKUP_TABLE", "LOOKUP_TABLE", "CONCATENATION",
                                              "SPLIT"]
    codes = np.arange(-128, 128).reshape(64, 1, 4).astype(np.int8)
    for x, w in zip(codes, codes[::-1]):
        want, got = reference.run(graph, [x, w]), reference.run(passed, [x, w])
        assert all(np.array_equal(want[n], got[n]) for n in ("y0", "y1"))
