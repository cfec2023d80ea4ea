"""16-bit activations (TFLite's "16x8" quantization): which layers, and their conventions.

Why: int8 activations give a layer's output 256 levels; when a model's output SQNR is limited
by activation rounding (keyword spotting's deep depthwise stack, regression outputs), int16
activations with int8 weights cost twice the activation RAM and no extra flash, and TFLM runs
them with its reference kernels. ``--activations int16`` makes every layer that has such a
kernel 16x8; ``--int16-layers NAMES`` only the named layers (the ones the int8 report shows
with the worst SQNR), the rest staying int8.

The conventions are those the TFLite converter writes for
``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`` (checked tensor by tensor
against its output on the digits CNN and MLPerf Tiny's kws model) and that TFLM's int16
kernels require:

- activations: int16, symmetric, zero point 0, scale = max(|min|, |max|) / 32767 of the
  calibrated range (TFLM's int16 ADD, MUL, SOFTMAX, LOGISTIC, TANH, RELU and CONCATENATION
  refuse any other zero point);
- weights: int8 symmetric per channel, as for int8 layers;
- CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED biases: int64 at input_scale x
  weight_scale[c] (TFLM's 16x8 depthwise kernel only reads int64 biases);
- SOFTMAX, LOGISTIC and TANH outputs: scale 1/32768, zero point 0 (TFLM checks it);
- the rules of the int8 plan otherwise: MAX_POOL, RESHAPE, PAD, RELU6 ... keep their input's
  quantization; MEAN, ADD, MUL get their own range; CONCATENATION, MAXIMUM and MINIMUM
  share one quantization, the union of their inputs' ranges, inputs requantized to it.

Where an int8 layer reads an int16 tensor or the other way round, a QUANTIZE op requantizes
it (TFLM's QUANTIZE converts int8 <-> int16), the tensor's calibrated range quantized for the
reader's type; TFLite writes such QUANTIZE ops between layers of different types too.

Which layers are 16x8 (:func:`layer_types`): a layer kind TFLM has an int16 kernel for
(:data:`INT16_KINDS`); with ``--activations int16`` every such layer, the others stay int8
(HARD_SWISH, LOG_SOFTMAX, CLIP, comparisons ...). With ``--int16-layers`` the named layers,
plus every unnamed layer that only moves or compares values (pooling, reshapes, RELU6:
the "same as input" ops) reading an int16 tensor, which would otherwise need two requantizations
around it for nothing.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Graph, Quantization
from tinyml.ir.ops import kinds_where
from tinyml.quantize.params import activation_quantization

ACTIVATION_TYPES = ("int8", "int16")
INT16_QMAX = 32767
#: Output quantization of SOFTMAX, LOGISTIC and TANH in int16 (TFLM requires it).
INT16_UNIT = (1.0 / 32768.0, 0)
INT16_FIXED_OUTPUT = {"SOFTMAX": INT16_UNIT, "LOGISTIC": INT16_UNIT, "TANH": INT16_UNIT}
#: Layer kinds TFLM runs with int16 activations (and int8 weights) that the quantizer makes
#: 16x8.
INT16_KINDS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "SUB", "MUL", "MEAN", "SUM",
    "RELU", "RELU6", "LEAKY_RELU", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "PAD",
    "TRANSPOSE", "STRIDED_SLICE", "SOFTMAX", "LOGISTIC", "TANH", "CONCATENATION", "MAXIMUM",
    "MINIMUM"})
_FOLLOWERS = frozenset(kinds_where(quantize="input")) & INT16_KINDS


def symmetric_activation(low: float, high: float) -> Quantization:
    """int16 for real values in [low, high]: zero point 0, scale max(|low|, |high|) / 32767
    in float32 (1 for an all-zero tensor, which any scale represents exactly)."""
    peak = max(abs(float(low)), abs(float(high)))
    if not np.isfinite(peak):
        raise ValueError(f"non-finite range [{low}, {high}]")
    if peak == 0.0:
        return Quantization([1.0], [0])
    scale = np.float32(peak / INT16_QMAX)
    if scale == 0:
        scale = np.float32(np.finfo(np.float32).tiny)
    return Quantization([scale], [0])


def quantization_for(dtype: str, low: float, high: float) -> Quantization:
    """The quantization of real range [low, high] as an activation of type ``dtype``."""
    if dtype == "int16":
        return symmetric_activation(low, high)
    return activation_quantization(low, high)


def layer_types(fg: Graph, activations: str = "int8",
                int16_layers: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The activation type ("int8" or "int16") of every op of float graph ``fg``, by name.

    Raises a one-line TinymlError for an unknown activation type, a name in ``int16_layers``
    that is no layer of the graph, or a named layer TFLM has no int16 kernel for."""
    if activations not in ACTIVATION_TYPES:
        raise TinymlError(f"unknown activation type '{activations}' (known: "
                          f"{', '.join(ACTIVATION_TYPES)})")
    names = {op.name: op for op in fg.ops}
    wanted = set()
    for name in int16_layers:
        op = names.get(name)
        if op is None:
            known = ", ".join(list(names)[:12]) + (", ..." if len(names) > 12 else "")
            raise TinymlError(f"--int16-layers: no layer '{name}' in the model (layers: "
                              f"{known})")
        if op.kind not in INT16_KINDS:
            raise TinymlError(f"--int16-layers: layer '{name}' ({op.kind}) has no int16 "
                              f"kernel in TFLM (int16 layers: "
                              f"{', '.join(sorted(INT16_KINDS))})")
        wanted.add(name)
    producers = fg.producers()
    types: dict[str, str] = {}
    for op in fg.ops:
        if activations == "int16":
            int16 = op.kind in INT16_KINDS
        elif op.name in wanted:
            int16 = True
        elif op.kind in _FOLLOWERS and op.inputs:
            source = producers.get(op.inputs[0])
            int16 = source is not None and types.get(source.name) == "int16"
        else:
            int16 = False
        types[op.name] = "int16" if int16 else "int8"
    return types


def input_types(fg: Graph, types: dict[str, str]) -> dict[str, str]:
    """The type of each graph input: int16 when a 16x8 layer reads it (an int8 reader then
    gets it requantized), else int8."""
    consumers = fg.consumers()
    return {name: "int16" if any(types.get(op.name) == "int16"
                                 for op in consumers.get(name, [])) else "int8"
            for name in fg.inputs}
