"""SimpleRNN, LSTM and GRU (Keras 3 semantics: LSTM gates [i, f, c, o] with unit_forget_bias,
GRU gates [z, r, h] with reset_after; tanh and sigmoid activations). Inside the layer sequences
are time-major so each step is a contiguous block: the input projection of all steps is one
GEMM, each step one GEMM with the recurrent kernel plus a fused cell kernel, and
backpropagation through time runs the steps in reverse, ending in two GEMMs for the input
kernel and the input gradient. The initial state is zero."""
import numpy as np

from layerloom.core.activations import REFERENCE
from layerloom.core.graph import fmt_shape
from layerloom.layers.kit import weight_params
from layerloom.core.params import Bool, Choice, Int
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, ShapeError, TorchForm, WeightSpec,
                                     register)

_SIMPLE_ACTS = ("tanh", "relu", "sigmoid", "linear", "elu", "selu", "softsign", "relu6",
                "leaky_relu", "hard_sigmoid")


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


class _Recurrent(Layer):
    category = "Recurrent"
    gates = 1
    states = 1  # h, (c for LSTM)

    @staticmethod
    def _params(extra=()):
        return (Int("units", 32, min=1, help="Size of the hidden state."),) + extra + (
            Bool("return_sequences", False, help="Output every step (steps, units), not the "
                                                 "last (units)."),
            Bool("return_state", False, help="Also output the final state(s)."),
        ) + weight_params("kernel", "glorot_uniform") + weight_params(
            "recurrent", "orthogonal") + weight_params("bias", "zeros")

    def output_names(self, p):
        return ["y"] + (["h", "c"][:self.states] if p["return_state"] else [])

    def output_shapes(self, p, in_shapes):
        if len(in_shapes[0]) != 2:
            raise ShapeError(f"expects input shaped (None, steps, features), got "
                             f"{fmt_shape(in_shapes[0])}")
        T, u = in_shapes[0][0], p["units"]
        y = (T, u) if p["return_sequences"] else (u,)
        return [y] + ([(u,)] * self.states if p["return_state"] else [])

    def weights(self, p, in_shapes):
        D, u, G = in_shapes[0][1], p["units"], self.gates
        ws = [WeightSpec("kernel", (D, G * u), p["kernel_initializer"], D, G * u,
                         regularizer=p["kernel_regularizer"]),
              WeightSpec("recurrent_kernel", (u, G * u), p["recurrent_initializer"], u, G * u,
                         regularizer=p["recurrent_regularizer"]),
              WeightSpec("bias", (G * u,), self._bias_init(p), regularizer=p["bias_regularizer"])]
        return ws

    def _bias_init(self, p):
        return p["bias_initializer"]

    def scratch(self, p, in_shapes):
        T, D = in_shapes[0]
        u, G = p["units"], self.gates
        return {"x_tm": (T * D,), "xw": (T * G * u,), "h": (T * u,), "dh": (T * u,),
                "dg": (T * G * u,), "dx_tm": (T * D,)}

    # -- shared plumbing ----------------------------------------------------------------------
    def forward(self, ops, s):
        p, n = s.params, s.n
        T, D = s.x[0].shape
        u, G = p["units"], self.gates
        sc = s.scratch
        ops.to_time_major(s.x[0].buf, sc["x_tm"].buf, n, T, D)
        ops.gemm(T * n, G * u, D, sc["x_tm"].buf, s.w["kernel"].buf, sc["xw"].buf,
                 bias=s.w["bias"].buf)
        for t in range(T):
            self.step(ops, s, t, n, u)
        H = sc["h"].buf
        if p["return_sequences"]:
            ops.from_time_major(H, s.y[0].buf, n, T, u)
        else:
            ops.copy2d(H, u, (T - 1) * n * u, s.y[0].buf, u, 0, n, u)
        if p["return_state"]:
            ops.copy2d(H, u, (T - 1) * n * u, s.y[1].buf, u, 0, n, u)
            if self.states == 2:
                ops.copy2d(sc["c"].buf, u, (T - 1) * n * u, s.y[2].buf, u, 0, n, u)

    def backward(self, ops, s):
        p, n = s.params, s.n
        T, D = s.x[0].shape
        u, G = p["units"], self.gates
        sc = s.scratch
        dH = sc["dh"].buf
        if p["return_sequences"]:
            ops.to_time_major(s.dy[0].buf, dH, n, T, u)
        else:
            ops.fill(dH, T * n * u)
            ops.copy2d(s.dy[0].buf, u, 0, dH, u, (T - 1) * n * u, n, u)
        if p["return_state"]:
            ops.copy2d(s.dy[1].buf, u, 0, dH, u, (T - 1) * n * u, n, u, accumulate=True)
        self.begin_backward(ops, s, n, u)
        ops.fill(s.dw["recurrent_kernel"].buf, u * G * u)
        for t in reversed(range(T)):
            self.step_backward(ops, s, t, n, u)
        dg = self.input_grad_buffer(s)
        ops.gemm(D, G * u, T * n, sc["x_tm"].buf, dg, s.dw["kernel"].buf, trans_a=True)
        ops.bias_grad(dg, s.dw["bias"].buf, T * n, G * u)
        if s.dx[0] is not None:
            ops.gemm(T * n, D, G * u, dg, s.w["kernel"].buf, sc["dx_tm"].buf, trans_b=True)
            ops.from_time_major(sc["dx_tm"].buf, s.dx[0].buf, n, T, D, accumulate=s.acc[0])

    def begin_backward(self, ops, s, n, u):
        pass

    def input_grad_buffer(self, s):
        return s.scratch["dg"].buf

    def recurrent_grads(self, ops, s, t, n, u, dgate_buf):
        """dU += h_{t-1}^T dG_t and dh_{t-1} += dG_t U^T for one step (t > 0)."""
        G = self.gates
        ops.gemm(u, G * u, n, s.scratch["h"].buf, dgate_buf, s.dw["recurrent_kernel"].buf,
                 trans_a=True, accumulate=True, a_off=(t - 1) * n * u, b_off=t * n * G * u)
        ops.gemm(n, u, G * u, dgate_buf, s.w["recurrent_kernel"].buf, s.scratch["dh"].buf,
                 trans_b=True, accumulate=True, a_off=t * n * G * u, c_off=(t - 1) * n * u)


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py) -------------------------------------------------------------
# ONNX: LSTM, GRU and RNN ops over the time-major sequence
def _gate_blocks(a, order):
    """Reorder the gate blocks along the last axis (Keras [i, f, c, o] -> ONNX [i, o, f, c])."""
    blocks = np.split(a, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def _recurrent_outputs(b, n, seq, last, states):
    """Ports from ONNX's Y (T, 1, N, u), Y_h and Y_c (1, N, u): y, then h (and c)."""
    p = n.params
    if p["return_sequences"]:
        y = b.op("Transpose", [b.op("Squeeze", [seq, b.ints([1], "axes")])], perm=[1, 0, 2])
    else:
        y = b.op("Squeeze", [last, b.ints([0], "axes")])
    outs = [y]
    if p["return_state"]:
        outs += [b.op("Squeeze", [s, b.ints([0], "axes")]) for s in states]
    return outs


def _recurrent_op(b, n, op_type, order, recurrent_bias, **attrs):
    """LSTM, GRU or RNN as one ONNX op over the time-major sequence (zero initial state)."""
    p, u = n.params, n.params["units"]
    W = _gate_blocks(n.w["kernel"], order).T[None]
    R = _gate_blocks(n.w["recurrent_kernel"], order).T[None]
    B = np.concatenate([_gate_blocks(n.w["bias"], order), recurrent_bias])[None]
    x_tm = b.op("Transpose", [n.x[0]], perm=[1, 0, 2])
    states = 2 if op_type == "LSTM" else 1
    flags = [p["return_sequences"], True] + [p["return_state"]] * (states - 1)
    outs = b.op(op_type, [x_tm, b.const(np.ascontiguousarray(W), f"{n.id}/W"),
                          b.const(np.ascontiguousarray(R), f"{n.id}/R"),
                          b.const(B, f"{n.id}/B")], outputs=flags, hidden_size=u, **attrs)
    return _recurrent_outputs(b, n, outs[0], outs[1], outs[1:])


def _lstm_onnx(b, n):
    u = n.params["units"]
    return _recurrent_op(b, n, "LSTM", [0, 3, 1, 2], np.zeros(4 * u, np.float32))


def _gru_onnx(b, n):
    # Keras' reset_after GRU is ONNX's linear_before_reset=1; both order the gates z, r, h
    return _recurrent_op(b, n, "GRU", [0, 1, 2], n.w["recurrent_bias"], linear_before_reset=1)


_RNN_OPS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def _simple_rnn_onnx(b, n):
    p, u = n.params, n.params["units"]
    act = p["activation"]
    if act in _RNN_OPS:
        return _recurrent_op(b, n, "RNN", [0], np.zeros(u, np.float32),
                             activations=[_RNN_OPS[act]])
    # other activations: unrolled over the (static) steps, h_t = act(x_t W + h_{t-1} U + b)
    T = n.in_shapes[0][0]
    xw = b.op("Add", [b.op("MatMul", [n.x[0], b.const(n.w["kernel"], f"{n.id}/kernel")]),
                      b.const(n.w["bias"], f"{n.id}/bias")])
    U = b.const(n.w["recurrent_kernel"], f"{n.id}/recurrent_kernel")
    h, seq = None, []
    for t in range(T):
        z = b.op("Gather", [xw, b.const(t, "step", np.int64)], axis=1)
        if h is not None:
            z = b.op("Add", [z, b.op("MatMul", [h, U])])
        h = b.activation(act, z)
        seq.append(h)
    if p["return_sequences"]:
        steps = [b.op("Unsqueeze", [s, b.ints([1], "axes")]) for s in seq]
        y = b.op("Concat", steps, axis=1) if T > 1 else steps[0]
    else:
        y = h
    return [y] + ([h] if p["return_state"] else [])


# PyTorch: Keras' equations as a loop over the steps, the weights in Layerloom's (and Keras')
# layout: kernel (features, G * units), recurrent_kernel (units, G * units)
_RNN_STEP = {
    "SimpleRNN": lambda t, n, o, x, u: [
        f"{o}_h = {t.activation(n, f'{x}[:, {o}_t] @ {n.self}.kernel + {o}_h @ {n.self}.recurrent_kernel + {n.self}.bias')}"],
    "LSTM": lambda t, n, o, x, u: [
        f"{o}_z = {x}[:, {o}_t] @ {n.self}.kernel + {o}_h @ {n.self}.recurrent_kernel + {n.self}.bias",
        f"{o}_i, {o}_f = torch.sigmoid({o}_z[:, :{u}]), torch.sigmoid({o}_z[:, {u}:{2 * u}])",
        f"{o}_c = {o}_f * {o}_c + {o}_i * torch.tanh({o}_z[:, {2 * u}:{3 * u}])",
        f"{o}_h = torch.sigmoid({o}_z[:, {3 * u}:]) * torch.tanh({o}_c)"],
    "GRU": lambda t, n, o, x, u: [  # reset_after: r multiplies the recurrent projection
        f"{o}_xw = {x}[:, {o}_t] @ {n.self}.kernel + {n.self}.bias",
        f"{o}_hu = {o}_h @ {n.self}.recurrent_kernel + {n.self}.recurrent_bias",
        f"{o}_zt = torch.sigmoid({o}_xw[:, :{u}] + {o}_hu[:, :{u}])",
        f"{o}_r = torch.sigmoid({o}_xw[:, {u}:{2 * u}] + {o}_hu[:, {u}:{2 * u}])",
        f"{o}_hh = torch.tanh({o}_xw[:, {2 * u}:] + {o}_r * {o}_hu[:, {2 * u}:])",
        f"{o}_h = {o}_zt * {o}_h + (1 - {o}_zt) * {o}_hh"],
}
_GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}


def _recurrent_torch(t, n):
    t.no_regularizers(n)
    if n.params.get("recurrent_regularizer"):
        raise t.unsupported(n.id, n.type, "recurrent_regularizer", n.params["recurrent_regularizer"])
    p, s, o, x = n.params, n.self, n.out, n.x[0]
    u, g, d = int(p["units"]), _GATES[n.type], n.in_shapes[0][-1]
    names = ["kernel", "recurrent_kernel", "bias"] + (["recurrent_bias"] if n.type == "GRU" else [])
    shapes = {"kernel": (d, g * u), "recurrent_kernel": (u, g * u), "bias": (g * u,),
              "recurrent_bias": (g * u,)}
    init = [f"{s} = nn.ParameterDict({{" + ", ".join(
        f"{k!r}: nn.Parameter(torch.empty{shapes[k]!r})" for k in names) + "})",
        t.init(n, f"{s}.kernel", "kernel_initializer", "glorot_uniform")]
    rec = p.get("recurrent_initializer", "orthogonal")
    if rec != "orthogonal":
        init.append(t.init(n, f"{s}.recurrent_kernel", "recurrent_initializer", rec))
    else:
        init.append(f"nn.init.orthogonal_({s}.recurrent_kernel)")
    for k in names[2:]:
        init.append(t.init(n, f"{s}.{k}", "bias_initializer", "zeros"))
    if n.type == "LSTM" and p.get("bias_initializer", "zeros") == "zeros":
        init.append(f"nn.init.ones_({s}.bias[{u}:{2 * u}])  # Keras' unit_forget_bias")
    fwd = [f"{o}_h = {x}.new_zeros({x}.shape[0], {u})"]
    if n.type == "LSTM":
        fwd.append(f"{o}_c = torch.zeros_like({o}_h)")
    fwd += [f"{o}_seq = []", f"for {o}_t in range({x}.shape[1]):"]
    fwd += ["    " + line for line in _RNN_STEP[n.type](t, n, o, x, u)]
    fwd += [f"    {o}_seq.append({o}_h)",
            f"{o} = torch.stack({o}_seq, 1)" if p["return_sequences"] else f"{o} = {o}_h"]
    # return_state: ports h (and c) are {o}_h and {o}_c, the final states (torch_code's names)
    return init, fwd, {k: (k, "") for k in names}


# Keras out and in
def _recurrent_keras(k, n):
    names = ["units"] + (["activation"] if n.type == "SimpleRNN" else []) + \
        ["return_sequences", "return_state"]
    line = k.call(n.type, k.kw(n, names) + k.weight_args(n, ("kernel", "recurrent", "bias")),
                  n, n.x)
    if len(n.out) == 1:
        return [f"{n.out[0]} = {line}"]
    return [f"{', '.join(n.out)} = {line}"]


def _recurrent_keras_in(type_id):
    def read(o, shapes):
        o.must("use_bias", True)
        for k in ("go_backwards", "stateful", "zero_output_for_mask"):
            o.must(k, False)
        for k in ("dropout", "recurrent_dropout"):
            o.must(k, 0, 0.0)
        o.must("recurrent_constraint", None)
        p = {"units": o.get("units"), "return_sequences": o.get("return_sequences", False),
             "return_state": o.get("return_state", False),
             **o.weight_params("kernel", "recurrent", "bias")}
        if type_id == "SimpleRNN":
            p["activation"] = o.activation(default="tanh")
        else:
            o.must("activation", "tanh")
            o.must("recurrent_activation", "sigmoid")
        if type_id == "GRU":
            o.must("reset_after", True)
        if type_id == "LSTM":
            _unit_forget_bias(o, p)
        return p
    return read


def _unit_forget_bias(o, p):
    """Layerloom's LSTM starts the forget-gate bias at 1 when bias_initializer is zeros (Keras'
    unit_forget_bias); zeros throughout is the constant 0."""
    ufb, init = o.get("unit_forget_bias", True), p.get("bias_initializer", "zeros")
    if not ufb and init == "zeros":
        p["bias_initializer"] = {"name": "constant", "value": 0.0}
    elif ufb and init not in ("zeros", "ones"):
        o.fail("unit_forget_bias", f"with bias_initializer {init!r} has no Layerloom form")


def _recurrent_forms(type_id, onnx_convert, onnx_ops, **keras):
    return (OnnxForm(onnx_convert, onnx_ops), TorchForm(_recurrent_torch, state_ports=True),
            KerasForm(type_id, write=_recurrent_keras, read=_recurrent_keras_in(type_id),
                      weight_order=("kernel", "recurrent_kernel", "bias"), **keras))


@register
class SimpleRNN(_Recurrent):
    type_id = "SimpleRNN"
    help = "Fully connected recurrence: h_t = activation(x_t W + h_{t-1} U + b)."
    params = _Recurrent._params((Choice("activation", "tanh", _SIMPLE_ACTS,
                                        help="Activation of the hidden state."),))
    examples = (({"units": 3}, [(4, 2)]),
                ({"units": 5, "return_sequences": True, "activation": "relu"}, [(3, 4)]),
                ({"units": 2, "return_state": True}, [(1, 3)]))

    onnx_form, torch_form, keras_form = _recurrent_forms(
        "SimpleRNN", _simple_rnn_onnx, "Transpose, RNN (tanh, relu, sigmoid); other activations "
        "unrolled: MatMul, Add, Gather, activation, Unsqueeze, Concat")

    def step(self, ops, s, t, n, u):
        sc = s.scratch
        if t > 0:
            ops.gemm(n, u, u, sc["h"].buf, s.w["recurrent_kernel"].buf, sc["xw"].buf,
                     accumulate=True, a_off=(t - 1) * n * u, c_off=t * n * u)
        ops.rnn_act(s.params["activation"], sc["xw"].buf, sc["h"].buf, t * n * u, n * u)

    def step_backward(self, ops, s, t, n, u):
        sc = s.scratch
        ops.rnn_act_grad(s.params["activation"], sc["h"].buf, sc["dh"].buf, sc["dg"].buf,
                         t * n * u, n * u)
        if t > 0:
            self.recurrent_grads(ops, s, t, n, u, sc["dg"].buf)

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        h = np.zeros((x.shape[0], p["units"]))
        seq = []
        for t in range(x.shape[1]):
            h = REFERENCE[p["activation"]](x[:, t] @ ws["kernel"] + h @ ws["recurrent_kernel"]
                                           + ws["bias"])
            seq.append(h)
        return _outputs(p, seq, [h])


def _outputs(p, seq, states):
    y = np.stack(seq, 1) if p["return_sequences"] else seq[-1]
    return [y] + (states if p["return_state"] else [])


@register
class LSTM(_Recurrent):
    type_id = "LSTM"
    gates = 4
    states = 2
    help = ("Long short-term memory: gates i, f, c, o; c_t = f c_{t-1} + i tanh(.), "
            "h_t = o tanh(c_t). The forget-gate bias starts at 1 (Keras' unit_forget_bias).")
    params = _Recurrent._params()
    examples = (({"units": 3}, [(4, 2)]), ({"units": 2, "return_sequences": True}, [(3, 5)]),
                ({"units": 3, "return_state": True}, [(2, 3)]),
                ({"units": 2, "return_state": True, "return_sequences": True}, [(1, 2)]))

    onnx_form, torch_form, keras_form = _recurrent_forms(
        "LSTM", _lstm_onnx, "Transpose to time-major, LSTM (gates reordered i,f,c,o -> i,o,f,c), "
        "Squeeze, Transpose")

    def _bias_init(self, p):
        return "lstm_bias" if p["bias_initializer"] == "zeros" else p["bias_initializer"]

    def scratch(self, p, in_shapes):
        sc = super().scratch(p, in_shapes)
        T, u = in_shapes[0][0], p["units"]
        sc.update({"c": (T * u,), "dc": (u,)})
        return sc

    def step(self, ops, s, t, n, u):
        sc = s.scratch
        if t > 0:
            ops.gemm(n, 4 * u, u, sc["h"].buf, s.w["recurrent_kernel"].buf, sc["xw"].buf,
                     accumulate=True, a_off=(t - 1) * n * u, c_off=t * n * 4 * u)
        ops.lstm_cell(sc["xw"].buf, t * n * 4 * u, sc["c"].buf, (t - 1) * n * u, t * n * u,
                      sc["h"].buf, t * n * u, n, u, first=(t == 0))

    def begin_backward(self, ops, s, n, u):
        if s.params["return_state"]:
            ops.copy(s.dy[2].buf, s.scratch["dc"].buf, n * u)
        else:
            ops.fill(s.scratch["dc"].buf, n * u)

    def step_backward(self, ops, s, t, n, u):
        sc = s.scratch
        ops.lstm_cell_grad(sc["xw"].buf, t * n * 4 * u, sc["c"].buf, (t - 1) * n * u,
                           t * n * u, sc["dh"].buf, t * n * u, sc["dc"].buf, sc["dg"].buf, n, u,
                           first=(t == 0))
        if t > 0:
            self.recurrent_grads(ops, s, t, n, u, sc["dg"].buf)

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        u = p["units"]
        h = np.zeros((x.shape[0], u))
        c = np.zeros_like(h)
        seq = []
        for t in range(x.shape[1]):
            z = x[:, t] @ ws["kernel"] + h @ ws["recurrent_kernel"] + ws["bias"]
            i, f, cc, o = _sig(z[:, :u]), _sig(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), \
                _sig(z[:, 3 * u:])
            c = f * c + i * cc
            h = o * np.tanh(c)
            seq.append(h)
        return _outputs(p, seq, [h, c])


@register
class GRU(_Recurrent):
    type_id = "GRU"
    gates = 3
    help = ("Gated recurrent unit (Keras' reset_after form): z and r gates, h~ = tanh(x W_h + "
            "r (h U_h + b_h)), h_t = z h_{t-1} + (1 - z) h~. Separate input and recurrent biases.")
    params = _Recurrent._params()
    examples = (({"units": 3}, [(4, 2)]), ({"units": 2, "return_sequences": True}, [(3, 5)]),
                ({"units": 3, "return_state": True}, [(2, 3)]))

    onnx_form, torch_form, keras_form = _recurrent_forms(
        "GRU", _gru_onnx, "Transpose, GRU (linear_before_reset=1, gates z,r,h), Squeeze, "
        "Transpose", doc="layers.GRU (reset_after=True, Keras' default); bias = stack(bias, "
        "recurrent_bias)")
    # one Keras weight, the (2, 3 * units) bias, stacked from two of Layerloom's
    keras_form.weight_order = ("kernel", "recurrent_kernel", ("bias", "recurrent_bias"))

    def weights(self, p, in_shapes):
        return super().weights(p, in_shapes) + [
            WeightSpec("recurrent_bias", (3 * p["units"],), p["bias_initializer"],
                       regularizer=p["bias_regularizer"])]

    def scratch(self, p, in_shapes):
        sc = super().scratch(p, in_shapes)
        T, u = in_shapes[0][0], p["units"]
        sc.update({"hu": (T * 3 * u,), "gates": (T * 3 * u,), "dhu": (T * 3 * u,)})
        return sc

    def step(self, ops, s, t, n, u):
        sc = s.scratch
        off = t * n * 3 * u
        if t > 0:
            ops.gemm(n, 3 * u, u, sc["h"].buf, s.w["recurrent_kernel"].buf, sc["hu"].buf,
                     bias=s.w["recurrent_bias"].buf, a_off=(t - 1) * n * u, c_off=off)
        else:  # h_{-1} = 0: the recurrent projection is just its bias
            ops.copy2d(s.w["recurrent_bias"].buf, 0, 0, sc["hu"].buf, 3 * u, off, n, 3 * u)
        ops.gru_cell(sc["xw"].buf, sc["hu"].buf, off, sc["gates"].buf, sc["h"].buf,
                     (t - 1) * n * u, t * n * u, n, u, first=(t == 0))

    def step_backward(self, ops, s, t, n, u):
        sc = s.scratch
        ops.gru_cell_grad(sc["hu"].buf, sc["gates"].buf, t * n * 3 * u, sc["h"].buf,
                          (t - 1) * n * u, sc["dh"].buf, t * n * u, sc["dg"].buf, sc["dhu"].buf,
                          n, u, first=(t == 0))
        if t > 0:
            self.recurrent_grads(ops, s, t, n, u, sc["dhu"].buf)

    def backward(self, ops, s):
        super().backward(ops, s)
        T = s.x[0].shape[0]
        ops.bias_grad(s.scratch["dhu"].buf, s.dw["recurrent_bias"].buf, T * s.n,
                      3 * s.params["units"])

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        u = p["units"]
        h = np.zeros((x.shape[0], u))
        seq = []
        for t in range(x.shape[1]):
            xw = x[:, t] @ ws["kernel"] + ws["bias"]
            hu = h @ ws["recurrent_kernel"] + ws["recurrent_bias"]
            z = _sig(xw[:, :u] + hu[:, :u])
            r = _sig(xw[:, u:2 * u] + hu[:, u:2 * u])
            hh = np.tanh(xw[:, 2 * u:] + r * hu[:, 2 * u:])
            h = z * h + (1 - z) * hh
            seq.append(h)
        return _outputs(p, seq, [h])
