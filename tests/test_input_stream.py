"""``--input-stream rows`` (tinyml.schedule.input_stream): the input asked for row by row.

Checked end to end against TFLM: the generated C, fed through ``tinyml_input_rows`` by the
harness from the sample array (the harness checks that every row is asked for exactly once,
in increasing order, and fills the arena with junk before each sample), equals TFLM and the
reference bit for bit on small converted models: row stages of one layer (layer by layer)
and of several (auto, forced splits), odd heights, stride-2 first convolutions with 'same'
and 'valid' padding, pooling first, a float input quantized by the model; under ASan/UBSan
on the host, and in QEMU on cortex-m4. The harness's check is shown to fail on a model.c
that asks for a row twice. vww_96_int8 fits in 16,000 B of arena streamed.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from support.input_stream_models import (FLATTEN_INPUT, POOL_INPUT, RESIDUAL_INPUT,
                                         ROWS_ONLY_INPUT, SHORTCUT_INPUT, SKIP_INPUT,
                                         STEM_INPUT, VALID_INPUT, flatten_first, input_skip,
                                         pool_first, residual_blocks, rows_only, stem_odd,
                                         strided_shortcut, valid_tall)
from support.tflite_zoo import convert
from tinyml.compiler import compile_model, plan
from tinyml.errors import TinymlError
from tinyml.schedule.input_stream import parse_mode, row_events
from tinyml.sim import host
from tinyml.verify import make_samples, verify
from conftest import mlperf_model


@pytest.fixture(scope="module")
def stem():
    return convert(stem_odd, STEM_INPUT)


@pytest.fixture(scope="module")
def valid():
    return convert(valid_tall, VALID_INPUT)


def _rows_asked(stage) -> list[int]:
    """Input rows in the order the row stage's events ask for them, the skipped tail too."""
    asked = list(range(sum(1 for e in stage.events if e == 0)))
    return asked + list(range(len(asked), stage.image_rows))


# ---- the schedule -------------------------------------------------------------------------------


def test_stem_streams_with_a_band_not_the_image(stem):
    whole = plan(stem, "host", patch="off")
    rows = plan(stem, "host", patch="off", input_stream=True)
    stage = rows.patch
    assert stage.stage == [0]  # layer by layer: the first layer alone reads the rows
    image = whole.graph.tensors[whole.graph.inputs[0]]
    band = stage.bands[0]
    assert band.shape == (1, 3, 11, 3)  # the 3x3 kernel's rows, every column
    assert rows.plan.sizes[image.name] == band.nbytes < image.nbytes
    assert rows.plan.arena_bytes < whole.plan.arena_bytes
    report = rows.report()
    assert report["input_stream"] == {
        "mode": "rows", "callback": "tinyml_input_rows", "input_rows": 15,
        "input_bytes": image.nbytes, "band_rows": 3, "band_bytes": band.nbytes,
        "stage_layers": 1, "stage_band_bytes": band.nbytes, "input_requests": 15}
    assert whole.report()["input_stream"] == {"mode": "whole"}
    # Every layer of the stage makes each of its output rows once: MACs as layer by layer.
    assert stage.macs == stage.layerwise_macs


def test_events_make_each_row_once_and_only_when_needed(stem):
    result = plan(stem, "host", patch="3:1", input_stream=True)
    stage = result.patch
    assert stage.stage == [0, 1, 2, 3]
    heights = [15] + [result.graph.tensors[result.graph.ops[i].outputs[0]].shape[1]
                      for i in stage.stage]
    # Every row a later layer reads is made once: the 'valid' stride-2 depthwise (3 output
    # rows of an 8-row input) reads rows 0-6 only, so the 1x1 before it makes 7 rows; the
    # 'same' 3x3 depthwise making its row 6 reads row 7 of the first layer's output, whose
    # stride-2 window reads image rows 13-14 (15 is padding).
    assert [stage.events.count(j) for j in range(5)] == [15, 8, 7, 7, 3]
    assert heights == [15, 8, 8, 8, 3]
    # Recomputed from the windows: the same order (each row made when first needed).
    ops = [result.graph.ops[i] for i in stage.stage]
    caps = [b.shape[1] for b in stage.bands]
    assert row_events(result.graph, ops, stage.operands) == (stage.events, caps)
    # The stride-2 'valid' depthwise (3 rows of 8) needs rows 0-2 of its input before its
    # first output row, so the first layers run ahead by exactly that much.
    first = stage.events.index(4)
    assert stage.events[:first].count(3) == 3


def test_valid_convolution_leaves_rows_unread(valid):
    result = plan(valid, "host", patch="off", input_stream=True)
    stage = result.patch
    # 7 output rows of a 5-row window at stride 2 read rows 0..16: row 17 is skipped.
    assert stage.events.count(0) == 17 and stage.image_rows == 18
    assert _rows_asked(stage) == list(range(18))


def test_auto_picks_a_deeper_stage_when_it_is_smaller(stem):
    off = plan(stem, "host", patch="off", input_stream=True, optimize="memory")
    auto = plan(stem, "host", patch="auto", input_stream=True, optimize="memory")
    assert auto.plan.arena_bytes <= off.plan.arena_bytes
    assert auto.report()["patch"]["kind"] == "rows"


def test_parse_mode():
    assert parse_mode(None) is False and parse_mode("whole") is False
    assert parse_mode("rows") is True
    with pytest.raises(TinymlError, match="--input-stream 'columns'"):
        parse_mode("columns")


def test_refusals_name_the_layer():
    flat = convert(flatten_first, FLATTEN_INPUT)
    with pytest.raises(TinymlError, match=r"--input-stream rows: the first layer '.*' "
                                          r"\((RESHAPE|FULLY_CONNECTED)\) cannot read the input "
                                          r"row by row"):
        plan(flat, "host", patch="off", input_stream=True)
    stem_path = convert(stem_odd, STEM_INPUT)
    with pytest.raises(TinymlError, match="does not combine with --stream"):
        plan(stem_path, "host", input_stream=True, stream=True)


def test_residual_keeps_the_skip_rows_its_add_still_needs():
    """In an inverted residual block the ADD's row y needs the block input's row y while the
    expand layer has already read row y + 1 (for the depthwise): that band keeps 2 rows."""
    model = convert(residual_blocks, RESIDUAL_INPUT)
    result = plan(model, "host", patch="6:1", input_stream=True)
    stage = result.patch
    kinds = [result.graph.ops[i].kind for i in stage.stage]
    assert kinds.count("CONV_2D_ADD") == 2
    skips = [o.source for ops in stage.operands for o in ops if o.index == 2]
    assert [stage.bands[t].shape[1] for t in skips] == [2, 2]


def test_strided_shortcut_reads_every_other_row():
    """A stride-2 1x1 shortcut reads one dense row, 2y, per output row: the stage can go
    through the block to its ADD."""
    model = convert(strided_shortcut, SHORTCUT_INPUT)
    result = plan(model, "host", patch="3:1", input_stream=True)
    stage = result.patch
    strided = [o for ops in stage.operands for o in ops if o.dense and o.window.stride == 2]
    assert len(strided) == 1
    # The ADD's row y needs shortcut row y, made from the first layer's row 2y.
    assert stage.events.count(4) == 8 and stage.events.count(1) == 15


# ---- generated C against TFLM ------------------------------------------------------------------


def test_stem_bit_exact_on_the_host_sanitized(stem):
    report = verify(stem, "host", samples=10, patch="off", sanitize=True, input_stream=True)
    assert report.mismatched_outputs == 0
    assert "tflite-micro" in report.oracle


@pytest.mark.slow
@pytest.mark.parametrize("patch", ["auto", "1:1", "3:1", "4:1"])
def test_stem_stages_bit_exact(stem, patch):
    report = verify(stem, "host", samples=20, patch=patch, sanitize=True, input_stream=True,
                    optimize="memory")
    assert report.mismatched_outputs == 0
    assert "tflite-micro" in report.oracle


@pytest.mark.slow
@pytest.mark.parametrize("build,shape,patch", [
    (valid_tall, VALID_INPUT, "off"), (valid_tall, VALID_INPUT, "1:1"),
    (pool_first, POOL_INPUT, "off"), (pool_first, POOL_INPUT, "auto"),
    (rows_only, ROWS_ONLY_INPUT, "off"), (rows_only, ROWS_ONLY_INPUT, "1:1"),
    (input_skip, SKIP_INPUT, "off"), (residual_blocks, RESIDUAL_INPUT, "auto"),
    (residual_blocks, RESIDUAL_INPUT, "6:1"), (residual_blocks, RESIDUAL_INPUT, "8:1"),
    (strided_shortcut, SHORTCUT_INPUT, "auto"), (strided_shortcut, SHORTCUT_INPUT, "off")])
def test_varied_models_bit_exact(build, shape, patch):
    model = convert(build, shape)
    report = verify(model, "host", samples=20, patch=patch, sanitize=True, input_stream=True,
                    optimize="memory")
    assert report.mismatched_outputs == 0
    assert "tflite-micro" in report.oracle


@pytest.mark.slow
def test_float_input_streams_float_rows():
    """The converter's float-input model starts with QUANTIZE: the rows arrive as float."""
    model = convert(stem_odd, STEM_INPUT, int8_io=False)
    result = plan(model, "host", patch="off", input_stream=True)
    assert result.patch.bands[0].dtype == "float32"
    report = verify(model, "host", samples=10, patch="2:1", sanitize=True, input_stream=True)
    assert report.mismatched_outputs == 0


@pytest.mark.slow
@pytest.mark.parametrize("build,shape,patch", [(stem_odd, STEM_INPUT, "3:1"),
                                               (residual_blocks, RESIDUAL_INPUT, "8:1"),
                                               (strided_shortcut, SHORTCUT_INPUT, "auto")])
def test_bit_exact_in_qemu(build, shape, patch):
    report = verify(convert(build, shape), "cortex-m4", samples=5, patch=patch,
                    input_stream=True, profile=False)
    assert report.mismatched_outputs == 0
    assert report.measured["instructions_per_inference"] > 0


# ---- the callback's contract -------------------------------------------------------------------


def _project(model, tmp_path, patch):
    out = tmp_path / "project"
    result = compile_model(model, "host", out, patch=patch, input_stream=True)
    return result, out


def test_every_row_asked_once_in_order(valid, tmp_path):
    result, out = _project(valid, tmp_path, "1:1")
    binary = host.build(out, trace_rows=True)
    graph = result.io_graph
    samples = make_samples(graph, 2)
    payload = b"".join(s[0].tobytes() for s in samples)
    run = subprocess.run([str(binary)], input=payload, capture_output=True, check=True)
    calls = [(int(a), int(b), kind) for a, b, kind in
             re.findall(r"rows (\d+) (\d+) (read|skip)", run.stderr.decode())]
    per_sample = len(calls) // len(samples)
    assert per_sample * len(samples) == len(calls)
    for s in range(len(samples)):
        rows = []
        for first, count, _ in calls[s * per_sample:(s + 1) * per_sample]:
            rows += range(first, first + count)
        assert rows == list(range(18))  # every row, once, in increasing order
    # Max pooling 2x2 reads rows 0-5 of the convolution's 7: its rows 0-5 read image rows
    # 0-14; rows 15-17 are skipped in one call.
    assert result.patch.events.count(0) == 15
    assert calls[:per_sample] == [(r, 1, "read") for r in range(15)] + [(15, 3, "skip")]


def test_the_harness_sees_a_row_asked_twice(valid, tmp_path):
    result, out = _project(valid, tmp_path, "off")
    model_c = out / "model.c"
    text = model_c.read_text()
    broken = text.replace("tinyml_input_rows(made[0], 1,", "tinyml_input_rows(made[0] / 2, 1,")
    assert broken != text
    model_c.write_text(broken)
    binary = host.build(out)
    samples = make_samples(result.io_graph, 1)
    with pytest.raises(TinymlError, match=r"exit 3\).*every row once"):
        host.run(binary, result.io_graph, samples)


# ---- MLPerf Tiny's visual wake words -------------------------------------------------------------


@pytest.mark.parametrize("target", [pytest.param("host", marks=pytest.mark.slow), "cortex-m4"])
def test_vww_arena_streamed(target):
    model = mlperf_model("vww_96_int8")
    result = plan(model, target, optimize="memory", input_stream=True)
    assert result.plan.arena_bytes <= 16_000
    assert result.report()["input_stream"]["band_bytes"] < 27_648


@pytest.mark.slow
def test_vww_bit_exact_streamed():
    report = verify(mlperf_model("vww_96_int8"), "host", samples=5, optimize="memory",
                    sanitize=True, input_stream=True)
    assert report.mismatched_outputs == 0
    assert "tflite-micro" in report.oracle


# ---- the command line -----------------------------------------------------------------------------


def test_cli_compile_and_report(stem, tmp_path, capsys):
    import json

    from tinyml.cli import main
    assert main(["compile", str(stem), "-o", str(tmp_path / "p"), "--input-stream", "rows",
                 "--patch", "off", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input_stream"]["mode"] == "rows"
    assert report["patch"]["kind"] == "rows"
    header = (tmp_path / "p" / "model.h").read_text()
    assert "void tinyml_input_rows(int32_t first_row, int32_t count, tinyml_input_t *dst);" \
        in header and "tinyml_input_t *tinyml_input(void);" not in header
    assert main(["report", str(stem), "-o", str(tmp_path / "r.html"), "--input-stream",
                 "rows"]) == 0
    assert "Input (streamed row by row)" in (tmp_path / "r.html").read_text()
    with pytest.raises(SystemExit):
        main(["compile", str(stem), "-o", str(tmp_path / "q"), "--input-stream", "cols"])


@pytest.mark.slow
def test_nas_plans_candidates_with_the_streamed_input():
    """``tinyml nas --input-stream rows``: a candidate's arena is the compiler's plan with the
    image asked for row by row, smaller than with the whole image."""
    import json

    import numpy as np

    from tinyml.nas.calibration import ImageModel, data_path
    from tinyml.nas.constraints import Budget, ConstraintChecker
    from tinyml.nas.ir_builder import quantized_graph
    from tinyml.nas.search_space import SearchSpace
    from tinyml.targets import load_target

    target = load_target("cortex-m4")
    image = ImageModel.from_json(json.loads(data_path("cortex-m4").read_text()))
    space = SearchSpace()
    arch = space.arch(space.random_genome(np.random.default_rng(1)), 96, 0.35, 10)
    tight = 16 * 1024  # over the layer-by-layer arenas: both plan their stages (auto)
    whole = ConstraintChecker(target, Budget(tight, 1 << 20), image).check(arch)
    rows = ConstraintChecker(target, Budget(tight, 1 << 20, input_stream=True),
                             image).check(arch)
    streamed = plan(quantized_graph(arch), target, patch="auto", optimize="memory",
                    input_stream=True)
    assert whole.patch == rows.patch == "auto"
    assert rows.arena_bytes == streamed.plan.arena_bytes < whole.arena_bytes
    assert streamed.report()["input_stream"]["mode"] == "rows"
