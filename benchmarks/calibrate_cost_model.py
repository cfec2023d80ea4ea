"""Calibrate the compiler's cost model for a core on profiled QEMU runs, and check it.

The cost model (tinyml.schedule.cost_model) predicts the instructions of any plan so that
``--optimize`` can weigh RAM against time. It is fitted on the per-layer instructions of
profiling builds of varied models, each planned layer by layer and with a few forced patch
grids (the coarsest, a middle one and the smallest-arena one), and written to
``tinyml/schedule/data/<core>.json`` with each plan's relative error under the fit. Models:
the NAS calibration candidates (MobileNet-like blocks, 3x3/5x5/7x7 depthwise), a set of layer
shapes users bring that those lack (:data:`SHAPES`: 1-D and dilated kernels along time, odd
channel counts, stride 2, wide dense layers; random weights, converted by the TFLite
converter), the MLPerf Tiny int8 models when ``../shared`` is there, and any ``--model FILE``
given. ``--check FILE ...``
only predicts and measures (default plan) the given models with the stored model: held-out
models. ``--refit --from-benchmark RUN.json`` refits without QEMU runs, adding the per-layer
counts a ``benchmarks/tflm_cortex_m.py --json`` run measured (the suite).

    .venv/bin/python benchmarks/calibrate_cost_model.py [--target cortex-m4] [--model F ...]
    .venv/bin/python benchmarks/calibrate_cost_model.py --check model.tflite ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyml.compiler import plan  # noqa: E402
from tinyml.errors import TinymlError  # noqa: E402
from tinyml.nas.calibration import calibration_archs  # noqa: E402
from tinyml.nas.ir_builder import quantized_graph  # noqa: E402
from tinyml.quantize.tflite_export import export_tflite  # noqa: E402
from tinyml.schedule import cost_model  # noqa: E402
from tinyml.schedule.patches import estimate_candidates  # noqa: E402
from tinyml.schedule.latency import kernel_key, layer_features, stage_features  # noqa: E402
from tinyml.targets import load_target  # noqa: E402
from tinyml.verify import make_samples, profile_layers  # noqa: E402

MLPERF = ROOT.parent / "shared" / "models" / "mlperf_tiny"
MLPERF_MODELS = ("kws_ref_model.tflite", "vww_96_int8.tflite", "pretrainedResnet_quant.tflite",
                 "ad01_int8.tflite")


def patch_options(model: Path, target) -> list[str]:
    """"off" and up to three forced grids: fewest patches, most patches, and between."""
    result = plan(model, target, patch="off")
    candidates = estimate_candidates(result.graph, result.calls, 0.5)
    if not candidates:
        return ["off"]
    by_count = sorted(candidates, key=lambda c: (c.grid[0] * c.grid[1], c.estimate))
    picks = [by_count[0], by_count[len(by_count) // 2], min(candidates, key=lambda c: c.key())]
    options = ["off"]
    for c in picks:
        option = f"{c.k}:{c.grid[0]}x{c.grid[1]}"
        if option not in options:
            options.append(option)
    return options


def _time_convs(x):
    """1-D convolutions along 49 frames: kernels 3/5/9, dilations 1-4, odd channels."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(13, (9, 3), strides=(1, 2), padding="same", activation="relu")(x)
    for kernel, dilation, channels in ((5, 1, 21), (3, 4, 37), (9, 2, 16)):
        y = L.DepthwiseConv2D((kernel, 1), padding="same", dilation_rate=(dilation, 1),
                              activation="relu")(y)
        y = L.Conv2D(channels, 1, activation="relu")(y)
    y = L.Conv2D(30, (3, 1), dilation_rate=(2, 1), activation="relu")(y)
    return L.Dense(7)(L.Flatten()(L.AveragePooling2D((4, 1))(y)))


def _spectrogram_columns(x):
    """Kernels along one axis of a 2-D feature map (time x frequency, 62x12): regular and
    depthwise k x 1 convolutions, dilated or not, channel counts of every alignment."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(18, (7, 1), padding="same", activation="relu")(x)
    for kernel, dilation, channels in ((3, 1, 33), (5, 2, 14), (3, 3, 24)):
        y = L.DepthwiseConv2D((kernel, 1), padding="same", dilation_rate=(dilation, 1),
                              activation="relu")(y)
        y = L.Conv2D(channels, 1, activation="relu")(y)
    y = L.Conv2D(20, (1, 3), activation="relu")(y)
    return L.Dense(4)(L.GlobalAveragePooling2D()(y))


def _sensor_conv1d(x):
    """Accelerometer windows: Conv1D with strides and odd channels, then dense layers."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv1D(11, 7, strides=2, activation="relu")(x)
    y = L.Conv1D(19, 5, padding="same", activation="relu")(y)
    y = L.MaxPooling1D(2)(y)
    y = L.Conv1D(33, 3, strides=2, activation="relu")(y)
    y = L.Dense(96, activation="relu")(L.Flatten()(y))
    return L.Softmax()(L.Dense(6)(y))


def _strided_2d(x):
    """Stride-2 regular and 5x5/7x7 depthwise convolutions with channel counts not
    multiples of 4, a residual add and global pooling."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(10, 3, strides=2, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(5, strides=2, padding="same", activation="relu")(y)
    y = L.Conv2D(22, 1, activation="relu")(y)
    z = L.DepthwiseConv2D(7, padding="same", activation="relu")(y)
    z = L.Conv2D(22, 1)(z)
    y = L.ReLU()(L.Add()([y, z]))
    y = L.Conv2D(35, 3, strides=2, padding="valid", activation="relu")(y)
    y = L.GlobalAveragePooling2D()(y)
    return L.Dense(5)(y)


def _wide_dense(x):
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Dense(300, activation="relu")(x)
    y = L.Dense(129, activation="tanh")(y)
    return L.Softmax()(L.Dense(10)(y))


#: Layer shapes users bring that the NAS space lacks: (name, Keras builder, input shape).
SHAPES = (("time convolutions", _time_convs, (1, 49, 10, 1)),
          ("spectrogram columns", _spectrogram_columns, (1, 62, 12, 1)),
          ("sensor conv1d", _sensor_conv1d, (1, 128, 6)),
          ("strided 2-D", _strided_2d, (1, 64, 64, 3)),
          ("wide dense", _wide_dense, (1, 640)))


def convert(build, shape, path: Path, seed: int = 0) -> Path:
    """``build`` on a Keras input of ``shape``, random weights, full int8 by the TFLite
    converter (calibrated on normal noise)."""
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    x = tf.keras.Input(shape=shape[1:], batch_size=1)
    converter = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(x, build(x)))
    rng = np.random.default_rng(seed)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.normal(0, 1, shape).astype(np.float32)]
                                                for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


def calibration_models(workdir: Path, extra: list[Path]) -> list[tuple[str, Path]]:
    models = [(name, convert(build, shape, workdir / f"shape{i}.tflite"))
              for i, (name, build, shape) in enumerate(SHAPES)]
    for i, arch in enumerate(calibration_archs()):
        path = workdir / f"nas{i}.tflite"
        path.write_bytes(export_tflite(quantized_graph(arch)))
        models.append((f"nas candidate {i}", path))
    models += [(p.stem, p) for p in (MLPERF / name for name in MLPERF_MODELS) if p.exists()]
    return models + [(p.stem, p) for p in extra]


def profile_samples(model: str | Path, target, workdir: Path, patch: str = "off"
                    ) -> tuple[list[tuple[str, tuple, int]], int, object]:
    """(kernel key, features, measured instructions) of every layer of ``model`` planned with
    ``patch`` on ``target`` (emulated), the measured total, and the plan's Compilation."""
    result = plan(model, target, patch=patch)
    sample = make_samples(result.source_graph, 1, seed=0)[0]
    measured = profile_layers(model, target, sample, workdir, patch=patch)
    staged = stage_features(result.graph, result.patch) if result.patch is not None else {}
    # (a fused layer and the RESHAPE after it may share a name: match the kind too)
    by_name = {(c.op.name, c.op.kind): c for c in result.calls}
    samples = []
    for layer in measured:
        call = by_name.get((layer["name"], layer["op"]))
        if call is None or not layer["instructions"]:
            continue
        features, pixels = staged.get(call.op.name) or (layer_features(result.graph, call),
                                                        None)
        samples.append((kernel_key(result.graph, call, pixels), tuple(features),
                        int(layer["instructions"])))
    return samples, sum(s[2] for s in samples), result


def benchmark_samples(path: Path, models_dir: Path, target) -> dict[str, list]:
    """Samples from a saved ``tflm_cortex_m.py --json`` run on ``target``'s core: each
    layer-by-layer model's per-layer instructions (its profiling build) with the features of
    the same plan. No QEMU run: the benchmark measured them."""
    data = json.loads(path.read_text())
    profiled: dict[str, list] = {}
    for entry in data["models"]:
        tiny = entry["tinyml"]
        model = next((p for p in (models_dir / f"{entry['model']}.tflite",
                                  MLPERF / f"{entry['model']}.tflite") if p.exists()), None)
        if tiny.get("patch") or model is None:
            continue
        result = plan(model, target, patch="off")
        # (a fused layer and the RESHAPE after it may share a name: match the kind too)
        by_name = {(c.op.name, c.op.kind): c for c in result.calls}
        samples = [(kernel_key(result.graph, call), tuple(layer_features(result.graph, call)),
                    int(layer["instructions"]))
                   for layer in tiny["layers"]
                   if (call := by_name.get((layer["name"], layer["op"]))) is not None
                   and layer["instructions"]]
        profiled[f"{entry['model']} (benchmark)"] = samples
    return profiled


def calibrate(plans: Sequence[tuple[str, str | Path, str]], target, workdir: Path,
              log=print) -> cost_model.CostModel:
    """Fit the cost model of ``target``'s core on ``plans``: (label, model file, patch option)
    each, profiled in QEMU. ``errors`` holds each plan's relative error under the fit."""
    profiled: dict[str, list] = {}
    for i, (label, model, patch) in enumerate(plans):
        try:
            samples, total, _ = profile_samples(model, target, workdir / f"plan{i}", patch)
        except TinymlError as exc:  # a forced grid whose kernels do not run on patches
            log(f"skipped {label} --patch {patch}: {exc}")
            continue
        profiled[f"{label} ({patch})"] = samples
        log(f"profiled {label} --patch {patch}: {total:,} instructions, {len(samples)} layers")
    return cost_model.fitted(target.core, profiled)


def check(models: list[Path], target) -> int:
    from tinyml.compiler import compile_model
    model = cost_model.for_target(target)
    print(f"cost model of {model.core}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for path in models:
            result = compile_model(path, target, Path(tmp) / path.stem)
            measured = result.example_run["instructions"]
            error = result.predicted_instructions / measured - 1
            worst = max(worst, abs(error))
            patch = result.patch.to_json()["grid"] if result.patch else "off"
            print(f"{path.stem:32s} patch {patch}: predicted {result.predicted_instructions:,}"
                  f" measured {measured:,} ({100 * error:+.1f} %)")
    print(f"worst error {100 * worst:.1f} %")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cortex-m4")
    parser.add_argument("--model", type=Path, action="append", default=[],
                        help="also calibrate on this model (repeatable)")
    parser.add_argument("--check", type=Path, nargs="+", help="only check these models")
    parser.add_argument("--refit", action="store_true",
                        help="refit on the samples stored with the model (no QEMU runs)")
    parser.add_argument("--from-benchmark", type=Path, metavar="JSON", nargs="+", default=[],
                        help="with --refit: also fit on the layers of a saved "
                             "tflm_cortex_m.py --json run (its suite models in --models-dir)")
    parser.add_argument("--models-dir", type=Path, help="where --from-benchmark's models are")
    parser.add_argument("--drop", nargs="+", default=[], metavar="FUNCTION",
                        help="with --refit: leave out the stored samples of these kernels")
    args = parser.parse_args()
    target = load_target(args.target)
    if args.check:
        return check(args.check, target)
    if args.refit:
        stored = cost_model.for_target(target)
        samples = {k: v for k, v in stored.samples.items() if not k.endswith("(benchmark)")}
        if args.drop:  # e.g. samples a name clash attributed to the wrong kernel
            samples = {k: [s for s in v if s[0].split("|")[0] not in args.drop]
                       for k, v in samples.items()}
        for run in args.from_benchmark:
            samples.update(benchmark_samples(run, args.models_dir, target))
        model = cost_model.fitted(stored.core, samples)
        cost_model.data_path(stored.core).write_text(json.dumps(model.to_json(), indent=1)
                                                     + "\n")
        return _print_errors(model)
    with tempfile.TemporaryDirectory(prefix="tinyml-cost-") as tmp:
        root = Path(tmp)
        plans = [(label, path, option) for label, path in calibration_models(root, args.model)
                 for option in patch_options(path, target)]
        model = calibrate(plans, target, root)
    path = cost_model.data_path(target.core)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(model.to_json(), indent=1) + "\n")
    print(f"wrote {path}")
    return _print_errors(model)


def _print_errors(model) -> int:
    for name, error in model.errors.items():
        print(f"  {name:48s} {100 * error:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
