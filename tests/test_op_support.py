"""``tinyml ops``: the support matrix agrees with what the compiler really does."""

from __future__ import annotations

import json
import subprocess
import sys

from tinyml.codegen.lowering import lowering_for
from tinyml.frontends.tflite_ops import TFLITE_IMPORTERS
from tinyml.op_support import TFLM_BUILTINS, onnx_matrix, summary, tflite_matrix


def test_tflm_builtins_are_real_builtins():
    from ai_edge_litert import schema_py_generated as schema
    assert len(TFLM_BUILTINS) == len(set(TFLM_BUILTINS)) == 100
    assert set(TFLM_BUILTINS) <= set(vars(schema.BuiltinOperator))


def test_status_follows_the_registries():
    rows = {r["op"]: r for r in tflite_matrix()}
    assert set(TFLM_BUILTINS) <= set(rows)
    for builtin, row in rows.items():
        importer = TFLITE_IMPORTERS.get(builtin)
        becomes = importer.becomes if importer is not None else \
            builtin if builtin in ("READ_VARIABLE", "ASSIGN_VARIABLE") else None
        compiled = becomes is not None and lowering_for(becomes) is not None
        assert (row["status"] == "supported") == compiled, row
        if row["status"] == "unsupported":
            assert row["reason"], row
    assert rows["CONV_2D"]["dsp_kernel"] and rows["CONV_2D"]["patchable"]
    assert not rows["SOFTMAX"]["dsp_kernel"] and not rows["SOFTMAX"]["patchable"]
    assert rows["SQUEEZE"]["ir_op"] == "RESHAPE"
    assert "control flow" in rows["WHILE"]["reason"]
    assert rows["SHAPE"]["status"] == "constant"
    # Streaming state (tinyml.frontends.tflite_variables).
    assert rows["READ_VARIABLE"]["status"] == rows["ASSIGN_VARIABLE"]["status"] == "supported"
    assert rows["VAR_HANDLE"]["status"] == rows["CALL_ONCE"]["status"] == "folded"


def test_onnx_rows_cover_the_default_domain():
    import onnx.defs
    rows = {r["op"]: r for r in onnx_matrix()}
    assert {s.name for s in onnx.defs.get_all_schemas() if s.domain == ""} <= set(rows)
    assert rows["Conv"]["status"] == "supported"
    assert "control flow" in rows["Loop"]["reason"]


def test_cli_json_and_table():
    result = subprocess.run([sys.executable, "-m", "tinyml.cli", "ops", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["tflm_builtins"] == summary(tflite_matrix())
    assert report["summary"]["tflm_builtins"]["total"] == 100
    table = subprocess.run([sys.executable, "-m", "tinyml.cli", "ops"], capture_output=True,
                           text=True, timeout=120)
    assert table.returncode == 0 and "TFLM builtins:" in table.stdout
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in table.stdout
