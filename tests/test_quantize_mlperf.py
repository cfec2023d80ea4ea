"""On the MLPerf Tiny float models: tinyml's quantizer against the TFLite converter.

For each float model (the four float .tflite files and the three Keras .h5 files) both
quantizers calibrate on the same 200 seeded inputs drawn uniformly in the model's input range
(the range its int8 reference model's input quantization covers); on 100 other inputs the
output SQNR of each int8 model (run in TFLM) against the float model (LiteRT, or tf_keras for
.h5) is measured, and tinyml's must be at least the converter's minus 1 dB. tinyml's exported
.tflite must then equal tinyml's reference interpreter bit for bit in TFLM on every tensor,
agree with it op by op in LiteRT (up to LiteRT's 1-LSB roundings, see
quantize_oracles.litert_op_differences), and compile to C that ``tinyml verify --target host``
finds bit-exact.

kws_ref_model_float32 (whose convolution weights are dynamic-range int8, dequantized first)
and ad01_fp32 run in the default suite (about 20 s); the others take 10 to 40 s each and are
marked slow (``pytest -m slow tests/test_quantize_mlperf.py``; ``benchmarks/
quantize_vs_converter.py`` prints the same figures for every calibration method).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import FLOAT_TFLITE_MODELS, KERAS_H5_MODELS, mlperf_model
from support.quantize_oracles import (litert_op_differences, mlperf_comparison,
                                      tflm_tensor_mismatches)

FAST = {"kws_ref_model_float32", "ad01_fp32"}
MODELS = [pytest.param(name, ".tflite", marks=() if name in FAST else pytest.mark.slow)
          for name in FLOAT_TFLITE_MODELS] + \
         [pytest.param(name, ".h5", marks=pytest.mark.slow) for name in KERAS_H5_MODELS]


def _int8_inputs(graph, count: int = 10):
    shape = graph.tensors[graph.inputs[0]].shape
    rng = np.random.default_rng(11)
    inputs = [[rng.integers(-128, 128, shape).astype(np.int8)] for _ in range(count)]
    return inputs + [[np.full(shape, -128, np.int8)], [np.full(shape, 127, np.int8)]]


@pytest.mark.parametrize("name, suffix", MODELS)
def test_mlperf_quantization_vs_converter(name, suffix, tmp_path):
    from tinyml.frontends.tflite import load_tflite_bytes

    path = mlperf_model(name, suffix)
    result = mlperf_comparison(path)
    print(f"\n{path.name}: output SQNR vs float on 100 inputs: tinyml "
          f"{result['tinyml_sqnr_db']:.2f} dB ({result['tinyml_seconds']:.1f} s), converter "
          f"{result['converter_sqnr_db']:.2f} dB ({result['converter_seconds']:.1f} s)")
    assert result["tinyml_sqnr_db"] >= result["converter_sqnr_db"] - 1.0

    exported = result["tinyml_model"]
    graph = load_tflite_bytes(exported)
    inputs = _int8_inputs(graph)
    mismatches, compared = tflm_tensor_mismatches(exported, graph, inputs)
    assert compared >= len(inputs) * len(graph.ops)
    assert not mismatches, f"elements differing from TFLM per tensor: {mismatches}"
    for (index, kind), (worst, _) in litert_op_differences(exported, inputs[:4]).items():
        assert kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and worst <= 1, \
            f"LiteRT differs from the reference on op {index} ({kind}) by {worst} LSB"

    model_file = tmp_path / f"{name}_tinyml_int8.tflite"
    model_file.write_bytes(exported)
    verified = subprocess.run([sys.executable, "-m", "tinyml.cli", "verify", str(model_file),
                               "--samples", "20", "--json"], capture_output=True, text=True,
                              timeout=600)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["mismatched_outputs"] == 0
