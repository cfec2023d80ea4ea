"""The pure-Python pieces of ``benchmarks/tflm_cortex_m.py`` (no TFLM checkout needed).

The benchmark itself needs TFLM, CMSIS-NN and friends as source checkouts and minutes of
compiling, so it is a script, not a test; what can go wrong without them is checked here:
reading the firmware's console lines, pairing TFLM's operators with tinyml's layers when
tinyml fuses or aliases some, comparing outputs byte for byte, reading TFLM's source lists
from its make fragment, and the skip when no checkout is given.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield (importlib.import_module("tflm_bench.compare"),
               importlib.import_module("tflm_bench.sources"))
    finally:
        sys.path.remove(str(BENCHMARKS))


CONSOLE = """\
tflm_bench arena_used_bytes 24272
some TFLM log line
tflm_bench invoke_ticks 192424
tflm_bench output 0 4 7f80ff00
tflm_bench profiled_ticks 192500
tflm_bench layer 0 CONV_2D 13709
tflm_bench layer 1 RESHAPE 3
tflm_bench profiled_output 0 4 7f80ff00
tflm_bench done
"""


def test_console_lines_are_read(bench):
    compare, _ = bench
    run = compare.parse_console(CONSOLE)
    assert run.arena_used_bytes == 24272
    assert run.invoke_ticks == 192424 and run.profiled_ticks == 192500
    assert run.layers == [("CONV_2D", 13709), ("RESHAPE", 3)]
    assert run.outputs == {0: bytes([0x7F, 0x80, 0xFF, 0x00])}
    assert run.profiled_outputs == run.outputs
    assert run.done and run.error is None


def test_console_error_and_truncation(bench):
    compare, _ = bench
    run = compare.parse_console("tflm_bench error AllocateTensors() failed\n")
    assert run.error == "AllocateTensors() failed" and not run.done
    with pytest.raises(ValueError, match="3 of 4 bytes"):
        compare.parse_console("tflm_bench output 0 4 7f80ff\n")
    with pytest.raises(ValueError, match="out of order"):
        compare.parse_console("tflm_bench layer 1 CONV_2D 5\n")


def _layers(*entries):
    return [dict(name=n, op=o, instructions=i) for n, o, i in entries]


def test_one_to_one_layers_pair_by_name(bench):
    compare, _ = bench
    tflm = _layers(("conv", "CONV_2D", 1000), ("flat", "RESHAPE", 40), ("fc", "FULLY_CONNECTED", 200))
    tiny = _layers(("conv", "CONV_2D", 600), ("flat", "RESHAPE", 0), ("fc", "FULLY_CONNECTED", 100))
    rows = compare.match_layers(tflm, tiny)
    assert [(r.tflm_ops, r.tinyml_ops, r.tflm, r.tinyml) for r in rows] == [
        (["CONV_2D"], ["CONV_2D"], 1000, 600), (["RESHAPE"], ["RESHAPE"], 40, 0),
        (["FULLY_CONNECTED"], ["FULLY_CONNECTED"], 200, 100)]
    assert rows[0].ratio == 0.6 and rows[1].ratio == 0.0


def test_fused_ops_share_a_row_and_rows_add_up(bench):
    """tinyml folds the PAD into the convolution after it (one layer named after the conv),
    and splits nothing else: the PAD's cost joins the conv's row; totals are preserved."""
    compare, _ = bench
    tflm = _layers(("pad", "PAD", 300), ("conv", "CONV_2D", 1000), ("pool", "AVERAGE_POOL_2D", 90),
                   ("out", "SOFTMAX", 50))
    tiny = _layers(("conv", "CONV_2D", 700), ("pool", "AVERAGE_POOL_2D", 60),
                   ("extra", "QUANTIZE", 10), ("out", "SOFTMAX", 40))
    rows = compare.match_layers(tflm, tiny)
    assert [(r.tflm_ops, r.tinyml_ops, r.name, r.tflm, r.tinyml) for r in rows] == [
        (["PAD", "CONV_2D"], ["CONV_2D"], "conv", 1300, 700),
        (["AVERAGE_POOL_2D"], ["AVERAGE_POOL_2D"], "pool", 90, 60),
        (["SOFTMAX"], ["QUANTIZE", "SOFTMAX"], "out", 50, 50)]
    assert sum(r.tflm for r in rows) == 1440 and sum(r.tinyml for r in rows) == 810
    assert rows[0].label() == "PAD + CONV_2D | tinyml: CONV_2D"


def test_fused_and_reordered_residual_block(bench):
    """A residual block as tinyml runs it (pretrainedResnet_quant): the shortcut convolution
    first, then the main convolution fused with the ADD into one layer named ``conv+add``.
    Each row is one tinyml layer with the TFLM operators it computes, in tinyml's order."""
    compare, _ = bench
    tflm = _layers(("c1", "CONV_2D", 1000), ("c2", "CONV_2D", 2000), ("sc", "CONV_2D", 300),
                   ("add", "ADD", 400), ("pool", "AVERAGE_POOL_2D", 50))
    tiny = _layers(("c1", "CONV_2D", 800), ("sc", "CONV_2D", 200),
                   ("c2+add", "CONV_2D_ADD", 1500), ("pool", "AVERAGE_POOL_2D", 40))
    rows = compare.match_layers(tflm, tiny)
    assert [(r.tflm_ops, r.tinyml_ops, r.name, r.tflm, r.tinyml) for r in rows] == [
        (["CONV_2D"], ["CONV_2D"], "c1", 1000, 800),
        (["CONV_2D"], ["CONV_2D"], "sc", 300, 200),
        (["CONV_2D", "ADD"], ["CONV_2D_ADD"], "c2+add", 2400, 1500),
        (["AVERAGE_POOL_2D"], ["AVERAGE_POOL_2D"], "pool", 50, 40)]


def test_unnamed_tail_joins_the_previous_row_with_extra_counts(bench):
    compare, _ = bench
    tflm = [dict(name="a", op="CONV_2D", instructions=10, extra={"reference": 50}),
            dict(name="b", op="DEQUANTIZE", instructions=5, extra={"reference": 7})]
    tiny = _layers(("a", "CONV_2D", 8), ("c", "DEQUANTIZE", 4))
    rows = compare.match_layers(tflm, tiny)
    assert [(r.tflm_ops, r.tinyml_ops, r.tflm, r.tinyml, r.extra) for r in rows] == [
        (["CONV_2D", "DEQUANTIZE"], ["CONV_2D", "DEQUANTIZE"], 15, 12, {"reference": 57})]


def test_outputs_compared_byte_for_byte(bench):
    compare, _ = bench
    assert compare.outputs_equal({0: b"\x01\x02", 1: b"\x03"}, [b"\x01\x02", b"\x03"]) == (
        True, "identical")
    assert compare.outputs_equal({0: b"\x01\x02"}, [b"\x01\x03"]) == (
        False, "output 0: 1 of 2 bytes differ")
    assert compare.outputs_equal({0: b"\x01"}, [b"\x01", b"\x02"])[0] is False
    assert compare.geometric_mean([0.5, 2.0]) == pytest.approx(1.0)


def test_make_variable_reads_continued_lists(bench):
    _, sources = bench
    text = ("X := a\nKERNELS := \\\n$(TENSORFLOW_ROOT)k/add.cc \\\n$(TENSORFLOW_ROOT)k/conv.cc\n"
            "\nNEXT := z\n")
    assert sources.make_variable(text, "KERNELS") == ["k/add.cc", "k/conv.cc"]
    assert sources.make_variable(text, "X") == ["a"]


def test_locate_without_checkouts_skips(bench, tmp_path):
    _, sources = bench
    checkouts, why = sources.locate({key: None for key in sources.MARKERS}, None)
    assert checkouts is None and "--tflm-dir not given" in why
    with pytest.raises(ValueError, match="not a tflm checkout"):
        sources.locate({"tflm": str(tmp_path)}, None)


def test_script_skips_with_one_line_when_paths_are_absent(tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "tflm_cortex_m.py"),
                             "--third-party-dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tflm_cortex_m: skipped: no tflm checkout")


def test_resolver_methods_read_from_the_header(bench, tmp_path):
    """The op resolver is written from micro_mutable_op_resolver.h: each AddX() with a
    default registration maps the BuiltinOperator it registers; AddCustom needs arguments."""
    _, sources = bench
    header = tmp_path / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
    header.parent.mkdir(parents=True)
    header.write_text(
        "  TfLiteStatus AddCustom(const char* name, TFLMRegistration* registration) {\n"
        "    registration->builtin_code = BuiltinOperator_CUSTOM;\n  }\n"
        "  TfLiteStatus AddConv2D(\n"
        "      const TFLMRegistration& registration = Register_CONV_2D()) {\n"
        "    return AddBuiltin(BuiltinOperator_CONV_2D, registration, ParseConv2D);\n  }\n"
        "  TfLiteStatus AddReshape() {\n"
        "    return AddBuiltin(BuiltinOperator_RESHAPE, Register_RESHAPE(), ParseReshape);\n"
        "  }\n")
    assert sources.resolver_methods(tmp_path) == {"CONV_2D": "AddConv2D",
                                                  "RESHAPE": "AddReshape"}
