"""The registry of reference kernels: what a kernel receives, and :data:`KERNELS` by op kind.

Kept apart from the package's ``__init__`` so that the kernel modules, which register
themselves here, do not import the package that imports them. Look kernels up through
:mod:`tinyml.reference.kernels`, which imports every kernel module first.
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
    #: The variables' current values by name (streaming state), for READ_VARIABLE and
    #: ASSIGN_VARIABLE; the caller owns it and it outlives the invocation.
    state: dict[str, np.ndarray] | None = None

    @property
    def attrs(self):
        return self.op.attrs

    @property
    def out(self) -> Tensor:
        return self.out_tensors[0]

    @property
    def quantized(self) -> bool:
        """True when the op computes on integers (int8 activations)."""
        if not self.in_tensors:
            return self.out.dtype in ("int8", "int16")
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
