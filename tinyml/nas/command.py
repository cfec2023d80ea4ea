"""Command-line glue of ``tinyml nas`` (kept out of ``tinyml/cli.py``, which only registers it;
nothing heavy is imported until the command runs).

The progress bar goes to stderr, only on a terminal and not with ``--json``; stdout holds the
summary table, or with ``--json`` only the JSON document.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path

from tinyml.errors import TinymlError


def parse_duration(text: str) -> float:
    """'20m', '90s', '1h', '1h30m', '300' (seconds) -> seconds."""
    raw = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        seconds = float(raw)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise TinymlError(f"--time-budget '{text}': expected a duration such as 20m, 90s "
                              f"or 1h30m")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise TinymlError(f"--time-budget '{text}': must be positive")
    return seconds


def add_nas_parser(sub) -> None:
    p = sub.add_parser("nas", help="search an int8 model that fits SRAM and flash budgets "
                                   "(architecture and patch schedule), train it, compile it")
    p.add_argument("--data", required=True, metavar="DATA",
                   help="'digits' (scikit-learn's) or a .npz with x_train, y_train, x_test, "
                        "y_test")
    p.add_argument("--sram", required=True, metavar="SIZE", help="SRAM budget, e.g. 64KB")
    p.add_argument("--flash", required=True, metavar="SIZE", help="flash budget, e.g. 256KB")
    p.add_argument("--target", default="cortex-m4",
                   help="a Cortex-M target (see 'tinyml targets'; default cortex-m4)")
    p.add_argument("--time-budget", default="20m", metavar="DURATION",
                   help="wall-clock budget of the whole search, e.g. 20m (default)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="directory for the model, firmware, report and search log (a rerun "
                        "on the same directory resumes the search)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search (default 0)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip training the scaled MobileNetV2 baseline")
    p.add_argument("--input-stream", default="whole", choices=("whole", "rows"),
                   help="rows: plan every candidate (and build the firmware) with the image "
                        "asked for row by row through tinyml_input_rows(), as compile "
                        "--input-stream rows; default whole")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run_nas_command)


@contextmanager
def _progress(quiet: bool):
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=sys.stderr)
    if quiet or not console.is_terminal:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("nas", total=1.0)

        def status(text: str, fraction: float) -> None:
            bar.update(task, description=text, completed=fraction)

        yield status


def run_nas_command(args: argparse.Namespace) -> int:
    from tinyml.nas.pipeline import NasOptions, run_nas
    from tinyml.console import native_stderr_silenced
    from tinyml.nas.search_space import parse_bytes

    options = NasOptions(data=args.data, sram_bytes=parse_bytes(args.sram, "--sram"),
                         flash_bytes=parse_bytes(args.flash, "--flash"),
                         output=Path(args.output), target=args.target,
                         time_budget_s=parse_duration(args.time_budget), seed=args.seed,
                         baseline=args.baseline, input_stream=args.input_stream == "rows")
    with native_stderr_silenced(), _progress(args.json) as status:
        report = run_nas(options, status)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print(report)
    sys.stdout.flush()
    return 0


def _print(r: dict) -> None:
    from tinyml.console import print_report

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f} %"

    rows = [
        ("int8 test accuracy", pct(r["test_accuracy"]),
         f"float {pct(r['float_test_accuracy'])}; TFLM on the test split"),
        ("baseline", pct(r["baseline_accuracy"]),
         f"scaled MobileNetV2, {r['epochs']} epochs like the searched model"),
        ("RAM", f"{r['ram_bytes']:,} B", f"of {r['sram_budget_bytes']:,} B: measured "
                                         f"(.data + .bss + stack {r['stack_bytes']:,} B)"),
        ("flash", f"{r['flash_bytes']:,} B", f"of {r['flash_budget_bytes']:,} B: measured "
                                             f"from the ELF"),
        ("patches", f"{r['patch']['grid'][0]}x{r['patch']['grid'][1]}" if r["patch"]
         else "none", f"peak SRAM {r['peak_sram_bytes']:,} B (layer by layer "
                      f"{r['peak_sram_bytes_layerwise']:,} B)"),
        ("instructions", f"{r['instructions_per_inference'] or 0:,}",
         f"QEMU; the search predicted {r['predicted_instructions']:,}"),
        ("candidates", str(r["candidates_evaluated"]),
         f"trained ({r['candidates_checked']} checked by the compiler)"),
        ("architecture", r["arch"], ""),
        ("written", r["output_dir"], "model.keras, model_int8.tflite, firmware/, report.html"),
    ]
    print_report(f"tinyml nas ({r['target']}, {r['seconds']:.0f} s)", rows)
