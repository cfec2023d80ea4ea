"""Command-line glue of ``tinyml prune`` (``tinyml/cli.py`` only registers it; nothing heavy
is imported until the command runs).

The progress line goes to stderr, only on a terminal and not with ``--json``; stdout holds the
report tables, or with ``--json`` only the JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path


def add_prune_parser(sub) -> None:
    p = sub.add_parser("prune", help="prune a Keras model (gradual magnitude pruning, or whole "
                                     "channels with --structured channels) and fine-tune it")
    p.add_argument("model", help="a float Keras model (.keras, .h5)")
    p.add_argument("--data", required=True, metavar="DATA",
                   help="labelled data for fine-tuning: an .npz with x and y, or a folder of "
                        "images in one sub-folder per class")
    p.add_argument("--sparsity", required=True, type=float, metavar="S",
                   help="fraction of the weights (gradual) or of the channels (--structured) "
                        "to remove, e.g. 0.8")
    p.add_argument("-o", "--output", required=True, metavar="OUT.keras",
                   help="where to write the pruned Keras model (.keras or .h5)")
    p.add_argument("--structured", choices=("channels",),
                   help="remove whole output channels and rebuild the network narrower")
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (default 10)")
    p.add_argument("--eval", metavar="DATA", dest="eval_data",
                   help="labelled data for the accuracies (default: hold out part of --data)")
    p.add_argument("--holdout", type=float, default=0.2, metavar="F",
                   help="fraction of --data held out for the accuracies when there is no "
                        "--eval (stratified, seeded; default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and fine-tuning")
    p.add_argument("--norm", choices=("l1", "l2"), default="l1",
                   help="--structured: filter norm that ranks channels (default l1)")
    p.add_argument("--min-weights", type=int, default=256, metavar="N",
                   help="gradual: leave kernels with fewer weights dense (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate "
                                                          "(Adam, cosine-decayed; default 1e-3)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_prune_command)


@contextmanager
def _status(quiet: bool):
    from rich.console import Console

    console = Console(file=sys.stderr)
    if quiet or not console.is_terminal:
        yield None
        return
    with console.status("pruning") as status:
        yield lambda text: status.update(text)


def run_prune_command(args: argparse.Namespace) -> int:
    from tinyml.compress.pipeline import PruneOptions, check_options, run_prune
    # TensorFlow's C++ start-up notes go to descriptor 2 while training runs here: nas
    # silences them the same way.
    from tinyml.console import native_stderr_silenced

    options = PruneOptions(model=Path(args.model), data=args.data, sparsity=args.sparsity,
                           output=Path(args.output), structured=args.structured,
                           epochs=args.epochs, eval_data=args.eval_data, holdout=args.holdout,
                           seed=args.seed, norm=args.norm, min_weights=args.min_weights,
                           learning_rate=args.lr)
    check_options(options)  # before TensorFlow is imported, which takes seconds
    with native_stderr_silenced(), _status(args.json) as status:
        report = run_prune(options, status)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_report(report)
    sys.stdout.flush()
    return 0


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def print_report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tinyml.console import print_report as summary_table

    acc = r["accuracy"]
    structured = r["mode"] == "channels"
    rows = [
        ("mode", "channels (structured)" if structured else "gradual magnitude (unstructured)",
         f"target {_pct(r['target_sparsity'])}, {r['epochs']} epochs of fine-tuning"),
        ("data", f"{r['data']['train_samples']} fine-tuning, {r['data']['eval_samples']} "
                 f"evaluation samples", r["data"]["eval"]),
        ("accuracy", f"{_pct(acc['before'])} -> {_pct(acc['after'])}",
         f"after the rebuild, before fine-tuning: {_pct(acc['after_rebuild'])}"
         if structured else "before -> after, on the evaluation samples"),
        ("sparsity", _pct(r["sparsity"].get("pruned_channels" if structured else
                                             "pruned_kernels")),
         "of the pruned groups' channels" if structured else "of the pruned kernels' weights"),
        ("kernel sparsity", _pct(r["sparsity"]["all_kernels"]),
         "zero weights in all Conv2D/DepthwiseConv2D/Dense kernels"),
        ("parameters", f"{r['params']['before']:,} -> {r['params']['after']:,}",
         f"kernel weights {r['kernel_weights']['before']:,} -> "
         f"{r['kernel_weights']['after']:,} ({r['kernel_weights']['nonzero_after']:,} "
         f"non-zero)"),
        ("MACs", f"{r['macs']['before']:,} -> {r['macs']['after']:,}",
         f"{r['macs']['nonzero_after']:,} with a non-zero weight"),
        ("output", r["output"], ""),
    ]
    summary_table(f"tinyml prune {r['model']}", rows)

    console = Console(file=sys.stdout)
    if not console.is_terminal:
        console = Console(file=sys.stdout, width=160)
    table = Table(title=Text("per layer"), title_justify="left")
    columns = ["layer", "kind", "kernel", "sparsity", "MACs", "note"]
    for c in columns:
        table.add_column(c, justify="left" if c in ("layer", "kind", "note") else "right",
                         overflow="fold")
    for layer in r["layers"]:
        before = "x".join(map(str, layer["kernel_before"] or []))
        after = "x".join(map(str, layer["kernel_after"]))
        note = layer.get("skipped") or layer.get("pinned") or ""
        if structured and "channels_before" in layer:
            note = note or f"{layer['channels_before']} -> {layer['channels_after']} channels" + (
                f" (those of {', '.join(layer['follows'])})" if layer.get("follows") else "")
        table.add_row(*(Text(str(c)) for c in (
            layer["name"], layer["kind"], after if before == after else f"{before} -> {after}",
            _pct(layer["sparsity"]), f"{layer['macs_before']:,} -> {layer['macs_after']:,}",
            note)))
    console.print(table)
    if r.get("curve"):
        curve = Table(title=Text("accuracy against sparsity (end of each epoch)"),
                      title_justify="left")
        for c in ("epoch", "step", "target", "sparsity", "accuracy"):
            curve.add_column(c, justify="right")
        for p in r["curve"]:
            curve.add_row(str(p["epoch"]), str(p["step"]), _pct(p["target_sparsity"]),
                          _pct(p["sparsity"]), _pct(p["accuracy"]))
        console.print(curve)
