"""The ``tinyml`` command line.

Errors in the user's input (``TinymlError``) print one line on stderr and exit with status 2;
nothing is written. Subcommands import their heavy dependencies lazily so that ``tinyml
inspect model.tflite`` does not pay for TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from tinyml.errors import TinymlError

EXIT_USER_ERROR = 2


def _inspect(args: argparse.Namespace) -> int:
    from tinyml.frontends import load_model
    from tinyml.summary import summarize

    graph = load_model(args.model)
    summary = summarize(graph)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    def dims(shapes):
        return ", ".join("x".join(map(str, s)) for s in shapes)

    table = Table(title=f"{graph.name}: {len(summary.layers)} layers", title_justify="left")
    for column in ("#", "op", "layer", "input", "output", "dtype"):
        table.add_column(column, no_wrap=column != "layer", overflow="fold")
    for column in ("MACs", "param B", "act B"):
        table.add_column(column, justify="right")
    for layer in summary.layers:
        table.add_row(str(layer.index), layer.op, layer.name, dims(layer.inputs),
                      dims(layer.outputs), layer.dtype, f"{layer.macs:,}",
                      f"{layer.param_bytes:,}", f"{layer.activation_bytes:,}")
    table.add_section()
    table.add_row("", "total", "", "", "", "", f"{summary.macs:,}", f"{summary.param_bytes:,}",
                  f"peak {summary.peak_activation_bytes:,}")
    Console(width=max(160, Console().width)).print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyml", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="per-layer table of a model: shapes, MACs, bytes")
    p.add_argument("model", help="a .tflite, .onnx, .keras or .h5 file, or a SavedModel dir")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except TinymlError as exc:
        print(f"tinyml: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("tinyml: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
