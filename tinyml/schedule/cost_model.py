"""The compiler's cost model: predicted instructions of any plan, per Cortex-M core.

Why: choices that trade RAM for time (patch-based inference of the first layers: smaller
patches, smaller arena, more recomputed halos and more kernel calls) must be ranked by time,
and MACs are a poor proxy for it: vww's patch stage added 9 % MACs and 23 % instructions,
a 1-D keyword spotter's 8x1 grid saved 10 % RAM for 48 % more instructions. The model is
:class:`tinyml.schedule.latency.LatencyModel` (instructions per kernel call, linear in work,
outputs, inputs, weights and calls), fitted on per-layer instruction counts of profiling
builds run in QEMU (``-icount``, deterministic) on a varied set of models, each planned layer
by layer and with forced patch grids (``benchmarks/calibrate_cost_model.py`` profiles them,
:func:`fitted` fits). Stored per core as ``data/<core>.json``, with the
models it was fitted on and its error on them.

A target is predicted with its core's model (board profiles share their core's kernels and
flags up to the clock); the host and cores without stored data use the Cortex-M4 model, which
still ranks plans of the same C code, and the report says which core predicted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tinyml.schedule.latency import LatencyModel, fit

DATA_DIR = Path(__file__).parent / "data"
#: The core whose model predicts targets without one of their own (and the host).
FALLBACK_CORE = "cortex-m4"


@dataclass
class CostModel:
    """A fitted :class:`LatencyModel` and what it was fitted on."""

    core: str
    latency: LatencyModel
    fitted_on: list[str] = field(default_factory=list)   # "model (plan)" per profiled plan
    errors: dict[str, float] = field(default_factory=dict)  # plan -> predicted/measured - 1
    #: plan -> its layers' (kernel key, features, measured instructions), to refit from
    samples: dict[str, list] = field(default_factory=dict)

    def predict(self, graph, calls, patch=None) -> int:
        """Predicted instructions of one inference of ``graph`` (``calls`` from lowering),
        layer by layer or with the patch schedule ``patch``."""
        return int(self.latency.predict_schedule(graph, calls, patch)["instructions"])

    def to_json(self) -> dict:
        return {"core": self.core, "latency": self.latency.to_json(),
                "fitted_on": self.fitted_on, "errors": self.errors,
                "samples": {k: [list(map(_plain, s)) for s in v]
                            for k, v in self.samples.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "CostModel":
        return cls(data["core"], LatencyModel.from_json(data["latency"]),
                   list(data.get("fitted_on", [])), dict(data.get("errors", {})),
                   {k: [(s[0], tuple(s[1]), s[2]) for s in v]
                    for k, v in data.get("samples", {}).items()})


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def data_path(core: str) -> Path:
    return DATA_DIR / f"{core}.json"


def for_target(target) -> CostModel:
    """The cost model that predicts ``target`` (see the module docstring for the fallback)."""
    path = data_path(target.core)
    if not path.exists():
        path = data_path(FALLBACK_CORE)
    if not path.exists():  # before any calibration: instructions proportional to the work
        return CostModel("uncalibrated", LatencyModel())
    return CostModel.from_json(json.loads(path.read_text()))


# ---- calibration -----------------------------------------------------------------------------

def fitted(core: str, profiled: dict[str, list]) -> CostModel:
    """The cost model fitted on ``profiled`` (plan -> its layers' samples), with each plan's
    relative error."""
    latency = fit([s for samples in profiled.values() for s in samples], relative=True)
    errors = {}
    for name, samples in profiled.items():
        predicted = sum(latency.predict_call(f, x) for f, x, _ in samples)
        errors[name] = round(predicted / max(sum(s[2] for s in samples), 1) - 1, 4)
    return CostModel(core, latency, list(profiled), errors, profiled)
