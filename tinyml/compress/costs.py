"""Parameters and multiply-accumulates of a Keras model, per weighted layer.

MACs follow the convention of ``tinyml inspect`` (and MLPerf Tiny): only Conv2D,
DepthwiseConv2D and Dense multiply, and a layer's MACs are its output positions times its
kernel's weights (for a depthwise kernel ``(kh, kw, C, m)`` that is ``kh*kw*C*m`` per output
pixel, the same formula). "Non-zero MACs" count only the products with a non-zero weight: what
a sparse kernel could skip, and what unstructured pruning saves at best; a dense int8 kernel
still performs all of them, which is why structured pruning exists.

Parameters are Keras' (``count_params``: BatchNormalization statistics included, although
the converter folds them into the convolution); kernel weights are reported apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from tinyml.compress.keras_graph import trace

#: Keras class names whose kernel is multiplied (and pruned).
WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclass
class LayerCost:
    name: str
    kind: str
    kernel_shape: list[int]
    weights: int        # kernel weights
    nonzero: int        # kernel weights that are not exactly 0
    macs: int
    nonzero_macs: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero / self.weights if self.weights else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "sparsity": round(self.sparsity, 6)}


def kernel(layer):
    """The kernel variable of a Conv2D, DepthwiseConv2D or Dense layer (a Keras 2 depthwise
    convolution calls it ``depthwise_kernel``)."""
    variable = getattr(layer, "kernel", None)
    return layer.depthwise_kernel if variable is None else variable


def weighted_layers(model) -> list:
    """The Conv2D, DepthwiseConv2D and Dense layers of ``model``, in execution order."""
    return [n.layer for n in trace(model).nodes if type(n.layer).__name__ in WEIGHTED]


def layer_costs(model) -> list[LayerCost]:
    graph = trace(model)
    costs = []
    for node in graph.nodes:
        layer = node.layer
        kind = type(layer).__name__
        if kind not in WEIGHTED:
            continue
        weights = np.asarray(kernel(layer))
        out = graph.shapes[node.outputs[0]]
        positions = int(np.prod([d for d in out[1:-1]], dtype=np.int64)) if len(out) > 2 else 1
        nonzero = int(np.count_nonzero(weights))
        costs.append(LayerCost(layer.name, kind, list(weights.shape), int(weights.size),
                               nonzero, positions * int(weights.size), positions * nonzero))
    return costs


def totals(model) -> dict:
    """Model-wide figures: Keras parameters, kernel weights and their non-zeros, MACs."""
    costs = layer_costs(model)
    weights = sum(c.weights for c in costs)
    nonzero = sum(c.nonzero for c in costs)
    return {"params": int(model.count_params()), "kernel_weights": weights,
            "kernel_nonzero": nonzero,
            "kernel_sparsity": round(1.0 - nonzero / weights, 6) if weights else 0.0,
            "macs": sum(c.macs for c in costs), "nonzero_macs": sum(c.nonzero_macs for c in costs)}
