"""Small models the tests build and quantize themselves, so op coverage does not depend on
../shared. Each model is a Keras function converted by TensorFlow's TFLiteConverter (the same
converter users run), float or full-int8 with a seeded representative dataset.

Conversion takes a few seconds, so results are cached per test session on disk.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_CACHE = Path(tempfile.gettempdir()) / "tinyml-test-zoo"


def _fingerprint(fn: Callable) -> str:
    """What a function computes, for the cache key: its bytecode, constants and the values it
    closes over (source text alone would confuse two lambdas on one line, or closures from one
    factory with different captured values)."""
    code = fn.__code__
    nested = [_fingerprint_code(c) for c in code.co_consts if inspect.iscode(c)]
    cells = [repr(c.cell_contents) for c in fn.__closure__ or ()]
    return repr((_fingerprint_code(code), nested, cells))


def _fingerprint_code(code) -> str:
    consts = [_fingerprint_code(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return repr((code.co_code, consts, code.co_names))


def convert(build: Callable, input_shapes: list[tuple[int, ...]], *, int8: bool = True,
            seed: int = 0, calibration: Callable[[np.random.Generator, tuple], np.ndarray]
            | None = None, int8_io: bool = True, per_channel: bool = True,
            activations: str = "int8", bias32: bool = False) -> Path:
    """Build ``build(*keras_inputs) -> keras_output`` and convert it to a .tflite file.

    ``input_shapes`` include the batch dimension (1). With ``int8`` the model is fully
    quantized (int8 weights and activations; int8 inputs/outputs when ``int8_io``). Returns the
    path of a cached .tflite file. ``activations="int16"`` makes TFLite's 16x8 model instead
    (int16 activations, int8 weights, int64 conv/FC bias; int16 inputs/outputs when
    ``int8_io``); ``bias32`` asks the converter for int32 biases in a 16x8 model instead.
    """
    key = hashlib.sha256(repr((_fingerprint(build), input_shapes, int8, seed,
                               _fingerprint(calibration) if calibration else None,
                               int8_io, per_channel)
                               + ((activations,) if activations != "int8" else ())
                               + (("bias32",) if bias32 else ())
                               ).encode()).hexdigest()[:16]
    path = _CACHE / f"{build.__name__}-{key}.tflite"
    if path.exists():
        return path
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    # Named so that the converter's (alphabetical) signature order is the list order, which the
    # representative dataset below relies on.
    inputs = [tf.keras.Input(shape=s[1:], batch_size=s[0], name=f"input_{i:02d}")
              for i, s in enumerate(input_shapes)]
    model = tf.keras.Model(inputs, build(*inputs))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(seed)
        sample = calibration or (lambda r, s: r.normal(0, 1, s).astype(np.float32))

        def representative():
            for _ in range(32):
                yield [sample(rng, s).astype(np.float32) for s in input_shapes]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        if activations == "int16":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            if bias32:
                converter._experimental_full_integer_quantization_bias_type = tf.int32
        else:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            io_type = tf.int16 if activations == "int16" else tf.int8
            converter.inference_input_type = io_type
            converter.inference_output_type = io_type
        if not per_channel:
            converter._experimental_disable_per_channel = True
    data = converter.convert()
    _CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
