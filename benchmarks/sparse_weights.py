"""Sparse weight storage: flash and decode cost against dense, per layer, on Cortex-M4.

Run: ``.venv/bin/python benchmarks/sparse_weights.py [--quick] [--target cortex-m0plus]``

For fully connected and 1x1 convolution layers of typical sizes, the weights are pruned by
magnitude to 50, 80 and 90 % zeros (int8 values, and int4 values [-8, 7]); tinyml compiles
each single-layer model for cortex-m4 and runs it in QEMU (``-icount shift=0``: counts are
instructions, deterministic), checking its outputs against the numpy reference. The dense
row is the same layer unpruned: the dense kernels' count does not depend on the values (on
cortex-m4 the DSP kernels, SMLAD on pairs of int8; on cortex-m0plus the portable ones). Flash is the weight filter alone: dense int8
one byte a weight, dense int4 half, sparse the run-length rows and their uint16 counts as
weights.c holds them. Layer counts come from the profiling build, at SysTick resolution
(40 instructions on cortex-m4, 62.5 on cortex-m0plus).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from support.sparse_models import conv_layer, fc_layer, sparsify  # noqa: E402
from tinyml import reference  # noqa: E402
from tinyml.codegen import sparse  # noqa: E402
from tinyml.codegen.lowering import lower  # noqa: E402
from tinyml.firmware import MemoryOverflow  # noqa: E402
from tinyml.flash import layer_flash  # noqa: E402
from tinyml.targets import load_target  # noqa: E402
from tinyml.verify import profile_layers  # noqa: E402

SPARSITIES = (0.5, 0.8, 0.9)


def layers(quick: bool):
    yield "FC 256->64", fc_layer(1, 256, 64)
    if not quick:
        yield "FC 640->128", fc_layer(2, 640, 128)
    yield "1x1 conv 8x8x64->64", conv_layer(3, (8, 8), 64, 64, (1, 1))
    if not quick:
        yield "1x1 conv 16x16x32->32", conv_layer(4, (16, 16), 32, 32, (1, 1))
        yield "1x1 conv 4x4x64->64", conv_layer(5, (4, 4), 64, 64, (1, 1))


def measure(graph, twin, feeds, target, workdir: Path) -> tuple[int, str, int]:
    """(layer instructions, weight format, weight bytes) of the single-layer ``graph``."""
    expected = reference.run(twin, feeds, keep_all=True)
    outputs = [expected[name] for name in twin.outputs]
    (row,) = profile_layers(graph, target, feeds, workdir, outputs, patch="off")
    (flash,) = layer_flash(graph, lower(graph, target))
    return row["instructions"], flash.format, flash.weights_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two layers only")
    parser.add_argument("--target", default="cortex-m4",
                        help="an emulated target (default cortex-m4; cortex-m0plus runs the "
                             "portable kernels)")
    args = parser.parse_args()
    target = load_target(args.target)
    print(f"{target.name}: instructions in QEMU {target.qemu_machine}\n")
    print("| layer | sparsity | values | format | weight bytes | vs dense int8 | "
          "instructions | vs dense int8 |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="tinyml-sparse-bench-") as tmp:
        for name, (graph, feeds) in layers(args.quick):
            try:
                dense_instr, fmt, dense_bytes = measure(graph, graph, feeds, target,
                                                        Path(tmp) / "dense")
            except MemoryOverflow as exc:  # the harness's buffers on a 16 KB part
                print(f"| {name} | | | {exc} | | | | |")
                continue
            print(f"| {name} | 0 % | int8 | {fmt} | {dense_bytes:,} | 1.00x | "
                  f"{dense_instr:,} | 1.00x |")
            print(f"| {name} | 0 % | int4 | dense int4 | {(dense_bytes + 1) // 2:,} | 0.50x | "
                  f"(dense int4 kernels: not measured here) | |")
            for sparsity in SPARSITIES:
                for int4 in (False, True):
                    compiled, twin = sparsify(graph, sparsity, seed=7, int4=int4)
                    w = compiled.tensors[compiled.ops[0].inputs[1]]
                    matrix = np.asarray(w.data).reshape(w.shape[0], -1)
                    if sparse.choose(matrix, w.dtype) is None:  # stays dense
                        encoded = sparse.encode(matrix, sparse.VALUE_BITS[w.dtype]).nbytes
                        dense = sparse.dense_bytes(matrix.size, w.dtype)
                        print(f"| {name} | {sparsity:.0%} | {w.dtype} | dense {w.dtype} "
                              f"(sparse would take {encoded:,}) | {dense:,} | "
                              f"{dense / dense_bytes:.3f}x | - | - |", flush=True)
                        continue
                    instr, fmt, size = measure(compiled, twin, feeds, target,
                                               Path(tmp) / f"s{sparsity}{int4}")
                    print(f"| {name} | {sparsity:.0%} | {'int4' if int4 else 'int8'} | {fmt} | "
                          f"{size:,} | {size / dense_bytes:.3f}x | {instr:,} | "
                          f"{instr / dense_instr:.2f}x |", flush=True)


if __name__ == "__main__":
    np.set_printoptions(linewidth=120)
    main()
