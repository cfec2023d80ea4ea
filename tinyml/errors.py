"""Errors a user can act on.

Every failure caused by the user's input (a corrupt file, an op we do not support, a shape that
cannot be resolved) is raised as a :class:`TinymlError`. The CLI prints its message as one line on
stderr and exits with status 2, so the message must name the cause and, where there is one, the
layer. Anything else that escapes is a bug in tinyml.
"""

from __future__ import annotations


class TinymlError(Exception):
    """Base class: an error in the user's input, reported as one line."""

    def __init__(self, message: str):
        # Keep the message on one line whatever the wrapped exception printed.
        super().__init__(" ".join(str(message).split()))


class ModelFormatError(TinymlError):
    """The file is not a model we can read: unknown format, corrupt or truncated."""


class UnsupportedOpError(TinymlError):
    """The model uses an op (or an op variant) that tinyml does not implement."""

    def __init__(self, op: str, layer: str, supported: list[str] | tuple[str, ...] | None = None,
                 detail: str = ""):
        message = f"unsupported op {op} in layer '{layer}'"
        if detail:
            message += f": {detail}"
        if supported:
            message += f" (supported: {', '.join(sorted(supported))})"
        super().__init__(message)
        self.op = op
        self.layer = layer


class GraphError(TinymlError):
    """The graph is malformed: dangling tensors, cycles, inconsistent shapes or types."""


class ShapeError(GraphError):
    """A shape cannot be inferred or resolved statically (e.g. an unbound dynamic dimension)."""
