"""Is a model file valid according to its format's own reader?

:func:`tinyml.frontends.load_model` asks this when a frontend fails with an exception that is not
a :class:`~tinyml.errors.TinymlError`. Such an exception means one of two things:

- the file is corrupt, and our code tripped over a value no valid file has (a zero stride, an
  options table of the wrong type, a protobuf that does not decode): the user needs a one-line
  "corrupt file" error, not a traceback; or
- the file is fine and tinyml has a bug: that must stay a traceback, or it would never be
  reported and fixed.

The arbiter is the reader the format's authors ship, which knows nothing about tinyml: LiteRT
for TFLite (building the interpreter runs its flatbuffer verifier, allocating runs every kernel's
parameter checks), the ``onnx`` checker with shape inference for ONNX, Keras (3, or tf_keras for
Keras 2 files) for .keras and .h5, TensorFlow for SavedModels. If it rejects the file too, the
file is at fault; if it accepts it, we are.

The reader runs in a child process (``python -m tinyml.frontends.validity FORMAT PATH``): native
readers (HDF5, LiteRT, protobuf) can crash or hang on a hostile file, and a crash there must not
take the user's process down, nor should TensorFlow be imported into a process that avoided it.
This happens only on the failure path, so its cost (a process, perhaps a TensorFlow import) is
paid only when something already went wrong.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: Seconds the reference reader gets (a TensorFlow import plus a load).
TIMEOUT_S = 300

_REJECTED = 3


def rejection(fmt: str, path: str | Path) -> str | None:
    """Why the format's own reader rejects ``path``, or None when it reads it fine."""
    import tinyml

    root = str(Path(tinyml.__file__).resolve().parents[1])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    reader = _READERS[fmt][0]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tinyml.frontends.validity", fmt, str(Path(path).resolve())],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"{reader} does not finish reading it within {TIMEOUT_S} s"
    if done.returncode == 0:
        return None
    if done.returncode == _REJECTED:
        return f"{reader} rejects it too: {done.stdout.strip()}"
    if done.returncode < 0:
        return f"{reader} crashes on it (signal {-done.returncode})"
    # The reference reader is missing or broken: we cannot tell, so we cannot blame the file.
    return None


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:200] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- the readers (run in the child process; each raises when it rejects the file) ------------


def _read_tflite(path: str) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=path, experimental_op_resolver_type=
                              OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()


def _read_onnx(path: str) -> None:
    import onnx

    onnx.checker.check_model(onnx.load(path), full_check=True)


def _read_keras(path: str, order: tuple[str, ...]) -> None:
    """Keras 3 and tf_keras (Keras 2) each read files the other cannot; a file either reads
    is a valid Keras model."""
    import importlib

    errors = []
    for name in order:
        try:
            importlib.import_module(name).models.load_model(path, compile=False)
            return
        except Exception as exc:
            errors.append(f"{name}: {_describe(exc)}")
    raise ValueError("; ".join(errors))


def _read_savedmodel(path: str) -> None:
    import tensorflow as tf

    tf.saved_model.load(path)


_READERS = {
    "tflite": ("LiteRT", _read_tflite),
    "onnx": ("the ONNX checker", _read_onnx),
    "keras": ("Keras", lambda path: _read_keras(path, ("keras", "tf_keras"))),
    "h5": ("Keras", lambda path: _read_keras(path, ("tf_keras", "keras"))),
    "savedmodel": ("TensorFlow", _read_savedmodel),
}


def _main(fmt: str, path: str) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        _READERS[fmt][1](path)
    except Exception as exc:
        print(_describe(exc))
        return _REJECTED
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1], sys.argv[2]))
