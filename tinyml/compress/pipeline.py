"""``tinyml prune`` end to end: load, measure, prune and fine-tune, measure again, save.

The report (a plain dict, the ``--json`` document) holds the accuracy before and after on the
held-out data, the achieved sparsity (``sparsity``: ``pruned_kernels``, the zeros of the
kernels gradual pruning pruned, or ``pruned_channels``, the channels removed from the groups
channel pruning narrowed; ``all_kernels``, the zeros of every kernel) and per layer, the
parameters and MACs before and after, and:

- gradual pruning: the accuracy after each fine-tuning epoch against the sparsity reached then
  (the accuracy-against-sparsity curve of the schedule), starting from the dense model;
- channel pruning: the accuracy right after the rebuild (before fine-tuning) and the channel
  groups, kept or pinned and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinyml.errors import TinymlError

MODES = ("gradual", "channels")


@dataclass
class PruneOptions:
    model: Path
    data: str
    sparsity: float
    output: Path
    structured: str | None = None   # None (gradual, unstructured) or "channels"
    epochs: int = 10
    eval_data: str | None = None
    holdout: float = 0.2
    seed: int = 0
    norm: str = "l1"
    min_weights: int = 256
    learning_rate: float = 1e-3


def check_options(o: PruneOptions) -> None:
    """Everything that can be refused before TensorFlow is imported (which takes seconds)."""
    if not 0.0 < o.sparsity < 1.0:
        raise TinymlError(f"--sparsity must be between 0 and 1 (a fraction), got {o.sparsity}")
    if not o.eval_data and not 0.0 < o.holdout < 1.0:
        raise TinymlError(f"--holdout must be between 0 and 1, got {o.holdout}")
    if o.epochs < 1:
        raise TinymlError(f"--epochs must be at least 1, got {o.epochs}")
    if o.output.suffix.lower() not in (".keras", ".h5"):
        raise TinymlError(f"{o.output}: the pruned model is saved as a Keras model; name it "
                          f"*.keras or *.h5")
    if o.output.is_dir():
        raise TinymlError(f"{o.output}: is a directory (-o names the model file to write)")
    if not Path(o.model).exists():
        raise TinymlError(f"{o.model}: no such file or directory")
    for spec in (o.data, o.eval_data):
        if spec and not str(spec).startswith("random") and not Path(spec).exists():
            raise TinymlError(f"data {spec}: no such file or directory")


def run_prune(o: PruneOptions, status=None) -> dict:
    from tinyml.compress import costs, finetune

    check_options(o)
    say = status or (lambda text: None)
    say("loading the model")
    model, graph = finetune.load_model(o.model)
    split = finetune.load_split(o.data, graph, o.eval_data, o.holdout, o.seed)
    before_costs = {c.name: c for c in costs.layer_costs(model)}
    before = costs.totals(model)
    say("measuring the model")
    accuracy_before = finetune.accuracy(model, split.x_eval, split.y_eval)
    report = {"model": str(o.model), "output": str(o.output),
              "mode": "channels" if o.structured else "gradual",
              "target_sparsity": o.sparsity, "epochs": o.epochs, "seed": o.seed,
              "data": {"train": split.source, "train_samples": int(len(split.x_train)),
                       "eval": split.eval_source, "eval_samples": int(len(split.x_eval))}}
    if o.structured == "channels":
        pruned, extra = _channels(model, split, o, say)
    elif o.structured is None:
        pruned, extra = _gradual(model, split, o, say, accuracy_before)
    else:
        raise TinymlError(f"--structured {o.structured}: only 'channels' is supported")
    accuracy_after = finetune.accuracy(pruned, split.x_eval, split.y_eval)
    after = costs.totals(pruned)
    layers = []
    for c in costs.layer_costs(pruned):
        b = before_costs.get(c.name)
        layers.append({"name": c.name, "kind": c.kind,
                       "kernel_before": b.kernel_shape if b else None,
                       "kernel_after": c.kernel_shape, "weights_before": b.weights if b else None,
                       "weights_after": c.weights, "nonzero": c.nonzero,
                       "sparsity": round(c.sparsity, 6), "macs_before": b.macs if b else None,
                       "macs_after": c.macs, "nonzero_macs": c.nonzero_macs,
                       **extra["layers"].get(c.name, {})})
    say("saving")
    try:
        pruned.save(str(o.output))
    except OSError as exc:
        raise TinymlError(f"{o.output}: cannot write ({exc.strerror or exc})") from None
    report.update({
        "accuracy": {"before": accuracy_before, "after": accuracy_after,
                     **extra.get("accuracy", {})},
        "sparsity": {**extra["sparsity"], "all_kernels": after["kernel_sparsity"]},
        "params": {"before": before["params"], "after": after["params"]},
        "kernel_weights": {"before": before["kernel_weights"], "after": after["kernel_weights"],
                           "nonzero_after": after["kernel_nonzero"]},
        "macs": {"before": before["macs"], "after": after["macs"],
                 "nonzero_after": after["nonzero_macs"]},
        "layers": layers,
        **{k: v for k, v in extra.items() if k not in ("layers", "accuracy", "sparsity")},
    })
    return report


def _gradual(model, split, o: PruneOptions, say, accuracy_before: float):
    from tinyml.compress import finetune
    from tinyml.compress.gradual_pruning import GradualPruner, plan_layers

    plan = plan_layers(model, o.min_weights)
    per_epoch = finetune.steps_per_epoch(len(split.x_train))
    steps = per_epoch * o.epochs
    # About ten mask updates over the schedule (Zhu & Gupta update every few hundred steps of
    # a long run; a short fine-tuning needs updates often enough to be gradual).
    pruner = GradualPruner(plan, o.sparsity, steps, frequency=max(1, round(0.7 * steps / 10)))
    curve = [{"epoch": 0, "step": 0, "target_sparsity": 0.0, "sparsity": pruner.achieved(),
              "accuracy": accuracy_before}]
    pruning = pruner.callback(model)

    def record(epoch: int, acc: float) -> None:
        say(f"fine-tuning: epoch {epoch}/{o.epochs}, sparsity {100 * pruner.target:.0f} %")
        curve.append({"epoch": epoch, "step": pruning.step, "target_sparsity":
                      round(pruner.target, 6), "sparsity": round(pruner.achieved(), 6),
                      "accuracy": acc})

    say(f"fine-tuning: epoch 0/{o.epochs}")
    finetune.fine_tune(model, split, o.epochs, o.learning_rate, o.seed,
                       [pruning, finetune.epoch_evaluation(model, split, record)])
    pruner.apply()
    layers = {layer.name: {"pruned": True} for layer in plan.pruned}
    layers.update({name: {"pruned": False, "skipped": why} for name, why in plan.skipped.items()})
    return model, {"layers": layers,
                   "sparsity": {"pruned_kernels": round(pruner.achieved(), 6)},
                   "schedule": {"begin_step": pruner.begin, "end_step": pruner.end,
                                "frequency": pruner.frequency, "steps": steps,
                                "min_weights": o.min_weights},
                   "curve": curve}


def _channels(model, split, o: PruneOptions, say):
    from tinyml.compress import finetune
    from tinyml.compress.channel_pruning import prune_channels

    say("rebuilding the model narrower")
    narrow, plan = prune_channels(model, o.sparsity, o.norm)
    rebuilt = finetune.accuracy(narrow, split.x_eval, split.y_eval)
    say(f"fine-tuning {o.epochs} epochs")
    finetune.fine_tune(narrow, split, o.epochs, o.learning_rate, o.seed)
    groups = plan.summary()
    layers = {}
    for g in groups:
        for name in g["producers"]:
            layers[name] = {"pruned": g["channels_after"] < g["channels_before"],
                            "channels_before": g["channels_before"],
                            "channels_after": g["channels_after"],
                            **({"pinned": g["pinned"]} if g["pinned"] else {})}
        for name in g["followers"]:
            layers[name] = {"pruned": g["channels_after"] < g["channels_before"],
                            "channels_before": g["channels_before"],
                            "channels_after": g["channels_after"],
                            "follows": g["producers"]}
    kept = sum(g["channels_after"] for g in groups if not g["pinned"])
    total = sum(g["channels_before"] for g in groups if not g["pinned"])
    return narrow, {"layers": layers, "accuracy": {"after_rebuild": rebuilt},
                    "sparsity": {"pruned_channels": round(1 - kept / total, 6) if total else 0.0},
                    "norm": o.norm, "groups": groups}
