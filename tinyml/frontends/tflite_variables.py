"""TFLite resource variables: the state a streaming model keeps between invocations.

Why a module of its own: the four builtins involved are not operators on tensors. VAR_HANDLE
makes a RESOURCE handle (a tensor with no data) naming a variable; CALL_ONCE runs another
subgraph on the first invocation only, which the converter uses to give every variable its
initial value; READ_VARIABLE and ASSIGN_VARIABLE read and write a variable through a handle.
The IR has no handles and no subgraphs: a variable is an entry of ``Graph.variables`` (shape,
type, quantization, value at reset) and READ_VARIABLE / ASSIGN_VARIABLE name it. So this
module resolves handles to variable names, evaluates the initializer subgraph at compile time
(it may only assign constants: anything else is refused, one line naming it) and turns the
two accesses into IR ops.

Variables are keyed as TFLM keys them (``MicroResourceVariables::CreateIdIfNoneFound``): by
container and shared name, so two handles with the same names are the same variable.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import ModelFormatError
from tinyml.ir import Op
from tinyml.ir.graph import Variable
from tinyml.ir.ops import VariableAttrs

#: The builtins this module handles (the rest of the frontend skips them).
VARIABLE_BUILTINS = ("VAR_HANDLE", "CALL_ONCE", "READ_VARIABLE", "ASSIGN_VARIABLE")


def variable_key(options) -> str:
    """The IR name of the variable a VAR_HANDLE refers to."""
    shared = options.sharedName.decode("utf-8", "replace") if options.sharedName else ""
    container = options.container.decode("utf-8", "replace") if options.container else ""
    if not shared:
        raise ModelFormatError("VAR_HANDLE without a shared name: the variable cannot be "
                               "identified")
    return f"{container}/{shared}" if container else shared


class Variables:
    """Variable handling for one import (``importer`` is the TFLite ``_Importer``)."""

    def __init__(self, importer):
        self.importer = importer
        #: Handle tensor index (subgraph 0) -> variable name.
        self.handles: dict[int, str] = {}
        #: Variable name -> (value at reset, quantization of the initializer's tensor).
        self.initial: dict[str, tuple[np.ndarray, object]] = {}

    @property
    def name(self) -> str:
        return self.importer.graph.name

    def scan(self, sub) -> None:
        """Collect subgraph 0's handles and evaluate the initializer of every CALL_ONCE."""
        for op in sub.operators or []:
            kind = self.importer._opcode(op)
            if kind == "VAR_HANDLE":
                for index in _ints(op.outputs):
                    self.handles[index] = variable_key(op.builtinOptions)
            elif kind == "CALL_ONCE":
                self._evaluate_init(op.builtinOptions.initSubgraphIndex)

    def is_handle(self, index: int) -> bool:
        return index in self.handles

    def _evaluate_init(self, index: int) -> None:
        """Run the initializer subgraph now: it must only assign constants to variables."""
        subgraphs = self.importer.model.subgraphs
        if not 0 < index < len(subgraphs):
            raise ModelFormatError(f"{self.name}: CALL_ONCE runs missing subgraph #{index}")
        sub = subgraphs[index]
        label = sub.name.decode("utf-8", "replace") if sub.name else f"#{index}"
        tensors = sub.tensors or []
        handles: dict[int, str] = {}
        for op in sub.operators or []:
            kind = self.importer._opcode(op)
            if kind == "VAR_HANDLE":
                for out in _ints(op.outputs):
                    handles[out] = variable_key(op.builtinOptions)
                continue
            inputs = _ints(op.inputs)
            if kind != "ASSIGN_VARIABLE" or len(inputs) != 2 or inputs[0] not in handles:
                raise ModelFormatError(
                    f"{self.name}: the variable initializer (subgraph '{label}', run by "
                    f"CALL_ONCE) computes with {kind}: only assignments of constants to "
                    f"variables can be evaluated at compile time")
            value = tensors[inputs[1]]
            raw = value.name.decode("utf-8", "replace") if value.name else f"tensor_{inputs[1]}"
            dtype, shape, quant = self.importer._tensor_type(value, raw)
            data = self.importer._buffer(value.buffer, dtype, shape, raw)
            if data is None:
                raise ModelFormatError(
                    f"{self.name}: the variable initializer (subgraph '{label}') assigns "
                    f"'{raw}', which is not a constant, to variable '{handles[inputs[0]]}'")
            self.initial[handles[inputs[0]]] = (data, quant)

    def convert(self, index: int, kind: str, op) -> None:
        """Add the IR op of a READ_VARIABLE or ASSIGN_VARIABLE (the other two builtins leave
        nothing in the IR: their effect is ``Graph.variables``)."""
        if kind in ("VAR_HANDLE", "CALL_ONCE"):
            return
        graph = self.importer.graph
        inputs = _ints(op.inputs)
        if not inputs or inputs[0] not in self.handles:
            raise ModelFormatError(f"{self.name}: operator #{index} ({kind}) reads no variable "
                                   f"handle made by VAR_HANDLE")
        var = self._variable(self.handles[inputs[0]], kind, index)
        attrs = VariableAttrs(var.name, tuple(var.shape), var.dtype)
        if kind == "READ_VARIABLE":
            outputs = [self.importer._name(i) for i in _ints(op.outputs)]
            out = graph.tensors[outputs[0]] if len(outputs) == 1 else None
            if out is None or (out.shape, out.dtype) != (tuple(var.shape), var.dtype):
                raise ModelFormatError(
                    f"{self.name}: operator #{index} (READ_VARIABLE) reads variable "
                    f"'{var.name}' of {var.dtype}{list(var.shape)} into "
                    + (f"{out.dtype}{list(out.shape)}" if out is not None else
                       f"{len(outputs)} outputs"))
            graph.add_op(Op(kind, outputs[0].split(";")[0], [], outputs, attrs))
            return
        if len(inputs) != 2:
            raise ModelFormatError(f"{self.name}: operator #{index} (ASSIGN_VARIABLE) has "
                                   f"{len(inputs)} inputs, expected 2")
        value = self.importer._name(inputs[1])
        graph.add_op(Op(kind, f"{value.split(';')[0]} (assign {var.name})", [value], [],
                        attrs))

    def _variable(self, key: str, kind: str, index: int) -> Variable:
        graph = self.importer.graph
        if key not in graph.variables:
            if key not in self.initial:
                raise ModelFormatError(
                    f"{self.name}: operator #{index} ({kind}) uses variable '{key}', which no "
                    f"CALL_ONCE initializer assigns: its value at the first invocation is "
                    f"unknown")
            data, quant = self.initial[key]
            from tinyml.ir.tensor import dtype_of
            graph.variables[key] = Variable(key, tuple(data.shape), dtype_of(data), data.copy(),
                                            quant)
        return graph.variables[key]


def _ints(values) -> list[int]:
    if values is None:
        return []
    return [int(v) for v in np.asarray(values).reshape(-1)]


def variable_tensor(graph, name: str, layer: str, kind: str) -> Variable:
    """A TFLite *variable tensor* (``is_variable``: state an op updates in place, as SVDF's
    activation state) as a graph variable named after the tensor, which leaves the tensors.

    TFLM gives such a tensor persistent storage and ``ResetTensorData`` fills it at every
    reset, whatever its buffer holds: zeros, or the zero point for an int8 tensor. That is
    the variable's value at reset here too."""
    if name in graph.variables:
        return graph.variables[name]
    t = graph.tensors.get(name) if name else None
    if t is None:
        raise ModelFormatError(f"{graph.name}: layer '{layer}' ({kind}) has no state tensor")
    if name in graph.inputs or any(name in op.outputs for op in graph.ops):
        raise ModelFormatError(f"{graph.name}: layer '{layer}' ({kind}): its state tensor "
                               f"'{name}' is computed or fed by the caller, not a variable")
    fill = int(t.quant.zero_point.reshape(-1)[0]) if t.dtype == "int8" and t.quant else 0
    from tinyml.ir.tensor import DTYPES
    initial = np.full(t.shape, fill, np.dtype(DTYPES[t.dtype]))
    graph.variables[name] = Variable(name, tuple(t.shape), t.dtype, initial, t.quant)
    del graph.tensors[name]
    return graph.variables[name]
