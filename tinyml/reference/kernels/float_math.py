"""The math TFLM runs in float32 only, and what tinyml compiles it to.

Two cases, by how the TFLite converter writes an int8 model with such an op:

- as a float island, DEQUANTIZE -> op -> QUANTIZE (NEG, SQUARE, SIN, COS, FLOOR, CEIL, ROUND),
  which TFLM runs in float. Its int8 input has only 256 codes, so tinyml.passes.
  float_island_table evaluates the island on every code at compile time and the device runs
  a LOOKUP_TABLE (this module's float kernels, which compute what TFLM's do: exact IEEE
  operations, or the C library's ``sinf``/``cosf`` as TFLM on the host calls them);
- as an int8 builtin (EXP, LOG, SQRT) that TFLM refuses but LiteRT runs: EXP and LOG as a
  table LiteRT fills in float32 (``PopulateLookupTable``, activations_math.
  populate_int8_table), SQRT per element in float32 with a truncating requantization; tinyml
  runs the 256 results as a table, and LiteRT is the oracle.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.reference.kernels.activations_math import libm_float, populate_int8_table
from tinyml.reference.kernels.registry import KernelCall, kernel


def _elementwise(fn):
    """A float32 function of one value applied to a float32 array."""
    def apply(x: np.ndarray) -> np.ndarray:
        flat = x.astype(np.float32).reshape(-1)
        return np.fromiter((fn(v) for v in flat), np.float32, flat.size).reshape(x.shape)
    return apply


def _libm(name: str):
    fn = libm_float(name)
    return lambda v: np.float32(fn(float(v)))


def _round_to_nearest(x: np.ndarray) -> np.ndarray:
    """TFLM's RoundToNearest: halves to the even neighbour, and ``floor + 1`` above a half,
    so -0.4 gives +0.0 where numpy's round gives -0.0."""
    floor_val = np.floor(x)
    diff = x - floor_val
    even = np.fmod(floor_val, np.float32(2)) == 0
    keep = (diff < np.float32(0.5)) | ((diff == np.float32(0.5)) & even)
    return np.where(keep, floor_val, floor_val + np.float32(1)).astype(np.float32)


#: Float kernels of the ops TFLM runs in float32 only, as TFLM computes them.
FLOAT_ONLY = {
    "NEG": np.negative,
    "SQUARE": lambda x: x * x,
    "FLOOR": np.floor,
    "CEIL": np.ceil,
    "ROUND": _round_to_nearest,
    "SIN": _elementwise(_libm("sinf")),
    "COS": _elementwise(_libm("cosf")),
}


@kernel(*FLOAT_ONLY)
def float_only(call: KernelCall) -> np.ndarray:
    if call.quantized:
        raise UnsupportedOpError(call.op.kind, call.op.name,
                                 detail=f"TFLM runs {call.op.kind} in float32 only")
    x = call.inputs[0].astype(np.float32)
    return np.asarray(FLOAT_ONLY[call.op.kind](x), np.float32)


def _log(v: np.float32) -> np.float32:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float32(_LOGF(float(v))) if v > 0 else np.float32(-np.inf if v == 0
                                                                     else np.nan)


_LOGF = libm_float("logf")
_SQRTF = libm_float("sqrtf")
#: The float32 function LiteRT fills the EXP and LOG tables with (``PopulateLookupTable``).
TABLE_FUNCTIONS = {"EXP": _libm("expf"), "LOG": _log}


def sqrt_int8_table(x_t, out) -> np.ndarray:
    """LiteRT's int8 SQRT: sqrt of the dequantized input over the output scale, truncated
    (not rounded), plus the zero point, clamped; defined from the input zero point up (LiteRT
    fails the inference below it), 0 elsewhere."""
    x_scale, out_scale = np.float32(x_t.scale()), np.float32(out.scale())
    table = np.zeros(256, np.int8)
    for code in range(x_t.zero_point(), 128):
        root = np.float32(_SQRTF(float(x_scale * np.float32(code - x_t.zero_point()))))
        value = int(np.trunc(np.float32(root / out_scale))) + out.zero_point()
        table[code & 0xFF] = min(max(value, -128), 127)
    return table


def int8_table(op, x_t, out) -> np.ndarray:
    """LiteRT's int8 table of EXP, LOG or SQRT. A value the table cannot hold as an int32
    (LOG of zero or of a negative input) takes x86's conversion result, INT32_MIN, then the
    clamp: -128, as LiteRT on the host computes it."""
    if op.kind == "SQRT":
        return sqrt_int8_table(x_t, out)
    return populate_int8_table(op, x_t, out, TABLE_FUNCTIONS[op.kind], non_finite=-128)


@kernel("EXP", "LOG", "SQRT")
def table_function(call: KernelCall) -> np.ndarray:
    kind = call.op.kind
    if not call.quantized:
        x = call.inputs[0].astype(np.float32)
        with np.errstate(invalid="ignore"):
            return np.sqrt(x) if kind == "SQRT" else _elementwise(TABLE_FUNCTIONS[kind])(x)
    x_t = call.in_tensors[0]
    if x_t.dtype != "int8":
        raise UnsupportedOpError(kind, call.op.name, detail="int8 only")
    codes = call.inputs[0].astype(np.int8)
    if kind == "SQRT" and codes.size and int(codes.min()) < x_t.zero_point():
        raise TinymlError(f"layer '{call.op.name}' (SQRT): input code {int(codes.min())} is "
                          f"below the zero point {x_t.zero_point()} (a negative value); "
                          f"LiteRT fails the inference there")
    return int8_table(call.op, x_t, call.out)[codes.view(np.uint8)]


@kernel("LOOKUP_TABLE")
def lookup_table(call: KernelCall) -> np.ndarray:
    table = np.asarray(call.attrs.values, dtype=np.int8)
    return table[call.inputs[0].astype(np.int8).view(np.uint8)]
