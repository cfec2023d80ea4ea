"""Train the bundled example: a tiny keyword-spotting-style DS-CNN on synthetic "spectrograms".

The demo must run with nothing outside the repository, so tinyml builds its own example model
instead of shipping someone else's. The data are 49x10 feature maps (the MLPerf Tiny KWS input
shape) in which each of four classes is a band of energy sweeping a different way, plus noise;
a small depthwise-separable CNN learns them to ~100% in a few seconds. The model is then fully
int8-quantized with TensorFlow's converter, exactly as a user would do for a microcontroller.

    .venv/bin/python examples/train_tiny_kws.py   # rewrites examples/tiny_kws_int8.tflite
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
FRAMES, BINS, CLASSES = 49, 10, 4


def synthetic_keywords(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Feature maps whose energy band moves up, down, stays low or stays high over time."""
    labels = rng.integers(0, CLASSES, count)
    t = np.linspace(0, 1, FRAMES)[:, None]
    bins = np.arange(BINS)[None, :]
    x = np.empty((count, FRAMES, BINS, 1), np.float32)
    for i, label in enumerate(labels):
        start = rng.uniform(0, 0.3)
        centre = {0: 1 + 7 * t, 1: 8 - 7 * t, 2: 2 + 0 * t, 3: 7 + 0 * t}[int(label)]
        energy = np.exp(-0.5 * ((bins - centre) / 1.2) ** 2) * ((t >= start) & (t <= start + 0.6))
        x[i, :, :, 0] = energy * rng.uniform(0.7, 1.3) + rng.normal(0, 0.15, (FRAMES, BINS))
    return x, labels


def build_model():
    import tensorflow as tf
    layers = tf.keras.layers
    inputs = tf.keras.Input((FRAMES, BINS, 1), name="features")
    x = layers.Conv2D(16, (5, 3), strides=(2, 2), padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for _ in range(2):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(16, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(CLASSES, activation="softmax")(x)
    return tf.keras.Model(inputs, outputs, name="tiny_kws")


def main() -> None:
    import tensorflow as tf
    tf.keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    x_train, y_train = synthetic_keywords(2000, rng)
    x_test, y_test = synthetic_keywords(400, rng)
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=10, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x_train[i:i + 1]] for i in range(200))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    out = HERE / "tiny_kws_int8.tflite"
    out.write_bytes(converter.convert())
    print(f"float accuracy on held-out synthetic data: {accuracy:.3f}; wrote {out}")


if __name__ == "__main__":
    main()
