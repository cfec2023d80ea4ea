"""The pure pieces of the TFLM comparison: the firmware's console, layer matching, ratios.

Nothing here builds or runs anything, so it is unit-tested on its own
(``tests/test_tflm_bench.py``).

Matching layers: TFLM runs the model's operators one by one; tinyml may fuse some (a
convolution and the ADD after it become one CONV_2D_ADD layer named ``conv+add``), fold others
away, alias some (a RESHAPE costs nothing), reorder independent ones (a residual block's
shortcut convolution) or run several patch by patch. Both sides name a layer after the first
output tensor of its TFLite operator (tinyml's TFLite importer does,
``tinyml/frontends/tflite.py``; fusions join the names with ``+``), so a row is a tinyml layer
with the TFLM operators it computes (see ``match_layers``): a fused layer's cost is compared
with the operators it replaces, and the rows add up to each side's total.
"""

from __future__ import annotations

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
    """Rows pairing TFLM's operators with tinyml's layers, in tinyml's execution order. Each
    entry of both lists has ``name``, ``op`` and ``instructions``; TFLM entries may carry more
    instruction counts under ``extra`` (a dict), summed per row the same way.

    A tinyml layer owns the TFLM operators it is named after: its name, or each part of a
    fused layer's ``a+b`` name. TFLM operators no layer names (folded away) join the row of
    the next operator that has one (else the previous); tinyml layers that name no operator
    (inserted by tinyml) join the row of the next layer that does (else the previous). Layers
    that share an operator share a row. Every instruction is in exactly one row."""
    owner: dict[str, int] = {}
    parent = list(range(len(tinyml)))

    def find(j: int) -> int:
        while parent[j] != j:
            parent[j] = parent[parent[j]]
            j = parent[j]
        return j

    for j, layer in enumerate(tinyml):
        for part in dict.fromkeys([layer["name"], *layer["name"].split("+")]):
            if part in owner:
                parent[find(j)] = find(owner[part])
            else:
                owner[part] = j
    tflm_owner = [owner.get(op["name"]) for op in tflm]
    _fill(tflm_owner)
    tflm_names = {op["name"] for op in tflm}
    named = {j for j, layer in enumerate(tinyml)
             if any(part in tflm_names for part in [layer["name"], *layer["name"].split("+")])}
    tiny_owner: list[int | None] = [j if j in named else None for j in range(len(tinyml))]
    _fill(tiny_owner)
    for j, o in enumerate(tiny_owner):
        if o is not None and o != j:
            parent[find(j)] = find(o)
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for j in range(len(tinyml)):
        groups.setdefault(find(j), ([], []))[1].append(j)
    for i, o in enumerate(tflm_owner):
        if o is None:  # tinyml has no layer at all
            groups.setdefault(-1, ([], []))[0].append(i)
        else:
            groups[find(o)][0].append(i)
    rows = []
    for key in sorted(groups, key=lambda k: min(groups[k][1], default=len(tinyml))):
        left = [tflm[i] for i in groups[key][0]]
        right = [tinyml[j] for j in groups[key][1]]
        extra: dict[str, int] = {}
        for layer in left:
            for name, value in layer.get("extra", {}).items():
                extra[name] = extra.get(name, 0) + value
        rows.append(Row([x["op"] for x in left], [x["op"] for x in right],
                        (right or left)[-1]["name"], sum(x["instructions"] for x in left),
                        sum(x["instructions"] for x in right), extra))
    return rows


def _fill(owners: list[int | None]) -> None:
    """Each None takes the next non-None value after it, else the last one before it."""
    following = None
    for k in range(len(owners) - 1, -1, -1):
        if owners[k] is None:
            owners[k] = following
        else:
            following = owners[k]
    previous = None
    for k, value in enumerate(owners):
        if value is None:
            owners[k] = previous
        else:
            previous = value


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
