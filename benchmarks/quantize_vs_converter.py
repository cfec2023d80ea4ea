"""Output SQNR after int8 quantization: tinyml's quantizer vs the TFLite converter, on the
MLPerf Tiny float models.

Run: ``.venv/bin/python benchmarks/quantize_vs_converter.py [--models NAME ...]``

For each float model (the .tflite files and the Keras .h5 files) both quantizers calibrate on
the same 200 seeded inputs drawn uniformly in the model's input range, and the output SQNR of
each int8 model (run in TFLM) against the float model is measured on 100 other inputs; see
``tests/support/quantize_oracles.py`` for the exact protocol. tinyml runs with every
calibration method (minmax, percentile, mse), with and without bias correction; the
converter once (its calibration is min/max). tests/test_quantize_mlperf.py requires tinyml's
default (minmax with bias correction) to reach the converter's SQNR minus 1 dB.

Random inputs are not the data the models were trained on: the figures compare the two
quantizers on equal terms, they do not predict accuracy on real data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLPERF_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"
MODELS = ["kws_ref_model_float32.tflite", "vww_96_float.tflite", "pretrainedResnet.tflite",
          "ad01_fp32.tflite", "vww_96.h5", "pretrainedResnet.h5", "ad01.h5"]
METHODS = ["minmax", "percentile", "mse"]

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS, help="file names in "
                        f"{MLPERF_DIR}")
    args = parser.parse_args()
    from support.quantize_oracles import mlperf_case, tinyml_on_case

    rows = []
    for name in args.models:
        path = MLPERF_DIR / name
        if not path.exists():
            print(f"skipping {name}: {path} not found", file=sys.stderr)
            continue
        case = mlperf_case(path)
        figures = {}
        for method in METHODS:
            for correction in (False, True):
                result = tinyml_on_case(case, method, correction)
                figures[(method, correction)] = (result["tinyml_sqnr_db"],
                                                 result["tinyml_seconds"])
        rows.append((name, case.converter_sqnr_db, case.converter_seconds, figures))
        print(f"done: {name}", file=sys.stderr, flush=True)

    header = ["model", "converter"] + [f"{m}{'+bc' if c else ''}" for m in METHODS
                                       for c in (False, True)]
    print("Output SQNR vs float (dB) on 100 inputs; 200 calibration inputs; '+bc' = bias "
          "correction (tinyml's default: minmax+bc)\n")
    print(" | ".join(f"{h:>17}" if i else f"{h:<29}" for i, h in enumerate(header)))
    for name, converter, _, figures in rows:
        cells = [f"{converter:17.2f}"]
        for method in METHODS:
            for correction in (False, True):
                sqnr = figures[(method, correction)][0]
                cells.append(f"{sqnr:9.2f} ({sqnr - converter:+5.2f})")
        print(" | ".join([f"{name:<29}"] + cells))
    print("\nCalibration time (s): converter (calibration + quantization) vs tinyml minmax+bc "
          "(float passes + calibration + quantization)")
    for name, _, seconds, figures in rows:
        print(f"  {name:<29} converter {seconds:6.1f}   tinyml {figures[('minmax', True)][1]:6.1f}")
    default = [figures[("minmax", True)][0] - converter for _, converter, _, figures in rows]
    if default:
        print(f"\ntinyml default minus converter: min {min(default):+.2f} dB, max "
              f"{max(default):+.2f} dB (bar: >= -1 dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
