"""Tensors of the graph IR: shape, element type, quantization and (for constants) data.

Layout is NHWC for 4-D activations, as in TFLite and TFLM: every kernel, the memory planner and
the generated C assume it. Frontends for NCHW formats (ONNX) convert at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Element types the IR knows, by name, with their numpy type.
DTYPES: dict[str, type] = {
    "float32": np.float32,
    "float16": np.float16,
    "int8": np.int8,
    # Sub-byte weights (TFLite's INT4): held unpacked, one code in [-8, 7] per np.int8 element,
    # so every kernel computes on them as on int8. A .tflite file stores them two per byte (low
    # nibble first, as TFLM unpacks them; :func:`storage_bytes`), the generated C in its own
    # packed layout (tinyml/codegen/int4_layout.py).
    "int4": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
}


def dtype_of(array: np.ndarray) -> str:
    """The IR dtype name of a numpy array."""
    name = np.dtype(array.dtype).name
    if name not in DTYPES:
        raise ValueError(f"unsupported element type {name}")
    return name


def itemsize(dtype: str) -> int:
    """Bytes of one element in memory (an unpacked int4 code takes a byte)."""
    return np.dtype(DTYPES[dtype]).itemsize


def packed_bytes(dtype: str, count: int) -> int:
    """Bytes ``count`` elements take when stored (in flash, in a .tflite buffer): int4 codes
    two per byte, ceil(count / 2); every other type its item size each."""
    if dtype == "int4":
        return (int(count) + 1) // 2
    return int(count) * itemsize(dtype)


INT4_MIN, INT4_MAX = -8, 7


def pack_int4(codes: np.ndarray) -> bytes:
    """Codes in [-8, 7], two per byte in row-major order: element 2i in the low nibble of
    byte i, element 2i+1 in its high nibble; an odd count leaves the last high nibble 0.
    This is the layout TFLM's ``UnpackDenseInt4IntoInt8`` reads."""
    flat = np.asarray(codes).astype(np.int64).ravel()
    if flat.size and (flat.min() < INT4_MIN or flat.max() > INT4_MAX):
        raise ValueError(f"int4 codes must lie in [{INT4_MIN}, {INT4_MAX}]")
    nibbles = (flat & 0xF).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_int4(raw: bytes, count: int) -> np.ndarray:
    """The ``count`` codes (np.int8, sign-extended) stored in ``raw`` by :func:`pack_int4`."""
    data = np.frombuffer(bytes(raw), np.uint8)
    if data.size != (count + 1) // 2:
        raise ValueError(f"{count} int4 codes take {(count + 1) // 2} bytes, got {data.size}")
    nibbles = np.empty(data.size * 2, np.int16)
    nibbles[0::2] = data & 0xF
    nibbles[1::2] = data >> 4
    nibbles = np.where(nibbles > 7, nibbles - 16, nibbles)
    return nibbles[:count].astype(np.int8)


def storage_bytes(tensor: "Tensor") -> int:
    """Bytes ``tensor`` takes when stored: :func:`packed_bytes` of its elements. This is the
    figure weight and flash budgets count."""
    return packed_bytes(tensor.dtype, tensor.size)


@dataclass
class Quantization:
    """Affine quantization: ``real = scale * (q - zero_point)``.

    ``axis`` is None for per-tensor quantization (one scale and zero point); otherwise
    ``scale`` and ``zero_point`` hold one entry per slice along ``axis`` (per-channel weights).
    Scales are kept as float32 because TFLite stores them so, and TFLM derives its fixed-point
    multipliers from those float32 values.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None

    def __post_init__(self):
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64))
        if self.scale.shape != self.zero_point.shape:
            raise ValueError("scale and zero_point must have the same length")
        if self.axis is None and self.scale.size != 1:
            raise ValueError("per-tensor quantization needs exactly one scale")

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def __str__(self) -> str:
        if self.per_channel:
            return f"per-axis({self.axis}) x{self.scale.size}"
        return f"s={float(self.scale[0]):.6g} zp={int(self.zero_point[0])}"


@dataclass
class Tensor:
    """A value in the graph. Constants carry ``data``; activations have ``data=None``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: Quantization | None = None
    data: np.ndarray | None = field(default=None, repr=False)
    #: True when ``data`` was computed at compile time by shape inference (a shape-only op's
    #: output), not stored in the model: such values are neither parameters nor activations.
    folded: bool = False

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        if self.dtype not in DTYPES:
            raise ValueError(f"tensor '{self.name}': unsupported element type {self.dtype}")

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """Stored size in bytes (int4: two codes per byte, see :func:`storage_bytes`)."""
        return storage_bytes(self)

    @property
    def is_quantized(self) -> bool:
        return self.quant is not None and self.dtype in ("int4", "int8", "uint8", "int16",
                                                          "int32")

    def scale(self) -> float:
        """The per-tensor scale (raises for per-channel tensors)."""
        assert self.quant is not None and not self.quant.per_channel, self.name
        return float(self.quant.scale[0])

    def zero_point(self) -> int:
        """The per-tensor zero point (raises for per-channel tensors)."""
        assert self.quant is not None and not self.quant.per_channel, self.name
        return int(self.quant.zero_point[0])

    def describe(self) -> str:
        dims = "x".join(str(d) for d in self.shape) or "scalar"
        text = f"{self.dtype}[{dims}]"
        if self.quant is not None:
            text += f" {self.quant}"
        return text
