"""Calibration and evaluation data: what ``--calib DATA`` (and ``--eval DATA``) may name.

- ``.npy``: an array of inputs for a single-input model, either one sample shaped like the
  input or a batch along the first axis (a sample may omit the input's size-1 axes, e.g.
  ``(N, 8, 8)`` images for a ``(1, 8, 8, 1)`` input).
- ``.npz``: inputs under the graph input's name, ``x``, ``inputs``, ``data`` or ``images``
  (one array per input, by name, for multi-input models) and, optionally, integer labels
  (or one-hot rows) under ``y``, ``labels``, ``label`` or ``targets``.
- a folder of images (PNG, JPEG, BMP, GIF), decoded by TensorFlow (a dependency already; PIL
  and matplotlib need not be installed), resized to the input's height and width, with the
  input's channel count, and mapped from [0, 255] to ``image_range`` ([0, 1] by default);
  NHWC inputs, or NCHW ones (ONNX) whose channel count (1, 3 or 4) is unambiguous.
  Images in sub-folders are labeled by sub-folder, in sorted order (Keras'
  ``image_dataset_from_directory`` convention).
- ``random`` or ``random:LOW,HIGH``: seeded uniform noise in [LOW, HIGH] ([-1, 1] by default).
  Ranges calibrated on noise say nothing of real inputs, and neither do accuracy figures
  measured on it: the dataset is marked ``synthetic`` and the CLI warns.

A ``limit`` keeps a seeded random subset (a folder sorted by class would otherwise calibrate on
one class only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
INPUT_KEYS = ("x", "inputs", "data", "images")
LABEL_KEYS = ("y", "labels", "label", "targets")
#: Samples drawn for ``random`` when no limit is given.
RANDOM_SAMPLES = 100


@dataclass
class Dataset:
    """Samples for a graph: ``samples[i]`` holds one float32 array per graph input, shaped
    exactly like that input. ``labels`` holds one class index per sample, or is None."""

    samples: list[list[np.ndarray]]
    labels: np.ndarray | None
    source: str
    synthetic: bool = False

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, count: int | None, seed: int = 0) -> "Dataset":
        """A seeded random subset of ``count`` samples (all of them if None or larger)."""
        if count is None or count >= len(self):
            return self
        if count <= 0:
            raise TinymlError(f"{self.source}: the number of samples must be positive")
        keep = np.sort(np.random.default_rng(seed).permutation(len(self))[:count])
        labels = self.labels[keep] if self.labels is not None else None
        return Dataset([self.samples[i] for i in keep], labels, self.source, self.synthetic)


def load_dataset(spec, graph: Graph, limit: int | None = None, seed: int = 0,
                 image_range: tuple[float, float] = (0.0, 1.0)) -> Dataset:
    """Read ``spec`` (a path, ``random[:LOW,HIGH]``, or arrays) as samples for ``graph``."""
    if isinstance(spec, Dataset):
        return spec.subset(limit, seed)
    if isinstance(spec, (np.ndarray, list, tuple)):
        inputs = [np.asarray(a) for a in spec] if isinstance(spec, (list, tuple)) else [spec]
        return _from_arrays(inputs, None, graph, "arrays").subset(limit, seed)
    text = str(spec)
    if text == "random" or text.startswith("random:"):
        return _random(text, graph, limit or RANDOM_SAMPLES, seed)
    path = Path(text)
    if not path.exists():
        raise TinymlError(f"calibration data {path}: no such file or directory (expected a "
                          f".npy/.npz file, a folder of images or 'random')")
    if path.is_dir():
        return _images(path, graph, image_range).subset(limit, seed)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise TinymlError(f"calibration data {path}: not a readable .npy file ({exc})")
        return _from_arrays([array], None, graph, str(path)).subset(limit, seed)
    if suffix == ".npz":
        return _npz(path, graph).subset(limit, seed)
    raise TinymlError(f"calibration data {path}: unknown format (expected .npy, .npz, a folder "
                      f"of images or 'random')")


def _npz(path: Path, graph: Graph) -> Dataset:
    try:
        archive = np.load(path, allow_pickle=False)
        arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError) as exc:
        raise TinymlError(f"calibration data {path}: not a readable .npz file ({exc})")
    labels = next((arrays[k] for k in LABEL_KEYS if k in arrays), None)
    if all(name in arrays for name in graph.inputs):
        inputs = [arrays[name] for name in graph.inputs]
    elif len(graph.inputs) == 1:
        key = next((k for k in INPUT_KEYS if k in arrays), None)
        rest = [k for k in arrays if k not in LABEL_KEYS]
        if key is None and len(rest) == 1:
            key = rest[0]
        if key is None:
            raise TinymlError(f"calibration data {path}: no input array (expected one of "
                              f"{', '.join(INPUT_KEYS)} or '{graph.inputs[0]}'; found "
                              f"{', '.join(arrays) or 'nothing'})")
        inputs = [arrays[key]]
    else:
        raise TinymlError(f"calibration data {path}: the model has inputs "
                          f"{', '.join(graph.inputs)}; store one array under each name")
    return _from_arrays(inputs, labels, graph, str(path))


def _from_arrays(inputs: list[np.ndarray], labels, graph: Graph, source: str) -> Dataset:
    if len(inputs) != len(graph.inputs):
        raise TinymlError(f"calibration data {source}: {len(inputs)} input arrays for a model "
                          f"with {len(graph.inputs)} inputs")
    batches = [_as_batch(a, graph, name, source) for a, name in zip(inputs, graph.inputs)]
    count = batches[0].shape[0]
    if any(b.shape[0] != count for b in batches):
        raise TinymlError(f"calibration data {source}: inputs hold different numbers of "
                          f"samples ({', '.join(str(b.shape[0]) for b in batches)})")
    if count == 0:
        raise TinymlError(f"calibration data {source}: no samples")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] > 1:
            labels = labels.argmax(axis=1)  # one-hot rows
        labels = labels.reshape(-1)
        if labels.shape[0] != count or labels.dtype.kind not in "iub":
            raise TinymlError(f"calibration data {source}: labels must be {count} class "
                              f"indices, got {labels.dtype}{list(labels.shape)}")
        labels = labels.astype(np.int64)
    samples = [[b[i] for b in batches] for i in range(count)]
    return Dataset(samples, labels, source)


def _as_batch(array: np.ndarray, graph: Graph, name: str, source: str) -> np.ndarray:
    """``array`` as (N,) + input shape, float32; N samples along the first axis, or one."""
    shape = graph.tensors[name].shape
    array = np.asarray(array)
    if array.dtype.kind not in "fiub":
        raise TinymlError(f"calibration data {source}: input '{name}' holds {array.dtype} "
                          f"values, not numbers")
    per_sample = int(np.prod(shape, dtype=np.int64))
    squeezed = tuple(d for d in shape if d != 1)
    if tuple(array.shape) == tuple(shape) or (
            array.size == per_sample and tuple(d for d in array.shape if d != 1) == squeezed):
        batch = array.reshape((1,) + tuple(shape))
    elif array.ndim >= 1 and array.shape[0] > 0 and (
            tuple(array.shape[1:]) in (tuple(shape), tuple(shape[1:]))
            or tuple(d for d in array.shape[1:] if d != 1) == squeezed):
        batch = array.reshape((array.shape[0],) + tuple(shape))
    else:
        raise TinymlError(f"calibration data {source}: input '{name}' has shape "
                          f"{list(array.shape)}, which is neither one sample nor a batch of "
                          f"samples of the model's input shape {list(shape)}")
    batch = batch.astype(np.float32)
    if not np.isfinite(batch).all():
        raise TinymlError(f"calibration data {source}: input '{name}' contains inf or NaN")
    return batch


def _random(text: str, graph: Graph, count: int, seed: int) -> Dataset:
    low, high = -1.0, 1.0
    if text != "random":
        try:
            low, high = (float(v) for v in text.split(":", 1)[1].split(","))
        except ValueError:
            raise TinymlError(f"calibration data '{text}': expected 'random' or "
                              f"'random:LOW,HIGH'") from None
        if not high > low:
            raise TinymlError(f"calibration data '{text}': LOW must be below HIGH")
    rng = np.random.default_rng(seed)
    samples = [[rng.uniform(low, high, graph.tensors[n].shape).astype(np.float32)
                for n in graph.inputs] for _ in range(count)]
    return Dataset(samples, None, f"random uniform [{low:g}, {high:g}]", synthetic=True)


def _images(folder: Path, graph: Graph, image_range: tuple[float, float]) -> Dataset:
    if len(graph.inputs) != 1:
        raise TinymlError(f"calibration data {folder}: a folder of images feeds single-input "
                          f"models only")
    shape = graph.tensors[graph.inputs[0]].shape
    channels_first = len(shape) == 4 and shape[3] not in (1, 3, 4) and shape[1] in (1, 3, 4)
    if channels_first:  # an ONNX model's NCHW input
        shape = (shape[0], shape[2], shape[3], shape[1])
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3, 4):
        raise TinymlError(f"calibration data {folder}: the model's input {list(shape)} is not "
                          f"an image (expected [1, height, width, 1|3|4] or [1, 1|3|4, "
                          f"height, width])")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                   and p.is_file())
    if not files:
        raise TinymlError(f"calibration data {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    classes = sorted({p.parent for p in files} - {folder})
    labeled = bool(classes) and all(p.parent != folder for p in files)
    index = {c: i for i, c in enumerate(classes)}
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    low, high = image_range
    samples, labels = [], []
    for p in files:
        try:
            image = tf.io.decode_image(p.read_bytes(), channels=shape[3], expand_animations=False)
        except (tf.errors.InvalidArgumentError, ValueError) as exc:
            message = getattr(exc, "message", str(exc))
            raise TinymlError(f"calibration image {p}: cannot decode ({message})") from None
        image = tf.image.resize(tf.cast(image, tf.float32), shape[1:3]).numpy()
        image = (low + image * ((high - low) / 255.0)).astype(np.float32)[None]
        samples.append([np.ascontiguousarray(image.transpose(0, 3, 1, 2)) if channels_first
                        else image])
        labels.append(index[p.parent] if labeled else 0)
    return Dataset(samples, np.array(labels, np.int64) if labeled else None, str(folder))
