"""SimpleRNN, LSTM and GRU (Keras 3 semantics: LSTM gates [i, f, c, o] with unit_forget_bias,
GRU gates [z, r, h] with reset_after; tanh and sigmoid activations). Inside the layer sequences
are time-major so each step is a contiguous block: the input projection of all steps is one
GEMM, each step one GEMM with the recurrent kernel plus a fused cell kernel, and
backpropagation through time runs the steps in reverse, ending in two GEMMs for the input
kernel and the input gradient. The initial state is zero. An optional second input, mask, takes
the token ids an Embedding(mask_zero=True) reads: a step of id 0 is skipped, as Keras' mask.
Their ONNX, PyTorch and Keras forms are in recurrent_forms.py, Bidirectional in
recurrent_bidirectional.py."""
import numpy as np

from layerloom.core.activations import REFERENCE
from layerloom.core.graph import fmt_shape
from layerloom.layers.kit import weight_params
from layerloom.core.params import Bool, Choice, Int
from layerloom.core.registry import Layer, ShapeError, WeightSpec, register
from layerloom.layers.recurrent_forms import _recurrent_forms, _simple_rnn_onnx, _single_op

_SIMPLE_ACTS = ("tanh", "relu", "sigmoid", "linear", "elu", "selu", "softsign", "relu6",
                "leaky_relu", "hard_sigmoid")


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


class _Masked:
    """An optional second input, mask: the token ids (steps,) an Embedding(mask_zero=True)
    reads; a step whose id is 0 is skipped (Keras' mask): the state carries over unchanged and
    the output there is the previous step's (zeros in a Bidirectional, as Keras')."""
    inputs = ("x", "mask")

    def min_inputs(self):
        return 1

    @staticmethod
    def check_mask(in_shapes):
        if len(in_shapes) > 1 and tuple(in_shapes[1]) != (in_shapes[0][0],):
            raise ShapeError(f"its mask input must be the token ids, one per step "
                             f"({in_shapes[0][0]},), got {fmt_shape(in_shapes[1])}")

    @staticmethod
    def no_mask_gradient(ops, s):
        """The ids get no gradient: zeros where the engine asks for one."""
        if len(s.dx) > 1 and s.dx[1] is not None and not s.acc[1]:
            ops.fill(s.dx[1].buf, s.n * s.x[1].size)


class _Recurrent(_Masked, Layer):
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
        self.check_mask(in_shapes)
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
        """s.reverse (a Bidirectional's backward direction): the steps run from the last, and
        the output sequence is flipped back (Keras' go_backwards, as Bidirectional uses it)."""
        p, n = s.params, s.n
        T, D = s.x[0].shape
        u, G = p["units"], self.gates
        sc, rev = s.scratch, getattr(s, "reverse", False)
        ops.to_time_major(s.x[0].buf, sc["x_tm"].buf, n, T, D, reverse=rev)
        ops.gemm(T * n, G * u, D, sc["x_tm"].buf, s.w["kernel"].buf, sc["xw"].buf,
                 bias=s.w["bias"].buf)
        for t in range(T):
            self.step(ops, s, t, n, u)
        H = sc["h"].buf
        if p["return_sequences"]:
            ops.from_time_major(H, s.y[0].buf, n, T, u, reverse=rev)
            if len(s.x) > 1 and getattr(s, "zero_masked", False):
                ops.zero_masked(s.y[0].buf, s.x[1].buf, n * T, u)
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
        sc, rev = s.scratch, getattr(s, "reverse", False)
        dH = sc["dh"].buf
        if p["return_sequences"]:
            if len(s.x) > 1 and getattr(s, "zero_masked", False):  # the zeroed outputs'
                ops.zero_masked(s.dy[0].buf, s.x[1].buf, n * T, u)
            ops.to_time_major(s.dy[0].buf, dH, n, T, u, reverse=rev)
        else:
            ops.fill(dH, T * n * u)
            ops.copy2d(s.dy[0].buf, u, 0, dH, u, (T - 1) * n * u, n, u)
        if p["return_state"]:
            ops.copy2d(s.dy[1].buf, u, 0, dH, u, (T - 1) * n * u, n, u, accumulate=True)
        self.begin_backward(ops, s, n, u)
        # U^T once for every step's dh_{t-1} += dG_t U^T (recurrent_grads)
        ut = ops.transposed_recurrent_kernel(s.w["recurrent_kernel"].buf, u, G * u) \
            if T > 1 else None
        for t in reversed(range(T)):
            self.step_backward(ops, s, t, n, u, ut)
        # dU = sum over t > 0 of h_{t-1}^T dG_t: one product (T-1)n deep over the time-major
        # blocks once the loop is done (masked steps' dG_t are zero). NOTE: a product n deep
        # accumulated at every step had cost 63 launches and ~2 ms of an LSTM's 64 steps.
        if T > 1:
            ops.gemm(u, G * u, (T - 1) * n, sc["h"].buf, self.recurrent_gate_buffer(s),
                     s.dw["recurrent_kernel"].buf, trans_a=True, b_off=n * G * u)
        else:
            ops.fill(s.dw["recurrent_kernel"].buf, u * G * u)
        dg = self.input_grad_buffer(s)
        ops.gemm(D, G * u, T * n, sc["x_tm"].buf, dg, s.dw["kernel"].buf, trans_a=True)
        ops.bias_grad(dg, s.dw["bias"].buf, T * n, G * u)
        if s.dx[0] is not None:
            ops.gemm(T * n, D, G * u, dg, s.w["kernel"].buf, sc["dx_tm"].buf, trans_b=True)
            ops.from_time_major(sc["dx_tm"].buf, s.dx[0].buf, n, T, D, accumulate=s.acc[0],
                                reverse=rev)
        self.no_mask_gradient(ops, s)

    def begin_backward(self, ops, s, n, u):
        pass

    @staticmethod
    def mask_at(s, t):
        """(ids, steps, the step's index in them) for the kernels, or None without a mask."""
        if len(s.x) < 2:
            return None
        T = s.x[0].shape[0]
        return (s.x[1].buf, T, T - 1 - t if getattr(s, "reverse", False) else t)

    def input_grad_buffer(self, s):
        return s.scratch["dg"].buf

    def recurrent_gate_buffer(self, s):
        """The step blocks dG_t that multiply the recurrent kernel U (its gradient's B)."""
        return s.scratch["dg"].buf

    def recurrent_grads(self, ops, s, t, n, u, dgate_buf, ut):
        """dh_{t-1} += dG_t U^T for one step (t > 0), ut: U^T, (G u, u); dU comes after the
        loop (backward)."""
        G = self.gates
        ops.gemm(n, u, G * u, dgate_buf, ut, s.scratch["dh"].buf, accumulate=True,
                 a_off=t * n * G * u, c_off=(t - 1) * n * u)


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and


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
        ops.rnn_act(s.params["activation"], sc["xw"].buf, sc["h"].buf, t * n * u, n * u, u,
                    first=(t == 0), mask=self.mask_at(s, t))

    def step_backward(self, ops, s, t, n, u, ut):
        sc = s.scratch
        ops.rnn_act_grad(s.params["activation"], sc["h"].buf, sc["dh"].buf, sc["dg"].buf,
                         t * n * u, n * u, u, first=(t == 0), mask=self.mask_at(s, t))
        if t > 0:
            self.recurrent_grads(ops, s, t, n, u, sc["dg"].buf, ut)

    def reference(self, p, xs, ws, training=False):
        x, keep = xs[0], _keep(xs)
        h = np.zeros((x.shape[0], p["units"]))
        seq = []
        for t in range(x.shape[1]):
            h = np.where(keep[:, t], REFERENCE[p["activation"]](
                x[:, t] @ ws["kernel"] + h @ ws["recurrent_kernel"] + ws["bias"]), h)
            seq.append(h)
        return _outputs(p, seq, [h])


def _keep(xs):
    """(N, T, 1) booleans: the steps a mask input keeps (its id nonzero); all without one."""
    if len(xs) < 2:
        return np.ones(xs[0].shape[:2] + (1,), bool)
    return (xs[1] != 0)[:, :, None]


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
        "LSTM", _single_op, "Transpose to time-major, LSTM (gates reordered i,f,c,o -> i,o,f,c), "
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
                      sc["h"].buf, t * n * u, n, u, first=(t == 0), mask=self.mask_at(s, t))

    def begin_backward(self, ops, s, n, u):
        if s.params["return_state"]:
            ops.copy(s.dy[2].buf, s.scratch["dc"].buf, n * u)
        else:
            ops.fill(s.scratch["dc"].buf, n * u)

    def step_backward(self, ops, s, t, n, u, ut):
        sc = s.scratch
        ops.lstm_cell_grad(sc["xw"].buf, t * n * 4 * u, sc["c"].buf, (t - 1) * n * u,
                           t * n * u, sc["dh"].buf, t * n * u, sc["dc"].buf, sc["dg"].buf, n, u,
                           first=(t == 0), mask=self.mask_at(s, t))
        if t > 0:
            self.recurrent_grads(ops, s, t, n, u, sc["dg"].buf, ut)

    def reference(self, p, xs, ws, training=False):
        x, keep = xs[0], _keep(xs)
        u = p["units"]
        h = np.zeros((x.shape[0], u))
        c = np.zeros_like(h)
        seq = []
        for t in range(x.shape[1]):
            z = x[:, t] @ ws["kernel"] + h @ ws["recurrent_kernel"] + ws["bias"]
            i, f, cc, o = _sig(z[:, :u]), _sig(z[:, u:2 * u]), np.tanh(z[:, 2 * u:3 * u]), \
                _sig(z[:, 3 * u:])
            c = np.where(keep[:, t], f * c + i * cc, c)
            h = np.where(keep[:, t], o * np.tanh(c), h)
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
        "GRU", _single_op, "Transpose, GRU (linear_before_reset=1, gates z,r,h), Squeeze, "
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
                     (t - 1) * n * u, t * n * u, n, u, first=(t == 0), mask=self.mask_at(s, t))

    def step_backward(self, ops, s, t, n, u, ut):
        sc = s.scratch
        ops.gru_cell_grad(sc["hu"].buf, sc["gates"].buf, t * n * 3 * u, sc["h"].buf,
                          (t - 1) * n * u, sc["dh"].buf, t * n * u, sc["dg"].buf, sc["dhu"].buf,
                          n, u, first=(t == 0), mask=self.mask_at(s, t))
        if t > 0:
            self.recurrent_grads(ops, s, t, n, u, sc["dhu"].buf, ut)

    def recurrent_gate_buffer(self, s):
        return s.scratch["dhu"].buf

    def backward(self, ops, s):
        super().backward(ops, s)
        T = s.x[0].shape[0]
        ops.bias_grad(s.scratch["dhu"].buf, s.dw["recurrent_bias"].buf, T * s.n,
                      3 * s.params["units"])

    def reference(self, p, xs, ws, training=False):
        x, keep = xs[0], _keep(xs)
        u = p["units"]
        h = np.zeros((x.shape[0], u))
        seq = []
        for t in range(x.shape[1]):
            xw = x[:, t] @ ws["kernel"] + ws["bias"]
            hu = h @ ws["recurrent_kernel"] + ws["recurrent_bias"]
            z = _sig(xw[:, :u] + hu[:, :u])
            r = _sig(xw[:, u:2 * u] + hu[:, u:2 * u])
            hh = np.tanh(xw[:, 2 * u:] + r * hu[:, 2 * u:])
            h = np.where(keep[:, t], z * h + (1 - z) * hh, h)
            seq.append(h)
        return _outputs(p, seq, [h])
