"""Training RAM, planned together with the inference arena.

What learning needs besides the int8 inference, in float32:

- persistent (``.data``/``.bss``, never shared): the master weights (every trainable
  parameter) and the last forward pass (each head layer's input and the logits, which the
  backward pass reads), plus the output probabilities;
- transient (only inside ``tinyml_learn()``): one gradient per parameter, two delta vectors
  for back-propagation through the head and two activation vectors for the guard's candidate
  forward pass. Nothing in the arena is alive between ``tinyml_invoke()`` calls (the head
  keeps its own copy of the features), so the transient part is placed at the start of the
  arena, and the arena grows only if it is larger than what inference needs.

``train_ram_bytes`` is what training adds to the RAM of the image: the persistent part plus
the arena's growth (``arena_bytes - backbone_arena_bytes``, where ``backbone_arena_bytes`` is
the arena inference alone plans).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tinyml.learn.head import TrainableHead
from tinyml.schedule import MemoryPlan

FLOAT = 4


@dataclass
class TrainingMemory:
    params_bytes: int            # master weights (.data)
    state_bytes: int             # last forward pass and output probabilities (.bss)
    scratch_bytes: int           # gradients, deltas, guard (inside the arena)
    backbone_arena_bytes: int    # the arena inference alone needs
    arena_bytes: int             # the arena with the training scratch
    offsets: dict[str, int]      # byte offsets of the scratch buffers in the arena
    max_features: int            # the widest head layer

    @property
    def train_ram_bytes(self) -> int:
        return (self.params_bytes + self.state_bytes
                + self.arena_bytes - self.backbone_arena_bytes)

    def to_json(self) -> dict:
        return {"train_ram_bytes": self.train_ram_bytes,
                "train_params_bytes": self.params_bytes,
                "train_state_bytes": self.state_bytes,
                "train_scratch_bytes": self.scratch_bytes,
                "backbone_arena_bytes": self.backbone_arena_bytes}


def state_offsets(head: TrainableHead) -> list[int]:
    """Float offsets in the forward-state buffer: each layer's input, then the logits."""
    offsets, at = [], 0
    for layer in head.layers:
        offsets.append(at)
        at += layer.in_features
    offsets.append(at)
    return offsets


def plan_training(head: TrainableHead, plan: MemoryPlan) -> TrainingMemory:
    widest = max(max(layer.in_features, layer.out_features) for layer in head.layers)
    offsets, at = {}, 0
    for name, floats in (("grads", head.num_params), ("delta_a", widest), ("delta_b", widest),
                         ("candidate_a", widest), ("candidate_b", widest)):
        offsets[name] = at
        at += floats * FLOAT
    state_floats = state_offsets(head)[-1] + head.num_classes
    return TrainingMemory(
        params_bytes=head.num_params * FLOAT,
        state_bytes=(state_floats + head.num_classes) * FLOAT + 4,  # + probabilities, flag
        scratch_bytes=at, backbone_arena_bytes=plan.arena_bytes,
        arena_bytes=max(plan.arena_bytes, at), offsets=offsets, max_features=widest)


def with_training(plan: MemoryPlan, memory: TrainingMemory) -> MemoryPlan:
    """The inference plan with the arena grown to hold the training scratch."""
    return dataclasses.replace(plan, arena_bytes=memory.arena_bytes)
