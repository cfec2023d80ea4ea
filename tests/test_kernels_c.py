"""The portable C kernels (firmware/kernels) against the numpy reference and TFLM, bit for bit.

Each test lowers int8 graphs (``tinyml.codegen.lowering.lower``) and runs every KernelCall's
C kernel on the exact input values the oracle saw, then counts the output elements that
differ (the target is zero everywhere). Oracles: TFLM's own tensors for converted models (the
MLPerf Tiny int8 models, the op zoo of test_reference_int8_ops.py and the nonlinear cases of
test_reference_int8_nonlinear.py, whose builders are imported), the reference interpreter for
hand-built IR graphs with random quantization (which reach parameters no converter emits).

The harness generates one C driver per test: for each call it fills the params struct with
designated initializers straight from ``KernelCall.params`` (checked field by field against
the struct in tinyml_kernels.h, so a missing or stray parameter fails), copies every constant
array, input, output and scratch area into a malloc'd buffer of exactly its size (garbage
filled, so AddressSanitizer sees any overrun and no kernel can rely on zeroed memory), calls
the kernel and writes the outputs back. Kernels that declare ``in_place`` are run a second
time with the output in the input's buffer. Every driver is built with
``-std=c99 -pedantic -Wall -Wextra -Werror`` and run under AddressSanitizer and
UndefinedBehaviorSanitizer (which abort on the first report); the MLPerf models also run an
-O2 build.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from conftest import INT8_MODELS, REPO, mlperf_model
from oracles import tflm_interpreter
from tinyml.codegen.lowering import ConstArray, KernelCall, lower
from tinyml.errors import TinymlError, UnsupportedOpError
from tinyml.frontends.tflite import load_tflite, load_tflite_bytes
from tinyml.ir import Graph, Op, Quantization, Tensor
from tinyml.ir import ops as irops
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

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")


# --------------------------------------------------------------------------------------------
# The params structs of tinyml_kernels.h


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


# --------------------------------------------------------------------------------------------
# The harness


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


_DRIVER = r"""/* Generated by tests/test_kernels_c.py */
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


@pytest.fixture(scope="module")
def harness():
    with tempfile.TemporaryDirectory(prefix="tinyml-kernels-c-") as tmp:
        yield Harness(Path(tmp))


# --------------------------------------------------------------------------------------------
# Comparing a lowered graph with an oracle


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


def _bad(counts: dict[str, int]) -> dict[str, int]:
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


# --------------------------------------------------------------------------------------------
# The fixed-point primitives (fixedpoint.h) on full-range int32 values

_PRIMITIVES_DRIVER = r"""/* Generated by tests/test_kernels_c.py */
#include <stdio.h>
#include <stdlib.h>
#include "fixedpoint.h"

static int32_t apply(int32_t op, int32_t a, int32_t b, int32_t c, int32_t *extra)
{
    switch (op) {
    case 0: return tinyml_srdhm(a, b);
    case 1: return tinyml_rdbpot(a, b);
    case 2: return tinyml_mbqm(a, b, c);
    case 3: return tinyml_srmbpot(a, b);
    case 4: return tinyml_rounding_half_sum(a, b);
    case 5: return tinyml_exp_on_negative_values(a, b);
    case 6: return tinyml_one_over_one_plus_x_for_x_in_0_1(a);
    case 7: return tinyml_logistic_fixed(a, b);
    case 8: return tinyml_get_reciprocal(a, b, extra);
    case 9: return tinyml_srdhm_i16(a, b);
    case 10: return tinyml_sdhm_i16(a, b);
    case 11: return tinyml_rdbpot_i16(a, b);
    case 12: return tinyml_saturating_left_shift_i16(a, b);
    case 13: return tinyml_clz_u32((uint32_t)a);
    default: exit(4);
    }
}

int main(void)
{
    int32_t record[4], out[2];
    while (fread(record, sizeof record, 1, stdin) == 1) {
        out[1] = 0;
        out[0] = apply(record[0], record[1], record[2], record[3], &out[1]);
        fwrite(out, sizeof out, 1, stdout);
    }
    return 0;
}
"""


def _primitive_cases(rng: np.random.Generator):
    """(op code, a, b, c, expected value, expected extra) arrays per primitive."""
    from tinyml.reference import fixedpoint as fp
    from tinyml.reference import gemmlowp as gl
    edges = np.array([0, 1, -1, 2, -2, 2**30, -2**30, 2**31 - 1, -2**31, 2**31 - 2, -2**31 + 1,
                      12345, -12345], np.int64)
    full = np.concatenate([edges, rng.integers(-2**31, 2**31, 4000)])
    small = np.concatenate([edges[:5], rng.integers(-2**20, 2**20, 2000)])
    i16 = np.concatenate([[0, 1, -1, 2**15 - 1, -2**15], rng.integers(-2**15, 2**15, 3000)])
    cases = {}
    a, b = np.meshgrid(full[:60], full[:60])
    a, b = np.concatenate([a.ravel(), full]), np.concatenate([b.ravel(), full[::-1]])
    cases["srdhm"] = (0, a, b, 0 * a, fp.saturating_rounding_doubling_high_mul(a, b))
    e = rng.integers(0, 41, full.size)
    cases["rdbpot"] = (1, full, e, 0 * e, fp.rounding_divide_by_pot(full, e))
    m = rng.integers(2**30, 2**31, full.size)
    shift = rng.integers(-40, 41, full.size)
    x = np.where(np.arange(full.size) % 2, full, small[:full.size] if small.size >= full.size
                 else np.resize(small, full.size))
    cases["mbqm"] = (2, x, m, shift, fp.multiply_by_quantized_multiplier(x, m, shift))
    exps = rng.integers(-31, 32, full.size)
    cases["srmbpot"] = (3, full, exps, 0 * exps,
                        np.array([gl.saturating_rounding_multiply_by_pot(v, int(k))
                                  for v, k in zip(full, exps)]).reshape(-1))
    cases["rounding_half_sum"] = (4, full, full[::-1], 0 * full,
                                  gl.rounding_half_sum(full, full[::-1]))
    negative = -np.abs(np.concatenate([edges[:9], rng.integers(0, 2**31, 3000)]))
    negative = np.maximum(negative, -2**31 + 1)
    for bits in (0, 4, 5, 12):
        cases[f"exp{bits}"] = (5, negative, np.full_like(negative, bits), 0 * negative,
                               gl.exp_on_negative_values(negative, bits))
    unit = np.abs(full) % 2**31
    cases["one_over_one_plus_x"] = (6, unit, 0 * unit, 0 * unit,
                                    gl.one_over_one_plus_x_for_x_in_0_1(unit))
    for bits in (0, 4, 5):
        inner = np.maximum(full, -2**31 + 1)
        cases[f"logistic{bits}"] = (7, inner, np.full_like(inner, bits), 0 * inner,
                                    gl.logistic(inner, bits))
    positive = np.concatenate([[1, 2, 2**19, 2**31 - 1], rng.integers(1, 2**31, 2000)])
    reciprocal, bits_over_unit = gl.get_reciprocal(positive, 12)
    cases["reciprocal"] = (8, positive, np.full_like(positive, 12), 0 * positive, reciprocal,
                           np.broadcast_to(bits_over_unit, positive.shape))
    a16, b16 = i16, np.roll(i16, 7)
    cases["srdhm_i16"] = (9, a16, b16, 0 * a16, gl.saturating_rounding_doubling_high_mul_int16(
        a16, b16))
    cases["sdhm_i16"] = (10, a16, b16, 0 * a16, gl.saturating_doubling_high_mul_int16(a16, b16))
    e16 = rng.integers(0, 40, i16.size)
    cases["rdbpot_i16"] = (11, i16, e16, 0 * e16,
                           np.array([gl.rounding_divide_by_pot_int16(v, int(k))
                                     for v, k in zip(i16, e16)]).reshape(-1))
    amounts = rng.integers(0, 20, i16.size)
    cases["saturating_left_shift_i16"] = (12, i16, amounts, 0 * amounts,
                                          np.array([gl.saturating_left_shift_int16(v, int(k))
                                                    for v, k in zip(i16, amounts)]).reshape(-1))
    cases["clz"] = (13, full, 0 * full, 0 * full, gl.count_leading_zeros_u32(full))
    return cases


def test_fixedpoint_primitives_match_reference(harness):
    """Every primitive of fixedpoint.h against its Python twin, on edge values (INT32_MIN,
    INT32_MAX, 0, +-1, 2^30) and thousands of random full-range operands and exponents,
    under ASan/UBSan (so no shift or overflow is undefined)."""
    source = harness.workdir / "primitives.c"
    source.write_text(_PRIMITIVES_DRIVER)
    binary = harness.workdir / "primitives"
    harness._cc("sanitized", [str(source), "-o", str(binary)])
    cases = _primitive_cases(np.random.default_rng(31))
    records, spans = [], {}
    for name, (code, a, b, c, *_rest) in cases.items():
        block = np.stack([np.full(a.shape, code), a, b, c], axis=1).astype(np.int64)
        spans[name] = (sum(len(r) for r in records), len(block))
        records.append(block)
    data = np.concatenate(records).astype(np.int32).tobytes()
    proc = subprocess.run([str(binary)], input=data, capture_output=True,
                          env=dict(os.environ, **SANITIZER_ENV))
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = np.frombuffer(proc.stdout, np.int32).reshape(-1, 2).astype(np.int64)
    bad = {}
    for name, (code, a, b, c, want, *extra) in cases.items():
        start, count = spans[name]
        got = out[start:start + count]
        differ = int(np.count_nonzero(got[:, 0] != np.asarray(want, np.int64).reshape(-1)))
        if extra:
            differ += int(np.count_nonzero(got[:, 1] != np.asarray(extra[0]).reshape(-1)))
        if differ:
            bad[name] = differ
    assert bad == {}


# --------------------------------------------------------------------------------------------
# MLPerf Tiny int8 models: every op on TFLM's own tensors


def _tflm_values(graph: Graph, interpreter, inputs: list[np.ndarray],
                 reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's value as TFLM computed it (graph tensor i is TFLM tensor i), the
    reference's where TFLM keeps none; asserts that the two agree (so "TFLM-equal")."""
    for i, x in enumerate(inputs):
        interpreter.set_input(x, i)
    interpreter.invoke()
    values = {}
    for i, name in enumerate(graph.tensors):
        value = interpreter.GetTensor(i, 0)["tensor_data"]
        ref = reference.get(name)
        if value is None:
            if ref is not None:
                values[name] = ref
            continue
        value = np.asarray(value).reshape(graph.tensors[name].shape)
        if ref is not None:
            assert np.array_equal(np.asarray(ref).view(np.uint8), value.view(np.uint8)), name
        values[name] = value
    return values


@pytest.mark.parametrize("name", INT8_MODELS)
def test_mlperf_model_ops_match_tflm(harness, name):
    path = mlperf_model(name)
    graph = load_tflite(path)
    interpreter = tflm_interpreter(path)
    shape = graph.tensors[graph.inputs[0]].shape
    rng = np.random.default_rng(2024)
    inputs = [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(3)]
    inputs += [np.full(shape, -128, np.int8), np.full(shape, 127, np.int8)]
    samples = [_tflm_values(graph, interpreter, [x], run(graph, [x], keep_all=True))
               for x in inputs]
    calls = lower(graph)
    assert len(calls) == len(graph.ops)
    for flavor in FLAVORS:
        counts = check_graph(harness, graph, samples, name, flavor)
        assert len(counts) >= len(graph.ops) * len(samples)
        in_place = [k for k in counts if k.endswith(":in-place")]
        print(f"\n{name} [{flavor}]: {len(counts)} kernel runs ({len(in_place)} in place), "
              f"{sum(counts.values())} differing elements")
        assert _bad(counts) == {}
        if any(op.kind == "DEPTHWISE_CONV_2D" for op in graph.ops):
            assert any("depthwise" in k for k in in_place)


@pytest.mark.parametrize("name", ["kws_ref_model", "pretrainedResnet_quant"])
def test_mlperf_model_after_passes(harness, name):
    """The graph the compiler really lowers: after tinyml.passes (ResNet's residual ADDs fused
    into CONV_2D_ADD, RESHAPE aliases). Every kernel equals the reference on the rewritten
    graph, whose output equals TFLM's on the original model."""
    passes = pytest.importorskip("tinyml.passes")
    path = mlperf_model(name)
    graph = passes.run_passes(load_tflite(path))
    interpreter = tflm_interpreter(path)
    shape = graph.tensors[graph.inputs[0]].shape
    rng = np.random.default_rng(11)
    inputs = [[rng.integers(-128, 128, shape).astype(np.int8)] for _ in range(2)]
    samples = reference_samples(graph, inputs)
    for (x,), values in zip(inputs, samples):
        interpreter.set_input(x, 0)
        interpreter.invoke()
        assert np.array_equal(values[graph.outputs[0]], interpreter.get_output(0))
    counts = check_graph(harness, graph, samples, name)
    if name == "pretrainedResnet_quant":
        assert sum(1 for k in counts if "tinyml_conv2d_add_s8" in k) >= 2 * 2 * 3
    assert _bad(counts) == {}


# --------------------------------------------------------------------------------------------
# The op zoo of test_reference_int8_ops.py: converted models, every op on TFLM's tensors

import test_reference_int8_ops as zoo  # noqa: E402  (the model builders and flatbuffer edits)
import test_reference_int8_nonlinear as nonlinear  # noqa: E402


@pytest.mark.parametrize("case", list(zoo.CASES))
def test_zoo_case_ops_match_tflm(harness, case):
    data = zoo._model_bytes(zoo.CASES[case])
    graph = load_tflite_bytes(data, name=case)
    interpreter = tflm_interpreter(data)
    samples = []
    for seed in range(4):
        inputs = zoo._random_inputs(graph, np.random.default_rng(seed))
        samples.append(_tflm_values(graph, interpreter, inputs, run(graph, inputs,
                                                                   keep_all=True)))
    if case == "float_io_quantize_dequantize":
        # QUANTIZE at its rounding boundaries: x / scale a half integer and both neighbours.
        quantize = next(op for op in graph.ops if op.kind == "QUANTIZE")
        scale = np.float32(graph.tensors[quantize.outputs[0]].scale())
        halves = (np.arange(-40, 40, dtype=np.float32) + np.float32(0.5)) * scale
        ties = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)),
                               np.nextafter(halves, np.float32(-np.inf))])
        shape = graph.tensors[graph.inputs[0]].shape
        for row in np.resize(ties, (-(-ties.size // shape[-1]), shape[-1])):
            x = row.astype(np.float32).reshape(shape)
            samples.append(_tflm_values(graph, interpreter, [x], run(graph, [x],
                                                                     keep_all=True)))
    counts = check_graph(harness, graph, samples, case)
    assert len(counts) >= len(graph.ops) * len(samples)
    assert _bad(counts) == {}


# --------------------------------------------------------------------------------------------
# The nonlinear cases of test_reference_int8_nonlinear.py


def _oracle_samples(oracle, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    samples = []
    for x in xs:
        reference = run(oracle.graph, [x], keep_all=True)
        samples.append(_tflm_values(oracle.graph, oracle.tflm, [x], reference))
    return samples


@pytest.mark.parametrize("kind", list(nonlinear.ELEMENTWISE))
def test_elementwise_activations_all_codes_match_tflm(harness, kind):
    """LOGISTIC, HARD_SWISH, RELU, RELU6 on all 256 codes: the converter's quantization for
    six calibration ranges, then 12 random input/output quantizations (edited models)."""
    build = nonlinear.ELEMENTWISE[kind]
    jobs, expected = [], []
    oracles = [nonlinear._oracle(build, nonlinear.ALL_CODES.shape, c)
               for c in nonlinear.CALIBRATIONS]
    data = nonlinear._model(build, nonlinear.ALL_CODES.shape)
    rng = np.random.default_rng(77)
    for _ in range(12):
        edits = nonlinear._random_quantization(kind, rng)
        oracles.append(nonlinear.Oracle(nonlinear._set_quantization(data, edits), kind))
    for n, oracle in enumerate(oracles):
        (values,) = _oracle_samples(oracle, [nonlinear.ALL_CODES])
        batch = graph_jobs(oracle.graph, lower(oracle.graph), values, f"{kind}{n}")
        jobs += batch
        expected += [{name: values[name] for name in job.outputs} for job in batch]
    counts = mismatches(jobs, harness.run(jobs), expected)
    assert len(counts) == 2 * len(oracles)  # out of place and in place
    assert _bad(counts) == {}


def test_softmax_matches_tflm(harness):
    """Seeded rows (saturated and spread out) on 1-D..4-D inputs over four calibrations, with
    edited betas, random input quantizations, and behind a dense layer."""
    oracles = []
    for shape in nonlinear.SOFTMAX_SHAPES.values():
        for calibration in ("tiny", "unit", "wide", "huge"):
            oracles.append((nonlinear._oracle(nonlinear.softmax, shape, calibration), shape))
    for beta in (0.05, 2.5, 1e4):
        oracles.append((nonlinear._oracle(nonlinear.softmax, (1, 3, 4, 16), "unit", beta=beta),
                        (1, 3, 4, 16)))
    data = nonlinear._model(nonlinear.softmax, (1, 3, 4, 16))
    rng = np.random.default_rng(99)
    for _ in range(8):
        edits = {"input": (10 ** rng.uniform(-4, 1), int(rng.integers(-128, 128)))}
        edited = nonlinear._set_softmax_beta(nonlinear._set_quantization(data, edits),
                                             float(10 ** rng.uniform(-1.5, 1.5)))
        oracles.append((nonlinear.Oracle(edited, "softmax"), (1, 3, 4, 16)))
    oracles.append((nonlinear._oracle(nonlinear.dense_softmax, (1, 32), "unit"), (1, 32)))
    jobs, expected = [], []
    for n, (oracle, shape) in enumerate(oracles):
        xs = [nonlinear._softmax_rows(rng, shape) for _ in range(3)]
        calls = lower(oracle.graph)
        for s, values in enumerate(_oracle_samples(oracle, xs)):
            batch = graph_jobs(oracle.graph, calls, values, f"softmax{n}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    counts = mismatches(jobs, harness.run(jobs), expected)
    assert sum(1 for k in counts if "tinyml_softmax_s8" in k) >= 2 * 3 * len(oracles)
    assert _bad(counts) == {}


# --------------------------------------------------------------------------------------------
# Hand-built IR graphs with random quantization: the reference interpreter is the oracle


class Builder:
    """A one-op (or few-op) int8 graph with random quantization, constants and inputs."""

    def __init__(self, name: str, seed: int):
        self.graph = Graph(name)
        self.rng = np.random.default_rng(seed)
        self.feeds: dict[str, np.ndarray] = {}
        self._n = 0

    def _name(self, base: str) -> str:
        self._n += 1
        return f"{base}{self._n}"

    def scale(self, low: float = -3.0, high: float = 0.0) -> float:
        return float(np.float32(10 ** self.rng.uniform(low, high)))

    def input(self, shape, scale: float | None = None, zero_point: int | None = None,
              dtype: str = "int8") -> str:
        name = self._name("x")
        if dtype == "float32":
            self.graph.add_tensor(Tensor(name, shape, "float32"))
            self.feeds[name] = self.rng.normal(0, 3, shape).astype(np.float32)
        else:
            zp = int(self.rng.integers(-128, 128)) if zero_point is None else zero_point
            self.graph.add_tensor(Tensor(name, shape, "int8", Quantization(
                [self.scale() if scale is None else scale], [zp])))
            self.feeds[name] = self.rng.integers(-128, 128, shape).astype(np.int8)
        self.graph.inputs.append(name)
        return name

    def int8_const(self, shape, axis: int | None = None, zero_point: int = 0,
                   scale: float | None = None) -> str:
        name = self._name("w")
        channels = shape[axis] if axis is not None else 1
        scales = [self.scale(-3, -1) if scale is None else scale for _ in range(channels)]
        data = self.rng.integers(-127, 128, shape).astype(np.int8)
        self.graph.add_tensor(Tensor(name, shape, "int8",
                                     Quantization(scales, [zero_point] * channels, axis),
                                     data))
        return name

    def activation_like(self, shape, like: str) -> str:
        """A constant int8 tensor quantized like tensor ``like`` (e.g. an ADD operand)."""
        name = self._name("c")
        q = self.graph.tensors[like].quant
        self.graph.add_tensor(Tensor(name, shape, "int8", Quantization(q.scale, q.zero_point),
                                     self.rng.integers(-128, 128, shape).astype(np.int8)))
        return name

    def bias(self, n: int, scale: float, spread: int = 4000) -> str:
        name = self._name("b")
        data = self.rng.integers(-spread, spread + 1, n).astype(np.int32)
        self.graph.add_tensor(Tensor(name, (n,), "int32", Quantization([scale], [0]), data))
        return name

    def op(self, kind: str, inputs: list[str], attrs=None, scale: float | None = None,
           zero_point: int | None = None, dtype: str = "int8") -> str:
        name = self._name("y")
        quant = None
        if dtype == "int8":
            zp = int(self.rng.integers(-128, 128)) if zero_point is None else zero_point
            quant = Quantization([self.scale() if scale is None else scale], [zp])
        self.graph.add_tensor(Tensor(name, (), dtype, quant))
        self.graph.add_op(Op(kind, name, inputs, [name], attrs))
        return name

    def finish(self, *outputs: str) -> tuple[Graph, list[np.ndarray]]:
        self.graph.outputs = list(outputs)
        self.graph.finalize()
        return self.graph, [self.feeds[n] for n in self.graph.inputs]


def _quant(b: Builder, name: str) -> tuple[float, int]:
    t = b.graph.tensors[name]
    return t.scale(), t.zero_point()


def _acc_scale(b: Builder, x: str, w: str, taps: int) -> float:
    """An output scale that maps a typical accumulator to about +-64 codes (with a random
    factor of up to 3x either way), so outputs are spread out rather than saturated."""
    sx = b.graph.tensors[x].scale()
    sw = float(np.mean(b.graph.tensors[w].quant.scale))
    return float(np.float32(sx * sw * 75 * math.sqrt(taps) / 64 * 10 ** b.rng.uniform(-.5, .5)))


ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def conv_cases():
    specs = [  # input shape, cout, kernel, stride, dilation, padding, per-channel, groups
        ((1, 7, 8, 5), 6, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), True, 1),
        ((1, 9, 10, 3), 4, (5, 3), (2, 2), (1, 1), (2, 1, 0, 2), True, 1),
        ((2, 8, 8, 4), 5, (3, 3), (1, 2), (2, 1), (2, 2, 1, 1), False, 1),
        ((1, 7, 7, 6), 6, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), True, 3),
        ((1, 6, 6, 8), 4, (2, 2), (2, 2), (1, 1), (0, 0, 0, 0), True, 2),
        ((1, 6, 5, 16), 12, (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), True, 1),
        ((2, 9, 7, 8), 7, (1, 1), (2, 3), (1, 1), (0, 0, 0, 0), False, 1),
        ((1, 5, 5, 4), 3, (1, 1), (1, 1), (1, 1), (1, 0, 0, 1), True, 1),  # padded 1x1
        ((1, 4, 4, 96), 8, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), True, 1),  # long sums
    ]
    for i, (shape, cout, kernel, stride, dilation, padding, per_channel, groups) in \
            enumerate(specs):
        b = Builder(f"conv{i}", 100 + i)
        x = b.input(shape)
        cin = shape[3] // groups
        w = b.int8_const((cout, *kernel, cin), 0 if per_channel else None)
        sx, _ = _quant(b, x)
        bias = b.bias(cout, sx * b.graph.tensors[w].scale() if not per_channel else sx)
        attrs = irops.Conv2DAttrs(stride, dilation, padding, ACTIVATIONS[i % 4])
        y = b.op("CONV_2D", [x, w, bias], attrs, _acc_scale(b, x, w, kernel[0] * kernel[1] * cin))
        yield b.finish(y)


def depthwise_cases():
    specs = [  # input shape, multiplier, kernel, stride, dilation, padding
        ((1, 9, 8, 6), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
        ((1, 10, 9, 5), 1, (3, 3), (2, 2), (1, 1), (0, 1, 0, 1)),
        ((2, 7, 7, 3), 2, (3, 3), (1, 2), (1, 1), (1, 1, 1, 1)),
        ((1, 9, 9, 4), 1, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
        ((1, 9, 9, 4), 1, (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),
        ((1, 6, 7, 3), 3, (2, 4), (2, 1), (1, 1), (0, 1, 2, 1)),
        ((1, 4, 4, 2), 1, (3, 3), (1, 1), (1, 1), (3, 3, 3, 3)),  # windows in the padding
        ((2, 8, 6, 7), 1, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # in place, stride 2
    ]
    for i, (shape, m, kernel, stride, dilation, padding) in enumerate(specs):
        b = Builder(f"depthwise{i}", 200 + i)
        x = b.input(shape)
        w = b.int8_const((1, *kernel, shape[3] * m), 3 if i % 3 else None)
        sx, _ = _quant(b, x)
        bias = b.bias(shape[3] * m, sx)
        attrs = irops.DepthwiseConv2DAttrs(stride, dilation, padding, ACTIVATIONS[i % 4], m)
        y = b.op("DEPTHWISE_CONV_2D", [x, w, bias], attrs,
                 _acc_scale(b, x, w, kernel[0] * kernel[1]))
        yield b.finish(y)


def fully_connected_cases():
    specs = [  # input shape, units, per-channel, weight zero point, bias, keep_num_dims
        ((1, 24), 10, True, 0, True, False),
        ((1, 24), 10, False, 0, True, False),
        ((3, 17), 6, False, 5, True, False),
        ((1, 5, 12), 7, True, 0, False, True),
        ((2, 3, 8), 4, False, -3, False, False),
        ((1, 640), 16, True, 0, True, False),
    ]
    for i, (shape, units, per_channel, wzp, has_bias, keep) in enumerate(specs):
        b = Builder(f"fc{i}", 300 + i)
        x = b.input(shape)
        w = b.int8_const((units, shape[-1]), 0 if per_channel else None, wzp)
        sx, _ = _quant(b, x)
        inputs = [x, w]
        if has_bias:
            sw = b.graph.tensors[w].quant.scale
            inputs.append(b.bias(units, float(np.float32(sx * float(sw[0])))))
        attrs = irops.FullyConnectedAttrs(ACTIVATIONS[i % 4], keep)
        yield b.finish(b.op("FULLY_CONNECTED", inputs, attrs, _acc_scale(b, x, w, shape[-1])))


def elementwise_cases():
    shapes = [
        ((1, 4, 5, 3), (1, 4, 5, 3)),
        ((1, 4, 5, 3), (1, 1, 1, 3)),
        ((1, 1, 1, 3), (1, 4, 5, 3)),
        ((1, 4, 5, 3), (1, 4, 1, 1)),
        ((4, 1, 3), (1, 5, 1)),
        ((2, 3), (3,)),
        ((1,), (2, 3, 4)),
        ((1, 4, 5, 3), (4, 5, 3)),
        ((2, 1, 3, 1, 4), (2, 1, 3, 1, 4)),
        ((2, 3, 1, 5, 2), (1, 1, 4, 1, 1)),
    ]
    for kind in ("ADD", "MUL"):
        for i, (sa, sb) in enumerate(shapes):
            b = Builder(f"{kind.lower()}{i}", 400 + i + (50 if kind == "MUL" else 0))
            x1 = b.input(sa)
            x2 = b.input(sb)
            s1, s2 = _quant(b, x1)[0], _quant(b, x2)[0]
            if kind == "ADD":
                scale = max(s1, s2) * 3 * 10 ** b.rng.uniform(-.4, .4)
            else:
                scale = s1 * s2 * 128 * 10 ** b.rng.uniform(-.5, .5)
            attrs = irops.ElementwiseAttrs(ACTIVATIONS[i % 4])
            yield b.finish(b.op(kind, [x1, x2], attrs, scale))
        # The same tensor twice, and a constant operand.
        b = Builder(f"{kind.lower()}_same", 480)
        x = b.input((1, 3, 4, 5))
        s = _quant(b, x)[0]
        yield b.finish(b.op(kind, [x, x], irops.ElementwiseAttrs(), s * (2 if kind == "ADD"
                                                                        else s * 100)))
        b = Builder(f"{kind.lower()}_const", 481)
        x = b.input((1, 3, 4, 5))
        c = b.activation_like((5,), x)
        s = _quant(b, x)[0]
        yield b.finish(b.op(kind, [x, c], irops.ElementwiseAttrs("RELU"),
                            s * (2 if kind == "ADD" else s * 100)))


def pool_cases():
    specs = [  # input shape, filter, stride, padding
        ((1, 7, 8, 4), (3, 3), (2, 2), (1, 1, 1, 1)),
        ((1, 8, 8, 3), (2, 2), (2, 2), (0, 0, 0, 0)),
        ((2, 5, 6, 5), (5, 6), (1, 1), (0, 0, 0, 0)),
        ((1, 9, 7, 2), (3, 2), (1, 2), (1, 1, 0, 1)),
        ((1, 25, 5, 8), (25, 5), (25, 5), (0, 0, 0, 0)),
    ]
    for kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        for i, (shape, filt, stride, padding) in enumerate(specs):
            b = Builder(f"{kind.lower()}{i}", 500 + i)
            x = b.input(shape)
            scale, zp = _quant(b, x)
            attrs = irops.Pool2DAttrs(filt, stride, padding, ACTIVATIONS[i % 4])
            yield b.finish(b.op(kind, [x], attrs, scale, zp))


def mean_cases():
    specs = [  # input shape, axes, keep_dims
        ((1, 5, 5, 4), (1, 2), True),
        ((1, 5, 6, 4), (1, 2), False),
        ((1, 5, 6, 4), (2,), True),
        ((3, 4, 5), (0, 2), False),
        ((2, 3, 4, 5), (1, 3), True),
        ((2, 3, 4, 5), (0, 1, 2, 3), False),
        ((4, 6), (-1,), False),
        ((1, 32, 32, 3), (1, 2), True),
        ((2, 3, 2, 3, 2), (1, 2), False),
    ]
    for i, (shape, axes, keep) in enumerate(specs):
        b = Builder(f"mean{i}", 600 + i)
        x = b.input(shape)
        scale, zp = _quant(b, x)
        out_scale = scale if i % 3 == 0 else scale * 10 ** b.rng.uniform(-1, 1)
        yield b.finish(b.op("MEAN", [x], irops.ReduceAttrs(axes, keep), out_scale,
                            zp if i % 3 == 0 else None))


def activation_cases():
    """Standalone activations with random quantization, including CLIP (ONNX only)."""
    codes = (1, 16, 16, 1)
    for i, (kind, attrs) in enumerate([
            ("RELU", None), ("RELU6", None), ("LOGISTIC", None), ("HARD_SWISH", None),
            ("CLIP", irops.ClipAttrs(-1.5, 2.5)), ("CLIP", irops.ClipAttrs(0.0, math.inf)),
            ("CLIP", irops.ClipAttrs(-math.inf, 0.75))]):
        for seed in range(3):
            b = Builder(f"{kind.lower()}{i}_{seed}", 700 + 10 * i + seed)
            x = b.input(codes, scale=b.scale(-3, 0.5))
            b.feeds[x] = np.arange(-128, 128, dtype=np.int8).reshape(codes)
            scale, zp = _quant(b, x)
            if kind == "LOGISTIC":
                y = b.op(kind, [x], attrs, 1 / 256, -128)
            elif kind == "HARD_SWISH":
                y = b.op(kind, [x], attrs, scale * 10 ** b.rng.uniform(-2, 1))
            else:
                y = b.op(kind, [x], attrs, scale * 10 ** b.rng.uniform(-1, 1))
            yield b.finish(y)


def softmax_cases():
    for i, (shape, beta) in enumerate([((1, 10), 1.0), ((2, 3, 7), 0.3), ((5,), 4.0),
                                       ((1, 2, 2, 33), 1.0), ((3, 1), 1.0)]):
        b = Builder(f"softmax{i}", 800 + i)
        x = b.input(shape, scale=b.scale(-2, 0))
        yield b.finish(b.op("SOFTMAX", [x], irops.SoftmaxAttrs(beta), 1 / 256, -128))


def quantize_cases():
    b = Builder("quantize_float", 900)
    x = b.input((1, 3, 50), dtype="float32")
    scale = b.scale(-2, 0)
    halves = ((np.arange(-40, 35, dtype=np.float32) + np.float32(0.5)) *
              np.float32(scale)).astype(np.float32)
    b.feeds[x] = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf))]
                                ).reshape(1, 3, 50).astype(np.float32)
    b.feeds[x][0, 0, :4] = [1e6, -1e6, 0.0, -0.0]
    yield b.finish(b.op("QUANTIZE", [x], irops.CastAttrs("int8"), scale))
    for seed in range(4):
        b = Builder(f"requantize{seed}", 910 + seed)
        x = b.input((2, 7, 9))
        yield b.finish(b.op("QUANTIZE", [x], irops.CastAttrs("int8"),
                            _quant(b, x)[0] * 10 ** b.rng.uniform(-1.5, 1.5)))
    for seed in range(2):
        b = Builder(f"dequantize{seed}", 920 + seed)
        x = b.input((3, 40))
        yield b.finish(b.op("DEQUANTIZE", [x], None, dtype="float32"))
    # A float-edged graph: float -> QUANTIZE -> FULLY_CONNECTED -> DEQUANTIZE -> RESHAPE.
    b = Builder("float_edges", 930)
    x = b.input((1, 12), dtype="float32")
    q = b.op("QUANTIZE", [x], irops.CastAttrs("int8"), 0.05)
    w = b.int8_const((6, 12), 0)
    y = b.op("FULLY_CONNECTED", [q, w], irops.FullyConnectedAttrs(), _acc_scale(b, q, w, 12))
    f = b.op("DEQUANTIZE", [y], None, dtype="float32")
    yield b.finish(b.op("RESHAPE", [f], irops.ReshapeAttrs((2, 3)), dtype="float32"))


def data_movement_cases():
    pads = [((1, 5, 6, 3), ((0, 0), (1, 2), (0, 1), (0, 0)), None),
            ((1, 4, 4, 3), ((0, 0), (2, 2), (2, 2), (0, 0)), 7),
            ((3, 5), ((1, 0), (2, 3)), None),
            ((2, 3, 4, 5), ((1, 1), (0, 1), (2, 0), (1, 2)), -100),
            ((2, 2, 3, 2, 2), ((0, 0), (1, 0), (0, 0), (0, 0), (0, 0)), None)]
    for i, (shape, pad, value) in enumerate(pads):
        b = Builder(f"pad{i}", 1000 + i)
        x = b.input(shape)
        scale, zp = _quant(b, x)
        yield b.finish(b.op("PAD", [x], irops.PadAttrs(pad, value), scale, zp))
    b = Builder("pad_float", 1009)
    x = b.input((2, 3, 4), dtype="float32")
    yield b.finish(b.op("PAD", [x], irops.PadAttrs(((0, 1), (1, 1), (2, 0)), -2.5),
                        dtype="float32"))
    perms = [((3, 5), (1, 0)), ((2, 3, 4), (2, 0, 1)), ((1, 4, 5, 3), (0, 3, 1, 2)),
             ((2, 4, 5, 3), (0, 2, 1, 3)), ((2, 3, 4, 5), (3, 2, 1, 0)),
             ((2, 3, 4, 5, 6), (0, 3, 4, 1, 2)), ((1, 2, 1, 3, 1, 4), (5, 0, 3, 2, 1, 4))]
    for i, (shape, perm) in enumerate(perms):
        b = Builder(f"transpose{i}", 1100 + i)
        x = b.input(shape)
        scale, zp = _quant(b, x)
        yield b.finish(b.op("TRANSPOSE", [x], irops.TransposeAttrs(perm), scale, zp))
    b = Builder("transpose_float", 1109)
    x = b.input((2, 3, 4), dtype="float32")
    yield b.finish(b.op("TRANSPOSE", [x], irops.TransposeAttrs((1, 2, 0)), dtype="float32"))
    concats = [([(1, 4, 4, 3), (1, 4, 4, 2), (1, 4, 4, 1)], -1),
               ([(1, 2, 4, 3), (1, 3, 4, 3)], 1), ([(2, 5), (1, 5), (3, 5)], 0),
               ([(2, 3, 1, 2), (2, 3, 4, 2)], 2)]
    for i, (shapes, axis) in enumerate(concats):
        b = Builder(f"concat{i}", 1200 + i)
        first = b.input(shapes[0])
        scale, zp = _quant(b, first)
        names = [first] + [b.input(s, scale, zp) for s in shapes[1:]]
        yield b.finish(b.op("CONCATENATION", names, irops.ConcatenationAttrs(axis),
                            scale, zp))
    b = Builder("concat_float", 1209)
    names = [b.input((2, 3), dtype="float32"), b.input((2, 2), dtype="float32")]
    yield b.finish(b.op("CONCATENATION", names, irops.ConcatenationAttrs(1), dtype="float32"))
    b = Builder("reshape", 1300)
    x = b.input((1, 4, 6))
    scale, zp = _quant(b, x)
    yield b.finish(b.op("RESHAPE", [x], irops.ReshapeAttrs((6, -1)), scale, zp))


FAMILIES = {
    "conv": conv_cases, "depthwise": depthwise_cases, "fully_connected": fully_connected_cases,
    "elementwise": elementwise_cases, "pool": pool_cases, "mean": mean_cases,
    "activations": activation_cases, "softmax": softmax_cases, "quantize": quantize_cases,
    "data_movement": data_movement_cases,
}


def _family_jobs(family: str, samples_per_graph: int = 2):
    jobs, expected, graphs = [], [], []
    for graph, feeds in FAMILIES[family]():
        graphs.append(graph)
        rng = np.random.default_rng(len(graphs))
        inputs = [feeds]
        for _ in range(samples_per_graph - 1):
            inputs.append([rng.integers(-128, 128, f.shape).astype(np.int8)
                           if f.dtype == np.int8 else rng.normal(0, 3, f.shape).astype(f.dtype)
                           for f in feeds])
        calls = lower(graph)
        for s, values in enumerate(reference_samples(graph, inputs)):
            batch = graph_jobs(graph, calls, values, f"{graph.name}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    return jobs, expected, graphs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_random_quantization_graphs_match_reference(harness, family):
    jobs, expected, graphs = _family_jobs(family)
    results = harness.run(jobs)
    counts = mismatches(jobs, results, expected)
    assert _bad(counts) == {}
    # The cases exercise the kernels: outputs are not saturated to a single value.
    flat = {}
    for job, got in zip(jobs, results):
        for name, value in got.items():
            flat.setdefault(job.call.op.name, []).append(value.ravel())
    dull = [name for name, values in flat.items() if np.unique(np.concatenate(values)).size < 3]
    assert dull == []


def test_specializations_and_memory_contract():
    """Lowering picks the specialized kernels and declares scratch and in-place as documented."""
    functions = {}
    for family in ("conv", "depthwise", "elementwise"):
        for graph, _ in FAMILIES[family]():
            for call in lower(graph):
                functions.setdefault(call.function, []).append(call)
    assert {"tinyml_conv2d_s8", "tinyml_conv2d_1x1_s8", "tinyml_depthwise_conv2d_s8",
            "tinyml_depthwise_conv2d_3x3_s8", "tinyml_add_s8", "tinyml_add_broadcast_s8",
            "tinyml_mul_s8", "tinyml_mul_broadcast_s8"} <= set(functions)
    for call in functions["tinyml_conv2d_1x1_s8"]:
        assert call.params["filter_h"] == call.params["filter_w"] == 1
        assert call.params["pad_top"] == call.params["pad_left"] == 0
    for name in ("tinyml_depthwise_conv2d_s8", "tinyml_depthwise_conv2d_3x3_s8"):
        for call in functions[name]:
            p = call.params
            assert call.args[-1] == "scratch" and call.scratch_bytes == p["plane_h"] * p["plane_w"]
            assert p["plane_h"] <= p["input_h"] + p["pad_top"] + p["filter_h"] * p["dilation_h"]
            x_hw = p["input_h"] * p["input_w"]
            expect = p["depth_multiplier"] == 1 and p["output_h"] * p["output_w"] <= x_hw
            assert (call.in_place == (0, 0)) is expect
    assert any(c.in_place == (0, 0) for c in functions["tinyml_depthwise_conv2d_3x3_s8"])
    assert any(c.in_place is None for c in functions["tinyml_depthwise_conv2d_s8"])


# --------------------------------------------------------------------------------------------
# CONV_2D_ADD (fused by tinyml.passes): the fused kernel equals CONV_2D then ADD


@pytest.mark.skipif("CONV_2D_ADD" not in irops.OP_SPECS, reason="no CONV_2D_ADD op")
def test_conv2d_add_matches_reference(harness):
    jobs, expected = [], []
    for i, (shape, kernel, padding, skip_first) in enumerate([
            ((1, 6, 6, 4), (3, 3), (1, 1, 1, 1), False), ((1, 5, 7, 3), (1, 1), (0, 0, 0, 0),
                                                          True),
            ((2, 6, 5, 8), (3, 3), (1, 1, 1, 1), True)]):
        b = Builder(f"conv_add{i}", 1400 + i)
        x = b.input(shape)
        cout = shape[3]
        w = b.int8_const((cout, *kernel, shape[3]), 0)
        bias = b.bias(cout, _quant(b, x)[0])
        skip = b.input(shape)
        conv_scale = _acc_scale(b, x, w, kernel[0] * kernel[1] * shape[3])
        attrs = irops.Conv2DAddAttrs((1, 1), (1, 1), padding, ACTIVATIONS[i],
                                     conv_scale=conv_scale,
                                     conv_zero_point=int(b.rng.integers(-20, 20)),
                                     add_activation=ACTIVATIONS[(i + 1) % 4],
                                     skip_first=skip_first)
        y = b.op("CONV_2D_ADD", [x, w, skip, bias], attrs,
                 max(conv_scale, _quant(b, skip)[0]) * 2)
        graph, feeds = b.finish(y)
        calls = lower(graph)
        assert [c.function for c in calls] == ["tinyml_conv2d_add_s8"]
        assert calls[0].in_place == (2, 0)
        for s, values in enumerate(reference_samples(graph, [feeds])):
            batch = graph_jobs(graph, calls, values, f"{graph.name}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    counts = mismatches(jobs, harness.run(jobs), expected)
    assert len(counts) == 6 and _bad(counts) == {}


# --------------------------------------------------------------------------------------------
# What lowering refuses


def test_float_graph_is_rejected_naming_op_and_layer():
    from tflite_zoo import convert
    graph = load_tflite(convert(zoo.conv_1x1, [(1, 6, 6, 5)], int8=False))
    with pytest.raises(UnsupportedOpError,
                       match=r"unsupported op CONV_2D in layer '.+'.*float32.*int8"):
        lower(graph)


def test_int16_and_unknown_ops_are_rejected():
    b = Builder("int16", 1)
    x = b.input((1, 10))
    y = b.op("LOGISTIC", [x], None, 1 / 256, -128)
    graph, _ = b.finish(y)
    for name in (x, y):
        graph.tensors[name].dtype = "int16"
    with pytest.raises(UnsupportedOpError, match=r"LOGISTIC in layer 'y2'.*int16"):
        lower(graph)

    b = Builder("batch_norm", 2)
    x = b.input((1, 4))
    params = [b.activation_like((4,), x) for _ in range(4)]
    graph, _ = b.finish(b.op("BATCH_NORM", [x] + params, irops.BatchNormAttrs(axis=-1)))
    with pytest.raises(UnsupportedOpError, match=r"BATCH_NORM in layer 'y\d+': no C kernel"):
        lower(graph)


def test_unsupported_quantization_is_rejected():
    b = Builder("concat", 3)
    a, c = b.input((1, 3)), b.input((1, 3))
    graph, _ = b.finish(b.op("CONCATENATION", [a, c], irops.ConcatenationAttrs(-1)))
    with pytest.raises(UnsupportedOpError, match="CONCATENATION.*quantized differently"):
        lower(graph)

    b = Builder("softmax", 4)
    x = b.input((1, 10))
    graph, _ = b.finish(b.op("SOFTMAX", [x], irops.SoftmaxAttrs(), 0.1, 0))
    with pytest.raises(TinymlError, match=r"\(SOFTMAX\).*scale 1/256"):
        lower(graph)

    b = Builder("add", 6)
    x1, x2 = b.input((2, 3, 1, 5, 2)), b.input((1, 3, 4, 1, 2))
    graph, _ = b.finish(b.op("ADD", [x1, x2], irops.ElementwiseAttrs()))
    with pytest.raises(UnsupportedOpError, match=r"ADD.*broadcast needs 5 dimensions"):
        lower(graph)

    b = Builder("transpose", 5)
    x = b.input((2, 3, 2, 3, 2))
    graph, _ = b.finish(b.op("TRANSPOSE", [x], irops.TransposeAttrs((4, 2, 0, 3, 1))))
    with pytest.raises(UnsupportedOpError, match=r"TRANSPOSE.*5 dimensions"):
        lower(graph)


# --------------------------------------------------------------------------------------------
# Portability: the kernels also build for Cortex-M without warnings


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("cpu", [["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
                                 ["-mcpu=cortex-m0"]])
def test_kernels_build_for_cortex_m(tmp_path, cpu):
    for source in sorted((KERNELS / "portable").glob("*.c")):
        cmd = ["arm-none-eabi-gcc", *WARNINGS, "-Wconversion", "-Os", "-mthumb", *cpu,
               f"-I{KERNELS}", "-c", str(source), "-o", str(tmp_path / (source.stem + ".o"))]
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
