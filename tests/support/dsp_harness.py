"""The C kernel harness for the Cortex-M DSP kernels, run on the host.

The DSP kernels use ACLE intrinsics (SMLAD, SXTB16, SMLAL ...). Compiled on the host with
``-DTINYML_ACLE_EMULATION`` they take those from ``tests/support/acle_emulation.h``, a C
transcription of each instruction's pseudocode, and run under the sanitizers like the
portable kernels: the kernel library is the portable one with the given cortex_m files in
place of the portable files of the same names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, mlperf_model
from support.c_harness import KERNELS, Harness
from support.graph_builder import Builder
from tinyml.frontends.tflite import load_tflite
from tinyml.targets import load_target

DSP = KERNELS / "cortex_m"
SUPPORT = REPO / "tests" / "support"
EMULATION = ["-DTINYML_ACLE_EMULATION", f"-I{SUPPORT}", f"-I{DSP}"]


class DspHarness(Harness):
    """The portable kernels' harness with the cortex_m ``dsp_files`` (e.g. conv.c) instead of
    the portable files of the same names."""

    def __init__(self, workdir: Path, dsp_files: tuple[str, ...]):
        super().__init__(workdir)
        self.dsp_files = dsp_files

    def objects(self, flavor: str) -> list[Path]:
        if flavor not in self._objects:
            out = self.workdir / flavor
            out.mkdir(exist_ok=True)
            sources = [s for s in sorted((KERNELS / "portable").glob("*.c"))
                       if s.name not in self.dsp_files] + \
                [DSP / name for name in self.dsp_files]
            objects = []
            for source in sources:
                obj = out / f"{source.parent.name}_{source.stem}.o"
                self._cc(flavor, ["-c", str(source), "-o", str(obj)])
                objects.append(obj)
            self._objects[flavor] = objects
        return self._objects[flavor]

    def _cc(self, flavor: str, args: list[str]) -> None:
        super()._cc(flavor, [*EMULATION, *args])


M4 = load_target("cortex-m4")


def dull_layers(jobs, results) -> list[str]:
    """Layers whose outputs take fewer than 3 values over all their samples (a saturated
    constant rather than real outputs), for the DSP kernel tests' sanity checks."""
    values: dict[str, list[np.ndarray]] = {}
    for job, got in zip(jobs, results):
        for value in got.values():
            values.setdefault(job.label.split("#")[0], []).append(value.ravel())
    return [k for k, v in values.items()
            if np.concatenate(v).size >= 16 and np.unique(np.concatenate(v)).size < 3]


def mlperf_compiled(name: str, seed: int):
    """An MLPerf Tiny model after tinyml.passes, with one random int8 input."""
    passes = pytest.importorskip("tinyml.passes")
    graph = passes.run_passes(load_tflite(mlperf_model(name)))
    shape = graph.tensors[graph.inputs[0]].shape
    feeds = [np.random.default_rng(seed).integers(-128, 128, shape).astype(np.int8)]
    return graph, feeds


def output_scale(b: Builder, x: str, w: str, taps: int) -> float:
    """An output scale mapping a typical accumulator (sqrt(taps) * rms(x - zp) * rms(w),
    about sqrt(taps) * 80 * 73) to about +-64 codes, times a random factor of up to 3."""
    sx = b.graph.tensors[x].scale()
    sw = float(np.mean(b.graph.tensors[w].quant.scale))
    typical = np.sqrt(taps) * 80 * 73
    return float(np.float32(sx * sw * typical / 64 * 10 ** b.rng.uniform(-.5, .5)))
