"""TFLite files with the quirks of older converters import as TFLM reads them.

Each fixture is made here from a converter-made int8 model (tests/tflite_zoo.py) by editing
the flatbuffer through the schema's object API, the way an older converter or tool would have
written it: TOCO's ``quantized_dimension = 3`` on 1-D biases, operator codes only in
``deprecated_builtin_code``, version 1 on every op code, optional fields absent, zero-point
arrays of another length than the scales, constants at buffer offsets after the flatbuffer,
ops without builtin options. No model file is kept in the repository.

The oracles: TFLM (``tflite-micro``) runs the quirky file itself, and tinyml's reference and
compiled C must give its outputs bit for bit; where a quirk changes nothing TFLM computes, the
imported graph must equal the pristine file's. Each normalization is reported once as a note
(``Graph.notes``, ``tinyml inspect``).
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyml import reference
from tinyml.cli import main
from tinyml.frontends import load_model
from tinyml.sim import tflm
from tinyml.verify import make_samples, verify


def quirk_net(x):
    """Conv (per-channel, fused ReLU), depthwise, pool, dense and softmax: every tensor kind
    a quirk touches (4-D filters, 1-D biases, a RESHAPE shape, per-tensor activations)."""
    import tensorflow as tf
    L = tf.keras.layers
    y = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, strides=2, padding="same")(y)
    y = L.AveragePooling2D(2)(y)
    y = L.Reshape((-1,))(y)
    y = L.Dense(5)(y)
    return L.Softmax()(y)


@pytest.fixture(scope="module")
def pristine():
    from support.tflite_zoo import convert
    return convert(quirk_net, [(1, 12, 12, 3)], int8=True).read_bytes()


# ---- the quirks, as edits of the schema's object API (ModelT) -----------------------------------


def _edit(data: bytes, *edits) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for edit in edits:
        edit(model, schema)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _kind(model, op) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _shape_operands(model, schema) -> list:
    """RESHAPE's constant shape operands (int32, 1-D)."""
    sub = model.subgraphs[0]
    return [sub.tensors[op.inputs[1]] for op in sub.operators
            if _kind(model, op) == schema.BuiltinOperator.RESHAPE and len(op.inputs) > 1]


def toco_bias_axis(model, schema):
    """TOCO wrote the filter's quantized dimension (3) on the biases."""
    for t in model.subgraphs[0].tensors:
        q = t.quantization
        if len(t.shape) == 1 and q is not None and q.scale is not None and len(q.scale) > 1:
            q.quantizedDimension = 3


def deprecated_codes_only(model, schema):
    """Before TF 2.4 the op code was one byte, now ``deprecated_builtin_code``; the newer
    int32 field is absent (0). Old converters also wrote version 1 everywhere."""
    for code in model.operatorCodes:
        assert code.builtinCode < schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
        code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0
        code.version = 1


def empty_optional_fields(model, schema):
    """What older writers left out: names, descriptions, signatures, metadata, shape
    signatures, min/max, empty quantization tables on integer tensors."""
    model.description = None
    model.metadata = None
    model.metadataBuffer = None
    model.signatureDefs = None
    sub = model.subgraphs[0]
    sub.name = None
    for t in sub.tensors:
        t.shapeSignature = None
        if t.quantization is not None:
            t.quantization.min = t.quantization.max = None
    for t in _shape_operands(model, schema):
        t.quantization = None  # no table at all
    for buf in model.buffers:
        if buf.data is not None and len(buf.data) == 0:
            buf.data = None


def long_zero_points_short_scales(model, schema):
    """Per-tensor filters written with a length-1 scale but a full-length zero-point array
    (all zeros): TFLM uses zero_point[0]. The filter data are requantized to the one scale, so
    the model stays a sensible one (TFLM's output is the oracle either way)."""
    sub = model.subgraphs[0]
    for op in sub.operators:
        if _kind(model, op) != schema.BuiltinOperator.CONV_2D:
            continue
        w = sub.tensors[op.inputs[1]]
        q = w.quantization
        scales = np.asarray(q.scale, dtype=np.float32)
        one = np.float32(scales.max())
        data = np.frombuffer(bytes(model.buffers[w.buffer].data), np.int8).reshape(w.shape)
        per_out = scales.reshape(-1, *([1] * (len(w.shape) - 1)))
        requant = np.clip(np.round(data * (per_out / one)), -127, 127).astype(np.int8)
        model.buffers[w.buffer].data = np.frombuffer(requant.tobytes(), np.uint8)
        q.scale = [float(one)]
        q.zeroPoint = [0] * len(scales)
        q.quantizedDimension = 0


def meaningless_quantization(model, schema):
    """Quantization parameters where they mean nothing: RESHAPE's int32 shape operand with a
    scale and an axis beyond its rank."""
    for t in _shape_operands(model, schema):
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = [1.0], [0], 3
        t.quantization = q


def offset_buffers(data: bytes) -> bytes:
    """Every constant moved behind the flatbuffer, found by offset and size (how converters
    write models over 2 GB). The offsets are absolute, so the file is packed twice: the
    second packing only changes the offsets' values, not the flatbuffer's length."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    blobs = {}
    for index, buf in enumerate(model.buffers):
        if buf.data is not None and len(buf.data):
            blobs[index] = np.asarray(buf.data, dtype=np.uint8).tobytes()
            buf.data, buf.offset, buf.size = None, 1 << 40, len(blobs[index])

    def pack() -> bytes:
        builder = flatbuffers.Builder(0)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    head = pack()
    tail, position = b"", len(head)
    for index, blob in blobs.items():
        pad = -position % 16
        tail += b"\0" * pad
        model.buffers[index].offset = position + pad
        tail += blob
        position += pad + len(blob)
    packed = pack()
    assert len(packed) == len(head)
    return packed + tail


# ---- helpers --------------------------------------------------------------------------------


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    return path


def _same_graph(a, b):
    """Same ops, attributes, tensors, quantization and constants (names may differ)."""
    assert [(op.kind, op.attrs) for op in a.ops] == [(op.kind, op.attrs) for op in b.ops]
    for ta, tb in zip(a.tensors.values(), b.tensors.values(), strict=True):
        assert (ta.shape, ta.dtype) == (tb.shape, tb.dtype)
        assert (ta.quant is None) == (tb.quant is None), ta.name
        if ta.quant is not None:
            np.testing.assert_array_equal(ta.quant.scale, tb.quant.scale)
            np.testing.assert_array_equal(ta.quant.zero_point, tb.quant.zero_point)
            assert ta.quant.axis == tb.quant.axis
        assert (ta.data is None) == (tb.data is None), ta.name
        if ta.data is not None:
            np.testing.assert_array_equal(ta.data, tb.data)


def _matches_tflm(path, samples: int = 8):
    """tinyml's reference on the imported graph equals TFLM on the same file, bit for bit."""
    graph = load_model(path)
    runner = tflm.TflmRunner(path)
    for sample in make_samples(graph, samples, seed=3):
        want = runner.run(sample, len(graph.outputs))
        got = reference.run(graph, sample)
        for name, expected in zip(graph.outputs, want):
            np.testing.assert_array_equal(got[name], expected)
    return graph


def _litert(data: bytes, sample: list[np.ndarray]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample[0])
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _notes(graph, word: str) -> list[str]:
    return [note for note in graph.notes if word in note]


# ---- tests ------------------------------------------------------------------------------------


def test_pristine_file_has_no_notes(pristine, tmp_path):
    assert load_model(_write(tmp_path, "pristine", pristine)).notes == []


def test_toco_bias_axis(pristine, tmp_path):
    """The person_detect quirk: axis 3 on 1-D biases is read as 0, noted once for all."""
    path = _write(tmp_path, "toco_axis", _edit(pristine, toco_bias_axis))
    graph = _matches_tflm(path)
    _same_graph(graph, load_model(_write(tmp_path, "pristine", pristine)))
    biases = [t for t in graph.tensors.values() if len(t.shape) == 1 and t.quant is not None
              and t.quant.per_channel]
    assert len(biases) == 2 and all(t.quant.axis == 0 for t in biases)
    (note,) = graph.notes
    assert "quantization axis out of range on 2 1-D tensor(s)" in note


def test_deprecated_codes_and_versions(pristine, tmp_path):
    path = _write(tmp_path, "old_codes", _edit(pristine, deprecated_codes_only))
    graph = _matches_tflm(path)
    _same_graph(graph, load_model(_write(tmp_path, "pristine", pristine)))
    (note,) = graph.notes
    assert "deprecated_builtin_code" in note


def test_empty_optional_fields(pristine, tmp_path):
    """Absent optional fields are read as their defaults; nothing to note."""
    path = _write(tmp_path, "sparse_fields", _edit(pristine, empty_optional_fields))
    graph = _matches_tflm(path)
    _same_graph(graph, load_model(_write(tmp_path, "pristine", pristine)))
    assert graph.notes == []


def test_meaningless_quantization_on_shape_operand(pristine, tmp_path):
    path = _write(tmp_path, "shape_quant", _edit(pristine, meaningless_quantization))
    _matches_tflm(path)


def test_length1_scales_with_full_zero_points(pristine, tmp_path):
    """Per-tensor filter scale as a length-1 array next to a per-channel-length zero-point
    array: TFLM uses zero_point[0]; the model changed, so TFLM on this file is the oracle."""
    path = _write(tmp_path, "short_scales", _edit(pristine, long_zero_points_short_scales))
    graph = _matches_tflm(path)
    conv = next(op for op in graph.ops if op.kind == "CONV_2D")
    w = graph.tensors[conv.inputs[1]]
    assert not w.quant.per_channel and w.quant.zero_point.tolist() == [0]
    assert len(_notes(graph, "zero-point array")) == 1


def test_offset_buffers(pristine, tmp_path):
    """Constants behind the flatbuffer import as the same graph; TFLM cannot read them (it
    takes only ``Buffer.data``), which the note says."""
    data = offset_buffers(pristine)
    # The fixture is a valid file: LiteRT computes the same outputs from it.
    sample = [np.full((1, 12, 12, 3), 5, np.int8)]
    assert np.array_equal(_litert(data, sample), _litert(pristine, sample))
    path = _write(tmp_path, "offsets", data)
    graph = load_model(path)
    _same_graph(graph, load_model(_write(tmp_path, "pristine", pristine)))
    (note,) = graph.notes
    assert "buffer offsets" in note and "TFLM does not read them" in note


def _strip_options(*kinds: str):
    def edit(model, schema):
        for op in model.subgraphs[0].operators:
            if _kind(model, op) in [getattr(schema.BuiltinOperator, k) for k in kinds]:
                op.builtinOptions, op.builtinOptionsType = None, 0
    return edit


def test_missing_options_take_tflm_defaults(pristine, tmp_path):
    """FULLY_CONNECTED and RESHAPE without options: TFLM zero-fills the options struct, and
    so does tinyml. A RESHAPE with a shape operand needs none (converters omit them): only
    the dense layer is noted."""
    path = _write(tmp_path, "no_options",
                  _edit(pristine, _strip_options("FULLY_CONNECTED", "RESHAPE")))
    graph = _matches_tflm(path)
    (note,) = graph.notes
    assert note.startswith("1 op(s) (e.g. '") and "without their builtin options" in note


@pytest.mark.parametrize("kind, options, what", [
    ("CONV_2D", "Conv2DOptions", "strides are"),
    ("DEPTHWISE_CONV_2D", "DepthwiseConv2DOptions", "strides are"),
    ("AVERAGE_POOL_2D", "Pool2DOptions", "strides are"), ("SOFTMAX", "SoftmaxOptions", "beta is")])
def test_missing_options_that_matter_are_a_clear_error(pristine, tmp_path, kind, options, what):
    """Zero strides cannot run, and TFLM aborts on a softmax without options (beta 0): a
    one-line error naming the layer instead."""
    from tinyml.errors import ModelFormatError

    path = _write(tmp_path, "no_options", _edit(pristine, _strip_options(kind)))
    with pytest.raises(ModelFormatError, match=rf"layer '.+' \({kind}\) has no {options}: its "
                                               rf"{what} unknown"):
        load_model(path)


def test_every_quirk_at_once_verifies_bit_exact(pristine, tmp_path, capsys):
    """All the quirks TFLM runs, in one file: compiled, built and run on the host, bit-exact
    with TFLM and the reference; ``tinyml inspect`` notes each quirk once."""
    data = _edit(pristine, toco_bias_axis, deprecated_codes_only, empty_optional_fields,
                 long_zero_points_short_scales)
    path = _write(tmp_path, "museum", data)
    report = verify(path, "host", samples=10)
    assert report.oracle == "reference+tflite-micro"
    assert report.mismatched_outputs == 0 and report.samples == 12

    assert main(["inspect", str(path)]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 3
    assert main(["inspect", "--json", str(path)]) == 0
    import json
    assert len(json.loads(capsys.readouterr().out)["notes"]) == 3


def test_unsupported_op_is_named_before_unknown_tensor_types(pristine, tmp_path):
    """TFLM's audio front end has uint32 tensors, which the IR lacks, behind custom ops:
    the error names the op, what the user can act on, not the element type."""
    from tinyml.errors import UnsupportedOpError

    def custom_softmax_uint32(model, schema):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
        code.customCode = b"SignalWindow"
        model.operatorCodes.append(code)
        sub = model.subgraphs[0]
        op = next(op for op in sub.operators
                  if _kind(model, op) == schema.BuiltinOperator.SOFTMAX)
        op.opcodeIndex = len(model.operatorCodes) - 1
        op.builtinOptions, op.builtinOptionsType = None, 0
        sub.tensors[op.outputs[0]].type = schema.TensorType.UINT32

    path = _write(tmp_path, "custom", _edit(pristine, custom_softmax_uint32))
    with pytest.raises(UnsupportedOpError, match=r"unsupported op CUSTOM\(SignalWindow\) in "
                                                 r"layer '"):
        load_model(path)
