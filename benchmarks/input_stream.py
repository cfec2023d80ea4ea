"""``--input-stream rows`` against the whole input: arena, row stage and instructions.

    python benchmarks/input_stream.py [--measure] [--models NAME,...] [--targets host,cortex-m4]

For each model (MLPerf Tiny's, and the benchmark suite's built models when
../tflm-deps/build/suite, or --suite DIR, holds them): the arena with the whole input
(``--optimize memory`` and ``balanced``, patches as chosen) and streamed
(``--input-stream rows``, the same goals), the row stage chosen and its band bytes. With
``--measure`` each streamed plan is verified in QEMU on cortex-m4 against TFLM (5 random
samples + 2 extremes) and its instructions printed beside the whole-input plan's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinyml import compiler  # noqa: E402
from tinyml.errors import TinymlError  # noqa: E402
from tinyml.verify import verify  # noqa: E402

MLPERF = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"
SUITE = Path(__file__).resolve().parents[2] / "tflm-deps" / "build" / "suite"
NAMES = ["vww_96_int8", "kws_ref_model", "mobilenet_v2_035_96", "mcunet_5x5"]


def model_path(name: str, suite: Path) -> Path:
    for folder in (MLPERF, suite):
        path = folder / f"{name}.tflite"
        if path.exists():
            return path
    raise SystemExit(f"{name}: not found in {MLPERF} or {suite}")


def row(model: Path, target: str, optimize: str, mode: str) -> str:
    streamed = mode == "rows"
    try:
        result = compiler.plan(model, target, optimize=optimize, input_stream=streamed)
    except TinymlError as exc:
        return f"refused: {exc}"
    stage = result.patch
    what = "layer by layer" if stage is None else (
        f"rows up to layer {stage.split_index} ({len(stage.stage)} layers)"
        if mode != "whole" else f"{stage.describe()} up to layer {stage.split_index}")
    extra = f", band {stage.bands[0].nbytes:,} B" if streamed else ""
    return (f"{result.plan.arena_bytes:>8,} B  predicted {result.predicted_instructions:>12,}"
            f"  {what}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(NAMES))
    parser.add_argument("--targets", default="host,cortex-m4")
    parser.add_argument("--suite", default=str(SUITE))
    parser.add_argument("--measure", action="store_true")
    args = parser.parse_args()
    for name in args.models.split(","):
        model = model_path(name, Path(args.suite))
        for target in args.targets.split(","):
            for optimize in ("memory", "balanced"):
                for mode in ("whole", "rows"):
                    print(f"{name:22s} {target:10s} {optimize:8s} {mode:10s} "
                          f"{row(model, target, optimize, mode)}", flush=True)
        if args.measure:
            for streamed in (False, True):
                report = verify(model, "cortex-m4", samples=5, optimize="memory",
                                input_stream=streamed, profile=False)
                print(f"{name:22s} cortex-m4 QEMU memory {'rows ' if streamed else 'whole'} "
                      f"{report.measured['instructions_per_inference']:>12,} instructions, "
                      f"{report.mismatched_outputs} mismatched of {report.samples}",
                      flush=True)


if __name__ == "__main__":
    main()
