"""Does the model fit the target? RAM and flash budgets, checked before anything is written.

A target's budget is its reference part's SRAM and flash (``targets/*.toml``). The model
needs, in RAM, the arena (activations, graph I/O and kernel scratch: a static array in
``.bss``), the image's other static data and the stack ``tinyml_invoke()`` uses; in flash,
code, constants (weights and layer parameters) and ``.data``'s initial values.

Two checks, so that an impossible model fails fast and a marginal one is judged on measured
figures: :func:`check_plan` before code generation (the arena alone, the weights alone:
lower bounds of the need), :func:`check_image` after the firmware is built and its stack
measured (the ELF's sections plus the stack high-water mark). Each failure is one line naming
the budget, the need and the layer responsible: the peak layer of the memory plan for RAM,
the layer with the most constant bytes for flash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinyml import flash
from tinyml.errors import TinymlError

if TYPE_CHECKING:
    from tinyml.compiler import Compilation


class BudgetError(TinymlError):
    """The model does not fit the target's RAM or flash."""


def layer_constant_bytes(result: "Compilation") -> dict[str, int]:
    """Flash bytes of each layer's constants (arrays in its parameters, constant inputs),
    as weights.c stores them (tinyml.flash)."""
    return flash.by_layer(result.graph, result.calls)


def _part(result: "Compilation") -> str:
    target = result.target
    return f"{target.name} ({target.part})" if target.part else target.name


def _largest_layer(result: "Compilation") -> str:
    layer = flash.largest(result.graph, result.calls)
    if layer is None or not layer.bytes:
        return "no layer has constants"
    stored = f", weights {layer.format}" if layer.format != "-" else ""
    return f"largest layer '{layer.name}' ({layer.op}{stored}) holds {layer.bytes:,} B"


def _ram_error(result: "Compilation", need: str) -> BudgetError:
    return BudgetError(f"the model does not fit the SRAM budget of {_part(result)}: it needs "
                       f"{need} but the part has {result.target.sram_bytes:,} B; peak at layer "
                       f"'{result.plan.peak_layer}'")


def _flash_error(result: "Compilation", need: str) -> BudgetError:
    return BudgetError(f"the model does not fit the flash budget of {_part(result)}: it needs "
                       f"{need} but the part has {result.target.flash_bytes:,} B; "
                       f"{_largest_layer(result)}")


def check_plan(result: "Compilation") -> None:
    """Before generating code: the arena alone must fit SRAM, the constants alone flash."""
    target = result.target
    state = result.state_bytes
    if target.sram_bytes and result.plan.arena_bytes + state > target.sram_bytes:
        raise _ram_error(result, f"at least {result.plan.arena_bytes + state:,} B (its arena"
                                 + (f" and {state:,} B of streaming state)" if state else ")"))
    weights = sum(layer_constant_bytes(result).values())
    if target.flash_bytes and weights > target.flash_bytes:
        raise _flash_error(result, f"at least {weights:,} B (its weights and layer parameters)")


def stack_overflow(result: "Compilation") -> BudgetError:
    """The stack outgrew the RAM left after .data and .bss (measured by painting)."""
    sizes, arena = result.sizes, result.plan.arena_bytes
    static = sizes["data_bytes"] + sizes["bss_bytes"]
    budget = result.target.sram_bytes
    left = f" {budget - static:,} B" if budget else ""
    return _ram_error(result, f"more than {budget or static:,} B (arena {arena:,} B + other "
                              f"static data {static - arena:,} B + a stack deeper than the{left} "
                              f"left)")


def link_overflow(result: "Compilation", region: str) -> BudgetError:
    """The linker could not place the image in the memory of the target's linker script (the
    part's, or the emulated machine's), or leave the minimum stack of sections.ld."""
    script = result.target.linker_script
    if region == "FLASH":
        return _flash_error(result, f"more flash than {script} provides (constants, code and "
                                    f"data do not link)")
    return _ram_error(result, f"more RAM than {script} provides (arena "
                              f"{result.plan.arena_bytes:,} B + other static data + at least "
                              f"256 B of stack do not link)")


def check_image(result: "Compilation") -> None:
    """After the build: ``result.sizes`` (from the ELF, with the measured stack) must fit."""
    target, sizes = result.target, result.sizes
    if target.sram_bytes and sizes["ram_bytes"] > target.sram_bytes:
        arena = result.plan.arena_bytes
        other = sizes["data_bytes"] + sizes["bss_bytes"] - arena
        raise _ram_error(result, f"{sizes['ram_bytes']:,} B (arena {arena:,} B + other static "
                                 f"data {other:,} B + stack {sizes['stack_bytes']:,} B)")
    if target.flash_bytes and sizes["flash_bytes"] > target.flash_bytes:
        raise _flash_error(result, f"{sizes['flash_bytes']:,} B (constants "
                                   f"{sizes['rodata_bytes']:,} B + code {sizes['text_bytes']:,} B"
                                   f" + initialised data {sizes['data_bytes']:,} B)")
