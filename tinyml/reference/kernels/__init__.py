"""Reference kernels, one module per family; each registers itself in :data:`KERNELS`.

A kernel receives a :class:`KernelCall` and returns its output array(s). It dispatches on the
input dtype: float32 follows TFLite's float kernels, int8 follows TFLM's reference integer
kernels exactly (see ``tinyml.reference.fixedpoint``).
"""

from __future__ import annotations

from tinyml.reference.kernels.registry import KERNELS, Kernel, KernelCall, kernel

# Import the kernel modules for their registrations.
from tinyml.reference.kernels import (  # noqa: F401
    activations, activations_math, batch_norm, binary, conv, conv_family, data_movement,
    elementwise, float_math, fully_connected, fused, matmul, pooling, quantize, reductions,
    lstm, shape_ops, softmax, svdf, variables,
)

__all__ = ["KERNELS", "Kernel", "KernelCall", "kernel"]
