"""The C kernel harness: run lowered KernelCalls as C on exact inputs and read the outputs.

The harness generates one C driver per batch of jobs: for each call it fills the params
struct with designated initializers straight from ``KernelCall.fields()`` (checked field by
field against the struct in tinyml_kernels.h, so a missing or stray parameter fails), copies
every constant array, input, output and scratch area into a malloc'd buffer of exactly its
size (garbage filled, so AddressSanitizer sees any overrun and no kernel can rely on zeroed
memory), calls the kernel and writes the outputs back. Kernels that declare ``in_place`` are
run a second time with the output in the input's buffer. Every driver is built with
``-std=c99 -pedantic -Wall -Wextra -Werror`` and, in the "sanitized" flavor, run under
AddressSanitizer and UndefinedBehaviorSanitizer (which abort on the first report).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from conftest import REPO
from tinyml.codegen.lowering import ConstArray, KernelCall, lower
from tinyml.ir import Graph
from tinyml.reference import run


KERNELS = REPO / "firmware" / "kernels"


HEADER = KERNELS / "tinyml_kernels.h"


WARNINGS = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wvla",
            "-Wstrict-prototypes", "-Wmissing-prototypes", "-Wdouble-promotion", "-Wcast-qual"]


FLAVORS = {
    "sanitized": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                  "-fno-sanitize-recover=all"],
    "optimized": ["-O2"],
}


SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=23",
                 "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=24"}


def header_structs() -> dict[str, list[str]]:
    """Field designators of every params struct in the header, in declaration order; a field
    whose type is an earlier struct of the header is expanded (``conv.input_h``)."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    structs: dict[str, list[str]] = {}
    for body, name in re.findall(r"typedef struct \{(.*?)\}\s*(\w+)\s*;", text, flags=re.S):
        fields = []
        for decl in body.split(";"):
            words = re.findall(r"\w+", decl)
            if not words:
                continue
            if len(words) == 2 and words[0] in structs:
                fields += [f"{words[1]}.{inner}" for inner in structs[words[0]]]
            else:
                fields.append(words[-1])
        structs[name] = fields
    return structs


@dataclass
class Job:
    """One kernel call on concrete inputs: ``inputs`` by tensor name, ``outputs`` the
    (dtype, shape) of each output tensor by name."""

    call: KernelCall
    inputs: dict[str, np.ndarray]
    outputs: dict[str, tuple[np.dtype, tuple[int, ...]]]
    in_place: bool = False
    label: str = ""


@dataclass
class _Blob:
    """Bytes the driver reads, with 16-byte aligned offsets."""

    data: bytearray = field(default_factory=bytearray)

    def add(self, array: np.ndarray) -> tuple[int, int]:
        raw = np.ascontiguousarray(array).tobytes()
        offset = len(self.data)
        self.data += raw + bytes(-len(raw) % 16)
        return offset, len(raw)


def _array_var(designator: str) -> str:
    """The C variable holding a params field's array copy (``conv.filter``: ``a_conv_filter``)."""
    return "a_" + designator.replace(".", "_")


def _c_int(value: int) -> str:
    if value == -(1 << 31):
        return "(-2147483647 - 1)"
    return str(int(value))


def _c_float(value: float) -> str:
    assert math.isfinite(value) and float(np.float32(value)) == value, value
    return float(value).hex() + "f"


_CTYPE_OF = {np.dtype(np.int8): "int8_t", np.dtype(np.float32): "float"}


class Harness:
    """Compiles the kernel library once per flavor and runs generated drivers."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.structs = header_structs()
        self._objects: dict[str, list[Path]] = {}
        self._count = 0

    def objects(self, flavor: str) -> list[Path]:
        if flavor not in self._objects:
            out = self.workdir / flavor
            out.mkdir(exist_ok=True)
            objects = []
            for source in sorted((KERNELS / "portable").glob("*.c")):
                obj = out / (source.stem + ".o")
                self._cc(flavor, ["-c", str(source), "-o", str(obj)])
                objects.append(obj)
            self._objects[flavor] = objects
        return self._objects[flavor]

    def _cc(self, flavor: str, args: list[str]) -> None:
        cmd = ["cc", *WARNINGS, *FLAVORS[flavor], f"-I{KERNELS}", f"-I{KERNELS / 'portable'}",
               *args]
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"

    def run(self, jobs: list[Job], flavor: str = "sanitized") -> list[dict[str, np.ndarray]]:
        """Run every job's kernel; return each job's outputs by tensor name."""
        self._count += 1
        name = f"driver{self._count}"
        blob = _Blob()
        result_size = 0
        layouts = []
        functions = []
        for index, job in enumerate(jobs):
            code, outputs, result_size = self._job_code(index, job, blob, result_size)
            functions.append(code)
            layouts.append(outputs)
        source = self.workdir / f"{name}.c"
        source.write_text(_DRIVER.format(
            functions="\n".join(functions),
            calls="\n".join(f"    job_{i}();" for i in range(len(jobs))),
            result_size=max(result_size, 1)))
        binary = self.workdir / name
        self._cc(flavor, [str(source), *map(str, self.objects(flavor)), "-o", str(binary)])
        blob_path, result_path = self.workdir / f"{name}.in", self.workdir / f"{name}.out"
        blob_path.write_bytes(bytes(blob.data))
        env = dict(os.environ, **SANITIZER_ENV)
        proc = subprocess.run([str(binary), str(blob_path), str(result_path)],
                              capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0 and "runtime error" not in proc.stderr, (
            f"{binary} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        raw = result_path.read_bytes()
        results = []
        for outputs in layouts:
            values = {}
            for tensor, (offset, dtype, shape) in outputs.items():
                count = int(np.prod(shape, dtype=np.int64))
                values[tensor] = np.frombuffer(raw, dtype, count, offset).reshape(shape)
            results.append(values)
        for path in (source, binary, blob_path, result_path):
            path.unlink()
        return results

    def _job_code(self, index: int, job: Job, blob: _Blob, result_size: int):
        call = job.call
        fields = self.structs.get(call.params_type)
        assert fields is not None, f"{call.params_type} is not declared in {HEADER.name}"
        params = dict(call.fields())
        assert sorted(params) == sorted(fields), (
            f"{call.function}: params {sorted(params)} vs struct fields {sorted(fields)}")
        lines = [f"static void job_{index}(void)", "{"]
        frees = []
        # Constant arrays: one exact-size copy each.
        for key in fields:
            value = params[key]
            if isinstance(value, ConstArray):
                offset, size = blob.add(value.values)
                lines.append(f"    void *{_array_var(key)} = dup_blob({offset}, {size}, {size});")
                frees.append(_array_var(key))
        # Tensor buffers: one per distinct tensor; an in-place output shares its input's.
        buffers: dict[str, str] = {}
        in_place_pair = None
        if job.in_place:
            assert call.in_place is not None
            i, o = call.in_place
            in_place_pair = (call.op.inputs[i], call.op.outputs[o])
        for arg in call.args:
            kind, _, tensor = arg.partition(":")
            if kind != "in" or tensor in buffers:
                continue
            value = np.ascontiguousarray(job.inputs[tensor])
            capacity = value.nbytes
            if in_place_pair and in_place_pair[0] == tensor:
                dtype, shape = job.outputs[in_place_pair[1]]
                capacity = max(capacity, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            offset, size = blob.add(value)
            buffers[tensor] = f"t{len(buffers)}"
            lines.append(f"    void *{buffers[tensor]} = dup_blob({offset}, {size}, {capacity});")
            frees.append(buffers[tensor])
        outputs = {}
        for arg in call.args:
            kind, _, tensor = arg.partition(":")
            if kind != "out":
                continue
            dtype, shape = job.outputs[tensor]
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if in_place_pair and in_place_pair[1] == tensor:
                buffers[tensor] = buffers[in_place_pair[0]]
            else:
                buffers[tensor] = f"t{len(buffers)}"
                lines.append(f"    void *{buffers[tensor]} = junk({nbytes});")
                frees.append(buffers[tensor])
            outputs[tensor] = (result_size, np.dtype(dtype), tuple(shape))
            result_size += nbytes + (-nbytes % 16)
        if "scratch" in call.args:
            lines.append(f"    void *scratch = junk({max(call.scratch_bytes, 1)});")
            frees.append("scratch")
        initializers = []
        for key in fields:
            value = params[key]
            if isinstance(value, ConstArray):
                initializers.append(f"        .{key} = (const {value.ctype} *){_array_var(key)},")
            elif isinstance(value, float):
                initializers.append(f"        .{key} = {_c_float(value)},")
            else:
                initializers.append(f"        .{key} = {_c_int(value)},")
        lines.append(f"    const {call.params_type} params = {{")
        lines += initializers
        lines.append("    };")
        args = []
        for arg in call.args:
            kind, _, tensor = arg.partition(":")
            if kind == "in":
                args.append(f"(const void *){buffers[tensor]}")
            elif kind == "out":
                args.append(f"(void *){buffers[tensor]}")
            else:
                args.append("scratch")
        lines.append(f"    {call.function}(&params, {', '.join(args)});")
        for tensor, (offset, dtype, shape) in outputs.items():
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            lines.append(f"    memcpy(g_result + {offset}, {buffers[tensor]}, {nbytes});")
        lines += [f"    free({name});" for name in frees]
        lines.append("}")
        return "\n".join(lines), outputs, result_size


_DRIVER = r"""/* Generated by tests/support/c_harness.py */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tinyml_kernels.h"

static unsigned char *g_blob;
static unsigned char *g_result;

static void *junk(size_t size)
{{
    unsigned char *p = malloc(size);
    size_t i;
    if (!p) {{ exit(3); }}
    for (i = 0; i < size; ++i) {{ p[i] = (unsigned char)(0xA5 ^ (i * 31)); }}
    return p;
}}

static void *dup_blob(size_t offset, size_t size, size_t capacity)
{{
    unsigned char *p = junk(capacity ? capacity : 1);
    memcpy(p, g_blob + offset, size);
    return p;
}}

{functions}

int main(int argc, char **argv)
{{
    FILE *f;
    long size;
    if (argc != 3) {{ return 2; }}
    f = fopen(argv[1], "rb");
    if (!f) {{ return 2; }}
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    g_blob = malloc(size > 0 ? (size_t)size : 1);
    if (size > 0 && fread(g_blob, 1, (size_t)size, f) != (size_t)size) {{ return 2; }}
    fclose(f);
    g_result = junk({result_size});
{calls}
    f = fopen(argv[2], "wb");
    if (!f) {{ return 2; }}
    fwrite(g_result, 1, {result_size}, f);
    fclose(f);
    free(g_blob);
    free(g_result);
    return 0;
}}
"""


def graph_jobs(graph: Graph, calls: list[KernelCall], values: dict[str, np.ndarray],
               label: str = "") -> list[Job]:
    """Jobs running each call on ``values`` (every tensor's value), out of place and, for
    kernels that declare it, in place."""
    jobs = []
    for call in calls:
        inputs = {a[3:]: values[a[3:]] for a in call.args if a.startswith("in:")}
        outputs = {}
        for a in call.args:
            if a.startswith("out:"):
                t = graph.tensors[a[4:]]
                outputs[t.name] = (np.dtype(values[t.name].dtype), t.shape)
        jobs.append(Job(call, inputs, outputs, False, label))
        if call.in_place is not None:
            jobs.append(Job(call, inputs, outputs, True, label))
    return jobs


def mismatches(jobs: list[Job], results: list[dict[str, np.ndarray]],
               expected: list[dict[str, np.ndarray]]) -> dict[str, int]:
    """Differing elements per "label:layer:function[:in-place]" (floats compared bitwise)."""
    counts: dict[str, int] = {}
    for job, got, want in zip(jobs, results, expected):
        key = f"{job.label}:{job.call.op.name}:{job.call.function}" + \
            (":in-place" if job.in_place else "")
        for name, value in got.items():
            ref = np.asarray(want[name]).reshape(value.shape)
            assert ref.dtype == value.dtype, (key, ref.dtype, value.dtype)
            if value.dtype.kind == "f":
                differ = int(np.count_nonzero(value.view(np.int32) != ref.view(np.int32)))
            else:
                differ = int(np.count_nonzero(value != ref))
            counts[key] = counts.get(key, 0) + differ
    return counts


def bad_counts(counts: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if v}


def check_graph(harness: Harness, graph: Graph, samples: list[dict[str, np.ndarray]],
                label: str = "", flavor: str = "sanitized") -> dict[str, int]:
    """Run every op of ``graph`` through its C kernel on each sample (every tensor's value,
    e.g. from TFLM or the reference) and count mismatches with the sample's outputs."""
    calls = lower(graph)
    jobs, expected = [], []
    for s, values in enumerate(samples):
        batch = graph_jobs(graph, calls, values, f"{label}#{s}")
        jobs += batch
        expected += [{name: values[name] for name in job.outputs} for job in batch]
    return mismatches(jobs, harness.run(jobs, flavor), expected)


def reference_samples(graph: Graph, inputs_list: list[list[np.ndarray]]):
    return [run(graph, inputs, keep_all=True) for inputs in inputs_list]
