"""Which kind of model file a path holds, from its contents (magic bytes) before its name.

Kept apart from :func:`tinyml.frontends.load_model` because a frontend asks it too (the Keras
frontend checks the file is one it converts), and a frontend must not import the package
that dispatches to it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from tinyml.errors import ModelFormatError

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
