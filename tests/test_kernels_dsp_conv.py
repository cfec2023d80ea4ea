"""The Cortex-M DSP convolutions (firmware/kernels/cortex_m/conv.c) on the host, bit for bit.

The DSP kernels use ACLE intrinsics (SMLAD, SXTB16, SMLAL ...). Compiled on the host with
``-DTINYML_ACLE_EMULATION``, they take those from ``tests/support/acle_emulation.h``, a C
transcription of each instruction's pseudocode, and run under AddressSanitizer and
UndefinedBehaviorSanitizer like the portable kernels (``tests/support/dsp_harness.py``):
the kernel library is the portable one with the cortex_m ``conv.c`` in place of
the portable ``conv.c``, and calls come from ``lower(graph, <cortex-m4>)``, so scratch has
the size the DSP kernels declare (and no byte more: ASan sees any overrun).

Oracles: the reference interpreter on hand-built graphs with random geometry (1 to 17 input
channels, every residue of the window size mod 4, strides, dilations, padding, groups,
pixel counts that do not fill the kernels' blocks of four) and random quantization, including
channels whose requantization shifts leave the kernels' short path; TFLM-equal reference
tensors for the MLPerf Tiny models (after tinyml.passes: ResNet's CONV_2D_ADD). The emulation
header itself is checked against the instructions as QEMU executes them, and the kernels'
requantization helpers against fixedpoint.h on full-range operands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from support.c_harness import (KERNELS, SANITIZER_ENV, WARNINGS, bad_counts, graph_jobs,
                               mismatches, reference_samples)
from support.dsp_harness import DSP, M4, DspHarness, dull_layers, mlperf_compiled, output_scale
from support.graph_builder import ACTIVATIONS, Builder, quantization_of
from tinyml.codegen.lowering import lower, uses_dsp_kernels
from tinyml.ir import Quantization, Tensor
from tinyml.ir import ops as irops
from tinyml.targets import available_targets, load_target

#: The cortex_m files these tests own (other DSP kernels have their own tests).
DSP_FILES = ("conv.c",)
CONV_FUNCTIONS = {"tinyml_conv2d_s8", "tinyml_conv2d_1x1_s8", "tinyml_conv2d_add_s8"}

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")


@pytest.fixture(scope="module")
def harness():
    with tempfile.TemporaryDirectory(prefix="tinyml-dsp-conv-") as tmp:
        yield DspHarness(Path(tmp), DSP_FILES)


def dsp_calls(graph, small_blocks: bool = False):
    calls = lower(graph, M4, small_blocks=small_blocks)
    for call in calls:
        if call.function in CONV_FUNCTIONS:
            _, kh, kw, cin = graph.tensors[call.op.inputs[1]].shape
            k = kh * kw * cin
            pixels = 8 if k <= 256 else 4  # conv.c's blocks
            if call.params.get("block") in (4, 7):  # lowering's conv_block_cap
                pixels = call.params["block"]
            tables = 2048 if call.function == "tinyml_conv2d_add_s8" else 0
            assert call.args[-1] == "scratch"
            assert call.scratch_bytes == 2 * pixels * k + 3 + tables
    return calls


def run_cases(harness, graphs_and_feeds, samples: int = 2, flavor: str = "sanitized",
              small_blocks: bool = False):
    """Every conv call of each graph on `samples` inputs (the first: the builder's feeds),
    against the reference. Returns the mismatch counts and the outputs."""
    jobs, expected = [], []
    for graph, feeds in graphs_and_feeds:
        rng = np.random.default_rng(len(jobs) + 7)
        inputs = [feeds] + [[rng.integers(-128, 128, f.shape).astype(np.int8) for f in feeds]
                            for _ in range(samples - 1)]
        calls = [c for c in dsp_calls(graph, small_blocks) if c.function in CONV_FUNCTIONS]
        assert calls, graph.name
        for s, values in enumerate(reference_samples(graph, inputs)):
            batch = graph_jobs(graph, calls, values, f"{graph.name}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    results = harness.run(jobs, flavor)
    return mismatches(jobs, results, expected), jobs, results


# ---- random geometry ----------------------------------------------------------------------


def _conv_graph(i: int, rng: np.random.Generator, pointwise: bool = False, fixed=None):
    """One CONV_2D with random geometry (valid: at least one output pixel); `fixed` (input
    shape, cout, kernel, stride) pins the geometry of the first cases to cover what the
    kernels special-case."""
    while True:
        groups = int(rng.choice([1, 1, 1, 2, 3]))
        cin = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 12, 16, 17])) * groups
        cout = int(rng.integers(1, 10)) * groups
        if pointwise:
            groups, kernel, dilation, padding = 1, (1, 1), (1, 1), (0, 0, 0, 0)
            cout = int(rng.integers(1, 14))
        else:
            kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
            dilation = (int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2])))
            padding = tuple(int(p) for p in rng.integers(0, 3, 4))
        shape = (int(rng.choice([1, 1, 2])), int(rng.integers(1, 10)), int(rng.integers(1, 10)),
                 cin)
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        if fixed is not None:
            shape, cout, kernel, stride = fixed
            cin, groups, dilation = shape[3], 1, (1, 1)
            padding = (0, 0, 0, 0) if pointwise else (1, 1, 1, 1)
        span_h = (kernel[0] - 1) * dilation[0] + 1
        span_w = (kernel[1] - 1) * dilation[1] + 1
        if shape[1] + padding[0] + padding[1] >= span_h and \
                shape[2] + padding[2] + padding[3] >= span_w:
            break
    b = Builder(f"dsp_conv{i}", 3000 + i)
    # Small input scales keep the output scale well below 6 / 30, so RELU6 leaves a range.
    x = b.input(shape, scale=b.scale(-3.5, -2))
    per_channel = bool(rng.integers(0, 4))
    w = b.int8_const((cout, *kernel, cin // groups), 0 if per_channel else None)
    sx, _ = quantization_of(b, x)
    bias = b.bias(cout, sx * b.graph.tensors[w].scale() if not per_channel else sx)
    # RELU_N1_TO_1 leaves a handful of codes: the clamp paths are tested by RELU and RELU6.
    attrs = irops.Conv2DAttrs(stride, dilation, padding, ACTIVATIONS[i % 3])
    taps = kernel[0] * kernel[1] * cin // groups
    y = b.op("CONV_2D", [x, w, bias], attrs, output_scale(b, x, w, taps))
    return b.finish(y)


def test_random_convolutions_match_reference(harness):
    rng = np.random.default_rng(2025)
    fixed = [  # input shape, cout, kernel, stride: K mod 4 = 3, 2, 1; < 4 and 4k+1 pixels;
        # windows of more than 256 values (blocks of 4 pixels)
        ((1, 5, 5, 3), 5, (1, 1), (1, 1)), ((1, 2, 1, 7), 3, (3, 3), (1, 1)),
        ((1, 3, 3, 1), 4, (3, 2), (2, 1)), ((2, 7, 9, 3), 8, (3, 3), (2, 2)),
        ((1, 13, 9, 1), 16, (10, 4), (2, 2)), ((1, 5, 6, 32), 5, (3, 3), (1, 1)),
        ((1, 3, 3, 45), 3, (3, 3), (1, 1)),
        # blocks of 7 (conv_mac7): 25 pixels of a 1x1 on 8 channels, 49 of a 3x3 on 4
        ((1, 5, 5, 8), 6, (1, 1), (1, 1)), ((1, 13, 13, 4), 7, (3, 3), (2, 2))]
    cases = [_conv_graph(i, rng, pointwise=i == 0, fixed=f) for i, f in enumerate(fixed)]
    cases += [_conv_graph(i, rng, pointwise=i % 3 == 0) for i in range(len(fixed), 40)]
    counts, jobs, results = run_cases(harness, cases)
    functions = {job.call.function for job in jobs}
    assert functions == {"tinyml_conv2d_s8", "tinyml_conv2d_1x1_s8"}
    # What the cases cover: window sizes of every residue mod 4 and on both sides of the
    # kernels' block size switch (8 pixels up to 256 values, 4 above), fewer pixels than a
    # block, pixel counts that leave a short last block, groups, dilation.
    params = [job.call.params for job in jobs]
    windows = [p["filter_h"] * p["filter_w"] * p["filter_c"] for p in params]
    pixels = {p["output_h"] * p["output_w"] for p in params}
    assert {k % 4 for k in windows} == {0, 1, 2, 3}
    assert min(windows) <= 256 < max(windows)
    assert any(n < 4 for n in pixels) and any(n > 8 and n % 8 for n in pixels)
    assert {p["block"] for p in params} == {0, 7}
    assert any(p["input_c"] != p["filter_c"] for p in params)
    assert any(p["dilation_h"] > 1 or p["dilation_w"] > 1 for p in params)
    assert bad_counts(counts) == {}
    # Real outputs, not a saturated constant: as in test_kernels_c, layers take at least 3
    # values over their samples (but for a few whose windows lie mostly in the padding).
    dull = dull_layers(jobs, results)
    assert len(dull) <= len(cases) // 10, dull


def test_small_blocks_match_reference(harness):
    """``lower(small_blocks=True)`` (--optimize memory): 4-pixel blocks where the kernels
    would take 8 or 7, windows of every residue mod 4, short last blocks, groups."""
    rng = np.random.default_rng(77)
    fixed = [((1, 5, 5, 8), 6, (1, 1), (1, 1)), ((1, 13, 13, 4), 7, (3, 3), (2, 2)),
             ((1, 9, 7, 2), 5, (3, 3), (1, 1)), ((2, 6, 5, 5), 4, (1, 1), (1, 1))]
    cases = [_conv_graph(100 + i, rng, pointwise=i in (0, 3), fixed=f)
             for i, f in enumerate(fixed)]
    cases += [_conv_graph(100 + i, rng, pointwise=i % 3 == 0) for i in range(len(fixed), 16)]
    counts, jobs, _ = run_cases(harness, cases, small_blocks=True)
    blocks = {job.call.params["block"] for job in jobs}
    assert 4 in blocks and 7 not in blocks
    windows = [p["filter_h"] * p["filter_w"] * p["filter_c"]
               for p in (job.call.params for job in jobs if job.call.params["block"] == 4)]
    assert {k % 4 for k in windows} == {0, 1, 2, 3}
    assert bad_counts(counts) == {}


def _requant_graph(i: int, shifts: list[int]):
    """A 3x3 CONV_2D whose channel c has requantization shift about shifts[c]: the weight
    scales are chosen so input_scale * weight_scale / output_scale = 0.75 * 2^shift."""
    b = Builder(f"dsp_requant{i}", 4000 + i)
    cin, cout = 5, len(shifts)
    x = b.input((1, 6, 7, cin), scale=0.02)
    out_scale = 0.05
    scales = [float(np.float32(0.75 * 2.0 ** s * out_scale / 0.02)) for s in shifts]
    name = "w_requant"
    data = b.rng.integers(-127, 128, (cout, 3, 3, cin)).astype(np.int8)
    b.graph.add_tensor(Tensor(name, data.shape, "int8", Quantization(scales, [0] * cout, 0),
                              data))
    bias = b.bias(cout, 0.02, spread=300)
    attrs = irops.Conv2DAttrs((1, 1), (1, 1), (1, 1, 1, 1), ACTIVATIONS[i % 4])
    y = b.op("CONV_2D", [x, name, bias], attrs, out_scale)
    return b.finish(y)


def test_requantization_shifts_outside_the_short_path(harness):
    """Per-channel shifts from +6 to -31 in one layer: left shifts, right shifts of 0, 1 and
    24..31 (the long path), 2..23 (the short path with the zero point folded in), and
    scales below 2^-31 (multiplier 0, as TFLM's QuantizeMultiplier gives them)."""
    shifts = [6, 1, 0, -1, -2, -3, -9, -17, -23, -24, -27, -30, -31, -33, -40]
    cases = [_requant_graph(i, shifts) for i in range(4)]
    counts, jobs, _ = run_cases(harness, cases, samples=3)
    seen = set(int(s) for job in jobs for s in job.call.params["shift"].values)
    assert {6, 1, 0, -1, -2, -23, -24, -31} <= seen
    assert all(0 in job.call.params["multiplier"].values for job in jobs)
    assert bad_counts(counts) == {}


def test_conv2d_add_matches_reference(harness):
    """CONV_2D_ADD (run out of place and in place) with 1x1 and 3x3 windows, both operand
    orders, pixel counts that do not fill a block of four, odd channel counts, and output
    scales that put ADD's output rescaling outside the kernels' short path (right shift 0 or
    beyond 23)."""
    graphs = []
    specs = [  # input shape, kernel, padding, skip first, output scale / max input scale
        ((1, 6, 6, 4), (3, 3), (1, 1, 1, 1), False, 2),
        ((1, 5, 7, 3), (1, 1), (0, 0, 0, 0), True, 2),
        ((2, 3, 5, 8), (3, 3), (1, 1, 1, 1), True, 2),
        ((1, 1, 3, 5), (3, 3), (1, 1, 1, 1), False, 2),
        ((1, 7, 3, 16), (3, 3), (1, 1, 1, 1), False, 2),
        ((1, 2, 1, 9), (1, 1), (0, 0, 0, 0), True, 2),
        ((1, 4, 4, 6), (3, 3), (1, 1, 1, 1), False, 2.0 ** -18),
        ((1, 4, 3, 5), (1, 1), (0, 0, 0, 0), True, 2.0 ** 6),
        ((1, 4, 5, 32), (3, 3), (1, 1, 1, 1), False, 2),  # windows of 288: 4-pixel blocks
        ((1, 3, 5, 33), (3, 3), (1, 1, 1, 1), True, 2)]
    for i, (shape, kernel, padding, skip_first, factor) in enumerate(specs):
        b = Builder(f"dsp_conv_add{i}", 5000 + i)
        x = b.input(shape)
        cout = shape[3]
        w = b.int8_const((cout, *kernel, shape[3]), 0)
        bias = b.bias(cout, quantization_of(b, x)[0])
        skip = b.input(shape)
        conv_scale = output_scale(b, x, w, kernel[0] * kernel[1] * shape[3])
        attrs = irops.Conv2DAddAttrs((1, 1), (1, 1), padding, ACTIVATIONS[i % 4],
                                     conv_scale=conv_scale,
                                     conv_zero_point=int(b.rng.integers(-20, 20)),
                                     add_activation=ACTIVATIONS[(i + 1) % 4],
                                     skip_first=skip_first)
        y = b.op("CONV_2D_ADD", [x, w, skip, bias], attrs,
                 max(conv_scale, quantization_of(b, skip)[0]) * factor)
        graphs.append(b.finish(y))
    counts, jobs, _ = run_cases(harness, graphs)
    assert sum(1 for k in counts if k.endswith(":in-place")) == 2 * len(specs)
    shifts = {job.call.params["add_output_shift"] for job in jobs}
    assert min(shifts) < -23 and max(shifts) > -2 and any(-23 <= s <= -2 for s in shifts)
    assert bad_counts(counts) == {}


# ---- the MLPerf Tiny models ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant"])
def test_mlperf_convolutions_match_reference(harness, name):
    """Every convolution of the compiled graph (after tinyml.passes) on two inputs, with the
    optimized build (the sanitized one runs the random cases above)."""
    graph, feeds = mlperf_compiled(name, 5)
    counts, jobs, _ = run_cases(harness, [(graph, feeds)], samples=2, flavor="optimized")
    # Layers whose weights are mostly zeros (six of vww's deep 1x1 convolutions, at least
    # sparse.DSP_MIN_ZEROS of them) are stored as sparse rows and run the sparse kernels
    # (tests/test_kernels_sparse.py).
    stored_sparse = sum((call.weight_format or "").startswith("sparse")
                        for call in dsp_calls(graph))
    assert stored_sparse == (6 if name == "vww_96_int8" else 0)
    assert len(jobs) >= 2 * (sum(op.kind.startswith("CONV_2D") for op in graph.ops) -
                             stored_sparse)
    assert bad_counts(counts) == {}


# ---- lowering for DSP targets ----------------------------------------------------------------


def test_scratch_is_declared_only_for_targets_with_dsp_kernels():
    """Host and portable targets lower exactly as before (no conv scratch); every target
    that builds the cortex_m kernels has the DSP extension and gets the conv scratch; the
    calls are otherwise identical."""
    rng = np.random.default_rng(1)
    graph, _ = _conv_graph(0, rng)
    for name in available_targets():
        target = load_target(name)
        if "cortex_m" in target.kernels:
            assert target.dsp, name
        assert uses_dsp_kernels(target) == ("cortex_m" in target.kernels), name
    portable = lower(graph)
    for name in ("host", "cortex-m3", "cortex-m0plus", "cortex-m4", "cortex-m33"):
        calls = lower(graph, load_target(name))
        assert [c.function for c in calls] == [c.function for c in portable]
        for call, plain in zip(calls, portable):
            assert call.args == plain.args and call.in_place == plain.in_place
            assert call.params.keys() == plain.params.keys()
            assert (call.scratch_bytes > 0) == (uses_dsp_kernels(load_target(name)))


# ---- the helpers: requantization and the ACLE emulation --------------------------------------

_REQUANT_DRIVER = r"""/* Generated by tests/test_kernels_dsp_conv.py */
#include <stdio.h>
#include "dsp_common.h"

int main(void)
{
    int32_t in[3], out[3];
    while (fread(in, sizeof in, 1, stdin) == 1) {
        const tinyml_dsp_requant r = tinyml_dsp_requant_prepare(in[1], in[2]);
        out[0] = tinyml_mbqm(in[0], in[1], in[2]);
        out[1] = tinyml_dsp_mbqm(in[0], r);
        out[2] = tinyml_dsp_mbqm_long(in[0], r);
        fwrite(out, sizeof out, 1, stdout);
    }
    return 0;
}
"""


def test_dsp_requantization_equals_fixedpoint(harness):
    """tinyml_dsp_mbqm (short form where it applies) and its long form against fixedpoint.h's
    tinyml_mbqm on full-range accumulators, quantized multipliers (and 0) and shifts from -40
    to +40, under the sanitizers."""
    source = harness.workdir / "requant.c"
    source.write_text(_REQUANT_DRIVER)
    binary = harness.workdir / "requant"
    harness._cc("sanitized", [f"-I{KERNELS / 'portable'}", str(source), "-o", str(binary)])
    rng = np.random.default_rng(8)
    edges = np.array([0, 1, -1, 2, -2, 2**30, -2**30, 2**31 - 1, -2**31, 255, -256], np.int64)
    n = 60000
    x = np.concatenate([np.repeat(edges, 400),
                        rng.integers(-2**31, 2**31, n // 2),
                        rng.integers(-2**16, 2**16, n // 2)])
    m = rng.integers(2**30, 2**31, x.size)
    m[rng.random(x.size) < 0.02] = 0
    m[rng.random(x.size) < 0.02] = 2**31 - 1
    shift = rng.integers(-40, 41, x.size)
    records = np.stack([x, m, shift], axis=1).astype(np.int32)
    proc = subprocess.run([str(binary)], input=records.tobytes(), capture_output=True,
                          env=dict(os.environ, **SANITIZER_ENV))
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = np.frombuffer(proc.stdout, np.int32).reshape(-1, 3)
    assert out.shape[0] == x.size
    assert np.count_nonzero(out[:, 1] != out[:, 0]) == 0
    assert np.count_nonzero(out[:, 2] != out[:, 0]) == 0


#: Intrinsics the DSP kernels use, with how to print each one's result.
_INTRINSICS = [
    ("smlad", "(uint32_t)__smlad((int32_t)a, (int32_t)b, (int32_t)c)"),
    ("smladx", "(uint32_t)__smladx((int32_t)a, (int32_t)b, (int32_t)c)"),
    ("smuad", "(uint32_t)__smuad((int32_t)a, (int32_t)b)"),
    ("smlabb", "(uint32_t)__smlabb((int32_t)a, (int32_t)b, (int32_t)c)"),
    ("smlatb", "(uint32_t)__smlatb((int32_t)a, (int32_t)b, (int32_t)c)"),
    ("smlabt", "(uint32_t)__smlabt((int32_t)a, (int32_t)b, (int32_t)c)"),
    ("smlatt", "(uint32_t)__smlatt((int32_t)a, (int32_t)b, (int32_t)c)"),
    ("sxtb16", "(uint32_t)__sxtb16((int32_t)a)"),
    ("sxtab16", "(uint32_t)__sxtab16((int32_t)a, (int32_t)b)"),
    ("uxtb16", "__uxtb16(a)"),
    ("sxtb16_ror8", "(uint32_t)tinyml_sxtb16_ror8(a)"),
    ("sxtab16_ror8", "(uint32_t)tinyml_sxtab16_ror8((int32_t)a, b)"),
    ("pkhbt", "(uint32_t)tinyml_pkhbt((int32_t)a, (int32_t)b)"),
    ("pkhtb", "(uint32_t)tinyml_pkhtb((int32_t)a, (int32_t)b)"),
    ("qadd", "(uint32_t)__qadd((int32_t)a, (int32_t)b)"),
    ("qsub", "(uint32_t)__qsub((int32_t)a, (int32_t)b)"),
    ("qadd16", "(uint32_t)__qadd16((int32_t)a, (int32_t)b)"),
    ("qsub16", "(uint32_t)__qsub16((int32_t)a, (int32_t)b)"),
    ("sadd16", "(uint32_t)__sadd16((int32_t)a, (int32_t)b)"),
    ("ssub16", "(uint32_t)__ssub16((int32_t)a, (int32_t)b)"),
    ("qadd8", "(uint32_t)__qadd8((int32_t)a, (int32_t)b)"),
    ("ssat8", "(uint32_t)__ssat((int32_t)a, 8)"),
    ("tinyml_ssat8", "(uint32_t)tinyml_ssat8((int32_t)a)"),
    ("ssat16", "(uint32_t)__ssat((int32_t)a, 16)"),
    ("usat8", "(uint32_t)__usat((int32_t)a, 8)"),
    ("smlal_lo", "smlal_part((int32_t)a, (int32_t)b, c, 0)"),
    ("smlal_hi", "smlal_part((int32_t)a, (int32_t)b, c, 1)"),
    ("mbqm_short", "(uint32_t)tinyml_dsp_mbqm_short_raw((int32_t)a, (int32_t)(b >> 1), "
                   "(int32_t)(c & 0xFFFF), (int32_t)((c >> 16) % 31))"),
    ("mbqm_half", "(uint32_t)tinyml_dsp_mbqm_half((int32_t)a, (int32_t)(b >> 1))"),
    ("mbqm_high", "(uint32_t)tinyml_dsp_mbqm_high((int32_t)a, (int32_t)(b >> 1), "
                  "(int32_t)(c % 32))"),
]

_INTRINSICS_DRIVER = r"""/* Generated by tests/test_kernels_dsp_conv.py: each intrinsic on
 * input.bin's operand triples; results to output.bin. Built for the host (emulation) and for
 * Cortex-M (ACLE). */
#include <stdint.h>
#include <stdio.h>
#include "dsp_common.h"
#ifdef __ARM_FEATURE_DSP
#include "semihost.h"
#endif

#define COUNT %(count)d

static uint32_t g_in[3 * COUNT];
static uint32_t g_out[%(outputs)d * COUNT];

static uint32_t smlal_part(int32_t a, int32_t b, uint32_t c, int high)
{
    uint32_t lo = c;
    int32_t hi = (int32_t)(c ^ 0x5A5A5A5Au);
    tinyml_smlal(&lo, &hi, a, b);
    return high ? (uint32_t)hi : lo;
}

static void compute(void)
{
    int i;
    for (i = 0; i < COUNT; ++i) {
        const uint32_t a = g_in[3 * i], b = g_in[3 * i + 1], c = g_in[3 * i + 2];
        uint32_t *o = g_out + %(outputs)d * i;
        (void)c;
%(body)s
    }
}

int main(void)
{
#ifdef __ARM_FEATURE_DSP
    int32_t f = semihost_open("input.bin", "rb");
    if (f < 0 || semihost_read(f, g_in, sizeof g_in) != 0) {
        return 10;
    }
    semihost_close(f);
    compute();
    f = semihost_open("output.bin", "wb");
    if (f < 0 || semihost_write(f, g_out, sizeof g_out) != 0) {
        return 13;
    }
    semihost_close(f);
#else
    if (fread(g_in, sizeof g_in, 1, stdin) != 1) {
        return 10;
    }
    compute();
    fwrite(g_out, sizeof g_out, 1, stdout);
#endif
    return 0;
}
"""


def _intrinsic_operands(count: int) -> np.ndarray:
    rng = np.random.default_rng(77)
    special = np.array([0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x00007FFF, 0x00008000,
                        0x7FFF8000, 0x80007FFF, 0x7F7F7F7F, 0x80808080, 0xFFFF0000, 0x0000FFFF,
                        0x01020304, 0xFEFDFCFB], np.uint64)
    ops = rng.integers(0, 2**32, (count, 3), dtype=np.uint64)
    pick = rng.integers(0, special.size, (count, 3))
    use = rng.random((count, 3)) < 0.3
    ops[use] = special[pick[use]]
    ops[:, 2][: count // 2] &= 0x1F7FFFFF  # mbqm_short: small round_high / shifts
    return ops.astype(np.uint32)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm")
                    is None, reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_acle_emulation_matches_the_instructions(harness, tmp_path):
    """Each intrinsic (and dsp_common.h's inline-assembly forms) on 4000 operand triples,
    saturating and wrapping cases included: the host build against acle_emulation.h gives
    the same bits as the instructions executed by QEMU's Cortex-M4."""
    from tinyml.sim import qemu
    count = 4000
    body = "\n".join(f"        o[{i}] = {expr}; /* {name} */"
                     for i, (name, expr) in enumerate(_INTRINSICS))
    source = tmp_path / "intrinsics.c"
    source.write_text(_INTRINSICS_DRIVER % dict(count=count, outputs=len(_INTRINSICS),
                                                 body=body))
    operands = _intrinsic_operands(count)
    # Host, emulated.
    host = tmp_path / "intrinsics_host"
    harness._cc("sanitized", [f"-I{KERNELS / 'portable'}", str(source), "-o", str(host)])
    proc = subprocess.run([str(host)], input=operands.tobytes(), capture_output=True,
                          env=dict(os.environ, **SANITIZER_ENV))
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    emulated = np.frombuffer(proc.stdout, np.uint32).reshape(count, -1)
    # Cortex-M4 in QEMU, the real instructions.
    target = M4
    firmware = REPO / "firmware" / "cortex_m"
    elf = tmp_path / "intrinsics.elf"
    cmd = [target.cc, *target.cflags, "-DTINYML_SEMIHOSTING",
           f"-DTINYML_QEMU_SYSTICK_HZ={target.systick_hz}", f"-I{firmware}", f"-I{DSP}",
           f"-I{KERNELS / 'portable'}", str(source),
           *[str(firmware / f) for f in ("startup.c", "semihost.c", "counter.c", "stack.c",
                                         "console.c")],
           *target.ldflags, f"-L{REPO / 'firmware' / 'linker'}",
           f"-T{REPO / 'firmware' / 'linker' / target.linker_script}", "-o", str(elf),
           "-lc", "-lgcc"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "input.bin").write_bytes(operands.tobytes())
    qemu.run_elf(elf, target, run_dir, timeout=300)
    real = np.frombuffer((run_dir / "output.bin").read_bytes(), np.uint32).reshape(count, -1)
    differ = {name: int(np.count_nonzero(emulated[:, i] != real[:, i]))
              for i, (name, _) in enumerate(_INTRINSICS)}
    assert {k: v for k, v in differ.items() if v} == {}
    # The operands reach the interesting cases: saturation and wrap-around happen.
    sat = [name for name, _ in _INTRINSICS].index("qadd")
    assert np.count_nonzero(real[:, sat] == 0x7FFFFFFF) > 10


# ---- the kernels build for the DSP cores -----------------------------------------------------


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("target_name", ["cortex-m4", "cortex-m7", "cortex-m33"])
def test_conv_builds_for_dsp_cores_with_simd(tmp_path, target_name):
    """With the strict warnings of test_kernels_c plus -Wconversion, and the objects really
    use SMLAD (the DSP path, not a fallback)."""
    target = load_target(target_name)
    arch = [f for f in target.cflags if f.startswith("-m")]
    obj = tmp_path / "conv.o"
    cmd = ["arm-none-eabi-gcc", *WARNINGS, "-Wconversion", "-O2", *arch,
           f"-I{KERNELS}", f"-I{KERNELS / 'portable'}", f"-I{DSP}", "-c", str(DSP / "conv.c"),
           "-o", str(obj)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True,
                                 text=True).stdout
    assert "smlad" in disassembly and "sxtb16" in disassembly and "smlal" in disassembly


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.parametrize("case", ["conv_1x1", "conv_relu6_clamp", "conv_grouped",
                                  "conv_same_stride2_relu", "residual_add_relu"])
def test_zoo_conv_layers_bit_exact_in_qemu(case, tmp_path):
    """The target build runs assembly loops (conv_mac8) where the host build runs their C
    twin: the op zoo's convolutions (odd group counts, 1x1, groups, the ADD fusion) on
    emulated cortex-m4 against tflite-micro."""
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
