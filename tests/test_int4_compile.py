"""Compiling int4 graphs: the generated C (packed int4 filters in weights.c, the ``*_s4``
kernels) runs bit-exact with the reference interpreter on the host under the sanitizers, in
QEMU on cortex-m4 (the DSP kernels) and cortex-m0plus (the portable ones, Armv6-M), layer by
layer and patch by patch; weights_bytes counts the packed bytes.

The graph is the converter-made zoo CNN (tests/support/small_models.py: strided and dilated
convolutions, a depthwise convolution with multiplier 2, a 1x1 convolution, two dense layers)
with every filter requantized to int4 by the test fixture (tests/support/int4_graphs.py).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from support.int4_graphs import requantize_int4
from support.small_models import zoo_models
from tinyml import reference
from tinyml.codegen.int4_layout import packed_row_bytes
from tinyml.codegen.lowering import lower
from tinyml.compiler import compile_model
from tinyml.frontends import load_model
from tinyml.passes import run_passes
from tinyml.schedule.patches import stage_splits
from tinyml.sim import host, qemu
from tinyml.targets import load_target
from tinyml.verify import make_samples

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")
needs_arm = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or not qemu.available(),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (make system-deps)")


@pytest.fixture(scope="module")
def graphs():
    """(int8 graph, its int4 twin)."""
    pytest.importorskip("tensorflow")
    graph = load_model(zoo_models()[0])
    return graph, requantize_int4(graph)


def expected(graph, samples):
    return [[reference.run(graph, s)[name] for name in graph.outputs] for s in samples]


def check_outputs(graph, samples, produced):
    for want, got in zip(expected(graph, samples), produced):
        for a, b in zip(want, got):
            assert np.array_equal(a, b), int((a != b).sum())


def test_int4_graph_lowers_to_s4_kernels_with_packed_filters(graphs):
    graph8, graph4 = graphs
    calls = lower(run_passes(graph4))
    functions = [c.function for c in calls if c.op.kind in
                 ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert functions and all(f.endswith("_s4") for f in functions)
    assert {"tinyml_conv2d_s4", "tinyml_conv2d_1x1_s4", "tinyml_depthwise_conv2d_3x3_s4",
            "tinyml_fully_connected_s4"} <= set(functions)
    # The int4 graph computes something other than the int8 one (it is a different model)
    # but not garbage: most outputs stay close.
    sample = make_samples(graph8, 1)[0]
    out8 = reference.run(graph8, sample)[graph8.outputs[0]].astype(int)
    out4 = reference.run(graph4, sample)[graph4.outputs[0]].astype(int)
    assert np.abs(out8 - out4).max() < 64


def test_weights_bytes_count_packed_filters(graphs, tmp_path):
    """weights.c holds the packed filters: weights_bytes shrinks by exactly what packing
    saves."""
    graph8, graph4 = graphs
    result = compile_model(graph4, "host", tmp_path / "int4", patch="off")
    result8 = compile_model(graph8, "host", tmp_path / "int8", patch="off")
    saved = 0
    for op in result.graph.ops:
        w = result.graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
        if w is not None and w.dtype == "int4":
            rows = w.shape[3] if op.kind == "DEPTHWISE_CONV_2D" else w.shape[0]
            saved += w.size - rows * packed_row_bytes(w.size // rows)
    assert saved > 0
    assert result8.project.weights_bytes - result.project.weights_bytes == saved
    assert result.report()["weights_bytes"] == result.project.weights_bytes


def _patched_on_host(graph4, split: int, tmp_path, samples):
    result = compile_model(graph4, "host", tmp_path / f"p{split}", patch=f"{split}:2")
    assert result.patch is not None
    stage_functions = {s.call.function for s in result.patch.steps if not s.is_copy}
    assert any(f.endswith("_s4") for f in stage_functions)
    binary = host.build(result.project.output_dir, sanitize=True)
    check_outputs(graph4, samples, host.run(binary, graph4, samples))


@needs_cc
def test_int4_patch_stage_bit_exact_on_host_under_sanitizers(graphs, tmp_path):
    """Patch-based inference of the int4 layers (the stage's kernels on patch windows), the
    deepest stage, under ASan/UBSan (layer by layer: the QEMU tests)."""
    _, graph4 = graphs
    passed = run_passes(graph4)
    splits = stage_splits(passed, lower(passed))
    _patched_on_host(graph4, splits[-1], tmp_path, make_samples(graph4, 2))


@needs_cc
@pytest.mark.slow
def test_int4_every_patch_stage_and_layerwise_on_host(graphs, tmp_path):
    _, graph4 = graphs
    passed = run_passes(graph4)
    samples = make_samples(graph4, 3)
    for split in stage_splits(passed, lower(passed))[:-1]:
        _patched_on_host(graph4, split, tmp_path, samples)
    result = compile_model(graph4, "host", tmp_path / "layerwise", patch="off")
    binary = host.build(result.project.output_dir, sanitize=True)
    check_outputs(graph4, samples, host.run(binary, graph4, samples))


def run_in_qemu(graph, target_name: str, tmp_path, samples: int = 3, patch: str = "off"):
    from tinyml import firmware
    target = load_target(target_name)
    result = compile_model(graph, target, tmp_path / target_name, patch=patch)
    inputs = make_samples(graph, samples)
    run = qemu.run_samples(firmware.build_harness(result.project.output_dir, target), target,
                           graph, inputs)
    check_outputs(graph, inputs, run.outputs)
    return result, run


@needs_arm
def test_int4_bit_exact_in_qemu_cortex_m4(graphs, tmp_path):
    result, run = run_in_qemu(graphs[1], "cortex-m4", tmp_path)
    assert result.sizes["flash_bytes"] > result.project.weights_bytes
    assert min(run.instructions) > 0


@needs_arm
@pytest.mark.slow
def test_int4_patch_stage_bit_exact_in_qemu_cortex_m4(graphs, tmp_path):
    """The DSP kernels (and their scratch) on patch windows."""
    graph4 = graphs[1]
    passed = run_passes(graph4)
    split = stage_splits(passed, lower(passed, load_target("cortex-m4")))[-1]
    result, _ = run_in_qemu(graph4, "cortex-m4", tmp_path, patch=f"{split}:2")
    assert result.patch is not None


@needs_arm
@pytest.mark.slow
def test_int4_bit_exact_in_qemu_cortex_m0plus(graphs, tmp_path):
    run_in_qemu(graphs[1], "cortex-m0plus", tmp_path)


def kernel_zoo_graph():
    """One int4 graph through the DSP kernels' special cases (the host tests run their C
    twins; QEMU runs the assembly loops): windows of 45 (groups of eight, a half group, a
    scalar), 13 (1x1), 108 and 180 values, a depthwise layer on the pixel path, and fully
    connected layers of 203 (a dense tail of 3), 13 and 256 inputs."""
    from support.graph_builder import Builder
    from tinyml.ir import ops as irops

    b = Builder("int4_kernel_zoo", 77)

    def conv(x, cin, cout, kernel, stride=(1, 1), pad=(1, 1, 1, 1), act="RELU"):
        w = b.int8_const((cout, kernel, kernel, cin), 0)
        bias = b.bias(cout, float(np.float32(b.graph.tensors[x].scale() * 0.01)))
        scale = float(np.float32(b.graph.tensors[x].scale() * 0.01 * np.sqrt(kernel * kernel
                                                                            * cin) * 40))
        return b.op("CONV_2D", [x, w, bias], irops.Conv2DAttrs(stride, (1, 1), pad, act),
                    scale)

    def dense(x, depth, units, act="NONE"):
        w = b.int8_const((units, depth), 0)
        bias = b.bias(units, float(np.float32(b.graph.tensors[x].scale() * 0.01)))
        scale = float(np.float32(b.graph.tensors[x].scale() * 0.01 * np.sqrt(depth) * 40))
        return b.op("FULLY_CONNECTED", [x, w, bias], irops.FullyConnectedAttrs(act, False),
                    scale)

    x = b.input((1, 10, 10, 5), scale=0.02)
    y = conv(x, 5, 13, 3)
    wd = b.int8_const((1, 3, 3, 13), 3)
    bd = b.bias(13, 0.0002)
    y = b.op("DEPTHWISE_CONV_2D", [y, wd, bd],
             irops.DepthwiseConv2DAttrs((1, 1), (1, 1), (1, 1, 1, 1), "RELU6", 1),
             float(np.float32(b.graph.tensors[y].scale() * 0.01 * 3 * 40)))
    y = conv(y, 13, 12, 1, pad=(0, 0, 0, 0))
    y = conv(y, 12, 20, 3, stride=(2, 2), pad=(0, 1, 0, 1))
    y = conv(y, 20, 10, 3, act="NONE")
    x2 = b.input((1, 203), scale=0.02)
    z = dense(dense(x2, 203, 13, "RELU"), 13, 64)
    x3 = b.input((2, 256), scale=0.02)
    v = dense(x3, 256, 10)
    graph, _ = b.finish(y, z, v)
    return requantize_int4(graph)


@needs_arm
@pytest.mark.slow
def test_int4_kernel_zoo_bit_exact_in_qemu_cortex_m4(tmp_path):
    graph = kernel_zoo_graph()
    result, _ = run_in_qemu(graph, "cortex-m4", tmp_path, samples=4)
    functions = {c.function for c in result.calls}
    assert {"tinyml_conv2d_s4", "tinyml_conv2d_1x1_s4", "tinyml_depthwise_conv2d_3x3_s4",
            "tinyml_fully_connected_s4"} <= functions
