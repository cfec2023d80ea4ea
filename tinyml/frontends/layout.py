"""Permutation algebra for importing channels-first (NCHW) models into the NHWC graph IR.

Every value of a source model has a *logical* layout (the axis order its own ops use, e.g.
ONNX's NCHW) and the IR tensor that holds it has a *stored* layout. A frontend tracks the
relation as a permutation ``perm`` with ``stored.shape[j] == logical.shape[perm[j]]``, i.e.
``stored = numpy.transpose(logical, perm)``: stored axis ``j`` holds logical axis ``perm[j]``.
An NCHW activation kept in NHWC has ``perm == (0, 2, 3, 1)``.

With this bookkeeping a source-model transpose costs nothing (only the permutation changes),
and a real data movement is emitted only when an op needs a layout the value does not have yet.
Moving only unit dimensions never moves data, so such conversions are reshapes, not transposes.
"""

from __future__ import annotations

Perm = tuple[int, ...]


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def channels_last(rank: int) -> Perm:
    """The NHWC-style perm of an NC... value: batch, spatial axes, then channels."""
    if rank < 3:
        return identity(rank)
    return (0,) + tuple(range(2, rank)) + (1,)


def invert(perm: Perm) -> Perm:
    inverse = [0] * len(perm)
    for j, p in enumerate(perm):
        inverse[p] = j
    return tuple(inverse)


def stored_shape(logical: tuple[int, ...], perm: Perm) -> tuple[int, ...]:
    return tuple(logical[p] for p in perm)


def stored_axis(perm: Perm, logical_axis: int) -> int:
    """Where logical axis ``logical_axis`` lives in the stored tensor."""
    return perm.index(logical_axis)


def after_transpose(perm: Perm, transpose: Perm) -> Perm:
    """The perm of ``y = transpose(x, transpose)`` when y reuses x's stored tensor.

    Stored axis j holds logical x axis ``perm[j]``, which is y axis ``inverse(transpose)[perm[j]]``.
    """
    inverse = invert(transpose)
    return tuple(inverse[p] for p in perm)


def between(src: Perm, dst: Perm) -> Perm:
    """The IR TRANSPOSE perm turning a tensor stored in ``src`` into one stored in ``dst``."""
    inverse = invert(src)
    return tuple(inverse[d] for d in dst)


def only_unit_dims_move(shape: tuple[int, ...], transpose: Perm) -> bool:
    """True when transposing ``shape`` by ``transpose`` keeps the order of the non-unit axes,
    so the element order in memory is unchanged and a reshape does the job."""
    moved = [a for a in transpose if shape[a] != 1]
    return moved == sorted(moved)


def drop_axes(perm: Perm, axes: set[int] | list[int]) -> Perm:
    """The perm left when logical ``axes`` are removed from both layouts (reductions, squeeze)."""
    axes = set(axes)
    kept = [p for p in perm if p not in axes]
    rank = {a: i for i, a in enumerate(sorted(kept))}
    return tuple(rank[p] for p in kept)


def insert_axes(perm: Perm, axes: list[int]) -> Perm:
    """The perm after inserting new unit logical ``axes`` (positions in the output rank).

    An identity layout stays the identity; otherwise the new unit axes are stored last, which
    keeps the stored element order of the existing axes.
    """
    out_rank = len(perm) + len(axes)
    old_to_new = [a for a in range(out_rank) if a not in set(axes)]
    if perm == identity(len(perm)):
        return identity(out_rank)
    return tuple(old_to_new[p] for p in perm) + tuple(sorted(axes))
