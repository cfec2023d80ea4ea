"""What each op allows the memory planner: in-place candidates and kernel scratch.

Why separate: the authoritative answers come from lowering (``KernelCall.in_place`` and
``KernelCall.scratch_bytes``, since only the chosen C kernel knows them). Until a graph is
lowered (in tests, in ``tinyml inspect``, in benchmarks) the planner uses the defaults here,
which describe the portable kernels (``firmware/kernels/portable``):

- element-wise ops (spatial trait "elementwise" in ``tinyml.ir.ops``: ADD, MUL, the
  activations, an int8 requantizing QUANTIZE, ...) have kernels that read element i before
  writing element i, so the output may take the place of any operand with the output's shape
  and element size;
- DEPTHWISE_CONV_2D with depth multiplier 1 runs in place TinyEngine-style: per channel it
  copies the channel's plane into scratch, then writes that channel's outputs, which land only
  on the same channel's (already copied) inputs, whatever the stride; scratch is one input
  plane (estimated H*W elements here; lowering gives the real size);
- CONV_2D_ADD writes each sum over the skip element it read (input 2).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from tinyml.ir import OP_SPECS, Graph, Op

#: (input index, output index) pairs an op may run in place on, in order of preference.
InPlace = tuple[int, int]
#: (input index, output index, largest offset(output) - offset(input)) an op's kernel allows
#: when the input dies there (lowering's ``KernelCall.overlap``); or, with a fourth item
#: ``ABOVE``, the smallest such offset of a kernel that then runs backward
#: (``KernelCall.overlap_above``).
Overlap = tuple
ABOVE = "above"


def is_above(option: Overlap) -> bool:
    return len(option) > 3 and option[3] == ABOVE


def is_elementwise(op: Op) -> bool:
    """Whether ``op``'s kernel reads element i of each operand before writing element i."""
    return OP_SPECS[op.kind].geometry(op) == "elementwise"


def default_in_place(graph: Graph, op: Op) -> list[InPlace]:
    """In-place candidates of ``op`` on the portable kernels (legality of the *buffers*, i.e.
    whether the input dies here, is the planner's business)."""
    outs = graph.op_outputs(op)
    if not outs:
        return []
    out = outs[0]
    ins = graph.op_inputs(op)
    if is_elementwise(op):
        return [(j, 0) for j, t in enumerate(ins)
                if t is not None and t.shape == out.shape and t.nbytes == out.nbytes]
    if op.kind == "DEPTHWISE_CONV_2D":
        x = ins[0]
        same_channels = x.shape[-1] == out.shape[-1]
        return [(0, 0)] if same_channels and out.nbytes <= x.nbytes else []
    if op.kind == "CONV_2D_ADD":
        return [(2, 0)]
    return []


def estimate_scratch(graph: Graph, op: Op) -> int:
    """Kernel scratch in bytes before lowering: the plane buffer of in-place depthwise
    convolutions, nothing for the other portable kernels."""
    if op.kind == "DEPTHWISE_CONV_2D" and default_in_place(graph, op):
        x = graph.tensors[op.inputs[0]]
        _, h, w, _ = x.shape
        return h * w * x.nbytes // max(x.size, 1)
    return 0


ScratchSource = Mapping[str, int] | Callable[[Op], int] | None


def op_requirements(graph: Graph, calls: Sequence | None = None,
                    scratch: ScratchSource = None,
                    in_place: Mapping[str, Sequence[InPlace]] | Callable[[Op], Sequence[InPlace]]
                    | None = None) -> tuple[list[int], list[list[InPlace]]]:
    """Scratch bytes and in-place candidates for every op of ``graph.ops`` (by index).

    Either ``calls`` (lowering's ``KernelCall`` objects, matched to ops by identity; an op
    without a call needs no scratch and runs out of place), or the ``scratch`` / ``in_place``
    overrides (by op name or as functions of the op) falling back to this module's defaults.
    """
    if calls is not None and (scratch is not None or in_place is not None):
        raise ValueError("give lowering's calls or scratch/in_place overrides, not both")
    by_op = {id(c.op): c for c in calls or ()}
    scratch_bytes: list[int] = []
    candidates: list[list[InPlace]] = []
    for op in graph.ops:
        call = by_op.get(id(op))
        if calls is not None:
            size = int(call.scratch_bytes) if call is not None else 0
            pairs = [tuple(call.in_place)] if call is not None and call.in_place else []
            if pairs and is_elementwise(op):
                # Element-wise kernels may overwrite any operand of the output's shape.
                pairs += [p for p in default_in_place(graph, op) if p not in pairs]
        else:
            size = _lookup(scratch, op, estimate_scratch(graph, op))
            pairs = list(_lookup(in_place, op, default_in_place(graph, op)))
        if size < 0:
            raise ValueError(f"layer '{op.name}': negative scratch size {size}")
        scratch_bytes.append(int(size))
        candidates.append([tuple(p) for p in pairs])
    return scratch_bytes, candidates


def _lookup(source, op: Op, default):
    if source is None:
        return default
    if callable(source):
        return source(op)
    return source.get(op.name, default)


def op_overlaps(graph: Graph, calls: Sequence | None) -> list[list[Overlap]]:
    """The overlaps each op's kernel declares (lowering's ``KernelCall.overlap``, then
    ``overlap_above`` tagged :data:`ABOVE`), by op index; none without calls (only the chosen
    C kernel knows its write order)."""
    by_op = {id(c.op): c for c in calls or ()}
    result: list[list[Overlap]] = []
    for op in graph.ops:
        call = by_op.get(id(op))
        overlap = getattr(call, "overlap", None) if call is not None else None
        above = getattr(call, "overlap_above", None) if call is not None else None
        result.append(([tuple(overlap)] if overlap else []) +
                      ([(*above, ABOVE)] if above else []))
    return result
