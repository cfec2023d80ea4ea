"""Fit what overlapped hand-overs cost in instructions (tinyml/schedule/overlap_cost.py).

    python benchmarks/calibrate_overlap_cost.py [--models a,b] [--target cortex-m4] [--write]
    python benchmarks/calibrate_overlap_cost.py --refit [--write]   # the stored samples again

Each model is profiled layer by layer in QEMU (``-icount``, deterministic) twice on the same
sample, planned with and without overlaps (``--patch off --optimize memory``, so that every
overlap the planner finds is used). The layers whose kernel runs differently when overlapped
(:func:`tinyml.schedule.overlap_cost.features`) give one sample each: their extra
instructions. The fitted coefficients and the samples, with the prediction beside each, are
printed; ``--write`` stores them in ``tinyml/schedule/data/overlap-<core>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from overlap import without_overlap  # noqa: E402
from tinyml import compiler  # noqa: E402
from tinyml.schedule import overlap_cost  # noqa: E402
from tinyml.verify import verify  # noqa: E402

MLPERF = REPO.parent / "shared" / "models" / "mlperf_tiny"
SUITE = REPO.parent / "tflm-deps" / "build" / "suite"
#: Models with overlapped DSP convolutions ending on a short block of pixels (8 and 4 pixel
#: blocks, 1 to 7 pixels short, 1x1 and windowed kernels).
MODELS = ["kws_ref_model", "ds_cnn_odd", "mcunet_5x5", "mobilenet_v2_035_96",
          "mobilenet_v3_small_min", "dilated_ds_kws"]


def model_path(name: str) -> Path:
    for folder in (MLPERF, SUITE):
        if (folder / f"{name}.tflite").exists():
            return folder / f"{name}.tflite"
    path = Path(name)
    if path.exists():
        return path
    raise SystemExit(f"calibrate_overlap_cost: no model '{name}' in {MLPERF} or {SUITE}")


def profile(path: Path, target: str) -> dict[str, int]:
    report = verify(path, target, samples=1, patch="off", optimize="memory", profile=True)
    if report.mismatched_outputs:
        raise SystemExit(f"{path.stem}: {report.mismatched_outputs} outputs differ from TFLM")
    return {layer["name"]: layer["instructions"]
            for layer in report.measured["layer_instructions"]}


def samples_of(path: Path, target: str) -> list[tuple[str, str, tuple[int, int], int]]:
    """(layer, function, features, measured extra instructions) of the model's layers whose
    overlap changes their kernel's work."""
    result = compiler.plan(path, target, patch="off", optimize="memory")
    graph, calls = result.graph, result.calls
    by_output = {out: call for call in calls for out in call.op.outputs}
    with without_overlap():
        before = profile(path, target)
    after = profile(path, target)
    found = []
    for _, t_in, t_out, delta in result.plan.overlaps:
        call = by_output[t_out]
        x = overlap_cost.features(call, graph.tensors[t_in].nbytes, graph.tensors[t_out].nbytes,
                                  delta)
        if x is not None:
            name = call.op.name
            found.append((name, call.function, x, after[name] - before[name]))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--refit", action="store_true",
                        help="fit the samples stored for the target's core (no QEMU runs)")
    args = parser.parse_args()
    target = compiler.load_target(args.target)
    if args.refit:
        path = overlap_cost.data_path(target.core)
        rows = json.loads(path.read_text())["samples"]
    else:
        rows = []
        for name in args.models.split(","):
            for layer, function, x, extra in samples_of(model_path(name), args.target):
                rows.append({"model": name, "layer": layer, "function": function,
                             "features": list(x), "measured": extra})
                print(f"{name:24s} {layer[-36:]:36s} {function:22s} channels {x[0]:5d} "
                      f"short pixels {x[1] // x[0]} measured {extra:+7d}", flush=True)
    model = overlap_cost.fit(rows, target.core)
    print(f"per output channel {model.per_channel:.2f}, per channel and short pixel "
          f"{model.per_channel_pixel:.2f}, per channel of 7-pixel blocks "
          f"{model.per_channel_block7:.2f}, per channel of a windowed kernel "
          f"{model.per_channel_window:.2f}")
    for s in model.samples:
        print(f"{s['model']:24s} {s['layer'][-36:]:36s} measured {s['measured']:+7d} "
              f"predicted {s['predicted']:+7d}")
    if args.write:
        path = overlap_cost.data_path(target.core)
        path.write_text(json.dumps(model.to_json(), indent=1) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
