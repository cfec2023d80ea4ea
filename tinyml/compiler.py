"""``tinyml compile``: model file -> C project, and the figures users judge it by.

The steps: import (frontends), check the graph is int8, graph passes, lowering to kernel calls,
the static memory plan, then code generation. Each step raises a TinymlError for bad input, and
nothing is written unless every step succeeded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyml.codegen.lowering import KernelCall, lower
from tinyml.codegen.project import GeneratedProject, generate_project
from tinyml.errors import TinymlError
from tinyml.frontends import load_model
from tinyml.ir import Graph
from tinyml.passes import run_passes
from tinyml.schedule import MemoryPlan, plan_memory
from tinyml.summary import summarize
from tinyml.targets import Target, load_target


@dataclass
class Compilation:
    model: Path
    target: Target
    source_graph: Graph          # as imported (the reference runs this one)
    graph: Graph                 # after passes (what the C code computes)
    calls: list[KernelCall]
    plan: MemoryPlan
    macs: int
    project: GeneratedProject | None = None
    sizes: dict = field(default_factory=dict)  # measured by the target toolchain, if any

    def report(self) -> dict:
        """The ``--json`` figures."""
        return {
            "target": self.target.name,
            "peak_sram_bytes": self.plan.peak_sram_bytes,
            "arena_bytes": self.plan.arena_bytes,
            "scratch_bytes": self.plan.scratch_bytes,
            "weights_bytes": self.project.weights_bytes if self.project else None,
            "flash_bytes": self.sizes.get("flash_bytes"),
            "macs": self.macs,
            "peak_layer": self.plan.peak_layer,
            "output_dir": str(self.project.output_dir) if self.project else None,
            **{k: v for k, v in self.sizes.items() if k != "flash_bytes"},
        }


def check_int8(graph: Graph) -> None:
    """Only int8 graphs compile: name the first float computation otherwise."""
    for op in graph.ops:
        if op.kind in ("QUANTIZE", "DEQUANTIZE"):
            continue
        for t in graph.op_inputs(op) + graph.op_outputs(op):
            if t is not None and not t.is_constant and t.dtype in ("float32", "float16"):
                raise TinymlError(
                    f"layer '{op.name}' ({op.kind}) computes in {t.dtype}: only int8-quantized "
                    f"models compile to C; quantize the model first (e.g. TFLiteConverter with "
                    f"a representative dataset, or onnxruntime quantize_static)")


def plan(model: str | Path, target: str | Target = "host") -> Compilation:
    """Everything up to (not including) writing files."""
    model = Path(model)
    target = load_target(target) if isinstance(target, str) else target
    source = load_model(model)
    check_int8(source)
    graph = run_passes(copy.deepcopy(source))
    calls = lower(graph)
    memory = plan_memory(graph, calls)
    return Compilation(model, target, source, graph, calls, memory, summarize(source).macs)


def compile_model(model: str | Path, target: str | Target, output_dir: str | Path,
                  example_input: np.ndarray | None = None) -> Compilation:
    """Compile ``model`` for ``target`` into the C project ``output_dir``."""
    result = plan(model, target)
    result.project = generate_project(
        result.graph, result.calls, result.plan, result.target, output_dir,
        model_file=result.model.name, macs=result.macs, example_input=example_input)
    return result
