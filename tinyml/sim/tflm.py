"""TensorFlow Lite Micro as an oracle: run a .tflite model with the ``tflite-micro`` package.

TFLM's reference kernels are what microcontrollers run, so for TFLite input every verification
also compares with them, not only with tinyml's own numpy reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def available() -> bool:
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


class TflmRunner:
    def __init__(self, model: str | Path | bytes):
        from tflite_micro.python.tflite_micro import runtime
        data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
        self._interpreter = runtime.Interpreter.from_bytes(
            data, arena_size=max(10 * len(data), 1 << 20))

    def run(self, inputs: list[np.ndarray], num_outputs: int) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            self._interpreter.set_input(x, i)
        self._interpreter.invoke()
        return [np.array(self._interpreter.get_output(i)) for i in range(num_outputs)]
