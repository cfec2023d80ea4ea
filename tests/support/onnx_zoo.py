"""The op zoo as ONNX: one small float Keras model per op family member, exported by tf2onnx.

The operator tests check int8 arithmetic bit for bit against TFLM on converter-made models;
this zoo checks the other end of the user's path: a float model exported to ONNX, quantized
by tinyml's own quantizer and compiled, must still compute what the float model computes
(``tests/test_onnx_zoo_sqnr.py``, ``benchmarks/onnx_zoo_sqnr.py``). Each entry has its input
shapes and a calibration distribution, the inputs the quantizer and the accuracy check draw
from. Where an op alone would only move the input's codes (data movement, ABS, ...), a
convolution or dense layer comes first so the op sees a computed, requantized tensor.

The builders use tf_keras (Keras 2), the Keras tf2onnx's ``from_keras`` converts; they run in
a child process only (:func:`export`), so TensorFlow never loads into the test process.
Exports are cached on disk, keyed by this file's text (the builders share helpers, so a
builder's own code would not be key enough) and the converter versions.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

_CACHE = Path(tempfile.gettempdir()) / "tinyml-test-onnx-zoo"
OPSET = 13


# ---- calibration distributions ---------------------------------------------------------------

def normal(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.normal(0.0, 1.0, shape)


def uniform(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, shape)


def shifted(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Wider than unit and off centre: the input's zero point is not the middle code."""
    return rng.normal(0.3, 1.5, shape)


# ---- builders ---------------------------------------------------------------------------------

def _keras():
    import tf_keras
    return tf_keras


def _tf():
    import tensorflow as tf
    return tf


def _conv(x, filters: int = 6):
    """The convolution in front of an op that alone would be trivial."""
    return _keras().layers.Conv2D(filters, 3, padding="same",
                                  bias_initializer="random_normal")(x)


def _lambda(fn, x):
    return _keras().layers.Lambda(fn)(x)


def tanh(x):
    return _keras().layers.Activation("tanh")(_conv(x))


def leaky_relu(x):
    return _keras().layers.LeakyReLU(0.2)(_conv(x))


def prelu(x):
    init = _keras().initializers.RandomUniform(-0.4, 0.9, seed=1)
    return _keras().layers.PReLU(alpha_initializer=init, shared_axes=[1, 2])(_conv(x))


def elu(x):
    return _keras().layers.ELU()(_conv(x))


def abs_(x):
    return _lambda(lambda t: _tf().abs(t), _conv(x))


def log_softmax(x):
    y = _keras().layers.Dense(10, bias_initializer="random_normal")(x)
    return _lambda(lambda t: _tf().nn.log_softmax(t, axis=-1), y)


def sub(x, y):
    """SUB of a per-channel mean (broadcast) with a RELU after it, and a same-shape SUB."""
    layers = _keras().layers
    per_channel = layers.GlobalAveragePooling2D(keepdims=True)(y)
    return layers.ReLU()(layers.Subtract()([x, per_channel])), layers.Subtract()([y, x])


def max_min(x, y):
    """MAXIMUM of two images, MINIMUM of a row (broadcast) and an image."""
    row = _keras().layers.AveragePooling2D((x.shape[1], 1))(y)
    return (_lambda(lambda t: _tf().maximum(t[0], t[1]), [x, y]),
            _lambda(lambda t: _tf().minimum(t[0], t[1]), [row, x]))


def squared_difference(x, y):
    per_channel = _keras().layers.GlobalAveragePooling2D(keepdims=True)(y)
    return _lambda(lambda t: _tf().math.squared_difference(t[0], t[1]), [per_channel, x])


def select(x, y):
    """SELECT_V2 (tf.where) choosing between the values it compares, as a max/min or a
    masked activation does: the output is continuous where the condition flips. (Selecting
    unrelated values makes a near-tie that int8 resolves the other way a jump as large as
    their difference: ``where(b <= a, mean, b)`` measured 24.1 dB, 93 % of its noise from
    14 of 2880 flipped conditions, 35.9 dB elsewhere.)"""
    def body(t):
        tf = _tf()
        a, b = t
        col = tf.reduce_mean(b, axis=2, keepdims=True)
        return (tf.where(tf.greater_equal(a, col), a, col), tf.where(tf.less_equal(b, a), b, a),
                tf.logical_not(tf.logical_or(tf.greater(a, b), tf.less(a, -0.25))))
    return _lambda(body, [x, y])


def comparisons(x, y):
    """The comparisons combined by the logical ops: BOOL outputs only."""
    def body(t):
        tf = _tf()
        a, b = t
        col = tf.reduce_mean(b, axis=2, keepdims=True)
        ge, le = tf.greater_equal(a, col), tf.less_equal(b, a)
        mask = tf.logical_or(tf.logical_and(tf.greater(a, b), ge), tf.less(a, -0.25))
        return tf.logical_not(mask), tf.logical_and(le, tf.logical_not(ge))
    return _lambda(body, [x, y])


def reduce_sum(x):
    return _lambda(lambda t: _tf().reduce_sum(t, axis=[1, 2]), _conv(x))


def reduce_max(x):
    return _lambda(lambda t: _tf().reduce_max(t, axis=-1), _conv(x))


def reduce_min(x):
    return _lambda(lambda t: _tf().reduce_min(t, axis=1, keepdims=True), _conv(x))


def argmax(x):
    """The classifier head users write: logits, then the class index."""
    y = _keras().layers.Dense(6, bias_initializer="random_normal")(x)
    return _lambda(lambda t: _tf().math.argmax(t, axis=-1, output_type=_tf().int32), y)


def l2_normalize(x):
    return _lambda(lambda t: _tf().math.l2_normalize(t, axis=-1), _conv(x, 8))


def slice_(x):
    return _lambda(lambda t: _tf().slice(t, [0, 1, 0, 1], [1, 3, 4, 4]), _conv(x))


def strided_slice(x):
    return _keras().layers.Cropping2D(((1, 2), (2, 1)))(_conv(x))


def split(x):
    def body(t):
        a, b, c = _tf().split(t, [1, 3, 2], axis=-1)
        return _tf().concat([c, a, b], axis=-1)
    return _lambda(body, _conv(x))


def resize_nearest(x):
    return _lambda(lambda t: _tf().image.resize(t, (10, 12), "nearest"), _conv(x))


def resize_bilinear(x):
    return _keras().layers.UpSampling2D((2, 2), interpolation="bilinear")(_conv(x))


def depth_to_space(x):
    return _lambda(lambda t: _tf().nn.depth_to_space(t, 2), _conv(x, 8))


def space_to_depth(x):
    return _lambda(lambda t: _tf().nn.space_to_depth(t, 2), _conv(x))


def mirror_pad(x):
    return _lambda(lambda t: _tf().pad(t, [[0, 0], [2, 1], [1, 2], [0, 0]], "REFLECT"),
                   _conv(x))


def gather(x):
    return _lambda(lambda t: _tf().gather(t, [2, 0, 1, 1, 3], axis=1), _conv(x))


def reverse(x):
    return _lambda(lambda t: _tf().reverse(t, [2]), _conv(x))


def conv1d(x):
    return _keras().layers.Conv1D(6, 3, padding="same", activation="relu",
                                  bias_initializer="random_normal")(x)


def conv1d_dilated(x):
    return _keras().layers.Conv1D(6, 3, dilation_rate=2, padding="same",
                                  bias_initializer="random_normal")(x)


def conv2d_dilated(x):
    return _keras().layers.Conv2D(4, 3, dilation_rate=2, padding="same",
                                  bias_initializer="random_normal")(x)


def depthwise_dilated(x):
    return _keras().layers.DepthwiseConv2D((3, 2), dilation_rate=(2, 3), padding="same",
                                           activation="relu",
                                           bias_initializer="random_normal")(x)


def conv2d_transpose(x):
    y = _keras().layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    return _keras().layers.Conv2DTranspose(3, 3, strides=2, padding="same",
                                           bias_initializer="random_normal")(y)


def attention(x, y):
    """Queries x keys^T, softmax, times values: MatMul of two computed tensors."""
    layers, tf = _keras().layers, _tf()
    q, k = layers.Dense(8)(x), layers.Dense(8)(y)
    scores = _lambda(lambda t: tf.nn.softmax(tf.matmul(t[0], t[1], transpose_b=True)), [q, k])
    return _lambda(lambda t: tf.matmul(t[0], t[1]), [scores, k])


def encoder(x):
    """A transformer encoder block: 2-head self-attention, residual LayerNormalization, a ReLU
    feed-forward layer and a second LayerNormalization."""
    layers = _keras().layers
    h = layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    h = layers.LayerNormalization()(layers.Add()([h, x]))
    f = layers.Dense(8)(layers.Dense(16, activation="relu")(h))
    return layers.LayerNormalization()(layers.Add()([h, f]))


def lstm(x):
    """tf2onnx writes Keras' LSTM as one ONNX LSTM node (zero initial state, no B split)."""
    layers = _keras().layers
    return layers.Dense(4)(layers.LSTM(8)(x))


def gru(x):
    """Keras' GRU (reset_after: ONNX GRU with linear_before_reset=1)."""
    layers = _keras().layers
    return layers.Dense(4)(layers.GRU(8)(x))


def gru_sequences(x):
    """A GRU reading the sequence backwards and returning every step (ReverseSequence in
    front of the GRU node, its full Y output after it)."""
    layers = _keras().layers
    return layers.Dense(3)(layers.GRU(6, return_sequences=True, go_backwards=True)(x))


# ---- the zoo -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZooModel:
    build: Callable
    shapes: tuple[tuple[int, ...], ...]   #: input shapes, batch 1 included
    ops: str                              #: the op family members it stands for (TFLite names)
    calibration: Callable[[np.random.Generator, tuple], np.ndarray] = normal
    #: "keras": tf2onnx.convert.from_keras; "tflite": the TFLite converter's float file, then
    #: tf2onnx.convert.from_tflite (the TFLite op becomes its ONNX op, not TF's decomposition)
    via: str = "keras"
    #: The SQNR floor when it is not :data:`MIN_SQNR_DB`: the recurrent layers' int8 form
    #: (TFLM's fixed 1/256 and 1/128 gate scales, a state requantized every step) reaches
    #: what the TFLite converter's own int8 conversion of the same layers reaches, no more.
    min_sqnr_db: float | None = None

    def sample(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One input set from the calibration distribution."""
        return [self.calibration(rng, s).astype(np.float32) for s in self.shapes]


IMAGE = ((1, 6, 7, 3),)
TWO_IMAGES = ((1, 5, 6, 3), (1, 5, 6, 3))

ZOO: dict[str, ZooModel] = {
    "tanh": ZooModel(tanh, IMAGE, "CONV_2D TANH"),
    "leaky_relu": ZooModel(leaky_relu, IMAGE, "CONV_2D LEAKY_RELU"),
    "prelu": ZooModel(prelu, IMAGE, "CONV_2D PRELU (tf2onnx: Relu, Neg, Relu, Mul, Add)"),
    "elu": ZooModel(elu, IMAGE, "CONV_2D ELU"),
    "abs": ZooModel(abs_, IMAGE, "CONV_2D ABS", shifted),
    "log_softmax": ZooModel(log_softmax, ((1, 12),), "FULLY_CONNECTED LOG_SOFTMAX"),
    "sub": ZooModel(sub, TWO_IMAGES, "MEAN SUB", shifted),
    "max_min": ZooModel(max_min, TWO_IMAGES, "AVERAGE_POOL_2D MAXIMUM MINIMUM"),
    "squared_difference": ZooModel(squared_difference, TWO_IMAGES,
                                   "MEAN SQUARED_DIFFERENCE (tf2onnx: Sub, Mul)", shifted),
    "comparisons": ZooModel(comparisons, TWO_IMAGES, "MEAN GREATER GREATER_EQUAL LESS "
                            "LESS_EQUAL LOGICAL_AND LOGICAL_OR LOGICAL_NOT"),
    "select": ZooModel(select, TWO_IMAGES, "MEAN GREATER_EQUAL LESS_EQUAL SELECT_V2 (tf2onnx: "
                       "Cast, Mul, Add)"),
    "sum": ZooModel(reduce_sum, IMAGE, "CONV_2D SUM"),
    "reduce_max": ZooModel(reduce_max, IMAGE, "CONV_2D REDUCE_MAX", uniform),
    "reduce_min": ZooModel(reduce_min, IMAGE, "CONV_2D REDUCE_MIN", uniform),
    "arg_max": ZooModel(argmax, ((1, 12),), "FULLY_CONNECTED ARG_MAX"),
    "l2_normalization": ZooModel(l2_normalize, IMAGE, "CONV_2D L2_NORMALIZATION (tf2onnx: Mul, "
                                 "ReduceSum, Max, Sqrt, Reciprocal, Mul)"),
    "slice": ZooModel(slice_, IMAGE, "CONV_2D SLICE (imported as STRIDED_SLICE)"),
    "strided_slice": ZooModel(strided_slice, IMAGE, "CONV_2D STRIDED_SLICE"),
    "split": ZooModel(split, IMAGE,
                      "CONV_2D SPLIT_V (imported as STRIDED_SLICEs) CONCATENATION"),
    "resize_nearest": ZooModel(resize_nearest, IMAGE, "CONV_2D RESIZE_NEAREST_NEIGHBOR"),
    "resize_bilinear": ZooModel(resize_bilinear, IMAGE, "CONV_2D RESIZE_BILINEAR"),
    "depth_to_space": ZooModel(depth_to_space, ((1, 4, 6, 3),), "CONV_2D DEPTH_TO_SPACE"),
    "space_to_depth": ZooModel(space_to_depth, ((1, 4, 6, 3),), "CONV_2D SPACE_TO_DEPTH"),
    "mirror_pad": ZooModel(mirror_pad, IMAGE, "CONV_2D MIRROR_PAD"),
    "gather": ZooModel(gather, IMAGE, "CONV_2D GATHER"),
    "reverse": ZooModel(reverse, IMAGE, "CONV_2D REVERSE_V2 (tf2onnx: ReverseSequence)"),
    "conv1d": ZooModel(conv1d, ((1, 16, 3),), "CONV_2D (Conv1D)", uniform),
    "conv1d_dilated": ZooModel(conv1d_dilated, ((1, 16, 3),), "CONV_2D (dilated Conv1D)",
                               uniform),
    "conv2d_dilated": ZooModel(conv2d_dilated, ((1, 9, 10, 3),), "CONV_2D (dilated)", uniform),
    "depthwise_dilated": ZooModel(depthwise_dilated, ((1, 9, 8, 3),),
                                  "DEPTHWISE_CONV_2D (dilated)", uniform),
    "conv2d_transpose": ZooModel(conv2d_transpose, ((1, 6, 6, 2),), "CONV_2D TRANSPOSE_CONV",
                                 uniform),
    # Bounded inputs: with N(0, 1) the calibrated min/max of 64 samples' tails decide how much
    # of each input is clipped, which the softmax over the scores amplifies (24 to 31 dB by
    # calibration draw, for tinyml and the TFLite converter alike).
    "attention": ZooModel(attention, ((1, 10, 6), (1, 10, 6)),
                          "FULLY_CONNECTED BATCH_MATMUL SOFTMAX", uniform),
    "encoder": ZooModel(encoder, ((1, 12, 8),), "BATCH_MATMUL SOFTMAX MEAN "
                        "SQUARED_DIFFERENCE RSQRT MUL ADD (MultiHeadAttention, "
                        "LayerNormalization)", via="tflite"),
    # Recurrent layers (tf2onnx: one LSTM / GRU node each, unrolled at import).
    # The TFLite converter's full-int8 conversion of the same Keras LSTM and GRU (unrolled),
    # measured the same way: 24.3 and 29.7 dB; tinyml's: 24.3, 25.3 and 29.0 (gru_sequences).
    # tinyml's quantizer on the converter's own float unrolled graphs: 24.6 and 25.7 dB (the
    # GRU's gap to the converter is the calibration's, not the ONNX unrolling's).
    "lstm": ZooModel(lstm, ((1, 6, 5),), "FULLY_CONNECTED LOGISTIC TANH MUL ADD (ONNX LSTM)",
                     min_sqnr_db=23.0),
    "gru": ZooModel(gru, ((1, 6, 5),), "FULLY_CONNECTED LOGISTIC TANH MUL SUB ADD (ONNX GRU)",
                    min_sqnr_db=24.0),
    "gru_sequences": ZooModel(gru_sequences, ((1, 5, 4),), "REVERSE_V2 FULLY_CONNECTED "
                              "LOGISTIC TANH MUL SUB ADD CONCATENATION (ONNX GRU, every step)",
                              min_sqnr_db=27.0),
    # Through the TFLite converter PReLU and l2_normalize arrive as one ONNX op each (PRelu,
    # LpNormalization) instead of tf2onnx's decompositions of TF's graph.
    "prelu_tflite": ZooModel(prelu, IMAGE, "CONV_2D PRELU", via="tflite"),
    "l2_normalization_tflite": ZooModel(l2_normalize, IMAGE, "CONV_2D L2_NORMALIZATION",
                                        via="tflite"),
}

# ---- export -------------------------------------------------------------------------------------

_EXPORT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_USE_LEGACY_KERAS"] = "1"
sys.path.insert(0, sys.argv[1])
import tensorflow as tf, tf2onnx, tf_keras
from support.onnx_zoo import ZOO, OPSET
for job in sys.argv[2:]:
    name, dst = job.split("|")
    entry = ZOO[name]
    tf_keras.utils.set_random_seed(0)
    inputs = [tf_keras.Input(shape=s[1:], batch_size=s[0], name=f"input_{i:02d}")
              for i, s in enumerate(entry.shapes)]
    model = tf_keras.Model(inputs, entry.build(*inputs))
    spec = [tf.TensorSpec(s, tf.float32, name=f"input_{i:02d}")
            for i, s in enumerate(entry.shapes)]
    tmp = dst + f".{os.getpid()}.tmp"
    if entry.via == "tflite":
        flat = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        with open(tmp + ".tflite", "wb") as f:
            f.write(flat)
        tf2onnx.convert.from_tflite(tmp + ".tflite", opset=OPSET, output_path=tmp)
        os.remove(tmp + ".tflite")
    else:
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET, output_path=tmp)
    os.replace(tmp, dst)
"""


def _path(name: str) -> Path:
    from importlib.metadata import version  # importing tf2onnx would import TensorFlow
    entry = ZOO[name]
    key = hashlib.sha256(repr((Path(__file__).read_bytes(), name, entry.shapes, entry.via,
                               OPSET, version("tf2onnx"), version("tf_keras"))).encode())
    return _CACHE / f"{name}-{key.hexdigest()[:12]}.onnx"


def export(names: list[str] | None = None) -> dict[str, Path]:
    """The .onnx file of each named zoo model (all by default), converting the missing ones
    together in one child process (one TensorFlow start-up)."""
    names = list(ZOO) if names is None else names
    paths = {name: _path(name) for name in names}
    jobs = [f"{name}|{path}" for name, path in paths.items() if not path.exists()]
    if jobs:
        _CACHE.mkdir(parents=True, exist_ok=True)
        tests_dir = str(Path(__file__).resolve().parents[1])
        done = subprocess.run([sys.executable, "-c", _EXPORT, tests_dir] + jobs,
                              capture_output=True, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if done.returncode != 0:
            raise RuntimeError(f"tf2onnx export failed: {done.stderr[-3000:]}")
    return paths


# ---- accuracy against onnxruntime ----------------------------------------------------------

#: Below this SQNR (dB) an int8 output does not compute what the float model computes.
MIN_SQNR_DB = 25.0
#: Index and BOOL outputs have no noise to measure: a flipped class or comparison is wrong,
#: not noisy. Near-ties of the float values flip under any quantization, so the share of
#: elements agreeing with onnxruntime must reach this instead.
MIN_AGREEMENT = 0.90
CALIB_SAMPLES = 64


def min_sqnr_db(name: str) -> float:
    """The SQNR an output of zoo model ``name`` must reach."""
    floor = ZOO[name].min_sqnr_db
    return MIN_SQNR_DB if floor is None else floor
EVAL_SAMPLES = 32


def sqnr_db(ref: np.ndarray, ours: np.ndarray) -> float:
    """10 log10(signal power / noise power), the float output being the signal."""
    ref, ours = np.asarray(ref, np.float64), np.asarray(ours, np.float64)
    noise = float(np.sum((ref - ours) ** 2))
    signal = float(np.sum(ref ** 2))
    return float("inf") if noise == 0.0 else 10.0 * np.log10(signal / noise)


@dataclass
class Accuracy:
    name: str
    onnx_ops: list[str]                  #: node types of the exported ONNX graph
    int8_ops: list[str]                  #: op kinds of tinyml's quantized graph
    sqnr: dict[str, float]               #: per real-valued output, dB
    agreement: dict[str, float]          #: per index / BOOL output, share of equal elements
    graph: object = field(default=None, repr=False)  #: the int8 graph that was measured

    def worst_sqnr(self) -> float | None:
        return min(self.sqnr.values()) if self.sqnr else None

    def passed(self) -> bool:
        return all(v >= min_sqnr_db(self.name) for v in self.sqnr.values()) and \
            all(v >= MIN_AGREEMENT for v in self.agreement.values())


def accuracy(name: str, path: Path, seed: int = 0) -> Accuracy:
    """Quantize the ONNX file with tinyml's quantizer on samples of the zoo entry's
    distribution, run the int8 graph (reference interpreter, which the compiled C equals)
    on fresh samples of it, and compare the dequantized outputs with onnxruntime's float
    outputs over all samples together."""
    import onnx
    import onnxruntime as ort
    from tinyml.quantize import quantize_model
    from tinyml.reference import run

    entry = ZOO[name]
    rng = np.random.default_rng(seed)
    samples = [entry.sample(rng) for _ in range(CALIB_SAMPLES)]
    calib = [np.concatenate([s[i] for s in samples]) for i in range(len(entry.shapes))]
    model = quantize_model(path, calib)
    graph = model.graph
    options = ort.SessionOptions()
    options.log_severity_level = 3  # tf2onnx declares shapes ONNX infers otherwise (Resize)
    ort.set_default_logger_severity(3)  # and writes attributes deprecated in its opset
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds = [i.name for i in session.get_inputs()]
    theirs: list[list[np.ndarray]] = []
    ours: list[list[np.ndarray]] = []
    for _ in range(EVAL_SAMPLES):
        x = entry.sample(rng)
        theirs.append(session.run(None, dict(zip(feeds, x))))
        codes = run(graph, model.quantize_inputs(x))
        ours.append([_real(graph, n, codes[n]) for n in graph.outputs])
    sqnr, agreement = {}, {}
    for k, out in enumerate(session.get_outputs()):
        ref = np.stack([t[k] for t in theirs])
        got = np.stack([o[k] for o in ours])
        if got.shape != ref.shape:
            raise AssertionError(f"{name}: output {out.name} has shape {got.shape[1:]}, "
                                 f"onnxruntime's {ref.shape[1:]}")
        if ref.dtype.kind in "biu":
            agreement[out.name] = float(np.mean(ref == got.astype(ref.dtype)))
        else:
            sqnr[out.name] = sqnr_db(ref, got)
    onnx_ops = sorted({n.op_type for n in onnx.load(str(path)).graph.node})
    return Accuracy(name, onnx_ops, sorted({op.kind for op in graph.ops}), sqnr, agreement,
                    graph)


def _real(graph, name: str, codes: np.ndarray) -> np.ndarray:
    """An output as real values: int8 dequantized, indices and BOOL as they are."""
    from tinyml.quantize.params import dequantize_array
    q = graph.tensors[name].quant
    return codes if q is None or codes.dtype != np.int8 else dequantize_array(codes, q)
