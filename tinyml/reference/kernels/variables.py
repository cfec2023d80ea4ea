"""READ_VARIABLE and ASSIGN_VARIABLE: streaming state kept between invocations.

TFLM's kernels (``read_variable.cc``, ``assign_variable.cc``) copy bytes between the
variable's buffer and a tensor, whatever the type: a read yields the value the last
assignment stored (or the initial value), an assignment replaces it. Here the variable's
value lives in ``KernelCall.state``, which the caller keeps from one invocation to the next
(``tinyml.reference.interpreter.initial_state`` makes a fresh one).
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError
from tinyml.reference.kernels.registry import KernelCall, kernel


def _state(call: KernelCall) -> dict[str, np.ndarray]:
    if call.state is None:
        raise TinymlError(f"layer '{call.op.name}' ({call.op.kind}) needs the model's variables: "
                          f"run it with a state (tinyml.reference.initial_state)")
    return call.state


@kernel("READ_VARIABLE")
def read_variable(call: KernelCall) -> np.ndarray:
    return _state(call)[call.attrs.variable].copy()


@kernel("ASSIGN_VARIABLE")
def assign_variable(call: KernelCall) -> list[np.ndarray]:
    _state(call)[call.attrs.variable] = np.array(call.inputs[0], copy=True)
    return []
