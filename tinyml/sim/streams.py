"""The byte streams the verification harnesses read and write.

Host and Cortex-M harnesses share one format: samples back to back, each sample every graph
input's raw bytes in input order; outputs likewise. Raw bytes keep int8 and float values exact.
"""

from __future__ import annotations

import numpy as np

from tinyml.errors import TinymlError
from tinyml.ir import DTYPES, Graph


def encode_samples(graph: Graph, samples: list[list[np.ndarray]]) -> bytes:
    return b"".join(np.ascontiguousarray(x.astype(DTYPES[graph.tensors[name].dtype])).tobytes()
                    for sample in samples for name, x in zip(graph.inputs, sample))


def decode_outputs(graph: Graph, data: bytes, count: int) -> list[list[np.ndarray]]:
    """``count`` samples' outputs (one array per graph output each) from ``data``."""
    outputs, offset = [], 0
    for _ in range(count):
        values = []
        for name in graph.outputs:
            t = graph.tensors[name]
            dtype = np.dtype(DTYPES[t.dtype])
            size = t.size * dtype.itemsize
            values.append(np.frombuffer(data[offset:offset + size], dtype).reshape(t.shape))
            offset += size
        outputs.append(values)
    if offset != len(data):
        raise TinymlError(f"the harness wrote {len(data)} output bytes, expected {offset}")
    return outputs
