"""The benchmark suite: public architectures beyond MLPerf Tiny, built here as int8 TFLite files.

Why: tinyml's kernels were tuned on the four MLPerf Tiny models; a speed claim only holds if it
holds on layer shapes those four lack: 5x5 and 7x7 depthwise, dilated and 1-D depthwise,
Conv1D, channel counts that are not multiples of 4, stride 2 everywhere, wider residual
convolutions. Each model here is a public architecture with random (Glorot, fixed seed)
weights, calibrated by the TFLite converter on seeded random inputs (full int8, int8 input and
output), so its activations have realistic int8 ranges and every run of the suite measures the
same bytes. Weights being random does not change instruction counts.

The files are cached in ``<build dir>/suite/`` (never committed); a model is rebuilt only when
its file is missing. ``MODELS`` lists the suite's own eight; ``benchmarks/tflm_cortex_m.py
--suite`` adds the four MLPerf Tiny int8 models for twelve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

CALIBRATION_SAMPLES = 32


def _keras():
    import tensorflow as tf
    return tf, tf.keras.layers


def mobilenet_v2_035_96(seed: int):
    """MobileNetV2, width 0.35, 96x96 RGB (keras.applications, weights=None), 10 classes."""
    tf, _ = _keras()
    tf.keras.utils.set_random_seed(seed)
    return tf.keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35,
                                             weights=None, classes=10)


def mobilenet_v3_small_min(seed: int):
    """MobileNetV3-Small minimalistic (no hard-swish, no squeeze-excite), width 0.5, 96x96."""
    tf, _ = _keras()
    tf.keras.utils.set_random_seed(seed)
    return tf.keras.applications.MobileNetV3Small(
        input_shape=(96, 96, 3), alpha=0.5, minimalistic=True, weights=None, classes=10,
        include_preprocessing=False, dropout_rate=0.0)


def _mcunet(seed: int, blocks: list[tuple[int, int, int, int]], resolution: int, stem: int,
            head: int, family: str):
    """An MCUNet-style network from ``tinyml nas``'s space (:class:`Arch`, built by
    :func:`tinyml.nas.keras_model.build_keras`): ``blocks`` are (channels, stride, kernel,
    expansion), one stage per block."""
    from tinyml.nas.keras_model import build_keras
    from tinyml.nas.search_space import Arch, Block, Stage
    stages = tuple(Stage(c, s, (Block(k, e),)) for c, s, k, e in blocks)
    return build_keras(Arch(resolution=resolution, channels_in=3, stem=stem, stages=stages,
                            head=head, classes=10, family=family), seed)


def mcunet_5x5(seed: int):
    """MCUNet-style blocks, 5x5 depthwise, expansion 3-4, odd channels, 80x80 RGB."""
    return _mcunet(seed, [(11, 1, 5, 3), (19, 2, 5, 4), (19, 1, 5, 3), (29, 2, 5, 4),
                          (37, 2, 5, 3), (37, 1, 5, 4)], 80, 13, 97, "mcunet_5x5")


def mcunet_7x7(seed: int):
    """MCUNet-style blocks, 7x7 depthwise, expansion 5-6, odd channels, 64x64 RGB."""
    return _mcunet(seed, [(9, 1, 7, 5), (17, 2, 7, 6), (17, 1, 7, 5), (27, 2, 7, 6),
                          (35, 2, 7, 5)], 64, 11, 83, "mcunet_7x7")


def dilated_ds_kws(seed: int):
    """A keyword spotter of dilated depthwise-separable convolutions over a 1-D time axis:
    40 frames x 30 features (as 40x1x30), dilations 1, 2, 4, 8 on time, kernels 3 and 5 (as
    Kx1 kernels), a stride-2 block, ~0.8M MACs, 12 classes."""
    tf, L = _keras()
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((40, 1, 30), name="features")
    x = L.Conv2D(48, (3, 1), padding="same", activation="relu", name="conv0")(inputs)
    for i, (kernel, dilation, stride, channels) in enumerate(
            [(3, 1, 1, 60), (5, 2, 1, 60), (3, 4, 1, 60), (5, 8, 1, 60), (3, 1, 2, 63)]):
        x = L.DepthwiseConv2D((kernel, 1), strides=(stride, 1), dilation_rate=(dilation, 1),
                              padding="same", activation="relu", name=f"dw{i}")(x)
        x = L.Conv2D(channels, 1, activation="relu", name=f"pw{i}")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    x = L.Dense(12, name="fc")(x)
    return tf.keras.Model(inputs, L.Softmax(name="softmax")(x), name="dilated_ds_kws")


def conv1d_sensor(seed: int):
    """A human-activity model on 128 samples of a 6-axis accelerometer/gyro (Conv1D layers,
    odd channels, stride 2, a 1-D depthwise, max pooling), 6 classes."""
    tf, L = _keras()
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((128, 6), name="imu")
    x = L.Conv1D(13, 5, strides=2, padding="same", activation="relu", name="conv0")(inputs)
    x = L.Conv1D(27, 5, padding="same", activation="relu", name="conv1")(x)
    x = L.MaxPooling1D(2, name="pool1")(x)
    x = L.DepthwiseConv1D(5, padding="same", activation="relu", name="dw2")(x)
    x = L.Conv1D(35, 1, activation="relu", name="pw2")(x)
    x = L.Conv1D(43, 3, strides=2, padding="same", activation="relu", name="conv3")(x)
    x = L.GlobalAveragePooling1D(name="pool")(x)
    x = L.Dense(6, name="fc")(x)
    return tf.keras.Model(inputs, L.Softmax(name="softmax")(x), name="conv1d_sensor")


def resnet8_x2(seed: int):
    """MLPerf Tiny's ResNet-8 (CIFAR-10, 32x32 RGB) at twice the width: 32, 64, 128 filters."""
    tf, L = _keras()
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(32, 3, padding="same", name="conv0")(inputs)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="relu0")(x)
    for i, (filters, stride) in enumerate([(32, 1), (64, 2), (128, 2)]):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", name=f"s{i}_conv1")(x)
        y = L.BatchNormalization(name=f"s{i}_bn1")(y)
        y = L.ReLU(name=f"s{i}_relu1")(y)
        y = L.Conv2D(filters, 3, padding="same", name=f"s{i}_conv2")(y)
        y = L.BatchNormalization(name=f"s{i}_bn2")(y)
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride, name=f"s{i}_shortcut")(x)
        x = L.ReLU(name=f"s{i}_relu2")(L.Add(name=f"s{i}_add")([x, y]))
    x = L.AveragePooling2D(8, name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(10, name="fc")(x)
    return tf.keras.Model(inputs, L.Softmax(name="softmax")(x), name="resnet8_x2")


def ds_cnn_odd(seed: int):
    """A DS-CNN keyword spotter (49x10 MFCC) with odd channel counts and stride-2 layers:
    conv 10x4 stride 2 to 45 channels, four depthwise-separable blocks (two stride 2),
    average pooling, 12 classes."""
    tf, L = _keras()
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input((49, 10, 1), name="mfcc")
    x = L.Conv2D(45, (10, 4), strides=2, padding="same", activation="relu", name="conv0")(inputs)
    for i, (channels, stride) in enumerate([(45, 1), (59, 2), (59, 1), (77, 2)]):
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu",
                              name=f"dw{i}")(x)
        x = L.Conv2D(channels, 1, activation="relu", name=f"pw{i}")(x)
    x = L.AveragePooling2D(pool_size=(x.shape[1], x.shape[2]), name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(12, name="fc")(x)
    return tf.keras.Model(inputs, L.Softmax(name="softmax")(x), name="ds_cnn_odd")


MODELS: dict[str, Callable] = {
    "mobilenet_v2_035_96": mobilenet_v2_035_96,
    "mobilenet_v3_small_min": mobilenet_v3_small_min,
    "mcunet_5x5": mcunet_5x5,
    "mcunet_7x7": mcunet_7x7,
    "dilated_ds_kws": dilated_ds_kws,
    "conv1d_sensor": conv1d_sensor,
    "resnet8_x2": resnet8_x2,
    "ds_cnn_odd": ds_cnn_odd,
}


def normalize_batch_norms(model, x) -> None:
    """Set every BatchNormalization's moving statistics to those of its input on ``x``, as
    training would. Why: with random weights and fresh statistics (mean 0, variance 1) the
    activations of a deep network shrink layer by layer until the logits' int8 scale is too
    small for TFLM's softmax; normalized, every layer sees unit-scale activations like a
    trained one. One forward pass in training mode with momentum 0 sets them all."""
    import tensorflow as tf
    norms = [layer for layer in _all_layers(model)
             if isinstance(layer, tf.keras.layers.BatchNormalization)]
    if not norms:
        return
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(x.astype("float32"), training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def convert(model, seed: int) -> bytes:
    """Full-int8 TFLite (int8 input and output, batch 1) calibrated on seeded uniform
    [-1, 1) inputs."""
    import numpy as np
    import tensorflow as tf
    rng = np.random.default_rng(seed)
    shape = tuple(model.inputs[0].shape[1:])
    normalize_batch_norms(model, rng.uniform(-1.0, 1.0, (CALIBRATION_SAMPLES, *shape)))

    def representative():
        for _ in range(CALIBRATION_SAMPLES):
            yield [rng.uniform(-1.0, 1.0, (1, *shape)).astype(np.float32)]

    # Batch 1 fixed: with a dynamic batch the converter neither folds a dilated convolution's
    # SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND into its dilation factors nor a Flatten's SHAPE.
    inputs = tf.keras.Input(shape, batch_size=1, name=model.inputs[0].name.split(":")[0])
    model = tf.keras.Model(inputs, model(inputs), name=model.name)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def build(name: str, cache_dir: Path, seed: int = 0, log=print) -> Path:
    """The suite model ``name`` as an int8 .tflite file in ``cache_dir`` (built once)."""
    path = Path(cache_dir) / f"{name}.tflite"
    if not path.exists():
        log(f"{name}: building the suite model (Keras -> TFLite, full int8)")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = convert(MODELS[name](seed), seed)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path
