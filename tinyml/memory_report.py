"""``tinyml report``: a model's memory profile on a target, before and after patch scheduling,
and its flash per layer.

Why: tinyml decides on its own whether to run the first layers patch by patch
(:mod:`tinyml.schedule.patches`); the user should see why. The report is the picture MCUNetV2
draws, for the user's own model: the bytes alive during each layer layer by layer and with the
patch schedule, the peak layer of each, the extra MACs that recomputed halos cost, and a
per-layer table, and the layer-by-layer arena itself: every tensor as a rectangle of its
bytes over its lifetime, with the overlapped hand-overs (a layer's output written inside its
dying input, :mod:`tinyml.schedule.overlap`) hatched over the bytes they share. It is one
self-contained HTML file (the plot is a PNG embedded in base64),
and its figures are the ones ``tinyml compile --json`` prints for the same options: both come
from :func:`tinyml.compiler.plan`.

matplotlib draws the plot; it is imported only here, so other commands do not need it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

from tinyml.codegen.lowering import lower
from tinyml.compiler import Compilation, plan
from tinyml.errors import TinymlError
from tinyml.schedule.patches import DEFAULT_OVERHEAD, PatchOption, why_not_patched


@dataclass
class LayerRow:
    index: int                 # position in the execution order
    name: str
    op: str
    output: str                # output shape, e.g. "48x48x8"
    macs: int                  # layer by layer
    patched_macs: int          # with the patch schedule (halos recomputed)
    bytes_layerwise: int       # bytes alive while the layer runs, layer by layer
    bytes_patched: int         # the same with the patch schedule
    in_stage: bool
    overlap: int | None = None  # offset(output) - offset(input) when overlapped


def layer_rows(result: Compilation) -> list[LayerRow]:
    """Per layer, in execution order, what the two schedules keep alive and compute."""
    graph = result.graph
    layerwise = result.layerwise_plan or result.plan
    before = {index: layerwise.live_bytes[step] for step, index in enumerate(layerwise.order)}
    after = dict(before)
    stage: set[int] = set()
    patched_macs: dict[int, int] = {}
    schedule = result.patch
    if schedule is not None:
        live = schedule.plan.live_bytes
        stage = set(schedule.stage)
        after = {}
        owner = None
        for step in range(len(schedule.steps) - 1, -1, -1):  # a copy belongs to its reader
            s = schedule.steps[step]
            owner = s.layer if not s.is_copy else owner
            after[owner] = max(after.get(owner, 0), live[step])
        for j, index in enumerate(schedule.plan.order[len(schedule.stage):]):
            after[index] = live[len(schedule.steps) + j]
        patched_macs = schedule.layer_macs
    deltas = {i: delta for i, _, _, delta in result.plan.overlaps}
    rows = []
    for position, index in enumerate(layerwise.order):
        op = graph.ops[index]
        macs = int(op.spec.macs(op, graph.op_inputs(op), graph.op_outputs(op)))
        # An op without outputs (ASSIGN_VARIABLE) is described by the value it consumes.
        shape = graph.tensors[(op.outputs or op.inputs)[0]].shape
        rows.append(LayerRow(position, op.name, op.kind,
                             "x".join(str(d) for d in shape[1:] or shape),
                             macs, patched_macs.get(index, macs), before.get(index, 0),
                             after.get(index, 0), index in stage, deltas.get(index)))
    return rows


@dataclass
class Block:
    """One buffer of the arena layout plot: its bytes over the steps it is alive."""

    name: str
    first: int                 # first step alive (in the plan's order)
    last: int                  # last step alive
    offset: int
    size: int
    kind: str                  # "tensor", "scratch" or "overlap" (an overlapped output)
    inside: str | None = None  # an overlapped output's input


def arena_blocks(graph, memory) -> list[Block]:
    """The layer-by-layer plan ``memory`` as rectangles: each tensor (aliases folded into the
    tensor owning their bytes) from the step that writes it to the last that reads it (graph
    inputs from the first step, outputs to the last), each op's scratch at its step."""
    step_of = {index: step for step, index in enumerate(memory.order)}
    last_step = len(memory.order) - 1
    first: dict[str, int] = {}
    last: dict[str, int] = {}

    def root(name: str) -> str:
        return memory.aliases.get(name, name)

    for name in graph.inputs:
        if name in memory.offsets:
            first[root(name)] = 0
    for index, step in step_of.items():
        op = graph.ops[index]
        for name in op.outputs:
            if name in memory.offsets:
                first[root(name)] = min(first.get(root(name), step), step)
                last[root(name)] = max(last.get(root(name), step), step)
        for name in op.inputs:
            if name in memory.offsets:
                last[root(name)] = max(last.get(root(name), step), step)
    for name in graph.outputs:
        if name in memory.offsets:
            last[root(name)] = last_step
    overlapped = {root(t_out): root(t_in) for _, t_in, t_out, _ in memory.overlaps}
    blocks = [Block(name, first.get(name, 0), last.get(name, first.get(name, 0)),
                    memory.offsets[name], memory.sizes[name],
                    "overlap" if name in overlapped else "tensor", overlapped.get(name))
              for name in sorted(first, key=lambda n: (first[n], memory.offsets[n]))]
    for index, offset in memory.scratch_offset.items():
        if index in step_of and memory.scratch_size.get(index):
            step = step_of[index]
            blocks.append(Block(f"scratch of {graph.ops[index].name}", step, step, offset,
                                memory.scratch_size[index], "scratch"))
    return blocks


def figures(result: Compilation) -> dict:
    """The summary figures: the same keys and values as ``compile --json``."""
    report = result.report()
    keys = ("target", "peak_sram_bytes", "peak_sram_bytes_layerwise", "arena_bytes",
            "scratch_bytes", "state_bytes", "macs", "peak_layer", "patch", "overlap",
            "layers_flash", "input_stream")
    return {k: report[k] for k in keys}


def _plot(result: Compilation, rows: list[LayerRow]) -> bytes:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TinymlError("tinyml report needs matplotlib (pip install matplotlib)") from None
    xs = [r.index for r in rows]
    fig = Figure(figsize=(11, 10), dpi=100)
    top, bottom, layout = fig.subplots(3, 1, gridspec_kw={"height_ratios": [3, 1.4, 3.2]})
    bottom.sharex(top)
    layerwise = (result.layerwise_plan or result.plan).arena_bytes / 1024
    top.step(xs, [r.bytes_layerwise / 1024 for r in rows], where="mid", color="#555555",
             linestyle="--", zorder=3, label=f"layer by layer (arena {layerwise:,.1f} KB)")
    stage = [r.index for r in rows if r.in_stage]
    if result.patch is not None:
        patched = result.plan.arena_bytes / 1024
        top.step(xs, [r.bytes_patched / 1024 for r in rows], where="mid", color="#1f6fb4",
                 linewidth=2, label=f"patch schedule (arena {patched:,.1f} KB)")
        top.axhline(patched, color="#1f6fb4", linestyle=":", linewidth=1)
        top.axvspan(min(stage) - 0.5, max(stage) + 0.5, color="#1f6fb4", alpha=0.08,
                    label=f"patch stage ({result.patch.describe()})")
    top.axhline(layerwise, color="#888888", linestyle=":", linewidth=1)
    for attr, color in (("bytes_layerwise", "#888888"), ("bytes_patched", "#1f6fb4")):
        if attr == "bytes_patched" and result.patch is None:
            continue
        peak = max(rows, key=lambda r: getattr(r, attr))
        top.annotate(f"peak: {peak.name[-40:]}", (peak.index, getattr(peak, attr) / 1024),
                     textcoords="offset points", xytext=(8, 6), fontsize=8, color=color)
    sram = result.target.sram_bytes
    if sram:
        top.axhline(sram / 1024, color="#c0392b", linestyle="--", linewidth=1,
                    label=f"{result.target.name} SRAM ({sram / 1024:,.0f} KB)")
    top.set_ylabel("bytes alive (KB)")
    top.set_title("Memory per layer: activations, input, output and scratch alive while it runs")
    top.legend(fontsize=8, loc="upper right")
    top.grid(alpha=0.3)
    bottom.bar(xs, [r.macs / 1e6 for r in rows], color="#888888", label="layer by layer")
    extra = [(r.patched_macs - r.macs) / 1e6 for r in rows]
    if result.patch is not None:
        bottom.bar(xs, extra, bottom=[r.macs / 1e6 for r in rows], color="#e67e22",
                   label=f"recomputed halos (+{100 * result.patch.mac_overhead:.1f} % MACs)")
    bottom.set_ylabel("MMACs")
    bottom.set_xlabel("layer (execution order)")
    bottom.legend(fontsize=8, loc="upper right")
    bottom.grid(alpha=0.3)
    _draw_layout(layout, result)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_layout(ax, result: Compilation) -> None:
    """The layer-by-layer arena: one rectangle per buffer (bytes x steps alive); overlapped
    outputs hatched and outlined over the bytes of the input they are written into."""
    from matplotlib.patches import Patch, Rectangle

    memory = result.layerwise_plan or result.plan
    blocks = arena_blocks(result.graph, memory)
    style = {"tensor": dict(facecolor="#9ecae1", edgecolor="#3c6e91", linewidth=0.6),
             "scratch": dict(facecolor="#d9d9d9", edgecolor="#888888", linewidth=0.6),
             # translucent: the input's bytes it is written into show through
             "overlap": dict(facecolor=(0.99, 0.6, 0.25, 0.3), edgecolor="#d35400",
                             linewidth=1.6, hatch="///")}
    for b in blocks:
        ax.add_patch(Rectangle((b.first - 0.4, b.offset / 1024), b.last - b.first + 0.8,
                               b.size / 1024, zorder=3 if b.kind == "overlap" else 2,
                               **style[b.kind]))
    steps = len(memory.order)
    ax.set_xlim(-0.8, max(steps - 0.2, 0.8))
    ax.set_ylim(0, max(memory.arena_bytes, 1) / 1024 * 1.05)
    ax.axhline(memory.arena_bytes / 1024, color="#3c6e91", linestyle=":", linewidth=1)
    without = memory.arena_bytes_without_overlap
    handles = [Patch(label="tensor (bytes x steps alive)", **style["tensor"]),
               Patch(label="kernel scratch", **style["scratch"])]
    if memory.overlaps:
        handles.append(Patch(label=f"overlap: output written inside its dying input "
                                   f"({len(memory.overlaps)} layers, arena "
                                   f"{memory.arena_bytes:,} B instead of {without:,} B)",
                             **style["overlap"]))
        ax.axhline(without / 1024, color="#d35400", linestyle="--", linewidth=1)
        ax.set_ylim(0, max(without, memory.arena_bytes) / 1024 * 1.05)
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.set_ylabel("arena offset (KB)")
    ax.set_xlabel("step (execution order, layer by layer)")
    ax.set_title("Arena layout, layer by layer" + (
        f" (dashed: the arena without overlaps, {without:,} B)" if memory.overlaps else ""))
    ax.grid(alpha=0.3)


def _cell(key: str, value, text: str | None = None) -> str:
    raw = json.dumps(value)
    return (f'<td data-key="{html.escape(key)}" data-value="{html.escape(raw)}">'
            f'{html.escape(text if text is not None else str(value))}</td>')


def render(result: Compilation, why: str = "--patch off") -> str:
    """The report as one HTML document (``why``: the reason there is no patch schedule)."""
    rows = layer_rows(result)
    data = figures(result)
    png = base64.b64encode(_plot(result, rows)).decode()
    patch = result.patch
    summary = [
        ("Peak SRAM", "peak_sram_bytes", data["peak_sram_bytes"],
         f"{data['peak_sram_bytes']:,} B"),
        ("Peak SRAM, layer by layer", "peak_sram_bytes_layerwise",
         data["peak_sram_bytes_layerwise"], f"{data['peak_sram_bytes_layerwise']:,} B"),
        ("Peak layer", "peak_layer", data["peak_layer"], None),
        ("MACs per inference (model)", "macs", data["macs"], f"{data['macs']:,}"),
    ]
    overlap = data["overlap"]
    summary.append(("Overlapped layers (output inside the dying input)", "overlap.layers",
                    [o["layer"] for o in overlap["layers"]],
                    f"{len(overlap['layers'])}, saving {overlap['saving_bytes']:,} B "
                    f"(arena {overlap['arena_bytes_without_overlap']:,} B without)"))
    summary.append(("Overlaps' predicted instructions", "overlap.predicted_instructions",
                    overlap["predicted_instructions"],
                    f"{overlap['predicted_instructions']:+,} per inference"))
    if overlap["declined"]:
        declined = overlap["declined"]
        summary.append(("Overlaps turned down (--optimize)", "overlap.declined", declined,
                        f"would save {declined['saving_bytes']:,} B for "
                        f"{declined['predicted_instructions']:+,} predicted instructions"))
    if data["state_bytes"]:  # a streaming model's variables, outside the arena
        summary.append(("Streaming state (outside the arena)", "state_bytes",
                        data["state_bytes"], f"{data['state_bytes']:,} B"))
    stream = data["input_stream"]
    if stream["mode"] == "rows":  # --input-stream rows (tinyml.schedule.input_stream)
        summary.append(("Input (streamed row by row)", "input_stream.band_bytes",
                        stream["band_bytes"],
                        f"{stream['band_bytes']:,} B: a band of {stream['band_rows']} of "
                        f"{stream['input_rows']} rows instead of the {stream['input_bytes']:,} "
                        f"B image; {stream['stage_layers']} layer(s) run one output row at a "
                        f"time"))
    if patch is not None:
        saving = 1 - data["peak_sram_bytes"] / max(data["peak_sram_bytes_layerwise"], 1)
        summary += [
            ("Split layer", "patch.split_layer", patch.split_layer, None),
            ("Patch grid", "patch.grid", list(patch.grid), f"{patch.grid[0]} x {patch.grid[1]}"),
            ("MAC overhead", "patch.mac_overhead", patch.mac_overhead,
             f"{100 * patch.mac_overhead:.2f} %"),
            ("MACs executed (halos included)", "patch.macs", patch.macs, f"{patch.macs:,}"),
            ("Saving", "saving", saving, f"{100 * saving:.1f} % less SRAM"),
        ]
        verdict = (f"{len(patch.stage)} layers run patch by patch "
                   f"({patch.describe()}, up to the output of "
                   f"'{patch.split_layer}'), which lowers peak SRAM from "
                   f"{data['peak_sram_bytes_layerwise']:,} B to {data['peak_sram_bytes']:,} B "
                   f"for {100 * patch.mac_overhead:.1f} % extra MACs.")
        if getattr(patch, "stream_rows", False):  # --input-stream rows
            verdict = (f"The input is streamed row by row; the first {len(patch.stage)} "
                       f"layers (up to '{patch.split_layer}') run one output row at a time "
                       f"from bands of rows, which lowers peak SRAM from "
                       f"{data['peak_sram_bytes_layerwise']:,} B (whole input, layer by "
                       f"layer) to {data['peak_sram_bytes']:,} B with no extra MACs.")
    else:
        summary.append(("Patch schedule", "patch", None, "none"))
        verdict = f"No patch schedule: {why}. The layers run one after the other."
    target = result.target
    if target.sram_bytes:
        summary.append(("Target SRAM", "sram_bytes", target.sram_bytes,
                        f"{target.sram_bytes:,} B ({target.part or target.name})"))
    summary_html = "\n".join(f"<tr><th>{html.escape(label)}</th>{_cell(key, value, text)}</tr>"
                             for label, key, value, text in summary)
    table = "\n".join(
        f'<tr class="{"stage" if r.in_stage else ""}"><td>{r.index}</td>'
        f"<td>{html.escape(r.name)}</td><td>{r.op}</td><td>{r.output}</td>"
        f"<td>{r.macs:,}</td><td>{r.patched_macs:,}</td><td>{r.bytes_layerwise:,}</td>"
        f"<td>{r.bytes_patched:,}</td><td>{'yes' if r.in_stage else ''}</td>"
        f"<td>{'' if r.overlap is None else f'{r.overlap:+,} B'}</td></tr>"
        for r in rows)
    flash_layers = result.layers_flash()
    flash_bytes = sum(layer.bytes for layer in flash_layers)
    flash_total = f"Total: {flash_bytes:,} B"
    if target.flash_bytes:
        flash_total += f" of the target's {target.flash_bytes:,} B flash (besides code)."
    flash_table = "\n".join(
        f"<tr><td>{i}</td><td>{html.escape(layer.name)}</td><td>{layer.op}</td>"
        f"<td>{html.escape(layer.format)}</td><td>{layer.weights_bytes:,}</td>"
        f"<td>{layer.bytes:,}</td><td>{100 * layer.bytes / max(flash_bytes, 1):.1f} %</td></tr>"
        for i, layer in enumerate(flash_layers))
    title = f"tinyml memory report: {result.model.name} on {target.name}"
    script = json.dumps(data).replace("</", "<\\/")  # raw text inside <script>
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
td:nth-child(n+5) {{ text-align: right; }}
#summary td {{ text-align: left; }}
tr.stage {{ background: #eef5fb; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(verdict)}</p>
<table id="summary">
{summary_html}
</table>
<img alt="memory per layer, layer by layer and with the patch schedule"
     src="data:image/png;base64,{png}">
<h2>Layers</h2>
<p>Bytes alive while a layer runs: its inputs and outputs, every tensor still to be read, the
input image during the patch stage, and kernel scratch. Peak SRAM (the arena) is at least the
largest of them. Rows of the patch stage are shaded. An overlapped layer writes its output
inside its dying input's bytes, starting the given distance from the input's start (its
kernel reads every input byte before an output byte lands on it), so both count only once.</p>
<table id="layers">
<tr><th>#</th><th>layer</th><th>op</th><th>output</th><th>MACs</th><th>MACs patched</th>
<th>bytes, layer by layer</th><th>bytes, patched</th><th>patch stage</th>
<th>overlap (output start - input start)</th></tr>
{table}
</table>
<h2>Flash per layer</h2>
<p>Constants each layer puts in weights.c (weights, bias, requantization constants), and how
its weights are stored: dense int8, dense int4, or sparse8 / sparse4 run-length rows (chosen
per layer where they take fewer bytes than dense). {html.escape(flash_total)}</p>
<table id="flash">
<tr><th>#</th><th>layer</th><th>op</th><th>weight format</th><th>weights B</th>
<th>constants B</th><th>share</th></tr>
{flash_table}
</table>
<script type="application/json" id="figures">{script}</script>
</body>
</html>
"""


def write_report(model: str | Path, target: str, output: str | Path, *, patch: str = "auto",
                 patch_overhead: float = DEFAULT_OVERHEAD,
                 optimize: str = "balanced", input_stream: bool = False) -> Compilation:
    """Plan ``model`` for ``target`` (as ``compile`` would) and write the HTML report."""
    result = plan(model, target, patch=patch, patch_overhead=patch_overhead, optimize=optimize,
                  input_stream=input_stream)
    why = "--patch off"
    if result.patch is None and result.patch_notes:
        why = result.patch_notes[0]
    elif result.patch is None and PatchOption.parse(patch).mode == "auto":
        why = why_not_patched(result.graph, result.calls, result.plan, patch_overhead,
                              lower=lambda g: lower(g, result.target))
    text = render(result, why)
    output = Path(output)
    if output.parent and not output.parent.exists():
        raise TinymlError(f"cannot write {output}: directory {output.parent} does not exist")
    output.write_text(text)
    return result
