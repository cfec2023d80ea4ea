"""Code generation: lower an int8 graph to calls of the portable C kernels and emit a C project.

``lowering.lower(graph)`` turns each op into a :class:`~tinyml.codegen.lowering.KernelCall`.
"""
