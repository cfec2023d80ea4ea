"""The flash layout of packed int4 filters, as the ``*_s4`` C kernels read them.

A filter is a matrix of rows (one per output channel: CONV_2D's [output_c][filter_h]
[filter_w][filter_c], DEPTHWISE_CONV_2D's [output_c][filter_h][filter_w], FULLY_CONNECTED's
[output_depth][input_depth]) of K values in [-8, 7]. Each row is packed on its own into
ceil(K / 2) bytes, so a row starts on a byte and a kernel finds row r at r * ceil(K / 2):

- every full group of 8 values v[8g .. 8g+7] takes 4 bytes; byte j (0..3) holds v[8g+j] in
  its low nibble and v[8g+4+j] in its high nibble;
- the last K mod 8 values follow densely, low nibble first (TFLite's INT4 order): value
  8G+i in byte i / 2 of the tail, in the high nibble when i is odd; an odd K leaves the last
  high nibble 0.

Why the groups: the Cortex-M DSP kernels (firmware/kernels/cortex_m) multiply with SMLAD on
pairs of int16 lanes and read int8 data as (v0, v2), (v1, v3), the two SXTB16 lane orders of
one word. With this layout one word of filter gives both halves with two masks: ``w & 0xF0F0F0F0``
(values 4..7 times 16) and ``(w << 4) & 0xF0F0F0F0`` (values 0..3 times 16), each then one
SXTB16 pair away from exactly the lanes the int8 kernels use, so the int4 kernels share the
int8 kernels' input layouts and inner loops and pay two or three instructions per 8 weights
(the factor 16 is taken out of the int32 sum once per output). TFLite's dense order would
need a byte shuffle per word. The portable kernels read single values through the same
rule (``tinyml_s4_value`` in firmware/kernels/portable/int4.h).

Flash: ceil(K / 2) bytes per row, i.e. TFLite's dense packing plus at most half a byte per
row.
"""

from __future__ import annotations

import numpy as np


def packed_row_bytes(k: int) -> int:
    """Bytes of one packed row of ``k`` values."""
    return (int(k) + 1) // 2


def pack_int4_rows(rows: np.ndarray) -> np.ndarray:
    """``rows`` ([R][K] integers in [-8, 7]) packed as above: R * ceil(K / 2) bytes as int8
    (the bytes' bit patterns; the C side reads them as raw bytes)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2:
        raise ValueError("pack_int4_rows takes a 2-D array of rows")
    if rows.size and (rows.min() < -8 or rows.max() > 7):
        raise ValueError("int4 values must lie in [-8, 7]")
    count, k = rows.shape
    nibbles = (rows & 0xF).astype(np.uint8)
    full = k // 8 * 8
    groups = nibbles[:, :full].reshape(count, -1, 2, 4)       # [row][group][half][j]
    head = (groups[:, :, 0, :] | (groups[:, :, 1, :] << 4)).reshape(count, -1)
    tail = nibbles[:, full:]
    if tail.shape[1] % 2:
        tail = np.concatenate([tail, np.zeros((count, 1), np.uint8)], axis=1)
    tail = tail[:, 0::2] | (tail[:, 1::2] << 4)
    packed = np.concatenate([head, tail], axis=1).astype(np.uint8)
    assert packed.shape[1] == packed_row_bytes(k)
    return packed.reshape(-1).view(np.int8)


def unpack_int4_rows(packed: np.ndarray, count: int, k: int) -> np.ndarray:
    """The inverse of :func:`pack_int4_rows`: [count][k] int8 values."""
    raw = np.asarray(packed).view(np.uint8).reshape(count, packed_row_bytes(k))
    full = k // 8 * 8
    head = raw[:, :full // 2].reshape(count, -1, 4)
    low, high = head & 0xF, head >> 4
    groups = np.concatenate([low, high], axis=2).reshape(count, full)
    tail_bytes = raw[:, full // 2:]
    tail = np.stack([tail_bytes & 0xF, tail_bytes >> 4], axis=2).reshape(count, -1)
    values = np.concatenate([groups, tail[:, :k - full]], axis=1).astype(np.int16)
    return np.where(values >= 8, values - 16, values).astype(np.int8)
