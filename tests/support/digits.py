"""The scikit-learn digits CNN the quantization tests train (8x8 images of handwritten digits,
1797 samples bundled with scikit-learn, no download).

A small CNN with batch normalizations, a depthwise convolution, ReLU and ReLU6, a max pool and
a softmax, trained for 30 epochs (about 15 s) with a fixed seed; the first 200 training images
are the calibration set, the 30 % test split the evaluation set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION_IMAGES = 200


def train_digits_cnn(folder: Path) -> dict:
    """Train the CNN; save it (``digits_cnn.keras``), the calibration images (``calib.npz``)
    and the test split (``test.npz``) in ``folder``. Returns the paths, the test arrays, the
    float model's test accuracy and the Keras model."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    import tensorflow as tf

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.3, random_state=0, stratify=data.target)
    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    inputs = tf.keras.Input((8, 8, 1))
    h = L.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    h = L.ReLU()(L.BatchNormalization()(h))
    h = L.DepthwiseConv2D(3, padding="same")(h)
    h = L.ReLU(6.0)(L.BatchNormalization()(h))
    h = L.Conv2D(32, 1, activation="relu")(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(32, 3, activation="relu")(h)
    outputs = L.Softmax()(L.Dense(10)(L.Flatten()(h)))
    model = tf.keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)

    folder = Path(folder)
    path = folder / "digits_cnn.keras"
    model.save(path)
    calib = folder / "calib.npz"
    np.savez(calib, x=x_train[:CALIBRATION_IMAGES], y=y_train[:CALIBRATION_IMAGES])
    test = folder / "test.npz"
    np.savez(test, x=x_test, y=y_test)
    float_accuracy = float(np.mean(np.argmax(model.predict(x_test, verbose=0), 1) == y_test))
    return dict(path=path, calib=calib, test=test, x_train=x_train, y_train=y_train,
                x_test=x_test, y_test=y_test, float_accuracy=float_accuracy, model=model,
                folder=folder)


def tflm_accuracy(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of an int8 .tflite on (x, y), run in TFLM."""
    from support.oracles import tflm_interpreter
    from tinyml.frontends.tflite import load_tflite_bytes
    from tinyml.quantize.params import quantize_array

    graph = load_tflite_bytes(model)
    x_t = graph.tensors[graph.inputs[0]]
    interpreter = tflm_interpreter(model, all_tensors=False)
    correct = 0
    for image, label in zip(x, y):
        interpreter.set_input(quantize_array(image[None], x_t.quant), 0)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_output(0)) == label)
    return correct / len(y)
