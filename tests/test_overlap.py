"""Overlapped hand-overs: a layer's output placed inside its dying input's bytes at the
distance its kernel's read/write order makes safe (tinyml.codegen.write_order).

The safe distances are checked three ways: against the closed forms of the simple loops,
against a byte-level emulation of the portable 1x1 loop (the safe delta works, one output
pixel more corrupts), and end to end: the generated C, with every declared overlap forced at
its largest delta, run with the arena filled with junk before each sample (the harnesses'
TINYML_ARENA_JUNK), equals TFLM bit for bit; the same model with an unsafe delta does not,
which shows the harness sees a violated lag.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from support.tflite_zoo import convert
from tinyml.codegen import write_order
from tinyml import compiler
from tinyml.compiler import plan
from tinyml.reference import run
from tinyml.schedule import execute_planned, planner
from tinyml.verify import verify
from conftest import mlperf_model


def overlap_chain(x):
    """Every op kind with a declared overlap, each input dying at its reader: QUANTIZE of the
    float input (4 bytes to 1), a padded 3x3 convolution (3 to 16 channels), 1x1
    convolutions that shrink, grow and stride, max and average pooling, a dense layer on rows
    (FULLY_CONNECTED with batches) and DEQUANTIZE of the output (1 byte to 4)."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = L.Conv2D(8, 1)(y)
    y = L.Conv2D(24, 1, activation="relu")(y)
    y = L.Conv2D(12, 1, strides=2)(y)
    y = L.MaxPooling2D(3, strides=1, padding="same")(y)
    y = L.AveragePooling2D(2)(y)
    y = L.Reshape((-1, 12))(y)
    y = L.Dense(20, activation="relu")(y)
    y = L.Flatten()(y)
    return L.Dense(5)(y)


CHAIN_INPUT = [(1, 12, 10, 3)]


def residual_blocks(x):
    """The DSP convolutions' blocks of 7 pixels (49 output pixels, windows of 8, 16 and 72
    values: lowering's conv_block_cap) growing and shrinking channels, odd channel counts and
    a stride-2 growing convolution (5 to 11 channels) around them, and a CONV_2D_ADD whose
    skip lives on after it (read by a later ADD), so that only its convolution's input
    (input 0) can take its output."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(5, 3, padding="same", activation="relu")(x)        # 14x14x5
    y = L.Conv2D(11, 3, strides=2, padding="same", activation="relu")(y)  # 7x7x11
    y = L.Conv2D(8, 1, activation="relu")(y)
    a = L.Conv2D(16, 1, activation="relu")(y)                      # K = 8: blocks of 7
    c = L.Conv2D(8, 1)(a)                                          # K = 16, shrinking
    d = L.Conv2D(12, 3, padding="same", activation="relu")(c)      # K = 72
    e = L.Add()([L.Conv2D(8, 3, padding="same")(d), c])           # CONV_2D_ADD, skip c lives
    y = L.Add()([e, c])
    y = L.GlobalAveragePooling2D()(y)
    return L.Dense(5)(y)


RESIDUAL_INPUT = [(1, 14, 14, 3)]


@pytest.fixture(scope="module")
def residual_model():
    return convert(residual_blocks, RESIDUAL_INPUT, int8=True, int8_io=False)


@pytest.fixture(scope="module")
def chain_model():
    return convert(overlap_chain, CHAIN_INPUT, int8=True, int8_io=False)


def force_all_overlaps(monkeypatch, side="all"):
    """Every declared overlap, at its largest delta (``side="above"``: above the input, at
    its smallest delta, where the kernel may run backward), in the layer-by-layer plans
    compile makes (not only those that shrink the arena)."""
    monkeypatch.setattr(compiler, "plan_memory",
                        functools.partial(planner.plan_memory, overlap=side))


# ---- the safe distances ------------------------------------------------------------------------


def pointwise_params(h, w, stride=1, batches=1):
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    return dict(batches=batches, input_h=h, input_w=w, output_h=oh, output_w=ow,
                filter_h=1, filter_w=1, stride_h=stride, stride_w=stride)


@pytest.mark.parametrize("cin,cout", [(64, 64), (16, 8), (8, 16), (3, 40)])
def test_pointwise_delta_closed_forms(cin, cout):
    p = pointwise_params(25, 5)
    pixels = 125
    # Portable: pixel q's outputs are stored while pixel q is read: for every q,
    # delta + (q + 1) * cout <= q * cin.
    portable = -cout if cin >= cout else (pixels - 1) * cin - pixels * cout
    assert write_order.conv_delta(p, cin, cout, cin, dsp=False) == portable
    # DSP: blocks of n pixels read before they are stored: delta + f * cout <= f * cin for
    # every block start f (the last block starts at 120 with n = 8).
    n = write_order.dsp_conv_block(cin, pixels)
    assert n == 8
    dsp = 0 if cin >= cout else 120 * (cin - cout)
    assert write_order.conv_delta(p, cin, cout, cin, dsp=True) == dsp


@pytest.mark.parametrize("cin,cout", [(64, 64), (16, 8), (8, 16), (3, 40)])
def test_pointwise_delta_above_closed_forms(cin, cout):
    """Backward (last output pixel first), the output above the input: pixel q's outputs are
    stored while pixel q is read, and pixels below q are read later, so (portable) for every
    q, delta + q * cout >= (q + 1) * cin; DSP blocks, read before they are stored:
    delta + (f + n) * cout >= (f + n) * cin at the block after the one starting at f. Never
    below 1: at 0 and below the kernels go forward."""
    p = pointwise_params(25, 5)
    pixels = 125
    portable = pixels * cin - (pixels - 1) * cout if cin >= cout else cin
    assert write_order.conv_delta_above(p, cin, cout, cin, dsp=False) == portable
    dsp = max(1, pixels * (cin - cout))  # the last block ends at 125
    assert write_order.conv_delta_above(p, cin, cout, cin, dsp=True) == dsp


def emulate_portable_pointwise_backward(arena, i, o, pixels, cin, cout, weights):
    """portable/conv.c's conv_1x1_run walking backward (conv_backward): the last pixel first,
    per output channel the pixel's cin values read, then the channel stored."""
    for q in reversed(range(pixels)):
        for oc in range(cout):
            x = arena[i + q * cin:i + (q + 1) * cin].astype(np.int64)
            arena[o + q * cout + oc] = np.int64(x @ weights[oc]) & 0x7F


@pytest.mark.parametrize("cin,cout", [(6, 6), (6, 3), (3, 7)])
def test_portable_pointwise_backward_emulation(cin, cout):
    rng = np.random.default_rng(cin * 10 + cout + 1)
    pixels = 9
    weights = rng.integers(-3, 4, (cout, cin))
    x = rng.integers(0, 100, pixels * cin)
    expected = np.array([np.int64(x[q * cin:(q + 1) * cin] @ weights[oc]) & 0x7F
                         for q in range(pixels) for oc in range(cout)])
    delta = write_order.conv_delta_above(pointwise_params(3, 3), cin, cout, cin, dsp=False)

    def run(d):
        arena = np.zeros(4 * pixels * max(cin, cout), np.int64)
        i = pixels * max(cin, cout)
        arena[i:i + pixels * cin] = x
        emulate_portable_pointwise_backward(arena, i, i + d, pixels, cin, cout, weights)
        return arena[i + d:i + d + pixels * cout]

    # Safe at the bound; one output pixel lower corrupts.
    assert np.array_equal(run(delta), expected)
    assert not np.array_equal(run(delta - cout), expected)


def test_elementwise_and_rows_deltas():
    assert write_order.elementwise(640, 4, 1) == 0          # float -> int8: in its first bytes
    assert write_order.elementwise(640, 1, 4) == -3 * 639   # int8 -> float: the input at its top
    assert write_order.elementwise(10, 1, 1) == 0
    assert write_order.rows(1, 64, 12) == -12               # one row: right below the input
    assert write_order.rows(6, 12, 20) == 5 * 12 - 6 * 20


def emulate_portable_pointwise(arena, i, o, pixels, cin, cout, weights):
    """portable/conv.c's conv_1x1_run on bytes of one arena, in its exact order: per pixel,
    per output channel, read the pixel's cin values, then store the channel."""
    for q in range(pixels):
        for oc in range(cout):
            x = arena[i + q * cin:i + (q + 1) * cin].astype(np.int64)
            arena[o + q * cout + oc] = np.int64(x @ weights[oc]) & 0x7F


@pytest.mark.parametrize("cin,cout", [(6, 6), (6, 3), (3, 7)])
def test_portable_pointwise_emulation(cin, cout):
    rng = np.random.default_rng(cin * 10 + cout)
    pixels = 9
    weights = rng.integers(-3, 4, (cout, cin))
    x = rng.integers(0, 100, pixels * cin)
    expected = np.array([np.int64(x[q * cin:(q + 1) * cin] @ weights[oc]) & 0x7F
                         for q in range(pixels) for oc in range(cout)])
    delta = write_order.conv_delta(pointwise_params(3, 3), cin, cout, cin, dsp=False)

    def run(d):
        arena = np.zeros(4 * pixels * max(cin, cout), np.int64)
        i = 2 * pixels * max(cin, cout)
        arena[i:i + pixels * cin] = x
        emulate_portable_pointwise(arena, i, i + d, pixels, cin, cout, weights)
        return arena[i + d:i + d + pixels * cout]

    # Safe at the delta; one output pixel higher corrupts. (The model counts all of a pixel's
    # stores before its reads, so it is conservative by less than a pixel: the last channel
    # of a pixel may land on that pixel's first input byte, no longer read by then.)
    assert np.array_equal(run(delta), expected)
    assert not np.array_equal(run(delta + cout), expected)


# ---- plans -------------------------------------------------------------------------------------


def test_chain_plan_overlaps_every_kind(chain_model, monkeypatch):
    force_all_overlaps(monkeypatch)
    result = plan(chain_model, "host", patch="off")
    memory, graph = result.plan, result.graph
    kinds = {graph.ops[i].kind for i, _, _, _ in memory.overlaps}
    assert kinds == {"QUANTIZE", "CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D",
                     "FULLY_CONNECTED", "DEQUANTIZE"}
    calls = {id(c.op): c for c in result.calls}
    for i, t_in, t_out, delta in memory.overlaps:
        declared = calls[id(graph.ops[i])].overlap[2]
        assert memory.offsets[t_out] - memory.offsets[t_in] == delta <= declared
        assert declared - delta < memory.alignment and delta % memory.alignment == 0
    # Bytes of tensors alive at one step are disjoint, except an overlapped or in-place
    # pair at its hand-over.
    shared = {(i, a, b) for i, a, b, _ in memory.overlaps} | set(memory.in_place)
    root = {t: memory.aliases.get(t, t) for t in memory.offsets}
    first, last = {}, {}
    for step, i in enumerate(memory.order):
        op = graph.ops[i]
        for t in op.outputs:
            first.setdefault(root[t], step)
        for t in op.inputs:
            if t in root:
                last[root[t]] = step
    for t in graph.inputs:
        first[root[t]] = 0
    for t in graph.outputs:
        last[root[t]] = len(memory.order) - 1
    names = sorted(first)
    for a in names:
        for b in names:
            if a >= b or first[a] > last.get(b, first[b]) or first[b] > last.get(a, first[a]):
                continue
            step = max(first[a], first[b])
            i = memory.order[step]
            if (i, a, b) in shared or (i, b, a) in shared:
                continue
            ra = (memory.offsets[a], memory.offsets[a] + graph.tensors[a].nbytes)
            rb = (memory.offsets[b], memory.offsets[b] + graph.tensors[b].nbytes)
            assert ra[1] <= rb[0] or rb[1] <= ra[0], (a, b)


def test_chain_plan_runs_in_one_arena(chain_model):
    """The reference kernels inside one byte array laid out by the all-overlaps plan (each
    op reads all its inputs, then writes) read and return what the unplanned run computes."""
    result = plan(chain_model, "host", patch="off")
    graph = result.graph
    memory = planner.plan_memory(graph, result.calls, overlap="all")
    assert memory.overlaps
    rng = np.random.default_rng(0)
    inputs = [rng.normal(0, 1, graph.tensors[n].shape).astype(np.float32)
              for n in graph.inputs]
    want = run(graph, inputs, keep_all=True)
    got = execute_planned(graph, memory, inputs)
    for name in graph.outputs:
        np.testing.assert_array_equal(got.outputs[name], want[name])
    for name, values in got.reads.items():
        for value in values:
            np.testing.assert_array_equal(value, want[name], err_msg=name)


def test_kws_peak_with_overlap():
    result = plan(mlperf_model("kws_ref_model"), "host", patch="off")
    report = result.report()
    assert report["peak_sram_bytes"] <= 9000
    # cortex-m4: its 1x1 convolutions (125 pixels, K = 64) take blocks of 7 pixels, so the
    # DSP scratch beside the in-place 8,000 B is 2 * 7 * 64 + 3 B.
    m4 = plan(mlperf_model("kws_ref_model"), "cortex-m4", patch="off")
    assert {c.params["block"] for c in m4.calls if c.function == "tinyml_conv2d_1x1_s8"} == {7}
    assert m4.plan.arena_bytes == 8000 + 2 * 7 * 64 + 3 + 1 <= 9000
    assert report["overlap"]["arena_bytes_without_overlap"] == 16000
    assert report["overlap"]["saving_bytes"] == 16000 - report["peak_sram_bytes"]
    assert {o["op"] for o in report["overlap"]["layers"]} >= {"CONV_2D"}


def test_memory_report_figures_show_the_overlaps():
    from tinyml.memory_report import figures, layer_rows
    result = plan(mlperf_model("kws_ref_model"), "host", patch="off")
    overlap = result.report()["overlap"]
    assert figures(result)["overlap"] == overlap
    rows = {r.name: r.overlap for r in layer_rows(result)}
    for entry in overlap["layers"]:
        assert rows[entry["layer"]] == entry["delta"]


@pytest.mark.slow
def test_memory_report_html_shows_the_overlaps():
    from tinyml.memory_report import render
    result = plan(mlperf_model("kws_ref_model"), "host", patch="off")
    overlap = result.report()["overlap"]
    text = render(result)
    assert f"saving {overlap['saving_bytes']:,} B" in text
    assert f"{overlap['layers'][1]['delta']:+,} B" in text


def test_blocks_of_seven_delta():
    """A 1x1 convolution growing 8 -> 16 channels over 49 pixels: DSP blocks of 7 start at
    pixels 0, 7, ..., 42, each read before it is stored: delta + f * 16 <= f * 8 for every
    block start f, the last one binding."""
    p = pointwise_params(7, 7)
    assert write_order.conv_delta(p, 8, 16, 8, dsp=True) == 48 * (8 - 16)  # blocks of 8
    assert write_order.conv_delta(dict(p, block=7), 8, 16, 8, dsp=True) == 42 * (8 - 16)


def test_residual_plan_overlaps_conv_add_input(residual_model, monkeypatch):
    """The CONV_2D_ADD, whose skip lives on, overlaps its convolution's input; the
    convolutions take DSP blocks of 7 on cortex-m4 (49 pixels) and declare their order with them."""
    force_all_overlaps(monkeypatch)
    for target in ("host", "cortex-m4"):
        result = plan(residual_model, target, patch="off")
        graph, memory = result.graph, result.plan
        kinds = {graph.ops[i].kind for i, _, _, _ in memory.overlaps}
        assert "CONV_2D_ADD" in kinds
        add = next(o for o in graph.ops if o.kind == "CONV_2D_ADD")
        assert any(t_in == add.inputs[0] for i, t_in, _, _ in memory.overlaps
                   if graph.ops[i] is add)
    blocks = {c.params["block"] for c in result.calls
              if c.function in ("tinyml_conv2d_s8", "tinyml_conv2d_1x1_s8")}
    assert blocks == {0, 7}


def test_residual_overlapped_is_bit_exact_on_host(residual_model, monkeypatch):
    force_all_overlaps(monkeypatch)
    report = verify(residual_model, "host", samples=10, patch="off", sanitize=True)
    assert report.samples == 12 and report.mismatched_outputs == 0


@pytest.mark.slow
def test_residual_overlapped_is_bit_exact_on_cortex_m4(residual_model, monkeypatch):
    """The DSP blocks of 7 and CONV_2D_ADD over its dying convolution input, junk in the
    arena, in QEMU."""
    force_all_overlaps(monkeypatch)
    report = verify(residual_model, "cortex-m4", samples=6, patch="off", profile=False)
    assert report.mismatched_outputs == 0


def test_vww_layer_by_layer_overlaps_above():
    """vww on cortex-m4 layer by layer: its 1x1 convolutions that grow channels overlap their
    input downward, and the chain of them drifted down the arena (46,096 B); above the
    input (walking backward) they can climb back: the arena is the peak of live bytes."""
    result = plan(mlperf_model("vww_96_int8"), "cortex-m4", patch="off")
    memory = result.plan
    above = [d for _, _, _, d in memory.overlaps if d > 0]
    assert above and memory.arena_bytes <= 41_796
    assert memory.arena_bytes - memory.peak_live_bytes < memory.alignment + 4


def test_chain_overlapped_above_is_bit_exact_on_host(chain_model, monkeypatch):
    force_all_overlaps(monkeypatch, "above")
    result = plan(chain_model, "host", patch="off")
    graph = result.graph
    assert {graph.ops[i].kind for i, _, _, d in result.plan.overlaps if d > 0} == {"CONV_2D"}
    report = verify(chain_model, "host", samples=10, patch="off", sanitize=True)
    assert report.samples == 12 and report.mismatched_outputs == 0


def test_unsafe_delta_above_shows_as_a_mismatch(chain_model, monkeypatch):
    """One alignment step below the backward convolutions' smallest delta corrupts."""
    force_all_overlaps(monkeypatch, "above")
    safe = write_order.conv_delta_above
    monkeypatch.setattr(write_order, "conv_delta_above",
                        lambda *args: max(1, safe(*args) - 4))
    report = verify(chain_model, "host", samples=10, patch="off")
    assert report.mismatched_outputs > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["chain", "residual"])
def test_overlapped_above_is_bit_exact_on_cortex_m4(model, chain_model, residual_model,
                                                   monkeypatch):
    """The DSP convolutions' blocks walked backward (blocks of 7 and of 8, the short block
    first), junk in the arena, in QEMU."""
    force_all_overlaps(monkeypatch, "above")
    path = chain_model if model == "chain" else residual_model
    result = plan(path, "cortex-m4", patch="off")
    assert any(d > 0 for _, _, _, d in result.plan.overlaps)
    report = verify(path, "cortex-m4", samples=6, patch="off", profile=False)
    assert report.mismatched_outputs == 0


@pytest.mark.slow
def test_blocks_of_eight_declared_as_seven_show_as_a_mismatch(residual_model, monkeypatch):
    """The blocks of 7 are what makes the declared delta safe: the same layers declaring
    blocks of 7 while the kernel takes 8 (lowering then asks for none) corrupt the result."""
    force_all_overlaps(monkeypatch)
    eight = write_order.dsp_conv_block
    monkeypatch.setattr(write_order, "dsp_conv_block",
                        lambda k, pixels: 7 if eight(k, pixels) == 8 else eight(k, pixels))
    report = verify(residual_model, "cortex-m4", samples=4, patch="off", profile=False)
    assert report.mismatched_outputs > 0


# ---- the generated C, with junk in the arena --------------------------------------------------


def test_chain_overlapped_is_bit_exact_on_host(chain_model, monkeypatch):
    force_all_overlaps(monkeypatch)
    report = verify(chain_model, "host", samples=20, patch="off", sanitize=True)
    assert report.samples == 22 and report.mismatched_outputs == 0


def test_unsafe_delta_shows_as_a_mismatch(chain_model, monkeypatch):
    """One alignment step past the 1x1 convolutions' safe delta corrupts the result: the
    junk-filled harness sees a violated lag."""
    force_all_overlaps(monkeypatch)
    safe = write_order.conv_delta

    def unsafe(p, cin, cout, filter_c, dsp):
        delta = safe(p, cin, cout, filter_c, dsp)
        return delta + 4 if p.get("filter_h", 1) == p.get("filter_w", 1) == 1 else delta

    monkeypatch.setattr(write_order, "conv_delta", unsafe)
    report = verify(chain_model, "host", samples=10, patch="off")
    assert report.mismatched_outputs > 0


@pytest.mark.slow
def test_chain_overlapped_is_bit_exact_on_cortex_m4(chain_model, monkeypatch):
    """The DSP convolutions' blocks (the last one repeating its pixel when overlapped)."""
    force_all_overlaps(monkeypatch)
    report = verify(chain_model, "cortex-m4", samples=10, patch="off", profile=False)
    assert report.mismatched_outputs == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kws_ref_model", "vww_96_int8", "pretrainedResnet_quant",
                                  "ad01_int8"])
@pytest.mark.parametrize("patch", ["off", "auto"])
def test_mlperf_overlapped_is_bit_exact_on_host(name, patch):
    report = verify(mlperf_model(name), "host", samples=20, patch=patch)
    assert report.mismatched_outputs == 0


@pytest.mark.slow
def test_vww_layer_by_layer_above_is_bit_exact_on_cortex_m4():
    """The plan compile makes (41,796 B), its 1x1 convolutions walking backward above their
    inputs in the DSP kernels, junk in the arena, in QEMU."""
    report = verify(mlperf_model("vww_96_int8"), "cortex-m4", samples=3, patch="off",
                    profile=False)
    assert report.mismatched_outputs == 0


@pytest.mark.slow
def test_kws_overlapped_is_bit_exact_on_cortex_m4():
    report = verify(mlperf_model("kws_ref_model"), "cortex-m4", samples=5, patch="off",
                    profile=False)
    assert report.mismatched_outputs == 0
