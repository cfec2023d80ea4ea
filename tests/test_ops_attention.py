"""The attention family (BATCH_MATMUL) against TFLM and its own C kernel.

Models come from the TFLite converter: attention scores (queries x keys transposed), the
weighted sum of values, broadcast batch dimensions, a transposed left operand and a constant
operand. For each model the test checks the converter emitted BATCH_MATMUL with the options
the case is about, then requires every tensor of tinyml's reference interpreter to equal
TFLM's, bit for bit, on seeded random inputs and on the all-minimum and all-maximum inputs;
the C kernel is then run on TFLM's own tensors under ASan and UBSan and must reproduce them.

The encoder block is also compiled whole and run on the host under the sanitizers and in
QEMU on cortex-m4 (tinyml verify: outputs against the reference and TFLM).
"""

from __future__ import annotations

import numpy as np
import pytest

from support.c_harness import Harness, check_graph
from support.int8_op_models import compare_all_tensors, tflm_all_tensors
from support.oracles import tflm_interpreter
from support.tflite_zoo import convert
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.passes import run_passes

SEEDS = range(3)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("kernels"))


def _tf():
    import tensorflow as tf
    return tf


def _lambda(fn):
    return _tf().keras.layers.Lambda(fn)


def scores_and_values(q, k):
    """Two heads: softmax(q k^T) v with v = k (adj_y, then the plain product)."""
    tf = _tf()

    def body(t):
        a, b = t
        scores = tf.nn.softmax(tf.matmul(a, b, transpose_b=True))
        return tf.matmul(scores, b)

    return _lambda(body)([q, k])


def broadcast_batch(q, k):
    """A (1, 2, 6, 5) operand against a (1, 1, 5, 7) one: the batch dimension broadcasts."""
    tf = _tf()

    def body(t):
        a, b = t
        return tf.matmul(a, tf.transpose(b[:, :1], (0, 1, 3, 2))[..., :5, :])

    return _lambda(body)([q, k])


def transposed_lhs(q, k):
    """adj_x: q^T k over a rank-3 pair."""
    tf = _tf()
    return _lambda(lambda t: tf.matmul(t[0], t[1], transpose_a=True))([q, k])


def constant_rhs(q):
    """Each head's rows times a constant (2, 6, 4) matrix (one per head)."""
    tf = _tf()
    w = np.random.default_rng(3).normal(0, 0.5, (1, 2, 6, 4)).astype(np.float32)
    return _lambda(lambda t: tf.matmul(t, tf.constant(w)))(q)


def encoder(x):
    """A tiny transformer encoder block: 2-head self-attention over 16 steps, residual
    LayerNormalization (MEAN, SQUARED_DIFFERENCE, RSQRT, MUL, ADD and the converter's float
    NEG of the mean), a ReLU feed-forward layer, a second LayerNormalization and a pooled
    classifier."""
    L = _tf().keras.layers
    h = L.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
    h = L.LayerNormalization()(L.Add()([h, x]))
    f = L.Dense(24)(L.Dense(32, activation="relu")(h))
    h = L.LayerNormalization()(L.Add()([h, f]))
    return L.Dense(4)(L.GlobalAveragePooling1D()(h))


#: name: (build, input shapes, BATCH_MATMUL (adj_x, adj_y) options the model must contain)
CASES = {
    "scores_and_values": (scores_and_values, [(1, 2, 7, 6), (1, 2, 7, 6)],
                          {(False, True), (False, False)}),
    "broadcast_batch": (broadcast_batch, [(1, 2, 6, 5), (1, 2, 7, 9)], {(False, False)}),
    "transposed_lhs": (transposed_lhs, [(1, 5, 3), (1, 5, 4)], {(True, False)}),
    "constant_rhs": (constant_rhs, [(1, 2, 5, 6)], {(False, False)}),
    "encoder": (encoder, [(1, 16, 24)], {(False, False)}),
}


def _calibration(rng, shape):
    return rng.normal(0, 1, shape) * (1.0 + 0.5 * (shape[-1] % 2)) + 0.1


def model_bytes(name: str) -> bytes:
    build, shapes, _ = CASES[name]
    return convert(build, shapes, calibration=_calibration).read_bytes()


def input_sets(graph) -> list[list[np.ndarray]]:
    shapes = [graph.tensors[n].shape for n in graph.inputs]
    sets = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        sets.append([rng.integers(-128, 128, s).astype(np.int8) for s in shapes])
    sets.append([np.full(s, -128, np.int8) for s in shapes])
    sets.append([np.full(s, 127, np.int8) for s in shapes])
    return sets


@pytest.mark.parametrize("name", list(CASES))
def test_int8_matches_tflm_on_every_tensor(name, harness):
    data = model_bytes(name)
    graph = load_tflite_bytes(data, name=name)
    options = {(op.attrs.adj_x, op.attrs.adj_y) for op in graph.ops
               if op.kind == "BATCH_MATMUL"}
    assert CASES[name][2] <= options, \
        f"converter emitted {sorted(op.kind for op in graph.ops)}, options {options}"
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    samples = []
    for inputs in input_sets(graph):
        for tensor, count in compare_all_tensors(graph, interpreter, inputs).items():
            total[tensor] = total.get(tensor, 0) + count
        values = tflm_all_tensors(interpreter, inputs, len(graph.tensors))
        samples.append({n: v for n, v in zip(graph.tensors, values) if v is not None})
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"
    # The passes first: they make the converter's float islands int8 lookup tables.
    bad = {k: v for k, v in check_graph(harness, run_passes(graph), samples, name).items() if v}
    assert not bad, f"{name}: C kernels differing from TFLM: {bad}"


def test_encoder_float_island_becomes_a_table():
    """The converter's DEQUANTIZE -> NEG -> QUANTIZE of each LayerNormalization compiles as one
    int8 LOOKUP_TABLE (the C kernels above ran it against TFLM's float NEG)."""
    graph = load_tflite_bytes(model_bytes("encoder"), name="encoder")
    assert sum(op.kind == "NEG" for op in graph.ops) == 2
    kinds = [op.kind for op in run_passes(graph).ops]
    assert "NEG" not in kinds and "DEQUANTIZE" not in kinds
    assert kinds.count("LOOKUP_TABLE") == 2


def _encoder_file(tmp_path):
    path = tmp_path / "encoder.tflite"
    path.write_bytes(model_bytes("encoder"))
    return path


@pytest.mark.slow
def test_encoder_verifies_on_host_under_sanitizers(tmp_path):
    from tinyml.verify import verify
    report = verify(_encoder_file(tmp_path), "host", samples=20, sanitize=True)
    assert report.oracle == "reference+tflite-micro" and report.sanitized
    assert report.samples == 22 and report.mismatched_outputs == 0


@pytest.mark.slow
def test_encoder_verifies_in_qemu_cortex_m4(tmp_path):
    from tinyml.verify import verify
    report = verify(_encoder_file(tmp_path), "cortex-m4", samples=5, profile=False)
    assert report.oracle == "reference+tflite-micro"
    assert report.mismatched_outputs == 0


# --------------------------------------------------------------------------------------------
# tinyml's own quantizer on the float encoder


def test_tinyml_quantized_encoder_matches_tflm_on_every_tensor():
    """The float encoder (converter's float .tflite, with its float NEG) quantized by tinyml:
    the NEG becomes a MUL by -1, BATCH_MATMUL and the LayerNormalization ops get calibrated
    ranges, and the exported int8 model runs in TFLM equal to tinyml's reference on every
    tensor."""
    from support.quantize_oracles import tflm_tensor_mismatches
    from tinyml.quantize import quantize_model
    from tinyml.quantize.tflite_export import export_tflite

    path = convert(encoder, [(1, 16, 24)], int8=False)
    rng = np.random.default_rng(0)
    calibration = rng.normal(0, 1, (16, 16, 24)).astype(np.float32)
    model = quantize_model(load_tflite_bytes(path.read_bytes(), name="encoder"),
                           calibration)
    kinds = {op.kind for op in model.graph.ops}
    assert {"BATCH_MATMUL", "RSQRT", "SQUARED_DIFFERENCE"} <= kinds and "NEG" not in kinds
    exported = export_tflite(model.graph)
    inputs = [[rng.integers(-128, 128, (1, 16, 24)).astype(np.int8)] for _ in range(3)]
    mismatches, compared = tflm_tensor_mismatches(exported, model.graph, inputs)
    assert compared >= 3 * len(model.graph.ops)
    assert not mismatches, mismatches


# --------------------------------------------------------------------------------------------
# GELU: TFLM has no kernel for it; LiteRT's int8 table is the oracle


def gelu_exact(x):
    L = _tf().keras.layers
    return L.Activation(lambda t: _tf().nn.gelu(t, approximate=False))(L.Dense(12)(x))


def gelu_tanh(x):
    L = _tf().keras.layers
    return L.Activation(lambda t: _tf().nn.gelu(t, approximate=True))(L.Dense(12)(x))


@pytest.mark.parametrize("build,approximate", [(gelu_exact, False), (gelu_tanh, True)],
                         ids=["erf", "tanh"])
def test_gelu_matches_litert_on_every_code(build, approximate, harness):
    """Dense -> GELU from the converter. Each of 256 input rows makes the dense output cover
    its range, so the GELU table is checked on (nearly) every input code: the reference and
    the C kernel must equal LiteRT's int8 GELU element for element."""
    from support.oracles import litert_interpreter
    data = convert(build, [(1, 8, 10)]).read_bytes()
    graph = load_tflite_bytes(data, name=build.__name__)
    gelus = [op for op in graph.ops if op.kind == "GELU"]
    assert len(gelus) == 1 and gelus[0].attrs.approximate == approximate, \
        [op.kind for op in graph.ops]
    from tinyml.reference import run
    interpreter = litert_interpreter(data)
    names = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    rng = np.random.default_rng(0)
    codes_seen: set[int] = set()
    samples, differing = [], 0
    for _ in range(40):
        x = rng.integers(-128, 128, (1, 8, 10)).astype(np.int8)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        ours = run(graph, [x], keep_all=True)
        op = gelus[0]
        theirs_in = interpreter.get_tensor(names[op.inputs[0]])
        theirs_out = interpreter.get_tensor(names[op.outputs[0]])
        codes_seen |= set(theirs_in.reshape(-1).tolist())
        # The GELU on LiteRT's own input, so only the table is compared.
        mine = run(_single_op_graph(graph, op), [theirs_in])[op.outputs[0]]
        differing += int(np.count_nonzero(mine != theirs_out))
        differing += int(np.count_nonzero(ours[op.outputs[0]] != theirs_out))
        samples.append({op.inputs[0]: theirs_in, op.outputs[0]: theirs_out})
    assert len(codes_seen) > 200
    assert differing == 0
    sub = _single_op_graph(graph, gelus[0])
    bad = {k: v for k, v in check_graph(harness, sub, samples, build.__name__).items() if v}
    assert not bad, bad


def _single_op_graph(graph, op):
    """A graph of ``op`` alone, reading its input as the graph input."""
    from tinyml.ir import Graph
    sub = Graph(name=op.name)
    sub.tensors = {n: graph.tensors[n] for n in op.inputs + op.outputs}
    sub.ops, sub.inputs, sub.outputs = [op], [op.inputs[0]], list(op.outputs)
    sub.finalize()
    return sub


def test_gelu_model_verifies_against_the_reference_alone(tmp_path):
    """TFLM cannot run a GELU model: verify says so in its oracle, instead of failing."""
    from tinyml.verify import verify
    path = tmp_path / "gelu.tflite"
    path.write_bytes(convert(gelu_exact, [(1, 8, 10)]).read_bytes())
    report = verify(path, "host", samples=3, profile=False)
    assert report.oracle == "reference (not tflite-micro: TFLM has no kernel for GELU)"
    assert report.samples == 5 and report.mismatched_outputs == 0
