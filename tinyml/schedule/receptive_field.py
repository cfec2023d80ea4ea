"""Receptive fields for patch-based inference: which window of every tensor one patch needs.

Why: MCUNetV2 runs the memory-heavy first stage of a CNN on small spatial tiles of its output
(the *split* tensor), one after the other, so the full-size activations of that stage never
exist. A tile of the split tensor depends only on a window of each earlier tensor: its
receptive field, which grows by ``(kernel - 1) * dilation`` and multiplies by the stride at
each layer going back. Windows of neighbouring tiles overlap (the *halo*): those pixels are
computed once per patch, the compute overhead patching pays for its memory saving.

Everything here is separable: a window is a row span times a column span, and for a grid of
``gh x gw`` tiles the row span of any tensor depends only on the tile's grid row (and the
column span only on its grid column). So the geometry of a stage is, per tensor, ``gh`` row
spans and ``gw`` column spans, and a patch is one (grid row, grid column) pair.

Spans are half-open ``(start, stop)`` in the coordinates of the full tensor and are clipped to
it: where a window reaches past the image border the layer-by-layer computation reads padding,
and the kernels, given the patch's own extents and padding parameters, read the same padding.

A tensor read by several ops of the stage must hold the union (hull) of what each needs; an
op that needs less reads a sub-window of it (see :class:`StageGeometry.needs`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyml.ir import OP_SPECS, Graph, Op

#: A half-open range [start, stop) of rows or columns of a full tensor.
Span = tuple[int, int]

@dataclass(frozen=True)
class Window:
    """How one axis of an output span maps to the input span it reads."""

    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    pad_before: int = 0

    @property
    def extent(self) -> int:
        """Input pixels one output pixel's window spans."""
        return (self.kernel - 1) * self.dilation + 1

    def need(self, out: Span, size: int) -> Span:
        """The smallest input span holding every tap of the outputs ``out`` that lies inside
        the input's ``size`` (with dilation, the first and last taps inside may sit further in
        than the window's edges). Empty (start >= stop) when every tap is padding."""
        first, last = size, -1
        for k in range(self.kernel):
            offset = k * self.dilation - self.pad_before  # tap k of output o: o * stride + offset
            lo = max(out[0], -(offset // self.stride))   # first o whose tap is >= 0
            hi = min(out[1] - 1, (size - 1 - offset) // self.stride)  # last o inside
            if lo <= hi:
                first = min(first, lo * self.stride + offset)
                last = max(last, hi * self.stride + offset)
        return (first, last + 1) if last >= first else (0, 0)


#: The window of an operand read at the output's own positions (element-wise ops).
SAME = Window()


class NotLocal(Exception):
    """The op cannot run patch by patch (the message says why)."""


def is_spatial(graph: Graph, name: str) -> bool:
    """A 4-D NHWC activation with one image: what a patch stage passes between its ops."""
    t = graph.tensors[name]
    return not t.is_constant and len(t.shape) == 4 and t.shape[0] == 1


def operand_windows(graph: Graph, op: Op) -> dict[int, tuple[Window, Window]]:
    """For each non-constant input of ``op`` (by index), the (rows, columns) windows that map
    an output span to the input span it reads. Raises :class:`NotLocal` for ops whose output
    pixels depend on more than a neighbourhood of the same position (or that are not 4-D)."""
    if len(op.outputs) != 1 or not is_spatial(graph, op.outputs[0]):
        raise NotLocal(f"{op.kind} output is not a single-image 4-D tensor")
    out = graph.tensors[op.outputs[0]]
    windows: dict[int, tuple[Window, Window]] = {}
    for j, name in enumerate(op.inputs):
        if not name or graph.tensors[name].is_constant:
            continue
        if not is_spatial(graph, name):
            raise NotLocal(f"{op.kind} input '{name}' is not a single-image 4-D tensor")
        # The spatial trait of the op (tinyml.ir.ops.SPATIAL); CONV_2D_ADD's skip input is read
        # at the output's own pixel.
        geometry = OP_SPECS[op.kind].geometry(op)
        if geometry == "window" and j == 0:
            windows[j] = _window_of(graph, op)
        elif geometry in ("elementwise", "pixel") or (op.kind == "CONV_2D_ADD" and j == 2):
            if graph.tensors[name].shape[1:3] != out.shape[1:3]:
                raise NotLocal(f"{op.kind} broadcasts '{name}' over the image")
            windows[j] = (SAME, SAME)
        else:
            raise NotLocal(f"{op.kind} is not a spatially local op")
    if not windows:
        raise NotLocal(f"{op.kind} reads no activation")
    return windows


def _window_of(graph: Graph, op: Op) -> tuple[Window, Window]:
    a = op.attrs
    if op.kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        kh, kw = a.filter
        dilation = (1, 1)
    else:
        w = graph.tensors[op.inputs[1]].shape  # OHWI, or [1, H, W, C*M] for depthwise
        kh, kw = w[1], w[2]
        dilation = a.dilation
    return (Window(kh, a.stride[0], dilation[0], a.padding[0]),
            Window(kw, a.stride[1], dilation[1], a.padding[2]))


def tiles(size: int, parts: int) -> list[Span]:
    """``size`` rows (or columns) cut into ``parts`` contiguous tiles whose sizes differ by at
    most one (the larger ones first)."""
    if not 1 <= parts <= size:
        raise ValueError(f"cannot cut {size} into {parts} non-empty tiles")
    base, extra = divmod(size, parts)
    spans, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        spans.append((start, stop))
        start = stop
    return spans


def hull(a: Span | None, b: Span) -> Span:
    return b if a is None else (min(a[0], b[0]), max(a[1], b[1]))


@dataclass
class StageGeometry:
    """The windows of a patch stage for one grid.

    ``rows[t][py]`` / ``cols[t][px]``: the span of tensor ``t`` that patch (py, px) holds (for
    the stage's input, the whole tensor: it is in memory anyway). ``needs[(i, j)]``: the
    (row spans, column spans) that op ``i`` of the stage reads from its input ``j`` (inside
    ``rows``/``cols`` of that input; equal to them unless the input has several readers).
    """

    grid: tuple[int, int]
    split: str
    rows: dict[str, list[Span]]
    cols: dict[str, list[Span]]
    needs: dict[tuple[int, int], tuple[list[Span], list[Span]]]
    #: Line-buffer stages (:mod:`tinyml.schedule.line_stage`): per tensor the rows each band
    #: computes (the rest of ``rows`` is kept from the band before); None: patches recompute
    #: their whole windows.
    fresh: dict[str, list[Span]] | None = None

    def max_extent(self, name: str) -> tuple[int, int]:
        """Largest (rows, columns) of tensor ``name`` over the patches."""
        return (max(b - a for a, b in self.rows[name]), max(b - a for a, b in self.cols[name]))

    def area(self, name: str, py: int, px: int) -> int:
        (r0, r1), (c0, c1) = self.rows[name][py], self.cols[name][px]
        return (r1 - r0) * (c1 - c0)

    def total_area(self, name: str) -> int:
        """Pixels of ``name`` computed over all patches (halos counted each time)."""
        rows = self.fresh.get(name, self.rows[name]) if self.fresh else self.rows[name]
        return (sum(b - a for a, b in rows) *
                sum(b - a for a, b in self.cols[name]))


def stage_geometry(graph: Graph, stage: list[Op], split: str,
                   grid: tuple[int, int]) -> StageGeometry:
    """Windows of every tensor of ``stage`` (ops in execution order, the last one producing
    ``split``) when ``split`` is cut into a ``grid`` = (rows, columns) of tiles.

    Walks the stage backwards: a tensor's window is the hull of what its readers in the stage
    need; tensors the stage does not produce (its input) are held whole.
    """
    _, height, width, _ = graph.tensors[split].shape
    rows: dict[str, list[Span]] = {split: tiles(height, grid[0])}
    cols: dict[str, list[Span]] = {split: tiles(width, grid[1])}
    needs: dict[tuple[int, int], tuple[list[Span], list[Span]]] = {}
    produced = {name for op in stage for name in op.outputs}
    for i in range(len(stage) - 1, -1, -1):
        op = stage[i]
        out = op.outputs[0]
        if out not in rows:
            raise NotLocal(f"'{out}' of layer '{op.name}' is not read inside the stage")
        for j, (wr, wc) in operand_windows(graph, op).items():
            name = op.inputs[j]
            _, h, w, _ = graph.tensors[name].shape
            need_r = [wr.need(span, h) for span in rows[out]]
            need_c = [wc.need(span, w) for span in cols[out]]
            if any(a >= b for a, b in need_r + need_c):
                raise NotLocal(f"layer '{op.name}' reads only padding in some patch")
            needs[(i, j)] = (need_r, need_c)
            if name in produced:
                old_r, old_c = rows.get(name), cols.get(name)
                rows[name] = [hull(old_r[k] if old_r else None, s) for k, s in enumerate(need_r)]
                cols[name] = [hull(old_c[k] if old_c else None, s) for k, s in enumerate(need_c)]
            else:
                rows[name] = [(0, h)] * grid[0]
                cols[name] = [(0, w)] * grid[1]
    return StageGeometry(grid, split, rows, cols, needs)
