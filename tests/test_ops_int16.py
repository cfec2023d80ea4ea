"""TFLite 16x8 models (int16 activations, int8 weights, int64 bias) equal TFLM bit for bit.

The converter makes each model of the 16x8 zoo (``tests/support/int16_models.py``); the
reference interpreter must equal TFLM (``kPreserveAllTensors``) on every tensor, on seeded
random inputs and on the all-minimum and all-maximum inputs.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from support.int8_op_models import compare_all_tensors
from support.int16_models import CASES, model_bytes, random_inputs
from support.oracles import tflm_interpreter
from tinyml.frontends.tflite import load_tflite_bytes

SEEDS = range(4)
C_CASES = list(CASES)


def _inputs(graph):
    for seed in SEEDS:
        yield random_inputs(graph, np.random.default_rng(seed))
    for fill in (-32768, 32767):
        yield [np.full(graph.tensors[n].shape, fill, np.int16)
               if graph.tensors[n].dtype == "int16" else
               np.full(graph.tensors[n].shape, fill / 4096, np.float32) for n in graph.inputs]


def _load(name):
    data = model_bytes(CASES[name])
    graph = load_tflite_bytes(data, name=name)
    kinds = {op.kind for op in graph.ops}
    assert set(CASES[name].ops) <= kinds, f"converter emitted {sorted(kinds)}"
    return data, graph


@pytest.mark.parametrize("name", list(CASES))
def test_int16_reference_matches_tflm(name):
    data, graph = _load(name)
    activations = [t for t in graph.tensors.values() if not t.is_constant and
                   t.dtype == "int16"]
    assert activations and all(t.zero_point() == 0 for t in activations)
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    for inputs in _inputs(graph):
        for tensor, count in compare_all_tensors(graph, interpreter, inputs).items():
            total[tensor] = total.get(tensor, 0) + count
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"


# --------------------------------------------------------------------------------------------
# The portable _s16 C kernels, op by op, under AddressSanitizer and UBSan

#: The default run checks the portable kernels through whole programs (below); op by op
#: under the sanitizers they are slow-marked (compiling the kernel files costs ~10 s).


#: The kernel files the 16x8 graphs call (the harness compiles only these: the whole library
#: under the sanitizers would cost the default run ~15 s).
S16_FILES = ("conv_s16.c", "fully_connected_s16.c", "pooling_s16.c", "elementwise_s16.c",
             "softmax_s16.c", "quantize_s16.c", "activations_s16.c", "data_movement.c",
             "data_movement_ops.c")


def _harness(tmp, dsp_files=(), files=S16_FILES):
    from pathlib import Path

    from support.c_harness import KERNELS
    from support.dsp_harness import DSP, DspHarness

    class S16Harness(DspHarness):
        """The kernel harness compiling only S16_FILES (the DSP ones from cortex_m)."""

        def objects(self, flavor):
            if flavor not in self._objects:
                out = self.workdir / flavor
                out.mkdir(exist_ok=True)
                objects = []
                for name in files:
                    source = (DSP if name in dsp_files else KERNELS / "portable") / name
                    objects.append(out / f"{source.parent.name}_{source.stem}.o")
                    self._cc(flavor, ["-c", str(source), "-o", str(objects[-1])])
                self._objects[flavor] = objects
            return self._objects[flavor]

    return S16Harness(Path(tmp), dsp_files)


@pytest.fixture(scope="module")
def harness():
    import tempfile
    with tempfile.TemporaryDirectory(prefix="tinyml-kernels-s16-") as tmp:
        yield _harness(tmp)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")
@pytest.mark.slow
@pytest.mark.parametrize("name", C_CASES)
def test_int16_c_kernels_match_reference(harness, name):
    from support.c_harness import bad_counts, check_graph, reference_samples
    _, graph = _load(name)
    samples = reference_samples(graph, list(_inputs(graph)))
    counts = check_graph(harness, graph, samples, name)
    assert counts, "no kernel ran"
    assert not bad_counts(counts), f"C differs from the reference: {bad_counts(counts)}"


# --------------------------------------------------------------------------------------------
# Whole programs: the generated C on the host (sanitized) and in QEMU, against TFLM


def _verify(name, target, tmp_path, samples=4):
    from tinyml.verify import verify
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(model_bytes(CASES[name]))
    report = verify(path, target, samples=samples, sanitize=target == "host",
                    profile=False).to_json()
    assert report["oracle"] == "reference+tflite-micro", report["oracle"]
    assert report["samples"] == samples + 2
    assert report["mismatched_outputs"] == 0, report
    return report


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")
@pytest.mark.parametrize("name", ["ds_cnn", "add_mul_concat_pad"])
def test_int16_program_on_host_matches_tflm(name, tmp_path):
    report = _verify(name, "host", tmp_path)
    assert report["sanitized"]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")
@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in C_CASES if n not in ("ds_cnn", "add_mul_concat_pad")])
def test_int16_programs_on_host_match_tflm(name, tmp_path):
    _verify(name, "host", tmp_path)


def _qemu_available() -> bool:
    from tinyml.sim import qemu
    return shutil.which("arm-none-eabi-gcc") is not None and qemu.available()


@pytest.mark.skipif(not _qemu_available(), reason="needs arm-none-eabi-gcc and qemu-system-arm")
@pytest.mark.parametrize("target", ["cortex-m4", pytest.param("cortex-m3", marks=pytest.mark.slow)])
def test_int16_ds_cnn_in_qemu_matches_tflm(target, tmp_path):
    """cortex-m4 runs the DSP kernels, cortex-m3 the portable ones."""
    report = _verify("ds_cnn", target, tmp_path)
    assert report["instructions_per_inference"] > 0


# --------------------------------------------------------------------------------------------
# The Cortex-M DSP _s16 kernels (SMLAD), on the host through the ACLE emulation

DSP_FILES = ("conv_s16.c", "fully_connected_s16.c")
DSP_FUNCTIONS = ("tinyml_conv2d_s16", "tinyml_depthwise_conv2d_s16", "tinyml_fully_connected_s16")
DSP_CASES = ["ds_cnn", "conv_relu6_stride", "conv_valid_dilated", "depthwise_m2",
             "conv_dense_bias32", "conv_dense_per_tensor",
             "dense_no_bias", "dense_relu", "add_mul_concat_pad", "conv_wide", "dense_wide"]


@pytest.fixture(scope="module")
def dsp_harness():
    import tempfile
    with tempfile.TemporaryDirectory(prefix="tinyml-dsp-s16-") as tmp:
        yield _harness(tmp, DSP_FILES, DSP_FILES)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no host C compiler (cc)")
@pytest.mark.parametrize("name", [n if n in ("conv_wide", "dense_wide") else
                                  pytest.param(n, marks=pytest.mark.slow) for n in DSP_CASES])
def test_int16_dsp_kernels_match_reference(dsp_harness, name):
    from support.c_harness import bad_counts, graph_jobs, mismatches, reference_samples
    from support.dsp_harness import M4
    from tinyml.codegen.lowering import lower
    _, graph = _load(name)
    calls = [c for c in lower(graph, M4) if c.function in DSP_FUNCTIONS]
    assert calls
    jobs, expected = [], []
    for s, values in enumerate(reference_samples(graph, list(_inputs(graph)))):
        batch = graph_jobs(graph, calls, values, f"{name}#{s}")
        jobs += batch
        expected += [{n: values[n] for n in job.outputs} for job in batch]
    counts = mismatches(jobs, dsp_harness.run(jobs), expected)
    assert not bad_counts(counts), f"DSP C differs from the reference: {bad_counts(counts)}"


# --------------------------------------------------------------------------------------------
# MLPerf Tiny's keyword spotting DS-CNN, converted 16x8 (slow)


@pytest.fixture(scope="module")
def kws_16x8():
    from conftest import mlperf_model
    from support.int16_mlperf import kws_16x8 as convert_kws
    return convert_kws(mlperf_model("kws_ref_model_float32"), mlperf_model("kws_ref_model"))


@pytest.mark.slow
def test_mlperf_kws_16x8_reference_matches_tflm(kws_16x8):
    from support.int8_op_models import compare_all_tensors
    data = kws_16x8.read_bytes()
    graph = load_tflite_bytes(data, name="kws_16x8")
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED",
            "SOFTMAX"} <= {op.kind for op in graph.ops}
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    for inputs in _inputs(graph):
        for tensor, count in compare_all_tensors(graph, interpreter, inputs).items():
            total[tensor] = total.get(tensor, 0) + count
    assert not total, total


@pytest.mark.slow
@pytest.mark.skipif(not _qemu_available(), reason="needs arm-none-eabi-gcc and qemu-system-arm")
def test_mlperf_kws_16x8_in_qemu_matches_tflm(kws_16x8):
    from tinyml.verify import verify
    report = verify(kws_16x8, "cortex-m4", samples=3, profile=False).to_json()
    assert report["oracle"] == "reference+tflite-micro"
    assert report["mismatched_outputs"] == 0, report


def test_int16_graphs_run_layer_by_layer():
    """The _s16 kernels declare no patch geometry: "auto" keeps a 16x8 graph layer by layer,
    and a forced patch schedule names the kernel that cannot run on a window."""
    from tinyml.compiler import plan
    from tinyml.errors import TinymlError
    data, graph = _load("ds_cnn")
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ds_cnn.tflite"
        path.write_bytes(data)
        compiled = plan(path, "cortex-m4")
        assert compiled.patch is None
        assert compiled.plan.arena_bytes >= 2 * max(t.size for t in graph.tensors.values()
                                                    if not t.is_constant)
        split = graph.ops[1].outputs[0]
        with pytest.raises(TinymlError, match="tinyml_conv2d_s16 cannot run on a window"):
            plan(path, "cortex-m4", patch=f"{split}:2")
