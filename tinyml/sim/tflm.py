"""TensorFlow Lite Micro as an oracle: run a .tflite model with the ``tflite-micro`` package.

TFLM's reference kernels are what microcontrollers run, so for TFLite input every verification
also compares with them, not only with tinyml's own numpy reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyml.errors import TinymlError


def available() -> bool:
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


def _missing_builtins(data: bytes) -> list[str]:
    """Builtins of the model that TFLM's op resolver cannot register (GELU, ...)."""
    from ai_edge_litert import schema_py_generated as schema
    from tinyml.op_support import TFLM_BUILTINS
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(data, 0)
    codes = (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))
    kinds = {names.get(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), "?") for c in codes}
    return sorted(k for k in kinds if k not in TFLM_BUILTINS and k != "CUSTOM")


class TflmRunner:
    def __init__(self, model: str | Path | bytes):
        """Raises TinymlError (one line: why) when TFLM cannot run the model."""
        from tflite_micro.python.tflite_micro import runtime
        data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
        missing = _missing_builtins(data)
        if missing:
            raise TinymlError(f"TFLM has no kernel for {', '.join(missing)}")
        try:
            self._interpreter = runtime.Interpreter.from_bytes(
                data, arena_size=max(10 * len(data), 1 << 20))
        except RuntimeError as exc:
            raise TinymlError(f"TFLM cannot prepare the model ({exc})") from None

    def run(self, inputs: list[np.ndarray], num_outputs: int) -> list[np.ndarray]:
        """Raises TinymlError when TFLM fails the inference (int8 EXP, SQRT: float only)."""
        for i, x in enumerate(inputs):
            self._interpreter.set_input(x, i)
        try:
            self._interpreter.invoke()
        except RuntimeError as exc:
            raise TinymlError(f"TFLM fails the inference ({exc})") from None
        return [np.array(self._interpreter.get_output(i)) for i in range(num_outputs)]
