"""Emit the C project for a lowered, planned int8 graph.

What a firmware engineer gets in OUTDIR:

- ``model.h``: the API (``tinyml_input()``, ``tinyml_output()``, ``tinyml_invoke()``) and size
  and quantization macros; inputs and outputs live in the arena, as in TFLM.
- ``model.c``: one static arena, one const parameter struct per layer, and ``tinyml_invoke``
  as a straight-line list of kernel calls at constant arena offsets, one line per layer with
  a comment naming the source layer.
- ``weights.c`` / ``weights.h``: every constant (weights, biases, multipliers, shifts) laid out
  as its kernel reads it.
- ``kernels/``: the target's kernel files the model calls (:func:`kernels_used`), copied so
  the project builds on its own.
- ``main.c``: an example that runs one inference; ``Makefile`` and ``CMakeLists.txt``;
  ``README.md``.
- Cortex-M targets (``templates/firmware/``): ``firmware/`` with the start-up code, the linker
  script of the target's machine or board, semihosting, the SysTick instruction counter and
  stack painting (copied from the repository's ``firmware/``), and a Makefile that cross
  compiles ``example.elf``, a bare-metal image whose ``main.c`` runs one inference and reports
  its ticks and stack.

The directory is written atomically: everything is rendered into a temporary sibling first,
so a failure leaves no half-written project behind. ``stage=True`` stops there, leaving the
caller to build and measure the staged project and then :func:`commit_project` it (or
:func:`discard_project` it when a budget is exceeded).
"""

from __future__ import annotations

import os
import re
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
from tinyml.paths import FIRMWARE_DIR, KERNELS_DIR, TEMPLATES_DIR
from tinyml.schedule import MemoryPlan
from tinyml.targets import Target


@dataclass
class GeneratedProject:
    output_dir: Path        # where the files are now (a staging directory until committed)
    files: list[str]
    weights_bytes: int      # const data in weights.c (flash)
    layers: list[dict]      # per layer in execution order: name, op, alias (no code)
    destination: Path | None = None   # where commit_project() moves a staged project


#: Firmware support files every Cortex-M project gets (firmware/cortex_m/), besides the
#: target's linker script and the shared sections.ld (firmware/linker/).
FIRMWARE_SOURCES = ("startup.c", "semihost.c", "counter.c", "stack.c", "console.c")
FIRMWARE_HEADERS = ("semihost.h", "counter.h", "stack.h", "console.h")


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=True, lstrip_blocks=True)


def _kernel_sources(target: Target) -> dict[str, Path]:
    """Kernel files by name; a later kernel directory of the target overrides an earlier one
    (so a core-specific conv.c replaces the portable one). The first directory (the portable
    kernels) must exist; a later, optional one (e.g. ``cortex_m``) may not exist yet."""
    files: dict[str, Path] = {}
    for position, directory in enumerate(target.kernels):
        path = KERNELS_DIR / directory
        if not path.is_dir():
            if position > 0:
                continue
            raise TinymlError(f"target '{target.name}': kernel directory {path} is missing")
        for f in sorted(path.iterdir()):
            if f.suffix in (".c", ".h"):
                files[f.name] = f
    files["tinyml_kernels.h"] = KERNELS_DIR / "tinyml_kernels.h"
    return files


_DEFINITION = re.compile(r"^(?!static\b)(?:[A-Za-z_]\w*[\s*]+)+([A-Za-z_]\w*)\s*\([^;{}]*\)\s*\{",
                         re.M)
_CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")


def kernels_used(kernels: dict[str, Path], code: str) -> dict[str, Path]:
    """The kernel files ``code`` (the generated C) needs: every header, the .c files defining a
    function it calls, and the .c files those call in turn. Why: a project builds, and a
    user's board links, only the kernels of its own layers; a new op's kernels then cost
    nothing to the models that do not use it."""
    texts = {name: path.read_text() for name, path in kernels.items() if name.endswith(".c")}
    defined_in = {fn: name for name, text in texts.items()
                  for fn in _DEFINITION.findall(text)}
    needed: set[str] = set()
    pending = [code]
    while pending:
        for fn in set(_CALL.findall(pending.pop())):
            name = defined_in.get(fn)
            if name is not None and name not in needed:
                needed.add(name)
                pending.append(texts[name])
    return {name: path for name, path in kernels.items()
            if name.endswith(".h") or name in needed}


def firmware_files(target: Target) -> dict[str, Path]:
    """Files a Cortex-M project copies into its ``firmware/`` directory, by name."""
    if not target.is_firmware:
        return {}
    if not target.linker_script:
        raise TinymlError(f"target '{target.name}' has no linker_script")
    files = {name: FIRMWARE_DIR / "cortex_m" / name
             for name in FIRMWARE_SOURCES + FIRMWARE_HEADERS}
    files["sections.ld"] = FIRMWARE_DIR / "linker" / "sections.ld"
    files[target.linker_script] = FIRMWARE_DIR / "linker" / target.linker_script
    for name, path in files.items():
        if not path.exists():
            raise TinymlError(f"target '{target.name}': firmware file {path} is missing")
    return files


def firmware_defines(target: Target) -> list[str]:
    """Preprocessor flags of a Cortex-M project: emulated targets print through semihosting
    and know their SysTick clock; board firmware must not execute semihosting calls (without
    a debugger they fault)."""
    if target.is_emulated:
        return ["-DTINYML_SEMIHOSTING", f"-DTINYML_QEMU_SYSTICK_HZ={target.systick_hz}"]
    return []


def _arena_at(offset: int) -> str:
    return f"arena + {offset}" if offset else "arena"


class _Emitter:
    def __init__(self, graph: Graph, calls: list[KernelCall], plan: MemoryPlan, patch=None,
                 profile: bool = False):
        self.graph = graph
        self.plan = plan
        self.patch = patch  # a tinyml.schedule.patches.PatchSchedule, or None
        self.profile = profile
        self.calls = {id(c.op): c for c in calls}
        self.used: set[str] = {"arena"}
        self.arrays: list[dict] = []
        self.tensor_arrays: dict[str, str] = {}
        #: Variable name -> the C identifier of its static storage (outside the arena).
        self.state_names = {name: identifier(f"state_{name}", self.used)
                            for name in graph.variables}

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
            if self.patch is not None and index in self.patch.stage:
                if index == self.patch.stage[0]:  # the patch stage: one loop, where it starts
                    if hasattr(self.patch, "events"):  # a row stage (tinyml.schedule.input_stream)
                        from tinyml.codegen.row_codegen import emit_row_stage
                        layers += emit_row_stage(self, self.patch, step, len(layers))
                    else:
                        from tinyml.codegen.patch_codegen import emit_patch_stage
                        layers += emit_patch_stage(self, self.patch, step, len(layers))
                continue
            op = self.graph.ops[index]
            call = self.calls.get(id(op))
            ins = [t for t in self.graph.op_inputs(op) if t is not None and not t.is_constant]
            shapes = " + ".join("x".join(map(str, t.shape)) for t in ins)
            out_shapes = ", ".join("x".join(map(str, t.shape)) for t in self.graph.op_outputs(op))
            comment = c_comment(f"{op.name} ({op.kind}) {shapes} -> {out_shapes}")
            if call is None:
                continue  # constant outputs: evaluated at compile time
            if self._is_alias(call):
                layers.append(dict(comment=comment, alias=True, step=step, index=len(layers),
                                   name=op.name, op=op.kind))
                continue
            var = identifier(f"layer{step}", self.used)
            fields = []
            for key, value in call.fields():
                if isinstance(value, ConstArray):
                    fields.append((key, self.array(value, f"{op.name}: {key}")))
                else:
                    fields.append((key, c_literal(value)))
            args = [f"&{var}"]
            for arg in call.args:
                kind, _, name = arg.partition(":")
                if kind == "scratch":
                    offset = self.plan.scratch_offset.get(index)
                    args.append("NULL" if offset is None else _arena_at(offset))
                elif kind == "state":
                    args.append(self.state_names[name])
                else:
                    args.append(self.pointer(name))
            layers.append(dict(comment=comment, alias=False, step=step, var=var,
                               params_type=call.params_type, fields=fields,
                               call=f"{call.function}({', '.join(args)});",
                               index=len(layers), name=op.name, op=op.kind))
        return layers

    def _is_alias(self, call: KernelCall) -> bool:
        """A reshape whose output shares its input's storage needs no code."""
        if call.function != "tinyml_reshape":
            return False
        src = [a.split(":", 1)[1] for a in call.args if a.startswith("in:")]
        dst = [a.split(":", 1)[1] for a in call.args if a.startswith("out:")]
        return (len(src) == 1 and len(dst) == 1 and not self.graph.tensors[src[0]].is_constant
                and self.plan.offsets.get(src[0]) == self.plan.offsets.get(dst[0]))

    def variables(self) -> list[dict]:
        """The streaming state for model.c: storage, and the value tinyml_reset() restores
        (the initial codes: one memset when they are all equal, else a constant array)."""
        items = []
        for name, var in self.graph.variables.items():
            codes = np.asarray(var.initial).reshape(-1)
            # memset fills bytes: any code of a byte type, or zero of any type.
            uniform = codes.size > 0 and bool((codes == codes[0]).all()) and \
                (var.dtype in ("int8", "uint8") or codes[0] == 0)
            items.append(dict(c_name=self.state_names[name], ctype=c_type(var.dtype),
                              elements=int(codes.size), bytes=var.nbytes,
                              comment=c_comment(f"{name}: {var.dtype}"
                                                f"[{'x'.join(map(str, var.shape))}]"
                                                + (f" {var.quant}" if var.quant else "")),
                              fill=int(codes[0]) if uniform else None,
                              initial=None if uniform else c_array_body(codes)))
        return items

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
                     example_input: np.ndarray | None = None, profile: bool = False,
                     stage: bool = False, patch=None, learn=None,
                     stream_window: int | None = None) -> GeneratedProject:
    """Render the project into ``output_dir`` (replacing what a previous compile wrote).

    ``profile`` adds per-layer counter hooks to ``model.c`` (``tinyml_profile_start()`` before
    the first layer, ``tinyml_profile_layer(k)`` after layer k), for the profiling build only.
    ``stage`` leaves the project in a staging directory (see the module docstring).
    ``patch``: the patch schedule (tinyml.schedule.patches) ``plan`` belongs to, if any.
    ``learn``: a trainable head (tinyml.learn.project.TrainableBuild) on top of ``graph``, the
    backbone: adds learn.c, learn.json and the training kernels (tinyml.learn).
    ``stream_window``: ``compile --stream``'s T, frames in the window the model equals (the
    input is one frame; ``TINYML_STREAM_WINDOW``, and the example feeds T frames)."""
    output_dir = Path(output_dir)
    emitter = _Emitter(graph, calls, plan, patch, profile)
    layers = emitter.layers()
    inputs, outputs = emitter.io(graph.inputs), emitter.io(graph.outputs)
    example = None
    if example_input is not None:
        example = c_array_body(np.asarray(example_input).reshape(-1))
    kernels = _kernel_sources(target)
    firmware = firmware_files(target)
    learn_context = None
    if learn is not None:  # on-device learning: the float head replaces the graph's output
        learn_context = learn.template_context(plan)
        outputs = [learn.output_description()]
        kernels.update(learn.kernel_sources())
    context = dict(
        version=__version__, model_file=model_file, target=target, layers=layers,
        arrays=emitter.arrays, inputs=inputs, outputs=outputs, arena_bytes=plan.arena_bytes,
        alignment=max(plan.alignment, 4), macs=macs, peak_layer=c_comment(plan.peak_layer),
        scratch_bytes=plan.scratch_bytes, example_input=example, profile=profile,
        weights_bytes=sum(a["nbytes"] for a in emitter.arrays),
        kernel_files=sorted(n for n in kernels if n.endswith(".c")),
        firmware_sources=list(FIRMWARE_SOURCES), defines=" ".join(firmware_defines(target)),
        cflags=" ".join(target.cflags), ldflags=" ".join(target.ldflags), cc=target.cc,
        # Firmware Makefiles keep the core's -m flags apart from the overridable CFLAGS.
        arch_flags=" ".join(f for f in target.cflags if f.startswith("-m")),
        other_cflags=" ".join(f for f in target.cflags if not f.startswith("-m")),
        learn=learn_context, variables=emitter.variables(),
        state_bytes=sum(v.nbytes for v in graph.variables.values()),
        stream_window=stream_window,
        input_stream=_input_stream(graph, patch),
    )
    env = _environment()
    flavour = "firmware" if target.is_firmware else "project"
    templates = {name: f"project/{name}.j2" for name in
                 ("model.h", "model.c", "weights.h", "weights.c", "CMakeLists.txt", "README.md")}
    templates.update({name: f"{flavour}/{name}.j2" for name in ("main.c", "Makefile")})
    if learn is not None:
        templates["learn.c"] = "project/learn.c.j2"
    # The C first: which kernel files it calls decides what the build files list.
    code = {name: env.get_template(templates[name]).render(**context)
            for name in templates if name.endswith(".c")}
    if learn is None:
        kernels = kernels_used(kernels, "\n".join(code.values()))
        context["kernel_files"] = sorted(n for n in kernels if n.endswith(".c"))
    rendered = {name: code[name] if name in code else env.get_template(path).render(**context)
                for name, path in templates.items()}
    if learn is not None:
        rendered["learn.json"] = learn.metadata_json()
    copies = {f"kernels/{n}": path for n, path in kernels.items()}
    copies.update({f"firmware/{n}": path for n, path in firmware.items()})
    staging = _stage(output_dir, rendered, copies)
    project = GeneratedProject(staging, sorted(rendered) + sorted(copies),
                               context["weights_bytes"],
                               [dict(name=layer["name"], op=layer["op"], alias=layer["alias"])
                                for layer in layers], output_dir.resolve())
    if not stage:
        commit_project(project)
    return project


def _input_stream(graph: Graph, patch) -> dict | None:
    """The templates' view of ``--input-stream rows`` (tinyml.schedule.input_stream): the
    input's rows and row length, and the band the arena holds instead of the image."""
    if patch is None or not getattr(patch, "stream_rows", False):
        return None
    _, rows, width, channels = graph.tensors[graph.inputs[0]].shape
    band = patch.bands[0]
    return dict(rows=rows, width=width, channels=channels, row_elements=width * channels,
                band_rows=band.shape[1], band_bytes=band.nbytes, stage_layers=len(patch.stage))


#: Marks a directory tinyml generated, so a later compile may replace it (and nothing else).
MARKER = ".tinyml-project"


def _stage(output_dir: Path, rendered: dict[str, str], copies: dict[str, Path]) -> Path:
    """Write everything into a fresh staging directory beside ``output_dir``."""
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
        for name, src in copies.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, staging / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def commit_project(project: GeneratedProject) -> None:
    """Move a staged project to its destination, replacing an earlier tinyml project there."""
    staging, output_dir = project.output_dir, project.destination
    if staging == output_dir:
        return
    try:
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
    project.output_dir = output_dir


def discard_project(project: GeneratedProject) -> None:
    """Remove a staged project that must not be committed (nothing is written)."""
    if project.output_dir != project.destination:
        shutil.rmtree(project.output_dir, ignore_errors=True)
