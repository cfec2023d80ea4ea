"""The pure pieces of the TFLM comparison: the firmware's console, layer matching, ratios.

Nothing here builds or runs anything, so it is unit-tested on its own
(``tests/test_tflm_bench.py``).

Matching layers: TFLM runs the model's operators one by one; tinyml may fuse some (a PAD into
the convolution after it), alias others (a RESHAPE costs nothing) or run several patch by
patch. Both sides name a layer after the first output tensor of its TFLite operator (tinyml's
TFLite importer does, ``tinyml/frontends/tflite.py``), so names common to both are anchors
(the longest common subsequence, in execution order). Between two anchors, the TFLM operators
and the tinyml layers that did not match form one row, ending with the anchor: a fused op's
cost is compared with the ops it replaces, and the rows add up to each side's total.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

PREFIX = "tflm_bench"


@dataclass
class FirmwareRun:
    """What the TFLM firmware printed (``firmware_main.cc``)."""
    arena_used_bytes: int | None = None
    invoke_ticks: int | None = None
    profiled_ticks: int | None = None
    layers: list[tuple[str, int]] = field(default_factory=list)   # (op tag, ticks)
    outputs: dict[int, bytes] = field(default_factory=dict)
    profiled_outputs: dict[int, bytes] = field(default_factory=dict)
    done: bool = False
    error: str | None = None


def parse_console(text: str) -> FirmwareRun:
    """The ``tflm_bench ...`` lines of the firmware's console; other lines (TFLM's own log)
    are ignored. Raises ValueError on a malformed line (a truncated run)."""
    run = FirmwareRun()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != PREFIX:
            continue
        key, args = parts[1], parts[2:]
        try:
            if key in ("arena_used_bytes", "invoke_ticks", "profiled_ticks"):
                setattr(run, key, int(args[0]))
            elif key == "layer":
                index, tag, ticks = int(args[0]), args[1], int(args[2])
                if index != len(run.layers):
                    raise ValueError(f"layer {index} out of order")
                run.layers.append((tag, ticks))
            elif key in ("output", "profiled_output"):
                index, size = int(args[0]), int(args[1])
                data = bytes.fromhex(args[2]) if len(args) > 2 else b""
                if len(data) != size:
                    raise ValueError(f"output {index}: {len(data)} of {size} bytes")
                (run.outputs if key == "output" else run.profiled_outputs)[index] = data
            elif key == "done":
                run.done = True
            elif key == "error":
                run.error = " ".join(args)
        except (IndexError, ValueError) as e:
            raise ValueError(f"malformed firmware line {line[:80]!r}: {e}") from None
    return run


@dataclass
class Row:
    """One comparable unit: TFLM operators and tinyml layers that compute the same tensors."""
    tflm_ops: list[str]            # op kinds, in order
    tinyml_ops: list[str]
    name: str                      # the anchor (or last) layer name
    tflm: int                      # instructions
    tinyml: int
    extra: dict[str, int] = field(default_factory=dict)   # other TFLM builds (reference)

    @property
    def ratio(self) -> float | None:
        return self.tinyml / self.tflm if self.tflm else None

    def label(self) -> str:
        def kinds(ops):
            return " + ".join(ops) if ops else "-"
        left, right = kinds(self.tflm_ops), kinds(self.tinyml_ops)
        return left if left == right else f"{left} | tinyml: {right}"


def match_layers(tflm: list[dict], tinyml: list[dict]) -> list[Row]:
    """Rows pairing TFLM's operators with tinyml's layers. Each entry of both lists has
    ``name``, ``op`` and ``instructions``; TFLM entries may carry more instruction counts
    under ``extra`` (a dict), summed per row the same way."""
    a = [layer["name"] for layer in tflm]
    b = [layer["name"] for layer in tinyml]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    anchors = [(block.a + k, block.b + k) for block in matcher.get_matching_blocks()
               for k in range(block.size)]
    rows, i0, j0 = [], 0, 0
    for i, j in anchors + [(len(a) - 1, len(b) - 1)]:
        left, right = tflm[i0:i + 1], tinyml[j0:j + 1]
        if left or right:
            extra: dict[str, int] = {}
            for layer in left:
                for key, value in layer.get("extra", {}).items():
                    extra[key] = extra.get(key, 0) + value
            rows.append(Row([x["op"] for x in left], [x["op"] for x in right],
                            (left or right)[-1]["name"],
                            sum(x["instructions"] for x in left),
                            sum(x["instructions"] for x in right), extra))
        i0, j0 = max(i0, i + 1), max(j0, j + 1)
    return rows


def outputs_equal(tflm: dict[int, bytes], tinyml: list[bytes]) -> tuple[bool, str]:
    """Whether TFLM's outputs (by index) are byte for byte tinyml's (in output order), with
    a short reason when not."""
    if sorted(tflm) != list(range(len(tinyml))):
        return False, f"TFLM has {len(tflm)} outputs, tinyml {len(tinyml)}"
    for index, data in enumerate(tinyml):
        if tflm[index] != data:
            if len(tflm[index]) != len(data):
                return False, (f"output {index}: TFLM {len(tflm[index])} bytes, tinyml "
                               f"{len(data)}")
            differ = sum(x != y for x, y in zip(tflm[index], data))
            return False, f"output {index}: {differ} of {len(data)} bytes differ"
    return True, "identical"


def geometric_mean(values: list[float]) -> float | None:
    import math
    values = [v for v in values if v and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))
