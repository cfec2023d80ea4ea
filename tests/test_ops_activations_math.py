"""TANH, LEAKY_RELU, PRELU, ELU and ABS in int8: reference and C kernels vs TFLM, bit for bit.

Models come from TensorFlow's converter (Keras layers), except ELU: the converter keeps ELU in
float between a DEQUANTIZE and a QUANTIZE, so its int8 form (which TFLM runs, with a lookup
table) comes from tinyml's quantizer, exported as TFLite and run in TFLM.

Each element-wise op gets every int8 code (all 256 per channel), for converter quantizations
over calibration ranges spanning orders of magnitude and for edited input/output
quantizations (arbitrary scale pairs and zero points, i.e. many multipliers and rounding
boundaries). Every op is evaluated on the exact input values TFLM saw, every tensor of an
end-to-end reference run is compared with TFLM's, and the C kernels run on TFLM's inputs
(out of place and in place, under ASan and UBSan).

Builtins the brief asked for that TFLM does not run in int8 are not registered; see
``test_tflm_has_no_int8_kernel`` for the evidence kept as a test.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.c_harness import Harness, graph_jobs, mismatches
from support.nonlinear_models import (ALL_CODES, CALIBRATIONS, Oracle, count_differences,
                                      set_quantization)
from support.oracles import tflm_interpreter
from support.tflite_zoo import convert
from tinyml.codegen.lowering import lower
from tinyml.reference import run
from tinyml.reference.kernels import KERNELS, KernelCall

KINDS = ("TANH", "LEAKY_RELU", "PRELU", "ELU", "ABS", "RSQRT", "LOG_SOFTMAX")
#: Every int8 code in each of 4 channels (PRELU's alpha differs per channel).
CHANNEL_CODES = np.repeat(ALL_CODES, 4, axis=3)


# --------------------------------------------------------------------------------------------
# Models (module-level functions: tflite_zoo caches conversions by their code)


def tanh(x):
    import tensorflow as tf
    return tf.keras.layers.Activation("tanh")(x)


def leaky_relu(x):
    import tensorflow as tf
    return tf.keras.layers.LeakyReLU(0.2)(x)


def leaky_relu_steep(x):
    import tensorflow as tf
    return tf.keras.layers.LeakyReLU(1.7)(x)


def prelu_channel(x):
    import tensorflow as tf
    init = tf.keras.initializers.RandomUniform(-0.4, 0.9, seed=1)
    return tf.keras.layers.PReLU(alpha_initializer=init, shared_axes=[1, 2])(x)


def prelu_full(x):
    import tensorflow as tf
    init = tf.keras.initializers.RandomUniform(0.0, 0.5, seed=2)
    return tf.keras.layers.PReLU(alpha_initializer=init)(x)


def abs_(x):
    import tensorflow as tf
    return tf.keras.layers.Lambda(lambda v: tf.abs(v))(x)


def elu(x):
    import tensorflow as tf
    return tf.keras.layers.ELU()(x)


#: name -> (builder, input codes, the op kind it makes)
MODELS = {
    "tanh": (tanh, ALL_CODES, "TANH"),
    "leaky_relu": (leaky_relu, ALL_CODES, "LEAKY_RELU"),
    "leaky_relu_steep": (leaky_relu_steep, ALL_CODES, "LEAKY_RELU"),
    "prelu_channel": (prelu_channel, CHANNEL_CODES, "PRELU"),
    "prelu_full": (prelu_full, CHANNEL_CODES, "PRELU"),
    "abs": (abs_, ALL_CODES, "ABS"),
}


def _data(name: str, calibration: str = "unit") -> bytes:
    build, codes, _ = MODELS[name]
    return convert(build, [codes.shape], calibration=CALIBRATIONS[calibration]).read_bytes()


def _op_mismatches(oracle: Oracle, x: np.ndarray) -> dict[str, int]:
    """Mismatching elements per tensor: each op of this family fed with TFLM's own input
    values, and every tensor of an end-to-end reference run."""
    expected = oracle.tflm_tensors(x)
    counts: dict[str, int] = {}
    for op in oracle.graph.ops:
        if op.kind in KINDS:
            call = KernelCall(op, [expected[n] for n in op.inputs], oracle.graph.op_inputs(op),
                              oracle.graph.op_outputs(op))
            counts[f"{op.kind}:{op.outputs[0]}"] = count_differences(KERNELS[op.kind](call),
                                                          expected[op.outputs[0]])
    for name, value in run(oracle.graph, [x], keep_all=True).items():
        counts[name] = counts.get(name, 0) + count_differences(value, expected[name])
    return counts


def _bad(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


# --------------------------------------------------------------------------------------------
# Reference vs TFLM


@pytest.mark.parametrize("calibration", ["tiny", "unit", "skewed", "negative", "huge"])
@pytest.mark.parametrize("name", list(MODELS))
def test_converter_model_all_codes(name, calibration):
    _, codes, kind = MODELS[name]
    oracle = Oracle(_data(name, calibration), name)
    assert oracle.kinds() == [kind]
    counts = _op_mismatches(oracle, codes)
    assert len(counts) >= 3  # the op, its input and output tensors
    assert _bad(counts) == {}


def _random_quantization(rng: np.random.Generator) -> dict[str, tuple[float, int]]:
    scale = 10 ** rng.uniform(-4, 1)
    return {"input": (scale, int(rng.integers(-128, 128))),
            "output": (scale * 10 ** rng.uniform(-1.5, 1.5), int(rng.integers(-128, 128)))}


@pytest.mark.parametrize("name", list(MODELS))
def test_random_quantization(name):
    _, codes, _ = MODELS[name]
    data = _data(name)
    rng = np.random.default_rng(31)
    for _ in range(25):
        edits = _random_quantization(rng)
        oracle = Oracle(set_quantization(data, edits), name)
        assert _bad(_op_mismatches(oracle, codes)) == {}, edits


def test_tanh_ignores_output_quantization_and_saturates():
    # TFLM writes tanh in units of 1/128 around 0 whatever the output says; a large input
    # scale puts most codes outside the input radius, which saturate to -128 / 127.
    oracle = Oracle(_data("tanh", "huge"), "tanh")
    g = oracle.graph
    y = g.tensors[g.outputs[0]]
    assert (np.float32(y.scale()), y.zero_point()) == (np.float32(1 / 128), 0)
    out = run(g, [ALL_CODES])[g.outputs[0]].ravel()
    assert out[0] == -128 and out[-1] == 127 and np.count_nonzero(np.abs(out) == 127) > 100
    edited = Oracle(set_quantization(_data("tanh"), {"output": (0.3, 17)}), "tanh")
    assert _bad(_op_mismatches(edited, ALL_CODES)) == {}


def test_prelu_alpha_is_per_channel_and_negative_side_uses_it():
    oracle = Oracle(_data("prelu_channel"), "prelu")
    (op,) = oracle.graph.ops
    alpha = oracle.graph.tensors[op.inputs[1]]
    assert alpha.is_constant and alpha.size == 4 and alpha.shape[-1] == 4
    assert len(set(np.asarray(alpha.data).ravel().tolist())) == 4
    out = run(oracle.graph, [CHANNEL_CODES])[oracle.graph.outputs[0]]
    # Same codes in every channel; different alphas make the negative side differ.
    assert len({tuple(out[..., c].ravel()[:64]) for c in range(4)}) == 4


def _set_leaky_alpha(data: bytes, alpha: float) -> bytes:
    from support.int8_op_models import edit_flatbuffer as _edit_flatbuffer

    def edit(model, schema):
        for op in model.subgraphs[0].operators:
            op.builtinOptions.alpha = alpha
    return _edit_flatbuffer(data, edit)


def test_leaky_relu_any_alpha_and_abs_without_rescale(harness):
    """LEAKY_RELU with a negative, zero or large alpha (TFLM multiplies by the magnitude and
    negates), and ABS whose output scale equals its input's (TFLM then only adds the zero
    point): reference and C kernel vs TFLM."""
    oracles = [Oracle(_set_leaky_alpha(_data("leaky_relu"), a), "leaky")
               for a in (-0.3, -1.5, 0.0, 3.0)]
    x = Oracle(_data("abs"), "abs").graph
    x_scale = x.tensors[x.inputs[0]].scale()
    oracles.append(Oracle(set_quantization(_data("abs"), {"output": (x_scale, 5)}), "abs"))
    jobs, expected = [], []
    for n, oracle in enumerate(oracles):
        assert _bad(_op_mismatches(oracle, ALL_CODES)) == {}
        values = oracle.tflm_tensors(ALL_CODES)
        calls = lower(oracle.graph)
        jobs += graph_jobs(oracle.graph, calls, values, f"{n}")
        expected += [{name: values[name] for name in job.outputs} for job in jobs[len(expected):]]
    assert jobs[-1].call.params["rescale"] == 0
    assert [j.call.params["alpha_negative"] for j in jobs[:4:2]] == [1, 1]
    counts = mismatches(jobs, harness.run(jobs), expected)
    assert len(counts) == 2 * len(oracles) and _bad(counts) == {}


# --------------------------------------------------------------------------------------------
# ELU: int8 from tinyml's quantizer, run in TFLM


def _elu_int8(calibration: str):
    from tinyml.quantize import quantize_model
    path = convert(elu, [ALL_CODES.shape], int8=False)
    return quantize_model(path, calibration, samples=16)


@pytest.mark.parametrize("calibration", ["random:-1,1", "random:-8,3", "random:-0.05,0.02",
                                         "random:-300,40"])
def test_elu_quantized_by_tinyml_matches_tflm(calibration):
    from support.quantize_oracles import tflm_tensor_mismatches
    model = _elu_int8(calibration)
    assert [op.kind for op in model.graph.ops] == ["ELU"]
    exported = model.to_tflite()
    samples = [[ALL_CODES]]
    mism, compared = tflm_tensor_mismatches(exported, model.graph, samples)
    assert compared >= 2 and not mism
    rng = np.random.default_rng(5)
    for _ in range(15):
        edits = _random_quantization(rng)
        oracle = Oracle(set_quantization(exported, edits), "elu")
        assert _bad(_op_mismatches(oracle, ALL_CODES)) == {}, edits


# --------------------------------------------------------------------------------------------
# C kernels vs TFLM


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("kernels"))


def _tflm_samples(oracle: Oracle, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    return [oracle.tflm_tensors(x) for x in xs]


def test_c_kernels_match_tflm(harness):
    """Every model above over three calibrations and three random quantizations (ELU: four
    of its quantizer-made model), each C kernel on TFLM's values, out of place and in place.
    (The reference equals TFLM on many more quantizations: the tests above.)"""
    rng = np.random.default_rng(8)
    cases = []
    for name, (_, codes, _) in MODELS.items():
        datas = [_data(name, c) for c in ("tiny", "skewed", "huge")]
        base = _data(name)
        datas += [set_quantization(base, _random_quantization(rng)) for _ in range(3)]
        cases += [(Oracle(d, name), codes) for d in datas]
    elu_data = _elu_int8("random:-6,3").to_tflite()
    cases += [(Oracle(set_quantization(elu_data, _random_quantization(rng)), "elu"), ALL_CODES)
              for _ in range(4)]
    jobs, expected = [], []
    for n, (oracle, codes) in enumerate(cases):
        xs = [codes, rng.integers(-128, 128, codes.shape).astype(np.int8)]
        for s, values in enumerate(_tflm_samples(oracle, xs)):
            batch = graph_jobs(oracle.graph, lower(oracle.graph), values, f"{n}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    counts = mismatches(jobs, harness.run(jobs), expected)
    functions = {job.call.function for job in jobs}
    assert {"tinyml_leaky_relu_s8", "tinyml_prelu_s8", "tinyml_prelu_tiled_s8", "tinyml_lut_s8",
            "tinyml_abs_s8"} <= functions
    assert sum(1 for k in counts if k.endswith(":in-place")) == len(counts) // 2
    assert _bad(counts) == {}


# --------------------------------------------------------------------------------------------
# Whole models: compiled, run and verified (QEMU on cortex-m4, the host under sanitizers)


def activation_mix(x):
    """A small CNN with every op of this family between convolutions."""
    import tensorflow as tf
    L = tf.keras.layers
    init = tf.keras.initializers.RandomUniform(-0.3, 0.6, seed=4)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.Activation("tanh")(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.LeakyReLU(0.1)(x)
    x = L.Conv2D(8, 1)(x)
    x = L.PReLU(alpha_initializer=init, shared_axes=[1, 2])(x)
    x = L.Conv2D(8, 3, strides=2)(x)
    x = L.Lambda(lambda v: tf.abs(v))(x)
    return L.Lambda(lambda v: tf.nn.log_softmax(v))(L.Dense(5)(L.Flatten()(x)))


def activation_mix_elu(x):
    import tensorflow as tf
    x = tf.keras.layers.Conv2D(6, 3, padding="same")(x)
    return activation_mix(tf.keras.layers.ELU()(x))


MIX_SHAPE = (1, 12, 12, 3)


def op_counts(path) -> set[str]:
    from tinyml.frontends import load_model
    return {op.kind for op in load_model(path).ops}


def test_mix_model_verifies_in_qemu_cortex_m4():
    from tinyml.verify import verify
    path = convert(activation_mix, [MIX_SHAPE])
    assert {"TANH", "LEAKY_RELU", "PRELU", "ABS", "LOG_SOFTMAX"} <= op_counts(path)
    report = verify(path, "cortex-m4", samples=20, profile=False)
    assert report.samples == 22 and "tflite-micro" in report.oracle
    assert report.mismatched_outputs == 0 and report.max_abs_diff == 0


def test_mix_model_runs_in_patches_in_place_on_host_sanitized(tmp_path):
    """Split after ABS on a 3x3 grid: TANH (a table), LEAKY_RELU, PRELU (per-channel alpha)
    and ABS all run patch by patch, in place, and the outputs stay bit-exact under ASan and
    UBSan."""
    from tinyml.verify import verify
    path = convert(activation_mix, [MIX_SHAPE])
    report = verify(path, "host", samples=10, sanitize=True, patch="7:3", output_dir=tmp_path)
    assert report.sanitized and report.mismatched_outputs == 0 and report.max_abs_diff == 0
    source = (tmp_path / "model.c").read_text()
    for function in ("tinyml_lut_s8", "tinyml_leaky_relu_s8", "tinyml_prelu_s8",
                     "tinyml_abs_s8"):
        assert f"{function}(&" in source and ".size = p" in source, function


def test_mix_model_with_elu_quantized_by_tinyml_verifies_on_host_sanitized():
    from tinyml.quantize import quantize_model
    from tinyml.verify import verify
    path = convert(activation_mix_elu, [MIX_SHAPE], int8=False)
    assert {"ELU", "TANH", "LEAKY_RELU", "PRELU", "ABS", "LOG_SOFTMAX"} <= op_counts(path)
    report = verify(path, "host", samples=10, sanitize=True,
                    quantize=lambda g: quantize_model(g, "random:-2,2", samples=16).graph)
    assert report.sanitized and report.samples == 12 and "tflite-micro" in report.oracle
    assert report.mismatched_outputs == 0 and report.max_abs_diff == 0


# --------------------------------------------------------------------------------------------
# ONNX: float against onnxruntime, QDQ (onnxruntime.quantization) against its QDQ arithmetic


def _onnx_mix(seed: int = 0):
    """Conv -> Tanh -> Conv -> LeakyRelu -> Conv -> PRelu (per channel) -> Conv -> Elu -> Abs
    -> LogSoftmax over the channels."""
    from onnx import helper
    from support.onnx_cases import make_model
    rng = np.random.default_rng(seed)
    w = lambda *s: (rng.standard_normal(s) * 0.4).astype(np.float32)  # noqa: E731
    inits = {"w1": w(8, 3, 3, 3), "b1": w(8), "w2": w(8, 8, 1, 1), "b2": w(8),
             "w3": w(8, 8, 3, 3) / 2, "b3": w(8), "w4": w(6, 8, 1, 1), "b4": w(6),
             "slope": rng.uniform(-0.3, 0.8, (8, 1, 1)).astype(np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["c1"], ["t"]),
        helper.make_node("Conv", ["t", "w2", "b2"], ["c2"]),
        helper.make_node("LeakyRelu", ["c2"], ["lr"], alpha=0.15),
        helper.make_node("Conv", ["lr", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c3", "slope"], ["pr"]),
        helper.make_node("Conv", ["pr", "w4", "b4"], ["c4"]),
        helper.make_node("Elu", ["c4"], ["el"]),
        helper.make_node("Abs", ["el"], ["ab"]),
        helper.make_node("LogSoftmax", ["ab"], ["y"], axis=1),
    ]
    return make_model(nodes, {"x": [1, 3, 10, 10]}, ["y"], inits, opset=13, name="act_mix")


def test_onnx_float_ops_match_onnxruntime():
    from support.onnx_cases import compare_all, onnx_names, ort_values
    from tinyml.frontends.onnx import import_onnx
    model = _onnx_mix()
    imp = import_onnx(model, name="act_mix")
    kinds = {op.kind for op in imp.graph.ops}
    assert {"TANH", "LEAKY_RELU", "PRELU", "ELU", "ABS", "LOG_SOFTMAX"} <= kinds
    rng = np.random.default_rng(3)
    diffs: dict = {}
    for _ in range(5):
        x = rng.standard_normal((1, 3, 10, 10)).astype(np.float32) * 2
        theirs = ort_values(model, {"x": x}, onnx_names(imp))
        compare_all(imp, run(imp.graph, [x], keep_all=True), theirs, diffs)
    checked = {d.op for d in diffs.values() if d.count}
    assert {"TANH", "LEAKY_RELU", "PRELU", "ELU", "ABS", "LOG_SOFTMAX"} <= checked
    assert all(d.worst < 1e-5 for d in diffs.values()), {t: d.worst for t, d in diffs.items()}


#: quantize_static variants: by default it leaves PRelu's slope float (tinyml quantizes it
#: per tensor) and Elu and Abs unquantized (they stay float ops); listing the op types puts
#: every op in a QDQ group.
QDQ_OPTIONS = {
    "default": ({}, ("TANH", "LEAKY_RELU", "PRELU")),
    "all_ops": ({"op_types_to_quantize": ["Conv", "Tanh", "LeakyRelu", "PRelu", "Elu", "Abs",
                                          "LogSoftmax"]},
                ("TANH", "LEAKY_RELU", "PRELU", "ELU", "ABS", "LOG_SOFTMAX")),
}


@pytest.mark.parametrize("variant", list(QDQ_OPTIONS))
def test_onnx_qdq_ops_are_int8_within_one_lsb(variant, tmp_path):
    """quantize_static's QDQ groups become int8 TANH, LEAKY_RELU, PRELU, ELU, ABS and
    LOG_SOFTMAX; each op recomputed from onnxruntime's own inputs is within 1 LSB of the QDQ
    arithmetic (float op on dequantized values, half-to-even rounding) that onnxruntime runs,
    or, after TFLM's fixed output quantization of TANH and LOG_SOFTMAX, within half that
    step (in output steps) plus one."""
    from support.onnx_cases import quantize_qdq, qdq_report, run_qdq
    options, int8_kinds = QDQ_OPTIONS[variant]
    path = quantize_qdq(_onnx_mix(), (1, 3, 10, 10), tmp_path, "act", **options)
    imp, e2e, isolated, outputs = run_qdq(path, runs=8)
    ours = {op.kind: op for op in imp.graph.ops}
    for kind in int8_kinds:
        op = ours.get(kind)
        assert op is not None, (kind, sorted(ours))
        assert imp.graph.tensors[op.inputs[0]].dtype == "int8", kind
        assert imp.graph.tensors[op.outputs[0]].dtype == "int8", kind
    print(qdq_report(f"QDQ activations ({variant}), each op from onnxruntime's inputs:", isolated))
    # TANH and LOG_SOFTMAX write TFLM's fixed quantization (1/128, 16/256), requantized by a
    # QUANTIZE to the QuantizeLinear's scale: the fixed step bounds their error.
    producers = imp.graph.producers()
    fixed = {op.outputs[0]: op for op in imp.graph.ops if op.kind == "QUANTIZE"
             and getattr(producers.get(op.inputs[0]), "kind", None) in ("TANH", "LOG_SOFTMAX")}
    checked = {d.op for t, d in isolated.items() if d.count and t not in fixed}
    assert set(int8_kinds) - {"TANH", "LOG_SOFTMAX"} <= checked
    assert len([t for t in fixed if isolated[t].count]) == len(fixed) >= 1
    for tensor, d in isolated.items():
        bound = 1
        if tensor in fixed:
            g = imp.graph
            step = g.tensors[fixed[tensor].inputs[0]].scale()
            bound = max(1, int(np.ceil(0.5 * step / g.tensors[tensor].scale())) + 1)
        assert d.worst <= bound, (tensor, bound, qdq_report("isolated:", isolated))
    from support.oracles import relative_error
    expected, got = zip(*outputs)
    assert relative_error(np.array(expected), np.array(got)) < 0.05


# --------------------------------------------------------------------------------------------
# LOG_SOFTMAX


def log_softmax(x):
    import tensorflow as tf
    return tf.keras.layers.Lambda(lambda v: tf.nn.log_softmax(v))(x)


LOG_SOFTMAX_SHAPES = {"2d": (1, 10), "4d": (1, 3, 4, 16), "wide": (2, 300)}


def _log_softmax_oracle(shape, calibration="unit", edits=None) -> Oracle:
    data = convert(log_softmax, [shape], calibration=CALIBRATIONS[calibration]).read_bytes()
    return Oracle(data if edits is None else set_quantization(data, edits), "log_softmax")


@pytest.mark.parametrize("calibration", ["tiny", "unit", "wide", "huge"])
@pytest.mark.parametrize("shape", list(LOG_SOFTMAX_SHAPES))
def test_log_softmax_seeded_rows(shape, calibration):
    from support.nonlinear_models import softmax_rows as _softmax_rows
    oracle = _log_softmax_oracle(LOG_SOFTMAX_SHAPES[shape], calibration)
    assert oracle.kinds() == ["LOG_SOFTMAX"]
    y = oracle.graph.tensors[oracle.graph.outputs[0]]
    assert (np.float32(y.scale()), y.zero_point()) == (np.float32(16 / 256), 127)
    rng = np.random.default_rng(11)
    for _ in range(6):
        x = _softmax_rows(rng, LOG_SOFTMAX_SHAPES[shape])
        assert _bad(_op_mismatches(oracle, x)) == {}


def test_log_softmax_random_input_quantization():
    from support.nonlinear_models import softmax_rows as _softmax_rows
    rng = np.random.default_rng(12)
    for _ in range(20):
        edits = {"input": (10 ** rng.uniform(-4, 1), int(rng.integers(-128, 128)))}
        oracle = _log_softmax_oracle((1, 3, 4, 16), edits=edits)
        for _ in range(3):
            assert _bad(_op_mismatches(oracle, _softmax_rows(rng, (1, 3, 4, 16)))) == {}, edits


def test_log_softmax_c_kernel_matches_tflm(harness):
    from support.nonlinear_models import softmax_rows as _softmax_rows
    rng = np.random.default_rng(13)
    cases = [(_log_softmax_oracle(shape, c), shape) for shape in LOG_SOFTMAX_SHAPES.values()
             for c in ("tiny", "unit", "huge")]
    cases += [(_log_softmax_oracle((1, 3, 4, 16), edits={
        "input": (10 ** rng.uniform(-4, 1), int(rng.integers(-128, 128)))}), (1, 3, 4, 16))
        for _ in range(6)]
    jobs, expected = [], []
    for n, (oracle, shape) in enumerate(cases):
        xs = [_softmax_rows(rng, shape) for _ in range(3)]
        for s, values in enumerate(_tflm_samples(oracle, xs)):
            batch = graph_jobs(oracle.graph, lower(oracle.graph), values, f"{n}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    counts = mismatches(jobs, harness.run(jobs), expected)
    assert {job.call.function for job in jobs} == {"tinyml_log_softmax_s8"}
    assert len(counts) == 2 * 3 * len(cases)  # out of place and in place
    assert _bad(counts) == {}


# --------------------------------------------------------------------------------------------
# RSQRT (its input must not be negative: TFLM fails the inference there)


def rsqrt(x):
    import tensorflow as tf
    return tf.keras.layers.Lambda(lambda v: tf.math.rsqrt(v))(x)


POSITIVE = {
    "small": lambda r, s: r.uniform(0.001, 0.05, s),
    "unit": lambda r, s: r.uniform(0.05, 4.0, s),
    "large": lambda r, s: r.uniform(1.0, 900.0, s),
}


def _rsqrt_data(calibration: str) -> bytes:
    return convert(rsqrt, [ALL_CODES.shape], calibration=POSITIVE[calibration]).read_bytes()


@pytest.mark.parametrize("calibration", list(POSITIVE))
def test_rsqrt_all_codes(calibration):
    oracle = Oracle(_rsqrt_data(calibration), "rsqrt")
    assert oracle.kinds() == ["RSQRT"]
    assert oracle.graph.tensors[oracle.graph.inputs[0]].zero_point() == -128
    assert _bad(_op_mismatches(oracle, ALL_CODES)) == {}


def test_rsqrt_random_quantization_and_c_kernel(harness):
    rng = np.random.default_rng(17)
    data = _rsqrt_data("unit")
    jobs, expected = [], []
    for n in range(25):
        edits = _random_quantization(rng)
        edits["input"] = (edits["input"][0], -128)
        oracle = Oracle(set_quantization(data, edits), "rsqrt")
        assert _bad(_op_mismatches(oracle, ALL_CODES)) == {}, edits
        values = oracle.tflm_tensors(ALL_CODES)
        batch = graph_jobs(oracle.graph, lower(oracle.graph), values, f"rsqrt{n}")
        jobs += batch
        expected += [{name: values[name] for name in job.outputs} for job in batch]
    counts = mismatches(jobs, harness.run(jobs), expected)
    assert len(counts) == 2 * 25 and _bad(counts) == {}


def test_rsqrt_of_a_negative_input_is_refused_as_tflm_refuses_it():
    from tinyml.errors import TinymlError, UnsupportedOpError
    data = set_quantization(_rsqrt_data("unit"), {"input": (0.02, -100)})
    oracle = Oracle(data, "rsqrt")
    with pytest.raises(RuntimeError):
        oracle.tflm_tensors(ALL_CODES)  # code -128 < zero point -100
    with pytest.raises(TinymlError, match="below the zero point"):
        run(oracle.graph, [ALL_CODES])
    with pytest.raises(UnsupportedOpError, match="RSQRT.*zero point -100"):
        lower(oracle.graph)
    positive = np.clip(ALL_CODES, -100, 127).astype(np.int8)
    assert _bad(_op_mismatches(oracle, positive)) == {}


# --------------------------------------------------------------------------------------------
# Builtins the converter writes in int8 that TFLM cannot run: not registered, refused clearly


def sqrt(x):
    import tensorflow as tf
    return tf.keras.layers.Lambda(lambda v: tf.math.sqrt(v))(x)


def exp(x):
    import tensorflow as tf
    return tf.keras.layers.Lambda(lambda v: tf.math.exp(v))(x)


@pytest.mark.parametrize("build, builtin", [(sqrt, "SQRT"), (exp, "EXP")])
def test_tflm_fails_int8_sqrt_and_exp_and_verify_says_so(build, builtin, tmp_path):
    """The converter writes int8 SQRT and EXP, which TFLM registers but fails (float only).
    tinyml runs them as LiteRT does (tests/test_ops_float_math.py); ``verify`` then names
    why TFLM is no oracle instead of failing."""
    from tinyml.verify import verify
    path = convert(build, [(1, 4, 4, 8)], calibration=POSITIVE["unit"])
    with pytest.raises(RuntimeError):
        interpreter = tflm_interpreter(path)
        interpreter.set_input(np.zeros((1, 4, 4, 8), np.int8), 0)
        interpreter.invoke()
    report = verify(path, "host", samples=2, profile=False)
    assert report.oracle.startswith("reference (not tflite-micro: TFLM ")  # prepare or invoke
    assert report.mismatched_outputs == 0
