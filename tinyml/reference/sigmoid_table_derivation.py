"""Recover TFLM's ``sigmoid_table_uint16`` by measuring TFLM, and write it into tinyml.

Why measure instead of compute: TFLM's int16 sigmoid and tanh (the integer LSTM's gates)
interpolate a 256-entry table, and 44 of its entries are not ``round(65536 sigmoid(i/24))``;
no formula tinyml knows gives the table, and tinyml does not copy third-party source. TFLM's
behaviour is the specification, so the table is read off TFLM's own int16 LOGISTIC and TANH
operators, run by the ``tflite_micro`` interpreter over all 65536 int16 inputs:

- int16 TANH computes ``((ua << 8) + ut (ub - ua) - 2^23 + 2^7) >> 8`` for segment
  ``uh = |v| >> 8`` and fraction ``ut = |v| & 0xFF`` (``v`` the rescaled input, ua and ub
  the table entries uh and uh + 1); at ``ut = 0`` that is ``ua - 32768`` exactly, so an input
  scale giving ``v = 2x`` reads every entry 0..254;
- entry 255 is only ever the upper end of segment 254: it is the one value consistent with
  every output TFLM gives in that segment (asserted unique);
- the table is then checked by replaying every measured input (LOGISTIC and TANH at several
  input scales, the LSTM's own among them, which exercise all 512 resp. 256 fractional steps
  of the segments) through :mod:`tinyml.reference.int16_activations`: every output equals
  TFLM's, or the derivation fails.

The test models are written by tinyml's own TFLite exporter. Run
``python -m tinyml.reference.sigmoid_table_derivation`` to regenerate the committed table
(``tinyml/reference/sigmoid_table.py``, ``firmware/kernels/portable/sigmoid_table.h``);
``tests/test_ops_lstm.py`` re-derives it and compares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyml.reference.int16_activations import (int16_activation_params, logistic_int16,
                                                rescaled_input, tanh_int16)

#: (op, input scale) of the measured models: 1/12288 is a gain of 1 into the table's input
#: scaling, 1/6144 and 1/3072 gains of 2 and 4 (every segment), 2^-12 and 2^-15 the LSTM's
#: gate and cell-state scalings.
MEASUREMENTS = (("TANH", 1 / 6144), ("TANH", 1 / 12288), ("TANH", 2.0 ** -12),
                ("TANH", 2.0 ** -15), ("LOGISTIC", 1 / 12288), ("LOGISTIC", 1 / 3072),
                ("LOGISTIC", 2.0 ** -12))
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def int16_model(kind: str, input_scale: float) -> bytes:
    """A one-op int16 LOGISTIC or TANH model over a 65536-element vector (output scale 2^-15,
    as TFLM requires), written by tinyml's exporter."""
    from tinyml.ir import Graph, Op, Quantization, Tensor
    from tinyml.quantize.tflite_export import export_tflite
    g = Graph(f"{kind.lower()}_int16")
    g.add_tensor(Tensor("x", ALL_INT16.shape, "int16", Quantization(np.float32(input_scale), 0)))
    g.add_tensor(Tensor("y", ALL_INT16.shape, "int16", Quantization(np.float32(2.0 ** -15), 0)))
    g.inputs, g.outputs = ["x"], ["y"]
    g.add_op(Op(kind, kind.lower(), ["x"], ["y"]))
    return export_tflite(g.finalize())


def measure(kind: str, input_scale: float) -> np.ndarray:
    """TFLM's output of ``kind`` for every int16 input (index i: input i - 32768)."""
    from tflite_micro.python.tflite_micro import runtime
    data = int16_model(kind, input_scale)
    it = runtime.Interpreter.from_bytes(data, arena_size=1 << 20)
    it.set_input(ALL_INT16, 0)
    it.invoke()
    return np.array(it.get_output(0)).astype(np.int16)


def _replay(kind: str, input_scale: float, table, inputs=ALL_INT16) -> np.ndarray:
    multiplier, shift = int16_activation_params(kind, input_scale)
    fn = tanh_int16 if kind == "TANH" else logistic_int16
    return fn(inputs, multiplier, shift, table)


def derive_table(measured: dict[tuple[str, float], np.ndarray] | None = None) -> tuple[int, ...]:
    """The 256 table entries, from TFLM's outputs (measured now unless given)."""
    if measured is None:
        measured = {m: measure(*m) for m in MEASUREMENTS}
    table = np.full(256, -1, np.int64)
    # Entries 0..254: TANH with v = 2x, at the inputs where the fraction is 0.
    multiplier, shift = int16_activation_params("TANH", 1 / 6144)
    v = rescaled_input(ALL_INT16, multiplier, shift)
    out = measured[("TANH", 1 / 6144)].astype(np.int64)
    if not np.array_equal(v, 2 * ALL_INT16.astype(np.int64)):
        raise AssertionError("TANH at scale 1/6144 does not rescale by 2")
    exact = ((np.abs(v) & 0xFF) == 0) & ((np.abs(v) >> 8) < 255)
    entry = np.where(v >= 0, out + 32768, 32768 - out)
    for uh, ua in zip(np.abs(v[exact]) >> 8, entry[exact]):
        if table[uh] not in (-1, ua):
            raise AssertionError(f"entry {uh} reads as both {table[uh]} and {ua}")
        table[uh] = ua
    if (table[:255] < 0).any():
        raise AssertionError(f"entries {np.flatnonzero(table[:255] < 0)} were not observed")
    # Entry 255: the one value that reproduces every measurement in segment 254 (the only
    # one that reads it).
    last_segment = {m: _last_segment(*m) for m in MEASUREMENTS}
    candidates = []
    for last in range(int(table[254]) - 1024, 65536):
        table[255] = last
        if all(np.array_equal(_replay(k, s, table, inputs), measured[(k, s)][inputs + 32768])
               for (k, s), inputs in last_segment.items()):
            candidates.append(last)
            if last - candidates[0] > 64:
                break
    if len(candidates) != 1:
        raise AssertionError(f"entry 255 is not determined: candidates {candidates[:8]}")
    table[255] = candidates[0]
    for k, s in MEASUREMENTS:  # every measured output, every segment and fraction
        got = _replay(k, s, table)
        if not np.array_equal(got, measured[(k, s)]):
            bad = int(np.flatnonzero(got != measured[(k, s)])[0]) - 32768
            raise AssertionError(f"{k} at scale {s}: input {bad} differs from TFLM")
    return tuple(int(t) for t in table)


def _last_segment(kind: str, input_scale: float) -> np.ndarray:
    """The int16 inputs that ``kind`` at ``input_scale`` maps into table segment 254."""
    multiplier, shift = int16_activation_params(kind, input_scale)
    v = np.abs(rescaled_input(ALL_INT16, multiplier, shift))
    return ALL_INT16[(v >> (8 if kind == "TANH" else 9)) == 254].astype(np.int64)


_ROOT = Path(__file__).resolve().parents[2]
PY_FILE = _ROOT / "tinyml" / "reference" / "sigmoid_table.py"
C_FILE = _ROOT / "firmware" / "kernels" / "portable" / "sigmoid_table.h"


def _rows(values, per_row: int = 12) -> list[str]:
    return [", ".join(str(v) for v in values[i:i + per_row]) + ","
            for i in range(0, len(values), per_row)]


def python_source(table) -> str:
    body = "\n".join(f"    {row}" for row in _rows(table))
    return f'''"""TFLM's ``sigmoid_table_uint16``: the int16 LOGISTIC / TANH sigmoid table.

Generated by ``python -m tinyml.reference.sigmoid_table_derivation``, which measures the
entries from TFLM's int16 LOGISTIC and TANH (see that module for why); do not edit by hand.
"""

SIGMOID_TABLE_UINT16 = (
{body}
)
'''


def c_source(table) -> str:
    body = "\n".join(f"    {row}" for row in _rows(table))
    return f"""/* TFLM's sigmoid_table_uint16: the int16 LOGISTIC / TANH sigmoid table.
 * Generated by `python -m tinyml.reference.sigmoid_table_derivation` (measured from TFLM's
 * int16 LOGISTIC and TANH); do not edit by hand. Equal to
 * tinyml/reference/sigmoid_table.py (tests/test_ops_lstm.py checks both). */
#ifndef TINYML_SIGMOID_TABLE_H
#define TINYML_SIGMOID_TABLE_H

#include <stdint.h>

static const uint16_t tinyml_sigmoid_table_uint16[256] = {{
{body}
}};

#endif /* TINYML_SIGMOID_TABLE_H */
"""


def main() -> None:
    table = derive_table()
    PY_FILE.write_text(python_source(table))
    C_FILE.write_text(c_source(table))
    print(f"wrote {PY_FILE} and {C_FILE}")


if __name__ == "__main__":
    main()
