"""Streaming models: state kept between invocations in TFLite resource variables.

The models are the TFLite converter's (tests/support/streaming_models.py: ``tf.Variable``
state, full-int8, CALL_ONCE initializer). TFLM's interpreter keeps the variables from one
``invoke()`` to the next, so it is the oracle frame by frame: the same sequence of frames goes
through TFLM, tinyml's reference (source graph and after the passes, where the float state
became int8) and the generated C (host, under ASan/UBSan; QEMU on cortex-m4), and every
frame's output must be equal, bit for bit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.support import streaming_models
from tests.support.oracles import tflm_interpreter

from tinyml import reference
from tinyml.errors import TinymlError
from tinyml.frontends.tflite import load_tflite, load_tflite_bytes
from tinyml.ir import Graph, Op, Quantization, Tensor
from tinyml.ir.graph import Variable
from tinyml.ir.ops import VariableAttrs
from tinyml.passes import run_passes

FRAMES = 100


@pytest.fixture(scope="module")
def window():
    return streaming_models.window_model()


def _tflm_frames(path, frames, all_tensors=False):
    """TFLM's output for each frame of one stream (and, with ``all_tensors``, every tensor's
    value by name after each frame)."""
    it = tflm_interpreter(path, all_tensors=all_tensors)
    outputs, tensors = [], []
    if all_tensors:
        from ai_edge_litert import schema_py_generated as schema
        graph = load_tflite(path)
        model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
        names = [t.name.decode() for t in model.subgraphs[0].tensors]
    for x in frames:
        it.set_input(x, 0)
        it.invoke()
        outputs.append(np.array(it.get_output(0)))
        if all_tensors:
            values = {}
            for i, name in enumerate(names):
                if name in graph.tensors and not graph.tensors[name].is_constant:
                    values[name] = np.array(it.GetTensor(i, 0)["tensor_data"])
            tensors.append(values)
    return outputs, tensors


def _reference_frames(graph, frames, keep_all=False):
    state = reference.initial_state(graph)
    return [reference.run(graph, [x], keep_all=keep_all, state=state) for x in frames]


# ---- import --------------------------------------------------------------------------------


def test_import_reads_variables_and_their_initializer(window):
    graph = load_tflite(window)
    assert list(graph.variables) == ["Variable"]
    var = graph.variables["Variable"]
    assert (var.shape, var.dtype) == ((1, 2, 10), "float32")   # the converter keeps it float
    assert np.array_equal(var.initial, np.zeros((1, 2, 10), np.float32))
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("READ_VARIABLE") == kinds.count("ASSIGN_VARIABLE") == 1
    assert kinds.index("READ_VARIABLE") < kinds.index("ASSIGN_VARIABLE")


def _edited(path, edit) -> bytes:
    """The model at ``path`` with ``edit(model)`` applied to its object API tree."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    edit(model, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_an_initializer_that_computes_is_refused_in_one_line(window):
    def edit(model, schema):  # the initializer's ASSIGN becomes a CONCATENATION
        concat = next(i for i, c in enumerate(model.operatorCodes)
                      if max(c.builtinCode, c.deprecatedBuiltinCode)
                      == schema.BuiltinOperator.CONCATENATION)
        model.subgraphs[1].operators[-1].opcodeIndex = concat
    with pytest.raises(TinymlError) as info:
        load_tflite_bytes(_edited(window, edit), name="edited")
    message = str(info.value)
    assert "\n" not in message
    assert "CONCATENATION" in message and "initializer" in message


def test_a_variable_without_initializer_is_refused_in_one_line(window):
    def edit(model, schema):  # drop the CALL_ONCE: nothing gives the variable a value
        call_once = next(i for i, c in enumerate(model.operatorCodes)
                         if max(c.builtinCode, c.deprecatedBuiltinCode)
                         == schema.BuiltinOperator.CALL_ONCE)
        sub = model.subgraphs[0]
        sub.operators = [op for op in sub.operators if op.opcodeIndex != call_once]
    with pytest.raises(TinymlError) as info:
        load_tflite_bytes(_edited(window, edit), name="edited")
    message = str(info.value)
    assert "\n" not in message and "no CALL_ONCE initializer" in message


def test_a_read_of_another_shape_than_the_initial_value_is_refused(window):
    def edit(model, schema):  # the initializer assigns a (1, 20) value, the read is (1, 2, 10)
        sub = model.subgraphs[1]
        sub.tensors[sub.operators[-1].inputs[1]].shape = np.array([1, 20], np.int32)
    with pytest.raises(TinymlError) as info:
        load_tflite_bytes(_edited(window, edit), name="edited")
    message = str(info.value)
    assert "\n" not in message and "float32[1, 20]" in message and "[1, 2, 10]" in message


def test_an_initial_value_off_the_int8_grid_stays_float_and_is_refused(window, tmp_path):
    def edit(model, schema):  # initial value 0.3: not a code of the state's quantization
        sub = model.subgraphs[1]
        value = sub.tensors[sub.operators[-1].inputs[1]]
        model.buffers[value.buffer].data = np.full(20, 0.3, np.float32).view(np.uint8)
    path = tmp_path / "off_grid.tflite"
    path.write_bytes(_edited(window, edit))
    graph = run_passes(load_tflite(path))
    assert graph.variables["Variable"].dtype == "float32"
    from tinyml.compiler import compile_model
    with pytest.raises(TinymlError) as info:
        compile_model(path, "host", tmp_path / "p")
    message = str(info.value)
    assert "\n" not in message and "not exactly representable" in message


# ---- reference ------------------------------------------------------------------------------


def _check_reference_against_tflm(path):
    frames = streaming_models.frames(path, FRAMES)
    want, want_tensors = _tflm_frames(path, frames, all_tensors=True)
    graph = load_tflite(path)
    got = _reference_frames(graph, frames, keep_all=True)
    compared = 0
    for k in range(FRAMES):
        assert np.array_equal(got[k][graph.outputs[0]], want[k]), f"frame {k}"
        for name, value in want_tensors[k].items():
            if name in got[k] and got[k][name].shape == value.shape:
                assert np.array_equal(got[k][name], value), f"frame {k}, tensor '{name}'"
                compared += 1
    # Every activation of every frame, the variable's value read included.
    assert compared >= FRAMES * 5
    # After the passes (int8 state, int8 concatenation) the outputs are the same.
    passed = run_passes(graph)
    assert all(v.dtype == "int8" for v in passed.variables.values())
    assert not any(t.dtype == "float32" for t in passed.tensors.values() if not t.is_constant)
    for k, out in enumerate(_reference_frames(passed, frames)):
        assert np.array_equal(out[passed.outputs[0]], want[k]), f"frame {k} after the passes"


def test_reference_equals_tflm_frame_by_frame(window):
    _check_reference_against_tflm(window)


@pytest.mark.slow
@pytest.mark.parametrize("builder", [
    lambda: streaming_models.keyword_spotter(),
    lambda: streaming_models.window_model(decay=0.5),
], ids=["keyword_spotter", "decaying_window"])
def test_reference_equals_tflm_frame_by_frame_more_models(builder):
    _check_reference_against_tflm(builder())


def test_a_state_quantized_apart_from_its_window_gets_a_table():
    """The decaying window stores its state in the MUL's quantization, not the window's: the
    int8 CONCATENATION reads it through a requantizing LOOKUP_TABLE (TFLM's float
    DEQUANTIZE -> QUANTIZE per code)."""
    path = streaming_models.window_model(decay=0.5)
    graph = run_passes(load_tflite(path))
    kinds = [op.kind for op in graph.ops]
    assert "LOOKUP_TABLE" in kinds and "DEQUANTIZE" not in kinds and "QUANTIZE" not in kinds
    frames = streaming_models.frames(path, FRAMES)
    want, _ = _tflm_frames(path, frames)
    for k, out in enumerate(_reference_frames(graph, frames)):
        assert np.array_equal(out[graph.outputs[0]], want[k]), f"frame {k}"


# ---- ordering ------------------------------------------------------------------------------


def _read_add_assign(order: tuple[str, ...]) -> Graph:
    """y = READ(v) + x; v := x, with the ops listed in ``order``. The assignment depends only
    on the input, so data flow alone would let it run before the read."""
    from tinyml.ir.ops import ElementwiseAttrs
    q = Quantization(np.float32(0.1), 0)
    g = Graph("read_add_assign")
    g.variables["v"] = Variable("v", (1, 4), "int8", np.zeros((1, 4), np.int8), q)
    attrs = VariableAttrs("v", (1, 4), "int8")
    for name in ("x", "old", "y"):
        g.add_tensor(Tensor(name, (1, 4), "int8", q))
    g.inputs, g.outputs = ["x"], ["y"]
    ops = {"read": Op("READ_VARIABLE", "read", [], ["old"], attrs),
           "add": Op("ADD", "add", ["old", "x"], ["y"], ElementwiseAttrs()),
           "assign": Op("ASSIGN_VARIABLE", "assign", ["x"], [], attrs)}
    for name in order:
        g.add_op(ops[name])
    return g.finalize()


def test_assignment_stays_after_every_read_of_its_variable():
    from tinyml.codegen.lowering import lower
    from tinyml.schedule import plan_memory
    from tinyml.schedule.ordering import min_peak_order
    from tinyml.schedule.policy import op_requirements
    g = _read_add_assign(("read", "add", "assign"))
    calls = lower(g)
    plans = {"plan": plan_memory(g, calls).order,
             "search": min_peak_order(g, *op_requirements(g, calls))[0]}
    for how, order in plans.items():
        kinds = [g.ops[i].kind for i in order]
        assert kinds.index("READ_VARIABLE") < kinds.index("ASSIGN_VARIABLE"), how
    # y(frame k) = x(k - 1) + x(k): the read sees the previous frame.
    state = reference.initial_state(g)
    ys = [reference.run(g, [np.full((1, 4), v, np.int8)], state=state)["y"] for v in (3, 5, 7)]
    assert [int(y[0, 0]) for y in ys] == [3, 8, 12]
    # Listed before the read, the assignment stays first: the read sees the new value.
    g = _read_add_assign(("assign", "read", "add"))
    assert g.ops[0].kind == "ASSIGN_VARIABLE"
    state = reference.initial_state(g)
    ys = [reference.run(g, [np.full((1, 4), v, np.int8)], state=state)["y"] for v in (3, 5)]
    assert [int(y[0, 0]) for y in ys] == [6, 10]


def test_planned_arena_run_equals_reference_frame_by_frame(window):
    """The memory plan, executed with the reference kernels in one arena (junk where a
    buffer is fresh), carries the state over frames like the reference does."""
    from tinyml.compiler import plan
    from tinyml.schedule import execute_planned
    result = plan(window, "host")
    graph = result.graph
    state = reference.initial_state(graph)
    expected = _reference_frames(graph, streaming_models.frames(window, 20))
    for k, x in enumerate(streaming_models.frames(window, 20)):
        run = execute_planned(graph, result.plan, [x], seed=k, state=state)
        assert np.array_equal(run.outputs[graph.outputs[0]], expected[k][graph.outputs[0]])


# ---- generated C ---------------------------------------------------------------------------


def _compile(path, out, target="host"):
    from tinyml.compiler import compile_model
    return compile_model(path, target, out)


def _check_host(path, tmp_path):
    """The host harness (what ``tinyml verify`` runs) on one stream, sanitized."""
    from tinyml.sim import host
    result = _compile(path, tmp_path / "project")
    report = result.report()
    graph = load_tflite(path)
    # int8 state: one byte per value of every variable.
    assert report["state_bytes"] == sum(int(np.prod(v.shape)) for v in graph.variables.values())
    binary = host.build(result.project.output_dir, sanitize=True, optimize="-O0")
    frames = streaming_models.frames(path, FRAMES)
    produced = host.run(binary, result.source_graph, [[x] for x in frames])
    want, _ = _tflm_frames(path, frames)
    mismatches = sum(not np.array_equal(p[0], w) for p, w in zip(produced, want))
    assert mismatches == 0
    return result


@pytest.mark.slow
def test_harness_equals_tflm_frame_by_frame(window, tmp_path):
    result = _check_host(window, tmp_path)
    assert result.report()["state_bytes"] == 20


@pytest.mark.slow
def test_compiled_keyword_spotter_equals_tflm_frame_by_frame(tmp_path):
    result = _check_host(streaming_models.keyword_spotter(), tmp_path)
    assert result.report()["state_bytes"] == 4 * 20 + 2 * 16


_RESET_DRIVER = r"""
#include <stdio.h>
#include "model.h"
/* Run the frames of stdin, tinyml_reset(), run them again: both passes to stdout. */
int main(void)
{
    static unsigned char frames[128][TINYML_INPUT_BYTES];
    int n = 0, pass, i;
    while (n < 128 && fread(frames[n], 1, TINYML_INPUT_BYTES, stdin) == TINYML_INPUT_BYTES) {
        n++;
    }
    tinyml_reset();
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < n; i++) {
            unsigned char *in = (unsigned char *)tinyml_input();
            int b;
            for (b = 0; b < TINYML_INPUT_BYTES; b++) {
                in[b] = frames[i][b];
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


def test_compiled_c_equals_tflm_frame_by_frame_and_reset_restarts_the_stream(window, tmp_path):
    """100 frames through the generated C (ASan/UBSan), tinyml_reset(), the same 100 frames
    again: both passes equal TFLM frame by frame."""
    from tinyml.sim.host import SANITIZE_FLAGS, STRICT_FLAGS
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    result = _compile(window, tmp_path / "project")
    project = result.project.output_dir
    model_c = (project / "model.c").read_text()
    zero_point = result.graph.variables["Variable"].quant.zero_point[0]
    assert zero_point != 0 and f"memset(state_Variable, {zero_point}," in model_c
    driver = tmp_path / "driver.c"
    driver.write_text(_RESET_DRIVER)
    binary = tmp_path / "driver"
    sources = [project / "model.c", project / "weights.c", *sorted((project / "kernels")
                                                                   .glob("*.c")), driver]
    subprocess.run([cc, *STRICT_FLAGS, "-O0", *SANITIZE_FLAGS, f"-I{project}",
                    f"-I{project / 'kernels'}", *map(str, sources), "-o", str(binary)],
                   check=True, capture_output=True)
    frames = streaming_models.frames(window, FRAMES)
    out = subprocess.run([str(binary)], input=b"".join(x.tobytes() for x in frames),
                         capture_output=True, check=True).stdout
    runs = np.frombuffer(out, np.int8).reshape(2, FRAMES, -1)
    want, _ = _tflm_frames(window, frames)
    want = np.stack([w.reshape(-1) for w in want])
    mismatches = [int((run != want).any(axis=1).sum()) for run in runs]
    assert mismatches == [0, 0]
    assert result.report()["state_bytes"] == 20
    # The state matters: without its history the same frame gives another output.
    fresh = [_tflm_frames(window, [x])[0][0].reshape(-1) for x in frames[1:6]]
    assert any(not np.array_equal(f, r) for f, r in zip(fresh, runs[0][1:6]))


def test_compile_json_reports_state_bytes(window, tmp_path):
    out = subprocess.run([sys.executable, "-m", "tinyml.cli", "compile", str(window), "-o",
                          str(tmp_path / "p"), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["state_bytes"] == 2 * 10
    header = (tmp_path / "p" / "model.h").read_text()
    assert "#define TINYML_STATE_BYTES 20" in header and "void tinyml_reset(void);" in header


@pytest.mark.slow
def test_keyword_spotter_in_qemu_equals_tflm_frame_by_frame(tmp_path):
    from tinyml import firmware
    from tinyml.sim import qemu
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    path = streaming_models.keyword_spotter()
    result = _compile(path, tmp_path / "project", target="cortex-m4")
    frames = streaming_models.frames(path, FRAMES)
    run = qemu.run_samples(firmware.build_harness(result.project.output_dir, result.target),
                           result.target, result.source_graph, [[x] for x in frames])
    want, _ = _tflm_frames(path, frames)
    assert sum(not np.array_equal(p[0], w) for p, w in zip(run.outputs, want)) == 0
    assert len(run.instructions) == FRAMES and min(run.instructions) > 0


@pytest.mark.slow
def test_verify_runs_the_samples_as_one_stream(window, tmp_path):
    """``tinyml verify`` feeds its samples to the harness as one stream; its reference and
    TFLM carry the state over the same way, so a streaming model verifies with 0
    mismatches (a reference restarting every sample would disagree)."""
    from tinyml.verify import make_samples, verify
    report = verify(window, "host", samples=30, sanitize=True, output_dir=tmp_path / "p")
    assert report.oracle == "reference+tflite-micro"
    assert (report.samples, report.mismatched_outputs) == (32, 0)
    graph = load_tflite(window)
    samples = make_samples(graph, 30, 0)
    state = reference.initial_state(graph)
    stream = [reference.run(graph, x, state=state)[graph.outputs[0]] for x in samples]
    restarted = [reference.run(graph, x)[graph.outputs[0]] for x in samples]
    assert any(not np.array_equal(a, b) for a, b in zip(stream, restarted))


def _concat_island(with_constant: bool) -> Graph:
    """QUANTIZE(CONCATENATION(DEQUANTIZE(x), c)) with c a float constant, or x again."""
    from tinyml.ir.ops import ConcatenationAttrs
    q = Quantization(np.float32(0.05), 3)
    g = Graph("concat_island")
    g.add_tensor(Tensor("x", (1, 2), "int8", q))
    g.add_tensor(Tensor("xf", (1, 2), "float32"))
    g.add_tensor(Tensor("c", (1, 2), "float32", data=np.full((1, 2), 0.5, np.float32)))
    g.add_tensor(Tensor("cat", (1, 4), "float32"))
    g.add_tensor(Tensor("y", (1, 4), "int8", Quantization(np.float32(0.1), -7)))
    g.inputs, g.outputs = ["x"], ["y"]
    g.add_op(Op("DEQUANTIZE", "dq", ["x"], ["xf"]))
    g.add_op(Op("CONCATENATION", "cat", ["xf", "c" if with_constant else "xf"], ["cat"],
                ConcatenationAttrs(axis=1)))
    g.add_op(Op("QUANTIZE", "q", ["cat"], ["y"]))
    return g.finalize()


def test_a_float_constant_in_a_movement_island_keeps_it_float():
    """A float constant among the moved values cannot run in int8 as it is: the island pass
    leaves that island alone, and rewrites the same island without it (a table, since the
    output is quantized apart from x) with equal results on every code."""
    passed = run_passes(_concat_island(True), passes=["float_island_movement"])
    assert [op.kind for op in passed.ops] == ["DEQUANTIZE", "CONCATENATION", "QUANTIZE"]
    g = _concat_island(False)
    passed = run_passes(g, passes=["float_island_movement"])
    assert [op.kind for op in passed.ops] == ["LOOKUP_TABLE", "CONCATENATION"]
    for code in range(-128, 128):
        x = np.array([[code, -code - 1]], np.int8)
        assert np.array_equal(reference.run(g, [x])["y"], reference.run(passed, [x])["y"])
