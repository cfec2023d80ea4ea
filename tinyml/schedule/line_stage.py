"""Line-buffer stages: a patch stage cut into bands of rows that computes every row once.

Why: a patch grid recomputes the halo of every tile, and the recomputation grows with the
depth of the stage (each 3x3 layer adds a row on each side), so a stage deep enough to cover
the full-resolution residual blocks of a ResNet, where two 32x32 maps of the block are alive
at once layer by layer, costs more than the MAC budget. Cutting the split tensor into bands of
rows spanning the whole width (a ``bands x 1`` grid) and keeping, in each intermediate
buffer, the rows that the next band's readers still need, every row of every tensor is
computed exactly once: each buffer is a short *line buffer* of the rows its readers' windows
span (a 3x3 convolution keeps 2 rows of its input), the stage's extra work is only one kernel
call per band and layer and the copy that moves the kept rows to the top of the buffer.

Geometry of band ``b`` for a tensor ``t`` of the stage (spans of full-tensor rows):

- ``rows[t][b]``, held: the hull of what ``t``'s readers need for the rows *they* compute in
  band ``b`` (for the split tensor: the band's tile). Held spans move down monotonically.
- ``fresh[t][b]``: the rows of ``rows[t][b]`` not held in band ``b - 1``; the producer
  computes only these, below the kept rows ``[rows[t][b].start, rows[t][b - 1].stop)``,
  which the band's first step copies to the top of the buffer (the copy moves bytes towards
  the buffer's start, first byte first, so it never overwrites a byte before reading it).

Readers of ``t`` computing fresh rows need input rows inside ``rows[t][b]``, the span the
buffer holds; columns are whole (the tensor's span its readers need), so a window of rows is a
contiguous run of a buffer and a kernel that reads a dense image reads it in place.

Every buffer of the stage but the tile keeps rows from one band to the next: it lives over
the whole stage and no stage step runs in place over it (see
:class:`tinyml.schedule.patch_plan.StageMemory`).
"""

from __future__ import annotations

from tinyml.ir import Graph, Op
from tinyml.schedule.receptive_field import (NotLocal, Span, StageGeometry, Window, hull,
                                             operand_windows, tiles)


#: Most priming bands tried (see :func:`line_geometry`).
MAX_PRIMING = 8


def line_geometry(graph: Graph, stage: list[Op], split: str, bands: int,
                  priming: int | None = None) -> StageGeometry:
    """Held and fresh rows of every tensor of ``stage`` (ops in execution order, the last one
    producing ``split``) when ``split`` is computed in ``bands`` bands of rows, after
    ``priming`` bands that compute no row of it (None: the count, up to
    :data:`MAX_PRIMING`, whose line buffers are smallest). The grid is (priming + bands, 1).

    Why priming: the first row of the split tensor needs the first rows of every earlier
    tensor at once (the receptive field of the stage), while later bands need only their
    fresh rows; demanding rows above the image (the bands of a split tensor extended upwards,
    clipped to the image) lets the earlier layers start the way later bands run, so the
    buffers hold what a band in the middle of the image holds. Raises :class:`NotLocal` when
    a band would read only padding."""
    _, height, _, _ = graph.tensors[split].shape
    if not 2 <= bands <= height:
        raise NotLocal(f"cannot cut {height} rows into {bands} bands")
    if priming is not None:
        return _line_geometry(graph, stage, split, bands, priming)
    best = None
    worse = 0
    for count in range(MAX_PRIMING + 1):
        geometry = _line_geometry(graph, stage, split, bands, count)
        size = _buffer_bytes(graph, geometry)
        if best is None or size < best[0]:
            best, worse = (size, geometry), 0
        else:
            worse += 1
            if worse == 2:  # more priming only delays the split tensor's first band further
                break
    return best[1]


def _buffer_bytes(graph: Graph, geometry: StageGeometry) -> int:
    total = 0
    for name in geometry.fresh:
        t = graph.tensors[name]
        rows, cols = geometry.max_extent(name)
        total += rows * cols * t.nbytes // max(t.shape[1] * t.shape[2], 1)
    return total


def _need_unclipped(window: Window, span: Span) -> Span:
    """Every input row the outputs ``span`` reach, padding rows (outside the image) too."""
    return (span[0] * window.stride - window.pad_before,
            (span[1] - 1) * window.stride - window.pad_before + window.extent)


def _clip(span: Span, size: int) -> Span:
    start, stop = max(span[0], 0), min(span[1], size)
    if start >= stop:
        start = stop = min(max(span[0], 0), size)
    return (start, stop)


def _line_geometry(graph: Graph, stage: list[Op], split: str, bands: int,
                   priming: int) -> StageGeometry:
    _, height, width, _ = graph.tensors[split].shape
    band_rows = tiles(height, bands)
    first = band_rows[0][1]
    virtual = [(-(priming - k) * first, -(priming - k - 1) * first) for k in range(priming)]
    count = priming + bands
    demand: dict[str, list[Span | None]] = {split: virtual + band_rows}
    rows: dict[str, list[Span]] = {}
    cols: dict[str, list[Span]] = {split: [(0, width)]}
    fresh: dict[str, list[Span]] = {}
    needs: dict[tuple[int, int], tuple[list[Span], list[Span]]] = {}
    produced = {name for op in stage for name in op.outputs}
    for i in range(len(stage) - 1, -1, -1):
        op = stage[i]
        out = op.outputs[0]
        if out not in demand:
            raise NotLocal(f"'{out}' of layer '{op.name}' is not read inside the stage")
        held_u, fresh_u = _held_and_fresh(demand[out], op.name)
        out_h = graph.tensors[out].shape[1]
        rows[out] = [_clip(span, out_h) for span in held_u]
        fresh[out] = [_clip(span, out_h) for span in fresh_u]
        for j, (wr, wc) in operand_windows(graph, op).items():
            name = op.inputs[j]
            _, h, w, _ = graph.tensors[name].shape
            need_c = wc.need(cols[out][0], w)
            if need_c[0] >= need_c[1]:
                raise NotLocal(f"layer '{op.name}' reads only padding")
            need_r: list[Span] = []
            for span in fresh[out]:
                if span[1] <= span[0]:      # the op computes nothing in this band
                    need_r.append((span[0], span[0]))
                    continue
                need = wr.need(span, h)
                if need[0] >= need[1]:
                    raise NotLocal(f"layer '{op.name}' reads only padding in some band")
                need_r.append(need)
            needs[(i, j)] = (need_r, [need_c])
            if name in produced:
                old = demand.get(name, [None] * count)
                demand[name] = [o if span[1] <= span[0] else
                                hull(o, _need_unclipped(wr, span))
                                for o, span in zip(old, fresh_u)]
                cols[name] = [hull(cols[name][0] if name in cols else None, need_c)]
            else:
                rows[name] = [(0, h)] * count
                cols[name] = [(0, w)]
    return StageGeometry((count, 1), split, rows, cols, needs, fresh)


def _held_and_fresh(held: list[Span | None], layer: str) -> tuple[list[Span], list[Span]]:
    """Makes the held spans move down only, and derives the fresh rows. A band that needs
    nothing, or less far down than the band before (a strided reader's last band), keeps the
    rows held so far; a band that needs rows above an earlier band's (a dilated window's taps
    skipping rows) makes the earlier bands keep those rows."""
    first = next((s for s in held if s is not None), None)
    if first is None:
        raise NotLocal(f"the output of layer '{layer}' is never read in the stage")
    filled: list[Span] = []
    for span in held:
        if span is None:
            span = filled[-1] if filled else (first[0], first[0])
        elif filled:
            span = (span[0], max(span[1], filled[-1][1]))
        filled.append(span)
    for b in range(len(filled) - 2, -1, -1):
        later = filled[b + 1][0]
        if later < filled[b][0]:
            filled[b] = (later, filled[b][1])
    fresh: list[Span] = []
    for b, span in enumerate(filled):
        if b == 0:
            fresh.append(span)
            continue
        before = filled[b - 1]
        start = max(span[0], before[1])
        fresh.append((start, span[1]) if start < span[1] else (span[1], span[1]))
    return filled, fresh


def kept(geometry: StageGeometry, name: str, band: int) -> Span:
    """(rows the band's first step moves up, rows it keeps) of buffer ``name``: the rows held
    in ``band - 1`` that ``band`` still holds start that many rows into the buffer."""
    if band == 0:
        return (0, 0)
    now, before = geometry.rows[name][band], geometry.rows[name][band - 1]
    count = max(0, before[1] - now[0])
    return (now[0] - before[0], count)
