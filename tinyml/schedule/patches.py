"""Patch-based inference (MCUNetV2): pick a split layer and a patch grid automatically.

Why: in MobileNet-like models the first layers hold large activations and few channels, so
the peak SRAM sits there, several times what the rest of the network needs. Running those
layers patch by patch (each patch computes one tile of the *split* tensor from the window of
the input it needs, see :mod:`tinyml.schedule.receptive_field`) replaces their full-size
activations with small patch buffers; the layers after the split run as usual. The price is
recomputation: overlapping windows (halos) compute some pixels more than once.

What a candidate is: the *stage* is a prefix of the execution order, starting at the graph's
input and ending at the layer that writes the split tensor, made of spatially local ops whose
kernels can run on a window (``KernelCall.geometry``); nothing but the split tensor may leave
it. A grid cuts the split tensor into ``rows x columns`` tiles (1 to 8 each, 2 tiles at least,
square or not).

Search (:func:`choose_patching`): every valid split x every grid whose extra MACs stay within
the budget is estimated cheaply (one patch's liveness plus input and split, against the
later layers' own peak); the best few estimates are then lowered for their patch sizes and
placed exactly (:mod:`tinyml.schedule.patch_plan`), and the smallest arena wins, fewer extra
MACs breaking ties. ``auto`` keeps it only when it beats the layer-by-layer arena.

Two variants widen the search. *Line-buffer stages* (:mod:`tinyml.schedule.line_stage`) cut
the split tensor into bands of whole rows and keep, in each intermediate buffer, the rows the
next band still reads, so no halo is recomputed (no extra MACs): stages deep enough to cover
full-resolution residual blocks fit in the budget. A stage may also start after a *head* of a
few layers run layer by layer (at most :data:`MAX_HEAD`; its output, the stage's input, is
then held whole): a strided first convolution overlapping the image it shrinks costs less
than holding the image and the stage's buffers together. In both, the split tensor may be
written over the rows of the stage's input that no later patch reads
(:func:`tinyml.schedule.patch_plan.input_split_distance`).

Within a patch, an op reads a window of its input buffer. Kernels with a sliding window take
the buffer as their whole input and padding parameters that place the window (see
:mod:`tinyml.codegen.patch_codegen`); kernels that read a dense image (1x1 convolutions,
element-wise ops, the skip input of a fused residual convolution) get exactly their window:
when the buffer holds more (it feeds a larger window too), a copy step crops it first, in
place when the buffer dies there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph, Op, Tensor
from tinyml.schedule.patch_plan import (PatchedPlan, Requirement, StageMemory, head_modes,
                                        head_peak,
                                        input_split_distance, plan_patched, stage_peak,
                                        tail_graph, tail_peak)
from tinyml.schedule.line_stage import line_geometry
from tinyml.schedule.planner import MemoryPlan
from tinyml.schedule.receptive_field import (NotLocal, StageGeometry, is_spatial,
                                             operand_windows, stage_geometry)

#: How a kernel runs on one patch (``KernelCall.geometry``, declared with its lowering in
#: tinyml.codegen.lowering), by how its parameters describe the patch:
#: - "window": input_h/input_w (the input buffer), output_h/output_w and pad_top/pad_left
#:   (which place the window; taps outside the buffer are padding, as at the image border);
#: - "plane": a window kernel with a padded plane in scratch (plane_h/plane_w as well);
#: - "pointwise": a 1x1 convolution reading a dense image: input_h/w, output_h/w;
#: - "elementwise": ``size`` = pixels x channels; every operand at the output's window.
#: Kernels of window kinds read input 0 as a window; their other activation operands (the
#: skip input of CONV_2D_ADD) must be exactly the output's window.

#: Largest number of tiles along one axis.
MAX_TILES = 8
#: Default budget of extra MACs, as a fraction of the model's.
DEFAULT_OVERHEAD = 0.2
#: Estimated candidates that get an exact plan: the smallest estimated arenas, and the
#: fewest patches.
REFINE = 6
REFINE_COARSE = 3


# ---- the --patch option ------------------------------------------------------------------------

@dataclass(frozen=True)
class PatchOption:
    """``--patch``: "auto", "off", or a forced split layer (index, layer or tensor name) and
    grid (``N`` for N x N, ``RxC``, or ``Nrows``: N bands of rows with line buffers, see
    :mod:`tinyml.schedule.line_stage`)."""

    mode: str                      # "auto", "off" or "forced"
    split: str | None = None
    grid: tuple[int, int] | None = None
    lines: bool = False
    start: str | None = None       # ``START..SPLIT``: the stage's first layer (0 by default)

    @classmethod
    def parse(cls, text: str | None) -> "PatchOption":
        text = (text or "auto").strip()
        if text in ("auto", "off"):
            return cls(text)
        split, sep, grid = text.rpartition(":")
        start, dots, rest = split.partition("..")
        start, split = (start, rest) if dots and start and rest else (None, split)
        match = re.fullmatch(r"(\d+)(?:x(\d+))?", grid)
        bands = re.fullmatch(r"(\d+)rows", grid)
        if sep and split and bands is not None:
            return cls("forced", split, (int(bands.group(1)), 1), lines=True, start=start)
        if not sep or not split or match is None:
            raise TinymlError(f"--patch '{text}': expected auto, off or SPLIT:N (a layer index "
                              f"or name, then the grid: N for NxN, RxC or Nrows for N bands "
                              f"with line buffers, e.g. 3:4, 3:4x2 or 3:8rows)")
        rows = int(match.group(1))
        cols = int(match.group(2) or rows)
        return cls("forced", split, (rows, cols), start=start)

    def text(self) -> str:
        """The option as ``--patch`` takes it."""
        if self.mode != "forced":
            return self.mode
        grid = f"{self.grid[0]}rows" if self.lines else f"{self.grid[0]}x{self.grid[1]}"
        return f"{self.start + '..' if self.start else ''}{self.split}:{grid}"


# ---- the schedule --------------------------------------------------------------------------------

@dataclass
class PatchStep:
    """One step of a patch: a kernel call, or a window copy (``call`` None) from
    ``op.inputs[0]`` to ``op.outputs[0]``. Tensor names are patch buffers (a layer's own
    tensor name, ``<tensor>@crop<i>`` for a cropped copy, ``<split>@tile`` for the tile), or
    the stage's full input."""

    op: Op
    call: object | None            # lowering's KernelCall, for the patch-sized tensors
    layer: int | None              # index into graph.ops of a kernel step
    label: str                     # the layer this step belongs to
    #: Line-buffer stages: input index -> per band, the rows of a dense operand the kernel
    #: reads in place inside its buffer (a run of whole rows: no copy needed).
    views: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def is_copy(self) -> bool:
        return self.call is None


@dataclass
class PatchSchedule:
    """A patch stage and the plan of the whole graph around it."""

    split: str                     # the split tensor (written tile by tile)
    split_layer: str               # the layer that writes it
    split_index: int               # its index in graph.ops
    grid: tuple[int, int]          # tiles along (rows, columns)
    stage: list[int]               # graph.ops indices the stage runs, in order
    input: str                     # the stage's input (the graph input, held whole)
    tile: str                      # the last step's output: one tile of the split tensor
    steps: list[PatchStep]
    geometry: StageGeometry        # spans of every patch buffer (and the input), per patch
    buffers: dict[str, Tensor]     # patch buffers at their largest patch size
    memory: PatchedPlan
    macs: int                      # MACs of one inference, halos included
    layerwise_macs: int
    layer_macs: dict[int, int] = field(default_factory=dict)  # stage layer -> patched MACs
    predicted_instructions: int | None = None   # by the cost model, when the search ranked it
    layerwise_instructions: int | None = None   # the same, for the layer-by-layer plan
    lines: bool = False            # bands of rows with line buffers (tinyml.schedule.line_stage)
    bands: int = 0                 # line buffers: the bands that compute the split tensor

    def describe(self) -> str:
        """The stage's layout in words (reports and notes)."""
        what = (f"{self.bands} bands of rows with line buffers" if self.lines else
                f"{self.grid[0]}x{self.grid[1]} patches")
        return what + (f" from layer {self.stage[0]}" if self.stage[0] else "")

    def option(self) -> str:
        """The ``--patch`` value that forces this stage."""
        grid = f"{self.bands}rows" if self.lines else f"{self.grid[0]}x{self.grid[1]}"
        start = f"{self.stage[0]}.." if self.stage[0] else ""
        return f"{start}{self.split_index}:{grid}"

    @property
    def plan(self) -> MemoryPlan:
        return self.memory.plan

    @property
    def retained(self) -> frozenset:
        """Line-buffer stages: the buffers that keep rows from one band to the next."""
        if not self.lines:
            return frozenset()
        return frozenset(s.op.outputs[0] for s in self.steps
                         if not s.is_copy and s.op.outputs[0] != self.tile)

    @property
    def mac_overhead(self) -> float:
        """Extra MACs from recomputed halos, as a fraction of the model's MACs."""
        return (self.macs - self.layerwise_macs) / max(self.layerwise_macs, 1)

    def to_json(self) -> dict:
        return {"split_layer": self.split_layer, "split_tensor": self.split,
                "split_index": self.split_index, "grid": list(self.grid),
                "line_buffers": self.lines, "first_layer": self.stage[0],
                "patches": self.grid[0] * self.grid[1], "layers": len(self.stage),
                "mac_overhead": self.mac_overhead, "macs": self.macs,
                "predicted_instructions": self.predicted_instructions,
                "instructions_added": (self.predicted_instructions - self.layerwise_instructions
                                       if self.predicted_instructions is not None
                                       and self.layerwise_instructions is not None else None)}


# ---- candidates ----------------------------------------------------------------------------------

def calls_by_op(calls: Sequence) -> dict[int, object]:
    """Lowering's calls by ``id`` of their op (calls match ops by identity)."""
    return {id(c.op): c for c in calls}


def patchable_reason(graph: Graph, op: Op, call) -> str | None:
    """Why ``op`` cannot run in a patch stage, or None."""
    if call is None:
        return "it has no kernel"
    if call.geometry is None:
        return f"kernel {call.function} cannot run on a window"
    try:
        operand_windows(graph, op)
    except NotLocal as exc:
        return str(exc)
    return None


def stage_input(graph: Graph, start: int) -> str:
    """The tensor a stage starting at layer ``start`` reads whole: the graph's input, or the
    output of the layer before it."""
    return graph.inputs[0] if start == 0 else graph.ops[start - 1].outputs[0]


def stage_splits(graph: Graph, calls: Sequence, start: int = 0) -> list[int]:
    """Indices k of graph.ops such that ops[start..k] form a valid stage ending at ops[k]'s
    output, shallowest first. The split tensor may be the graph's only output (the whole
    graph then runs patch by patch). With ``start`` > 0 the layers before run layer by layer
    and only the last one's output (the stage's input) may be read from the stage on."""
    if len(graph.inputs) != 1 or not is_spatial(graph, graph.inputs[0]):
        return []
    by_op = calls_by_op(calls)
    users = graph.consumers()
    position = {id(op): i for i, op in enumerate(graph.ops)}
    outputs = set(graph.outputs)
    if start > 0:
        if start >= len(graph.ops) or len(graph.ops[start - 1].outputs) != 1:
            return []
        source = stage_input(graph, start)
        before = ({graph.inputs[0]} | {n for op in graph.ops[:start] for n in op.outputs}) \
            - {source}
        if (not is_spatial(graph, source) or source in outputs or before & outputs
                or any(position[id(u)] >= start for n in before for u in users.get(n, []))):
            return []
    source = stage_input(graph, start)
    splits = []
    last = len(graph.ops) - 1
    for k in range(start, len(graph.ops)):
        op = graph.ops[k]
        if patchable_reason(graph, op, by_op.get(id(op))) is not None:
            break
        split = op.outputs[0]
        if split in outputs and (k != last or len(outputs) != 1):
            continue
        if any(position[id(u)] <= k for u in users.get(split, [])):
            continue
        crossing = [name for prior in graph.ops[start:k] for name in prior.outputs
                    if name in outputs or any(position[id(u)] > k for u in users.get(name, []))]
        if crossing or any(position[id(u)] > k for u in users.get(source, [])):
            continue
        splits.append(k)
    return splits


def grids(height: int, width: int) -> list[tuple[int, int]]:
    return [(r, c) for r in range(1, min(MAX_TILES, height) + 1)
            for c in range(1, min(MAX_TILES, width) + 1) if r * c >= 2]


def _per_output_macs(graph: Graph, op: Op) -> float:
    outs = graph.op_outputs(op)
    macs = op.spec.macs(op, graph.op_inputs(op), outs)
    _, h, w, _ = outs[0].shape
    return macs / (h * w)


def stage_macs(graph: Graph, stage: list[Op], geometry: StageGeometry) -> dict[int, int]:
    """MACs of each stage op (by position) over all patches."""
    result = {}
    for i, op in enumerate(stage):
        per = _per_output_macs(graph, op)
        result[i] = int(round(per * geometry.total_area(op.outputs[0])))
    return result


# ---- building a stage ----------------------------------------------------------------------------

@dataclass
class _Stage:
    steps: list[PatchStep]
    geometry: StageGeometry
    buffers: dict[str, Tensor]
    memory: StageMemory


def _buffer(graph: Graph, source: str, name: str, geometry: StageGeometry) -> Tensor:
    t = graph.tensors[source]
    rows, cols = geometry.max_extent(name)
    return Tensor(name, (1, rows, cols, t.shape[3]), t.dtype, t.quant)


def _build_stage(graph: Graph, by_op: dict, k: int, grid: tuple[int, int],
                 lower: Callable[[Graph], list] | None, lines: bool = False,
                 start: int = 0) -> _Stage:
    """The steps of one patch for split ``graph.ops[k]`` and ``grid``. With ``lower`` the
    kernel calls are lowered again for patch-sized tensors (exact scratch sizes); without it
    the layer-by-layer calls stand in and scratch is estimated (for the search). ``lines``:
    ``grid`` is (bands, 1) of a line-buffer stage (:mod:`tinyml.schedule.line_stage`).
    ``start``: the stage's first layer (the ones before run layer by layer)."""
    ops = graph.ops[start:k + 1]
    split = ops[-1].outputs[0]
    if lines:
        geometry = line_geometry(graph, ops, split, grid[0])
    else:
        geometry = stage_geometry(graph, ops, split, grid)
    source = stage_input(graph, start)
    tile = f"{split}@tile"
    geometry.rows[tile], geometry.cols[tile] = geometry.rows[split], geometry.cols[split]
    if lines:
        geometry.fresh[tile] = geometry.fresh[split]
    views: dict[int, dict[int, list]] = {}
    buffers: dict[str, Tensor] = {}
    steps: list[PatchStep] = []
    for i, op in enumerate(ops):
        call = by_op[id(op)]
        kind = call.geometry
        inputs = list(op.inputs)
        for j in operand_windows(graph, op):
            name = op.inputs[j]
            need_rows, need_cols = geometry.needs[(i, j)]
            if j == 0 and kind in ("window", "plane"):
                continue  # reads a window of the buffer through its padding parameters
            if geometry.rows[name] == need_rows and geometry.cols[name] == need_cols:
                continue
            if lines and (geometry.cols[name] == need_cols or (
                    kind == "pointwise" and j == 0
                    and geometry.cols[name][0][0] == need_cols[0][0])):
                # Whole rows (a 1x1 convolution strides over the buffer's width): in place.
                views.setdefault(i, {})[j] = need_rows
                continue
            crop = f"{name}@crop{i}"
            if crop not in buffers:  # (an op may read one tensor twice)
                geometry.rows[crop], geometry.cols[crop] = need_rows, need_cols
                buffers[crop] = _buffer(graph, name, crop, geometry)
                steps.append(PatchStep(Op("STRIDED_SLICE", f"{op.name} (window of {name})",
                                          [name], [crop]), None, None, op.name))
            inputs[j] = crop
        outputs = [tile if name == split else name for name in op.outputs]
        buffers[outputs[0]] = _buffer(graph, op.outputs[0], outputs[0], geometry)
        steps.append(PatchStep(Op(op.kind, op.name, inputs, outputs, op.attrs), call, i, op.name,
                               views.get(i, {})))
    if lower is not None:
        _relower(graph, steps, buffers, source, lower, geometry if lines else None)
    # A line buffer keeps rows from one band to the next: live over the whole stage.
    retained = frozenset(s.op.outputs[0] for s in steps
                         if lines and not s.is_copy and s.op.outputs[0] != tile)
    requirements = [_requirement(graph, step, geometry) for step in steps]
    planning = Graph(graph.name)
    planning.tensors = {**{n: t for n, t in graph.tensors.items() if t.is_constant}, **buffers}
    full = graph.tensors[source]
    # The full input is no patch buffer: marked constant, the stage liveness leaves it out.
    planning.tensors[source] = Tensor(source, full.shape, full.dtype, full.quant,
                                      data=np.zeros(0, np.int8))
    planning.ops = [step.op for step in steps]
    # Kept rows live from band to band: as the stage's inputs and outputs, they are live over
    # every step and never overwritten in place.
    planning.inputs, planning.outputs = sorted(retained), [tile] + sorted(retained)
    memory = StageMemory(planning, requirements, source, full.nbytes, split, tile,
                         [step.label for step in steps], [step.layer for step in steps],
                         retained, _split_distance(graph, ops, geometry, source, split))
    return _Stage(steps, geometry, buffers, memory)


def _split_distance(graph: Graph, ops: list[Op], geometry: StageGeometry, source: str,
                    split: str) -> int:
    """How far below the stage's input the split tensor may start (see
    :func:`tinyml.schedule.patch_plan.input_split_distance`): the input rows each grid row of
    patches reads are the hull of what the stage's readers of the input need."""
    reads: list[tuple[int, int]] = [(0, 0)] * geometry.grid[0]
    for (i, j), (need_rows, _) in geometry.needs.items():
        if ops[i].inputs[j] != source:
            continue
        reads = [n if a >= b else (min(a, n[0]), max(b, n[1])) if n[1] > n[0] else (a, b)
                 for (a, b), n in zip(reads, need_rows)]
    full, out = graph.tensors[source], graph.tensors[split]
    row = lambda t: t.shape[2] * t.nbytes // max(t.shape[1] * t.shape[2], 1)  # noqa: E731
    return input_split_distance(reads, geometry.rows[split], geometry.grid[1], row(full),
                                row(out))


def _relower(graph: Graph, steps: list[PatchStep], buffers: dict[str, Tensor], source: str,
             lower: Callable[[Graph], list], geometry: StageGeometry | None = None) -> None:
    """Lower the stage's kernels for their patch-sized tensors: the same kernels and
    constants, with the scratch the largest patch needs."""
    patch = Graph(graph.name)
    patch.tensors = {**{n: t for n, t in graph.tensors.items() if t.is_constant}, **buffers,
                     source: graph.tensors[source]}
    kernels = [s for s in steps if not s.is_copy]
    if geometry is not None and geometry.fresh is not None:
        calls = _lower_bands(patch, kernels, geometry, lower)
    else:
        patch.ops = [s.op for s in kernels]
        patch.inputs, patch.outputs = [source], [kernels[-1].op.outputs[0]]
        calls = calls_by_op(lower(patch))
    for step in kernels:
        call = calls.get(id(step.op))
        if call is None or call.function != step.call.function:
            raise NotLocal(f"layer '{step.op.name}' lowers to another kernel for a patch"
                           f" ({getattr(call, 'function', None)} instead of {step.call.function})")
        step.call = call


def _lower_bands(patch: Graph, kernels: list[PatchStep], geometry: StageGeometry,
                 lower: Callable[[Graph], list]) -> dict[int, object]:
    """A line-buffer stage's calls: each kernel lowered on its own, for the tensors it sees in
    the largest band (its output's fresh rows, the rows of a dense operand it reads in place,
    a window operand's whole buffer), so that element-wise operands keep equal shapes."""
    calls: dict[int, object] = {}
    for step in kernels:
        op = step.op
        one = Graph(patch.name)
        one.tensors = dict(patch.tensors)
        out = one.tensors[op.outputs[0]]
        fresh = max(b - a for a, b in geometry.fresh[op.outputs[0]])
        one.tensors[op.outputs[0]] = Tensor(out.name, (1, fresh) + out.shape[2:], out.dtype,
                                            out.quant)
        for j, spans in step.views.items():
            t = one.tensors[op.inputs[j]]
            rows = max(b - a for a, b in spans)
            one.tensors[op.inputs[j]] = Tensor(t.name, (1, rows) + t.shape[2:], t.dtype, t.quant,
                                               data=t.data)
        one.ops = [op]
        one.inputs = [n for n in dict.fromkeys(op.inputs)
                      if n and not one.tensors[n].is_constant]
        one.outputs = [op.outputs[0]]
        calls.update(calls_by_op(lower(one)))
    return calls


def _requirement(graph: Graph, step: PatchStep, geometry: StageGeometry) -> Requirement:
    if step.is_copy:
        return Requirement(step.op, 0, (0, 0))  # a crop may shift a window within its buffer
    call = step.call
    kind = call.geometry
    scratch = int(call.scratch_bytes)
    in_place = call.in_place
    if kind == "plane":
        rows, cols = _plane_extents(graph, step.op, geometry)
        if call.op is not step.op:  # still the full-size call: estimate the patch's plane
            scratch = rows * cols
        if in_place and not all(
                geometry.area(step.op.outputs[0], py, px) <= geometry.area(step.op.inputs[0],
                                                                           py, px)
                for py in range(geometry.grid[0]) for px in range(geometry.grid[1])):
            in_place = None
    return Requirement(step.op, scratch, tuple(in_place) if in_place else None)


def _plane_extents(graph: Graph, op: Op, geometry: StageGeometry) -> tuple[int, int]:
    """The largest zero-padded plane a depthwise kernel copies for one patch."""
    a = op.attrs
    _, kh, kw, _ = graph.tensors[op.inputs[1]].shape
    rows, cols = geometry.max_extent(op.outputs[0])
    return ((rows - 1) * a.stride[0] + (kh - 1) * a.dilation[0] + 1,
            (cols - 1) * a.stride[1] + (kw - 1) * a.dilation[1] + 1)


# ---- search --------------------------------------------------------------------------------------

@dataclass
class _Candidate:
    estimate: int
    overhead: float
    k: int
    grid: tuple[int, int]
    lines: bool = False
    start: int = 0

    def key(self):
        return (self.estimate, self.overhead, self.grid[0] * self.grid[1], self.k, self.lines,
                self.start)


def _schedule(graph: Graph, calls: Sequence, k: int, grid: tuple[int, int],
              lower: Callable[[Graph], list], lines: bool = False,
              start: int = 0, heads: dict | None = None,
              tails: dict | None = None) -> PatchSchedule:
    by_op = calls_by_op(calls)
    stage = _build_stage(graph, by_op, k, grid, lower, lines, start)
    indices = list(range(start, k + 1))
    memory = plan_patched(graph, calls, stage.memory, indices,
                          heads=_heads(graph, calls, start, heads) if start else None,
                          tails=tails)
    ops = graph.ops[start:k + 1]
    per_layer = stage_macs(graph, ops, stage.geometry)
    layerwise = _model_macs(graph)
    stage_layerwise = sum(_layer_macs(graph, op) for op in ops)
    macs = layerwise - stage_layerwise + sum(per_layer.values())
    split = ops[-1].outputs[0]
    return PatchSchedule(split, ops[-1].name, k, stage.geometry.grid, indices, stage.memory.input,
                         stage.memory.tile, stage.steps, stage.geometry, stage.buffers, memory,
                         macs, layerwise, per_layer, lines=lines,
                         bands=grid[0] if lines else 0)


def _layer_macs(graph: Graph, op: Op) -> int:
    return int(op.spec.macs(op, graph.op_inputs(op), graph.op_outputs(op)))


def _model_macs(graph: Graph) -> int:
    return sum(_layer_macs(graph, op) for op in graph.ops)


def _heads(graph: Graph, calls: Sequence, start: int, cache: dict | None) -> list:
    """:func:`head_modes` of the layers before ``start``, kept in ``cache`` (by start)."""
    if cache is None:
        cache = {}
    if start not in cache:
        cache[start] = head_modes(graph, calls, start, stage_input(graph, start))
    return cache[start]


def estimate_candidates(graph: Graph, calls: Sequence, overhead: float,
                        below: int | None = None,
                        heads: dict | None = None) -> list[_Candidate]:
    """Every (split, grid) within the MAC budget, with its estimated peak (bytes), best
    first. ``below``: skip splits that cannot get under this many bytes."""
    by_op = calls_by_op(calls)
    total = max(_model_macs(graph), 1)
    found: list[_Candidate] = []
    heads = {} if heads is None else heads
    for start, k in _stage_ranges(graph, calls):
        ops = graph.ops[start:k + 1]
        source = graph.tensors[stage_input(graph, start)]
        split = graph.tensors[ops[-1].outputs[0]]
        tail = tail_graph(graph, k + 1, split.name)
        tail_calls = [by_op[id(op)] for op in tail.ops if id(op) in by_op]
        later = tail_peak(tail, tail_calls)
        if start > 0:
            later = max(later, head_peak(_heads(graph, calls, start, heads)))
        if below is not None and max(source.nbytes, split.nbytes, later) >= below:
            continue
        base = sum(_layer_macs(graph, op) for op in ops)
        _, height, width, _ = split.shape
        for grid in grids(height, width):
            try:
                geometry = stage_geometry(graph, ops, split.name, grid)
            except NotLocal:
                continue
            extra = (sum(stage_macs(graph, ops, geometry).values()) - base) / total
            if extra > overhead + 1e-12:
                continue
            try:
                stage = _build_stage(graph, by_op, k, grid, None, start=start)
            except NotLocal:
                continue
            estimate = max(stage_peak(stage.memory, split.nbytes), later)
            found.append(_Candidate(estimate, extra, k, grid, start=start))
        for bands in line_bands(height):
            try:
                stage = _build_stage(graph, by_op, k, (bands, 1), None, lines=True,
                                     start=start)
            except NotLocal:
                continue
            extra = (sum(stage_macs(graph, ops, stage.geometry).values()) - base) / total
            if extra > overhead + 1e-12:
                continue
            estimate = max(stage_peak(stage.memory, split.nbytes), later)
            found.append(_Candidate(estimate, extra, k, (bands, 1), lines=True, start=start))
    return sorted(found, key=_Candidate.key)


#: Most layers run layer by layer before a stage (its *head*): a first strided layer that
#: overlaps the input it shrinks needs no stage, the stage then starts at its output.
MAX_HEAD = 2


def _stage_ranges(graph: Graph, calls: Sequence) -> list[tuple[int, int]]:
    """(first layer, split layer) of every valid stage with a head of at most
    :data:`MAX_HEAD` layers."""
    return [(start, k) for start in range(MAX_HEAD + 1)
            for k in stage_splits(graph, calls, start)]





#: Line-buffer stages: most bands (a band per row of the split tensor is the smallest, but
#: each band calls every kernel of the stage once).
MAX_BANDS = 32


def line_bands(height: int) -> list[int]:
    """Band counts a line-buffer stage is tried with: bands are near-equal and the tallest
    one sets the line buffers, so for each tallest height t only the fewest bands giving it,
    ceil(height / t), from 2 bands up to one per row (at most :data:`MAX_BANDS`)."""
    return sorted({-(-height // t) for t in range(1, height + 1)} - {1} &
                  set(range(2, MAX_BANDS + 1)))


def choose_patching(graph: Graph, calls: Sequence, layerwise: MemoryPlan,
                    option: PatchOption | str | None = None, overhead: float = DEFAULT_OVERHEAD,
                    lower: Callable[[Graph], list] | None = None, *,
                    optimize: str = "memory",
                    predict: Callable[[PatchSchedule | None], int] | None = None,
                    sram_bytes: int | None = None,
                    notes: list[str] | None = None) -> PatchSchedule | None:
    """The patch schedule ``option`` asks for (None: layer by layer).

    ``auto``: among the splits and grids whose extra MACs stay within ``overhead`` (a
    fraction of the model's MACs) and layer by layer, the plan ``optimize`` asks for (see
    :func:`pick`), ``predict`` giving each plan's instructions (None: MACs stand in).
    A forced ``SPLIT:N`` is built as asked (a clear error if it cannot be). ``lower`` lowers a
    graph for the target (lowering's ``lower``). ``notes`` receives one sentence when
    ``auto`` keeps a smaller-arena plan out for its predicted instructions."""
    if not isinstance(option, PatchOption):
        option = PatchOption.parse(option)
    if overhead < 0:
        raise TinymlError(f"--patch-overhead must be >= 0, got {overhead}")
    if optimize not in OPTIMIZE:
        raise TinymlError(f"--optimize '{optimize}': expected one of {', '.join(OPTIMIZE)}")
    if lower is None:
        from tinyml.codegen.lowering import lower as lower_default
        lower = lower_default
    if option.mode == "off":
        return None
    if option.mode == "forced":
        return _forced(graph, calls, option, lower)
    heads: dict = {}  # the layer-by-layer plans of heads, by stage start
    candidates = estimate_candidates(graph, calls, overhead, below=layerwise.arena_bytes,
                                     heads=heads)
    # Line stages and stages after a head whose estimate is not below layer by layer are
    # unlikely to win, and would take the places of the coarse plans that save memory.
    candidates = [c for c in candidates if c.estimate < layerwise.arena_bytes
                  or (not c.lines and not c.start)]
    schedules = _refine(graph, calls, candidates, lower, heads)
    chosen = pick(layerwise, schedules, optimize, predict, sram_bytes)
    if notes is not None:
        arena = chosen.plan.arena_bytes if chosen is not None else layerwise.arena_bytes
        smaller = [s for s in schedules if s.plan.arena_bytes < arena]
        if smaller:
            best = min(smaller, key=lambda s: (s.plan.arena_bytes, s.predicted_instructions))
            base = (chosen.predicted_instructions if chosen is not None
                    else best.layerwise_instructions)
            notes.append(
                f"--optimize {optimize}: {best.describe()} up to "
                f"'{best.split_layer}' would need {best.plan.arena_bytes:,} B instead of "
                f"{arena:,} B for {100 * (best.predicted_instructions / max(base, 1) - 1):+.1f} "
                f"% predicted instructions (--optimize memory takes them)")
    return chosen


#: What ``--optimize`` may ask for.
OPTIMIZE = ("speed", "memory", "balanced")
#: ``balanced``: the smallest arena among plans within this fraction of the fastest one's
#: predicted instructions (the cost model's own error on its calibration plans is ~2 %).
BALANCED_SLACK = 0.03


def pick(layerwise: MemoryPlan, schedules: Sequence[PatchSchedule], optimize: str,
         predict: Callable[[PatchSchedule | None], int] | None,
         sram_bytes: int | None = None) -> PatchSchedule | None:
    """The plan to run, among layer by layer (None) and ``schedules``:

    - ``memory``: the smallest arena (fewer predicted instructions breaking ties);
    - ``speed``: the fewest predicted instructions (smaller arena breaking ties);
    - ``balanced``: the smallest arena whose predicted instructions are within
      :data:`BALANCED_SLACK` of the fastest plan's, unless that arena does not fit
      ``sram_bytes`` (the part's SRAM for the arena): then the fastest plan that fits, or
      the smallest arena when none does (the budget check then says so).

    Each schedule gets ``predicted_instructions`` and ``layerwise_instructions``."""
    if predict is None:
        def predict(schedule):
            return schedule.macs if schedule is not None else _layerwise_macs(schedules)
    base = predict(None)
    plans = [(layerwise.arena_bytes, base, None)]
    for schedule in schedules:
        schedule.layerwise_instructions = base
        schedule.predicted_instructions = predict(schedule)
        if schedule.plan.arena_bytes < layerwise.arena_bytes:
            plans.append((schedule.plan.arena_bytes, schedule.predicted_instructions, schedule))
    return rank(plans, optimize, sram_bytes)


def rank(plans: Sequence[tuple[int, int, object]], optimize: str,
         sram_bytes: int | None = None):
    """The rule of :func:`pick` on (arena bytes, predicted instructions, plan) triples: the
    plan ``optimize`` asks for. Also how the compiler weighs overlapped hand-overs
    (:mod:`tinyml.schedule.overlap_cost`)."""
    smallest = min(plans, key=lambda p: (p[0], p[1]))
    fastest = min(plans, key=lambda p: (p[1], p[0]))
    if optimize == "memory":
        return smallest[2]
    if optimize == "speed":
        return fastest[2]
    within = [p for p in plans if p[1] <= fastest[1] * (1 + BALANCED_SLACK)]
    chosen = min(within, key=lambda p: (p[0], p[1]))
    if sram_bytes is not None and chosen[0] > sram_bytes:
        fitting = [p for p in plans if p[0] <= sram_bytes]
        chosen = min(fitting, key=lambda p: (p[1], p[0])) if fitting else smallest
    return chosen[2]


def _layerwise_macs(schedules: Sequence[PatchSchedule]) -> int:
    return schedules[0].layerwise_macs if schedules else 0


def _refine(graph: Graph, calls: Sequence, candidates: Sequence[_Candidate],
            lower: Callable[[Graph], list], heads: dict | None = None) -> list[PatchSchedule]:
    """The exact schedules of the :data:`REFINE` estimates with the smallest arena, and of the
    :data:`REFINE_COARSE` with the fewest patches (per-call costs grow with the patch count,
    so the fastest patched plans are coarse ones), among grids from the input, grids after a
    head (the best few) and line-buffer stages separately (they trade differently); those
    that lower for their patch size."""
    chosen: list[_Candidate] = []
    groups = []
    # Grids from the input, grids after a head, line-buffer stages: the best few of each.
    for kind, limits in (([c for c in candidates if not c.lines and not c.start],
                          (REFINE, REFINE_COARSE)),
                         ([c for c in candidates if not c.lines and c.start],
                          (REFINE_COARSE, 0)),
                         ([c for c in candidates if c.lines], (REFINE, REFINE_COARSE))):
        coarse = sorted(kind, key=lambda c: (c.grid[0] * c.grid[1], c.overhead, c.estimate))
        groups += [(kind, limits[0]), (coarse, limits[1])]
    for group, limit in groups:
        taken = 0
        for c in group:
            if taken >= limit:
                break
            if any((c.k, c.grid, c.lines, c.start) == (d.k, d.grid, d.lines, d.start)
                   for d in chosen):
                continue
            chosen.append(c)
            taken += 1
    schedules = []
    tails: dict = {}  # later layers' plans, shared by the stages of one split
    for c in chosen:
        try:
            schedules.append(_schedule(graph, calls, c.k, c.grid, lower, c.lines, c.start,
                                       heads, tails))
        except NotLocal:
            continue
    return schedules


def why_not_patched(graph: Graph, calls: Sequence, layerwise: MemoryPlan,
                    overhead: float = DEFAULT_OVERHEAD,
                    lower: Callable[[Graph], list] | None = None) -> str:
    """One sentence on why ``auto`` keeps a graph layer by layer (for ``tinyml report``).
    The arena it quotes is the exact plan of the best candidate, built as
    :func:`choose_patching` builds it (``lower``: as there, None for the host's lowering)."""
    if len(graph.inputs) != 1 or not is_spatial(graph, graph.inputs[0]):
        return "the model does not have exactly one single-image 4-D input"
    if graph.tensors[graph.inputs[0]].shape[1:3] == (1, 1):  # the root cause, said first
        return "no tensor can be cut into 2 or more tiles (the input image is 1x1)"
    splits = stage_splits(graph, calls)
    if not splits:
        by_op = calls_by_op(calls)
        op = graph.ops[0]
        reason = patchable_reason(graph, op, by_op.get(id(op)))
        if reason:
            return f"its first layer '{op.name}' ({op.kind}) cannot run patch by patch: {reason}"
        return "no layer can end a patch stage (tensors of earlier layers are read after it)"
    if not any(grids(*graph.tensors[graph.ops[k].outputs[0]].shape[1:3]) for k in splits):
        return "no tensor can be cut into 2 or more tiles (every possible split tensor is 1x1)"
    within = estimate_candidates(graph, calls, overhead)
    if not within:
        every = estimate_candidates(graph, calls, float("inf"))
        if not every:
            return "no split and grid has a valid patch layout"
        cheapest = min(c.overhead for c in every)
        return (f"every split and grid costs more extra MACs than the budget: at least "
                f"{100 * cheapest:.1f} % (--patch-overhead {overhead:g})")
    if lower is None:
        from tinyml.codegen.lowering import lower as lower_default
        lower = lower_default
    schedules = _refine(graph, calls, within, lower)
    best = min(schedules, key=lambda s: (s.plan.arena_bytes, s.mac_overhead), default=None)
    if best is None:
        return (f"no split and grid within {100 * overhead:g} % extra MACs lowers for its "
                f"patch size")
    return (f"the best split within {100 * overhead:g} % extra MACs (layer "
            f"'{best.split_layer}', {best.describe()}) needs "
            f"{best.plan.arena_bytes:,} B, no less than the {layerwise.arena_bytes:,} B of "
            f"running layer by layer")


def _forced(graph: Graph, calls: Sequence, option: PatchOption,
            lower: Callable[[Graph], list]) -> PatchSchedule:
    k = resolve_split(graph, option.split)
    start = resolve_split(graph, option.start) if option.start else 0
    what = f"--patch {option.text()}"
    if start > k:
        raise TinymlError(f"{what}: the stage's first layer comes after its split layer")
    if k not in stage_splits(graph, calls, start):
        by_op = calls_by_op(calls)
        for i, op in enumerate(graph.ops[start:k + 1]):
            reason = patchable_reason(graph, op, by_op.get(id(op)))
            if reason:
                raise TinymlError(f"{what}: layer '{op.name}' ({op.kind}) cannot run patch by "
                                  f"patch: {reason}")
        raise TinymlError(f"{what}: layer '{graph.ops[k].name}' is no valid split: another "
                          f"tensor of the layers before it is read after it" +
                          (f", or another tensor than the output of layer {start - 1} enters "
                           f"the stage" if start else ""))
    _, height, width, _ = graph.tensors[graph.ops[k].outputs[0]].shape
    rows, cols = option.grid
    if not (1 <= rows <= height and 1 <= cols <= width) or rows * cols < 2:
        raise TinymlError(f"{what}: the split tensor is {height}x{width}; the grid needs 1 to "
                          f"{height} rows and 1 to {width} columns of tiles, 2 tiles at least")
    try:
        return _schedule(graph, calls, k, option.grid, lower, option.lines, start)
    except NotLocal as exc:
        raise TinymlError(f"{what}: {exc}") from None


def resolve_split(graph: Graph, text: str) -> int:
    """A layer index (into the compiled graph's layers), a layer name or a tensor name."""
    if re.fullmatch(r"\d+", text):
        k = int(text)
        if k >= len(graph.ops):
            raise TinymlError(f"--patch {text}: the compiled graph has {len(graph.ops)} layers "
                              f"(0 to {len(graph.ops) - 1})")
        return k
    for k, op in enumerate(graph.ops):
        if op.name == text or text in op.outputs:
            return k
    raise TinymlError(f"--patch: no layer or tensor named '{text}'")
