"""``tinyml verify``: build the generated C, run it on seeded samples, compare bit for bit.

The samples are N seeded random inputs plus the two extremes (every element at the type's
minimum, then at its maximum), which exercise saturation paths random data rarely reaches.
Outputs are compared with tinyml's numpy reference on the imported graph and, for TFLite
models, with TensorFlow Lite Micro itself. A sample counts as mismatched when any output
element differs from any oracle.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml import reference
from tinyml.compiler import Compilation, compile_model
from tinyml.frontends import detect_format
from tinyml.ir import DTYPES, Graph
from tinyml.sim import host, tflm


@dataclass
class VerifyReport:
    model: str
    target: str
    samples: int
    mismatched_outputs: int
    max_abs_diff: float
    oracle: str
    sanitized: bool

    def to_json(self) -> dict:
        return {"model": self.model, "target": self.target, "samples": self.samples,
                "mismatched_outputs": self.mismatched_outputs,
                "max_abs_diff": self.max_abs_diff, "oracle": self.oracle,
                "sanitized": self.sanitized}


def make_samples(graph: Graph, count: int, seed: int = 0) -> list[list[np.ndarray]]:
    """``count`` seeded random samples, then all-minimum and all-maximum ones."""
    rng = np.random.default_rng(seed)
    samples = []
    for kind in ["random"] * count + ["min", "max"]:
        sample = []
        for name in graph.inputs:
            t = graph.tensors[name]
            dtype = np.dtype(DTYPES[t.dtype])
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                low, high = info.min, info.max
                if kind == "random":
                    x = rng.integers(low, high, t.shape, endpoint=True)
                else:
                    x = np.full(t.shape, low if kind == "min" else high)
            else:
                # Float inputs: the range the model was calibrated for when known, else [-1, 1].
                low, high = -1.0, 1.0
                if t.quant is not None:
                    s, z = float(t.quant.scale[0]), int(t.quant.zero_point[0])
                    low, high = s * (-128 - z), s * (127 - z)
                x = rng.uniform(low, high, t.shape) if kind == "random" else \
                    np.full(t.shape, low if kind == "min" else high)
            sample.append(x.astype(dtype))
        samples.append(sample)
    return samples


def verify(model: str | Path, target: str = "host", samples: int = 100, seed: int = 0,
           sanitize: bool = False, output_dir: str | Path | None = None) -> VerifyReport:
    model = Path(model)
    with tempfile.TemporaryDirectory(prefix="tinyml-verify-") as tmp:
        project = Path(output_dir) if output_dir else Path(tmp) / "project"
        result = compile_model(model, target, project)
        if not result.target.is_host:
            raise NotImplementedError("emulated targets are verified by tinyml.sim.qemu")
        binary = host.build(project, sanitize=sanitize)
        return _compare(result, binary, make_samples(result.source_graph, samples, seed),
                        sanitize)


def _compare(result: Compilation, binary: Path, samples: list[list[np.ndarray]],
             sanitize: bool) -> VerifyReport:
    graph = result.source_graph
    produced = host.run(binary, graph, samples)
    oracles = ["reference"]
    runner = None
    if detect_format(result.model) == "tflite" and tflm.available():
        runner = tflm.TflmRunner(result.model)
        oracles.append("tflite-micro")
    mismatched, worst = 0, 0.0
    for sample, outputs in zip(samples, produced):
        expected = [reference.run(graph, sample)]
        if runner is not None:
            expected.append(dict(zip(graph.outputs, runner.run(sample, len(graph.outputs)))))
        bad = False
        for want in expected:
            for name, got in zip(graph.outputs, outputs):
                diff = np.abs(got.astype(np.float64) - want[name].astype(np.float64))
                worst = max(worst, float(diff.max()) if diff.size else 0.0)
                bad |= bool((got != want[name]).any())
        mismatched += bad
    return VerifyReport(str(result.model), result.target.name, len(samples), mismatched, worst,
                        "+".join(oracles), sanitize)
