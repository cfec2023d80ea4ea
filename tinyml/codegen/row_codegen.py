"""C code for a row stage (``--input-stream rows``, :mod:`tinyml.schedule.input_stream`).

What model.c gets:

- per stage layer, its parameter struct lowered for one output row (the same constants as
  layer by layer) and, in ``tinyml_invoke``, a local copy whose ``input_h`` (the rows its
  band holds so far) and ``pad_top`` place the band: output row ``y`` of a layer reads input
  rows ``y * stride - pad_top + ky * dilation``; with the band's first row at ``lo``,

      pad_top(call) = pad_top(layer) + lo - stride * y

  puts every tap on the same pixel as layer by layer, and a tap outside the band is outside
  the image (the band holds every row the output row reads), so results are bit-identical;
- ``tinyml_row_events``: the demand-driven order of the stage, one byte per step (0: ask the
  application for the next input row; j: the next output row of stage layer j - 1), replayed
  by a loop; ``made[j]`` counts the rows of tensor j made so far (0: the input);
- ``tinyml_band_row``: where the next row of a band goes: its first free row, or, when the
  band is full, its last row after the others move up by one (kernels read contiguous rows).

The last stage layer writes row y straight into its output tensor; rows of the input no
layer reads are skipped at the end with a NULL destination, so the callback sees every row
once, in order.
"""

from __future__ import annotations

from tinyml.codegen.c_syntax import c_comment, c_type
from tinyml.codegen.patch_codegen import declare_params, local_params, stage_entries
from tinyml.ir.tensor import itemsize

BAND_HELPER = """\
/* The row where the next row of a band goes: row `made` while the band has fewer than `cap`
 * rows, else its last row, after rows 1..cap-1 move up one (the oldest one is no longer
 * read). */
static int8_t *tinyml_band_row(int8_t *band, int32_t made, int32_t cap, int32_t row_bytes)
{
    if (made < cap) {
        return band + made * row_bytes;
    }
    memmove(band, band + row_bytes, (size_t)((cap - 1) * row_bytes));
    return band + (cap - 1) * row_bytes;
}
"""


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


class RowStageEmitter:
    def __init__(self, emitter, schedule):
        self.e = emitter
        self.s = schedule
        self.graph = emitter.graph
        self.declarations: list[str] = []

    def _band_offset(self, j: int) -> int:
        band = self.s.bands[j]
        if j == 0:
            return self.e.plan.offsets[band.name]
        return self.s.memory.stage_offsets[band.name]

    def _arena(self, offset: int) -> str:
        return f"arena + {offset}" if offset else "arena"

    def _row_bytes(self, j: int) -> int:
        band = self.s.bands[j]
        return band.shape[2] * band.shape[3] * itemsize(band.dtype)

    def _cast(self, expression: str, dtype: str) -> str:
        if dtype in ("int8",):
            return expression
        return f"({c_type(dtype)} *)(void *)({expression})"

    def _base(self, j: int) -> str:
        op = self.s.steps[j].op
        return declare_params(self.e, self.declarations, self.s.calls[j], f"row_layer{j}",
                              f"{op.name} ({op.kind}), one output row")

    def _layer(self, j: int, index: int) -> list[str]:
        """Case j + 1 of the loop: the next output row of stage layer j. A window operand's
        band is the kernel's input (its rows placed by input_h and pad_top); any other
        operand is the band's row y."""
        s = self.s
        call = s.calls[j]
        op = s.steps[j].op
        var = local_params(call.params_type)
        base = self._base(j)
        last = j == len(s.stage) - 1

        def field(name: str) -> str:
            return f"{var}.{call.designator(name)}"

        lines = [f"case {j + 1}: {{ /* {c_comment(op.name)} ({op.kind}) */",
                 f"    const int32_t y = made[{j + 1}];"]
        pointers = {}
        for n, operand in enumerate(s.operands[j]):
            t = operand.source
            cap = s.bands[t].shape[1]
            band = self._arena(self._band_offset(t))
            lines.append(f"    const int32_t lo{n} = made[{t}] > {cap} ? made[{t}] - {cap} : 0;"
                         f" /* first row in the band */")
            if operand.dense:  # the one row it reads: y * stride - pad
                w = operand.window
                row = "y" if w.stride == 1 else f"{w.stride} * y"
                row = f"{row} - {w.pad_before}" if w.pad_before else row
                band = f"{band} + ({row} - lo{n}) * {self._row_bytes(t)}"
            pointers[operand.index] = self._cast(band, s.bands[t].dtype)
        lines.append(f"    {var} = {base};")
        for n, operand in enumerate(s.operands[j]):
            window = operand.window
            if operand.dense:
                continue
            t = operand.source
            lines.append(f"    {field('input_h')} = made[{t}] - lo{n};")
            pad = f"{window.pad_before} + lo{n}" if window.pad_before else f"lo{n}"
            out = "y" if window.stride == 1 else f"{window.stride} * y"
            lines.append(f"    {field('pad_top')} = {pad} - {out};")
        out_t = self.graph.tensors[op.outputs[0]]
        if last:
            split_at = self.e.plan.offsets[s.split]
            row = out_t.shape[2] * out_t.shape[3] * itemsize(out_t.dtype)
            dst = f"arena + {split_at} + y * {row}" if split_at else f"arena + y * {row}"
        else:
            dst = (f"tinyml_band_row({self._arena(self._band_offset(j + 1))}, y, "
                   f"{s.bands[j + 1].shape[1]}, {self._row_bytes(j + 1)})")
        lines.append(f"    int8_t *dst = {dst};")
        private = {f"{s.bands[o.source].name}@row{j}.{o.index}": o.index
                   for o in s.operands[j]}
        args = [f"&{var}"]
        for arg in call.args:
            what, _, name = arg.partition(":")
            if what == "scratch":
                scratch = s.memory.stage_scratch.get(j)
                args.append("NULL" if scratch is None else self._arena(scratch[0]))
            elif what == "out":
                args.append(self._cast("dst", out_t.dtype))
            elif name in private:
                args.append(pointers[private[name]])
            else:
                args.append(self.e.pointer(name))
        lines.append(f"    {call.function}({', '.join(args)});")
        lines.append(f"    made[{j + 1}] = y + 1;")
        if self.e.profile:
            lines.append(f"    tinyml_profile_layer({index + j});")
        lines += ["    break;", "}"]
        return lines

    def render(self, step: int, index: int) -> list[dict]:
        s = self.s
        graph = self.graph
        k = len(s.stage)
        source = graph.tensors[s.input]
        band0 = s.bands[0]
        body = ["case 0: /* the next input row, from the application */",
                f"    tinyml_input_rows(made[0], 1, (tinyml_input_t *)(void *)tinyml_band_row("
                f"{self._arena(self._band_offset(0))}, made[0], {band0.shape[1]}, "
                f"{self._row_bytes(0)}));",
                "    made[0] += 1;",
                "    break;"]
        types: dict[str, None] = {}
        for j in range(k):
            types[s.calls[j].params_type] = None
            body += self._layer(j, index)
        events = ", ".join(str(e) for e in s.events)
        first, last = graph.ops[s.stage[0]], graph.ops[s.stage[-1]]
        split = graph.tensors[s.split]
        bands = [f" *   {'the input' if t == 0 else f'layer {t - 1} output'}: "
                 f"{b.shape[1]} row(s) of {_shape(b.shape[2:])} ({b.nbytes} B) at arena + "
                 f"{self._band_offset(t)}"
                 for t, b in enumerate(s.bands)]
        opening = [f" * The input ({_shape(source.shape[1:])}) is never whole in RAM: "
                   f"tinyml_input_rows() delivers it row by row",
                   f" * as layers 0-{k - 1} ('{c_comment(first.name)}' to",
                   f" * '{c_comment(last.name)}') need it. Each of these layers computes one "
                   "output row at a time"]
        header = "\n".join([
            "/* ---- Row stage " + "-" * 77,
            *opening,
            " * from bands of its inputs' newest rows (as many as its kernel spans, more for a"
            " tensor",
            " * that a lagging reader, e.g. a residual ADD, still needs):",
            *bands,
            f" * The last one writes its output ({_shape(split.shape[1:])}) row by row; the "
            "layers after it run",
            " * layer by layer. tinyml_row_events is the order: j makes the next output row of"
            " stage layer",
            " * j - 1, 0 asks for the next input row.",
            " */", ""])
        event_type = "uint8_t" if k < 256 else "uint16_t"
        table = (f"static const {event_type} tinyml_row_events[{len(s.events)}] = {{\n"
                 f"{_wrap(events)}\n}};\n")
        declarations = [header, BAND_HELPER, table] + self.declarations
        locals_ = [f"{t} {local_params(t)};" for t in types]
        rows = source.shape[1]
        code = [f"    /* Row stage: layers 0-{k - 1} one output row at a time, the input "
                "streamed through tinyml_input_rows() */",
                "    {",
                f"        int32_t made[{k + 1}] = {{0}}; /* rows made: [0] input rows asked "
                f"for, [j] of layer j - 1 */",
                "        int32_t e;"]
        code += [f"        {line}" for line in locals_]
        code += [f"        for (e = 0; e < {len(s.events)}; ++e) {{",
                 "            switch (tinyml_row_events[e]) {"]
        code += ["            " + line for line in body]
        code += ["            default:", "                break;", "            }", "        }"]
        code += [f"        if (made[0] < {rows}) {{ /* rows no layer reads: skipped */",
                 f"            tinyml_input_rows(made[0], {rows} - made[0], NULL);",
                 "        }"]
        code += ["    }"]
        return stage_entries(graph, s.stage, step, index, "row stage", declarations, code)


def _wrap(values: str, width: int = 96) -> str:
    lines, line = [], "    "
    for item in values.split(", "):
        if len(line) + len(item) + 2 > width:
            lines.append(line.rstrip())
            line = "    "
        line += item + ", "
    lines.append(line.rstrip().rstrip(","))
    return "\n".join(lines)


def emit_row_stage(emitter, schedule, step: int, index: int) -> list[dict]:
    """The template's layer entries for the row stage's layers (as
    :func:`tinyml.codegen.patch_codegen.emit_patch_stage` does for a patch stage)."""
    return RowStageEmitter(emitter, schedule).render(step, index)
