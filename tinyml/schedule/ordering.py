"""Execution orders that lower peak memory when the graph has branches.

Why: in a graph with parallel branches (a residual block's shortcut convolution next to its
main path, an Inception-style split) the order in which branches run decides which tensors
are alive together. The frontends keep the source model's order, which is rarely chosen for
memory.

Search: the bytes alive while op v runs depend only on *which* ops ran before (a tensor is
alive when its producer ran and some reader has not), so the minimum-peak order is a
bottleneck shortest path over "sets of executed ops". The sets reachable in k steps are
enumerated layer by layer; when a layer holds more than ``beam`` sets only the best are kept
(exact for chains and the usual small residual blocks, a beam search otherwise). Ties keep
the source order. Besides data flow, an op waits for what ``Graph.ordering_edges`` puts
before it (an ASSIGN_VARIABLE for every earlier READ_VARIABLE of its variable), so no order
found reads a variable after its new value is written. The cost counts in-place hand-overs
(an output written over a dying input costs max of the two, not the sum) and the op's
scratch, as the planner will.
"""

from __future__ import annotations

from tinyml.ir import Graph
from tinyml.passes.reshape_alias import alias_roots
from tinyml.schedule.liveness import activation_tensors
from tinyml.schedule.policy import InPlace

DEFAULT_BEAM = 512


def has_branches(graph: Graph) -> bool:
    """True when the ops have more than one topological order (only then is there an order
    to search): a DAG has exactly one iff each op (in the graph's valid order) reads an
    output of the op just before it."""
    for before, after in zip(graph.ops, graph.ops[1:]):
        if not set(before.outputs) & set(after.inputs):
            return True
    return False


def min_peak_order(graph: Graph, scratch: list[int], candidates: list[list[InPlace]],
                   beam: int = DEFAULT_BEAM) -> tuple[list[int], int]:
    """An op order (indices into ``graph.ops``) with the smallest peak of live bytes found,
    and that peak."""
    n = len(graph.ops)
    model = _Model(graph, scratch, candidates)
    # state: executed-op mask -> (peak so far, live bytes after, order)
    layer: dict[int, tuple[int, int, tuple[int, ...]]] = {0: (0, model.initial_live, ())}
    for _ in range(n):
        following: dict[int, tuple[int, int, tuple[int, ...]]] = {}
        for mask, (peak, live, order) in layer.items():
            for v in range(n):
                if mask >> v & 1 or model.preds[v] & ~mask:
                    continue
                during, after = model.step(mask, live, v)
                state = (max(peak, during), after, order + (v,))
                key = mask | 1 << v
                if key not in following or state[:2] < following[key][:2]:
                    following[key] = state
        if len(following) > beam:
            kept = sorted(following.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[1][2]))
            following = dict(kept[:beam])
        layer = following
    (peak, _, order), = layer.values() if n else [(0, 0, ())]
    return list(order), peak


def order_peak(graph: Graph, order: list[int], scratch: list[int],
               candidates: list[list[InPlace]]) -> int:
    """The peak live bytes of running ``graph`` in ``order`` under the same cost model."""
    model = _Model(graph, scratch, candidates)
    mask, live, peak = 0, model.initial_live, 0
    for v in order:
        during, live = model.step(mask, live, v)
        peak = max(peak, during)
        mask |= 1 << v
    return peak


class _Model:
    """Storage groups (alias roots) with producer and reader masks, for fast set costs."""

    def __init__(self, graph: Graph, scratch: list[int], candidates: list[list[InPlace]]):
        aliases = alias_roots(graph)
        names = activation_tensors(graph)
        self.root = {t: aliases.get(t, t) for t in names}
        roots = list(dict.fromkeys(self.root.values()))
        self.size = {r: graph.tensors[r].nbytes for r in roots}
        self.producer: dict[str, int] = {}
        self.readers: dict[str, int] = {r: 0 for r in roots}
        self.pinned = {r: False for r in roots}
        producer_of: dict[str, int] = {}
        for i, op in enumerate(graph.ops):
            for t in op.outputs:
                producer_of[t] = i
                if self.root.get(t) == t:
                    self.producer[t] = i
        self.preds = [0] * len(graph.ops)
        for i, op in enumerate(graph.ops):
            for t in op.inputs:
                if t in producer_of:
                    self.preds[i] |= 1 << producer_of[t]
                if t in self.root:
                    self.readers[self.root[t]] |= 1 << i
        # A variable's reads and assignments keep their order (they share no tensor).
        index = {id(op): i for i, op in enumerate(graph.ops)}
        for before, after in graph.ordering_edges():
            self.preds[index[id(after)]] |= 1 << index[id(before)]
        for t in graph.outputs:
            if t in self.root:
                self.pinned[self.root[t]] = True
        self.outputs_of = [[self.root[t] for t in dict.fromkeys(op.outputs)
                            if self.root.get(t) == t] for op in graph.ops]
        self.operand_roots = [[self.root[t] for t in op.inputs if t in self.root]
                              for op in graph.ops]
        self.inputs_of = [list(dict.fromkeys(roots)) for roots in self.operand_roots]
        self.scratch = scratch
        self.candidates = [[(graph.ops[i].inputs[j], graph.ops[i].outputs[k])
                            for j, k in pairs
                            if j < len(graph.ops[i].inputs) and k < len(graph.ops[i].outputs)]
                           for i, pairs in enumerate(candidates)]
        inputs = [r for r in roots if r not in self.producer]
        # Graph inputs exist from the start; one nobody reads only during the first step.
        kept = [r for r in inputs if self.readers[r] or self.pinned[r]]
        self.initial_live = sum(self.size[r] for r in kept)
        self.unread_inputs = sum(self.size[r] for r in inputs if r not in kept)

    def _dies(self, root: str, done: int) -> bool:
        return not self.pinned[root] and not self.readers[root] & ~done

    def step(self, mask: int, live: int, v: int) -> tuple[int, int]:
        """(bytes alive while op v runs, bytes alive after it) from state ``mask``."""
        done = mask | 1 << v
        new = sum(self.size[r] for r in self.outputs_of[v])
        during = live + new + self.scratch[v] + (self.unread_inputs if mask == 0 else 0)
        for t_in, t_out in self.candidates[v]:
            r_in, r_out = self.root.get(t_in), self.root.get(t_out)
            if r_in is None or r_out != t_out or self.size[r_out] > self.size[r_in]:
                continue
            if self.operand_roots[v].count(r_in) == 1 and self._dies(r_in, done):
                during -= self.size[r_out]  # written over the dying input
                break
        after = live + new
        for r in set(self.inputs_of[v]) | set(self.outputs_of[v]):
            if self._dies(r, done):
                after -= self.size[r]
        return during, after
