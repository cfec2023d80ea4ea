"""Emit the C project for a lowered, planned int8 graph.

What a firmware engineer gets in OUTDIR:

- ``model.h``: the API (``tinyml_input()``, ``tinyml_output()``, ``tinyml_invoke()``) and size
  and quantization macros; inputs and outputs live in the arena, as in TFLM.
- ``model.c``: one static arena, one const parameter struct per layer, and ``tinyml_invoke``
  as a straight-line list of kernel calls at constant arena offsets, one line per layer with
  a comment naming the source layer.
- ``weights.c`` / ``weights.h``: every constant (weights, biases, multipliers, shifts) laid out
  as its kernel reads it.
- ``kernels/``: the kernels of the target, copied so the project builds on its own.
- ``main.c``: an example that runs one inference; ``Makefile`` and ``CMakeLists.txt``;
  ``README.md``.

The directory is written atomically: everything is rendered into a temporary sibling first,
so a failure leaves no half-written project behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from tinyml import __version__
from tinyml.codegen.c_syntax import c_array_body, c_comment, c_literal, c_type, identifier
from tinyml.codegen.lowering import ConstArray, KernelCall
from tinyml.errors import TinymlError
from tinyml.ir import Graph
from tinyml.paths import KERNELS_DIR, TEMPLATES_DIR
from tinyml.schedule import MemoryPlan
from tinyml.targets import Target


@dataclass
class GeneratedProject:
    output_dir: Path
    files: list[str]
    weights_bytes: int      # const data in weights.c (flash)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True)


def _kernel_sources(target: Target) -> dict[str, Path]:
    """Kernel files by name; a later kernel directory of the target overrides an earlier one
    (so a core-specific conv.c replaces the portable one)."""
    files: dict[str, Path] = {}
    for directory in target.kernels:
        path = KERNELS_DIR / directory
        if not path.is_dir():
            raise TinymlError(f"target '{target.name}': kernel directory {path} is missing")
        for f in sorted(path.iterdir()):
            if f.suffix in (".c", ".h"):
                files[f.name] = f
    files["tinyml_kernels.h"] = KERNELS_DIR / "tinyml_kernels.h"
    return files


def _arena_at(offset: int) -> str:
    return f"arena + {offset}" if offset else "arena"


class _Emitter:
    def __init__(self, graph: Graph, calls: list[KernelCall], plan: MemoryPlan):
        self.graph = graph
        self.plan = plan
        self.calls = {id(c.op): c for c in calls}
        self.used: set[str] = {"arena"}
        self.arrays: list[dict] = []
        self.tensor_arrays: dict[str, str] = {}

    # ---- constants ------------------------------------------------------------------------

    def array(self, a: ConstArray, comment: str) -> str:
        name = identifier(a.name, self.used)
        self.arrays.append(dict(ctype=a.ctype, name=name, length=int(a.values.size),
                                body=c_array_body(a.values), comment=c_comment(comment),
                                nbytes=int(a.values.nbytes)))
        return name

    def constant_tensor(self, tensor_name: str) -> str:
        if tensor_name not in self.tensor_arrays:
            t = self.graph.tensors[tensor_name]
            a = ConstArray(f"c_{tensor_name}", c_type(t.dtype), np.asarray(t.data))
            self.tensor_arrays[tensor_name] = self.array(a, f"constant {tensor_name}")
        return self.tensor_arrays[tensor_name]

    # ---- arena pointers -------------------------------------------------------------------

    def pointer(self, tensor_name: str) -> str:
        t = self.graph.tensors[tensor_name]
        if t.is_constant:
            return self.constant_tensor(tensor_name)
        base = _arena_at(self.plan.offsets[tensor_name])
        if t.dtype in ("int8", "uint8"):
            return base
        return f"({c_type(t.dtype)} *)(void *)({base})"

    # ---- layers ---------------------------------------------------------------------------

    def layers(self) -> list[dict]:
        layers = []
        for step, index in enumerate(self.plan.order):
            op = self.graph.ops[index]
            call = self.calls.get(id(op))
            ins = [t for t in self.graph.op_inputs(op) if t is not None and not t.is_constant]
            shapes = " + ".join("x".join(map(str, t.shape)) for t in ins)
            out_shapes = ", ".join("x".join(map(str, t.shape)) for t in self.graph.op_outputs(op))
            comment = c_comment(f"{op.name} ({op.kind}) {shapes} -> {out_shapes}")
            if call is None:
                continue  # constant outputs: evaluated at compile time
            if self._is_alias(call):
                layers.append(dict(comment=comment, alias=True, step=step))
                continue
            var = identifier(f"layer{step}", self.used)
            fields = []
            for key, value in call.params.items():
                if isinstance(value, ConstArray):
                    fields.append((key, self.array(value, f"{op.name}: {key}")))
                else:
                    fields.append((key, c_literal(value)))
            args = [f"&{var}"]
            for arg in call.args:
                kind, _, name = arg.partition(":")
                if kind == "scratch":
                    args.append(_arena_at(self.plan.scratch_offset[index]))
                else:
                    args.append(self.pointer(name))
            layers.append(dict(comment=comment, alias=False, step=step, var=var,
                               params_type=call.params_type, fields=fields,
                               call=f"{call.function}({', '.join(args)});"))
        return layers

    def _is_alias(self, call: KernelCall) -> bool:
        """A reshape whose output shares its input's storage needs no code."""
        if call.function != "tinyml_reshape":
            return False
        src = [a.split(":", 1)[1] for a in call.args if a.startswith("in:")]
        dst = [a.split(":", 1)[1] for a in call.args if a.startswith("out:")]
        return (len(src) == 1 and len(dst) == 1 and not self.graph.tensors[src[0]].is_constant
                and self.plan.offsets.get(src[0]) == self.plan.offsets.get(dst[0]))

    def io(self, names: list[str]) -> list[dict]:
        items = []
        for name in names:
            t = self.graph.tensors[name]
            q = t.quant
            items.append(dict(name=c_comment(name), ctype=c_type(t.dtype),
                              offset=self.plan.offsets[name], bytes=t.nbytes, elements=t.size,
                              shape="x".join(map(str, t.shape)),
                              scale=c_literal(float(q.scale[0])) if q is not None else "1.0f",
                              zero_point=int(q.zero_point[0]) if q is not None else 0))
        return items


def generate_project(graph: Graph, calls: list[KernelCall], plan: MemoryPlan, target: Target,
                     output_dir: str | Path, *, model_file: str, macs: int,
                     example_input: np.ndarray | None = None) -> GeneratedProject:
    """Render the project into ``output_dir`` (replacing what a previous compile wrote)."""
    output_dir = Path(output_dir)
    emitter = _Emitter(graph, calls, plan)
    layers = emitter.layers()
    inputs, outputs = emitter.io(graph.inputs), emitter.io(graph.outputs)
    example = None
    if example_input is not None:
        example = c_array_body(np.asarray(example_input).reshape(-1))
    context = dict(
        version=__version__, model_file=model_file, target=target, layers=layers,
        arrays=emitter.arrays, inputs=inputs, outputs=outputs, arena_bytes=plan.arena_bytes,
        alignment=max(plan.alignment, 4), macs=macs, peak_layer=c_comment(plan.peak_layer),
        scratch_bytes=plan.scratch_bytes, example_input=example,
        weights_bytes=sum(a["nbytes"] for a in emitter.arrays),
        kernel_files=sorted(n for n in _kernel_sources(target) if n.endswith(".c")),
        cflags=" ".join(target.cflags), ldflags=" ".join(target.ldflags), cc=target.cc,
    )
    env = _environment()
    rendered = {name: env.get_template(f"project/{name}.j2").render(**context)
                for name in ("model.h", "model.c", "weights.h", "weights.c", "main.c",
                             "Makefile", "CMakeLists.txt", "README.md")}
    _write_atomically(output_dir, rendered, _kernel_sources(target))
    return GeneratedProject(output_dir, sorted(rendered) + [f"kernels/{n}" for n in
                                                            _kernel_sources(target)],
                            context["weights_bytes"])


#: Marks a directory tinyml generated, so a later compile may replace it (and nothing else).
MARKER = ".tinyml-project"


def _write_atomically(output_dir: Path, rendered: dict[str, str],
                      kernels: dict[str, Path]) -> None:
    output_dir = output_dir.resolve()
    if output_dir.exists() and not output_dir.is_dir():
        raise TinymlError(f"{output_dir} exists and is not a directory")
    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / MARKER).exists():
        raise TinymlError(f"{output_dir} is not empty and was not generated by tinyml; "
                          f"refusing to overwrite it")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-", dir=output_dir.parent))
    try:
        for name, text in rendered.items():
            (staging / name).write_text(text)
        (staging / MARKER).write_text("generated by tinyml compile; replaced on recompile\n")
        (staging / "kernels").mkdir()
        for name, src in kernels.items():
            shutil.copyfile(src, staging / "kernels" / name)
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}-old-{os.getpid()}")
            output_dir.rename(old)
            staging.rename(output_dir)
            shutil.rmtree(old)
        else:
            staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
