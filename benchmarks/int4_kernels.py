"""Instructions of the packed-int4 kernels against their int8 twins on cortex-m4 (QEMU).

Run: ``.venv/bin/python benchmarks/int4_kernels.py [--target cortex-m4]``

Per layer shape, one single-layer int8 graph (random weights with random per-channel
scales, as the int4 filters have; hand-built with tests/support/graph_builder.py) and the same
layer with its filter requantized to int4 by round to nearest (tests/support/int4_graphs.py)
are compiled for the target (patching off) and run in QEMU with ``-icount shift=0``; the
profiling build's per-layer SysTick count gives the layer's instructions, deterministically
(1 tick = 1e9 / systick_hz instructions: 40 on the MPS2 boards). Each run's output is checked
against the reference interpreter. The ratio int4 / int8 is the issue's bar (at most 1.3 on
cortex-m4); the filter bytes show what the packing saves in flash. The last figures are in
README.md ("Packed int4 weights").
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from support.graph_builder import Builder  # noqa: E402
from support.int4_graphs import requantize_int4  # noqa: E402
from tinyml import reference  # noqa: E402
from tinyml.codegen.lowering import lower  # noqa: E402
from tinyml.ir import ops as irops  # noqa: E402
from tinyml.targets import load_target  # noqa: E402
from tinyml.verify import profile_layers  # noqa: E402

#: The bar: int4 instructions at most this multiple of int8's on the same shape.
TARGET_RATIO = 1.3


def _scale(b: Builder, x: str, w: str, taps: int) -> float:
    sx = b.graph.tensors[x].scale()
    sw = float(np.mean(b.graph.tensors[w].quant.scale))
    return float(np.float32(sx * sw * np.sqrt(taps) * 80 * 73 / 64))


def conv(name, shape, cout, kernel, stride=(1, 1), padding=(0, 0, 0, 0)):
    b = Builder(name, 1)
    x = b.input(shape, scale=0.02)
    w = b.int8_const((cout, *kernel, shape[3]), 0)
    bias = b.bias(cout, 0.0002)
    attrs = irops.Conv2DAttrs(stride, (1, 1), padding, "RELU")
    return b.finish(b.op("CONV_2D", [x, w, bias], attrs,
                         _scale(b, x, w, kernel[0] * kernel[1] * shape[3])))


def depthwise(name, shape, kernel, stride=(1, 1), padding=(0, 0, 0, 0)):
    b = Builder(name, 2)
    x = b.input(shape, scale=0.02)
    w = b.int8_const((1, *kernel, shape[3]), 3)
    bias = b.bias(shape[3], 0.0002)
    attrs = irops.DepthwiseConv2DAttrs(stride, (1, 1), padding, "RELU6", 1)
    return b.finish(b.op("DEPTHWISE_CONV_2D", [x, w, bias], attrs,
                         _scale(b, x, w, kernel[0] * kernel[1])))


def dense(name, depth, units):
    b = Builder(name, 3)
    x = b.input((1, depth), scale=0.02)
    w = b.int8_const((units, depth), 0)
    bias = b.bias(units, 0.0002)
    attrs = irops.FullyConnectedAttrs("NONE", False)
    return b.finish(b.op("FULLY_CONNECTED", [x, w, bias], attrs, _scale(b, x, w, depth)))


SHAPES = [
    ("conv 1x1 16x16x32->64", lambda: conv("c1x1", (1, 16, 16, 32), 64, (1, 1))),
    ("conv 3x3 16x16x16->32", lambda: conv("c3x3", (1, 16, 16, 16), 32, (3, 3),
                                            padding=(1, 1, 1, 1))),
    ("conv 3x3 s2 32x32x16->32", lambda: conv("c3x3s2", (1, 32, 32, 16), 32, (3, 3), (2, 2),
                                               (0, 1, 0, 1))),
    ("conv 3x3 8x8x64->64 (K 576)", lambda: conv("cwide", (1, 8, 8, 64), 64, (3, 3),
                                                  padding=(1, 1, 1, 1))),
    ("conv 3x3 first 32x32x3->16", lambda: conv("cfirst", (1, 32, 32, 3), 16, (3, 3),
                                                 padding=(1, 1, 1, 1))),
    ("conv 3x3 odd 13x11x5->7", lambda: conv("codd", (1, 13, 11, 5), 7, (3, 3),
                                              padding=(1, 1, 1, 1))),
    ("conv 1x1 odd 15x15x12->9", lambda: conv("c1odd", (1, 15, 15, 12), 9, (1, 1))),
    ("dw 3x3 24x24x32", lambda: depthwise("dw3", (1, 24, 24, 32), (3, 3),
                                          padding=(1, 1, 1, 1))),
    ("dw 3x3 s2 24x24x32", lambda: depthwise("dw3s2", (1, 24, 24, 32), (3, 3), (2, 2),
                                             (0, 1, 0, 1))),
    ("dw 5x5 16x16x32", lambda: depthwise("dw5", (1, 16, 16, 32), (5, 5),
                                          padding=(2, 2, 2, 2))),
    ("dw 3x3 odd 8x8x13", lambda: depthwise("dwodd", (1, 8, 8, 13), (3, 3),
                                            padding=(1, 1, 1, 1))),
    ("fc 256->64", lambda: dense("fc256", 256, 64)),
    ("fc 1024->10", lambda: dense("fc1024", 1024, 10)),
    ("fc odd 203->13", lambda: dense("fcodd", 203, 13)),
]


def layer_instructions(graph, feeds, target, workdir: Path) -> int:
    """The layer's instructions; the run's output must equal the reference interpreter's."""
    expected = [reference.run(graph, feeds)[name] for name in graph.outputs]
    (layer,) = profile_layers(graph, target, feeds, workdir, expected, patch="off")
    return int(layer["instructions"])


def filter_bytes(graph, target) -> int:
    (call,) = lower(graph, target)
    return int(call.params["filter"].values.nbytes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cortex-m4")
    args = parser.parse_args()
    target = load_target(args.target)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinyml-int4-bench-") as tmp:
        for i, (label, make) in enumerate(SHAPES):
            graph8, feeds = make()
            graph4 = requantize_int4(graph8)
            n8 = layer_instructions(graph8, feeds, target, Path(tmp) / f"s8_{i}")
            n4 = layer_instructions(graph4, feeds, target, Path(tmp) / f"s4_{i}")
            (call,) = lower(graph4, target)
            rows.append((label, call.function, n8, n4, n4 / n8, filter_bytes(graph8, target),
                         filter_bytes(graph4, target)))
            print(f"{label:28s} {rows[-1][1]:32s} {n8:>10,} {n4:>10,} {n4 / n8:6.3f}",
                  flush=True)
    print()
    print(f"Instructions per layer on {target.name} (QEMU -icount, profiling build)")
    print()
    print("| layer | int4 kernel | int8 | int4 | int4/int8 | filter B int8 | filter B int4 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, function, n8, n4, ratio, b8, b4 in rows:
        print(f"| {label} | `{function}` | {n8:,} | {n4:,} | {ratio:.3f} | {b8:,} | {b4:,} |")
    worst = max(r[4] for r in rows)
    print()
    print(f"worst ratio {worst:.3f} (bar: {TARGET_RATIO})")
    return 0 if worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
