"""Cheap structural checks of Keras model files, run before TensorFlow is imported.

Importing TensorFlow and loading a model takes seconds; most corrupt or truncated files can be
rejected in milliseconds by reading what Keras would read first: the zip directory and CRCs of a
``.keras`` archive, the HDF5 attributes ``model_config`` / ``keras_version`` and every dataset of
an ``.h5`` file, and the JSON model config. The checks also decide which Keras reads the file:
Keras 3 refuses legacy Keras 2 files (e.g. the MLPerf Tiny ``vww_96.h5``), which ``tf_keras``
reads.

These functions run in the frontend's worker process (see :mod:`.keras_worker`), never in the
user's process: the HDF5 C library can crash on hostile input. A failed check raises
:class:`Rejection` with a one-line reason.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path


class Rejection(Exception):
    """The file cannot become a graph. ``kind`` picks the TinymlError the user sees."""

    def __init__(self, kind: str, message: str, **details: str):
        super().__init__(message)
        self.kind = kind  # "format", "shape", "unsupported" or "convert"
        self.message = message
        self.details = details


@dataclass
class ModelFile:
    """What the checks learned: which library loads the file, and its layer configs."""

    loader: str  # "keras" (Keras 3), "tf_keras" (Keras 2) or "saved_model"
    keras_version: str = ""
    #: (class_name, layer name) of every layer in the config, nested models included.
    layers: list[tuple[str, str]] = field(default_factory=list)


def check(path: str, fmt: str) -> ModelFile:
    """Validate ``path`` of format ``fmt`` ("keras", "h5" or "savedmodel")."""
    if fmt == "keras":
        return _check_archive(Path(path))
    if fmt == "h5":
        return _check_h5(Path(path))
    if fmt == "savedmodel":
        return _check_saved_model(Path(path))
    raise Rejection("format", f"not a Keras model format: {fmt}")


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _loader_for(version: str) -> str:
    """Keras 2 (and files too old to record a version) need tf_keras; Keras 3 reads its own."""
    return "keras" if version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3 \
        else "tf_keras"


# ---- .keras archives -------------------------------------------------------------------------


def _check_archive(path: Path) -> ModelFile:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise Rejection("format", "a zip archive without config.json: not a Keras "
                                          "model (.keras) file")
            bad = archive.testzip()  # reads every member: CRC, compression, truncation
            if bad is not None:
                raise Rejection("format", f"corrupt Keras archive: member '{bad}' fails its "
                                          f"CRC check")
            config = _parse_json(archive.read("config.json"), "config.json")
            version = ""
            if "metadata.json" in names:
                metadata = _parse_json(archive.read("metadata.json"), "metadata.json")
                version = str(metadata.get("keras_version", "")) if isinstance(
                    metadata, dict) else ""
            weights = [n for n in names if n.endswith(".weights.h5")]
            for name in weights:
                data = archive.read(name)
                _check_h5_data(io.BytesIO(data), len(data), f" in member '{name}'")
    except Rejection:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, NotImplementedError, ...
        raise Rejection("format", f"corrupt or truncated Keras archive ({_one_line(exc)})") \
            from None
    return ModelFile(_loader_for(version), version, _model_layers(config, "config.json"))


# ---- HDF5 --------------------------------------------------------------------------------------


def _check_h5(path: Path) -> ModelFile:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except Exception as exc:
        raise Rejection("format", f"not a readable HDF5 file, corrupt or truncated "
                                  f"({_one_line(exc)})") from None
    try:
        with handle:
            attrs = handle.attrs
            if "model_config" not in attrs:
                if "layer_names" in attrs or "model_weights" not in handle:
                    raise Rejection("format", "the HDF5 file holds only weights "
                                              "(save_weights), not a model: save the whole "
                                              "model with model.save()")
                raise Rejection("format", "the HDF5 file has no model_config attribute: not "
                                          "a Keras model")
            config = _parse_json(_text(attrs["model_config"]), "model_config")
            version = _text(attrs["keras_version"]) if "keras_version" in attrs else ""
            if "model_weights" not in handle:
                raise Rejection("format", "the HDF5 file has a model config but no "
                                          "model_weights group")
        _check_h5_data(path, path.stat().st_size, "")
    except Rejection:
        raise
    except Exception as exc:
        raise Rejection("format", f"corrupt HDF5 file ({_one_line(exc)})") from None
    return ModelFile(_loader_for(version), version, _model_layers(config, "model_config"))


def _check_h5_data(source, size: int, where: str) -> None:
    """Open an HDF5 file of ``size`` bytes and read every dataset, so truncated or damaged
    data shows now. ``where`` names the file inside an archive ("" for the file itself).

    A damaged header can claim a dataset far larger than the file; reading it would allocate
    and fill gigabytes, so an uncompressed dataset larger than the file is rejected unread.
    """
    import h5py

    def read(name, obj):
        if isinstance(obj, h5py.Dataset):
            try:
                if obj.nbytes > 4 * size + (1 << 20):
                    if obj.compression is None:
                        raise Rejection("format", f"corrupt HDF5 data: '{name}'{where} claims "
                                                  f"{obj.nbytes} bytes, more than the file "
                                                  f"holds")
                    return None  # compressed: left to Keras, under the load deadline
                obj[()]
            except Rejection:
                raise
            except Exception as exc:
                raise Rejection("format", f"corrupt HDF5 data in '{name}'{where} "
                                          f"({_one_line(exc)})") from None

    try:
        with h5py.File(source, "r") as handle:
            handle.visititems(read)
    except Rejection:
        raise
    except Exception as exc:
        raise Rejection("format", f"corrupt HDF5 file{where} ({_one_line(exc)})") from None


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


# ---- SavedModel --------------------------------------------------------------------------------


def _check_saved_model(path: Path) -> ModelFile:
    """Decoding saved_model.pb needs TensorFlow's protobuf classes, i.e. TensorFlow itself,
    so only what the file system shows is checked here; TensorFlow reports the rest."""
    pb = path / "saved_model.pb"
    if not pb.is_file():
        raise Rejection("format", "SavedModel directory without a saved_model.pb file")
    if pb.stat().st_size == 0:
        raise Rejection("format", "saved_model.pb is empty")
    return ModelFile("saved_model")


# ---- model configs -----------------------------------------------------------------------------


def _parse_json(raw, what: str):
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Rejection("format", f"{what} is not valid JSON, the file is corrupt "
                                  f"({_one_line(exc, 120)})") from None


def _model_layers(config, what: str) -> list[tuple[str, str]]:
    """The (class_name, name) of every layer in a model config, nested models included.

    Lambda layers are refused here: their Python bytecode is stored in the file and would run
    when the model is called, so a model file could execute arbitrary code (Keras 3 refuses
    them by default for the same reason).
    """
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) or \
            not isinstance(config.get("config"), (dict, list)):
        raise Rejection("format", f"{what} is not a Keras model config")
    layers: list[tuple[str, str]] = []

    def walk(node, depth: int) -> None:
        if depth > 200:
            raise Rejection("format", f"{what} is nested too deeply")
        if isinstance(node, dict):
            cls, cfg = node.get("class_name"), node.get("config")
            if isinstance(cls, str) and isinstance(cfg, dict) and isinstance(cfg.get("name"),
                                                                            str):
                layers.append((cls, cfg["name"]))
                if cls == "Lambda":
                    raise Rejection(
                        "unsupported", "Lambda layers carry Python code in the model file, "
                        "which tinyml does not run; replace it by built-in layers",
                        op="Lambda", layer=cfg["name"])
            for value in node.values():
                walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    walk(config, 0)
    _check_input_shapes(config)
    return layers


def _check_input_shapes(config: dict) -> None:
    """Reject a dynamic non-batch input dimension already here (TensorFlow would repeat the
    check after seconds of loading). Only the model's own inputs count: a nested model with
    a flexible input size may well be called on a fixed-size tensor."""
    top = config.get("config")
    layers = top.get("layers") if isinstance(top, dict) else top
    if not isinstance(layers, list):
        return
    for layer in layers:
        if not isinstance(layer, dict) or layer.get("class_name") != "InputLayer":
            continue
        cfg = layer.get("config")
        if not isinstance(cfg, dict):
            continue
        shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
        if isinstance(shape, list) and len(shape) > 1 and any(d is None for d in shape[1:]):
            raise Rejection("shape", f"input '{cfg.get('name', '?')}' has unresolvable dynamic "
                                     f"shape {shape}: only the batch dimension may be unknown, "
                                     f"give the model a fixed input size")
