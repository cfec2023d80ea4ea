"""``compile --stream`` in QEMU: instructions per new frame against the full window.

Run: ``.venv/bin/python benchmarks/stream_window.py [--frames N] [--target cortex-m4]``

The models are tests/support/stream_window_models.py's converter-made keyword spotters over a
49x10 window (several time convs, one dilated, global average pooling, a dense layer) and one
over a Keras Conv1D stack, and two whose streamed prefix stops at the second layer (a strided
time conv, a 'same'-padded one). Each is compiled twice for the target:
the ordinary model (one call = the whole window) and the ``--stream`` model (one call = one
new frame). One stream of seeded frames runs through the stream firmware in QEMU, and every
full window it implies (the window starting as the input's zero point) through the ordinary
firmware; the table gives the instructions of each (median), their ratio, the state bytes
and the frames whose outputs differ (must be 0).
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


def measure(path: Path, target: str, count: int) -> dict:
    """Both builds of ``path`` on one stream of ``count`` frames in QEMU."""
    import numpy as np

    from support import stream_window_models as models
    from tinyml import firmware
    from tinyml.compiler import compile_model
    from tinyml.sim import qemu

    with tempfile.TemporaryDirectory() as tmp:
        full = compile_model(path, target, Path(tmp) / "full")
        stream = compile_model(path, target, Path(tmp) / "stream", stream=True)
        graph = full.source_graph
        x = graph.tensors[graph.inputs[0]]
        frames = models.frame_stream((1, 1) + tuple(x.shape[2:]), count)
        windows = models.windows(frames, x.shape[1], int(x.quant.zero_point[0]))
        runs = {}
        for label, result, samples in (("full", full, windows), ("stream", stream, frames)):
            elf = firmware.build_harness(result.project.output_dir, result.target)
            runs[label] = qemu.run_samples(elf, result.target, result.io_graph,
                                           [[s] for s in samples])
    mismatches = sum(not np.array_equal(a[0], b[0])
                     for a, b in zip(runs["full"].outputs, runs["stream"].outputs))
    per_frame = int(statistics.median(runs["stream"].instructions))
    per_window = int(statistics.median(runs["full"].instructions))
    return dict(full=per_window, stream=per_frame, ratio=per_frame / per_window,
                state=stream.state_bytes, arena_full=full.plan.arena_bytes,
                arena_stream=stream.plan.arena_bytes, mismatches=mismatches,
                frames=len(frames), summary=stream.stream.summary())


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    from support import stream_window_models as models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()
    cases = {"kws 49x10 (5 time convs, dilated dw)": models.window_kws(),
             "Keras Conv1D 49x10 (3 time convs, 1 dilated)":
                 models.window_kws(models.CONV1D_LAYERS),
             "strided at layer 2 (prefix stops)": models.window_kws(models.STRIDED_LAYERS),
             "'same' at layer 2 (prefix stops)": models.window_kws(models.SAME_LAYERS)}
    table = Table(title=f"--stream on {args.target}, {args.frames} frames each")
    for column in ("model", "full window instr.", "per new frame", "ratio", "state B",
                   "arena B full/stream", "mismatches"):
        table.add_column(column)
    failed = False
    for label, path in cases.items():
        m = measure(path, args.target, args.frames)
        failed |= m["mismatches"] > 0
        table.add_row(label, f"{m['full']:,}", f"{m['stream']:,}", f"{m['ratio']:.3f}",
                      f"{m['state']:,}", f"{m['arena_full']:,} / {m['arena_stream']:,}",
                      f"{m['mismatches']} of {m['frames']}")
        print(f"{label}: {m['summary']}")
    Console(width=160).print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
