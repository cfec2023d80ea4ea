"""Per-layer statistics of a graph: what ``tinyml inspect`` prints.

- MACs: multiply-accumulates of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, from each op's
  spec in ``tinyml.ir.ops`` (the MLPerf Tiny convention); other layers count 0.
- Parameter bytes: the constant tensors a layer reads (weights, biases, a constant operand of
  ADD or MUL); in the totals each constant counts once even if several layers share it.
  Operands that are really parameters (RESHAPE's shape, PAD's paddings, MEAN's axes) are
  attributes in the IR, so they do not count; nor do values computed at compile time (the
  outputs of shape-only ops such as the SHAPE -> STRIDED_SLICE -> PACK chain of Keras Flatten).
- Activation bytes: the layer's distinct non-constant inputs plus its outputs, i.e. what must be
  live in RAM while it runs when nothing is computed in place. The peak over layers is a lower
  bound of the arena a memory planner can reach.

Notes: what the frontend normalized while reading the file (``Graph.notes``, e.g. a quirk of an
older TFLite converter), one line per kind; the JSON's ``notes`` list is empty for most files.

Layer names are the source model's (for TFLite: the first of the ``;``-joined names the
converter gives a fused op's output). :func:`readable_names` shortens them for the table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

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
    name: str
    layers: list[LayerSummary]
    macs: int
    param_bytes: int
    peak_activation_bytes: int
    input_bytes: int
    output_bytes: int
    notes: list[str] = field(default_factory=list)
    #: Streaming state (the model's variables, as imported) kept between invocations.
    state_bytes: int = 0

    def to_json(self) -> dict:
        """``{"layers": [...], "totals": {...}, "notes": [...]}`` with plain ints, lists and
        strings only."""
        return {
            "layers": [asdict(layer) for layer in self.layers],
            "totals": {"macs": self.macs, "param_bytes": self.param_bytes,
                       "layers": len(self.layers),
                       "peak_activation_bytes": self.peak_activation_bytes,
                       "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
                       "state_bytes": self.state_bytes},
            "notes": list(self.notes),
        }


def summarize(graph: Graph) -> GraphSummary:
    layers = []
    seen_constants: set[str] = set()
    total_params = 0
    for index, op in enumerate(graph.ops):
        ins = graph.op_inputs(op)
        outs = graph.op_outputs(op)
        present = {t.name: t for t in ins if t is not None}  # an op may read a tensor twice
        constants = [t for t in present.values() if t.is_constant and not t.folded]
        activations = [t for t in present.values() if not t.is_constant]
        computed = [t for t in outs if not t.folded]
        for t in constants:
            if t.name not in seen_constants:
                seen_constants.add(t.name)
                total_params += t.nbytes
        layers.append(LayerSummary(
            index=index, op=op.kind, name=op.name,
            inputs=[list(t.shape) for t in activations],
            outputs=[list(t.shape) for t in outs],
            dtype=_dtype(activations, outs),
            macs=int(op.spec.macs(op, ins, outs)),
            param_bytes=sum(t.nbytes for t in constants),
            activation_bytes=sum(t.nbytes for t in activations + computed),
        ))
    return GraphSummary(
        name=graph.name, layers=layers, macs=sum(layer.macs for layer in layers),
        param_bytes=total_params,
        peak_activation_bytes=max((layer.activation_bytes for layer in layers), default=0),
        input_bytes=sum(graph.tensors[n].nbytes for n in graph.inputs),
        output_bytes=sum(graph.tensors[n].nbytes for n in graph.outputs),
        notes=list(graph.notes),
        state_bytes=sum(var.nbytes for var in graph.variables.values()))


def _dtype(activations, outs) -> str:
    """The element type a layer computes in; "float32->int8" where it converts (QUANTIZE,
    DEQUANTIZE, CAST)."""
    source = (activations or outs)[0].dtype
    target = outs[0].dtype if outs else source
    return source if source == target else f"{source}->{target}"


def readable_names(names: list[str]) -> tuple[str, list[str]]:
    """Shorter layer names for a table: ``(scope, names)``.

    Converters name layers by their TensorFlow scope (``model/conv2d_3/BiasAdd``) and join the
    names of everything fused into one op with ``;``. For display we keep the first fused name
    and drop the leading scope most layers share (``model/``, ``functional_1/``), which the
    caller prints once instead. Names that do not start with that scope (``Identity``,
    ``StatefulPartitionedCall:0``) stay as they are.
    """
    first = [name.split(";")[0] or name for name in names]
    scopes = Counter(name.split("/")[0] + "/" for name in first if "/" in name.strip("/"))
    scope = ""
    if scopes:
        candidate, count = scopes.most_common(1)[0]
        if len(first) > 1 and count * 2 > len(first):
            scope = candidate
    short = [name[len(scope):] if scope and name.startswith(scope) else name for name in first]
    return scope, short
