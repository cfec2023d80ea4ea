"""UNIDIRECTIONAL_SEQUENCE_LSTM, the converter's full-int8 LSTM, against TFLM.

The models are the TFLite converter's (tests/support/lstm_models.py: tf_keras LSTM + Dense,
TFLITE_BUILTINS_INT8, int8 input and output). TFLM keeps the LSTM's hidden and cell state
tensors (variable tensors) from one ``invoke()`` to the next, so a stream of input sequences
goes through TFLM, tinyml's reference and the generated C (host under ASan/UBSan; QEMU on
cortex-m4), and after every invocation every tensor, the two states included, must be equal
bit for bit. The int16 sigmoid table the gates use is re-derived from TFLM here and compared
with the committed one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.support import lstm_models
from tests.support.oracles import tflm_interpreter

from tinyml import reference
from tinyml.errors import TinymlError
from tinyml.frontends.tflite import load_tflite
from tinyml.paths import FIRMWARE_DIR

INVOKES = 8
LAYER = "tfl.unidirectional_sequence_lstm"


@pytest.fixture(scope="module")
def basic():
    return lstm_models.lstm_model()


#: The other converter-made models: whole sequences out, two stacked LSTMs, odd sizes with a
#: wider calibration range, two sequences per invocation (a state row each).
MORE_MODELS = {
    "return_sequences": dict(return_sequences=True),
    "stacked": dict(units=(8, 6)),
    "units13": dict(units=13, steps=4, features=7, seed=1, scale=3.0),
    "batch2": dict(batch=2, return_sequences=True),
}


def _tflm_stream(path, xs):
    """TFLM after each invocation of one stream: (output, every tensor's value by name)."""
    from ai_edge_litert import schema_py_generated as schema
    it = tflm_interpreter(path)
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    names = [t.name.decode() for t in model.subgraphs[0].tensors]
    frames = []
    for x in xs:
        it.set_input(x, 0)
        it.invoke()
        values = {name: np.array(it.GetTensor(i, 0)["tensor_data"])
                  for i, name in enumerate(names)}
        frames.append((np.array(it.get_output(0)), values))
    return frames


# ---- the sigmoid table ----------------------------------------------------------------------


def test_sigmoid_table_is_what_tflm_computes_with():
    """Measured again from TFLM's int16 LOGISTIC and TANH over all 65536 inputs (which also
    replays every measured output through the committed table): the same 256 entries."""
    pytest.importorskip("tflite_micro", reason="needs the tflite-micro package (the oracle)")
    from tinyml.reference.sigmoid_table import SIGMOID_TABLE_UINT16
    from tinyml.reference.sigmoid_table_derivation import derive_table
    assert derive_table() == SIGMOID_TABLE_UINT16
    # Not a formula's table: these are the entries round(65536 sigmoid(i / 24)) misses.
    formula = np.minimum(np.round(65536 / (1 + np.exp(-np.arange(256) / 24))), 65535)
    assert int((np.array(SIGMOID_TABLE_UINT16) != formula).sum()) == 44


def test_c_header_holds_the_same_table():
    from tinyml.reference.sigmoid_table import SIGMOID_TABLE_UINT16
    text = (FIRMWARE_DIR / "kernels" / "portable" / "sigmoid_table.h").read_text()
    body = text[text.index("{") + 1:text.index("}")]
    assert tuple(int(v) for v in re.findall(r"\d+", body)) == SIGMOID_TABLE_UINT16


def test_int16_activations_at_the_lstm_scalings_equal_tflm():
    """The gates' sigmoid (Q3.12 in) and tanh, and tanh of a 2^-15 cell state, are TFLM's
    int16 LOGISTIC / TANH at those input scales: equal on every int16 input."""
    pytest.importorskip("tflite_micro", reason="needs the tflite-micro package (the oracle)")
    from tinyml.reference.int16_activations import (int16_activation_params, logistic_int16,
                                                    tanh_int16)
    from tinyml.reference.sigmoid_table_derivation import ALL_INT16, measure
    for kind, scale in (("LOGISTIC", 2.0 ** -12), ("TANH", 2.0 ** -12), ("TANH", 2.0 ** -15)):
        fn = logistic_int16 if kind == "LOGISTIC" else tanh_int16
        got = fn(ALL_INT16, *int16_activation_params(kind, scale))
        assert np.array_equal(got, measure(kind, scale)), (kind, scale)


# ---- import and reference -------------------------------------------------------------------


def test_import_keeps_the_state_as_variables(basic):
    graph = load_tflite(basic)
    lstm = next(op for op in graph.ops if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    a = lstm.attrs
    hidden, cell = graph.variables[a.hidden], graph.variables[a.cell]
    assert (hidden.dtype, hidden.shape, cell.dtype, cell.shape) == ("int8", (1, 8), "int16", (1, 8))
    # TFLM resets variable tensors: int8 to the zero point, int16 to 0.
    assert (hidden.initial == hidden.quant.zero_point[0]).all() and hidden.quant.zero_point[0]
    assert (cell.initial == 0).all()
    assert len(lstm.inputs) == 13 and a.activation == "TANH" and a.cell_clip == 10.0


def _check_reference(path):
    xs = lstm_models.sequences(path, INVOKES)
    want = _tflm_stream(path, xs)
    graph = load_tflite(path)
    state = reference.initial_state(graph)
    compared = states = 0
    for k, x in enumerate(xs):
        got = reference.run(graph, [x], keep_all=True, state=state)
        output, values = want[k]
        assert np.array_equal(got[graph.outputs[0]], output), f"invoke {k}"
        for name, value in values.items():
            if name in state:  # TFLM's state tensor after the invocation
                assert np.array_equal(state[name].reshape(-1), value.reshape(-1)), \
                    f"invoke {k}, state '{name}'"
                states += 1
            elif name in got and got[name].size and not graph.tensors[name].is_constant:
                assert np.array_equal(got[name], value.reshape(got[name].shape)), \
                    f"invoke {k}, tensor '{name}'"
                compared += 1
    lstms = sum(op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM" for op in graph.ops)
    assert states == INVOKES * 2 * lstms
    assert compared >= INVOKES * (len(graph.ops) + 1)  # every op's output and the input
    return want


def test_reference_equals_tflm_on_every_tensor_invoke_after_invoke(basic):
    want = _check_reference(basic)
    # The state carries over: the same input, fresh, gives another output than mid-stream.
    xs = lstm_models.sequences(basic, INVOKES)
    fresh = _tflm_stream(basic, [xs[1]])[0][0]
    assert not np.array_equal(fresh, want[1][0])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MORE_MODELS))
def test_reference_equals_tflm_more_models(name):
    _check_reference(lstm_models.lstm_model(**MORE_MODELS[name]))


# ---- generated C ----------------------------------------------------------------------------


_RESET_DRIVER = r"""
#include <stdio.h>
#include "model.h"
/* tinyml_reset(), the sequences of stdin, tinyml_reset(), the same again: both passes to
 * stdout. */
int main(void)
{
    static unsigned char xs[64][TINYML_INPUT_BYTES];
    int n = 0, pass, i, b;
    while (n < 64 && fread(xs[n], 1, TINYML_INPUT_BYTES, stdin) == TINYML_INPUT_BYTES) {
        n++;
    }
    tinyml_reset();
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < n; i++) {
            unsigned char *in = (unsigned char *)tinyml_input();
            for (b = 0; b < TINYML_INPUT_BYTES; b++) {
                in[b] = xs[i][b];
            }
            if (tinyml_invoke() != 0) {
                return 2;
            }
            fwrite(tinyml_output(), 1, TINYML_OUTPUT_BYTES, stdout);
        }
        tinyml_reset();
    }
    return 0;
}
"""


def _check_host(path, tmp_path):
    """The generated C under ASan/UBSan: a stream, tinyml_reset(), the stream again; both
    passes equal TFLM invoke by invoke."""
    from tinyml.compiler import compile_model
    from tinyml.sim.host import SANITIZE_FLAGS, STRICT_FLAGS
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    result = compile_model(path, "host", tmp_path / "project")
    project = result.project.output_dir
    driver = tmp_path / "driver.c"
    driver.write_text(_RESET_DRIVER)
    binary = tmp_path / "driver"
    sources = [project / "model.c", project / "weights.c",
               *sorted((project / "kernels").glob("*.c")), driver]
    subprocess.run([cc, *STRICT_FLAGS, "-O0", *SANITIZE_FLAGS, f"-I{project}",
                    f"-I{project / 'kernels'}", *map(str, sources), "-o", str(binary)],
                   check=True, capture_output=True)
    xs = lstm_models.sequences(path, INVOKES)
    out = subprocess.run([str(binary)], input=b"".join(x.tobytes() for x in xs),
                         capture_output=True, check=True).stdout
    runs = np.frombuffer(out, np.int8).reshape(2, INVOKES, -1)
    want = np.stack([w.reshape(-1) for w, _ in _tflm_stream(path, xs)])
    assert [int((run != want).any(axis=1).sum()) for run in runs] == [0, 0]
    graph = load_tflite(path)
    report = result.report()
    # The state: int8 hidden plus int16 cell values, outside the arena.
    assert report["state_bytes"] == sum(v.nbytes for v in graph.variables.values())
    return result


def test_compiled_c_equals_tflm_and_reset_restarts_the_stream(basic, tmp_path):
    result = _check_host(basic, tmp_path)
    assert result.report()["state_bytes"] == 8 + 2 * 8
    model_c = (result.project.output_dir / "model.c").read_text()
    assert "tinyml_lstm_s8(" in model_c


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MORE_MODELS))
def test_compiled_c_equals_tflm_more_models(name, tmp_path):
    _check_host(lstm_models.lstm_model(**MORE_MODELS[name]), tmp_path)


def _check_qemu(path, tmp_path):
    from tinyml import firmware
    from tinyml.compiler import compile_model
    from tinyml.sim import qemu
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    result = compile_model(path, "cortex-m4", tmp_path / "project")
    xs = lstm_models.sequences(path, INVOKES)
    run = qemu.run_samples(firmware.build_harness(result.project.output_dir, result.target),
                           result.target, result.source_graph, [[x] for x in xs])
    want = _tflm_stream(path, xs)
    assert sum(not np.array_equal(p[0], w) for p, (w, _) in zip(run.outputs, want)) == 0
    assert len(run.instructions) == INVOKES and min(run.instructions) > 0


def test_lstm_in_qemu_equals_tflm(basic, tmp_path):
    """cortex-m4: the DSP dot products (firmware/kernels/cortex_m/dot_s8.c), four rows at
    a time and the odd input column."""
    _check_qemu(basic, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["units13", "stacked"])
def test_lstm_in_qemu_more_models(name, tmp_path):
    """13 units: a row left over after the blocks of four; stacked: 6 units."""
    _check_qemu(lstm_models.lstm_model(**MORE_MODELS[name]), tmp_path)


# ---- the option the converter's Keras LSTMs leave at one value -----------------------------


def _tight_clip(model, sub, op, schema):  # |c| <= 0.5: 16384 codes of 2^-15, which bites
    op.builtinOptions.cellClip = 0.5


def _no_clip(model, sub, op, schema):
    op.builtinOptions.cellClip = 0.0


@pytest.mark.parametrize("edit", [_tight_clip, _no_clip], ids=["cell_clip_0.5", "no_cell_clip"])
def test_other_options_equal_tflm(basic, tmp_path, edit):
    """The cell clip, set in the converter's file (Keras' LSTM always writes 10): reference
    and generated C equal TFLM (TFLM runs these files as they are)."""
    path = tmp_path / "edited.tflite"
    path.write_bytes(_edited(basic, edit))
    _check_reference(path)
    _check_host(path, tmp_path)
    if edit is _tight_clip:  # the clip is reached: the cell state sits on it
        state = reference.initial_state(load_tflite(path))
        graph = load_tflite(path)
        for x in lstm_models.sequences(path, INVOKES):
            reference.run(graph, [x], state=state)
        cell = next(v for n, v in state.items() if graph.variables[n].dtype == "int16")
        assert np.abs(cell).max() == 16384


# ---- what is not supported: one line naming the layer ---------------------------------------


def _edited(path, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    sub = model.subgraphs[0]
    lstm = next(op for op in sub.operators
                if model.operatorCodes[op.opcodeIndex].builtinCode
                == schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM)
    edit(model, sub, lstm, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _peephole(model, sub, op, schema):
    op.inputs[9] = op.inputs[12]


def _projection(model, sub, op, schema):
    op.inputs[16] = op.inputs[5]


def _layer_norm(model, sub, op, schema):
    op.inputs[20] = op.inputs[12]


def _hybrid(model, sub, op, schema):  # float activations into the int8 weights
    sub.tensors[op.inputs[0]].type = schema.TensorType.FLOAT32
    sub.tensors[op.inputs[0]].quantization = None


def _relu_cell(model, sub, op, schema):
    op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU


def _int8_cell(model, sub, op, schema):
    sub.tensors[op.inputs[19]].type = schema.TensorType.INT8


@pytest.mark.parametrize("edit, words", [
    (_peephole, "peephole"), (_projection, "projection"), (_layer_norm, "layer normalization"),
    (_hybrid, "hybrid"), (_relu_cell, "RELU"), (_int8_cell, "int16"),
], ids=["peephole", "projection", "layer_norm", "hybrid", "relu_cell", "int8_cell"])
def test_an_unsupported_variant_is_refused_in_one_line(basic, tmp_path, edit, words):
    from tinyml.compiler import compile_model
    path = tmp_path / "variant.tflite"
    path.write_bytes(_edited(basic, edit))
    with pytest.raises(TinymlError) as info:
        compile_model(path, "host", tmp_path / "p")
    message = str(info.value)
    assert "\n" not in message and words in message and f"'{LAYER}'" in message


def test_cli_compile_names_the_layer_of_an_unsupported_lstm(basic, tmp_path):
    path = tmp_path / "peephole.tflite"
    path.write_bytes(_edited(basic, _peephole))
    out = subprocess.run([sys.executable, "-m", "tinyml.cli", "compile", str(path), "-o",
                          str(tmp_path / "p")], capture_output=True, text=True)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "peephole" in lines[0] and LAYER in lines[0], out.stderr


@pytest.mark.slow
def test_a_float_lstm_is_refused_in_one_line(tmp_path):
    from tinyml.compiler import compile_model
    path = lstm_models.lstm_model(quantize=False)
    with pytest.raises(TinymlError) as info:
        compile_model(path, "host", tmp_path / "p")
    message = str(info.value)
    assert "\n" not in message and "float32 LSTM" in message and f"'{LAYER}'" in message
