"""The conv op family against TFLM (and onnxruntime for ONNX): Conv1D as the converter writes
it (EXPAND_DIMS -> CONV_2D -> RESHAPE), dilated convolutions as SPACE_TO_BATCH_ND ->
convolution -> BATCH_TO_SPACE_ND (folded by ``tinyml.passes.fold_dilated_conv``, or run as
standalone ops), TRANSPOSE_CONV (portable and Cortex-M DSP kernels), ONNX ConvTranspose, and
the clean-ups exported graphs need (``fold_pad``, per-channel MUL/ADD folded before
quantization), with the MobileNetV2 ONNX-vs-TFLite SRAM acceptance check (slow).

Models come from the TFLite converter with a *dynamic* batch (``batch_size=None``, what a
Keras model saved without a batch size gives): that is when the converter writes
EXPAND_DIMS and the SPACE_TO_BATCH_ND form of a dilated convolution. Such a file declares
batch 1 for the tensors whose batch is really block x block times larger, and TFLM, which
takes shapes from the file, then computes one phase out of block x block (LiteRT resizes and
is right). TFLM is run on the same model with the shapes LiteRT resolves written into the
file (``resolved``): then it runs the three ops as TFLite defines them.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.c_harness import Harness, check_graph, reference_samples
from support.c_harness import bad_counts as _bad
from support.int8_op_models import compare_all_tensors
from support.int8_op_models import edit_flatbuffer as _edit_flatbuffer
from support.oracles import litert_interpreter, tflm_interpreter
from support.tflite_zoo import convert
from tinyml.codegen.lowering import lower
from tinyml.frontends.tflite import load_tflite_bytes
from tinyml.passes import is_alias, run_passes
from tinyml.reference import run
from tinyml.schedule.planner import plan_memory

SEEDS = range(4)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("kernels"))


def _layers():
    import tensorflow as tf
    return tf.keras.layers


def _calibration(rng, shape):
    """Inputs spanning [-1, 127/128]: the converter then gives the input zero point 0, so
    SPACE_TO_BATCH_ND's padding (the zero point) is the real zero TFLM pads with too."""
    x = rng.uniform(-1.0, 127 / 128, (1,) + tuple(shape[1:])).astype(np.float32)
    x.flat[0], x.flat[-1] = -1.0, 127 / 128
    return x


# ---- models -------------------------------------------------------------------------------


def conv1d_same_relu(x):
    return _layers().Conv1D(6, 3, padding="same", activation="relu",
                            bias_initializer="random_normal")(x)


def depthwise1d(x):
    return _layers().DepthwiseConv1D(3, padding="same", bias_initializer="random_normal")(x)


def separable1d(x):
    return _layers().SeparableConv1D(5, 3, padding="valid", bias_initializer="random_normal")(x)


def conv1d_dilated_same(x):
    return _layers().Conv1D(6, 3, dilation_rate=2, padding="same",
                            bias_initializer="random_normal")(x)


def conv1d_dilated_valid(x):
    return _layers().Conv1D(5, 3, dilation_rate=3, padding="valid",
                            bias_initializer="random_normal")(x)


def conv2d_dilated_same(x):
    return _layers().Conv2D(4, 3, dilation_rate=2, padding="same",
                            bias_initializer="random_normal")(x)


def depthwise2d_dilated_relu(x):
    return _layers().DepthwiseConv2D((3, 2), dilation_rate=(2, 3), padding="same",
                                     activation="relu", bias_initializer="random_normal")(x)


def conv1d_stack(x):
    """Conv1D, then a dilated one: the two patterns in one model (QEMU check)."""
    L = _layers()
    y = L.Conv1D(8, 3, padding="same", bias_initializer="random_normal")(x)
    return L.Conv1D(6, 3, dilation_rate=2, padding="same", activation="relu",
                    bias_initializer="random_normal")(y)


def space_batch_pool(x):
    """SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND around a pooling: nothing to fold. No padding:
    TFLM pads with an uninitialized value (see test_standalone_padding_matches_litert)."""
    import tensorflow as tf
    L = _layers()
    y = L.Lambda(lambda t: tf.space_to_batch_nd(t, [2, 3], [[0, 0], [0, 0]]),
                 output_shape=(3, 2, 3))(x)
    y = L.AveragePooling2D(2, strides=1, padding="same")(y)
    return L.Lambda(lambda t: tf.batch_to_space(t, [2, 3], [[1, 0], [0, 2]]),
                    output_shape=(5, 4, 3))(y)


def space_batch_pool_padded(x):
    import tensorflow as tf
    L = _layers()
    y = L.Lambda(lambda t: tf.space_to_batch_nd(t, [2, 2], [[1, 1], [1, 2]]),
                 output_shape=(4, 4, 3))(x)
    y = L.AveragePooling2D(2, strides=1, padding="same")(y)
    return L.Lambda(lambda t: tf.batch_to_space(t, [2, 2], [[1, 0], [0, 1]]),
                    output_shape=(7, 7, 3))(y)


def space_batch_1d(x):
    import tensorflow as tf
    L = _layers()
    y = L.Lambda(lambda t: tf.space_to_batch_nd(t, [3], [[0, 0]]), output_shape=(3, 3))(x)
    y = L.Conv1D(4, 1, bias_initializer="random_normal")(y)
    return L.Lambda(lambda t: tf.batch_to_space(t, [3], [[1, 2]]), output_shape=(6, 4))(y)


CASES = {
    # name: (build, input shape without batch, ops the converter must write)
    "conv1d": (conv1d_same_relu, (16, 3), {"EXPAND_DIMS", "CONV_2D"}),
    "depthwise1d": (depthwise1d, (16, 4), {"EXPAND_DIMS", "DEPTHWISE_CONV_2D"}),
    "separable1d": (separable1d, (16, 3), {"EXPAND_DIMS", "DEPTHWISE_CONV_2D", "CONV_2D"}),
    "conv1d_dilated_same": (conv1d_dilated_same, (16, 3),
                            {"SPACE_TO_BATCH_ND", "EXPAND_DIMS", "BATCH_TO_SPACE_ND"}),
    "conv1d_dilated_valid": (conv1d_dilated_valid, (17, 3),
                             {"SPACE_TO_BATCH_ND", "EXPAND_DIMS", "BATCH_TO_SPACE_ND"}),
    "conv2d_dilated_same": (conv2d_dilated_same, (9, 10, 3),
                            {"SPACE_TO_BATCH_ND", "CONV_2D", "BATCH_TO_SPACE_ND"}),
    "depthwise2d_dilated_relu": (depthwise2d_dilated_relu, (9, 8, 3),
                                 {"SPACE_TO_BATCH_ND", "DEPTHWISE_CONV_2D",
                                  "BATCH_TO_SPACE_ND"}),
    "space_batch_pool": (space_batch_pool, (6, 6, 3),
                         {"SPACE_TO_BATCH_ND", "AVERAGE_POOL_2D", "BATCH_TO_SPACE_ND"}),
    "space_batch_1d": (space_batch_1d, (9, 3), {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}),
}
#: Cases whose SPACE_TO_BATCH_ND -> ... -> BATCH_TO_SPACE_ND must fold into one convolution.
FOLDS = {"conv1d_dilated_same", "conv1d_dilated_valid", "conv2d_dilated_same",
         "depthwise2d_dilated_relu"}


def dynamic_model(name: str) -> bytes:
    build, shape, _ = CASES[name]
    return convert(build, [(None,) + shape], calibration=_calibration).read_bytes()


def builtin_ops(data: bytes) -> list[tuple[str, int]]:
    from ai_edge_litert import schema_py_generated as schema
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    result = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        result.append((names[max(code.builtinCode, code.deprecatedBuiltinCode)], code.version))
    return result


def resolved(data: bytes) -> bytes:
    """The model with every tensor's shape as LiteRT resolves it for batch 1 (signature
    dropped): a file TFLM runs as TFLite defines it."""
    it = litert_interpreter(data)
    shapes = {d["index"]: [int(v) for v in d["shape"]] for d in it.get_tensor_details()}

    def edit(model, schema):
        for i, t in enumerate(model.subgraphs[0].tensors):
            if i in shapes and t.shapeSignature is not None:
                t.shape = shapes[i]
                t.shapeSignature = None
    return _edit_flatbuffer(data, edit)


def tflm_oracle(data: bytes) -> bytes:
    """:func:`resolved`, with each padding SPACE_TO_BATCH_ND split into a PAD (zero point)
    and an unpadded SPACE_TO_BATCH_ND: the same values as TFLite defines them, which TFLM
    computes deterministically (its SPACE_TO_BATCH_ND pads with an uninitialized
    ``SpaceToBatchParams::output_offset``, i.e. whatever its arena held). The new tensors
    come after the file's, so tensor i is still the graph's tensor i."""
    import copy

    def edit(model, schema):
        sub = model.subgraphs[0]
        codes = model.operatorCodes
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

        def kind(op):
            code = codes[op.opcodeIndex]
            return names[max(code.builtinCode, code.deprecatedBuiltinCode)]

        def constant(name, values):
            buffer = schema.BufferT()
            buffer.data = np.asarray(values, "<i4").view(np.uint8).reshape(-1).tolist()
            model.buffers.append(buffer)
            t = schema.TensorT()
            t.name, t.shape, t.type = name.encode(), list(values.shape), schema.TensorType.INT32
            t.buffer = len(model.buffers) - 1
            sub.tensors.append(t)
            return len(sub.tensors) - 1

        pad_code = schema.OperatorCodeT()
        pad_code.builtinCode = pad_code.deprecatedBuiltinCode = schema.BuiltinOperator.PAD
        pad_code.version = 2
        operators = []
        for op in sub.operators:
            if kind(op) == "SPACE_TO_BATCH_ND":
                x = sub.tensors[op.inputs[0]]
                pads_t = sub.tensors[op.inputs[2]]
                pads = np.frombuffer(bytes(model.buffers[pads_t.buffer].data), "<i4")
                pads = pads.reshape(-1, 2)
                if pads.any():
                    if pad_code not in codes:
                        codes.append(pad_code)
                    full = np.zeros((len(x.shape), 2), np.int32)
                    full[1:1 + len(pads)] = pads
                    padded = copy.deepcopy(x)
                    padded.name = x.name + b"/padded"
                    padded.shape = [int(d) + int(b + a) for d, (b, a) in zip(x.shape, full)]
                    padded.buffer = 0
                    sub.tensors.append(padded)
                    pad = schema.OperatorT()
                    pad.opcodeIndex = codes.index(pad_code)
                    pad.outputs = [len(sub.tensors) - 1]
                    pad.inputs = [op.inputs[0], constant("oracle/paddings", full)]
                    pad.builtinOptionsType = schema.BuiltinOptions.PadOptions
                    pad.builtinOptions = schema.PadOptionsT()
                    operators.append(pad)
                    op.inputs = [pad.outputs[0], op.inputs[1],
                                 constant("oracle/no_paddings", np.zeros_like(pads))]
            operators.append(op)
        sub.operators = operators
    return _edit_flatbuffer(resolved(data), edit)


def _inputs(graph, seed):
    t = graph.tensors[graph.inputs[0]]
    if seed == "min":
        return [np.full(t.shape, -128, np.int8)]
    if seed == "max":
        return [np.full(t.shape, 127, np.int8)]
    return [np.random.default_rng(seed).integers(-128, 128, t.shape).astype(np.int8)]


SAMPLES = [*SEEDS, "min", "max"]


# ---- import and reference vs TFLM ---------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_reference_matches_tflm_on_every_tensor(name):
    data = dynamic_model(name)
    kinds = {k for k, _ in builtin_ops(data)}
    assert CASES[name][2] <= kinds, f"converter wrote {sorted(kinds)}"
    static = resolved(data)
    graph = load_tflite_bytes(static, name=name)
    oracle = tflm_oracle(data)
    # The dynamic file imports to the same graph (its placeholder batch re-inferred).
    dynamic = load_tflite_bytes(data, name=name)
    assert [dynamic.tensors[n].shape for n in dynamic.tensors] == \
        [graph.tensors[n].shape for n in graph.tensors]
    interpreter = tflm_interpreter(oracle)
    compared, total = 0, {}
    for seed in SAMPLES:
        for tensor, count in compare_all_tensors(graph, interpreter,
                                                 _inputs(graph, seed)).items():
            total[tensor] = total.get(tensor, 0) + count
        compared += 1
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"
    assert compared == len(SAMPLES)


@pytest.mark.parametrize("name", list(CASES))
def test_passes_fold_and_alias_and_match_tflm(name):
    """After the passes: dilated patterns are one convolution with dilation, every RESHAPE
    (EXPAND_DIMS, SQUEEZE) is an alias that costs no arena, and the output equals TFLM's."""
    data = resolved(dynamic_model(name))
    source = load_tflite_bytes(data, name=name)
    stats: dict[str, int] = {}
    graph = run_passes(source, stats=stats)
    kinds = [op.kind for op in graph.ops]
    if name in FOLDS:
        assert stats["fold_dilated_conv"] == 1
        assert "SPACE_TO_BATCH_ND" not in kinds and "BATCH_TO_SPACE_ND" not in kinds
        conv = next(op for op in graph.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"))
        assert max(conv.attrs.dilation) > 1
    else:
        assert stats["fold_dilated_conv"] == 0
    assert all(is_alias(graph, op) for op in graph.ops if op.kind == "RESHAPE")
    interpreter = tflm_interpreter(tflm_oracle(dynamic_model(name)))
    for seed in SAMPLES:
        x = _inputs(graph, seed)
        interpreter.set_input(x[0], 0)
        interpreter.invoke()
        assert np.array_equal(run(graph, x)[graph.outputs[0]], interpreter.get_output(0))
    # The planner: aliases share their input's bytes, so the arena holds one input and
    # one output of the convolution(s), no copy for the reshapes.
    memory = plan_memory(graph, lower(graph))
    biggest = max(graph.tensors[n].nbytes for op in graph.ops for n in op.outputs)
    assert memory.arena_bytes <= sum(sorted(
        (t.nbytes for t in graph.tensors.values() if not t.is_constant), reverse=True)[:2])
    assert memory.arena_bytes >= biggest


def test_space_to_batch_pads_with_the_zero_point_like_litert():
    """Where the zero point is not 0, SPACE_TO_BATCH_ND pads with it (TFLite's definition;
    LiteRT is the oracle here, TFLM leaves the pad value uninitialized). After a ReLU the
    zero point is -128."""
    def relu_then_dilated(x):
        L = _layers()
        y = L.Conv2D(3, 1, activation="relu", bias_initializer="random_normal")(x)
        return L.Conv2D(4, 3, dilation_rate=2, padding="same")(y)

    data = convert(relu_then_dilated, [(None, 7, 7, 3)], calibration=_calibration).read_bytes()
    it = litert_interpreter(data)
    graph = load_tflite_bytes(resolved(data), name="relu_then_dilated")
    s2b = next(op for op in graph.ops if op.kind == "SPACE_TO_BATCH_ND")
    assert graph.tensors[s2b.outputs[0]].zero_point() == -128
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    folded = run_passes(graph)
    for seed in SEEDS:
        x = _inputs(graph, seed)
        it.set_tensor(it.get_input_details()[0]["index"], x[0])
        it.invoke()
        values = run(graph, x, keep_all=True)
        assert np.array_equal(values[s2b.outputs[0]], it.get_tensor(index[s2b.outputs[0]]))
        # Folding is exact whatever the zero point.
        assert np.array_equal(run(folded, x)[folded.outputs[0]], values[graph.outputs[0]])


def test_standalone_padding_matches_litert(harness):
    """SPACE_TO_BATCH_ND with padding, BATCH_TO_SPACE_ND with crops, standalone: equal to
    LiteRT's tensors (exact data movement there; TFLM's pad value is its uninitialized
    ``SpaceToBatchParams::output_offset``), in the reference and in the C kernels."""
    data = convert(space_batch_pool_padded, [(None, 6, 5, 3)],
                   calibration=_calibration).read_bytes()
    it = litert_interpreter(data)
    graph = load_tflite_bytes(resolved(data), name="space_batch_pool_padded")
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    movers = [op.outputs[0] for op in graph.ops
              if op.kind in ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND")]
    assert len(movers) == 2
    samples = []
    for seed in SAMPLES:
        x = _inputs(graph, seed)
        it.set_tensor(it.get_input_details()[0]["index"], x[0])
        it.invoke()
        values = run(graph, x, keep_all=True)
        s2b = next(op for op in graph.ops if op.kind == "SPACE_TO_BATCH_ND")
        for name in movers:
            want = it.get_tensor(index[name])
            if name == s2b.outputs[0]:
                assert np.array_equal(values[name], want), name
        # BATCH_TO_SPACE_ND on LiteRT's own input (its pooling may round differently).
        b2s = next(op for op in graph.ops if op.kind == "BATCH_TO_SPACE_ND")
        values[b2s.inputs[0]] = it.get_tensor(index[b2s.inputs[0]])
        values[b2s.outputs[0]] = it.get_tensor(index[b2s.outputs[0]])
        samples.append(values)
    counts = check_graph(harness, graph, samples, "padded")
    movers_checked = [k for k in counts if "space" in k]
    assert len(movers_checked) == 2 * len(SAMPLES)
    assert _bad({k: v for k, v in counts.items() if "space" in k}) == {}


def test_exported_ops_load_in_tflm_and_match():
    """tinyml's TFLite export of the standalone ops: TFLM runs it, with the results of the
    converter's model and the converter's op versions."""
    from tinyml.quantize.tflite_export import export_tflite
    for name in ("space_batch_pool", "space_batch_1d"):
        data = resolved(dynamic_model(name))
        graph = load_tflite_bytes(data, name=name)
        exported = export_tflite(graph)
        versions = dict(builtin_ops(exported))
        for kind, version in builtin_ops(data):
            if kind in ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"):
                assert versions[kind] == version, (kind, versions[kind], version)
        a, b = tflm_interpreter(data), tflm_interpreter(exported)
        for seed in SAMPLES:
            x = _inputs(graph, seed)[0]
            a.set_input(x, 0)
            a.invoke()
            b.set_input(x, 0)
            b.invoke()
            assert np.array_equal(a.get_output(0), b.get_output(0))


# ---- C kernels --------------------------------------------------------------------------------


def _tflm_values(graph, interpreter, inputs, reference):
    """Every computed tensor's value as TFLM has it (graph tensor i is TFLM tensor i),
    after checking that it equals the reference's; constants are the graph's."""
    for i, x in enumerate(inputs):
        interpreter.set_input(x, i)
    interpreter.invoke()
    values = dict(reference)
    for i, name in enumerate(graph.tensors):
        t = graph.tensors[name]
        value = interpreter.GetTensor(i, 0)["tensor_data"]
        if t.is_constant or value is None:
            continue
        value = np.asarray(value).reshape(t.shape)
        assert np.array_equal(reference[name], value), name
        values[name] = value
    return values



@pytest.mark.parametrize("name", list(CASES))
def test_c_kernels_match_tflm(harness, name):  # noqa: F811
    """Every kernel of the imported graph on TFLM's tensors (standalone SPACE_TO_BATCH_ND and
    BATCH_TO_SPACE_ND included), then every kernel of the folded graph on the reference's,
    under ASan/UBSan."""
    data = resolved(dynamic_model(name))
    graph = load_tflite_bytes(data, name=name)
    interpreter = tflm_interpreter(tflm_oracle(dynamic_model(name)))
    samples = [_tflm_values(graph, interpreter, x, run(graph, x, keep_all=True))
               for x in (_inputs(graph, s) for s in SAMPLES)]
    counts = check_graph(harness, graph, samples, name)
    assert len(counts) >= len(graph.ops) * len(samples)
    assert _bad(counts) == {}
    folded = run_passes(graph)
    counts = check_graph(harness, folded,
                         reference_samples(folded, [_inputs(folded, s) for s in SAMPLES]),
                         name + "-folded")
    assert _bad(counts) == {}


# ---- end to end -------------------------------------------------------------------------------


def _stack_file(tmp_path):
    """The Conv1D + dilated Conv1D model as TFLM runs it as TFLite defines it
    (:func:`tflm_oracle`: verify compares with TFLM on this file)."""
    path = tmp_path / "conv1d_stack.tflite"
    build, shape = conv1d_stack, (24, 4)
    path.write_bytes(tflm_oracle(convert(build, [(None,) + shape],
                                         calibration=_calibration).read_bytes()))
    return path


def test_conv1d_and_dilated_verify_on_host_sanitized(tmp_path):
    from tinyml.verify import verify
    report = verify(_stack_file(tmp_path), "host", samples=10, sanitize=True)
    assert "tflite-micro" in report.oracle and report.sanitized
    assert report.samples == 12 and report.mismatched_outputs == 0


def test_conv1d_and_dilated_verify_in_qemu(tmp_path):
    from tinyml.verify import verify
    report = verify(_stack_file(tmp_path), "cortex-m4", samples=10, profile=False)
    assert "tflite-micro" in report.oracle
    assert report.samples == 12 and report.mismatched_outputs == 0


# ---- TRANSPOSE_CONV (keras Conv2DTranspose) ---------------------------------------------------


def tconv_same_s2(x):
    return _layers().Conv2DTranspose(4, 3, strides=2, padding="same",
                                     bias_initializer="random_normal")(x)


def tconv_valid_s2_no_bias(x):
    return _layers().Conv2DTranspose(5, 3, strides=2, padding="valid", use_bias=False)(x)


def tconv_same_s1_relu(x):
    return _layers().Conv2DTranspose(3, (2, 3), strides=1, padding="same", activation="relu",
                                     bias_initializer="random_normal")(x)


def tconv_valid_s1(x):
    return _layers().Conv2DTranspose(4, (3, 2), strides=1, padding="valid",
                                     bias_initializer="random_normal")(x)


def tconv_same_s12_k4(x):
    return _layers().Conv2DTranspose(6, 4, strides=(1, 2), padding="same",
                                     bias_initializer="random_normal")(x)


TCONV_CASES = {
    # name: (build, input shape, convert options, has bias)
    "same_s2_bias": (tconv_same_s2, (1, 5, 5, 3), {}, True),
    "valid_s2_no_bias": (tconv_valid_s2_no_bias, (1, 5, 6, 3), {}, False),
    "same_s1_relu": (tconv_same_s1_relu, (1, 6, 5, 2), {}, True),
    "valid_s1": (tconv_valid_s1, (1, 4, 5, 3), {}, True),
    "same_s12_k4": (tconv_same_s12_k4, (1, 5, 4, 3), {}, True),
    "same_s2_per_tensor": (tconv_same_s2, (1, 5, 5, 3), dict(per_channel=False), True),
}


def tconv_model(name: str) -> bytes:
    build, shape, options, _ = TCONV_CASES[name]
    return convert(build, [shape], **options).read_bytes()


@pytest.mark.parametrize("name", list(TCONV_CASES))
def test_transpose_conv_matches_tflm(harness, name):  # noqa: F811
    """Reference and C kernel against TFLM on every tensor (seeded random, all-min, all-max)."""
    data = tconv_model(name)
    assert "TRANSPOSE_CONV" in {k for k, _ in builtin_ops(data)}
    graph = load_tflite_bytes(data, name=name)
    op = next(op for op in graph.ops if op.kind == "TRANSPOSE_CONV")
    assert (len(op.inputs) == 3) is TCONV_CASES[name][3]
    w = graph.tensors[op.inputs[1]]
    assert w.quant.per_channel is (name != "same_s2_per_tensor")
    interpreter = tflm_interpreter(data)
    total: dict[str, int] = {}
    samples = []
    for seed in SAMPLES:
        x = _inputs(graph, seed)
        for tensor, count in compare_all_tensors(graph, interpreter, x).items():
            total[tensor] = total.get(tensor, 0) + count
        samples.append(_tflm_values(graph, interpreter, x, run(graph, x, keep_all=True)))
    assert not total, f"{name}: elements differing from TFLM per tensor: {total}"
    counts = check_graph(harness, graph, samples, name)
    assert sum(1 for k in counts if "transpose_conv" in k) == len(SAMPLES)
    assert _bad(counts) == {}


def test_transpose_conv_export_matches_converter_and_tflm():
    """tinyml's TFLite export: the converter's op version, and TFLM gives the same output."""
    from tinyml.quantize.tflite_export import export_tflite
    for name in TCONV_CASES:
        data = tconv_model(name)
        graph = load_tflite_bytes(data, name=name)
        exported = export_tflite(graph)
        assert dict(builtin_ops(exported))["TRANSPOSE_CONV"] == \
            dict(builtin_ops(data))["TRANSPOSE_CONV"], name
        a, b = tflm_interpreter(data), tflm_interpreter(exported)
        for seed in SAMPLES:
            x = _inputs(graph, seed)[0]
            a.set_input(x, 0)
            a.invoke()
            b.set_input(x, 0)
            b.invoke()
            assert np.array_equal(a.get_output(0), b.get_output(0)), name


def test_float_transpose_conv_quantized_by_tinyml_is_bit_exact_with_tflm():
    """A float Conv2DTranspose model quantized by tinyml's quantizer: TFLM runs the exported
    int8 file with the reference's values on every tensor."""
    from tinyml.quantize import quantize_model

    def upsample(x):
        L = _layers()
        y = L.Conv2D(4, 3, padding="same", activation="relu")(x)
        return L.Conv2DTranspose(3, 3, strides=2, padding="same")(y)

    path = convert(upsample, [(1, 6, 6, 2)], int8=False)
    model = quantize_model(path, "random:-1,1", samples=20)
    assert "TRANSPOSE_CONV" in {op.kind for op in model.graph.ops}
    exported = model.to_tflite()
    graph = load_tflite_bytes(exported)
    interpreter = tflm_interpreter(exported)
    assert graph.tensors[graph.inputs[0]].dtype == "int8"
    for seed in SAMPLES:
        assert not compare_all_tensors(graph, interpreter, _inputs(graph, seed))
    # and it compiles: the transposed convolution lowers to its C kernel
    assert any(c.function == "tinyml_transpose_conv_s8" for c in lower(run_passes(graph)))


# ---- PAD folded into the convolution (fold_pad) -------------------------------------------------


def pad_then_depthwise_s2(x):
    """A stride-2 block as MobileNet writes it: ZeroPadding2D then a VALID depthwise
    convolution, after a ReLU6 (zero point -128: the PAD pads with code -128). The padding
    is not SAME, so the converter keeps the PAD (it folds the SAME one itself)."""
    L = _layers()
    y = L.Conv2D(6, 1, activation="relu6", bias_initializer="random_normal")(x)
    y = L.ZeroPadding2D(((1, 1), (1, 1)))(y)
    return L.DepthwiseConv2D(3, strides=2, bias_initializer="random_normal")(y)


def pad_then_conv(x):
    L = _layers()
    return L.Conv2D(4, 3, bias_initializer="random_normal")(L.ZeroPadding2D(((1, 2), (0, 1)))(x))


def pad_then_avg_pool(x):
    L = _layers()
    return L.AveragePooling2D(2)(L.ZeroPadding2D(((1, 0), (0, 1)))(x))


@pytest.mark.parametrize("build,shape,folds", [
    (pad_then_depthwise_s2, (1, 8, 8, 3), True),
    (pad_then_conv, (1, 5, 6, 3), True),
    (pad_then_avg_pool, (1, 5, 5, 3), False),  # pooling would not count padded zeros
])
def test_zero_pad_folds_into_the_convolution(build, shape, folds):
    data = convert(build, [shape]).read_bytes()
    assert "PAD" in {k for k, _ in builtin_ops(data)}
    graph = load_tflite_bytes(data, name=build.__name__)
    stats: dict[str, int] = {}
    folded = run_passes(graph, stats=stats)
    assert stats["fold_pad"] == int(folds)
    assert ("PAD" in [op.kind for op in folded.ops]) is not folds
    if folds:
        pad = next(op for op in graph.ops if op.kind == "PAD")
        assert graph.tensors[pad.inputs[0]].zero_point() != 0 or build is pad_then_conv
        memory = [plan_memory(g, lower(g)).arena_bytes for g in (run_passes(
            graph, passes=[p for p in stats if p != "fold_pad"]), folded)]
        assert memory[1] < memory[0]
    interpreter = tflm_interpreter(data)
    for seed in SAMPLES:
        x = _inputs(folded, seed)
        interpreter.set_input(x[0], 0)
        interpreter.invoke()
        assert np.array_equal(run(folded, x)[folded.outputs[0]], interpreter.get_output(0))


@pytest.mark.slow
def test_mobilenetv2_from_onnx_plans_the_sram_of_tflite(tmp_path):
    """The acceptance check (benchmarks/mobilenetv2_onnx_vs_tflite.py): tf2onnx's export of
    MobileNetV2-0.35-96, quantized by tinyml, plans within 5 % of the TFLite int8 one."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mobilenetv2_onnx_vs_tflite.py"
    spec = importlib.util.spec_from_file_location("mobilenetv2_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure(1000, tmp_path)
    print(result)
    assert result["onnx"]["pads"] == 0
    assert result["within_5_percent"], result


# ---- ONNX: ConvTranspose (float and QDQ) against onnxruntime ----------------------------------

CONV_TRANSPOSE_ATTRS = {
    "pads": dict(strides=[2, 2], pads=[1, 1, 0, 0]),
    "output_padding": dict(strides=[2, 2], output_padding=[1, 1]),
    "same_upper": dict(strides=[1, 2], auto_pad="SAME_UPPER"),
    "same_lower": dict(strides=[2, 2], auto_pad="SAME_LOWER"),
    "output_shape": dict(strides=[2, 2], output_shape=[9, 10]),
    "valid_k2": dict(strides=[2, 2], kernel_shape=[2, 2]),
}


def _conv_transpose_model(name: str, bias: bool = True):
    from onnx import helper
    from support.onnx_cases import make_model
    rng = np.random.default_rng(5)
    attrs = CONV_TRANSPOSE_ATTRS[name]
    k = attrs.get("kernel_shape", [3, 3])
    inputs = ["x", "w", "b"] if bias else ["x", "w"]
    nodes = [helper.make_node("ConvTranspose", inputs, ["y"], **attrs),
             helper.make_node("Relu", ["y"], ["r"])]
    consts = {"w": (rng.standard_normal((3, 4, *k)) * 0.5).astype(np.float32)}
    if bias:
        consts["b"] = (rng.standard_normal(4) * 0.5).astype(np.float32)
    return make_model(nodes, {"x": [1, 3, 5, 5]}, ["r"], consts)


@pytest.mark.parametrize("name", list(CONV_TRANSPOSE_ATTRS))
def test_onnx_conv_transpose_float_matches_onnxruntime(name):
    from support.onnx_cases import check_float as _check_float
    imp, worst = _check_float(_conv_transpose_model(name, bias=name != "valid_k2"))
    assert [op.kind for op in imp.graph.ops].count("TRANSPOSE_CONV") == 1
    assert worst < 1e-5


def import_onnx_file(path):
    import onnx
    from tinyml.frontends.onnx import import_onnx
    return import_onnx(onnx.load(str(path)), name=path.stem)


@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
def test_onnx_conv_transpose_qdq_stays_int8_within_one_lsb(per_channel, tmp_path):
    """The QDQ ConvTranspose (quantized by onnxruntime) becomes an int8 TRANSPOSE_CONV whose
    outputs are within 1 LSB of the QDQ graph's float arithmetic (the requantization
    rounding, as for every QDQ op), and it compiles to its C kernel."""
    from support.onnx_cases import assert_int8_graph as _assert_int8_graph
    from support.onnx_cases import qdq_report as _report
    from support.onnx_cases import quantize_qdq as _quantize
    from support.onnx_cases import run_qdq as _run_qdq
    path = _quantize(_conv_transpose_model("same_upper"), (1, 3, 5, 5), tmp_path, "tconv",
                     per_channel=per_channel)
    imp, e2e, isolated, _ = _run_qdq(path, runs=5)
    _assert_int8_graph(imp.graph)
    op = next(op for op in imp.graph.ops if op.kind == "TRANSPOSE_CONV")
    x, w = (imp.graph.tensors[n] for n in op.inputs[:2])
    assert x.dtype == w.dtype == "int8"
    assert w.quant.per_channel is per_channel and (w.quant.axis == 0 or not per_channel)
    assert all(d.worst <= 1 for d in isolated.values()), _report("isolated:", isolated)
    assert any(d.count for d in isolated.values())
    assert any(c.function == "tinyml_transpose_conv_s8" for c in lower(run_passes(imp.graph)))
    # The int8 graph as TFLite: TFLM computes every tensor as the reference does.
    from tinyml.quantize.tflite_export import export_tflite
    exported = export_tflite(imp.graph)
    graph = load_tflite_bytes(exported)
    interpreter = tflm_interpreter(exported)
    for seed in SEEDS:
        x = np.random.default_rng(seed).standard_normal(graph.tensors[graph.inputs[0]].shape)
        assert not compare_all_tensors(graph, interpreter, [x.astype(np.float32)])
    # Padding TFLite's SAME/VALID cannot express is refused on export, in one line.
    other = _quantize(_conv_transpose_model("pads"), (1, 3, 5, 5), tmp_path, "tconv_pads",
                      per_channel=per_channel)
    from tinyml.errors import TinymlError
    with pytest.raises(TinymlError, match="neither SAME nor VALID"):
        export_tflite(import_onnx_file(other).graph)


def test_onnx_conv1d_and_tf2onnx_conv2d_transpose(tmp_path):
    """tf2onnx's export of a Keras Conv1D and Conv2DTranspose model imports and matches
    onnxruntime (float)."""
    import subprocess
    import sys
    import onnx
    from support.onnx_cases import check_float as _check_float
    script = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import tensorflow as tf, tf2onnx, tf_keras
tf_keras.utils.set_random_seed(0)
L = tf_keras.layers
x = tf_keras.Input((8, 8, 3), batch_size=1)
y = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(x)
y = L.Reshape((16 * 16, 4))(y)
y = L.Conv1D(5, 3, dilation_rate=2, padding="same")(y)
model = tf_keras.Model(x, y)
spec = [tf.TensorSpec((1, 8, 8, 3), tf.float32, name="x")]
tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=sys.argv[1])
"""
    path = tmp_path / "tf2onnx.onnx"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    imp, worst = _check_float(onnx.load(str(path)))
    kinds = [op.kind for op in imp.graph.ops]
    assert "TRANSPOSE_CONV" in kinds and "CONV_2D" in kinds
    assert worst < 1e-4


# ---- float models: tinyml's quantizer folds before calibrating -------------------------------


def dilated_bn(x):
    """A dilated Conv1D with its batch norm (dynamic batch: SPACE_TO_BATCH_ND form), then a
    ZeroPadding1D before a VALID Conv1D."""
    L = _layers()
    y = L.Conv1D(6, 3, dilation_rate=2, padding="same", use_bias=False)(x)
    y = L.BatchNormalization(beta_initializer="random_normal",
                             moving_variance_initializer="ones")(y)
    y = L.ReLU()(y)
    y = L.ZeroPadding1D((2, 1))(y)
    return L.Conv1D(4, 3, bias_initializer="random_normal")(y)


def test_float_dilated_model_quantized_by_tinyml_is_bit_exact_with_tflm(tmp_path):
    """``tinyml compile --calib`` of a float dynamic-batch model: the dilated pattern and the
    padding fold before calibration, the exported int8 file has neither SPACE_TO_BATCH_ND nor
    PAD, and TFLM runs it with the reference's values on every tensor; it compiles."""
    from tinyml.quantize import quantize_model
    data = convert(dilated_bn, [(None, 20, 3)], int8=False).read_bytes()
    kinds = {k for k, _ in builtin_ops(data)}
    assert {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "PAD"} <= kinds, kinds
    path = tmp_path / "float.tflite"
    path.write_bytes(data)
    model = quantize_model(path, "random:-1,1", samples=20)
    int8_kinds = [op.kind for op in model.graph.ops]
    assert not {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "PAD", "MUL"} & set(int8_kinds)
    exported = model.to_tflite()
    graph = load_tflite_bytes(exported)
    interpreter = tflm_interpreter(exported)
    assert graph.tensors[graph.inputs[0]].dtype == "int8"
    for seed in SAMPLES:
        assert not compare_all_tensors(graph, interpreter, _inputs(graph, seed))
    assert lower(run_passes(graph))


def test_onnx_pad_and_batch_norm_as_mul_add_fold_around_depthwise(tmp_path):
    """tf2onnx's MobileNet block: Pad -> depthwise Conv -> Mul -> Add (a BatchNormalization
    kept as per-channel constants) -> Clip. The float import matches onnxruntime; after
    tinyml's quantizer and passes only the convolution is left."""
    from onnx import helper
    from support.onnx_cases import make_model
    from support.onnx_cases import check_float as _check_float
    from tinyml.quantize import quantize_model
    rng = np.random.default_rng(9)
    c = 6
    nodes = [helper.make_node("Conv", ["x", "w1"], ["e"]),
             helper.make_node("Pad", ["e", "pads"], ["p"]),
             helper.make_node("Conv", ["p", "w"], ["d"], group=c, strides=[2, 2]),
             helper.make_node("Mul", ["d", "g"], ["m"]),
             helper.make_node("Add", ["m", "h"], ["a"]),
             helper.make_node("Clip", ["a", "lo", "hi"], ["y"])]
    consts = {"pads": np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64),
              "w1": (rng.standard_normal((c, c, 1, 1)) * 0.5).astype(np.float32),
              "w": (rng.standard_normal((c, 1, 3, 3)) * 0.5).astype(np.float32),
              "g": rng.uniform(0.5, 2, (1, c, 1, 1)).astype(np.float32),
              "h": rng.standard_normal((1, c, 1, 1)).astype(np.float32),
              "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    model = make_model(nodes, {"x": [1, c, 12, 12]}, ["y"], consts)
    _check_float(model)
    path = tmp_path / "block.onnx"
    import onnx
    onnx.save(model, str(path))
    quantized = quantize_model(path, "random:-1,1", samples=10)
    assert not {"MUL", "ADD", "BATCH_NORM"} & {op.kind for op in quantized.graph.ops}
    graph = run_passes(quantized.graph)
    assert [op.kind for op in graph.ops if op.kind not in ("QUANTIZE", "DEQUANTIZE",
                                                           "TRANSPOSE")] == \
        ["CONV_2D", "DEPTHWISE_CONV_2D"]
    conv = next(op for op in graph.ops if op.kind == "DEPTHWISE_CONV_2D")
    assert conv.attrs.padding == (0, 1, 0, 1) and conv.attrs.activation == "RELU6"


def dilated_net(x):
    L = _layers()
    y = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    y = L.Conv2D(16, 3, dilation_rate=2, padding="same", activation="relu")(y)
    y = L.DepthwiseConv2D(3, dilation_rate=2, padding="same", activation="relu")(y)
    y = L.Conv2D(24, 3, strides=2, padding="same", activation="relu")(y)
    y = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(y)
    return L.Dense(4)(L.GlobalAveragePooling2D()(y))


def test_folded_dilated_convolutions_run_patch_by_patch(tmp_path):
    """The folded dilated convolutions are windows with dilation to the patch scheduler: a
    patch stage through one (halos of (k - 1) * dilation) plans, and the patched build is
    bit-exact with TFLM under the sanitizers. (Overlapped layers make the layer-by-layer arena
    the smaller one here, so the stage is forced.)"""
    from tinyml.compiler import plan
    from tinyml.verify import verify
    path = tmp_path / "dilated_net.tflite"
    path.write_bytes(tflm_oracle(convert(dilated_net, [(None, 64, 64, 3)],
                                         calibration=_calibration).read_bytes()))
    layerwise = plan(path, "cortex-m4", patch="off")
    k = next(i for i, op in enumerate(layerwise.graph.ops)
             if op.kind == "CONV_2D" and max(op.attrs.dilation) > 1)
    compiled = plan(path, "cortex-m4", patch=f"{k}:2x2")
    stage = [compiled.graph.ops[i] for i in compiled.patch.stage]
    assert any(op.kind == "CONV_2D" and max(op.attrs.dilation) > 1 for op in stage)
    assert compiled.patch.mac_overhead > 0  # the dilated taps' halos are recomputed
    result = verify(path, "host", samples=4, sanitize=True, patch=f"{k}:2x2")
    assert result.samples == 6 and result.mismatched_outputs == 0


# ---- the Cortex-M DSP TRANSPOSE_CONV (firmware/kernels/cortex_m/transpose_conv.c) --------------


def tconv_wide(x):
    return _layers().Conv2DTranspose(7, 3, strides=2, padding="same",
                                     bias_initializer="random_normal")(x)


def tconv_k5(x):
    return _layers().Conv2DTranspose(3, 5, strides=1, padding="same",
                                     bias_initializer="random_normal")(x)


def test_dsp_transpose_conv_matches_tflm_under_emulation(tmp_path):
    """The DSP kernel compiled on the host with the ACLE emulation (tests/support), under
    ASan/UBSan, on TFLM's tensors: channel counts with and without a remainder of the
    4-value blocks (3, 9, 16, 5), odd output channel counts, and a 5x5 stride-1 filter whose
    25 taps exceed the kernel's tap list (chunked path)."""
    from support.dsp_harness import DspHarness
    harness = DspHarness(tmp_path, dsp_files=("transpose_conv.c",))
    runs = 0
    for name, data in [("same_s2_bias", tconv_model("same_s2_bias")),
                       ("valid_s2_no_bias", tconv_model("valid_s2_no_bias")),
                       ("wide9", convert(tconv_wide, [(1, 4, 5, 9)]).read_bytes()),
                       ("wide16", convert(tconv_wide, [(1, 3, 3, 16)]).read_bytes()),
                       ("k5", convert(tconv_k5, [(1, 6, 6, 5)]).read_bytes())]:
        graph = load_tflite_bytes(data, name=name)
        interpreter = tflm_interpreter(data)
        samples = [_tflm_values(graph, interpreter, x, run(graph, x, keep_all=True))
                   for x in (_inputs(graph, s) for s in SAMPLES)]
        counts = check_graph(harness, graph, samples, name)
        runs += sum(1 for k in counts if "transpose_conv" in k)
        assert _bad(counts) == {}
    assert runs == 5 * len(SAMPLES)


def test_transpose_conv_verifies_in_qemu(tmp_path):
    """A Conv2DTranspose model on cortex-m4 (the DSP kernel) in QEMU: 0 mismatches with TFLM."""
    from tinyml.verify import verify
    path = tmp_path / "tconv.tflite"
    path.write_bytes(convert(tconv_wide, [(1, 4, 5, 9)]).read_bytes())
    report = verify(path, "cortex-m4", samples=8, profile=False)
    assert "tflite-micro" in report.oracle
    assert report.samples == 10 and report.mismatched_outputs == 0


def test_folded_pad_verifies_in_qemu(tmp_path):
    """The PAD folded into a stride-2 depthwise convolution (asymmetric padding, zero point
    -128) on cortex-m4's DSP kernels in QEMU: 0 mismatches with TFLM running the PAD."""
    from tinyml.verify import verify
    path = tmp_path / "pad_dw.tflite"
    path.write_bytes(convert(pad_then_depthwise_s2, [(1, 8, 8, 3)]).read_bytes())
    report = verify(path, "cortex-m4", samples=8, profile=False)
    assert "tflite-micro" in report.oracle
    assert report.samples == 10 and report.mismatched_outputs == 0


@pytest.mark.parametrize("attrs,cause", [
    (dict(group=3), "grouped transposed convolution"),
    (dict(dilations=[2, 2]), "dilated transposed convolution"),
])
def test_unsupported_conv_transpose_is_a_one_line_error(attrs, cause):
    from onnx import helper
    from support.onnx_cases import make_model
    from tinyml.errors import UnsupportedOpError
    from tinyml.frontends.onnx import import_onnx
    rng = np.random.default_rng(0)
    model = make_model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs)],
                       {"x": [1, 3, 5, 5]}, ["y"],
                       {"w": rng.standard_normal((3, 1 if "group" in attrs else 4, 3, 3))
                        .astype(np.float32)})
    with pytest.raises(UnsupportedOpError) as error:
        import_onnx(model, name="m")
    message = str(error.value)
    assert "\n" not in message and "ConvTranspose" in message and cause in message
    assert "'y'" in message


def test_standalone_space_batch_ops_verify_in_qemu_cortex_m0plus(tmp_path):
    """SPACE_TO_BATCH_ND and BATCH_TO_SPACE_ND that do not fold, as kernels on a core without
    the DSP extension (cortex-m0plus) in QEMU: 0 mismatches with TFLM."""
    from tinyml.verify import verify
    path = tmp_path / "space_batch.tflite"
    path.write_bytes(tflm_oracle(dynamic_model("space_batch_pool")))
    graph = run_passes(load_tflite_bytes(path.read_bytes()))
    assert {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"} <= {op.kind for op in graph.ops}
    report = verify(path, "cortex-m0plus", samples=8, profile=False)
    assert "tflite-micro" in report.oracle
    assert report.samples == 10 and report.mismatched_outputs == 0
