"""Overlapped hand-overs on the MLPerf Tiny models: arena with and without them, and what
they cost in instructions on cortex-m4 (QEMU, ``--measure``).

    python benchmarks/overlap.py [--measure] [--targets host,cortex-m4]

"Without" plans every layer as before overlaps existed (in place and copies only); "with" is
what ``tinyml compile`` does. Both are printed for ``--patch off`` and ``--patch auto``. With
``--measure`` each model is also verified in QEMU on cortex-m4 (``--patches``) with and
without overlaps: outputs must equal TFLM's, the instruction counts are compared.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyml import compiler  # noqa: E402
from tinyml.schedule import patch_plan, planner  # noqa: E402
from tinyml.verify import verify  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
NAMES = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]


@contextlib.contextmanager
def without_overlap():
    """Plans as if no kernel declared an overlap."""
    saved = compiler.plan_memory, patch_plan.op_overlaps
    compiler.plan_memory = functools.partial(planner.plan_memory, overlap=False)
    patch_plan.op_overlaps = lambda graph, calls: [[] for _ in graph.ops]
    try:
        yield
    finally:
        compiler.plan_memory, patch_plan.op_overlaps = saved


def arenas(model: Path, target: str, patch: str) -> tuple[int, int, int]:
    with without_overlap():
        before = compiler.plan(model, target, patch=patch).plan.arena_bytes
    result = compiler.plan(model, target, patch=patch)
    return before, result.plan.arena_bytes, len(result.plan.overlaps)


def instructions(model: Path, patch: str = "off") -> tuple[int, int, int, int]:
    """(instructions, mismatches) without and with overlaps, cortex-m4."""
    with without_overlap():
        before = verify(model, "cortex-m4", samples=3, patch=patch, profile=False)
    after = verify(model, "cortex-m4", samples=3, patch=patch, profile=False)
    return (before.measured["instructions_per_inference"], before.mismatched_outputs,
            after.measured["instructions_per_inference"], after.mismatched_outputs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--targets", default="host,cortex-m4")
    parser.add_argument("--models", default=",".join(NAMES))
    parser.add_argument("--patches", default="off,auto", help="--measure: patch modes")
    args = parser.parse_args()
    names = args.models.split(",")
    print("model                   target     patch  arena before  arena after  overlaps")
    for name in names:
        model = MODELS / f"{name}.tflite"
        for target in args.targets.split(","):
            for patch in ("off", "auto"):
                before, after, count = arenas(model, target, patch)
                print(f"{name:23s} {target:10s} {patch:5s} {before:12,d} {after:12,d} "
                      f"{count:9d}", flush=True)
    if args.measure:
        print("\nmodel                   patch  instr. without     with  ratio  mismatches")
        for name in names:
            for patch in args.patches.split(","):
                before, bad_before, after, bad_after = instructions(
                    MODELS / f"{name}.tflite", patch)
                print(f"{name:23s} {patch:5s} {before:14,d} {after:14,d} "
                      f"{after / before:6.4f} {bad_before + bad_after}", flush=True)


if __name__ == "__main__":
    main()
