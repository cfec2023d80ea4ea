"""Pruning the scikit-learn digits CNN: accuracy, MACs and cortex-m4 instructions.

Run: ``.venv/bin/python benchmarks/prune_digits.py [--epochs N] [--out DIR]``

The CNN of ``tests/support/digits.py`` is trained on the 70 % split (30 epochs), then
pruned by ``tinyml prune`` (fine-tuning on the same split, 10 epochs by default) with gradual
magnitude pruning at 50, 80 and 90 % and with 50 % of the channels removed (structured); every
model is quantized by ``tinyml quantize`` (200 calibration images) and run by ``tinyml run
--target cortex-m4`` in QEMU. Accuracies are on the 30 % test split: float (Keras) and int8
(tinyml's reference interpreter, which is bit-exact with TFLM).

Unstructured sparsity leaves MACs and instructions unchanged with dense int8 kernels (what
sparse storage saves is item 3 of the compression issue); "non-zero MACs" is what a sparse
kernel could skip. Channel pruning cuts both.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])

VARIANTS = [("gradual 50 %", 0.5, ()), ("gradual 80 %", 0.8, ()), ("gradual 90 %", 0.9, ()),
            ("channels 50 %", 0.5, ("--structured", "channels"))]


def main() -> int:
    from support.digits import cortex_m4_instructions, prune, quantize, train_digits_cnn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs")
    parser.add_argument("--out", type=Path, help="keep the models here")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="prune-digits-"))
    digits = train_digits_cnn(folder)
    rows = []
    dense_q = quantize(digits, digits["path"], folder / "dense_int8.tflite")
    dense_i = cortex_m4_instructions(folder / "dense_int8.tflite")
    rows.append(("dense", digits["accuracy"], dense_q["int8_accuracy"], None, None, None,
                 dense_i))
    macs = None
    for label, sparsity, extra in VARIANTS:
        name = label.replace(" ", "_").replace("_%", "")
        out = folder / f"{name}.keras"
        r = prune(digits, sparsity, out, "--epochs", str(args.epochs), *extra)
        macs = macs or r["macs"]["before"]
        q = quantize(digits, out, folder / f"{name}_int8.tflite")
        instructions = cortex_m4_instructions(folder / f"{name}_int8.tflite")
        rows.append((label, r["accuracy"]["after"], q["int8_accuracy"],
                     r["sparsity"]["all_kernels"], r["macs"]["after"], r["macs"]["nonzero_after"],
                     instructions))
        print(f"{label}: {r['accuracy']}", file=sys.stderr)
    print(f"digits CNN, {digits['folder']}; MACs dense {macs:,}")
    print(f"{'model':<14} {'float acc':>9} {'int8 acc':>9} {'kernel sp.':>10} {'MACs':>8} "
          f"{'nz MACs':>8} {'M4 instr.':>10} {'vs dense':>8}")
    for label, f, q, sp, m, nz, ins in rows:
        print(f"{label:<14} {100 * f:>8.2f}% {100 * q:>8.2f}% "
              f"{'-' if sp is None else f'{100 * sp:.1f}%':>10} {m or macs:>8,} "
              f"{nz or macs:>8,} {ins:>10,} {ins / dense_i:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
