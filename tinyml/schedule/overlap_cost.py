"""What an overlapped hand-over costs in instructions, so that ``--optimize`` can weigh it.

Why: the planner places a layer's output inside its dying input (:mod:`tinyml.schedule.overlap`)
to shrink the arena. Most kernels run the very same instructions wherever their buffers are,
but the DSP convolutions do not (firmware/kernels/cortex_m/conv.c, ``conv_run_body``): a layer
whose output pixels are not a multiple of the kernel's block (8 or 4 pixels) ends on a short
block, which they normally move back to end at the last pixel and run through the unrolled
full-block output loop; when the output overlaps the input, moving back would re-read input
bytes the previous blocks have overwritten, so the short block repeats its last pixel and
goes through the generic any-count loop (``conv_channels_any``) instead. Measured on
cortex-m4 in QEMU (benchmarks/calibrate_overlap_cost.py): +0.5 % instructions on
kws_ref_model (five layers of 125 pixels in blocks of 8, 60-65 instructions per output
channel each), +0.25 % on MobileNetV2 0.35, nothing on vww (every overlapped layer's pixels
are a multiple of 8). Other overlapped kernels (portable convolutions and pooling,
element-wise, fully connected) run the same code, so they cost nothing: placements shift a
layer's count by a few hundred instructions either way (word alignment), below what is
modelled here.

Model: per layer where it applies, ``batches x output channels x (a + b x pixels of the short
block + c when the blocks are of 7 pixels + d for a windowed, not 1x1, kernel)``: per output
channel the generic loop's call and its stores, one per pixel, against the unrolled block it
replaces (the 7-pixel block, ``conv_mac7``, is a loop of its own, with its own cost: kws's
1x1 convolutions; the windowed kernels fill their columns differently). The output loops are functions of their own, shared by the 1x1 and the
windowed kernels (the columns are filled alike either way), so one ``a, b`` serves all of
them (the int4 kernels' loops are the same over packed weights). Fitted on per-layer
profiles of the same models run with and without overlaps, and stored per core in
``data/overlap-<core>.json`` (the cores without data use Cortex-M4's, as
:mod:`tinyml.schedule.cost_model` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tinyml.codegen.write_order import dsp_block_pixels
from tinyml.schedule.cost_model import DATA_DIR, FALLBACK_CORE

#: The kernels whose work changes when their output overlaps their input (DSP builds only).
DSP_CONV_FUNCTIONS = ("tinyml_conv2d_s8", "tinyml_conv2d_1x1_s8", "tinyml_conv2d_s4",
                      "tinyml_conv2d_1x1_s4")


def short_block(call) -> int:
    """Pixels of the short last block of a DSP convolution ``call`` that a move back would
    otherwise absorb (0: none, the pixels are a multiple of the block or fewer than one)."""
    p = call.params
    pixels = p["output_h"] * p["output_w"]
    k = p.get("filter_h", 1) * p.get("filter_w", 1) * p["filter_c"]
    n = dsp_block_pixels(p, k)
    return pixels % n if pixels >= n else 0


def features(call, input_bytes: int, output_bytes: int,
             delta: int) -> tuple[int, int, int, int] | None:
    """(channel blocks, channel blocks x short pixels, channel blocks of 7-pixel blocks,
    channel blocks of a windowed kernel) of a DSP convolution overlapped at
    ``delta`` (offset(output) - offset(input)), or None when its instructions do not change:
    another kernel, no short block, or an output placed entirely below its input (the kernel
    checks that its output's bytes really meet its input's, ``conv_overlapping``)."""
    if call.function not in DSP_CONV_FUNCTIONS:
        return None
    if not -output_bytes < delta < input_bytes:
        return None
    short = short_block(call)
    if not short:
        return None
    p = call.params
    channels = p.get("batches", 1) * p["output_c"]
    k = p.get("filter_h", 1) * p.get("filter_w", 1) * p["filter_c"]
    return (channels, channels * short, channels if dsp_block_pixels(p, k) == 7 else 0,
            0 if "1x1" in call.function else channels)


def data_path(core: str) -> Path:
    return DATA_DIR / f"overlap-{core}.json"


@dataclass
class OverlapCost:
    """Instructions an overlap adds (see the module docstring)."""

    core: str
    per_channel: float = 0.0        # a: per output channel (and batch)
    per_channel_pixel: float = 0.0  # b: per output channel and pixel of the short block
    per_channel_block7: float = 0.0  # c: per output channel, blocks of 7 pixels
    per_channel_window: float = 0.0  # d: per output channel, windowed (not 1x1) kernels
    dsp: bool = True                # the target runs the DSP kernels
    #: the profiled layers fitted on: model, layer, function, features, measured, predicted
    samples: list[dict] = field(default_factory=list)

    def of_features(self, x: Sequence[int]) -> int:
        seven, window = (list(x) + [0, 0])[2:4]
        return round(self.per_channel * x[0] + self.per_channel_pixel * x[1]
                     + self.per_channel_block7 * seven + self.per_channel_window * window)

    def layer_cost(self, call, input_bytes: int, output_bytes: int, delta: int) -> int:
        """Extra instructions of ``call`` when overlapped at ``delta``."""
        x = features(call, input_bytes, output_bytes, delta) if self.dsp else None
        return 0 if x is None else self.of_features(x)

    def layers(self, graph, calls: Sequence, memory) -> dict[str, int]:
        """Extra instructions per overlapped layer of the plan ``memory`` (a
        :class:`~tinyml.schedule.planner.MemoryPlan`, layer by layer or patched: layers are
        found by the tensor they write), by layer name; layers that cost nothing are left out."""
        by_output = {out: call for call in calls for out in call.op.outputs}
        costs = {}
        for _, t_in, t_out, delta in memory.overlaps:
            call = by_output.get(t_out)
            if call is None or t_in not in graph.tensors:
                continue
            cost = self.layer_cost(call, graph.tensors[t_in].nbytes,
                                   graph.tensors[t_out].nbytes, delta)
            if cost:
                costs[call.op.name] = cost
        return costs

    def predict(self, graph, calls: Sequence, memory) -> int:
        """Extra instructions per inference that the plan's overlaps cost."""
        return sum(self.layers(graph, calls, memory).values())

    def to_json(self) -> dict:
        return {"core": self.core, "per_channel": self.per_channel,
                "per_channel_pixel": self.per_channel_pixel,
                "per_channel_block7": self.per_channel_block7,
                "per_channel_window": self.per_channel_window, "samples": self.samples}

    @classmethod
    def from_json(cls, data: dict, dsp: bool = True) -> "OverlapCost":
        return cls(data["core"], float(data["per_channel"]), float(data["per_channel_pixel"]),
                   float(data.get("per_channel_block7", 0.0)),
                   float(data.get("per_channel_window", 0.0)), dsp,
                   list(data.get("samples", [])))


def for_target(target) -> OverlapCost:
    """The overlap cost model of ``target``'s core (Cortex-M4's when it has none; nothing
    when the target does not build the DSP kernels, or before any calibration)."""
    from tinyml.codegen.lowering import uses_dsp_kernels
    dsp = uses_dsp_kernels(target)
    path = data_path(target.core)
    if not path.exists():
        path = data_path(FALLBACK_CORE)
    if not path.exists():
        return OverlapCost("uncalibrated", dsp=dsp)
    return OverlapCost.from_json(json.loads(path.read_text()), dsp)


def fit(samples: Sequence[dict], core: str) -> OverlapCost:
    """``a``, ``b``, ``c`` and ``d`` from ``samples`` (dicts with :func:`features` as ``features`` and the
    measured extra instructions as ``measured``) by non-negative least squares on relative
    errors; each sample gets its ``predicted`` figure."""
    import numpy as np
    from tinyml.schedule.latency import nonnegative_lstsq

    design = np.array([s["features"] for s in samples], np.float64).reshape(-1, 4)
    measured = np.array([s["measured"] for s in samples], np.float64)
    scale = 1.0 / np.maximum(np.abs(measured), 1.0)
    a, b, c, d = (nonnegative_lstsq(design * scale[:, None], measured * scale)
                  if len(samples) else (0, 0, 0, 0))
    model = OverlapCost(core, float(a), float(b), float(c), float(d))
    model.samples = [{**s, "features": list(s["features"]),
                      "predicted": model.of_features(s["features"])} for s in samples]
    return model


@dataclass
class Weighed:
    """The layer-by-layer plan ``--optimize`` keeps, and what the overlaps of the plan with
    them cost and save (:func:`weigh`)."""

    plan: object                 # the MemoryPlan kept
    extra_instructions: int      # predicted cost of the overlaps of the plan with them
    declined: bool = False       # the plan without overlaps was kept for its instructions
    saving_bytes: int = 0        # what the overlaps save (kept or not)


def weigh(with_overlaps, extra: int, base: int, without, optimize: str,
          sram_bytes: int | None = None) -> Weighed:
    """Overlaps or not, by the rule ``--optimize`` applies to patch schedules
    (:func:`tinyml.schedule.patches.rank`): ``memory`` always takes them; ``speed`` takes
    them only when they cost nothing; ``balanced`` when they stay within the slack of the
    plan without them (or when only they fit ``sram_bytes``). ``with_overlaps``: the plan
    as the planner made it (its overlaps cost ``extra`` predicted instructions over
    ``base``); ``without()`` plans the same graph without overlaps (called only when needed)."""
    from tinyml.schedule.patches import rank

    saving = with_overlaps.arena_bytes_without_overlap - with_overlaps.arena_bytes
    if not with_overlaps.overlaps or extra <= 0 or optimize == "memory":
        return Weighed(with_overlaps, extra, False, saving)
    plain = without()
    chosen = rank([(with_overlaps.arena_bytes, base + extra, with_overlaps),
                   (plain.arena_bytes, base, plain)], optimize, sram_bytes)
    return Weighed(chosen, extra, chosen is plain, saving)
