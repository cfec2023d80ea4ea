"""On-device learning end to end: a CNN trained on digits 0-4 learns 5-9 on the device.

A small CNN is trained (TensorFlow/Keras) on scikit-learn's digits 0-4, quantized by tinyml,
compiled with ``--trainable last:1 --max-classes 10`` for the target and started as a
learning device (QEMU for an emulated Cortex-M target, natively for ``host``). One pass over
a 500-sample stream (60 % digits 5-9, 40 % rehearsal of 0-4; predict, then one SGD step per
sample, lr 0.05 / (1 + t / 40)) teaches the classifier head the new classes. The device then
predicts the held-out images (30 % of the data set, never streamed).

Prints new_class_accuracy (held-out 5-9), old_class_accuracy (held-out 0-4),
train_ram_bytes (what training adds to RAM), samples_seen, and the measured image's RAM
(.data + .bss + stack), which holds the training memory. Takes about a minute (training the
CNN about 15 s).

    python benchmarks/ondevice_learning.py [--target cortex-m4] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinyml.learn.device import compile_trainable, open_device  # noqa: E402
from tinyml.learn.digits_task import (LEARNING_RATE, LR_DECAY_STEPS, NEW_CLASSES,  # noqa: E402
                                      OLD_CLASSES, learning_stream, load_digits_split,
                                      train_backbone_model)
from tinyml.learn.runner import device_runner  # noqa: E402
from tinyml.learn.stream import LearningStream, group_accuracy, run_stream  # noqa: E402
from tinyml.targets import load_target  # noqa: E402

STREAM_SAMPLES = 500


def run(target: str, folder: Path, samples: int = STREAM_SAMPLES) -> dict:
    split = load_digits_split()
    model = train_backbone_model(split, folder)
    compilation = compile_trainable(model, target, folder / "project", trainable="last:1",
                                    max_classes=10)
    report = compilation.report()
    x, y = learning_stream(split, samples)
    stream = LearningStream(x, y, split.x_test, split.y_test)
    with open_device(compilation.project.output_dir, device_runner(load_target(target))) as dev:
        result = run_stream(dev, stream, lr=LEARNING_RATE, decay_steps=LR_DECAY_STEPS)
    final = result.final()
    figures = {
        "target": target,
        "new_class_accuracy": group_accuracy(final, split.y_test, NEW_CLASSES),
        "old_class_accuracy": group_accuracy(final, split.y_test, OLD_CLASSES),
        "train_ram_bytes": report["train_ram_bytes"],
        "samples_seen": result.samples_seen,
        "prequential_accuracy": result.prequential_accuracy,
        "rejected_steps": int((~result.applied).sum()),
        "train_params": report["train_params"],
        "arena_bytes": report["arena_bytes"],
    }
    for key in ("ram_bytes", "data_bytes", "bss_bytes", "stack_bytes", "flash_bytes"):
        if report.get(key) is not None:
            figures[key] = report[key]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tinyml-ondevice-") as tmp:
        figures = run(args.target, Path(tmp))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
    ok = figures["new_class_accuracy"] >= 0.85 and figures["old_class_accuracy"] >= 0.90
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
