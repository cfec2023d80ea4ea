"""tinyml nas: the search honours the budgets as the real compiler measures them.

- the graph the constraint check plans (tinyml.nas.ir_builder, no TensorFlow) has the arena,
  constants and kernels of the Keras model of the same architecture imported by the Keras
  frontend (TensorFlow's converter is the oracle of the structure);
- an infeasible --sram says what the smallest candidate needs, in one line, and writes nothing;
- a smoke search (about a minute) trains, quantizes and compiles a model whose ELF and
  measured stack fit the budgets; its arena is the one the search planned, no misfit was
  ever trained, and the code-size model is close to the linker's figures;
- the pieces with closed-form answers: Pareto front, sizes and durations, the latency fit, the
  log's resume rules, the search space's genes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyml.errors import TinymlError
from tinyml.nas.command import parse_duration
from tinyml.schedule.latency import fit
from tinyml.nas.log import SearchLog
from tinyml.nas.search_report import pareto_front
from tinyml.nas.search_space import (Genome, SearchSpace, make_divisible, mobilenet_v2,
                                     parse_bytes)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent


# ---- closed-form pieces --------------------------------------------------------------------------

def test_parse_sizes_and_durations():
    assert parse_bytes("64KB", "--sram") == 65536
    assert parse_bytes("1MB", "--flash") == 1 << 20
    assert parse_bytes("32768", "--sram") == 32768
    assert parse_duration("15m") == 900 and parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_bytes("1", "--sram") == 1 and parse_bytes("1.5KB", "--sram") == 1536
    # not finite, or under one byte (it would round to 0): no budget
    for bad in ("64XB", "-1KB", "KB", "nan", "inf", "-inf", "1e400", "0.0001KB", "0.5"):
        with pytest.raises(TinymlError, match="--sram"):
            parse_bytes(bad, "--sram")
    with pytest.raises(TinymlError, match="--time-budget"):
        parse_duration("soon")


def test_pareto_front_keeps_only_undominated_points():
    points = [(10, 0.90), (5, 0.80), (20, 0.95), (15, 0.85), (25, 0.94), (5, 0.70)]
    assert pareto_front(points) == [1, 0, 2]


def test_latency_fit_recovers_linear_costs():
    # conv: 3 instructions per MAC + 7 per output + 2 per input + 1 per weight, exactly
    rng = np.random.default_rng(0)
    shapes = [tuple(int(v) for v in rng.integers(10, 5000, 4)) for _ in range(8)]
    samples = [("k_conv", f, 3 * f[0] + 7 * f[1] + 2 * f[2] + f[3]) for f in shapes]
    samples += [("k_add", (w, w // 3, w // 2, 0), 2 * w) for w in (90, 300, 1200, 60, 30)]
    model = fit(samples)
    assert model.coefficients["k_conv"] == pytest.approx((3.0, 7.0, 2.0, 1.0, 0.0), rel=1e-9)
    assert model.predict_call("k_add", (3000, 1000, 1500, 0)) == pytest.approx(6000, rel=1e-9)
    # an unknown kernel: the mean cost per unit of work of everything measured
    total = sum(s[2] for s in samples) / sum(s[1][0] for s in samples)
    assert model.predict_call("k_unknown", (10, 5, 5, 0)) == pytest.approx(10 * total)


def test_search_space_genes_and_baseline_layout():
    space = SearchSpace()
    rng = np.random.default_rng(0)
    genome = space.random_genome(rng)
    child = space.mutate(genome, rng)
    assert space.active(child) != space.active(genome)
    arch = space.arch(genome, 24, 0.5, 10)
    assert [s.channels for s in arch.stages][:1] == [make_divisible(16 * 0.5)]
    assert all(b.kernel in (3, 5, 7) for s in arch.stages for b in s.blocks)
    assert arch.stages[0].blocks[0].expand == 1
    assert Genome.from_json(json.loads(json.dumps(genome.to_json()))) == genome
    baseline = mobilenet_v2(0.35, 32, 10)
    assert baseline.depth == 17 and baseline.head == make_divisible(1280 * 0.35)
    assert [s.stride for s in baseline.stages] == [1, 2, 2, 2, 1, 2, 1]


def test_log_resumes_with_same_settings_only(tmp_path):
    log = SearchLog(tmp_path, {"sram": 1})
    log.record_check({"arch": "a", "fits": True})
    log.record_proxy({"arch": "a", "accuracy": 0.5, "loss": 1.0, "seconds": 2.0})
    with (tmp_path / "nas_log.jsonl").open("a") as f:
        f.write('{"event": "proxy", "arch": "b", "accu')  # cut by an interruption
    again = SearchLog(tmp_path, {"sram": 1})
    assert again.proxy("a")["accuracy"] == 0.5 and again.proxy("b") is None
    again.record_check({"arch": "a", "fits": True})  # logged once
    assert sum(e.get("event") == "check" for e in again.events) == 1
    other = SearchLog(tmp_path, {"sram": 2})
    assert other.proxy("a") is None
    assert len(list(tmp_path.glob("nas_log.*.jsonl"))) == 1  # the old log is kept aside


def test_evolution_climbs_a_known_objective_and_replays_identically():
    """The search itself, on an objective with a known optimum direction (more MACs is
    better), with the real constraint check: it improves on its first population, never
    trains a misfit, and a rerun with the same seed asks for nothing it already has (the
    property resuming from the log relies on)."""
    import time

    from tinyml.nas.calibration import ImageModel, data_path
    from tinyml.nas.constraints import Budget, ConstraintChecker
    from tinyml.nas.evolution import Evolution
    from tinyml.targets import load_target

    image = ImageModel.from_json(json.loads(data_path("cortex-m4").read_text()))
    checker = ConstraintChecker(load_target("cortex-m4"), Budget(24 * 1024, 128 * 1024), image)
    space = SearchSpace()
    results: dict[str, dict] = {}

    def objective(arch, genome, fit, generation):
        assert fit.fits and checker.check(arch).fits
        results[arch.key()] = {"accuracy": fit.macs / 1e7, "loss": 0.0, "seconds": 0.0}
        return results[arch.key()]

    first = Evolution(space, 24, 0.35, 10, 1, checker, objective, seed=3, population=4,
                      parents=2).run(time.monotonic() + 120, generations=5)
    initial = max(c.accuracy for c in first if c.generation == 0)
    assert first[0].accuracy > initial

    asked = []

    def replay(arch, genome, fit, generation):
        asked.append(arch.key())
        return {**results[arch.key()], "resumed": True}

    second = Evolution(space, 24, 0.35, 10, 1, checker, replay, seed=3, population=4,
                       parents=2).run(time.monotonic() + 120, generations=5)
    assert [c.arch.key() for c in second] == [c.arch.key() for c in first]
    assert set(asked) == set(results)


# ---- the constraint check plans what the Keras frontend would give -----------------------------

def _keras_plan(arch, folder: Path):
    """Plan of the Keras model of ``arch`` (random trained-looking weights) imported by the
    Keras frontend (TFLite converter) and quantized by tinyml."""
    from tinyml.compiler import plan
    from tinyml.nas.keras_model import build_keras
    from tinyml.quantize import quantize_model

    model = build_keras(arch)
    rng = np.random.default_rng(0)
    for w in model.weights:  # untrained BN/bias would make every logit 0 (degenerate softmax)
        shape = tuple(w.shape)
        if "variance" in w.path or "gamma" in w.path:
            w.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        else:
            w.assign(rng.normal(0, 0.3, shape).astype(np.float32))
    path = folder / f"{arch.resolution}.keras"
    model.save(path)
    images = rng.uniform(0, 1, (2, arch.resolution, arch.resolution, 1)).astype(np.float32)
    return plan(quantize_model(path, images).graph, "cortex-m4", patch="auto")


def test_constraint_graph_matches_keras_frontend(tmp_path):
    pytest.importorskip("tensorflow")
    from tinyml.budget import layer_constant_bytes
    from tinyml.compiler import plan
    from tinyml.nas.ir_builder import quantized_graph

    space = SearchSpace()
    archs = [space.arch(space.random_genome(np.random.default_rng(1)), 24, 0.5, 10),
             space.arch(space.random_genome(np.random.default_rng(5)), 32, 0.35, 10)]
    for arch in archs:
        ours = plan(quantized_graph(arch), "cortex-m4", patch="auto")
        keras = _keras_plan(arch, tmp_path)
        assert [c.function for c in ours.calls] == [c.function for c in keras.calls]
        assert ours.plan.arena_bytes == keras.plan.arena_bytes
        assert ours.layerwise_plan.arena_bytes == keras.layerwise_plan.arena_bytes
        assert ours.macs == keras.macs
        assert sum(layer_constant_bytes(ours).values()) == \
            sum(layer_constant_bytes(keras).values())


# ---- infeasible budget ---------------------------------------------------------------------------

def test_infeasible_sram_says_what_the_smallest_candidate_needs(tmp_path):
    pytest.importorskip("sklearn")
    from tinyml.compiler import plan
    from tinyml.nas.ir_builder import quantized_graph

    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "nas", "--data", "digits",
                             "--sram", "2KB", "--flash", "128KB", "--target", "cortex-m4",
                             "-o", str(out)], capture_output=True, text=True, timeout=300,
                            cwd=REPO)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyml: error: the budget is infeasible")
    assert "--sram 2,048 B" in lines[0] and result.stdout == ""
    assert not out.exists()
    # The arena it quotes is the compiler's for the smallest candidate, with patches.
    space = SearchSpace()
    smallest = space.arch(space.smallest_genome(), 16, 0.25, 10)
    arena = plan(quantized_graph(smallest), "cortex-m4", patch="auto",
                 optimize="memory").plan.arena_bytes  # the search weighs RAM only
    assert f"arena {arena:,} B" in lines[0]


@pytest.mark.parametrize("size", ["nan", "inf"])
def test_non_finite_sram_is_a_one_line_error(tmp_path, size):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "nas", "--data", "digits",
                             "--sram", size, "--flash", "128KB", "-o", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"tinyml: error: --sram '{size}': expected a size of at least 1 B such as 64KB, 256KB "
        f"or 1MB"]
    assert not out.exists()


def test_infeasible_budget_on_an_uncalibrated_target_writes_nothing(tmp_path):
    """cortex-m0plus has no stored calibration: it is calibrated now (builds and QEMU runs,
    about 15 s) and kept in memory; the infeasible budget then leaves no output directory."""
    pytest.importorskip("sklearn")
    from tinyml.nas.calibration import data_path
    from tinyml.sim import qemu

    if not qemu.available() or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or arm-none-eabi-gcc not installed")
    assert not data_path("cortex-m0plus").exists()
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "nas", "--data", "digits",
                             "--sram", "1KB", "--flash", "128KB", "--target", "cortex-m0plus",
                             "-o", str(out)], capture_output=True, text=True, timeout=300,
                            cwd=REPO)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyml: error: the budget is infeasible")
    assert not out.exists()


def test_calibration_is_kept_in_the_output_for_a_resumed_search(tmp_path):
    """Once the output directory exists the calibration of a target without stored data is
    written there, and a rerun reads it back instead of calibrating (no build happens: the
    read-back model is the very one written); a target with stored data writes nothing."""
    from tinyml.nas.calibration import ImageModel, data_path, image_model, keep_calibration
    from tinyml.targets import load_target

    model = ImageModel.from_json(json.loads(data_path("cortex-m4").read_text()))
    keep_calibration(model, load_target("cortex-m4"), tmp_path)
    assert list(tmp_path.iterdir()) == []
    m0 = load_target("cortex-m0plus")
    keep_calibration(model, m0, tmp_path)
    assert image_model(m0, cache_dir=tmp_path).to_json() == model.to_json()


def test_report_draws_without_switching_the_callers_backend(tmp_path):
    """The Pareto plot is drawn on a Figure of its own: a program that uses pyplot with its
    own backend keeps it after writing the report."""
    script = f"""
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
from pathlib import Path
from tinyml.nas.search_report import write_report
result = {{"arch": "a", "target": "cortex-m4", "test_accuracy": 0.9, "float_test_accuracy": 0.91,
          "baseline_accuracy": None, "baseline_arch": None, "ram_bytes": 1000,
          "sram_budget_bytes": 2048, "stack_bytes": 300, "estimated_ram_bytes": 1100,
          "flash_bytes": 5000, "flash_budget_bytes": 8192, "text_bytes": 3000,
          "rodata_bytes": 1900, "data_bytes": 100, "estimated_flash_bytes": 5100,
          "peak_sram_bytes": 600, "peak_sram_bytes_layerwise": 800, "patch": None,
          "instructions_per_inference": 12345, "predicted_instructions": 12000, "macs": 9999,
          "subspace": {{}}, "candidates_evaluated": 2, "candidates_checked": 5,
          "proxy_epochs": 1, "epochs": 3, "seconds": 10.0}}
proxies = [{{"event": "proxy", "arch": a, "accuracy": acc, "macs": m, "instructions": 10 * m,
            "generation": 0, "ram_bytes": 900, "flash_bytes": 4000, "patch": "off"}}
           for a, acc, m in (("a", 0.9, 9999), ("b", 0.8, 5000))]
write_report(Path({str(tmp_path / "report.html")!r}), result, proxies, [])
print(matplotlib.get_backend())
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "svg"
    text = (tmp_path / "report.html").read_text()
    png = base64.b64decode(text.split("data:image/png;base64,")[1].split("'")[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


# ---- smoke search --------------------------------------------------------------------------------

#: Tight enough that some candidates fit only with patch-based inference and flash drops others.
SMOKE_SRAM, SMOKE_FLASH = 6 * 1024, 96 * 1024


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    pytest.importorskip("tensorflow")
    pytest.importorskip("sklearn")
    from tinyml.nas.pipeline import NasOptions, run_nas
    from tinyml.sim import qemu

    if not qemu.available() or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("qemu-system-arm or arm-none-eabi-gcc not installed")
    out = tmp_path_factory.mktemp("nas")
    options = NasOptions(
        data="digits", sram_bytes=SMOKE_SRAM, flash_bytes=SMOKE_FLASH, output=out,
        target="cortex-m4", time_budget_s=30,
        space=SearchSpace(resolutions=(16, 20), widths=(0.25, 0.35)), space_samples=3,
        population=2, parents=1, proxy_epochs=1, final_epochs=(3, 3), baseline=False)
    return run_nas(options), out


def test_smoke_search_fits_the_budgets_as_built(smoke):
    from tinyml.firmware import elf_sizes

    report, out = smoke
    elf = out / "firmware" / "example.elf"
    sizes = elf_sizes(elf)  # read again from the ELF, not from the report
    assert sizes["flash_bytes"] == report["flash_bytes"] <= SMOKE_FLASH
    ram = sizes["data_bytes"] + sizes["bss_bytes"] + report["stack_bytes"]
    assert ram == report["ram_bytes"] <= SMOKE_SRAM
    for name in ("model.keras", "model_int8.tflite", "report.html", "result.json"):
        assert (out / name).is_file()
    assert report["candidates_evaluated"] >= 1
    assert 0.5 < report["test_accuracy"] <= 1.0  # 3 epochs on digits: well above chance
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_smoke_search_trained_only_fitting_candidates_and_planned_exactly(smoke):
    report, out = smoke
    events = [json.loads(line) for line in (out / "nas_log.jsonl").read_text().splitlines()]
    checks = {e["arch"]: e for e in events if e["event"] == "check"}
    trained = [e for e in events if e["event"] == "proxy"]
    assert trained and all(checks[e["arch"]]["fits"] for e in trained)
    assert any(not c["fits"] for c in checks.values())  # the budget did drop candidates
    # The schedule is searched with the architecture: some candidates fit only patch by patch.
    assert any(c["fits"] and c["patch"] == "auto"
               and c["arena_layerwise_bytes"] + (c["ram_bytes"] - c["arena_bytes"]) > SMOKE_SRAM
               for c in checks.values())
    chosen = checks[report["arch"]]
    # The arena the search planned on a random-weight graph is the built firmware's.
    assert chosen["arena_bytes"] == report["peak_sram_bytes"]
    assert chosen["ram_bytes"] >= report["ram_bytes"]  # the stack estimate has a margin
    assert abs(chosen["flash_bytes"] - report["flash_bytes"]) <= 0.03 * report["flash_bytes"]


def test_linker_map_accounts_for_the_flash(smoke):
    from tinyml.nas.calibration import map_sizes

    report, out = smoke
    per_object, kernels = map_sizes(out / "firmware" / "build" / "example" / "app.map")
    assert kernels["tinyml_conv2d_1x1_s8"] == "conv.o"
    total = sum(per_object.values())
    assert 0.98 * report["flash_bytes"] <= total <= report["flash_bytes"]
