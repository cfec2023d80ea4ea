"""Which declared overlaps to use: those that do not grow the arena, largest steps first.

Why not all: a kernel that walks its output forward can only overlap an input by starting
*below* it, by as much as the output outgrows the input (a 1x1 convolution from 8 to 16
channels starts its output half its size lower). Each overlapped hand-over fixes the output's
offset relative to the input's, so a chain of them drifts down through the arena, and an
input chained above the drift stays in the arena's span: on a MobileNet the drifts of all the
overlaps add up to more than the tensors they save. So they are chosen greedily, by the
arena they give once placed: the ops are tried in decreasing order of the bytes alive at
their step (the peak first), and an overlap is kept when the arena does not grow (several
steps at the same peak, as the four 1x1 convolutions of a DS-CNN, only lower it together);
the refused ones are tried again after each pass that kept one. Adding can stop in a local
optimum (overlaps kept at no gain that block a later one), so removing them one by one from
all of them is tried too, and the smaller arena wins.
The planner then keeps the result only if its arena is smaller than without overlaps.

Drift has a cure where kernels can walk backward (the convolutions, write_order's
``conv_delta_above``): their output may also start *above* the input, at the input's top
(a shrinking 1x1 convolution ends its output where the input ends), so that the next layer,
growing, can overlap downward into the bytes the chain already spans (mcunet's project /
expand pairs). Each side is tried as a change of its own when adding; removing starts from
every op below its input.
"""

from __future__ import annotations

from typing import Sequence

from tinyml.ir import Graph
from tinyml.schedule.liveness import analyze
from tinyml.schedule.placement import place
from tinyml.schedule.policy import InPlace, Overlap, is_above


def choose(graph: Graph, order: list[int], scratch: list[int],
           candidates: list[list[InPlace]], overlaps: list[list[Overlap]], alignment: int,
           strategies: Sequence[str]) -> list[list[Overlap]]:
    """``overlaps`` restricted to the ops whose hand-over does not grow the arena (``order``
    and the other arguments as for :func:`tinyml.schedule.liveness.analyze`; placed with
    ``strategies``): the better of adding them one by one and removing them one by one."""

    def arena(chosen: list[list[Overlap]]) -> tuple[int, list[int]]:
        live = analyze(graph, order, scratch, candidates, True, chosen, alignment)
        profile = live.live_bytes()
        size = min(place(live.buffers, s, alignment, profile).arena_bytes for s in strategies)
        return size, profile

    none: list[list[Overlap]] = [[] for _ in graph.ops]
    base, profile = arena(none)
    steps = sorted((s for s, i in enumerate(order) if overlaps[i]),
                   key=lambda s: (-profile[s], s))
    # Each side an op's kernel allows is a change of its own (below the input, or above it
    # where the kernel can walk backward).
    added = _greedy(arena, none, base, [(order[s], [option]) for s in steps
                                        for option in overlaps[order[s]]])
    # Removing: the ops whose steps hold the fewest bytes first (the least to lose), from
    # every op below its input (starting from every op above it as well found nothing more
    # on the suite's models, for a fifth more compile time).
    everything = [[o for o in options if not is_above(o)][:1] for options in overlaps]
    removed = _greedy(arena, everything, arena(everything)[0],
                      [(order[s], []) for s in reversed(steps)])
    return min((added, removed), key=lambda c: arena(c)[0])


def _greedy(arena, chosen: list[list[Overlap]], best: int,
            changes: list[tuple[int, list[Overlap]]]) -> list[list[Overlap]]:
    """Applies each change (op, its overlaps) that does not grow the arena; passes until none
    applies (one kept may let one refused before pay: vww's first 1x1 convolution only once
    its input's producer overlaps too)."""
    waiting = list(changes)
    taken = True
    while taken:
        taken = False
        for change in list(waiting):
            op, value = change
            trial = list(chosen)
            trial[op] = value
            size, _ = arena(trial)
            if size <= best:
                chosen, best, taken = trial, size, True
                waiting.remove(change)
    return chosen
