"""Compiling for Cortex-M: firmware built with arm-none-eabi-gcc, run in QEMU, compared with
tflite-micro bit for bit; sizes, stack, instruction counts, budgets and board profiles.

Default run: the 4 MLPerf Tiny models on cortex-m4 with 20 samples, one model on each other
emulated core, the op zoo on cortex-m0plus (a subset; the rest is slow). The full 20-sample
matrix on cortex-m3, cortex-m7 and cortex-m33 is marked slow.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import INT8_MODELS, REPO, mlperf_model
from support import int8_op_models as zoo
from support import nonlinear_models as nonlinear
from tinyml import reference
from tinyml.compiler import compile_model, plan
from tinyml.errors import TinymlError
from tinyml.firmware import elf_sections
from tinyml.frontends import load_model
from tinyml.sim import qemu
from tinyml.targets import available_targets, load_target
from tinyml.verify import verify

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or not qemu.available(),
    reason="needs arm-none-eabi-gcc and qemu-system-arm (make system-deps)")

EXAMPLE = REPO / "examples" / "tiny_kws_int8.tflite"
EMULATED = ["cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33"]
BOARDS = {"nucleo-l4r5zi": ("cortex-m4", 0x08000000), "stm32f746-disco": ("cortex-m7", 0x08000000),
          "stm32f412-disco": ("cortex-m4", 0x08000000), "nrf52840-dk": ("cortex-m4", 0x0)}


def tinyml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyml.cli", *args], capture_output=True,
                          text=True, timeout=900)


def check_report(report: dict, samples: int) -> None:
    """What every emulated verification must show."""
    assert report["samples"] == samples + 2
    assert report["mismatched_outputs"] == 0, report
    assert report["oracle"].endswith("tflite-micro")
    assert report["instructions_min"] <= report["instructions_per_inference"] \
        <= report["instructions_max"]
    assert report["ram_bytes"] == report["data_bytes"] + report["bss_bytes"] + \
        report["stack_bytes"]
    assert report["flash_bytes"] == report["text_bytes"] + report["rodata_bytes"] + \
        report["data_bytes"]
    layers = report.get("layer_instructions")
    if layers is not None:
        # The profiling build's counter hooks cost a few instructions per layer.
        total = sum(layer["instructions"] for layer in layers)
        assert abs(total - report["instructions_per_inference"]) <= \
            0.002 * report["instructions_per_inference"] + 200 * len(layers), (total, report)
        assert all(layer["instructions"] >= 0 for layer in layers)


# ---- accuracy: bit-exact against tflite-micro in QEMU -----------------------------------------

@pytest.mark.parametrize("name", INT8_MODELS)
def test_mlperf_bit_exact_on_cortex_m4(name):
    report = verify(mlperf_model(name), "cortex-m4", samples=20).to_json()
    check_report(report, 20)
    assert report["machine"] == "mps2-an386"
    compiled = plan(mlperf_model(name), "cortex-m4")
    assert [(layer["name"], layer["op"]) for layer in report["layer_instructions"]] == \
        [(compiled.graph.ops[i].name, compiled.graph.ops[i].kind) for i in compiled.plan.order]
    # Less than one multiply-accumulate per instruction (Armv7E-M's SMLAD does two, so the
    # DSP kernels may go below 1 instruction per MAC, but not below 1/2), and less than 20
    # instructions per MAC (the figures are in benchmarks/mlperf_tiny.py).
    assert compiled.macs / 2 < report["instructions_per_inference"] < 20 * compiled.macs


@pytest.mark.parametrize("target", ["cortex-m3", "cortex-m7", "cortex-m33"])
def test_other_cores_bit_exact(target):
    report = verify(mlperf_model("kws_ref_model"), target, samples=5).to_json()
    check_report(report, 5)
    assert report["machine"] == load_target(target).qemu_machine


def test_dsp_kernels_take_fewer_instructions_than_portable_ones():
    """The same model, layer by layer, on cortex-m4 (DSP kernels) and cortex-m3 (portable
    ones): every convolution, depthwise convolution and fully connected layer runs in fewer
    instructions with the DSP kernels, and so does the whole inference. No fixed figures:
    those are measured in benchmarks/mlperf_tiny.py."""
    dsp = verify(mlperf_model("kws_ref_model"), "cortex-m4", samples=1).to_json()
    portable = verify(mlperf_model("kws_ref_model"), "cortex-m3", samples=1).to_json()
    check_report(dsp, 1)
    check_report(portable, 1)
    assert dsp["instructions_per_inference"] < portable["instructions_per_inference"]
    pairs = list(zip(dsp["layer_instructions"], portable["layer_instructions"]))
    assert [a["name"] for a, _ in pairs] == [b["name"] for _, b in pairs]
    kernels = [(a, b) for a, b in pairs
               if a["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    assert {a["op"] for a, _ in kernels} == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    slower = [a["name"] for a, b in kernels if not 0 < a["instructions"] < b["instructions"]]
    assert slower == []


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cortex-m3", "cortex-m7", "cortex-m33"])
@pytest.mark.parametrize("name", INT8_MODELS)
def test_mlperf_matrix_bit_exact(target, name):
    report = verify(mlperf_model(name), target, samples=20, profile=False).to_json()
    check_report(report, 20)


def test_bundled_model_on_cortex_m0plus():
    report = verify(EXAMPLE, "cortex-m0plus", samples=20).to_json()
    check_report(report, 20)
    assert report["machine"] == "microbit" and report["ram_bytes"] <= 16 * 1024


ZOO_DEFAULT = ["conv_same_stride2_relu", "conv_dilated_relu6", "conv_grouped",
               "depthwise_multiplier2", "dense_per_tensor", "mul_broadcast_scales",
               "residual_add_relu", "avg_pool_same", "mean_one_axis", "pad",
               "concat_requantized_input", "float_io_quantize_dequantize"]


@pytest.mark.parametrize("case", [c if c in ZOO_DEFAULT else pytest.param(c, marks=pytest.mark.slow)
                                  for c in zoo.CASES])
def test_op_zoo_on_cortex_m0plus(case, tmp_path):
    """Every op family on Armv6-M (no hardware divide, no DSP, soft float)."""
    path = tmp_path / f"{case}.tflite"
    path.write_bytes(zoo.model_bytes(zoo.CASES[case]))
    check_report(verify(path, "cortex-m0plus", samples=4, profile=False).to_json(), 4)


@pytest.mark.parametrize("kind", ["SOFTMAX", *nonlinear.ELEMENTWISE])
def test_nonlinear_ops_on_cortex_m0plus(kind, tmp_path):
    """gemmlowp fixed point (softmax, logistic), int16 hard-swish, ReLU requantization."""
    path = tmp_path / f"{kind}.tflite"
    if kind == "SOFTMAX":
        path.write_bytes(nonlinear.model_bytes(nonlinear.dense_softmax, (1, 32)))
    else:
        path.write_bytes(nonlinear.model_bytes(nonlinear.ELEMENTWISE[kind],
                                          nonlinear.ALL_CODES.shape))
    check_report(verify(path, "cortex-m0plus", samples=6, profile=False).to_json(), 6)


# ---- the CLI: run and verify -------------------------------------------------------------------

def test_cli_verify_json_on_cortex_m4():
    result = tinyml("verify", str(EXAMPLE), "--target", "cortex-m4", "--samples", "3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    check_report(report, 3)
    assert [layer["op"] for layer in report["layer_instructions"]] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
        "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX"]
    reshape = report["layer_instructions"][6]
    assert reshape["instructions"] == 0  # an alias: no code
    # At most 2 MACs per instruction (Armv7E-M's SMLAD does two); check_report checked that
    # the layers' counts add up to the whole inference.
    assert report["instructions_per_inference"] >= plan(EXAMPLE, "cortex-m4").macs / 2


def test_cli_run_with_npy_input_matches_reference(tmp_path):
    graph = load_model(EXAMPLE)
    t = graph.tensors[graph.inputs[0]]
    x = np.random.default_rng(7).uniform(-2, 2, t.shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = tinyml("run", str(EXAMPLE), "--target", "cortex-m4", "--input",
                    str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # The float input is quantized like TFLite's QUANTIZE: round half away from zero.
    scale, zero = float(t.quant.scale[0]), int(t.quant.zero_point[0])
    q = np.clip(np.sign(x / np.float32(scale)) * np.floor(np.abs(x / np.float32(scale)) + 0.5)
                + zero, -128, 127).astype(np.int8)
    want = reference.run(graph, [q])[graph.outputs[0]]
    got = np.load(tmp_path / "y.npy")
    assert np.array_equal(got, want)
    assert report["outputs"][graph.outputs[0]]["values"] == want.reshape(-1).tolist()
    assert report["instructions"] >= plan(EXAMPLE, "cortex-m4").macs / 2  # SMLAD: 2 MACs
    assert report["stack_bytes"] > 0


def test_run_rejects_a_wrong_input_shape(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 3), np.int8))
    result = tinyml("run", str(EXAMPLE), "--target", "cortex-m4", "--input",
                    str(tmp_path / "x.npy"))
    assert result.returncode == 2 and result.stdout == ""
    assert "9 elements" in result.stderr and len(result.stderr.splitlines()) == 1


# ---- the generated project ------------------------------------------------------------------

def test_project_builds_alone_and_example_matches_reference(tmp_path):
    """The project's own Makefile rebuilds the firmware from scratch; the example's printed
    output (zero-point input) equals the reference interpreter's."""
    out = tmp_path / "proj"
    result = compile_model(EXAMPLE, "cortex-m4", out)
    assert (out / "firmware" / "startup.c").exists()
    assert (out / "firmware" / "mps2-an386.ld").exists()
    subprocess.run(["make", "-s", "clean"], cwd=out, check=True)
    assert not (out / "example.elf").exists()
    subprocess.run(["make", "-s", "-j2"], cwd=out, check=True, capture_output=True)
    run = subprocess.run(["make", "-s", "run"], cwd=out, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    text = run.stdout + run.stderr
    printed = [int(line.split("=")[1]) for line in text.splitlines()
               if line.startswith("output[")]
    graph = result.source_graph
    t = graph.tensors[graph.inputs[0]]
    zero = np.full(t.shape, int(t.quant.zero_point[0]), np.int8)
    want = reference.run(graph, [zero])[graph.outputs[0]].reshape(-1).tolist()
    assert printed == want
    values = qemu.console_values(text)
    assert values["stack_bytes"] == result.sizes["stack_bytes"]
    assert values["instructions"] == values["ticks"] * 40


def test_compile_json_reports_image_sizes(tmp_path):
    out = tmp_path / "proj"
    result = tinyml("compile", str(mlperf_model("kws_ref_model")), "--target", "cortex-m4",
                    "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("text_bytes", "rodata_bytes", "data_bytes", "bss_bytes", "flash_bytes",
                "ram_bytes", "stack_bytes"):
        assert isinstance(report[key], int) and report[key] >= 0, key
    # The arena is a static array: in .bss. The constants are in .rodata.
    assert report["bss_bytes"] >= report["arena_bytes"]
    assert report["rodata_bytes"] >= report["weights_bytes"]
    assert report["ram_bytes"] == report["data_bytes"] + report["bss_bytes"] + \
        report["stack_bytes"]
    assert 0 < report["stack_bytes"] < 4096
    assert report["elf"] == str(out / "example.elf")
    model_c = (out / "model.c").read_text()
    assert "tinyml_profile_layer" not in model_c  # hooks only in the profiling build


@pytest.mark.parametrize("board", list(BOARDS))
def test_board_profiles_link_and_report_sizes(board, tmp_path):
    core, flash_origin = BOARDS[board]
    out = tmp_path / board
    result = compile_model(mlperf_model("kws_ref_model"), board, out)
    sizes = result.sizes
    assert sizes["flash_bytes"] == sizes["text_bytes"] + sizes["rodata_bytes"] + \
        sizes["data_bytes"]
    assert sizes["ram_bytes"] <= load_target(board).sram_bytes
    # Not emulated: the stack is measured on the machine of the same core.
    assert sizes["stack_measured_on"] == load_target(core).qemu_machine
    assert sizes["stack_bytes"] > 0
    assert not (out / "build" / "qemu").exists()
    # Linked for the board: the vector table sits at the part's flash address.
    data = (out / "example.elf").read_bytes()
    import struct
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, _ = struct.unpack_from("<HHH", data, 0x2E)
    names = [name for name, *_ in elf_sections(out / "example.elf")]
    index = names.index(".isr_vector")
    address = struct.unpack_from("<IIII", data, shoff + index * shentsize)[3]
    assert address == flash_origin
    makefile = (out / "Makefile").read_text()
    assert "-DTINYML_SEMIHOSTING" not in makefile and "qemu" not in makefile.lower()


def _wide_dense_model(tmp_path, inputs: int = 1024, units: int = 600):
    """A FULLY_CONNECTED layer of inputs x units int8 weights (614 KB by default: more than
    cortex-m4's 512 KB flash budget, less than the NUCLEO-L4R5ZI's 2 MB)."""
    from support.graph_builder import Builder
    from tinyml.ir.ops import FullyConnectedAttrs
    from tinyml.quantize.tflite_export import export_tflite
    b = Builder("wide_dense", seed=3)
    x = b.input((1, inputs), scale=0.02)
    w = b.int8_const((units, inputs), axis=0)
    bias = b.bias(units, 0.02 * 0.01)
    y = b.op("FULLY_CONNECTED", [x, w, bias], FullyConnectedAttrs(), scale=2.0)
    graph, _ = b.finish(y)
    path = tmp_path / "wide_dense.tflite"
    path.write_bytes(export_tflite(graph))
    return path


@pytest.mark.slow
def test_board_verifies_on_its_cores_machine_with_its_budgets(tmp_path):
    """A model over cortex-m4's flash budget is refused there, and runs on the NUCLEO-L4R5ZI
    profile: compiled with the board's flags and budgets, linked for and run on QEMU's
    Cortex-M4 machine, equal to the reference and TFLM."""
    model = _wide_dense_model(tmp_path)
    with pytest.raises(TinymlError, match="flash"):
        compile_model(model, "cortex-m4", tmp_path / "m4")
    report = verify(model, "nucleo-l4r5zi", samples=2, profile=False)
    assert report.oracle == "reference+tflite-micro"
    assert report.samples == 4 and report.mismatched_outputs == 0
    assert report.measured["machine"] == "mps2-an386"
    assert report.measured["instructions_per_inference"] > 1024 * 600 // 4
    assert report.measured["flash_bytes"] > 524_288


def test_board_example_runs_on_its_cores_machine():
    report = verify(EXAMPLE, "nucleo-l4r5zi", samples=1, profile=False)
    assert report.mismatched_outputs == 0 and report.measured["machine"] == "mps2-an386"


# ---- budgets ------------------------------------------------------------------------------------

def test_sram_budget_error_names_budget_need_and_peak_layer(tmp_path):
    out = tmp_path / "vww"
    result = tinyml("compile", str(mlperf_model("vww_96_int8")), "--target", "cortex-m0plus",
                    "-o", str(out), "--patch", "off")  # the layer-by-layer arena's figures
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "SRAM budget of cortex-m0plus (nRF51822)" in lines[0]
    # The layer-by-layer arena, convolutions overlapping their dying inputs (39,276 B when
    # this was written; tests/test_overlap.py checks the overlaps themselves).
    need = plan(mlperf_model("vww_96_int8"), "cortex-m0plus", patch="off").plan.arena_bytes
    assert need < 46_192
    assert f"{need:,} B" in lines[0] and "16,384 B" in lines[0]
    assert "peak at layer 'model/activation_3/Relu'" in lines[0]
    assert not out.exists()


def test_flash_budget_error(tmp_path):
    out = tmp_path / "ad"
    result = tinyml("compile", str(mlperf_model("ad01_int8")), "--target", "cortex-m0plus",
                    "-o", str(out))
    assert result.returncode == 2
    assert "flash budget of cortex-m0plus" in result.stderr
    assert "262,144 B" in result.stderr and "largest layer" in result.stderr
    assert not out.exists()


def test_measured_stack_counts_in_the_budget(tmp_path):
    """kws's arena (8,312 B) fits a part of 8,312 + 64 B, but not with its stack: found only
    by building the image and running it; nothing is written."""
    import dataclasses
    target = dataclasses.replace(load_target("cortex-m0plus"), sram_bytes=8312 + 64)
    out = tmp_path / "kws"
    with pytest.raises(TinymlError, match=r"SRAM budget.*arena 8,312 B.*stack.*peak at layer"):
        compile_model(mlperf_model("kws_ref_model"), target, out)
    assert not out.exists()
    assert not list(tmp_path.iterdir())  # no staging directory left behind


def test_image_that_does_not_link_is_a_budget_error(tmp_path):
    """A part claiming more SRAM than its linker script maps: the link fails, and that is
    reported as the budget error it is."""
    import dataclasses
    target = dataclasses.replace(load_target("cortex-m0plus"), sram_bytes=1 << 20)
    out = tmp_path / "vww"
    need = plan(mlperf_model("vww_96_int8"), target, patch="off").plan.arena_bytes
    with pytest.raises(TinymlError, match=r"SRAM budget.*more RAM than microbit.ld provides "
                                          rf"\(arena {need:,} B.*peak at layer"):
        compile_model(mlperf_model("vww_96_int8"), target, out, patch="off")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_existing_project_survives_a_failed_compile(tmp_path):
    out = tmp_path / "proj"
    compile_model(EXAMPLE, "cortex-m0plus", out)
    before = (out / "model.c").read_text()
    with pytest.raises(TinymlError, match="SRAM budget"):
        compile_model(mlperf_model("vww_96_int8"), "cortex-m0plus", out)
    assert (out / "model.c").read_text() == before


# ---- targets ------------------------------------------------------------------------------------

def test_targets_are_listed_with_their_machines():
    result = tinyml("targets", "--json")
    assert result.returncode == 0
    listed = {t["name"]: t for t in json.loads(result.stdout)}
    assert set(EMULATED) | set(BOARDS) | {"host"} <= set(listed)
    machines = {name: listed[name]["qemu_machine"] for name in EMULATED}
    assert machines == {"cortex-m0plus": "microbit", "cortex-m3": "mps2-an385",
                        "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500",
                        "cortex-m33": "mps2-an505"}
    for name in BOARDS:
        assert listed[name]["qemu_machine"] is None and listed[name]["emulated_by"]
    assert {listed[n]["dsp"] for n in ("cortex-m4", "cortex-m7", "cortex-m33")} == {True}
    assert {listed[n]["dsp"] for n in ("cortex-m0plus", "cortex-m3")} == {False}
    assert set(available_targets()) == set(listed)


def test_core_specific_kernels_override_portable_ones(tmp_path, monkeypatch):
    """kernels = ["portable", "cortex_m"]: a file in cortex_m/ replaces the portable file of
    the same name; without a cortex_m/ directory the portable kernels are used."""
    from tinyml.codegen import project
    kernels = tmp_path / "kernels"
    (kernels / "portable").mkdir(parents=True)
    (kernels / "portable" / "conv.c").write_text("portable")
    (kernels / "portable" / "pooling.c").write_text("portable")
    (kernels / "tinyml_kernels.h").write_text("")
    monkeypatch.setattr(project, "KERNELS_DIR", kernels)
    target = load_target("cortex-m4")
    assert target.kernels == ("portable", "cortex_m")
    files = project._kernel_sources(target)
    assert files["conv.c"].parent.name == "portable"
    (kernels / "cortex_m").mkdir()
    (kernels / "cortex_m" / "conv.c").write_text("dsp")
    files = project._kernel_sources(target)
    assert files["conv.c"].read_text() == "dsp" and files["pooling.c"].read_text() == "portable"
    # M0+ and M3 have no DSP extension: portable kernels only.
    assert project._kernel_sources(load_target("cortex-m3"))["conv.c"].read_text() == "portable"
