"""TFLite's 513-entry int16 lookup tables with linear interpolation (``LUTPopulate<int16_t>``
and ``LUTLookup`` of ``kernels/internal/common.h``).

TFLM builds these tables in Prepare from a float function (int16 SOFTMAX's ``exp`` and
``1 / (1 + x)``), so tinyml rebuilds them with the same float32 arithmetic, in the same order,
calling the C library's float functions where TFLM does; the C kernels receive the tables as
constants and only interpolate. The table spans the int16 input range in 512 steps; each
entry is the sampled value minus half the error linear interpolation would make at the
step's midpoint, so interpolation is centred on the function.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Callable

import numpy as np

from tinyml.reference.fixedpoint import tflite_round

LUT_SIZE = 513
_STEPS = 512
_F = np.float32


@lru_cache(maxsize=None)
def populate(input_scale: float, input_zero_point: int, output_scale: float,
             output_zero_point: int, transform: Callable[[np.float32], np.float32]
             ) -> np.ndarray:
    """``detail::LUTPopulateInt16<float>``: the 513 int16 entries. ``transform`` maps a
    float32 to a float32 as the C++ lambda does (a cached function, so the table is built
    once per quantization)."""
    input_scale, output_scale = _F(input_scale), _F(output_scale)
    input_min = input_scale * _F(-32768 - input_zero_point)
    input_max = input_scale * _F(32767 - input_zero_point)
    output_min = output_scale * _F(-32768 - output_zero_point)
    output_max = output_scale * _F(32767 - output_zero_point)
    step = (input_max - input_min) / _F(_STEPS)
    half_step = step / _F(2)
    scaling_inv = _F(65536) / (output_max - output_min)
    lut = np.zeros(LUT_SIZE, np.int16)
    for i in range(_STEPS):
        start = input_min + _F(i) * step
        val = _F(transform(start))
        val_midpoint = _F(transform(start + half_step))
        val_next = _F(transform(input_min + _F(i + 1) * step))
        sample_val = _F(tflite_round(val * scaling_inv))
        midpoint_interp_val = _F(tflite_round((val_next * scaling_inv + sample_val) / _F(2)))
        midpoint_val = _F(tflite_round(val_midpoint * scaling_inv))
        bias = _F(tflite_round((midpoint_interp_val - midpoint_val) / _F(2)))
        lut[i] = int(min(max(sample_val - bias, _F(-32768)), _F(32767)))
    last = _F(tflite_round(_F(transform(input_max)) * scaling_inv))
    lut[_STEPS] = int(min(max(last, _F(-32768)), _F(32767)))
    lut.setflags(write=False)
    return lut


@lru_cache(maxsize=None)
def libm_float(name: str):
    """A float32 function of the C library (``expf``): TFLM's table transforms call it, and
    numpy's float32 functions may round the last bit differently."""
    libm = ctypes.CDLL(ctypes.util.find_library("m") or None)
    fn = getattr(libm, name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def lookup(values, lut: np.ndarray) -> np.ndarray:
    """``LUTLookup(int16_t, const int16_t*)``: the entry of the top 9 bits, plus the slope to
    the next entry times the low 7 bits, rounded (``(slope * offset + 64) >> 7``); the sum
    wraps to int16 as the C cast does."""
    v = np.asarray(values, np.int64)
    index = 256 + (v >> 7)
    offset = v & 0x7F
    table = lut.astype(np.int64)
    base = table[index]
    delta = ((table[index + 1] - base) * offset + 64) >> 7
    return (((base + delta) + 32768) & 0xFFFF) - 32768
