"""Int8 SOFTMAX, LOGISTIC, HARD_SWISH, RELU and RELU6 vs TFLM, bit for bit.

These kernels compute with gemmlowp fixed-point math (softmax, logistic), int16 multipliers
(hard-swish) or TFLM-specific requantization (RELU rescales, RELU6 only clamps), so each is
checked on small models that TensorFlow's converter quantizes:

- element-wise ops get all 256 int8 codes at once (a 1x16x16x1 input holding -128..127), for
  calibration ranges whose input scales differ by orders of magnitude;
- softmax gets many seeded rows mixing saturated and spread-out distributions, on 1-D, 2-D and
  4-D inputs, with several beta values (the converter always writes beta = 1, so beta is
  edited in the flatbuffer) and behind a dense layer with small weights.

The models and the oracle are in ``tests/support/nonlinear_models.py``. Every op of these
kinds is evaluated on the exact input values TFLM saw (so a difference in
another kernel cannot hide or cause a mismatch) and its output must equal TFLM's tensor;
single-op models additionally run end to end through the reference interpreter.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from support.nonlinear_models import (ALL_CODES, CALIBRATIONS, ELEMENTWISE, SOFTMAX_SHAPES,
                                      Oracle, count_differences, dense_softmax, model_bytes,
                                      oracle_of, random_quantization, relu, relu6,
                                      set_quantization, set_softmax_beta, sigmoid, softmax,
                                      softmax_rows)
from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.ir import Op
from tinyml.ir.ops import ClipAttrs
from tinyml.reference import run
from tinyml.reference.kernels import KERNELS, KernelCall


def _bad(counts: dict[str, int]) -> dict[str, int]:
    return {name: n for name, n in counts.items() if n}


# --------------------------------------------------------------------------------------------
# Element-wise ops: all 256 codes


@pytest.mark.parametrize("calibration", list(CALIBRATIONS))
@pytest.mark.parametrize("kind", list(ELEMENTWISE))
def test_elementwise_all_codes(kind, calibration):
    oracle = oracle_of(ELEMENTWISE[kind], ALL_CODES.shape, calibration)
    assert oracle.kinds() == [kind]
    assert _bad(oracle.mismatches(ALL_CODES)) == {}


@pytest.mark.parametrize("kind", list(ELEMENTWISE))
def test_elementwise_random_quantization(kind):
    # Converted models tie the output scale to the input range; edited ones reach arbitrary
    # scale pairs and zero points, i.e. many multipliers, shifts and rounding boundaries.
    data = model_bytes(ELEMENTWISE[kind], ALL_CODES.shape)
    rng = np.random.default_rng(2024)
    for _ in range(40):
        edits = random_quantization(kind, rng)
        oracle = Oracle(set_quantization(data, edits), name=kind.lower())
        assert _bad(oracle.mismatches(ALL_CODES)) == {}, edits


def test_calibrations_span_orders_of_magnitude():
    scales = []
    for calibration in CALIBRATIONS:
        g = oracle_of(sigmoid, ALL_CODES.shape, calibration).graph
        x = g.tensors[g.inputs[0]]
        scales.append(x.scale())
        if calibration == "skewed":
            assert x.zero_point() < -60  # asymmetric: a far-from-zero zero point is covered
    assert max(scales) / min(scales) > 1e4


def test_logistic_saturates_outside_its_input_radius():
    # With a large input scale only a few codes lie inside TFLM's input radius; the rest
    # must saturate to exactly -128 / 127.
    oracle = oracle_of(sigmoid, ALL_CODES.shape, "huge")
    out = oracle.tflm_tensors(ALL_CODES)[oracle.graph.outputs[0]]
    assert {-128, 127} <= set(np.unique(out).tolist())
    assert _bad(oracle.mismatches(ALL_CODES)) == {}


def test_relu6_clamps_input_codes_and_relu_requantizes():
    # The converter gives both outputs their own scale: RELU rescales to it, TFLM's RELU6
    # ignores it and keeps the input codes between the input zero point and 6.0.
    for build in (relu, relu6):
        g = oracle_of(build, ALL_CODES.shape, "wide").graph
        x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
        assert (x.scale(), x.zero_point()) != (y.scale(), y.zero_point())
        out = run(g, [ALL_CODES])[g.outputs[0]].ravel()
        if build is relu:
            assert out.min() == y.zero_point()
        else:
            six = x.zero_point() + round(6.0 / x.scale())
            np.testing.assert_array_equal(out, np.clip(ALL_CODES.ravel(), x.zero_point(), six))


def test_clip_zero_to_infinity_is_relu():
    oracle = oracle_of(relu, ALL_CODES.shape, "skewed")
    (op,) = oracle.graph.ops
    expected = oracle.tflm_tensors(ALL_CODES)[op.outputs[0]]
    clip = Op("CLIP", op.name, op.inputs, op.outputs, ClipAttrs(0.0, math.inf))
    call = KernelCall(clip, [ALL_CODES], oracle.graph.op_inputs(op), oracle.graph.op_outputs(op))
    assert count_differences(KERNELS["CLIP"](call), expected) == 0


# --------------------------------------------------------------------------------------------
# Softmax


@pytest.mark.parametrize("calibration", ["tiny", "unit", "wide", "huge"])
@pytest.mark.parametrize("shape", list(SOFTMAX_SHAPES))
def test_softmax_seeded_rows(shape, calibration):
    oracle = oracle_of(softmax, SOFTMAX_SHAPES[shape], calibration)
    assert oracle.kinds() == ["SOFTMAX"]
    assert oracle.graph.tensors[oracle.graph.inputs[0]].shape == SOFTMAX_SHAPES[shape]
    rng = np.random.default_rng(7)
    total: dict[str, int] = {}
    for _ in range(12):
        for name, n in oracle.mismatches(softmax_rows(rng, SOFTMAX_SHAPES[shape])).items():
            total[name] = total.get(name, 0) + n
    assert _bad(total) == {}


@pytest.mark.parametrize("beta", [0.05, 0.5, 2.5, 12.0, 1e4])
@pytest.mark.parametrize("calibration", ["tiny", "unit", "wide"])
def test_softmax_beta(beta, calibration):
    oracle = oracle_of(softmax, (1, 3, 4, 16), calibration, beta=beta)
    (op,) = oracle.graph.ops
    assert op.attrs.beta == pytest.approx(beta, rel=1e-6)
    rng = np.random.default_rng(11)
    for _ in range(8):
        assert _bad(oracle.mismatches(softmax_rows(rng, (1, 3, 4, 16)))) == {}


def test_softmax_random_quantization():
    data = model_bytes(softmax, (1, 3, 4, 16))
    rng = np.random.default_rng(99)
    for _ in range(30):
        edits = {"input": (10 ** rng.uniform(-4, 1), int(rng.integers(-128, 128)))}
        beta = float(10 ** rng.uniform(-1.5, 1.5))
        oracle = Oracle(set_softmax_beta(set_quantization(data, edits), beta), name="softmax")
        for _ in range(3):
            counts = oracle.mismatches(softmax_rows(rng, (1, 3, 4, 16)))
            assert _bad(counts) == {}, (edits, beta)


def test_softmax_behind_dense_is_spread_out():
    oracle = oracle_of(dense_softmax, (1, 32), "unit")
    assert oracle.kinds() == ["FULLY_CONNECTED", "SOFTMAX"]
    rng = np.random.default_rng(5)
    distinct = set()
    for _ in range(40):
        x = rng.integers(-128, 128, (1, 32)).astype(np.int8)
        assert _bad(oracle.mismatches(x)) == {}
        distinct.update(oracle.tflm_tensors(x)[oracle.graph.outputs[0]].ravel().tolist())
    assert len(distinct) > 20  # not saturated: many probability levels occur


@pytest.mark.parametrize("name", ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant"])
def test_softmax_of_mlperf_models(name):
    from conftest import mlperf_model
    oracle = Oracle(mlperf_model(name).read_bytes(), name)
    assert "SOFTMAX" in oracle.kinds()
    x_t = oracle.graph.tensors[oracle.graph.inputs[0]]
    rng = np.random.default_rng(3)
    for _ in range(3):
        counts = oracle.mismatches(rng.integers(-128, 128, x_t.shape).astype(np.int8))
        assert any(k.startswith("SOFTMAX:") for k in counts) and _bad(counts) == {}


# --------------------------------------------------------------------------------------------
# Errors a user gets instead of a model TFLM would refuse


def test_softmax_too_small_beta_is_reported():
    # beta * input_scale * 2^26 <= 1: TFLM's Prepare aborts (a failed TFLITE_CHECK), so the
    # model is only loaded by tinyml.
    graph = load_tflite_bytes(model_bytes(softmax, (1, 10), "tiny", beta=1e-7))
    with pytest.raises(TinymlError, match=r"layer '.*' \(SOFTMAX\).*too small"):
        run(graph, [np.zeros((1, 10), np.int8)])


def test_softmax_sum_overflow_is_reported():
    # 600 equal codes: the Q12.19 sum of exps needs more headroom than TFLM's int8 softmax
    # has (TFLM stops on a failed TFLITE_CHECK at run time).
    graph = load_tflite_bytes(model_bytes(softmax, (1, 600)))
    with pytest.raises(TinymlError, match=r"\(SOFTMAX\).*600 values"):
        run(graph, [np.zeros((1, 600), np.int8)])
    run(graph, [np.random.default_rng(0).integers(-128, 128, (1, 600)).astype(np.int8)])


def test_wrong_output_quantization_is_reported():
    for build, shape, kind in ((softmax, (1, 10), "SOFTMAX"), (sigmoid, (1, 10), "LOGISTIC")):
        graph = oracle_of(build, shape).graph
        graph.tensors[graph.outputs[0]].quant.zero_point[:] = 0
        with pytest.raises(TinymlError, match=rf"\({kind}\).*zero point"):
            run(graph, [np.zeros(shape, np.int8)])


def test_int16_activations_are_rejected():
    graph = oracle_of(sigmoid, (1, 10)).graph
    for name in graph.inputs + graph.outputs:
        graph.tensors[name].dtype = "int16"
    with pytest.raises(UnsupportedOpError, match="LOGISTIC.*int16"):
        run(graph, [np.zeros((1, 10), np.int16)])


# --------------------------------------------------------------------------------------------
# The fixed-point primitives against the real functions they approximate


def test_gemmlowp_functions_approximate_their_real_values():
    from tinyml.reference import gemmlowp as gl
    rng = np.random.default_rng(0)
    for integer_bits in (0, 4, 5, 12):
        a = -rng.integers(0, 2**31, 50_000)
        a[:2] = [0, -(2**31 - 1)]
        got = gl.exp_on_negative_values(a, integer_bits) / 2**31
        # gemmlowp's 4th-order Taylor step bounds the error by (1/8)^5 / 120.
        assert np.abs(got - np.exp(a / 2.0 ** (31 - integer_bits))).max() < 2.6e-7
    for integer_bits in (0, 4, 5):
        a = rng.integers(-2**31 + 1, 2**31, 50_000)
        got = gl.logistic(a, integer_bits) / 2**31
        assert np.abs(got - 1 / (1 + np.exp(-a / 2.0 ** (31 - integer_bits)))).max() < 1e-7
    x = rng.integers(0, 2**31, 50_000)
    assert np.abs(gl.one_over_one_plus_x_for_x_in_0_1(x) / 2**31 - 1 / (1 + x / 2**31)).max() \
        < 1e-8
    total = rng.integers(1, 2**31, 50_000)  # Q12.19
    raw, bits_over_unit = gl.get_reciprocal(total, 12)
    inverse = raw / 2**31 * 2.0 ** -bits_over_unit
    assert np.abs(inverse * (total / 2**19) - 1).max() < 1e-8
    np.testing.assert_array_equal(gl.count_leading_zeros_u32([0, 1, 2**20, 2**31 - 1, -1]),
                                  [32, 31, 11, 1, 0])
    a, b = rng.integers(-2**15 + 1, 2**15, (2, 50_000))
    exact = a * b / 2**15
    assert np.abs(gl.saturating_rounding_doubling_high_mul_int16(a, b) - exact).max() <= 0.5
    assert gl.saturating_rounding_doubling_high_mul_int16(-2**15, -2**15) == 2**15 - 1
    truncated = gl.saturating_doubling_high_mul_int16(a, b)
    assert np.all(np.abs(truncated) <= np.abs(exact)) and np.abs(truncated - exact).max() < 1
