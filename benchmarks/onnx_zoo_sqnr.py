"""Output SQNR of the op zoo through ONNX: tf2onnx exports of small float Keras models (one
per op family member), quantized by tinyml (``compile --calib``), against onnxruntime's float
outputs.

Run: ``.venv/bin/python benchmarks/onnx_zoo_sqnr.py [--models NAME ...]``

The protocol is ``tests/support/onnx_zoo.py``'s ``accuracy``: 64 calibration samples and 32
fresh evaluation samples from each model's calibration distribution; the int8 graph runs in
tinyml's reference interpreter (the compiled C equals it: tests/test_onnx_zoo_sqnr.py
verifies that). Index and BOOL outputs show the share of elements equal to onnxruntime's.
tests/test_onnx_zoo_sqnr.py requires >= 25 dB (>= 90 % agreement).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    from support.onnx_zoo import MIN_AGREEMENT, MIN_SQNR_DB, ZOO, accuracy, export

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(ZOO), choices=list(ZOO))
    args = parser.parse_args()
    paths = export(args.models)
    table = Table(title=f"op zoo via ONNX: int8 vs onnxruntime float (pass: >= {MIN_SQNR_DB:g} "
                        f"dB, >= {100 * MIN_AGREEMENT:g} % agreement)")
    for column in ("model", "op family members", "ONNX ops", "int8 ops", "SQNR dB",
                   "agreement", "pass"):
        table.add_column(column, justify="right" if column in ("SQNR dB", "agreement")
                         else "left")
    failed = 0
    for name in args.models:
        result = accuracy(name, paths[name])
        failed += not result.passed()
        table.add_row(name, ZOO[name].ops, " ".join(result.onnx_ops),
                      " ".join(result.int8_ops),
                      " ".join(f"{v:.1f}" for v in result.sqnr.values()) or "-",
                      " ".join(f"{100 * v:.1f} %" for v in result.agreement.values()) or "-",
                      "yes" if result.passed() else "[red]NO[/red]")
    console = Console(width=160)  # a wide table, also when written to a file
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
