"""Per-layer statistics of a graph: what ``tinyml inspect`` prints.

- MACs: multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED
  (see ``tinyml.ir.ops``); other layers count 0.
- Parameter bytes: the constant tensors a layer reads (weights, biases); in the totals each
  constant counts once even if several layers share it.
- Activation bytes: the layer's non-constant inputs plus its outputs, i.e. what must be live
  in RAM while it runs when nothing is computed in place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyml.ir import Graph


@dataclass
class LayerSummary:
    index: int
    op: str
    name: str
    inputs: list[list[int]]
    outputs: list[list[int]]
    dtype: str
    macs: int
    param_bytes: int
    activation_bytes: int


@dataclass
class GraphSummary:
    layers: list[LayerSummary]
    macs: int
    param_bytes: int
    peak_activation_bytes: int

    def to_json(self) -> dict:
        return {
            "layers": [asdict(layer) for layer in self.layers],
            "totals": {"macs": self.macs, "param_bytes": self.param_bytes,
                       "layers": len(self.layers),
                       "peak_activation_bytes": self.peak_activation_bytes},
        }


def summarize(graph: Graph) -> GraphSummary:
    layers = []
    seen_constants: set[str] = set()
    total_params = 0
    for index, op in enumerate(graph.ops):
        ins = [t for t in graph.op_inputs(op) if t is not None]
        outs = graph.op_outputs(op)
        constants = [t for t in ins if t.is_constant]
        activations = [t for t in ins if not t.is_constant]
        for t in constants:
            if t.name not in seen_constants:
                seen_constants.add(t.name)
                total_params += t.nbytes
        layers.append(LayerSummary(
            index=index, op=op.kind, name=op.name,
            inputs=[list(t.shape) for t in activations],
            outputs=[list(t.shape) for t in outs],
            dtype=(activations or outs)[0].dtype,
            macs=int(op.spec.macs(op, graph.op_inputs(op), outs)),
            param_bytes=sum(t.nbytes for t in constants),
            activation_bytes=sum(t.nbytes for t in activations) + sum(t.nbytes for t in outs),
        ))
    return GraphSummary(layers, sum(layer.macs for layer in layers), total_params,
                        max((layer.activation_bytes for layer in layers), default=0))
