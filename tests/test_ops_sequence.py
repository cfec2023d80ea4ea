"""Recurrent layers as the TFLite converter writes them when unrolled.

Keras' SimpleRNN with ``unroll=True`` becomes one FULLY_CONNECTED per step for the input and
the recurrent state, ADD and TANH: ops tinyml compiles. The reference must equal TFLM on every
tensor and the C kernels must reproduce TFLM's tensors under ASan/UBSan. (UNIDIRECTIONAL_
SEQUENCE_LSTM is not supported: see ``tinyml ops``.)
"""

from __future__ import annotations

import numpy as np
import pytest

from support.c_harness import Harness, check_graph
from support.int8_op_models import compare_all_tensors, tflm_all_tensors
from support.oracles import tflm_interpreter
from support.tflite_zoo import convert
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.passes import run_passes


def simple_rnn(x):
    import tensorflow as tf
    L = tf.keras.layers
    return L.Dense(4)(L.SimpleRNN(8, unroll=True)(x))


def test_unrolled_simple_rnn_matches_tflm_on_every_tensor(tmp_path):
    data = convert(simple_rnn, [(1, 6, 5)]).read_bytes()
    graph = load_tflite_bytes(data, name="simple_rnn")
    kinds = [op.kind for op in graph.ops]
    assert kinds.count("TANH") == 6 and kinds.count("FULLY_CONNECTED") >= 12, kinds
    interpreter = tflm_interpreter(data)
    samples, total = [], {}
    for seed in range(3):
        x = np.random.default_rng(seed).integers(-128, 128, (1, 6, 5)).astype(np.int8)
        for tensor, count in compare_all_tensors(graph, interpreter, [x]).items():
            total[tensor] = total.get(tensor, 0) + count
        values = tflm_all_tensors(interpreter, [x], len(graph.tensors))
        samples.append({n: v for n, v in zip(graph.tensors, values) if v is not None})
    assert not total, total
    harness = Harness(tmp_path)
    bad = {k: v for k, v in check_graph(harness, run_passes(graph), samples, "rnn").items()
           if v}
    assert not bad, bad
