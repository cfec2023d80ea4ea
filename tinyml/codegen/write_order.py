"""The order in which the C kernels read their input and write their output, and the overlap
of the two buffers that order makes safe.

Why: a layer's output may start inside the bytes of an input that dies at that layer (vMCU's
segment-level sharing) as long as the kernel never writes a byte it has still to read. The
memory plan is static, so the condition is a bound on ``delta = offset(output) -
offset(input)`` that the planner respects: every delta at most :func:`safe_delta` of the
kernel's :class:`AccessOrder` is safe (a lower output is further from the unread input).

A kernel is described as a sequence of steps; step t reads input bytes from ``read_min[t]``
(relative to the input's start; it may read more above) and writes output bytes below
``write_end[t]`` (relative to the output's start). ``reads_first``: a step reads all its
input before its first write (a DSP block copies its columns to scratch first); otherwise the
writes of a step may precede some of its reads (the portable kernels store each output
channel while they still read the same pixel for the next one). Every byte written up to a
read must lie below every byte read from then on::

    delta + max(write_end[u] for u <= t (u < t when reads_first)) <= min(read_min[u] for u >= t)

The orders below are read off the C (firmware/kernels/portable and cortex_m); a kernel whose
order is not described here gets no overlap. They must change with the kernels' loops:
tests/test_overlap.py runs every described kernel overlapped, on the host and in QEMU, with
the arena filled with junk first.

- element-wise kernels (portable/quantize.c, elementwise.c): element i is read, then written;
- portable CONV_2D, 1x1 CONV_2D, AVERAGE/MAX_POOL_2D (portable/conv.c, pooling.c): output
  pixels in increasing order, each reading its window (the 1x1 kernel: one pixel) while its
  channels are stored;
- CONV_2D_ADD over its convolution's input (input 0; over the skip input it runs in place):
  the order of CONV_2D (portable/conv.c's conv_add_run: pixel by pixel, each channel's window
  read while the pixel's channels are stored; cortex_m/conv.c: conv_run_body's blocks, which
  with ADD always repeat the last pixel of a short last block); the skip element is read
  just before the output element at its position is stored;
- DSP CONV_2D and 1x1 CONV_2D (cortex_m/conv.c, conv_run_body): blocks of n consecutive
  output pixels (conv_layer_block; 7 rather than 8 when the parameters' ``block`` is 7),
  the block's windows copied to scratch before its outputs
  are stored (one group; with groups, per group, so a block is taken as interleaved); when
  the output overlaps the input, a short last block repeats its last pixel (rather than
  being moved back over pixels of the previous block, as it is otherwise);
- FULLY_CONNECTED (portable and cortex_m fully_connected.c): batch rows in order, each row's
  units stored while the row is still read (so one row gives no overlap: the output can only
  sit right below the input).

DEPTHWISE_CONV_2D declares none, on purpose: all its kernels (portable/depthwise_conv.c;
cortex_m/depthwise_conv.c's plane paths, 3x3, rows 5 or 7 wide and any filter, and its
pixel path) go channel by channel (the pixel path: pass of channels by pass), reading the
channel's values at every pixel before storing that channel's outputs at every pixel. So
no input byte is dead before the last channel, and an output byte of channel c may only
land on an input byte of channel c itself (or outside the input). With depth multiplier 1
that is the in-place run lowering declares (``in_place``; strided too: the output, a
quarter of the input at stride 2, is stored over its own channels' first bytes), and a
shift by whole pixels, which saves nothing more; with a depth multiplier m > 1, output
channel c * m + j lands on other channels' bytes at every shift, read later. What such a
step holds is its whole input plus the kernel's plane scratch, whatever the placement
(mcunet_7x7's 's1b0_dw' on cortex-m4: 55,296 + 3,039 B, above the 55,443 B of the 1x1
convolution that writes that input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A step that reads nothing.
_NO_READ = np.iinfo(np.int64).max // 4

#: The DSP convolutions' blocks (firmware/kernels/cortex_m/conv.c: CONV_WIDE_K, and
#: conv_layer_block).
DSP_CONV_WIDE_K = 256


@dataclass
class AccessOrder:
    read_min: np.ndarray   # int64 per step: lowest input byte the step reads
    write_end: np.ndarray  # int64 per step: end of the output bytes written up to the step
    reads_first: bool


def safe_delta(order: AccessOrder) -> int:
    """The largest ``offset(output) - offset(input)`` at which the kernel never writes a byte
    it reads later."""
    reads = np.minimum.accumulate(order.read_min[::-1])[::-1]
    writes = np.maximum.accumulate(np.maximum(order.write_end, 0))
    if order.reads_first:
        writes = np.concatenate([[0], writes[:-1]])
    return int(np.min(reads - writes)) if len(reads) else 0


def elementwise(size: int, in_bytes: int, out_bytes: int) -> int:
    """Safe delta of a kernel reading element i (``in_bytes`` each) before writing element i
    (``out_bytes`` each): 0 when the output is no wider (in place, or inside the input's
    first bytes), else the output starts (size - 1) * (out - in) bytes lower."""
    return min(0, (size - 1) * (in_bytes - out_bytes))


def rows(batches: int, in_row: int, out_row: int) -> int:
    """Safe delta of FULLY_CONNECTED: row b's output written while row b is read."""
    b = np.arange(batches, dtype=np.int64)
    return int(np.min(b * in_row - (b + 1) * out_row))


def _first_inside(origin: np.ndarray, taps: int, dilation: int, size: int) -> np.ndarray:
    """Per window origin, the first input coordinate of its taps inside [0, size), or -1."""
    step = np.where(origin >= 0, 0, (-origin + dilation - 1) // dilation)
    first = origin + step * dilation
    return np.where((step < taps) & (first < size), first, -1)


def window_reads(p: dict, channels_in: int) -> np.ndarray:
    """Per output pixel (all batches, row-major), the lowest input byte its window reads.
    ``p``: the geometry fields of the convolution / pooling parameters."""
    oh, ow = p["output_h"], p["output_w"]
    h, w = p["input_h"], p["input_w"]
    kh, kw = p.get("filter_h", 1), p.get("filter_w", 1)
    dh, dw = p.get("dilation_h", 1), p.get("dilation_w", 1)
    ys = _first_inside(np.arange(oh, dtype=np.int64) * p["stride_h"] - p.get("pad_top", 0),
                       kh, dh, h)
    xs = _first_inside(np.arange(ow, dtype=np.int64) * p["stride_w"] - p.get("pad_left", 0),
                       kw, dw, w)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    first = np.where((y >= 0) & (x >= 0), (y * w + x) * channels_in, _NO_READ).reshape(-1)
    image = h * w * channels_in
    return np.concatenate([first + b * image for b in range(p.get("batches", 1))])


def _last_inside(origin: np.ndarray, taps: int, dilation: int, size: int) -> np.ndarray:
    """Per window origin, the last input coordinate of its taps inside [0, size), or -1."""
    step = np.minimum(taps - 1, np.floor_divide(size - 1 - origin, dilation))
    last = origin + step * dilation
    return np.where((step >= 0) & (last >= 0), last, -1)


def window_read_ends(p: dict, channels_in: int) -> np.ndarray:
    """Per output pixel (all batches, row-major), the end of the input bytes its window
    reads (one past the highest; -_NO_READ when it reads none)."""
    oh, ow = p["output_h"], p["output_w"]
    h, w = p["input_h"], p["input_w"]
    kh, kw = p.get("filter_h", 1), p.get("filter_w", 1)
    dh, dw = p.get("dilation_h", 1), p.get("dilation_w", 1)
    ys = _last_inside(np.arange(oh, dtype=np.int64) * p["stride_h"] - p.get("pad_top", 0),
                      kh, dh, h)
    xs = _last_inside(np.arange(ow, dtype=np.int64) * p["stride_w"] - p.get("pad_left", 0),
                      kw, dw, w)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    end = np.where((y >= 0) & (x >= 0), (y * w + x + 1) * channels_in, -_NO_READ).reshape(-1)
    image = h * w * channels_in
    return np.concatenate([end + b * image for b in range(p.get("batches", 1))])


def mirrored(read_end: np.ndarray, write_start: np.ndarray, reads_first: bool,
             in_bytes: int, out_bytes: int) -> AccessOrder:
    """A kernel walking its tensors backward (last output first), as an order of the mirror
    image (byte x of a tensor of n bytes at n - x): step t reads input bytes below
    ``read_end[t]`` and has written the output from ``write_start[t]`` up. With :func:
    `delta_above` the mirror's safe delta becomes the lowest delta at which the output may
    sit (above the input)."""
    return AccessOrder(in_bytes - read_end, out_bytes - write_start, reads_first)


def delta_above(order: AccessOrder, in_bytes: int, out_bytes: int) -> int:
    """The lowest ``offset(output) - offset(input)`` safe for a backward kernel whose
    :func:`mirrored` order is ``order``: in the mirror image the output starts
    ``in_bytes - out_bytes - delta`` bytes from the input, which must be at most the mirror's
    safe delta."""
    return in_bytes - out_bytes - safe_delta(order)


def pixels_interleaved(p: dict, channels_in: int, channels_out: int) -> AccessOrder:
    """The portable convolutions and pooling: one output pixel after the other."""
    reads = window_reads(p, channels_in)
    writes = (np.arange(len(reads), dtype=np.int64) + 1) * channels_out
    return AccessOrder(reads, writes, reads_first=False)


def dsp_conv_block(k: int, pixels: int) -> int:
    """conv_layer_block of firmware/kernels/cortex_m/conv.c."""
    computed8 = 8 if pixels < 8 else (pixels + 7) // 8 * 8
    computed4 = 4 if pixels < 4 else (pixels + 3) // 4 * 4
    wide = 8 if k <= DSP_CONV_WIDE_K else 4
    return 8 if wide == 8 and 10 * computed8 <= 11 * computed4 else 4


def dsp_block_pixels(p: dict, k: int) -> int:
    """Output pixels per block of the DSP convolution with parameters ``p`` and windows of
    ``k`` values: conv_layer_block, or 7 (4) where lowering's ``block`` caps 8 at 7 (4)."""
    n = dsp_conv_block(k, p["output_h"] * p["output_w"])
    return p["block"] if n == 8 and p.get("block") in (4, 7) else n


def dsp_blocks(p: dict, channels_in: int, channels_out: int, k: int,
               groups: int) -> AccessOrder:
    """cortex_m/conv.c's conv_run_body without ADD: blocks of n output pixels (7 instead of 8
    when the parameters' ``block`` says 7)."""
    pixels = p["output_h"] * p["output_w"]
    per_pixel = window_reads(p, channels_in)
    n = dsp_block_pixels(p, k)
    reads, writes = [], []
    for b in range(p.get("batches", 1)):
        base = b * pixels
        for pix in range(0, pixels, n):
            first, count = pix, min(n, pixels - pix)
            reads.append(per_pixel[base + first:base + first + count].min())
            writes.append((base + first + count) * channels_out)
    return AccessOrder(np.array(reads, np.int64), np.array(writes, np.int64),
                       reads_first=groups == 1)


def dsp_blocks_backward(p: dict, channels_in: int, channels_out: int, k: int,
                        groups: int) -> AccessOrder:
    """cortex_m/conv.c's conv_run_body without ADD run backward (the output above the
    input): the same blocks, the last first (batches too), as a :func:`mirrored` order."""
    pixels = p["output_h"] * p["output_w"]
    ends = window_read_ends(p, channels_in)
    n = dsp_block_pixels(p, k)
    read_end, write_start = [], []
    batches = p.get("batches", 1)
    for b in reversed(range(batches)):
        base = b * pixels
        for pix in reversed(range(0, pixels, n)):
            count = min(n, pixels - pix)
            read_end.append(ends[base + pix:base + pix + count].max())
            write_start.append((base + pix) * channels_out)
    in_bytes = batches * p["input_h"] * p["input_w"] * channels_in
    out_bytes = batches * pixels * channels_out
    return mirrored(np.array(read_end, np.int64), np.array(write_start, np.int64),
                    groups == 1, in_bytes, out_bytes)


def pixels_backward(p: dict, channels_in: int, channels_out: int) -> AccessOrder:
    """The portable convolutions run backward: the last output pixel first, each reading its
    window while its channels are stored, as a :func:`mirrored` order."""
    ends = window_read_ends(p, channels_in)[::-1]
    starts = np.arange(len(ends), dtype=np.int64)[::-1] * channels_out
    batches = p.get("batches", 1)
    in_bytes = batches * p["input_h"] * p["input_w"] * channels_in
    return mirrored(ends, starts, False, in_bytes, len(ends) * channels_out)


def conv_delta_above(p: dict, channels_in: int, channels_out: int, filter_c: int,
                     dsp: bool) -> int:
    """The lowest safe delta of tinyml_conv2d(_1x1)_s8/_s4 when the output starts above the
    input, which the kernels then walk backward."""
    batches = p.get("batches", 1)
    in_bytes = batches * p["input_h"] * p["input_w"] * channels_in
    out_bytes = batches * p["output_h"] * p["output_w"] * channels_out
    if dsp:
        k = p.get("filter_h", 1) * p.get("filter_w", 1) * filter_c
        order = dsp_blocks_backward(p, channels_in, channels_out, k, channels_in // filter_c)
    else:
        order = pixels_backward(p, channels_in, channels_out)
    return max(1, delta_above(order, in_bytes, out_bytes))


def conv_delta(p: dict, channels_in: int, channels_out: int, filter_c: int, dsp: bool) -> int:
    """Safe delta of tinyml_conv2d(_1x1)_s8/_s4 with parameters ``p`` (and of
    tinyml_conv2d_add_s8/_s4 over input 0, with its ``conv`` parameters)."""
    if dsp:
        k = p.get("filter_h", 1) * p.get("filter_w", 1) * filter_c
        order = dsp_blocks(p, channels_in, channels_out, k, channels_in // filter_c)
    else:
        order = pixels_interleaved(p, channels_in, channels_out)
    return safe_delta(order)
