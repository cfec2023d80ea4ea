"""What a trainable project's ``learn.c`` (templates/project/learn.c.j2), ``model.h``
learning section and ``learn.json`` are made of.

``learn.json`` describes the device to the host: the input's shape, type and quantization
(so tinyml.learn.device can quantize float samples), the parameter layout and the classes.
"""

from __future__ import annotations

import numpy as np

from tinyml.codegen.c_syntax import c_array_body, c_comment, c_literal
from tinyml.ir import Graph
from tinyml.learn.head import ACTIVATIONS, TrainableHead
from tinyml.learn.memory import TrainingMemory, state_offsets
from tinyml.paths import FIRMWARE_DIR

#: The training kernels every trainable project copies into its kernels/ directory.
TRAINING_DIR = FIRMWARE_DIR / "training"
#: Version of the device protocol and of learn.json (tinyml.learn.device).
PROTOCOL_VERSION = 1


def training_sources() -> dict[str, "Path"]:  # noqa: F821
    return {f.name: f for f in sorted(TRAINING_DIR.iterdir()) if f.suffix in (".c", ".h")}


def template_context(head: TrainableHead, memory: TrainingMemory, feature_offset: int) -> dict:
    layers, at = [], 0
    for layer in head.layers:
        weights_offset = at
        at += layer.weights.size
        layers.append(dict(in_features=layer.in_features, out_features=layer.out_features,
                           weights_offset=weights_offset, bias_offset=at,
                           activation=ACTIVATIONS[layer.activation],
                           comment=c_comment(f"{layer.name}: {layer.in_features} -> "
                                             f"{layer.out_features}, {layer.activation}")))
        at += layer.bias.size
    offsets = state_offsets(head)
    return dict(
        layers=layers, num_params=head.num_params, num_classes=head.num_classes,
        model_classes=head.model_classes, feature_elements=head.num_features,
        feature_offset=feature_offset,
        feature_scale=c_literal(float(np.float32(head.feature_scale))),
        feature_zero_point=head.feature_zero_point,
        state_offsets=offsets, state_floats=offsets[-1] + head.num_classes,
        max_features=memory.max_features, clip_norm=c_literal(float(head.clip_norm)),
        initial_params=c_array_body(head.initial_params()),
        params_bytes=memory.params_bytes, state_bytes=memory.state_bytes,
        scratch_bytes=memory.scratch_bytes, train_ram_bytes=memory.train_ram_bytes,
        **{f"{name}_offset": value for name, value in memory.offsets.items()})


def output_description(head: TrainableHead) -> dict:
    """model.h's output 0 of a trainable project: float32 class probabilities."""
    return dict(name="probabilities (trainable head)", ctype="float", offset=0,
                bytes=4 * head.num_classes, elements=head.num_classes,
                shape=f"1x{head.num_classes}", scale="1.0f", zero_point=0)


def metadata(graph: Graph, head: TrainableHead, memory: TrainingMemory, target: str) -> dict:
    """learn.json: what the host needs to drive the device."""
    x = graph.tensors[graph.inputs[0]]
    return {
        "protocol": PROTOCOL_VERSION, "target": target,
        "input": {"name": x.name, "shape": list(x.shape), "dtype": x.dtype,
                  "scale": float(x.quant.scale[0]) if x.quant is not None else None,
                  "zero_point": int(x.quant.zero_point[0]) if x.quant is not None else None},
        "num_params": head.num_params, "num_classes": head.num_classes,
        "model_classes": head.model_classes, "clip_norm": head.clip_norm,
        "feature": {"tensor": head.feature_tensor, "elements": head.num_features,
                    "scale": float(np.float32(head.feature_scale)),
                    "zero_point": head.feature_zero_point},
        "layers": [{"name": layer.name, "in_features": layer.in_features,
                    "out_features": layer.out_features, "activation": layer.activation}
                   for layer in head.layers],
        **memory.to_json(),
    }
