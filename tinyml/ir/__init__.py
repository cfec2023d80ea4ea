"""Graph IR: tensors, ops with typed attributes, graphs (see graph.py, ops.py, tensor.py)."""

from tinyml.ir.graph import Graph, Op
from tinyml.ir.ops import OP_SPECS, SUPPORTED_OPS
from tinyml.ir.tensor import DTYPES, Quantization, Tensor

__all__ = ["Graph", "Op", "OP_SPECS", "SUPPORTED_OPS", "DTYPES", "Quantization", "Tensor"]
