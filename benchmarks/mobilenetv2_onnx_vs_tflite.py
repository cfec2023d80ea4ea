"""Acceptance check of the conv family's graph clean-ups: the same Keras MobileNetV2 through
ONNX and through TFLite must plan the same SRAM.

``keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)`` is
exported twice: by tf2onnx (float ONNX, quantized by tinyml with ``--calib random``, as
``tinyml compile model.onnx --calib random --target cortex-m4`` does) and by the
TFLiteConverter (full int8). Both are planned for cortex-m4 by ``tinyml.compiler.plan`` and
their peak SRAM (the arena) compared: the ONNX one must be within 5 % of the TFLite one.

Untrained, the classifier's logits span ~1e-9, which TFLM's int8 SOFTMAX cannot run (its
``beta * input_scale`` multiplier would be below 1 / 2^26): the script scales the classifier's
kernel so the logits have unit spread, which changes no shape. With the 1000 classes the
classifier alone holds 1.28 MB of int8 weights, more than cortex-m4's 512 KB of flash, so the
full build is refused for flash whatever the frontend; ``--classes 2`` (a VWW-style head)
builds and measures the firmware too (``--build``).

    python benchmarks/mobilenetv2_onnx_vs_tflite.py [--classes 1000] [--build] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tinyml

_MAKE = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
import tf2onnx
import tf_keras
out, classes = sys.argv[1], int(sys.argv[2])
tf_keras.utils.set_random_seed(0)
model = tf_keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None,
                                          classes=classes)
probe = np.random.default_rng(1).uniform(-1, 1, (4, 96, 96, 3)).astype(np.float32)
features = tf_keras.Model(model.input, model.layers[-2].output)(probe).numpy()
dense = model.layers[-1]
kernel, bias = dense.get_weights()
dense.set_weights([kernel / max(float((features @ kernel).std()), 1e-30), bias])
spec = [tf.TensorSpec((1, 96, 96, 3), tf.float32, name="input")]
tf2onnx.convert.from_keras(model, input_signature=spec, opset=13,
                           output_path=f"{out}/model.onnx")
converter = tf.lite.TFLiteConverter.from_keras_model(model)
rng = np.random.default_rng(0)
def representative():
    for _ in range(20):
        yield [rng.uniform(-1, 1, (1, 96, 96, 3)).astype(np.float32)]
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8
open(f"{out}/model_int8.tflite", "wb").write(converter.convert())
"""


def make_models(directory: Path, classes: int) -> tuple[Path, Path]:
    onnx_path, tflite_path = directory / "model.onnx", directory / "model_int8.tflite"
    if not (onnx_path.exists() and tflite_path.exists()):
        subprocess.run([sys.executable, "-c", _MAKE, str(directory), str(classes)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return onnx_path, tflite_path


def measure(classes: int, workdir: Path, build: bool = False) -> dict:
    from tinyml.compiler import compile_model, plan
    from tinyml.quantize import quantize_model

    directory = workdir / f"mobilenetv2_035_96_c{classes}"
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path, tflite_path = make_models(directory, classes)

    def quantize(graph):
        return quantize_model(graph, "random").graph

    result = {"classes": classes}
    for label, path, q in (("onnx", onnx_path, quantize), ("tflite", tflite_path, None)):
        compiled = plan(path, "cortex-m4", q)
        kinds = [op.kind for op in compiled.graph.ops]
        result[label] = {"peak_sram_bytes": compiled.plan.peak_sram_bytes,
                         "peak_sram_bytes_layerwise":
                             (compiled.layerwise_plan or compiled.plan).peak_sram_bytes,
                         "ops": len(kinds), "pads": kinds.count("PAD"),
                         "muls": kinds.count("MUL"), "adds": kinds.count("ADD")}
        if build:
            out = compile_model(path, "cortex-m4", directory / f"{label}_project", quantize=q)
            result[label]["ram_bytes"] = out.sizes["ram_bytes"]
            result[label]["flash_bytes"] = out.sizes["flash_bytes"]
    result["ratio"] = result["onnx"]["peak_sram_bytes"] / result["tflite"]["peak_sram_bytes"]
    result["within_5_percent"] = abs(result["ratio"] - 1) <= 0.05
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--build", action="store_true", help="also build the firmware")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "tinyml-mobilenetv2-bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = measure(args.classes, args.workdir, args.build)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for label in ("onnx", "tflite"):
            r = result[label]
            print(f"{label:7s} peak SRAM {r['peak_sram_bytes']:>9,} B  (layer by layer "
                  f"{r['peak_sram_bytes_layerwise']:,} B; {r['ops']} ops, {r['pads']} PAD, "
                  f"{r['muls']} MUL)")
        print(f"ratio {result['ratio']:.3f}: "
              f"{'within' if result['within_5_percent'] else 'NOT within'} 5 %")
    return 0 if result["within_5_percent"] else 1


if __name__ == "__main__":
    sys.exit(main())
