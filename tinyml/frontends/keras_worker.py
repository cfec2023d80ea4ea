"""The Keras frontend's worker process: validate, load and convert models to float TFLite.

Run as ``python -m tinyml.frontends.keras_worker PARENT_PID``; driven by
:mod:`tinyml.frontends.keras`. It lives in its own process because HDF5 and TensorFlow can
crash or hang on a corrupt file, and a crash must become a one-line error in the user's process,
not take it down. It serves one request per line on stdin and stays alive between requests, so
TensorFlow (seconds to import) is imported once per user process, not once per model.

Per request ``{"id", "path", "fmt", "out"}`` it answers on stdout with JSON lines:

- ``{"id", "stage": "validated"}`` once the cheap checks (:mod:`.keras_checks`) pass, before
  TensorFlow is touched (the parent gives the checks a shorter deadline than the whole load);
- ``{"id", "ok": true, "inputs", "outputs", "scopes"}`` with the flatbuffer written to ``out``,
  or ``{"id", "error": kind, "message", ...}``.

Conversion: the model is called inside a ``tf.function`` traced for a static batch-1 input,
and that concrete function goes through TFLiteConverter without optimizations, so weights stay
float and the ops keep Keras' semantics (BatchNormalization is folded into the preceding
convolution, as deployment wants). The function is frozen directly (no ``trackable_obj``):
handing the Keras model to the converter makes it trace every layer for a SavedModel first,
which takes four times longer. SELECT_TF_OPS is allowed so that a TensorFlow op without a TFLite
builtin still converts, as a Flex custom op the TFLite frontend then reports by op and layer.

Layer names: while tracing, each layer's ``call`` records the TensorFlow name scope it runs in
(``model/conv2d``, or ``functional_1/conv2d_1`` in Keras 3, which uniquifies scopes). The
converter names tensors after TensorFlow ops, so the parent maps those names back to layers by
scope prefix exactly, without guessing from suffixes.

Everything TensorFlow prints goes to the stderr file the parent provides (never the user's
terminal); stdout is kept for the protocol.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import sys

from tinyml.frontends.keras_checks import ModelFile, Rejection, check


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGKILL when the parent dies, so a stuck worker never outlives the CLI."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


def serve(parent: int) -> None:
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # library prints must not garble the protocol
    _die_with_parent(parent)

    def send(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    for line in requests:
        request = json.loads(line)
        rid = request["id"]
        try:
            info = check(request["path"], request["fmt"])
            send({"id": rid, "stage": "validated"})
            result = convert(request["path"], info, request["out"])
            send({"id": rid, "ok": True, **result})
        except Rejection as exc:
            send({"id": rid, "error": exc.kind, "message": exc.message, **exc.details})
        except Exception as exc:  # what the file made Keras or TensorFlow raise
            send({"id": rid, "error": "format",
                  "message": f"reading the model failed: {_one_line(exc)}"})
        finally:
            _reset()


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


# ---- TensorFlow --------------------------------------------------------------------------------


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)
    return tf


def _reset() -> None:
    """Forget the last model (Keras' global graph state) before the next request."""
    for name in ("keras", "tf_keras"):
        module = sys.modules.get(name)
        if module is not None:
            try:
                module.backend.clear_session()
            except Exception:
                pass


def convert(path: str, info: ModelFile, out: str) -> dict:
    tf = _tf()
    # ``model`` must stay referenced until the conversion has frozen its variables.
    model = _load_keras_saved_model(path) if info.loader == "saved_model" else \
        _load_keras(path, info)
    if model is None:
        model = _load_saved_model(tf, path)
        function, inputs, outputs, scopes = _trace_saved_model(tf, model)
    else:
        function, inputs, outputs, scopes = _trace_keras(tf, model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                           tf.lite.OpsSet.SELECT_TF_OPS]
    try:
        flatbuffer = converter.convert()
    except Exception as exc:
        raise Rejection("convert", _converter_message(exc, scopes)) from None
    with open(out, "wb") as f:
        f.write(flatbuffer)
    return {"inputs": inputs, "outputs": outputs, "scopes": scopes}


_UNKNOWN_CLASS = (re.compile(r"Unknown (?:layer|object)[^']*'([\w.]+)'"),
                  re.compile(r"Could not locate class '([\w.]+)'"),
                  re.compile(r"Could not deserialize class '([\w.]+)'"))


def _load_keras(path: str, info: ModelFile):
    try:
        if info.loader == "keras":
            import keras
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        import tf_keras
        return tf_keras.models.load_model(path, compile=False)
    except Exception as exc:
        text = str(exc)
        for pattern in _UNKNOWN_CLASS:
            match = pattern.search(text)
            if match:
                cls = match.group(1).split(".")[-1]
                layer = next((name for c, name in info.layers if c.split(">")[-1] == cls), cls)
                raise Rejection("unsupported", "a custom Keras class; its Python code is not in "
                                "the model file", op=cls, layer=layer) from None
        library = "Keras 3" if info.loader == "keras" else "tf_keras (Keras 2)"
        version = f" (saved by Keras {info.keras_version})" if info.keras_version else ""
        raise Rejection("format", f"{library} cannot load the model{version}: "
                                  f"{_one_line(exc)}") from None


def _load_keras_saved_model(path: str):
    """A SavedModel written by Keras 2 (``keras_metadata.pb``) is reloaded as a Keras model,
    which keeps its layer names; anything else is read as a plain TensorFlow SavedModel."""
    if not os.path.exists(os.path.join(path, "keras_metadata.pb")):
        return None
    try:
        import tf_keras
        model = tf_keras.models.load_model(path, compile=False)
    except Exception:
        return None
    return model if getattr(model, "inputs", None) else None  # a revived subclassed model


def _static_spec(tf, name: str, shape, dtype):
    """The TensorSpec of a batch-1 input: a None batch becomes 1, any other None is an error."""
    if shape is None or (hasattr(shape, "rank") and shape.rank is None):
        raise Rejection("shape", f"input '{name}' has an unknown rank: unresolvable dynamic "
                                 f"shape")
    dims = [None if d is None else int(d) for d in shape]
    if any(d is None for d in dims[1:]):
        raise Rejection("shape", f"input '{name}' has unresolvable dynamic shape {dims}: only "
                                 f"the batch dimension may be unknown, give the model a fixed "
                                 f"input size")
    if dims and dims[0] is None:
        dims[0] = 1
    return tf.TensorSpec(dims, dtype)


def _trace_keras(tf, model):
    """Trace ``model`` for batch-1 inputs; also return input/output names and layer scopes."""
    try:
        tensors = list(model.inputs)
    except Exception:
        tensors = None
    if not tensors:
        raise Rejection("shape", "the model has no defined inputs (a subclassed or unbuilt "
                                 "model): build it with keras.Input before saving")
    names = list(getattr(model, "input_names", None) or [])
    if len(names) != len(tensors):
        names = [str(getattr(t, "name", f"input_{i}")).split(":")[0]
                 for i, t in enumerate(tensors)]
    specs = [_static_spec(tf, name, t.shape, tf.as_dtype(t.dtype))
             for name, t in zip(names, tensors)]
    scopes = _record_scopes(tf, model)

    def forward(*xs):
        return model(xs[0] if len(xs) == 1 else list(xs), training=False)

    try:
        function = tf.function(forward).get_concrete_function(*specs)
    except Rejection:
        raise
    except Exception as exc:
        raise Rejection("convert", f"calling the model on a batch-1 input fails: "
                                   f"{_one_line(exc)}") from None
    outputs = list(getattr(model, "output_names", None) or [])
    if len(outputs) != len(function.outputs):
        outputs = []
    return function, names, outputs, scopes


def _record_scopes(tf, model) -> list[list[str]]:
    """Wrap every layer's ``call`` to record, in call order, the name scope it runs in and its
    layer path (``outer/inner/conv`` for nested models)."""
    scopes: list[list[str]] = []
    known: dict[str, str] = {}
    try:
        layers = list(model._flatten_layers(include_self=False))
    except Exception:
        layers = list(getattr(model, "layers", []))

    def wrap(layer):
        original = layer.call

        def call(*args, **kwargs):
            scope = tf.get_current_name_scope()
            if scope and scope not in known:
                parents = [s for s in known if scope.startswith(s + "/")]
                path = layer.name
                if parents:
                    path = known[max(parents, key=len)] + "/" + layer.name
                known[scope] = path
                scopes.append([scope, path])
            return original(*args, **kwargs)

        try:
            object.__setattr__(layer, "call", call)
        except Exception:
            pass  # the layer keeps TensorFlow's names

    for layer in layers:
        wrap(layer)
    return scopes


def _load_saved_model(tf, path: str):
    try:
        return tf.saved_model.load(path)
    except Exception as exc:
        raise Rejection("format", f"TensorFlow cannot load the SavedModel: "
                                  f"{_one_line(exc)}") from None


def _trace_saved_model(tf, loaded):
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if not signatures:
        raise Rejection("format", "the SavedModel has no serving signature")
    signature = signatures.get("serving_default") or signatures[sorted(signatures)[0]]
    _, specs = signature.structured_input_signature
    names = list(getattr(signature, "_arg_keywords", None) or sorted(specs))
    if set(names) != set(specs):
        names = sorted(specs)
    static = [_static_spec(tf, name, specs[name].shape, specs[name].dtype) for name in names]

    def forward(*xs):
        return signature(**dict(zip(names, xs)))

    try:
        function = tf.function(forward).get_concrete_function(*static)
    except Exception as exc:
        raise Rejection("convert", f"calling the SavedModel on a batch-1 input fails: "
                                   f"{_one_line(exc)}") from None
    structured = signature.structured_outputs
    outputs = sorted(structured) if isinstance(structured, dict) else []
    if len(outputs) != len(function.outputs):
        outputs = []
    return function, names, outputs, _graph_scopes(signature)


def _graph_scopes(signature) -> list[list[str]]:
    """Scopes of a SavedModel without Keras objects: the ``model/layer`` prefixes of its op
    names, in creation order, so that a fused op is named after its first op (the conv, not
    the ReLU fused into it). They are TensorFlow's names; no Keras names are known here."""
    try:
        graph_def = signature.graph.as_graph_def()
    except Exception:
        return []
    scopes: dict[str, None] = {}
    nodes = [n.name for f in graph_def.library.function for n in f.node_def]
    for name in nodes + [n.name for n in graph_def.node]:
        parts = name.split("/")
        if len(parts) >= 3:
            scopes.setdefault("/".join(parts[:2]))
    return [[scope, scope] for scope in scopes]


def _converter_message(exc: BaseException, scopes: list[list[str]]) -> str:
    """The converter's error in one line, naming the layer when its message mentions one."""
    text = str(exc)
    errors = re.findall(r"error: ([^\n]+)", text)
    detail = errors[0].strip() if errors else _one_line(exc)
    layer = ""
    for scope, path in sorted(scopes, key=lambda s: -len(s[0])):
        if scope + "/" in text:
            layer = path
            break
    where = f" in layer '{layer}'" if layer else ""
    return f"TensorFlow cannot convert the model to TFLite{where}: {detail}"


if __name__ == "__main__":
    serve(int(sys.argv[1]))
