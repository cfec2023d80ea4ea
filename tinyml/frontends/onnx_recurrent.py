"""ONNX's recurrent layers (LSTM, GRU, RNN), unrolled into the primitive ops tinyml compiles.

Why unrolled: a sequence model on a microcontroller sees a short, fixed number of steps (the
frames of a keyword window, a sensor window), and the TFLite converter writes Keras' unrolled
recurrent layers the same way: per time step FULLY_CONNECTED, ADD, LOGISTIC, TANH, MUL and SUB,
ops with int8 kernels bit-exact with TFLM. The ONNX node becomes exactly that, so the float
import is checked against onnxruntime and tinyml's quantizer calibrates every gate of every
step like any other op. Two choices serve the int8 graph: each gate has its own
FULLY_CONNECTED (its own scale, rather than one 4H-wide product split afterwards), and the
input's product ``X W^T + Wb`` of each gate is one FULLY_CONNECTED over all steps, sliced per
step, so its range is calibrated on every step at once (per-step products calibrated apart
clipped unseen inputs: 21 dB instead of 39 on one step of the GRU zoo model) and its weights
are read once.

The ONNX operator spec (gate order in W, R and B: LSTM i, o, f, c; GRU z, r, h; RNN one gate),
with f, g, h the ``activations`` (defaults Sigmoid, Tanh, Tanh), ``(.)`` the element-wise
product and ``Wb``/``Rb`` the two halves of B:

- RNN:  ``H = f(X W^T + H' R^T + Wb + Rb)``
- GRU:  ``z = f(X Wz^T + H' Rz^T + Wbz + Rbz)``, ``r`` likewise,
  ``h~ = g(X Wh^T + (r (.) H') Rh^T + Rbh + Wbh)`` (``linear_before_reset`` 0) or
  ``h~ = g(X Wh^T + r (.) (H' Rh^T + Rbh) + Wbh)`` (not 0, Keras' ``reset_after``),
  ``H = (1 - z) (.) h~ + z (.) H'``
- LSTM: ``i = f(X Wi^T + H' Ri^T + Pi (.) C' + Wbi + Rbi)``, ``f`` likewise with Pf,
  ``c~ = g(X Wc^T + H' Rc^T + Wbc + Rbc)``, ``C = f (.) C' + i (.) c~``,
  ``o = f(X Wo^T + H' Ro^T + Po (.) C + Wbo + Rbo)``, ``H = o (.) h(C)``

where ``H'``, ``C'`` are the previous step's state (``initial_h``, ``initial_c`` or zeros at
the first step). A zero initial state drops the first step's recurrent products, as the
converter's constant folding does. ``direction`` forward, reverse and bidirectional are
supported; ``sequence_lens`` only when absent or equal to the sequence length everywhere,
``layout`` 0, no ``clip``, no ``input_forget``, and activations Sigmoid, Tanh or Relu without
alpha/beta: anything else is a one-line error naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml.frontends import layout
from tinyml.frontends.onnx_ops import _activation_input, _fail, _inputs, _malformed, converter
from tinyml.frontends.onnx_values import Builder
from tinyml.ir import ops as irops

#: ONNX activation name (lower case) -> IR op.
ACTIVATIONS = {"sigmoid": "LOGISTIC", "tanh": "TANH", "relu": "RELU"}
#: Gates in the order of W, R and B, and the default activations, per op.
GATES = {"LSTM": "iofc", "GRU": "zrh", "RNN": "i"}
DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"),
                       "RNN": ("Tanh",)}


@dataclass
class _Layer:
    """One direction's weights, split per gate: ``w[g]`` [H, I], ``r[g]`` [H, H], biases
    ``wb[g]``/``rb[g]`` [H], peepholes ``p[g]`` [H] (LSTM's i, o, f) or None."""

    w: dict[str, np.ndarray]
    r: dict[str, np.ndarray]
    wb: dict[str, np.ndarray]
    rb: dict[str, np.ndarray]
    p: dict[str, np.ndarray | None]
    direction: int


class _Unroller:
    """Emits the ops of one ONNX recurrent node."""

    def __init__(self, b: Builder, node, attrs: dict, x_ir: str, batch: int, hidden: int):
        self.b, self.node, self.kind = b, node, node.op_type
        self.base = node.output[0] or node.name or node.op_type
        self.acts = _activations(b, self.kind, attrs)
        self.lbr = bool(int(attrs.get("linear_before_reset", 0)))
        self.x_ir, self.batch, self.hidden = x_ir, batch, hidden
        self.products: dict[tuple[int, str], str] = {}

    # ---- emission helpers -------------------------------------------------------------------

    def const(self, what: str, data: np.ndarray) -> str:
        return self.b.new_const(f"{self.base}/{what}", np.asarray(data, np.float32))

    def emit(self, kind: str, inputs: list[str], name: str, attrs=None) -> str:
        """An op named after the node and its role (``encoder/t3/z``), so the generated C's
        comments and per-layer profiles tell the steps and gates apart."""
        if attrs is None:
            attrs = irops.ElementwiseAttrs() if kind in ("ADD", "MUL", "SUB") else irops.NoAttrs()
        layer = self.b.layer
        self.b.layer = f"{layer}/{name}"
        try:
            return self.b.emit(kind, inputs, attrs, name=f"{self.base}/{name}", dtype="float32")
        finally:
            self.b.layer = layer

    def fc(self, src: str, weights: np.ndarray, bias: np.ndarray | None, name: str) -> str:
        inputs = [src, self.const(f"{name}/weights", weights)]
        if bias is not None:
            inputs.append(self.const(f"{name}/bias", bias))
        return self.emit("FULLY_CONNECTED", inputs, name, irops.FullyConnectedAttrs())

    def add(self, terms: list[str], name: str) -> str:
        total = terms[0]
        for k, term in enumerate(terms[1:]):
            total = self.emit("ADD", [total, term], name if k == len(terms) - 2 else
                              f"{name}/partial{k}")
        return total

    def act(self, index: int, src: str, name: str) -> str:
        return self.emit(self.acts[index], [src], name)

    # ---- one step: (layer, step index, previous h, previous c, name prefix) -> new h, c -----

    def x_term(self, layer: _Layer, g: str, t: int, bias: np.ndarray) -> str:
        """X[t] Wg^T + ``bias``: step ``t``'s rows of the product over all steps."""
        key = (id(layer), g)
        if key not in self.products:
            self.products[key] = self.fc(self.x_ir, layer.w[g], bias,
                                         f"d{layer.direction}/{g}_x")
        whole = self.products[key]
        if self.b.shape_of(whole)[0] == self.batch:
            return whole
        return self.emit("SLICE", [whole], f"d{layer.direction}/t{t}/{g}_x", irops.SliceAttrs(
            (t * self.batch, 0), (self.batch, self.hidden)))

    def gate(self, layer: _Layer, g: str, step: int, h: str | None, name: str,
             extra: list[str] = ()) -> str:
        """Pre-activation of gate ``g`` at ``step``: X W^T + H' R^T + Wb + Rb (+ ``extra``).
        ``h`` is None at the first step from a zero state."""
        terms = [self.x_term(layer, g, step, layer.wb[g] + layer.rb[g])]
        if h is not None:
            terms.append(self.fc(h, layer.r[g], None, f"{name}/h"))
        return self.add(terms + list(extra), name)

    def rnn_step(self, layer: _Layer, step: int, h: str | None, c: str | None,
                 t: str):
        return self.act(0, self.gate(layer, "i", step, h, f"{t}/gate"), f"{t}/h"), None

    def gru_step(self, layer: _Layer, step: int, h: str | None, c: str | None,
                 t: str):
        z = self.act(0, self.gate(layer, "z", step, h, f"{t}/z_gate"), f"{t}/z")
        r = self.act(0, self.gate(layer, "r", step, h, f"{t}/r_gate"), f"{t}/r")
        if self.lbr:  # r (.) (H' Rh^T + Rbh)
            terms = [self.x_term(layer, "h", step, layer.wb["h"])]
            if h is not None:
                recurrent = self.fc(h, layer.r["h"], layer.rb["h"], f"{t}/h_gate/h")
                terms.append(self.emit("MUL", [r, recurrent], f"{t}/h_gate/reset"))
            elif np.any(layer.rb["h"]):
                terms.append(self.emit("MUL", [r, self.const(f"{t}/rbh", layer.rb["h"])],
                                       f"{t}/h_gate/reset"))
            pre = self.add(terms, f"{t}/h_gate")
        else:  # (r (.) H') Rh^T
            extra = []
            if h is not None:
                reset = self.emit("MUL", [r, h], f"{t}/h_gate/reset")
                extra.append(self.fc(reset, layer.r["h"], None, f"{t}/h_gate/h"))
            pre = self.add([self.x_term(layer, "h", step, layer.wb["h"] + layer.rb["h"])] + extra,
                           f"{t}/h_gate")
        candidate = self.act(1, pre, f"{t}/h_candidate")
        keep = self.emit("SUB", [self.const(f"{t}/one", np.ones(1)), z], f"{t}/one_minus_z")
        new = self.emit("MUL", [keep, candidate], f"{t}/h_new_part")
        if h is None:
            return new, None
        return self.emit("ADD", [new, self.emit("MUL", [z, h], f"{t}/h_kept_part")],
                         f"{t}/h"), None

    def lstm_step(self, layer: _Layer, step: int, h: str | None, c: str | None,
                 t: str):
        def peephole(g: str, state: str | None) -> list[str]:
            if state is None or layer.p[g] is None:
                return []
            return [self.emit("MUL", [state, self.const(f"{t}/p{g}", layer.p[g])],
                              f"{t}/{g}_peephole")]

        i = self.act(0, self.gate(layer, "i", step, h, f"{t}/i_gate", peephole("i", c)), f"{t}/i")
        f = self.act(0, self.gate(layer, "f", step, h, f"{t}/f_gate", peephole("f", c)), f"{t}/f")
        cell = self.act(1, self.gate(layer, "c", step, h, f"{t}/c_gate"), f"{t}/c_candidate")
        new_c = self.emit("MUL", [i, cell], f"{t}/c_new_part")
        if c is not None:
            new_c = self.emit("ADD", [self.emit("MUL", [f, c], f"{t}/c_kept_part"), new_c],
                              f"{t}/c")
        o = self.act(0, self.gate(layer, "o", step, h, f"{t}/o_gate", peephole("o", new_c)),
                     f"{t}/o")
        return self.emit("MUL", [o, self.act(2, new_c, f"{t}/c_activated")], f"{t}/h"), new_c


def _activations(b: Builder, kind: str, attrs: dict) -> list[str]:
    names = attrs.get("activations")
    count = len(DEFAULT_ACTIVATIONS[kind])
    if names is None:
        names = DEFAULT_ACTIVATIONS[kind]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if "activation_alpha" in attrs or "activation_beta" in attrs:
        raise _fail(b, "activation_alpha / activation_beta are not supported")
    if len(names) not in (count, 2 * count):
        raise _malformed(b, f"{len(names)} activations, expected {count} per direction")
    if len(names) == 2 * count and names[:count] != names[count:]:
        raise _fail(b, f"different activations per direction ({names})")
    bad = [n for n in names if n.lower() not in ACTIVATIONS]
    if bad:
        raise _fail(b, f"activation {bad[0]} (supported: Sigmoid, Tanh, Relu)")
    return [ACTIVATIONS[n.lower()] for n in names[:count]]


def _check_attrs(b: Builder, kind: str, attrs: dict) -> None:
    if int(attrs.get("layout", 0)) != 0:
        raise _fail(b, "layout 1 (batch-major); export with layout 0")
    if "clip" in attrs:
        raise _fail(b, f"clip={attrs['clip']} (cell clipping is not supported)")
    if int(attrs.get("input_forget", 0)):
        raise _fail(b, "input_forget=1 (coupled input and forget gates)")


def _direction(b: Builder, attrs: dict) -> str:
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    if direction not in ("forward", "reverse", "bidirectional"):
        raise _malformed(b, f"direction '{direction}'")
    return direction


def _weights(b: Builder, kind: str, ins: list, dirs: int, hidden: int, inputs: int
             ) -> list[_Layer]:
    gates = GATES[kind]
    n = len(gates) * hidden
    w = b.const_array(ins[1], "W").astype(np.float32)
    r = b.const_array(ins[2], "R").astype(np.float32)
    bias = (b.const_array(ins[3], "B").astype(np.float32) if ins[3] is not None
            else np.zeros((dirs, 2 * n), np.float32))
    for what, value, shape in (("W", w, (dirs, n, inputs)), ("R", r, (dirs, n, hidden)),
                               ("B", bias, (dirs, 2 * n))):
        if value.shape != shape:
            raise _malformed(b, f"{what} has shape {list(value.shape)}, expected {list(shape)}")
    peep = None
    if kind == "LSTM" and ins[7] is not None:
        peep = b.const_array(ins[7], "P").astype(np.float32)
        if peep.shape != (dirs, 3 * hidden):
            raise _malformed(b, f"P has shape {list(peep.shape)}, expected [{dirs}, "
                                f"{3 * hidden}]")
    layers = []
    for d in range(dirs):
        rows = {g: slice(k * hidden, (k + 1) * hidden) for k, g in enumerate(gates)}
        p = {g: None for g in gates}
        if peep is not None and np.any(peep[d]):
            p.update({g: peep[d, k * hidden:(k + 1) * hidden] for k, g in enumerate("iof")})
        layers.append(_Layer({g: w[d, s] for g, s in rows.items()},
                             {g: r[d, s] for g, s in rows.items()},
                             {g: bias[d, s] for g, s in rows.items()},
                             {g: bias[d, n:][s] for g, s in rows.items()}, p, d))
    return layers


def _initial(u: _Unroller, value, what: str, dirs: int, batch: int, hidden: int
             ) -> list[str | None]:
    """Per direction the IR tensor [batch, hidden] of an initial state, None when it is
    absent or all zeros (the first step then has no recurrent term)."""
    b = u.b
    if value is None:
        return [None] * dirs
    if value.shape != (dirs, batch, hidden):
        raise _malformed(b, f"{what} has shape {list(value.shape)}, expected "
                            f"[{dirs}, {batch}, {hidden}]")
    if value.is_const:
        data = value.float_data().astype(np.float32)
        return [None if not np.any(data[d]) else u.const(f"{what}{d}", data[d])
                for d in range(dirs)]
    ir = b.row_major(value, real=True)
    return [u.emit("RESHAPE", [u.emit("SLICE", [ir], f"{what}{d}/slice", irops.SliceAttrs(
        (d, 0, 0), (1, batch, hidden)))], f"{what}{d}", irops.ReshapeAttrs((batch, hidden)))
        for d in range(dirs)]


@converter("LSTM", "GRU", "RNN")
def recurrent(b: Builder, node, attrs: dict) -> None:
    kind = node.op_type
    ins = (_inputs(b, node) + [None] * 8)[:8]
    x = _activation_input(b, ins[0], "X")
    _check_attrs(b, kind, attrs)
    direction = _direction(b, attrs)
    dirs = 2 if direction == "bidirectional" else 1
    if x.rank != 3:
        raise _malformed(b, f"X has rank {x.rank}, expected 3 ([seq_length, batch, input])")
    steps, batch, inputs = x.shape
    r_value = ins[2]
    if r_value is None:
        raise _malformed(b, "missing R")
    hidden = int(attrs.get("hidden_size", r_value.shape[-1]))
    if ins[4] is not None:  # sequence_lens: all full length, or unsupported
        lens = b.const_array(ins[4], "sequence_lens")
        if np.any(lens != steps):
            raise _fail(b, f"sequence_lens {[int(v) for v in lens.reshape(-1)]} shorter "
                           f"than the sequence ({steps})")
    layers = _weights(b, kind, ins, dirs, hidden, inputs)
    # Every step's input as the rows of one [seq * batch, input] matrix (FULLY_CONNECTED
    # flattens the leading axes).
    u = _Unroller(b, node, attrs, b.row_major(x, real=True), batch, hidden)
    h0 = _initial(u, ins[5], "initial_h", dirs, batch, hidden)
    c0 = _initial(u, ins[6], "initial_c", dirs, batch, hidden) if kind == "LSTM" \
        else [None] * dirs
    step = {"LSTM": u.lstm_step, "GRU": u.gru_step, "RNN": u.rnn_step}[kind]
    hs: list[list[str]] = []
    finals: list[tuple[str, str | None]] = []
    for d in range(dirs):
        backwards = direction == "reverse" or d == 1
        order = range(steps - 1, -1, -1) if backwards else range(steps)
        h, c = h0[d], c0[d]
        by_time: dict[int, str] = {}
        for t in order:
            h, c = step(layers[d], t, h, c, f"d{d}/t{t}" if dirs > 1 else f"t{t}")
            by_time[t] = h
        hs.append([by_time[t] for t in range(steps)])
        finals.append((h, c))
    _outputs(u, node, hs, finals, batch, hidden)


def _outputs(u: _Unroller, node, hs: list[list[str]], finals: list, batch: int,
             hidden: int) -> None:
    """Y [seq, dirs, batch, hidden], Y_h and Y_c [dirs, batch, hidden]."""
    b, dirs, steps = u.b, len(hs), len(hs[0])

    def stacked(tensors: list[str], shape: tuple[int, ...], axis: int, name: str) -> str:
        parts = [u.emit("RESHAPE", [t], f"{name}/{k}", irops.ReshapeAttrs(shape))
                 for k, t in enumerate(tensors)]
        if len(parts) == 1:
            return parts[0]
        return u.emit("CONCATENATION", parts, name, irops.ConcatenationAttrs(axis=axis))

    names = list(node.output) + [""] * 3
    if names[0]:
        per_dir = [stacked(h, (1, 1, batch, hidden), 0, f"Y{d}") for d, h in enumerate(hs)]
        y = per_dir[0] if dirs == 1 else u.emit("CONCATENATION", per_dir, "Y",
                                                 irops.ConcatenationAttrs(axis=1))
        b.activation(names[0], y, layout.identity(4))
    if names[1]:
        y_h = stacked([h for h, _ in finals], (1, batch, hidden), 0, "Y_h")
        b.activation(names[1], y_h, layout.identity(3))
    if names[2] and node.op_type == "LSTM":
        y_c = stacked([c for _, c in finals], (1, batch, hidden), 0, "Y_c")
        b.activation(names[2], y_c, layout.identity(3))
