"""A small match/transform framework for graph rewrites, in the style of hls4ml's optimizer
passes.

Why: every rewrite (folding, fusing, aliasing) has the same shape: find an op that fits a
pattern, check that rewriting it is legal, rewrite it. Writing each as ``match`` + ``transform``
keeps the legality conditions in one readable place per pass, and the driver here re-runs the
passes until none applies, so a rewrite that enables another (a folded shape making a RESHAPE
static, a fused RELU letting an ADD fuse into its convolution) needs no ordering tricks.

The helpers below are the graph edits passes share; they keep the graph's invariants (one
producer per tensor, graph outputs keep their names) so that :meth:`Graph.finalize` still
holds after every pass.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from tinyml.errors import GraphError
from tinyml.ir import Graph, Op


class OptimizerPass:
    """One rewrite. ``match`` must not change the graph; ``transform`` rewrites the matched op
    and returns True when it changed the graph."""

    #: Short name, used to select passes (``run_passes(graph, passes=[...])``) and in reports.
    name = "pass"

    def match(self, graph: Graph, op: Op) -> bool:
        raise NotImplementedError

    def transform(self, graph: Graph, op: Op) -> bool:
        raise NotImplementedError


#: Upper bound on driver sweeps; each sweep that changes nothing ends the loop, so this only
#: guards against a pass that keeps undoing another.
MAX_SWEEPS = 100


def apply_passes(graph: Graph, passes: Sequence[OptimizerPass]) -> dict[str, int]:
    """Apply ``passes`` to ``graph`` in place until none matches; return rewrites per pass."""
    counts = {p.name: 0 for p in passes}
    for _ in range(MAX_SWEEPS):
        changed = False
        for p in passes:
            for op in list(graph.ops):
                if not any(o is op for o in graph.ops):
                    continue  # removed by an earlier rewrite in this sweep
                if p.match(graph, op) and p.transform(graph, op):
                    counts[p.name] += 1
                    changed = True
        if not changed:
            return counts
    raise GraphError(f"graph passes did not converge after {MAX_SWEEPS} sweeps: {counts}")


# ---- queries ----------------------------------------------------------------------------------


def consumers_of(graph: Graph, tensor: str) -> list[Op]:
    """Ops reading ``tensor`` (an op reading it twice is listed once)."""
    return [op for op in graph.ops if tensor in op.inputs]


def producer_of(graph: Graph, tensor: str) -> Op | None:
    return next((op for op in graph.ops if tensor in op.outputs), None)


def is_graph_io(graph: Graph, tensor: str) -> bool:
    return tensor in graph.inputs or tensor in graph.outputs


def only_consumer(graph: Graph, tensor: str, op: Op) -> bool:
    """True when ``op`` is the single reader of ``tensor`` and nothing outside the graph reads
    it: then the tensor may disappear into ``op`` (fusion)."""
    users = consumers_of(graph, tensor)
    return len(users) == 1 and users[0] is op and tensor not in graph.outputs


# ---- edits ------------------------------------------------------------------------------------


def remove_op(graph: Graph, op: Op) -> None:
    graph.ops = [o for o in graph.ops if o is not op]


def replace_op(graph: Graph, old: Op, new: Op) -> None:
    graph.ops = [new if o is old else o for o in graph.ops]


def rename_uses(graph: Graph, old: str, new: str, ops: Iterable[Op] | None = None) -> None:
    """Make every op (or only ``ops``) read ``new`` where it read ``old``."""
    for op in graph.ops if ops is None else ops:
        op.inputs = [new if name == old else name for name in op.inputs]


def prune_tensors(graph: Graph) -> int:
    """Drop tensors no op, graph input or graph output refers to (constants left behind by
    folding, outputs of removed ops). Returns how many were dropped."""
    used = set(graph.inputs) | set(graph.outputs)
    for op in graph.ops:
        used.update(n for n in op.inputs if n)
        used.update(op.outputs)
    dead = [name for name in graph.tensors if name not in used]
    for name in dead:
        del graph.tensors[name]
    return len(dead)
