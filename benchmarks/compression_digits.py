"""Compression of the scikit-learn digits CNN: accuracy, weight flash and firmware flash.

Run: ``.venv/bin/python benchmarks/compression_digits.py [--epochs N] [--out DIR] [--plot PNG]``

The CNN of ``tests/support/digits.py`` is trained on the 70 % split (30 epochs). Each variant
goes through the CLI as a user would run it:

- dense int8; int4 weights rounded to nearest (``--weights int4 --int4-rounding rtn``) and with
  the better rounding (the default, GPTQ-style error feedback plus scale search);
- ``tinyml prune`` at 50, 80 and 90 % (gradual magnitude pruning, 10 epochs of fine-tuning),
  quantized to int8; the compiler stores a layer as sparse rows where they take less flash;
- 50 % of the channels removed (``--structured channels``);
- 80 % pruning with int4 weights.

Every model is quantized by ``tinyml quantize`` on 200 training images; accuracies are on the
540 test images (int8: tinyml's reference interpreter, bit-exact with TFLM). ``tinyml compile
--target cortex-m4`` gives the bytes of the weights (weights.c) with each layer's storage
format, and the firmware's flash from the ELF; ``tinyml run`` its instructions in QEMU.
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

INT4 = ("--weights", "int4")
#: label, pruning (sparsity, extra prune options) or None, quantize options
VARIANTS = [
    ("dense int8", None, ()),
    ("int4, round to nearest", None, INT4 + ("--int4-rounding", "rtn")),
    ("int4, better rounding", None, INT4),
    ("gradual 50 %", (0.5, ()), ()),
    ("gradual 80 %", (0.8, ()), ()),
    ("gradual 90 %", (0.9, ()), ()),
    ("channels 50 %", (0.5, ("--structured", "channels")), ()),
    ("gradual 80 % + int4", (0.8, ()), INT4),
]


def formats(layers: list[dict]) -> str:
    """How the weight filters are stored, e.g. "sparse4 x3, dense int4 x2"."""
    counts: dict[str, int] = {}
    for layer in layers:
        if layer["format"] != "-":
            counts[layer["format"]] = counts.get(layer["format"], 0) + 1
    return ", ".join(f"{f} x{n}" for f, n in counts.items())


def measure(digits: dict, label: str, pruning, quantize_options, folder: Path,
            epochs: int, pruned: dict) -> dict:
    from support.digits import cli_json, prune, quantize

    model, float_accuracy = digits["path"], digits["float_accuracy"]
    if pruning is not None:
        sparsity, extra = pruning
        key = (sparsity, extra)
        if key not in pruned:  # 80 % is pruned once, for int8 and int4
            out = folder / f"pruned_{int(100 * sparsity)}{'_ch' if extra else ''}.keras"
            pruned[key] = (out, prune(digits, sparsity, out, "--epochs", str(epochs),
                                      *extra)["accuracy"]["after"])
        model, float_accuracy = pruned[key]
    name = label.replace(" ", "_").replace(",", "").replace("%", "pc").replace("+", "and")
    tflite = folder / f"{name}.tflite"
    q = quantize(digits, model, tflite, *quantize_options)
    c = cli_json("compile", str(tflite), "--target", "cortex-m4", "-o", str(folder / name))
    run = cli_json("run", str(tflite), "--target", "cortex-m4")
    return dict(label=label, float_accuracy=float_accuracy, int8_accuracy=q["int8_accuracy"],
                weights_bytes=c["weights_bytes"], flash_bytes=c["flash_bytes"],
                filter_bytes=sum(layer["weights_bytes"] for layer in c["layers_flash"]),
                formats=formats(c["layers_flash"]), instructions=int(run["instructions"]))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = rows[0]["filter_bytes"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for row in rows:
        x, y = row["filter_bytes"] / dense, 100 * row["int8_accuracy"]
        ax.scatter(x, y)
        ax.annotate(row["label"], (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ax.set_xlabel("weight filter flash / dense int8")
    ax.set_ylabel("test accuracy of the compiled model (%)")
    ax.set_title("digits CNN: accuracy against weight flash (tinyml, cortex-m4)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    from support.digits import train_digits_cnn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs of prune")
    parser.add_argument("--out", type=Path, help="keep the models here")
    parser.add_argument("--plot", type=Path, help="write the accuracy/flash plot here")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="compression-digits-"))
    digits = train_digits_cnn(folder)
    pruned: dict = {}
    rows = []
    for label, pruning, options in VARIANTS:
        rows.append(measure(digits, label, pruning, options, folder, args.epochs, pruned))
        print(f"{label}: done", file=sys.stderr)
    dense = rows[0]
    print(f"digits CNN ({folder}); accuracies on {len(digits['y_test'])} test images")
    print("| model | float accuracy | int8 accuracy | weight filters | vs dense | all weights.c "
          "| firmware flash | cortex-m4 instructions | storage |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {100 * r['float_accuracy']:.2f} % | "
              f"{100 * r['int8_accuracy']:.2f} % | {r['filter_bytes']:,} B | "
              f"{r['filter_bytes'] / dense['filter_bytes']:.3f}x | {r['weights_bytes']:,} B | "
              f"{r['flash_bytes']:,} B | {r['instructions']:,} | {r['formats']} |")
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
