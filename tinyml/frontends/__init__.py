"""Frontends: read a trained model file into the graph IR.

:func:`load_model` recognizes the format from the file's contents (:mod:`.formats`), not only
its extension, so a mislabeled or corrupt file gets a clear error naming what it is not.
"""

from __future__ import annotations

from pathlib import Path

from tinyml.errors import ModelFormatError, TinymlError
from tinyml.frontends.formats import detect_format
from tinyml.ir import Graph

__all__ = ["detect_format", "load_model"]

_FORMAT_LABELS = {"tflite": "TFLite", "onnx": "ONNX", "keras": "Keras", "h5": "HDF5 (Keras)",
                  "savedmodel": "SavedModel"}


def load_model(path: str | Path) -> Graph:
    """Read any supported model file into a finalized graph.

    This is the one place where a user's file meets our code, so it decides what the user
    sees when reading fails:

    - A :class:`TinymlError` (the frontends' own checks: unsupported op, unresolvable shape,
      corrupt header...) passes through, with the file's path put in front of its message.
    - Any other exception is judged by the format's own reader (:mod:`.validity`: LiteRT, the
      ONNX checker, Keras/TensorFlow). If that reader rejects the file as well, the file is
      corrupt, truncated or otherwise not a valid model: a :class:`ModelFormatError` naming
      the file and both readers' complaints (the original exception is chained for
      ``TINYML_DEBUG=1``). If the reference reader accepts the file, the fault is ours, and
      the exception propagates unchanged as a traceback, because hiding it behind "corrupt
      file" would blame the user for a tinyml bug and keep it from being reported.

    So frontends need not wrap every third-party call: they raise TinymlErrors for problems
    they recognize and may let anything else escape to this judgement.
    """
    fmt = detect_format(path)
    try:
        return _frontend(fmt)(path)
    except TinymlError as exc:
        raise _naming_file(exc, path)
    except Exception as exc:
        from tinyml.frontends.validity import rejection

        reason = rejection(fmt, path)
        if reason is None:
            raise
        what = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(what) > 200:
            what = what[:200] + "..."
        raise ModelFormatError(f"{path}: corrupt or invalid {_FORMAT_LABELS[fmt]} model "
                               f"({reason}; tinyml: {what})") from exc


def _frontend(fmt: str):
    if fmt == "tflite":
        from tinyml.frontends.tflite import load_tflite
        return load_tflite
    if fmt == "onnx":
        from tinyml.frontends.onnx import load_onnx
        return load_onnx
    from tinyml.frontends.keras import load_keras
    return load_keras


def _naming_file(exc: TinymlError, path: str | Path) -> TinymlError:
    """``exc`` with its message starting with the file's path (frontends name the model by its
    stem, which is ambiguous when several copies of a model are around)."""
    path = Path(path)
    message = str(exc)
    if str(path) in message:
        return exc
    for prefix in (f"{path.name}: ", f"{path.stem}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
            break
    exc.args = (f"{path}: {message}",)
    return exc
