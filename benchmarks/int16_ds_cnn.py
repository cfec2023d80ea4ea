"""Instructions of 16x8 models (int16 activations) against their int8 twins on Cortex-M (QEMU).

Run: ``.venv/bin/python benchmarks/int16_ds_cnn.py``

The same Keras DS-CNN (tests/support/int16_models.py ``ds_cnn``) is converted twice by the
TFLite converter, full int8 and 16x8; MLPerf Tiny's kws model is its int8 file against the 16x8
conversion of its float file (tests/support/int16_mlperf.py; skipped without ../shared).
Each is verified bit-exact against TFLM in QEMU and its instructions per inference read from
``-icount`` (deterministic), on cortex-m4 (DSP kernels) and cortex-m3 (portable kernels),
with the per-op split of the cortex-m4 run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from support.int16_models import CASES, ds_cnn  # noqa: E402
from support.tflite_zoo import convert  # noqa: E402
from tinyml.verify import verify  # noqa: E402

MLPERF = REPO.parent / "shared" / "models" / "mlperf_tiny"


def measure(path: Path, target: str) -> dict:
    report = verify(path, target, samples=3, profile=target == "cortex-m4").to_json()
    assert report["mismatched_outputs"] == 0 and "tflite-micro" in report["oracle"], report
    return report


def by_op(report: dict) -> str:
    ops: dict[str, int] = defaultdict(int)
    for layer in report.get("layer_instructions", []):
        ops[layer["op"]] += layer["instructions"]
    return ", ".join(f"{op} {count:,}" for op, count in sorted(ops.items(), key=lambda i: -i[1]))


def main() -> None:
    shapes = CASES["ds_cnn"].shapes
    models = {"ds_cnn int8": convert(ds_cnn, shapes),
              "ds_cnn 16x8": convert(ds_cnn, shapes, activations="int16")}
    if (MLPERF / "kws_ref_model_float32.tflite").exists():
        from support.int16_mlperf import kws_16x8
        models["kws int8"] = MLPERF / "kws_ref_model.tflite"
        models["kws 16x8"] = kws_16x8(MLPERF / "kws_ref_model_float32.tflite",
                                      MLPERF / "kws_ref_model.tflite")
    print(f"{'model':<14}{'cortex-m4':>14}{'cortex-m3':>14}  flash(m4)  ram(m4)")
    splits = {}
    for name, path in models.items():
        m4, m3 = measure(path, "cortex-m4"), measure(path, "cortex-m3")
        splits[name] = by_op(m4)
        print(f"{name:<14}{m4['instructions_per_inference']:>14,}"
              f"{m3['instructions_per_inference']:>14,}  {m4['flash_bytes']:>9,}"
              f"  {m4['ram_bytes']:>7,}")
    for name, split in splits.items():
        print(f"{name} on cortex-m4 by op: {split}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
