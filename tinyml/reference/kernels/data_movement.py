"""The data_movement family: SLICE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK, the resizes,
DEPTH_TO_SPACE, SPACE_TO_DEPTH, MIRROR_PAD, BROADCAST_TO, REVERSE_V2, GATHER and GATHER_ND.

All but RESIZE_BILINEAR copy values, so one implementation serves float and int8, and TFLM's
int8 kernels do not look at the quantization (the converter gives the output the input's).
Every copying op here is *separable*: output element (i_0, ..., i_k) is input element
``sum_j table_j[i_j]`` (flat index) for one table per output axis. :func:`index_tables`
computes those tables once; the reference gathers with them and the lowering hands the same
tables (in bytes) to the one C kernel, ``tinyml_index_copy``, so the two cannot disagree on
an index. Index arithmetic TFLM does in float (nearest-neighbour resize) is done here in
``np.float32``, at compile time.

RESIZE_BILINEAR's int8 kernel is TFLM's ``ResizeBilinearInteger``: 10-bit fixed-point source
coordinates and a 20-bit weighted sum of the four raw int8 codes, rounded half away from
zero (TFLM's default double-rounding build). Its per-axis coordinates are computed here
(:func:`bilinear_axis`) for the reference and the C kernel alike.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.ir import Op, Tensor
from tinyml.ir import ops as irops
from tinyml.reference.fixedpoint import tflite_round
from tinyml.reference.kernels.registry import KernelCall, kernel


def _strides(shape) -> list[int]:
    strides, step = [], 1
    for d in reversed(list(shape)):
        strides.append(step)
        step *= int(d)
    return strides[::-1]


def _fail(op: Op, detail: str) -> UnsupportedOpError:
    return UnsupportedOpError(op.kind, op.name, detail=detail)


def nearest_source(out_size: int, in_size: int, align_corners: bool,
                   half_pixel_centers: bool) -> np.ndarray:
    """TFLM's ``GetNearestNeighbor`` for every output coordinate, in float32 like TFLM."""
    f32 = np.float32
    if align_corners and out_size > 1:
        scale = f32(in_size - 1) / f32(out_size - 1)
    else:
        scale = f32(in_size) / f32(out_size)
    offset = f32(0.5) if half_pixel_centers else f32(0.0)
    values = (np.arange(out_size, dtype=np.float32) + offset) * scale
    rounded = tflite_round(values) if align_corners else np.floor(values)
    index = np.minimum(rounded.astype(np.int64), in_size - 1)
    if half_pixel_centers:
        index = np.maximum(index, 0)
    return index


def _mirror_source(out_size: int, in_size: int, before: int, offset: int) -> np.ndarray:
    """TFLM MIRROR_PAD's ``GetInputDimension`` (offset 1: REFLECT, 0: SYMMETRIC)."""
    result = []
    for i in range(out_size):
        if i < before:
            original = before + offset - 1
            result.append(original - min(i, original - offset))
            continue
        i -= before
        if i >= in_size:
            i -= in_size
            original = in_size - (1 + offset)
            result.append(original - min(i, original))
        else:
            result.append(i)
    return np.asarray(result, np.int64)


def _constant_indices(op: Op, t: Tensor | None, what: str = "indices") -> np.ndarray:
    if t is None or not t.is_constant:
        raise _fail(op, f"{what} must be constant (known at compile time)")
    return np.asarray(t.data).astype(np.int64)


def index_tables(op: Op, ins: list[Tensor | None], out_shape) -> tuple[list[int], list[np.ndarray]]:
    """(dims, tables): output element (i_0, ...) in row-major order over ``dims`` (whose
    product is the output size) reads flat input element ``sum_k tables[k][i_k]``."""
    x = ins[0]
    shape = [int(d) for d in x.shape]
    strides = _strides(shape)
    kind, a = op.kind, op.attrs
    axis_range = [np.arange(d, dtype=np.int64) for d in shape]
    if kind == "SLICE":
        dims = list(out_shape)
        return dims, [(b + np.arange(n)) * s for b, n, s in zip(a.begin, dims, strides)]
    if kind == "STRIDED_SLICE":
        slices, _ = irops._strided_slices(op, ins)
        dims, tables, base = [], [], 0
        for k, d in enumerate(shape):
            s = slices[k] if k < len(slices) else slice(None)
            if isinstance(s, slice):
                picked = axis_range[k][s]
                dims.append(len(picked))
                tables.append(picked * strides[k])
            else:
                base += int(axis_range[k][s]) * strides[k]
        return _with_base(dims, tables, base)
    if kind == "REVERSE_V2":
        axes = {irops.normalize_axis(v, len(shape), op) for v in a.axes}
        return shape, [(r[::-1] if k in axes else r) * s
                       for k, (r, s) in enumerate(zip(axis_range, strides))]
    if kind == "BROADCAST_TO":
        lead = len(out_shape) - len(shape)
        dims, tables = [], []
        for k, d in enumerate(out_shape):
            own = k - lead
            if own < 0 or shape[own] == 1:
                tables.append(np.zeros(d, np.int64))
            else:
                tables.append(np.arange(d, dtype=np.int64) * strides[own])
            dims.append(int(d))
        return dims, tables
    if kind == "MIRROR_PAD":
        offset = 1 if a.mode == "REFLECT" else 0
        return list(out_shape), [
            _mirror_source(o, d, b, offset) * s
            for o, d, (b, _), s in zip(out_shape, shape, a.pads, strides)]
    if kind == "RESIZE_NEAREST_NEIGHBOR":
        n, h, w, c = shape
        oh, ow = a.size
        ys = nearest_source(oh, h, a.align_corners, a.half_pixel_centers)
        xs = nearest_source(ow, w, a.align_corners, a.half_pixel_centers)
        return [n, oh, ow, c], [axis_range[0] * strides[0], ys * strides[1], xs * strides[2],
                                axis_range[3]]
    if kind in ("DEPTH_TO_SPACE", "SPACE_TO_DEPTH"):
        b = a.block_size
        n, h, w, c = shape
        _, oh, ow, oc = out_shape
        ys, xs, zs = np.arange(oh), np.arange(ow), np.arange(oc)
        if kind == "DEPTH_TO_SPACE":
            # out[n, y, x, z] = in[n, y // b, x // b, ((y % b) * b + x % b) * oc + z]
            ty = (ys // b) * strides[1] + (ys % b) * b * oc
            tx = (xs // b) * strides[2] + (xs % b) * oc
            tz = zs
        else:
            # out[n, y, x, ((i * b) + j) * c + k] = in[n, y * b + i, x * b + j, k]
            ty = ys * b * strides[1]
            tx = xs * b * strides[2]
            tz = (zs // (b * c)) * strides[1] + (zs // c % b) * strides[2] + zs % c
        return [n, oh, ow, oc], [axis_range[0] * strides[0], ty, tx, tz]
    if kind == "GATHER":
        axis = irops.normalize_axis(a.axis, len(shape), op)
        idx = _constant_indices(op, ins[1]).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= shape[axis]):
            raise _fail(op, f"indices outside [0, {shape[axis]}) (TFLM requires in-range "
                            f"indices)")
        dims = shape[:axis] + [idx.size] + shape[axis + 1:]
        tables = ([axis_range[k] * strides[k] for k in range(axis)] + [idx * strides[axis]] +
                  [axis_range[k] * strides[k] for k in range(axis + 1, len(shape))])
        return dims, tables
    if kind == "GATHER_ND":
        idx = _constant_indices(op, ins[1])
        nd = idx.shape[-1]
        rows = idx.reshape(-1, nd)
        slice_size = int(np.prod(shape[nd:], dtype=np.int64))
        if rows.size and ((rows < 0).any() or (rows >= np.asarray(shape[:nd])).any()):
            raise _fail(op, f"indices outside the input shape {shape} (TFLM fails on them)")
        starts = rows @ np.asarray(strides[:nd], np.int64) if nd else np.zeros(len(rows))
        return [len(rows), slice_size], [starts.astype(np.int64),
                                         np.arange(slice_size, dtype=np.int64)]
    raise AssertionError(kind)


def _with_base(dims, tables, base):
    if not dims:  # a scalar output
        return [1], [np.asarray([base], np.int64)]
    tables[0] = tables[0] + base
    return dims, tables


def gather_flat(x: np.ndarray, dims, tables) -> np.ndarray:
    """The values the tables select, in row-major order over ``dims``."""
    index = np.zeros([1] * len(dims), np.int64)
    for k, t in enumerate(tables):
        index = index + t.reshape([-1 if j == k else 1 for j in range(len(dims))])
    return x.reshape(-1)[index.reshape(-1)]


@kernel("SLICE", "REVERSE_V2", "BROADCAST_TO", "MIRROR_PAD", "RESIZE_NEAREST_NEIGHBOR",
        "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "GATHER_ND")
def index_copy(call: KernelCall) -> np.ndarray:
    if call.out.dtype != call.in_tensors[0].dtype:
        raise TinymlError(f"layer '{call.op.name}' ({call.op.kind}): input is "
                          f"{call.in_tensors[0].dtype}, output {call.out.dtype}")
    tensors = [None if t is None else Tensor(t.name, t.shape, t.dtype, t.quant, v)
               for t, v in zip(call.in_tensors, call.inputs)]
    dims, tables = index_tables(call.op, tensors, call.out.shape)
    return gather_flat(np.asarray(call.inputs[0]), dims, tables).reshape(call.out.shape)


@kernel("SPLIT", "SPLIT_V", "UNPACK")
def split(call: KernelCall) -> list[np.ndarray]:
    x = np.asarray(call.inputs[0])
    axis = irops.normalize_axis(call.attrs.axis, x.ndim, call.op)
    bounds = np.cumsum([t.shape[axis] if call.op.kind != "UNPACK" else 1
                        for t in call.out_tensors])[:-1]
    return [np.ascontiguousarray(p).reshape(t.shape)
            for p, t in zip(np.split(x, bounds, axis=axis), call.out_tensors)]


# ---- RESIZE_BILINEAR -------------------------------------------------------------------------

def bilinear_axis(out_size: int, in_size: int, align_corners: bool,
                  half_pixel_centers: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TFLM ``ComputeInterpolationValuesInteger`` for every output coordinate: (lower
    index, upper index, weight of the upper one in 1/1024), all int32 arithmetic with C's
    truncating division."""
    scale = ((1 << 10) * in_size + out_size // 2) // out_size
    if align_corners and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    v = np.arange(out_size, dtype=np.int64)
    scaled = v * scale + scale // 2 - (1 << 9) if half_pixel_centers else v * scale
    lower = np.maximum(_c_div(scaled, 1 << 10), 0)
    upper = np.minimum(_c_div(scaled + (1 << 10) - 1, 1 << 10), in_size - 1)
    return lower, upper, scaled - (1 << 10) * lower


def _c_div(a: np.ndarray, b: int) -> np.ndarray:
    """Integer division truncating toward zero, as C's ``/``."""
    q = np.abs(a) // abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


@kernel("RESIZE_BILINEAR")
def resize_bilinear(call: KernelCall) -> np.ndarray:
    x = np.asarray(call.inputs[0])
    a = call.attrs
    _, h, w, _ = x.shape
    oh, ow = a.size
    if not call.quantized:
        return _resize_bilinear_float(x, a)
    if x.dtype != np.int8:
        raise _fail(call.op, f"{x.dtype} input (int8 or float32 only)")
    y0, y1, wy = bilinear_axis(oh, h, a.align_corners, a.half_pixel_centers)
    x0, x1, wx = bilinear_axis(ow, w, a.align_corners, a.half_pixel_centers)
    v = x.astype(np.int64)
    one = 1 << 10
    wy, wx = wy[None, :, None, None], wx[None, None, :, None]
    total = (v[:, y0][:, :, x0] * (one - wy) * (one - wx) +
             v[:, y1][:, :, x0] * wy * (one - wx) +
             v[:, y0][:, :, x1] * (one - wy) * wx +
             v[:, y1][:, :, x1] * wy * wx)
    rounding = np.where(total > 0, 1 << 19, -(1 << 19))
    return _c_div(total + rounding, 1 << 20).astype(np.int8)


def _resize_bilinear_float(x: np.ndarray, a) -> np.ndarray:
    """TFLite's float ``ResizeBilinear`` (reference_ops), in float32 in its order."""
    f32 = np.float32
    _, h, w, _ = x.shape
    oh, ow = a.size

    def axis(out_size, in_size):
        scale = f32(in_size) / f32(out_size)
        if a.align_corners and out_size > 1:
            scale = f32(in_size - 1) / f32(out_size - 1)
        v = np.arange(out_size, dtype=np.float32)
        scaled = (v + f32(0.5)) * scale - f32(0.5) if a.half_pixel_centers else v * scale
        lo = np.maximum(np.floor(scaled).astype(np.int64), 0)
        hi = np.minimum(np.ceil(scaled).astype(np.int64), in_size - 1)
        return scaled, lo, hi

    iy, y0, y1 = axis(oh, h)
    ix, x0, x1 = axis(ow, w)
    dy = (iy - y0.astype(np.float32))[None, :, None, None]
    dx = (ix - x0.astype(np.float32))[None, None, :, None]
    one = f32(1)
    x = x.astype(np.float32)
    return (x[:, y0][:, :, x0] * (one - dy) * (one - dx) +
            x[:, y1][:, :, x0] * dy * (one - dx) +
            x[:, y0][:, :, x1] * (one - dy) * dx +
            x[:, y1][:, :, x1] * dy * dx).astype(np.float32)



@kernel("FILL", "ZEROS_LIKE")
def constant_output(call: KernelCall) -> np.ndarray:
    """Only reached when folding: their outputs are evaluated at shape inference."""
    tensors = [Tensor(t.name, t.shape, t.dtype, t.quant, v)
               for t, v in zip(call.in_tensors, call.inputs)]
    return call.op.spec.evaluate(call.op, tensors)[0]
