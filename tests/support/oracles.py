"""Independent oracles the tests compare against: TFLM, LiteRT and onnxruntime.

TFLM (the ``tflite-micro`` package) is the oracle for int8: its reference kernels are what
microcontrollers run. LiteRT is the oracle for float TFLite models; it runs without its default
XNNPACK delegate, whose dynamic-range convolution quantizes activations differently from
TFLite's builtin hybrid kernels (and from TFLM).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tflm_interpreter(model: Path | bytes, all_tensors: bool = True):
    from tflite_micro.python.tflite_micro import runtime
    config = (runtime.InterpreterConfig.kPreserveAllTensors if all_tensors
              else runtime.InterpreterConfig.kAllocationRecording)
    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    # TFLM's default arena (10x the file) is too small for tiny models without weights.
    return runtime.Interpreter.from_bytes(data, arena_size=max(10 * len(data), 1 << 20),
                                          intrepreter_config=config)


def tflm_run(interpreter, x: np.ndarray, tensor_count: int | None = None):
    """Invoke TFLM on one input. Returns (output 0, list of every tensor's value or None)."""
    interpreter.set_input(x, 0)
    interpreter.invoke()
    out = interpreter.get_output(0)
    tensors = None
    if tensor_count is not None:
        tensors = [interpreter.GetTensor(i, 0)["tensor_data"] for i in range(tensor_count)]
    return out, tensors


def litert_interpreter(model: Path | bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kwargs = dict(experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                  experimental_preserve_all_tensors=True)
    if isinstance(model, (str, Path)):
        it = Interpreter(model_path=str(model), **kwargs)
    else:
        it = Interpreter(model_content=bytes(model), **kwargs)
    it.allocate_tensors()
    return it


def litert_run(interpreter, x: np.ndarray) -> np.ndarray:
    inp = interpreter.get_input_details()[0]
    interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def relative_error(reference: np.ndarray, value: np.ndarray) -> float:
    """Max absolute difference relative to the reference output's range."""
    reference = np.asarray(reference, np.float64)
    span = float(reference.max() - reference.min()) or 1.0
    return float(np.abs(reference - np.asarray(value, np.float64)).max() / span)
