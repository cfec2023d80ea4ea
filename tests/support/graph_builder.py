"""Hand-built int8 IR graphs with random quantization, constants and inputs.

They reach kernel parameters no converter emits (odd zero points, extreme scales, every
activation), with the reference interpreter as their oracle.
"""

from __future__ import annotations

import math

import numpy as np

from tinyml.ir import Graph, Op, Quantization, Tensor


class Builder:
    """A one-op (or few-op) int8 graph with random quantization, constants and inputs."""

    def __init__(self, name: str, seed: int):
        self.graph = Graph(name)
        self.rng = np.random.default_rng(seed)
        self.feeds: dict[str, np.ndarray] = {}
        self._n = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}{self._n}"

    def scale(self, low: float = -3.0, high: float = 0.0) -> float:
        return float(np.float32(10 ** self.rng.uniform(low, high)))

    def input(self, shape, scale: float | None = None, zero_point: int | None = None,
              dtype: str = "int8") -> str:
        name = self._name("x")
        if dtype == "float32":
            self.graph.add_tensor(Tensor(name, shape, "float32"))
            self.feeds[name] = self.rng.normal(0, 3, shape).astype(np.float32)
        else:
            zp = int(self.rng.integers(-128, 128)) if zero_point is None else zero_point
            self.graph.add_tensor(Tensor(name, shape, "int8", Quantization(
                [self.scale() if scale is None else scale], [zp])))
            self.feeds[name] = self.rng.integers(-128, 128, shape).astype(np.int8)
        self.graph.inputs.append(name)
        return name

    def int8_const(self, shape, axis: int | None = None, zero_point: int = 0,
                   scale: float | None = None) -> str:
        name = self._name("w")
        channels = shape[axis] if axis is not None else 1
        scales = [self.scale(-3, -1) if scale is None else scale for _ in range(channels)]
        data = self.rng.integers(-127, 128, shape).astype(np.int8)
        self.graph.add_tensor(Tensor(name, shape, "int8",
                                     Quantization(scales, [zero_point] * channels, axis),
                                     data))
        return name

    def activation_like(self, shape, like: str) -> str:
        """A constant int8 tensor quantized like tensor ``like`` (e.g. an ADD operand)."""
        name = self._name("c")
        q = self.graph.tensors[like].quant
        self.graph.add_tensor(Tensor(name, shape, "int8", Quantization(q.scale, q.zero_point),
                                     self.rng.integers(-128, 128, shape).astype(np.int8)))
        return name

    def bias(self, n: int, scale: float, spread: int = 4000) -> str:
        name = self._name("b")
        data = self.rng.integers(-spread, spread + 1, n).astype(np.int32)
        self.graph.add_tensor(Tensor(name, (n,), "int32", Quantization([scale], [0]), data))
        return name

    def op(self, kind: str, inputs: list[str], attrs=None, scale: float | None = None,
           zero_point: int | None = None, dtype: str = "int8") -> str:
        name = self._name("y")
        quant = None
        if dtype == "int8":
            zp = int(self.rng.integers(-128, 128)) if zero_point is None else zero_point
            quant = Quantization([self.scale() if scale is None else scale], [zp])
        self.graph.add_tensor(Tensor(name, (), dtype, quant))
        self.graph.add_op(Op(kind, name, inputs, [name], attrs))
        return name

    def finish(self, *outputs: str) -> tuple[Graph, list[np.ndarray]]:
        self.graph.outputs = list(outputs)
        self.graph.finalize()
        return self.graph, [self.feeds[n] for n in self.graph.inputs]


def quantization_of(b: Builder, name: str) -> tuple[float, int]:
    t = b.graph.tensors[name]
    return t.scale(), t.zero_point()


def acc_scale(b: Builder, x: str, w: str, taps: int) -> float:
    """An output scale that maps a typical accumulator to about +-64 codes (with a random
    factor of up to 3x either way), so outputs are spread out rather than saturated."""
    sx = b.graph.tensors[x].scale()
    sw = float(np.mean(b.graph.tensors[w].quant.scale))
    return float(np.float32(sx * sw * 75 * math.sqrt(taps) / 64 * 10 ** b.rng.uniform(-.5, .5)))


ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
