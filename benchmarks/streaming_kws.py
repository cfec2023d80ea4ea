"""Streaming models frame by frame in QEMU: state, equality with TFLM, instructions a frame.

Run: ``.venv/bin/python benchmarks/streaming_kws.py [--frames N] [--target cortex-m4]``

The models are tests/support/streaming_models.py's converter-made streaming models (the
smallest window model, one whose state is quantized apart from its window, and a keyword
spotter with two variables). Each is compiled for the target, one stream of seeded frames
runs through the harness in QEMU (state carried from frame to frame, reset once at start) and
through TFLM's interpreter; the table gives the state bytes, the frames whose output differs
(must be 0) and the instructions per frame.
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

    from support import streaming_models
    from support.oracles import tflm_interpreter
    from tinyml import firmware
    from tinyml.compiler import compile_model
    from tinyml.sim import qemu

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()
    models = {"window (10 features, 2 frames kept)": streaming_models.window_model(),
              "decaying window (table-requantized state)":
                  streaming_models.window_model(decay=0.5),
              "keyword spotter (20 features, 2 variables)": streaming_models.keyword_spotter()}
    table = Table(title=f"streaming models on {args.target}, {args.frames} frames each")
    for column in ("model", "state B", "arena B", "frames", "mismatches", "instructions/frame"):
        table.add_column(column)
    failed = False
    for label, path in models.items():
        with tempfile.TemporaryDirectory() as tmp:
            result = compile_model(path, args.target, Path(tmp) / "p")
            frames = streaming_models.frames(path, args.frames)
            run = qemu.run_samples(firmware.build_harness(result.project.output_dir,
                                                          result.target),
                                   result.target, result.source_graph, [[x] for x in frames])
        interpreter = tflm_interpreter(path, all_tensors=False)
        mismatches = 0
        for x, produced in zip(frames, run.outputs):
            interpreter.set_input(x, 0)
            interpreter.invoke()
            mismatches += not np.array_equal(interpreter.get_output(0), produced[0])
        failed |= mismatches > 0
        table.add_row(label, str(result.state_bytes), str(result.plan.arena_bytes),
                      str(len(frames)), str(mismatches),
                      f"{int(statistics.median(run.instructions)):,}")
    Console().print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
