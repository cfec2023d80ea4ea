"""``tinyml ops``: which operators tinyml compiles, so a user knows before training.

Two lists: every builtin TensorFlow Lite Micro's op resolver can register (the runtime users
compare against), and every ONNX operator of the default domain. Each row says whether tinyml
imports it and what it becomes: compiled to int8 C (and, for those, whether a Cortex-M DSP
kernel exists and whether it can run inside a patch stage), evaluated at compile time (shape
computations), or folded into a neighbour; otherwise the reason it is not supported.

The status is derived from the registries (TFLite importers, lowerings and their declared C
kernels, ONNX converters), never written by hand; only the reasons for what is missing are.
"""

from __future__ import annotations

from tinyml.paths import KERNELS_DIR

#: The builtins of TFLM's MicroMutableOpResolver (tensorflow/tflite-micro
#: tensorflow/lite/micro/micro_mutable_op_resolver.h at 90b983c2, 2026-08-20; CUSTOM aside).
TFLM_BUILTINS = (
    "ABS", "ADD", "ADD_N", "ARG_MAX", "ARG_MIN", "ASSIGN_VARIABLE", "AVERAGE_POOL_2D",
    "BATCH_MATMUL", "BATCH_TO_SPACE_ND", "BROADCAST_ARGS", "BROADCAST_TO", "CALL_ONCE", "CAST",
    "CEIL", "CONCATENATION", "CONV_2D", "COS", "CUMSUM", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "DIV", "DYNAMIC_UPDATE_SLICE", "ELU", "EMBEDDING_LOOKUP", "EQUAL", "EXP",
    "EXPAND_DIMS", "FILL", "FLOOR", "FLOOR_DIV", "FLOOR_MOD", "FULLY_CONNECTED", "GATHER",
    "GATHER_ND", "GREATER", "GREATER_EQUAL", "HARD_SWISH", "IF", "L2_NORMALIZATION",
    "L2_POOL_2D", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG", "LOGICAL_AND", "LOGICAL_NOT",
    "LOGICAL_OR", "LOGISTIC", "LOG_SOFTMAX", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM",
    "MIRROR_PAD", "MUL", "NEG", "NOT_EQUAL", "PACK", "PAD", "PADV2", "PRELU", "QUANTIZE",
    "READ_VARIABLE", "REDUCE_ALL", "REDUCE_MAX", "REDUCE_MIN", "RELU", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2", "ROUND", "RSQRT", "SELECT_V2",
    "SHAPE", "SIN", "SLICE", "SOFTMAX", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "SPLIT",
    "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM",
    "SVDF", "TANH", "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNPACK",
    "VAR_HANDLE", "WHILE", "ZEROS_LIKE",
)

_FLOAT_ONLY = "TFLM runs it in float32 only, so an int8 model has none"
#: Why a builtin is not supported, where there is more to say than "not implemented yet".
TFLITE_REASONS = {
    "IF": "control flow: tinyml compiles one static graph",
    "WHILE": "control flow: tinyml compiles one static graph",
    "BROADCAST_ARGS": "a shape computation on int32/int64 that tinyml does not evaluate yet",
    # Float only in TFLM, and two inputs: no 256-entry table stands for them.
    **{k: _FLOAT_ONLY for k in ("FLOOR_DIV", "FLOOR_MOD", "L2_POOL_2D")},
    "DIV": ("TFLM's int8 DIV shifts by 32 bits or more on some inputs (undefined in C, so "
            "results differ between hosts): there is no one bit-exact answer to match"),
    "ADD_N": "the converter keeps ADD_N in float32, so there is no int8 model to verify",
}
#: ONNX operators that can never be one static int8 graph, by family.
ONNX_REASONS = {
    **{k: "control flow: tinyml compiles one static graph" for k in ("If", "Loop", "Scan")},
    **{k: "sequence values are not tensors of a static graph" for k in (
        "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
        "SequenceLength", "SequenceMap", "SplitToSequence", "ConcatFromSequence")},
    **{k: "random numbers have no bit-exact reference" for k in (
        "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
        "Bernoulli", "Dropout")},
    **{k: "strings are not numeric tensors" for k in (
        "StringConcat", "StringNormalizer", "StringSplit", "RegexFullMatch")},
}
NOT_YET = "not implemented in tinyml yet"
#: Imported ops that never run as themselves, and what they become.
FOLDED = {
    "BATCH_NORM": "folded into the convolution before it",
    **{k: ("float32 in TFLM; between a DEQUANTIZE and a QUANTIZE (the converter's float "
           "island) it becomes an int8 lookup table")
       for k in ("NEG", "SQUARE", "SIN", "COS", "FLOOR", "CEIL", "ROUND")},
}
#: What a supported builtin's row adds: the variants it compiles, where not all do.
VARIANTS = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (
        "the converter's full-int8 LSTM only (int8 input and output, int16 cell state; no "
        "peephole, projection or layer normalization, as TFLM's integer LSTM); its state is "
        "static storage (state_bytes) kept between tinyml_invoke() calls"),
}
#: The resource-variable builtins (streaming state, tinyml.frontends.tflite_variables) that
#: leave no op of their own, and what becomes of them.
VARIABLE_FOLDED = {
    "VAR_HANDLE": ("names a variable; resolved at import: each variable is static storage "
                   "outside the arena (state_bytes), kept between tinyml_invoke() calls"),
    "CALL_ONCE": ("its initializer subgraph (constant assignments only) is evaluated at "
                  "compile time: the initial values tinyml_reset() restores"),
}


def _dsp_kernels() -> set[str]:
    """C kernels with a Cortex-M DSP version (firmware/kernels/cortex_m, same names)."""
    import re
    names: set[str] = set()
    for path in (KERNELS_DIR / "cortex_m").glob("*.c"):
        names |= set(re.findall(r"^void\s+(tinyml_\w+)\s*\(", path.read_text(), flags=re.M))
    return names


def _ir_status(kind: str, dsp: set[str]) -> dict:
    """What tinyml does with IR op ``kind``."""
    from tinyml.codegen.lowering import lowering_for
    from tinyml.ir.ops import OP_SPECS
    lowering = lowering_for(kind)
    if lowering is not None:
        return {"status": "supported", "ir_op": kind, "dtypes": ["int8"],
                "dsp_kernel": any(k in dsp for k in lowering.kernels),
                "patchable": any(g is not None for g in lowering.kernels.values())}
    spec = OP_SPECS.get(kind)
    if spec is not None and spec.evaluate is not None:
        return {"status": "constant", "ir_op": kind,
                "reason": "evaluated at compile time when its inputs are constant (shape "
                          "computations); not compiled on activations"}
    if kind in FOLDED:
        return {"status": "folded", "ir_op": kind, "reason": FOLDED[kind]}
    return {"status": "unsupported", "ir_op": kind, "reason": "imported, but has no C kernel"}


def tflite_matrix() -> list[dict]:
    """One row per TFLM builtin (and per further builtin tinyml imports)."""
    from tinyml.frontends.tflite_ops import TFLITE_IMPORTERS
    from tinyml.frontends.tflite_variables import VARIABLE_BUILTINS
    dsp = _dsp_kernels()
    rows = []
    for builtin in sorted(set(TFLM_BUILTINS) | set(TFLITE_IMPORTERS)):
        importer = TFLITE_IMPORTERS.get(builtin)
        row = {"op": builtin, "in_tflm": builtin in TFLM_BUILTINS}
        if builtin in VARIABLE_FOLDED:
            row.update(status="folded", ir_op=None, reason=VARIABLE_FOLDED[builtin])
        elif builtin in VARIABLE_BUILTINS:  # READ_VARIABLE, ASSIGN_VARIABLE: IR ops
            row.update(_ir_status(builtin, dsp))
        elif importer is None:
            row.update(status="unsupported", reason=TFLITE_REASONS.get(builtin, NOT_YET))
        else:
            row.update(_ir_status(importer.becomes, dsp))
            if builtin in VARIANTS:
                row["variants"] = VARIANTS[builtin]
        rows.append(row)
    return rows


def onnx_matrix() -> list[dict]:
    """One row per operator of ONNX's default domain (latest opset): converted or why not."""
    import onnx.defs

    from tinyml.frontends.onnx import CONVERTERS  # with the recurrent ops' registrations
    from tinyml.frontends.onnx_recurrent import GATES
    names = {s.name for s in onnx.defs.get_all_schemas() if s.domain == ""}
    rows = []
    for name in sorted(names | set(CONVERTERS)):
        if name in CONVERTERS:
            # Recurrent ops run in float between a QDQ graph's DEQUANTIZE and QUANTIZE (no
            # QDQ parameters for their gates): int8 comes from tinyml's quantizer.
            dtypes = ["float32"] if name in GATES else ["float32", "qdq-int8"]
            rows.append({"op": name, "status": "supported", "dtypes": dtypes})
        else:
            rows.append({"op": name, "status": "unsupported",
                         "reason": ONNX_REASONS.get(name, NOT_YET)})
    return rows


def summary(rows: list[dict], key: str = "in_tflm") -> dict:
    """Counts of a matrix: supported (compiled), constant/folded, unsupported."""
    considered = [r for r in rows if r.get(key, True)]
    counts = {"total": len(considered)}
    for status in ("supported", "constant", "folded", "unsupported"):
        counts[status] = sum(r["status"] == status for r in considered)
    return counts


# ---- the command -------------------------------------------------------------------------------

def add_ops_parser(sub) -> None:
    p = sub.add_parser("ops", help="the operator support matrix: TFLM's builtins and ONNX's "
                                   "operators, compiled or why not")
    p.add_argument("--onnx", action="store_true", help="list ONNX operators instead of TFLite "
                                                       "builtins")
    p.add_argument("--json", action="store_true",
                   help='print {"tflite": [...], "onnx": [...], "summary": {...}}')
    p.set_defaults(run=run_ops)


def _details(row: dict) -> str:
    if row["status"] != "supported":
        return row.get("reason", "")
    extras = ["+".join(row["dtypes"])]
    if row.get("dsp_kernel"):
        extras.append("Cortex-M DSP kernel")
    if row.get("patchable"):
        extras.append("patchable")
    if row.get("ir_op") not in (None, row["op"]):
        extras.append(f"as {row['ir_op']}")
    if row.get("variants"):
        extras.append(row["variants"])
    return ", ".join(extras)


def run_ops(args) -> int:
    import json
    import sys

    tflite, onnx_rows = tflite_matrix(), onnx_matrix()
    counts = {"tflm_builtins": summary(tflite), "onnx_ops": summary(onnx_rows, key="")}
    if args.json:
        sys.stdout.write(json.dumps({"tflite": tflite, "onnx": onnx_rows, "summary": counts},
                                    indent=2) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows, key = (onnx_rows, "onnx_ops") if args.onnx else (tflite, "tflm_builtins")
    c = counts[key]
    title = (f"{'ONNX operators' if args.onnx else 'TFLM builtins'}: {c['supported']} compiled"
             f", {c['constant'] + c['folded']} evaluated or folded at compile time, "
             f"{c['unsupported']} not supported, of {c['total']}")
    table = Table(title=Text(title), title_justify="left")
    for column in ("op", "status", "details"):
        table.add_column(column)
    for row in rows:
        table.add_row(Text(row["op"]), Text(row["status"]), Text(_details(row)))
    console = Console(file=sys.stdout)
    if not console.is_terminal:
        natural = Console(file=sys.stdout, width=400).measure(table).maximum
        console = Console(file=sys.stdout, width=min(max(natural, 80), 400))
    console.print(table)
    return 0
