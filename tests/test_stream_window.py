"""``compile --stream``: a sliding-window model run one new frame per call.

The models are converter-made Keras keyword spotters over a 49x10 window
(tests/support/stream_window_models.py). The oracle is TFLM running the ordinary model on the
full window after each frame (the window starting as the input's zero point, as
``--stream`` defines the first T-1 frames): the stream form (tinyml's reference, the
generated C on the host under ASan/UBSan, the firmware in QEMU) must give the same output,
bit for bit, for every frame of a 100-frame stream.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.support import stream_window_models as models
from tests.support.oracles import tflm_interpreter

from tinyml import reference
from tinyml.errors import TinymlError
from tinyml.frontends.tflite import load_tflite
from tinyml.passes import run_passes
from tinyml.passes.stream_window import stream_window

FRAMES = 100


@pytest.fixture(scope="module")
def kws():
    return models.window_kws()


def _stream(path, count=FRAMES):
    """(frames, full windows after each) for the model at ``path``."""
    graph = load_tflite(path)
    x = graph.tensors[graph.inputs[0]]
    frames = models.frame_stream((1, 1) + tuple(x.shape[2:]), count)
    return frames, models.windows(frames, x.shape[1], int(x.quant.zero_point[0]))


def _tflm_windows(path, windows):
    it = tflm_interpreter(path, all_tensors=False)
    outputs = []
    for w in windows:
        it.set_input(w, 0)
        it.invoke()
        outputs.append(np.array(it.get_output(0)))
    return outputs


def _reference_stream(graph, frames):
    state = reference.initial_state(graph)
    return [reference.run(graph, [f], state=state)[graph.outputs[0]] for f in frames]


def _check_reference(path):
    frames, windows = _stream(path)
    want = _tflm_windows(path, windows)
    plan = stream_window(run_passes(load_tflite(path)))
    got = _reference_stream(plan.graph, frames)
    mismatches = [k for k, (a, b) in enumerate(zip(got, want)) if not np.array_equal(a, b)]
    assert mismatches == []
    # Real numbers: the outputs move with the frames.
    assert len({w.tobytes() for w in want}) > 5
    return plan, got, want


def test_stream_reference_equals_tflm_on_the_full_window(kws):
    plan, got, _ = _check_reference(kws)
    # Every time conv is streamed (kernels 5, 3 dilated 2, 1, 4, 3 along time); the global
    # average pool ends the prefix, on a kept window of the last conv's 36 columns.
    assert len(plan.streamed) == 5
    assert plan.stop_reason == "MEAN mixes the whole time axis"
    columns = sorted(n for _, n in plan.states.values())
    assert columns == [2, 3, 4, 4, 35]
    # Input 10 B a column, then 8x16, 8x24, 6x24 and the 4x32 window.
    assert plan.state_bytes == 4 * 10 + 4 * 128 + 3 * 192 + 2 * 144 + 35 * 128
    # The state matters: each frame restarted from reset gives other outputs.
    restarted = [reference.run(plan.graph, [f])[plan.graph.outputs[0]]
                 for f in _stream(kws)[0][60:70]]
    assert any(not np.array_equal(a, b) for a, b in zip(restarted, got[60:70]))


def test_compile_json_reports_the_stream(kws, tmp_path):
    out = subprocess.run([sys.executable, "-m", "tinyml.cli", "compile", str(kws), "--stream",
                          "-o", str(tmp_path / "p"), "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    stream = report["stream"]
    assert (stream["window"], stream["frame_shape"]) == (49, [1, 1, 10, 1])
    assert stream["stop_layer"].endswith("global_average_pooling2d_1/Mean")
    assert report["state_bytes"] == 5896
    # MACs per call: the new columns (and the dense head), 1/37 of the window's.
    assert stream["macs_full_window"] == 2_831_232
    assert report["macs"] * 30 < stream["macs_full_window"]
    header = (tmp_path / "p" / "model.h").read_text()
    assert "#define TINYML_STREAM_WINDOW 49" in header
    assert "#define TINYML_INPUT_ELEMENTS 10" in header


@pytest.mark.slow
def test_prefix_stops_at_a_strided_time_conv():
    path = models.window_kws(models.STRIDED_LAYERS)
    plan, _, _ = _check_reference(path)
    assert len(plan.streamed) == 1
    assert "strides 2 along time" in plan.stop_reason
    assert plan.stop_layer == load_tflite(path).ops[1].name   # the second conv
    # The first conv's output (47 columns of 8x8) is kept whole for the strided conv.
    assert sorted(plan.states.values(), key=lambda s: s[1])[-1][1] == 46


@pytest.mark.slow
def test_prefix_stops_at_a_time_padded_conv():
    plan, _, _ = _check_reference(models.window_kws(models.SAME_LAYERS))
    assert len(plan.streamed) == 1
    assert "pads the time axis" in plan.stop_reason


@pytest.mark.slow
def test_keras_conv1d_streams_through_its_reshapes(tmp_path):
    """Conv1D: EXPAND_DIMS puts time on axis 2 of the convolutions, a RESHAPE back on axis
    1 before the pooling; the prefix follows the time axis through both."""
    path = models.window_kws(models.CONV1D_LAYERS)
    plan, _, _ = _check_reference(path)
    kinds = [op.kind for op in plan.graph.ops if op.name in plan.streamed]
    assert kinds == ["RESHAPE", "CONV_2D", "CONV_2D", "CONV_2D", "RESHAPE"]
    assert plan.stop_reason == "MEAN mixes the whole time axis"
    assert _host_stream(path, tmp_path) == 0


@pytest.mark.slow
def test_a_residual_add_streams_with_its_skip_column(tmp_path):
    """x + conv(x) (time kernel 1), fused into CONV_2D_ADD: the skip operand is the new
    column of x, computed this frame."""
    path = models.window_kws(models.RESIDUAL_LAYERS)
    plan, _, _ = _check_reference(path)
    assert [op.kind for op in plan.graph.ops if op.name in plan.streamed] == \
        ["CONV_2D", "CONV_2D_ADD", "CONV_2D"]
    assert _host_stream(path, tmp_path) == 0


@pytest.mark.slow
def test_nothing_streamable_is_one_line_naming_the_layer(tmp_path):
    path = models.window_kws(models.UNSTREAMABLE_LAYERS)
    out = subprocess.run([sys.executable, "-m", "tinyml.cli", "compile", str(path), "--stream",
                          "-o", str(tmp_path / "p")], capture_output=True, text=True)
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    first = load_tflite(path).ops[0]
    assert "nothing to stream" in lines[0] and f"'{first.name}' (CONV_2D)" in lines[0]
    assert "strides 2 along time" in lines[0]


def test_a_model_with_state_already_is_refused(tmp_path):
    from tests.support import streaming_models
    graph = run_passes(load_tflite(streaming_models.window_model()))
    with pytest.raises(TinymlError) as info:
        stream_window(graph)
    assert "\n" not in str(info.value) and "already keeps state" in str(info.value)


def _host_stream(path, tmp_path):
    from tinyml.compiler import compile_model
    from tinyml.sim import host
    result = compile_model(path, "host", tmp_path / "project", stream=True)
    binary = host.build(result.project.output_dir, sanitize=True, optimize="-O0")
    frames, windows = _stream(path)
    produced = host.run(binary, result.io_graph, [[f] for f in frames])
    want = _tflm_windows(path, windows)
    return sum(not np.array_equal(p[0], w) for p, w in zip(produced, want))


def test_compiled_stream_on_host_equals_tflm_every_frame(kws, tmp_path):
    assert _host_stream(kws, tmp_path) == 0


@pytest.mark.slow
def test_compiled_stream_stopping_early_on_host_equals_tflm_every_frame(tmp_path):
    assert _host_stream(models.window_kws(models.STRIDED_LAYERS), tmp_path) == 0


@pytest.mark.slow
def test_stream_in_qemu_equals_tflm_and_costs_under_a_third(kws, tmp_path):
    """Cortex-M4 in QEMU: every frame equals TFLM on its window, and a new frame costs at
    most 1/3 of the full window's instructions (deterministic -icount counts)."""
    from tinyml import firmware
    from tinyml.compiler import compile_model
    from tinyml.sim import qemu
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    frames, windows = _stream(kws)
    runs = {}
    for label, stream, samples in (("full", False, windows[-3:]), ("stream", True, frames)):
        result = compile_model(kws, "cortex-m4", tmp_path / label, stream=stream)
        runs[label] = qemu.run_samples(
            firmware.build_harness(result.project.output_dir, result.target), result.target,
            result.io_graph, [[s] for s in samples])
    want = _tflm_windows(kws, windows)
    assert sum(not np.array_equal(p[0], w) for p, w in zip(runs["stream"].outputs, want)) == 0
    assert all(np.array_equal(p[0], w) for p, w in zip(runs["full"].outputs, want[-3:]))
    per_frame = max(runs["stream"].instructions[1:])
    assert 0 < per_frame * 3 <= min(runs["full"].instructions)


@pytest.mark.slow
def test_verify_and_run_stream(kws, tmp_path):
    """``verify --stream`` compares each frame's output with the oracles on its window;
    ``run --stream`` on a window's frames gives the ordinary model's output on it."""
    from tinyml.runner import run_model
    from tinyml.verify import verify
    report = verify(kws, "host", samples=40, sanitize=True, stream=True,
                    output_dir=tmp_path / "v")
    assert report.oracle == "reference+tflite-micro"
    assert (report.samples, report.mismatched_outputs) == (42, 0)
    window = np.random.default_rng(3).integers(-128, 128, (1, 49, 10, 1)).astype(np.int8)
    np.save(tmp_path / "window.npy", window)
    streamed = run_model(kws, "host", [str(tmp_path / "window.npy")], stream=True)
    assert "49 frames" in streamed.input_source
    want = _tflm_windows(kws, [window])[0]
    assert np.array_equal(next(iter(streamed.outputs.values())), want)
