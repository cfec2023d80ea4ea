"""Int8 reference kernels vs TFLM, op by op, on small models the TFLite converter builds.

Each case of the op zoo (``tests/support/int8_op_models.py``) is a Keras function quantized
by ``tflite_zoo.convert``; the test first checks that the converter really emitted the op
(and variant) the case is about, then runs TFLM with every tensor preserved and requires
every tensor of the reference interpreter to be equal, bit for bit, on several seeded
inputs. Paths the converter never takes (MEAN with equal input
and output quantization, CONCATENATION of differently quantized inputs) are reached by
editing the quantization of one tensor in the converted flatbuffer.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from support.int8_op_models import (CASES, compare_all_tensors, edit_flatbuffer, first_op,
                                    model_bytes, op_of_kind, random_inputs)
from support.oracles import tflm_interpreter
from tinyml.errors import UnsupportedOpError
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.reference import run
from tinyml.reference.fixedpoint import tflite_round

SEEDS = range(6)


@pytest.mark.parametrize("name", list(CASES))
def test_int8_op_matches_tflm(name):
    case = CASES[name]
    data = model_bytes(case)
    graph = load_tflite_bytes(data, name=name)
    kinds = {op.kind for op in graph.ops}
    assert set(case.ops) <= kinds, f"converter emitted {sorted(kinds)}, expected {case.ops}"
    if case.check is not None:
        case.check(graph)
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    for seed in SEEDS:
        inputs = random_inputs(graph, np.random.default_rng(seed))
        for tensor, count in compare_all_tensors(graph, interpreter, inputs).items():
            total[tensor] = total.get(tensor, 0) + count
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"


def test_concatenation_of_differently_quantized_inputs_is_refused_like_tflm():
    """TFLM rejects an int8 CONCATENATION whose inputs are quantized differently from its
    output; so does the reference, with a one-line error naming the layer."""
    def rescale_first_input(model, schema):
        sub, op = first_op(model, schema, "CONCATENATION")
        q = sub.tensors[op.inputs[0]].quantization
        q.scale = [q.scale[0] * 2]

    data = edit_flatbuffer(model_bytes(CASES["concat_same_scales"]), rescale_first_input)
    with pytest.raises(RuntimeError):
        tflm_interpreter(data)
    graph = load_tflite_bytes(data, name="concat")
    x = np.zeros(graph.tensors[graph.inputs[0]].shape, np.int8)
    with pytest.raises(UnsupportedOpError, match="CONCATENATION.*quantized differently"):
        run(graph, [x])


def test_float_quantize_rounds_ties_like_tflm():
    """QUANTIZE float -> int8 at the rounding boundaries: inputs whose x/scale is a half
    integer (ties go away from zero) and their float32 neighbours on both sides."""
    case = CASES["float_io_quantize_dequantize"]
    data = model_bytes(case)
    graph = load_tflite_bytes(data, name="float_io")
    quantize = op_of_kind(graph, "QUANTIZE")
    scale = np.float32(graph.tensors[quantize.outputs[0]].scale())
    halves = (np.arange(-40, 40, dtype=np.float32) + np.float32(0.5)) * scale
    values = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)),
                             np.nextafter(halves, np.float32(-np.inf))])
    shape = graph.tensors[graph.inputs[0]].shape
    values = np.resize(values, (-(-values.size // shape[-1]), shape[-1])).astype(np.float32)
    interpreter = tflm_interpreter(data)
    total = 0
    for row in values:
        total += sum(compare_all_tensors(graph, interpreter, [row.reshape(shape)]).values())
    assert total == 0, f"{total} elements differ from TFLM"


def test_tflite_round_rounds_the_exact_value():
    """``TfLiteRound`` is std::round of the exact value. Adding 0.5 in float32 first is wrong
    for 0.49999997 (the sum rounds up to 1.0); exact rational arithmetic is the oracle."""
    rng = np.random.default_rng(7)
    below_half = np.nextafter(np.float32(0.5), np.float32(0))
    values = np.concatenate([
        np.float32([below_half, -below_half, 0.5, -0.5, 1.5, -2.5, 8388607.5, -8388609.0]),
        (rng.integers(-300, 300, 200) + np.float32(0.5)).astype(np.float32),
        rng.normal(0, 100, 200).astype(np.float32)])
    expected = [math.copysign(math.floor(abs(Fraction(float(v))) + Fraction(1, 2)), v)
                for v in values]
    assert tflite_round(values).tolist() == expected
    assert [tflite_round(v) for v in values] == expected
    assert tflite_round(values.astype(np.float64)).tolist() == expected
