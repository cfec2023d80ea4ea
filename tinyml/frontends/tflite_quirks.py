"""What TFLite files from older (or newer) converters carry, read the way TFLM reads it.

A file is valid when TFLM runs it, not when it is tidy: TOCO (the converter before TF 2.x's
MLIR one) and hand-edited files carry fields that TFLM ignores or reads with a rule of its own.
tinyml must compute what TFLM computes on them, so each rule here is TFLM's
(``tensorflow/lite/micro/micro_allocator.cc``, ``schema_utils.cc``), and each normalization
is recorded as a *quirk*: ``tinyml inspect`` prints one note per kind of quirk (how many
tensors or ops, and one example), because a user who wonders why an import "fixed" something
should be able to see it, but none of them is an error.

The quirks:

- ``axis``: per-channel scales on a 1-D tensor whose ``quantized_dimension`` is out of range.
  TOCO wrote the filter's axis (3 for depthwise filters) on the biases too. TFLM's kernels never
  read a bias's quantization, nor take the axis from the file for convolution filters, so the
  only meaningful axis of a 1-D tensor, 0, is used.
- ``zero_points``: fewer (or more) zero points than scales. TFLM uses ``zero_point[i]`` when the
  counts agree and ``zero_point[0]`` for every channel otherwise (weights' zero points are all
  0, so writers shortened the array). A single zero point is the ordinary space saving and is
  not noted.
- ``deprecated_code``: operator codes stored only in ``deprecated_builtin_code`` (files written
  before TF 2.4, when that byte was the only field). TFLM takes the larger of the two fields.
- ``offset_buffers``: constants stored after the flatbuffer, at a file offset (files over 2 GB,
  or written so on purpose). LiteRT reads them; TFLM reads only ``Buffer.data`` and runs such a
  file with those tensors empty, so TFLM cannot check it.
- ``no_options``: an op that has options in the schema, but none in the file. TFLM parses them
  into a zero-initialized struct, so every option is 0. Where 0 cannot run (strides, pool
  sizes, SOFTMAX's beta, on which TFLM aborts) the importer refuses the file instead.
"""

from __future__ import annotations

import numpy as np

from tinyml.ir import Quantization

_TEXT = {
    "axis": "quantization axis out of range on {n} 1-D tensor(s) (e.g. '{first}'): read as "
            "axis 0, as TFLM does (older converters wrote the filter's axis on biases)",
    "zero_points": "zero-point array of another length than the scales on {n} tensor(s) (e.g. "
                   "'{first}'): zero_point[0] used for every channel, as TFLM does",
    "deprecated_code": "operator codes stored only in deprecated_builtin_code on {n} op "
                       "code(s) (e.g. {first}; written before TF 2.4): read as TFLM does",
    "offset_buffers": "constants of {n} tensor(s) (e.g. '{first}') stored outside the "
                      "flatbuffer (buffer offsets): read as LiteRT reads them; TFLM does not "
                      "read them (it runs such a file without those constants)",
    "no_options": "{n} op(s) (e.g. '{first}') without their builtin options: TFLM's defaults "
                  "(every option 0) used",
}


class Quirks:
    """The quirks met while importing one file, in the order first met."""

    def __init__(self):
        self._seen: dict[str, list[str]] = {}

    def add(self, kind: str, where: str) -> None:
        self._seen.setdefault(kind, []).append(where)

    def notes(self) -> list[str]:
        return [_TEXT[kind].format(n=len(where), first=where[0])
                for kind, where in self._seen.items()]


def quantization(q, shape: tuple[int, ...], name: str, quirks: Quirks) -> Quantization | None:
    """The affine quantization of a tensor (``q``: its ``QuantizationParametersT``), or None.

    As in TFLM, parameters without a scale mean "not quantized" (min/max alone are for
    TensorFlow). Unlike TFLM, a missing zero-point array means zeros instead of "not
    quantized": TFLM reads no quantization then, and an int8 kernel that needs it fails in
    its Prepare, so only tensors TFLM never reads the quantization of (biases) run there.
    """
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    scale = np.asarray(q.scale, dtype=np.float32).reshape(-1)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], dtype=np.int64).reshape(-1)
    if zero.size == 0:
        zero = np.zeros(scale.size, dtype=np.int64)
    elif zero.size != scale.size:
        if zero.size > 1:
            quirks.add("zero_points", name)
        zero = np.full(scale.size, zero[0], dtype=np.int64)
    if scale.size == 1:
        return Quantization(scale, zero, None)  # per tensor: the axis means nothing
    axis = int(q.quantizedDimension)
    if not 0 <= axis < len(shape) and len(shape) == 1:
        quirks.add("axis", name)
        axis = 0
    return Quantization(scale, zero, axis)


def builtin_code(code, quirks: Quirks, names: dict[int, str]) -> int:
    """The builtin operator of an ``OperatorCodeT``, as TFLM's ``GetBuiltinCode`` reads it."""
    builtin, deprecated = int(code.builtinCode), int(code.deprecatedBuiltinCode)
    if deprecated > builtin:
        quirks.add("deprecated_code", names.get(deprecated, str(deprecated)))
    return max(builtin, deprecated)
