"""``tinyml prune``: the parts that must be exactly right, on tiny models (fast).

- Zhu & Gupta's schedule against the formula written out independently;
- magnitude masks: exactly ``round(s * n)`` zeros, all below every kept weight;
- gradual pruning through real Keras training: pruned weights stay exactly 0 at every
  epoch and after a save and load, and small kernels are left dense;
- channel pruning: the rebuilt model's weights are the numpy slices of the original at the
  channels the filter norms rank highest (computed here with numpy), and removing channels
  whose whole path is zero changes no output (BatchNormalization, depthwise convolution,
  pooling, Flatten -> Dense, a residual Add);
- what cannot be narrowed is pinned and copied (Concatenate), or refused with one line naming
  the layer (a shared layer, a nested model).

The digits CNN end to end (accuracy, quantization, cortex-m4 instructions) is in
``test_prune_digits.py`` (slow).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tinyml.compress.gradual_pruning import magnitude_mask, scheduled_sparsity
from tinyml.errors import TinymlError


@pytest.fixture(scope="module")
def keras():
    from tinyml.compress.keras_graph import keras3
    return keras3()


# ---- schedule and masks ----------------------------------------------------------------------

def test_schedule_follows_zhu_gupta_formula():
    s_i, s_f, t0, dt, n = 0.1, 0.8, 10, 5, 20   # end = t0 + n*dt = 110
    for step in range(0, 130):
        got = scheduled_sparsity(step, s_f, t0, t0 + n * dt, dt, initial=s_i)
        if step < t0:
            want = s_i
        elif step >= t0 + n * dt:
            want = s_f
        else:
            t = t0 + (step - t0) // dt * dt    # the last update at or before ``step``
            want = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3
        assert got == pytest.approx(want, abs=1e-12), step
    assert scheduled_sparsity(35, 0.8, 10, 110, 10) == pytest.approx(0.8 - 0.8 * 0.8 ** 3)
    values = [scheduled_sparsity(t, 0.9, 0, 100, 1) for t in range(101)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    steps = np.diff(values)  # the cubic prunes fastest at the start
    assert steps[0] > steps[50] > steps[98]


def test_magnitude_mask_zeroes_exactly_the_smallest_weights():
    w = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)
    for sparsity in (0.0, 0.33, 0.5, 0.9, 1.0):
        mask = magnitude_mask(w, sparsity)
        assert mask.shape == w.shape and set(np.unique(mask)) <= {0.0, 1.0}
        assert int(np.sum(mask == 0)) == round(sparsity * w.size)
        if 0 < sparsity < 1:
            assert np.abs(w[mask == 0]).max() <= np.abs(w[mask == 1]).min()
    # Ties (already pruned zeros) still give the exact count.
    mask = magnitude_mask(np.zeros(10), 0.3)
    assert int(np.sum(mask == 0)) == 3


# ---- gradual pruning through training ------------------------------------------------------

def test_gradual_pruning_keeps_pruned_weights_zero(keras, tmp_path):
    from tinyml.compress.finetune import Split, epoch_evaluation, fine_tune
    from tinyml.compress.gradual_pruning import GradualPruner, plan_layers

    keras.utils.set_random_seed(1)
    L = keras.layers
    inputs = keras.Input((6, 6, 2))
    h = L.Conv2D(8, 3, activation="relu", name="small")(inputs)      # 144 weights: skipped
    h = L.Conv2D(16, 3, activation="relu", name="big")(h)            # 1152 weights
    h = L.Flatten()(h)
    outputs = L.Dense(3, name="head")(h)                             # 64 x 3 = 192: skipped
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 6, 6, 2)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int64) + (x[:, 0, 0, 0] > 1)
    split = Split(x, y, x[:32], y[:32], "arrays", "arrays")

    plan = plan_layers(model, min_weights=256)
    assert [layer.name for layer in plan.pruned] == ["big"]
    assert plan.skipped == {"small": "144 weights < 256", "head": "192 weights < 256"}
    small_before = np.asarray(model.get_layer("small").kernel).copy()
    pruner = GradualPruner(plan, 0.75, steps=3 * 4, frequency=2)
    zeros_by_epoch = []

    def record(epoch, acc):
        zeros_by_epoch.append(np.asarray(model.get_layer("big").kernel) == 0)

    fine_tune(model, split, 4, 1e-2, 0, [pruner.callback(model),
                                         epoch_evaluation(model, split, record)])
    kernel = np.asarray(model.get_layer("big").kernel)
    assert int(np.sum(kernel == 0)) == round(0.75 * kernel.size)
    for earlier, later in zip(zeros_by_epoch, zeros_by_epoch[1:]):
        assert np.all(later[earlier])          # once pruned, pruned for good
    assert 0 < zeros_by_epoch[0].mean() < zeros_by_epoch[-1].mean()
    assert np.count_nonzero(np.asarray(model.get_layer("small").kernel)) == small_before.size
    model.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras", compile=False)
    assert np.array_equal(np.asarray(loaded.get_layer("big").kernel) == 0, kernel == 0)


# ---- channel pruning -------------------------------------------------------------------------

def _randomize(model, seed=0):
    """Random weights everywhere, BatchNormalization statistics included (variance > 0)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if i in (0, 3)
                               else rng.normal(size=w.shape).astype(np.float32)
                               for i, w in enumerate(weights)])
        elif weights:
            layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in weights])


def _cnn(keras):
    """conv -> BN -> ReLU -> depthwise -> BN -> ReLU6 -> 1x1 conv -> max pool -> 3x3 conv ->
    flatten -> dense: the digits CNN's structure, smaller."""
    L = keras.layers
    inputs = keras.Input((8, 8, 2))
    h = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    h = L.ReLU(name="r1")(L.BatchNormalization(name="bn1")(h))
    h = L.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = L.ReLU(6.0, name="r2")(L.BatchNormalization(name="bn2")(h))
    h = L.Conv2D(6, 1, activation="relu", name="c2")(h)
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Conv2D(4, 3, activation="relu", name="c3")(h)               # 2x2x4
    outputs = L.Dense(3, name="fc")(L.Flatten(name="flat")(h))
    model = keras.Model(inputs, outputs)
    _randomize(model)
    return model


def _top_l1(kernel: np.ndarray, keep: int) -> np.ndarray:
    norms = np.abs(kernel.astype(np.float64)).reshape(-1, kernel.shape[-1]).sum(axis=0)
    return np.sort(np.argsort(-norms)[:keep])


def test_rebuild_copies_the_numpy_slices_of_the_kept_channels(keras):
    from tinyml.compress.channel_pruning import prune_channels

    model = _cnn(keras)
    w = {layer.name: [np.asarray(v) for v in layer.get_weights()] for layer in model.layers}
    k1, k2, k3 = (_top_l1(w[n][0], keep) for n, keep in (("c1", 4), ("c2", 3), ("c3", 2)))
    narrow, plan = prune_channels(model, 0.5, "l1")
    got = {layer.name: [np.asarray(v) for v in layer.get_weights()] for layer in narrow.layers}

    def same(name, *expected):
        assert len(got[name]) == len(expected), name
        for g, e in zip(got[name], expected):
            assert g.shape == e.shape and np.array_equal(g, e), name

    same("c1", w["c1"][0][..., k1], w["c1"][1][k1])
    same("bn1", *(v[k1] for v in w["bn1"]))
    same("dw", w["dw"][0][:, :, k1], w["dw"][1][k1])
    same("bn2", *(v[k1] for v in w["bn2"]))
    same("c2", w["c2"][0][:, :, k1][..., k2], w["c2"][1][k2])
    same("c3", w["c3"][0][:, :, k2][..., k3], w["c3"][1][k3])
    rows = (np.arange(4)[:, None] * 4 + k3[None, :]).reshape(-1)   # 2x2 positions x 4 channels
    same("fc", w["fc"][0][rows], w["fc"][1])
    assert narrow.output.shape[-1] == 3
    groups = {tuple(g["producers"]): g for g in plan.summary()}
    assert groups[("c1",)]["channels_after"] == 4 and groups[("fc",)]["pinned"] == "model output"
    assert groups[("c1",)]["followers"] == ["bn1", "dw", "bn2"]


def test_removing_channels_whose_path_is_zero_changes_no_output(keras):
    from tinyml.compress.channel_pruning import prune_channels

    model = _cnn(keras)
    dead1, dead2, dead3 = [1, 4, 6, 7], [0, 2, 5], [1, 3]

    def zero(name, channels, index_of_kernel=0, also=()):
        weights = model.get_layer(name).get_weights()
        weights[index_of_kernel][..., channels] = 0.0
        for i in also:
            weights[i][channels] = 0.0
        model.get_layer(name).set_weights(weights)

    zero("c1", dead1, also=(1,))
    for bn in ("bn1", "bn2"):  # gamma * (0 - 0) / sigma + 0 = 0
        zero(bn, dead1, index_of_kernel=1, also=(2,))
    weights = model.get_layer("dw").get_weights()
    weights[1][dead1] = 0.0  # the depthwise filter of a zero channel sees zeros; its bias too
    model.get_layer("dw").set_weights(weights)
    zero("c2", dead2, also=(1,))
    zero("c3", dead3, also=(1,))
    x = np.random.default_rng(3).normal(size=(16, 8, 8, 2)).astype(np.float32)
    want = np.asarray(model(x))
    narrow, _ = prune_channels(model, 0.5, "l2")
    assert narrow.get_layer("c1").kernel.shape[-1] == 4 and narrow.count_params() < \
        model.count_params() / 2
    np.testing.assert_allclose(np.asarray(narrow(x)), want, rtol=1e-5, atol=1e-5)
    # Pruning live channels does change the output: the comparison above can fail.
    assert not np.allclose(np.asarray(prune_channels(_cnn(keras), 0.5)[0](x)),
                           np.asarray(_cnn(keras)(x)), atol=1e-3)


def test_residual_add_prunes_both_branches_alike(keras):
    from tinyml.compress.channel_pruning import prune_channels

    L = keras.layers
    inputs = keras.Input((6, 6, 3))
    a = L.ReLU(name="ra")(L.BatchNormalization(name="bna")(L.Conv2D(8, 3, padding="same",
                                                                       name="a")(inputs)))
    b = L.Conv2D(8, 3, padding="same", name="b")(a)
    h = L.Add(name="add")([a, b])
    h = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(4, 1, name="c")(h))
    model = keras.Model(inputs, L.Dense(2, name="fc")(h))
    _randomize(model, seed=1)
    dead = [0, 3, 5, 6]
    for name, channels in (("a", dead), ("b", dead), ("c", [1, 2])):
        weights = model.get_layer(name).get_weights()
        weights[0][..., channels] = 0.0
        weights[1][channels] = 0.0
        model.get_layer(name).set_weights(weights)
    weights = model.get_layer("bna").get_weights()
    weights[1][dead] = 0.0  # beta
    weights[2][dead] = 0.0  # moving mean
    model.get_layer("bna").set_weights(weights)
    x = np.random.default_rng(4).normal(size=(8, 6, 6, 3)).astype(np.float32)
    narrow, plan = prune_channels(model, 0.5)
    kept = [1, 2, 4, 7]
    original_b = model.get_layer("b").get_weights()[0]
    assert np.array_equal(narrow.get_layer("b").get_weights()[0],
                          original_b[:, :, kept][..., kept])
    assert np.array_equal(narrow.get_layer("a").get_weights()[0],
                          model.get_layer("a").get_weights()[0][..., kept])
    assert {tuple(g["producers"]) for g in plan.summary()} >= {("a", "b")}
    np.testing.assert_allclose(np.asarray(narrow(x)), np.asarray(model(x)), rtol=1e-5,
                               atol=1e-5)


def test_concatenate_pins_its_inputs_and_still_rebuilds(keras):
    from tinyml.compress.channel_pruning import prune_channels

    L = keras.layers
    inputs = keras.Input((6, 6, 2))
    a = L.Conv2D(4, 3, name="a")(inputs)
    b = L.Conv2D(4, 3, name="b")(inputs)
    h = L.Conv2D(6, 1, name="c")(L.Concatenate(name="cat")([a, b]))
    model = keras.Model(inputs, L.Dense(2, name="fc")(L.Flatten()(h)))
    _randomize(model)
    narrow, plan = prune_channels(model, 0.5)
    rows = {r["producers"][0]: r for r in plan.summary()}
    assert "Concatenate 'cat'" in rows["a"]["pinned"] and rows["b"]["channels_after"] == 4
    assert rows["c"]["channels_after"] == 3 and narrow.get_layer("c").kernel.shape == (1, 1, 8, 3)
    assert np.array_equal(narrow.get_layer("a").get_weights()[0],
                          model.get_layer("a").get_weights()[0])


def test_sequential_models_are_rebuilt(keras):
    from tinyml.compress.channel_pruning import prune_channels

    L = keras.layers
    model = keras.Sequential([keras.Input((5, 5, 1)), L.Conv2D(6, 3, name="c"),
                              L.Flatten(), L.Dense(2, name="fc")])
    narrow, _ = prune_channels(model, 0.5)
    assert narrow.get_layer("c").kernel.shape == (3, 3, 1, 3)
    assert narrow.get_layer("fc").kernel.shape == (27, 2)


def test_what_cannot_be_rebuilt_fails_with_one_line_naming_the_layer(keras):
    from tinyml.compress.channel_pruning import prune_channels

    L = keras.layers
    inputs = keras.Input((6, 6, 4))
    shared = L.Conv2D(4, 1, name="shared_conv")
    model = keras.Model(inputs, L.Flatten()(shared(shared(inputs))))
    with pytest.raises(TinymlError, match="layer 'shared_conv' is called 2 times"):
        prune_channels(model, 0.5)

    inner_in = keras.Input((6, 6, 4))
    inner = keras.Model(inner_in, L.Conv2D(4, 1)(inner_in), name="block")
    outer_in = keras.Input((6, 6, 4))
    model = keras.Model(outer_in, L.Dense(2)(L.Flatten()(inner(outer_in))))
    with pytest.raises(TinymlError, match="layer 'block' is a nested Keras model") as info:
        prune_channels(model, 0.5)
    assert "\n" not in str(info.value)


def test_cli_refuses_bad_options_in_one_line_without_tensorflow(tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"x")
    for args, message in (
            (["--sparsity", "1.5", "-o", str(tmp_path / "o.keras")], "--sparsity must be"),
            (["--sparsity", "0.5", "-o", str(tmp_path / "o.tflite")], "*.keras or *.h5"),
            (["--sparsity", "0.5", "--epochs", "0", "-o", str(tmp_path / "o.keras")],
             "--epochs must be at least 1")):
        result = subprocess.run([sys.executable, "-m", "tinyml.cli", "prune", str(model),
                                 "--data", str(model), *args], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr


def test_mlperf_resnet_residual_groups_are_ranked_together(keras):
    """pretrainedResnet (MLPerf Tiny's CIFAR-10 ResNet, Keras 3 loads its .h5): each residual
    Add ties its producers into one group, ranked by their summed mean-normalized L1 norms."""
    from conftest import mlperf_model
    from tinyml.compress.channel_pruning import prune_channels
    from tinyml.compress.costs import totals

    model = keras.saving.load_model(mlperf_model("pretrainedResnet", ".h5"), compile=False)
    narrow, plan = prune_channels(model, 0.5)
    groups = {frozenset(g["producers"]): g for g in plan.summary()}
    assert {frozenset({"conv2d", "conv2d_2"}), frozenset({"conv2d_4", "conv2d_5"}),
            frozenset({"conv2d_7", "conv2d_8"})} <= set(groups)
    assert all(g["channels_after"] * 2 == g["channels_before"] for g in groups.values()
               if not g["pinned"])
    a, b = (np.asarray(model.get_layer(n).kernel, np.float64) for n in ("conv2d", "conv2d_2"))
    score = sum(norms / norms.mean() for norms in
                (np.abs(k).reshape(-1, 16).sum(axis=0) for k in (a, b)))
    keep = np.sort(np.argsort(-score)[:8])
    keep_mid = np.sort(np.argsort(-np.abs(np.asarray(model.get_layer("conv2d_1").kernel))
                                  .reshape(-1, 16).sum(axis=0))[:8])
    assert np.array_equal(np.asarray(narrow.get_layer("conv2d").kernel), a[..., keep]
                          .astype(np.float32))
    assert np.array_equal(np.asarray(narrow.get_layer("conv2d_2").kernel),
                          b[:, :, keep_mid][..., keep].astype(np.float32))
    assert totals(narrow)["macs"] < 0.3 * totals(model)["macs"]
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    assert np.asarray(narrow.predict(x, verbose=0)).shape == (2, 10)


@pytest.mark.slow  # about 5 s: tf_keras' load and clone of a 90-layer model
def test_mlperf_vww_keras2_mobilenet_depthwise_follows_its_producer():
    """vww_96.h5 is a Keras 2 file (Keras 3 refuses it; tf_keras loads it): a MobileNetV1 whose
    every depthwise convolution and batch norm carry the channels of the convolution before."""
    from conftest import mlperf_model
    from tinyml.compress.channel_pruning import prune_channels
    from tinyml.compress.costs import totals

    import tf_keras
    model = tf_keras.models.load_model(mlperf_model("vww_96", ".h5"), compile=False)
    narrow, plan = prune_channels(model, 0.5)
    assert type(narrow).__module__.startswith("tf_keras")
    first = plan.summary()[0]
    assert first["producers"] == ["conv2d"] and first["followers"] == [
        "batch_normalization", "depthwise_conv2d", "batch_normalization_1"]
    keep = np.sort(np.argsort(-np.abs(np.asarray(model.get_layer("conv2d").kernel))
                              .reshape(-1, 8).sum(axis=0))[:4])
    assert np.array_equal(np.asarray(narrow.get_layer("depthwise_conv2d").depthwise_kernel),
                          np.asarray(model.get_layer("depthwise_conv2d").depthwise_kernel)
                          [:, :, keep])
    # 7,489,664 is what tinyml inspect counts in the converted graph (README, Measured).
    assert totals(model)["macs"] == 7489664 and totals(narrow)["macs"] < 0.3 * 7489664


def test_dense_stack_with_batch_norm_and_global_pooling(keras):
    """conv -> global average pooling -> Dense -> BN -> ReLU -> Dense: the pooled channels
    and the hidden units are pruned; removing all-zero units changes no output."""
    from tinyml.compress.channel_pruning import prune_channels

    L = keras.layers
    inputs = keras.Input((5, 5, 3))
    h = L.GlobalAveragePooling2D(name="gap")(L.Conv2D(6, 3, name="c")(inputs))
    h = L.ReLU(name="r")(L.BatchNormalization(name="bn")(L.Dense(10, name="d1")(h)))
    model = keras.Model(inputs, L.Dense(4, name="d2")(h))
    _randomize(model, seed=2)
    dead_c, dead_d = [0, 2, 5], [1, 3, 4, 8, 9]
    c, d1, bn = (model.get_layer(n).get_weights() for n in ("c", "d1", "bn"))
    c[0][..., dead_c] = 0.0
    c[1][dead_c] = 0.0
    d1[0][:, dead_d] = 0.0
    d1[1][dead_d] = 0.0
    bn[1][dead_d] = 0.0
    bn[2][dead_d] = 0.0
    for name, weights in (("c", c), ("d1", d1), ("bn", bn)):
        model.get_layer(name).set_weights(weights)
    x = np.random.default_rng(5).normal(size=(8, 5, 5, 3)).astype(np.float32)
    narrow, _ = prune_channels(model, 0.5)
    live_c, live_d = [1, 3, 4], [0, 2, 5, 6, 7]
    assert np.array_equal(narrow.get_layer("d1").get_weights()[0], d1[0][live_c][:, live_d])
    assert np.array_equal(narrow.get_layer("bn").get_weights()[3], bn[3][live_d])
    assert np.array_equal(narrow.get_layer("d2").get_weights()[0],
                          model.get_layer("d2").get_weights()[0][live_d])
    np.testing.assert_allclose(np.asarray(narrow(x)), np.asarray(model(x)), rtol=1e-5,
                               atol=1e-5)


def test_holdout_is_stratified_seeded_and_disjoint():
    from tinyml.compress.finetune import holdout

    labels = np.repeat(np.arange(4), [10, 20, 5, 1])
    train, held = holdout(labels, 0.2, seed=3)
    assert not set(train) & set(held) and len(train) + len(held) == labels.size
    assert [int(np.sum(labels[held] == c)) for c in range(4)] == [2, 4, 1, 0]
    again = holdout(labels, 0.2, seed=3)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(holdout(labels, 0.2, seed=4)[1], held)
