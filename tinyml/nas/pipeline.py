"""``tinyml nas`` end to end: budgets in, a trained int8 model and its firmware out.

Phases and their share of ``--time-budget``:

1. feasibility: the smallest candidate of the space is compiled; if even it misfits, one line
   says what it needs (:class:`~tinyml.errors.TinymlError`), before anything is trained;
2. search-space optimization (:mod:`.space_optimization`): constraint checks only, no training;
3. evolution (:mod:`.evolution`) until :data:`EVOLUTION_SHARE` of the budget;
4. final training of the best candidate and of the baseline (MobileNetV2 scaled by width and
   resolution to fit the same budgets, the fitting one with the most MACs) for the same number
   of epochs, as many as the remaining time allows (:data:`FINAL_EPOCHS`);
5. int8: tinyml's quantizer on :data:`CALIBRATION_IMAGES` training images, the exported
   ``.tflite`` run by TFLM on the test split (the accuracy the device will have);
6. the firmware: ``tinyml compile`` of that ``.tflite`` for the target with the budgets in
   place of the part's; its ELF and measured stack give ``ram_bytes`` and ``flash_bytes``;
7. the report (:mod:`.search_report`) and ``result.json``.

Everything lands in the output directory: ``model.keras``, ``model_int8.tflite``,
``firmware/``, ``baseline.keras``, ``baseline_int8.tflite``, ``report.html``, ``result.json``
and the search log ``nas_log.jsonl`` (which a rerun resumes from); for a target without
stored calibration data, ``calibration.json`` too (written only once the budget is known to
be feasible).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinyml.errors import TinymlError
from tinyml.nas.calibration import ImageModel, image_model, keep_calibration
from tinyml.nas.constraints import Budget, ConstraintChecker, Fit
from tinyml.nas.evolution import Candidate, Evolution
from tinyml.nas.log import SearchLog
from tinyml.nas.search_space import BASELINE_WIDTHS, Arch, SearchSpace, mobilenet_v2
from tinyml.nas.space_optimization import choose_subspace, score_subspaces
from tinyml.nas.training import Data
from tinyml.targets import Target, load_target

EVOLUTION_SHARE = 0.5
#: Final training epochs: at least / at most (the time left decides in between).
FINAL_EPOCHS = (10, 40)
#: Seconds kept for quantization, TFLM evaluation, the firmware build and QEMU, the report.
RESERVE_S = 120.0
CALIBRATION_IMAGES = 200

Status = Callable[[str, float], None]


@dataclass
class NasOptions:
    data: str
    sram_bytes: int
    flash_bytes: int
    output: Path
    target: str = "cortex-m4"
    time_budget_s: float = 1200.0
    seed: int = 0
    space: SearchSpace = field(default_factory=SearchSpace)
    space_samples: int = 8          # genomes drawn per (resolution, width) sub-space
    population: int = 6
    parents: int = 2
    proxy_epochs: int = 3
    final_epochs: tuple[int, int] = FINAL_EPOCHS
    baseline: bool = True
    patch_overhead: float = 0.2
    input_stream: bool = False      # --input-stream rows (see constraints.Budget)

    def settings(self) -> dict:
        """What a resumed search must share with the interrupted one."""
        return {"data": self.data, "sram_bytes": self.sram_bytes,
                "flash_bytes": self.flash_bytes, "target": self.target, "seed": self.seed,
                "space": json.loads(json.dumps(dataclasses.asdict(self.space))),
                "space_samples": self.space_samples, "population": self.population,
                "parents": self.parents, "proxy_epochs": self.proxy_epochs,
                "patch_overhead": self.patch_overhead, "input_stream": self.input_stream}


def budgeted_target(target: Target, budget: Budget) -> Target:
    """``target`` with the user's budgets in place of its reference part's."""
    return dataclasses.replace(
        target, sram_bytes=budget.sram_bytes, flash_bytes=budget.flash_bytes,
        part=f"NAS budget {budget.sram_bytes:,} B SRAM, {budget.flash_bytes:,} B flash")


def describe(arch: Arch) -> str:
    return (f"{arch.family} {arch.resolution}x{arch.resolution} px, width {arch.width:g}, "
            f"{arch.depth} blocks")


def infeasible_message(arch: Arch, fit: Fit, budget: Budget) -> str:
    needs = []
    if fit.ram_bytes > budget.sram_bytes:
        schedule = "with patch-based inference" if fit.patch_schedule else "layer by layer"
        needs.append(f"{fit.ram_bytes:,} B of SRAM ({schedule}: arena {fit.arena_bytes:,} B + "
                     f"static data and stack {fit.ram_bytes - fit.arena_bytes:,} B) against "
                     f"--sram {budget.sram_bytes:,} B")
    if fit.flash_bytes > budget.flash_bytes:
        needs.append(f"{fit.flash_bytes:,} B of flash (constants {fit.constant_bytes:,} B + "
                     f"code {fit.code_bytes:,} B) against --flash {budget.flash_bytes:,} B")
    return (f"the budget is infeasible: the smallest candidate of the search space "
            f"({describe(arch)}) needs " + " and ".join(needs))


class _Clock:
    def __init__(self, budget_s: float):
        self.start = time.monotonic()
        self.budget = budget_s

    def at(self, share: float) -> float:
        return self.start + self.budget * share

    @property
    def deadline(self) -> float:
        return self.start + self.budget

    def fraction(self) -> float:
        return min(1.0, (time.monotonic() - self.start) / max(self.budget, 1e-9))


def run_nas(options: NasOptions, status: Status | None = None) -> dict:
    """The whole search, stage by stage (the module's docstring lists them); returns the
    figures ``result.json`` holds."""
    run = _start(options, status or (lambda text, fraction: None))
    smallest = _check_feasibility(run)
    scores, resolution, width = _optimize_space(run, smallest)
    best = _evolve(run, smallest, resolution, width)
    baseline_arch, baseline_fit = (choose_baseline(options.space, run.checker, run.data.classes,
                                                   run.data.channels, run.on_check)
                                   if options.baseline else (None, None))
    epochs = final_epochs(options, best, baseline_arch, run.clock)
    run.log.append({"event": "final", "arch": best.arch.key(), "epochs": epochs,
                    "baseline": baseline_arch.key() if baseline_arch else None})
    run.status(f"final training: {epochs} epochs", run.clock.fraction())
    final = train_and_quantize(best.arch, run.data, epochs, run.output / "model", options.seed)
    run.status("compiling the firmware", run.clock.fraction())
    compilation = compile_firmware(run.output / "model_int8.tflite",
                                   budgeted_target(run.target, run.budget),
                                   run.output / "firmware", best.fit, run.budget)
    baseline = None
    if baseline_arch is not None:
        run.status(f"baseline training: {epochs} epochs", run.clock.fraction())
        baseline = train_and_quantize(baseline_arch, run.data, epochs, run.output / "baseline",
                                      options.seed)
    report = _result(run, best, final, compilation, epochs, (resolution, width),
                     baseline, baseline_arch, baseline_fit)
    _write_outputs(run, report, scores)
    return report


@dataclass
class _Run:
    """What the stages of one search share."""

    options: NasOptions
    status: Status
    clock: _Clock
    budget: Budget
    target: Target
    data: Data
    output: Path
    image: ImageModel
    checker: ConstraintChecker
    log: SearchLog | None = None    # opened once the budget is known to be feasible

    def on_check(self, arch: Arch, fit: Fit, phase: str) -> None:
        self.log.record_check({"arch": arch.key(), "phase": phase, **fit.to_json()})
        self.status(f"{phase}: {self.checker.checked} candidates checked",
                    self.clock.fraction())


def _start(options: NasOptions, status: Status) -> _Run:
    """Check the options, load the data, calibrate the image model: nothing written yet."""
    from tinyml.nas.training import load_data

    clock = _Clock(options.time_budget_s)
    budget = Budget(options.sram_bytes, options.flash_bytes, options.patch_overhead,
                    options.input_stream)
    if budget.sram_bytes <= 0 or budget.flash_bytes <= 0:
        raise TinymlError("--sram and --flash must be positive")
    target = load_target(options.target)
    if not target.is_firmware:
        raise TinymlError(f"tinyml nas needs a Cortex-M target (see 'tinyml targets'), not "
                          f"'{target.name}'")
    data = load_data(options.data)
    output = Path(options.output)
    if output.exists() and not output.is_dir():
        raise TinymlError(f"{output}: exists and is not a directory")
    status("calibration", clock.fraction())
    image = image_model(target, cache_dir=output)
    return _Run(options, status, clock, budget, target, data, output, image,
                ConstraintChecker(target, budget, image))


def _check_feasibility(run: _Run) -> Arch:
    """Stage 1: the smallest candidate must fit, else one line says what it needs. Only then
    is the output directory written (calibration, the search log)."""
    space, data = run.options.space, run.data
    smallest = space.arch(space.smallest_genome(), min(space.resolutions), min(space.widths),
                          data.classes, data.channels)
    smallest_fit = run.checker.check(smallest)
    if not smallest_fit.fits:
        raise TinymlError(infeasible_message(smallest, smallest_fit, run.budget))
    run.output.mkdir(parents=True, exist_ok=True)
    keep_calibration(run.image, run.target, run.output)
    run.log = SearchLog(run.output, run.options.settings())
    run.on_check(smallest, smallest_fit, "feasibility")
    return smallest


def _optimize_space(run: _Run, smallest: Arch) -> tuple[list, int, float]:
    """Stage 2: the (resolution, width) sub-space to evolve in, by constraint checks only."""
    options, data = run.options, run.data
    scores = score_subspaces(options.space, run.checker, data.classes, data.channels,
                             options.space_samples, options.seed, run.on_check)
    chosen = choose_subspace(scores)
    resolution, width = (chosen.resolution, chosen.width) if chosen else \
        (smallest.resolution, smallest.width)
    run.log.append({"event": "subspace", "resolution": resolution, "width": width,
                    "scores": [s.to_json() for s in scores]})
    return scores, resolution, width


def _evolve(run: _Run, smallest: Arch, resolution: int, width: float) -> Candidate:
    """Stage 3: evolution with proxy training until its share of the time budget; the best
    candidate (the smallest one when nothing random fitted in time)."""
    options, data, space, log = run.options, run.data, run.options.space, run.log
    tr, va = data.validation_split(options.seed)
    x_all = data.resized("train", resolution)

    def evaluate(arch: Arch, genome, fit: Fit, generation: int) -> dict:
        key = arch.key()
        cached = log.proxy(key)
        if cached is not None:
            return {**cached, "resumed": True}
        from tinyml.nas.training import train
        run.status(f"evolution: training candidate {len(evolution.evaluated) + 1} "
                   f"(generation {generation})", run.clock.fraction())
        trained = train(arch, x_all[tr], data.y_train[tr], options.proxy_epochs, x_all[va],
                        data.y_train[va], options.seed)
        loss = float(trained.model.evaluate(x_all[va], data.y_train[va], verbose=0,
                                            batch_size=256)[0])
        event = {"arch": key, "generation": generation, "genome": genome.to_json(),
                 "accuracy": trained.accuracy, "loss": loss, "seconds": trained.seconds,
                 "epoch_seconds": trained.epoch_seconds,
                 "macs": fit.macs, "ram_bytes": fit.ram_bytes, "flash_bytes": fit.flash_bytes,
                 "instructions": fit.instructions, "arena_bytes": fit.arena_bytes,
                 "patch": fit.patch}
        log.record_proxy(event)
        return event

    evolution = Evolution(space, resolution, width, data.classes, data.channels, run.checker,
                          evaluate, options.seed, options.population, options.parents,
                          on_check=run.on_check)
    ranked = evolution.run(run.clock.at(EVOLUTION_SHARE))
    if not ranked:  # nothing random fitted in time: the smallest candidate is the answer
        genome = space.smallest_genome()
        fallback = space.arch(genome, resolution, width, data.classes, data.channels)
        fit = run.checker.check(fallback)
        if not fit.fits:
            fallback, fit = smallest, run.checker.check(smallest)
        run.on_check(fallback, fit, "fallback")  # the log holds a check of every trained arch
        result = evaluate(fallback, genome, fit, 0)
        ranked = [Candidate(fallback, genome, fit, result["accuracy"], result["loss"],
                            result["seconds"], 0)]
    return ranked[0]


def _result(run: _Run, best: Candidate, final: dict, compilation, epochs: int,
            subspace: tuple[int, float], baseline: dict | None, baseline_arch: Arch | None,
            baseline_fit: Fit | None) -> dict:
    """The figures of the search: measured on the firmware, estimated by the search."""
    sizes, output, budget = compilation.sizes, run.output, run.budget
    resolution, width = subspace
    return {
        "ram_bytes": sizes["ram_bytes"], "flash_bytes": sizes["flash_bytes"],
        "test_accuracy": final["int8_accuracy"],
        "baseline_accuracy": baseline["int8_accuracy"] if baseline else None,
        "candidates_evaluated": len(run.log.proxies),
        "candidates_checked": len(run.log.checks),
        "float_test_accuracy": final["float_accuracy"],
        "baseline_float_accuracy": baseline["float_accuracy"] if baseline else None,
        "sram_budget_bytes": budget.sram_bytes, "flash_budget_bytes": budget.flash_bytes,
        "target": run.target.name,
        "arch": best.arch.key(), "resolution": best.arch.resolution, "width": best.arch.width,
        "macs": compilation.macs, "proxy_accuracy": best.accuracy,
        "peak_sram_bytes": compilation.plan.arena_bytes,
        "peak_sram_bytes_layerwise": (compilation.layerwise_plan or compilation.plan).arena_bytes,
        "patch": compilation.patch.to_json() if compilation.patch else None,
        "stack_bytes": sizes["stack_bytes"],
        **{k: sizes[k] for k in ("text_bytes", "rodata_bytes", "data_bytes", "bss_bytes")},
        "estimated_ram_bytes": best.fit.ram_bytes,
        "estimated_flash_bytes": best.fit.flash_bytes,
        "instructions_per_inference": compilation.example_run.get("instructions"),
        "predicted_instructions": (run.image.latency.predict(compilation)["instructions"]
                                   + compilation.overlap_instructions),
        "baseline_arch": baseline_arch.key() if baseline_arch else None,
        "baseline_width": baseline_arch.width if baseline_arch else None,
        "baseline_resolution": baseline_arch.resolution if baseline_arch else None,
        "baseline_macs": baseline_fit.macs if baseline_fit else None,
        "baseline_estimated_ram_bytes": baseline_fit.ram_bytes if baseline_fit else None,
        "baseline_estimated_flash_bytes": baseline_fit.flash_bytes if baseline_fit else None,
        "epochs": epochs, "proxy_epochs": run.options.proxy_epochs,
        "subspace": {"resolution": resolution, "width": width},
        "seconds": round(time.monotonic() - run.clock.start, 1),
        "output_dir": str(output),
        "keras_model": str(output / "model.keras"),
        "tflite_model": str(output / "model_int8.tflite"),
        "firmware": str(output / "firmware"),
        "report": str(output / "report.html"),
        "log": str(run.log.path),
    }


def _write_outputs(run: _Run, report: dict, scores: list) -> None:
    """The last stage: report.html, result.json and the log's closing line."""
    from tinyml.nas.search_report import write_report
    run.status("writing the report", run.clock.fraction())
    write_report(run.output / "report.html", report, run.log.events, scores)
    (run.output / "result.json").write_text(json.dumps(report, indent=2) + "\n")
    run.log.append({"event": "done", "result": report})


def choose_baseline(space: SearchSpace, checker: ConstraintChecker, classes: int,
                    channels: int, on_check=None) -> tuple[Arch | None, Fit | None]:
    """MobileNetV2 scaled by width and resolution: the fitting one with the most MACs."""
    best: tuple[Arch, Fit] | None = None
    for resolution in space.resolutions:
        for width in BASELINE_WIDTHS:
            arch = mobilenet_v2(width, resolution, classes, channels)
            fit = checker.check(arch)
            if on_check:
                on_check(arch, fit, "baseline")
            if fit.fits and (best is None or fit.macs > best[1].macs):
                best = (arch, fit)
            if not fit.fits:
                break  # wider only needs more
    return best if best else (None, None)


def final_epochs(options: NasOptions, best: Candidate, baseline: Arch | None,
                 clock: _Clock) -> int:
    """As many epochs as the time left allows for the final model and the baseline."""
    low, high = options.final_epochs
    proxy = max(options.proxy_epochs, 1)
    per_epoch = best.epoch_seconds or best.seconds / proxy
    # Building, tracing and evaluating: what the proxy run took beyond its epochs, twice.
    fixed = 2 * max(best.seconds - per_epoch * proxy, 0.0)
    if baseline is not None:
        # Deeper networks train slower per epoch, roughly with their number of blocks.
        per_epoch *= 1 + max(1.0, baseline.depth / max(best.arch.depth, 1))
    left = clock.deadline - time.monotonic() - RESERVE_S - fixed
    return int(min(high, max(low, left // max(per_epoch, 1e-3))))


def train_and_quantize(arch: Arch, data, epochs: int, stem: Path, seed: int) -> dict:
    """Train on the whole training split, save ``<stem>.keras``, quantize with tinyml on
    training images, save ``<stem>_int8.tflite`` and measure both on the test split."""
    from tinyml.nas.training import train
    from tinyml.quantize import quantize_model

    x_train = data.resized("train", arch.resolution)
    x_test = data.resized("test", arch.resolution)
    trained = train(arch, x_train, data.y_train, epochs, x_test, data.y_test, seed)
    keras_path = stem.with_suffix(".keras")
    trained.model.save(keras_path)
    calib = np.random.default_rng(seed).permutation(len(x_train))[:CALIBRATION_IMAGES]
    quantized = quantize_model(keras_path, x_train[np.sort(calib)])
    tflite = stem.parent / f"{stem.name}_int8.tflite"
    tflite.write_bytes(quantized.to_tflite())
    return {"float_accuracy": trained.accuracy, "seconds": trained.seconds,
            "int8_accuracy": int8_accuracy(tflite, quantized.graph, x_test, data.y_test)}


def int8_accuracy(tflite: Path, graph, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of the int8 model as TFLM runs it (tinyml's reference, which is
    bit-exact with it, when tflite-micro is not installed)."""
    from tinyml.quantize.params import quantize_array
    from tinyml.sim import tflm

    quant = graph.tensors[graph.inputs[0]].quant
    inputs = [quantize_array(x[i:i + 1], quant) for i in range(len(x))]
    if tflm.available():
        runner = tflm.TflmRunner(tflite)
        outputs = [runner.run([sample], 1)[0] for sample in inputs]
    else:
        from tinyml import reference
        outputs = [reference.run(graph, [sample])[graph.outputs[0]] for sample in inputs]
    predicted = np.array([int(np.argmax(o.reshape(-1))) for o in outputs])
    return float(np.mean(predicted == y))


def compile_firmware(tflite: Path, target: Target, output: Path, fit: Fit, budget: Budget):
    """``tinyml compile`` with the budgets; the schedule the search chose first, the other
    one if the measured image misfits with it."""
    from tinyml.budget import BudgetError
    from tinyml.compiler import compile_model

    if output.exists():
        shutil.rmtree(output)
    attempts = [fit.patch] + [p for p in ("off", "auto") if p != fit.patch]
    error: BudgetError | None = None
    for patch in attempts:
        try:
            # The search's budget, not the part's, decides: patches whenever they fit it.
            return compile_model(tflite, target, output, patch=patch,
                                 patch_overhead=budget.patch_overhead, optimize="memory",
                                 input_stream=budget.input_stream)
        except BudgetError as exc:
            error = exc
    raise TinymlError(f"the searched model does not fit once built: {error}")
