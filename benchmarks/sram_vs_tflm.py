"""tinyml's arena against TFLM's on twelve models: the acceptance of "SRAM below in-place".

    python benchmarks/sram_vs_tflm.py [--models a,b] [--measure] [--json PATH]

Models: the four MLPerf Tiny int8 models (../shared/models/mlperf_tiny) and the eight of the
benchmark suite (tflm_bench/suite.py, read from ``--suite-dir``, built there when missing).
Per model: TFLM's arena (its recording allocator's total, as benchmarks/memory_vs_tflm.py
measures it: what a TFLM build must reserve), tinyml's arena on the host and on cortex-m4
(``--optimize memory``, and the default ``balanced``), and cortex-m4 memory without
overlapped hand-overs for reference. The bars: each model's cortex-m4 ``--optimize memory``
arena at most :data:`MODEL_BAR` of TFLM's, their geometric mean at most :data:`GEOMEAN_BAR`.

``--measure`` also verifies each model in QEMU on cortex-m4 (``--optimize memory``, ``--patch``
as given) with and without overlaps against TFLM (mismatched outputs must be 0) and compares
the instruction counts: overlaps may cost at most :data:`INSTRUCTION_BAR` x. When ``compile``
has ``--input-stream`` (the input read row by row), vww is measured with ``rows`` too.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from memory_vs_tflm import MLPERF_DIR, tflm_arena  # noqa: E402
from overlap import without_overlap  # noqa: E402
from tflm_bench import suite  # noqa: E402
from tinyml import compiler  # noqa: E402

MLPERF = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
SUITE_DIR = REPO.parent / "tflm-deps" / "build" / "suite"
#: Each model's cortex-m4 ``--optimize memory`` arena / TFLM's arena.
MODEL_BAR = 0.40
#: Their geometric mean.
GEOMEAN_BAR = 0.30
#: Instructions with overlaps / without, cortex-m4.
INSTRUCTION_BAR = 1.05


def input_stream_supported() -> bool:
    """Whether ``compiler.plan`` takes ``input_stream`` (the streamed input, when it lands)."""
    return "input_stream" in inspect.signature(compiler.plan).parameters


def model_path(name: str, suite_dir: Path) -> Path:
    if name in suite.MODELS:
        return suite.build(name, suite_dir)
    path = MLPERF_DIR / f"{name}.tflite"
    if path.exists():
        return path
    raise SystemExit(f"sram_vs_tflm: no model '{name}' (MLPerf Tiny in {MLPERF_DIR}, or one of "
                     f"the suite's: {', '.join(suite.MODELS)})")


def arenas(path: Path, **options) -> dict:
    """TFLM's arena and tinyml's under each plan."""
    row = {"model": path.stem, "tflm": tflm_arena(path.read_bytes()).total}
    for key, target, optimize in (("host_memory", "host", "memory"),
                                  ("host_balanced", "host", "balanced"),
                                  ("m4_memory", "cortex-m4", "memory"),
                                  ("m4_balanced", "cortex-m4", "balanced")):
        result = compiler.plan(path, target, optimize=optimize, **options)
        report = result.report()
        row[key] = result.plan.arena_bytes
        row[key + "_patch"] = report["patch"]["grid"] if report["patch"] else None
        row[key + "_overlap_saving"] = report["overlap"]["saving_bytes"]
        row[key + "_overlap_instructions"] = report["overlap"]["predicted_instructions"]
    with without_overlap():
        row["m4_memory_without_overlap"] = compiler.plan(path, "cortex-m4", optimize="memory",
                                                         **options).plan.arena_bytes
    row["ratio"] = row["m4_memory"] / row["tflm"]
    row["ratio_balanced"] = row["m4_balanced"] / row["tflm"]
    row["ratio_host"] = row["host_memory"] / row["tflm"]
    return row


def instructions(path: Path, samples: int, patch: str, **options) -> dict:
    """cortex-m4 QEMU instructions per inference and mismatched outputs (against TFLM),
    ``--optimize memory``, without and with overlaps. (With ``--patch auto`` the two may
    also differ in their patch schedule: overlaps change which arena is smallest.)"""
    from tinyml.verify import verify
    with without_overlap():
        before = verify(path, "cortex-m4", samples=samples, optimize="memory", profile=False,
                        patch=patch, **options)
    after = verify(path, "cortex-m4", samples=samples, optimize="memory", profile=False,
                   patch=patch, **options)
    without = before.measured["instructions_per_inference"]
    with_ = after.measured["instructions_per_inference"]
    return {"instructions_without_overlap": without, "instructions": with_,
            "instruction_ratio": with_ / without,
            "mismatches": before.mismatched_outputs + after.mismatched_outputs}


def geomean(values: list[float]) -> float:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join([*MLPERF, *suite.MODELS]))
    parser.add_argument("--suite-dir", type=Path, default=SUITE_DIR)
    parser.add_argument("--measure", action="store_true", help="QEMU runs, with and without "
                        "overlaps (slow)")
    parser.add_argument("--measure-models", default=None,
                        help="--measure only these (default: all of --models)")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--patch", default="auto", help="--measure: the patch option of "
                        "both builds (off: the overlaps' own cost, the same schedule)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = args.models.split(",")
    rows = []
    print(f"{'model':24s} {'TFLM':>8s} {'host mem':>9s} {'m4 mem':>8s} {'m4 bal':>8s} "
          f"{'m4 no ovl':>9s} {'ratio':>6s} {'bal':>6s} {'host':>6s}  bar {MODEL_BAR}")
    for name in names:
        row = arenas(model_path(name, args.suite_dir))
        rows.append(row)
        print(f"{name:24s} {row['tflm']:8,d} {row['host_memory']:9,d} {row['m4_memory']:8,d} "
              f"{row['m4_balanced']:8,d} {row['m4_memory_without_overlap']:9,d} "
              f"{row['ratio']:6.3f} {row['ratio_balanced']:6.3f} {row['ratio_host']:6.3f}  "
              f"{'ok' if row['ratio'] <= MODEL_BAR else 'ABOVE'}", flush=True)
    summary = {key: geomean([r[key] for r in rows])
               for key in ("ratio", "ratio_balanced", "ratio_host")}
    print(f"geomean ratio: cortex-m4 memory {summary['ratio']:.3f} (bar {GEOMEAN_BAR}: "
          f"{'ok' if summary['ratio'] <= GEOMEAN_BAR else 'ABOVE'}), balanced "
          f"{summary['ratio_balanced']:.3f}, host {summary['ratio_host']:.3f}")
    above = [r["model"] for r in rows if r["ratio"] > MODEL_BAR]
    print(f"models above the {MODEL_BAR} bar: {', '.join(above) or 'none'}")
    streamed = []
    if input_stream_supported() and "vww_96_int8" in names:
        row = arenas(model_path("vww_96_int8", args.suite_dir), input_stream="rows")
        row["model"] = "vww_96_int8 --input-stream rows"
        streamed.append(row)
        print(f"{row['model']:24s} {row['tflm']:8,d} {row['host_memory']:9,d} "
              f"{row['m4_memory']:8,d} {row['m4_balanced']:8,d} "
              f"{row['m4_memory_without_overlap']:9,d} {row['ratio']:6.3f}")
    elif "vww_96_int8" in names:
        print("(compile has no --input-stream yet: vww streamed row by row not measured)")
    measured = []
    if args.measure:
        chosen = args.measure_models.split(",") if args.measure_models else names
        print(f"\n{'model':32s} {'instr. without':>15s} {'with':>12s} {'ratio':>7s} "
              f"mismatches  bar {INSTRUCTION_BAR}")
        jobs = [(name, {}) for name in chosen]
        if input_stream_supported() and "vww_96_int8" in chosen:
            jobs.append(("vww_96_int8", {"input_stream": "rows"}))
        for name, options in jobs:
            m = {"model": name + (" --input-stream rows" if options else ""),
                 "patch": args.patch,
                 **instructions(model_path(name, args.suite_dir), args.samples, args.patch,
                                **options)}
            measured.append(m)
            passed = m["instruction_ratio"] <= INSTRUCTION_BAR and not m["mismatches"]
            print(f"{m['model']:32s} {m['instructions_without_overlap']:15,d} "
                  f"{m['instructions']:12,d} {m['instruction_ratio']:7.4f} "
                  f"{m['mismatches']:10d}  {'ok' if passed else 'FAIL'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({
            "bars": {"model": MODEL_BAR, "geomean": GEOMEAN_BAR,
                     "instructions": INSTRUCTION_BAR},
            "models": rows, "geomean": summary, "above_bar": above,
            "input_stream": streamed, "measured": measured}, indent=1) + "\n")
    ok = not above and summary["ratio"] <= GEOMEAN_BAR and all(
        m["instruction_ratio"] <= INSTRUCTION_BAR and not m["mismatches"] for m in measured)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
