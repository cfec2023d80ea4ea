"""Sparse weights through the whole compiler, and flash per layer.

The test model is the example keyword-spotting CNN (tiny_kws_int8.tflite) with 80 % of the
smallest-magnitude weights of its convolutions and dense layer set to 0, written back as an
int8 TFLite file: TFLM runs it (dense) as the second oracle besides the numpy reference,
while tinyml stores those layers as run-length rows. ``compile --json`` reports flash per
layer (summing to weights_bytes), ``tinyml report`` shows it, and a flash budget the model
misses fails with one line naming need, budget and the largest layer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from support.sparse_models import sparsify
from tinyml.compiler import compile_model, plan
from tinyml.errors import TinymlError
from tinyml.frontends import load_model
from tinyml.quantize.tflite_export import write_tflite
from tinyml.targets import load_target
from tinyml.verify import verify

EXAMPLE = REPO / "examples" / "tiny_kws_int8.tflite"


def tinyml(*args: str) -> subprocess.CompletedProcess:
    """The command line, printing tables 200 columns wide (rows whole, not folded)."""
    return subprocess.run([sys.executable, "-m", "tinyml.cli", *args], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, COLUMNS="200"))


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """The example pruned to 80 % zeros, as a TFLite file."""
    graph, _ = sparsify(load_model(EXAMPLE), 0.8, seed=1)
    path = tmp_path_factory.mktemp("sparse") / "kws80.tflite"
    write_tflite(graph, path)
    return path


def test_pruned_layers_are_stored_sparse_and_flash_per_layer_sums(pruned, tmp_path):
    result = tinyml("compile", str(pruned), "--target", "host", "-o", str(tmp_path / "p"),
                    "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    layers = report["layers_flash"]
    assert sum(layer["bytes"] for layer in layers) == report["weights_bytes"]
    formats = {layer["op"]: layer["format"] for layer in layers}
    assert formats["CONV_2D"] == formats["FULLY_CONNECTED"] == "sparse8"
    assert formats["DEPTHWISE_CONV_2D"] == "dense int8"  # not a sparse candidate
    assert formats["SOFTMAX"] == "-"
    dense = json.loads(tinyml("compile", str(EXAMPLE), "--target", "host", "-o",
                              str(tmp_path / "d"), "--json").stdout)
    assert sum(layer["bytes"] for layer in dense["layers_flash"]) == dense["weights_bytes"]
    assert {layer["format"] for layer in dense["layers_flash"]
            if layer["op"] in ("CONV_2D", "FULLY_CONNECTED")} == {"dense int8"}
    for ours, theirs in zip(layers, dense["layers_flash"]):
        assert ours["name"] == theirs["name"]
        if ours["format"].startswith("sparse"):
            # 80 % zeros in 1.5 B per non-zero plus 2 B per row: well under half.
            assert ours["weights_bytes"] < 0.5 * theirs["weights_bytes"], ours
        else:
            assert ours["bytes"] == theirs["bytes"]
    weights_c = (tmp_path / "p" / "weights.c").read_text()
    assert "_stream[" in weights_c and "const uint16_t" in weights_c


@pytest.mark.slow
def test_pruned_model_is_bit_exact_on_the_host_under_sanitizers(pruned):
    report = verify(pruned, "host", samples=3, sanitize=True).to_json()
    assert report["oracle"] == "reference+tflite-micro"
    assert report["mismatched_outputs"] == 0, report


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or
                    shutil.which("arm-none-eabi-gcc") is None, reason="no ARM toolchain/QEMU")
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
def test_pruned_model_is_bit_exact_in_qemu(pruned, target):
    report = verify(pruned, target, samples=2, profile=False).to_json()
    assert report["oracle"] == "reference+tflite-micro"
    assert report["mismatched_outputs"] == 0, report


def test_report_shows_flash_per_layer(pruned, tmp_path):
    out = tmp_path / "report.html"
    result = tinyml("report", str(pruned), "--target", "cortex-m4", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "sparse8" in result.stdout and "weight filters" in result.stdout
    text = out.read_text()
    table = text.split('<table id="flash">')[1].split("</table>")[0]
    figures = json.loads(text.split('id="figures">')[1].split("</script>")[0])
    compiled = plan(pruned, "cortex-m4").report()
    assert figures["layers_flash"] == compiled["layers_flash"]
    sparse_layers = [layer for layer in compiled["layers_flash"] if layer["format"] == "sparse8"]
    assert len(sparse_layers) == 4  # the three convolutions and the dense layer
    assert table.count("<td>sparse8</td>") == 4
    for layer in compiled["layers_flash"]:
        assert f"<td>{layer['format']}</td><td>{layer['weights_bytes']:,}</td>" \
               f"<td>{layer['bytes']:,}</td>" in table


def test_flash_budget_error_is_one_line_naming_need_budget_and_largest_layer(tmp_path):
    """A part whose flash the example's constants do not fit: one line, nothing written."""
    target = dataclasses.replace(load_target("cortex-m4"), flash_bytes=1000)
    out = tmp_path / "p"
    with pytest.raises(TinymlError) as error:
        compile_model(EXAMPLE, target, out)
    message = str(error.value)
    assert "\n" not in message
    layers = plan(EXAMPLE, "cortex-m4").layers_flash()
    weights = sum(layer.bytes for layer in layers)
    assert f"at least {weights:,} B" in message and "has 1,000 B" in message
    largest = max(layers, key=lambda layer: layer.bytes)
    assert largest.op == "CONV_2D" and largest.bytes == 448
    assert f"largest layer '{largest.name}' (CONV_2D, weights dense int8) holds 448 B" \
        in message
    assert not out.exists()


def test_sparse_convolutions_in_a_patch_stage(pruned, tmp_path):
    """The sparse kernels run on windows like the dense ones (patch geometry "window" and
    "pointwise"): a stage through the padded 3x3 convolution and two 1x1 ones; the flash per
    layer still sums to weights_bytes (the stage's arrays are emitted once)."""
    result = compile_model(pruned, "host", tmp_path / "p", patch="4:2")
    assert result.patch is not None and result.patch.split_index == 4
    stage = [result.graph.ops[i] for i in result.patch.stage]
    functions = {call.function for call in result.calls if call.op in stage}
    assert {"tinyml_conv2d_sparse_s8", "tinyml_conv2d_1x1_sparse_s8"} <= functions
    assert sum(layer.bytes for layer in result.layers_flash()) == result.project.weights_bytes
    model_c = (tmp_path / "p" / "model.c").read_text()
    assert "for (py = 0; py < 2; ++py)" in model_c


@pytest.mark.slow
def test_sparse_patch_stage_is_bit_exact_under_sanitizers(pruned):
    report = verify(pruned, "host", samples=2, patch="4:2", sanitize=True).to_json()
    assert report["mismatched_outputs"] == 0, report


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or
                    shutil.which("arm-none-eabi-gcc") is None, reason="no ARM toolchain/QEMU")
def test_sparse_assembly_loops_in_qemu(tmp_path):
    """cortex_m/sparse_rows.c's assembly (host tests run its C twin) on emulated cortex-m4:
    int4 rows of every length mod 4 (the four-entry loop and its tail), int8 rows of both
    parities, 1x1 convolutions with an even and an odd number of pixels (the paired loops
    and the last pixel alone), a padded generic convolution; against the reference on the
    int8 twin."""
    import numpy as np

    from support.sparse_models import conv_layer, fc_layer
    from tinyml import firmware, reference
    from tinyml.sim import qemu

    cases = [(fc_layer(40, 257, 9, batches=2), 0.8, True),
             (fc_layer(41, 131, 7), 0.8, False),
             (conv_layer(42, (6, 5), 40, 11, (1, 1)), 0.85, True),
             (conv_layer(44, (9, 5), 33, 12, (1, 1), stride=(2, 1)), 0.78, False),
             (conv_layer(43, (7, 6), 24, 10, (3, 3), padding=(1, 1, 1, 1)), 0.8, False)]
    target = load_target("cortex-m4")
    for i, ((graph, feeds), sparsity, int4) in enumerate(cases):
        compiled, twin = sparsify(graph, sparsity, seed=i, int4=int4)
        result = compile_model(compiled, target, tmp_path / f"p{i}", build=False)
        (call,) = result.calls
        assert call.weight_format == ("sparse4" if int4 else "sparse8")
        entries = call.params["row_entries"].values
        assert len({int(n) % (4 if int4 else 2) for n in entries}) > 1
        rng = np.random.default_rng(i)
        samples = [feeds] + [[rng.integers(-128, 128, f.shape).astype(np.int8) for f in feeds]
                             for _ in range(2)]
        elf = firmware.build_harness(tmp_path / f"p{i}", target)
        run = qemu.run_samples(elf, target, compiled, samples)
        for sample, outputs in zip(samples, run.outputs):
            want = reference.run(twin, sample)
            for name, got in zip(twin.outputs, outputs):
                np.testing.assert_array_equal(got, want[name], err_msg=f"case {i}")
