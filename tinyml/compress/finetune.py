"""Data, fine-tuning and accuracy for ``tinyml prune``.

Models: Keras 3 loads the file; a legacy Keras 2 file it refuses is loaded by ``tf_keras``
and fine-tuned with it (a ``.keras`` output is then a Keras 2 archive, which tinyml's Keras
frontend reads with ``tf_keras`` too).

Data is what ``tinyml quantize --eval`` reads (:func:`tinyml.quantize.data.load_dataset`): a
``.npz`` with inputs under ``x`` (or the input's name) and integer labels under ``y``, or a
folder of images in one sub-folder per class. Pruning fine-tunes, so labels are required.
Without ``--eval`` a stratified, seeded fraction of the data is held out for the accuracies
the report gives, so they are never measured on images the fine-tuning saw.

Fine-tuning: Adam with a cosine-decayed learning rate (to a tenth), sparse categorical cross
entropy on the model's output, which may be probabilities (a softmax output, detected from the
values) or logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.compress.keras_graph import keras3, library
from tinyml.errors import TinymlError

BATCH = 32


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    source: str
    eval_source: str


def load_model(path) -> tuple[object, object]:
    """(the Keras model, its tinyml float graph). The file is first read by tinyml's Keras
    frontend, in its worker process, which rejects corrupt files with one line and gives the
    input shapes the data loader needs; only then is it loaded here, with Keras 3 (or, for a
    legacy Keras 2 file Keras 3 refuses, with tf_keras)."""
    from tinyml.frontends.keras import load_keras

    graph = load_keras(path)
    k = keras3()
    try:
        model = k.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises anything from ValueError to TypeError
        model = _load_keras2(path)
        if model is None:
            text = " ".join(str(exc).split())[:200]
            raise TinymlError(f"{path}: neither Keras 3 nor tf_keras can load the model for "
                              f"fine-tuning: {text}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TinymlError(f"{path}: prune fine-tunes single-input, single-output classifiers; "
                          f"this model has {len(model.inputs)} inputs and "
                          f"{len(model.outputs)} outputs")
    return model, graph


def _load_keras2(path):
    """A legacy Keras 2 file (which Keras 3 refuses) through ``tf_keras``, or None."""
    try:
        import tf_keras
        return tf_keras.models.load_model(str(path), compile=False)
    except Exception:
        return None


def _arrays(dataset, what: str) -> tuple[np.ndarray, np.ndarray]:
    if dataset.labels is None:
        raise TinymlError(f"{what} {dataset.source}: no labels (fine-tuning needs integer "
                          f"labels under 'y' in an .npz, or one image sub-folder per class)")
    x = np.stack([s[0] for s in dataset.samples])
    return x.reshape((x.shape[0],) + x.shape[2:]), dataset.labels  # drop the batch-1 axis


def holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: ``fraction`` of each class (at least one sample of a class
    with two or more), chosen by a seeded permutation."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        cut = min(len(idx) - 1, max(1, int(round(len(idx) * fraction))))
        held += list(idx[:cut])
        train += list(idx[cut:])
    return np.sort(np.array(train, np.int64)), np.sort(np.array(held, np.int64))


def load_split(data, graph, eval_data=None, fraction: float = 0.2, seed: int = 0) -> Split:
    from tinyml.quantize.data import load_dataset

    if any(str(spec).startswith("random") for spec in (data, eval_data) if spec):
        raise TinymlError("prune: fine-tuning needs labelled data, not random noise")
    x, y = _arrays(load_dataset(data, graph), "--data")
    if eval_data:
        x_eval, y_eval = _arrays(load_dataset(eval_data, graph), "--eval")
        return Split(x, y, x_eval, y_eval, str(data), str(eval_data))
    if not 0.0 < fraction < 1.0:
        raise TinymlError(f"--holdout must be between 0 and 1, got {fraction}")
    train, held = holdout(y, fraction, seed)
    if len(held) == 0 or len(train) == 0:
        raise TinymlError(f"--data {data}: {len(y)} samples are too few to hold some out")
    return Split(x[train], y[train], x[held], y[held], str(data),
                 f"{len(held)} samples of {data} held out (seed {seed})")


def outputs_probabilities(model, x: np.ndarray, classes: int) -> bool:
    """True if the model ends in a softmax (rows of non-negative values summing to 1), False
    for logits; anything that is not one score per class is refused."""
    out = np.asarray(model.predict(x[:64], verbose=0))
    if out.ndim != 2 or out.shape[1] < classes:
        raise TinymlError(f"prune fine-tunes classifiers: the output is {list(out.shape[1:])} "
                          f"per sample, not one score for each of the {classes} labelled classes")
    return bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=256, verbose=0), 1) == y))


def steps_per_epoch(samples: int) -> int:
    return max(1, int(np.ceil(samples / BATCH)))


def fine_tune(model, split: Split, epochs: int, learning_rate: float, seed: int,
              callbacks=()) -> None:
    """Train ``model`` on the training part of ``split`` for ``epochs``."""
    keras3()  # TensorFlow's threads and logging
    k = library(model)
    k.utils.set_random_seed(seed)
    classes = int(max(split.y_train.max(), split.y_eval.max())) + 1
    probabilities = outputs_probabilities(model, split.x_train, classes)
    steps = steps_per_epoch(len(split.x_train)) * epochs
    schedule = k.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.1)
    model.compile(k.optimizers.Adam(schedule),
                  k.losses.SparseCategoricalCrossentropy(from_logits=not probabilities))
    model.fit(split.x_train, split.y_train, batch_size=BATCH, epochs=epochs, shuffle=True,
              verbose=0, callbacks=list(callbacks))


def epoch_evaluation(model, split: Split, record):
    """A Keras callback for ``model``'s fit calling ``record(epoch, accuracy)`` with the
    held-out accuracy after every epoch: the points of the accuracy-against-sparsity curve."""
    k = library(model)

    class EpochEvaluation(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record(epoch + 1, accuracy(self.model, split.x_eval, split.y_eval))

    return EpochEvaluation()
