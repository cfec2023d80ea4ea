"""MLPerf Tiny int8 models on an emulated Cortex-M4: memory, flash, instructions, vs TFLM.

Run: ``.venv/bin/python benchmarks/mlperf_tiny.py [--target cortex-m4] [--samples 5]``

For each model, measured in this run:

- tinyml: the firmware is compiled for the target, built with arm-none-eabi-gcc and verified
  in QEMU (``tinyml verify``: bit-exact against tflite-micro on seeded random samples plus
  the two extremes). Peak SRAM is the image's RAM: .data + .bss (the arena) + the measured
  stack high-water mark; flash is code + constants + .data from the ELF. Instructions per
  inference are the median over the random samples, counted by SysTick under QEMU's
  ``-icount shift=0`` (one instruction per nanosecond).
- TFLM's arena, measured with the ``tflite-micro`` Python package (its recording allocator;
  see ``benchmarks/memory_vs_tflm.py``). That build runs on the 64-bit host, whose pointers
  make TFLM's persistent structures larger than on a 32-bit core; the 32-bit figures of
  ``TFLM_PUBLISHED`` are shown beside it.

TFLM's instruction counts are NOT measured here: they are the figures recorded in
``TFLM_PUBLISHED``, measured on the same set-up (QEMU 7.2 ``mps2-an386``, ``-icount
shift=0``, TFLM built for cortex-m4+fp, release, arm-none-eabi-gcc 12.2). Building TFLM for a
Cortex-M needs its C++ sources, which are not available offline on this machine. The ratios
use those recorded figures; the bar is 0.8x TFLM with CMSIS-NN kernels.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLPERF_DIR = REPO.parent / "shared" / "models" / "mlperf_tiny"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODELS = ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant", "ad01_int8"]

#: TFLM's figures on QEMU mps2-an386 (recorded, not measured here; see the docstring):
#: instructions per inference with reference kernels and with CMSIS-NN, and the arena with
#: reference kernels on the 32-bit target.
TFLM_PUBLISHED = {
    "kws_ref_model": dict(reference=43_040_080, cmsis_nn=7_696_960, arena_32bit=22_772),
    "vww_96_int8": dict(reference=100_269_000, cmsis_nn=24_116_880, arena_32bit=100_660),
    "pretrainedResnet_quant": dict(reference=107_403_640, cmsis_nn=29_865_040,
                                   arena_32bit=54_340),
    "ad01_int8": dict(reference=1_953_200, cmsis_nn=583_840, arena_32bit=2_260),
}
#: The bar: instructions at most this fraction of TFLM + CMSIS-NN's.
BAR = 0.8


def measure(name: str, target: str, samples: int, patch: str = "auto",
            layers: int = 0) -> dict:
    from memory_vs_tflm import tflm_arena
    from tinyml.verify import verify

    path = MLPERF_DIR / f"{name}.tflite"
    start = time.monotonic()
    report = verify(path, target, samples=samples, profile=layers > 0, patch=patch).to_json()
    seconds = time.monotonic() - start
    from tinyml.compiler import plan
    compiled = plan(path, target, patch=patch)
    return dict(name=name, report=report, macs=compiled.macs,
                arena=compiled.plan.arena_bytes, tflm=tflm_arena(path.read_bytes()),
                seconds=seconds)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cortex-m4",
                        help="an emulated Cortex-M target (default cortex-m4; TFLM's figures "
                             "are for cortex-m4)")
    parser.add_argument("--samples", type=int, default=5,
                        help="random samples per model (plus the two extremes)")
    parser.add_argument("--patch", default="auto",
                        help="patch-based inference: auto (default, as tinyml compile), off, "
                             "or SPLIT:N")
    parser.add_argument("--layers", type=int, default=0, metavar="N",
                        help="also list each model's N layers with the most instructions "
                             "(from a profiling build)")
    args = parser.parse_args(argv)
    missing = [m for m in MODELS if not (MLPERF_DIR / f"{m}.tflite").exists()]
    if missing:
        print(f"MLPerf Tiny models missing in {MLPERF_DIR}: {', '.join(missing)}")
        return 1
    rows = [measure(m, args.target, args.samples, args.patch, args.layers) for m in MODELS]

    console = Console(width=max(Console().width, 200))
    table = Table(title=f"MLPerf Tiny int8 on {args.target} (QEMU "
                        f"{rows[0]['report']['machine']}, -icount shift=0)")
    columns = [("model", "left"), ("exact", "right"), ("MACs", "right"),
               ("RAM", "right"), ("arena", "right"), ("stack", "right"),
               ("TFLM arena", "right"), ("TFLM arena 32-bit*", "right"), ("RAM / TFLM", "right"),
               ("flash", "right"), ("instructions", "right"), ("MACs/instr", "right"),
               ("TFLM ref*", "right"), ("TFLM CMSIS-NN*", "right"),
               (f"bar ({BAR}x CMSIS-NN)", "right"), ("vs ref", "right"),
               ("vs CMSIS-NN", "right"), ("time", "right")]
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=column == "model")
    within = True
    for r in rows:
        rep, published = r["report"], TFLM_PUBLISHED[r["name"]]
        instructions = rep["instructions_per_inference"]
        vs_cmsis = instructions / published["cmsis_nn"]
        within &= vs_cmsis <= BAR
        style = "green" if vs_cmsis <= BAR else "red"
        exact = (f"{rep['samples'] - rep['mismatched_outputs']}/{rep['samples']}")
        table.add_row(
            r["name"], f"[{'green' if rep['mismatched_outputs'] == 0 else 'red'}]{exact}[/]",
            f"{r['macs']:,}", f"{rep['ram_bytes']:,}", f"{r['arena']:,}",
            f"{rep['stack_bytes']:,}", f"{r['tflm'].total:,}", f"{published['arena_32bit']:,}",
            f"{rep['ram_bytes'] / r['tflm'].total:.2f}", f"{rep['flash_bytes']:,}",
            f"[{style}]{instructions:,}[/]", f"{r['macs'] / instructions:.3f}",
            f"{published['reference']:,}", f"{published['cmsis_nn']:,}",
            f"{int(BAR * published['cmsis_nn']):,}",
            f"{instructions / published['reference']:.2f}",
            f"[{style}]{vs_cmsis:.2f}[/]", f"{r['seconds']:.1f} s")
    console.print(table)
    # The headline figures alone, so that no column is cut on a narrow terminal.
    bar_table = Table(title=f"Instructions per inference on {args.target} vs the bar "
                            f"({BAR}x TFLM + CMSIS-NN*)")
    for column in ("model", "exact", "instructions", "TFLM CMSIS-NN*", "bar", "vs CMSIS-NN",
                   "within bar"):
        bar_table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        rep, published = r["report"], TFLM_PUBLISHED[r["name"]]
        instructions = rep["instructions_per_inference"]
        ok = instructions <= BAR * published["cmsis_nn"]
        bar_table.add_row(r["name"], f"{rep['samples'] - rep['mismatched_outputs']}/"
                                     f"{rep['samples']}", f"{instructions:,}",
                          f"{published['cmsis_nn']:,}", f"{int(BAR * published['cmsis_nn']):,}",
                          f"{instructions / published['cmsis_nn']:.3f}",
                          "[green]yes[/]" if ok else "[red]no[/]")
    console.print(bar_table)
    if args.layers:
        for r in rows:
            total = r["report"]["instructions_per_inference"]
            layers = sorted(r["report"]["layer_instructions"], key=lambda x: -x["instructions"])
            hot = [f"{x['op']} {x['name']} {x['instructions']:,} "
                   f"({x['instructions'] / total:.0%})" for x in layers[:args.layers]]
            console.print(f"{r['name']}, layers with the most instructions: " + "; ".join(hot))
    console.print(
        "RAM = .data + .bss (arena included) + measured stack of the firmware image; flash = "
        "code + constants + .data. TFLM arena: measured now with the tflite-micro package (a "
        "64-bit host build). exact = samples bit-identical to tflite-micro and the reference.\n"
        "* Not measured here: recorded figures for TFLM on the same emulator set-up "
        "(QEMU 7.2 mps2-an386, -icount shift=0, cortex-m4+fp, release, arm-none-eabi-gcc 12.2). "
        "TFLM cannot be built for Cortex-M on this machine: its C++ sources are not available "
        f"offline. Bar: instructions <= {BAR}x TFLM with CMSIS-NN"
        + ("" if args.target == "cortex-m4" else " (the published figures are for cortex-m4)")
        + ".")
    return 0 if within and all(r["report"]["mismatched_outputs"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
