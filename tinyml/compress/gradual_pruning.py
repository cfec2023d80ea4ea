"""Gradual magnitude pruning (Zhu & Gupta, "To prune, or not to prune", 2017).

During fine-tuning the target sparsity of every pruned kernel follows

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3

updated every ``dt`` steps from ``t0`` to ``t0 + n*dt``: fast at first, while many weights are
redundant, slowly near the end, so the network has time to recover from each cut. At every
update each kernel keeps its largest-magnitude weights (per layer, unstructured) and a 0/1 mask
records which; the mask is applied again after every optimizer step, because the gradient
(and Adam's momentum) would otherwise bring pruned weights back. Weights once pruned have
magnitude 0 and so stay pruned. The last mask is applied to the saved model, so its zeros are
exact; int8 quantization (symmetric per-channel weights, and BatchNormalization folding, which
only scales a kernel) maps them to exactly 0 too.

Which kernels: every Conv2D, DepthwiseConv2D and Dense kernel with at least ``min_weights``
weights (default :data:`MIN_WEIGHTS`). Smaller kernels (a first 3x3 convolution on one channel,
a depthwise kernel) hold a negligible share of the weights but each weight matters more, so
pruning them costs accuracy and saves nothing; they are reported as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinyml.compress.costs import kernel, weighted_layers
from tinyml.compress.keras_graph import library
from tinyml.errors import TinymlError

#: Kernels with fewer weights than this are left dense (see the module docstring).
MIN_WEIGHTS = 256
#: The schedule ends after this fraction of the fine-tuning steps; the rest recovers at the
#: final sparsity (Zhu & Gupta stop pruning well before training ends, too).
PRUNING_FRACTION = 0.7


def scheduled_sparsity(step: int, final: float, begin: int, end: int, frequency: int = 1,
                       initial: float = 0.0) -> float:
    """Zhu & Gupta's target sparsity at training step ``step``; constant between updates
    (which happen every ``frequency`` steps from ``begin``), ``initial`` before ``begin`` and
    ``final`` from ``end`` on (``end - begin`` is their ``n * dt``)."""
    if step < begin:
        return initial
    if step >= end or end <= begin:
        return final
    t = begin + ((step - begin) // frequency) * frequency
    return final + (initial - final) * (1.0 - (t - begin) / (end - begin)) ** 3


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """A float32 0/1 mask of ``weights``' shape zeroing exactly ``round(sparsity * size)``
    weights, the smallest in magnitude (ties broken by position, so the count is exact)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity {sparsity} outside [0, 1]")
    flat = np.abs(np.asarray(weights, np.float64)).reshape(-1)
    count = int(round(sparsity * flat.size))
    mask = np.ones(flat.size, np.float32)
    mask[np.argsort(flat, kind="stable")[:count]] = 0.0
    return mask.reshape(np.shape(weights))


@dataclass
class PruningPlan:
    """Which kernels are pruned, which are not and why."""

    pruned: list = field(default_factory=list)            # Keras layers
    skipped: dict[str, str] = field(default_factory=dict)  # layer name -> reason


def plan_layers(model, min_weights: int = MIN_WEIGHTS) -> PruningPlan:
    plan = PruningPlan()
    for layer in weighted_layers(model):
        size = int(np.prod(kernel(layer).shape))
        if size < min_weights:
            plan.skipped[layer.name] = f"{size} weights < {min_weights}"
        else:
            plan.pruned.append(layer)
    if not plan.pruned:
        raise TinymlError(f"no Conv2D, DepthwiseConv2D or Dense kernel has {min_weights} "
                          f"weights or more: nothing to prune (lower --min-weights)")
    return plan


class GradualPruner:
    """Masks of the planned kernels, updated on Zhu & Gupta's schedule over ``steps``
    training steps and applied after every step (see :meth:`callback`)."""

    def __init__(self, plan: PruningPlan, final: float, steps: int, frequency: int):
        self.plan = plan
        self.final = final
        self.begin = 0
        self.end = max(1, int(round(PRUNING_FRACTION * steps)))
        self.frequency = max(1, frequency)
        self.target = 0.0
        self.masks = {layer.name: np.ones(kernel(layer).shape, np.float32)
                      for layer in plan.pruned}

    def update(self, step: int) -> None:
        """Recompute the masks if the schedule's target changed at ``step``."""
        target = scheduled_sparsity(step, self.final, self.begin, self.end, self.frequency)
        if target == self.target:
            return
        self.target = target
        for layer in self.plan.pruned:
            self.masks[layer.name] = magnitude_mask(np.asarray(kernel(layer)), target)
        self.apply()

    def apply(self) -> None:
        """Zero the pruned weights (after an optimizer step moved them)."""
        for layer in self.plan.pruned:
            weights = kernel(layer)
            weights.assign(np.asarray(weights) * self.masks[layer.name])

    def achieved(self) -> float:
        """The fraction of the pruned kernels' weights that are exactly 0."""
        zeros = sum(int(np.sum(np.asarray(kernel(layer)) == 0)) for layer in self.plan.pruned)
        total = sum(int(np.prod(kernel(layer).shape)) for layer in self.plan.pruned)
        return zeros / total

    def callback(self, model):
        """A Keras callback for ``model``'s fit: update the masks before a step, apply them
        after it."""
        keras = library(model)
        pruner = self

        class GradualPruning(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.step = 0

            def on_train_batch_begin(self, batch, logs=None):
                pruner.update(self.step)

            def on_train_batch_end(self, batch, logs=None):
                pruner.apply()
                self.step += 1

            def on_train_end(self, logs=None):
                pruner.update(max(self.step, pruner.end))  # the final sparsity, whatever ran
                pruner.apply()

        return GradualPruning()
