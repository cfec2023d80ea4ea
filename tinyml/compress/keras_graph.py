"""The layer graph of a functional (or Sequential) Keras model, in execution order, and the
Keras library that runs it.

Channel pruning must know, for each layer, which tensors it reads and which layers read its
output (the consumers of a pruned producer lose input channels). Keras keeps that graph in
each layer's inbound nodes; this module walks it back from the model's outputs once and turns
what structured pruning cannot rebuild (a layer called twice, a model nested as a layer, a
subclassed model with no graph) into a one-line error naming the layer.

Models come from Keras 3 or, for legacy Keras 2 files Keras 3 refuses (MLPerf Tiny's
``vww_96.h5``), from ``tf_keras``; :func:`library` gives the one a model belongs to, whose
callbacks, optimizers and ``clone_model`` must be used with it. Their graphs differ in two
details: a Keras 2 node holds a single input tensor, not a list of one, and an input layer's
node lists its own tensor as its input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tinyml.errors import TinymlError

#: TensorFlow threads while pruning: the machine is shared.
THREADS = 2


@dataclass
class Node:
    """One layer call: the ids of the KerasTensors it reads and writes."""

    layer: object
    inputs: list[int]
    outputs: list[int]


@dataclass
class LayerGraph:
    nodes: list[Node]          # in an order where every input is produced before it is read
    inputs: list[int]          # the model's input tensors
    outputs: list[int]         # the model's output tensors
    shapes: dict[int, tuple]   # tensor id -> shape (batch axis None)

    def consumers(self, tensor: int) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]


def keras3():
    """Keras 3 on TensorFlow, quiet and on :data:`THREADS` threads (the machine is shared)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import absl.logging
    import tensorflow as tf
    import keras as keras_module

    absl.logging.set_verbosity(absl.logging.ERROR)  # e.g. Keras' note that .h5 is legacy
    tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already started: keep its settings
    return keras_module


def library(model):
    """The ``keras`` (Keras 3) or ``tf_keras`` (Keras 2) module ``model`` belongs to."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras
        return tf_keras
    return keras3()


def _tensors(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def trace(model) -> LayerGraph:
    """Walk ``model`` from its outputs back to its inputs."""
    keras = library(model)
    outputs = getattr(model, "outputs", None)
    if not outputs:
        raise TinymlError(f"model '{model.name}' is a subclassed Keras model without a layer "
                          f"graph; only functional and Sequential models can be rebuilt")
    nodes: list[Node] = []
    shapes: dict[int, tuple] = {}
    done: set[int] = set()

    def visit(tensor) -> None:
        layer, node_index, _ = tensor._keras_history
        if id(layer) in done:
            return
        if isinstance(layer, keras.Model):
            raise TinymlError(f"layer '{layer.name}' is a nested Keras model; flatten it into "
                              f"one functional model before pruning")
        if len(layer._inbound_nodes) > 1:
            raise TinymlError(f"layer '{layer.name}' is called {len(layer._inbound_nodes)} "
                              f"times (shared weights); pruning cannot narrow a shared layer")
        node = layer._inbound_nodes[node_index]
        # A Keras 2 input layer's node names its own output as its input.
        inputs = [] if getattr(node, "is_input", False) else _tensors(node.input_tensors)
        for t in inputs:
            visit(t)
        done.add(id(layer))
        outputs_ = _tensors(node.output_tensors)
        for t in inputs + outputs_:
            shapes[id(t)] = tuple(t.shape)
        nodes.append(Node(layer, [id(t) for t in inputs], [id(t) for t in outputs_]))

    for t in outputs:
        visit(t)
    for t in model.inputs:
        shapes[id(t)] = tuple(t.shape)
    return LayerGraph(nodes, [id(t) for t in model.inputs], [id(t) for t in outputs], shapes)
