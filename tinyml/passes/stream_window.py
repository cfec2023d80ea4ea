"""``compile --stream``: a sliding-window model rewritten to consume one new frame per call.

Why: a keyword spotter classifies a window of T frames (NHWC, time on axis 1, the newest
frame last) and is run every frame, so the ordinary model recomputes T-1 columns of every
layer it already computed one frame earlier. The first layers are causal along time (a
convolution with stride 1 and no padding along time, pointwise ops, activations): the last
column of their output depends only on the last few columns of their input. So for that
prefix the new frame only costs the new column of each layer, if each layer keeps the input
columns its kernel still needs (the "streaming convolution" of kws_streaming).

The rewrite, with existing ops and variables only (every kernel and every target keeps
working): for each tensor t of the streamed prefix that a consumer needs n > 0 past columns
of, a variable holds t's last n columns;

    READ_VARIABLE -> CONCATENATION(state, new column of t; axis 1) = window of n + 1 columns
    SLICE(window, columns 1..n) -> ASSIGN_VARIABLE

and the consumer reads the window (a convolution of kernel k and dilation d along time needs
n = (k - 1) d and now outputs one column). The first op that mixes the whole time axis (a
global pooling, a FLATTEN/RESHAPE, a strided or time-padded convolution...) ends the prefix:
its input keeps its whole time extent T_k in the same way (n = T_k - 1) and the rest of the
model runs unchanged on that window. Why the prefix stopped is reported (``StreamPlan``).

Bit-exactness: every column is computed by the same kernel with the same constants from the
same input columns as in the full-window model, so once the window is full the outputs are
identical. Before that (the first T-1 frames) the window is defined to start as the input's
zero point (real 0): each variable's value at reset is what the full-window model computes
for those columns on an all-zero-point window (a column that only sees zero-point frames has
that value), so every frame's output equals the full-window model on the zero-padded window,
from the first frame on. ``tinyml_reset()`` restores it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph, Op
from tinyml.ir.graph import Variable
from tinyml.ir.ops import ConcatenationAttrs, ReshapeAttrs, SliceAttrs, VariableAttrs

#: Ops that read a window of input 0 along time and are streamed when they stride 1 and do
#: not pad along time.
_WINDOW_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_ADD", "AVERAGE_POOL_2D",
               "MAX_POOL_2D")


@dataclass
class StreamPlan:
    """What ``--stream`` did: the rewritten graph and the figures ``compile`` reports."""

    graph: Graph                     # consumes one frame (1, 1, ...) per invocation
    window: int                      # T: frames in the full window
    frame_shape: tuple[int, ...]
    streamed: list[str]              # layers computing one new column per frame
    #: The layer ending the streamed prefix and why (None when the prefix reaches the
    #: outputs); it and everything after it run on a kept window of its input.
    stop_layer: str | None = None
    stop_reason: str | None = None
    #: Variable name -> (tensor it keeps, columns kept).
    states: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def state_bytes(self) -> int:
        return sum(var.nbytes for var in self.graph.variables.values())

    def to_json(self) -> dict:
        return {"window": self.window, "frame_shape": list(self.frame_shape),
                "streamed_layers": list(self.streamed), "stop_layer": self.stop_layer,
                "stop_reason": self.stop_reason,
                "states": {name: {"tensor": tensor, "columns": n}
                           for name, (tensor, n) in self.states.items()}}

    def summary(self) -> str:
        head = f"{len(self.streamed)} layers per frame"
        if self.stop_layer is None:
            return head + " (the whole model)"
        return f"{head}; from '{self.stop_layer}' on, the window: {self.stop_reason}"


def _time_kernel(graph: Graph, op: Op, axis: int) -> tuple[int, int]:
    """(kernel extent, dilation) along ``axis`` (1: H, 2: W) of a window op."""
    if op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        return op.attrs.filter[axis - 1], 1
    # CONV_2D filters are OHWI, DEPTHWISE_CONV_2D filters 1HWC.
    return graph.tensors[op.inputs[1]].shape[axis], op.attrs.dilation[axis - 1]


def _reshaped_axis(graph: Graph, op: Op, axis: int) -> int | None:
    """Where a RESHAPE puts the time axis ``axis`` of its input (the same elements before
    and after it, as EXPAND_DIMS / SQUEEZE around a Keras Conv1D do), or None."""
    shape, out = graph.tensors[op.inputs[0]].shape, graph.tensors[op.outputs[0]].shape
    before = int(np.prod(shape[:axis], dtype=np.int64))
    for j, extent in enumerate(out):
        if extent == shape[axis] and int(np.prod(out[:j], dtype=np.int64)) == before:
            return j
    return None


def _why_not(graph: Graph, op: Op,
             prefix: dict[str, tuple[int, int]]) -> tuple[str | None, int | None]:
    """(None, time axis of the output) when ``op`` (reading a tensor of the streamed prefix)
    can compute one new column per frame, else (why not, None)."""
    out = graph.tensors[op.outputs[0]] if op.outputs else None
    if op.kind in ("READ_VARIABLE", "ASSIGN_VARIABLE") or out is None:
        return f"{op.kind} has state of its own", None
    axis, extent = next(prefix[n] for n in op.inputs if n in prefix)
    geometry = op.spec.geometry(op)
    if op.kind == "RESHAPE":
        if op.inputs[0] not in prefix:
            return "it reshapes by a computed shape", None
        j = _reshaped_axis(graph, op, axis)
        if j is None:
            return "RESHAPE merges the time axis with another", None
        return None, j
    if op.kind in _WINDOW_OPS:
        if op.inputs[0] not in prefix:
            return (f"it also reads '{op.inputs[0]}', which is not computed frame by "
                    f"frame"), None
        if len(out.shape) != 4 or axis not in (1, 2):
            return f"{op.kind} reads time on axis {axis} of a {len(out.shape)}-D tensor", None
        stride = op.attrs.stride[axis - 1]
        if stride != 1:
            return (f"it strides {stride} along time, so not every frame makes a new output "
                    f"column"), None
        if op.attrs.padding[2 * axis - 2] or op.attrs.padding[2 * axis - 1]:
            return ("it pads the time axis ('same' padding): its last output columns read "
                    "frames that do not exist yet"), None
        activations = [n for i, n in enumerate(op.inputs)
                       if n and i != 0 and not graph.tensors[n].is_constant]
    elif geometry == "elementwise" or (geometry == "pixel" and axis < len(out.shape) - 1):
        activations = [n for n in op.inputs if n and not graph.tensors[n].is_constant]
    else:
        return f"{op.kind} mixes the whole time axis", None
    for name in activations:
        if name not in prefix:
            return f"it also reads '{name}', which is not computed frame by frame", None
        if prefix[name] != (axis, extent) or \
                len(graph.tensors[name].shape) != len(out.shape):
            return f"it broadcasts '{name}' along time", None
    for name in op.inputs:
        t = graph.tensors[name] if name else None
        if t is None or not t.is_constant or op.kind in _WINDOW_OPS:
            continue
        shape = (1,) * (len(out.shape) - len(t.shape)) + tuple(t.shape)
        if len(shape) == len(out.shape) and shape[axis] != 1:
            return f"its constant operand '{name}' varies along time", None
    return None, axis


def _unique(taken, base: str) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def stream_window(graph: Graph) -> StreamPlan:
    """The one-frame-per-call form of the int8 window model ``graph`` (after the passes).
    Raises a one-line TinymlError naming the layer when nothing can be streamed."""
    from tinyml import reference

    if len(graph.inputs) != 1:
        raise TinymlError(f"--stream: the model has {len(graph.inputs)} inputs; a sliding-"
                          f"window model has one (the window)")
    if graph.variables:
        raise TinymlError("--stream: the model already keeps state in variables (a streaming "
                          "model): compile it without --stream")
    x = graph.tensors[graph.inputs[0]]
    if len(x.shape) < 3 or x.shape[0] != 1 or x.shape[1] < 2 or x.dtype != "int8":
        raise TinymlError(f"--stream: input '{x.name}' is {x.dtype}{list(x.shape)}; expected "
                          f"an int8 window [1, T frames, features...] with time on axis 1")
    # Tensor -> (time axis, full time extent); the input's time axis is 1.
    prefix: dict[str, tuple[int, int]] = {x.name: (1, x.shape[1])}
    need: dict[str, int] = {}                          # tensor -> past columns kept
    streamed: list[Op] = []
    stop: tuple[Op | None, str] | None = None
    for op in graph.ops:
        if not any(n in prefix for n in op.inputs):
            continue
        reason, axis = _why_not(graph, op, prefix)
        if reason is None:
            streamed.append(op)
            prefix.update((o, (axis, graph.tensors[o].shape[axis])) for o in op.outputs)
            if op.kind in _WINDOW_OPS:
                k, d = _time_kernel(graph, op, axis)
                need[op.inputs[0]] = max(need.get(op.inputs[0], 0), (k - 1) * d)
            continue
        stop = stop or (op, reason)
        for name in op.inputs:  # the consumer reads the whole time extent
            if name in prefix:
                need[name] = max(need.get(name, 0), prefix[name][1] - 1)
    for name in graph.outputs:
        if name in prefix:
            need[name] = max(need.get(name, 0), prefix[name][1] - 1)
            stop = stop or (None, f"the model's output '{name}' keeps the time axis")
    if not streamed or all(op.kind == "RESHAPE" for op in streamed):
        op, reason = stop
        where = f"layer '{op.name}' ({op.kind})" if op is not None else "the output"
        raise TinymlError(f"--stream: nothing to stream: {where}, the first to read the "
                          f"window, needs all of it: {reason}")

    # Each kept column's value at reset: the full model's on an all-zero-point window.
    zero = np.full(x.shape, int(x.quant.zero_point[0]) if x.quant else 0, np.int8)
    values = reference.run(graph, [zero], keep_all=True)

    g = copy.deepcopy(graph)
    streamed_names = {id(op) for op in streamed}
    ops: list[Op] = []
    windows: dict[str, str] = {}       # tensor -> its window tensor (need + 1 columns)
    states: dict[str, tuple[str, int]] = {}

    def along(shape, axis: int, extent: int) -> tuple[int, ...]:
        return tuple(extent if i == axis else d for i, d in enumerate(shape))

    def column(name: str) -> None:
        t = g.tensors[name]
        g.tensors[name] = dataclasses.replace(t, shape=along(t.shape, prefix[name][0], 1))

    def keep(name: str) -> None:
        """The state ops keeping ``need[name]`` past columns of ``name``."""
        n = need.get(name, 0)
        if n == 0:
            return
        t = g.tensors[name]
        if t.dtype != "int8":
            raise TinymlError(f"--stream: '{name}' is {t.dtype}: only int8 columns can be "
                              f"kept between frames")
        axis = prefix[name][0]
        var = _unique(g.variables, f"stream/{name.split(';')[0]}")
        initial = np.ascontiguousarray(np.take(values[name], range(n), axis=axis))
        g.variables[var] = Variable(var, along(t.shape, axis, n), "int8",
                                    initial.astype(np.int8), t.quant)
        attrs = VariableAttrs(var, along(t.shape, axis, n), "int8")
        old, window, new = (g.unique_name(f"{name} (stream {what})")
                            for what in ("state", "window", "next state"))
        for tensor, cols in ((old, n), (window, n + 1), (new, n)):
            g.add_tensor(dataclasses.replace(t, name=tensor, shape=along(t.shape, axis, cols),
                                             data=None))
        rank = len(t.shape)
        ops.extend([
            Op("READ_VARIABLE", f"{name} (stream read)", [], [old], attrs),
            Op("CONCATENATION", f"{name} (stream window)", [old, name], [window],
               ConcatenationAttrs(axis=axis)),
            Op("SLICE", f"{name} (stream shift)", [window], [new],
               SliceAttrs(along((0,) * rank, axis, 1), (-1,) * rank)),
            Op("ASSIGN_VARIABLE", f"{name} (stream assign)", [new], [], attrs)])
        windows[name] = window
        states[var] = (name, n)

    def window_of(name: str, cols: int) -> str:
        """A tensor holding the last ``cols`` columns of ``name``."""
        n, axis = need[name], prefix[name][0]
        if cols == n + 1:
            return windows[name]
        t = g.tensors[windows[name]]
        part = g.unique_name(f"{name} (stream last {cols})")
        g.add_tensor(dataclasses.replace(t, name=part, shape=along(t.shape, axis, cols)))
        rank = len(t.shape)
        ops.append(Op("SLICE", f"{name} (stream last {cols})", [windows[name]], [part],
                      SliceAttrs(along((0,) * rank, axis, n + 1 - cols), (-1,) * rank)))
        return part

    column(x.name)
    keep(x.name)
    # Walk the copy alongside the original (deepcopy keeps the order).
    for original, op in zip(graph.ops, g.ops):
        if id(original) in streamed_names:
            axis = prefix[op.inputs[0]][0] if op.inputs[0] in prefix else None
            if op.kind in _WINDOW_OPS:
                k, d = _time_kernel(g, op, axis)
                if k > 1:
                    op.inputs[0] = window_of(op.inputs[0], (k - 1) * d + 1)
            for name in op.outputs:
                column(name)
            if op.kind == "RESHAPE":  # to the column's shape
                op.inputs = op.inputs[:1]
                op.attrs = ReshapeAttrs(g.tensors[op.outputs[0]].shape)
            ops.append(op)
            for name in op.outputs:
                keep(name)
            continue
        op.inputs = [window_of(n, prefix[n][1]) if n in prefix else n for n in op.inputs]
        ops.append(op)
    g.ops = ops
    for i, name in enumerate(g.outputs):
        if name in prefix:  # an output keeping the time axis: the kept window
            g.outputs[i] = windows[name] if need.get(name) else name
    g.name = f"{graph.name} (stream)"
    g.finalize()
    stop_op, reason = stop if stop else (None, None)
    return StreamPlan(g, x.shape[1], (1, 1) + tuple(x.shape[2:]),
                      [op.name for op in streamed],
                      None if stop is None else (stop_op.name if stop_op else "output"),
                      reason, states)
