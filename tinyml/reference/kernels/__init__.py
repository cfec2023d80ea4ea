"""Reference kernels, one module per family; each registers itself in :data:`KERNELS`.

A kernel receives a :class:`KernelCall` and returns its output array(s). It dispatches on the
input dtype: float32 follows TFLite's float kernels, int8 follows TFLM's reference integer
kernels exactly (see ``tinyml.reference.fixedpoint``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tinyml.ir import Op, Tensor


@dataclass
class KernelCall:
    op: Op
    inputs: list[np.ndarray | None]
    in_tensors: list[Tensor | None]
    out_tensors: list[Tensor]

    @property
    def attrs(self):
        return self.op.attrs

    @property
    def out(self) -> Tensor:
        return self.out_tensors[0]

    @property
    def quantized(self) -> bool:
        """True when the op computes on integers (int8 activations)."""
        return self.in_tensors[0].dtype in ("int8", "int16")


Kernel = Callable[[KernelCall], "np.ndarray | list[np.ndarray]"]
KERNELS: dict[str, Kernel] = {}


def kernel(*kinds: str):
    """Register a function as the reference kernel of ``kinds``."""
    def register(fn: Kernel) -> Kernel:
        for kind in kinds:
            assert kind not in KERNELS, kind
            KERNELS[kind] = fn
        return fn
    return register


# Import the kernel modules for their registrations.
from tinyml.reference.kernels import (  # noqa: E402,F401
    activations, batch_norm, conv, elementwise, fully_connected, fused, pooling, quantize,
    shape_ops, softmax,
)
from tinyml.reference.kernels import conv_family  # noqa: E402,F401  (conv ops)
