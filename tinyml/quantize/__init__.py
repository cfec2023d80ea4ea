"""The quantizer: float models (Keras, TFLite, ONNX) to int8 graphs TFLM runs.

``quantize_model(model, calib)`` runs the whole pipeline:

1. import (any frontend) and the float passes (:mod:`.prepare`: constant folding, weight
   dequantization, batch-norm folding, activation fusion);
2. calibration (:mod:`.data` reads the samples, :mod:`.calibrate` runs the float reference
   interpreter with an observer per activation, :mod:`.observers`);
3. quantization of the graph (:mod:`.quantizer`, conventions in :mod:`.params`), with
   bias correction unless disabled: on the MLPerf Tiny float models it raises the output
   SQNR by 0.4 to 3.3 dB over plain min/max calibration, which alone ends up to 0.8 dB
   below the TFLite converter (on the ResNet; ``benchmarks/quantize_vs_converter.py``).

The result is a :class:`QuantizedModel`: the int8 graph (what ``tinyml compile`` and the
reference run), its float counterpart, and helpers to quantize inputs, to measure what
quantization cost (:func:`evaluate`, :mod:`.evaluation`) and to write a .tflite file
(:mod:`.tflite_export`).
"""

from __future__ import annotations

import importlib

#: Public names and the module defining each. They are imported on first use, so that the
#: command line can register ``tinyml quantize`` without importing numpy and the reference.
_EXPORTS = {
    "quantize_model": "pipeline", "QuantizedModel": "pipeline",
    "Dataset": "data", "load_dataset": "data",
    "evaluate": "evaluation", "QuantizationReport": "evaluation",
    "export_tflite": "tflite_export", "write_tflite": "tflite_export",
    "METHODS": "observers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tinyml.quantize' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"tinyml.quantize.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
