"""``tinyml prune`` end to end on the scikit-learn digits CNN (slow: minutes).

The CNN (``support/digits.py``) is trained, pruned through the CLI (fine-tuned on the
training split, measured on the test split), quantized by ``tinyml quantize`` and compiled:

- gradual magnitude pruning at 80 %: accuracy within 1 point of the dense model (the
  compression issue's bar); every weight the pruned Keras kernel holds as 0 is exactly 0 in the
  int8 graph; the compiled C matches the reference and TFLM bit for bit (``tinyml verify``);
- 50 % and 90 %: the accuracy-against-sparsity curve reaches the target;
- 50 % of the channels (structured): the MACs the rebuilt layer shapes give, and at least
  40 % fewer instructions than the dense model on cortex-m4 in QEMU, whose outputs equal TFLM's.

``benchmarks/compression_digits.py`` prints all the figures in one table.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.digits import (cortex_m4_instructions, prune, quantize, tinyml,
                                train_digits_cnn)
from support.oracles import tflm_interpreter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    pytest.importorskip("sklearn", reason="scikit-learn (test extra) not installed")
    folder = tmp_path_factory.mktemp("prune_digits")
    result = train_digits_cnn(folder)
    assert result["accuracy"] > 0.95, "the dense CNN did not train"
    return result


def _keras_kernels(path) -> dict[str, np.ndarray]:
    import keras
    model = keras.saving.load_model(path, compile=False)
    return {layer.name: np.asarray(layer.kernel) for layer in model.layers
            if type(layer).__name__ in ("Conv2D", "DepthwiseConv2D", "Dense")}


def test_gradual_80_percent_within_one_point_and_zeros_stay_zero_in_int8(digits):
    folder = digits["folder"]
    report = prune(digits, 0.8, folder / "g80.keras")
    acc = report["accuracy"]
    sparsity = report["sparsity"]
    print(f"\ngradual 80 %: dense {100 * acc['before']:.2f} % -> pruned "
          f"{100 * acc['after']:.2f} %, pruned kernels {100 * sparsity['pruned_kernels']:.2f} "
          f"% zero, all kernels {100 * sparsity['all_kernels']:.2f} %")
    assert acc["before"] == pytest.approx(digits["accuracy"], abs=1e-9)
    assert acc["after"] >= acc["before"] - 0.01
    assert report["sparsity"]["pruned_kernels"] == pytest.approx(0.8, abs=0.002)
    kernels = _keras_kernels(folder / "g80.keras")
    for layer in report["layers"]:
        zeros = int(np.sum(kernels[layer["name"]] == 0))
        assert layer["weights_after"] - layer["nonzero"] == zeros
        if layer["pruned"]:
            assert zeros == round(0.8 * kernels[layer["name"]].size)
        else:
            assert layer["skipped"].endswith("< 256")

    quantized = quantize(digits, folder / "g80.keras", folder / "g80_int8.tflite")
    assert quantized["int8_accuracy"] >= acc["after"] - 0.01
    from tinyml.frontends.tflite import load_tflite
    graph = load_tflite(folder / "g80_int8.tflite")
    checked = 0
    for op in graph.ops:
        if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        weights = graph.tensors[op.inputs[1]].data
        kernel = kernels[op.name]
        # Keras HWIO -> TFLite OHWI (conv), HWI1 -> 1HWI (depthwise), (in, out) -> (out, in).
        layout = {"CONV_2D": (3, 0, 1, 2), "DEPTHWISE_CONV_2D": (3, 0, 1, 2),
                  "FULLY_CONNECTED": (1, 0)}[op.kind]
        float_zero = np.transpose(kernel, layout) == 0
        assert weights.shape == float_zero.shape, op.name
        assert np.all(weights[float_zero] == 0), op.name
        checked += int(float_zero.sum())
    assert checked == sum(layer["weights_after"] - layer["nonzero"] for layer in report["layers"])

    result = tinyml("verify", str(folder / "g80_int8.tflite"), "--target", "host",
                    "--samples", "20", "--json")
    assert result.returncode == 0, result.stderr
    verified = json.loads(result.stdout)
    assert verified["mismatched_outputs"] == 0 and "tflite-micro" in verified["oracle"]


@pytest.mark.parametrize("sparsity, max_loss", [(0.5, 0.01), (0.9, 0.03)])
def test_gradual_schedule_reaches_its_target(digits, sparsity, max_loss):
    report = prune(digits, sparsity, digits["folder"] / f"g{int(100 * sparsity)}.keras")
    curve = report["curve"]
    print(f"\ngradual {100 * sparsity:.0f} %: " + ", ".join(
        f"{100 * p['sparsity']:.0f} % -> {100 * p['accuracy']:.2f} %" for p in curve))
    assert [p["epoch"] for p in curve] == list(range(report["epochs"] + 1))
    reached = [p["sparsity"] for p in curve]
    assert reached[0] == 0 and all(b >= a for a, b in zip(reached, reached[1:]))
    assert reached[-1] == pytest.approx(sparsity, abs=0.002)
    assert report["accuracy"]["after"] == curve[-1]["accuracy"]
    assert report["accuracy"]["after"] >= report["accuracy"]["before"] - max_loss


def test_structured_50_percent_cuts_cortex_m4_instructions_by_40_percent(digits):
    folder = digits["folder"]
    report = prune(digits, 0.5, folder / "c50.keras", "--structured", "channels")
    # conv 16 -> 8 (its depthwise follows), 1x1 conv 32 -> 16, 3x3 conv 32 -> 16, dense 10.
    shapes = {layer["name"]: layer["kernel_after"] for layer in report["layers"]}
    assert sorted(shapes.values()) == sorted([[3, 3, 1, 8], [3, 3, 8, 1], [1, 1, 8, 16],
                                              [3, 3, 16, 16], [64, 10]])
    macs_after = 64 * 9 * 8 + 64 * 9 * 8 + 64 * 8 * 16 + 4 * 9 * 16 * 16 + 64 * 10
    assert report["macs"] == {"before": 89344, "after": macs_after,
                              "nonzero_after": macs_after}
    assert report["sparsity"] == {"pruned_channels": 0.5, "all_kernels": 0.0}
    acc = report["accuracy"]
    assert acc["after"] >= acc["before"] - 0.02 and acc["after"] > acc["after_rebuild"]
    # tinyml inspect counts the same MACs in the graph the converter makes of the file.
    inspected = json.loads(tinyml("inspect", str(folder / "c50.keras"), "--json").stdout)
    assert inspected["totals"]["macs"] == macs_after

    quantize(digits, digits["path"], folder / "dense_int8.tflite")
    quantize(digits, folder / "c50.keras", folder / "c50_int8.tflite")
    dense = cortex_m4_instructions(folder / "dense_int8.tflite")
    pruned = cortex_m4_instructions(folder / "c50_int8.tflite")
    print(f"\nchannels 50 %: accuracy {100 * acc['before']:.2f} % -> {100 * acc['after']:.2f} "
          f"% (after the rebuild {100 * acc['after_rebuild']:.2f} %), MACs 89,344 -> "
          f"{macs_after:,}, cortex-m4 instructions {dense:,} -> {pruned:,} "
          f"({100 * (1 - pruned / dense):.1f} % fewer)")
    assert pruned <= 0.6 * dense

    # The narrower firmware computes what TFLM computes on a test image.
    from tinyml.frontends.tflite import load_tflite
    from tinyml.quantize.params import quantize_array
    graph = load_tflite(folder / "c50_int8.tflite")
    image = np.load(digits["test"])["x"][:1]
    codes = quantize_array(image, graph.tensors[graph.inputs[0]].quant)
    np.save(folder / "x.npy", codes)
    result = tinyml("run", str(folder / "c50_int8.tflite"), "--target", "cortex-m4",
                    "--input", str(folder / "x.npy"), "-o", str(folder / "y.npy"))
    assert result.returncode == 0, result.stderr
    interpreter = tflm_interpreter(folder / "c50_int8.tflite", all_tensors=False)
    interpreter.set_input(codes, 0)
    interpreter.invoke()
    assert np.array_equal(np.load(folder / "y.npy").reshape(-1),
                          interpreter.get_output(0).reshape(-1))
