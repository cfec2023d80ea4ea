"""``tinyml compile``: model file -> C project, and the figures users judge it by.

The steps: import (frontends), check the graph is int8, graph passes, lowering to kernel calls,
the static memory plan, the budget check (tinyml.budget), then code generation. For a
Cortex-M target the staged project is then built with its own Makefile, the ELF's sections
are measured and the example runs once in QEMU to measure the stack (tinyml.firmware), and
the budget is checked again on those figures. Each step raises a TinymlError for bad input,
and nothing is written unless every step succeeded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from tinyml.codegen.lowering import KernelCall, lower
from tinyml import budget
from tinyml.codegen.project import (GeneratedProject, commit_project, discard_project,
                                    generate_project)
from tinyml.errors import TinymlError
from tinyml.flash import LayerFlash, layer_flash
from tinyml.frontends import load_model
from tinyml.ir import Graph
from tinyml.passes import run_passes
from tinyml.schedule import MemoryPlan, plan_memory
from tinyml.schedule import cost_model, overlap_cost
from tinyml.schedule.patches import DEFAULT_OVERHEAD, PatchSchedule, choose_patching
from tinyml.summary import summarize
from tinyml.targets import Target, load_target

if TYPE_CHECKING:
    from tinyml.passes.stream_window import StreamPlan


@dataclass
class Compilation:
    model: Path
    target: Target
    source_graph: Graph          # as imported, or quantized from it (the reference runs this)
    graph: Graph                 # after passes (what the C code computes)
    calls: list[KernelCall]
    plan: MemoryPlan
    macs: int
    project: GeneratedProject | None = None
    sizes: dict = field(default_factory=dict)  # measured by the target toolchain, if any
    example_run: dict = field(default_factory=dict)  # the example's QEMU run (Cortex-M)
    # ---- patch-based inference (tinyml.schedule.patches): ``plan`` is then the patched plan
    patch: PatchSchedule | None = None
    layerwise_plan: MemoryPlan | None = None  # the layer-by-layer plan, for comparison
    # ---- on-device learning (tinyml.learn): ``graph`` is then the int8 backbone
    learn: "TrainableBuild | None" = None
    #: The source graph is tinyml's quantization of a float model (``--calib``).
    quantized: bool = False
    # ---- the cost model's prediction of the chosen plan (tinyml.schedule.cost_model)
    optimize: str = "balanced"
    predicted_instructions: int | None = None
    predicted_on: str | None = None  # the core whose calibration predicted them
    patch_notes: list[str] = field(default_factory=list)  # why auto kept a smaller plan out
    #: --optimize memory lowered the DSP convolutions with 4-pixel blocks (tinyml.codegen.
    #: lowering.conv_block_cap): a smaller arena for a few more instructions.
    small_blocks: bool = False
    #: Predicted instructions the plan's overlapped hand-overs add (tinyml.schedule.overlap_cost),
    #: and the layer-by-layer overlaps ``--optimize`` turned down for them, if it did
    #: ({"saving_bytes", "predicted_instructions"}).
    overlap_instructions: int = 0
    overlap_declined: dict | None = None
    #: ``--stream`` (tinyml.passes.stream_window): ``graph`` consumes one frame per call;
    #: ``source_graph`` is still the full-window model it equals.
    stream: "StreamPlan | None" = None
    #: ``--input-stream rows`` (tinyml.schedule.input_stream): ``patch`` is then the row
    #: stage that asks for the input row by row.
    input_stream: bool = False

    @property
    def io_graph(self) -> Graph:
        """The graph whose inputs and outputs the generated C has (the harness's I/O)."""
        return self.stream.graph if self.stream is not None else self.source_graph

    @property
    def state_bytes(self) -> int:
        """Bytes of streaming state (the variables), static storage outside the arena."""
        return sum(var.nbytes for var in self.graph.variables.values())

    def layers_flash(self) -> list["LayerFlash"]:
        """Flash per layer, in execution order (tinyml.flash)."""
        return layer_flash(self.graph, self.calls)

    def report(self) -> dict:
        """The ``--json`` figures."""
        return {
            "target": self.target.name,
            "peak_sram_bytes": self.plan.peak_sram_bytes,
            "arena_bytes": self.plan.arena_bytes,
            "scratch_bytes": self.plan.scratch_bytes,
            "state_bytes": self.state_bytes,
            "weights_bytes": self.project.weights_bytes if self.project else None,
            "flash_bytes": self.sizes.get("flash_bytes"),
            # Per layer: its constants in weights.c (they sum to weights_bytes) and how its
            # weights are stored (tinyml.flash).
            "layers_flash": [layer.to_json() for layer in self.layers_flash()],
            "macs": self.macs,
            "peak_layer": self.plan.peak_layer,
            "peak_sram_bytes_layerwise": (self.layerwise_plan or self.plan).peak_sram_bytes,
            "patch": ({**self.patch.to_json(),  # what the patches buy and cost
                       "ram_saved_bytes": self.layerwise_plan.arena_bytes
                       - self.patch.plan.arena_bytes}
                      if self.patch and self.layerwise_plan else None),
            "optimize": self.optimize,
            # Instructions per inference by the cost model (measured ones, on emulated
            # targets, are in the example run).
            "predicted_instructions": self.predicted_instructions,
            "predicted_on": self.predicted_on,
            "patch_notes": self.patch_notes,
            "small_blocks": self.small_blocks,
            "overlap": {**overlap_json(self.graph, self.plan,
                                       overlap_cost.for_target(self.target).layers(
                                           self.graph, self.calls, self.plan)),
                        "declined": self.overlap_declined},
            "output_dir": str(self.project.output_dir) if self.project else None,
            **{k: v for k, v in self.sizes.items() if k != "flash_bytes"},
            **(self.learn.report() if self.learn is not None else {}),
            "input_stream": (self.patch.input_json(self.graph)
                             if self.input_stream and self.patch is not None
                             else {"mode": "whole"}),
            **({"stream": {**self.stream.to_json(),
                           "macs_full_window": summarize(self.source_graph).macs}}
               if self.stream is not None else {}),
        }


def overlap_json(graph: Graph, memory: MemoryPlan,
                 instructions: dict[str, int] | None = None) -> dict:
    """The overlapped hand-overs of the plan (tinyml.codegen.write_order): each layer whose
    output starts ``delta`` bytes from its dying input's start, the arena without them, and
    what they cost in predicted instructions (``instructions``: by layer name, from
    tinyml.schedule.overlap_cost; layers absent cost nothing)."""
    instructions = instructions or {}
    layers = [{"layer": graph.ops[i].name, "op": graph.ops[i].kind, "input": t_in,
               "output": t_out, "delta": delta,
               "predicted_instructions": instructions.get(graph.ops[i].name, 0)}
              for i, t_in, t_out, delta in memory.overlaps if i < len(graph.ops)]
    return {
        "arena_bytes_without_overlap": memory.arena_bytes_without_overlap,
        "saving_bytes": memory.arena_bytes_without_overlap - memory.arena_bytes,
        "predicted_instructions": sum(instructions.values()),
        "layers": layers,
    }


#: Bytes of a part's SRAM that ``--optimize balanced`` leaves to static data and the stack
#: when it checks that an arena fits (tinyml_invoke's stack measures 0.5-1 KB in QEMU).
SRAM_HEADROOM = 2048


def check_int8(graph: Graph) -> None:
    """Only int8 graphs compile: name the first float computation otherwise."""
    for op in graph.ops:
        if op.kind in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if op.kind in ("READ_VARIABLE", "ASSIGN_VARIABLE"):
            var = graph.variables[op.attrs.variable]
            if var.dtype != "int8":
                from tinyml.passes.int8_state import why_not_int8
                raise TinymlError(f"layer '{op.name}' ({op.kind}): variable '{var.name}' stays "
                                  f"{var.dtype}: {why_not_int8(graph, var)}")
        for t in graph.op_inputs(op) + graph.op_outputs(op):
            if t is not None and not t.is_constant and t.dtype in ("float32", "float16"):
                raise TinymlError(
                    f"layer '{op.name}' ({op.kind}) computes in {t.dtype}: only int8-quantized "
                    f"models compile to C; quantize the model first (compile --calib DATA, "
                    f"or tinyml quantize)")


def plan(model: str | Path | Graph, target: str | Target = "host",
         quantize: Callable[[Graph], Graph] | None = None, *, patch: str | None = "auto",
         patch_overhead: float = DEFAULT_OVERHEAD, trainable: str | None = None,
         max_classes: int | None = None, optimize: str = "balanced",
         stream: bool = False, input_stream: bool = False) -> Compilation:
    """Everything up to (not including) writing files. ``quantize`` turns the imported float
    graph into an int8 one first (``tinyml compile --calib``, tinyml.quantize). ``patch``:
    "auto" (patch-based inference of the first layers when it lowers peak SRAM within
    ``patch_overhead`` extra MACs), "off", or "SPLIT:N" (see tinyml.schedule.patches);
    ``optimize`` ("speed", "memory", "balanced"): how ``auto`` trades RAM for instructions
    predicted by the target's cost model (tinyml.schedule.patches.pick).
    ``trainable`` ("last:K") and ``max_classes``: on-device learning of the last K fully
    connected layers (tinyml.learn); ``graph`` is then the backbone. ``stream``: the input is a
    sliding window; compile the model that consumes one new frame per call
    (tinyml.passes.stream_window). ``input_stream``: ``--input-stream rows``, the generated
    code asks for the input row by row (tinyml.schedule.input_stream); ``patch`` then says
    where its row stage ends (off: the first layer)."""
    target = load_target(target) if isinstance(target, str) else target
    if isinstance(model, Graph):  # an in-memory graph (tinyml.nas plans candidates so)
        source, model = model, Path(f"{model.name}.graph")
    else:
        model = Path(model)
        source = load_model(model)
    if quantize is not None:
        source = quantize(source)
    # After the passes: they turn the converter's float islands (DEQUANTIZE -> NEG ->
    # QUANTIZE) into int8 ops.
    graph = run_passes(copy.deepcopy(source))
    check_int8(graph)
    if input_stream and (stream or trainable is not None or max_classes is not None):
        raise TinymlError("--input-stream rows does not combine with "
                          + ("--stream" if stream else "--trainable / --max-classes"))
    streamed = None
    if stream:
        from tinyml.passes.stream_window import stream_window
        streamed = stream_window(graph)
        graph = streamed.graph
    learn = None
    if trainable is not None or max_classes is not None:
        from tinyml.learn.project import prepare
        graph, learn = prepare(graph, source, trainable or "last:1", max_classes, target.name)

    def schedule(graph: Graph, small_blocks: bool) -> Compilation:
        """Lowering, memory plan and patch choice of ``graph`` (``small_blocks``: see
        :func:`_with_small_blocks`)."""
        def lower_graph(g: Graph):
            return lower(g, target, small_blocks=small_blocks)

        calls = lower_graph(graph)
        memory = plan_memory(graph, calls)
        # MACs per call: a --stream model's call is one new frame.
        macs = summarize(graph if streamed is not None else source).macs
        result = Compilation(model, target, source, graph, calls, memory, macs,
                             quantized=quantize is not None, stream=streamed)
        # ---- patch-based inference: replaces the plan when chosen ----------------------------
        cost = cost_model.for_target(target)
        extra = overlap_cost.for_target(target)
        # What the arena may take of the part's SRAM: the rest holds the streaming state,
        # static data and the stack (about 1 KB measured on the NAS's calibration images; see
        # SRAM_HEADROOM), so balanced does not pick an arena the image then overflows.
        sram = (target.sram_bytes - result.state_bytes - SRAM_HEADROOM
                if target.sram_bytes else None)
        # ---- overlapped hand-overs: kept unless --optimize finds them too slow --------------
        weighed = overlap_cost.weigh(memory, extra.predict(graph, calls, memory),
                                     cost.predict(graph, calls),
                                     lambda: plan_memory(graph, calls, overlap=False), optimize,
                                     sram)
        if weighed.declined:
            result.overlap_declined = {"saving_bytes": weighed.saving_bytes,
                                       "predicted_instructions": weighed.extra_instructions}
        memory = result.plan = result.layerwise_plan = weighed.plan

        def predict(schedule) -> int:
            return (cost.predict(graph, calls, schedule)
                    + extra.predict(graph, calls, schedule.plan if schedule else memory))

        if input_stream:  # a row stage reads the image row by row
            from tinyml.schedule.input_stream import choose_rows
            result.input_stream = input_stream
            result.patch = choose_rows(graph, calls, patch, lower_graph,
                                       optimize=optimize, predict=predict, sram_bytes=sram,
                                       notes=result.patch_notes)
        else:
            result.patch = choose_patching(graph, calls, memory, patch, patch_overhead,
                                           lower=lower_graph, optimize=optimize,
                                           predict=predict, sram_bytes=sram,
                                           notes=result.patch_notes)
        if result.patch is not None:
            result.plan = result.patch.plan
        result.optimize, result.predicted_on = optimize, cost.core
        result.predicted_instructions = predict(result.patch)
        result.overlap_instructions = extra.predict(graph, calls, result.plan)
        return result

    result = schedule(graph, False)
    if optimize == "memory" and learn is None:
        # Half the DSP convolutions' scratch for a few more instructions, when that is what
        # sets the arena (conv1d_sensor, kws): kept only if the arena shrinks.
        small = _with_small_blocks(result, schedule)
        if small is not None and small.plan.arena_bytes < result.plan.arena_bytes:
            small.patch_notes.append(
                f"DSP convolutions in blocks of 4 pixels (not 8): arena "
                f"{result.plan.arena_bytes:,} -> {small.plan.arena_bytes:,} B, "
                f"{small.predicted_instructions - result.predicted_instructions:+,} "
                f"predicted instructions (--optimize memory)")
            small.small_blocks = True
            result = small
    if learn is not None:  # the training scratch shares the arena
        result.learn = learn
        result.plan = learn.plan_memory(result.plan)
    return result


def _with_small_blocks(result: Compilation, schedule) -> "Compilation | None":
    """``schedule`` of a copy of ``result``'s graph lowered with 4-pixel DSP convolution
    blocks (``lower(small_blocks=True)``), or None when no convolution at the plan's peak
    would shrink its scratch (the portable kernels have none). Why a second plan: the blocks are scratch, 2 x pixels x
    window bytes; where one sits at the arena's peak (a 1-D model's wide windows, kws's 1x1
    convolutions on 8,000 B of tensors) halving it is the last lever, but elsewhere it only
    costs instructions, and only the whole plan (patches included) tells which."""
    small_calls = lower(result.graph, result.target, small_blocks=True)
    # Only where the plan peaks: a block elsewhere can shrink no step that sets the arena,
    # and planning twice doubles the NAS's and the patch search's time.
    peak = result.plan.peak_layer
    if not any(a.op.name == peak and a.scratch_bytes > b.scratch_bytes
               for a, b in zip(result.calls, small_calls)):
        return None
    return schedule(copy.deepcopy(result.graph), True)


def compile_model(model: str | Path, target: str | Target, output_dir: str | Path,
                  example_input: np.ndarray | None = None, *, profile: bool = False,
                  build: bool = True,
                  quantize: Callable[[Graph], Graph] | None = None, patch: str | None = "auto",
                  patch_overhead: float = DEFAULT_OVERHEAD, trainable: str | None = None,
                  max_classes: int | None = None, optimize: str = "balanced",
                  stream: bool = False, input_stream: bool = False) -> Compilation:
    """Compile ``model`` for ``target`` into the C project ``output_dir``.

    Cortex-M targets (unless ``build`` is false) also build ``example.elf`` and measure it;
    ``profile`` generates the per-layer counter hooks of the profiling build. ``patch`` and
    ``patch_overhead``, ``trainable``, ``max_classes``, ``optimize``, ``stream`` and
    ``input_stream``: see :func:`plan`."""
    result = plan(model, target, quantize, patch=patch, patch_overhead=patch_overhead,
                  trainable=trainable, max_classes=max_classes, optimize=optimize,
                  stream=stream, input_stream=input_stream)
    budget.check_plan(result)
    staged = result.target.is_firmware and build
    result.project = generate_project(
        result.graph, result.calls, result.plan, result.target, output_dir,
        model_file=result.model.name, macs=result.macs, example_input=example_input,
        profile=profile, stage=staged, patch=result.patch, learn=result.learn,
        stream_window=result.stream.window if result.stream is not None else None)
    if staged:
        try:
            _build_and_measure(result)
            budget.check_image(result)
        except BaseException:
            discard_project(result.project)
            raise
        commit_project(result.project)
        result.sizes["elf"] = str(result.project.output_dir / "example.elf")
    return result


def _build_and_measure(result: Compilation) -> None:
    from tinyml import firmware

    project = result.project.output_dir
    try:
        elf = firmware.build_example(project, result.target)
    except firmware.MemoryOverflow as exc:
        raise budget.link_overflow(result, exc.region) from None
    sizes = firmware.elf_sizes(elf)
    run = firmware.measure_example(project, result.target)
    result.sizes = sizes
    if run["stack_overflow"]:
        raise budget.stack_overflow(result)
    sizes["stack_bytes"] = run["stack_bytes"]
    sizes["ram_bytes"] = sizes["data_bytes"] + sizes["bss_bytes"] + run["stack_bytes"]
    sizes["stack_measured_on"] = run["measured_on"]
    result.sizes = sizes
    result.example_run = run
