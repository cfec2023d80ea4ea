"""The numpy reference of what the device computes when it learns: the oracle of the tests.

Written from the math, not from the C: dequantize the backbone's int8 features, a chain of
dense layers in float32, softmax, the cross-entropy gradient back through the chain, the
gradient's global L2 norm clipped to ``clip_norm``, then SGD ``p - step * g`` with
``step = lr * min(1, clip_norm / norm)``, committed only if the new parameters and the logits
they give on the same sample are finite (the NaN/Inf guard). All arithmetic in float32 like
the device; sums may associate differently (numpy's pairwise sums), so results agree to
float rounding, not bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F32 = np.float32


@dataclass
class LayerShape:
    in_features: int
    out_features: int
    activation: str   # NONE, RELU, RELU6


def _activate(z: np.ndarray, activation: str) -> np.ndarray:
    if activation == "RELU":
        return np.maximum(z, F32(0))
    if activation == "RELU6":
        return np.minimum(np.maximum(z, F32(0)), F32(6))
    return z


def _active(y: np.ndarray, activation: str) -> np.ndarray:
    """Where the activation's derivative is 1 (given its output y)."""
    if activation == "RELU":
        return y > 0
    if activation == "RELU6":
        return (y > 0) & (y < 6)
    return np.ones(y.shape, bool)


class HeadReference:
    def __init__(self, layers: list[LayerShape], params: np.ndarray, clip_norm: float,
                 feature_scale: float, feature_zero_point: int):
        self.layers = layers
        self.params = np.array(params, dtype=F32)
        self.clip_norm = F32(clip_norm)
        self.feature_scale = F32(feature_scale)
        self.feature_zero_point = int(feature_zero_point)
        expected = sum(l.in_features * l.out_features + l.out_features for l in layers)
        if self.params.size != expected:
            raise ValueError(f"{self.params.size} parameters for layers needing {expected}")

    @classmethod
    def from_metadata(cls, meta: dict, params: np.ndarray) -> "HeadReference":
        """From a project's learn.json and the device's (or the head's initial) parameters."""
        layers = [LayerShape(l["in_features"], l["out_features"], l["activation"])
                  for l in meta["layers"]]
        return cls(layers, params, meta["clip_norm"], meta["feature"]["scale"],
                   meta["feature"]["zero_point"])

    def _views(self, params: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        views, at = [], 0
        for layer in self.layers:
            n = layer.in_features * layer.out_features
            w = params[at:at + n].reshape(layer.out_features, layer.in_features)
            b = params[at + n:at + n + layer.out_features]
            views.append((w, b))
            at += n + layer.out_features
        return views

    def features(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q).reshape(-1).astype(np.int32)
        return self.feature_scale * (q - self.feature_zero_point).astype(F32)

    def _forward(self, params: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
        """Each layer's input, then the logits."""
        values = [x]
        for (w, b), layer in zip(self._views(params), self.layers):
            values.append(_activate((w @ values[-1] + b).astype(F32), layer.activation))
        return values

    def probabilities(self, q: np.ndarray) -> np.ndarray:
        logits = self._forward(self.params, self.features(q))[-1]
        e = np.exp(logits - logits.max()).astype(F32)
        return (e / e.sum(dtype=F32)).astype(F32)

    def gradients(self, q: np.ndarray, label: int) -> np.ndarray:
        values = self._forward(self.params, self.features(q))
        delta = self.probabilities(q)
        delta[label] -= F32(1)
        delta = np.where(_active(values[-1], self.layers[-1].activation), delta, F32(0))
        grads = []
        views = self._views(self.params)
        for index in range(len(self.layers) - 1, -1, -1):
            w, _ = views[index]
            x = values[index]
            grads.append(np.concatenate([np.outer(delta, x).reshape(-1), delta]))
            if index > 0:
                delta = (w.T @ delta).astype(F32)
                delta = np.where(_active(x, self.layers[index - 1].activation), delta, F32(0))
        return np.concatenate(grads[::-1]).astype(F32)

    def step(self, q: np.ndarray, label: int, lr: float) -> bool:
        """One SGD step on sample features ``q`` (the backbone's int8 output); False (and no
        change) when the guard rejects it."""
        with np.errstate(over="ignore", invalid="ignore"):
            g = self.gradients(q, label)
            norm_sq = np.sum(g * g, dtype=F32)
            step = F32(lr)
            if self.clip_norm > 0 and norm_sq > self.clip_norm * self.clip_norm:
                step = F32(lr) * (self.clip_norm / np.sqrt(norm_sq, dtype=F32))
            candidate = (self.params - step * g).astype(F32)
            if not np.isfinite(step) or not np.all(np.isfinite(candidate)):
                return False
            if not np.all(np.isfinite(self._forward(candidate, self.features(q))[-1])):
                return False
        self.params = candidate
        return True
