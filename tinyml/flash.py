"""Flash per layer: the constant bytes each layer puts in weights.c, and how its weights are
stored.

Why one module: ``compile --json``, ``tinyml report`` and the flash budget's error
(tinyml.budget) must agree on what a layer costs, and their sum must be the ``weights_bytes``
code generation reports. So the accounting follows the emitter (tinyml/codegen/project.py):
every constant array of a layer's kernel call (weights, bias, requantization constants,
tables), plus the constant tensors it reads, each of those counted once, at its first reader,
as weights.c defines it once.

Formats (``KernelCall.weight_format``): "dense int8", "dense int4" (two values a byte),
"sparse8" / "sparse4" (run-length rows with int8 / int4 values, tinyml.codegen.sparse);
"-" for a layer without a weight filter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyml.codegen.lowering import KernelCall
from tinyml.ir import Graph

#: The params fields that hold a layer's weight filter, in every format.
WEIGHT_FIELDS = ("filter", "row_entries", "stream")


@dataclass
class LayerFlash:
    name: str
    op: str
    format: str              # how the weights are stored ("-": no weight filter)
    weights_bytes: int       # the weight filter alone
    bytes: int               # every constant of the layer (weights, bias, multipliers ...)

    def to_json(self) -> dict:
        return asdict(self)


def layer_flash(graph: Graph, calls: list[KernelCall]) -> list[LayerFlash]:
    """Per kernel call, in order: its constant bytes in weights.c and its weight format."""
    seen: set[str] = set()
    layers = []
    for call in calls:
        weights = total = 0
        for path, value in call.fields():
            if hasattr(value, "values"):  # a ConstArray
                total += int(value.values.nbytes)
                if path.rpartition(".")[2] in WEIGHT_FIELDS:
                    weights += int(value.values.nbytes)
        for arg in call.args:
            kind, _, name = arg.partition(":")
            t = graph.tensors.get(name) if kind == "in" else None
            if t is not None and t.is_constant and name not in seen:
                seen.add(name)
                total += int(t.nbytes)
        layers.append(LayerFlash(call.op.name, call.op.kind, call.weight_format or "-",
                                 weights, total))
    return layers


def by_layer(graph: Graph, calls: list[KernelCall]) -> dict[str, int]:
    """Constant bytes by layer name (a layer lowered to several calls: their sum)."""
    sizes: dict[str, int] = {}
    for layer in layer_flash(graph, calls):
        sizes[layer.name] = sizes.get(layer.name, 0) + layer.bytes
    return sizes


def largest(graph: Graph, calls: list[KernelCall]) -> LayerFlash | None:
    """The layer with the most constant bytes."""
    layers = layer_flash(graph, calls)
    return max(layers, key=lambda layer: layer.bytes) if layers else None


def format_summary(layers: list[LayerFlash]) -> str:
    """How many layers store their weights in each format, e.g. "3 dense int8, 2 sparse4"."""
    counts: dict[str, int] = {}
    for layer in layers:
        if layer.format != "-":
            counts[layer.format] = counts.get(layer.format, 0) + 1
    return ", ".join(f"{n} {fmt}" for fmt, n in sorted(counts.items())) or "no weight filters"
