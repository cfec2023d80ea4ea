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


def stream_frames(graph: Graph, paths: list[str] | None,
                  window: int) -> tuple[list[list[np.ndarray]], str]:
    """``run --stream``: the frames of the ``.npy`` input (any number along axis 1; without
    one, a window of zero-point frames), each one input of ``graph`` (the one-frame model)."""
    frame = graph.tensors[graph.inputs[0]]
    if paths and len(paths) != 1:
        raise TinymlError(f"--stream: the model has one input (the window); got {len(paths)} "
                          f"--input files")
    if paths:
        x = np.load(paths[0], allow_pickle=False) if paths[0].endswith(".npy") else None
        if x is None or x.size == 0 or x.size % frame.size:
            raise TinymlError(f"{paths[0]}: --stream takes frames of {frame.size} elements "
                              f"(shape {tuple(frame.shape)}) along axis 1; got "
                              f"{None if x is None else x.shape}")
        count = x.size // frame.size
        codes, _ = load_inputs(_with_frames(graph, count), paths)
        frames = np.split(codes[0], count, axis=1)
        return [[f] for f in frames], f"{paths[0]} ({count} frames, one per call)"
    values, _ = load_inputs(graph, None)
    return [values] * window, f"zero point (real value 0), {window} frames"


def _with_frames(graph: Graph, count: int) -> Graph:
    """A view of ``graph`` whose input holds ``count`` frames (for :func:`load_inputs`)."""
    import copy
    g = copy.copy(graph)
    g.tensors = dict(graph.tensors)
    t = graph.tensors[graph.inputs[0]]
    g.tensors[t.name] = type(t)(t.name, (1, count) + tuple(t.shape[2:]), t.dtype, t.quant)
    return g


def run_model(model: str | Path, target: str = "host",
              inputs: list[str] | None = None, stream: bool = False, *,
              patch: str | None = "auto", optimize: str = "balanced",
              input_stream: bool = False) -> RunResult:
    """One inference; with ``stream`` (``compile --stream``), one stream of frames, the
    output being the last frame's. ``patch``, ``optimize`` and ``input_stream``: as for
    compile (with ``input_stream`` the harness hands the input over row by row)."""
    from tinyml.verify import require_runnable
    model = Path(model)
    require_runnable(load_target(target))
    with tempfile.TemporaryDirectory(prefix="tinyml-run-") as tmp:
        result = compile_model(model, target, Path(tmp) / "project", stream=stream,
                               patch=patch, optimize=optimize, input_stream=input_stream)
        graph = result.io_graph
        if stream:
            samples, source = stream_frames(graph, inputs, result.stream.window)
        else:
            values, source = load_inputs(graph, inputs)
            samples = [values]
        measured = {}
        if result.target.is_host:
            from tinyml.sim import host
            produced = host.run(host.build(result.project.output_dir), graph, samples)[-1]
        else:
            from tinyml import firmware
            from tinyml.sim import qemu
            elf = firmware.build_harness(result.project.output_dir, result.target)
            emulator = firmware.emulator_of(result.target)  # a board: its core's machine
            run = qemu.run_samples(elf, emulator, graph, samples)
            produced = run.outputs[-1]
            measured = {"machine": emulator.qemu_machine,
                        "instructions": run.instructions[-1], "stack_bytes": run.stack_bytes}
    return RunResult(str(model), result.target.name, source,
                     dict(zip(graph.outputs, produced)), graph, measured)
