"""ONNX LSTM, GRU and RNN nodes, unrolled at import into FULLY_CONNECTED, ADD, MUL, SUB,
LOGISTIC, TANH, SLICE and CONCATENATION (tinyml/frontends/onnx_recurrent.py).

The float import must compute what onnxruntime computes (every output, to float rounding), for
the attributes exporters write: every direction, GRU's linear_before_reset either way, initial
states absent, constant (zero or not) or graph inputs, LSTM peepholes, sequence_lens of full
length. tf2onnx's Keras LSTM and GRU (one ONNX node each; SimpleRNN becomes a Loop, which no
static graph holds) are then quantized by tinyml's quantizer and compiled: the SQNR of the int8
output against onnxruntime's float output is measured and the C verified on the host.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from support.onnx_cases import check_float, make_model
from tinyml.errors import UnsupportedOpError
from tinyml.frontends.onnx import import_onnx

GATE_COUNT = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _recurrent(kind: str, *, steps=5, batch=2, inputs=3, hidden=4, direction="forward",
               bias=True, initial="absent", peepholes=False, lens=False, outputs=("Y", "Y_h"),
               seed=0, **attrs):
    """One ``kind`` node with random weights. ``initial``: "absent", "zero" or "const"
    (constant initial state), "input" (graph inputs)."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gates = GATE_COUNT[kind]
    inits = {"W": rng.normal(0, 0.5, (dirs, gates * hidden, inputs)).astype(np.float32),
             "R": rng.normal(0, 0.5, (dirs, gates * hidden, hidden)).astype(np.float32)}
    names = ["x", "W", "R", "", "", "", "", ""]
    graph_inputs = {"x": [steps, batch, inputs]}
    if bias:
        inits["B"] = rng.normal(0, 0.3, (dirs, 2 * gates * hidden)).astype(np.float32)
        names[3] = "B"
    if lens:
        inits["lens"] = np.full(batch, steps, np.int32)
        names[4] = "lens"
    states = ["initial_h"] + (["initial_c"] if kind == "LSTM" else [])
    for k, state in enumerate(states):
        if initial == "input":
            graph_inputs[state] = [dirs, batch, hidden]
        elif initial in ("zero", "const"):
            inits[state] = (rng.uniform(-0.8, 0.8, (dirs, batch, hidden)) * (initial == "const")
                            ).astype(np.float32)
        if initial != "absent":
            names[5 + k] = state
    if peepholes:
        inits["P"] = rng.normal(0, 0.5, (dirs, 3 * hidden)).astype(np.float32)
        names[7] = "P"
    while not names[-1]:
        names.pop()
    outs = [o if o in outputs else "" for o in ("Y", "Y_h", "Y_c")[:3 if kind == "LSTM" else 2]]
    while not outs[-1]:
        outs.pop()
    node = helper.make_node(kind, names, outs, name="encoder", hidden_size=hidden,
                            direction=direction, **attrs)
    return make_model([node], graph_inputs, [o for o in outs if o], inits,
                      opset=14, name=kind.lower())


CASES = {
    "rnn_forward_no_bias": dict(kind="RNN", bias=False),
    "rnn_bidirectional_state_input": dict(kind="RNN", direction="bidirectional",
                                          initial="input"),
    "rnn_relu_reverse": dict(kind="RNN", direction="reverse", activations=["Relu"]),
    "gru_linear_after_reset": dict(kind="GRU", initial="const", linear_before_reset=0),
    "gru_linear_before_reset_reverse": dict(kind="GRU", direction="reverse", initial="input",
                                            linear_before_reset=1),
    "gru_bidirectional": dict(kind="GRU", direction="bidirectional", initial="zero",
                              linear_before_reset=1),
    "lstm_forward_zero_state": dict(kind="LSTM", initial="zero", outputs=("Y", "Y_h", "Y_c")),
    "lstm_bidirectional_peepholes": dict(kind="LSTM", direction="bidirectional",
                                         initial="input", peepholes=True, lens=True,
                                         outputs=("Y", "Y_h", "Y_c")),
    "lstm_reverse_one_step": dict(kind="LSTM", direction="reverse", steps=1, batch=1,
                                  initial="const", outputs=("Y_h",)),
}


@pytest.mark.parametrize("case", CASES)
def test_float_import_computes_what_onnxruntime_computes(case):
    spec = dict(CASES[case])
    model = _recurrent(spec.pop("kind"), **spec)
    imp, worst = check_float(model, runs=3, tol=2e-6)
    kinds = {op.kind for op in imp.graph.ops}
    assert {"FULLY_CONNECTED", "ADD"} <= kinds, kinds
    assert worst < 2e-6


def test_steps_unroll_into_per_gate_products():
    """A forward GRU of 5 steps: one FULLY_CONNECTED per gate for the input of all steps,
    one per gate and step for the state except at the first step (zero initial state)."""
    graph = import_onnx(_recurrent("GRU", initial="zero", linear_before_reset=1)).graph
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("FULLY_CONNECTED") == 3 + 3 * 4, kinds
    assert kinds.count("LOGISTIC") == 2 * 5 and kinds.count("TANH") == 5, kinds
    assert kinds.count("SUB") == 5 and kinds.count("CONCATENATION") == 1, kinds


@pytest.mark.parametrize("attrs, message", [
    (dict(clip=3.0), "clip=3.0"),
    (dict(input_forget=1), "input_forget=1"),
    (dict(layout=1), "layout 1"),
    (dict(activations=["Sigmoid", "Softsign", "Tanh"]), "activation Softsign"),
    (dict(activations=["Sigmoid", "Tanh", "Tanh"], activation_alpha=[1.0]),
     "activation_alpha"),
])
def test_unsupported_attributes_are_one_line_errors_naming_the_node(attrs, message):
    model = _recurrent("LSTM", **attrs)
    with pytest.raises(UnsupportedOpError) as info:
        import_onnx(model)
    text = str(info.value)
    assert "\n" not in text and "LSTM" in text and "'encoder'" in text and message in text


def test_short_sequence_lens_is_an_error_naming_the_node():
    model = _recurrent("GRU", lens=True)
    for init in model.graph.initializer:
        if init.name == "lens":
            init.CopyFrom(helper.make_tensor("lens", 6, [2], [5, 3]))
    with pytest.raises(UnsupportedOpError, match=r"'encoder'.*sequence_lens \[5, 3\]"):
        import_onnx(model)


def _quantized(model, seed: int = 0):
    """tinyml's int8 graph of ``model`` (calibrated on 64 uniform samples per input) and the
    SQNR (dB) of its output Y against onnxruntime's float Y on 16 fresh samples."""
    from support.onnx_cases import ort_values
    from support.onnx_zoo import sqnr_db
    from tinyml.quantize import quantize_model
    from tinyml.reference import run

    graph = import_onnx(model).graph
    rng = np.random.default_rng(seed)
    shapes = [graph.tensors[n].shape for n in graph.inputs]
    calib = [np.stack([rng.uniform(-1, 1, s).astype(np.float32) for _ in range(64)])
             for s in shapes]
    quantized = quantize_model(graph, calib)
    q = quantized.graph
    out = q.tensors[q.outputs[0]]
    theirs, ours = [], []
    for _ in range(16):
        xs = [rng.uniform(-1, 1, s).astype(np.float32) for s in shapes]
        theirs.append(ort_values(model, dict(zip(graph.inputs, xs)))["Y"])
        codes = run(q, quantized.quantize_inputs(xs))[q.outputs[0]]
        ours.append((codes.astype(np.float32) - out.zero_point()) * out.scale())
    return quantized, sqnr_db(np.stack(theirs), np.stack(ours))


#: Measured: 35.4, 36.2 and 26.8 dB.
@pytest.mark.parametrize("case, floor", [("rnn_bidirectional_state_input", 32.0),
                                         ("gru_bidirectional", 32.0),
                                         ("lstm_bidirectional_peepholes", 24.0)])
def test_quantized_every_direction_reaches_sqnr(case, floor):
    """Both directions, state inputs and peepholes quantize like any other op: every output
    step of Y in int8 against onnxruntime's float."""
    spec = dict(CASES[case], outputs=("Y",))
    _, db = _quantized(_recurrent(spec.pop("kind"), **spec))
    assert db >= floor, f"{case}: {db:.1f} dB"


@pytest.mark.slow  # 35 s (the sanitized host build)
def test_quantized_bidirectional_lstm_compiles_bit_exact(tmp_path):
    """The bidirectional LSTM with peepholes and its state as graph inputs (three inputs):
    its C equals the reference and TFLM under the sanitizers."""
    import onnx
    from tinyml.verify import verify
    spec = dict(CASES["lstm_bidirectional_peepholes"], outputs=("Y",))
    model = _recurrent(spec.pop("kind"), **spec)
    path = tmp_path / "lstm.onnx"
    onnx.save(model, str(path))
    quantized, _ = _quantized(model)
    report = verify(path, "host", samples=2, profile=False, sanitize=True,
                    quantize=lambda _: quantized.graph)
    assert report.mismatched_outputs == 0 and report.samples == 4, report.to_json()


# ---- tf2onnx's Keras layers, quantized and compiled --------------------------------------------

def _keras_case(name: str) -> None:
    """The zoo's tf2onnx export of a Keras recurrent layer: the float import equals
    onnxruntime, tinyml's int8 graph reaches the zoo entry's SQNR floor (the TFLite
    converter's own int8 conversion of the layer measures about the same, see
    support/onnx_zoo.py), and its C equals the reference and TFLM under the sanitizers."""
    import onnx
    from support.onnx_zoo import accuracy, export, min_sqnr_db
    from tinyml.verify import verify

    path = export([name])[name]
    model = onnx.load(str(path))
    assert name.split("_")[0].upper() in {n.op_type for n in model.graph.node}
    check_float(model, runs=3, tol=2e-6)
    result = accuracy(name, path)
    (db,) = result.sqnr.values()
    assert db >= min_sqnr_db(name), f"{name}: {db:.1f} dB"
    report = verify(path, "host", samples=2, profile=False, sanitize=True,
                    quantize=lambda _: result.graph)
    assert report.mismatched_outputs == 0 and report.samples == 4, report.to_json()


# Slow: the tf2onnx export starts TensorFlow in a child process (15 s, shared with
# test_onnx_zoo_sqnr's exports through the on-disk cache), then the sanitized host build. The
# hand-made nodes above are the fast sample: tf2onnx writes the LSTM and GRU nodes they cover.
@pytest.mark.slow  # 20-25 s each
@pytest.mark.parametrize("name", ["gru", "lstm", "gru_sequences"])
def test_keras_recurrent_via_tf2onnx_quantizes_and_compiles(name):
    _keras_case(name)


@pytest.mark.slow  # 25 s
def test_keras_lstm_via_tf2onnx_verifies_in_qemu_cortex_m4():
    """The int8 LSTM (tinyml's quantizer) built for cortex-m4 runs on QEMU equal to the
    reference and TFLM (126,500 instructions for 6 steps of 8 units, measured)."""
    import shutil
    from support.onnx_zoo import accuracy, export
    from tinyml.verify import verify
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    path = export(["lstm"])["lstm"]
    graph = accuracy("lstm", path).graph
    report = verify(path, "cortex-m4", samples=2, profile=False, quantize=lambda _: graph)
    assert report.oracle == "reference+tflite-micro"
    assert report.samples == 4 and report.mismatched_outputs == 0
    assert report.measured["instructions_per_inference"] > 6 * 4 * 8 * (5 + 8)  # the MACs
