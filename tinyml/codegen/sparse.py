"""Sparse weight storage: run-length rows the C kernels read directly (no decompression).

Why: on a microcontroller the weights live in flash; a pruned layer (tinyml prune) whose
weights are mostly exact zeros need not store them. The format is chosen per layer by
:func:`choose`, only where it is smaller than the same layer's dense weights.

The layout (also in firmware/kernels/tinyml_kernels.h). A filter is a matrix of rows (an
FC filter row, or the OHWI filter of one output channel flattened in H, W, I order). A row
is a list of entries (skip s in 0..15, value v): the position advances by s, the kernel adds
x[position] * v, the position advances by 1. A gap of 16 or more zeros takes filler entries
(15, 0); zeros after a row's last non-zero take none. ``row_entries`` (uint16) counts each
row's entries.

- sparse4 (int4 weights): one byte per entry, ``v * 16 + s`` as int8.
- sparse8 (int8 weights): pairs of entries as [s0 | s1 << 4][v0][v1] (1.5 bytes each); an odd
  last entry of a row is [s0][v0].

Why this layout (against a bitmap of non-zeros plus packed values, or fixed blocks): decode
cost is per stored entry, not per weight, with no bit search (Cortex-M0+ has no CLZ) and no
branch (a filler multiplies by 0); the skip shares the byte of a 4-bit value, so an int4 row
costs one byte per non-zero: at 80 % sparsity about 0.21 B per weight, against 0.5 dense
int4, 1 dense int8 and 0.225 for a bitmap with int4 values. Its weak spot is low sparsity
with int8 values (1.5 B per non-zero: it saves nothing below about 33 % sparsity), which the
per-layer choice covers by keeping such layers dense.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The largest skip one entry holds (4 bits).
MAX_SKIP = 15
#: row_entries are uint16.
MAX_ROW_ENTRIES = (1 << 16) - 1

#: Weight dtypes and their value range; "int4" is the IR's 4-bit weight (int8 data in [-8, 7]).
VALUE_BITS = {"int8": 8, "int4": 4}


@dataclass
class SparseRows:
    """A filter in the run-length row format."""

    value_bits: int
    row_entries: np.ndarray    # uint16, one per row
    stream: np.ndarray         # int8, the rows' entries one after the other

    @property
    def nbytes(self) -> int:
        return int(self.row_entries.nbytes + self.stream.nbytes)

    @property
    def format(self) -> str:
        return f"sparse{self.value_bits}"


def row_entries(row: np.ndarray) -> list[tuple[int, int]]:
    """The (skip, value) entries of one row."""
    entries = []
    position = 0
    for column in np.flatnonzero(row):
        gap = int(column) - position
        while gap > MAX_SKIP:
            entries.append((MAX_SKIP, 0))
            gap -= MAX_SKIP + 1
        entries.append((gap, int(row[column])))
        position = int(column) + 1
    return entries


def _encode_row(entries: list[tuple[int, int]], bits: int) -> list[int]:
    if bits == 4:
        return [v * 16 + s for s, v in entries]
    out = []
    for k in range(0, len(entries) - 1, 2):
        (s0, v0), (s1, v1) = entries[k], entries[k + 1]
        out += [_as_int8(s0 | s1 << 4), v0, v1]
    if len(entries) % 2:
        s0, v0 = entries[-1]
        out += [s0, v0]
    return out


def _as_int8(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def encode(matrix: np.ndarray, bits: int) -> SparseRows | None:
    """``matrix`` (rows x depth, integer values in the ``bits``-bit range) in the row format;
    None when a row would need more entries than row_entries holds."""
    matrix = np.asarray(matrix, np.int64)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if matrix.size and (matrix.min() < low or matrix.max() > high):
        raise ValueError(f"values outside int{bits}")
    counts, stream = [], []
    for row in matrix:
        entries = row_entries(row)
        if len(entries) > MAX_ROW_ENTRIES:
            return None
        counts.append(len(entries))
        stream += _encode_row(entries, bits)
    if not stream:  # every row empty: one byte no kernel reads (C has no empty arrays)
        stream = [0]
    return SparseRows(bits, np.asarray(counts, np.uint16), np.asarray(stream, np.int8))


def decode(rows: SparseRows, depth: int) -> np.ndarray:
    """The dense matrix back (for tests and checks): what the kernels compute with."""
    out = np.zeros((len(rows.row_entries), depth), np.int64)
    stream = rows.stream.astype(np.int64)
    at = 0
    for r, count in enumerate(rows.row_entries.tolist()):
        position = 0
        entries = []
        if rows.value_bits == 4:
            for code in stream[at:at + count]:
                entries.append((int(code) & 15, int(code) >> 4))
            at += count
        else:
            for k in range(0, count - 1, 2):
                skips = int(stream[at]) & 0xFF
                entries += [(skips & 15, int(stream[at + 1])), (skips >> 4, int(stream[at + 2]))]
                at += 3
            if count % 2:
                entries.append((int(stream[at]) & 15, int(stream[at + 1])))
                at += 2
        for skip, value in entries:
            position += skip
            out[r, position] += value
            position += 1
    return out


def dense_bytes(size: int, dtype: str) -> int:
    """Flash of ``size`` weights stored dense: a byte each, or two int4 values a byte."""
    return (size + 1) // 2 if dtype == "int4" else size


#: On targets with the Cortex-M DSP kernels, the least fraction of zero weights for which
#: sparse rows are used. The dense DSP kernels multiply two weights per instruction, so the
#: run-length rows only pay off when most weights are gone: on cortex-m4 they take 0.81-1.22x
#: the dense layer's instructions at 80 % zeros but 2x at 50 % (benchmarks/sparse_weights.py;
#: the digits CNN pruned to 50 % ran 1.84x slower for 23 % less weight flash). The portable
#: kernels are faster sparse at any sparsity that saves flash (0.86x at 50 % on cortex-m0plus).
DSP_MIN_ZEROS = 0.75


def choose(matrix: np.ndarray, dtype: str, dsp: bool = False) -> SparseRows | None:
    """The sparse rows of a filter when they take fewer bytes than the dense ``dtype``
    weights of the same layer (and, for the DSP kernels, ``DSP_MIN_ZEROS`` of the weights
    are zero); None to keep it dense."""
    bits = VALUE_BITS.get(dtype)
    if bits is None or matrix.size == 0:
        return None
    if dsp and np.count_nonzero(matrix) > (1 - DSP_MIN_ZEROS) * matrix.size:
        return None
    # Cheap bound before encoding: each non-zero costs at least one (int4) or 1.5 (int8) bytes.
    nonzeros = int(np.count_nonzero(matrix))
    floor = nonzeros if bits == 4 else (3 * nonzeros) // 2
    dense = dense_bytes(int(matrix.size), dtype)
    if floor + 2 * matrix.shape[0] >= dense:
        return None
    rows = encode(matrix, bits)
    if rows is None or rows.nbytes >= dense:
        return None
    return rows
