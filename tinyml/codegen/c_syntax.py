"""Small helpers that turn Python values into readable C."""

from __future__ import annotations

import re

import numpy as np

_C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t",
            "bool": "uint8_t",  # TFLite BOOL: one byte, 0 or 1
            "float32": "float"}


def c_type(dtype: str) -> str:
    """The C element type of an IR dtype."""
    return _C_TYPES[dtype]


def identifier(text: str, used: set[str] | None = None) -> str:
    """A valid, unique C identifier derived from ``text``."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", text).strip("_") or "t"
    if name[0].isdigit():
        name = "t_" + name
    name = re.sub(r"_+", "_", name)
    if used is not None:
        base, i = name, 1
        while name in used:
            name = f"{base}_{i}"
            i += 1
        used.add(name)
    return name


def c_literal(value) -> str:
    """An int, float or bool as a C literal (floats exact to float32, with an f suffix)."""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (float, np.floating)):
        v = np.float32(value)
        if np.isinf(v):
            return "INFINITY" if v > 0 else "-INFINITY"
        text = np.format_float_positional(v, unique=True, trim="0")
        if "." not in text:
            text += ".0"
        return text + "f"
    value = int(value)
    if value == -(1 << 31):
        return "(-2147483647 - 1)"  # INT32_MIN has no literal of type int32
    return str(value)


def c_array_body(values: np.ndarray, per_line: int = 16, indent: str = "    ") -> str:
    """Array initializer contents, ``per_line`` values a line."""
    flat = np.asarray(values).reshape(-1)
    items = [c_literal(v) for v in flat.tolist()] if flat.dtype.kind == "f" else \
        [c_literal(v) for v in flat.astype(np.int64).tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return (",\n").join(indent + line for line in lines)


def c_comment(text: str) -> str:
    """Text safe inside a /* */ comment, on one line."""
    return " ".join(text.replace("*/", "* /").split())
