"""Packed int4 filters: the layout, the test fixture that makes int4 graphs, and the ``*_s4`` C
kernels (portable, and the Cortex-M DSP ones on the host through the ACLE emulation) bit for
bit against the reference interpreter, under AddressSanitizer and UndefinedBehaviorSanitizer.

The reference computes int4 layers with the int8 arithmetic on the unpacked values (as TFLM
does); the layers come from int8 layers requantized to int4 by round to nearest
(tests/support/int4_graphs.py). The shapes cover what the kernels special-case: window sizes
of every residue mod 8 (full groups of 8 packed values, the dense tail, the half group of
the DSP convolution), odd channel counts, strides, padding, dilation, groups, 1x1 / 3x3 / 5x5
windows, depth multipliers, the depthwise kernels' pixel path, wide fully connected layers,
and CONV_2D_ADD in place.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from support.c_harness import Harness, bad_counts, graph_jobs, mismatches, reference_samples
from support.dsp_harness import M4, DspHarness, dull_layers, output_scale
from support.graph_builder import ACTIVATIONS, Builder, quantization_of
from support.int4_graphs import requantize_int4
from tinyml.codegen.int4_layout import pack_int4_rows, packed_row_bytes, unpack_int4_rows
from tinyml.codegen.lowering import lower
from tinyml.ir import ops as irops
from tinyml.reference import run

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")

S4_FUNCTIONS = {"tinyml_conv2d_s4", "tinyml_conv2d_1x1_s4", "tinyml_conv2d_add_s4",
                "tinyml_depthwise_conv2d_s4", "tinyml_depthwise_conv2d_3x3_s4",
                "tinyml_fully_connected_s4"}


# ---- layers -------------------------------------------------------------------------------


def bias_scale(b: Builder, x: str, w: str) -> float:
    """The bias scale of a layer (input scale x mean weight scale), so that the fixture's
    re-derived int4 bias keeps the bias's real value and share of the sum."""
    sw = float(np.mean(b.graph.tensors[w].quant.scale))
    return float(np.float32(quantization_of(b, x)[0] * sw))


def conv_layer(i: int, shape, cout: int, kernel, stride=(1, 1), padding=(0, 0, 0, 0),
               dilation=(1, 1), groups: int = 1):
    """An int4 CONV_2D (from a random int8 one)."""
    b = Builder(f"int4_conv{i}", 11000 + i)
    x = b.input(shape, scale=b.scale(-3.5, -2))
    w = b.int8_const((cout, *kernel, shape[3] // groups), 0)
    bias = b.bias(cout, bias_scale(b, x, w))
    attrs = irops.Conv2DAttrs(stride, dilation, padding, ACTIVATIONS[i % 3])
    taps = kernel[0] * kernel[1] * shape[3] // groups
    y = b.op("CONV_2D", [x, w, bias], attrs, output_scale(b, x, w, taps))
    graph, feeds = b.finish(y)
    return requantize_int4(graph), feeds


def conv_add_layer(i: int, shape, kernel, padding, skip_first: bool):
    """An int4 CONV_2D_ADD (the residual fusion of tinyml.passes), in place capable."""
    b = Builder(f"int4_conv_add{i}", 12000 + i)
    x = b.input(shape)
    cout = shape[3]
    w = b.int8_const((cout, *kernel, shape[3]), 0)
    bias = b.bias(cout, bias_scale(b, x, w))
    skip = b.input(shape)
    conv_scale = output_scale(b, x, w, kernel[0] * kernel[1] * shape[3])
    attrs = irops.Conv2DAddAttrs((1, 1), (1, 1), padding, ACTIVATIONS[i % 4],
                                 conv_scale=conv_scale,
                                 conv_zero_point=int(b.rng.integers(-20, 20)),
                                 add_activation=ACTIVATIONS[(i + 1) % 4], skip_first=skip_first)
    y = b.op("CONV_2D_ADD", [x, w, skip, bias], attrs,
             max(conv_scale, quantization_of(b, skip)[0]) * 2)
    graph, feeds = b.finish(y)
    return requantize_int4(graph), feeds


def depthwise_layer(i: int, shape, multiplier: int, kernel, stride=(1, 1),
                    padding=(0, 0, 0, 0), dilation=(1, 1)):
    """An int4 DEPTHWISE_CONV_2D (from a random int8 one)."""
    b = Builder(f"int4_dw{i}", 13000 + i)
    x = b.input(shape)
    channels = shape[3] * multiplier
    w = b.int8_const((1, *kernel, channels), 3, scale=b.scale(-3, -1))
    bias = b.bias(channels, bias_scale(b, x, w))
    attrs = irops.DepthwiseConv2DAttrs(stride, dilation, padding, ACTIVATIONS[i % 3],
                                       multiplier)
    y = b.op("DEPTHWISE_CONV_2D", [x, w, bias], attrs,
             output_scale(b, x, w, kernel[0] * kernel[1]))
    graph, feeds = b.finish(y)
    return requantize_int4(graph), feeds


def fc_layer(i: int, depth: int, units: int, batches: int = 1, per_channel: bool = True):
    """An int4 FULLY_CONNECTED (from a random int8 one, per-channel or per-tensor)."""
    b = Builder(f"int4_fc{i}", 14000 + i)
    x = b.input((batches, depth))
    w = b.int8_const((units, depth), 0 if per_channel else None, scale=b.scale(-3, -1))
    sx, _ = quantization_of(b, x)
    sw = b.graph.tensors[w].quant.scale
    bias = b.bias(units, float(np.float32(sx * float(sw[0]))))
    typical = np.sqrt(depth) * 80 * 73
    scale = float(np.float32(sx * float(sw[0]) * typical / 64 * 10 ** b.rng.uniform(-.5, .5)))
    attrs = irops.FullyConnectedAttrs(ACTIVATIONS[i % 4], False)
    graph, feeds = b.finish(b.op("FULLY_CONNECTED", [x, w, bias], attrs, scale))
    return requantize_int4(graph), feeds


def fast_cases():
    """A sample of every kernel and special case, quick enough for the default run."""
    return [
        conv_layer(0, (1, 5, 5, 3), 5, (1, 1)),                               # 1x1, K = 3
        conv_layer(1, (1, 6, 7, 12), 7, (1, 1)),                              # 1x1, K = 12
        conv_layer(2, (1, 4, 5, 16), 9, (1, 1), stride=(2, 2)),               # 1x1 stride 2
        conv_layer(3, (1, 9, 8, 3), 8, (3, 3), (2, 2), (1, 1, 1, 1)),         # K = 27
        conv_layer(4, (1, 6, 7, 5), 3, (3, 3), (1, 1), (1, 1, 1, 1)),         # K = 45
        conv_layer(5, (2, 7, 6, 4), 6, (5, 5), (1, 2), (2, 2, 2, 2)),         # 5x5, K = 100
        conv_layer(6, (1, 5, 6, 32), 5, (3, 3), (1, 1), (1, 1, 1, 1)),        # K = 288: 4 pixels
        conv_layer(7, (1, 8, 8, 6), 4, (3, 3), dilation=(2, 2)),              # dilated
        conv_layer(8, (1, 6, 6, 6), 6, (3, 3), padding=(1, 1, 1, 1), groups=2),
        conv_layer(9, (1, 3, 1, 7), 3, (3, 3), padding=(1, 1, 1, 1)),         # 3 pixels, K = 63
        conv_add_layer(0, (1, 6, 6, 4), (3, 3), (1, 1, 1, 1), False),
        conv_add_layer(1, (1, 5, 7, 13), (1, 1), (0, 0, 0, 0), True),
        depthwise_layer(0, (1, 9, 7, 5), 1, (3, 3), (1, 1), (1, 1, 1, 1)),    # 3x3, odd width
        depthwise_layer(1, (1, 12, 11, 4), 1, (3, 3), (2, 2), (0, 1, 0, 1)),  # 3x3 stride 2
        depthwise_layer(2, (1, 9, 9, 7), 1, (5, 5), (1, 1), (2, 2, 2, 2)),    # 5x5
        depthwise_layer(3, (1, 6, 7, 3), 3, (3, 3), (2, 1), (1, 1, 1, 1)),    # multiplier 3
        depthwise_layer(4, (2, 8, 6, 13), 1, (3, 3), (1, 1), (1, 1, 1, 1)),   # pixel path
        depthwise_layer(5, (1, 6, 5, 14), 1, (2, 3), (1, 1), (1, 1, 2, 2), (1, 2)),
        depthwise_layer(6, (1, 25, 5, 8), 1, (3, 3), (1, 1), (1, 1, 1, 1)),   # transposed
        depthwise_layer(7, (1, 9, 9, 4), 1, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
        fc_layer(0, 256, 64),
        fc_layer(1, 1024, 10),
        fc_layer(2, 13, 7, batches=2),
        fc_layer(3, 37, 5, per_channel=False),
        fc_layer(4, 1, 3),
        fc_layer(5, 100, 9, batches=3),
    ]


def random_cases(count: int, seed: int):
    """Random geometry: every window size residue mod 8, odd channels, strides."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            groups = int(rng.choice([1, 1, 2]))
            cin = int(rng.choice([1, 2, 3, 5, 7, 8, 9, 12, 16, 17])) * groups
            kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
            pad = tuple(int(p) for p in rng.integers(0, 3, 4))
            shape = (1, int(rng.integers(kernel[0], 10)), int(rng.integers(kernel[1], 10)), cin)
            stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
            cases.append(conv_layer(100 + i, shape, int(rng.integers(1, 10)) * groups, kernel,
                                    stride, pad, groups=groups))
        elif kind == 1:
            kernel = (3, 3) if rng.random() < 0.5 else (int(rng.integers(1, 6)),
                                                         int(rng.integers(1, 6)))
            shape = (1, int(rng.integers(kernel[0], 12)), int(rng.integers(kernel[1], 12)),
                     int(rng.choice([1, 3, 5, 8, 12, 13, 16, 17, 24])))
            pad = tuple(int(p) for p in rng.integers(0, 3, 4))
            stride = (int(rng.choice([1, 2])), int(rng.choice([1, 2])))
            cases.append(depthwise_layer(100 + i, shape, int(rng.choice([1, 1, 2])), kernel,
                                         stride, pad))
        else:
            cases.append(fc_layer(100 + i, int(rng.integers(1, 300)), int(rng.integers(1, 14)),
                                  int(rng.choice([1, 2]))))
    return cases


def run_cases(harness, cases, target=None, samples: int = 2, flavor: str = "sanitized"):
    """Every int4 call of each graph on `samples` inputs against the reference."""
    jobs, expected = [], []
    for n, (graph, feeds) in enumerate(cases):
        rng = np.random.default_rng(n + 31)
        inputs = [feeds] + [[rng.integers(-128, 128, f.shape).astype(np.int8) for f in feeds]
                            for _ in range(samples - 1)]
        calls = [c for c in lower(graph, target) if c.function in S4_FUNCTIONS]
        assert calls, graph.name
        for s, values in enumerate(reference_samples(graph, inputs)):
            batch = graph_jobs(graph, calls, values, f"{graph.name}#{s}")
            jobs += batch
            expected += [{name: values[name] for name in job.outputs} for job in batch]
    results = harness.run(jobs, flavor)
    return mismatches(jobs, results, expected), jobs, results


# ---- the layout and the fixture ---------------------------------------------------------------


def test_layout_groups_of_eight_then_dense_tail():
    """Byte j of a group holds values j (low nibble) and 4 + j (high nibble); the tail is
    dense, low nibble first; rows start on bytes."""
    rows = np.array([[0, 1, 2, 3, 4, 5, 6, 7, -8, -1, 3],
                     [-1] * 11])
    packed = pack_int4_rows(rows).view(np.uint8)
    assert list(packed[:6]) == [0x40, 0x51, 0x62, 0x73, 0xF8, 0x03]
    assert list(packed[6:]) == [0xFF] * 5 + [0x0F]
    rng = np.random.default_rng(0)
    for k in range(1, 41):
        values = rng.integers(-8, 8, (3, k))
        packed = pack_int4_rows(values)
        assert packed.size == 3 * packed_row_bytes(k) == 3 * ((k + 1) // 2)
        assert np.array_equal(unpack_int4_rows(packed, 3, k), values)
    with pytest.raises(ValueError):
        pack_int4_rows(np.array([[8]]))


def test_fixture_makes_symmetric_int4_filters_the_reference_runs():
    graph, feeds = conv_layer(0, (1, 6, 6, 5), 7, (3, 3), padding=(1, 1, 1, 1))
    w = graph.tensors[graph.ops[0].inputs[1]]
    assert w.dtype == "int4" and w.quant.axis == 0 and not w.quant.zero_point.any()
    assert w.data.min() >= -8 and w.data.max() <= 7 and np.abs(w.data).max() == 7
    # The int4 layer is the int8 arithmetic on the same values: the graph with the filter
    # relabelled int8 gives the same outputs.
    relabelled = type(graph)(graph.name)
    relabelled.__dict__.update(graph.__dict__)
    relabelled.tensors = dict(graph.tensors)
    relabelled.tensors[w.name] = type(w)(w.name, w.shape, "int8", w.quant, w.data)
    out = graph.outputs[0]
    got, want = run(graph, feeds)[out], run(relabelled, feeds)[out]
    assert np.array_equal(got, want) and np.unique(got).size > 3


def test_lowering_packs_filters_and_picks_s4_kernels():
    for graph, _ in [conv_layer(0, (1, 5, 5, 3), 5, (1, 1)),
                     conv_layer(3, (1, 9, 8, 3), 8, (3, 3), (2, 2), (1, 1, 1, 1)),
                     depthwise_layer(2, (1, 9, 9, 7), 1, (5, 5), (1, 1), (2, 2, 2, 2)),
                     fc_layer(2, 13, 7, batches=2)]:
        (call,) = lower(graph)
        assert call.function in S4_FUNCTIONS
        w = graph.tensors[call.op.inputs[1]]
        rows = w.shape[3] if call.op.kind == "DEPTHWISE_CONV_2D" else w.shape[0]
        k = w.size // rows
        filt = call.params["filter"]
        assert filt.ctype == "int8_t" and filt.values.size == rows * ((k + 1) // 2)


# ---- the C kernels ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def portable():
    with tempfile.TemporaryDirectory(prefix="tinyml-int4-") as tmp:
        yield Harness(Path(tmp))


@pytest.fixture(scope="module")
def dsp():
    with tempfile.TemporaryDirectory(prefix="tinyml-int4-dsp-") as tmp:
        yield DspHarness(Path(tmp), ("conv.c", "depthwise_conv.c", "fully_connected.c"))


def sample_cases():
    """One case per kernel (the default run; the slow tests run them all)."""
    return [conv_layer(4, (1, 6, 7, 5), 3, (3, 3), (1, 1), (1, 1, 1, 1)),
            conv_layer(1, (1, 6, 7, 12), 7, (1, 1)),
            conv_add_layer(1, (1, 5, 7, 13), (1, 1), (0, 0, 0, 0), True),
            depthwise_layer(0, (1, 9, 7, 5), 1, (3, 3), (1, 1), (1, 1, 1, 1)),
            depthwise_layer(4, (2, 8, 6, 13), 1, (3, 3), (1, 1), (1, 1, 1, 1)),
            depthwise_layer(2, (1, 9, 9, 7), 1, (5, 5), (1, 1), (2, 2, 2, 2)),
            fc_layer(2, 13, 7, batches=2), fc_layer(0, 256, 64)]


@needs_cc
@pytest.mark.parametrize("which", ["portable", pytest.param("dsp", marks=pytest.mark.slow)])
def test_s4_kernels_match_reference_sample(which, portable, dsp):
    harness, target = (portable, None) if which == "portable" else (dsp, M4)
    counts, jobs, _ = run_cases(harness, sample_cases(), target, samples=1)
    assert {job.call.function for job in jobs} == S4_FUNCTIONS
    assert any(job.in_place for job in jobs)
    assert bad_counts(counts) == {}


@needs_cc
@pytest.mark.slow
@pytest.mark.parametrize("which", ["portable", "dsp"])
def test_s4_kernels_match_reference(which, portable, dsp):
    harness, target = (portable, None) if which == "portable" else (dsp, M4)
    cases = fast_cases()
    counts, jobs, results = run_cases(harness, cases, target)
    assert {job.call.function for job in jobs} == S4_FUNCTIONS
    assert any(job.in_place for job in jobs)
    assert bad_counts(counts) == {}
    assert len(dull_layers(jobs, results)) <= len(cases) // 10


class ChunkedDspHarness(DspHarness):
    """The DSP kernels with partial sums of 16 values (TINYML_S4_CHUNK), so that the path
    that keeps 16 * sum inside int32 for windows beyond 65536 values runs on small layers."""

    def _cc(self, flavor: str, args: list[str]) -> None:
        super()._cc(flavor, ["-DTINYML_S4_CHUNK=16", *args])


@needs_cc
@pytest.mark.slow
def test_dsp_s4_kernels_in_chunks_match_reference():
    cases = [conv_layer(20, (1, 5, 6, 5), 4, (3, 3), padding=(1, 1, 1, 1)),      # K = 45
             conv_layer(21, (1, 4, 4, 40), 5, (1, 1)),                             # K = 40
             conv_layer(22, (1, 5, 6, 32), 5, (3, 3), (1, 1), (1, 1, 1, 1)),       # K = 288
             fc_layer(20, 77, 9), fc_layer(21, 256, 6, batches=2)]
    with tempfile.TemporaryDirectory(prefix="tinyml-int4-chunk-") as tmp:
        harness = ChunkedDspHarness(Path(tmp), ("conv.c", "fully_connected.c"))
        counts, jobs, _ = run_cases(harness, cases, M4)
    assert len(jobs) == 2 * len(cases)
    assert bad_counts(counts) == {}


@needs_cc
@pytest.mark.slow
@pytest.mark.parametrize("which", ["portable", "dsp"])
def test_s4_kernels_match_reference_random_geometry(which, portable, dsp):
    harness, target = (portable, None) if which == "portable" else (dsp, M4)
    cases = fast_cases() + random_cases(60, 2031)
    counts, jobs, results = run_cases(harness, cases, target)
    windows = [p["filter_h"] * p["filter_w"] * p["filter_c"] for p in
               (j.call.params for j in jobs) if "filter_c" in p]
    assert {k % 8 for k in windows} == set(range(8))
    assert bad_counts(counts) == {}
    assert len(dull_layers(jobs, results)) <= len(cases) // 10


def test_bad_int4_filters_are_one_line_errors():
    """Values outside [-8, 7] or a nonzero zero point: one line naming the layer, from
    lowering and from the reference alike."""
    from tinyml.errors import TinymlError
    from tinyml.ir import Quantization, Tensor

    graph, feeds = fc_layer(30, 16, 4)
    w_name = graph.ops[0].inputs[1]
    w = graph.tensors[w_name]
    bad_values = w.data.copy()
    bad_values[0, 0] = 9
    zero_point = Quantization(w.quant.scale, np.ones(w.quant.scale.size), 0)
    for tensor, words in [(Tensor(w_name, w.shape, "int4", w.quant, bad_values), "[-8, 7]"),
                          (Tensor(w_name, w.shape, "int4", zero_point, w.data), "symmetric")]:
        graph.tensors[w_name] = tensor
        for action in (lambda: lower(graph), lambda: run(graph, feeds)):
            with pytest.raises(TinymlError) as info:
                action()
            message = str(info.value)
            assert words in message and graph.ops[0].name in message and "\n" not in message
