"""Does a candidate fit the SRAM and flash budgets? Asked of the real compiler, before training.

Each candidate is built as a float graph (:mod:`tinyml.nas.ir_builder`), quantized by tinyml's
quantizer (on two random images: ranges do not change sizes), then lowered and planned by
:func:`tinyml.compiler.plan`, exactly as ``tinyml compile`` would:

- layer by layer first; when that arena does not fit, with the patch search
  (:mod:`tinyml.schedule.patches`, "auto"), so the schedule is part of what is searched: a
  candidate fits if *some* schedule tinyml would pick makes it fit;
- the plan as the firmware is then compiled (``--optimize memory``, pipeline.compile_firmware):
  overlapped hand-overs always taken (:mod:`tinyml.schedule.overlap`), so a candidate's arena
  is the one its firmware gets;
- peak SRAM = the plan's arena (exact) + the image's other static data + the stack, flash =
  the model's constants (exact, as the budget check counts them) + code, the last two from an
  :class:`~tinyml.nas.calibration.ImageModel` measured on real ELFs;
- instructions from the calibrated :mod:`latency <tinyml.schedule.latency>` model, plus what
  the plan's overlaps cost (:mod:`tinyml.schedule.overlap_cost`).

Misfits are dropped before any training. Results are cached by architecture key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


from tinyml.nas.calibration import ImageModel
from tinyml.nas.ir_builder import quantized_graph
from tinyml.nas.search_space import Arch
from tinyml.schedule.patches import DEFAULT_OVERHEAD
from tinyml.targets import Target


@dataclass(frozen=True)
class Budget:
    sram_bytes: int
    flash_bytes: int
    patch_overhead: float = DEFAULT_OVERHEAD
    #: ``--input-stream rows``: candidates are planned (and the firmware built) with the
    #: image asked for row by row, so the SRAM budget never holds a whole input.
    input_stream: bool = False


@dataclass
class Fit:
    """What the compiler says about one candidate."""

    arch: str                    # Arch.key()
    macs: int                    # per inference, layer by layer
    patch: str                   # the schedule option that makes it fit best: "off" or "auto"
    arena_bytes: int             # peak SRAM of the plan with that schedule (exact)
    arena_layerwise_bytes: int   # the layer-by-layer plan's
    patch_schedule: dict | None  # the chosen split and grid, if any
    constant_bytes: int          # weights and layer parameters (exact)
    code_bytes: int              # estimated (ImageModel)
    ram_bytes: int               # arena + other static data + stack (estimated)
    flash_bytes: int             # constants + code
    instructions: int            # predicted per inference
    fits: bool
    reason: str | None = None    # why not

    def to_json(self) -> dict:
        return asdict(self)


class ConstraintChecker:
    def __init__(self, target: Target, budget: Budget, image: ImageModel):
        self.target = target
        self.budget = budget
        self.image = image
        self.cache: dict[str, Fit] = {}
        self.checked = 0

    def check(self, arch: Arch) -> Fit:
        key = arch.key()
        if key not in self.cache:
            self.cache[key] = self._check(arch, key)
            self.checked += 1
        return self.cache[key]

    def _fit(self, arch: Arch, key: str, result) -> Fit:
        from tinyml.budget import layer_constant_bytes

        constants = sum(layer_constant_bytes(result).values())
        code = self.image.code_bytes(result.calls)
        ram = result.plan.arena_bytes + self.image.static_ram_bytes + self.image.stack_bytes
        flash = constants + code
        reasons = []
        if ram > self.budget.sram_bytes:
            reasons.append(f"needs {ram:,} B of SRAM (arena {result.plan.arena_bytes:,} B + "
                           f"static data and stack {ram - result.plan.arena_bytes:,} B), "
                           f"budget {self.budget.sram_bytes:,} B")
        if flash > self.budget.flash_bytes:
            reasons.append(f"needs {flash:,} B of flash (constants {constants:,} B + code "
                           f"{code:,} B), budget {self.budget.flash_bytes:,} B")
        return Fit(key, int(result.macs), "auto" if result.patch else "off",
                   result.plan.arena_bytes, (result.layerwise_plan or result.plan).arena_bytes,
                   result.patch.to_json() if result.patch else None, constants, code, ram,
                   flash, int(self.image.latency.predict(result)["instructions"])
                   + result.overlap_instructions, not reasons,
                   "; ".join(reasons) or None)

    def _check(self, arch: Arch, key: str) -> Fit:
        from tinyml.compiler import plan

        graph = quantized_graph(arch)
        streamed = self.budget.input_stream
        fit = self._fit(arch, key, plan(graph, self.target, patch="off", optimize="memory",
                                        input_stream=streamed))
        if fit.ram_bytes > self.budget.sram_bytes and fit.flash_bytes <= self.budget.flash_bytes:
            patched = self._fit(arch, key, plan(graph, self.target, patch="auto",
                                                patch_overhead=self.budget.patch_overhead,
                                                optimize="memory", input_stream=streamed))
            if patched.arena_bytes < fit.arena_bytes:
                fit = patched
        return fit
