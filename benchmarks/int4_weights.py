"""Int4 weights on the MLPerf Tiny float models: output SQNR of each int4 rounding against int8.

Run: ``.venv/bin/python benchmarks/int4_weights.py [--models NAME ...] [--roundings ...]``

For each float model the quantizer calibrates on the 200 seeded inputs of
``tests/support/quantize_oracles.py`` (uniform in the model's input range) and the output
SQNR against the float model (LiteRT; kws with its dynamic-range weights dequantized, as the
quantizer starts from) is measured on 100 other inputs, running the exported .tflite in TFLM.
Rows: int8 weights, then every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED filter int4
with each rounding of :mod:`tinyml.quantize.int4` (activations stay int8; bias correction on,
the default). Weight bytes count every constant as stored (int4 two per byte).

The issue's bar: the better rounding (the default, ``gptq-search``) at least 2 dB above RTN
on every model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLPERF_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"
MODELS = ["kws_ref_model_float32.tflite", "vww_96_float.tflite", "pretrainedResnet.tflite",
          "ad01_fp32.tflite"]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def float_reference(path: Path, graph, evaluation):
    """The float model's outputs (LiteRT), on the weights the quantizer starts from."""
    from support.quantize_oracles import run_float_litert
    from tinyml.quantize.prepare import prepare
    from tinyml.quantize.tflite_export import export_tflite

    model = path.read_bytes()
    if any(t.is_constant and t.dtype == "int8" for t in graph.tensors.values()):
        model = export_tflite(prepare(graph)[0])  # dynamic-range weights, dequantized
    return run_float_litert(model, evaluation)


def measure(path: Path, roundings: list[str]) -> dict:
    import numpy as np

    from support.quantize_oracles import mlperf_inputs, run_int8_tflm, sqnr_db
    from tinyml.frontends import load_model
    from tinyml.quantize import quantize_model

    graph = load_model(path)
    calib, evaluation = mlperf_inputs(path.stem, graph.tensors[graph.inputs[0]].shape)
    reference = float_reference(path, graph, evaluation)
    rows = {}
    for label, weights, rounding in [("int8", "int8", "rtn")] + \
            [(r, "int4", r) for r in roundings]:
        start = time.perf_counter()
        model = quantize_model(graph, np.stack(calib), weights=weights, int4_rounding=rounding)
        seconds = time.perf_counter() - start
        exported = model.to_tflite()
        rows[label] = dict(sqnr=sqnr_db(reference, run_int8_tflm(exported, evaluation)),
                           bytes=model.summary()["weight_bytes"], seconds=seconds)
        print(f"  {path.name} {label}: {rows[label]['sqnr']:.2f} dB, "
              f"{rows[label]['bytes']:,} B, {seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def main() -> int:
    from tinyml.quantize.int4 import DEFAULT_ROUNDING, ROUNDINGS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS,
                        help=f"file names in {MLPERF_DIR}")
    parser.add_argument("--roundings", nargs="*", default=list(ROUNDINGS),
                        choices=ROUNDINGS, help="int4 roundings to measure (default: all)")
    args = parser.parse_args()
    if "rtn" not in args.roundings:
        args.roundings.insert(0, "rtn")

    results = {}
    for name in args.models:
        path = MLPERF_DIR / name
        if not path.exists():
            print(f"skipping {name}: {path} not found", file=sys.stderr)
            continue
        results[name] = measure(path, args.roundings)

    better = [r for r in args.roundings if r != "rtn"]
    print("Output SQNR vs float (dB), 100 inputs, 200 calibration inputs, exported .tflite in "
          "TFLM; int4 = every conv/depthwise/dense filter\n")
    header = ["model", "int8", "int4 rtn"] + [f"int4 {r}" for r in better] + \
        ["bytes int8", "bytes int4", f"{DEFAULT_ROUNDING} - rtn"]
    print(" | ".join(f"{h:>16}" if i else f"{h:<29}" for i, h in enumerate(header)))
    gains = []
    for name, rows in results.items():
        cells = [f"{rows['int8']['sqnr']:16.2f}", f"{rows['rtn']['sqnr']:16.2f}"]
        cells += [f"{rows[r]['sqnr']:16.2f}" for r in better]
        cells += [f"{rows['int8']['bytes']:16,}", f"{rows['rtn']['bytes']:16,}"]
        if DEFAULT_ROUNDING in rows:
            gain = rows[DEFAULT_ROUNDING]["sqnr"] - rows["rtn"]["sqnr"]
            gains.append(gain)
            cells.append(f"{gain:+16.2f}")
        print(" | ".join([f"{name:<29}"] + cells))
    if gains:
        print(f"\n{DEFAULT_ROUNDING} minus RTN: min {min(gains):+.2f} dB (bar: >= +2 dB on "
              f"every model)")
    print("\nQuantization time (s): " + "; ".join(
        f"{name}: " + ", ".join(f"{k} {v['seconds']:.0f}" for k, v in rows.items())
        for name, rows in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
