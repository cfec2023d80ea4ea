"""The graph IR: tensors by name, ops in execution order, graph inputs and outputs.

A graph is what every frontend produces and every later stage consumes. Frontends build it
with :meth:`Graph.add_tensor` / :meth:`Graph.add_op`, then call :meth:`Graph.finalize`, which
sorts the ops topologically, infers shapes (evaluating shape-only ops) and validates the result,
so every graph that leaves a frontend is well formed.

Streaming models keep state between invocations in *variables* (:class:`Variable`, TFLite's
resource variables): ``Graph.variables`` holds each one's shape, type, quantization and value
at reset; READ_VARIABLE and ASSIGN_VARIABLE ops read and write it. Those ops are the only
ones whose order is not given by data flow alone, so :meth:`Graph.ordering_edges` states it
and the topological sort (and every scheduler) honours it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from tinyml.errors import GraphError, ShapeError
from tinyml.ir.ops import OP_SPECS, OpSpec, variable_uses
from tinyml.ir.tensor import DTYPES, Quantization, Tensor


@dataclass
class Variable:
    """State kept between invocations. ``initial`` is its value at reset (the value the
    model's initializer assigns), of ``dtype``; for an int8 variable these are the codes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    initial: Any
    quant: Quantization | None = None

    @property
    def nbytes(self) -> int:
        import numpy as np
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(DTYPES[self.dtype]).itemsize


@dataclass
class Op:
    """One layer. ``inputs`` and ``outputs`` are tensor names; "" marks an omitted optional
    input (e.g. a convolution without bias). ``name`` is the source model's layer name."""

    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: Any = field(default=None)

    @property
    def spec(self) -> OpSpec:
        return OP_SPECS[self.kind]

    def __post_init__(self):
        if self.kind not in OP_SPECS:
            raise GraphError(f"layer '{self.name}': unknown op kind {self.kind}")
        if self.attrs is None:
            self.attrs = self.spec.attrs()
        elif not isinstance(self.attrs, self.spec.attrs):
            raise GraphError(f"layer '{self.name}': {self.kind} takes {self.spec.attrs.__name__}")


class Graph:
    def __init__(self, name: str = "model"):
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        #: What the frontend normalized while reading the file (a quirk of an older converter,
        #: a field TFLM ignores...): one line per kind of quirk, for ``tinyml inspect``. Not
        #: errors: the graph means what the runtime the file was written for computes.
        self.notes: list[str] = []
        #: State kept between invocations, by name (see :class:`Variable`).
        self.variables: dict[str, Variable] = {}

    # ---- building -------------------------------------------------------------------------

    def add_tensor(self, tensor: Tensor) -> Tensor:
        if tensor.name in self.tensors:
            raise GraphError(f"duplicate tensor name '{tensor.name}'")
        self.tensors[tensor.name] = tensor
        return tensor

    def unique_name(self, base: str) -> str:
        """A tensor name not used yet, derived from ``base``."""
        if base not in self.tensors:
            return base
        i = 1
        while f"{base}_{i}" in self.tensors:
            i += 1
        return f"{base}_{i}"

    def add_op(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    def finalize(self) -> "Graph":
        """Sort, infer shapes and validate: the last step of every frontend."""
        self.sort()
        self.infer_shapes()
        self.validate()
        return self

    # ---- queries --------------------------------------------------------------------------

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def op_inputs(self, op: Op) -> list[Tensor | None]:
        return [self.tensors[n] if n else None for n in op.inputs]

    def op_outputs(self, op: Op) -> list[Tensor]:
        return [self.tensors[n] for n in op.outputs]

    def producers(self) -> dict[str, Op]:
        return {name: op for op in self.ops for name in op.outputs}

    def consumers(self) -> dict[str, list[Op]]:
        users: dict[str, list[Op]] = defaultdict(list)
        for op in self.ops:
            for name in op.inputs:
                if name:
                    users[name].append(op)
        return users

    def constants(self) -> Iterable[Tensor]:
        return (t for t in self.tensors.values() if t.is_constant)

    # ---- structure ------------------------------------------------------------------------

    def ordering_edges(self) -> list[tuple[Op, Op]]:
        """(before, after) pairs data flow does not imply: per variable, a read and a write
        (READ_VARIABLE, ASSIGN_VARIABLE, an LSTM updating its state: ``variable_uses``) keep
        their order in ``ops`` (a read before an assignment sees the old value, one after it
        the new value), and so do two writes."""
        edges: list[tuple[Op, Op]] = []
        seen: dict[str, list[Op]] = defaultdict(list)
        for op in self.ops:
            for name, _, _, writes in variable_uses(op):
                earlier = seen[name]
                edges.extend((e, op) for e, wrote in earlier
                             if (writes or wrote) and (e, op) not in edges)
                earlier.append((op, writes))
        return edges

    def topological_order(self) -> list[Op]:
        """Ops ordered so each runs after its producers and after what
        :meth:`ordering_edges` puts before it; ties keep the source model's order."""
        producer = self.producers()
        extra: dict[int, list[Op]] = defaultdict(list)
        for before, after in self.ordering_edges():
            extra[id(before)].append(after)
        pending = {id(op): sum(1 for n in set(op.inputs) if n in producer) for op in self.ops}
        for followers in extra.values():
            for after in followers:
                pending[id(after)] += 1
        users = self.consumers()
        ready = [op for op in self.ops if pending[id(op)] == 0]
        position = {id(op): i for i, op in enumerate(self.ops)}
        order: list[Op] = []
        import heapq
        heap = [(position[id(op)], id(op), op) for op in ready]
        heapq.heapify(heap)
        while heap:
            _, _, op = heapq.heappop(heap)
            order.append(op)
            followers = [u for out in op.outputs
                         for u in {id(u): u for u in users.get(out, [])}.values()]
            for user in followers + extra.get(id(op), []):
                pending[id(user)] -= 1
                if pending[id(user)] == 0:
                    heapq.heappush(heap, (position[id(user)], id(user), user))
        if len(order) != len(self.ops):
            stuck = [op.name for op in self.ops if pending[id(op)] > 0]
            raise GraphError(f"graph has a cycle through layer '{stuck[0]}'")
        return order

    def sort(self) -> None:
        self.ops = self.topological_order()

    def infer_shapes(self) -> None:
        """Infer every op's output shapes in order; evaluate shape-only ops on known inputs.

        A declared output shape that disagrees with the inferred one is an error (it means the
        model file and its ops disagree).
        """
        for op in self.ops:
            spec = op.spec
            ins = self._checked_inputs(op)
            results = spec.infer(op, ins)
            if len(results) != len(op.outputs):
                raise GraphError(f"layer '{op.name}' ({op.kind}): expected {len(results)} "
                                 f"outputs, got {len(op.outputs)}")
            for name, (shape, dtype) in zip(op.outputs, results):
                out = self.tensors[name]
                if out.shape and out.shape != tuple(shape) and out.size != 0:
                    raise ShapeError(
                        f"layer '{op.name}' ({op.kind}): output '{name}' is declared "
                        f"{list(out.shape)} but computes to {list(shape)}")
                out.shape = tuple(int(d) for d in shape)
            if spec.evaluate is not None and all(
                    t is not None and (t.is_constant or not spec.needs_input_data) for t in ins):
                for name, value in zip(op.outputs, spec.evaluate(op, ins)):
                    out = self.tensors[name]
                    out.data = value.astype(out.dtype if out.dtype else value.dtype)
                    out.folded = True

    def _checked_inputs(self, op: Op) -> list[Tensor | None]:
        required, maximum = op.spec.arity
        given = len(op.inputs)
        if given < required or (maximum is not None and given > maximum):
            raise GraphError(f"layer '{op.name}' ({op.kind}): {given} inputs, expected "
                             f"{required}" + (f"..{maximum}" if maximum != required else ""))
        for i, name in enumerate(op.inputs):
            if not name and i < required:
                raise GraphError(f"layer '{op.name}' ({op.kind}): input {i} is missing")
            if name and name not in self.tensors:
                raise GraphError(f"layer '{op.name}' ({op.kind}): unknown tensor '{name}'")
        return self.op_inputs(op)

    def validate(self) -> None:
        """Check the graph is well formed: every tensor read is produced, a constant or a
        graph input; each tensor has one producer; shapes are static and non-negative."""
        produced: dict[str, str] = {}
        for op in self.ops:
            for name in op.outputs:
                if name not in self.tensors:
                    raise GraphError(f"layer '{op.name}': unknown output tensor '{name}'")
                if name in produced:
                    raise GraphError(f"tensor '{name}' is produced by both '{produced[name]}' "
                                     f"and '{op.name}'")
                if name in self.inputs:
                    raise GraphError(f"graph input '{name}' is overwritten by '{op.name}'")
                produced[name] = op.name
        available = set(self.inputs) | {t.name for t in self.constants()}
        for op in self.ops:
            for name in op.inputs:
                if name and name not in available:
                    raise GraphError(f"layer '{op.name}' reads '{name}' before it is computed")
            available.update(op.outputs)
        for name in list(self.inputs) + list(self.outputs):
            if name not in self.tensors:
                raise GraphError(f"graph input/output '{name}' does not exist")
        for name in self.outputs:
            if name not in available:
                raise GraphError(f"graph output '{name}' is never computed")
        for op in self.ops:
            for name, shape, dtype, _ in variable_uses(op):
                var = self.variables.get(name)
                if var is None:
                    raise GraphError(f"layer '{op.name}' ({op.kind}): unknown variable "
                                     f"'{name}'")
                if (tuple(var.shape), var.dtype) != (shape, dtype):
                    raise GraphError(f"layer '{op.name}' ({op.kind}): variable '{var.name}' "
                                     f"is {var.dtype}{list(var.shape)}, the op says "
                                     f"{dtype}{list(shape)}")
        for t in self.tensors.values():
            if any(d < 0 for d in t.shape):
                raise ShapeError(f"tensor '{t.name}' has unresolved shape {list(t.shape)}")
            if t.quant is not None and t.quant.axis is not None:
                if not 0 <= t.quant.axis < max(len(t.shape), 1):
                    raise GraphError(f"tensor '{t.name}': quantization axis {t.quant.axis} "
                                     f"out of range")
                if t.quant.scale.size not in (1, t.shape[t.quant.axis]):
                    raise GraphError(f"tensor '{t.name}': {t.quant.scale.size} scales for "
                                     f"{t.shape[t.quant.axis]} channels")

    # ---- printing -------------------------------------------------------------------------

    def __str__(self) -> str:
        lines = [f"graph {self.name}"]
        for name in self.inputs:
            lines.append(f"  input  {name}: {self.tensors[name].describe()}")
        for var in self.variables.values():
            quant = f" {var.quant}" if var.quant is not None else ""
            dims = "x".join(str(d) for d in var.shape) or "scalar"
            lines.append(f"  state  {var.name}: {var.dtype}[{dims}]{quant}")
        for i, op in enumerate(self.ops):
            ins = ", ".join(n or "-" for n in op.inputs)
            outs = ", ".join(f"{n}: {self.tensors[n].describe()}" for n in op.outputs)
            lines.append(f"  {i:3d} {op.kind:<18} {op.name}")
            lines.append(f"        ({ins}) -> {outs}")
        for name in self.outputs:
            lines.append(f"  output {name}: {self.tensors[name].describe()}")
        return "\n".join(lines)
