"""The TFLite converter's full-integer quantization, as the baseline tinyml's quantizer is judged
against, and the figures both are measured by.

``converter_int8_keras`` runs ``TFLiteConverter`` end to end on a Keras model (in memory or an
.h5 file read with tf_keras, as the Keras frontend does). ``converter_int8_tflite`` quantizes a
float .tflite file, which the converter's public API cannot take as input, with the two
functions ``TFLiteConverter`` itself calls after producing its float flatbuffer: the
calibrator (``Calibrator.calibrate`` on the representative dataset) and the MLIR quantizer
(``mlir_quantize``); the result is what the converter would produce from the model's source.
Both use int8 inputs and outputs, per-channel weights (also for dense layers, the converter's
default), and the samples given, in order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _dataset(samples: list[np.ndarray]):
    def generate():
        for x in samples:
            yield [np.asarray(x, np.float32)]
    return generate


def converter_int8_tflite(float_model: bytes | Path, samples: list[np.ndarray]) -> bytes:
    import tensorflow as tf
    from tensorflow.lite.python import convert
    from tensorflow.lite.python.optimize import calibrator

    data = Path(float_model).read_bytes() if isinstance(float_model, (str, Path)) \
        else bytes(float_model)
    prepared = calibrator.add_intermediate_tensors(data)
    calibrated = calibrator.Calibrator(prepared).calibrate(_dataset(samples))
    return convert.mlir_quantize(calibrated, False, input_data_type=tf.int8,
                                 output_data_type=tf.int8)


def converter_int8_keras(model, samples: list[np.ndarray]) -> bytes:
    """``model``: a Keras 3 model object, or a legacy (tf_keras) .h5 model or its path.

    A Keras 3 model goes through ``from_keras_model``; a tf_keras model is traced for a batch-1
    input and goes through ``from_concrete_functions``, as the Keras frontend converts it."""
    import tensorflow as tf

    if isinstance(model, (str, Path)):
        import tf_keras
        model = tf_keras.models.load_model(str(model), compile=False)
    if type(model).__module__.startswith("keras"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        shape = (1,) + tuple(int(d) for d in model.inputs[0].shape[1:])
        function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec(shape, tf.float32))
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _dataset(samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def sqnr_db(reference: list[np.ndarray], values: list[np.ndarray]) -> float:
    """10 log10(sum f^2 / sum (f - q)^2) over all samples."""
    f = np.concatenate([np.asarray(r, np.float64).ravel() for r in reference])
    q = np.concatenate([np.asarray(v, np.float64).ravel() for v in values])
    noise = float(np.sum((f - q) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(f ** 2)) / noise)


def run_int8_tflm(model: bytes, samples: list[np.ndarray]) -> list[np.ndarray]:
    """Quantize each float sample with the model's input quantization (int8, or int16 for a
    16x8 model), run TFLM, dequantize the output with the model's output quantization."""
    from support.oracles import tflm_interpreter
    from tinyml.frontends.tflite import load_tflite_bytes
    from tinyml.quantize.params import quantize_array

    graph = load_tflite_bytes(model)
    x_t, y_t = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    interpreter = tflm_interpreter(model, all_tensors=False)
    outputs = []
    for x in samples:
        interpreter.set_input(quantize_array(x, x_t.quant, np.dtype(x_t.dtype).type), 0)
        interpreter.invoke()
        y = interpreter.get_output(0).astype(np.float64)
        outputs.append((y - y_t.zero_point()) * y_t.scale())
    return outputs


def run_float_litert(model: bytes | Path, samples: list[np.ndarray]) -> list[np.ndarray]:
    from support.oracles import litert_interpreter, litert_run
    interpreter = litert_interpreter(model)
    return [np.array(litert_run(interpreter, np.asarray(x, np.float32))) for x in samples]


# ---- MLPerf Tiny: tinyml vs the converter on the same inputs ---------------------------------

#: Real input range of each MLPerf Tiny model, from its int8 reference model's input
#: quantization (codes -128..127): calibration and evaluation inputs are drawn uniformly in it.
MLPERF_INPUT_RANGES = {
    "kws_ref_model_float32": (-123.372, 25.727),
    "vww_96_float": (0.0, 1.0), "vww_96": (0.0, 1.0),
    "pretrainedResnet": (0.0, 255.0),
    "ad01_fp32": (-84.850, 14.859), "ad01": (-84.850, 14.859),
}
CALIBRATION_SAMPLES = 200
EVALUATION_SAMPLES = 100


def mlperf_inputs(name: str, shape: tuple[int, ...]) -> tuple[list, list]:
    """(200 calibration inputs, 100 other evaluation inputs), seeded, in the model's range."""
    low, high = MLPERF_INPUT_RANGES[name]
    calib = np.random.default_rng(0).uniform(low, high, (CALIBRATION_SAMPLES,) + shape)
    evaluation = np.random.default_rng(1).uniform(low, high, (EVALUATION_SAMPLES,) + shape)
    return ([x.astype(np.float32) for x in calib], [x.astype(np.float32) for x in evaluation])


@dataclass
class MlperfCase:
    """One MLPerf Tiny float model with its inputs, float outputs and the converter's result."""

    path: Path
    graph: object                 # tinyml's import of the float model
    calib: list[np.ndarray]
    evaluation: list[np.ndarray]
    reference: list[np.ndarray]   # float outputs on the evaluation inputs
    converter_model: bytes
    converter_sqnr_db: float
    converter_seconds: float


def mlperf_case(path: Path) -> MlperfCase:
    """The converter's side of the comparison for an MLPerf Tiny float model (.tflite or .h5).

    The float reference is LiteRT on the float .tflite (for kws_ref_model_float32, whose
    convolution weights are dynamic-range int8, on that model with its weights dequantized,
    which is what both quantizers start from) or tf_keras on the .h5 model."""
    import time

    from tinyml.frontends import load_model
    from tinyml.quantize.prepare import prepare
    from tinyml.quantize.tflite_export import export_tflite

    path = Path(path)
    graph = load_model(path)
    calib, evaluation = mlperf_inputs(path.stem, graph.tensors[graph.inputs[0]].shape)
    start = time.perf_counter()
    if path.suffix == ".h5":
        import tf_keras
        keras_model = tf_keras.models.load_model(str(path), compile=False)
        converter_model = converter_int8_keras(keras_model, calib)
        reference = [np.asarray(keras_model(x, training=False)) for x in evaluation]
    else:
        float_model = path.read_bytes()
        if any(t.is_constant and t.dtype == "int8" for t in graph.tensors.values()):
            float_model = export_tflite(prepare(graph)[0])  # dequantized weights
        converter_model = converter_int8_tflite(float_model, calib)
        reference = run_float_litert(float_model, evaluation)
    seconds = time.perf_counter() - start
    return MlperfCase(path, graph, calib, evaluation, reference, converter_model,
                      sqnr_db(reference, run_int8_tflm(converter_model, evaluation)), seconds)


def tinyml_on_case(case: MlperfCase, method: str = "minmax",
                   bias_correction: bool = True) -> dict:
    """tinyml's quantization of the case's model on the same calibration inputs."""
    import time

    from tinyml.quantize import quantize_model

    start = time.perf_counter()
    model = quantize_model(case.graph, np.stack(case.calib), method=method,
                           bias_correction=bias_correction)
    seconds = time.perf_counter() - start
    exported = model.to_tflite()
    return {"model": case.path.name, "method": method, "bias_correction": bias_correction,
            "tinyml_sqnr_db": sqnr_db(case.reference, run_int8_tflm(exported, case.evaluation)),
            "tinyml_seconds": seconds, "tinyml_model": exported,
            "converter_sqnr_db": case.converter_sqnr_db,
            "converter_seconds": case.converter_seconds,
            "converter_model": case.converter_model}


def mlperf_comparison(path: Path, method: str = "minmax", bias_correction: bool = True) -> dict:
    """Quantize an MLPerf Tiny float model (.tflite or .h5) with tinyml and with the
    converter on the same 200 inputs; output SQNR of each against float on 100 others."""
    return tinyml_on_case(mlperf_case(path), method, bias_correction)


# ---- the exported model in TFLM and LiteRT ----------------------------------------------------


def tflm_tensor_mismatches(exported: bytes, graph, inputs: list[list[np.ndarray]]
                           ) -> tuple[dict[str, int], int]:
    """Run the exported flatbuffer in TFLM with every tensor preserved and compare each tensor
    with tinyml's reference run of ``graph`` (the int8 graph that was exported). Returns
    (differing elements per tensor name, number of tensor comparisons made).

    The exported file, read back by the TFLite frontend, lists its tensors in flatbuffer order,
    so its tensor i is TFLM's tensor i; tensors keep their names through export, so each is
    paired with the reference value of the same name (tensors only the export adds, such as a
    RESHAPE's shape, are compared with the re-imported graph's reference run)."""
    from support.oracles import tflm_interpreter
    from tinyml.frontends.tflite import load_tflite_bytes
    from tinyml.ir.tensor import pack_int4
    from tinyml.reference import run

    imported = load_tflite_bytes(exported)
    names = list(imported.tensors)
    interpreter = tflm_interpreter(exported)
    mismatches: dict[str, int] = {}
    compared = 0
    for sample in inputs:
        for i, x in enumerate(sample):
            interpreter.set_input(x, i)
        interpreter.invoke()
        ours = run(graph, sample, keep_all=True)
        theirs = run(imported, sample, keep_all=True)
        for i, name in enumerate(names):
            want = interpreter.GetTensor(i, 0)["tensor_data"]
            if want is None:
                continue
            have = ours[name] if name in ours else theirs[name]
            if imported.tensors[name].dtype == "int4":
                # TFLM hands an INT4 tensor out as its packed buffer, read as int8 elements
                # (the bytes past the packed half are not the tensor's): compare the packing.
                packed = np.frombuffer(pack_int4(have), np.int8)
                want = want.ravel()[:packed.size]
                have = packed
            assert have.shape == want.shape and have.dtype == want.dtype, (
                f"tensor {i} '{name}': {have.dtype}{list(have.shape)} vs TFLM "
                f"{want.dtype}{list(want.shape)}")
            compared += 1
            differ = int(np.count_nonzero(have != want))
            if differ:
                mismatches[name] = mismatches.get(name, 0) + differ
    return mismatches, compared


def litert_op_differences(exported: bytes, inputs: list[list[np.ndarray]]) -> dict:
    """Run the exported flatbuffer in LiteRT with every tensor preserved and check each op on
    its own: tinyml's reference kernel, fed LiteRT's values of the op's inputs, against
    LiteRT's value of its output. Returns {(op index, op kind): (max |difference| in LSB,
    differing elements)} over all samples for the ops that differ.

    Per op, because LiteRT's optimized x86 kernels are not bit-exact with TFLM's reference
    kernels: CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED without a fused ReLU round some
    negative results that lie near a rounding tie 1 LSB higher (seen on MLPerf Tiny's own
    pretrainedResnet_quant.tflite and on the converter's int8 models too), and a 1-LSB change
    would then propagate to every later tensor of an end-to-end comparison."""
    from support.oracles import litert_interpreter
    from tinyml.frontends.tflite import load_tflite_bytes
    from tinyml.reference.kernels import KERNELS, KernelCall

    graph = load_tflite_bytes(exported)
    interpreter = litert_interpreter(exported)
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    differences: dict = {}
    for sample in inputs:
        for detail, x in zip(interpreter.get_input_details(), sample):
            interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        for number, op in enumerate(graph.ops):
            ins = graph.op_inputs(op)
            outs = graph.op_outputs(op)
            values = [None if t is None else t.data if t.is_constant
                      else interpreter.get_tensor(index[t.name]) for t in ins]
            want = interpreter.get_tensor(index[outs[0].name])
            have = KERNELS[op.kind](KernelCall(op, values, ins, outs))
            diff = np.abs(np.asarray(have, np.int64) - want.astype(np.int64))
            if diff.any():
                worst, count = differences.get((number, op.kind), (0, 0))
                differences[(number, op.kind)] = (max(worst, int(diff.max())),
                                                  count + int(np.count_nonzero(diff)))
    return differences


# ---- the converter's 16x8 quantization ------------------------------------------------------

def converter_16x8_tflite(float_model: bytes | Path, samples: list[np.ndarray]) -> bytes:
    """The TFLite converter's 16x8 quantization (``EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_
    INT16_WEIGHTS_INT8``: int16 activations, int8 weights, int64 biases; int16 input and
    output) of a float .tflite file, on ``samples`` in order. ``TFLiteConverter`` hands 16x8
    to the calibrator's own quantizer (``calibrate_and_quantize``), not to MLIR; this calls it
    the same way."""
    import tensorflow as tf
    from tensorflow.lite.python.optimize import calibrator

    data = Path(float_model).read_bytes() if isinstance(float_model, (str, Path)) \
        else bytes(float_model)
    prepared = calibrator.add_intermediate_tensors(data)
    return calibrator.Calibrator(prepared).calibrate_and_quantize(
        _dataset(samples), tf.int16, tf.int16, False, tf.int16, tf.int64)
