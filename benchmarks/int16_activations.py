"""16x8 quantization (int16 activations, int8 weights): tinyml's exports measured in TFLM.

Run: ``.venv/bin/python benchmarks/int16_activations.py [--epochs N] [--skip-kws]``

Every figure comes from running the exported .tflite in TFLM (the ``tflite_micro`` package),
independently of tinyml's own kernels:

- scikit-learn digits CNN (``tests/support/digits.py``, trained with a fixed seed): test
  accuracy of the float Keras model, of tinyml's int8 export, of its 16x8 export
  (``--activations int16``) and of a mixed export (``--int16-layers``: the three layers the
  int8 report shows with the lowest isolated SQNR). Calibration: the 200 first training
  images. The bar: 16x8 at least as accurate as int8 and within 0.3 point of float.
- MLPerf Tiny kws (``kws_ref_model_float32.tflite``, its dynamic-range weights dequantized,
  as the quantizer starts from): output SQNR against float (LiteRT) on 100 seeded inputs,
  200 others to calibrate (``tests/support/quantize_oracles.py``), for tinyml int8, tinyml
  16x8 and the TFLite converter's own 16x8 quantization of the same float model on the same
  samples. The bar: tinyml's 16x8 at least 10 dB above its int8. Also tinyml's 16x8 without
  bias correction: its tensors' types and scales are then the converter's, tensor for tensor.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KWS = REPO.parent / "shared" / "models" / "mlperf_tiny" / "kws_ref_model_float32.tflite"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def worst_layers(model, data, count: int = 3) -> list[str]:
    """The ``count`` layers of an int8 quantization with the lowest isolated SQNR."""
    from tinyml.quantize import evaluate
    return evaluate(model, data).worst_layers(count)


def digits(epochs: int) -> dict:
    import numpy as np

    from support.digits import CALIBRATION_IMAGES, tflm_accuracy, train_digits_cnn
    from tinyml.quantize import load_dataset, quantize_model

    with tempfile.TemporaryDirectory() as folder:
        d = train_digits_cnn(Path(folder), epochs=epochs)
        calib = d["x_train"][:CALIBRATION_IMAGES]
        int8 = quantize_model(d["path"], calib)
        int16 = quantize_model(d["path"], calib, activations="int16")
        picked = worst_layers(int8, load_dataset(calib, int8.float_graph))
        mixed = quantize_model(d["path"], calib, int16_layers=picked)
        x, y = d["x_test"], d["y_test"]
        return {"float": d["float_accuracy"],
                "int8": tflm_accuracy(int8.to_tflite(), x, y),
                "16x8": tflm_accuracy(int16.to_tflite(), x, y),
                "mixed": tflm_accuracy(mixed.to_tflite(), x, y),
                "mixed_layers": picked, "test_images": int(np.size(y))}


def kws() -> dict:
    import numpy as np

    from support.quantize_oracles import (converter_16x8_tflite, mlperf_inputs,
                                          run_float_litert, run_int8_tflm, sqnr_db)
    from tinyml.frontends import load_model
    from tinyml.quantize import load_dataset, quantize_model
    from tinyml.quantize.prepare import prepare
    from tinyml.quantize.tflite_export import export_tflite

    graph = load_model(KWS)
    float_model = export_tflite(prepare(graph)[0])  # dynamic-range weights dequantized
    calib, evaluation = mlperf_inputs(KWS.stem, graph.tensors[graph.inputs[0]].shape)
    reference = run_float_litert(float_model, evaluation)
    figures = {}
    int8 = quantize_model(graph, np.stack(calib))
    figures["int8"] = sqnr_db(reference, run_int8_tflm(int8.to_tflite(), evaluation))
    int16 = quantize_model(graph, np.stack(calib), activations="int16")
    figures["16x8"] = sqnr_db(reference, run_int8_tflm(int16.to_tflite(), evaluation))
    plain = quantize_model(graph, np.stack(calib), activations="int16", bias_correction=False)
    figures["16x8 no bias corr."] = sqnr_db(reference, run_int8_tflm(plain.to_tflite(),
                                                                     evaluation))
    picked = worst_layers(int8, load_dataset(np.stack(calib[:50]), int8.float_graph))
    mixed = quantize_model(graph, np.stack(calib), int16_layers=picked)
    figures["mixed"] = sqnr_db(reference, run_int8_tflm(mixed.to_tflite(), evaluation))
    figures["mixed_layers"] = picked
    converter = converter_16x8_tflite(float_model, calib)
    figures["converter 16x8"] = sqnr_db(reference, run_int8_tflm(converter, evaluation))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="digits CNN training epochs")
    parser.add_argument("--skip-kws", action="store_true")
    args = parser.parse_args()

    d = digits(args.epochs)
    print(f"digits CNN ({args.epochs} epochs), test accuracy on {d['test_images']} images, "
          f"exports run in TFLM:")
    for key in ("float", "int8", "16x8", "mixed"):
        print(f"  {key:<6} {100 * d[key]:6.2f} %")
    print(f"  mixed = --int16-layers {','.join(d['mixed_layers'])}")
    print(f"  16x8 - int8: {100 * (d['16x8'] - d['int8']):+.2f} points (bar >= 0); "
          f"float - 16x8: {100 * (d['float'] - d['16x8']):+.2f} points (bar <= 0.3)")
    if args.skip_kws or not KWS.exists():
        print(f"kws: skipped ({KWS} not found)" if not args.skip_kws else "kws: skipped")
        return 0
    k = kws()
    print("kws, output SQNR vs float (LiteRT), 100 inputs, exports run in TFLM:")
    for key in ("int8", "16x8", "16x8 no bias corr.", "mixed", "converter 16x8"):
        print(f"  {key:<19} {k[key]:6.2f} dB")
    print(f"  mixed = --int16-layers {','.join(k['mixed_layers'])}")
    print(f"  tinyml 16x8 - int8: {k['16x8'] - k['int8']:+.2f} dB (bar >= +10 dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
