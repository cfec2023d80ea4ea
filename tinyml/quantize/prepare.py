"""Float passes that run before quantization, and the check that the graph is float.

Why they matter to int8 accuracy (each pass documents itself in ``tinyml/passes``):

- ``fold_constants``: constant subgraphs (DEQUANTIZE of float16 weights, shape arithmetic)
  become constants, so weights are plain float arrays when their scales are chosen;
- ``dequantize_weights``: int8 weights of a dynamic-range model become float32 again, so they
  can get per-channel scales tied to the bias scale;
- ``fold_batch_norm`` / ``fold_channel_affine`` / ``batch_norm_to_affine``: a batch norm
  (or the per-channel MUL and ADD an exporter wrote it as) folds into the preceding layer's
  weights and bias, or becomes a depthwise 1x1 convolution (MUL and ADD off 4-D) that TFLM
  runs;
- ``prelu_from_relus``: ``relu(x) + k * relu(-x)``, tf2onnx's form of Keras' PReLU, becomes
  one PRELU (one rounding instead of four requantized ops);
- ``l2_from_rsqrt``: ``x * rsqrt(max(sum(x * x), eps))``, tf2onnx's form of
  ``tf.math.l2_normalize``, becomes one L2_NORMALIZATION;
- ``fuse_float_activation``: a ReLU (ReLU6, clip to [-1, 1]) joins its producer, whose
  output range then starts at the clamp's floor instead of wasting codes on negative values;
- ``select_from_masks``: ``cast(c) * a + cast(not c) * b``, tf2onnx's form of a float
  ``tf.where``, becomes the SELECT_V2 it stands for (a BOOL -> float CAST has no int8
  kernel);
- ``squared_difference_from_sub``: ``(a - b) * (a - b)``, tf2onnx's form of SquaredDifference,
  becomes SQUARED_DIFFERENCE (one rounding, not a rounded difference squared);
- ``neg_as_mul``: a float NEG (Keras' LayerNormalization negates its mean) becomes a MUL by
  -1, which TFLM runs in int8 (it has no int8 NEG);
- ``dead_code``: what the rewrites leave unread;
- ``fold_dilated_conv`` / ``fold_pad`` (conv ops): SPACE_TO_BATCH_ND -> convolution ->
  BATCH_TO_SPACE_ND becomes one dilated convolution and a zero PAD the convolution's own
  padding, before calibration, so the int8 graph (and its TFLite export) has neither:
  a batch norm after them can then fold too, and TFLM's SPACE_TO_BATCH_ND, which pads with
  an uninitialized value, is never exported;
- ``affine_through_reshape`` (conv ops): a per-channel MUL/ADD after the RESHAPE that
  squeezes a Conv1D's unit height moves above it, where ``fold_channel_affine`` folds it.

The tensors of the prepared graph keep their names through quantization, which is how the
report pairs each int8 tensor with the float values it approximates.
"""

from __future__ import annotations

import copy

from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.passes.dead_code import EliminateDeadOps
from tinyml.passes.dequantize_weights import DequantizeWeights
from tinyml.passes.fold_batch_norm import (BatchNormToAffine, FoldBatchNorm,
                                           FoldChannelAffine)
from tinyml.passes.fold_constants import FoldConstants
from tinyml.passes.framework import apply_passes, prune_tensors
from tinyml.passes.fuse_float_activation import FuseFloatActivation
from tinyml.passes.l2_from_rsqrt import L2FromRsqrt
from tinyml.passes.neg_as_mul import NegAsMul
from tinyml.passes.prelu_from_relus import PreluFromRelus
from tinyml.passes.select_from_masks import SelectFromMasks
from tinyml.passes.squared_difference_from_sub import SquaredDifferenceFromSub
from tinyml.passes.fold_dilated_conv import FoldDilatedConv  # conv ops
from tinyml.passes.fold_pad import FoldPad  # conv ops
from tinyml.passes.affine_through_reshape import AffineThroughReshape  # conv ops

FLOAT_PASSES = (FoldConstants, DequantizeWeights, FoldBatchNorm, FoldChannelAffine,
                BatchNormToAffine, PreluFromRelus, L2FromRsqrt, FuseFloatActivation,
                SelectFromMasks, SquaredDifferenceFromSub, NegAsMul, EliminateDeadOps,
                # ---- conv ops
                FoldDilatedConv, FoldPad, AffineThroughReshape)


def check_float(graph: Graph) -> None:
    """Quantization starts from a float graph: refuse int8 inputs or integer computations."""
    for name in graph.inputs:
        t = graph.tensors[name]
        if t.dtype != "float32":
            raise TinymlError(f"graph input '{name}' is {t.dtype}: the model is already "
                              f"quantized (quantize takes a float model)")
    for op in graph.ops:
        for t in graph.op_inputs(op) + graph.op_outputs(op):
            if t is not None and not t.is_constant and t.dtype in ("int8", "uint8", "int16"):
                raise TinymlError(f"layer '{op.name}' ({op.kind}) computes on {t.dtype}: the "
                                  f"model is already (partly) quantized; quantize takes a "
                                  f"float model")


def prepare(graph: Graph) -> tuple[Graph, dict[str, int]]:
    """A float copy of ``graph`` ready to calibrate, and the rewrites made per pass."""
    check_float(graph)
    result = copy.deepcopy(graph)
    counts = apply_passes(result, [p() for p in FLOAT_PASSES])
    prune_tensors(result)
    result.finalize()
    return result, counts
