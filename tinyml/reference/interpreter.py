"""Run a graph with the numpy reference kernels.

This is the oracle for everything tinyml generates: int8 results must equal TFLM's reference
kernels bit for bit, float results must match TFLite's float kernels to rounding. Kernels are
vectorized numpy; clarity beats speed, but a 96x96 MobileNet still runs in well under a second.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.ir import DTYPES, Graph
from tinyml.reference.kernels import KERNELS, KernelCall


def initial_state(graph: Graph) -> dict[str, np.ndarray]:
    """The variables of ``graph`` at reset (a streaming model's state before its first
    invocation), by name: what :func:`run` reads and updates."""
    return {name: np.array(var.initial, dtype=DTYPES[var.dtype], copy=True)
            for name, var in graph.variables.items()}


def run(graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
        keep_all: bool = False,
        state: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Execute ``graph`` on ``inputs`` (by position or by input name).

    Returns the graph outputs by name, or every tensor's value when ``keep_all`` is set (used
    to compare intermediate tensors against TFLM, since saturated outputs hide errors).
    ``state``: the variables of a streaming model (:func:`initial_state`), updated in place
    by its assignments, so passing the same dict runs frame after frame; None runs from the
    initial state, as a model's first invocation.
    """
    if state is None:
        state = initial_state(graph)
    if not isinstance(inputs, Mapping):
        inputs = list(inputs)
        if len(inputs) != len(graph.inputs):
            raise TinymlError(f"graph takes {len(graph.inputs)} inputs, got {len(inputs)}")
        inputs = dict(zip(graph.inputs, inputs))
    values: dict[str, np.ndarray] = {}
    for name in graph.inputs:
        t = graph.tensors[name]
        if name not in inputs:
            raise TinymlError(f"missing value for graph input '{name}'")
        x = np.asarray(inputs[name])
        if tuple(x.shape) != t.shape:
            raise TinymlError(f"input '{name}' must have shape {list(t.shape)}, got "
                              f"{list(x.shape)}")
        values[name] = x.astype(DTYPES[t.dtype], copy=False)
    for t in graph.constants():
        values[t.name] = t.data

    for op in graph.ops:
        outs = graph.op_outputs(op)
        if outs and all(t.is_constant for t in outs):
            continue  # evaluated at shape inference (shape-only ops)
        kernel = KERNELS.get(op.kind)
        if kernel is None:
            raise UnsupportedOpError(op.kind, op.name, sorted(KERNELS),
                                     detail="no reference kernel")
        call = KernelCall(op, [values[n] if n else None for n in op.inputs],
                          graph.op_inputs(op), outs, state)
        results = kernel(call)
        if isinstance(results, np.ndarray):
            results = [results]
        for t, value in zip(outs, results):
            value = np.asarray(value)
            if value.shape != t.shape or value.dtype != np.dtype(DTYPES[t.dtype]):
                raise AssertionError(f"kernel {op.kind} ('{op.name}') produced "
                                     f"{value.dtype}{list(value.shape)}, expected "
                                     f"{t.dtype}{list(t.shape)}")
            values[t.name] = value
    if keep_all:
        return values
    return {name: values[name] for name in graph.outputs}
