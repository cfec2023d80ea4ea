"""Graph passes: rewrites between the frontends and code generation.

``run_passes(graph)`` applies the default pipeline to a copy of the graph and returns it. Every
pass preserves the reference interpreter's results bit for bit (tests/test_passes.py checks
it on the MLPerf Tiny int8 models and the test zoo):

- ``fold_constants``: ops whose inputs are all constant (the SHAPE/STRIDED_SLICE/PACK chain of
  Keras Flatten, constant subgraphs) become constants, evaluated with the reference kernels;
- ``fuse_activation``: a standalone RELU/RELU6/CLIP becomes its producer's fused activation
  where that is provably identical on int8;
- ``reshape_alias``: every RESHAPE becomes an alias of its input (static shape, no code; the
  memory planner shares the buffer);
- ``fuse_residual_add``: a residual ADD joins the CONV_2D producing one operand (CONV_2D_ADD),
  so the sum can be written over the skip input in place;
- ``dead_code``: ops nobody reads are dropped;
- ``fold_dilated_conv``: SPACE_TO_BATCH_ND -> convolution -> BATCH_TO_SPACE_ND (the
  converter's form of a dilated convolution) becomes one convolution with dilation;
- ``fold_pad``: a PAD by real zeros becomes padding of the convolution reading it;
- ``float_island_table``: DEQUANTIZE -> exact float ops (NEG, ABS, ...) -> QUANTIZE, the
  converter's float fallback inside an int8 graph, becomes one int8 LOOKUP_TABLE;
- ``int8_state``: a float variable that only ever holds dequantized int8 codes of one
  quantization (a streaming model's state) keeps the codes instead;
- ``float_island_movement``: DEQUANTIZE -> data movement (CONCATENATION, slices, splits...)
  -> QUANTIZE (one per piece of a split) runs in int8, with a LOOKUP_TABLE per leaf or piece
  whose quantization differs.

Unreferenced tensors are pruned and the graph re-validated at the end.

Not in the pipeline: ``stream_window`` (``compile --stream``) changes what the model's input
is (one frame of a sliding window instead of the window), so the compiler applies it after
the passes, only when asked.
"""

from __future__ import annotations

import copy
from typing import Sequence

from tinyml.ir import Graph
from tinyml.passes.dead_code import EliminateDeadOps
from tinyml.passes.fold_constants import FoldConstants
from tinyml.passes.framework import OptimizerPass, apply_passes, prune_tensors
from tinyml.passes.fuse_activation import FuseActivation
from tinyml.passes.fuse_residual_add import FuseResidualAdd
from tinyml.passes.reshape_alias import ReshapeAlias, alias_roots, is_alias
from tinyml.passes.fold_dilated_conv import FoldDilatedConv  # conv ops
from tinyml.passes.fold_pad import FoldPad  # conv ops
from tinyml.passes.float_island_table import FloatIslandTable  # attention ops
from tinyml.passes.int8_state import Int8State  # streaming ops
from tinyml.passes.float_island_movement import FloatIslandMovement  # streaming ops

#: The default pipeline, in the order each sweep applies it.
DEFAULT_PASSES: tuple[type[OptimizerPass], ...] = (
    FoldConstants, FuseActivation, ReshapeAlias, FuseResidualAdd, EliminateDeadOps,
    # ---- conv ops
    FoldDilatedConv, FoldPad,
    # ---- attention ops
    FloatIslandTable,
    # ---- streaming ops
    Int8State, FloatIslandMovement)
PASS_NAMES = tuple(p.name for p in DEFAULT_PASSES)


def run_passes(graph: Graph, passes: Sequence[str] | None = None,
               stats: dict[str, int] | None = None) -> Graph:
    """A rewritten copy of ``graph``: the default pipeline, or only the passes named in
    ``passes`` (see :data:`PASS_NAMES`). ``stats``, if given, receives rewrites per pass."""
    chosen = [p() for p in DEFAULT_PASSES if passes is None or p.name in passes]
    unknown = set(passes or ()) - set(PASS_NAMES)
    if unknown:
        raise ValueError(f"unknown passes {sorted(unknown)} (known: {', '.join(PASS_NAMES)})")
    result = copy.deepcopy(graph)
    counts = apply_passes(result, chosen)
    prune_tensors(result)
    result.finalize()
    if stats is not None:
        stats.update(counts)
    return result


__all__ = ["run_passes", "DEFAULT_PASSES", "PASS_NAMES", "OptimizerPass", "apply_passes",
           "alias_roots", "is_alias"]
