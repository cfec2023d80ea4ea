"""The federated fleet (tinyml.fleet).

Fast checks of the server's arithmetic against numpy written here (Reptile's step with its
annealed eps, FedAvg's weighted mean), of what the server rejects (NaN/Inf, wrong size, too
large a move) with the global parameters staying finite, of the checkpoint a restarted server
resumes from, and of the registry behind ``tinyml fleet status``. The slow checks run real
Flower processes (SuperLink, SuperNodes, ``flwr run``) over host-built firmware: a short run,
a killed-and-restarted server, and a fleet that loses two devices and holds a NaN device.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinyml.errors import TinymlError
from tinyml.fleet.checkpoint import Checkpoint, load_checkpoint
from tinyml.fleet.registry import Registry, params_hash
from tinyml.fleet.rounds import Reply, aggregate_round
from tinyml.fleet.strategy import FedAvg, Reptile, make_strategy, weighted_mean
from tinyml.fleet.validation import check_update

RNG = np.random.default_rng(0)
KWS = Path(__file__).resolve().parents[1] / "examples" / "tiny_kws_int8.tflite"


# ---- strategy math --------------------------------------------------------------------------

def test_reptile_step_matches_numpy_with_linear_annealing():
    rounds, eps0, eps1 = 10, 2.0, 0.0
    phi = RNG.normal(size=50).astype(np.float32)
    updates = [phi + RNG.normal(size=50).astype(np.float32) for _ in range(4)]
    strategy = Reptile(rounds, eps0, eps1)
    for r in (1, 4, 10):
        eps = eps0 + (eps1 - eps0) * (r - 1) / rounds          # 2.0, 1.4, 0.2
        expected = phi.astype(np.float64) + eps * (np.mean(np.stack(updates), axis=0) - phi)
        got = strategy.step(phi, updates, [1, 2, 3, 4], r)      # weights do not count
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert strategy.epsilon(1) == 2.0 and abs(strategy.epsilon(10) - 0.2) < 1e-12
    with pytest.raises(TinymlError):
        strategy.epsilon(11)


def test_fedavg_is_the_example_weighted_mean():
    phi = np.zeros(20, np.float32)
    updates = [RNG.normal(size=20).astype(np.float32) for _ in range(3)]
    weights = [10, 30, 60]
    got = FedAvg(5).step(phi, updates, weights, 1)
    np.testing.assert_allclose(got, np.average(np.stack(updates), axis=0, weights=weights),
                               rtol=1e-6)


def test_reptile_with_eps_one_is_unweighted_fedavg():
    phi = RNG.normal(size=30).astype(np.float32)
    updates = [RNG.normal(size=30).astype(np.float32) for _ in range(5)]
    reptile = Reptile(rounds=1, eps_start=1.0, eps_end=1.0).step(phi, updates, [1] * 5, 1)
    fedavg = FedAvg(1).step(phi, updates, [1] * 5, 1)
    np.testing.assert_allclose(reptile, fedavg, rtol=1e-6, atol=1e-7)


def test_bad_strategy_and_weights_are_user_errors():
    with pytest.raises(TinymlError, match="reptile, fedavg"):
        make_strategy("fedprox", 3)
    with pytest.raises(TinymlError):
        weighted_mean([np.ones(3)], [0.0])
    with pytest.raises(TinymlError):
        weighted_mean([])


# ---- what the server rejects ------------------------------------------------------------------

def test_check_update_names_each_problem():
    phi = np.zeros(10, np.float32)
    assert check_update(np.ones(10, np.float32), phi, 100) is None
    bad = np.ones(10, np.float32)
    bad[3] = np.nan
    assert "non-finite" in check_update(bad, phi, 100)
    bad[3] = np.inf
    assert "non-finite" in check_update(bad, phi, 100)
    assert "wrong size" in check_update(np.ones(9, np.float32), phi, 100)
    assert "norm" in check_update(np.full(10, 1e3, np.float32), phi, 100)
    assert check_update(np.full(10, 1e3, np.float32), phi, 0) is None  # bound disabled


def test_round_rejects_poisoned_updates_and_keeps_params_finite():
    phi = RNG.normal(size=40).astype(np.float32)
    good = [phi + 0.1 * RNG.normal(size=40).astype(np.float32) for _ in range(3)]
    nan = good[0].copy()
    nan[5] = np.nan
    replies = [Reply(f"dev-{i}", g, {"num-examples": 10, "adapt-accuracy": a})
               for i, (g, a) in enumerate(zip(good, (0.5, 0.7, 0.9)))]
    replies += [Reply("dev-nan", nan, {"num-examples": 10, "adapt-accuracy": 1.0}),
                Reply("dev-short", good[0][:-1], {"num-examples": 10}),
                Reply("dev-huge", good[0] * 1e6, {"num-examples": 10}),
                Reply("dev-dead", error="no reply within 5 s")]
    strategy = Reptile(rounds=4)
    out = aggregate_round(phi, replies, strategy, 2, max_update_norm=50.0, min_clients=2)
    assert out.accepted == ["dev-0", "dev-1", "dev-2"]
    assert set(out.rejected) == {"dev-nan", "dev-short", "dev-huge"}
    assert out.failed == {"dev-dead": "no reply within 5 s"}
    eps = strategy.epsilon(2)
    expected = phi + eps * (np.mean(np.stack(good), axis=0) - phi)
    np.testing.assert_allclose(out.params, expected, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(out.params)) and out.aggregated
    assert abs(out.accuracy - 0.7) < 1e-12  # rejected devices' metrics do not count


def test_round_with_too_few_updates_keeps_phi():
    phi = RNG.normal(size=8).astype(np.float32)
    nan = np.full(8, np.nan, np.float32)
    out = aggregate_round(phi, [Reply("a", phi + 1), Reply("b", nan)], FedAvg(3), 1,
                          max_update_norm=100, min_clients=2)
    assert not out.aggregated and out.accepted == ["a"]
    np.testing.assert_array_equal(out.params, phi)


# ---- checkpoint -------------------------------------------------------------------------------

def test_checkpoint_round_trip_and_resume_point(tmp_path):
    path = tmp_path / "ck" / "reptile.npz"
    assert load_checkpoint(path) is None
    params = RNG.normal(size=100).astype(np.float32)
    Checkpoint("reptile", 7, params, [{"round": 7, "accuracy": 0.9}]).save(path)
    loaded = load_checkpoint(path)
    assert loaded.round == 7 and loaded.strategy == "reptile"
    np.testing.assert_array_equal(loaded.params, params)
    assert loaded.history == [{"round": 7, "accuracy": 0.9}]
    assert not list(path.parent.glob("*.tmp"))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(TinymlError, match="unreadable"):
        load_checkpoint(path)


# ---- registry ---------------------------------------------------------------------------------

def test_registry_tracks_devices_models_and_events(tmp_path):
    path = tmp_path / "registry.sqlite"
    with Registry(path) as reg:
        for i in range(3):
            reg.register_device(f"dev-{i}", target="cortex-m4", firmware_hash="abc",
                                sram_bytes=131072, flash_bytes=524288, task=f"task {i}")
        reg.device_answered("dev-0", 1, True)
        reg.device_answered("dev-1", 1, False)
        reg.log_event("reptile", 1, "dev-1", "rejected", "1 non-finite value(s) (NaN/Inf)")
        reg.device_missing("reptile", "dev-2", 1, "no reply within 5 s")
        params = np.arange(5, dtype=np.float32)
        reg.record_model("reptile", 1, "reptile", params, 0.8, 1, 1)
    with Registry(path) as reg:   # a second connection sees it all
        devices = {d["device_id"]: d for d in reg.devices()}
        assert devices["dev-0"]["status"] == "online" and devices["dev-0"]["last_round"] == 1
        assert devices["dev-1"]["rejected_updates"] == 1
        assert devices["dev-2"]["status"] == "offline"
        model = reg.models("reptile")[0]
        assert model["params_hash"] == params_hash(params) and model["accuracy"] == 0.8
        assert reg.events()[0]["kind"] == "rejected"
        missing = [e for e in reg.events("reptile") if e["device_id"] == "dev-2"]
        assert [(e["round"], e["kind"], e["detail"]) for e in missing] == [
            (1, "failed", "no reply within 5 s")]
    out = subprocess.run([sys.executable, "-m", "tinyml.cli", "fleet", "status", "--workdir",
                          str(tmp_path), "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert [d["device_id"] for d in status["devices"]] == ["dev-0", "dev-1", "dev-2"]


def test_fleet_cli_errors_are_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tinyml.cli", "fleet", "--devices", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "--model is required" in out.stderr
    out = subprocess.run([sys.executable, "-m", "tinyml.cli", "fleet", "status", "--workdir",
                          str(tmp_path / "none")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no fleet registry" in out.stderr


def test_data_file_is_checked(tmp_path):
    from tinyml.fleet.workspace import load_data

    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(TinymlError, match="device"):
        load_data(bad)


def _settings(data: Path, devices: int, **options):
    from tinyml.fleet.workspace import FleetSettings

    return FleetSettings(model=str(KWS), target="host", runner="host", devices=devices,
                         data=str(data), trainable="last:1", **options)


def _pairs_data(path: Path, y: np.ndarray, device: np.ndarray, shape=(4,), **extra) -> Path:
    x = np.random.default_rng(1).normal(0, 1.5, (len(y), *shape)).astype(np.float32)
    np.savez(path, x=x, y=y, device=device, **extra)
    return path


def test_data_every_client_app_would_fail_on_is_refused_naming_the_device(tmp_path):
    """Labels other than 0/1, or fewer training rows of a label than an episode takes, fail
    in create() (one line, the device named), before anything is compiled or written."""
    from tinyml.fleet.workspace import create

    ws = tmp_path / "ws"
    ok = np.array([0, 1] * 10)                       # 10 of each label: max(5, 10) rows
    two_devices = np.repeat([0, 1], 20)
    cases = {
        r"device dev-01 has labels \[2\]": np.concatenate([ok, np.where(ok == 1, 2, 0)]),
        r"device dev-01 has 9 training row\(s\) of label 1": np.concatenate(
            [ok, np.r_[np.zeros(11, int), np.ones(9, int)]]),
    }
    for message, y in cases.items():
        data = _pairs_data(tmp_path / "d.npz", y, two_devices)
        with pytest.raises(TinymlError, match=message) as info:
            create(ws, _settings(data, 2))
        assert "\n" not in str(info.value)
        assert not ws.exists()
    # Held-out rows do not count for the episodes: 10 of each label, 2 of them held out.
    split = np.r_[np.zeros(20, int), np.zeros(18, int), np.ones(2, int)]
    data = _pairs_data(tmp_path / "d.npz", np.r_[ok, ok], two_devices, split=split)
    with pytest.raises(TinymlError, match="dev-01 has 9 training row"):
        create(ws, _settings(data, 2))


def compile_input_shape():
    """The kws model's input shape without the batch dimension."""
    from tinyml.learn.device import compile_trainable
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        graph = compile_trainable(KWS, "host", Path(tmp) / "p").graph
    return graph.tensors[graph.inputs[0]].shape[1:]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")
def test_workspace_created_again_with_other_settings_starts_over(tmp_path):
    """Same settings: the workspace (and its checkpoint) is reused. Other settings: recompiled,
    checkpoints and progress gone. A checkpoint of another size is refused at resume. A
    device without held-out rows (no split) reports no accuracy rather than NaN."""
    from tinyml.fleet.client_app import local_round
    from tinyml.fleet.command import round_line
    from tinyml.fleet.server_app import resume_point
    from tinyml.fleet.workspace import create

    shape = tuple(compile_input_shape())
    data = _pairs_data(tmp_path / "d.npz", np.array([0, 1] * 10), np.zeros(20, int), shape)
    ws = create(tmp_path / "ws", _settings(data, 1, min_clients=1, reptile_steps=12))
    phi = ws.initial_params()
    Checkpoint("reptile", 3, phi + 1).save(ws.checkpoint("reptile"))
    ws.progress("reptile").parent.mkdir()
    ws.progress("reptile").write_text(json.dumps({"event": "round", "round": 3}) + "\n")
    ws = create(tmp_path / "ws", _settings(data, 1, min_clients=1, reptile_steps=12))
    resumed = resume_point(ws, "reptile", "reptile")
    assert resumed.round == 3 and np.array_equal(resumed.params, phi + 1)
    assert resume_point(ws, "fedavg", "fedavg").round == 0

    ws = create(tmp_path / "ws", _settings(data, 1, min_clients=1, reptile_steps=12, lr=0.02))
    assert not ws.checkpoint("reptile").exists() and not ws.progress("reptile").exists()
    assert resume_point(ws, "reptile", "reptile").round == 0
    Checkpoint("reptile", 3, phi[:-1]).save(ws.checkpoint("reptile"))   # another fleet's
    with pytest.raises(TinymlError, match=f"holds {phi.size - 1} parameters.*has {phi.size}"):
        resume_point(ws, "reptile", "reptile")

    params, metrics = local_round(ws, 0, phi, "reptile", 1)
    assert "adapt-accuracy" not in metrics and metrics["steps"] == 12
    assert params.shape == phi.shape and np.all(np.isfinite(params))
    outcome = aggregate_round(phi, [Reply("dev-00", params, metrics)], Reptile(1), 1,
                              max_update_norm=100, min_clients=1)
    assert outcome.accuracy is None and outcome.aggregated
    assert "accuracy after adaptation -," in round_line("reptile", outcome.to_json(), 1)


def test_accuracy_of_no_examples_is_none_not_nan():
    from tinyml.fleet import device_ops

    assert device_ops.accuracy(None, np.zeros((0, 4), np.float32), np.zeros(0, int)) is None


def test_board_target_is_refused_and_emulated_runs_in_qemu():
    from tinyml.fleet.command import settings_for

    assert settings_for("m.tflite", "host", 2, "d.npz").runner == "host"
    assert settings_for("m.tflite", "cortex-m4", 2, "d.npz").runner == "qemu"
    with pytest.raises(TinymlError, match="nrf52840-dk.*board"):
        settings_for("m.tflite", "nrf52840-dk", 2, "d.npz")


def test_rounds_of_a_longer_earlier_run_do_not_count():
    from tinyml.fleet.command import rounds_of_this_run

    history = [{"event": "start", "resumed_from": 0}]
    history += [{"event": "round", "round": r, "accuracy": r / 100} for r in range(1, 21)]
    history += [{"event": "done"}, {"event": "start", "resumed_from": 20}, {"event": "done"}]
    by_round = rounds_of_this_run(history, 10)
    assert sorted(by_round) == list(range(1, 11)) and max(by_round) == 10


def test_bad_min_clients_and_lr_are_refused_before_anything_starts(tmp_path):
    from tinyml.fleet.command import check_run_options

    check_run_options(2, 1, min_clients=2, lr=0.01)
    for bad in ({"min_clients": 0}, {"min_clients": 3}, {"lr": 0.0}, {"lr": -0.1},
                {"lr": float("nan")}):
        with pytest.raises(TinymlError, match="--min-clients|--lr"):
            check_run_options(2, 1, **bad)
    work = tmp_path / "ws"
    for flags, message in ((["--min-clients", "3"], "--min-clients 3"), (["--lr", "0"], "--lr 0")):
        out = subprocess.run([sys.executable, "-m", "tinyml.cli", "fleet", "--model", "m.tflite",
                              "--data", "d.npz", "--devices", "2", "--workdir", str(work),
                              *flags], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert message in out.stderr and not work.exists()


def test_report_names_the_fleets_shots_and_leaves_the_backend_alone(tmp_path):
    """The report says the FleetSettings' shots; drawing it neither imports pyplot nor
    switches the caller's matplotlib backend (a library must not)."""
    script = (
        "import sys, matplotlib; matplotlib.use('svg');"
        "from tinyml.fleet.fleet_report import write_report;"
        "rec = [{'round': r, 'accuracy': a, 'clients': 2, 'epsilon': 1.0, 'rejected': {},"
        " 'failed': {}} for r, a in ((1, 0.5), (2, None), (3, 0.75))];"
        f"write_report({{'reptile': rec}}, r'{tmp_path}/report.html', shots=7);"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "False"]
    html = (tmp_path / "report.html").read_text()
    assert "7 examples per class" in html and "5 examples" not in html
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- a Reptile round on the real firmware against numpy ----------------------------------------

@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")
def test_reptile_round_on_firmware_matches_numpy(tmp_path):
    """Two devices' local Reptile episodes run on the host-built firmware, then the server
    step, against tinyml.learn.reference.HeadReference (the math in numpy) replaying the same
    samples in the same order (device_ops' episode/cycle_order pick them), then numpy's
    phi + eps * (mean W - phi)."""
    from tinyml.compiler import compile_model
    from tinyml.fleet import device_ops
    from tinyml.learn.device import open_device
    from tinyml.learn.reference import HeadReference
    from tinyml.reference import run

    kws = Path(__file__).resolve().parents[1] / "examples" / "tiny_kws_int8.tflite"
    compilation = compile_model(kws, "host", tmp_path / "kws", trainable="last:1")
    graph = compilation.graph
    shape = graph.tensors[graph.inputs[0]].shape
    rng = np.random.default_rng(3)
    x = np.stack([rng.normal(0, 1.5, shape).astype(np.float32) for _ in range(12)])
    y = np.array([0, 1] * 6)
    lr, steps, shots = 0.05, 8, 3
    strategy = Reptile(rounds=3)
    with open_device(tmp_path / "kws") as device:
        phi = device.get_params()

        def features(sample):
            q = np.frombuffer(device.encode_input(sample), np.int8).reshape(shape)
            return run(graph, [q])[graph.outputs[0]]

        updates, expected = [], []
        for dev in range(2):
            out = device_ops.train_reptile(device, phi, x, y, shots=shots, steps=steps, lr=lr,
                                           rng=np.random.default_rng([7, dev]))
            replay = np.random.default_rng([7, dev])
            ex, ey = device_ops.episode(x, y, shots, replay, swap_labels=True)
            ref = HeadReference.from_metadata(device.meta, phi)
            for i in device_ops.cycle_order(len(ey), steps, replay):
                assert ref.step(features(ex[i]), int(ey[i]), lr)
            scale = np.abs(ref.params).max()
            np.testing.assert_allclose(out.params, ref.params, rtol=1e-4, atol=1e-4 * scale)
            assert out.rejected_steps == 0 and not np.allclose(out.params, phi)
            updates.append(out.params)
            expected.append(ref.params.astype(np.float64))
    server = strategy.step(phi, updates, [1, 1], 1)
    numpy_server = phi + strategy.epsilon(1) * (np.mean(expected, axis=0) - phi)
    np.testing.assert_allclose(server, numpy_server, rtol=1e-4,
                               atol=1e-4 * np.abs(numpy_server).max())


# ---- real Flower, real firmware (slow) ---------------------------------------------------------

@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    pytest.importorskip("sklearn")
    pytest.importorskip("flwr")
    from tinyml.fleet import digits_pairs

    folder = tmp_path_factory.mktemp("fleet_model")
    return digits_pairs.build_model(folder), folder


def _data(folder: Path, devices: int) -> Path:
    from tinyml.fleet import digits_pairs

    path = folder / f"data{devices}.npz"
    np.savez(path, **digits_pairs.fleet_dataset(devices))
    return path


@pytest.mark.slow
def test_short_deployment_run_two_devices(digits_model, tmp_path):
    from tinyml.fleet.command import fleet_run
    from tinyml.fleet.workspace import Workspace

    model, folder = digits_model
    result = fleet_run(model, "host", 2, 2, _data(folder, 2), workdir=tmp_path / "ws",
                       progress=False)
    assert result["rounds_completed"] == 2 and result["resumed_from"] == 0
    assert all(a is not None and 0 <= a <= 1 for a in result["accuracy"])
    ws = Workspace(tmp_path / "ws")
    final = np.load(result["final_params"])
    assert final.shape == ws.initial_params().shape and np.all(np.isfinite(final))
    assert not np.array_equal(final, ws.initial_params())
    with Registry(ws.registry) as reg:
        assert [m["version"] for m in reg.models("reptile")] == [0, 1, 2]
        assert all(d["rounds_answered"] == 2 for d in reg.devices())


@pytest.mark.slow
def test_dead_devices_and_a_nan_device_do_not_stop_the_run(digits_model, tmp_path):
    """8 devices; device 7 sends NaN every round; devices 0 and 1 are killed in round 2."""
    from tinyml.fleet.command import fleet_run

    model, folder = digits_model
    result = fleet_run(model, "host", 8, 3, _data(folder, 8), workdir=tmp_path / "ws",
                       progress=False, kill=(2, [0, 1]), faults={"7": "nan"},
                       round_timeout=60.0)
    assert result["rounds_completed"] == 3
    assert all("non-finite" in r["dev-07"] for r in result["rejected"].values())
    assert len(result["rejected"]) == 3
    failed = {d for f in result["failed"].values() for d in f}
    assert failed == {"dev-00", "dev-01"}
    assert np.all(np.isfinite(np.load(result["final_params"])))


@pytest.mark.slow
def test_killed_server_resumes_from_its_checkpoint(digits_model, tmp_path):
    model, folder = digits_model
    work = tmp_path / "ws"
    cmd = [sys.executable, "-m", "tinyml.cli", "fleet", "--model", str(model), "--devices", "2",
           "--rounds", "4", "--data", str(_data(folder, 2)), "--workdir", str(work), "--json"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    progress = work / "progress" / "reptile.jsonl"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        lines = progress.read_text().splitlines() if progress.exists() else []
        if any(json.loads(l).get("round") == 2 for l in lines):
            break
        time.sleep(0.5)
    # The server dies: the SuperLink (and with it the ServerApp's link to the fleet), then the
    # command that started it. The devices' SuperNodes are left orphaned, as after a crash;
    # the restarted fleet ends them (pids.json) and starts its own.
    os.killpg(json.loads((work / "pids.json").read_text())["superlink"], signal.SIGKILL)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(3)   # an orphaned ServerApp mid-checkpoint finishes writing (atomic rename)
    checkpointed = json.loads(subprocess.run(
        [sys.executable, "-c", "import sys; from tinyml.fleet.checkpoint import load_checkpoint;"
         f"print(load_checkpoint('{work}/checkpoints/reptile.npz').round)"],
        capture_output=True, text=True).stdout)
    assert checkpointed >= 2
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["resumed_from"] == checkpointed and result["rounds_completed"] == 4
