"""C code for a patch stage: a loop over the patches, the same kernels on patch-sized windows.

What model.c gets (see :mod:`tinyml.schedule.patches` for the schedule):

- per patch buffer, two small tables: the rows ``[start, start + size)`` of the full tensor
  it holds for each grid row ``py``, and the columns for each grid column ``px``;
- per stage layer, its parameter struct for the full tensors (the same constants as layer by
  layer); inside the loop a local copy gets the patch's extents and padding, computed from the
  tables with the formulas below, so the code says what it does;
- ``tinyml_patch_copy`` for window copies: a crop before a kernel that reads a dense image,
  and at the end of each patch the tile into the split tensor.

Why the kernels need no patch support: a sliding-window kernel computes output (oy, ox) from
input rows ``oy * stride - pad_top + ky * dilation`` (columns likewise) and treats taps outside
``[0, input_h)`` as padding (skipped, or the zero point in a depthwise plane). Given the
patch buffer as its input (``input_h`` = the buffer's rows, which start at row ``in_start`` of
the full tensor), the patch's outputs (``output_h`` rows starting at ``out_start``) and

    pad_top = pad_top(layer) + in_start - stride * out_start

every tap lands on the same pixel of the full tensor as layer by layer, and a tap is outside
the buffer exactly when it is outside the image (the buffer holds every in-image pixel the
patch reads; it is clipped to the image). So results are bit-identical, border patches
included. The padding may be negative: the window then starts inside the buffer (the stage's
input is read whole, in place, with no copy). Kernels that read a dense image get exactly
their window.
"""

from __future__ import annotations

from tinyml.codegen.c_syntax import c_comment, c_literal, c_type, identifier
from tinyml.codegen.lowering import ConstArray
from tinyml.ir.tensor import itemsize
from tinyml.schedule.line_stage import kept
from tinyml.schedule.patches import PatchSchedule, PatchStep

COPY_HELPER = """\
/* Copy `rows` rows of `row_bytes` bytes from src (rows src_stride bytes apart) to dst (rows
 * dst_stride bytes apart), first byte first. A crop may move a window to the start of its own
 * buffer: the destination never lies after the source (dst <= src, dst_stride <= src_stride),
 * so no byte is overwritten before it is read. */
static void tinyml_patch_copy(int8_t *dst, int32_t dst_stride, const int8_t *src,
                              int32_t src_stride, int32_t rows, int32_t row_bytes)
{
    int32_t r, i;
    for (r = 0; r < rows; ++r) {
        for (i = 0; i < row_bytes; ++i) {
            dst[r * dst_stride + i] = src[r * src_stride + i];
        }
    }
}
"""

SPAN_TYPE = """\
/* Rows (or columns) [start, start + size) of a full tensor that a patch buffer holds. */
typedef struct {
    int16_t start;
    int16_t size;
} tinyml_span;
"""


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)



def declare_params(emitter, declarations: list[str], call, name: str, comment: str) -> str:
    """Declares ``call``'s parameter struct as a static const named after ``name`` (its
    constant arrays through ``emitter``), appended to ``declarations``; returns its name.
    Why: a stage's loop (patches here, row stages in row_codegen) adapts a local copy of
    each layer's full-tensor parameters per patch or row."""
    var = identifier(name, emitter.used)
    fields = []
    for key, value in call.fields():
        if isinstance(value, ConstArray):
            fields.append((key, emitter.array(value, f"{call.op.name}: {key}")))
        else:
            fields.append((key, c_literal(value)))
    body = "".join(f"    .{k} = {v},\n" for k, v in fields)
    declarations.append(f"/* {c_comment(comment)} */\n"
                        f"static const {call.params_type} {var} = {{\n{body}}};\n")
    return var



def stage_entries(graph, stage: list[int], step: int, index: int, where: str,
                  declarations: list[str], code: list[str]) -> list[dict]:
    """The model.c template's layer entries of a stage (patches here, rows in row_codegen):
    one per layer for the comments and profiles, the first carrying the stage's whole code."""
    entries = []
    for j, layer in enumerate(stage):
        op = graph.ops[layer]
        entries.append(dict(comment=c_comment(f"{op.name} ({op.kind}), in the {where}"),
                            alias=False, in_patch=j > 0, step=step + j, index=index + j,
                            name=op.name, op=op.kind))
    entries[0].update(patch=True, declarations="\n".join(declarations), code="\n".join(code))
    return entries

def local_params(params_type: str) -> str:
    """The name of a stage loop's local copy of a ``params_type`` struct."""
    return params_type.removeprefix("tinyml_").removesuffix("_params")

class _Axis:
    """C expressions for one axis of a buffer in the current patch."""

    def __init__(self, start: str, size: str, full: bool):
        self.start, self.size, self.full = start, size, full


class PatchStageEmitter:
    """Renders the stage with the project emitter's constants and arena pointers."""

    def __init__(self, emitter, schedule: PatchSchedule):
        self.e = emitter
        self.s = schedule
        self.graph = emitter.graph
        self.memory = schedule.memory
        self.tables: dict[str, str] = {}      # buffer name -> C prefix of its tables
        self.declarations: list[str] = []
        self.writer = {step.op.outputs[0]: step for step in schedule.steps}

    # ---- buffers --------------------------------------------------------------------------

    def _full(self, name: str) -> bool:
        return name == self.s.input

    def _tensor(self, name: str):
        return self.graph.tensors[name] if self._full(name) else self.s.buffers[name]

    def _offset(self, name: str) -> int:
        if self._full(name):
            return self.e.plan.offsets[name]
        return self.memory.stage_offsets[name]

    def _table(self, name: str) -> str:
        if name not in self.tables:
            prefix = identifier(f"p{len(self.tables)}", self.e.used)
            self.tables[name] = prefix
            geometry = self.s.geometry
            t = self.s.buffers[name]
            spans = geometry.rows[name] + geometry.cols[name]
            if max(b for _, b in spans) >= 1 << 15:
                raise AssertionError(f"patch buffer '{name}' spans do not fit int16")
            lines = [f"/* {prefix}: {c_comment(self._describe(name))}, up to "
                     f"{_shape(t.shape[1:])} ({t.nbytes} B) at arena + {self._offset(name)} */"]
            for axis, spans in (("rows", geometry.rows[name]), ("cols", geometry.cols[name])):
                body = ", ".join(f"{{{a}, {b - a}}}" for a, b in spans)
                lines.append(f"static const tinyml_span {prefix}_{axis}[{len(spans)}] = "
                             f"{{{body}}};")
            lines += self._line_tables(name, prefix)
            self.declarations.append("\n".join(lines) + "\n")
        return self.tables[name]

    def _pointer_at(self, name: str, byte_offset: str) -> str:
        """The pointer to ``name``'s buffer, ``byte_offset`` (a C expression) bytes in."""
        t = self._tensor(name)
        at = (self.e.plan.offsets[name] if self._full(name) else self._offset(name))
        base = f"arena + {at} + {byte_offset}"
        if t.dtype in ("int8", "uint8"):
            return base
        return f"({c_type(t.dtype)} *)(void *)({base})"

    def _line_tables(self, name: str, prefix: str) -> list[str]:
        """A line-buffer stage's tables of buffer ``name``: ``_fresh[py]``, the rows the band
        computes (below the kept ones), and ``_kept[py]``, the rows the band's first step
        moves up to the top of the buffer ({rows skipped, rows kept})."""
        geometry = self.s.geometry
        if not self.s.lines or name not in geometry.fresh:
            return []
        bands = self.s.grid[0]
        fresh = ", ".join(f"{{{a}, {b - a}}}" for a, b in geometry.fresh[name])
        lines = [f"static const tinyml_span {prefix}_fresh[{bands}] = {{{fresh}}};"]
        if self._moves(name):
            body = ", ".join("{%d, %d}" % kept(geometry, name, band) for band in range(bands))
            lines.append(f"static const tinyml_span {prefix}_kept[{bands}] = {{{body}}};")
        return lines

    def _moves(self, name: str) -> bool:
        """Whether line buffer ``name`` ever keeps rows that are not at its top already."""
        if name not in self.s.retained:
            return False
        return any(skip > 0 and count > 0 for skip, count in
                   (kept(self.s.geometry, name, band) for band in range(self.s.grid[0])))

    def _row_bytes(self, name: str) -> int:
        t = self._tensor(name)
        return t.shape[2] * t.shape[3] * itemsize(t.dtype)

    def _view_table(self, step: PatchStep, j: int, position: int) -> str:
        """The rows of operand ``j`` the kernel reads in place, per band."""
        prefix = identifier(f"v{position}_{j}", self.e.used)
        body = ", ".join(f"{{{a}, {b - a}}}" for a, b in step.views[j])
        self.declarations.append(
            f"/* {prefix}: the rows of {self.tables.get(step.op.inputs[j], 'the input')} that "
            f"'{c_comment(step.label)}' reads, per band */\n"
            f"static const tinyml_span {prefix}[{len(step.views[j])}] = {{{body}}};\n")
        return prefix

    def _shifts(self) -> list[str]:
        """A line-buffer stage's first step of a band: every line buffer moves the rows the
        band keeps to its top (towards lower addresses, first byte first: safe in place)."""
        lines = []
        for name in sorted(self.s.retained, key=lambda n: self.memory.stage_offsets[n]):
            if not self._moves(name):
                continue  # never keeps rows below its top
            prefix = self._table(name)
            rb = self._row_bytes(name)
            at = self._offset(name)
            lines += [f"if ({prefix}_kept[py].start > 0 && {prefix}_kept[py].size > 0) {{",
                      f"    tinyml_patch_copy(arena + {at}, 0, arena + {at} + "
                      f"{prefix}_kept[py].start * {rb}, 0, 1, {prefix}_kept[py].size * {rb});",
                      "}"]
        if lines:
            lines.insert(0, "/* the rows the line buffers keep, to their top */")
        return lines

    def _describe(self, name: str) -> str:
        step = self.writer[name]
        if step.is_copy:
            source = step.op.inputs[0]
            of = "the input" if self._full(source) else self.tables.get(source, source)
            return f"the window of {of} that '{step.label}' reads"
        if name == self.s.tile:
            return f"one tile of the split tensor, output of '{step.label}' ({step.op.kind})"
        return f"output of '{step.label}' ({step.op.kind})"

    def _axes(self, name: str) -> tuple[_Axis, _Axis]:
        if self._full(name):
            _, h, w, _ = self.graph.tensors[name].shape
            return _Axis("0", str(h), True), _Axis("0", str(w), True)
        prefix = self._table(name)
        return (_Axis(f"{prefix}_rows[py].start", f"{prefix}_rows[py].size", False),
                _Axis(f"{prefix}_cols[px].start", f"{prefix}_cols[px].size", False))

    def _pointer(self, name: str) -> str:
        t = self.graph.tensors.get(name)
        if t is not None and (t.is_constant or self._full(name)):
            return self.e.pointer(name)
        t = self.s.buffers[name]
        base = f"arena + {self._offset(name)}" if self._offset(name) else "arena"
        if t.dtype in ("int8", "uint8"):
            return base
        return f"({c_type(t.dtype)} *)(void *)({base})"

    # ---- steps ----------------------------------------------------------------------------

    def _base(self, step: PatchStep, position: int) -> str:
        """The layer's parameter struct (full-tensor values; the loop adapts a copy)."""
        return declare_params(self.e, self.declarations, step.call,
                              f"patch_layer{position}", f"{step.op.name} ({step.op.kind})")

    def _kernel(self, step: PatchStep, position: int) -> list[str]:
        call = step.call
        op = step.op
        kind = call.geometry
        var = local_params(call.params_type)
        base = self._base(step, position)
        out_rows, out_cols = self._axes(op.outputs[0])
        in_rows, in_cols = self._axes(op.inputs[0])
        lines = [f"/* {c_comment(op.name)} ({op.kind}) */", f"{var} = {base};"]
        pointers: dict[str, str] = {}
        views = {j: self._view_table(step, j, position) for j in step.views}
        if self.s.lines:  # the band's fresh rows, below the rows the buffer keeps
            prefix = self._table(op.outputs[0])
            pointers[op.outputs[0]] = self._pointer_at(
                op.outputs[0], f"({prefix}_fresh[py].start - {prefix}_rows[py].start) * "
                               f"{self._row_bytes(op.outputs[0])}")
            out_rows = _Axis(f"{prefix}_fresh[py].start", f"{prefix}_fresh[py].size", False)
            for j, view in views.items():
                name = op.inputs[j]
                start = "0" if self._full(name) else f"{self._table(name)}_rows[py].start"
                pointers[name] = self._pointer_at(
                    name, f"({view}[py].start - {start}) * {self._row_bytes(name)}")
                if j == 0:
                    in_rows = _Axis(f"{view}[py].start", f"{view}[py].size", False)

        def field(name: str) -> str:  # the geometry may sit in a nested struct (.conv)
            return f"{var}.{call.designator(name)}"

        if kind == "elementwise":
            channels = self.s.buffers[op.outputs[0]].shape[3]
            lines.append(f"{field('size')} = {out_rows.size} * {out_cols.size} * {channels};")
        else:
            if not in_rows.full:
                lines += [f"{field('input_h')} = {in_rows.size};",
                          f"{field('input_w')} = {in_cols.size};"]
            lines += [f"{field('output_h')} = {out_rows.size};",
                      f"{field('output_w')} = {out_cols.size};"]
        if kind in ("window", "plane"):
            a = op.attrs
            for name, axis_in, axis_out, pad, stride in (
                    ("pad_top", in_rows, out_rows, a.padding[0], a.stride[0]),
                    ("pad_left", in_cols, out_cols, a.padding[2], a.stride[1])):
                lines.append(f"{field(name)} = {_pad_expression(pad, axis_in, axis_out, stride)};")
        if kind == "plane":
            a = op.attrs
            _, kh, kw, _ = self.graph.tensors[op.inputs[1]].shape
            for name, out_name, stride, k, d in (("plane_h", "output_h", a.stride[0], kh,
                                                   a.dilation[0]),
                                                  ("plane_w", "output_w", a.stride[1], kw,
                                                   a.dilation[1])):
                extent = (k - 1) * d + 1
                grow = field(out_name) if stride == 1 else f"({field(out_name)} - 1) * {stride}"
                tail = extent - 1 if stride == 1 else extent
                lines.append(f"{field(name)} = {grow} + {tail};" if tail else
                             f"{field(name)} = {grow};")
        args = [f"&{var}"]
        for arg in call.args:
            what, _, name = arg.partition(":")
            if what == "scratch":
                scratch = self.memory.stage_scratch.get(self._step_of(step))
                args.append("NULL" if scratch is None else
                            f"arena + {scratch[0]}" if scratch[0] else "arena")
            else:
                args.append(pointers.get(name) or self._pointer(name))
        lines.append(f"{call.function}({', '.join(args)});")
        if self.s.lines:  # a band may compute no row of this layer
            lines = [f"if ({out_rows.size} > 0) {{"] + [f"    {x}" for x in lines] + ["}"]
        return lines

    def _step_of(self, step: PatchStep) -> int:
        return next(i for i, s in enumerate(self.s.steps) if s is step)

    def _copy(self, src: str, dst: str, into_split: bool = False) -> list[str]:
        """Window copy: ``dst``'s window out of ``src`` (a crop), or the tile into the split
        tensor (``into_split``)."""
        if into_split:
            full = self.graph.tensors[self.s.split]
            _, _, width, channels = full.shape
            pixel = channels * itemsize(full.dtype)
            rows, cols = self._axes(self.s.tile)
            split_at = self.e.plan.offsets[self.s.split]
            row_bytes = f"{cols.size} * {pixel}"
            target = (f"arena + {split_at} + ({rows.start} * {width} + {cols.start}) * {pixel}")
            return [f"/* the tile into the split tensor (output of "
                    f"'{c_comment(self.s.split_layer)}', {_shape(full.shape[1:])}) */",
                    f"tinyml_patch_copy({target}, {width * pixel}, arena + "
                    f"{self._offset(self.s.tile)}, {row_bytes}, {rows.size}, {row_bytes});"]
        t = self._tensor(src)
        pixel = t.shape[3] * t.nbytes // max(t.size, 1)
        src_rows, src_cols = self._axes(src)
        dst_rows, dst_cols = self._axes(dst)
        row_bytes = f"{dst_cols.size} * {pixel}"
        shift_r = _difference(dst_rows.start, src_rows.start)
        shift_c = _difference(dst_cols.start, src_cols.start)
        src_at = self._offset(src)
        first = f"arena + {src_at} + ({shift_r} * {src_cols.size} + {shift_c}) * {pixel}"
        return [f"/* the window of {self.tables.get(src, 'the input')} that the next layer "
                f"reads, into {self._table(dst)} (rows and columns of {self._table(dst)}) */",
                f"tinyml_patch_copy(arena + {self._offset(dst)}, {row_bytes}, {first}, "
                f"{src_cols.size} * {pixel}, {dst_rows.size}, {row_bytes});"]

    # ---- the stage ------------------------------------------------------------------------

    def render(self, step: int, index: int) -> list[dict]:
        s = self.s
        graph = self.graph
        body: list[str] = []
        types: dict[str, None] = {}
        if s.lines:
            body += self._shifts()
        for position, st in enumerate(s.steps):
            if st.is_copy:
                body += self._copy(st.op.inputs[0], st.op.outputs[0])
            else:
                types[st.call.params_type] = None
                body += self._kernel(st, position)
                if self.e.profile:  # the harness adds up each layer's patches
                    body.append(f"tinyml_profile_layer({index + st.layer});")
        body += self._copy(s.tile, s.split, into_split=True)
        if self.e.profile:  # the tile's copy counts with the split layer
            body.append(f"tinyml_profile_layer({index + s.steps[-1].layer});")
        first, last = graph.ops[s.stage[0]], graph.ops[s.stage[-1]]
        split = graph.tensors[s.split]
        rows, cols = s.grid
        header = "\n".join([
            "/* ---- Patch stage " + "-" * 75,
            f" * {'The first' if s.stage[0] == 0 else 'From layer ' + str(s.stage[0]) + ','} "
            f"{len(s.stage)} layers ('{c_comment(first.name)}' to",
            f" * '{c_comment(last.name)}') run patch by patch: the output of the last one",
            f" * ({_shape(split.shape[1:])}) is computed as {rows}x{cols} tiles, each from "
            f"the window of the input it",
            " * needs (halo included), so their full-size activations never exist; patch "
            "buffers hold one",
            " * patch's windows. pN_rows[py] / pN_cols[px] give the rows / columns of the full "
            "tensor that",
            " * buffer pN holds for the patch in grid row py, column px. Recomputed halos cost",
            f" * {100 * s.mac_overhead:.1f} % extra MACs.",
            *_LINE_NOTE * s.lines,
            " */", ""])
        declarations = [header, SPAN_TYPE, COPY_HELPER] + self.declarations
        locals_ = [f"{t} {local_params(t)};" for t in types]
        indent = " " * 16
        code = [f"    /* Patch stage: layers {s.stage[0]}-{s.stage[-1]}, patch by patch ({rows}x{cols} "
                f"tiles of the output of '{c_comment(last.name)}') */",
                "    {", "        int32_t py, px;"]
        code += [f"        {line}" for line in locals_]
        code += [f"        for (py = 0; py < {rows}; ++py) {{",
                 f"            for (px = 0; px < {cols}; ++px) {{"]
        code += [indent + line for line in body]
        code += ["            }", "        }", "    }"]
        return stage_entries(graph, s.stage, step, index, "patch stage", declarations, code)


#: The header's paragraph on line-buffer stages (tinyml.schedule.line_stage).
_LINE_NOTE = [
    " * Line buffers: the patches are bands of whole rows, and no row is computed twice:",
    " * pN_fresh[py] are the rows band py computes into buffer pN, below the rows it keeps",
    " * from band py - 1, which the band's first step moves to the buffer's top (pN_kept[py]:",
    " * {rows skipped, rows kept}); the first bands may compute no row of the split tensor.",
]


def _difference(a: str, b: str) -> str:
    if b == "0":
        return a
    return f"({a} - {b})"


def _pad_expression(pad: int, axis_in: _Axis, axis_out: _Axis, stride: int) -> str:
    """pad + in_start - stride * out_start, as readable C."""
    terms = [str(pad)] if pad else []
    if not axis_in.full:
        terms.append(axis_in.start)
    out = axis_out.start if stride == 1 else f"{stride} * {axis_out.start}"
    return f"{' + '.join(terms)} - {out}" if terms else f"-{out}"


def emit_patch_stage(emitter, schedule: PatchSchedule, step: int, index: int) -> list[dict]:
    """The template's layer entries for the stage's layers (``index`` is the first one's):
    the first carries ``declarations`` (tables, parameter structs, helper) and ``code`` (the
    loop, with the profiling build's per-layer hooks), the others are marked ``in_patch``
    (their code is in the loop)."""
    return PatchStageEmitter(emitter, schedule).render(step, index)
