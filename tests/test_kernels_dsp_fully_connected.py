"""The Cortex-M DSP FULLY_CONNECTED (firmware/kernels/cortex_m/fully_connected.c) on the host,
bit for bit.

Built with ``-DTINYML_ACLE_EMULATION`` under AddressSanitizer and UndefinedBehaviorSanitizer,
with the scratch ``lower(graph, <cortex-m4>)`` declares (none: the kernel reads the int8
input directly, so ASan sees any read past the input row or the filter). The oracle is the reference interpreter on hand-built layers with random
geometry (depths of every residue mod 8, so the two-group loop, the single group and the
scalar tail all run; output counts of every residue mod 4; batches), per-channel and
per-tensor weights with nonzero zero points (the filter-offset term), requantization shifts
off the short path, and on the ad01 and kws MLPerf Tiny layers.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from support.c_harness import (KERNELS, WARNINGS, bad_counts, graph_jobs, mismatches,
                               reference_samples)
from support.dsp_harness import DSP, M4, DspHarness, dull_layers, mlperf_compiled, output_scale
from support.graph_builder import ACTIVATIONS, Builder, quantization_of
from tinyml.codegen.lowering import lower
from tinyml.ir import Quantization, Tensor
from tinyml.ir import ops as irops
from tinyml.targets import load_target

FC = "tinyml_fully_connected_s8"

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")


@pytest.fixture(scope="module")
def harness():
    with tempfile.TemporaryDirectory(prefix="tinyml-dsp-fc-") as tmp:
        yield DspHarness(Path(tmp), ("fully_connected.c",))


def run_cases(harness, graphs_and_feeds, samples: int = 2, flavor: str = "sanitized"):
    jobs, expected = [], []
    for graph, feeds in graphs_and_feeds:
        rng = np.random.default_rng(len(jobs) + 13)
        inputs = [feeds] + [[rng.integers(-128, 128, f.shape).astype(np.int8) for f in feeds]
                            for _ in range(samples - 1)]
        calls = [c for c in lower(graph, M4) if c.function == FC]
        assert calls, graph.name
        for call in calls:
            assert call.args[-1] == "scratch"
            assert call.scratch_bytes == 0
        for s, values in enumerate(reference_samples(graph, inputs)):
            batch = graph_jobs(graph, calls, values, f"{graph.name}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    results = harness.run(jobs, flavor)
    return mismatches(jobs, results, expected), jobs, results


def _fc_graph(i: int, rng: np.random.Generator, depth: int, units: int, batches: int,
              per_channel: bool, weight_zero_point: int = 0):
    b = Builder(f"dsp_fc{i}", 8000 + i)
    x = b.input((batches, depth))
    w = b.int8_const((units, depth), 0 if per_channel else None, weight_zero_point,
                     scale=b.scale(-3, -1))
    sx, _ = quantization_of(b, x)
    sw = b.graph.tensors[w].quant.scale
    inputs = [x, w]
    if rng.random() < 0.8:
        inputs.append(b.bias(units, float(np.float32(sx * float(sw[0])))))
    typical = np.sqrt(depth) * 80 * 73
    scale = float(np.float32(sx * float(sw[0]) * typical / 64 * 10 ** rng.uniform(-.5, .5)))
    attrs = irops.FullyConnectedAttrs(ACTIVATIONS[i % 4], False)
    return b.finish(b.op("FULLY_CONNECTED", inputs, attrs, scale))


def test_random_fully_connected_match_reference(harness):
    rng = np.random.default_rng(2027)
    cases = []
    depths = [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 20, 31, 64, 100, 129, 640]
    for i in range(40):
        depth = depths[i] if i < len(depths) else int(rng.integers(1, 300))
        units = int(rng.integers(1, 14)) if i % 5 else int(rng.integers(1, 5))
        per_channel = bool(i % 3)
        zero_point = 0 if per_channel else int(rng.choice([0, 0, 5, -3, 17]))
        cases.append(_fc_graph(i, rng, depth, units, int(rng.choice([1, 1, 2, 3])),
                               per_channel, zero_point))
    counts, jobs, results = run_cases(harness, cases)
    params = [job.call.params for job in jobs]
    assert {p["input_depth"] % 8 for p in params} == set(range(8))
    assert {p["output_depth"] % 4 for p in params} == set(range(4))
    assert any(p["filter_offset"] != 0 for p in params)
    assert any(p["batches"] > 1 for p in params)
    assert bad_counts(counts) == {}
    dull = dull_layers(jobs, results)
    # (A few layers are dull by construction: RELU6 with an output zero point near 127.)
    assert len(dull) <= len(cases) * 3 // 20, dull


def _head_conv_graph(i: int, channels: int, units: int, per_channel: bool):
    """A 1x1 CONV_2D on one pixel (a classifier head after global pooling)."""
    b = Builder(f"dsp_head_conv{i}", 8500 + i)
    x = b.input((1, 1, 1, channels))
    w = b.int8_const((units, 1, 1, channels), 0 if per_channel else None, scale=b.scale(-3, -1))
    sx, _ = quantization_of(b, x)
    bias = b.bias(units, sx if per_channel else sx * b.graph.tensors[w].scale())
    attrs = irops.Conv2DAttrs((1, 1), (1, 1), (0, 0, 0, 0), ACTIVATIONS[i % 4])
    return b.finish(b.op("CONV_2D", [x, w, bias], attrs, output_scale(b, x, w, channels)))


def test_one_pixel_pointwise_convolution_runs_as_fully_connected(harness):
    """Lowering hands a 1x1 CONV_2D of one pixel to the fully connected kernel (per-channel
    multipliers, no filter offset): bit for bit the convolution's reference."""
    cases = [_head_conv_graph(i, c, u, pc) for i, (c, u, pc) in enumerate(
        [(1024, 10, True), (37, 13, True), (288, 5, False), (9, 3, True)])]
    counts, jobs, _ = run_cases(harness, cases)
    assert len(jobs) == 2 * len(cases)
    assert all(job.call.op.kind == "CONV_2D" for job in jobs)
    assert bad_counts(counts) == {}


def test_requantization_shifts_outside_the_short_path(harness):
    """Per-channel shifts from +6 to -40 in one layer: the long form, the short one with the
    zero point folded in, multiplier 0."""
    shifts = [6, 1, 0, -1, -2, -3, -9, -17, -23, -24, -27, -30, -31, -33, -40]
    cases = []
    for i, depth in enumerate((9, 24, 37)):
        b = Builder(f"dsp_fc_requant{i}", 9000 + i)
        x = b.input((1, depth), scale=0.02)
        out_scale = 0.05
        scales = [float(np.float32(0.75 * 2.0 ** s * out_scale / 0.02)) for s in shifts]
        data = b.rng.integers(-127, 128, (len(shifts), depth)).astype(np.int8)
        b.graph.add_tensor(Tensor("w_requant", data.shape, "int8",
                                  Quantization(scales, [0] * len(shifts), 0), data))
        bias = b.bias(len(shifts), 0.02, spread=300)
        attrs = irops.FullyConnectedAttrs(ACTIVATIONS[i % 4], False)
        cases.append(b.finish(b.op("FULLY_CONNECTED", [x, "w_requant", bias], attrs,
                                   out_scale)))
    counts, jobs, _ = run_cases(harness, cases, samples=3)
    seen = set(int(s) for job in jobs for s in job.call.params["shift"].values)
    assert {6, 1, 0, -1, -2, -23, -24, -31} <= seen
    assert bad_counts(counts) == {}


@pytest.mark.parametrize("name", ["ad01_int8", "kws_ref_model"])
def test_mlperf_fully_connected_layers_match_reference(harness, name):
    graph, feeds = mlperf_compiled(name, 7)
    counts, jobs, _ = run_cases(harness, [(graph, feeds)], samples=2, flavor="optimized")
    assert len(jobs) >= 2 * sum(op.kind == "FULLY_CONNECTED" for op in graph.ops)
    assert bad_counts(counts) == {}


def test_no_target_declares_fully_connected_scratch():
    """The DSP kernel reads the int8 input row directly: an int16 copy would cost 2 bytes
    of RAM per input value, more than the rest of ad01's arena."""
    graph, _ = _fc_graph(0, np.random.default_rng(1), 24, 6, 1, True)
    for name in ("host", "cortex-m3", "cortex-m0plus", "cortex-m4", "cortex-m7",
                 "cortex-m33"):
        (call,) = [c for c in lower(graph, load_target(name)) if c.function == FC]
        assert call.scratch_bytes == 0, name


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("target_name", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_fully_connected_builds_for_dsp_cores_with_simd(tmp_path, target_name):
    target = load_target(target_name)
    arch = [f for f in target.cflags if f.startswith("-m")]
    obj = tmp_path / "fully_connected.o"
    cmd = ["arm-none-eabi-gcc", *WARNINGS, "-Wconversion", "-O2", *arch, f"-I{KERNELS}",
           f"-I{KERNELS / 'portable'}", f"-I{DSP}", "-c", str(DSP / "fully_connected.c"), "-o",
           str(obj)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True,
                                 text=True).stdout
    assert "smlad" in disassembly and "sxtb16" in disassembly


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("case", ["dense_bias", "dense_per_tensor", "dense_3d_keep_num_dims",
                                  "dense_relu_clamp"])
def test_zoo_dense_layers_bit_exact_in_qemu(case, tmp_path):
    """The target build runs an assembly loop where the host build runs its C twin: the op
    zoo's dense layers on emulated cortex-m4 against tflite-micro."""
    from tinyml.sim import qemu
    from tinyml.verify import verify
    from support import int8_op_models as zoo
    if not qemu.available():
        pytest.skip("no qemu-system-arm")
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(zoo.model_bytes(zoo.CASES[case]))
    report = verify(path, "cortex-m4", samples=4, profile=False).to_json()
    assert report["samples"] == 6
    assert report["mismatched_outputs"] == 0, report
