"""A trainable build: the head, its training memory, and how the project generator renders it.

:func:`prepare` is the step ``tinyml.compiler.plan`` runs for ``--trainable``: it splits the
head off the passed graph (the rest compiles as the int8 backbone) and, once the backbone's
arena is planned, :meth:`TrainableBuild.plan_memory` grows it for training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from tinyml.ir import Graph
from tinyml.learn import codegen
from tinyml.learn.head import TrainableHead, split_head
from tinyml.learn.memory import TrainingMemory, plan_training, with_training
from tinyml.schedule import MemoryPlan

#: Gradient clipping of generated projects (global L2 norm of the gradient).
DEFAULT_CLIP_NORM = 20.0


@dataclass
class TrainableBuild:
    spec: str
    head: TrainableHead
    source_graph: Graph           # the whole model (its input is the device's input)
    target: str
    memory: TrainingMemory | None = field(default=None)

    def plan_memory(self, plan: MemoryPlan) -> MemoryPlan:
        """The backbone's plan, its arena grown to hold the training scratch."""
        self.memory = plan_training(self.head, plan)
        return with_training(plan, self.memory)

    # ---- for tinyml.codegen.project -------------------------------------------------------

    def template_context(self, plan: MemoryPlan) -> dict:
        return codegen.template_context(self.head, self.memory,
                                        plan.offsets[self.head.feature_tensor])

    def output_description(self) -> dict:
        return codegen.output_description(self.head)

    def kernel_sources(self) -> dict:
        return codegen.training_sources()

    def metadata_json(self) -> str:
        data = codegen.metadata(self.source_graph, self.head, self.memory, self.target)
        return json.dumps({"trainable": self.spec, **data}, indent=2) + "\n"

    def report(self) -> dict:
        return {"trainable": self.spec, "max_classes": self.head.num_classes,
                "train_params": self.head.num_params, **self.memory.to_json()}


def prepare(graph: Graph, source_graph: Graph, spec: str, max_classes: int | None,
            target: str, clip_norm: float = DEFAULT_CLIP_NORM) -> tuple[Graph, TrainableBuild]:
    backbone, head = split_head(graph, spec, max_classes, clip_norm)
    return backbone, TrainableBuild(spec, head, source_graph, target)
