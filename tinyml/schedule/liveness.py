"""Liveness over an op order: which bytes must exist at which step.

Why this model: the arena planner places *buffers*, not tensors. A buffer is what one offset
holds over time:

- tensors that are aliases (RESHAPE after ``tinyml.passes.reshape_alias``) share their root
  tensor's storage, so a storage *group* (root + aliases) lives from the root's producer to
  the last reader of any of its names;
- an op running in place chains its output group onto an input group that dies at that op:
  the chain is one buffer whose size may change at the hand-over step (a stride-2 in-place
  depthwise convolution shrinks it), so a buffer is a list of *segments* (first step, last
  step, bytes) at one offset;
- kernel scratch is a one-step buffer of its own;
- an op whose kernel declares a safe overlap (:mod:`tinyml.codegen.write_order`) chains its
  output group onto a dying input group too, at a fixed distance: the output's segment sits
  ``delta`` bytes from the input's (a bound rounded down to the alignment; for a kernel
  walking backward, above the input, a lowest delta rounded up), so a segment has an
  offset inside its buffer, and at the hand-over step the buffer spans both.

Steps are positions in the execution order; an op reads its inputs and writes its outputs at
its step, so a tensor dying at step s and one born at s are both live at s and may share bytes
only through a declared in-place pair. Graph inputs are live from step 0 (the caller writes
them before the first op), graph outputs until the last step (the caller reads them after).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinyml.ir import Graph, Op
from tinyml.passes.reshape_alias import alias_roots, is_alias
from tinyml.schedule.policy import InPlace, Overlap, is_above


@dataclass
class Group:
    """A storage group: a root tensor and the aliases sharing its bytes."""

    root: str
    size: int
    start: int
    end: int
    members: list[str] = field(default_factory=list)
    pinned: bool = False  # holds a graph output: never overwritten in place


@dataclass
class Segment:
    start: int
    end: int
    size: int
    offset: int = 0  # bytes from the buffer's offset (overlapped hand-overs move it)

    def overlaps(self, other: "Segment") -> bool:
        return self.start <= other.end and other.start <= self.end

    @property
    def top(self) -> int:
        return self.offset + self.size


@dataclass
class Buffer:
    """Bytes at one arena offset: a chain of groups (in-place hand-overs) or a scratch area."""

    name: str
    segments: list[Segment]
    tensors: list[str] = field(default_factory=list)
    scratch_of: int | None = None  # op index when this is kernel scratch
    #: Tensor -> bytes from the buffer's offset (absent: 0).
    tensor_offsets: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return max(s.top for s in self.segments)

    @property
    def start(self) -> int:
        return min(s.start for s in self.segments)

    @property
    def end(self) -> int:
        return max(s.end for s in self.segments)

    def size_at(self, step: int) -> int:
        """Bytes the buffer spans at ``step`` (both segments of an overlapped hand-over)."""
        live = [s for s in self.segments if s.start <= step <= s.end and s.size]
        if not live:
            return 0
        return max(s.top for s in live) - min(s.offset for s in live)

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return any(a.overlaps(b) for a in self.segments for b in other.segments)


@dataclass
class InPlaceUse:
    """An in-place hand-over the buffers realize: op (index in graph.ops) writes ``output``
    over ``input``."""

    op: int
    input: str
    output: str


@dataclass
class OverlapUse:
    """An overlapped hand-over: op writes ``output`` starting ``delta`` bytes from ``input``'s
    start (negative: below it)."""

    op: int
    input: str
    output: str
    delta: int


@dataclass
class Liveness:
    order: list[int]
    groups: dict[str, Group]             # by root tensor
    root_of: dict[str, str]              # tensor -> root of its group
    buffers: list[Buffer]
    in_place: list[InPlaceUse]
    overlaps: list[OverlapUse] = field(default_factory=list)

    def live_bytes(self) -> list[int]:
        """Bytes in use at each step (segments of one buffer share bytes: the largest counts)."""
        return [sum(b.size_at(s) for b in self.buffers) for s in range(max(len(self.order), 1))]


def activation_tensors(graph: Graph) -> list[str]:
    """Every tensor the arena must hold: non-constant tensors ops read or write, graph inputs
    and outputs (in a stable order)."""
    names: dict[str, None] = {}
    for name in graph.inputs:
        names[name] = None
    for op in graph.ops:
        for name in list(op.inputs) + list(op.outputs):
            if name and not graph.tensors[name].is_constant:
                names[name] = None
    for name in graph.outputs:
        if not graph.tensors[name].is_constant:
            names[name] = None
    return list(names)


def build_groups(graph: Graph, order: list[int]) -> tuple[dict[str, Group], dict[str, str]]:
    aliases = alias_roots(graph)
    step_of = {i: s for s, i in enumerate(order)}
    last = max(len(order) - 1, 0)
    root_of = {name: aliases.get(name, name) for name in activation_tensors(graph)}
    groups: dict[str, Group] = {}
    for name, root in root_of.items():
        if root not in groups:
            groups[root] = Group(root, graph.tensors[root].nbytes, start=-1, end=-1)
        groups[root].members.append(name)
    for i, op in enumerate(graph.ops):
        s = step_of[i]
        for name in op.outputs:
            g = groups[root_of[name]]
            if name == g.root:
                g.start = s
        for name in op.inputs:
            if name in root_of:
                g = groups[root_of[name]]
                g.end = max(g.end, s)
    for g in groups.values():
        if g.root in graph.inputs or g.start < 0:
            g.start = 0
        if any(m in graph.outputs for m in g.members):
            g.pinned = True
            g.end = last
        g.end = max(g.end, g.start)
    return groups, root_of


def analyze(graph: Graph, order: list[int], scratch: list[int],
            candidates: list[list[InPlace]], use_in_place: bool = True,
            overlaps: list[list[Overlap]] | None = None, alignment: int = 1) -> Liveness:
    """Groups, in-place chains and scratch areas of ``graph`` executed in ``order``
    (indices into ``graph.ops``); ``scratch`` and ``candidates`` are indexed like
    ``graph.ops``. ``overlaps`` (by op, like ``candidates``; with ``use_in_place``): the
    (input, output, largest delta) an op may overlap when no in-place pair applies, the
    first legal one of the op's list (an ``ABOVE`` option: the smallest delta); deltas are
    rounded down (up) to ``alignment``."""
    groups, root_of = build_groups(graph, order)
    chain_of: dict[str, list[str]] = {root: [root] for root in groups}  # root -> its chain
    rel: dict[str, int] = {root: 0 for root in groups}  # root -> offset inside its chain
    uses: list[InPlaceUse] = []
    overlap_uses: list[OverlapUse] = []
    if use_in_place:
        for s, i in enumerate(order):
            op = graph.ops[i]
            pair = _legal_pair(graph, op, s, candidates[i], groups, root_of, chain_of)
            delta = 0
            if pair is None and overlaps is not None:
                found = _legal_pair(graph, op, s, [(o[0], o[1]) for o in overlaps[i]], groups,
                                    root_of, chain_of, any_size=True)
                if found is not None:
                    pair = found
                    option = next(o for o in overlaps[i] if (o[0], o[1]) == found)
                    if is_above(option):  # the lowest aligned delta at or above the bound
                        delta = -(-option[2] // alignment) * alignment
                    else:
                        delta = (option[2] // alignment) * alignment
                    overlap_uses.append(OverlapUse(i, op.inputs[found[0]],
                                                   op.outputs[found[1]], delta))
            elif pair is not None:
                uses.append(InPlaceUse(i, op.inputs[pair[0]], op.outputs[pair[1]]))
            if pair is None:
                continue
            j, k = pair
            g_in, g_out = root_of[op.inputs[j]], root_of[op.outputs[k]]
            chain = chain_of[g_in]
            chain.append(g_out)
            chain_of[g_out] = chain
            rel[g_out] = rel[g_in] + delta
    buffers: list[Buffer] = []
    seen: set[int] = set()
    for root in groups:
        chain = chain_of[root]
        if id(chain) in seen:
            continue
        seen.add(id(chain))
        members = [groups[r] for r in chain]
        low = min(rel[r] for r in chain)
        buffers.append(Buffer(chain[0], [Segment(g.start, g.end, g.size, rel[g.root] - low)
                                         for g in members],
                              [m for g in members for m in g.members],
                              tensor_offsets={m: rel[g.root] - low for g in members
                                              for m in g.members if rel[g.root] != low}))
    for s, i in enumerate(order):
        if scratch[i] > 0:
            buffers.append(Buffer(f"scratch:{graph.ops[i].name}", [Segment(s, s, scratch[i])],
                                  scratch_of=i))
    return Liveness(list(order), groups, root_of, buffers, uses, overlap_uses)


def _legal_pair(graph: Graph, op: Op, step: int, pairs: list[InPlace],
                groups: dict[str, Group], root_of: dict[str, str],
                chain_of: dict[str, list[str]], any_size: bool = False) -> InPlace | None:
    """The first candidate (input j, output k) whose input buffer may be overwritten here:
    the input's group dies at this op, holds no graph output, is not read through another
    operand of this op, ends its chain, and the output fits in it (``any_size``: an
    overlap, whose output may be larger)."""
    if is_alias(graph, op):
        return None
    for j, k in pairs:
        if j >= len(op.inputs) or k >= len(op.outputs) or not op.inputs[j]:
            continue
        name_in, name_out = op.inputs[j], op.outputs[k]
        if name_in not in root_of or name_out not in root_of:
            continue  # a constant operand
        g_in, g_out = groups[root_of[name_in]], groups[root_of[name_out]]
        if g_in.pinned or g_in.end != step or g_out.root != name_out:
            continue
        others = [root_of.get(n) for idx, n in enumerate(op.inputs) if idx != j and n]
        if g_in.root in others:
            continue
        if chain_of[g_in.root][-1] != g_in.root:
            continue
        if (g_out.size > g_in.size and not any_size) or g_out.start != step:
            continue
        if len(chain_of[g_out.root]) != 1:
            continue
        return j, k
    return None
