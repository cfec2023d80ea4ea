"""TFLM + CMSIS-NN against tinyml, side by side, on the same emulated Cortex-M.

Run (the checkouts are not part of tinyml and are never committed):

    .venv/bin/python benchmarks/tflm_cortex_m.py --third-party-dir ../tflm-deps \\
        [--target cortex-m4] [--reference] [--json] [MODEL.tflite | mlperf name ...]
    .venv/bin/python benchmarks/tflm_cortex_m.py --third-party-dir ../tflm-deps --suite

``--suite`` runs the benchmark suite: eight public architectures built here with random,
calibrated weights (``tflm_bench/suite.py``: MobileNetV2 0.35 and MobileNetV3-Small
minimalistic at 96 px, MCUNet-style 5x5 and 7x7 blocks, a dilated 1-D keyword spotter, a
Conv1D sensor model, ResNet-8 at twice the width, a DS-CNN with odd channels; converted once
into ``BUILD_DIR/suite``) and the four MLPerf Tiny models, then the per-model table with the
geometric mean and the worst layers over all of them. Suite models can also be named one by
one; ``--from-json`` joins several saved runs into one table.

``--third-party-dir`` holds the checkouts under their repository names (``tflite-micro``,
``CMSIS-NN``, ``CMSIS_6``, ``flatbuffers``, ``gemmlowp``, ``ruy``); ``--tflm-dir``,
``--cmsis-nn-dir``, ``--cmsis-dir`` (CMSIS_6: the Cortex-M core headers),
``--flatbuffers-dir``, ``--gemmlowp-dir`` and ``--ruy-dir`` name them one by one
(``--tflm-dir`` defaults to ``$TINYML_TFLM_DIR``). Without them the benchmark prints one line
saying it is skipped and exits 0. No network is needed: TFLM's Makefile, which downloads its
dependencies and a compiler, is not used; ``tflm_bench/build.py`` compiles the sources itself
with the target's arm-none-eabi-gcc flags (-O2, same -mcpu/-mfpu as tinyml) into a cached
library (``--build-dir``, default ``build/tflm-cortex-m``; the first build takes minutes, later
runs only link).

Checked with these commits (the versions TFLM's own download scripts pin at that TFLM commit):

    tensorflow/tflite-micro   90b983c2b3f1480642e040bbd2ddb37b998f3424
    ARM-software/CMSIS-NN     4ab83cc3cc98fb85ed6dafb55e8ca02f1628dcae
    ARM-software/CMSIS_6      5782d6f8057906d360f4b95ec08a2354afe5c9b9
    google/flatbuffers        v25.9.23 (edbe17738352418245d7228e7fd9f12c3ddc34c4;
                              TFLM's schema_generated.h requires exactly this version)
    google/gemmlowp           719139ce755a0f31cbf1c37f7f98adcc7fc9f425
    google/ruy                d37128311b445e758136b8602d1bbd2a755e115d

For each model, on one seeded random input:

- TFLM: a firmware image (``tflm_bench/firmware_main.cc``) embeds the .tflite file and the
  input, registers the model's builtins in a MicroMutableOpResolver and runs Invoke() twice
  in QEMU (``-icount shift=0``, the target's machine): once unprofiled (the total), once with a
  MicroProfilerInterface timed by SysTick (per operator). It prints the outputs and
  ``arena_used_bytes()``. With CMSIS-NN kernels, and with ``--reference`` also TFLM's reference
  kernels.
- tinyml: ``compile_model`` for the same target (``--patch``, default auto as ``tinyml
  compile``), its verification harness on the same input (the total) and its profiling build
  (per layer), as ``tinyml verify`` measures them.

Both sides count with tinyml's SysTick counter (``firmware/cortex_m/counter.c``) on the same
machine. The outputs must be identical byte for byte (exit status 1 otherwise). Per-layer rows
pair TFLM's operators with tinyml's layers by their output tensor's name (fused or aliased
layers share a row, see ``tflm_bench/compare.py``); "outside layers (total - sum)" is the rest of each total
(TFLM's interpreter loop, tinyml's harness call). Code is the ELF's executable sections,
constants its .rodata (model/weights, tables; TFLM's includes the embedded input), both from
the section headers; TFLM's code includes 7-9 KB of newlib and libgcc (vsnprintf for its
log: its per-operator profiler hooks only exist in builds that keep log strings, see
``tflm_bench/build.py``). TFLM's arena is what its allocator used on the 32-bit target; tinyml's
is the planned arena (``compile --json`` arena_bytes); the RAM column adds .data, .bss and
the stack tinyml's example measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLPERF_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"
MLPERF_MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tflm_bench import compare, sources, suite  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_operators(data: bytes) -> tuple[list[dict], list[str]]:
    """The main subgraph's operators (``name``: first output tensor's name up to ';', as
    tinyml's importer names layers; ``op``: builtin name) and the builtins used, read with
    the TFLite schema bindings."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM")
             for c in model.operatorCodes]
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        out = graph.tensors[int(op.outputs[0])].name
        out = out.decode() if isinstance(out, bytes) else out
        ops.append(dict(name=out.split(";")[0], op=codes[op.opcodeIndex]))
    return ops, sorted(set(codes))


def measure_tinyml(path: Path, target, patch: str, seed: int, work: Path,
                   optimize: str = "balanced") -> dict:
    from tinyml import firmware
    from tinyml.compiler import compile_model
    from tinyml.sim import qemu
    from tinyml.verify import make_samples, profile_layers
    result = compile_model(path, target, work / "project", patch=patch, optimize=optimize)
    sample = make_samples(result.source_graph, 1, seed)[0]
    elf = firmware.build_harness(work / "project", result.target)
    run = qemu.run_samples(elf, result.target, result.source_graph, [sample])
    layers = profile_layers(path, result.target, sample, work / "profile", run.outputs[0],
                            patch=patch, optimize=optimize)
    return dict(sample=sample, outputs=[a.tobytes() for a in run.outputs[0]],
                instructions=run.instructions[0], layers=layers,
                arena_bytes=result.plan.arena_bytes, ram_bytes=result.sizes["ram_bytes"],
                text_bytes=result.sizes["text_bytes"], rodata_bytes=result.sizes["rodata_bytes"],
                macs=result.macs, patch=result.patch is not None,
                predicted_instructions=result.predicted_instructions)


def measure_tflm(build, name: str, data: bytes, inputs: bytes, ops: list[dict],
                 builtins: list[str], args) -> dict:
    from tinyml.firmware import elf_sizes
    from tinyml.sim import qemu
    elf = build.firmware(name, data, inputs, builtins, args.jobs, args.arena_bytes, log)
    with tempfile.TemporaryDirectory(prefix="tflm-bench-") as tmp:
        result = qemu.run_elf(elf, build.target, tmp, timeout=args.timeout)
    text = (result.stdout + result.stderr).decode(errors="replace")
    run = compare.parse_console(text)
    if run.error or not run.done:
        raise RuntimeError(f"{name}: TFLM firmware ({build.kernels}) did not finish: "
                           f"{run.error or text.strip()[-200:]}")
    if run.outputs != run.profiled_outputs:
        raise RuntimeError(f"{name}: TFLM's profiled Invoke() computed different outputs")
    if len(run.layers) != len(ops):
        raise RuntimeError(f"{name}: TFLM profiled {len(run.layers)} operators, the model "
                           f"has {len(ops)}")
    sizes = elf_sizes(elf)
    instructions = build.target.instructions
    return dict(elf=str(elf), outputs=run.outputs, instructions=instructions(run.invoke_ticks),
                profiled_instructions=instructions(run.profiled_ticks),
                layers=[dict(name=op["name"], op=tag, instructions=instructions(ticks))
                        for op, (tag, ticks) in zip(ops, run.layers)],
                arena_bytes=run.arena_used_bytes, text_bytes=sizes["text_bytes"],
                rodata_bytes=sizes["rodata_bytes"] + sizes["data_bytes"])


def measure(path: Path, target, builds: dict, args) -> dict:
    import numpy as np
    data = path.read_bytes()
    ops, builtins = model_operators(data)
    with tempfile.TemporaryDirectory(prefix="tflm-bench-tinyml-") as tmp:
        log(f"{path.stem}: tinyml compile + run on {target.name}")
        tiny = measure_tinyml(path, target, args.patch, args.seed, Path(tmp), args.optimize)
    inputs = b"".join(np.ascontiguousarray(x).tobytes() for x in tiny.pop("sample"))
    tflm = {}
    for kernels, build in builds.items():
        log(f"{path.stem}: TFLM ({kernels}) build + run on {target.name}")
        tflm[kernels] = measure_tflm(build, path.stem, data, inputs, ops, builtins, args)
    exact = {k: compare.outputs_equal(v["outputs"], tiny["outputs"]) for k, v in tflm.items()}
    for v in tflm.values():
        v.pop("outputs")
    tiny.pop("outputs")
    result = dict(model=path.stem, target=target.name, machine=target.qemu_machine,
                  exact={k: dict(identical=ok, detail=why) for k, (ok, why) in exact.items()},
                  tinyml=tiny, tflm=tflm)
    result["rows"] = rows_of(result)
    return result


def rows_of(result: dict) -> list[dict]:
    """The per-layer rows of one model's result (from its TFLM and tinyml layer lists)."""
    tflm = result["tflm"]
    main = tflm["cmsis_nn" if "cmsis_nn" in tflm else next(iter(tflm))]
    layers = [dict(layer, extra={k: v["layers"][i]["instructions"] for k, v in tflm.items()
                                 if v is not main})
              for i, layer in enumerate(main["layers"])]
    return [dict(tflm_ops=r.tflm_ops, tinyml_ops=r.tinyml_ops, name=r.name, tflm=r.tflm,
                 tinyml=r.tinyml, ratio=r.ratio, extra=r.extra)
            for r in compare.match_layers(layers, result["tinyml"]["layers"])]


def _fmt_prediction(tinyml: dict) -> str:
    """The cost model's instructions and their error against the measured ones."""
    predicted = tinyml.get("predicted_instructions")
    if not predicted:
        return "-"
    return f"{predicted:,} ({100 * (predicted / tinyml['instructions'] - 1):+.1f} %)"


def _fmt_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    style = "green" if value <= 1.0 else "red"
    return f"[{style}]{value:.2f}[/]"


def print_tables(results: list[dict], kernels: list[str], console) -> None:
    from rich.table import Table
    main = "cmsis_nn" if "cmsis_nn" in kernels else kernels[0]
    others = [k for k in kernels if k != main]
    label = {"cmsis_nn": "TFLM CMSIS-NN", "reference": "TFLM ref"}
    for r in results:
        table = Table(title=f"{r['model']} on {r['target']} (QEMU {r['machine']}): "
                            f"instructions per layer")
        for column in ["#", "TFLM ops | tinyml layers", "layer", label[main],
                       *(label[k] for k in others), "tinyml", f"tinyml / {label[main]}"]:
            table.add_column(column, justify="left" if column in (
                "TFLM ops | tinyml layers", "layer") else "right")
        tflm_sum = tiny_sum = 0
        for i, row in enumerate(r["rows"]):
            tflm_sum += row["tflm"]
            tiny_sum += row["tinyml"]
            table.add_row(str(i), " + ".join(row["tflm_ops"]) if row["tflm_ops"] == row[
                "tinyml_ops"] else f"{' + '.join(row['tflm_ops']) or '-'} | "
                                   f"{' + '.join(row['tinyml_ops']) or '-'}",
                          row["name"][-40:], f"{row['tflm']:,}",
                          *(f"{row['extra'].get(k, 0):,}" for k in others),
                          f"{row['tinyml']:,}", _fmt_ratio(row["ratio"]))
        total_tflm = r["tflm"][main]["instructions"]
        total_tiny = r["tinyml"]["instructions"]
        table.add_row("", "outside layers (total - sum)", "", f"{total_tflm - tflm_sum:,}",
                      *(f"{r['tflm'][k]['instructions'] - sum(x['extra'].get(k, 0) for x in r['rows']):,}"
                        for k in others),
                      f"{total_tiny - tiny_sum:,}", "", end_section=True)
        table.add_row("", "[bold]total[/]", "", f"[bold]{total_tflm:,}[/]",
                      *(f"{r['tflm'][k]['instructions']:,}" for k in others),
                      f"[bold]{total_tiny:,}[/]", _fmt_ratio(total_tiny / total_tflm))
        console.print(table)

    summary = Table(title=f"tinyml vs TFLM on {results[0]['target']} (QEMU "
                          f"{results[0]['machine']}, -icount shift=0, one input)")
    columns = ["model", "outputs", *(label[k] for k in kernels), "tinyml", "predicted",
               *(f"tinyml / {label[k]}" for k in kernels),
               *(f"{label[k]} arena" for k in kernels), "tinyml arena",
               "tinyml RAM", "TFLM code", "tinyml code", "TFLM const", "tinyml const"]
    for column in columns:
        summary.add_column(column, justify="left" if column == "model" else "right",
                           no_wrap=column == "model")
    for r in results:
        t, m = r["tinyml"], r["tflm"][main]
        ok = all(e["identical"] for e in r["exact"].values())
        summary.add_row(
            r["model"], "[green]identical[/]" if ok else "[red]" + "; ".join(
                f"{k}: {e['detail']}" for k, e in r["exact"].items() if not e["identical"]) + "[/]",
            *(f"{r['tflm'][k]['instructions']:,}" for k in kernels), f"{t['instructions']:,}",
            _fmt_prediction(t),
            *(_fmt_ratio(t["instructions"] / r["tflm"][k]["instructions"]) for k in kernels),
            *(f"{r['tflm'][k]['arena_bytes']:,}" for k in kernels), f"{t['arena_bytes']:,}",
            f"{t['ram_bytes']:,}",
            f"{m['text_bytes']:,}", f"{t['text_bytes']:,}", f"{m['rodata_bytes']:,}",
            f"{t['rodata_bytes']:,}")
    console.print(summary)
    mean = compare.geometric_mean([r["tinyml"]["instructions"] /
                                   r["tflm"][main]["instructions"] for r in results])
    if mean is not None:
        console.print(f"geometric mean tinyml / {label[main]}: {mean:.3f}")


def print_worst_layers(results: list[dict], console, count: int = 15) -> None:
    """The layers where tinyml loses most against TFLM + CMSIS-NN, over all models."""
    rows = [(r["model"], i, row) for r in results for i, row in enumerate(r["rows"])
            if row["ratio"] is not None]
    rows.sort(key=lambda item: -item[2]["ratio"])
    from rich.table import Table
    table = Table(title=f"worst layers (tinyml / TFLM, {count} highest ratios)")
    for column in ["model", "#", "ops", "layer", "TFLM", "tinyml", "ratio"]:
        table.add_column(column, justify="left" if column in ("model", "ops", "layer")
                         else "right")
    for model, i, row in rows[:count]:
        table.add_row(model, str(i), " + ".join(row["tinyml_ops"] or row["tflm_ops"]),
                      row["name"][-40:], f"{row['tflm']:,}", f"{row['tinyml']:,}",
                      _fmt_ratio(row["ratio"]))
    console.print(table)


def resolve_models(names: list[str], with_suite: bool = False,
                   suite_dir: Path | None = None) -> list[Path]:
    """Model files for the names given: .tflite paths, MLPerf Tiny names, suite model names
    (built on first use into ``suite_dir``); with ``with_suite`` the whole suite (its own
    models, then the four MLPerf Tiny ones) comes first."""
    mlperf = [MLPERF_DIR / f"{m}.tflite" for m in MLPERF_MODELS
              if (MLPERF_DIR / f"{m}.tflite").exists()]
    if with_suite:
        if not mlperf:
            log(f"tflm_cortex_m: no MLPerf Tiny models in {MLPERF_DIR}: the suite runs "
                f"without them")
        names = [*suite.MODELS, *(str(p) for p in mlperf), *names]
    elif not names:
        return mlperf
    paths = []
    for name in names:
        path = Path(name)
        if not path.exists() and name in suite.MODELS:
            path = suite.build(name, suite_dir, log=log)
        if not path.exists() and (MLPERF_DIR / f"{name}.tflite").exists():
            path = MLPERF_DIR / f"{name}.tflite"
        if not path.exists():
            raise SystemExit(f"tflm_cortex_m: model not found: {name}")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*",
                        help="TFLite files, MLPerf Tiny names or suite model names "
                             f"({', '.join(suite.MODELS)}; default: the four MLPerf Tiny "
                             f"int8 models in {MLPERF_DIR})")
    parser.add_argument("--suite", action="store_true",
                        help="the benchmark suite: its models built from public architectures "
                             "(tflm_bench/suite.py, cached in BUILD_DIR/suite) and the four "
                             "MLPerf Tiny models")
    parser.add_argument("--target", default="cortex-m4", help="an emulated Cortex-M target")
    parser.add_argument("--third-party-dir", help="folder holding all the checkouts")
    for key, option in sources.OPTIONS.items():
        parser.add_argument(option, dest=f"dir_{key}", metavar="DIR",
                            default=os.environ.get("TINYML_TFLM_DIR") if key == "tflm" else None,
                            help=f"{key} checkout")
    parser.add_argument("--reference", action="store_true",
                        help="also build and run TFLM with its reference kernels")
    parser.add_argument("--reference-only", action="store_true",
                        help="TFLM with reference kernels only (no CMSIS-NN)")
    parser.add_argument("--patch", default="auto", help="tinyml's patch-based inference: "
                        "auto (default, as tinyml compile), off, or SPLIT:N")
    parser.add_argument("--optimize", default="balanced", choices=("speed", "memory", "balanced"),
                        help="tinyml's --optimize (default balanced, as tinyml compile)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--build-dir", default=str(REPO / "build" / "tflm-cortex-m"),
                        help="cache of TFLM objects and firmware images")
    parser.add_argument("--jobs", type=int, default=sources.jobs(), help="parallel compiles")
    parser.add_argument("--arena-bytes", type=int, default=1024 * 1024,
                        help="TFLM arena buffer (what it used is reported)")
    parser.add_argument("--timeout", type=float, default=900, help="QEMU timeout per run (s)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="machine-readable output: on stdout instead of the tables, or "
                             "into FILE beside them")
    parser.add_argument("--from-json", metavar="FILE", nargs="+",
                        help="print the tables of saved --json FILEs, their models joined "
                             "(no build, no run)")
    args = parser.parse_args(argv)

    if args.from_json:
        from rich.console import Console
        files = [json.loads(Path(f).read_text()) for f in args.from_json]
        kernels = [k for k in files[0]["kernels"] if all(k in f["kernels"] for f in files)]
        models = [r for f in files for r in f["models"]]
        for result in models:
            result["tflm"] = {k: v for k, v in result["tflm"].items() if k in kernels}
            result["rows"] = rows_of(result)
        console = Console(width=max(Console().width, 240))
        print_tables(models, kernels, console)
        print_worst_layers(models, console)
        return 0 if all(e["identical"] for r in models for e in r["exact"].values()) else 1
    explicit = {key: getattr(args, f"dir_{key}") for key in sources.OPTIONS}
    try:
        checkouts, why = sources.locate(explicit, args.third_party_dir)
    except ValueError as e:
        print(f"tflm_cortex_m: {e}", file=sys.stderr)
        return 2
    if checkouts is None:
        print(f"tflm_cortex_m: skipped: {why} (see the docstring for the checkouts it needs)")
        return 0

    from tinyml.errors import TinymlError
    from tinyml.sim import qemu
    from tinyml.targets import load_target
    from tflm_bench import build as tflm_build
    target = load_target(args.target)
    if not target.is_emulated or target.is_host:
        print(f"tflm_cortex_m: target '{target.name}' is not an emulated Cortex-M",
              file=sys.stderr)
        return 2
    missing = tflm_build.toolchain_missing(target) or (
        None if qemu.available() else f"{qemu.QEMU} not found")
    if missing:
        print(f"tflm_cortex_m: skipped: {missing}")
        return 0
    models = resolve_models(args.models, args.suite, Path(args.build_dir) / "suite")
    if not models:
        print(f"tflm_cortex_m: skipped: no models given and none in {MLPERF_DIR}")
        return 0
    kernels = ["reference"] if args.reference_only else (
        ["cmsis_nn", "reference"] if args.reference else ["cmsis_nn"])
    builds = {k: tflm_build.Build(target, k, checkouts, Path(args.build_dir)) for k in kernels}
    results = []
    try:
        for path in models:
            results.append(measure(path, target, builds, args))
    except (TinymlError, tflm_build.BuildError, RuntimeError) as e:
        print(f"tflm_cortex_m: {e}", file=sys.stderr)
        return 2
    commits = {key: sources.commit_of(path) for key, path in checkouts.items()}
    if args.json:
        text = json.dumps(dict(target=target.name, kernels=kernels, commits=commits,
                               checkouts={k: str(p) for k, p in checkouts.items()},
                               models=results), indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if args.json != "-":
        from rich.console import Console
        console = Console(width=max(Console().width, 240))
        print_tables(results, kernels, console)
        print_worst_layers(results, console)
        console.print("checkouts: " + ", ".join(
            f"{k} {commits[k] or p}" for k, p in checkouts.items()))
    exact = all(e["identical"] for r in results for e in r["exact"].values())
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
