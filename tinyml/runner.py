"""``tinyml run``: one inference of a compiled model on a target, on the user's input.

The input comes from ``.npy`` files, one per graph input. Integer arrays must hold the
input's quantized codes; float arrays are real values and are quantized with the input's
scale and zero point (round half away from zero, as TFLite's QUANTIZE does). An array may
omit the batch dimension: only the element count must match. Without ``--input`` the model
sees real value 0 everywhere (the zero point), like the generated example.

On the host the generated C runs natively; on an emulated Cortex-M target it runs in QEMU,
which also reports the instructions and stack of the inference.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyml.compiler import compile_model
from tinyml.errors import TinymlError
from tinyml.ir import DTYPES, Graph
from tinyml.reference.fixedpoint import tflite_round
from tinyml.targets import load_target


@dataclass
class RunResult:
    model: str
    target: str
    input_source: str
    outputs: dict[str, np.ndarray]
    graph: Graph
    measured: dict = field(default_factory=dict)   # emulated: instructions, stack_bytes, ...

    def dequantized(self, name: str) -> np.ndarray | None:
        """Real values of a quantized output (None for float outputs)."""
        t, values = self.graph.tensors[name], self.outputs[name]
        if t.quant is None or values.dtype.kind == "f":
            return None
        return (values.astype(np.float64) - int(t.quant.zero_point[0])) * float(t.quant.scale[0])


def load_inputs(graph: Graph, paths: list[str] | None) -> tuple[list[np.ndarray], str]:
    """The graph's inputs from ``.npy`` files (see the module docstring)."""
    if not paths:
        values = []
        for name in graph.inputs:
            t = graph.tensors[name]
            zero = int(t.quant.zero_point[0]) if t.quant is not None else 0
            values.append(np.full(t.shape, zero, DTYPES[t.dtype]))
        return values, "zero point (real value 0)"
    if len(paths) != len(graph.inputs):
        raise TinymlError(f"the model has {len(graph.inputs)} input(s) "
                          f"({', '.join(graph.inputs)}); got {len(paths)} --input file(s)")
    values = []
    for name, path in zip(graph.inputs, paths):
        t = graph.tensors[name]
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise TinymlError(f"cannot read {path} as a .npy array: {exc}") from None
        if x.size != t.size:
            raise TinymlError(f"{path}: {x.size} elements of shape {x.shape}, but input "
                              f"'{name}' has shape {tuple(t.shape)} ({t.size} elements)")
        dtype = np.dtype(DTYPES[t.dtype])
        if x.dtype.kind == "f" and dtype.kind in "iu":
            if t.quant is None:
                raise TinymlError(f"input '{name}' is {t.dtype} without quantization "
                                  f"parameters: pass its integer codes")
            info = np.iinfo(dtype)
            q = tflite_round(x.astype(np.float32) / np.float32(t.quant.scale[0]))
            x = np.clip(q.astype(np.int64) + int(t.quant.zero_point[0]), info.min, info.max)
        elif x.dtype.kind in "iu" and dtype.kind in "iu":
            info = np.iinfo(dtype)
            if x.size and (x.min() < info.min or x.max() > info.max):
                raise TinymlError(f"{path}: values outside {t.dtype}'s range for input '{name}'")
        elif x.dtype.kind not in "iuf":
            raise TinymlError(f"{path}: {x.dtype} array; expected numbers")
        values.append(x.astype(dtype).reshape(t.shape))
    return values, ", ".join(paths)


def run_model(model: str | Path, target: str = "host",
              inputs: list[str] | None = None) -> RunResult:
    from tinyml.verify import require_runnable
    model = Path(model)
    require_runnable(load_target(target))
    with tempfile.TemporaryDirectory(prefix="tinyml-run-") as tmp:
        result = compile_model(model, target, Path(tmp) / "project")
        graph = result.source_graph
        values, source = load_inputs(graph, inputs)
        measured = {}
        if result.target.is_host:
            from tinyml.sim import host
            produced = host.run(host.build(result.project.output_dir), graph, [values])[0]
        else:
            from tinyml import firmware
            from tinyml.sim import qemu
            elf = firmware.build_harness(result.project.output_dir, result.target)
            emulator = firmware.emulator_of(result.target)  # a board: its core's machine
            run = qemu.run_samples(elf, emulator, graph, [values])
            produced = run.outputs[0]
            measured = {"machine": emulator.qemu_machine,
                        "instructions": run.instructions[0], "stack_bytes": run.stack_bytes}
    return RunResult(str(model), result.target.name, source,
                     dict(zip(graph.outputs, produced)), graph, measured)
