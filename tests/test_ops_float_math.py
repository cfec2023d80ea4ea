"""The math TFLM runs in float32 only (tinyml/reference/kernels/float_math.py).

- Float islands: the converter writes SQUARE, SIN, COS, FLOOR, CEIL, ROUND and NEG of an
  int8 tensor as DEQUANTIZE -> float op -> QUANTIZE, which TFLM runs. The reference runs
  the island in float as TFLM does and must equal TFLM on every tensor; the compiled form,
  one LOOKUP_TABLE (tinyml.passes.float_island_table), must equal TFLM's output under
  ASan/UBSan. The input holds all 256 codes, so every table entry is checked.
- int8 EXP, LOG and SQRT: the converter writes int8 builtins that TFLM refuses and LiteRT
  runs as tables; tinyml's reference and C kernel must equal LiteRT on every code.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.c_harness import Harness, check_graph
from support.int8_op_models import compare_all_tensors, tflm_all_tensors
from support.oracles import litert_interpreter, tflm_interpreter
from support.tflite_zoo import convert
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.passes import run_passes

SHAPE = (1, 4, 8, 8)   # 256 elements: one of each code


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("kernels"))


def _tf():
    import tensorflow as tf
    return tf


def square(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.square(v))(x)


def sin(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.sin(v))(x)


def cos(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.cos(v))(x)


def floor(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.floor(v))(x)


def ceil(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.ceil(v))(x)


def round_(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.round(v))(x)


def neg(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.negative(v))(x)


def exp(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.exp(v))(x)


def log(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.log(v))(x)


def sqrt(x):
    return _tf().keras.layers.Lambda(lambda v: _tf().math.sqrt(v))(x)


def _wide(rng, shape):
    """Several units wide, so FLOOR, CEIL and ROUND see many integers and halves."""
    return rng.normal(0, 2.5, shape)


def _positive(rng, shape):
    return rng.uniform(0.05, 4.0, shape)


ISLANDS = {"SQUARE": square, "SIN": sin, "COS": cos, "FLOOR": floor, "CEIL": ceil,
           "ROUND": round_, "NEG": neg}
TABLES = {"EXP": (exp, _wide), "LOG": (log, _positive), "SQRT": (sqrt, _positive)}


def _every_code() -> np.ndarray:
    return np.arange(-128, 128, dtype=np.int64).astype(np.int8).reshape(SHAPE)


@pytest.mark.parametrize("kind", list(ISLANDS))
def test_float_island_matches_tflm_and_compiles_to_a_table(kind, harness):
    data = convert(ISLANDS[kind], [SHAPE], calibration=_wide).read_bytes()
    graph = load_tflite_bytes(data, name=kind.lower())
    assert [op.kind for op in graph.ops] == ["DEQUANTIZE", kind, "QUANTIZE"], \
        [op.kind for op in graph.ops]
    interpreter = tflm_interpreter(data)
    inputs = [_every_code()]
    assert not compare_all_tensors(graph, interpreter, inputs)
    values = tflm_all_tensors(interpreter, inputs, len(graph.tensors))
    sample = {n: v for n, v in zip(graph.tensors, values) if v is not None}
    compiled = run_passes(graph)
    assert [op.kind for op in compiled.ops] == ["LOOKUP_TABLE"]
    bad = {k: v for k, v in check_graph(harness, compiled, [sample], kind).items() if v}
    assert not bad, bad


@pytest.mark.parametrize("kind", list(TABLES))
def test_int8_table_matches_litert_on_every_code(kind, harness):
    from tinyml.reference import run
    build, calibration = TABLES[kind]
    data = convert(build, [SHAPE], calibration=calibration).read_bytes()
    graph = load_tflite_bytes(data, name=kind.lower())
    assert [op.kind for op in graph.ops] == [kind], [op.kind for op in graph.ops]
    interpreter = litert_interpreter(data)
    x = _every_code()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    theirs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    ours = run(graph, [x])[graph.outputs[0]]
    assert np.array_equal(ours, theirs), np.count_nonzero(ours != theirs)
    sample = {graph.inputs[0]: x, graph.outputs[0]: theirs}
    bad = {k: v for k, v in check_graph(harness, graph, [sample], kind).items() if v}
    assert not bad, bad


def test_float_island_model_verifies_on_host_under_sanitizers(tmp_path):
    """A compiled island model against the reference and TFLM, end to end."""
    from tinyml.verify import verify
    path = tmp_path / "sin.tflite"
    path.write_bytes(convert(sin, [SHAPE], calibration=_wide).read_bytes())
    report = verify(path, "host", samples=3, sanitize=True)
    assert report.oracle == "reference+tflite-micro" and report.sanitized
    assert report.samples == 5 and report.mismatched_outputs == 0


def test_sqrt_with_negative_inputs_is_refused_in_one_line(tmp_path):
    """LiteRT fails the inference on a negative SQRT input; tinyml refuses to compile a SQRT
    whose input zero point lets codes be negative, naming the layer."""
    from tinyml.compiler import compile_model
    from tinyml.errors import TinymlError
    path = tmp_path / "sqrt.tflite"
    path.write_bytes(convert(sqrt, [SHAPE], calibration=_wide).read_bytes())
    with pytest.raises(TinymlError, match=r"SQRT in layer '.*': input zero point .* negative"):
        compile_model(path, "host", tmp_path / "out")
    assert not (tmp_path / "out").exists()
