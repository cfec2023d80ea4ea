"""Float reference interpreter vs LiteRT on the MLPerf Tiny float TFLite models."""

import numpy as np
import pytest

from conftest import FLOAT_TFLITE_MODELS, mlperf_model
from support.oracles import litert_interpreter, litert_run, relative_error
from tinyml.frontends import load_model
from tinyml.reference import run


@pytest.mark.parametrize("name", FLOAT_TFLITE_MODELS)
def test_float_tflite_matches_litert(name):
    path = mlperf_model(name)
    graph = load_model(path)
    oracle = litert_interpreter(path)
    shape = graph.tensors[graph.inputs[0]].shape
    rng = np.random.default_rng(1234)
    worst = 0.0
    for _ in range(10):
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        expected = litert_run(oracle, x)
        got = run(graph, [x])[graph.outputs[0]]
        worst = max(worst, relative_error(expected, got))
    assert worst < 1e-4, f"{name}: max relative error {worst:.3g}"
