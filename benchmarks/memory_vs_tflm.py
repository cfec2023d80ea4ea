"""Arena size: tinyml's static memory plan vs TFLM, on the MLPerf Tiny int8 models.

Run: ``.venv/bin/python benchmarks/memory_vs_tflm.py``

TFLM's figure is measured in the same run with the ``tflite-micro`` package: the interpreter
is built with a generous arena, invoked once, and its ``RecordingMicroAllocator`` report
(``print_allocations``, written by C++ to stderr, so captured at the file-descriptor level)
gives the bytes really used: the *head* (TFLM's planned activations and scratch) and the
*tail* (persistent data: tensor structs, per-channel requantization constants, op state).
The arena a TFLM build must reserve is the total. tinyml keeps activations, graph I/O and
scratch in its arena and puts every constant in flash, so the total is the fair comparison;
the head ratio is shown too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLPERF_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"
MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]
#: The bar this benchmark checks: tinyml's arena <= this fraction of TFLM's.
TARGET_RATIO = 0.70

sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@dataclass
class TflmArena:
    total: int
    head: int
    tail: int


def _stderr_of(fn) -> str:
    """What ``fn`` (including C++ code it calls) writes to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


def tflm_arena(model: bytes) -> TflmArena:
    """TFLM's arena use for ``model``, from its recording allocator's report."""
    from tflite_micro.python.tflite_micro import runtime
    interpreter = runtime.Interpreter.from_bytes(
        model, arena_size=max(16 * len(model), 1 << 21),
        intrepreter_config=runtime.InterpreterConfig.kAllocationRecording)
    interpreter.invoke()
    report = _stderr_of(interpreter.print_allocations)

    def field(what: str) -> int:
        match = re.search(rf"Arena allocation {what} (\d+) bytes", report)
        if match is None:
            raise RuntimeError(f"TFLM's allocation report has no '{what}' line:\n{report}")
        return int(match.group(1))

    return TflmArena(field("total"), field("head"), field("tail"))


def _lowering():
    """``tinyml.codegen.lowering.lower`` when the code generator is there: its calls carry
    the real kernel scratch sizes and in-place pairs; otherwise the planner's estimates."""
    if importlib.util.find_spec("tinyml.codegen.lowering") is None:
        return None
    from tinyml.codegen.lowering import lower
    return lower


def measure(name: str) -> dict:
    from tinyml.frontends.tflite import load_tflite
    from tinyml.passes import run_passes
    from tinyml.schedule import plan_memory
    path = MLPERF_DIR / f"{name}.tflite"
    tflm = tflm_arena(path.read_bytes())
    graph = run_passes(load_tflite(path))
    lower = _lowering()
    plan = plan_memory(graph, lower(graph) if lower else None)
    winners = sorted(k for k, v in plan.candidates.items() if v == plan.arena_bytes)
    return dict(name=name, tflm=tflm, plan=plan, winners=winners,
                worst=max(plan.candidates.values()))


def main() -> int:
    from rich.console import Console
    from rich.table import Table
    missing = [m for m in MODELS if not (MLPERF_DIR / f"{m}.tflite").exists()]
    if missing:
        print(f"MLPerf Tiny models missing in {MLPERF_DIR}: {', '.join(missing)}")
        return 1
    rows = [measure(m) for m in MODELS]
    table = Table(title="Arena bytes: tinyml static plan vs TFLM (MLPerf Tiny int8)")
    for column, justify in [("model", "left"), ("TFLM total", "right"),
                            ("TFLM head", "right"), ("tinyml", "right"),
                            ("ratio", "right"), ("vs head", "right"), ("target", "right"),
                            ("peak layer", "left"), ("scratch", "right"),
                            ("in place", "right"), ("strategy", "left")]:
        table.add_column(column, justify=justify, no_wrap=column == "strategy",
                         overflow="fold")
    ok = True
    for r in rows:
        plan, tflm = r["plan"], r["tflm"]
        ratio = plan.arena_bytes / tflm.total
        target = int(TARGET_RATIO * tflm.total)
        ok &= plan.arena_bytes <= target
        style = "green" if plan.arena_bytes <= target else "red"
        table.add_row(r["name"], f"{tflm.total:,}", f"{tflm.head:,}",
                      f"[{style}]{plan.arena_bytes:,}[/]", f"[{style}]{ratio:.3f}[/]",
                      f"{plan.arena_bytes / tflm.head:.3f}", f"<= {target:,}",
                      plan.peak_layer, f"{plan.scratch_bytes:,}", str(len(plan.in_place)),
                      f"{plan.strategy} ({len(r['winners'])}/{len(plan.candidates)}), "
                      f"{plan.order_source} order")
    console = Console(width=max(Console().width, 175))
    console.print(table)
    console.print(f"Scratch and in-place pairs from "
                  f"{'lowering' if _lowering() else 'the planner estimates (no lowering)'}. "
                  "ratio = tinyml / TFLM total arena; 'head' is TFLM's activation plan "
                  "without its persistent data. Strategy: the first of the placements "
                  "reaching the minimum (how many of the tried placements reach it) and the op "
                  "order used (the graph's, or a reordered one).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
