"""UNIDIRECTIONAL_SEQUENCE_LSTM: TFLM's integer LSTM (``lstm_eval.h``), int8 x int8 -> int16.

What the converter's full-int8 LSTM computes in TFLM, per time step and batch row:

- each gate is ``act(FC(x_t) + FC(h))``: two integer FULLY_CONNECTEDs (int8 in, int16 out,
  int32 accumulators; the bias on the input side only) into TFLM's fixed gate scale 2^-12
  (Q3.12), a saturating int16 add, then the int16 sigmoid (for the cell gate, the
  layer's activation: tanh, the one TFLite's schema can name besides ReLUs) of :mod:`tinyml.reference.int16_activations`, output in Q0.15;
- ``c = clamp(f * c) + i * g`` (two int16 MulElementwise into the cell scale, saturating
  add), clipped to the quantized ``cell_clip`` when that is positive;
- the output gate is computed after the cell update but from the old hidden state; then
  ``h = tanh(c) * o`` into int8 at the hidden state's quantization, and ``h`` is the output
  of the step.

The gate scale is TFLM's constant, not the scales the converter records in the operator's
intermediates (TFLM never reads those). The hidden and cell states are variables
(``KernelCall.state``): TFLM keeps its variable tensors from one invocation to the next, so
the kernel starts from the state the previous invocation left.

The constants are derived once by :func:`lstm_int8_params`, which the lowering reuses, so the
C kernel and this oracle cannot disagree on one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.reference.fixedpoint import (multiply_by_quantized_multiplier, per_tensor_fc_multiplier,
                                         quantize_multiplier, wrap_int32)
from tinyml.reference.int16_activations import checked_log2, logistic_int16, tanh_int16
from tinyml.reference.kernels.registry import KernelCall, kernel

#: TFLite's order of the four gates in the operator's inputs (weights 1-4, 5-8; biases 9-12
#: of the IR op, 12-15 of TFLite's).
GATES = ("input", "forget", "cell", "output")
#: TFLM's fixed scale of the gates' pre-activations (Q3.12) and activations (Q0.15).
GATE_INPUT_SCALE = np.float32(2.0 ** -12)
GATE_OUTPUT_SCALE = np.float32(2.0 ** -15)


@dataclass(frozen=True)
class GateParams:
    input_multiplier: int
    input_shift: int
    recurrent_multiplier: int
    recurrent_shift: int


@dataclass(frozen=True)
class LstmParams:
    batch: int
    time: int
    features: int
    units: int
    input_offset: int            # -input zero point (the input FCs' input_offset)
    hidden_offset: int           # -hidden zero point (the recurrent FCs')
    gates: dict                  # gate name -> GateParams
    forget_mul: tuple[int, int]  # f * c -> c
    input_mul: tuple[int, int]   # i * g -> c
    output_mul: tuple[int, int]  # tanh(c) * o -> h
    hidden_zero_point: int
    cell_clip: int               # quantized clip; 0: none
    cell_tanh: tuple[int, int]   # (input_multiplier, input_left_shift) of tanh(c)


def lstm_int8_params(call: KernelCall) -> LstmParams:
    """Every constant of TFLM's ``PrepareGateParametersInteger`` and
    ``CreateLstmCellStateInfo``, checking that the op is the variant TFLM runs."""
    op, a = call.op, call.attrs
    ins = call.in_tensors
    x = ins[0]
    from tinyml.ir.ops import lstm_sizes
    batch, time, features, units = lstm_sizes(op, ins)

    def fail(detail: str) -> UnsupportedOpError:
        return UnsupportedOpError(op.kind, op.name, detail=detail)

    if x.dtype != "int8" or x.quant is None or call.out.dtype != "int8":
        raise fail(f"{x.dtype} input: only the full-int8 LSTM (int8 input and output, int16 "
                   f"cell state) is supported")
    for t in ins[1:9]:
        if t.dtype != "int8" or t.quant is None or not t.is_constant:
            raise fail(f"weights '{t.name}' are not constant int8 (a hybrid LSTM?)")
        if t.quant.per_channel or t.quant.scale.size != 1:
            raise fail(f"weights '{t.name}' are quantized per channel: TFLM's integer LSTM "
                       f"takes one scale per weight matrix")
        if int(t.quant.zero_point[0]) != 0:
            raise fail(f"weights '{t.name}' have zero point {int(t.quant.zero_point[0])}, "
                       f"TFLM expects 0")
    for t in ins[9:13]:
        if t.dtype != "int32" or not t.is_constant:
            raise fail(f"bias '{t.name}' is not a constant int32")
    if a.activation != "TANH":
        raise fail(f"cell activation {a.activation}: TFLM's integer LSTM runs tanh (or sigmoid, "
                   f"which a TFLite file cannot name)")
    x_scale = float(np.float32(x.quant.scale[0]))
    h_scale, c_scale = float(np.float32(a.hidden_scale)), float(np.float32(a.cell_scale))
    gates = {}
    for k, gate in enumerate(GATES):
        w_in, w_rec = ins[1 + k], ins[5 + k]
        im, ish = per_tensor_fc_multiplier(x_scale, float(w_in.quant.scale[0]),
                                           float(GATE_INPUT_SCALE))
        rm, rsh = per_tensor_fc_multiplier(h_scale, float(w_rec.quant.scale[0]),
                                           float(GATE_INPUT_SCALE))
        gates[gate] = GateParams(im, ish, rm, rsh)
    out_s = float(GATE_OUTPUT_SCALE)
    power, _ = checked_log2(c_scale)  # TFLM ignores whether the scale is a power of two
    shift = 15 + power - 3
    cell_tanh = (3, -shift) if shift < 0 else (0, shift)
    clip = 0
    if a.cell_clip > 0:
        clip = int(np.trunc(min(max(float(np.float32(a.cell_clip)) / c_scale, -32768.0),
                                32767.0)))
    return LstmParams(
        batch, time, features, units, -int(x.quant.zero_point[0]), -int(a.hidden_zero_point),
        gates, quantize_multiplier(out_s * c_scale / c_scale),
        quantize_multiplier(out_s * out_s / c_scale), quantize_multiplier(out_s * out_s / h_scale),
        int(a.hidden_zero_point), clip, cell_tanh)


def _fc(x, offset: int, w, bias, multiplier: int, shift: int) -> np.ndarray:
    """Integer FULLY_CONNECTED, int8 x int8 -> int16 (``reference_integer_ops``)."""
    acc = (x.astype(np.int64) + offset) @ w.astype(np.int64).T
    if bias is not None:
        acc = acc + bias.astype(np.int64)
    scaled = multiply_by_quantized_multiplier(wrap_int32(acc), multiplier, shift)
    return np.clip(scaled, -32768, 32767)


def _mul(a, b, mul: tuple[int, int], offset: int, lo: int, hi: int) -> np.ndarray:
    """``MulElementwise`` of two int16 (symmetric) operands."""
    product = a.astype(np.int64) * b.astype(np.int64)
    return np.clip(offset + multiply_by_quantized_multiplier(product, *mul), lo, hi)


def lstm_step(p: LstmParams, x, h, c, weights, biases):
    """One time step for all rows: returns the new (h, c) (int64 arrays)."""
    gates = {}
    for k, gate in enumerate(GATES):
        g = p.gates[gate]
        pre = np.clip(_fc(x, p.input_offset, weights[k], biases[k], g.input_multiplier,
                          g.input_shift)
                      + _fc(h, p.hidden_offset, weights[4 + k], None, g.recurrent_multiplier,
                            g.recurrent_shift), -32768, 32767)
        if gate == "cell":
            gates[gate] = tanh_int16(pre, 0, 0).astype(np.int64)
        else:
            gates[gate] = logistic_int16(pre, 0, 0).astype(np.int64)
    c = _mul(gates["forget"], c, p.forget_mul, 0, -32768, 32767)
    c = np.clip(c + _mul(gates["input"], gates["cell"], p.input_mul, 0, -32768, 32767),
                -32768, 32767)
    if p.cell_clip:
        c = np.clip(c, -p.cell_clip, p.cell_clip)
    cell_tanh = tanh_int16(c, *p.cell_tanh).astype(np.int64)
    h = _mul(cell_tanh, gates["output"], p.output_mul, p.hidden_zero_point, -128, 127)
    return h, c


@kernel("UNIDIRECTIONAL_SEQUENCE_LSTM")
def lstm(call: KernelCall) -> np.ndarray:
    if call.state is None:
        raise TinymlError(f"layer '{call.op.name}' ({call.op.kind}) keeps its state in the "
                          f"model's variables: run it with a state "
                          f"(tinyml.reference.initial_state)")
    p = lstm_int8_params(call)
    a = call.attrs
    x = np.asarray(call.inputs[0])
    if not a.time_major:
        x = x.transpose(1, 0, 2)  # (time, batch, features): rows are independent
    weights = [np.asarray(w) for w in call.inputs[1:9]]
    biases = [np.asarray(b) for b in call.inputs[9:13]]
    h = call.state[a.hidden].reshape(p.batch, p.units).astype(np.int64)
    c = call.state[a.cell].reshape(p.batch, p.units).astype(np.int64)
    out = np.empty((p.time, p.batch, p.units), np.int8)
    for t in range(p.time):
        h, c = lstm_step(p, x[t], h, c, weights, biases)
        out[t] = h
    call.state[a.hidden] = h.astype(np.int8).reshape(a.hidden_shape)
    call.state[a.cell] = c.astype(np.int16).reshape(a.cell_shape)
    return out if a.time_major else out.transpose(1, 0, 2)
