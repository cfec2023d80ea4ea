"""The Cortex-M DSP depthwise convolutions (firmware/kernels/cortex_m/depthwise_conv.c) on the
host, bit for bit.

Built with ``-DTINYML_ACLE_EMULATION`` (tests/support/acle_emulation.h, checked against the
real instructions in test_kernels_dsp_conv.py) under AddressSanitizer and
UndefinedBehaviorSanitizer, with the scratch size ``lower(graph, <cortex-m4>)`` declares, so
ASan sees any overrun of the int16 plane. The oracle is the reference interpreter, on
hand-built graphs with random geometry and quantization (the 3x3 kernel's paths: horizontal
stride 1 and 2, the transposed plane when the output has more rows than columns, odd output
widths, strides it hands to the generic path; the generic kernel's filter sizes, dilations and
depth multipliers; in place) and on the MLPerf Tiny depthwise layers.
"""

from __future__ import annotations

import shutil
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

DW_FUNCTIONS = {"tinyml_depthwise_conv2d_s8", "tinyml_depthwise_conv2d_3x3_s8"}

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")


@pytest.fixture(scope="module")
def harness():
    with tempfile.TemporaryDirectory(prefix="tinyml-dsp-dw-") as tmp:
        yield DspHarness(Path(tmp), ("depthwise_conv.c",))


def _even(n: int) -> int:
    return n + (n & 1)


def dsp_calls(graph):
    """The depthwise calls of graph lowered for cortex-m4, their scratch checked against the
    kernel's layout: the int16 plane in either orientation, the packed filter, alignment."""
    calls = [c for c in lower(graph, M4) if c.function in DW_FUNCTIONS]
    for call in calls:
        p = call.params
        plane = max(p["plane_h"] * _even(p["plane_w"]), p["plane_w"] * _even(p["plane_h"]))
        wide = p["filter_w"] in (5, 7) and p["dilation_w"] == 1 and p["stride_w"] in (1, 2)
        plane_path = 2 * plane + (8 * p["filter_h"] * (p["filter_w"] // 2 + 1) if wide else
                                  4 * p["filter_h"] * ((p["filter_w"] + 1) // 2))
        taps, channels = p["filter_h"] * p["filter_w"], p["input_c"]
        pixel_path = 0  # the pixel-by-pixel path's tables and ring (DW_PIXEL_*)
        per_pass = p["pixel_channels"]
        if p["depth_multiplier"] == 1 and taps <= 25 and channels >= 12 and (
                channels <= 32 or p["output_h"] * p["output_w"] <= 100):
            assert per_pass == (channels if channels <= 32 else 16)
            span = (p["filter_h"] - 1) * p["dilation_h"] + 1
            pixel_path = 8 * taps * (per_pass // 4) + 16 * per_pass + \
                span * p["plane_w"] * per_pass
        else:
            assert per_pass == 0
        assert call.scratch_bytes == max(plane_path, pixel_path) + 3
    return calls


def pixel_path(p: dict) -> bool:
    """Whether the kernel computes this call pixel by pixel (its dw_pixel_prepare, but for the
    requantization shifts)."""
    return p["pixel_channels"] > 0 and p["output_h"] * p["output_w"] <= 100


def run_cases(harness, graphs_and_feeds, samples: int = 2, flavor: str = "sanitized"):
    jobs, expected = [], []
    for graph, feeds in graphs_and_feeds:
        rng = np.random.default_rng(len(jobs) + 11)
        inputs = [feeds] + [[rng.integers(-128, 128, f.shape).astype(np.int8) for f in feeds]
                            for _ in range(samples - 1)]
        calls = dsp_calls(graph)
        assert calls, graph.name
        for s, values in enumerate(reference_samples(graph, inputs)):
            batch = graph_jobs(graph, calls, values, f"{graph.name}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    results = harness.run(jobs, flavor)
    return mismatches(jobs, results, expected), jobs, results


def _depthwise_graph(i: int, rng: np.random.Generator, fixed=None):
    """One DEPTHWISE_CONV_2D with random geometry (at least one output pixel); `fixed`
    (input shape, multiplier, kernel, stride, dilation, padding) pins the first cases."""
    while True:
        shape = (int(rng.choice([1, 1, 2])), int(rng.integers(1, 12)), int(rng.integers(1, 12)),
                 int(rng.choice([1, 2, 3, 4, 5, 7, 8, 12, 13, 16, 17, 20, 24])))
        m = int(rng.choice([1, 1, 1, 2, 3]))
        kernel = (3, 3) if rng.random() < 0.5 else (int(rng.integers(1, 6)),
                                                     int(rng.integers(1, 6)))
        stride = (int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 1, 2, 3])))
        dilation = (1, 1) if rng.random() < 0.7 else (int(rng.integers(1, 3)),
                                                      int(rng.integers(1, 3)))
        padding = tuple(int(p) for p in rng.integers(0, 3, 4))
        if fixed is not None:
            shape, m, kernel, stride, dilation, padding = fixed
        span_h = (kernel[0] - 1) * dilation[0] + 1
        span_w = (kernel[1] - 1) * dilation[1] + 1
        if shape[1] + padding[0] + padding[1] >= span_h and \
                shape[2] + padding[2] + padding[3] >= span_w:
            break
    b = Builder(f"dsp_dw{i}", 6000 + i)
    x = b.input(shape)
    channels = shape[3] * m
    # Per-channel (one scale repeated, so that the output scale suits every channel) or
    # per-tensor weights.
    w = b.int8_const((1, *kernel, channels), 3 if i % 4 else None, scale=b.scale(-3, -1))
    sx, _ = quantization_of(b, x)
    bias = b.bias(channels, sx)
    attrs = irops.DepthwiseConv2DAttrs(stride, dilation, padding, ACTIVATIONS[i % 3], m)
    y = b.op("DEPTHWISE_CONV_2D", [x, w, bias], attrs,
             output_scale(b, x, w, kernel[0] * kernel[1]))
    return b.finish(y)


def test_random_depthwise_convolutions_match_reference(harness):
    fixed = [  # input shape, multiplier, kernel, stride, dilation, padding
        ((1, 9, 8, 6), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),   # stride 1, even width
        ((1, 9, 7, 5), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),   # odd output width
        ((1, 8, 11, 4), 1, (3, 3), (2, 2), (1, 1), (0, 1, 0, 1)),  # stride 2, odd width
        ((1, 25, 5, 8), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # transposed (kws-like)
        ((1, 13, 4, 3), 2, (3, 3), (2, 1), (1, 1), (1, 1, 1, 1)),  # transposed, stride 2
        ((1, 9, 9, 3), 1, (3, 3), (3, 1), (1, 1), (1, 1, 1, 1)),   # only stride_w usable
        ((1, 9, 9, 3), 1, (3, 3), (3, 3), (1, 1), (1, 1, 1, 1)),   # 3x3 on the generic path
        ((1, 9, 9, 4), 1, (3, 3), (1, 1), (2, 2), (2, 2, 2, 2)),   # dilated: generic
        ((1, 9, 9, 4), 1, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
        ((1, 6, 7, 3), 3, (2, 4), (2, 1), (1, 1), (0, 1, 2, 1)),
        ((1, 4, 4, 14), 1, (3, 3), (1, 1), (1, 1), (3, 3, 3, 3)),  # windows in the padding
        ((2, 8, 6, 7), 1, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),   # batches, in place
        ((2, 8, 6, 13), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # pixel path, in place
        ((1, 7, 7, 16), 1, (3, 3), (2, 2), (1, 1), (0, 1, 0, 1)),  # pixel path, stride 2
        ((1, 6, 5, 12), 1, (2, 3), (1, 1), (1, 2), (1, 1, 2, 2)),  # pixel path, any filter
        ((1, 1, 1, 16), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # one pixel
        ((1, 7, 9, 5), 1, (1, 3), (1, 2), (2, 1), (0, 0, 1, 1)),
        # Pixel path in passes of at most 32 channels, and dilated vertically (1-D over time).
        ((1, 25, 5, 45), 1, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)),  # two passes, 3x3
        ((1, 40, 1, 60), 1, (5, 1), (1, 1), (4, 1), (8, 8, 0, 0)),  # 1-D, dilation 4
        ((1, 20, 1, 37), 1, (3, 1), (2, 1), (1, 1), (1, 1, 0, 0)),  # 1-D, stride 2, odd
        ((1, 9, 8, 20), 1, (3, 3), (1, 1), (2, 1), (2, 2, 1, 1)),   # 3x3, dilation_h 2
        # Filter rows 5 and 7 wide (the plane path: more than 100 outputs or few channels):
        # strides 1 and 2, odd and even output widths, odd and even plane widths.
        ((1, 14, 13, 5), 1, (5, 5), (1, 1), (1, 1), (2, 2, 2, 2)),
        ((1, 14, 14, 7), 1, (5, 5), (2, 2), (1, 1), (1, 2, 1, 2)),
        ((1, 12, 16, 3), 2, (7, 7), (1, 1), (1, 1), (3, 3, 3, 3)),
        ((1, 16, 15, 6), 1, (7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),
        ((1, 21, 20, 4), 1, (3, 5), (1, 2), (2, 1), (2, 2, 2, 3)),
        ((1, 6, 7, 40), 1, (7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),   # 49 taps, many channels
        # More than 100 output pixels: the plane path (the cases above with fewer pixels, one
        # channel multiplier and at most 32 channels go pixel by pixel).
        ((1, 12, 13, 5), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),  # odd width
        ((1, 24, 23, 4), 1, (3, 3), (2, 2), (1, 1), (0, 1, 0, 1)),  # stride 2
        ((1, 30, 6, 3), 1, (3, 3), (2, 1), (1, 1), (1, 1, 1, 1)),   # transposed, stride 2
        ((1, 11, 12, 40), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1))]  # 40 channels
    rng = np.random.default_rng(2026)
    cases = [_depthwise_graph(i, rng, f) for i, f in enumerate(fixed)]
    cases += [_depthwise_graph(i, rng) for i in range(len(fixed), 48)]
    counts, jobs, results = run_cases(harness, cases)
    params = [job.call.params for job in jobs]
    functions = {job.call.function for job in jobs}
    assert functions == DW_FUNCTIONS
    three = [p for p, j in zip(params, jobs)
             if j.call.function.endswith("3x3_s8") and not pixel_path(p)]
    assert any(p["output_h"] > p["output_w"] for p in three)   # transposed planes
    assert any(p["output_w"] % 2 for p in three) and {1, 2} <= {p["stride_w"] for p in three}
    assert any(p["depth_multiplier"] > 1 for p in params)
    assert any(p["dilation_w"] > 1 for p in params)
    assert any(job.in_place for job in jobs)
    # Both strategies run, in place too (the pixel path reads the rows it needs from its ring
    # before the outputs overwrite them).
    assert {pixel_path(p) for p in params} == {True, False}
    assert any(job.in_place and pixel_path(job.call.params) and job.call.params["pad_top"] > 0
               for job in jobs)
    assert any(pixel_path(p) and p["input_c"] > 32 for p in params)
    # The wide rows (5 and 7 taps) on the plane path, both strides.
    assert {(p["filter_w"], p["stride_w"]) for p in params if not pixel_path(p) and
            p["filter_w"] in (5, 7) and p["dilation_w"] == 1} >= {(5, 1), (5, 2), (7, 1), (7, 2)}
    assert any(pixel_path(p) and p["dilation_h"] > 1 for p in params)
    assert bad_counts(counts) == {}
    # Real outputs, not a saturated constant.
    dull = dull_layers(jobs, results)
    assert len(dull) <= len(cases) // 10, dull


def _requant_graph(i: int, shifts: list[int], kernel=(3, 3), stride=(1, 1)):
    """A depthwise layer whose channel c has requantization shift about shifts[c]."""
    b = Builder(f"dsp_dw_requant{i}", 7000 + i)
    channels = len(shifts)
    x = b.input((1, 7, 6, channels), scale=0.02)
    out_scale = 0.05
    scales = [float(np.float32(0.75 * 2.0 ** s * out_scale / 0.02)) for s in shifts]
    name = "w_requant"
    data = b.rng.integers(-127, 128, (1, *kernel, channels)).astype(np.int8)
    b.graph.add_tensor(Tensor(name, data.shape, "int8",
                              Quantization(scales, [0] * channels, 3), data))
    bias = b.bias(channels, 0.02, spread=300)
    attrs = irops.DepthwiseConv2DAttrs(stride, (1, 1), (1, 1, 1, 1), ACTIVATIONS[i % 4], 1)
    y = b.op("DEPTHWISE_CONV_2D", [x, name, bias], attrs, out_scale)
    return b.finish(y)


def test_requantization_shifts_outside_the_short_path(harness):
    """Per-channel shifts from +6 to -40 in one layer (left shifts, right shifts of 0, 1 and
    beyond 23 take the long form; multiplier 0 below 2^-31) on the 3x3 paths (stride 1 and
    2) and the generic one."""
    shifts = [6, 1, 0, -1, -2, -3, -9, -17, -23, -24, -27, -30, -31, -33, -40]
    cases = [_requant_graph(0, shifts), _requant_graph(1, shifts, stride=(2, 2)),
             _requant_graph(2, shifts, kernel=(2, 3)), _requant_graph(3, shifts)]
    counts, jobs, _ = run_cases(harness, cases, samples=3)
    seen = set(int(s) for job in jobs for s in job.call.params["shift"].values)
    assert {6, 1, 0, -1, -2, -23, -24, -31} <= seen
    assert bad_counts(counts) == {}


@pytest.mark.parametrize("name", ["kws_ref_model", "vww_96_int8"])
def test_mlperf_depthwise_layers_match_reference(harness, name):
    """Every depthwise layer of the compiled graph on two inputs, optimized build."""
    graph, feeds = mlperf_compiled(name, 6)
    counts, jobs, _ = run_cases(harness, [(graph, feeds)], samples=2, flavor="optimized")
    assert len(jobs) >= 2 * sum(op.kind == "DEPTHWISE_CONV_2D" for op in graph.ops)
    assert bad_counts(counts) == {}


def test_scratch_only_grows_for_dsp_targets():
    """Host and portable targets keep the portable int8 plane; the DSP targets declare the
    int16 one (and nothing else about the call changes)."""
    from tinyml.targets import load_target
    graph, _ = _depthwise_graph(0, np.random.default_rng(3),
                                ((1, 9, 8, 6), 1, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)))
    portable = [c for c in lower(graph) if c.function in DW_FUNCTIONS]
    for name in ("host", "cortex-m3", "cortex-m0plus"):
        calls = [c for c in lower(graph, load_target(name)) if c.function in DW_FUNCTIONS]
        assert [c.scratch_bytes for c in calls] == [c.params["plane_h"] * c.params["plane_w"]
                                                    for c in portable]
    for name in ("cortex-m4", "cortex-m7", "cortex-m33"):
        calls = [c for c in lower(graph, load_target(name)) if c.function in DW_FUNCTIONS]
        assert [c.args for c in calls] == [c.args for c in portable]
        assert all(c.scratch_bytes > 2 * p.params["plane_h"] * p.params["plane_w"]
                   for c, p in zip(calls, portable))


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("target_name", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_depthwise_builds_for_dsp_cores_with_simd(tmp_path, target_name):
    """Strict warnings plus -Wconversion; the object really uses SMLAD."""
    import subprocess
    from tinyml.targets import load_target
    target = load_target(target_name)
    arch = [f for f in target.cflags if f.startswith("-m")]
    obj = tmp_path / "depthwise_conv.o"
    cmd = ["arm-none-eabi-gcc", *WARNINGS, "-Wconversion", "-O2", *arch, f"-I{KERNELS}",
           f"-I{KERNELS / 'portable'}", f"-I{DSP}", "-c", str(DSP / "depthwise_conv.c"), "-o",
           str(obj)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True,
                                 text=True).stdout
    assert "smlad" in disassembly and "smlal" in disassembly


def test_negative_padding_reads_inside_a_larger_input(harness):
    """Patch-based inference (tinyml/codegen/patch_codegen.py) gives a kernel its stage's whole
    input with a negative padding: the windows start inside it. A layer on X with no padding
    at the top and left equals the same call on a larger input with X in its bottom-right
    corner, input_h/input_w enlarged and pad_top/pad_left lowered by the extra rows and
    columns (the bottom and right padding stays outside)."""
    import dataclasses
    fixed = [  # input shape, multiplier, kernel, stride, dilation, padding (t, b, l, r)
        ((1, 9, 8, 6), 1, (3, 3), (1, 1), (1, 1), (0, 1, 0, 1)),
        ((1, 9, 11, 4), 1, (3, 3), (2, 2), (1, 1), (0, 1, 0, 0)),
        ((1, 25, 5, 8), 1, (3, 3), (1, 1), (1, 1), (0, 1, 0, 1)),   # transposed
        ((1, 8, 8, 3), 2, (2, 3), (1, 2), (1, 1), (0, 1, 0, 2)),    # generic
        ((1, 7, 6, 16), 1, (3, 3), (1, 1), (1, 1), (0, 1, 0, 1)),   # pixel by pixel
        ((1, 6, 7, 12), 1, (2, 2), (1, 1), (1, 1), (0, 1, 0, 1))]   # pixel, any filter
    rng = np.random.default_rng(12)
    jobs, expected = [], []
    for i, spec in enumerate(fixed):
        graph, feeds = _depthwise_graph(100 + i, rng, spec)
        (call,) = dsp_calls(graph)
        values = reference_samples(graph, [feeds])[0]
        name = call.op.inputs[0]
        x = values[name]
        dy, dx = 3, 2
        larger = rng.integers(-128, 128, (x.shape[0], x.shape[1] + dy, x.shape[2] + dx,
                                          x.shape[3])).astype(np.int8)
        larger[:, dy:, dx:, :] = x
        params = dict(call.params, input_h=larger.shape[1], input_w=larger.shape[2],
                      pad_top=call.params["pad_top"] - dy,
                      pad_left=call.params["pad_left"] - dx)
        moved = dataclasses.replace(call, params=params, in_place=None)
        (job,) = graph_jobs(graph, [moved], {**values, name: larger}, f"negative{i}")
        jobs.append(job)
        expected.append({out: values[out] for out in job.outputs})
    counts = mismatches(jobs, harness.run(jobs, "sanitized"), expected)
    assert len(counts) == len(fixed) and bad_counts(counts) == {}
