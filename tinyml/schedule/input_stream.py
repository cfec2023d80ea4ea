"""``--input-stream rows``: the input image arrives row by row and is never whole in RAM.

Why: on a camera-fed part the input image is often the largest buffer of the plan (vww's
96x96x3 is 27,648 B of its 38,532 B patched arena), yet a sensor delivers the image one row
after the other. With ``--input-stream rows`` the generated code asks for the rows through a
callback the application defines,

    void tinyml_input_rows(int32_t first_row, int32_t count, tinyml_input_t *dst);

as the first layers need them, and keeps only a few rows of each tensor of a *row stage*.

The contract (also in the generated ``model.h``): within one ``tinyml_invoke()`` the callback
is asked for every row of the input exactly once, in increasing order (``first_row`` is the
row after the previous call's last one, starting at 0, up to the last row). It writes
``count`` whole rows (``width * channels`` values of the input's type each, row after row)
to ``dst``; when ``dst`` is NULL it skips them: no layer reads those rows (the last rows of
a strided 'valid' convolution), and a camera driver just reads past them.

The row stage (:class:`RowSchedule`) is a line-buffered pipeline: the first ``K`` layers
(spatially local layers that read the input or each other's outputs) run one output row at a
time, each tensor of the stage kept as a *band* of its newest rows. A layer's next output
row is computed as soon as the bands it reads hold the rows it needs (its kernel's rows of a
window operand, row y of a 1x1 or element-wise one); making a row of a band asks its producer
for it first, down to the callback (:func:`row_events` computes this demand-driven order at
compile time; model.c replays it from a table). A band keeps as many rows as its readers
need at once: the kernel's height for a convolution's input, and one more where a residual
ADD reads its skip row y after the expanding layer already read row y + 1. When a band is
full, a new row pushes the oldest out (the rows move up one: kernels read contiguous rows).
The last layer writes each row straight into its output tensor, the *split*, held whole; the
layers after it run layer by layer. Every row of every layer is computed once: unlike patches
there is no recomputed halo, only one kernel call per output row.

- Layer by layer (``--patch off``): the stage is the first layer alone, a rolling buffer of
  its kernel's rows.
- ``--patch auto``: every prefix of the layers that can end a stage is planned exactly, and
  ``--optimize`` picks among them as among patch grids (:func:`tinyml.schedule.patches.pick`;
  the smallest-stage plan plays "layer by layer").
- ``--patch SPLIT:N``: the stage ends at layer SPLIT (there is no grid: rows are the patches).

The first layer must run on a window of rows (convolutions, depthwise convolutions, pooling,
element-wise ops: the kernels ``tinyml ops`` marks as patchable); otherwise compile fails
with one line naming it. The input may be any type the first layer reads (a float input
before a QUANTIZE arrives as float rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from tinyml.errors import TinymlError
from tinyml.ir import Graph, Op, Tensor
from tinyml.schedule.patch_plan import PatchedPlan, plan_patched
from tinyml.schedule.patches import PatchStep, calls_by_op, patchable_reason, stage_splits
from tinyml.schedule.liveness import Buffer, Segment
from tinyml.schedule.receptive_field import NotLocal, Window, is_spatial, operand_windows

#: What ``--input-stream`` may be.
MODES = ("whole", "rows")
#: Kernel geometries a row stage can run: a window of rows, or one row of a dense image.
ROW_KINDS = ("window", "plane", "pointwise", "elementwise")


def parse_mode(text: str | None) -> bool:
    """``--input-stream``: True for "rows" (streamed), False for "whole" or absent."""
    text = (text or "whole").strip()
    if text not in MODES:
        raise TinymlError(f"--input-stream '{text}': expected one of {', '.join(MODES)}")
    return text == "rows"


def check_streamable(graph: Graph) -> None:
    """One single-image NHWC input, or a one-line error saying why not."""
    if len(graph.inputs) != 1:
        raise TinymlError(f"--input-stream rows: the model has {len(graph.inputs)} inputs; "
                          f"rows stream one image input")
    name = graph.inputs[0]
    if not is_spatial(graph, name):
        shape = "x".join(map(str, graph.tensors[name].shape))
        raise TinymlError(f"--input-stream rows: input '{name}' ({shape}) is not one NHWC "
                          f"image")


# ---- the schedule ------------------------------------------------------------------------------

@dataclass
class RowSchedule:
    """A row stage: ``graph.ops[0..k]`` one output row at a time, the input streamed."""

    split: str                     # the last stage layer's output, held whole
    split_layer: str
    split_index: int               # k
    stage: list[int]               # graph.ops indices 0..k
    input: str
    image_rows: int                # the input's height
    bands: list[Tensor]            # per tensor (0 the input, t layer t - 1's output) its band
    operands: list[list[Operand]]  # per stage layer, how it reads its activations
    events: list[int]              # 0: ask for the next input row; j: layer j-1's next row
    calls: list                    # per stage layer, lowered for one output row
    steps: list[PatchStep]         # one per stage layer (what reports and profiles walk)
    memory: PatchedPlan
    macs: int                      # one inference's MACs (each row computed once)
    layerwise_macs: int
    layer_macs: dict[int, int] = field(default_factory=dict)
    predicted_instructions: int | None = None
    layerwise_instructions: int | None = None
    #: Marks a row stage among the schedules (the project and reports ask for the callback).
    stream_rows = True

    @property
    def plan(self):
        return self.memory.plan

    def describe(self) -> str:
        """The stage in words (reports), as PatchSchedule.describe."""
        return (f"row stage of {len(self.stage)} layers, one output row at a time, the input "
                f"streamed")

    @property
    def grid(self) -> tuple[int, int]:
        """Rows are the patches: one per output row of the split, whole width."""
        return (self.split_rows, 1)

    @property
    def split_rows(self) -> int:
        return len([e for e in self.events if e == len(self.stage)])

    @property
    def mac_overhead(self) -> float:
        return (self.macs - self.layerwise_macs) / max(self.layerwise_macs, 1)

    @property
    def band_bytes(self) -> int:
        return sum(b.nbytes for b in self.bands)

    def to_json(self) -> dict:
        return {"kind": "rows", "split_layer": self.split_layer, "split_tensor": self.split,
                "split_index": self.split_index, "grid": list(self.grid),
                "patches": self.grid[0], "layers": len(self.stage),
                "mac_overhead": self.mac_overhead, "macs": self.macs,
                "predicted_instructions": self.predicted_instructions,
                "instructions_added": (self.predicted_instructions - self.layerwise_instructions
                                       if self.predicted_instructions is not None
                                       and self.layerwise_instructions is not None else None)}

    def input_json(self, graph: Graph) -> dict:
        """``compile --json``'s ``input_stream``: how the input is held."""
        source = graph.tensors[self.input]
        return {"mode": "rows", "callback": "tinyml_input_rows",
                "input_rows": self.image_rows, "input_bytes": source.nbytes,
                "band_rows": self.bands[0].shape[1], "band_bytes": self.bands[0].nbytes,
                "stage_layers": len(self.stage), "stage_band_bytes": self.band_bytes,
                "input_requests": sum(1 for e in self.events if e == 0)}

    def stage_features(self, graph: Graph, layer_features) -> dict:
        """Cost-model features of the stage layers: their layer-by-layer work, one call per
        output row (see tinyml.schedule.latency.stage_features for patches)."""
        features = {}
        for j, index in enumerate(self.stage):
            op = graph.ops[index]
            rows = sum(1 for e in self.events if e == j + 1)
            work, outputs, inputs, weights, _ = layer_features(graph, _Call(op))
            width = graph.tensors[op.outputs[0]].shape[2]
            features[op.name] = ((work, outputs, inputs, weights * rows, rows), width)
        return features


@dataclass
class _Call:
    op: object


@dataclass(frozen=True)
class Operand:
    """How a stage layer reads one activation: tensor ``source`` (0 the input, t the output
    of stage layer t - 1); output row y reads the input rows ``window.need``. ``dense``: the
    kernel reads exactly one row of a dense image, row ``y * stride - pad`` (1x1
    convolutions, strided ones included, element-wise ops, the skip input of CONV_2D_ADD);
    else the band is the kernel's input, the rows placed by its padding parameters.
    ``index``: the op input it is."""

    index: int
    source: int
    window: Window
    dense: bool


def stage_operands(graph: Graph, ops: list[Op], calls: list) -> list[list[Operand]]:
    """Per stage layer, its activation operands (raises NotLocal when a layer has no row
    form: see :func:`_stage_reason`)."""
    tensor_id = {graph.inputs[0]: 0}
    result = []
    for i, (op, call) in enumerate(zip(ops, calls)):
        if call.geometry not in ROW_KINDS:
            raise NotLocal(f"kernel {call.function} has no row form")
        operands = []
        out_rows = graph.tensors[op.outputs[0]].shape[1]
        for j, (rows, _) in operand_windows(graph, op).items():
            name = op.inputs[j]
            if name not in tensor_id:
                raise NotLocal(f"it reads '{name}', which the stage does not make")
            windowed = j == 0 and call.geometry in ("window", "plane")
            if not windowed and rows.extent != 1:
                raise NotLocal("it reads several rows of a dense image")
            operands.append(Operand(j, tensor_id[name], rows, not windowed))
        tensor_id[op.outputs[0]] = i + 1
        result.append(operands)
    return result


def _stage_reason(graph: Graph, by_op: dict, k: int) -> str | None:
    """Why ``graph.ops[0..k]`` cannot be a row stage, or None."""
    for i, op in enumerate(graph.ops[:k + 1]):
        call = by_op.get(id(op))
        reason = patchable_reason(graph, op, call)
        if reason is None:
            try:
                stage_operands(graph, graph.ops[:i + 1],
                               [by_op[id(o)] for o in graph.ops[:i + 1]])
            except NotLocal as exc:
                reason = str(exc)
        if reason is not None:
            return f"layer '{op.name}' ({op.kind}) cannot run row by row: {reason}"
    return None


def row_splits(graph: Graph, calls: Sequence) -> list[int]:
    """The k for which ``graph.ops[0..k]`` can be a row stage, shallowest first."""
    by_op = calls_by_op(calls)
    return [k for k in stage_splits(graph, calls) if _stage_reason(graph, by_op, k) is None]


def row_events(graph: Graph, ops: list[Op],
               operands: list[list[Operand]]) -> tuple[list[int], list[int]]:
    """The demand-driven order of a row stage, and how many rows each band must keep.

    Events: 0 asks for the next input row, j computes the next output row of stage layer
    j - 1. Each output row of the last layer in turn; a row is made only when a layer needs
    it for its next output row (all its operands' rows first). A band keeps a tensor's newest
    rows, the oldest pushed out by a new one: it must hold, whenever a layer reads it, every
    row from the first that layer reads to the newest made (``caps``, per tensor; a tensor
    read by two layers, e.g. a residual's skip, keeps rows for the one that lags). Raises
    NotLocal when an output row reads only padding."""
    heights = [graph.tensors[graph.inputs[0]].shape[1]] + \
        [graph.tensors[op.outputs[0]].shape[1] for op in ops]
    made = [0] * (len(ops) + 1)
    caps = [0] * (len(ops) + 1)
    events: list[int] = []

    def produce(t: int) -> None:  # the next row of tensor t
        if t == 0:
            events.append(0)
            made[0] += 1
            return
        y = made[t]
        spans = []
        for operand in operands[t - 1]:
            s = operand.source
            first, stop = operand.window.need((y, y + 1), heights[s])
            if first >= stop:
                raise NotLocal(f"row {y} of layer '{ops[t - 1].name}' reads only padding")
            while made[s] < stop:
                produce(s)
            spans.append((s, first))
        for s, first in spans:  # what the band must hold when the kernel runs
            caps[s] = max(caps[s], made[s] - first)
        events.append(t)
        made[t] += 1

    for _ in range(heights[-1]):
        produce(len(ops))
    return events, caps[:len(ops)]


def _relower(graph: Graph, ops: list[Op], operands: list[list[Operand]], bands: list[Tensor],
             lower: Callable[[Graph], list], calls: Sequence) -> list:
    """The stage's kernels lowered for one output row (scratch and per-call parameters of
    that size). Each layer reads its own names: a band for a window operand, one row for
    the others (``<tensor>@row<layer>.<input>``), and writes a one-row tensor."""
    row = Graph(graph.name)
    row.tensors = {n: t for n, t in graph.tensors.items() if t.is_constant}
    row_ops = []
    for i, op in enumerate(ops):
        inputs = list(op.inputs)
        for operand in operands[i]:
            band = bands[operand.source]
            name = f"{band.name}@row{i}.{operand.index}"
            shape = (1, 1) + tuple(band.shape[2:]) if operand.dense else band.shape
            row.tensors[name] = Tensor(name, shape, band.dtype, band.quant)
            inputs[operand.index] = name
        out = graph.tensors[op.outputs[0]]
        name = f"{op.outputs[0]}@row"
        row.tensors[name] = Tensor(name, (1, 1) + tuple(out.shape[2:]), out.dtype, out.quant)
        row_ops.append(Op(op.kind, op.name, inputs, [name], op.attrs))
    row.ops = row_ops
    row.inputs = [n for o in row_ops for n in o.inputs if "@row" in n]
    row.outputs = [o.outputs[0] for o in row_ops]
    lowered = calls_by_op(lower(row))
    by_op = calls_by_op(calls)
    result = []
    for op, row_op in zip(ops, row_ops):
        call = lowered.get(id(row_op))
        if call is None or call.function != by_op[id(op)].function:
            raise NotLocal(f"layer '{op.name}' lowers to another kernel for one row")
        result.append(_plane_only(call))
    return result


def _plane_only(call):
    """A DSP depthwise call of one row would take its pixel-by-pixel path (few outputs),
    whose tables need several times the plane's scratch: the row stage keeps the plane
    path (``pixel_channels`` 0), so the arena stays the bands' size."""
    if not call.params.get("pixel_channels"):
        return call
    from types import SimpleNamespace
    from tinyml.codegen.lowering import depthwise_scratch_bytes
    p = call.params
    ctx = SimpleNamespace(dsp=True, op=call.op)
    scratch = depthwise_scratch_bytes(ctx, p["plane_h"], p["plane_w"], p["filter_h"],
                                      p["filter_w"], call.function.endswith("_s4"), 0)
    return replace(call, params={**p, "pixel_channels": 0}, scratch_bytes=scratch)


class _StageMemory:
    """The row stage as :func:`tinyml.schedule.patch_plan.plan_patched` sees a patch stage:
    one step per stage layer; every band lives over the whole stage (it keeps rows from one
    output row to the next), each layer's scratch at its own step (calls never overlap)."""

    #: StageMemory's fields for line-buffer and split-over-input stages: a row stage keeps
    #: its rows in its own bands, and its split never lies over the (streamed) input.
    retained = frozenset()
    split_distance = None

    def __init__(self, schedule_bands: list[Tensor], calls: list, ops: list[Op], source: str,
                 split: str, layers: list[int]):
        self.bands = schedule_bands
        self.calls = calls
        self.input = source
        self.input_bytes = schedule_bands[0].nbytes
        self.split = split
        self.tile = split
        self.labels = [op.name for op in ops]
        self.layers = layers
        self.graph = Graph("row stage")
        self.graph.tensors = {b.name: b for b in schedule_bands[1:]}

    @property
    def steps(self) -> int:
        return len(self.calls)

    def liveness(self, use_in_place: bool = True):
        last = self.steps - 1
        buffers = [Buffer(b.name, [Segment(0, last, b.nbytes)], [b.name])
                   for b in self.bands[1:]]
        buffers += [Buffer(f"scratch{j}", [Segment(j, j, int(c.scratch_bytes))], [],
                           scratch_of=j)
                    for j, c in enumerate(self.calls) if c.scratch_bytes]
        return _Live(buffers)


@dataclass
class _Live:
    buffers: list
    in_place: list = field(default_factory=list)


def _layer_macs(graph: Graph, op: Op) -> int:
    return int(op.spec.macs(op, graph.op_inputs(op), graph.op_outputs(op)))


def row_schedule(graph: Graph, calls: Sequence, k: int,
                 lower: Callable[[Graph], list]) -> RowSchedule:
    """The row stage of ``graph.ops[0..k]`` and the plan of the whole graph around it.
    Raises NotLocal when it cannot be built."""
    ops = graph.ops[:k + 1]
    by_op = calls_by_op(calls)
    operands = stage_operands(graph, ops, [by_op[id(op)] for op in ops])
    events, caps = row_events(graph, ops, operands)
    bands = []
    for t, cap in enumerate(caps):  # tensor t: the input, then each layer's output
        name = graph.inputs[0] if t == 0 else ops[t - 1].outputs[0]
        full = graph.tensors[name]
        bands.append(Tensor(name, (1, cap) + tuple(full.shape[2:]), full.dtype, full.quant))
    row_calls = _relower(graph, ops, operands, bands, lower, calls)
    steps = [PatchStep(op, call, j, op.name) for j, (op, call) in enumerate(zip(ops, row_calls))]
    memory_stage = _StageMemory(bands, row_calls, ops, graph.inputs[0], ops[-1].outputs[0],
                                list(range(k + 1)))
    memory = plan_patched(graph, calls, memory_stage, list(range(k + 1)))
    memory.plan.sizes[graph.inputs[0]] = bands[0].nbytes  # the input is held as its band
    macs = sum(_layer_macs(graph, op) for op in graph.ops)
    return RowSchedule(ops[-1].outputs[0], ops[-1].name, k, list(range(k + 1)),
                       graph.inputs[0], graph.tensors[graph.inputs[0]].shape[1], bands,
                       operands, events, row_calls, steps, memory, macs, macs,
                       {j: _layer_macs(graph, op) for j, op in enumerate(ops)})


# ---- the choice ----------------------------------------------------------------------------------

def choose_rows(graph: Graph, calls: Sequence, option, lower: Callable[[Graph], list], *,
                optimize: str = "balanced",
                predict: Callable[[RowSchedule], int] | None = None,
                sram_bytes: int | None = None,
                notes: list[str] | None = None) -> RowSchedule:
    """The row stage ``--patch`` asks for with ``--input-stream rows``: ``off`` the first
    layer alone, ``SPLIT:N`` up to layer SPLIT, ``auto`` the stage ``--optimize`` picks among
    every valid one (the first-layer stage stands for layer by layer)."""
    from tinyml.schedule.patches import PatchOption, resolve_split, pick
    if not isinstance(option, PatchOption):
        option = PatchOption.parse(option)
    check_streamable(graph)
    by_op = calls_by_op(calls)
    if option.mode == "forced":
        k = resolve_split(graph, option.split)
        reason = _stage_reason(graph, by_op, k)
        if reason is None and k not in stage_splits(graph, calls):
            reason = f"layer '{graph.ops[k].name}' is no valid split"
        if reason is not None:
            raise TinymlError(f"--input-stream rows --patch {option.split}: {reason}")
        return _build(graph, calls, k, lower)
    splits = row_splits(graph, calls)
    if not splits or splits[0] != 0:
        op = graph.ops[0]
        reason = _stage_reason(graph, by_op, 0) or (
            "its output, or the input, is read by later layers as well")
        raise TinymlError(f"--input-stream rows: the first layer '{op.name}' ({op.kind}) "
                          f"cannot read the input row by row: {reason}")
    first = _build(graph, calls, 0, lower)
    if option.mode == "off":
        return first
    schedules = []
    for k in splits[1:]:
        try:
            schedules.append(row_schedule(graph, calls, k, lower))
        except NotLocal:
            continue
    predict = predict or (lambda s: s.macs)
    first.predicted_instructions = first.layerwise_instructions = predict(first)
    chosen = pick(first.plan, schedules, optimize, lambda s: predict(s or first), sram_bytes)
    if chosen is not None:
        chosen.layerwise_instructions = first.predicted_instructions
    chosen = chosen or first
    if notes is not None:
        smaller = [s for s in schedules if s.plan.arena_bytes < chosen.plan.arena_bytes]
        if smaller:
            best = min(smaller, key=lambda s: (s.plan.arena_bytes, s.predicted_instructions))
            notes.append(
                f"--optimize {optimize}: a row stage up to '{best.split_layer}' would need "
                f"{best.plan.arena_bytes:,} B instead of {chosen.plan.arena_bytes:,} B for "
                f"{100 * (best.predicted_instructions / max(chosen.predicted_instructions, 1) - 1):+.1f}"
                f" % predicted instructions (--optimize memory takes it)")
    return chosen


def _build(graph: Graph, calls: Sequence, k: int, lower) -> RowSchedule:
    try:
        return row_schedule(graph, calls, k, lower)
    except NotLocal as exc:
        raise TinymlError(f"--input-stream rows: the row stage up to layer "
                          f"'{graph.ops[k].name}' cannot be built: {exc}") from None
