"""SVDF: TFLM's integer kernel, with its activation state kept between invocations.

The models are int8 SVDF keyword spotters (SVDF -> FULLY_CONNECTED -> SOFTMAX) written with
the TFLite schema (tests/support/svdf_models.py: the converter does not emit SVDF), in several
shapes: rank 1 and 2, units not a multiple of 4, memory 1 to 10, int16 state (TFLM's usual
integer SVDF) and int8 state (its 8-bit variant). TFLM keeps the state tensor from one
``invoke()`` to the next, so it is the oracle frame by frame: every tensor, the state
included, after every frame; then the generated C on the host (ASan/UBSan) and on cortex-m4
in QEMU, output by output. With ``TINYML_TFLM_DIR`` set, TFLM's own SVDF models
(keyword_scrambled, int16 and 8-bit) are compared tensor by tensor too.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.support import svdf_models
from tests.support.oracles import tflm_interpreter

from tinyml import reference
from tinyml.errors import TinymlError
from tinyml.frontends.tflite import load_tflite_bytes

FRAMES = 30
STATE = "svdf/activation_state"


def _model(key: str, seed: int = 1, **overrides) -> bytes:
    return svdf_models.svdf_model(**{**svdf_models.SHAPES[key], **overrides}, seed=seed)


def _tflm_stream(data: bytes, frames: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Every non-constant tensor of TFLM's interpreter by name, after each frame."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sub = model.subgraphs[0]
    constant = {i for i, t in enumerate(sub.tensors)
                if t.buffer and model.buffers[t.buffer].data is not None}
    names = {i: t.name.decode() if t.name else f"tensor_{i}" for i, t in enumerate(sub.tensors)
             if i not in constant}
    it = tflm_interpreter(data)
    stream = []
    for x in frames:
        it.set_input(x, 0)
        it.invoke()
        stream.append({n: np.array(it.GetTensor(i, 0)["tensor_data"]) for i, n in names.items()})
    return stream


def _reference_stream(graph, frames) -> list[dict[str, np.ndarray]]:
    """The reference's tensors after each frame, with each variable's value under its name."""
    state = reference.initial_state(graph)
    stream = []
    for x in frames:
        values = dict(reference.run(graph, [x], keep_all=True, state=state))
        values.update({k: v.copy() for k, v in state.items()})
        stream.append(values)
    return stream


def _check_every_tensor(data: bytes, frames, graph=None) -> int:
    """Every TFLM tensor the graph has, after every frame, equal; returns how many."""
    graph = graph or load_tflite_bytes(data, "svdf")
    want = _tflm_stream(data, frames)
    got = _reference_stream(graph, frames)
    compared = 0
    for k, (w, g) in enumerate(zip(want, got)):
        for name, value in w.items():
            if name in g:
                assert np.array_equal(np.asarray(g[name]).reshape(-1), value.reshape(-1)), \
                    f"frame {k}, tensor '{name}'"
                compared += 1
    return compared


# ---- import ---------------------------------------------------------------------------------


def test_import_makes_the_state_tensor_a_variable():
    graph = load_tflite_bytes(_model("rank2_relu"), "svdf")
    shape = svdf_models.SHAPES["rank2_relu"]
    filters = shape["units"] * shape["rank"]
    assert [op.kind for op in graph.ops] == ["SVDF", "FULLY_CONNECTED", "SOFTMAX"]
    var = graph.variables[STATE]
    assert (var.shape, var.dtype) == ((1, shape["memory"] * filters), "int16")
    assert np.array_equal(var.initial, np.zeros(var.shape, np.int16))   # TFLM's reset value
    assert STATE not in graph.tensors          # not an arena tensor: static storage
    svdf = graph.ops[0]
    assert len(svdf.inputs) == 4 and svdf.attrs.variable == STATE and svdf.attrs.rank == 2
    assert graph.tensors[svdf.outputs[0]].shape == (1, shape["units"])
    # The 8-bit variant's state resets to its zero point, as TFLM's ResetTensorData does.
    var = load_tflite_bytes(_model("int8_state"), "svdf").variables[STATE]
    zero_point = int(var.quant.zero_point[0])
    assert var.dtype == "int8" and zero_point != 0
    assert np.array_equal(var.initial, np.full(var.shape, zero_point, np.int8))


def _edited(data: bytes, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _one_line_error(data: bytes) -> str:
    from tinyml.codegen.lowering import lower
    from tinyml.passes import run_passes
    with pytest.raises(TinymlError) as info:
        lower(run_passes(load_tflite_bytes(data, "edited")))
    message = str(info.value)
    assert "\n" not in message and "'svdf/output'" in message
    return message


def test_bad_svdf_files_are_refused_in_one_line():
    data = _model("rank1")

    def no_bias(model):                      # TFLM's Prepare reads the bias unconditionally
        model.subgraphs[0].operators[0].inputs[3] = -1

    def four_inputs(model):
        model.subgraphs[0].operators[0].inputs = model.subgraphs[0].operators[0].inputs[:4]

    def bias_scale(model):  # TFLM allows 1e-5 (absolute) from state scale x time scale
        sub = model.subgraphs[0]
        sub.tensors[sub.operators[0].inputs[3]].quantization.scale = [0.01]

    assert "no bias" in _one_line_error(_edited(data, no_bias))
    assert "5" in _one_line_error(_edited(data, four_inputs))
    assert "bias scale" in _one_line_error(_edited(data, bias_scale))


# ---- reference ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(svdf_models.SHAPES))
def test_reference_equals_tflm_on_every_tensor_frame_by_frame(key):
    shape = svdf_models.SHAPES[key]
    frames = svdf_models.frames(shape["input_size"], FRAMES)
    compared = _check_every_tensor(_model(key), frames)
    # Input, SVDF output, state, FC output, softmax output: every frame.
    assert compared == FRAMES * 5


def test_the_state_carries_over_and_saturates():
    """The history matters (a fresh stream gives another output for the same frame), and the
    all-maximum frames drive the int16 state to its clamp, which TFLM and the reference
    share (the comparison above covers those frames)."""
    data = _model("wide")
    frames = svdf_models.frames(svdf_models.SHAPES["wide"]["input_size"], FRAMES)
    stream = _tflm_stream(data, frames)
    states = np.stack([s[STATE] for s in stream])
    assert (np.abs(states.astype(np.int32)) >= 32767).any()
    fresh = [_tflm_stream(data, [x])[0]["svdf/output"] for x in frames[1:6]]
    assert any(not np.array_equal(f, s["svdf/output"]) for f, s in zip(fresh, stream[1:6]))


def test_fused_relu_is_not_applied_by_the_integer_kernel():
    """TFLM's integer SVDF clamps to int8 only, whatever the fused activation: with RELU and
    an output zero point of 0, outputs below the zero point (negative values) come out of
    TFLM, and of the reference."""
    data = _model("rank2_relu", output_zero_point=0)
    frames = svdf_models.frames(svdf_models.SHAPES["rank2_relu"]["input_size"], FRAMES)
    outputs = np.stack([s["svdf/output"] for s in _tflm_stream(data, frames)])
    assert (outputs < 0).any()
    assert _check_every_tensor(data, frames) == FRAMES * 5


def test_effective_scales_are_derived_in_double():
    """The tflite-micro build the tests run derives effective scale 1 in double from the
    float32 scales; multiplying the floats first (as TFLM's source snapshot reads) gives a
    multiplier a few units lower in 2^31 that puts one state code of this stream 1 LSB off."""
    from tinyml.ir.tensor import Quantization
    from tinyml.reference.fixedpoint import quantize_multiplier
    from tinyml.reference.kernels.svdf import svdf_int8_params, svdf_step
    data = _model("rank1")
    graph = load_tflite_bytes(data, "svdf")
    op = graph.ops[0]
    a = op.attrs
    x_t, wf_t, wt_t, b_t = graph.op_inputs(op)
    params = svdf_int8_params(op.name, x_t, wf_t, wt_t, b_t, a.dtype,
                              Quantization(np.float32(a.state_scale), a.state_zero_point),
                              graph.tensors[op.outputs[0]])
    s_in, s_wf, s_state = np.float32(x_t.scale()), np.float32(wf_t.scale()), \
        np.float32(a.state_scale)
    m_float, shift_float = quantize_multiplier(float(np.float32(s_in * s_wf) / s_state))
    assert (params.multiplier_1, params.shift_1) == quantize_multiplier(
        float(s_in) * float(s_wf) / float(s_state))
    assert params.multiplier_1 != m_float
    in_float = dataclasses.replace(params, multiplier_1=m_float, shift_1=shift_float)
    frames = svdf_models.frames(svdf_models.SHAPES["rank1"]["input_size"], FRAMES)
    want = [s[STATE] for s in _tflm_stream(data, frames)]
    state = np.zeros(a.shape, np.int16)
    ours, theirs = 0, 0
    for k, x in enumerate(frames):
        previous = want[k - 1] if k else state
        ours += not np.array_equal(
            svdf_step(x, wf_t.data, wt_t.data, b_t.data, previous, a.rank, params)[1], want[k])
        theirs += not np.array_equal(
            svdf_step(x, wf_t.data, wt_t.data, b_t.data, previous, a.rank, in_float)[1],
            want[k])
    assert (ours, theirs) == (0, 1)


def test_export_writes_the_state_back_as_a_variable_tensor():
    """tinyml's TFLite writer (tinyml.quantize.tflite_export) writes the SVDF with its
    variable tensor: TFLM runs the written file and gives the original's outputs frame by
    frame, and it imports to the same variable."""
    from tinyml.quantize.tflite_export import export_tflite
    data = _model("int8_state")
    graph = load_tflite_bytes(data, "svdf")
    written = export_tflite(graph)
    again = load_tflite_bytes(written, "written")
    assert list(again.variables) == [STATE]
    assert again.variables[STATE].dtype == "int8"
    assert again.ops[0].attrs == graph.ops[0].attrs
    frames = svdf_models.frames(svdf_models.SHAPES["int8_state"]["input_size"], FRAMES)
    want = [w["softmax/output"] for w in _tflm_stream(data, frames)]
    got = [w["softmax/output"] for w in _tflm_stream(written, frames)]
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


TFLM_DIR = os.environ.get("TINYML_TFLM_DIR")


@pytest.mark.parametrize("name", ["keyword_scrambled", "keyword_scrambled_8bit"])
def test_tflm_keyword_scrambled_svdfs_equal_tflm(name):
    """TFLM's own SVDF models (seven SVDFs each, int16 or int8 state): every SVDF output and
    state, after every frame. The int16 softmax and the int32 output at their end are not
    tinyml's (it compiles int8 graphs), so the graph is cut before the softmax."""
    if not TFLM_DIR:
        pytest.skip("TINYML_TFLM_DIR is not set: point it at a tensorflow/tflite-micro "
                    "checkout to run TFLM's SVDF models")
    path = Path(TFLM_DIR) / "tensorflow/lite/micro/models" / f"{name}.tflite"
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    data = path.read_bytes()
    graph = load_tflite_bytes(data, name)
    softmax = next(i for i, op in enumerate(graph.ops) if op.kind == "SOFTMAX")
    graph.ops = graph.ops[:softmax]
    graph.outputs = [graph.ops[-1].outputs[0]]
    assert sum(op.kind == "SVDF" for op in graph.ops) == len(graph.variables) == 7
    x_t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(0)
    info = np.iinfo(x_t.dtype)
    frames = [rng.integers(info.min, info.max + 1, x_t.shape).astype(x_t.dtype)
              for _ in range(FRAMES)]
    assert _check_every_tensor(data, frames, graph) >= FRAMES * (len(graph.ops) + 7)


# ---- generated C ----------------------------------------------------------------------------


def _build_host(project: Path, binary: Path, dsp: bool) -> Path:
    """The project with the host harness, under ASan/UBSan. With ``dsp`` the project is a
    cortex-m4 one (its svdf.c is firmware/kernels/cortex_m's) built with the C emulation of
    the ACLE instructions (tests/support/acle_emulation.h), as the DSP kernel tests do."""
    import subprocess

    from tinyml.paths import FIRMWARE_DIR
    from tinyml.sim.host import SANITIZE_FLAGS, STRICT_FLAGS
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    emulation = ["-DTINYML_ACLE_EMULATION", f"-I{Path(__file__).parent / 'support'}"]
    sources = [project / "model.c", project / "weights.c",
               *sorted((project / "kernels").glob("*.c")),
               FIRMWARE_DIR / "harness" / "host_harness.c"]
    subprocess.run([cc, *STRICT_FLAGS, "-O1", *SANITIZE_FLAGS, *(emulation if dsp else []),
                    f"-I{project}", f"-I{project / 'kernels'}", *map(str, sources), "-o",
                    str(binary), "-lm"], check=True, capture_output=True)
    return binary


def _check_host(key: str, tmp_path, dsp: bool = False) -> dict:
    """The SVDF alone (every output code visible), compiled, run on one stream on the host
    under the sanitizers: equal to TFLM frame by frame."""
    from tinyml.compiler import compile_model
    from tinyml.sim import host
    data = _model(key, head=False)
    path = tmp_path / f"{key}.tflite"
    path.write_bytes(data)
    result = compile_model(path, "cortex-m4" if dsp else "host", tmp_path / "project")
    project = result.project.output_dir
    kernel = (project / "kernels" / "svdf.c").read_text()
    assert ("dsp_common.h" in kernel) == dsp
    binary = _build_host(project, tmp_path / "harness", dsp)
    frames = svdf_models.frames(svdf_models.SHAPES[key]["input_size"], FRAMES)
    produced = np.stack([p[0] for p in host.run(binary, result.source_graph,
                                                [[x] for x in frames])])
    want = np.stack([w["svdf/output"] for w in _tflm_stream(data, frames)])
    assert np.array_equal(produced.reshape(want.shape), want)
    assert np.unique(want).size > 10          # a stream of real outputs, not a clamp
    return result.report()


def _state_bytes(key: str) -> int:
    s = svdf_models.SHAPES[key]
    width = 1 if s.get("state_dtype") == "int8" else 2
    return s["memory"] * s["units"] * s["rank"] * width


def test_host_c_equals_tflm_frame_by_frame(tmp_path):
    report = _check_host("rank2_relu", tmp_path)
    assert report["state_bytes"] == _state_bytes("rank2_relu") == 224


def test_dsp_c_equals_tflm_frame_by_frame(tmp_path):
    report = _check_host("int8_state", tmp_path, dsp=True)
    assert report["state_bytes"] == _state_bytes("int8_state") == 44


@pytest.mark.slow
@pytest.mark.parametrize("dsp", [False, True], ids=["portable", "dsp"])
@pytest.mark.parametrize("key", sorted(svdf_models.SHAPES))
def test_c_equals_tflm_frame_by_frame_every_shape(key, dsp, tmp_path):
    assert _check_host(key, tmp_path, dsp)["state_bytes"] == _state_bytes(key)


_TWICE_DRIVER = r"""
#include <stdio.h>
#include <string.h>
#include "model.h"
/* The frames of stdin, tinyml_reset(), the same frames again: both passes to stdout. */
int main(void)
{
    static unsigned char frames[64][TINYML_INPUT_BYTES];
    int n = 0, pass, i;
    while (n < 64 && fread(frames[n], 1, TINYML_INPUT_BYTES, stdin) == TINYML_INPUT_BYTES) {
        n++;
    }
    for (pass = 0; pass < 2; pass++) {
        tinyml_reset();
        for (i = 0; i < n; i++) {
            memcpy(tinyml_input(), frames[i], TINYML_INPUT_BYTES);
            if (tinyml_invoke() != 0) {
                return 2;
            }
            fwrite(tinyml_output(), 1, TINYML_OUTPUT_BYTES, stdout);
        }
    }
    return 0;
}
"""


def test_reset_restores_the_zero_state(tmp_path):
    """tinyml_reset() zeroes the int16 state (one memset, no initial-value array), so a
    stream run again after it gives TFLM's outputs again (ASan/UBSan)."""
    import subprocess

    from tinyml.compiler import compile_model
    from tinyml.sim.host import SANITIZE_FLAGS, STRICT_FLAGS
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no host C compiler")
    data = _model("rank1", head=False)
    path = tmp_path / "rank1.tflite"
    path.write_bytes(data)
    project = compile_model(path, "host", tmp_path / "project").project.output_dir
    model_c = (project / "model.c").read_text()
    assert "memset(state_svdf_activation_state, 0," in model_c and "_initial[" not in model_c
    driver = tmp_path / "driver.c"
    driver.write_text(_TWICE_DRIVER)
    sources = [project / "model.c", project / "weights.c",
               *sorted((project / "kernels").glob("*.c")), driver]
    subprocess.run([cc, *STRICT_FLAGS, "-O1", *SANITIZE_FLAGS, f"-I{project}",
                    f"-I{project / 'kernels'}", *map(str, sources), "-o",
                    str(tmp_path / "driver")], check=True, capture_output=True)
    frames = svdf_models.frames(svdf_models.SHAPES["rank1"]["input_size"], FRAMES)
    out = subprocess.run([str(tmp_path / "driver")], input=b"".join(x.tobytes() for x in frames),
                         capture_output=True, check=True).stdout
    runs = np.frombuffer(out, np.int8).reshape(2, FRAMES, -1)
    want = np.stack([w["svdf/output"].reshape(-1) for w in _tflm_stream(data, frames)])
    assert np.array_equal(runs[0], want) and np.array_equal(runs[1], want)


def test_cortex_m4_in_qemu_equals_tflm_frame_by_frame(tmp_path):
    """The keyword spotter (SVDF -> FULLY_CONNECTED -> SOFTMAX) with the DSP kernel, about
    3 s (QEMU boots once for the stream); benchmarks/svdf_kws.py measures more shapes."""
    from tinyml import firmware
    from tinyml.compiler import compile_model
    from tinyml.sim import qemu
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    data = _model("rank1")
    path = tmp_path / "rank1.tflite"
    path.write_bytes(data)
    result = compile_model(path, "cortex-m4", tmp_path / "project")
    frames = svdf_models.frames(svdf_models.SHAPES["rank1"]["input_size"], FRAMES)
    run = qemu.run_samples(firmware.build_harness(result.project.output_dir, result.target),
                           result.target, result.source_graph, [[x] for x in frames])
    want = np.stack([w["softmax/output"] for w in _tflm_stream(data, frames)])
    produced = np.stack([p[0] for p in run.outputs]).reshape(want.shape)
    assert np.array_equal(produced, want)
    assert np.unique(want).size > 10
    assert len(run.instructions) == FRAMES and min(run.instructions) > 0
    assert result.report()["state_bytes"] == _state_bytes("rank1")


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("target_name", ["cortex-m4",
                                         pytest.param("cortex-m33", marks=pytest.mark.slow)])
def test_dsp_kernel_builds_with_strict_warnings_and_uses_smlad(tmp_path, target_name):
    """The strict warnings of the kernel tests plus -Wconversion, for the DSP cores; the
    object really multiplies with SMLAD on SXTB16-unpacked pairs."""
    import subprocess

    from tinyml.paths import KERNELS_DIR
    from tinyml.targets import load_target
    from tests.support.c_harness import WARNINGS
    arch = [f for f in load_target(target_name).cflags if f.startswith("-m")]
    obj = tmp_path / "svdf.o"
    result = subprocess.run(
        ["arm-none-eabi-gcc", *WARNINGS, "-Wconversion", "-O2", *arch, f"-I{KERNELS_DIR}",
         f"-I{KERNELS_DIR / 'portable'}", f"-I{KERNELS_DIR / 'cortex_m'}", "-c",
         str(KERNELS_DIR / "cortex_m" / "svdf.c"), "-o", str(obj)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)],
                                 capture_output=True, text=True).stdout
    assert "smlad" in disassembly and "sxtb16" in disassembly
