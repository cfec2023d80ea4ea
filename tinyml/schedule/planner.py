"""The static memory plan: every activation, graph input, graph output and kernel scratch area
at a fixed offset of one arena.

Why one arena planned at compile time: a microcontroller has no allocator to spare and no
room for fragmentation; a compile-time plan makes the RAM need a number the build reports,
and lets buffers whose lifetimes do not overlap share bytes. Compared with TFLM's planner
this one also (1) lets aliases (RESHAPE) share storage instead of copying, (2) runs
element-wise ops, in-place depthwise convolutions and fused residual convolutions over a
dying input, (3) considers other topological orders when the graph branches, (4) tries
several placement heuristics and keeps the smallest arena, and (5) places a layer's output
partly over its dying input at the distance the kernel's read/write order makes safe
(:mod:`tinyml.codegen.write_order`, chosen by :mod:`tinyml.schedule.overlap`).

Search: candidate orders (the graph's own and the minimum-peak order of
:mod:`tinyml.schedule.ordering`) x in place / copies / in place with overlaps x the
placement strategies of :mod:`tinyml.schedule.placement`; the smallest arena wins, ties
going to the earlier candidate (source order, in place without overlaps, TFLM's size-first
greedy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.schedule.liveness import Liveness, analyze
from tinyml.schedule.overlap import choose as choose_overlaps
from tinyml.schedule.ordering import has_branches, min_peak_order, order_peak
from tinyml.schedule.placement import STRATEGIES, Placement, place
from tinyml.schedule.policy import (InPlace, ScratchSource, is_above, op_overlaps,
                                    op_requirements)


@dataclass
class MemoryPlan:
    """Where everything lives. Op indices refer to ``graph.ops`` of the planned graph (and so
    to lowering's calls, which follow ``graph.ops``); generated code must run the ops in
    ``order``."""

    order: list[int]
    offsets: dict[str, int]             # every activation tensor (aliases share offsets)
    sizes: dict[str, int]               # bytes of each tensor in ``offsets``
    scratch_offset: dict[int, int]      # op index -> offset of its scratch
    scratch_size: dict[int, int]        # op index -> scratch bytes (only ops that need some)
    arena_bytes: int
    alignment: int
    strategy: str                       # "<ordering>/<fit>" of the winning placement
    order_source: str                   # "graph" or "min_peak"
    in_place: list[tuple[int, str, str]]  # (op index, input overwritten, output)
    aliases: dict[str, str]             # alias tensor -> tensor owning the storage
    live_bytes: list[int]               # bytes in use at each step of ``order``
    peak_step: int
    peak_layer: str                     # name of the op at the step with most bytes alive
    #: Arena bytes of every placement tried, by "<order>|<mode>|<strategy>" (mode: in-place,
    #: copy, or overlap: in place and the overlapped hand-overs tinyml.schedule.overlap chose).
    candidates: dict[str, int] = field(default_factory=dict)
    #: Overlapped hand-overs: (op index, input, output, offset(output) - offset(input)).
    overlaps: list[tuple[int, str, str, int]] = field(default_factory=list)

    @property
    def arena_bytes_without_overlap(self) -> int:
        """The smallest arena tried without overlapped hand-overs (the saving's baseline)."""
        plain = [v for k, v in self.candidates.items() if "|overlap" not in k]
        return min(plain, default=self.arena_bytes)

    @property
    def scratch_bytes(self) -> int:
        """The largest scratch area any op uses."""
        return max(self.scratch_size.values(), default=0)

    @property
    def peak_live_bytes(self) -> int:
        """Most bytes alive at one step: a lower bound of the arena for this order."""
        return max(self.live_bytes, default=0)

    @property
    def peak_sram_bytes(self) -> int:
        """RAM the model needs besides the stack: the arena (activations, I/O and scratch)."""
        return self.arena_bytes

    def summary(self) -> str:
        return (f"arena {self.arena_bytes} B (peak live {self.peak_live_bytes} B at "
                f"'{self.peak_layer}'), scratch {self.scratch_bytes} B, "
                f"{len(self.in_place)} in place, {len(self.overlaps)} overlapped, "
                f"{len(self.aliases)} aliases, "
                f"strategy {self.strategy}, order {self.order_source}")


def plan_memory(graph: Graph, calls: Sequence | None = None, *,
                scratch: ScratchSource = None,
                in_place: Mapping[str, Sequence[InPlace]] | Callable | None = None,
                alignment: int = 4, reorder: bool = True,
                strategies: Sequence[str] = STRATEGIES,
                overlap: bool | str = True) -> MemoryPlan:
    """Plan the arena of ``graph`` (after ``tinyml.passes.run_passes``).

    ``calls``: lowering's ``KernelCall`` list (scratch bytes and in-place pairs per op). Without
    it, ``scratch`` (bytes by op name, or a function of the op) and ``in_place`` (candidate
    (input, output) index pairs by op name, or a function) override the defaults of
    :mod:`tinyml.schedule.policy`. ``alignment`` applies to every offset; ``reorder`` allows
    a different topological order when it lowers the peak; ``overlap`` also tries the
    overlapped hand-overs the calls declare (``KernelCall.overlap``), kept only when they
    give a smaller arena; ``overlap="all"`` uses every one of them, whatever the arena (to
    check the kernels' declared orders end to end), below the input; ``overlap="above"``
    likewise, above the input where the kernel may run backward.
    """
    if alignment < 1 or alignment & (alignment - 1):
        raise TinymlError(f"arena alignment must be a power of two, got {alignment}")
    unknown = set(strategies) - set(STRATEGIES)
    if unknown or not strategies:
        raise TinymlError(f"unknown placement strategies {sorted(unknown)} "
                          f"(known: {', '.join(STRATEGIES)})")
    scratch_bytes, candidates = op_requirements(graph, calls, scratch, in_place)
    overlaps = op_overlaps(graph, calls) if overlap else []

    orders = {"graph": list(range(len(graph.ops)))}
    if reorder and has_branches(graph):
        best, peak = min_peak_order(graph, scratch_bytes, candidates)
        if peak < order_peak(graph, orders["graph"], scratch_bytes, candidates):
            orders["min_peak"] = best

    results: dict[str, tuple[Placement, Liveness, str]] = {}
    winner: tuple[Placement, Liveness, str] | None = None
    for source, order in orders.items():
        modes = [("in-place", True, None), ("copy", False, None)]
        if overlap == "all":
            modes = [("overlap", True, overlaps)]
        elif overlap == "above":  # every op above its input where its kernel allows it
            modes = [("overlap", True, [[o for o in options if is_above(o)] or options
                                        for options in overlaps])]
        elif any(overlaps):
            # The overlaps that do not grow the arena (see tinyml.schedule.overlap).
            modes.append(("overlap", True, choose_overlaps(graph, order, scratch_bytes,
                                                           candidates, overlaps, alignment,
                                                           strategies)))
        for mode, use_in_place, mode_overlaps in modes:
            live = analyze(graph, order, scratch_bytes, candidates, use_in_place,
                           mode_overlaps, alignment)
            profile = live.live_bytes()
            for strategy in strategies:
                placement = place(live.buffers, strategy, alignment, profile)
                key = f"{source}|{mode}|{strategy}"
                results[key] = (placement, live, source)
                if winner is None or placement.arena_bytes < winner[0].arena_bytes:
                    winner = (placement, live, source)
    placement, live, source = winner
    return _plan(graph, placement, live, source, alignment,
                 {k: v[0].arena_bytes for k, v in results.items()})


def _plan(graph: Graph, placement: Placement, live: Liveness, source: str, alignment: int,
          candidates: dict[str, int]) -> MemoryPlan:
    offsets: dict[str, int] = {}
    scratch_offset: dict[int, int] = {}
    scratch_size: dict[int, int] = {}
    for buffer, offset in zip(live.buffers, placement.offsets):
        if buffer.scratch_of is not None:
            scratch_offset[buffer.scratch_of] = offset
            scratch_size[buffer.scratch_of] = buffer.size
        for name in buffer.tensors:
            offsets[name] = offset + buffer.tensor_offsets.get(name, 0)
    profile = live.live_bytes()
    peak_step = max(range(len(profile)), key=lambda s: (profile[s], -s)) if profile else 0
    order = live.order
    peak_layer = graph.ops[order[peak_step]].name if order else ""
    aliases = {t: r for t, r in live.root_of.items() if t != r}
    return MemoryPlan(
        order=list(order), offsets=offsets,
        sizes={t: graph.tensors[t].nbytes for t in offsets},
        scratch_offset=scratch_offset, scratch_size=scratch_size,
        arena_bytes=placement.arena_bytes,
        alignment=alignment, strategy=placement.strategy, order_source=source,
        in_place=[(u.op, u.input, u.output) for u in live.in_place], aliases=aliases,
        live_bytes=profile, peak_step=peak_step, peak_layer=peak_layer,
        candidates=candidates,
        overlaps=[(u.op, u.input, u.output, u.delta) for u in live.overlaps])
