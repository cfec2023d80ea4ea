"""The binary family: SUB, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, the comparisons, SELECT_V2
and the logical ops, with numpy broadcasting (TFLM's ``BroadcastBinaryOpSimple`` visits the
broadcast elements in the same order numpy does, and every op here is element by element).

Each int8 kernel follows its TFLM kernel exactly (the comparisons, for instance, rescale
both inputs by their own scales, shifted left 8 bits, before comparing).
The parameter functions are shared with lowering, so the C kernels get the same integers.
"""

from __future__ import annotations

import operator

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Tensor
from tinyml.reference.fixedpoint import (
    activation_range, float_activation, multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_smaller_than_one_exp, quantize_multiplier, wrap_int32)
from tinyml.reference.kernels.registry import KernelCall, kernel
from tinyml.reference.kernels.elementwise import add_multipliers

#: SUB shifts int8 inputs left by 20 bits before rescaling them (TFLM ``left_shift``).
SUB_LEFT_SHIFT = 20
#: SQUARED_DIFFERENCE's left shift for int8: 255^2 << 14 still fits int32.
SQUARED_DIFFERENCE_LEFT_SHIFT = 7
#: The comparisons' left shift (TFLM ``kLeftShift``).
COMPARISON_LEFT_SHIFT = 8

COMPARE = {"GREATER": operator.gt, "GREATER_EQUAL": operator.ge, "LESS": operator.lt,
           "LESS_EQUAL": operator.le, "EQUAL": operator.eq, "NOT_EQUAL": operator.ne}
LOGICAL = {"LOGICAL_AND": np.logical_and, "LOGICAL_OR": np.logical_or}


def _layer_error(op, message: str) -> TinymlError:
    return TinymlError(f"layer '{op.name}' ({op.kind}): {message}")


def _int8_inputs(call: KernelCall) -> None:
    """The integer kernels here are TFLM's int8 ones (int16 uses other shifts)."""
    dtypes = [t.dtype for t in call.in_tensors]
    if any(d != "int8" for d in dtypes):
        raise _layer_error(call.op, f"inputs are {' and '.join(dtypes)} (int8 only)")


def _smaller_than_one(op, real: float, what: str) -> tuple[int, int]:
    """``QuantizeMultiplierSmallerThanOneExp``: TFLM aborts unless 0 < real < 1."""
    if not 0.0 < real < 1.0:
        raise _layer_error(op, f"{what} multiplier {real:g} is outside (0, 1), which TFLM "
                               f"refuses for int8")
    return quantize_multiplier(real)


def _offsets(call: KernelCall) -> list[np.ndarray]:
    """The int8 inputs minus their zero points, broadcast against each other."""
    values = [x.astype(np.int64) - t.zero_point() for x, t in zip(call.inputs, call.in_tensors)]
    return np.broadcast_arrays(*values)


# ---- SUB ------------------------------------------------------------------------------------

def sub_multipliers(scale1: float, scale2: float, output_scale: float
                    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """SUB's three (multiplier, shift) pairs: ADD's (:func:`add_multipliers`, divided in
    double). The TFLM source snapshot divides SUB's float32 scales in float; the tflite-micro
    release tinyml verifies against computes in double, and so does this
    (tests/test_ops_binary.py finds input pairs where the two differ)."""
    return add_multipliers(scale1, scale2, output_scale)


@kernel("SUB")
def sub(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        a, b = (x.astype(np.float32) for x in call.inputs)
        return float_activation(a - b, call.attrs.activation).astype(np.float32)
    _int8_inputs(call)
    t1, t2 = call.in_tensors
    out = call.out
    (m1, s1), (m2, s2), (mo, so) = sub_multipliers(t1.scale(), t2.scale(), out.scale())
    a, b = _offsets(call)
    scaled_a = multiply_by_quantized_multiplier_smaller_than_one_exp(a << SUB_LEFT_SHIFT, m1, s1)
    scaled_b = multiply_by_quantized_multiplier_smaller_than_one_exp(b << SUB_LEFT_SHIFT, m2, s2)
    lo, hi = activation_range(call.attrs.activation, out.scale(), out.zero_point())
    y = multiply_by_quantized_multiplier_smaller_than_one_exp(
        wrap_int32(scaled_a - scaled_b), mo, so) + out.zero_point()
    return np.clip(y, lo, hi).astype(np.int8).reshape(out.shape)


# ---- MAXIMUM, MINIMUM -----------------------------------------------------------------------

@kernel("MAXIMUM", "MINIMUM")
def maximum_minimum(call: KernelCall) -> np.ndarray:
    """TFLM compares the stored values (raw int8 codes, whatever the quantization), so the
    result is the real maximum only when inputs and output share one quantization (the
    converter and tinyml's quantizer make them so)."""
    a, b = np.broadcast_arrays(*call.inputs)
    pick = a > b if call.op.kind == "MAXIMUM" else a < b
    return np.where(pick, a, b).astype(a.dtype).reshape(call.out.shape)


# ---- SQUARED_DIFFERENCE ---------------------------------------------------------------------

def squared_difference_multipliers(op, scale1: float, scale2: float, output_scale: float
                                   ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """TFLM ``PrepareQuantized``: the inputs to twice the larger scale (in double), the
    squared difference (shifted left 2 x 7 bits) to the output by a general multiplier."""
    twice_max = 2.0 * float(max(np.float32(scale1), np.float32(scale2)))
    denominator = float(np.float32(1 << (2 * SQUARED_DIFFERENCE_LEFT_SHIFT))
                        * np.float32(output_scale))
    return (_smaller_than_one(op, float(scale1) / twice_max, "input 1"),
            _smaller_than_one(op, float(scale2) / twice_max, "input 2"),
            quantize_multiplier(twice_max * twice_max / denominator))


@kernel("SQUARED_DIFFERENCE")
def squared_difference(call: KernelCall) -> np.ndarray:
    if not call.quantized:
        a, b = (x.astype(np.float32) for x in call.inputs)
        d = a - b
        return (d * d).astype(np.float32)
    _int8_inputs(call)
    t1, t2 = call.in_tensors
    out = call.out
    (m1, s1), (m2, s2), (mo, so) = squared_difference_multipliers(
        call.op, t1.scale(), t2.scale(), out.scale())
    a, b = _offsets(call)
    shift = SQUARED_DIFFERENCE_LEFT_SHIFT
    diff = (multiply_by_quantized_multiplier_smaller_than_one_exp(a << shift, m1, s1)
            - multiply_by_quantized_multiplier_smaller_than_one_exp(b << shift, m2, s2))
    y = multiply_by_quantized_multiplier(wrap_int32(diff * diff), mo, so) + out.zero_point()
    return np.clip(y, -128, 127).astype(np.int8).reshape(out.shape)


# ---- comparisons ----------------------------------------------------------------------------

def comparison_multipliers(op, t1: Tensor, t2: Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    """TFLM ``ComparisonsPrepare``: each int8 input's own scale as its multiplier."""
    return (_smaller_than_one(op, float(t1.scale()), "input 1 scale as"),
            _smaller_than_one(op, float(t2.scale()), "input 2 scale as"))


@kernel(*COMPARE)
def comparison(call: KernelCall) -> np.ndarray:
    compare = COMPARE[call.op.kind]
    if not call.quantized:
        a, b = np.broadcast_arrays(*call.inputs)
        return compare(a, b).reshape(call.out.shape)
    _int8_inputs(call)
    t1, t2 = call.in_tensors
    (m1, s1), (m2, s2) = comparison_multipliers(call.op, t1, t2)
    a, b = _offsets(call)
    scaled_a = multiply_by_quantized_multiplier_smaller_than_one_exp(
        a << COMPARISON_LEFT_SHIFT, m1, s1)
    scaled_b = multiply_by_quantized_multiplier_smaller_than_one_exp(
        b << COMPARISON_LEFT_SHIFT, m2, s2)
    return compare(scaled_a, scaled_b).reshape(call.out.shape)


# ---- SELECT_V2 and the logical ops ----------------------------------------------------------

@kernel("SELECT_V2")
def select_v2(call: KernelCall) -> np.ndarray:
    """x where the condition holds, else y: stored values are copied, never rescaled."""
    condition, x, y = np.broadcast_arrays(*call.inputs)
    return np.where(condition.astype(bool), x, y).astype(x.dtype).reshape(call.out.shape)


@kernel(*LOGICAL)
def logical_binary(call: KernelCall) -> np.ndarray:
    a, b = (x.astype(bool) for x in call.inputs)
    return LOGICAL[call.op.kind](a, b).reshape(call.out.shape)


@kernel("LOGICAL_NOT")
def logical_not(call: KernelCall) -> np.ndarray:
    return np.logical_not(call.inputs[0].astype(bool)).reshape(call.out.shape)
