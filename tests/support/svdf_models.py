"""Int8 SVDF keyword spotters, written with the TFLite flatbuffer schema.

Why hand-built: the TFLite converter does not emit SVDF from Keras layers; the models that
carry it (TFLM's micro_speech-era keyword spotters) were made by older TensorFlow graph
tooling. So the files are written here the way such a file looks, with the official schema's
object API (``ai_edge_litert``'s ``schema_py_generated``, as tinyml's exporter does): an int8
input frame, an SVDF (int8 feature weights, int16 time weights, int32 bias, an int16 *variable*
activation state that TFLM keeps between invocations), then FULLY_CONNECTED and SOFTMAX.

The quantization is what a quantizer would choose, drawn at random: weights symmetric over
their largest magnitude (int8 and int16), the state's and outputs' scales from the float
ranges that a float simulation of the layers over random frames reaches, bias scales the
products TFLM requires. TFLM runs the file as the oracle, so nothing here needs to be exact.
"""

from __future__ import annotations

import numpy as np


def _quant(schema, scale: float, zero_point: int):
    q = schema.QuantizationParametersT()
    q.scale = [float(np.float32(scale))]
    q.zeroPoint = [int(zero_point)]
    return q


def svdf_model(input_size: int = 20, units: int = 6, rank: int = 1, memory: int = 5,
               classes: int = 4, activation: str = "NONE", seed: int = 0,
               state_dtype: str = "int16", output_zero_point: int | None = None,
               head: bool = True) -> bytes:
    """One int8 SVDF keyword spotter; returns the .tflite bytes. ``state_dtype`` int16 is
    TFLM's usual integer SVDF (int16 time weights and state); int8 is its other variant.
    Without ``head`` the model is the SVDF alone (its output is the model's: the C tests see
    every SVDF output code, which the softmax would partly saturate)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    rng = np.random.default_rng(seed)
    filters = units * rank
    f32 = np.float32
    state_max = 127 if state_dtype == "int8" else 32767
    state_np = np.int8 if state_dtype == "int8" else np.int16

    # Float weights, then symmetric quantization over each tensor's largest magnitude.
    wf = rng.normal(0, 0.3, (filters, input_size)).astype(f32)
    wt = rng.normal(0, 0.4, (filters, memory)).astype(f32)
    s_in = f32(rng.uniform(0.02, 0.2))
    zp_in = int(rng.integers(-128, 0))
    s_wf = f32(np.abs(wf).max() / 127)
    s_wt = f32(np.abs(wt).max() / state_max)
    wf_q = np.clip(np.round(wf / s_wf), -127, 127).astype(np.int8)
    wt_q = np.clip(np.round(wt / s_wt), -state_max, state_max).astype(state_np)

    # Float simulation over random frames for the activation ranges.
    frames = (rng.integers(-128, 128, (40, input_size)) - zp_in) * s_in
    columns = frames @ wf.T                                  # [frames, filters]
    s_state = f32(np.percentile(np.abs(columns), 99) / state_max)
    zp_state = int(rng.integers(-20, 20)) if state_dtype == "int8" else 0
    history = np.stack([columns[max(0, k - memory + 1):k + 1][-memory:].sum(axis=0)
                        for k in range(len(columns))])  # rough, enough for a range
    per_unit = (np.abs(history) * np.abs(wt).max(axis=1)).reshape(-1, units, rank).sum(-1)
    bias = rng.normal(0, 0.3 * per_unit.std() + 1e-3, units).astype(f32)
    s_bias = f32(s_state * s_wt)
    bias_q = np.round(bias / s_bias).astype(np.int32)
    s_svdf = f32((per_unit.max() + np.abs(bias).max()) / 200)
    zp_svdf = -128 if activation == "RELU" else int(rng.integers(-30, 30))
    if output_zero_point is not None:
        zp_svdf = output_zero_point

    wd = rng.normal(0, 0.4, (classes, units)).astype(f32)
    s_wd = f32(np.abs(wd).max() / 127)
    wd_q = np.clip(np.round(wd / s_wd), -127, 127).astype(np.int8)
    s_bd = f32(s_svdf * s_wd)
    bd_q = np.round(rng.normal(0, 0.2, classes) / s_bd).astype(np.int32)
    s_fc = f32(s_svdf * 128 * np.abs(wd).sum(axis=1).max() / 127 / 4)
    zp_fc = int(rng.integers(-10, 10))

    buffers = [schema.BufferT()]
    tensors = []

    def tensor(name, shape, dtype, scale, zero_point, data=None, variable=False):
        t = schema.TensorT()
        t.name = name
        t.shape = list(shape)
        t.type = getattr(schema.TensorType, dtype.upper())
        t.buffer = 0
        if data is not None:
            b = schema.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).astype(
                data.dtype.newbyteorder("<")).tobytes(), np.uint8)
            buffers.append(b)
            t.buffer = len(buffers) - 1
        t.quantization = _quant(schema, scale, zero_point)
        t.isVariable = variable
        tensors.append(t)
        return len(tensors) - 1

    x = tensor("input", (1, input_size), "int8", s_in, zp_in)
    t_wf = tensor("svdf/weights_feature", wf_q.shape, "int8", s_wf, 0, wf_q)
    t_wt = tensor("svdf/weights_time", wt_q.shape, state_dtype, s_wt, 0, wt_q)
    t_b = tensor("svdf/bias", bias_q.shape, "int32", s_bias, 0, bias_q)
    t_state = tensor("svdf/activation_state", (1, memory * filters), state_dtype, s_state,
                     zp_state, variable=True)
    t_svdf = tensor("svdf/output", (1, units), "int8", s_svdf, zp_svdf)
    if head:
        t_wd = tensor("dense/weights", wd_q.shape, "int8", s_wd, 0, wd_q)
        t_bd = tensor("dense/bias", bd_q.shape, "int32", s_bd, 0, bd_q)
        t_fc = tensor("dense/output", (1, classes), "int8", s_fc, zp_fc)
        t_out = tensor("softmax/output", (1, classes), "int8", 1 / 256, -128)

    codes = []

    def opcode(kind, version):
        oc = schema.OperatorCodeT()
        oc.builtinCode = getattr(schema.BuiltinOperator, kind)
        oc.deprecatedBuiltinCode = min(oc.builtinCode,
                                       schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
        oc.version = version
        codes.append(oc)
        return len(codes) - 1

    def operator(code, inputs, outputs, options, options_type):
        o = schema.OperatorT()
        o.opcodeIndex = code
        o.inputs, o.outputs = inputs, outputs
        o.builtinOptionsType = getattr(schema.BuiltinOptions, options_type)
        o.builtinOptions = options
        return o

    svdf_options = schema.SVDFOptionsT()
    svdf_options.rank = rank
    svdf_options.fusedActivationFunction = getattr(schema.ActivationFunctionType, activation)
    fc_options = schema.FullyConnectedOptionsT()
    softmax_options = schema.SoftmaxOptionsT()
    softmax_options.beta = 1.0
    sub = schema.SubGraphT()
    sub.tensors = tensors
    sub.inputs, sub.outputs = [x], [t_out if head else t_svdf]
    sub.operators = [
        operator(opcode("SVDF", 3), [x, t_wf, t_wt, t_b, t_state], [t_svdf], svdf_options,
                 "SVDFOptions"),
    ]
    if head:
        sub.operators += [
            operator(opcode("FULLY_CONNECTED", 4), [t_svdf, t_wd, t_bd], [t_fc], fc_options,
                     "FullyConnectedOptions"),
            operator(opcode("SOFTMAX", 2), [t_fc], [t_out], softmax_options, "SoftmaxOptions"),
        ]
    sub.name = "main"
    model = schema.ModelT()
    model.version = 3
    model.operatorCodes = codes
    model.subgraphs = [sub]
    model.buffers = buffers
    model.description = "tinyml test: int8 SVDF keyword spotter"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


#: The shapes the tests run (svdf_model's arguments). Units are not a
#: multiple of 4; rank 1 and 2; memory from 1 (no history) to 10.
SHAPES = {
    "rank1": dict(input_size=20, units=6, rank=1, memory=5),
    "rank2_relu": dict(input_size=13, units=7, rank=2, memory=8, activation="RELU"),
    "wide": dict(input_size=40, units=17, rank=1, memory=10),
    "memory1": dict(input_size=8, units=5, rank=2, memory=1),
    # TFLM's 8-bit variant (keyword_scrambled_8bit): int8 time weights and state, whose zero
    # point is not 0.
    "int8_state": dict(input_size=23, units=11, rank=1, memory=4, state_dtype="int8"),
}


def frames(input_size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` int8 frames [1, input_size]: seeded random codes, with all-minimum and
    all-maximum runs among them (which drive the state to its limits)."""
    rng = np.random.default_rng(seed)
    result = [rng.integers(-128, 128, (1, input_size)).astype(np.int8) for _ in range(count)]
    for k in range(count // 3, min(count, count // 3 + 3)):
        result[k] = np.full((1, input_size), -128, np.int8)
    for k in range(2 * count // 3, min(count, 2 * count // 3 + 3)):
        result[k] = np.full((1, input_size), 127, np.int8)
    return result
