"""Command-line glue of the quantizer: ``tinyml quantize`` and ``tinyml compile --calib``.

Kept out of ``tinyml/cli.py`` so that the CLI only registers the subcommand; this module
imports nothing heavy at load time (``tinyml inspect`` must stay fast). The calibration
progress bar goes to stderr, and only when it is a terminal (and not with ``--json``); the
report goes to stdout, which with ``--json`` holds only the JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

from tinyml.errors import TinymlError

#: tinyml.quantize.observers.METHODS, repeated so that building the parser imports no numpy.
METHODS = ("minmax", "percentile", "mse")
#: tinyml.quantize.weight_bits.WEIGHT_MODES and tinyml.quantize.int4.ROUNDINGS (and its
#: default), repeated for the same reason; tests check they agree.
WEIGHT_MODES = ("int8", "int4", "mixed")
INT4_ROUNDINGS = ("rtn", "gptq", "search", "gptq-search")
#: tinyml.quantize.int16.ACTIVATION_TYPES, repeated for the same reason.
ACTIVATION_TYPES = ("int8", "int16")
DEFAULT_INT4_ROUNDING = "gptq-search"
_SUFFIXES = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1 << 20, "MB": 1 << 20,
             "MIB": 1 << 20}


def add_calibration_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    """The options shared by ``quantize`` and ``compile``."""
    p.add_argument("--calib", metavar="DATA", required=required,
                   help="calibration data: .npy/.npz arrays, a folder of images, or 'random' "
                        "(random:LOW,HIGH)" + ("" if required else
                                                "; quantizes a float model first"))
    p.add_argument("--method", choices=METHODS, default="minmax",
                   help="activation range observer (default: minmax)")
    p.add_argument("--calib-samples", type=int, metavar="N",
                   help="use a seeded random subset of N calibration samples")
    p.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                   help="do not correct the biases for the mean shift weight rounding causes")
    p.add_argument("--image-range", default="0,1", metavar="LOW,HIGH",
                   help="real values image pixels 0..255 map to (default 0,1)")
    p.add_argument("--weights", choices=WEIGHT_MODES, default="int8",
                   help="filters of conv, depthwise and dense layers: int8 (default), int4 "
                        "(packed two per byte; activations stay int8) or mixed (4 or 8 bits "
                        "per layer, the least loss that fits --flash)")
    p.add_argument("--flash", metavar="BYTES",
                   help="--weights mixed: the bytes the weights may take (suffixes K, M: "
                        "256K = 262144)")
    p.add_argument("--activations", choices=ACTIVATION_TYPES, default="int8",
                   help="activation type: int8 (default) or int16 (TFLite's 16x8: int16 "
                        "activations, int8 weights, int64 biases, for every layer TFLM runs "
                        "in int16)")
    p.add_argument("--int16-layers", metavar="NAMES",
                   help="comma-separated layers to make 16x8, the rest int8 (QUANTIZE ops "
                        "between them); the int8 report lists the worst layers as such an "
                        "option")
    p.add_argument("--int4-rounding", choices=INT4_ROUNDINGS, default=DEFAULT_INT4_ROUNDING,
                   help="how float weights round to int4: rtn (to nearest), gptq (error "
                        "feedback), search (per-channel scale search), gptq-search "
                        "(both; default)")


def add_quantize_parser(sub) -> None:
    p = sub.add_parser("quantize", help="quantize a float model to int8 or 16x8 (.tflite) "
                                        "with calibration data, and report what it cost")
    p.add_argument("model", help="a float model (.tflite, .onnx, .keras, .h5, SavedModel)")
    add_calibration_arguments(p, required=True)
    p.add_argument("-o", "--output", required=True, metavar="OUT.tflite",
                   help="where to write the quantized TFLite model")
    p.add_argument("--eval", metavar="DATA",
                   help="data for the report (default: the calibration data); labels in an "
                        ".npz or image sub-folders give accuracies")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_quantize)


def parse_bytes(text: str, option: str) -> int:
    """A byte count: digits with an optional suffix K or M (binary: 256K = 262144)."""
    import re
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    if match is None or match.group(2).upper() not in _SUFFIXES:
        raise TinymlError(f"{option} '{text}': expected a byte count such as 200000, 256K or "
                          f"1M")
    value = int(float(match.group(1)) * _SUFFIXES[match.group(2).upper()])
    if value <= 0:
        raise TinymlError(f"{option} '{text}': must be positive")
    return value


def _image_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise TinymlError(f"--image-range '{text}': expected LOW,HIGH") from None
    return low, high


@contextmanager
def _progress(description: str, quiet: bool):
    """A rich progress bar on stderr; yields ``advance(n, total)``."""
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)

    console = Console(file=sys.stderr)
    if quiet or not console.is_terminal:  # a bar is for people watching a terminal
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def advance(n: int, total: int) -> None:
            bar.update(task, advance=n, total=total)

        yield advance


def _warn_synthetic(source: str) -> None:
    print(f"tinyml: warning: calibrating on {source}: ranges fit noise, not real inputs, and "
          f"accuracy figures measured on it are meaningless", file=sys.stderr)


def quantize_from_args(model, args: argparse.Namespace, quiet: bool = False):
    """Quantize ``model`` (a path or a graph) as the calibration options say."""
    from tinyml.quantize import quantize_model

    if args.calib_samples is not None and args.calib_samples <= 0:
        raise TinymlError(f"--calib-samples must be positive, got {args.calib_samples}")
    calib = str(args.calib)
    if not (calib == "random" or calib.startswith("random:") or Path(calib).exists()):
        # Checked before the model is imported, which may take seconds.
        raise TinymlError(f"calibration data {calib}: no such file or directory (expected a "
                          f".npy/.npz file, a folder of images or 'random')")
    weights = getattr(args, "weights", "int8")
    flash = getattr(args, "flash", None)
    if flash is not None and weights != "mixed":
        raise TinymlError(f"--flash {flash}: a weight budget needs --weights mixed")
    budget = parse_bytes(flash, "--flash") if flash is not None else None
    activations = getattr(args, "activations", "int8")
    names = getattr(args, "int16_layers", None)
    int16_layers = [n.strip() for n in names.split(",") if n.strip()] if names else []
    if names is not None and not int16_layers:
        raise TinymlError(f"--int16-layers '{names}': expected comma-separated layer names")
    if int16_layers and activations == "int16":
        raise TinymlError("--int16-layers names the int16 layers of an int8 model; "
                          "--activations int16 already makes every layer int16")
    with _progress(f"calibrating ({args.method})", quiet) as advance:
        result = quantize_model(model, args.calib, method=args.method,
                                bias_correction=args.bias_correction,
                                samples=args.calib_samples,
                                image_range=_image_range(args.image_range), progress=advance,
                                weights=weights, flash=budget, activations=activations,
                                int16_layers=int16_layers,
                                int4_rounding=getattr(args, "int4_rounding",
                                                      DEFAULT_INT4_ROUNDING))
    if result.synthetic:
        _warn_synthetic(result.data)
    return result


def graph_quantizer(args: argparse.Namespace):
    """``tinyml compile --calib``: the function turning the imported float graph into the int8
    graph that is compiled."""
    def quantize(graph):
        return quantize_from_args(graph, args, quiet=args.json).graph
    return quantize


def run_quantize(args: argparse.Namespace) -> int:
    from tinyml.quantize import evaluate, load_dataset
    from tinyml.quantize.tflite_export import export_tflite

    output = Path(args.output)
    if output.exists() and output.is_dir():
        raise TinymlError(f"{output}: is a directory (-o names the .tflite file to write)")
    model = quantize_from_args(args.model, args, quiet=args.json)
    data = export_tflite(model.graph, description=model.description())
    if args.eval:
        evaluation = load_dataset(args.eval, model.float_graph,
                                  image_range=_image_range(args.image_range))
        if evaluation.synthetic:
            _warn_synthetic(evaluation.source)
    else:
        evaluation = load_dataset(args.calib, model.float_graph, limit=args.calib_samples,
                                  image_range=_image_range(args.image_range))
    with _progress("evaluating", args.json) as advance:
        tick = (lambda n: advance(n, len(evaluation))) if advance else None
        report = evaluate(model, evaluation, progress=tick)
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise TinymlError(f"{output}: cannot write ({exc.strerror or exc})") from None

    figures = {"model": str(args.model), "output": str(output), "output_bytes": len(data),
               **model.summary(), **_io(model), **report.to_json()}
    if args.json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    else:
        print_report(figures)
    sys.stdout.flush()
    return 0


def _io(model) -> dict:
    """The int8 model's input and output quantization, which callers need to feed it."""
    def describe(name: str) -> dict:
        from tinyml.quantize.evaluation import scale_and_zero_point
        t = model.graph.tensors[name]
        scale, zero_point = scale_and_zero_point(t)  # (1, 0) for a bool output
        return {"name": name, "shape": list(t.shape), "dtype": t.dtype, "scale": scale,
                "zero_point": zero_point}
    return {"inputs": [describe(n) for n in model.graph.inputs],
            "int8_outputs": [describe(n) for n in model.graph.outputs]}


def _db(value) -> str:
    return "exact" if value is None else f"{value:.1f} dB"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def print_report(figures: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=sys.stdout)
    if not console.is_terminal:
        console = Console(file=sys.stdout, width=160)
    summary = Table(title=Text(f"{figures['model']} -> {figures['output']} "
                               f"({figures['output_bytes']:,} B)"),
                    title_justify="left", show_header=False)
    for _ in range(3):
        summary.add_column(overflow="fold")
    rows = [
        ("calibration", f"{figures['calibration_samples']} samples, {figures['method']}",
         figures["calibration_data"]),
        ("bias correction", "on" if figures["bias_correction"] else "off", ""),
        ("weights", figures["weights"] + (f", {figures['int4_rounding']} rounding"
                                          if figures["int4_rounding"] else ""),
         f"{figures['weight_bytes']:,} B of constants, {len(figures['int4_layers'])} int4 "
         f"layers" + (f" (budget {figures['flash_budget']:,} B)"
                      if figures["flash_budget"] else "")),
        ("activations", figures["activations"] if not figures["int16_layers"] else
         f"{figures['activations']}, {len(figures['int16_layers'])} 16x8 layers",
         ", ".join(figures["int16_layers"]) if figures["activations"] == "int8" else ""),
        ("evaluated on", f"{figures['samples']} samples", figures["data"]),
        ("output SQNR", _db(figures["output_sqnr_db"]), "quantized vs float, first output"),
        ("top-1 agreement", _percent(figures["top1_agreement"]), "float and quantized argmax equal"),
    ]
    if figures["float_accuracy"] is not None:
        rows.append(("accuracy", f"float {_percent(figures['float_accuracy'])}, int8 "
                                 f"{_percent(figures['int8_accuracy'])}", "against the labels"))
    for t in figures["inputs"]:
        rows.append(("input", t["name"], f"{t['dtype']} scale {t['scale']:.6g}, zero point "
                                         f"{t['zero_point']}"))
    for row in rows:
        summary.add_row(*(Text(str(c)) for c in row))
    console.print(summary)

    layers = Table(title=Text("per layer (isolated: the layer alone on float inputs; the "
                              "lowest is marked; - : a 16x8 layer, not measured)"),
                   title_justify="left")
    for column in ("#", "op", "layer", "type", "scale", "zp", "SQNR", "isolated"):
        layers.add_column(column, justify="right" if column in ("#", "scale", "zp", "SQNR",
                                                                "isolated") else "left",
                          overflow="fold")
    worst = figures["worst_layer"]
    for i, layer in enumerate(figures["layers"]):
        marker = " <" if layer["layer"] == worst else ""
        layers.add_row(*(Text(c) for c in (
            str(i), layer["op"], layer["layer"], layer["dtype"], f"{layer['scale']:.4g}",
            str(layer["zero_point"]), _db(layer["sqnr_db"]),
            (_db(layer["isolated_sqnr_db"]) if layer["isolated_measured"] else "-")
            + marker)))
    console.print(layers)
    if figures["worst_layers"]:
        console.print(Text(f"lowest isolated SQNR (int8 layers TFLM runs 16x8): "
                           f"--int16-layers {','.join(figures['worst_layers'])}"))
