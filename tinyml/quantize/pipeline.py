"""The quantization pipeline end to end, and its result.

``quantize_model(model, calib)``: import (any frontend), float passes (:mod:`.prepare`),
calibration (:mod:`.data`, :mod:`.calibrate`, :mod:`.observers`), quantization of the graph
(:mod:`.quantizer`, :mod:`.params`). The :class:`QuantizedModel` it returns holds the int8
graph, its float counterpart and what the report and the exporter need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinyml.ir import Graph
from tinyml.quantize.calibrate import Calibration, calibrate, passes_needed
from tinyml.quantize.data import load_dataset
from tinyml.quantize.observers import METHODS
from tinyml.quantize.params import dequantize_array, quantize_array
from tinyml.quantize.prepare import prepare
from tinyml.quantize.int4 import DEFAULT_ROUNDING, ROUNDINGS
from tinyml.quantize.int16 import layer_types
from tinyml.quantize.tflite_export import export_tflite
from tinyml.quantize.weight_bits import (MixedChoice, eligible_layers, quantize_weights,
                                         weight_bytes)


@dataclass
class QuantizedModel:
    graph: Graph                 #: the int8 graph
    float_graph: Graph           #: the prepared float graph it was calibrated on
    source: Graph                #: the model as imported
    calibration: Calibration
    data: str                    #: where the calibration samples came from
    synthetic: bool              #: calibrated on random data
    bias_correction: bool
    float_twin: dict[str, str] = field(default_factory=dict)
    passes: dict[str, int] = field(default_factory=dict)
    weights: str = "int8"        #: int8, int4 or mixed (:mod:`.weight_bits`)
    int4_rounding: str | None = None
    mixed: MixedChoice | None = None
    activations: str = "int8"    #: int8 or int16 (:mod:`.int16`); int8 with int16 layers
                                 #: named by ``int16_layers``

    @property
    def int16_layers(self) -> list[str]:
        """Names of the 16x8 layers (int16 activations)."""
        return [op.name for op in self.graph.ops if op.kind != "QUANTIZE"
                and self.graph.tensors[op.outputs[0]].dtype == "int16"]

    @property
    def int4_layers(self) -> list[str]:
        """Names of the layers whose filter is int4."""
        return [op.name for op in self.graph.ops if len(op.inputs) > 1 and op.inputs[1]
                and self.graph.tensors[op.inputs[1]].dtype == "int4"]

    def quantize_inputs(self, sample: list[np.ndarray]) -> list[np.ndarray]:
        """Float inputs (one array per graph input) as the graph's input codes (int8, or
        int16 for an input 16x8 layers read)."""
        return [quantize_array(x, self.graph.tensors[n].quant,
                               np.dtype(self.graph.tensors[n].dtype).type)
                for x, n in zip(sample, self.graph.inputs)]

    def dequantize_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: dequantize_array(v, self.graph.tensors[n].quant) for n, v in outputs.items()}

    def to_tflite(self) -> bytes:
        return export_tflite(self.graph, description=self.description())

    def description(self) -> str:
        weights = "" if self.weights == "int8" else \
            f", {self.weights} weights ({self.int4_rounding} rounding)"
        int16 = self.int16_layers
        kind = "int8" if not int16 else "16x8" if self.activations == "int16" else \
            f"int8 with {len(int16)} 16x8 layers"
        return f"tinyml {kind} ({self.calibration.method} calibration{weights})"

    def summary(self) -> dict:
        return {"method": self.calibration.method,
                "calibration_samples": self.calibration.samples,
                "calibration_data": self.data, "bias_correction": self.bias_correction,
                "float_passes": {k: v for k, v in self.passes.items() if v},
                "weights": self.weights, "int4_rounding": self.int4_rounding,
                "int4_layers": self.int4_layers, "weight_bytes": weight_bytes(self.graph),
                "flash_budget": self.mixed.budget if self.mixed else None,
                "activations": self.activations, "int16_layers": self.int16_layers}


ProgressFn = Callable[[int, int], None]


def quantize_model(model: str | Path | Graph, calib, method: str = "minmax",
                   bias_correction: bool = True, samples: int | None = None, seed: int = 0,
                   image_range: tuple[float, float] = (0.0, 1.0),
                   progress: ProgressFn | None = None, weights: str = "int8",
                   int4_rounding: str = DEFAULT_ROUNDING,
                   flash: int | None = None, activations: str = "int8",
                   int16_layers: list[str] | tuple[str, ...] = ()) -> QuantizedModel:
    """Quantize a float model (a file any frontend reads, or a graph) to int8.

    ``calib`` is anything :func:`.data.load_dataset` reads (a path, ``"random"``, arrays or a
    :class:`Dataset`); ``samples`` limits it to a seeded random subset. ``progress(advance,
    total)`` is called as calibration proceeds. ``activations="int16"`` makes every layer TFLM
    has a 16x8 kernel for 16x8; ``int16_layers`` only those layers (:mod:`.int16`).
    """
    if method not in METHODS:
        from tinyml.errors import TinymlError
        raise TinymlError(f"unknown calibration method '{method}' (known: "
                          f"{', '.join(METHODS)})")
    if int4_rounding not in ROUNDINGS:
        from tinyml.errors import TinymlError
        raise TinymlError(f"unknown int4 rounding '{int4_rounding}' (known: "
                          f"{', '.join(ROUNDINGS)})")
    if isinstance(model, Graph):
        source = model
    else:
        from tinyml.frontends import load_model
        source = load_model(model)
    float_graph, counts = prepare(source)
    types = layer_types(float_graph, activations, tuple(int16_layers))
    if weights != "int8" and "int16" in types.values():
        from tinyml.errors import TinymlError
        raise TinymlError(f"--weights {weights} needs int8 activations: TFLM's 16x8 kernels "
                          f"read int8 filters only")
    data = load_dataset(calib, float_graph, limit=samples, seed=seed, image_range=image_range)
    total = passes_needed(method) * len(data)
    if weights != "int8" and int4_rounding != "rtn":
        total += len(data)  # the pass collecting the layers' input moments
    if weights == "mixed":
        total += len(eligible_layers(float_graph))  # one measured graph per layer
    tick = (lambda n: progress(n, total)) if progress else None
    calibration = calibrate(float_graph, data, method, tick)
    quantized, mixed = quantize_weights(float_graph, calibration, bias_correction, data,
                                        weights, int4_rounding, flash, tick, types)
    return QuantizedModel(quantized.graph, float_graph, source, calibration, data.source,
                          data.synthetic, bias_correction, quantized.float_twin, counts,
                          weights, None if weights == "int8" else int4_rounding, mixed,
                          activations)

