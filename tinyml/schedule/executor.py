"""Run a graph inside one arena laid out by a :class:`MemoryPlan`, with the reference kernels.

Why: a memory plan is only right if executing with it computes what the graph computes. This
executor keeps every activation as a numpy view into a single byte array at its planned
offset, exactly as the generated C does, and behaves like a hostile kernel: before an op
runs, its scratch area and every output area not declared in place are filled with junk, so
a plan that lets scratch or an output overlap anything still needed corrupts a later read.
Reads are recorded, so a test can compare every value an op consumed with the unplanned
reference (outputs alone can hide corruption, e.g. behind a saturated softmax).

The arena starts filled with junk too: reading a tensor before it was written shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import DTYPES, Graph
from tinyml.passes.reshape_alias import is_alias
from tinyml.reference.kernels import KERNELS, KernelCall


@dataclass
class PlannedRun:
    outputs: dict[str, np.ndarray]
    #: Every value each op read from the arena, per tensor, in execution order.
    reads: dict[str, list[np.ndarray]] = field(default_factory=dict)


def execute_planned(graph: Graph, plan, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
                    seed: int = 0, state: dict[str, np.ndarray] | None = None) -> PlannedRun:
    if state is None:  # a streaming model's variables, at reset unless given
        from tinyml.reference.interpreter import initial_state
        state = initial_state(graph)
    rng = np.random.default_rng(seed)
    arena = rng.integers(0, 256, plan.arena_bytes, dtype=np.uint8)

    def view(name: str) -> np.ndarray:
        t = graph.tensors[name]
        offset = plan.offsets[name]
        if offset % plan.alignment or offset < 0 or offset + t.nbytes > plan.arena_bytes:
            raise AssertionError(f"tensor '{name}' at {offset}+{t.nbytes} is misaligned or "
                                 f"outside the {plan.arena_bytes}-byte arena")
        return arena[offset:offset + t.nbytes].view(DTYPES[t.dtype]).reshape(t.shape)

    def junk(offset: int, size: int) -> None:
        arena[offset:offset + size] = rng.integers(0, 256, size, dtype=np.uint8)

    if not isinstance(inputs, Mapping):
        inputs = dict(zip(graph.inputs, inputs))
    for name in graph.inputs:
        if name not in inputs:
            raise TinymlError(f"missing value for graph input '{name}'")
        view(name)[...] = np.asarray(inputs[name]).astype(DTYPES[graph.tensors[name].dtype])

    reads: dict[str, list[np.ndarray]] = {}
    # Outputs written over (or overlapping) a dying input: junk there would be the input's.
    in_place = {(i, out) for i, _, out in plan.in_place}
    in_place |= {(i, out) for i, _, out, _ in getattr(plan, "overlaps", ())}
    for i in plan.order:
        op = graph.ops[i]
        outs = graph.op_outputs(op)
        if outs and all(t.is_constant for t in outs):
            continue
        if is_alias(graph, op):
            if plan.offsets[op.inputs[0]] != plan.offsets[op.outputs[0]]:
                raise AssertionError(f"alias '{op.name}' does not share its input's storage")
            continue
        if i in plan.scratch_offset:
            junk(plan.scratch_offset[i], plan.scratch_size[i])
        for t in outs:
            if (i, t.name) not in in_place:
                junk(plan.offsets[t.name], t.nbytes)
        values = []
        for name in op.inputs:
            if not name:
                values.append(None)
            elif graph.tensors[name].is_constant:
                values.append(graph.tensors[name].data)
            else:
                value = view(name).copy()
                reads.setdefault(name, []).append(value)
                values.append(value)
        results = KERNELS[op.kind](KernelCall(op, values, graph.op_inputs(op), outs, state))
        if isinstance(results, np.ndarray):
            results = [results]
        for t, value in zip(outs, results):
            view(t.name)[...] = value
    outputs = {name: (graph.tensors[name].data if graph.tensors[name].is_constant
                      else view(name).copy()) for name in graph.outputs}
    return PlannedRun(outputs, reads)
