"""On real data: a small CNN trained here on scikit-learn's bundled digits (8x8
images of handwritten digits, 1797 samples, no download), quantized by tinyml on 200 training
images, against the float model and the TFLite converter's full-int8 model calibrated on the
same 200 images.

- float accuracy: the Keras model itself (TensorFlow);
- tinyml int8 accuracy: tinyml's exported .tflite run in TFLM on the test set, which must
  also equal the accuracy tinyml's own report computes with its reference interpreter;
- converter int8 accuracy: TFLiteConverter's model run in TFLM.

The model has batch normalizations, a depthwise convolution, ReLU and ReLU6, a max pool and a
softmax, so the Keras frontend's conversion, activation fusion and the fixed softmax output
quantization are all on the path. Takes about 40 s (training about 15 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from support.digits import CALIBRATION_IMAGES, tflm_accuracy, train_digits_cnn
from support.quantize_oracles import converter_int8_keras, tflm_tensor_mismatches
from tinyml.quantize import evaluate, load_dataset, quantize_model
from tinyml.quantize.params import quantize_array

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn (test extra) not installed")
    trained = train_digits_cnn(tmp_path_factory.mktemp("digits"))
    x_train, y_train = trained["x_train"], trained["y_train"]
    converter = converter_int8_keras(trained["model"], [x_train[i:i + 1]
                                                        for i in range(CALIBRATION_IMAGES)])
    return dict(trained, converter=converter)


def test_digits_cnn_int8_accuracy_matches_float_and_converter(digits):
    model = quantize_model(digits["path"], digits["calib"])
    assert model.calibration.samples == CALIBRATION_IMAGES
    assert "BATCH_NORM" not in {op.kind for op in model.source.ops}
    exported = model.to_tflite()
    (digits["folder"] / "digits_tinyml_int8.tflite").write_bytes(exported)

    x, y = digits["x_test"], digits["y_test"]
    tinyml_accuracy = tflm_accuracy(exported, x, y)
    converter_accuracy = tflm_accuracy(digits["converter"], x, y)
    float_accuracy = digits["float_accuracy"]
    report = evaluate(model, load_dataset(digits["test"], model.float_graph))
    print(f"\ndigits CNN on {len(y)} test images: float {100 * float_accuracy:.2f} %, tinyml "
          f"int8 {100 * tinyml_accuracy:.2f} %, converter int8 {100 * converter_accuracy:.2f} "
          f"%; tinyml output SQNR {report.output_sqnr_db:.1f} dB, top-1 agreement "
          f"{100 * report.top1_agreement:.2f} %")

    assert float_accuracy > 0.95, "the float model did not train"
    assert abs(report.float_accuracy - float_accuracy) < 1e-9  # tinyml's float = TensorFlow's
    assert report.int8_accuracy == tinyml_accuracy  # reference interpreter = TFLM
    assert abs(tinyml_accuracy - float_accuracy) <= 0.010
    assert tinyml_accuracy >= converter_accuracy - 0.005

    # The exported model computes exactly what tinyml's int8 graph computes, tensor by tensor.
    samples = [[quantize_array(x[i:i + 1], model.graph.tensors[model.graph.inputs[0]].quant)]
               for i in range(0, len(x), 60)]
    mismatches, compared = tflm_tensor_mismatches(exported, model.graph, samples)
    assert compared >= len(samples) * len(model.graph.ops) and not mismatches, mismatches


def test_digits_cnn_compiles_and_verifies_on_host(digits):
    path = digits["folder"] / "digits_tinyml_int8.tflite"
    if not path.exists():
        path.write_bytes(quantize_model(digits["path"], digits["calib"]).to_tflite())
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "verify", str(path),
                             "--target", "host", "--samples", "50", "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["mismatched_outputs"] == 0 and report["samples"] == 52
    assert "tflite-micro" in report["oracle"]
