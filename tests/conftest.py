"""Shared fixtures: the MLPerf Tiny models in ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
MLPERF_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"

INT8_MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
FLOAT_TFLITE_MODELS = ["kws_ref_model_float32", "vww_96_float", "pretrainedResnet", "ad01_fp32"]
KERAS_H5_MODELS = ["vww_96", "pretrainedResnet", "ad01"]


def mlperf_model(name: str, suffix: str = ".tflite") -> Path:
    """Path of an MLPerf Tiny model, or skip the test when ../shared is not there."""
    path = MLPERF_DIR / f"{name}{suffix}"
    if not path.exists():
        pytest.skip(f"MLPerf Tiny model {path} not available (../shared is absent)")
    return path
