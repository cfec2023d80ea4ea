"""Every op kind is complete: the consistency check of the op registries.

An op is added in a few places (``docs/adding-an-op.md``): its spec and traits
(``tinyml.ir.ops.OP_SPECS``), its reference kernel (``tinyml.reference.kernels.KERNELS``), its
lowering with the C kernels it calls (``tinyml.codegen.lowering``), the C kernels themselves
(``firmware/kernels``), and its TFLite import and export. The tables other modules use are
derived from those registrations, so what can go missing is a registration; this test finds
it. Ops that legitimately lack one part are listed here with the reason.
"""

from __future__ import annotations

import re

import pytest

from tinyml.codegen.lowering import c_kernels, lowering_for
from tinyml.frontends.onnx_ops import CONVERTERS
from tinyml.frontends.tflite_ops import TFLITE_IMPORTERS
from tinyml.ir.ops import OP_SPECS, QUANT_RULES, SPATIAL
from tinyml.paths import FIRMWARE_DIR
from tinyml.quantize.tflite_export import TFLITE_EXPORTERS
from tinyml.reference.kernels import KERNELS

#: Kinds that never reach code generation, and why.
NOT_COMPILED = {
    "BATCH_NORM": "folded into the convolution before it (tinyml.passes.fold_batch_norm)",
    "SHAPE": "evaluated at shape inference, then folded",
    "PACK": "evaluated at shape inference (shape computations), then folded",
    "CAST": "evaluated at shape inference (shape computations), then folded",
    # ---- data_movement ops
    "FILL": "its output is constant (dims and value known): evaluated at shape inference",
    "ZEROS_LIKE": "its output is constant (zeros of a known shape): evaluated at shape "
                  "inference",
    # ---- attention ops
    **{k: "float32 only (as in TFLM); between a DEQUANTIZE and a QUANTIZE it becomes a "
          "LOOKUP_TABLE (tinyml.passes.float_island_table)"
       for k in ("NEG", "SQUARE", "SIN", "COS", "FLOOR", "CEIL", "ROUND")},
}
#: Kinds with no TFLite builtin of their own, and why.
NOT_EXPORTED = {
    "CLIP": "TFLite has no general clamp builtin (RELU, RELU6 and RELU_N1_TO_1 are exported)",
    "CONV_2D_ADD": "made by tinyml's passes after export would happen",
    "LOOKUP_TABLE": "made by tinyml's passes after export would happen",
    # ---- streaming ops
    "READ_VARIABLE": "tinyml's quantizer does not write resource variables (the converter's "
                     "streaming models are read as they are)",
    "ASSIGN_VARIABLE": "tinyml's quantizer does not write resource variables (the converter's "
                       "streaming models are read as they are)",
    # ---- sequence ops
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "tinyml's quantizer does not quantize LSTMs (the "
                                    "converter's full-int8 LSTMs are read as they are)",
    **{k: v for k, v in NOT_COMPILED.items()
       if k not in ("NEG", "SQUARE", "SIN", "COS", "FLOOR", "CEIL", "ROUND")},
}
#: Kinds whose output quantization is not the quantizer's choice ("none"), and why.
NOT_QUANTIZED = {
    "QUANTIZE": "inserted by the quantizer around the int8 graph",
    "DEQUANTIZE": "inserted by the quantizer around the int8 graph",
    "CONV_2D_ADD": "made by tinyml's passes from a quantized CONV_2D and ADD",
    "LOOKUP_TABLE": "made by tinyml's passes from a quantized float island",
    "READ_VARIABLE": "a variable's quantization comes from its model (tinyml.passes.int8_state)",
    "ASSIGN_VARIABLE": "a variable's quantization comes from its model "
                       "(tinyml.passes.int8_state)",
    "SVDF": "its quantization (int16 state and time weights) comes from its model",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "the converter quantizes it (fixed int16 gate scales, "
                                    "the state's quantization from the file)",
    **NOT_COMPILED,
}

KINDS = sorted(OP_SPECS)


def _c_definitions() -> set[str]:
    """Names of the C kernel functions defined in firmware/kernels (portable and DSP)."""
    names = set()
    for path in (FIRMWARE_DIR / "kernels").rglob("*.c"):
        names |= set(re.findall(r"^void\s+(tinyml_\w+)\s*\(", path.read_text(), flags=re.M))
    return names


def _c_declarations() -> set[str]:
    header = (FIRMWARE_DIR / "kernels" / "tinyml_kernels.h").read_text()
    return set(re.findall(r"^void\s+(tinyml_\w+)\s*\(", header, flags=re.M))


@pytest.mark.parametrize("kind", KINDS)
def test_op_has_every_part(kind):
    spec = OP_SPECS[kind]
    assert callable(spec.spatial) or spec.spatial in SPATIAL
    assert spec.quantize in QUANT_RULES
    assert kind in KERNELS, f"{kind}: no reference kernel (tinyml.reference.kernels)"
    if kind in NOT_QUANTIZED:
        assert spec.quantize == "none", f"{kind}: listed as not quantized, but has a rule"
    else:
        assert spec.quantize != "none", f"{kind}: no quantizer rule (OpSpec.quantize)"
    if kind in NOT_EXPORTED:
        assert kind not in TFLITE_EXPORTERS, f"{kind}: listed as not exported, but is"
    else:
        assert kind in TFLITE_EXPORTERS, f"{kind}: no TFLite exporter (tflite_export.exports)"
    if kind in NOT_COMPILED:
        assert lowering_for(kind) is None, f"{kind}: listed as not compiled, but has a lowering"
        return
    lowering = lowering_for(kind)
    assert lowering is not None, f"{kind}: no lowering (tinyml.codegen.lowering.lowers)"
    kernels = lowering.kernels
    assert kernels, f"{kind}: its lowering declares no C kernel"
    defined, declared = _c_definitions(), _c_declarations()
    for function, geometry in kernels.items():
        assert function in defined, f"{kind}: C kernel {function} is not defined in firmware/"
        assert function in declared, f"{kind}: C kernel {function} is not in tinyml_kernels.h"
        # A kernel's patch geometry must agree with the op's spatial trait.
        if geometry == "elementwise":
            assert spec.spatial == "elementwise", (kind, function)
        elif geometry in ("window", "plane", "pointwise"):
            assert spec.spatial == "window", (kind, function)
        else:
            assert geometry is None, (kind, function, geometry)


def test_every_import_makes_a_known_op():
    """Each TFLite importer's builtin exists in the schema; each ONNX converter is registered
    for a real op name (the IR ops they make are checked by the frontends' own tests)."""
    from ai_edge_litert import schema_py_generated as schema
    builtins = set(vars(schema.BuiltinOperator))
    assert set(TFLITE_IMPORTERS) <= builtins, set(TFLITE_IMPORTERS) - builtins
    assert CONVERTERS


def test_declared_c_kernels_all_exist():
    missing = set(c_kernels()) - _c_definitions()
    assert not missing, missing
