"""Patch-based inference (MCUNetV2): receptive fields, the search, bit-exact C, the report.

The C tests compare the *split tensor itself*, not only the model's output: the graph is cut
after the split layer (the split tensor becomes its output), compiled with the patch stage and
run; every element must equal the reference interpreter's value and TFLM's intermediate
tensor of the same name. A saturated softmax downstream could hide a wrong tile, a cut graph
cannot.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from support import tflite_zoo
from conftest import mlperf_model
from support.oracles import tflm_interpreter
from tinyml import reference
from tinyml.codegen.lowering import lower
from tinyml.codegen.project import generate_project
from tinyml.compiler import compile_model, plan
from tinyml.errors import TinymlError
from tinyml.frontends import load_model
from tinyml.frontends.tflite import load_tflite
from tinyml.passes import run_passes
from tinyml.schedule import plan_memory
from tinyml.schedule.patches import (PatchOption, choose_patching, stage_splits,
                                     why_not_patched)
from tinyml.schedule.receptive_field import Window, stage_geometry, tiles
from tinyml.sim import host
from tinyml.targets import load_target
from tinyml.verify import verify


# ---- models ---------------------------------------------------------------------------------

def patch_windows(x):
    """Every sliding-window kind: strides, SAME/VALID, dilation, depth multiplier, pools,
    non-square kernels and strides, odd sizes."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = L.Conv2D(12, 1)(y)
    y = L.DepthwiseConv2D(5, strides=2, padding="valid", depth_multiplier=2)(y)
    y = L.MaxPooling2D(2, strides=1, padding="same")(y)
    y = L.AveragePooling2D(3, strides=1, padding="same")(y)
    y = L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu")(y)
    y = L.Conv2D(16, (3, 1), strides=(1, 2), padding="same")(y)
    return L.Dense(10)(L.Flatten()(y))


def patch_residual(x):
    """Branches inside the stage: a residual block (CONV_2D_ADD whose skip input also feeds
    a window: a crop), a strided 1x1 shortcut, an ADD of two convolutions, LOGISTIC, MUL."""
    import tensorflow as tf
    L = tf.keras.layers
    a = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    b = L.DepthwiseConv2D(3, padding="same", activation="relu")(a)
    a = L.Add()([a, L.Conv2D(8, 1)(b)])
    e = L.Add()([L.Conv2D(8, 3, strides=2, padding="same")(a), L.Conv2D(8, 1, strides=2)(a)])
    f = L.Conv2D(8, 3, padding="same", activation="sigmoid")(e)
    g = L.Multiply()([e, f])
    return L.Dense(4)(L.GlobalAveragePooling2D()(L.ReLU()(g)))


def patch_odd(x):
    """A depth multiplier with stride 2 on an odd-sized input, VALID windows, a 1x5 kernel."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same")(x)
    y = L.Conv2D(6, 3, padding="valid", activation="relu")(y)
    y = L.Conv2D(6, (1, 5), padding="same")(y)
    y = L.MaxPooling2D(3, strides=2)(y)
    return L.Dense(3)(L.Flatten()(y))


def mobilenet_v2_half(x):
    import tensorflow as tf
    model = tf.keras.applications.MobileNetV2(input_shape=(128, 128, 3), alpha=0.5,
                                              weights=None, classes=10,
                                              classifier_activation=None)
    return model(x)


ZOO = {"windows": (patch_windows, (1, 40, 36, 3)), "residual": (patch_residual, (1, 24, 20, 4)),
       "odd": (patch_odd, (1, 17, 23, 2))}


def zoo_model(name: str, **kwargs):
    build, shape = ZOO[name]
    return tflite_zoo.convert(build, [shape], **kwargs)


def compiled_graph(path):
    graph = run_passes(load_model(path))
    return graph, lower(graph)


def cut_after(graph, k: int):
    """The graph up to layer k, whose output is layer k's output."""
    cut = copy.copy(graph)
    cut.ops = list(graph.ops[:k + 1])
    cut.outputs = [graph.ops[k].outputs[0]]
    return cut


def run_c(graph, option: str, outdir, samples, sanitize: bool = False):
    """Compile ``graph`` for the host with ``--patch option``, run the samples."""
    calls = lower(graph)
    layerwise = plan_memory(graph, calls)
    schedule = choose_patching(graph, calls, layerwise, option)
    generate_project(graph, calls, schedule.plan if schedule else layerwise,
                     load_target("host"), outdir, model_file="cut", macs=0, patch=schedule)
    return schedule, host.run(host.build(outdir, sanitize=sanitize), graph, samples)


def int8_samples(graph, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = graph.tensors[graph.inputs[0]].shape
    samples = [[rng.integers(-128, 128, shape).astype(np.int8)] for _ in range(count)]
    return samples + [[np.full(shape, -128, np.int8)], [np.full(shape, 127, np.int8)]]


# ---- receptive fields -----------------------------------------------------------------------

def test_tiles_cut_an_axis_into_near_equal_parts():
    assert tiles(24, 8) == [(3 * i, 3 * i + 3) for i in range(8)]
    assert tiles(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert tiles(5, 5) == [(i, i + 1) for i in range(5)]
    with pytest.raises(ValueError):
        tiles(3, 4)


def _brute_need(window: Window, out: tuple[int, int], size: int) -> tuple[int, int]:
    """Every input index some tap of outputs ``out`` lands on inside [0, size), enumerated."""
    hit = [o * window.stride - window.pad_before + k * window.dilation
           for o in range(*out) for k in range(window.kernel)]
    hit = [i for i in hit if 0 <= i < size]
    return min(hit), max(hit) + 1


@pytest.mark.parametrize("kernel,stride,dilation,pad", [(3, 1, 1, 1), (3, 2, 1, 0),
                                                        (5, 2, 1, 2), (3, 1, 2, 2),
                                                        (1, 2, 1, 0), (2, 2, 1, 0)])
def test_window_need_is_exactly_the_taps(kernel, stride, dilation, pad):
    size = 23
    window = Window(kernel, stride, dilation, pad)
    out_size = (size + 2 * pad - window.extent) // stride + 1
    for start in range(out_size):
        for stop in range(start + 1, out_size + 1):
            assert window.need((start, stop), size) == _brute_need(window, (start, stop), size)


def test_a_tile_depends_only_on_its_input_window():
    """For each patch, replacing every input pixel outside the computed window with other
    values leaves the reference interpreter's tile of the split tensor unchanged; moving the
    window's inner edges in by one pixel changes it (the halo is not oversized)."""
    graph, calls = compiled_graph(zoo_model("windows"))
    source = graph.inputs[0]
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, graph.tensors[source].shape).astype(np.int8)
    for k, grid in ((3, (2, 3)), (6, (3, 2))):
        cut = cut_after(graph, k)
        geometry = stage_geometry(graph, graph.ops[:k + 1], cut.outputs[0], grid)
        full = reference.run(cut, [x])[cut.outputs[0]]
        _, h, w, _ = graph.tensors[source].shape
        for py in range(grid[0]):
            for px in range(grid[1]):
                (r0, r1), (c0, c1) = geometry.rows[cut.outputs[0]][py], \
                    geometry.cols[cut.outputs[0]][px]
                needs = geometry.needs[(0, 0)]
                (a0, a1), (b0, b1) = needs[0][py], needs[1][px]
                tile = full[:, r0:r1, c0:c1]
                outside = rng.integers(-128, 128, x.shape).astype(np.int8)
                outside[:, a0:a1, b0:b1] = x[:, a0:a1, b0:b1]
                assert np.array_equal(reference.run(cut, [outside])[cut.outputs[0]][:, r0:r1,
                                                                                     c0:c1],
                                      tile), (k, grid, py, px)
                if a0 > 0:  # shrink the window at an inner edge: the tile must change
                    shrunk = outside.copy()
                    shrunk[:, a0] = rng.integers(-128, 128, shrunk[:, a0].shape)
                    assert not np.array_equal(
                        reference.run(cut, [shrunk])[cut.outputs[0]][:, r0:r1, c0:c1], tile)


# ---- the option and its errors ----------------------------------------------------------------

def test_patch_option_parsing():
    assert PatchOption.parse("auto").mode == "auto"
    assert PatchOption.parse(None).mode == "auto"
    assert PatchOption.parse("off").mode == "off"
    assert PatchOption.parse("3:4") == PatchOption("forced", "3", (4, 4))
    assert PatchOption.parse("3:4x2") == PatchOption("forced", "3", (4, 2))
    assert PatchOption.parse("Identity:0:2x3") == PatchOption("forced", "Identity:0", (2, 3))
    for bad in ("on", "3", "3:", ":4", "3:4x", "3:x2"):
        with pytest.raises(TinymlError, match="expected auto, off or SPLIT:N"):
            PatchOption.parse(bad)


def tinyml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyml.cli", *args], capture_output=True,
                          text=True, timeout=900)


@pytest.mark.parametrize("option,message", [
    ("sideways", "expected auto, off or SPLIT:N"),
    ("99:2", "the compiled graph has 31 layers"),
    ("nope:2", "no layer or tensor named 'nope'"),
    ("29:2", "layer 'model/flatten/Reshape' (RESHAPE) cannot run patch by patch"),
    ("3:25", "the split tensor is 24x24"),
])
def test_bad_patch_options_are_one_line_errors(tmp_path, option, message):
    result = tinyml("compile", str(mlperf_model("vww_96_int8")), "-o", str(tmp_path / "p"),
                    "--patch", option)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tinyml: error: "), result.stderr
    assert message in lines[0], lines[0]
    assert not (tmp_path / "p").exists()


# ---- bit-exact C: the split tensor of every split, grids square and not -----------------------

GRIDS = ["2", "3x1", "1x4", "3x2"]


@pytest.mark.parametrize("name", list(ZOO))
def test_split_tensor_is_bit_exact_for_every_split(name, tmp_path):
    path = zoo_model(name)
    graph, calls = compiled_graph(path)
    names = list(load_tflite(path).tensors)
    interpreter = tflm_interpreter(path)
    samples = int8_samples(graph, 3)
    splits = stage_splits(graph, calls)
    assert len(splits) >= 4 if name != "residual" else splits == [0, 2, 4, 7]
    for n, k in enumerate(splits):
        cut = cut_after(graph, k)
        option = f"{k}:{GRIDS[n % len(GRIDS)]}"
        schedule, outputs = run_c(cut, option, tmp_path / f"s{k}", samples)
        assert schedule is not None and schedule.split_index == k
        split = cut.outputs[0]
        for sample, (got,) in zip(samples, outputs):
            want = reference.run(cut, sample)[split]
            interpreter.set_input(sample[0], 0)
            interpreter.invoke()
            tflm = interpreter.GetTensor(names.index(split), 0)["tensor_data"]
            assert np.array_equal(want, tflm), f"reference differs from TFLM at {split}"
            assert np.array_equal(got, want), (name, option, int((got != want).sum()))


def test_crop_in_place_and_residual_under_sanitizers(tmp_path):
    """The residual model's deepest split: a crop of the skip input written over itself, a
    fused residual convolution in place over the crop, all under ASan/UBSan."""
    graph, _ = compiled_graph(zoo_model("residual"))
    cut = cut_after(graph, 7)
    samples = int8_samples(graph, 2)
    schedule, outputs = run_c(cut, "7:2x3", tmp_path / "p", samples, sanitize=True)
    copies = [s for s in schedule.steps if s.is_copy]
    assert copies and any(u[1] == copies[0].op.inputs[0] for u in schedule.memory.stage_in_place)
    for sample, (got,) in zip(samples, outputs):
        assert np.array_equal(got, reference.run(cut, sample)[cut.outputs[0]])


def test_float_input_is_quantized_patch_by_patch_under_sanitizers(tmp_path):
    """A float32 input: the stage starts with QUANTIZE, which reads a float window copied
    out of the input."""
    graph, calls = compiled_graph(zoo_model("odd", int8_io=False))
    assert graph.ops[0].kind == "QUANTIZE"
    k = stage_splits(graph, calls)[-1]
    cut = cut_after(graph, k)
    rng = np.random.default_rng(1)
    shape = graph.tensors[graph.inputs[0]].shape
    samples = [[rng.normal(0, 1, shape).astype(np.float32)] for _ in range(3)]
    schedule, outputs = run_c(cut, f"{k}:3x2", tmp_path / "p", samples, sanitize=True)
    assert schedule.steps[0].is_copy and schedule.buffers[schedule.steps[0].op.outputs[0]].dtype \
        == "float32"
    for sample, (got,) in zip(samples, outputs):
        assert np.array_equal(got, reference.run(cut, sample)[cut.outputs[0]])


# ---- the search on real models -------------------------------------------------------------------

VWW_BUDGET = 40960  # 40 KB, against TFLM's 103,680 B arena for vww_96_int8


def test_vww_auto_patching_plan():
    """--optimize memory: the whole 96x96x3 input (27,648 B) in RAM and under 30,000 B in
    all: the first (strided) convolution overlaps its input layer by layer, then a
    line-buffer stage computes every row once (no extra MACs), its split tensor inside the
    stage input's dead rows."""
    result = plan(mlperf_model("vww_96_int8"), "host", optimize="memory")
    report = result.report()
    patch = report["patch"]
    print(json.dumps(patch), report["peak_sram_bytes"], report["peak_sram_bytes_layerwise"])
    # overlapped 1x1 convolutions, below their input or (walking backward) above it
    assert report["peak_sram_bytes_layerwise"] == 39276
    assert patch is not None and report["peak_sram_bytes"] <= 30000
    assert patch["line_buffers"] and patch["first_layer"] >= 1 and patch["mac_overhead"] <= 0
    image = result.graph.tensors[result.graph.inputs[0]].nbytes
    assert image == 27648 and report["peak_sram_bytes"] >= image
    macs = sum(result.patch.layer_macs.values())  # each row of each stage layer once
    assert macs == sum(_layer_macs_of(result.graph, i) for i in result.patch.stage)


def _layer_macs_of(graph, index: int) -> int:
    """Kernel taps x output pixels: kh*kw*cin*cout (or kh*kw*channels for a depthwise
    layer) per output pixel, counted here from the shapes."""
    op = graph.ops[index]
    _, oh, ow, _ = graph.tensors[op.outputs[0]].shape
    return int(np.prod(graph.tensors[op.inputs[1]].shape)) * oh * ow


def test_vww_grid_patching_plan():
    """A forced grid (halos recomputed): its MACs as counted independently, and the input
    and the split tensor in the arena with the patch buffers."""
    result = plan(mlperf_model("vww_96_int8"), "host", optimize="memory", patch="3:8x8")
    report = result.report()
    patch = report["patch"]
    assert patch is not None and report["peak_sram_bytes"] <= VWW_BUDGET
    assert 0 < patch["mac_overhead"] <= 0.2
    assert patch["macs"] == _patched_macs_of_chain(result.graph, patch, report["macs"])
    # The input image (27,648 B) and the split tensor are in the arena with the patch buffers.
    source = result.graph.tensors[result.graph.inputs[0]]
    split = result.graph.tensors[patch["split_tensor"]]
    buffers = result.patch.memory.stage_sizes
    assert source.nbytes + split.nbytes + max(buffers.values()) <= report["peak_sram_bytes"]
    assert result.plan.offsets[source.name] != result.plan.offsets[split.name]


def _patched_macs_of_chain(graph, patch: dict, layerwise_macs: int) -> int:
    """MACs of one patched inference, counted here: the split tensor cut into near-equal
    tiles, each tile's input rows and columns derived back layer by layer from the kernel
    taps (stage layers form a chain), every stage layer's MACs per output pixel (its weight
    count: kh*kw*cin*cout, or kh*kw*channels for a depthwise one) times the summed area of
    its per-patch outputs; the layers after the split as layer by layer."""
    stage = graph.ops[:patch["split_index"] + 1]
    for before, op in zip(stage, stage[1:]):
        assert op.inputs[0] == before.outputs[0], "the count below assumes a chain"
    rows_tiles, cols_tiles = patch["grid"]

    def cut(size, parts):  # near-equal tiles, the larger ones first
        sizes = [size // parts + (i < size % parts) for i in range(parts)]
        edges = np.concatenate([[0], np.cumsum(sizes)])
        return [(int(a), int(b)) for a, b in zip(edges, edges[1:])]

    _, h, w, _ = graph.tensors[stage[-1].outputs[0]].shape
    rows, cols = cut(h, rows_tiles), cut(w, cols_tiles)  # output spans, per patch index
    stage_layerwise = stage_patched = 0
    for op in reversed(stage):
        per_pixel = int(np.prod(graph.tensors[op.inputs[1]].shape))
        _, oh, ow, _ = graph.tensors[op.outputs[0]].shape
        stage_layerwise += per_pixel * oh * ow
        stage_patched += per_pixel * sum((r1 - r0) * (c1 - c0)
                                         for r0, r1 in rows for c0, c1 in cols)
        _, kh, kw, _ = graph.tensors[op.inputs[1]].shape
        _, ih, iw, _ = graph.tensors[op.inputs[0]].shape
        top, _, left, _ = op.attrs.padding
        (sr, sc), (dr, dc) = op.attrs.stride, op.attrs.dilation
        rows = [(max(0, a * sr - top), min(ih, (b - 1) * sr - top + (kh - 1) * dr + 1))
                for a, b in rows]
        cols = [(max(0, a * sc - left), min(iw, (b - 1) * sc - left + (kw - 1) * dc + 1))
                for a, b in cols]
    return layerwise_macs - stage_layerwise + stage_patched


def test_vww_patched_is_bit_exact_on_host():
    report = verify(mlperf_model("vww_96_int8"), "host", samples=100, optimize="memory")
    assert report.samples == 102 and report.mismatched_outputs == 0


def test_vww_patched_under_sanitizers():
    report = verify(mlperf_model("vww_96_int8"), "host", samples=10, sanitize=True,
                    optimize="memory")
    assert report.sanitized and report.mismatched_outputs == 0


def test_patch_off_and_models_patching_cannot_help():
    off = plan(mlperf_model("vww_96_int8"), "host", patch="off").report()
    assert off["patch"] is None and off["peak_sram_bytes"] == 39276  # with overlaps
    kws = plan(mlperf_model("kws_ref_model"), "host")  # same-size layers throughout
    report = kws.report()
    assert report["patch"] is None
    # 8,312 B: the 1x1 convolutions write over their dying inputs (tests/test_overlap.py).
    assert report["peak_sram_bytes"] == report["peak_sram_bytes_layerwise"] == 8312
    why = why_not_patched(kws.graph, kws.calls, kws.plan)
    assert _quoted_arena_is_the_exact_plan(kws, why) > 8312
    # No extra MACs allowed: only line-buffer stages, which compute each row once.
    vww = plan(mlperf_model("vww_96_int8"), "host", patch_overhead=0.0, optimize="memory")
    assert vww.patch.lines and vww.patch.mac_overhead <= 0


def _quoted_arena_is_the_exact_plan(result, why: str) -> int:
    """The arena ``why`` quotes for its best candidate is the exact plan of that split and
    grid, forced, and no less than the layer-by-layer arena it is compared with."""
    match = re.fullmatch(r"the best split within [\d.]+ % extra MACs \(layer '(.+)', "
                         r"(?:(\d+)x(\d+) patches|(\d+) bands of rows with line buffers)"
                         r"(?: from layer (\d+))?\) needs ([\d,]+) B, no less than the "
                         r"([\d,]+) B of running layer by layer", why)
    assert match, why
    layer, rows, cols, bands, start = (match.group(i) for i in range(1, 6))
    quoted, layerwise = (int(match.group(i).replace(",", "")) for i in (6, 7))
    grid = f"{bands}rows" if bands else f"{rows}x{cols}"
    forced = choose_patching(result.graph, result.calls, result.plan,
                             f"{start + '..' if start else ''}{layer}:{grid}")
    assert forced.split_layer == layer and quoted == forced.plan.arena_bytes
    assert layerwise == result.plan.arena_bytes <= quoted
    return quoted


def one_pixel(x):
    """A 1x1 image: no tensor can be cut into tiles."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(8, 1, activation="relu")(x)
    return L.Dense(4)(L.Flatten()(y))


def test_report_says_why_a_one_pixel_model_has_no_patches(tmp_path):
    model = tflite_zoo.convert(one_pixel, [(1, 1, 1, 8)])
    out = tmp_path / "report.html"
    result = tinyml("report", str(model), "--target", "host", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "no tensor can be cut into 2 or more tiles" in out.read_text()


@pytest.mark.parametrize("budgets", [
    pytest.param((0.0, 0.2), id="ends"),
    pytest.param((0.0, 0.02, 0.05, 0.2), id="all", marks=pytest.mark.slow)])
def test_overhead_budget_is_respected(budgets):
    path = mlperf_model("vww_96_int8")
    previous = None
    for budget in budgets:
        report = plan(path, "host", patch_overhead=budget, optimize="memory").report()
        if report["patch"] is not None:
            assert report["patch"]["mac_overhead"] <= budget
            assert report["peak_sram_bytes"] < report["peak_sram_bytes_layerwise"]
        if previous is not None:  # a larger budget never yields a larger arena
            assert report["peak_sram_bytes"] <= previous
        previous = report["peak_sram_bytes"]


@pytest.mark.slow
def test_vww_on_cortex_m4(tmp_path):
    """Peak SRAM (input image included) <= 40,960 B, <= 20 % extra MACs, and 0
    mismatches in QEMU."""
    model = str(mlperf_model("vww_96_int8"))
    result = tinyml("compile", model, "--target", "cortex-m4", "-o", str(tmp_path / "p"),
                    "--patch", "auto", "--optimize", "memory", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    print(json.dumps({k: report[k] for k in ("peak_sram_bytes", "peak_sram_bytes_layerwise",
                                             "patch", "ram_bytes", "stack_bytes")}))
    assert report["peak_sram_bytes"] <= VWW_BUDGET and report["patch"]["mac_overhead"] <= 0.2
    assert report["bss_bytes"] >= report["peak_sram_bytes"]
    checked = verify(model, "cortex-m4", samples=20, profile=False, optimize="memory")
    print(checked.to_json())
    assert checked.mismatched_outputs == 0 and checked.samples == 22


@pytest.mark.slow
def test_mobilenet_v2_patched_peak_is_at_most_half(tmp_path):
    """Keras MobileNetV2 (alpha 0.5, 128x128x3, random weights, int8 by the TFLite
    converter): patched peak SRAM <= 0.5 x tinyml's layer-by-layer peak, bit-exact."""
    path = tflite_zoo.convert(mobilenet_v2_half, [(1, 128, 128, 3)])
    start = time.perf_counter()
    result = plan(path, "host", optimize="memory")
    seconds = time.perf_counter() - start
    report = result.report()
    print(f"\nMobileNetV2 0.5/128: {report['peak_sram_bytes']:,} B patched vs "
          f"{report['peak_sram_bytes_layerwise']:,} B layer by layer; {report['patch']}; "
          f"plan with search {seconds:.1f} s")
    assert report["patch"] is not None
    assert report["peak_sram_bytes"] <= 0.5 * report["peak_sram_bytes_layerwise"]
    assert report["patch"]["mac_overhead"] <= 0.2
    checked = verify(path, "host", samples=10, optimize="memory")
    assert checked.mismatched_outputs == 0 and checked.oracle == "reference+tflite-micro"
    # The split tensor itself, against TFLM's intermediate tensor.
    graph, _ = result.graph, result.calls
    k = report["patch"]["split_index"]
    cut = cut_after(graph, k)
    samples = int8_samples(graph, 2)
    schedule, outputs = run_c(cut, f"{k}:{report['patch']['grid'][0]}x"
                                   f"{report['patch']['grid'][1]}", tmp_path / "cut", samples)
    names = list(load_tflite(path).tensors)
    interpreter = tflm_interpreter(path)
    for sample, (got,) in zip(samples, outputs):
        interpreter.set_input(sample[0], 0)
        interpreter.invoke()
        want = interpreter.GetTensor(names.index(cut.outputs[0]), 0)["tensor_data"]
        assert np.array_equal(got, want)


# ---- the report ----------------------------------------------------------------------------------

def _html_figures(text: str) -> dict:
    cells = dict(re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', text))
    import html
    return {k: json.loads(html.unescape(v)) for k, v in cells.items()}


@pytest.mark.parametrize("args", [["--optimize", "memory"], ["--patch", "off"]])
def test_report_figures_equal_compile_json(tmp_path, args):
    model = str(mlperf_model("vww_96_int8"))
    compiled = tinyml("compile", model, "-o", str(tmp_path / "p"), "--json", *args)
    assert compiled.returncode == 0, compiled.stderr
    expected = json.loads(compiled.stdout)
    out = tmp_path / "report.html"
    result = tinyml("report", model, "--target", "host", "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    shown = _html_figures(text)
    for key in ("peak_sram_bytes", "peak_sram_bytes_layerwise", "peak_layer", "macs"):
        assert shown[key] == expected[key], key
    patch = expected["patch"]
    if patch is None:
        assert shown["patch"] is None
    else:
        for key in ("split_layer", "grid", "mac_overhead", "macs"):
            assert shown[f"patch.{key}"] == patch[key], key
    embedded = json.loads(re.search(r'<script type="application/json" id="figures">(.*?)'
                                    r'</script>', text, re.S).group(1))
    assert embedded == {k: expected[k] for k in embedded}
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    rows = re.findall(r"<tr class=\"(stage)?\"><td>(\d+)</td>", text)
    assert len(rows) == 31  # one row per layer of the compiled vww graph
    assert sum(1 for stage, _ in rows if stage) == (patch["layers"] if patch else 0)


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a host C compiler")
def test_generated_stage_is_a_loop_over_patches(tmp_path):
    result = compile_model(mlperf_model("vww_96_int8"), "host", tmp_path / "p",
                           optimize="memory")
    rows, cols = result.patch.grid
    text = (tmp_path / "p" / "model.c").read_text()
    body = text[text.index("int tinyml_invoke(void)"):]
    assert f"for (py = 0; py < {rows}; ++py)" in body
    assert f"for (px = 0; px < {cols}; ++px)" in body
    moves = body.count("_kept[py].size > 0)")  # line buffers moving kept rows up
    assert result.patch.lines and moves > 0
    assert body.count("tinyml_patch_copy(") == 1 + moves + sum(s.is_copy
                                                               for s in result.patch.steps)
    for index in result.patch.stage:  # each stage layer is called once, inside the loop
        assert body.count(f"/* {result.graph.ops[index].name} (") == 1
