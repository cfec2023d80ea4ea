"""Frontends: read a trained model file into the graph IR.

:func:`load_model` recognizes the format from the file's contents (magic bytes), not only its
extension, so a mislabeled or corrupt file gets a clear error naming what it is not.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from tinyml.errors import ModelFormatError, TinymlError
from tinyml.ir import Graph

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def detect_format(path: str | Path) -> str:
    """One of "tflite", "onnx", "keras" (.keras zip), "h5", "savedmodel"."""
    path = Path(path)
    try:
        return _detect(path)
    except OSError as exc:  # a name too long, a permission denied, a vanished file...
        raise ModelFormatError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _detect(path: Path) -> str:
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "savedmodel"
        raise ModelFormatError(f"{path}: a directory, but not a TensorFlow SavedModel "
                               f"(no saved_model.pb)")
    with path.open("rb") as f:
        head = f.read(16)
    if not head:
        raise ModelFormatError(f"{path}: empty file")
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(HDF5_SIGNATURE):
        return "h5"
    if head.startswith(b"PK") and zipfile.is_zipfile(path):
        return "keras"
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    by_suffix = {".tflite": "TFLite", ".h5": "HDF5 (Keras)", ".hdf5": "HDF5 (Keras)",
                 ".keras": "Keras"}
    if suffix in by_suffix:
        raise ModelFormatError(f"{path}: not a valid {by_suffix[suffix]} file (bad header: "
                               f"corrupt or truncated)")
    raise ModelFormatError(f"{path}: unknown model format (expected .tflite, .onnx, .keras, "
                           f".h5 or a SavedModel directory)")


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
