"""On-device learning (tinyml.learn): the generated firmware against the numpy
reference of its updates (tinyml/learn/reference.py), the NaN/Inf guard, the parameter API,
the training memory, and the learning CLI.

The host tests build the generated C with -std=c99 -Wall -Wextra -Werror (one with ASan and
UBSan) and drive it through the device protocol (tinyml.learn.device). The backbone features
the reference learns from are computed by the int8 reference interpreter (tinyml.reference,
bit-exact with TFLM), independently of the C code. QEMU and the digits benchmark run are
marked slow.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from tinyml.compiler import compile_model
from tinyml.errors import TinymlError
from tinyml.learn.device import open_device
from tinyml.learn.reference import HeadReference
from tinyml.reference import run

KWS = REPO / "examples" / "tiny_kws_int8.tflite"   # ... -> FC 16 -> 4 -> SOFTMAX
MAX_CLASSES = 6

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")


def _features(compilation, device, x) -> np.ndarray:
    """The backbone's int8 output for sample ``x``, by the reference interpreter."""
    graph = compilation.graph
    t = graph.tensors[graph.inputs[0]]
    q = np.frombuffer(device.encode_input(x), np.int8).reshape(t.shape)
    return run(graph, [q])[graph.outputs[0]]


def _samples(count: int, shape, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1.5, shape).astype(np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def kws_project(tmp_path_factory):
    out = tmp_path_factory.mktemp("learn") / "kws"
    return compile_model(KWS, "host", out, trainable="last:1", max_classes=MAX_CLASSES)


def _assert_params_close(device_params, reference_params):
    scale = np.abs(reference_params).max()
    np.testing.assert_allclose(device_params, reference_params, rtol=1e-4, atol=1e-4 * scale)


def _replay(compilation, device, steps: int, lr: float, seed: int = 0):
    """``steps`` predict-then-learn steps on the device and on the reference."""
    shape = compilation.graph.tensors[compilation.graph.inputs[0]].shape
    ref = HeadReference.from_metadata(device.meta, device.get_params())
    rng = np.random.default_rng(seed + 1)
    for x in _samples(steps, shape, seed):
        label = int(rng.integers(device.num_classes))
        f = _features(compilation, device, x)
        np.testing.assert_allclose(device.probabilities(x), ref.probabilities(f), rtol=1e-5,
                                   atol=1e-6)
        assert device.learn(x, label, lr) == ref.step(f, label, lr) is True
    return ref


@needs_cc
def test_initial_head_is_the_int8_models_classifier(kws_project):
    """Before learning, the float head predicts what the int8 model predicts (the new classes
    start at zero rows) and the parameters are the dequantized int8 weights."""
    meta = json.loads((kws_project.project.output_dir / "learn.json").read_text())
    assert meta["num_classes"] == MAX_CLASSES and meta["model_classes"] == 4
    assert meta["layers"] == [{"name": meta["layers"][0]["name"], "in_features": 16,
                               "out_features": MAX_CLASSES, "activation": "NONE"}]
    source = kws_project.source_graph
    x_t = source.tensors[source.inputs[0]]
    with open_device(kws_project.project.output_dir) as device:
        params = device.get_params()
        assert device.params_size() == params.size == 16 * MAX_CLASSES + MAX_CLASSES
        w = params[:16 * MAX_CLASSES].reshape(MAX_CLASSES, 16)
        assert not w[4:].any() and not params[-2:].any()
        agree = 0
        for x in _samples(20, x_t.shape, seed=5):
            q = np.frombuffer(device.encode_input(x), np.int8).reshape(x_t.shape)
            int8_out = run(source, [q])[source.outputs[0]].reshape(-1)
            probs = device.probabilities(x)
            assert probs[4:].max() <= probs[:4].max()
            agree += int(np.argmax(probs) == np.argmax(int8_out))
        assert agree >= 18  # int8 softmax ties and rounding may flip a near tie


@needs_cc
def test_device_matches_numpy_reference_after_100_steps(kws_project):
    with open_device(kws_project.project.output_dir) as device:
        initial = device.get_params()
        ref = _replay(kws_project, device, 100, lr=0.05)
        params = device.get_params()
    assert np.abs(params - initial).max() > 0.05       # it learned
    _assert_params_close(params, ref.params)
    assert np.linalg.norm(params - ref.params) / np.linalg.norm(ref.params) < 1e-5


@needs_cc
@pytest.mark.parametrize("lr", [float("nan"), float("inf"), 3e38, -3e38])
def test_poisoned_step_is_rejected_and_params_unchanged(kws_project, lr):
    shape = kws_project.graph.tensors[kws_project.graph.inputs[0]].shape
    x = _samples(1, shape, seed=3)[0]
    with open_device(kws_project.project.output_dir) as device:
        before = device.get_params()
        assert device.learn(x, 5, lr) is False
        after = device.get_params()
        assert after.tobytes() == before.tobytes()
        ref = HeadReference.from_metadata(device.meta, before)
        assert ref.step(_features(kws_project, device, x), 5, lr) is False
        assert device.learn(x, 5, 0.01) is True     # the device still learns afterwards
        assert device.get_params().tobytes() != before.tobytes()


@needs_cc
def test_set_params_round_trip_and_rejects_non_finite(kws_project):
    with open_device(kws_project.project.output_dir) as device:
        original = device.get_params()
        changed = original + np.linspace(-1, 1, original.size, dtype=np.float32)
        device.set_params(changed)
        assert device.get_params().tobytes() == changed.tobytes()
        poisoned = changed.copy()
        poisoned[7] = np.nan
        with pytest.raises(TinymlError, match="non-finite"):
            device.set_params(poisoned)
        with pytest.raises(TinymlError, match="values"):
            device.set_params(changed[:-1])
        assert device.get_params().tobytes() == changed.tobytes()
        with pytest.raises(TinymlError, match="label outside"):
            device.learn(np.zeros(device.input_shape, np.float32), MAX_CLASSES, 0.1)


@needs_cc
def test_sanitized_build_learns_like_the_reference(kws_project):
    """ASan + UBSan build (aborts on the first report): steps, a rejected step, get/set."""
    with open_device(kws_project.project.output_dir, sanitize=True) as device:
        ref = _replay(kws_project, device, 20, lr=0.1, seed=7)
        x = np.zeros(device.input_shape, np.float32)
        assert device.learn(x, 0, float("nan")) is False
        _assert_params_close(device.get_params(), ref.params)
        device.set_params(ref.params)


def _two_layer_head(inputs):
    import tensorflow as tf
    L = tf.keras.layers
    h = L.Conv2D(4, 3, activation="relu")(inputs)
    h = L.Flatten()(h)
    h = L.Dense(12, activation="relu")(h)
    return L.Softmax()(L.Dense(3)(h))


@needs_cc
def test_two_trainable_layers_match_the_reference(tmp_path):
    """last:2: back-propagation through a hidden RELU layer of the head."""
    pytest.importorskip("tensorflow")
    from support.tflite_zoo import convert
    model = convert(_two_layer_head, [(1, 6, 6, 1)])
    result = compile_model(model, "host", tmp_path / "p", trainable="last:2", max_classes=5)
    assert [l["activation"] for l in json.loads(
        (tmp_path / "p" / "learn.json").read_text())["layers"]] == ["RELU", "NONE"]
    with open_device(tmp_path / "p") as device:
        assert device.params_size() == 64 * 12 + 12 + 12 * 5 + 5
        ref = _replay(result, device, 100, lr=0.05, seed=11)
        _assert_params_close(device.get_params(), ref.params)
    # Here the training scratch is larger than the small backbone's arena: the arena grows.
    report, widest = result.report(), 64
    params = 64 * 12 + 12 + 12 * 5 + 5
    scratch = 4 * (params + 4 * widest)
    state = 4 * (64 + 12 + 5 + 5) + 4                 # inputs, logits, probabilities, flag
    backbone_arena = _independent_arena_bytes(result.graph)
    assert backbone_arena < scratch == report["train_scratch_bytes"]
    assert report["backbone_arena_bytes"] == backbone_arena
    assert report["arena_bytes"] == scratch
    assert report["train_ram_bytes"] == 4 * params + state + scratch - backbone_arena


def _independent_arena_bytes(backbone) -> int:
    """The backbone's arena, planned by the compiler with no trainable head at all."""
    from tinyml.compiler import plan
    return plan(copy.deepcopy(backbone), "host").plan.arena_bytes


def test_compile_json_reports_train_ram(tmp_path, kws_project):
    out = tmp_path / "p"
    proc = subprocess.run([sys.executable, "-m", "tinyml.cli", "compile", str(KWS), "-o",
                           str(out), "--trainable", "last:1", "--max-classes", "6", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    params = 16 * 6 + 6
    state = (16 + 6 + 6) * 4 + 4                         # features, logits, probabilities, flag
    scratch = (params + 4 * 16) * 4                       # gradients, deltas, guard vectors
    backbone_arena = _independent_arena_bytes(kws_project.graph)
    assert report["backbone_arena_bytes"] == backbone_arena
    assert report["arena_bytes"] == max(backbone_arena, scratch)
    assert report["train_params_bytes"] == 4 * params
    assert report["train_scratch_bytes"] == scratch
    assert report["train_ram_bytes"] == 4 * params + state + max(0, scratch - backbone_arena)
    header = (out / "model.h").read_text()
    assert "int tinyml_learn(int label, float lr);" in header
    assert f"#define TINYML_TRAIN_RAM_BYTES {report['train_ram_bytes']}" in header


@pytest.mark.parametrize("args, message", [
    (["--trainable", "first:1"], "expected last:K"),
    (["--trainable", "last:0"], "expected last:K"),
    (["--trainable", "last:2"], "sits between the trainable layers"),
    (["--trainable", "last:1", "--max-classes", "3"], "already has 4 classes"),
])
def test_bad_trainable_options_fail_with_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "p"
    proc = subprocess.run([sys.executable, "-m", "tinyml.cli", "compile", str(KWS), "-o",
                           str(out), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not out.exists()


@needs_cc
def test_run_learn_streams_and_writes_report(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.5, (60, 1, 49, 10, 1)).astype(np.float32)
    stream = tmp_path / "stream.npz"
    np.savez(stream, x=x, y=rng.integers(0, 6, 60), x_test=x[:10], y_test=rng.integers(0, 6, 10))
    report = tmp_path / "learn.html"
    proc = subprocess.run([sys.executable, "-m", "tinyml.cli", "run", str(KWS), "--learn",
                           str(stream), "--max-classes", "6", "--eval-every", "20", "--report",
                           str(report), "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["samples_seen"] == 60 and data["max_classes"] == 6
    assert len(data["accuracy_curve"]) == 60 and data["rejected_steps"] == 0
    assert [e["samples"] for e in data["held_out"]] == [20, 40, 60]
    assert data["train_ram_bytes"] > 0
    assert "data:image/png;base64," in report.read_text()
    assert report.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def _run_learn(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tinyml.cli", "run", str(KWS), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@needs_cc
def test_run_learn_infers_max_classes_without_blaming_an_unpassed_option(tmp_path):
    """Labels 0-2 on the 4-class model: the device keeps the model's 4 classes; labels up to
    5: it gets 6."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1.5, (12, 1, 49, 10, 1)).astype(np.float32)
    for top, classes in ((3, 4), (6, 6)):
        stream = tmp_path / f"s{top}.npz"
        np.savez(stream, x=x, y=np.arange(12) % top)
        proc = _run_learn("--learn", stream, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["max_classes"] == classes


@pytest.mark.parametrize("name, message", [("missing/r.html", "does not exist"),
                                           ("r.png", "HTML file")])
def test_run_learn_refuses_a_bad_report_path_before_any_work(tmp_path, name, message):
    """Checked before the model is even read (a missing model would be the error otherwise),
    so a bad path does not cost a whole stream; nothing is written."""
    proc = _run_learn("--learn", tmp_path / "absent.npz", "--report", tmp_path / name)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_learning_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from tinyml.learn.learning_report import write_learning_report
    from tinyml.learn.stream import StreamResult

    labels = np.arange(30) % 3
    result = StreamResult(labels, np.where(np.arange(30) < 10, 0, labels), np.ones(30, bool))
    before = matplotlib.get_backend()
    try:
        matplotlib.use("svg")
        path = write_learning_report(result, tmp_path / "r.html", "t", [("a", "1")])
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    assert "data:image/png;base64," in path.read_text()
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


GOOD_X = np.zeros((4, 1, 49, 10, 1), np.float32)


@pytest.mark.parametrize("arrays, message", [
    (dict(x=GOOD_X, y=np.zeros((4, 1), np.int64)), "1-D array"),
    (dict(x=GOOD_X, y=np.zeros(4, np.float32)), "must be integers"),
    (dict(x=GOOD_X, y=np.array([0, 1, -1, 2])), "negative label -1"),
    (dict(x=np.array(["a", "b", "c", "d"]), y=np.zeros(4, np.int64)), "numeric array"),
    (dict(x=GOOD_X[:3], y=np.zeros(4, np.int64)), "3 samples but y 4 labels"),
    (dict(x=np.zeros((4, 49, 11)), y=np.zeros(4, np.int64)), "model's input is [1, 49, 10, 1]"),
    (dict(x=GOOD_X, y=np.zeros(4, np.int64), x_test=GOOD_X), "x_test and y_test"),
    (dict(x=GOOD_X, y=np.zeros(4, np.int64), x_test=GOOD_X, y_test=np.zeros((4, 2), int)),
     "y_test has shape [4, 2]"),
])
def test_malformed_stream_fails_with_one_line(tmp_path, arrays, message):
    from tinyml.learn.stream import load_stream

    path = tmp_path / "s.npz"
    np.savez(path, **arrays)
    with pytest.raises(TinymlError) as caught:
        load_stream(path, (1, 49, 10, 1))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_stream_samples_may_leave_out_the_batch_dimension(tmp_path):
    from tinyml.learn.stream import load_stream

    path = tmp_path / "s.npz"
    np.savez(path, x=np.zeros((4, 49, 10, 1), np.int8), y=np.arange(4))
    assert load_stream(path, (1, 49, 10, 1)).x.shape == (4, 49, 10, 1)


def test_device_refuses_a_project_of_another_protocol(tmp_path, kws_project):
    from tinyml.learn.codegen import PROTOCOL_VERSION

    project = tmp_path / "p"
    shutil.copytree(kws_project.project.output_dir, project, ignore=shutil.ignore_patterns("build"))
    meta = json.loads((project / "learn.json").read_text())
    assert meta["protocol"] == PROTOCOL_VERSION
    meta["protocol"] = PROTOCOL_VERSION + 1
    (project / "learn.json").write_text(json.dumps(meta))
    with pytest.raises(TinymlError, match=f"protocol {PROTOCOL_VERSION + 1}, this tinyml speaks"):
        open_device(project)
    assert not (project / "build").exists()      # refused before building anything


@needs_cc
def test_host_build_is_cached_and_rebuilt_when_a_source_changes(tmp_path, kws_project):
    from concurrent.futures import ThreadPoolExecutor

    from tinyml.learn.device import build_host

    project = tmp_path / "p"
    shutil.copytree(kws_project.project.output_dir, project, ignore=shutil.ignore_patterns("build"))
    with ThreadPoolExecutor(2) as pool:     # two opens of one project at once
        first, second = pool.map(lambda _: build_host(project), range(2))
    assert first == second
    built = first.stat().st_mtime_ns
    assert build_host(project) == first and first.stat().st_mtime_ns == built
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name]  # no temp left
    with (project / "kernels" / "tinyml_kernels.h").open("a") as header:
        header.write("\n/* changed */\n")
    rebuilt = build_host(project)
    assert rebuilt != first and rebuilt.exists()
    with open_device(project) as device:
        assert device.params_size() == 16 * MAX_CLASSES + MAX_CLASSES


def test_failed_start_leaks_no_pipe_or_temp_folder(tmp_path, monkeypatch):
    """QEMU start-up failing after the named pipes are open (here: QEMU cannot be executed)."""
    import tempfile

    from tinyml.learn import device as device_module
    from tinyml.sim import qemu

    result = compile_model(KWS, "cortex-m4", tmp_path / "m4", trainable="last:1", build=False)
    monkeypatch.setattr(device_module, "build_firmware", lambda *_: tmp_path / "none.elf")
    monkeypatch.setattr(qemu, "available", lambda: True)
    monkeypatch.setattr(qemu, "command", lambda *_: [str(tmp_path / "no-such-qemu")])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    fds = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        open_device(result.project.output_dir, "qemu")
    assert set(os.listdir("/proc/self/fd")) <= fds
    assert list(scratch.iterdir()) == []


# ---- emulated Cortex-M4 (QEMU) ---------------------------------------------------------------

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None
                                or shutil.which("arm-none-eabi-gcc") is None,
                                reason="qemu-system-arm or arm-none-eabi-gcc missing")


def _symbol_sizes(elf) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


@needs_qemu
def test_cortex_m4_learns_like_the_reference_and_ram_includes_training(tmp_path):
    result = compile_model(KWS, "cortex-m4", tmp_path / "m4", trainable="last:1",
                           max_classes=MAX_CLASSES)
    report = result.report()
    with open_device(result.project.output_dir, "qemu") as device:
        ref = _replay(result, device, 100, lr=0.05, seed=2)
        _assert_params_close(device.get_params(), ref.params)
        before = device.get_params()
        x = _samples(1, device.input_shape, seed=3)[0]
        f = _features(result, device, x)
        for lr in (float("nan"), 3e38):
            assert device.learn(x, 1, lr) is False
            assert HeadReference.from_metadata(device.meta, before).step(f, 1, lr) is False
        assert device.get_params().tobytes() == before.tobytes()
    # The image's measured RAM holds the training memory: the master weights (.data), the
    # forward state (.bss) and the arena grown for the gradients.
    sizes = _symbol_sizes(result.project.output_dir / "example.elf")
    assert sizes["head_params"] == report["train_params_bytes"]
    assert sizes["arena"] == report["arena_bytes"] >= report["train_scratch_bytes"]
    assert report["data_bytes"] + report["bss_bytes"] >= (report["arena_bytes"]
                                                          + report["train_params_bytes"]
                                                          + report["train_state_bytes"] - 4)
    assert report["ram_bytes"] == (report["data_bytes"] + report["bss_bytes"]
                                   + report["stack_bytes"])


@needs_qemu
@pytest.mark.slow
def test_digits_5_to_9_learned_on_cortex_m4():
    """A CNN trained on digits 0-4 learns 5-9 on the emulated
    Cortex-M4 through its classifier head in one pass over 500 samples."""
    pytest.importorskip("sklearn")
    pytest.importorskip("tensorflow")
    sys.path.insert(0, str(REPO / "benchmarks"))
    import tempfile
    from pathlib import Path

    from ondevice_learning import run as benchmark
    with tempfile.TemporaryDirectory() as tmp:
        figures = benchmark("cortex-m4", Path(tmp))
    print(figures)
    assert figures["samples_seen"] <= 500
    assert figures["new_class_accuracy"] >= 0.85
    assert figures["old_class_accuracy"] >= 0.90
    assert figures["rejected_steps"] == 0
    assert figures["ram_bytes"] >= figures["arena_bytes"] + 4 * figures["train_params"]
