"""The trainable head: the last K fully connected layers of a classifier, split off the graph.

``--trainable last:K`` makes the last K FULLY_CONNECTED layers train on the device. They must
form the end of the graph: a chain of fully connected layers (activations fused: none, RELU
or RELU6), followed only by ops the float head replaces (SOFTMAX, RESHAPE, DEQUANTIZE,
QUANTIZE). The rest, the backbone, stays int8 and compiles as usual with the head's input
as its output. The head's int8 weights and int32 biases become float32 master weights
(dequantized, exactly as the int8 graph means them), and ``max_classes`` adds zero rows to
the last layer for classes the model never saw (TinyOL's new classes).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph

#: Ops after the last trainable layer that the float head replaces (its softmax).
TRAILING_OPS = ("SOFTMAX", "RESHAPE", "DEQUANTIZE", "QUANTIZE")
#: Fused activations the head can differentiate, with their C enum (tinyml_training.h).
ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU6": 2}


@dataclass
class DenseLayer:
    name: str
    weights: np.ndarray      # float32 [out, in]
    bias: np.ndarray         # float32 [out]
    activation: str          # a key of ACTIVATIONS

    @property
    def in_features(self) -> int:
        return int(self.weights.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weights.shape[0])


@dataclass
class TrainableHead:
    layers: list[DenseLayer]
    feature_tensor: str       # the backbone's output, the head's int8 input
    feature_scale: float
    feature_zero_point: int
    model_classes: int        # outputs of the model as trained
    clip_norm: float          # gradient clipping (global L2 norm; 0 disables)

    @property
    def num_classes(self) -> int:
        return self.layers[-1].out_features

    @property
    def num_features(self) -> int:
        return self.layers[0].in_features

    def initial_params(self) -> np.ndarray:
        """The parameter vector as the device lays it out: per layer, weights then bias."""
        return np.concatenate([np.concatenate([layer.weights.reshape(-1), layer.bias])
                               for layer in self.layers]).astype(np.float32)

    @property
    def num_params(self) -> int:
        return sum(layer.weights.size + layer.bias.size for layer in self.layers)


def parse_trainable(spec: str) -> int:
    """``last:K`` -> K (``last`` alone means K = 1, the classifier)."""
    match = re.fullmatch(r"last(?::(\d+))?", str(spec).strip())
    if not match or (match.group(1) is not None and int(match.group(1)) < 1):
        raise TinymlError(f"--trainable '{spec}': expected last:K with K >= 1 (e.g. last:1, "
                          f"the classifier)")
    return int(match.group(1) or 1)


def _dequantized_dense(graph: Graph, op) -> DenseLayer:
    x_t, w_t = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
    b_t = graph.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] else None
    where = f"layer '{op.name}' (FULLY_CONNECTED)"
    if w_t.data is None or w_t.dtype != "int8" or w_t.quant is None:
        raise TinymlError(f"{where}: trainable layers need constant int8 weights")
    if x_t.dtype != "int8" or x_t.quant is None or x_t.quant.per_channel:
        raise TinymlError(f"{where}: its input must be int8 with per-tensor quantization")
    if op.attrs.activation not in ACTIVATIONS:
        raise TinymlError(f"{where}: fused activation {op.attrs.activation} cannot be trained "
                          f"(NONE, RELU or RELU6)")
    out_units, in_units = w_t.shape
    if x_t.size != in_units:
        raise TinymlError(f"{where}: input of {x_t.size} values is a batch of "
                          f"{x_t.size // in_units}; the device learns with batch 1")
    w_scale = np.broadcast_to(w_t.quant.scale.astype(np.float64), (out_units,))
    w_zero = np.broadcast_to(w_t.quant.zero_point, (out_units,))
    weights = (np.asarray(w_t.data, np.float64) - w_zero[:, None]) * w_scale[:, None]
    bias = np.zeros(out_units)
    if b_t is not None:
        bias = np.asarray(b_t.data, np.float64).reshape(-1) * float(x_t.quant.scale[0]) * w_scale
    return DenseLayer(op.name, weights.astype(np.float32), bias.astype(np.float32),
                      op.attrs.activation)


def split_head(graph: Graph, spec: str, max_classes: int | None = None,
               clip_norm: float = 20.0) -> tuple[Graph, TrainableHead]:
    """The backbone graph (a copy, ending at the head's input) and the head, as floats."""
    k = parse_trainable(spec)
    if len(graph.outputs) != 1:
        raise TinymlError(f"--trainable: the model has {len(graph.outputs)} outputs; a "
                          f"trainable head needs one (a classifier)")
    producer = graph.producers()
    users = graph.consumers()
    chain = []           # ops from the graph output back to the first trainable layer
    dense = 0
    name = graph.outputs[0]
    while dense < k:
        op = producer.get(name)
        if op is None:
            raise TinymlError(f"--trainable last:{k}: the model has only {dense} fully "
                              f"connected layer(s) at its end")
        if op.kind == "FULLY_CONNECTED":
            dense += 1
        elif dense > 0 or op.kind not in TRAILING_OPS:
            allowed = "FULLY_CONNECTED" if dense else "FULLY_CONNECTED, " + ", ".join(TRAILING_OPS)
            raise TinymlError(f"--trainable last:{k}: layer '{op.name}' ({op.kind}) sits "
                              f"between the trainable layers and the output; only {allowed} may")
        if len(users.get(name, [])) > (0 if name in graph.outputs else 1):
            raise TinymlError(f"--trainable last:{k}: tensor '{name}' of layer '{op.name}' "
                              f"feeds other layers too; the head must be a plain chain")
        chain.append(op)
        name = op.inputs[0]
    fcs = [op for op in reversed(chain) if op.kind == "FULLY_CONNECTED"]
    layers = [_dequantized_dense(graph, op) for op in fcs]
    feature = graph.tensors[fcs[0].inputs[0]]
    if len(users.get(feature.name, [])) != 1 or feature.name in graph.inputs:
        raise TinymlError(f"--trainable last:{k}: the head's input '{feature.name}' must be "
                          f"computed by the backbone and read only by the head")
    model_classes = layers[-1].out_features
    if max_classes is not None:
        if max_classes < model_classes:
            raise TinymlError(f"--max-classes {max_classes}: the model already has "
                              f"{model_classes} classes (layer '{fcs[-1].name}')")
        extra = max_classes - model_classes
        last = layers[-1]
        last.weights = np.concatenate([last.weights,
                                       np.zeros((extra, last.in_features), np.float32)])
        last.bias = np.concatenate([last.bias, np.zeros(extra, np.float32)])
    backbone = copy.deepcopy(graph)
    removed = {id(op) for op in chain}
    backbone.ops = [op for op, original in zip(backbone.ops, graph.ops)
                    if id(original) not in removed]
    backbone.outputs = [feature.name]
    used = set(backbone.inputs) | {feature.name}
    for op in backbone.ops:
        used.update(n for n in op.inputs + op.outputs if n)
    backbone.tensors = {n: t for n, t in backbone.tensors.items() if n in used}
    if not backbone.ops:
        raise TinymlError(f"--trainable last:{k}: nothing is left for the int8 backbone")
    head = TrainableHead(layers, feature.name, float(feature.quant.scale[0]),
                         int(feature.quant.zero_point[0]), model_classes, float(clip_norm))
    return backbone, head
