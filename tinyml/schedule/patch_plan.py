"""The arena of a patch-scheduled graph: patch buffers, the split tensor, the input, the rest.

Why a plan of its own: during the patch stage the full input image and the full split tensor
are alive the whole time (every patch reads the first and writes a tile of the second), while
the stage's own activations exist only at patch size and only for one patch at a time. After
the stage the graph runs layer by layer from the split tensor. Both parts reuse the ordinary
planner's machinery (:mod:`tinyml.schedule.liveness` for in-place chains and lifetimes,
:mod:`tinyml.schedule.placement` for offsets), on one time axis:

- first, when the stage starts after a head of layers run layer by layer, the head's steps
  (its layers in order; the stage's input, their output, lives on over the stage); then
- steps ``0 .. S-1``: the S steps of one patch (kernel calls and window copies, see
  :class:`StageMemory`); a patch buffer's lifetime within a patch is its lifetime in every
  patch, so one patch's liveness is the stage's;
- steps ``S ..``: the remaining layers, in the graph's order (or the minimum-peak order of
  :mod:`tinyml.schedule.ordering` when they branch);
- the input lives over ``0 .. S-1``; the split tensor from step 0 to its last reader.

Every placement strategy is tried with in-place execution on and off; the smallest arena wins,
as in :func:`tinyml.schedule.plan_memory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from tinyml.ir import Graph
from tinyml.schedule.liveness import Buffer, Liveness, Segment, analyze
from tinyml.schedule.ordering import has_branches, min_peak_order, order_peak
from tinyml.schedule.placement import STRATEGIES, place
from tinyml.schedule.planner import MemoryPlan
from tinyml.schedule.overlap import choose as choose_overlaps
from tinyml.schedule.policy import op_overlaps, op_requirements


@dataclass
class Requirement:
    """What one stage step asks of the planner (the fields of lowering's KernelCall that
    :func:`tinyml.schedule.policy.op_requirements` reads)."""

    op: object
    scratch_bytes: int = 0
    in_place: tuple[int, int] | None = None


@dataclass
class StageMemory:
    """One patch of the stage, as the planner sees it.

    ``graph`` has one op per step, its tensors at their largest patch size; the full input is
    marked constant there (it is no patch buffer: it is planned with the whole graph), and the
    last op writes ``tile``, the patch's piece of ``split``, copied into ``split`` at the end
    of the patch. ``requirements`` has one entry per op; ``labels`` names each step's layer.
    """

    graph: Graph
    requirements: list[Requirement]
    input: str
    input_bytes: int
    split: str
    tile: str
    labels: list[str]
    layers: list[int | None]            # per step, the graph.ops index of a kernel step
    #: Line buffers (:mod:`tinyml.schedule.line_stage`): kept from one band to the next, they
    #: are inputs and outputs of ``graph`` (live over every step, never overwritten in place).
    retained: frozenset = frozenset()
    #: The smallest safe ``offset(input) - offset(split)``: the split tensor may start that
    #: far below the input, its rows written over input rows no later patch reads (see
    #: :func:`input_split_distance`); None: no such overlap.
    split_distance: int | None = None

    @property
    def steps(self) -> int:
        return len(self.graph.ops)

    def liveness(self, use_in_place: bool = True) -> Liveness:
        scratch, candidates = op_requirements(self.graph, self.requirements)
        return analyze(self.graph, list(range(self.steps)), scratch, candidates, use_in_place)


@dataclass
class PatchedPlan:
    """The whole-graph plan (``plan``: input, split and the later layers' tensors, with
    ``plan.order`` = the stage's ops then the later ones) and the stage's patch buffers."""

    plan: MemoryPlan
    stage_offsets: dict[str, int]       # patch buffer name -> offset
    stage_sizes: dict[str, int]         # patch buffer name -> bytes (largest patch)
    stage_scratch: dict[int, tuple[int, int]] = field(default_factory=dict)  # step -> (off, B)
    stage_in_place: list[tuple[int, str, str]] = field(default_factory=list)  # (step, in, out)


def tail_graph(graph: Graph, first: int, split: str) -> Graph:
    """The layers from ``graph.ops[first]`` on, as a graph whose input is ``split`` (sharing
    the tensors of ``graph``; for planning only)."""
    tail = Graph(graph.name)
    tail.tensors = graph.tensors
    tail.ops = list(graph.ops[first:])
    tail.inputs = [split]
    tail.outputs = list(graph.outputs)
    tail.variables = graph.variables
    return tail


def tail_orders(tail: Graph, calls: Sequence) -> dict[str, list[int]]:
    """Candidate orders of the later layers (indices into ``tail.ops``)."""
    orders = {"graph": list(range(len(tail.ops)))}
    if has_branches(tail):
        scratch, candidates = op_requirements(tail, calls)
        best, peak = min_peak_order(tail, scratch, candidates)
        if peak < order_peak(tail, orders["graph"], scratch, candidates):
            orders["min_peak"] = best
    return orders


def tail_peak(tail: Graph, calls: Sequence, alignment: int = 4) -> int:
    """Most bytes alive at once in the later layers, with every overlap their kernels
    declare (which only ever lowers a step's bytes), rounded up to the arena's alignment:
    their arena's lower bound (so a split whose bound only ties layer by layer is pruned)."""
    scratch, candidates = op_requirements(tail, calls)
    overlaps = op_overlaps(tail, calls)
    best = None
    for order in tail_orders(tail, calls).values():
        peak = max(analyze(tail, order, scratch, candidates, True, overlaps).live_bytes(),
                   default=0)
        best = peak if best is None else min(best, peak)
    return -(-(best or 0) // alignment) * alignment


def stage_peak(stage: StageMemory, split_bytes: int) -> int:
    """Most bytes alive at once during the stage: input, split (the two overlapping when
    the split may start inside the input, see :func:`input_split_distance`) and one patch's
    buffers."""
    live = stage.liveness().live_bytes()
    both = stage.input_bytes + split_bytes
    if stage.split_distance is not None:
        both = min(both, max(stage.input_bytes + max(stage.split_distance, 0), split_bytes))
    return both + max(live, default=0)


def head_graph(graph: Graph, count: int, source: str) -> Graph:
    """The first ``count`` layers, run layer by layer before the stage, as a graph whose
    output is the stage's input ``source`` (sharing the tensors of ``graph``)."""
    head = Graph(graph.name)
    head.tensors = graph.tensors
    head.ops = list(graph.ops[:count])
    head.inputs = list(graph.inputs)
    head.outputs = [source]
    head.variables = graph.variables
    return head


def head_modes(graph: Graph, calls: Sequence, count: int, source: str, alignment: int = 4,
               strategies: Sequence[str] = STRATEGIES) -> list[tuple[str, Liveness]]:
    """The layer-by-layer liveness of the first ``count`` layers (run before a stage that
    reads ``source``): in place, and with the overlaps that do not grow their arena."""
    head = head_graph(graph, count, source)
    by_op = {id(c.op): c for c in calls}
    head_calls = [by_op[id(op)] for op in head.ops if id(op) in by_op]
    scratch, candidates = op_requirements(head, head_calls)
    overlaps = op_overlaps(head, head_calls)
    order = list(range(len(head.ops)))
    modes = [("head", analyze(head, order, scratch, candidates, True))]
    if any(overlaps):
        chosen = choose_overlaps(head, order, scratch, candidates, overlaps, alignment,
                                 strategies)
        modes.append(("head-overlap", analyze(head, order, scratch, candidates, True, chosen,
                                               alignment)))
    return modes


def head_peak(modes: list[tuple[str, Liveness]]) -> int:
    """Most bytes alive at once in the layers before a stage (:func:`head_modes`)."""
    return min(max(live.live_bytes(), default=0) for _, live in modes)


def plan_patched(graph: Graph, calls: Sequence, stage: StageMemory, stage_ops: list[int],
                 alignment: int = 4, strategies: Sequence[str] = STRATEGIES,
                 heads: list[tuple[str, Liveness]] | None = None,
                 tails: dict | None = None) -> PatchedPlan:
    """Place everything in one arena. ``stage_ops``: indices (into ``graph.ops``) of the
    layers the stage runs; the layers before them (the *head*, writing the stage's input) run
    layer by layer before it, the later layers are the rest, in order, reading
    ``stage.split``. ``calls``: lowering's calls of the layers outside the stage. ``heads``:
    :func:`head_modes` of the layers before the stage, when the caller has them; ``tails``:
    a cache of the later layers' orders and overlaps, by first layer (stages of one split
    share them)."""
    first = max(stage_ops) + 1
    tail = tail_graph(graph, first, stage.split)
    by_op = {id(c.op): c for c in calls}
    tail_calls = [by_op[id(op)] for op in tail.ops if id(op) in by_op]
    scratch, candidates = op_requirements(tail, tail_calls)
    overlaps = op_overlaps(tail, tail_calls)
    steps = stage.steps
    if min(stage_ops) == 0:
        heads = [("", None)]
    elif heads is None:
        heads = head_modes(graph, calls, min(stage_ops), stage.input, alignment, strategies)
    best = None
    results: dict[str, int] = {}
    tails = {} if tails is None else tails
    if (first, alignment) not in tails:
        tails[(first, alignment)] = _tail_modes(tail, tail_calls, scratch, candidates,
                                                overlaps, alignment, strategies)
    for source, order, modes in tails[(first, alignment)]:
        for mode, use_in_place, mode_overlaps in modes:
            s_live = stage.liveness(use_in_place)
            t_live = analyze(tail, order, scratch, candidates, use_in_place, mode_overlaps,
                             alignment)
            for head_mode, h_live in heads:
                count = len(h_live.order) if h_live is not None else 0
                total = count + steps + len(order)
                combined = _combine(stage, s_live, t_live, steps, total, h_live)
                variants = [("", combined)]
                if stage.split_distance is not None:
                    variants.append(("+split-over-input",
                                     _split_over_input(combined, stage, alignment)))
                for suffix, buffers in variants:
                    profile = [sum(b.size_at(s) for b in buffers) for s in range(total)]
                    for strategy in strategies:
                        placement = place(buffers, strategy, alignment, profile)
                        key = f"patch+{source}|{head_mode and head_mode + '+'}{mode}{suffix}|" \
                              f"{strategy}"
                        results[key] = placement.arena_bytes
                        if best is None or placement.arena_bytes < best[0].arena_bytes:
                            best = (placement, buffers, s_live, t_live, source, profile,
                                    h_live)
    placement, buffers, s_live, t_live, source, profile, h_live = best
    return _result(graph, stage, stage_ops, first, placement, buffers, s_live, t_live, source,
                   profile, alignment, results, h_live)


def _tail_modes(tail: Graph, tail_calls: Sequence, scratch, candidates, overlaps,
                alignment: int, strategies: Sequence[str]) -> list:
    """Per order of the later layers: in place, copies, and the overlaps that do not grow
    their own arena."""
    result = []
    for source, order in tail_orders(tail, tail_calls).items():
        modes = [("in-place", True, None), ("copy", False, None)]
        if any(overlaps):
            modes.append(("overlap", True, choose_overlaps(tail, order, scratch, candidates,
                                                           overlaps, alignment, strategies)))
        result.append((source, order, modes))
    return result


def _shifted(buffer: Buffer, by: int) -> Buffer:
    return Buffer(buffer.name, [Segment(s.start + by, s.end + by, s.size, s.offset)
                                for s in buffer.segments], list(buffer.tensors),
                  buffer.scratch_of, dict(buffer.tensor_offsets))


def _combine(stage: StageMemory, s_live: Liveness, t_live: Liveness, steps: int,
             total: int, h_live: Liveness | None = None) -> list[Buffer]:
    """The head's buffers first (``h_live``, its layers at steps [0, H)), the stage buffers
    at steps [H, H + steps), the stage's input over the stage (from the head's buffer that
    ends with it, reaching on over the stage), the later layers' buffers after it; the split
    tensor's buffer reaches back to step H (and, when no layer follows the stage, ends with
    it: ``total`` steps in all)."""
    count = len(h_live.order) if h_live is not None else 0
    buffers: list[Buffer] = []
    if h_live is None:
        buffers.append(Buffer(stage.input, [Segment(0, steps - 1, stage.input_bytes)],
                              [stage.input]))
    else:
        for b in h_live.buffers:
            b = Buffer(f"head-{b.name}" if b.scratch_of is not None else b.name,
                       list(b.segments), list(b.tensors), b.scratch_of,
                       dict(b.tensor_offsets))
            if stage.input in b.tensors:  # the head's output lives on over the stage
                at = b.tensor_offsets.get(stage.input, 0)
                b.segments = [Segment(g.start, count + steps - 1, g.size, g.offset)
                              if g.end == count - 1 and g.offset == at else g
                              for g in b.segments]
            buffers.append(b)
    for b in s_live.buffers:
        buffers.append(_shifted(Buffer(f"stage:{b.name}" if b.scratch_of is None
                                       else f"stage-{b.name}",
                                       list(b.segments), list(b.tensors),
                                       None if b.scratch_of is None else -1 - b.scratch_of),
                                count))
    for b in t_live.buffers:
        moved = _shifted(b, count + steps)
        if stage.split in b.tensors:
            first = moved.segments[0]
            moved.segments[0] = Segment(count, min(first.end, total - 1), first.size,
                                        first.offset)
        buffers.append(moved)
    return buffers


def input_split_distance(read_rows: list[tuple[int, int]], split_rows: list[tuple[int, int]],
                         columns: int, input_row: int, split_row: int) -> int:
    """The smallest ``offset(input) - offset(split)`` at which writing the split tensor never
    overwrites input bytes a later patch reads: patch rows run in order, and the tile of grid
    row ``py`` is copied into rows ``split_rows[py]`` of the split tensor at the end of each of
    its patches, after which the patches still to run read input rows from the smallest start
    of ``read_rows`` (per grid row; empty spans read nothing) of the grid rows after it, and
    of its own row too when the grid has several columns. ``input_row`` / ``split_row``: bytes
    per row of each."""
    distance = None
    written = 0
    for py, (start, stop) in enumerate(split_rows):
        if stop > start:
            written = max(written, stop * split_row)
        later = [a for a, b in read_rows[py + (0 if columns > 1 else 1):] if b > a]
        if later and written:
            need = written - min(later) * input_row
            distance = need if distance is None else max(distance, need)
    return distance if distance is not None else 0


def _split_over_input(buffers: list[Buffer], stage: StageMemory, alignment: int) -> list[Buffer]:
    """``buffers`` with the buffer holding the stage's input merged into the split tensor's,
    the input starting :attr:`StageMemory.split_distance` bytes (rounded up to ``alignment``,
    and at least 0: the split's first byte is then the lowest) above the split."""
    distance = -(-max(stage.split_distance, 0) // alignment) * alignment
    source = next(b for b in buffers if stage.input in b.tensors and b.scratch_of is None)
    host = next(b for b in buffers if stage.split in b.tensors and b.scratch_of is None)
    if source is host:
        return buffers
    # Offsets inside the merged buffer: the host's segments move by ``low``, the source's by
    # ``low + move``, so that input - split = distance; ``low`` keeps every offset >= 0.
    move = host.tensor_offsets.get(stage.split, 0) + distance - \
        source.tensor_offsets.get(stage.input, 0)
    low = max(0, -(move + min(g.offset for g in source.segments)))
    segments = ([Segment(g.start, g.end, g.size, g.offset + low) for g in host.segments] +
                [Segment(g.start, g.end, g.size, g.offset + low + move)
                 for g in source.segments])
    offsets = {t: host.tensor_offsets.get(t, 0) + low for t in host.tensors}
    offsets.update({t: source.tensor_offsets.get(t, 0) + low + move for t in source.tensors})
    merged = Buffer(host.name, segments, list(host.tensors) + list(source.tensors),
                    host.scratch_of, {t: o for t, o in offsets.items() if o})
    return [merged if b is host else b for b in buffers if b is not source]


def _result(graph: Graph, stage: StageMemory, stage_ops: list[int], first: int, placement,
            buffers: list[Buffer], s_live: Liveness, t_live: Liveness, source: str,
            profile: list[int], alignment: int, candidates: dict[str, int],
            h_live: Liveness | None = None) -> PatchedPlan:
    offsets: dict[str, int] = {}
    sizes: dict[str, int] = {}
    stage_offsets: dict[str, int] = {}
    stage_sizes: dict[str, int] = {}
    stage_scratch: dict[int, tuple[int, int]] = {}
    scratch_offset: dict[int, int] = {}
    scratch_size: dict[int, int] = {}
    for buffer, offset in zip(buffers, placement.offsets):
        if buffer.scratch_of is not None and buffer.scratch_of < 0:
            step = -1 - buffer.scratch_of
            stage_scratch[step] = (offset, buffer.size)
            if stage.layers[step] is not None:  # so plan.scratch_bytes covers the stage too
                layer = stage_ops[stage.layers[step]]
                scratch_offset[layer] = offset
                scratch_size[layer] = buffer.size
        elif buffer.scratch_of is not None and buffer.name.startswith("head-"):
            scratch_offset[buffer.scratch_of] = offset
            scratch_size[buffer.scratch_of] = buffer.size
        elif buffer.scratch_of is not None:
            scratch_offset[first + buffer.scratch_of] = offset
            scratch_size[first + buffer.scratch_of] = buffer.size
        elif buffer.name.startswith("stage:"):
            for name in buffer.tensors:
                stage_offsets[name] = offset
                stage_sizes[name] = stage.graph.tensors[name].nbytes
        else:
            for name in buffer.tensors:
                offsets[name] = offset + buffer.tensor_offsets.get(name, 0)
                sizes[name] = graph.tensors[name].nbytes
    head_order = list(h_live.order) if h_live is not None else []
    order = head_order + list(stage_ops) + [first + i for i in t_live.order]
    labels = ([graph.ops[i].name for i in head_order] + stage.labels +
              [graph.ops[first + i].name for i in t_live.order])
    peak_step = max(range(len(profile)), key=lambda s: (profile[s], -s)) if profile else 0
    aliases = {t: r for t, r in t_live.root_of.items() if t != r}
    in_place = [(first + u.op, u.input, u.output) for u in t_live.in_place]
    overlaps = [(first + u.op, u.input, u.output, u.delta) for u in t_live.overlaps]
    if h_live is not None:
        aliases.update({t: r for t, r in h_live.root_of.items() if t != r})
        in_place = [(u.op, u.input, u.output) for u in h_live.in_place] + in_place
        overlaps = [(u.op, u.input, u.output, u.delta) for u in h_live.overlaps] + overlaps
    plan = MemoryPlan(
        order=order, offsets=offsets, sizes=sizes, scratch_offset=scratch_offset,
        scratch_size=scratch_size, arena_bytes=placement.arena_bytes, alignment=alignment,
        strategy=placement.strategy, order_source=f"patch+{source}",
        in_place=in_place, aliases=aliases, live_bytes=profile, peak_step=peak_step,
        peak_layer=labels[peak_step] if labels else "", candidates=candidates,
        overlaps=overlaps)
    return PatchedPlan(plan, stage_offsets, stage_sizes, stage_scratch,
                       [(u.op, u.input, u.output) for u in s_live.in_place])
