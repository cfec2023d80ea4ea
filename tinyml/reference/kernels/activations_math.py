"""TANH, LEAKY_RELU, PRELU, ELU and ABS.

int8 follows TFLM's kernels, each with its own way of reaching the output scale:

- TANH evaluates gemmlowp's fixed-point tanh on the input in Q4.27 (the input moved there as
  LOGISTIC's is) and writes the Q0.31 result in units of 1/128 with no zero point: TFLM
  ignores the output's quantization, which the converter always sets to (1/128, 0);
- LEAKY_RELU requantizes x >= 0 with input_scale / output_scale and x < 0 with
  input_scale * alpha / output_scale (both ratios in float32, then QuantizeMultiplier);
- PRELU does the same with a quantized alpha tensor: the negative side multiplies the
  input and alpha offsets in int32 and rescales by input_scale * alpha_scale / output_scale
  (in double); alpha broadcasts against the input (per channel, for Keras' PReLU with
  shared spatial axes);
- ELU is a 256-entry table TFLM builds in Prepare with float arithmetic (``expf``);
- ABS takes |x - input zero point| and rescales it only when the two scales differ.

Where TFLM computes a constant in float32 (LEAKY_RELU's and ABS's scale ratios, ELU's
table), the numpy code does the same operations in ``np.float32`` in the same order.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.ir import Op, Tensor
from tinyml.reference import gemmlowp as gl
from tinyml.reference.fixedpoint import (multiply_by_quantized_multiplier, quantize_multiplier,
                                         rounding_divide_by_pot, tflite_round)
from tinyml.reference.kernels import KernelCall, kernel
from tinyml.reference.kernels.activations import (LOGISTIC_INPUT_INTEGER_BITS,
                                                  q4_input_params)

#: TANH's Q0.31 result is shifted down to units of 1/128 (TFLM's ``kOutputScale``).
TANH_OUTPUT_BITS = 7


def _int8_only(call: KernelCall) -> None:
    op, x_t, out = call.op, call.in_tensors[0], call.out
    if x_t.dtype != "int8" or out.dtype != "int8":
        raise UnsupportedOpError(op.kind, op.name, detail=f"{x_t.dtype} -> {out.dtype} "
                                 f"(int8 -> int8 only)")


# ---- TANH ----------------------------------------------------------------------------------


@kernel("TANH")
def tanh(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        return np.tanh(call.inputs[0].astype(np.float32)).astype(np.float32)
    _int8_only(call)
    x_t = call.in_tensors[0]
    multiplier, left_shift, radius = q4_input_params(x_t)
    x = call.inputs[0].astype(np.int64) - x_t.zero_point()
    inside = (x > -radius) & (x < radius)
    q4 = multiply_by_quantized_multiplier(np.where(inside, x, 0), multiplier, left_shift)
    q0 = gl.tanh(q4, LOGISTIC_INPUT_INTEGER_BITS)
    y = np.clip(rounding_divide_by_pot(q0, 31 - TANH_OUTPUT_BITS), -128, 127)
    y = np.where(x <= -radius, -128, np.where(x >= radius, 127, y))
    return y.astype(np.int8)


# ---- LEAKY_RELU ----------------------------------------------------------------------------


def leaky_relu_int8_params(x_t: Tensor, out: Tensor, alpha: float
                           ) -> tuple[int, int, int, int]:
    """``CalculateOpDataLeakyRelu``: (alpha multiplier, alpha shift, identity multiplier,
    identity shift), from float32 ratios input_scale * alpha / output_scale and
    input_scale / output_scale. A negative alpha gives a negative multiplier."""
    x_scale, out_scale = np.float32(x_t.scale()), np.float32(out.scale())
    alpha_multiplier, alpha_shift = quantize_multiplier(
        float(x_scale * np.float32(alpha) / out_scale))
    identity_multiplier, identity_shift = quantize_multiplier(float(x_scale / out_scale))
    return alpha_multiplier, alpha_shift, identity_multiplier, identity_shift


@kernel("LEAKY_RELU")
def leaky_relu(call: KernelCall) -> np.ndarray:
    alpha = call.attrs.alpha
    if not call.quantized:
        x = call.inputs[0].astype(np.float32)
        return np.where(x > 0, x, x * np.float32(alpha)).astype(np.float32)
    _int8_only(call)
    x_t, out = call.in_tensors[0], call.out
    am, ash, im, ish = leaky_relu_int8_params(x_t, out, alpha)
    x = call.inputs[0].astype(np.int64) - x_t.zero_point()
    # TFLM multiplies by |alpha multiplier| and negates the product for a negative alpha.
    negative_side = multiply_by_quantized_multiplier(x, abs(am), ash)
    negative_side = -negative_side if am < 0 else negative_side
    y = out.zero_point() + np.where(x >= 0, multiply_by_quantized_multiplier(x, im, ish),
                                    negative_side)
    return np.clip(y, -128, 127).astype(np.int8)


# ---- PRELU ---------------------------------------------------------------------------------


def prelu_int8_params(x_t: Tensor, alpha_t: Tensor, out: Tensor
                      ) -> tuple[int, int, int, int]:
    """``CalculatePreluParams``: (multiplier, shift) of the positive side (input_scale /
    output_scale) and of the negative side (input_scale * alpha_scale / output_scale), in
    double from the float32 scales."""
    m1, s1 = quantize_multiplier(float(x_t.scale()) / float(out.scale()))
    m2, s2 = quantize_multiplier(float(x_t.scale()) * float(alpha_t.scale()) /
                                 float(out.scale()))
    return m1, s1, m2, s2


@kernel("PRELU")
def prelu(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        x, alpha = (v.astype(np.float32) for v in call.inputs)
        return np.where(x >= 0, x, x * alpha).astype(np.float32)
    _int8_only(call)
    x_t, alpha_t = call.in_tensors
    out = call.out
    if alpha_t.dtype != "int8" or alpha_t.quant is None:
        raise UnsupportedOpError(call.op.kind, call.op.name,
                                 detail=f"alpha is {alpha_t.dtype}, int8 input needs int8 alpha")
    m1, s1, m2, s2 = prelu_int8_params(x_t, alpha_t, out)
    x, a = np.broadcast_arrays(call.inputs[0].astype(np.int64) - x_t.zero_point(),
                               call.inputs[1].astype(np.int64) - alpha_t.zero_point())
    y = np.where(x >= 0, multiply_by_quantized_multiplier(x, m1, s1),
                 multiply_by_quantized_multiplier(x * a, m2, s2)) + out.zero_point()
    return np.clip(y, -128, 127).astype(np.int8).reshape(out.shape)


# ---- ELU -----------------------------------------------------------------------------------


def _libm_expf():
    """The C library's ``expf``: TFLM builds ELU's table with it, and numpy's float32 exp is
    a different implementation that may round the last bit differently."""
    libm = ctypes.CDLL(ctypes.util.find_library("m") or None)
    fn = libm.expf
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def elu_int8_table(op: Op, x_t: Tensor, out: Tensor) -> np.ndarray:
    """TFLM's ``PopulateLookupTable`` for ELU: the output code of every input code (indexed
    by the code as uint8), computed in float32 as TFLM does: dequantize, expf(x) - 1 below
    zero, multiply by 1/output_scale, round, add the zero point, clamp."""
    expf = _libm_expf()
    x_scale = np.float32(x_t.scale())
    inverse_scale = np.float32(1.0) / np.float32(out.scale())
    table = np.zeros(256, np.int8)
    for code in range(-128, 128):
        x = x_scale * np.float32(code - x_t.zero_point())
        y = np.float32(expf(float(x))) - np.float32(1.0) if x < 0 else x
        rescaled = np.float32(tflite_round(np.float32(y * inverse_scale)))
        value = np.float32(rescaled + np.float32(out.zero_point()))
        if not abs(float(value)) < 2.0 ** 31:
            raise TinymlError(f"layer '{op.name}' (ELU): input code {code} maps to {value:g} "
                              f"output steps, beyond int32 (TFLM's table is undefined there)")
        table[code & 0xFF] = int(np.clip(int(value), -128, 127))
    return table


@kernel("ELU")
def elu(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        x = call.inputs[0].astype(np.float32)
        return np.where(x < 0, np.expm1(x), x).astype(np.float32)
    _int8_only(call)
    table = elu_int8_table(call.op, call.in_tensors[0], call.out)
    return table[call.inputs[0].astype(np.int8).view(np.uint8)]


# ---- ABS -----------------------------------------------------------------------------------


def abs_int8_params(x_t: Tensor, out: Tensor) -> tuple[int, int] | None:
    """``PrepareAbsRsqrt`` for ABS: (multiplier, shift) of the float32 ratio input_scale /
    output_scale, or None when the two float32 scales are equal (no rescaling at all)."""
    x_scale, out_scale = np.float32(x_t.scale()), np.float32(out.scale())
    if x_scale == out_scale:
        return None
    return quantize_multiplier(float(x_scale / out_scale))


@kernel("ABS")
def abs_(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        return np.abs(call.inputs[0].astype(np.float32))
    _int8_only(call)
    x_t, out = call.in_tensors[0], call.out
    value = np.abs(call.inputs[0].astype(np.int64) - x_t.zero_point())
    rescale = abs_int8_params(x_t, out)
    if rescale is not None:
        value = multiply_by_quantized_multiplier(value, *rescale)
    return np.clip(value + out.zero_point(), -128, 127).astype(np.int8)
