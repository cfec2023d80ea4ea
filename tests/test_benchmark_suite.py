"""The benchmark suite's models (``benchmarks/tflm_bench/suite.py``) have the layer shapes they
are in the suite for.

The suite exists to measure kernels on shapes the MLPerf Tiny models lack; if a converter
change folded them away (a dilated depthwise convolution becoming SPACE_TO_BATCH_ND +
DEPTHWISE_CONV_2D + BATCH_TO_SPACE_ND, as it does with a dynamic batch) or a random
initialisation made the logits' scale too small for TFLM's softmax, the suite would silently
measure something else or fail. Each check reads the converted flatbuffer with the TFLite
schema bindings. Converting takes seconds per model: slow.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def suite():
    pytest.importorskip("tensorflow")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("tflm_bench.suite")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _operators(path: Path):
    """(graph, [(builtin name, options, input tensors, output tensor)]) of the main
    subgraph."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        ops.append((names[max(code.builtinCode, code.deprecatedBuiltinCode)], op.builtinOptions,
                    [graph.tensors[i] for i in op.inputs if i >= 0],
                    graph.tensors[op.outputs[0]]))
    return graph, ops


def _macs(ops) -> int:
    total = 0
    for kind, _, inputs, out in ops:
        pixels = int(out.shape[1]) * int(out.shape[2]) if len(out.shape) == 4 else 1
        if kind == "CONV_2D":
            cout, kh, kw, cin = inputs[1].shape
            total += pixels * cout * kh * kw * cin
        elif kind == "DEPTHWISE_CONV_2D":
            _, kh, kw, c = inputs[1].shape
            total += pixels * kh * kw * c
        elif kind == "FULLY_CONNECTED":
            total += int(inputs[1].shape[0]) * int(inputs[1].shape[1])
    return int(total)


def test_dilated_keyword_spotter_keeps_its_dilations(suite, tmp_path):
    graph, ops = _operators(suite.build("dilated_ds_kws", tmp_path))
    kinds = [kind for kind, *_ in ops]
    assert "SPACE_TO_BATCH_ND" not in kinds and "BATCH_TO_SPACE_ND" not in kinds
    depthwise = [(options, inputs) for kind, options, inputs, _ in ops
                 if kind == "DEPTHWISE_CONV_2D"]
    assert sorted(o.dilationHFactor for o, _ in depthwise) == [1, 1, 2, 4, 8]
    assert {o.dilationWFactor for o, _ in depthwise} == {1}
    assert {tuple(i[1].shape[1:3]) for _, i in depthwise} == {(3, 1), (5, 1)}
    assert any(o.strideH == 2 for o, _ in depthwise)
    first = graph.tensors[graph.inputs[0]]
    assert list(first.shape) == [1, 40, 1, 30] and first.type == 9  # int8
    assert 750_000 <= _macs(ops) <= 900_000


def test_softmax_inputs_have_a_scale_tflm_accepts(suite, tmp_path):
    """Batch normalisation statistics are set from data, so the logits of the deep models
    keep an int8 scale large enough for TFLM's softmax (beta * scale * 2^26 > 1)."""
    for name in ("mcunet_7x7", "mobilenet_v3_small_min"):
        _, ops = _operators(suite.build(name, tmp_path))
        kind, _, inputs, _ = ops[-1]
        assert kind == "SOFTMAX"
        assert float(inputs[0].quantization.scale[0]) * 2 ** 26 > 1e3


def test_odd_channels_and_stride_two_throughout(suite, tmp_path):
    for name in ("mcunet_5x5", "conv1d_sensor", "ds_cnn_odd"):
        _, ops = _operators(suite.build(name, tmp_path))
        convs = [(kind, options, inputs) for kind, options, inputs, _ in ops
                 if kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        channels = {inputs[1].shape[0 if kind == "CONV_2D" else 3] for kind, _, inputs in convs}
        assert any(c % 4 for c in channels), (name, channels)
        assert any(2 in (options.strideH, options.strideW) for _, options, _ in convs), name
