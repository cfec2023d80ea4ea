"""Fold inference batch normalization into the layer before it (float graphs), also when an
exporter wrote it as a MUL and an ADD by per-channel constants.

Why: BATCH_NORM has no int8 kernel in TFLM and costs a pass over the tensor. At inference it
is a per-channel affine map ``y = g * x + h`` with ``g = scale / sqrt(variance + epsilon)``
and ``h = bias - mean * g``; after a convolution or dense layer it folds into that layer's
weights (output channel ``c`` scaled by ``g[c]``) and bias (``g * b + h``). Quantizing the
folded layer then picks weight scales for the weights the device really multiplies by.

When folding is legal (``FoldBatchNorm``): the producer is a float CONV_2D,
DEPTHWISE_CONV_2D or FULLY_CONNECTED with constant weights and bias, no fused activation (an
activation between the layer and the normalization does not commute with it), the
normalization runs over the producer's channel axis (the last one) and is the producer's only
reader.

Exporters such as tf2onnx write a Keras BatchNormalization as ``x * g + h`` with constant
``g`` and ``h`` (MUL then ADD, the ADD often carrying the next ReLU once fused):
``FoldChannelAffine`` folds a float MUL or ADD by a constant that varies at most along the
channel axis into such a producer the same way, and moves the MUL's or ADD's fused
activation onto it.

A normalization that cannot fold (after a pooling, an addition, a graph input) becomes an
explicit affine layer the integer runtimes have (``BatchNormToAffine``): a 1x1
DEPTHWISE_CONV_2D with per-channel weights ``g`` and bias ``h`` on 4-D NHWC tensors
normalized over channels (per-channel int8 weights keep every channel's factor accurate),
otherwise a MUL and an ADD with broadcast constants.

Both rewrites are float arithmetic rearrangements: results agree with the unfolded graph to
float32 rounding, not bit for bit (there is no int8 BATCH_NORM to be bit-exact with).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tinyml.ir import Graph, Op, Tensor
from tinyml.ir.ops import DepthwiseConv2DAttrs, ElementwiseAttrs
from tinyml.passes.framework import OptimizerPass, only_consumer, producer_of, replace_op

#: Producers a batch norm folds into, and the axis of their weights that indexes outputs.
_WEIGHT_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}


def affine_factors(graph: Graph, bn: Op) -> tuple[np.ndarray, np.ndarray]:
    """(g, h) of ``y = g * x + h`` per channel, computed in float64."""
    scale, bias, mean, var = (graph.tensors[n].data.astype(np.float64).reshape(-1)
                              for n in bn.inputs[1:5])
    g = scale / np.sqrt(var + np.float64(np.float32(bn.attrs.epsilon)))
    return g, bias - mean * g


def _float_activation(t: Tensor) -> bool:
    return not t.is_constant and t.dtype == "float32"


class FoldBatchNorm(OptimizerPass):
    name = "fold_batch_norm"

    def match(self, graph: Graph, op: Op) -> bool:
        return op.kind == "BATCH_NORM" and self._producer(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        producer = self._producer(graph, op)
        g, h = affine_factors(graph, op)
        w_t = graph.tensors[producer.inputs[1]]
        axis = _WEIGHT_AXIS[producer.kind]
        shape = [1] * len(w_t.shape)
        shape[axis] = -1
        w_t.data = (w_t.data.astype(np.float64) * g.reshape(shape)).astype(np.float32)
        bias_name = producer.inputs[2] if len(producer.inputs) > 2 else ""
        old_bias = graph.tensors[bias_name].data.astype(np.float64) if bias_name else 0.0
        new_bias = (g * old_bias + h).astype(np.float32)
        if bias_name:
            graph.tensors[bias_name].data = new_bias
        else:
            bias_name = graph.unique_name(f"{producer.name}/bias")
            graph.add_tensor(Tensor(bias_name, new_bias.shape, "float32", data=new_bias))
            producer.inputs = producer.inputs[:2] + [bias_name]
        producer.outputs = [op.outputs[0]]
        graph.ops = [o for o in graph.ops if o is not op]
        return True

    @staticmethod
    def _producer(graph: Graph, bn: Op) -> Op | None:
        x = graph.tensors[bn.inputs[0]]
        if not _float_activation(x) or not all(graph.tensors[n].is_constant
                                               for n in bn.inputs[1:5]):
            return None
        if bn.attrs.axis % len(x.shape) != len(x.shape) - 1:
            return None
        producer = producer_of(graph, bn.inputs[0])
        if producer is None or producer.kind not in _WEIGHT_AXIS:
            return None
        if producer.attrs.activation != "NONE" or not only_consumer(graph, bn.inputs[0], bn):
            return None
        w = graph.tensors[producer.inputs[1]]
        if not (w.is_constant and w.dtype == "float32"):
            return None
        if w.shape[_WEIGHT_AXIS[producer.kind]] != x.shape[-1]:
            return None
        bias = producer.inputs[2] if len(producer.inputs) > 2 else ""
        if bias and not (graph.tensors[bias].is_constant and
                         graph.tensors[bias].dtype == "float32"):
            return None
        # A weight tensor shared with another layer must not be scaled for this one.
        if sum(w.name in o.inputs for o in graph.ops) > 1 or (
                bias and sum(bias in o.inputs for o in graph.ops) > 1):
            return None
        return producer


class FoldChannelAffine(OptimizerPass):
    """``layer(x) * g`` or ``layer(x) + h`` with constant per-channel (or scalar) ``g``/``h``
    folded into the layer's weights and bias."""

    name = "fold_channel_affine"

    def match(self, graph: Graph, op: Op) -> bool:
        return self._plan(graph, op) is not None

    def transform(self, graph: Graph, op: Op) -> bool:
        producer, factors = self._plan(graph, op)
        channels = factors.size
        bias_name = producer.inputs[2] if len(producer.inputs) > 2 else ""
        bias = graph.tensors[bias_name].data.astype(np.float64) if bias_name \
            else np.zeros(channels)
        if op.kind == "MUL":
            w_t = graph.tensors[producer.inputs[1]]
            shape = [1] * len(w_t.shape)
            shape[_WEIGHT_AXIS[producer.kind]] = -1
            w_t.data = (w_t.data.astype(np.float64) * factors.reshape(shape)).astype(np.float32)
            bias = bias * factors
        else:
            bias = bias + factors
        bias = bias.astype(np.float32)
        if bias_name:
            graph.tensors[bias_name].data = bias
        elif op.kind == "ADD":
            bias_name = graph.unique_name(f"{producer.name}/bias")
            graph.add_tensor(Tensor(bias_name, bias.shape, "float32", data=bias))
            producer.inputs = producer.inputs[:2] + [bias_name]
        producer.attrs = dataclasses.replace(producer.attrs, activation=op.attrs.activation)
        producer.outputs = [op.outputs[0]]
        graph.ops = [o for o in graph.ops if o is not op]
        return True

    @staticmethod
    def _plan(graph: Graph, op: Op) -> tuple[Op, np.ndarray] | None:
        if op.kind not in ("MUL", "ADD"):
            return None
        a, b = (graph.tensors[n] for n in op.inputs)
        x, c = (a, b) if b.is_constant else (b, a)
        if not _float_activation(x) or not c.is_constant or c.dtype != "float32":
            return None
        out = graph.tensors[op.outputs[0]]
        if out.shape != x.shape or len(c.shape) > len(x.shape):
            return None  # the constant would broadcast the activation
        if any(d != 1 for d in c.shape[:-1]) or (c.shape and c.shape[-1] not in (1, x.shape[-1])):
            return None  # varies along another axis than the channels
        producer = producer_of(graph, x.name)
        if producer is None or producer.kind not in _WEIGHT_AXIS:
            return None
        if producer.attrs.activation != "NONE" or not only_consumer(graph, x.name, op):
            return None
        w = graph.tensors[producer.inputs[1]]
        if not (w.is_constant and w.dtype == "float32") or \
                w.shape[_WEIGHT_AXIS[producer.kind]] != x.shape[-1]:
            return None
        bias = producer.inputs[2] if len(producer.inputs) > 2 else ""
        if bias and not (graph.tensors[bias].is_constant and
                         graph.tensors[bias].dtype == "float32"):
            return None
        if sum(w.name in o.inputs for o in graph.ops) > 1 or (
                bias and sum(bias in o.inputs for o in graph.ops) > 1):
            return None
        factors = np.broadcast_to(c.data.astype(np.float64).reshape(-1), (x.shape[-1],))
        return producer, np.array(factors)


class BatchNormToAffine(OptimizerPass):
    """A batch norm left over by :class:`FoldBatchNorm` becomes a layer int8 runtimes run.

    Registered after FoldBatchNorm in a pipeline; it still checks that folding is impossible,
    so the order of passes within a sweep does not matter."""

    name = "batch_norm_to_affine"

    def match(self, graph: Graph, op: Op) -> bool:
        return (op.kind == "BATCH_NORM" and FoldBatchNorm._producer(graph, op) is None
                and _float_activation(graph.tensors[op.inputs[0]])
                and all(graph.tensors[n].is_constant for n in op.inputs[1:5]))

    def transform(self, graph: Graph, op: Op) -> bool:
        x = graph.tensors[op.inputs[0]]
        g, h = affine_factors(graph, op)
        rank = len(x.shape)
        axis = op.attrs.axis % rank

        def const(suffix: str, values: np.ndarray) -> str:
            name = graph.unique_name(f"{op.name}/{suffix}")
            values = np.asarray(values, np.float32)
            graph.add_tensor(Tensor(name, values.shape, "float32", data=values))
            return name

        if rank == 4 and axis == 3:
            weights = const("scale", g.reshape(1, 1, 1, -1))
            bias = const("offset", h)
            replace_op(graph, op, Op("DEPTHWISE_CONV_2D", op.name,
                                     [op.inputs[0], weights, bias], list(op.outputs),
                                     DepthwiseConv2DAttrs()))
            return True
        shape = [1] * rank
        shape[axis] = -1
        scaled = graph.unique_name(f"{op.name}/scaled")
        graph.add_tensor(Tensor(scaled, x.shape, "float32"))
        mul = Op("MUL", f"{op.name}/mul", [op.inputs[0], const("scale", g.reshape(shape))],
                 [scaled], ElementwiseAttrs())
        add = Op("ADD", op.name, [scaled, const("offset", h.reshape(shape))],
                 list(op.outputs), ElementwiseAttrs())
        index = next(i for i, o in enumerate(graph.ops) if o is op)
        graph.ops[index:index + 1] = [mul, add]
        return True

