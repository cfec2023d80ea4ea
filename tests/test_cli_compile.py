"""`tinyml compile`, `tinyml verify` and `tinyml targets` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, mlperf_model

EXAMPLE = REPO / "examples" / "tiny_kws_int8.tflite"


def tinyml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinyml.cli", *args], capture_output=True,
                          text=True, timeout=600)


def test_compile_json_keys(tmp_path):
    out = tmp_path / "proj"
    result = tinyml("compile", str(EXAMPLE), "--target", "host", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("target", "peak_sram_bytes", "arena_bytes", "scratch_bytes", "weights_bytes",
                "flash_bytes", "macs", "peak_layer", "output_dir"):
        assert key in report
    assert report["target"] == "host" and report["output_dir"] == str(out)
    assert report["macs"] == 130064  # the example's three convolutions, two depthwise, dense
    assert (out / "model.c").exists() and (out / "kernels" / "tinyml_kernels.h").exists()


def test_verify_json(tmp_path):
    result = tinyml("verify", str(mlperf_model("kws_ref_model")), "--samples", "5", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"model": str(mlperf_model("kws_ref_model")), "target": "host",
                      "samples": 7, "mismatched_outputs": 0, "max_abs_diff": 0.0,
                      "oracle": "reference+tflite-micro", "sanitized": False}


def test_compile_errors_are_one_line(tmp_path):
    for args in (["compile", str(mlperf_model("ad01_fp32")), "-o", str(tmp_path / "a")],
                 ["compile", str(EXAMPLE), "--target", "nope", "-o", str(tmp_path / "b")],
                 ["verify", str(tmp_path / "missing.tflite")]):
        result = tinyml(*args)
        assert result.returncode == 2
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("tinyml: error: "), result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_targets_lists_host():
    result = tinyml("targets", "--json")
    assert result.returncode == 0
    assert "host" in [t["name"] for t in json.loads(result.stdout)]
