"""SVDF: TFLite's singular value decomposition filter, with TFLM's integer arithmetic.

Why it is stateful: an SVDF layer is a rank-``rank`` factorization of a fully connected layer
over the last ``memory_size`` frames. Each invocation computes one new column per filter (the
feature weights times the current frame) and keeps the last ``memory_size`` columns in its
activation state, a TFLite *variable tensor* the kernel updates in place and which survives to
the next invocation. Here that state is the op's variable in ``KernelCall.state``.

TFLM's ``EvalIntegerSvdfReference`` (int8 input and output, int16 or int8 state and time
weights, int32 bias), step by step:

1. shift the state left by one element (the oldest column leaves each filter's row);
2. feature matmul: ``sum(wf * (x - zp_in))`` rescaled by effective scale 1
   (input * feature / state scales), clamped to the state type, plus the state's zero point,
   into each filter's newest column;
3. time matmul: per filter ``sum(wt * (state - zp_state))`` in int32;
4. per unit: bias plus the sum of its ``rank`` filters, rescaled by effective scale 2
   (state * time / output scales), plus the output zero point, clamped to int8.

The fused activation is not applied on this path (TFLM's integer kernel ignores it). The
int32 sums wrap as the C accumulators do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import Tensor
from tinyml.ir.tensor import Quantization
from tinyml.reference.fixedpoint import multiply_by_quantized_multiplier, quantize_multiplier, \
    wrap_int32
from tinyml.reference.kernels.registry import KernelCall, kernel

#: Where the bias scale may differ from state scale * time scale (TFLM's Prepare check).
BIAS_SCALE_TOLERANCE = 1e-5

_LIMITS = {"int16": (-32768, 32767), "int8": (-128, 127)}


@dataclass(frozen=True)
class SvdfParams:
    """The integers TFLM's Prepare derives (``OpDataSvdf``); lowering reuses them."""

    input_zero_point: int
    state_zero_point: int
    output_zero_point: int
    multiplier_1: int
    shift_1: int
    multiplier_2: int
    shift_2: int


def _scale(q: Quantization | None) -> np.float32:
    return np.float32(q.scale.reshape(-1)[0]) if q is not None else np.float32(0)


def _zero_point(q: Quantization | None) -> int:
    return int(q.zero_point.reshape(-1)[0]) if q is not None else 0


def svdf_int8_params(layer: str, x: Tensor, feature: Tensor, time: Tensor, bias: Tensor | None,
                     state_dtype: str, state_quant: Quantization | None,
                     out: Tensor) -> SvdfParams:
    """TFLM's ``PrepareSvdf`` for the int8 path, its checks included (one-line errors)."""
    def fail(message: str) -> TinymlError:
        return TinymlError(f"layer '{layer}' (SVDF): {message}")

    if x.dtype != "int8" or out.dtype != "int8" or feature.dtype != "int8":
        raise fail(f"input {x.dtype}, feature weights {feature.dtype} and output {out.dtype}: "
                   f"the integer SVDF takes int8 (float SVDF is not supported)")
    if time.dtype != state_dtype or state_dtype not in _LIMITS:
        raise fail(f"time weights {time.dtype} and state {state_dtype}: expected both int16 "
                   f"or both int8")
    if bias is None:
        raise fail("no bias: TFLM's integer SVDF requires one")
    if bias.dtype != "int32":
        raise fail(f"bias is {bias.dtype}, expected int32")
    for t, what in ((x, "input"), (feature, "feature weights"), (time, "time weights"),
                    (out, "output")):
        if t.quant is None or t.quant.scale.size != 1:
            raise fail(f"{what} '{t.name}' must have one (per-tensor) quantization scale")
    if state_quant is None:
        raise fail("the activation state has no quantization")
    s_in, s_wf, s_wt, s_out = (_scale(t.quant) for t in (x, feature, time, out))
    s_state = _scale(state_quant)
    # In double from the float32 scales. (TFLM's source snapshot multiplies the floats
    # first, then widens; the tflite-micro build the tests run rounds as double does, which
    # decides rare ties: tests/test_ops_svdf.py shows it on a state code 1 LSB apart.)
    effective_1 = float(s_in) * float(s_wf) / float(s_state)
    effective_2 = float(s_state) * float(s_wt) / float(s_out)
    if abs(float(_scale(bias.quant)) - float(np.float32(s_state * s_wt))) >= BIAS_SCALE_TOLERANCE:
        raise fail(f"bias scale {float(_scale(bias.quant)):g} is not state scale x time "
                   f"weights scale {float(np.float32(s_state * s_wt)):g}")
    m1, sh1 = quantize_multiplier(effective_1)
    m2, sh2 = quantize_multiplier(effective_2)
    return SvdfParams(_zero_point(x.quant), _zero_point(state_quant), _zero_point(out.quant),
                      m1, sh1, m2, sh2)


def svdf_step(x: np.ndarray, feature: np.ndarray, time: np.ndarray, bias: np.ndarray,
              state: np.ndarray, rank: int, p: SvdfParams) -> tuple[np.ndarray, np.ndarray]:
    """One invocation: (int8 output [batch, units], the new state, same shape as ``state``)."""
    batch = x.shape[0]
    filters, memory = time.shape
    lo, hi = _LIMITS[str(state.dtype)]
    s = state.astype(np.int64).reshape(batch, filters, memory)
    new = np.empty_like(s)
    new[..., :-1] = s[..., 1:]
    acc = wrap_int32((x.astype(np.int64) - p.input_zero_point) @ feature.astype(np.int64).T)
    column = np.clip(multiply_by_quantized_multiplier(acc, p.multiplier_1, p.shift_1), lo, hi)
    # The C stores zero point + value into the state type (a wrap if it leaves the range).
    width = hi - lo + 1
    new[..., -1] = ((p.state_zero_point + column - lo) % width) + lo
    per_filter = wrap_int32(((new - p.state_zero_point) * time.astype(np.int64)).sum(axis=-1))
    units = filters // rank
    total = wrap_int32(per_filter.reshape(batch, units, rank).sum(axis=-1)
                       + bias.astype(np.int64))
    y = wrap_int32(multiply_by_quantized_multiplier(total, p.multiplier_2, p.shift_2)
                   + p.output_zero_point)
    out = np.clip(y, -128, 127).astype(np.int8)
    return out, new.reshape(state.shape).astype(state.dtype)


@kernel("SVDF")
def svdf(call: KernelCall) -> np.ndarray:
    a = call.attrs
    if call.state is None or a.variable not in call.state:
        raise TinymlError(f"layer '{call.op.name}' (SVDF) needs its state variable "
                          f"'{a.variable}': run it with a state (tinyml.reference.initial_state)")
    state = call.state[a.variable]
    x_t, wf_t, wt_t = call.in_tensors[:3]
    bias_t = call.in_tensors[3] if len(call.in_tensors) > 3 else None
    quant = Quantization(np.float32(a.state_scale), a.state_zero_point)
    p = svdf_int8_params(call.op.name, x_t, wf_t, wt_t, bias_t, a.dtype, quant, call.out)
    bias = call.inputs[3] if len(call.inputs) > 3 and call.inputs[3] is not None else None
    out, new = svdf_step(call.inputs[0], call.inputs[1], call.inputs[2], bias, state, a.rank, p)
    call.state[a.variable] = new
    return out

