"""The numpy reference interpreter: the oracle for all generated code.

``run(graph, inputs)`` executes a graph; int8 follows TFLM's reference kernels bit for bit.
"""

from tinyml.reference.interpreter import initial_state, run

__all__ = ["initial_state", "run"]
