"""Line-buffer patch stages (tinyml.schedule.line_stage), a stage after a layer-by-layer head,
and the split tensor written over the stage input's dead rows (tinyml.schedule.patch_plan):
geometry invariants, bit-exactness against TFLM with the arena junk-filled under sanitizers,
the search's choice, and the memory bars on the MLPerf residual net and vww."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import mlperf_model
from support import tflite_zoo
from support.line_stage_models import LINE_MODELS
from support.oracles import tflm_interpreter
from tinyml import reference
from tinyml.codegen.lowering import lower
from tinyml.codegen.project import generate_project
from tinyml.compiler import plan
from tinyml.frontends import load_model
from tinyml.frontends.tflite import load_tflite
from tinyml.passes import run_passes
from tinyml.schedule import plan_memory
from tinyml.schedule.line_stage import line_geometry
from tinyml.schedule.patch_plan import input_split_distance
from tinyml.schedule.patches import choose_patching, stage_splits
from tinyml.schedule.receptive_field import operand_windows
from tinyml.sim import host
from tinyml.targets import load_target
from tinyml.verify import verify


def model(name: str):
    build, shape = LINE_MODELS[name]
    path = tflite_zoo.convert(build, [shape])
    graph = run_passes(load_model(path))
    return path, graph, lower(graph)


def cut_after(graph, k: int):
    """The graph up to layer k, whose output is layer k's output."""
    import copy
    cut = copy.copy(graph)
    cut.ops = list(graph.ops[:k + 1])
    cut.outputs = [graph.ops[k].outputs[0]]
    return cut


def samples_of(graph, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = graph.tensors[graph.inputs[0]].shape
    return ([[rng.integers(-128, 128, shape).astype(np.int8)] for _ in range(count)] +
            [[np.full(shape, -128, np.int8)], [np.full(shape, 127, np.int8)]])


# ---- geometry -------------------------------------------------------------------------------

def _spans_ok(graph, ops, geometry):
    """Every row of every stage tensor is computed once (fresh rows: disjoint, in order, what
    the stage reads), inside what its buffer holds; held rows only move down; every read of
    a band lies inside the band's held rows."""
    produced = {op.outputs[0] for op in ops}
    for name in produced:
        held, fresh = geometry.rows[name], geometry.fresh[name]
        stop = 0
        for (h0, h1), (f0, f1) in zip(held, fresh):
            if f1 > f0:
                assert f0 >= stop and h0 <= f0 and f1 <= h1
                stop = f1
        assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(held, held[1:]))
    for (i, j), (rows, _) in geometry.needs.items():
        name = ops[i].inputs[j]
        if name in produced:
            for (n0, n1), (h0, h1) in zip(rows, geometry.rows[name]):
                assert n1 <= n0 or h0 <= n0 < n1 <= h1, (name, (n0, n1), (h0, h1))


@pytest.mark.parametrize("name", list(LINE_MODELS))
def test_line_geometry_computes_each_row_once(name):
    _, graph, calls = model(name)
    for k in stage_splits(graph, calls):
        ops = graph.ops[:k + 1]
        split = ops[-1].outputs[0]
        height = graph.tensors[split].shape[1]
        for bands in sorted({2, 3, height}):
            if bands > height:
                continue
            geometry = line_geometry(graph, ops, split, bands)
            _spans_ok(graph, ops, geometry)
            # The split tensor's rows: each band's tile, in order, all of them.
            tiles = [s for s in geometry.rows[split] if s[1] > s[0]]
            assert tiles[0][0] == 0 and tiles[-1][1] == height and len(tiles) == bands
            assert all(a[1] == b[0] for a, b in zip(tiles, tiles[1:]))
            # No row computed twice: a layer's rows over all bands are at most its height.
            for op in ops:
                fresh = geometry.fresh[op.outputs[0]]
                assert sum(b - a for a, b in fresh) <= graph.tensors[op.outputs[0]].shape[1]
            assert all(operand_windows(graph, op) for op in ops)


def test_input_split_distance_by_hand():
    # Input rows of 10 B, split rows of 4 B; 3 bands of 1 split row each.
    # Band 0 writes split row 0 (bytes 0-4), band 1 still reads input from row 2 (byte 20):
    # the split may start 16 B above... no: at most 4 - 20 = -16 B (inside the input).
    reads = [(0, 4), (2, 6), (4, 8)]
    assert input_split_distance(reads, [(0, 1), (1, 2), (2, 3)], 1, 10, 4) == max(4 - 20,
                                                                                   8 - 40)
    # Two columns of patches: a row's later patches still read its own rows.
    assert input_split_distance(reads, [(0, 1), (1, 2), (2, 3)], 2, 10, 4) == 4 - 0
    # A priming band writes nothing: no constraint from it.
    assert input_split_distance([(0, 2), (0, 4), (2, 6)], [(0, 0), (0, 1), (1, 2)], 1, 10, 4) \
        == 4 - 20


# ---- bit-exactness --------------------------------------------------------------------------

def _run(graph, option: str, outdir, samples, sanitize: bool = True):
    calls = lower(graph)
    layerwise = plan_memory(graph, calls)
    schedule = choose_patching(graph, calls, layerwise, option)
    generate_project(graph, calls, schedule.plan if schedule else layerwise,
                     load_target("host"), outdir, model_file="cut", macs=0, patch=schedule)
    return schedule, host.run(host.build(outdir, sanitize=sanitize), graph, samples)


def _overlap(plan_, a: str, b: str) -> bool:
    (x0, x1), (y0, y1) = [(plan_.offsets[n], plan_.offsets[n] + plan_.sizes[n]) for n in (a, b)]
    return x0 < y1 and y0 < x1


@pytest.mark.parametrize("name,option", [
    ("residual", "1..5:5rows"), ("strided", "1..3:4rows"),
    pytest.param("residual", "2:3rows", marks=pytest.mark.slow),
    pytest.param("residual", "5:4rows", marks=pytest.mark.slow),
    pytest.param("residual", "5:10rows", marks=pytest.mark.slow),
    pytest.param("strided", "3:7rows", marks=pytest.mark.slow),
    pytest.param("strided", "1..4:5rows", marks=pytest.mark.slow),
    pytest.param("strided", "2..5:2rows", marks=pytest.mark.slow),
])
def test_line_stages_are_bit_exact_vs_tflm(name, option, tmp_path):
    """Forced line stages (priming bands, unequal bands, a head before the stage, the split
    over the input), junk-filled arena under ASan/UBSan: the split tensor equals TFLM's."""
    path, graph, calls = model(name)
    names = list(load_tflite(path).tensors)
    interpreter = tflm_interpreter(path)
    samples = samples_of(graph, 2)
    k = int(option.split(":")[0].split("..")[-1])
    cut = cut_after(graph, k)
    schedule, outputs = _run(cut, option, tmp_path / "s", samples)
    assert schedule.lines and schedule.mac_overhead <= 0
    assert schedule.option() == option
    # The planner wrote the split tensor over the rows of the stage input no band reads again.
    assert _overlap(schedule.plan, schedule.input, schedule.split)
    split = cut.outputs[0]
    for sample, (got,) in zip(samples, outputs):
        want = reference.run(cut, sample)[split]
        interpreter.set_input(sample[0], 0)
        interpreter.invoke()
        tflm = interpreter.GetTensor(names.index(split), 0)["tensor_data"]
        assert np.array_equal(want, tflm), f"reference differs from TFLM at {split}"
        assert np.array_equal(got, want), (name, option, int((got != want).sum()))


def test_grid_stage_split_over_input_is_bit_exact(tmp_path):
    """The split tensor over the input with a patch grid (halos recomputed, several
    columns): still bit-exact with the arena junk-filled."""
    _, graph, calls = model("strided")
    cut = cut_after(graph, 3)
    samples = samples_of(graph, 2)
    schedule, outputs = _run(cut, "3:3x2", tmp_path / "g", samples)
    assert not schedule.lines and schedule.memory.plan.arena_bytes > 0
    assert any("split-over-input" in key for key in schedule.plan.candidates)
    for sample, (got,) in zip(samples, outputs):
        assert np.array_equal(got, reference.run(cut, sample)[cut.outputs[0]])


def test_auto_chooses_a_line_stage_for_residual_blocks():
    """--optimize memory on full-resolution residual blocks: a line-buffer stage covering
    them, well under layer by layer, 0 mismatches against TFLM on the host (sanitizers,
    junk-filled arena)."""
    path, _, _ = model("residual")
    result = plan(path, "host", optimize="memory")
    assert result.patch is not None and result.patch.lines
    assert result.plan.arena_bytes < 0.75 * result.layerwise_plan.arena_bytes
    report = verify(path, "host", samples=4, optimize="memory", sanitize=True)
    assert report.mismatched_outputs == 0 and report.samples == 6


@pytest.mark.slow
def test_line_stage_on_cortex_m4(tmp_path):
    """The chosen line stage (DSP kernels, their scratch) in QEMU: 0 mismatches."""
    path, _, _ = model("residual")
    result = plan(path, "cortex-m4", optimize="memory")
    assert result.patch is not None and result.patch.lines
    report = verify(path, "cortex-m4", samples=3, profile=False, optimize="memory")
    assert report.mismatched_outputs == 0 and report.samples == 5


# ---- the MLPerf bars ------------------------------------------------------------------------

@pytest.mark.slow
def test_pretrained_resnet_at_most_040_of_tflm():
    """MLPerf's ResNet (TFLM arena 55,984 B): at most 0.40 of it on cortex-m4 with the
    residual blocks in a line stage; bit-exact on the host."""
    path = mlperf_model("pretrainedResnet_quant")
    result = plan(path, "cortex-m4", optimize="memory")
    print(result.patch.to_json(), result.plan.arena_bytes)
    assert result.patch.lines and result.plan.arena_bytes <= 22393
    report = verify(path, "host", samples=5, optimize="memory", sanitize=True)
    assert report.mismatched_outputs == 0


@pytest.mark.slow
def test_vww_whole_input_under_30000_on_cortex_m4():
    path = mlperf_model("vww_96_int8")
    result = plan(path, "cortex-m4", optimize="memory")
    assert result.plan.arena_bytes <= 30000
    assert result.graph.tensors[result.graph.inputs[0]].nbytes == 27648
