"""``tinyml run MODEL --target T --learn STREAM.npz``: compile the model with a trainable
head, start it as a learning device (natively for the host target, in QEMU for an emulated
Cortex-M one), stream the samples through it with a progress bar, and report the accuracy
over time (table, JSON, and an HTML report with the plot).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError
from tinyml.learn.stream import StreamResult, load_stream, run_stream


def device_runner(target) -> str:
    if target.is_host:
        return "host"
    if target.is_emulated:
        return "qemu"
    raise TinymlError(f"target '{target.name}' is a board, not emulated: learning streams run "
                      f"on the host or an emulated Cortex-M target")


def _model_facts(model, trainable: str) -> tuple[tuple[int, ...], int]:
    """The model's input shape and how many classes its trainable head already has, read
    before compiling so the stream can be checked and ``--max-classes`` inferred."""
    import copy

    from tinyml.frontends import load_model
    from tinyml.ir import Graph
    from tinyml.learn.head import split_head
    from tinyml.passes import run_passes

    graph = model if isinstance(model, Graph) else load_model(Path(model))
    graph = run_passes(copy.deepcopy(graph))
    _, head = split_head(graph, trainable)
    return tuple(graph.tensors[graph.inputs[0]].shape), head.model_classes


def inferred_max_classes(labels: np.ndarray, model_classes: int) -> int | None:
    """``--max-classes`` when the user left it out: room for the stream's largest label, or
    None (the model's own classes) when every label is already one of them."""
    needed = int(labels.max()) + 1 if labels.size else 0
    return needed if needed > model_classes else None


def learn_from_stream(model, target: str, stream_path, *, trainable: str = "last:1",
                      max_classes: int | None = None, lr: float = 0.05,
                      decay_steps: float = 40.0, eval_every: int = 0,
                      progress=None) -> tuple[StreamResult, dict]:
    """The stream's result and the compile report (train_ram_bytes, ram_bytes, ...)."""
    from tinyml.learn.device import compile_trainable, open_device
    from tinyml.targets import load_target

    runner = device_runner(load_target(target))
    input_shape, model_classes = _model_facts(model, trainable)
    stream = load_stream(stream_path, input_shape)
    if max_classes is None:
        labels = stream.y if stream.y_test is None else np.concatenate([stream.y, stream.y_test])
        max_classes = inferred_max_classes(labels, model_classes)
    with tempfile.TemporaryDirectory(prefix="tinyml-learn-") as tmp:
        compilation = compile_trainable(model, target, Path(tmp) / "project",
                                        trainable=trainable, max_classes=max_classes)
        report = compilation.report()
        with open_device(compilation.project.output_dir, runner) as device:
            max_classes = device.num_classes
            result = run_stream(device, stream, lr=lr, decay_steps=decay_steps,
                                eval_every=eval_every, progress=progress)
    report["max_classes"] = max_classes
    return result, report


def summary(result: StreamResult, report: dict) -> dict:
    data = {"samples_seen": result.samples_seen,
            "prequential_accuracy": result.prequential_accuracy,
            "rejected_steps": int((~result.applied).sum()),
            "accuracy_curve": [round(float(v), 4) for v in result.accuracy_curve()],
            "train_ram_bytes": report.get("train_ram_bytes"),
            "ram_bytes": report.get("ram_bytes"), "target": report.get("target"),
            "max_classes": report.get("max_classes")}
    if result.evaluations:
        data["held_out"] = [{"samples": e["samples"], "accuracy": e["accuracy"],
                             "per_class": e["per_class"]} for e in result.evaluations]
    return data


def main(args) -> int:
    """The CLI's ``run --learn`` (args parsed by :mod:`tinyml.cli`)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    report_path = args.report or None
    if report_path:  # before compiling: a bad path must not cost a whole stream
        from tinyml.learn.learning_report import check_report_path
        check_report_path(report_path)
    console = Console(file=sys.stderr)
    with Progress(TextColumn("learning"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[note]}"), console=console,
                  disable=args.json or not console.is_terminal) as bar:
        task = bar.add_task("learn", total=None, note="")

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result, report = learn_from_stream(
            args.model, args.target, args.learn, trainable=args.trainable or "last:1",
            max_classes=args.max_classes, lr=args.lr, decay_steps=args.lr_decay,
            eval_every=args.eval_every, progress=progress)
    data = summary(result, report)
    title = f"{Path(args.model).name} learning on {report['target']}"
    rows = [("samples seen", str(result.samples_seen), str(args.learn)),
            ("prequential accuracy", f"{100 * result.prequential_accuracy:.1f} %",
             "each sample predicted before learning from it"),
            ("rejected steps", str(data["rejected_steps"]), "NaN/Inf guard"),
            ("train RAM", f"{report['train_ram_bytes']:,} B",
             "master weights, last forward pass, arena growth")]
    if "ram_bytes" in report:
        rows.append(("RAM", f"{report['ram_bytes']:,} B", ".data + .bss + stack, measured"))
    for e in result.evaluations[-1:]:
        rows.append(("held-out accuracy", f"{100 * e['accuracy']:.1f} %",
                     "per class: " + ", ".join(f"{c}: {100 * a:.0f} %"
                                               for c, a in e["per_class"].items())))
    if report_path:
        from tinyml.learn.learning_report import write_learning_report
        write_learning_report(result, report_path, title, [(k, v) for k, v, _ in rows])
        rows.append(("report", str(report_path), "accuracy over time (plot)"))
        data["report"] = str(report_path)
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        from tinyml.console import print_report
        print_report(title, rows)
    sys.stdout.flush()
    return 0
