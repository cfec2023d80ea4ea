"""Scheduling: the execution order and the static arena plan (liveness + placement).

``plan_memory(graph, calls)`` returns a :class:`MemoryPlan`: the op order to run, an offset
for every activation tensor (graph inputs and outputs included; aliases share their root's
offset; in-place outputs share their input's), a scratch offset per op that needs scratch,
the arena size and where the peak is. ``execute_planned`` runs a graph with the reference
kernels inside one arena laid out by a plan, to check plans end to end.
"""

from tinyml.schedule.executor import execute_planned
from tinyml.schedule.planner import MemoryPlan, plan_memory
from tinyml.schedule.placement import STRATEGIES

__all__ = ["MemoryPlan", "plan_memory", "execute_planned", "STRATEGIES"]
