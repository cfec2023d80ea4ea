"""Move a per-channel MUL or ADD by a constant above a RESHAPE that keeps the channels.

Why: the TFLite converter writes a Keras Conv1D followed by BatchNormalization as
CONV_2D -> RESHAPE (the SQUEEZE of the unit height) -> MUL -> ADD, so the per-channel affine
map does not directly follow the convolution and ``fold_channel_affine`` cannot fold it into
the weights. A reshape that keeps the last (channel) axis commutes with an element-wise
operation by a constant that varies at most along that axis: ``reshape(x) * g ==
reshape(x * g)``. Swapping them brings the MUL/ADD next to its convolution; the fold then
runs as usual.

Only float graphs: in int8 the MUL/ADD requantizes, and moving it changes nothing about
what TFLM computes but would be pointless (no fold follows on int8).
"""

from __future__ import annotations

from tinyml.ir import Graph, Op, Tensor
from tinyml.passes.framework import OptimizerPass, only_consumer, producer_of


class AffineThroughReshape(OptimizerPass):
    name = "affine_through_reshape"

    def match(self, graph: Graph, op: Op) -> bool:
        return _plan(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        reshape, x_index = _plan(graph, op)
        source = graph.tensors[reshape.inputs[0]]
        moved = graph.unique_name(f"{op.outputs[0]}/before_reshape")
        graph.add_tensor(Tensor(moved, source.shape, source.dtype))
        inputs = list(op.inputs)
        inputs[x_index] = reshape.inputs[0]
        reshaped_in = op.outputs[0]
        op.inputs, op.outputs = inputs, [moved]
        reshape.inputs, reshape.outputs = [moved], [reshaped_in]
        # The affine op now runs first.
        graph.ops.remove(op)
        graph.ops.insert(graph.ops.index(reshape), op)
        return True


def _plan(graph: Graph, op: Op) -> tuple[Op, int] | None:
    if op.kind not in ("MUL", "ADD") or len(op.inputs) != 2:
        return None
    a, b = (graph.tensors[n] for n in op.inputs)
    x_index = 1 if a.is_constant else 0
    x, c = (b, a) if a.is_constant else (a, b)
    if x.is_constant or not c.is_constant or x.dtype != "float32" or c.dtype != "float32":
        return None
    reshape = producer_of(graph, x.name)
    if reshape is None or reshape.kind != "RESHAPE" or len(reshape.inputs) != 1:
        return None
    source = graph.tensors[reshape.inputs[0]]
    out = graph.tensors[op.outputs[0]]
    if source.is_constant or out.shape != x.shape or not source.shape or not x.shape:
        return None
    if source.shape[-1] != x.shape[-1] or len(c.shape) > len(source.shape):
        return None
    if any(d != 1 for d in c.shape[:-1]) or (c.shape and c.shape[-1] not in (1, x.shape[-1])):
        return None
    if not only_consumer(graph, x.name, op):
        return None
    # Worth it only when a layer that can absorb the affine map produces the source.
    producer = producer_of(graph, source.name)
    if producer is None or producer.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                  "FULLY_CONNECTED"):
        return None
    return reshape, x_index
