"""Offsets for buffers in one arena: several greedy strategies, the smallest result wins.

Why several: placing buffers with known lifetimes at minimal total size is NP-hard (dynamic
storage allocation); greedy heuristics are near-optimal on typical CNN chains but each has
graphs where it fragments. TFLM's ``GreedyMemoryPlanner`` places by decreasing size at the
lowest offset that fits; we run that and alternatives (by first use, by lifetime, by
size x lifetime, by how many bytes overlap a buffer in time), each with first-fit (lowest
offset) and best-fit (tightest gap) placement, and keep the smallest arena. Every offset is a
multiple of ``alignment`` (4 for word access; 16 for future SIMD kernels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from tinyml.schedule.liveness import Buffer


def align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _by_size(b: Buffer, ctx) -> tuple:
    return (-b.size, b.start, b.name)


def _by_first_use(b: Buffer, ctx) -> tuple:
    return (b.start, -b.size, b.name)


def _by_first_use_smallest(b: Buffer, ctx) -> tuple:
    """Like first use, the smaller first among buffers born together: a graph input placed
    before the chain that overlaps its reader's output (whose later segments may then take
    the input's bytes once it is dead)."""
    return (b.start, b.size, b.name)


def _by_lifetime(b: Buffer, ctx) -> tuple:
    return (-(b.end - b.start), -b.size, b.start, b.name)


def _by_area(b: Buffer, ctx) -> tuple:
    return (-sum(s.size * (s.end - s.start + 1) for s in b.segments), b.start, b.name)


def _by_contention(b: Buffer, ctx) -> tuple:
    """Buffers alive when the most bytes are alive first (they decide the peak)."""
    profile = ctx["profile"]
    pressure = max(profile[s] for seg in b.segments for s in range(seg.start, seg.end + 1))
    return (-pressure, -b.size, b.start, b.name)


ORDERINGS: dict[str, Callable] = {
    "size": _by_size, "first_use": _by_first_use, "first_use_smallest": _by_first_use_smallest,
    "lifetime": _by_lifetime,
    "area": _by_area, "contention": _by_contention,
}
FITS = ("first_fit", "best_fit")
STRATEGIES = tuple(f"{o}/{f}" for o in ORDERINGS for f in FITS)


@dataclass
class Placement:
    strategy: str
    offsets: list[int]  # per buffer, in the order of the buffer list
    arena_bytes: int


def place(buffers: list[Buffer], strategy: str, alignment: int,
          profile: list[int]) -> Placement:
    ordering, fit = strategy.split("/")
    key = ORDERINGS[ordering]
    ctx = {"profile": profile}
    order = sorted(range(len(buffers)), key=lambda i: key(buffers[i], ctx))
    offsets: list[int | None] = [None] * len(buffers)
    placed: list[int] = []
    for i in order:
        offsets[i] = _fit(buffers, offsets, placed, i, fit, alignment)
        placed.append(i)
    top = max((offsets[i] + buffers[i].size for i in range(len(buffers))), default=0)
    return Placement(strategy, [int(o) for o in offsets], align_up(top, alignment))


def _fit(buffers, offsets, placed, i, fit, alignment) -> int:
    """An aligned offset for buffer ``i`` clear of every placed buffer it meets in time."""
    me = buffers[i]
    # (lo, hi, start): offsets o with lo < o < hi collide with bytes from ``start`` upwards.
    # Segments sit at their offset inside their buffer (overlapped hand-overs).
    forbidden: list[tuple[int, int, int]] = []
    for p in placed:
        other = buffers[p]
        for a in me.segments:
            for b in other.segments:
                if a.overlaps(b) and a.size and b.size:
                    base = offsets[p] + b.offset - a.offset
                    forbidden.append((base - a.size, base + b.size, base))
    candidates = sorted({0} | {align_up(hi, alignment) for _, hi, _ in forbidden if hi > 0})
    valid = [o for o in candidates if not any(lo < o < hi for lo, hi, _ in forbidden)]
    if fit == "first_fit":
        return valid[0]
    # Best fit: the offset whose free gap (up to the next taken byte) is tightest.
    best, best_waste = valid[-1], None
    for o in valid:
        above = [start for _, _, start in forbidden if start >= o]
        if not above:
            continue  # the open space above everything: the fallback
        waste = min(above) - (o + me.size)
        if best_waste is None or waste < best_waste:
            best, best_waste = o, waste
    return best
