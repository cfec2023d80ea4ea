"""The schedule that weighs time: the cost model's predictions against QEMU, and --optimize.

- ``pick`` (tinyml.schedule.patches) on plans with known arenas and instructions: each goal
  takes the plan its definition says, and balanced gives way to the part's SRAM;
- the stored Cortex-M4 cost model predicts the instructions QEMU measures within 10 % on
  models it was not fitted on (a converter-made keyword spotter with dilated 1-D depthwise
  layers, and patched plans of it);
- vww on cortex-m4: memory takes the patches, balanced and speed run layer by layer (the
  patches cost ~30 % more instructions), and compile --json says so.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from support import tflite_zoo
from conftest import mlperf_model
from tinyml.compiler import compile_model, plan
from tinyml.schedule import cost_model
from tinyml.schedule.patches import BALANCED_SLACK, pick
from tinyml.targets import load_target


def _plans(*arenas_and_instructions):
    """A layer-by-layer plan and patch schedules with the given (arena, instructions)."""
    (base_arena, base_instr), *rest = arenas_and_instructions
    layerwise = SimpleNamespace(arena_bytes=base_arena)
    schedules = [SimpleNamespace(plan=SimpleNamespace(arena_bytes=a), instructions=i)
                 for a, i in rest]
    table = {None: base_instr, **{id(s): s.instructions for s in schedules}}
    return layerwise, schedules, lambda s: table[None if s is None else id(s)]


def test_pick_takes_what_each_goal_asks():
    layerwise, schedules, predict = _plans((1000, 100_000), (600, 101_500), (400, 140_000),
                                           (900, 99_000))
    assert pick(layerwise, schedules, "memory", predict) is schedules[1]
    assert pick(layerwise, schedules, "speed", predict) is schedules[2]
    # balanced: the smallest arena within BALANCED_SLACK of the fastest (99,000)
    assert 101_500 <= 99_000 * (1 + BALANCED_SLACK)
    assert pick(layerwise, schedules, "balanced", predict) is schedules[0]
    assert schedules[0].predicted_instructions == 101_500
    assert schedules[0].layerwise_instructions == 100_000
    # a part whose SRAM holds only 500 B: the fastest plan that fits
    assert pick(layerwise, schedules, "balanced", predict, sram_bytes=500) is schedules[1]
    # nothing fits: the smallest arena (the budget check then names the overflow)
    assert pick(layerwise, schedules, "balanced", predict, sram_bytes=100) is schedules[1]


def test_pick_keeps_layer_by_layer_when_patches_are_slow():
    layerwise, schedules, predict = _plans((1000, 100_000), (500, 110_000))
    assert pick(layerwise, schedules, "balanced", predict) is None
    assert pick(layerwise, schedules, "speed", predict) is None
    assert pick(layerwise, schedules, "memory", predict) is schedules[0]


def dilated_kws(x):
    """A 1-D keyword spotter: dilated depthwise-separable convolutions over time (kernels
    along the 49 frames, 1 wide), odd channel counts, global pooling and a classifier."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(27, (5, 1), padding="same", activation="relu")(x)
    for dilation, channels in ((1, 27), (2, 45), (4, 45)):
        y = L.DepthwiseConv2D((3, 1), padding="same", dilation_rate=(dilation, 1),
                              activation="relu")(y)
        y = L.Conv2D(channels, 1, activation="relu")(y)
    y = L.GlobalAveragePooling2D()(y)
    return L.Dense(12)(y)


@pytest.mark.slow
@pytest.mark.parametrize("patch", ["off", "0:4x1", "2:2x1"])
def test_predictions_within_ten_percent_of_qemu(tmp_path, patch):
    """A model the cost model was not fitted on, planned three ways: predicted instructions
    within 10 % of the ones measured in QEMU."""
    path = tflite_zoo.convert(dilated_kws, [(1, 49, 10, 1)])
    result = compile_model(path, "cortex-m4", tmp_path / "p", patch=patch)
    measured = result.example_run["instructions"]
    print(patch, result.predicted_instructions, measured)
    assert result.predicted_on == "cortex-m4"
    assert abs(result.predicted_instructions / measured - 1) <= 0.10


def test_prediction_on_a_held_out_model(tmp_path):
    """The fast sample of the check above: layer by layer."""
    path = tflite_zoo.convert(dilated_kws, [(1, 49, 10, 1)])
    result = compile_model(path, "cortex-m4", tmp_path / "p", patch="off")
    measured = result.example_run["instructions"]
    assert abs(result.predicted_instructions / measured - 1) <= 0.10


@pytest.mark.slow
def test_vww_goals_on_cortex_m4(tmp_path):
    """speed: layer by layer; balanced: a line-buffer stage, within the slack of speed's
    predicted instructions; memory: the smallest arena (the same stage with 4-pixel DSP
    blocks), at more instructions than the slack allows."""
    model = mlperf_model("vww_96_int8")
    memory = plan(model, "cortex-m4", optimize="memory")
    balanced = plan(model, "cortex-m4")
    speed = plan(model, "cortex-m4", optimize="speed")
    assert memory.patch is not None and balanced.patch is not None and speed.patch is None
    assert memory.plan.arena_bytes < balanced.plan.arena_bytes < speed.plan.arena_bytes
    assert balanced.predicted_instructions <= (1 + BALANCED_SLACK) * speed.predicted_instructions
    # The smallest arena costs more than the balanced slack.
    assert memory.predicted_instructions > (1 + BALANCED_SLACK) * speed.predicted_instructions
    report = balanced.report()
    assert report["optimize"] == "balanced" and report["predicted_on"] == "cortex-m4"
    assert "--optimize memory takes them" in speed.report()["patch_notes"][0]
    patch = report["patch"]
    assert patch["instructions_added"] == (balanced.predicted_instructions
                                           - speed.predicted_instructions)
    assert patch["ram_saved_bytes"] == speed.plan.arena_bytes - balanced.plan.arena_bytes > 0
    json.dumps(report)


def test_targets_without_calibration_use_the_cortex_m4_model():
    assert cost_model.for_target(load_target("host")).core == "cortex-m4"
    assert cost_model.for_target(load_target("cortex-m4")).core == "cortex-m4"
    stored = json.loads(cost_model.data_path("cortex-m4").read_text())
    # The fit on its own calibration plans (patched plans of 1-D models are the hardest).
    assert max(abs(e) for e in stored["errors"].values()) <= 0.15
