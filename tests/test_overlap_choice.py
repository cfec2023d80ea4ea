"""Overlapped hand-overs beyond the planner: what they cost, who weighs them, who shows them.

- the cost (tinyml.schedule.overlap_cost): the DSP convolutions' short last block, predicted
  within 10 % of what QEMU measures on kws_ref_model with and without overlaps (slow; the
  fast sample checks the stored fit on its own profiles);
- ``--optimize``: memory takes the overlaps, speed turns down those that cost instructions,
  balanced keeps them within its slack or when only they fit the part; the arena turned down
  is the planner's own without overlaps;
- the memory report: the bytes saved are the planner's with and without overlaps, the arena
  layout draws each overlapped output over the input it is written into, and no two live
  buffers share bytes otherwise;
- the NAS plans a candidate as its firmware is compiled: its arena is the overlapped plan's;
- ``--optimize memory``'s 4-pixel DSP convolution blocks: taken only where they lower the
  arena, bit-exact and predicted within 5 % in QEMU (slow).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from conftest import mlperf_model
from tinyml.compiler import plan
from tinyml.schedule import overlap_cost, planner
from tinyml.schedule.patches import BALANCED_SLACK
from tinyml.targets import load_target


def default_blocks(mp: pytest.MonkeyPatch) -> None:
    """--optimize memory without its 4-pixel DSP blocks (compiler._with_small_blocks), so
    that the plans compared here differ only in their overlaps."""
    from tinyml import compiler
    mp.setattr(compiler, "_with_small_blocks", lambda result, schedule: None)


@pytest.fixture(scope="module")
def kws_m4():
    """kws_ref_model on cortex-m4 layer by layer, overlaps always taken."""
    with pytest.MonkeyPatch.context() as mp:
        default_blocks(mp)
        return plan(mlperf_model("kws_ref_model"), "cortex-m4", patch="off",
                    optimize="memory")


# ---- the cost ------------------------------------------------------------------------------------

def test_stored_fit_predicts_its_profiles():
    stored = json.loads(overlap_cost.data_path("cortex-m4").read_text())
    assert stored["samples"]
    for s in stored["samples"]:  # profiles count in steps of 40: the smallest is 1,200
        assert s["measured"] > 0
        assert abs(s["predicted"] / s["measured"] - 1) <= 0.20, s
    total = sum(s["measured"] for s in stored["samples"])
    assert abs(sum(s["predicted"] for s in stored["samples"]) / total - 1) <= 0.05


def test_only_dsp_convolutions_with_a_short_block_cost(kws_m4):
    """kws's convolutions make 125 pixels: blocks of 8 end 5 short; its fully connected
    layer runs the same code anywhere. Without the DSP kernels nothing changes."""
    costs = overlap_cost.for_target(kws_m4.target).layers(kws_m4.graph, kws_m4.calls,
                                                          kws_m4.plan)
    kinds = {o["layer"]: o["op"] for o in kws_m4.report()["overlap"]["layers"]}
    assert set(costs) == {name for name, kind in kinds.items() if kind == "CONV_2D"}
    assert len(costs) == 5 and all(c > 0 for c in costs.values())
    portable = overlap_cost.for_target(load_target("cortex-m0plus"))
    assert portable.predict(kws_m4.graph, kws_m4.calls, kws_m4.plan) == 0


@pytest.mark.slow
def test_predicted_cost_matches_qemu(monkeypatch):
    """The instructions overlaps add on kws_ref_model (cortex-m4, QEMU, same inputs):
    measured +20,600 when this was written; predicted within 10 %."""
    import functools

    from tinyml import compiler
    from tinyml.verify import verify

    model = mlperf_model("kws_ref_model")
    default_blocks(monkeypatch)
    with monkeypatch.context() as m:  # planned as if no kernel declared an overlap
        m.setattr(compiler, "plan_memory",
                  functools.partial(planner.plan_memory, overlap=False))
        before = verify(model, "cortex-m4", samples=2, patch="off", optimize="memory",
                        profile=False)
    after = verify(model, "cortex-m4", samples=2, patch="off", optimize="memory",
                   profile=False)
    assert before.mismatched_outputs == after.mismatched_outputs == 0
    measured = (after.measured["instructions_per_inference"]
                - before.measured["instructions_per_inference"])
    predicted = plan(model, "cortex-m4", patch="off",
                     optimize="memory").report()["overlap"]["predicted_instructions"]
    assert measured > 0
    assert abs(predicted / measured - 1) <= 0.10


# ---- --optimize ----------------------------------------------------------------------------------

def _plan(arena: int, without: int | None = None):
    return SimpleNamespace(arena_bytes=arena, arena_bytes_without_overlap=without or arena,
                           overlaps=[(0, "a", "b", 0)] if without else [])


def test_weigh_applies_the_optimize_rule():
    overlapped, plain = _plan(100, 200), _plan(200)
    slow = int(1000 * BALANCED_SLACK) + 1  # just outside balanced's slack over 1000
    for optimize, extra, sram, kept in [("memory", slow, None, overlapped),
                                        ("balanced", slow - 2, None, overlapped),
                                        ("balanced", slow, None, plain),
                                        ("balanced", slow, 150, overlapped),  # only it fits
                                        ("speed", 1, None, plain),
                                        ("speed", 0, None, overlapped)]:
        weighed = overlap_cost.weigh(overlapped, extra, 1000, lambda: plain, optimize, sram)
        assert weighed.plan is kept, (optimize, extra, sram)
        assert weighed.declined == (kept is plain)
        assert weighed.saving_bytes == 100


def test_speed_turns_down_kws_overlaps_balanced_keeps_them(kws_m4):
    model = mlperf_model("kws_ref_model")
    plain = planner.plan_memory(kws_m4.graph, kws_m4.calls, overlap=False).arena_bytes
    speed = plan(model, "cortex-m4", patch="off", optimize="speed")
    balanced = plan(model, "cortex-m4", patch="off")
    assert kws_m4.plan.arena_bytes < plain
    assert speed.plan.arena_bytes == plain and not speed.plan.overlaps
    assert balanced.plan.arena_bytes == kws_m4.plan.arena_bytes  # +0.5 %: within the slack
    cost = kws_m4.report()["overlap"]["predicted_instructions"]
    assert 0 < cost < BALANCED_SLACK * speed.predicted_instructions
    assert kws_m4.predicted_instructions - speed.predicted_instructions == cost
    declined = speed.report()["overlap"]["declined"]
    assert declined == {"saving_bytes": plain - kws_m4.plan.arena_bytes,
                        "predicted_instructions": cost}
    # On the host's portable kernels overlaps cost nothing: speed keeps them.
    host = plan(model, "host", patch="off", optimize="speed")
    assert host.plan.overlaps and host.report()["overlap"]["predicted_instructions"] == 0


# ---- the memory report ---------------------------------------------------------------------------

def test_report_states_the_planners_saving(kws_m4):
    from tinyml.memory_report import figures

    plain = planner.plan_memory(kws_m4.graph, kws_m4.calls, overlap=False).arena_bytes
    overlap = figures(kws_m4)["overlap"]
    assert overlap["arena_bytes_without_overlap"] == plain
    assert overlap["saving_bytes"] == plain - kws_m4.plan.arena_bytes == 8000
    assert overlap["predicted_instructions"] == sum(
        layer["predicted_instructions"] for layer in overlap["layers"]) > 0


def test_arena_layout_draws_overlaps_over_their_input(kws_m4):
    """The rectangles of the layout plot are the plan: buffers alive at the same step never
    share bytes, except an in-place pair and an overlapped output and the input it is
    written into, at the step of the hand-over."""
    from tinyml.memory_report import arena_blocks

    memory = kws_m4.plan
    blocks = arena_blocks(kws_m4.graph, memory)
    by_name = {b.name: b for b in blocks}
    overlapped = [b for b in blocks if b.kind == "overlap"]
    assert len(overlapped) == len(memory.overlaps) == 5
    for b in overlapped:
        source = by_name[b.inside]
        assert source.last == b.first  # the input dies where the output is born
        assert memory.offsets[b.name] - memory.offsets[b.inside] in {
            d for _, _, t, d in memory.overlaps if t == b.name}
    in_place = {(t_in, t_out) for _, t_in, t_out in memory.in_place}
    shared = 0
    for i, a in enumerate(blocks):
        for b in blocks[i + 1:]:
            if a.last < b.first or b.last < a.first:
                continue
            if a.offset + a.size <= b.offset or b.offset + b.size <= a.offset:
                continue
            if {(a.name, b.name), (b.name, a.name)} & in_place:
                continue  # one buffer, handed over in place
            assert {a.inside, b.inside} & {a.name, b.name}, (a.name, b.name)
            shared += 1
    assert shared >= 5  # the convolutions' outputs written inside their inputs' bytes
    assert max(b.offset + b.size for b in blocks) <= memory.arena_bytes


def test_report_html_shows_overlap_figures(kws_m4):
    from tinyml.memory_report import render

    text = render(kws_m4)
    overlap = kws_m4.report()["overlap"]
    assert f"saving {overlap['saving_bytes']:,} B" in text
    assert f"{overlap['predicted_instructions']:+,} per inference" in text


# ---- the NAS -------------------------------------------------------------------------------------

def test_nas_candidate_arena_is_the_overlapped_plan():
    from tinyml.codegen.lowering import lower
    from tinyml.nas.calibration import ImageModel, data_path
    from tinyml.nas.constraints import Budget, ConstraintChecker
    from tinyml.nas.ir_builder import quantized_graph
    from tinyml.nas.search_space import SearchSpace
    from tinyml.passes import run_passes
    import numpy as np

    target = load_target("cortex-m4")
    image = ImageModel.from_json(json.loads(data_path("cortex-m4").read_text()))
    checker = ConstraintChecker(target, Budget(1 << 20, 1 << 20), image)
    space = SearchSpace()
    arch = space.arch(space.random_genome(np.random.default_rng(1)), 32, 0.35, 10)
    fit = checker.check(arch)
    graph = run_passes(quantized_graph(arch))
    calls = lower(graph, target)
    with_overlaps = planner.plan_memory(graph, calls)
    plain = planner.plan_memory(graph, calls, overlap=False)
    assert with_overlaps.overlaps and with_overlaps.arena_bytes < plain.arena_bytes
    assert fit.patch == "off" and fit.arena_bytes == with_overlaps.arena_bytes
    assert fit.ram_bytes == (with_overlaps.arena_bytes + image.static_ram_bytes
                             + image.stack_bytes)


def test_compile_prints_the_overlaps(kws_m4):
    from tinyml.cli import _overlap_rows

    report = kws_m4.report()
    cost = report["overlap"]["predicted_instructions"]
    [(label, value, text)] = _overlap_rows(report)
    assert (label, value) == ("overlaps", "5 layers")
    plain = planner.plan_memory(kws_m4.graph, kws_m4.calls, overlap=False).arena_bytes
    saved = plain - kws_m4.plan.arena_bytes
    assert f"save {saved:,} B (arena {plain:,} B without)" in text and f"{cost:+,}" in text
    speed = plan(mlperf_model("kws_ref_model"), "cortex-m4", patch="off", optimize="speed")
    [(_, value, text)] = _overlap_rows(speed.report())
    assert value == "none" and f"8,000 B for {cost:+,}" in text


# ---- --optimize memory's 4-pixel DSP blocks -------------------------------------------------------

def test_memory_takes_small_blocks_only_where_the_arena_shrinks(kws_m4):
    """kws's 1x1 convolutions hold 8,000 B of tensors and their DSP block: 4-pixel blocks
    (half the scratch) lower the arena, so memory takes them; balanced does not; the host's
    portable kernels have no blocks."""
    model = mlperf_model("kws_ref_model")
    memory = plan(model, "cortex-m4", patch="off", optimize="memory")
    assert memory.small_blocks and memory.plan.arena_bytes < kws_m4.plan.arena_bytes
    convs = [c for c in memory.calls if c.function in overlap_cost.DSP_CONV_FUNCTIONS]
    assert convs and all(c.params["block"] == 4 for c in convs)
    assert {c.op.name: c.scratch_bytes for c in convs} == {
        c.op.name: (c.scratch_bytes - 3) * 4 // 7 + 3 if c.params["block"] == 7
        else (c.scratch_bytes - 3) // 2 + 3
        for c in kws_m4.calls if c.function in overlap_cost.DSP_CONV_FUNCTIONS}
    note = memory.report()["patch_notes"][-1]
    assert f"{kws_m4.plan.arena_bytes:,} -> {memory.plan.arena_bytes:,} B" in note
    assert memory.predicted_instructions > kws_m4.predicted_instructions
    assert not plan(model, "cortex-m4", patch="off").small_blocks
    assert not plan(model, "host", patch="off", optimize="memory").small_blocks


@pytest.mark.slow
def test_small_blocks_bit_exact_and_predicted_in_qemu():
    from tinyml.verify import verify

    model = mlperf_model("kws_ref_model")
    report = verify(model, "cortex-m4", samples=2, patch="off", optimize="memory",
                    profile=False)
    assert report.mismatched_outputs == 0
    predicted = plan(model, "cortex-m4", patch="off", optimize="memory").predicted_instructions
    assert abs(predicted / report.measured["instructions_per_inference"] - 1) <= 0.05
