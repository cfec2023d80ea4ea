"""Structured channel pruning: drop whole output channels and rebuild the network narrower.

Unlike unstructured sparsity, which a dense int8 kernel still multiplies through, a narrower
network does fewer MACs, holds smaller activations and stores fewer weights on every runtime.

1. Channel groups. Every tensor's last axis (its channels) belongs to a *group*: the channels
   a producer (a Conv2D or Dense) creates and everything that carries them unchanged --
   BatchNormalization, activations, dropout, pooling (global pooling too), padding, cropping,
   up-sampling, and DepthwiseConv2D with depth multiplier 1, whose channel count is its
   input's, so its channels go with the producer's. Tensors that meet in an elementwise merge
   (Add, Subtract, Multiply, Average, Maximum, Minimum: residual connections) are one group:
   their producers lose the same channels, ranked by their summed (mean-normalized) norms.
2. Pinned groups keep all their channels: the model's inputs and outputs, and any group read
   by a layer this module does not narrow (Concatenate, Reshape, Softmax over channels, a
   depthwise multiplier > 1, SeparableConv2D, grouped convolutions, channels-first data,
   anything unknown). Those layers are copied unchanged, so the model is always rebuilt; the
   report says which groups were pinned and by which layer.
3. Flatten: a Dense after Flatten reads rows ``(y * W + x) * C + c`` of the flattened
   ``(H, W, C)`` tensor, so dropping channel ``c`` drops those rows at every position.
4. Every other group keeps ``max(1, round(C * (1 - S)))`` channels, those whose producer
   filters (``kernel[..., c]``) have the largest L1 (or L2) norm, in their original order. The
   model is cloned with narrower ``filters`` / ``units`` and every weight copied as the numpy
   slice of the original at the kept indices. Channels whose whole path is zero contribute
   nothing, so removing them changes no output: the unit tests check exactly that.

Nested models, shared layers and subclassed models cannot be cloned layer by layer; they fail
with one line naming the layer (:mod:`.keras_graph`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinyml.compress.keras_graph import LayerGraph, library, trace
from tinyml.errors import TinymlError

#: Layers that carry their input's channels through unchanged (channels-last data).
PASS_THROUGH = ("BatchNormalization", "Activation", "ReLU", "LeakyReLU", "ELU", "Dropout",
                "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                "AlphaDropout", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Identity",
                "ActivityRegularization", "DepthwiseConv2D")
#: Of those, the ones that also pass a flattened tensor through unchanged.
FLAT_PASS_THROUGH = ("Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout", "Identity",
                     "ActivityRegularization")
MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
PRODUCERS = ("Conv2D", "Dense")
NORMS = ("l1", "l2")


@dataclass
class _Group:
    channels: int
    producers: list = field(default_factory=list)  # Keras layers whose kernel[..., c] it is
    pinned: str = ""                                # why it keeps all its channels


@dataclass
class ChannelPlan:
    """The analysis: for each layer name, the group of its input and of its output; for each
    group root, the kept channel indices (all of them if not pruned)."""

    graph: LayerGraph
    groups: list[_Group]
    parent: list[int]
    tensor_group: dict[int, int]                 # tensor id -> group
    flat: dict[int, tuple[int, int]]             # flattened tensor id -> (group, positions)
    kept: dict[int, np.ndarray] = field(default_factory=dict)

    def root(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def keep_of(self, tensor: int) -> np.ndarray | None:
        """Kept indices along the last axis of ``tensor`` (None: all of them)."""
        if tensor in self.flat:
            g, positions = self.flat[tensor]
            keep = self.kept.get(self.root(g))
            if keep is None:
                return None
            channels = self.groups[self.root(g)].channels
            return (np.arange(positions)[:, None] * channels + keep[None, :]).reshape(-1)
        if tensor not in self.tensor_group:
            return None
        return self.kept.get(self.root(self.tensor_group[tensor]))

    def summary(self) -> list[dict]:
        """One row per channel group: its producers, the layers whose per-channel weights
        follow them, channels before and after, and why it is pinned."""
        followers: dict[int, list[str]] = {}
        for node in self.graph.nodes:  # depthwise convolutions, batch norms: channels follow
            if node.layer.weights and _kind(node.layer) == "pass" and \
                    node.inputs[0] in self.tensor_group and node.inputs[0] not in self.flat:
                g = self.root(self.tensor_group[node.inputs[0]])
                followers.setdefault(g, []).append(node.layer.name)
        rows = []
        for g in sorted({self.root(g) for g in range(len(self.groups))}):
            group = self.groups[g]
            if not group.producers:
                continue
            keep = self.kept.get(g)
            rows.append({"producers": [layer.name for layer in group.producers],
                         "followers": followers.get(g, []),
                         "channels_before": group.channels,
                         "channels_after": group.channels if keep is None else int(keep.size),
                         "pinned": group.pinned})
        return rows


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in ("channels_last", None)


def _kind(layer) -> str:
    """'producer', 'pass', 'merge', 'flatten' or 'other' (copied unchanged, inputs pinned).
    The graph is built, so a BatchNormalization's ``axis`` is already non-negative."""
    name = type(layer).__name__
    config = layer.get_config()
    if not _channels_last(layer):
        return "other"
    if name == "Conv2D" and config.get("groups", 1) == 1:
        return "producer"
    if name == "Dense":
        return "producer"
    if name == "DepthwiseConv2D":
        return "pass" if config.get("depth_multiplier", 1) == 1 else "other"
    if name == "BatchNormalization":
        # Keras 2 keeps the axis as a list.
        axis = list(layer.axis) if hasattr(layer.axis, "__len__") else [layer.axis]
        return "pass" if axis in ([-1], [len(layer.input.shape) - 1]) else "other"
    if name == "Activation":
        return "other" if config.get("activation") in ("softmax", "log_softmax") else "pass"
    if name in PASS_THROUGH:
        return "pass"
    if name in MERGES:
        return "merge"
    if name == "Flatten":
        return "flatten"
    return "other"


def analyze(model) -> ChannelPlan:
    """Channel groups of ``model`` (step 1-3 of the module docstring); nothing kept yet."""
    graph = trace(model)
    plan = ChannelPlan(graph, [], [], {}, {})

    def new(channels: int, producer=None, pinned: str = "") -> int:
        plan.groups.append(_Group(channels, [producer] if producer is not None else [], pinned))
        plan.parent.append(len(plan.parent))
        return len(plan.groups) - 1

    def pin(tensor: int, reason: str) -> None:
        if tensor in plan.flat:
            g = plan.root(plan.flat[tensor][0])
        elif tensor in plan.tensor_group:
            g = plan.root(plan.tensor_group[tensor])
        else:
            return
        if not plan.groups[g].pinned:
            plan.groups[g].pinned = reason

    def union(a: int, b: int) -> int:
        a, b = plan.root(a), plan.root(b)
        if a != b:
            plan.parent[b] = a
            plan.groups[a].producers += plan.groups[b].producers
            plan.groups[a].pinned = plan.groups[a].pinned or plan.groups[b].pinned
        return a

    def channels(tensor: int) -> int:
        shape = graph.shapes[tensor]
        return int(shape[-1]) if len(shape) >= 2 and shape[-1] is not None else 0

    for t in graph.inputs:
        plan.tensor_group[t] = new(channels(t), pinned="model input")

    def grouped(t: int) -> bool:  # a tensor whose last axis is a group's channels
        return t in plan.tensor_group and t not in plan.flat

    for node in graph.nodes:
        layer, kind = node.layer, _kind(node.layer)
        name = type(layer).__name__
        if name == "InputLayer":
            for t in node.outputs:
                plan.tensor_group.setdefault(t, new(channels(t), pinned="model input"))
            continue
        single = len(node.inputs) == 1 and len(node.outputs) == 1
        src, out = node.inputs[0] if node.inputs else None, node.outputs[0]
        if kind == "producer" and len(node.outputs) == 1:
            plan.tensor_group[out] = new(channels(out), layer)
        elif kind == "pass" and single and src in plan.flat and name in FLAT_PASS_THROUGH:
            plan.flat[out] = plan.flat[src]
        elif kind == "pass" and single and grouped(src):
            plan.tensor_group[out] = plan.tensor_group[src]
        elif kind == "merge" and len(node.outputs) == 1 and all(map(grouped, node.inputs)) \
                and len({graph.shapes[t][-1] for t in node.inputs + [out]}) == 1:
            g = plan.tensor_group[node.inputs[0]]
            for t in node.inputs[1:]:
                g = union(g, plan.tensor_group[t])
            plan.tensor_group[out] = g
        elif kind == "flatten" and single and grouped(src) and len(graph.shapes[src]) > 2:
            positions = int(np.prod(graph.shapes[src][1:-1], dtype=np.int64))
            plan.flat[out] = (plan.tensor_group[src], positions)
        else:  # copied unchanged: what it reads keeps its channels
            for t in node.inputs:
                pin(t, f"read by {name} '{layer.name}', which is copied unchanged")
            for t in node.outputs:
                plan.tensor_group[t] = new(channels(t), pinned=f"produced by '{layer.name}'")
    for t in graph.outputs:
        pin(t, "model output")
    return plan


def filter_norms(layer, norm: str) -> np.ndarray:
    """The L1 or L2 norm of each output filter ``kernel[..., c]`` of a Conv2D or Dense."""
    kernel = np.asarray(layer.kernel, np.float64)
    filters = kernel.reshape(-1, kernel.shape[-1])
    return np.abs(filters).sum(axis=0) if norm == "l1" else np.sqrt((filters ** 2).sum(axis=0))


def choose(plan: ChannelPlan, fraction: float, norm: str = "l1") -> ChannelPlan:
    """Keep the ``1 - fraction`` strongest channels of every unpinned group (step 4)."""
    if norm not in NORMS:
        raise TinymlError(f"--norm {norm}: expected one of {', '.join(NORMS)}")
    if not 0.0 < fraction < 1.0:
        raise TinymlError(f"--sparsity must be between 0 and 1, got {fraction}")
    plan.kept.clear()
    for g in {plan.root(g) for g in range(len(plan.groups))}:
        group = plan.groups[g]
        if group.pinned or not group.producers:
            continue
        score = np.zeros(group.channels)
        for layer in group.producers:
            norms = filter_norms(layer, norm)
            score += norms / norms.mean() if norms.mean() > 0 else norms
        keep = max(1, int(round(group.channels * (1.0 - fraction))))
        plan.kept[g] = np.sort(np.argsort(-score, kind="stable")[:keep])
    return plan


def _new_width(plan: ChannelPlan) -> dict[str, int]:
    widths = {}
    for node in plan.graph.nodes:
        if _kind(node.layer) == "producer":
            keep = plan.keep_of(node.outputs[0])
            if keep is not None:
                widths[node.layer.name] = int(keep.size)
    return widths


def _sliced_weights(node, plan: ChannelPlan) -> list[np.ndarray]:
    """The layer's weights as numpy slices of the original at the kept indices."""
    layer = node.layer
    weights = [np.asarray(w) for w in layer.get_weights()]
    kind = _kind(layer)
    name = type(layer).__name__
    keep_in = plan.keep_of(node.inputs[0]) if node.inputs else None
    keep_out = plan.keep_of(node.outputs[0]) if kind == "producer" else None
    if kind == "producer":
        kernel = weights[0]
        if keep_in is not None:
            kernel = np.take(kernel, keep_in, axis=kernel.ndim - 2)
        if keep_out is not None:
            kernel = np.take(kernel, keep_out, axis=-1)
        rest = [w if keep_out is None else w[keep_out] for w in weights[1:]]
        return [kernel] + rest
    if kind == "pass" and keep_in is not None and node.inputs[0] not in plan.flat:
        if name == "DepthwiseConv2D":  # kernel (kh, kw, C, 1), bias (C,)
            return [np.take(weights[0], keep_in, axis=2)] + [w[keep_in] for w in weights[1:]]
        return [w[keep_in] for w in weights]  # BatchNormalization: one value per channel
    return weights


def rebuild(model, plan: ChannelPlan):
    """A new, narrower Keras model with the kept channels' weights copied over."""
    k = library(model)
    widths = _new_width(plan)
    current = {"layer": None}

    def clone(layer):
        current["layer"] = layer.name
        config = layer.get_config()
        if layer.name in widths:
            config["filters" if "filters" in config else "units"] = widths[layer.name]
        return layer.__class__.from_config(config)

    try:
        narrow = k.models.clone_model(model, clone_function=clone)
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise TinymlError(f"cannot rebuild layer '{current['layer']}' narrower: {text}") \
            from None
    for node in plan.graph.nodes:
        layer = node.layer
        if type(layer).__name__ == "InputLayer" or not layer.weights:
            continue
        target = narrow.get_layer(layer.name)
        weights = _sliced_weights(node, plan)
        shapes = [tuple(w.shape) for w in target.get_weights()]
        if shapes != [tuple(w.shape) for w in weights]:
            raise TinymlError(f"cannot rebuild layer '{layer.name}' ({type(layer).__name__}) "
                              f"narrower: its weights would be {shapes}, the slices are "
                              f"{[list(w.shape) for w in weights]}")
        target.set_weights(weights)
    return narrow


def prune_channels(model, fraction: float, norm: str = "l1"):
    """(the narrower model, the plan)."""
    plan = choose(analyze(model), fraction, norm)
    if not plan.kept:
        reasons = "; ".join(f"{r['producers'][0]}: {r['pinned']}" for r in plan.summary())
        raise TinymlError(f"no channel group can be pruned ({reasons})")
    return rebuild(model, plan), plan
