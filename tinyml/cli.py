"""The ``tinyml`` command line.

Errors in the user's input (a :class:`~tinyml.errors.TinymlError`, or a command line argparse
rejects) print exactly one line, ``tinyml: error: ...``, on stderr, write nothing on stdout and
exit with status 2. Anything else is a bug in tinyml and keeps its traceback. Set
``TINYML_DEBUG=1`` to see the traceback behind a user error too (e.g. what a corrupt file made
the parser raise).

Subcommands import their heavy dependencies lazily: ``tinyml inspect model.tflite`` (or .onnx)
never imports TensorFlow, which would add seconds to every call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

from tinyml.console import print_report as _print_report
from tinyml.errors import TinymlError
# The packages' own subcommands; light: what they run is imported when they run.
from tinyml.compress.command import add_prune_parser
from tinyml.fleet.command import add_fleet_parser
from tinyml.nas.command import add_nas_parser
from tinyml.op_support import add_ops_parser
from tinyml.quantize.command import add_calibration_arguments, add_quantize_parser

EXIT_USER_ERROR = 2
#: Exit status when stdout is closed early (``tinyml inspect m.tflite --json | head``), as a
#: process killed by SIGPIPE would report it to the shell.
EXIT_BROKEN_PIPE = 128 + 13


def _error_line(message: str) -> str:
    """One printable line: messages quote names from the user's file, which may hold line
    breaks or terminal escape sequences."""
    text = " ".join(str(message).split())
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return "tinyml: error: " + text


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other user error."""

    def error(self, message: str):
        print(_error_line(f"{message} (see '{self.prog} --help')"), file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def _inspect(args: argparse.Namespace) -> int:
    from tinyml.frontends import load_model
    from tinyml.summary import summarize

    summary = summarize(load_model(args.model))
    if args.json:
        sys.stdout.write(json.dumps(summary.to_json(), indent=2) + "\n")
    else:
        _print_table(summary)
    sys.stdout.flush()  # a closed pipe must surface here, inside main's handler
    return 0


def _print_table(summary) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tinyml.summary import readable_names

    def dims(shapes):
        return ", ".join("x".join(map(str, s)) or "scalar" for s in shapes)

    scope, names = readable_names([layer.name for layer in summary.layers])
    title = f"{summary.name}: {len(summary.layers)} layers"
    if scope:
        title += f" (layer names under {scope})"
    # Every string goes in as Text: names come from the user's file (or its file name) and may
    # contain "[...]", which rich would otherwise parse as markup.
    table = Table(title=Text(title), title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("op", no_wrap=True)
    table.add_column("layer", overflow="fold", ratio=1, min_width=16)
    for column in ("input", "output"):
        table.add_column(column, overflow="fold")
    table.add_column("dtype", no_wrap=True)
    for column in ("MACs", "param B", "act B"):
        table.add_column(column, justify="right", no_wrap=True)
    for layer, name in zip(summary.layers, names):
        table.add_row(*map(Text, (
            str(layer.index), layer.op, name, dims(layer.inputs), dims(layer.outputs),
            layer.dtype, f"{layer.macs:,}", f"{layer.param_bytes:,}",
            f"{layer.activation_bytes:,}")))
    table.add_section()
    table.add_row(*map(Text, (
        "", "total", "", f"{summary.input_bytes:,} B in", f"{summary.output_bytes:,} B out", "",
        f"{summary.macs:,}", f"{summary.param_bytes:,}",
        f"peak {summary.peak_activation_bytes:,}")))
    console = Console(file=sys.stdout)
    if not console.is_terminal:
        # Piped or redirected: there is no screen to fit, so print rows whole rather than
        # folding layer names at rich's 80-column default.
        natural = Console(file=sys.stdout, width=400).measure(table).maximum
        console = Console(file=sys.stdout, width=min(max(natural, 80), 400))
    console.print(table)
    for note in summary.notes:  # what the import normalized (tinyml.summary)
        console.print(Text(f"note: {note}"), soft_wrap=True)


def _compile(args: argparse.Namespace) -> int:
    from tinyml.compiler import compile_model
    from tinyml.flash import format_summary

    quantize = None
    if args.calib:  # a float model: quantize it first (tinyml.quantize)
        from tinyml.quantize.command import graph_quantizer
        quantize = graph_quantizer(args)
    result = compile_model(args.model, args.target, args.output, quantize=quantize,
                           patch=args.patch, patch_overhead=args.patch_overhead,
                           trainable=args.trainable, max_classes=args.max_classes,
                           optimize=args.optimize, stream=args.stream,
                           input_stream=_input_stream(args))
    report = result.report()
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        rows = [
            ("peak SRAM", f"{report['peak_sram_bytes']:,} B",
             "arena: activations, input, output and scratch"),
            ("scratch", f"{report['scratch_bytes']:,} B", "largest kernel scratch, in the arena"),
            *([("state", f"{report['state_bytes']:,} B", "streaming variables, kept between "
                "invocations outside the arena (tinyml_reset() restores them)")]
              if report["state_bytes"] else []),
            ("weights", f"{report['weights_bytes']:,} B", "const data in weights.c; weight "
             f"filters: {format_summary(result.layers_flash())}"),
            ("flash", f"{report['flash_bytes']:,} B" if report["flash_bytes"] else "-",
             "measured from the firmware image when the target builds one"),
            ("MACs", f"{report['macs']:,}", "per inference"),
            ("peak layer", report["peak_layer"], "where the most bytes are alive"),
        ]
        if "ram_bytes" in report:
            target = result.target
            rows[3:3] = [
                ("RAM", f"{report['ram_bytes']:,} B", f".data + .bss (arena) + stack, of "
                 f"{target.sram_bytes:,} B ({target.part})"),
                ("stack", f"{report['stack_bytes']:,} B", "tinyml_invoke()'s high-water "
                 f"mark, measured in QEMU ({report['stack_measured_on']})"),
            ]
            rows[5] = ("flash", f"{report['flash_bytes']:,} B",
                       f"code {report['text_bytes']:,} + constants {report['rodata_bytes']:,} "
                       f"+ data {report['data_bytes']:,}, of {target.flash_bytes:,} B")
            rows.append(("firmware", report["elf"], "make run (emulated targets) runs it in QEMU"
                         if target.is_emulated else "links for the board"))
        rows[1:1] = _overlap_rows(report) + _patch_rows(report)
        if report["input_stream"]["mode"] == "rows":
            rows[1:1] = [_input_stream_row(report)]
        if result.stream is not None:  # --stream (tinyml.passes.stream_window)
            rows.insert(1, ("stream", f"1 of {result.stream.window} frames a call",
                            result.stream.summary()))
        if result.learn is not None:  # on-device learning (tinyml.learn)
            rows.insert(1, ("train RAM", f"{report['train_ram_bytes']:,} B",
                            f"{report['trainable']}: {report['train_params']:,} float32 "
                            f"parameters, {report['max_classes']} classes; included above"))
        _print_report(f"{result.model.name} -> {report['output_dir']} ({report['target']})",
                      rows)
    sys.stdout.flush()
    return 0


def _overlap_rows(report: dict) -> list[tuple[str, str, str]]:
    """compile's row about overlapped hand-overs (tinyml.schedule.overlap, overlap_cost)."""
    overlap = report["overlap"]
    if overlap["layers"]:
        cost = overlap["predicted_instructions"]
        return [("overlaps", f"{len(overlap['layers'])} layers",
                 f"outputs inside their dying inputs save {overlap['saving_bytes']:,} B "
                 f"(arena {overlap['arena_bytes_without_overlap']:,} B without)"
                 + (f", {cost:+,} predicted instructions" if cost else ""))]
    declined = overlap.get("declined")
    if declined:
        return [("overlaps", "none", f"turned down by --optimize {report['optimize']}: "
                                    f"{declined['saving_bytes']:,} B for "
                                    f"{declined['predicted_instructions']:+,} predicted "
                                    f"instructions")]
    return []


def _input_stream(args: argparse.Namespace) -> bool:
    from tinyml.schedule.input_stream import parse_mode
    return parse_mode(getattr(args, "input_stream", None))


def _input_stream_row(report: dict) -> tuple[str, str, str]:
    """compile's row about --input-stream rows (tinyml.schedule.input_stream)."""
    s = report["input_stream"]
    return ("input", f"{s['band_bytes']:,} B",
            f"streamed: a band of {s['band_rows']} of {s['input_rows']} rows instead of the "
            f"{s['input_bytes']:,} B image, asked for through tinyml_input_rows(); "
            f"{s['stage_layers']} layer(s) run row by row ({s['stage_band_bytes']:,} B of bands)")


def _patch_rows(report: dict) -> list[tuple[str, str, str]]:
    """compile's rows about patch-based inference (tinyml.schedule.patches)."""
    patch = report["patch"]
    predicted = ("predicted", f"{report['predicted_instructions']:,}",
                 f"instructions per inference by the {report['predicted_on']} cost model "
                 f"(--optimize {report['optimize']})")
    notes = [("", "", note) for note in report.get("patch_notes", [])]
    if patch is None:
        return [("patches", "none", "layer by layer (no split lowers peak SRAM within the MAC "
                                    "budget and the --optimize goal, or --patch off)"),
                *notes, predicted]
    added = patch.get("instructions_added")
    if patch.get("kind") == "rows":  # --input-stream rows: a row stage, no patch grid
        return [("layer by layer", f"{report['peak_sram_bytes_layerwise']:,} B",
                 "peak SRAM with the whole input, layer by layer"),
                ("row stage", f"{patch['layers']} layer(s)",
                 f"one output row at a time up to '{patch['split_layer']}'"
                 + (f", {added:+,} predicted instructions against the first layer alone"
                    if added else "")),
                *notes, predicted]
    return [("layer by layer", f"{report['peak_sram_bytes_layerwise']:,} B",
             "peak SRAM without patch-based inference"),
            ("patches", f"{patch['grid'][0]}x{patch['grid'][1]}",
             f"first {patch['layers']} layers patch by patch, up to '{patch['split_layer']}'; "
             f"+{100 * patch['mac_overhead']:.1f} % MACs"
             + (f", {added:+,} predicted instructions" if added is not None else "")),
            *notes, predicted]


def _report(args: argparse.Namespace) -> int:
    from tinyml.memory_report import write_report

    result = write_report(args.model, args.target, args.output, patch=args.patch,
                          patch_overhead=args.patch_overhead, optimize=args.optimize,
                          input_stream=_input_stream(args))
    report = result.report()
    rows = [("peak SRAM", f"{report['peak_sram_bytes']:,} B", "arena with the chosen schedule")]
    rows += _overlap_rows(report) + _patch_rows(report)
    if report["input_stream"]["mode"] == "rows":
        rows.append(_input_stream_row(report))
    rows += _flash_rows(result)
    rows.append(("written", str(args.output), "HTML with the memory plot and per-layer table"))
    _print_report(f"report {result.model.name} ({report['target']})", rows)
    sys.stdout.flush()
    return 0


def _flash_rows(result) -> list[tuple[str, str, str]]:
    """report's flash per layer: the total, then each layer holding constants, largest
    first (tinyml.flash)."""
    from tinyml.flash import format_summary

    layers = result.layers_flash()
    total = sum(layer.bytes for layer in layers)
    target = result.target
    budget = f" of {target.flash_bytes:,} B flash ({target.part or target.name})" \
        if target.flash_bytes else ""
    rows = [("weights", f"{total:,} B", f"constants in weights.c{budget}; weight filters: "
                                         f"{format_summary(layers)}")]
    for layer in sorted(layers, key=lambda item: -item.bytes):
        if layer.bytes:
            rows.append((f"  {layer.op}", f"{layer.bytes:,} B",
                         f"{layer.name}: weights {layer.weights_bytes:,} B {layer.format}"
                         if layer.format != "-" else layer.name))
    return rows


def _add_patch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patch", default="auto", metavar="auto|off|SPLIT:N",
                   help="patch-based inference of the first layers: auto (default: when it "
                        "lowers peak SRAM), off, or SPLIT:N to force the split layer (index "
                        "or name) and an NxN (or RxC) grid, SPLIT:Nrows for N bands of rows "
                        "with line buffers; START..SPLIT:... starts the stage at layer START")
    p.add_argument("--patch-overhead", type=float, default=0.2, metavar="FRACTION",
                   help="auto: most extra MACs recomputed halos may cost, as a fraction of "
                        "the model's (default 0.2)")
    p.add_argument("--optimize", default="balanced", choices=("speed", "memory", "balanced"),
                   help="how --patch auto trades RAM for instructions predicted by the "
                        "target's cost model: speed (fewest), memory (smallest arena), "
                        "balanced (default: the smallest arena within 3 %% of the fastest "
                        "plan's instructions, unless the part's SRAM needs less)")


def _add_stream_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--stream", action="store_true",
                   help="the input is a sliding window (time on axis 1, newest frame last): "
                        "compile a model that consumes one new frame per call, caching the "
                        "causal first layers' past columns, equal to the full-window model; "
                        + what)


def _add_input_stream_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-stream", default="whole", choices=("whole", "rows"),
                   help="rows: the generated code asks for the input image row by row "
                        "through tinyml_input_rows() (defined by the application, e.g. a "
                        "camera driver) and keeps only a band of rows; whole (default): the "
                        "input is written into the arena before tinyml_invoke()")


def _add_trainable_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trainable", metavar="last:K",
                   help="on-device learning of the last K fully connected layers (float32 "
                        "master weights in RAM; last:1 is the classifier)")
    p.add_argument("--max-classes", type=int, metavar="M",
                   help="with --trainable: room for M classes (new ones can be learned)")


def _verify(args: argparse.Namespace) -> int:
    from tinyml.verify import verify

    quantize = None
    if args.calib:  # a float model: quantize it first, as compile --calib does
        from tinyml.quantize.command import graph_quantizer
        quantize = graph_quantizer(args)
    report = verify(args.model, args.target, samples=args.samples, seed=args.seed,
                    sanitize=args.sanitize, profile=not args.no_profile, patch=args.patch,
                    patch_overhead=args.patch_overhead, quantize=quantize,
                    optimize=args.optimize, stream=args.stream,
                    input_stream=_input_stream(args)).to_json()
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        verdict = "bit-exact" if report["mismatched_outputs"] == 0 else "MISMATCH"
        rows = [
            ("samples", str(report["samples"]), f"{args.samples} seeded random + all-min + all-max"
             + (" frames, one stream; each output against the full window" if args.stream
                else "")),
            ("mismatched outputs", str(report["mismatched_outputs"]), "samples with any difference"),
            ("max abs diff", f"{report['max_abs_diff']:g}", "in quantized units"),
            ("oracle", report["oracle"], "compared against"),
        ]
        if "instructions_per_inference" in report:
            rows += [
                ("instructions", f"{report['instructions_per_inference']:,}",
                 f"per inference (median; {report['instructions_min']:,} to "
                 f"{report['instructions_max']:,}), QEMU {report['machine']} -icount shift=0"),
                ("stack", f"{report['stack_bytes']:,} B", "tinyml_invoke()'s high-water mark"),
                ("flash / RAM", f"{report['flash_bytes']:,} B / {report['ram_bytes']:,} B",
                 "of the firmware image; RAM includes the stack"),
            ]
            for layer in report.get("layer_instructions", []):
                rows.append((f"  {layer['op']}", f"{layer['instructions']:,}", layer["name"]))
        _print_report(f"verify {args.model} on {report['target']}: {verdict}", rows)
    sys.stdout.flush()
    return 0 if report["mismatched_outputs"] == 0 else 1


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from tinyml.runner import run_model

    if args.learn:  # a labelled stream through a learning device (tinyml.learn)
        from tinyml.learn.runner import main as learn_main
        return learn_main(args)
    result = run_model(args.model, args.target, args.input, stream=args.stream,
                       input_stream=_input_stream(args))
    if args.output:
        if len(result.outputs) == 1:
            np.save(args.output, next(iter(result.outputs.values())))
        else:
            np.savez(args.output, **result.outputs)
    if args.json:
        report = {"model": result.model, "target": result.target, "input": result.input_source,
                  "outputs": {name: {"shape": list(v.shape), "dtype": str(v.dtype),
                                     "values": v.reshape(-1).tolist()}
                              for name, v in result.outputs.items()},
                  **result.measured}
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        rows = [("input", result.input_source, "")]
        with np.printoptions(threshold=24, edgeitems=6, linewidth=100, precision=4,
                             suppress=True):
            for name, values in result.outputs.items():
                flat = values.reshape(-1)
                rows.append((f"output {name}", f"{values.dtype} {list(values.shape)}",
                             f"argmax {int(flat.argmax())}" if flat.size else ""))
                rows.append(("  values", str(flat), ""))
                real = result.dequantized(name)
                if real is not None:
                    rows.append(("  real", str(real.reshape(-1)), "scale * (q - zero point)"))
        if result.measured:
            rows.append(("instructions", f"{result.measured['instructions']:,}",
                         f"QEMU {result.measured['machine']}, -icount shift=0"
                         + (" (the last frame's call)" if args.stream else "")))
            rows.append(("stack", f"{result.measured['stack_bytes']:,} B",
                         "tinyml_invoke()'s high-water mark"))
        if args.output:
            rows.append(("saved", args.output, ""))
        _print_report(f"run {result.model} on {result.target}", rows)
    sys.stdout.flush()
    return 0


def _targets(args: argparse.Namespace) -> int:
    from tinyml.targets import available_targets, load_target

    rows = [load_target(name) for name in available_targets()]
    if args.json:
        sys.stdout.write(json.dumps([{"name": t.name, "description": t.description,
                                      "core": t.core, "part": t.part,
                                      "sram_bytes": t.sram_bytes,
                                      "flash_bytes": t.flash_bytes, "fpu": t.fpu,
                                      "dsp": t.dsp, "qemu_machine": t.qemu_machine,
                                      "emulated_by": t.emulated_by} for t in rows],
                                    indent=2) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title="targets", title_justify="left")
        for column in ("name", "core", "part", "SRAM", "flash", "FPU", "DSP", "emulated by"):
            table.add_column(column, justify="right" if column in ("SRAM", "flash") else "left")
        for t in rows:
            kib = (lambda n: f"{n // 1024:,} KB" if n else "-")
            emulated = (f"QEMU {t.qemu_machine}" if t.qemu_machine else
                        f"{t.emulated_by} (stack only)" if t.emulated_by else "native")
            table.add_row(*map(Text, (t.name, t.core, t.part or "-", kib(t.sram_bytes),
                                      kib(t.flash_bytes), t.fpu or "-",
                                      "yes" if t.dsp else "-", emulated)))
        console = Console(file=sys.stdout)
        if not console.is_terminal:
            # Piped: print rows whole rather than folded at rich's 80-column default.
            natural = Console(file=sys.stdout, width=400).measure(table).maximum
            console = Console(file=sys.stdout, width=min(max(natural, 80), 400))
        console.print(table)
    return 0


def _add_inspect_parser(sub) -> None:
    p = sub.add_parser("inspect", help="per-layer table of a model: shapes, MACs, bytes")
    p.add_argument("model", help="a .tflite, .onnx, .keras or .h5 file, or a SavedModel dir")
    p.add_argument("--json", action="store_true",
                   help='print {"layers": [...], "totals": {...}} instead of a table')
    p.set_defaults(run=_inspect)


def _add_compile_parser(sub) -> None:
    p = sub.add_parser("compile", help="generate a C project (int8 graph, static memory plan)")
    p.add_argument("model", help="an int8-quantized model (.tflite, QDQ .onnx), or a float "
                                 "model with --calib")
    p.add_argument("--target", default="host", help="see 'tinyml targets' (default: host)")
    p.add_argument("-o", "--output", required=True, help="directory to write the project to")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    _add_patch_arguments(p)
    add_calibration_arguments(p, required=False)
    _add_trainable_arguments(p)
    _add_stream_argument(p, "the window starts as the input's zero point")
    _add_input_stream_argument(p)
    p.set_defaults(run=_compile)


def _add_verify_parser(sub) -> None:
    p = sub.add_parser("verify", help="compile, run the C code on samples, compare bit for bit")
    p.add_argument("model", help="an int8-quantized model (.tflite, QDQ .onnx), or a float "
                                 "model with --calib")
    p.add_argument("--target", default="host", help="see 'tinyml targets' (default: host)")
    p.add_argument("--samples", type=int, default=100, help="random samples (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random samples")
    p.add_argument("--sanitize", action="store_true",
                   help="host: build with AddressSanitizer and UndefinedBehaviorSanitizer")
    p.add_argument("--no-profile", action="store_true",
                   help="emulated targets: skip the per-layer profiling build")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_patch_arguments(p)
    add_calibration_arguments(p, required=False)
    _add_stream_argument(p, "the samples are frames of one stream, each output compared "
                            "with the full window's")
    _add_input_stream_argument(p)
    p.set_defaults(run=_verify)


def _add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="HTML memory report: per-layer SRAM before and after "
                                      "patch scheduling, with a plot")
    p.add_argument("model", help="an int8-quantized model (.tflite, QDQ .onnx)")
    p.add_argument("--target", default="host", help="see 'tinyml targets' (default: host)")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write")
    _add_patch_arguments(p)
    _add_input_stream_argument(p)
    p.set_defaults(run=_report)


def _add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="one inference on a target (QEMU for Cortex-M) and its outputs")
    p.add_argument("model", help="an int8-quantized model (.tflite, QDQ .onnx)")
    p.add_argument("--target", default="host", help="see 'tinyml targets' (default: host)")
    p.add_argument("--input", action="append", metavar="X.npy",
                   help="one .npy per model input: integer codes, or float real values to "
                        "quantize (default: zero point everywhere)")
    p.add_argument("-o", "--output", metavar="OUT.npy",
                   help="save the output (.npy; .npz keyed by name for several outputs)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--learn", metavar="STREAM.npz",
                   help="on-device learning: stream labelled samples (x, y; optionally x_test, "
                        "y_test) through the trainable model, predicting then learning each")
    p.add_argument("--lr", type=float, default=0.05, help="--learn: learning rate (default 0.05)")
    p.add_argument("--lr-decay", type=float, default=40.0, metavar="STEPS",
                   help="--learn: lr / (1 + t / STEPS) at sample t; 0 keeps it constant "
                        "(default 40)")
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="--learn: held-out accuracy every N samples (needs x_test, y_test)")
    p.add_argument("--report", metavar="OUT.html",
                   help="--learn: write the accuracy-over-time plot and figures here")
    _add_trainable_arguments(p)
    _add_stream_argument(p, "--input then holds any number of frames (along axis 1), fed one "
                            "per call; the output is the last frame's")
    _add_input_stream_argument(p)
    p.set_defaults(run=_run)


def _add_targets_parser(sub) -> None:
    p = sub.add_parser("targets", help="list the compilation targets")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=_targets)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, each registered the same way: an ``add_*_parser`` that
    adds it to the subparsers and sets its ``run``; those of quantize, prune, nas and fleet
    live in their packages, next to the code they run."""
    parser = _Parser(prog="tinyml", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser in (_add_inspect_parser, _add_compile_parser, add_quantize_parser,
                       add_prune_parser, add_nas_parser, _add_verify_parser, _add_report_parser,
                       _add_run_parser, _add_targets_parser, add_fleet_parser, add_ops_parser):
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before anything imports TensorFlow: its C++ start-up chatter would break the one-line
    # error contract.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            # Library warnings (Keras, numpy on a corrupt file's values) would add lines to
            # stderr that the user cannot act on; TINYML_DEBUG shows them.
            if not os.environ.get("TINYML_DEBUG"):
                warnings.simplefilter("ignore")
            return args.run(args)
    except TinymlError as exc:
        if os.environ.get("TINYML_DEBUG"):
            raise
        print(_error_line(exc), file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        # The reader went away; Python would otherwise complain again when it flushes stdout
        # at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("tinyml: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
