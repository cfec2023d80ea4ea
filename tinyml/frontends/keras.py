"""Keras frontend: ``.keras`` archives, ``.h5`` files (Keras 3 and legacy Keras 2) and
TensorFlow SavedModel directories.

Keras layer semantics are not re-implemented here. The model is loaded by the library that
wrote it (Keras 3, or ``tf_keras`` for Keras 2 files, which Keras 3 refuses; ``tf.saved_model``
for SavedModels), converted by TensorFlow's own TFLiteConverter to a *float* TFLite flatbuffer
for a batch-1 input, and that flatbuffer is read by the TFLite frontend. The converter folds
BatchNormalization into convolutions and fuses activations, which is what a microcontroller
deployment wants, and keeps float weights, so the graph computes what the Keras model does.

All of that runs in a worker process (:mod:`.keras_worker`): HDF5 and TensorFlow can crash or
hang on a corrupt file, and the user's process must survive that with a one-line error. The
worker first checks the file cheaply (:mod:`.keras_checks`, no TensorFlow) so that most corrupt
files are rejected in a fraction of a second; a file that passes those checks gets a long
deadline (``TINYML_KERAS_TIMEOUT`` seconds for the whole load, default 100). The worker
stays alive between loads, so a process that reads many models imports TensorFlow once.

Names: ops are named after the Keras layers they come from (the conv a BatchNormalization and a
ReLU were folded into gives its name to the fused op), tensors after their producing op, graph
inputs after the Keras inputs.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tinyml.errors import (ModelFormatError, ShapeError, TinymlError, UnsupportedOpError)
from tinyml.ir import Graph

#: Default limit in seconds for one load, checks, TensorFlow import and conversion included
#: (``TINYML_KERAS_TIMEOUT`` overrides it). Microcontroller-sized models take a few seconds.
LOAD_TIMEOUT_S = 100.0
#: Seconds within which the worker must have started and checked the file (no TensorFlow).
CHECK_TIMEOUT_S = 30.0

_FORMATS = ("keras", "h5", "savedmodel")


@dataclass
class KerasConversion:
    """A Keras model converted to a float TFLite flatbuffer, with what naming needs."""

    tflite: bytes
    #: Keras input names and output layer names, in the flatbuffer's order (may be empty).
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    #: (TensorFlow name scope, Keras layer path) in the order the layers ran.
    scopes: list[tuple[str, str]] = field(default_factory=list)


def load_keras(path: str | Path) -> Graph:
    """Read a .keras, .h5 or SavedModel into a finalized float graph with Keras layer names."""
    path = Path(path)
    return graph_from_conversion(convert_keras(path), path.stem)


def graph_from_conversion(conversion: KerasConversion, name: str = "model") -> Graph:
    """The graph of a converted model: the TFLite frontend's, renamed after Keras."""
    from tinyml.frontends.tflite import load_tflite_bytes

    try:
        graph = load_tflite_bytes(conversion.tflite, name=name)
    except UnsupportedOpError as exc:
        raise _renamed(exc, conversion) from None
    _apply_keras_names(graph, conversion)
    return graph


def convert_keras(path: str | Path) -> KerasConversion:
    """Convert a Keras model file to a float TFLite flatbuffer (in the worker process)."""
    from tinyml.frontends.formats import detect_format

    path = Path(path)
    fmt = detect_format(path)
    if fmt not in _FORMATS:
        raise ModelFormatError(f"{path}: not a Keras model or SavedModel (it is {fmt})")
    with tempfile.TemporaryDirectory(prefix="tinyml-keras-") as tmp:
        out = Path(tmp) / "model.tflite"
        reply = _request(path, fmt, out)
        if "error" in reply:
            raise _error(path, reply)
        return KerasConversion(out.read_bytes(), list(reply.get("inputs") or []),
                               list(reply.get("outputs") or []),
                               [(s, p) for s, p in reply.get("scopes") or []])


def _error(path: Path, reply: dict) -> TinymlError:
    kind, message = reply["error"], reply.get("message", "")
    if kind == "unsupported":
        return UnsupportedOpError(reply.get("op", "?"), reply.get("layer", "?"), detail=message)
    if kind == "shape":
        return ShapeError(f"{path}: {message}")
    if kind == "convert":
        return TinymlError(f"{path}: {message}")
    return ModelFormatError(f"{path}: {message}")


# ---- the worker process ------------------------------------------------------------------------


class _Worker:
    """One worker process and its pipes; requests are served one at a time."""

    def __init__(self):
        import tinyml

        root = str(Path(tinyml.__file__).resolve().parents[1])
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
                   PYTHONWARNINGS="ignore", GRPC_VERBOSITY="ERROR",
                   PYTHONPATH=os.pathsep.join(
                       p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
        self.log = tempfile.TemporaryFile(prefix="tinyml-keras-worker-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinyml.frontends.keras_worker", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
            start_new_session=True)  # Ctrl-C reaches the CLI, which then stops the worker
        self.buffer = b""
        self.next_id = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, path: Path, fmt: str, out: Path) -> dict:
        self.next_id += 1
        rid = self.next_id
        line = json.dumps({"id": rid, "path": str(path.resolve()), "fmt": fmt,
                           "out": str(out)}) + "\n"
        stage = "checking the file"
        limit = _load_timeout()
        final = time.monotonic() + limit
        deadline = min(final, time.monotonic() + CHECK_TIMEOUT_S)
        try:
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except OSError:
            return self._died(path, stage)
        while True:
            message = self._read(deadline)
            if message is None:
                return self._died(path, stage)
            if message == "timeout":
                self.close()
                seconds = min(limit, CHECK_TIMEOUT_S) if stage.startswith("checking") else limit
                raise ModelFormatError(
                    f"{path}: reading the model did not finish within {seconds:g} s while "
                    f"{stage}; the file is probably corrupt (TINYML_KERAS_TIMEOUT sets the "
                    f"limit)")
            if message.get("id") != rid:
                continue
            if message.get("stage") == "validated":
                stage = "loading and converting it with TensorFlow"
                deadline = final
                continue
            return message

    def _read(self, deadline: float):
        """The next JSON message; None at end of file; "timeout" past the deadline."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def _died(self, path: Path, stage: str) -> dict:
        try:
            status = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            status = None
        tail = self._log_tail()
        self.close()
        if status is not None and status < 0:
            try:
                name = signal.Signals(-status).name
            except ValueError:
                name = f"signal {-status}"
            raise ModelFormatError(f"{path}: the model reader crashed ({name}) while {stage}; "
                                   f"the file is corrupt or not supported")
        if "Traceback" in tail or status is None:
            # Python failed in the worker's own code (or it hangs after closing its output):
            # a tinyml bug, not the file's fault.
            raise RuntimeError(f"the Keras frontend's worker process failed (status {status}) "
                               f"while {stage}: {tail}")
        raise ModelFormatError(f"{path}: the model reader exited with status {status} while "
                               f"{stage}; the file is corrupt or not supported")

    def _log_tail(self) -> str:
        try:
            self.log.seek(0, os.SEEK_END)
            size = self.log.tell()
            self.log.seek(max(0, size - 4000))
            lines = self.log.read().decode("utf-8", "replace").strip().splitlines()
            return " | ".join(lines[-5:])
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.log.close()


_lock = threading.Lock()
_worker: _Worker | None = None


def _load_timeout() -> float:
    try:
        seconds = float(os.environ.get("TINYML_KERAS_TIMEOUT", LOAD_TIMEOUT_S))
    except ValueError:
        return LOAD_TIMEOUT_S
    return seconds if seconds > 0 else LOAD_TIMEOUT_S


def _request(path: Path, fmt: str, out: Path) -> dict:
    global _worker
    with _lock:
        if _worker is None or not _worker.alive():
            if _worker is not None:
                _worker.close()
            _worker = _Worker()
        worker = _worker
        try:
            return worker.request(path, fmt, out)
        except BaseException:
            # A timeout, a crash or an interrupt: the worker's state is unknown, start afresh.
            worker.close()
            _worker = None
            raise


@atexit.register
def _stop_worker() -> None:
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


# ---- Keras names -------------------------------------------------------------------------------


def _layer_of(tf_name: str, scopes: list[tuple[str, str]]) -> str | None:
    """The Keras layer a converter tensor name comes from.

    A fused op's name joins the TensorFlow names of everything fused with ``;``; each part is
    matched to the layer whose recorded scope is its longest prefix, and the layer that ran
    first wins (a conv with its folded batch norm and ReLU is named after the conv).
    """
    best = None
    for part in tf_name.split(";"):
        hit = None
        for order, (scope, _) in enumerate(scopes):
            if (part == scope or part.startswith(scope + "/")) and \
                    (hit is None or len(scope) > len(scopes[hit][0])):
                hit = order
        if hit is not None and (best is None or hit < best):
            best = hit
    return scopes[best][1] if best is not None else None


def _renamed(exc: UnsupportedOpError, conversion: KerasConversion) -> UnsupportedOpError:
    """``exc`` naming the Keras layer instead of the TensorFlow op name."""
    layer = _layer_of(exc.layer, conversion.scopes) or \
        _output_layers(conversion).get(exc.layer)
    if layer is None:
        return exc
    exc.args = (str(exc).replace(f"in layer '{exc.layer}'", f"in layer '{layer}'", 1),)
    exc.layer = layer
    return exc


def _output_layers(conversion: KerasConversion) -> dict[str, str]:
    """Keras output layer by TFLite output tensor name (the converter calls graph outputs
    ``Identity``, ``Identity_1``..., losing the layer's scope)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(conversion.tflite), 0)
        sub = model.subgraphs[0]
        names = [sub.tensors[int(i)].name.decode("utf-8", "replace") for i in sub.outputs]
    except Exception:
        return {}
    if len(names) != len(conversion.outputs):
        return {}
    return dict(zip(names, conversion.outputs))


_CONSTANT_ROLES = {"CONV_2D": (None, "filter", "bias"),
                   "DEPTHWISE_CONV_2D": (None, "filter", "bias"),
                   "FULLY_CONNECTED": (None, "weights", "bias")}


def _apply_keras_names(graph: Graph, conversion: KerasConversion) -> None:
    """Rename ops and tensors of ``graph`` (fresh from the TFLite frontend) after Keras."""
    scopes = conversion.scopes
    output_layers = dict(zip(graph.outputs, conversion.outputs)) \
        if len(conversion.outputs) == len(graph.outputs) else {}

    used_ops: set[str] = set()
    for op in graph.ops:
        first = op.outputs[0]
        base = _layer_of(first, scopes) or output_layers.get(first) or op.name
        name = base
        if name in used_ops:  # a second op of one layer: conv2d/reshape, dense/logistic
            name = f"{base}/{op.kind.lower()}"
        name = _unique(name, used_ops)
        used_ops.add(name)
        op.name = name

    wanted: dict[str, str] = {}
    if len(conversion.inputs) == len(graph.inputs):
        wanted.update(zip(graph.inputs, conversion.inputs))
    for op in graph.ops:
        for k, tensor in enumerate(op.outputs):
            wanted.setdefault(tensor, op.name if k == 0 else f"{op.name}:{k}")
    for op in graph.ops:
        roles = _CONSTANT_ROLES.get(op.kind, ())
        for i, tensor in enumerate(op.inputs):
            if tensor and graph.tensors[tensor].is_constant and tensor not in wanted:
                role = roles[i] if i < len(roles) and roles[i] else f"input{i}"
                wanted[tensor] = f"{op.name}/{role}"

    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for old in list(wanted) + [n for n in graph.tensors if n not in wanted]:
        new = _unique(wanted.get(old, old), taken)
        taken.add(new)
        mapping[old] = new
    tensors = {}
    for old, tensor in graph.tensors.items():
        tensor.name = mapping[old]
        tensors[tensor.name] = tensor
    graph.tensors = tensors
    for op in graph.ops:
        op.inputs = [mapping[n] if n else "" for n in op.inputs]
        op.outputs = [mapping[n] for n in op.outputs]
    graph.inputs = [mapping[n] for n in graph.inputs]
    graph.outputs = [mapping[n] for n in graph.outputs]
    graph.validate()


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    i = 2
    while f"{name}_{i}" in taken:
        i += 1
    return f"{name}_{i}"
