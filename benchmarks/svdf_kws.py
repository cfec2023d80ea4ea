"""SVDF keyword spotters frame by frame in QEMU: state, equality with TFLM, instructions.

Run: ``.venv/bin/python benchmarks/svdf_kws.py [--frames N] [--target cortex-m4]``

The models are tests/support/svdf_models.py's int8 SVDF -> FULLY_CONNECTED -> SOFTMAX
spotters: the test shapes, plus one of the size of the first SVDF of TFLM's
keyword_scrambled model (96 features, 64 units, memory 8: 1 KiB of int16 state). Each is
compiled for the target, one stream of seeded frames runs through the harness in QEMU (state
carried from frame to frame, reset once at start) and through TFLM's interpreter; the table
gives the state bytes, the arena, the frames whose output differs (must be 0) and the
instructions per frame (median).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from support import svdf_models
    from support.oracles import tflm_interpreter
    from tinyml import firmware
    from tinyml.compiler import compile_model
    from tinyml.sim import qemu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()
    shapes = {**svdf_models.SHAPES,
              "keyword_scrambled-sized": dict(input_size=96, units=64, rank=1, memory=8)}
    table = Table(title=f"SVDF spotters on {args.target}, {args.frames} frames each")
    for column in ("model", "input x units x rank x memory", "state B", "arena B",
                   "mismatches", "instructions/frame"):
        table.add_column(column)
    failed = False
    for label, shape in shapes.items():
        data = svdf_models.svdf_model(**shape, seed=1)
        frames = svdf_models.frames(shape["input_size"], args.frames)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "svdf.tflite"
            path.write_bytes(data)
            result = compile_model(path, args.target, Path(tmp) / "p")
            run = qemu.run_samples(firmware.build_harness(result.project.output_dir,
                                                          result.target),
                                   result.target, result.source_graph, [[x] for x in frames])
        interpreter = tflm_interpreter(data, all_tensors=False)
        mismatches = 0
        for x, produced in zip(frames, run.outputs):
            interpreter.set_input(x, 0)
            interpreter.invoke()
            mismatches += not np.array_equal(interpreter.get_output(0), produced[0])
        failed |= mismatches > 0
        dims = "x".join(str(shape[k]) for k in ("input_size", "units", "rank", "memory"))
        table.add_row(label, dims + (" (int8 state)" if shape.get("state_dtype") == "int8"
                                     else ""),
                      str(result.state_bytes), str(result.plan.arena_bytes), str(mismatches),
                      f"{int(statistics.median(run.instructions)):,}")
    Console().print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
