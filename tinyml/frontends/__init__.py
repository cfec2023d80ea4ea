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
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "savedmodel"
        raise ModelFormatError(f"{path}: a directory, but not a TensorFlow SavedModel "
                               f"(no saved_model.pb)")
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot read ({exc.strerror})") from None
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


def load_model(path: str | Path) -> Graph:
    """Read any supported model file into a finalized graph."""
    fmt = detect_format(path)
    try:
        if fmt == "tflite":
            from tinyml.frontends.tflite import load_tflite
            return load_tflite(path)
        if fmt == "onnx":
            from tinyml.frontends.onnx import load_onnx
            return load_onnx(path)
        from tinyml.frontends.keras import load_keras
        return load_keras(path)
    except TinymlError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise ModelFormatError(f"{path}: corrupt model ({type(exc).__name__})") from None
