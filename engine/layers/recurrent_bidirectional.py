"""Bidirectional: a SimpleRNN, LSTM or GRU run forward and backward over the sequence, the two
directions' outputs merged (concat, sum, mul, ave, or none: both returned). Each direction is
the wrapped layer's own cell (engine/layers/recurrent.py), run on the sequence or its reverse;
its ONNX, Keras and PyTorch forms beside it."""
import numpy as np

from layerloom.backend.ops import Tensor
from layerloom.core.params import Bool, Choice, Int
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, ShapeError, TorchForm,
                                     WeightSpec, register)
from layerloom.layers.kit import weight_params
from layerloom.layers.recurrent import GRU, LSTM, _SIMPLE_ACTS, SimpleRNN, _keep, _Masked
from layerloom.layers.recurrent_forms import (_GATES, _RNN_OPS, _no_mask_onnx,
                                              _recurrent_keras_in, _recurrent_op, _torch_init,
                                              _torch_loop, _unrolled_rnn, _with_mask)

# -- Bidirectional ---------------------------------------------------------------------------
_MERGES = ("concat", "sum", "mul", "ave", "none")
_STATES = {"SimpleRNN": ("h",), "GRU": ("h",), "LSTM": ("h", "c")}
_DIRECTIONS = (("forward_", "f_", False), ("backward_", "b_", True))


class _Direction:
    """One direction of a Bidirectional node as the NodeStep its cell's layer sees: the weights
    and scratch under its prefix, its own output and gradient, reverse for the backward one."""

    def __init__(self, s, params, wprefix, sprefix, reverse, ys, dys, dx, acc):
        self.params, self.n, self.reverse, self.zero_masked = params, s.n, reverse, True
        self.training, self.seed, self.step = s.training, s.seed, s.step
        self.x, self.y, self.dy, self.dx, self.acc = s.x, ys, dys, [dx], [acc]
        self.w = {k[len(wprefix):]: v for k, v in s.w.items() if k.startswith(wprefix)}
        self.dw = {k[len(wprefix):]: v for k, v in s.dw.items() if k.startswith(wprefix)}
        self.scratch = {k[len(sprefix):]: v for k, v in s.scratch.items()
                        if k.startswith(sprefix)}


def _bidirectional_onnx(b, n):
    """Both directions as one ONNX op with direction=bidirectional (a SimpleRNN whose activation
    ONNX's RNN lacks: each unrolled), then the merge."""
    _no_mask_onnx(b, n)
    p, kind = n.params, n.params["layer"]
    seq = p["return_sequences"]
    if kind == "SimpleRNN" and p["activation"] not in _RNN_OPS:
        runs = [_unrolled_rnn(b, n, pre, rev) for pre, _, rev in _DIRECTIONS]
        halves = [y for y, _ in runs]
        states = [h for _, h in runs]
    else:
        lstm_c = kind == "LSTM" and p["return_state"]
        outs = _recurrent_op(b, n, kind, [d[0] for d in _DIRECTIONS], [seq, True, lstm_c][
            :3 if kind == "LSTM" else 2])
        # each direction's final states: Y_h (and Y_c) (2, N, u) by direction
        states = [b.op("Gather", [o, b.const(i, "direction", np.int64)], axis=0)
                  for i in range(2) for o in outs[1:]] if p["return_state"] else []
        if seq and p["merge_mode"] == "concat":  # Y (T, 2, N, u) -> (T, N, 2u) -> (N, T, 2u)
            y = b.op("Reshape", [b.op("Transpose", [outs[0]], perm=[0, 2, 1, 3]),
                                 b.ints([0, 0, 2 * p["units"]])])
            return [b.op("Transpose", [y], perm=[1, 0, 2])] + states
        if seq:  # Y (T, 2, N, u) -> (N, T, 2, u), then each direction (N, T, u)
            y = b.op("Transpose", [outs[0]], perm=[2, 0, 1, 3])
            halves = [b.op("Gather", [y, b.const(i, "direction", np.int64)], axis=2)
                      for i in range(2)]
        else:  # Y_h (2, N, u): the backward direction's last step is the input's first
            halves = [b.op("Gather", [outs[1], b.const(i, "direction", np.int64)], axis=0)
                      for i in range(2)]
    f, r = halves
    states = states if p["return_state"] else []
    mode = p["merge_mode"]
    if mode == "none":
        return [f, r] + states
    if mode == "concat":
        return [b.op("Concat", [f, r], axis=-1)] + states
    if mode == "mul":
        return [b.op("Mul", [f, r])] + states
    y = b.op("Add", [f, r])
    return [b.op("Mul", [y, b.const(0.5, "half")]) if mode == "ave" else y] + states


def _bidirectional_torch(t, n):
    kind, o = n.params["layer"], n.out
    init, weights = _torch_init(t, n, kind, [d[0] for d in _DIRECTIONS])
    fwd = _torch_loop(t, n, kind, f"{o}_fw", n.x[0], "forward_", zero_masked=True) + \
        _torch_loop(t, n, kind, f"{o}_bw", n.x[0], "backward_", reverse=True, zero_masked=True)
    f, r = f"{o}_fw_seq", f"{o}_bw_seq"
    mode = n.params["merge_mode"]
    fwd.append({"concat": f"{o} = torch.cat([{f}, {r}], -1)", "sum": f"{o} = {f} + {r}",
                "mul": f"{o} = {f} * {r}", "ave": f"{o} = ({f} + {r}) / 2",
                "none": f"{o} = {f}"}[mode])
    if mode == "none":  # the second port: torch_code names it {o}_backward
        fwd.append(f"{o}_backward = {r}")
    if n.params["return_state"]:  # ports forward_h (_c), backward_h (_c): the final states
        for d, short in (("forward", "fw"), ("backward", "bw")):
            fwd += [f"{o}_{d}_{st} = {o}_{short}_{st}" for st in _STATES[kind]]
    return init, fwd, weights


def _bidirectional_keras(k, n):
    p = n.params
    names = ["units"] + (["activation"] if p["layer"] == "SimpleRNN" else []) + \
        ["return_sequences", "return_state"]
    inner = f"layers.{p['layer']}(" + ", ".join(
        k.kw(n, names) + k.weight_args(n, ("kernel", "recurrent", "bias"))) + ")"
    mode = "None" if p["merge_mode"] == "none" else repr(p["merge_mode"])
    line = _with_mask(n, k.call("Bidirectional", [inner, f"merge_mode={mode}"], n, n.x[:1]))
    return [f"{', '.join(n.out)} = {line}"]


def _bidirectional_keras_in(o, shapes):
    """Keras' Bidirectional over an LSTM, GRU or SimpleRNN: the wrapped layer's options (read as
    that layer's), a backward_layer the mirror of it, merge_mode."""
    mode = o.get("merge_mode") if "merge_mode" in o.c else "concat"  # None: two outputs
    cfg = o.get("layer") or {}
    kind = cfg.get("class_name")
    if kind not in _GATES:
        o.fail("layer", "wraps no LSTM, GRU or SimpleRNN (Layerloom's Bidirectional wraps only "
                        "those)")
    inner = type(o)(f"{o.name}/{(cfg.get('config') or {}).get('name')}", kind,
                    cfg.get("config") or {}, o.keras2, o.place)
    inner.c.pop("zero_output_for_mask", None)  # Bidirectional sets it; moot without a mask
    cell = _recurrent_keras_in(kind)(inner, shapes)
    inner.finish()
    back = o.get("backward_layer")
    if back is not None:
        bc = dict(back.get("config") or {})
        fc = dict(cfg.get("config") or {})
        same = back.get("class_name") == kind and bc.pop("go_backwards", False) is True and \
            fc.pop("go_backwards", False) is False and _plain(bc) == _plain(fc)
        if not same:
            o.fail("backward_layer", "differs from the wrapped layer (Layerloom's backward "
                                     "direction is its copy, reading the steps backwards)")
    o.read.add("backward_layer")
    return {"layer": kind, "merge_mode": "none" if mode is None else mode, **cell}


def _plain(v):
    """A config without what names or identifies it (name, Keras' shared_object_id)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items() if k not in ("name", "shared_object_id")}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _bidirectional_order(p):
    """Keras' weights: the forward layer's, then the backward layer's (GRU's bias stacked)."""
    out = []
    for pre, _, _ in _DIRECTIONS:
        out += [pre + "kernel", pre + "recurrent_kernel"]
        out.append((pre + "bias", pre + "recurrent_bias") if p["layer"] == "GRU"
                   else pre + "bias")
    return out


def _cell_params(p):
    return {"units": p["units"], "return_sequences": p["return_sequences"],
            "return_state": p["return_state"], "activation": p["activation"],
            **{k: p[k] for k in p if k.endswith(("_initializer", "_regularizer"))}}


@register
class Bidirectional(_Masked, Layer):
    type_id = "Bidirectional"
    category = "Recurrent"
    help = ("Runs an LSTM, GRU or SimpleRNN over the steps forwards and a copy of it backwards, "
            "merging the two outputs (concat, sum, mul, ave, or none: two outputs). Optional "
            "mask input: the token ids, a step of id 0 skipped (its outputs zero).")
    params = (Choice("layer", "LSTM", tuple(_GATES), help="The recurrent layer run both ways."),
              Int("units", 32, min=1, help="Size of each direction's hidden state."),
              Choice("activation", "tanh", _SIMPLE_ACTS,
                     help="A SimpleRNN's activation (an LSTM's and a GRU's is tanh)."),
              Bool("return_sequences", False, help="Output every step, not the last."),
              Bool("return_state", False, help="Also output each direction's final state(s): "
                                               "h (and an LSTM's c), forward then backward."),
              Choice("merge_mode", "concat", _MERGES,
                     help="How the directions' outputs combine; none: two outputs "
                          "(Keras' None)."),
              ) + weight_params("kernel", "glorot_uniform") + weight_params(
        "recurrent", "orthogonal") + weight_params("bias", "zeros")
    headline = ("layer", "units", "merge_mode")
    examples = (({"layer": "LSTM", "units": 3, "return_sequences": True}, [(3, 2)]),
                ({"layer": "GRU", "units": 2, "merge_mode": "sum"}, [(4, 3)]),
                ({"layer": "SimpleRNN", "units": 2, "activation": "relu", "merge_mode": "mul",
                  "return_sequences": True}, [(3, 2)]),
                ({"layer": "LSTM", "units": 2, "merge_mode": "ave"}, [(2, 3)]),
                ({"layer": "GRU", "units": 2, "merge_mode": "none", "return_sequences": True},
                 [(3, 2)]),
                ({"layer": "SimpleRNN", "units": 3, "activation": "elu"}, [(3, 2)]),
                ({"layer": "LSTM", "units": 2, "return_state": True}, [(3, 2)]),
                ({"layer": "GRU", "units": 2, "merge_mode": "none", "return_state": True,
                  "return_sequences": True}, [(2, 3)]),
                ({"layer": "SimpleRNN", "units": 2, "activation": "elu", "return_state": True,
                  "merge_mode": "sum"}, [(3, 2)]))

    onnx_form = OnnxForm(_bidirectional_onnx, "Transpose, LSTM/GRU/RNN with direction="
                         "bidirectional (a SimpleRNN of another activation: unrolled both ways), "
                         "Transpose, Gather, then Concat, Add, Mul")
    torch_form = TorchForm(_bidirectional_torch, state_ports=True)  # none: {out}_backward
    keras_form = KerasForm("Bidirectional", write=_bidirectional_keras,
                           read=_bidirectional_keras_in, weight_order=_bidirectional_order,
                           doc="layers.Bidirectional(layers.<layer>(units, ...), merge_mode)")

    def cell(self, p):
        return _CELLS[p["layer"]]

    def output_names(self, p):
        base = ["forward", "backward"] if p["merge_mode"] == "none" else ["y"]
        return base + ([f"{d}_{st}" for d in ("forward", "backward")
                        for st in _STATES[p["layer"]]] if p["return_state"] else [])

    def output_shapes(self, p, in_shapes):
        if p["layer"] != "SimpleRNN" and p["activation"] != "tanh":
            raise ShapeError(f"activation {p['activation']!r} is a SimpleRNN's option; an "
                             f"{p['layer']}'s activation is tanh")
        self.check_mask(in_shapes)
        y = self.cell(p).output_shapes(_cell_params(p), in_shapes)[0]
        states = [(p["units"],)] * (2 * len(_STATES[p["layer"]])) if p["return_state"] else []
        if p["merge_mode"] == "none":
            return [y, y] + states
        if p["merge_mode"] == "concat":
            return [y[:-1] + (2 * y[-1],)] + states
        return [y] + states

    def weights(self, p, in_shapes):
        out = []
        for pre, _, _ in _DIRECTIONS:
            for w in self.cell(p).weights(_cell_params(p), in_shapes):
                out.append(WeightSpec(pre + w.name, w.shape, w.init, w.fan_in, w.fan_out,
                                      regularizer=w.regularizer))
        return out

    def scratch(self, p, in_shapes):
        cell = self.cell(p).scratch(_cell_params(p), in_shapes)
        out = {sp + k: v for _, sp, _ in _DIRECTIONS for k, v in cell.items()}
        if p["merge_mode"] != "none":
            y = self.cell(p).output_shapes(_cell_params(p), in_shapes)[0]
            size = (int(np.prod(y)),)
            out.update({"yf": size, "yb": size, "dyf": size, "dyb": size})
        return out

    def _directions(self, s, forward):
        """The two directions' steps: their outputs (and gradients) are the node's ports
        (merge_mode none) or the scratch the merge reads."""
        p, sc = s.params, s.scratch
        none = p["merge_mode"] == "none"
        cp = _cell_params(p)
        k = len(_STATES[p["layer"]]) if p["return_state"] else 0
        first = 2 if none else 1  # the ports before the states
        out = []
        for i, (wp, sp, rev) in enumerate(_DIRECTIONS):
            ports = slice(first + i * k, first + (i + 1) * k)
            y = s.y[i] if none else _as(sc["yf" if i == 0 else "yb"], s.y[0], p)
            dy = None
            if not forward:
                dy = s.dy[i] if none else _as(sc["dyf" if i == 0 else "dyb"], s.y[0], p)
            acc = (s.acc[0] if s.acc else False) if i == 0 else True
            out.append(_Direction(s, cp, wp, sp, rev, [y] + s.y[ports],
                                  [dy] + (s.dy[ports] if not forward else [None] * k),
                                  s.dx[0] if s.dx else None, acc))
        return out

    def forward(self, ops, s):
        cell = self.cell(s.params)
        f, r = self._directions(s, True)
        cell.forward(ops, f)
        cell.forward(ops, r)
        mode, n = s.params["merge_mode"], s.n
        if mode == "none":
            return
        u = s.params["units"]
        count = n * f.y[0].size
        if mode == "concat":
            rows = count // u
            ops.copy2d(f.y[0].buf, u, 0, s.y[0].buf, 2 * u, 0, rows, u)
            ops.copy2d(r.y[0].buf, u, 0, s.y[0].buf, 2 * u, u, rows, u)
        elif mode == "mul":
            ops.binary("multiply", f.y[0].buf, r.y[0].buf, s.y[0].buf, count)
        else:
            ops.binary("add", f.y[0].buf, r.y[0].buf, s.y[0].buf, count)
            if mode == "ave":
                ops.scaled(s.y[0].buf, s.y[0].buf, count, 0.5)

    def backward(self, ops, s):
        cell = self.cell(s.params)
        f, r = self._directions(s, False)
        mode, n, u = s.params["merge_mode"], s.n, s.params["units"]
        count = n * f.y[0].size
        dy = s.dy[0]
        if mode == "concat":
            rows = count // u
            ops.copy2d(dy.buf, 2 * u, 0, f.dy[0].buf, u, 0, rows, u)
            ops.copy2d(dy.buf, 2 * u, u, r.dy[0].buf, u, 0, rows, u)
        elif mode == "mul":
            ops.binary("multiply", dy.buf, r.y[0].buf, f.dy[0].buf, count)
            ops.binary("multiply", dy.buf, f.y[0].buf, r.dy[0].buf, count)
        elif mode in ("sum", "ave"):
            ops.scaled(dy.buf, f.dy[0].buf, count, 1.0 if mode == "sum" else 0.5)
            r.dy = [f.dy[0]] + r.dy[1:]  # the same gradient, its own states'
        cell.backward(ops, f)
        cell.backward(ops, r)
        self.no_mask_gradient(ops, s)

    def reference(self, p, xs, ws, training=False):
        cell, cp = self.cell(p), _cell_params(p)
        halves = []
        keep, states = _keep(xs), []
        for pre, _, rev in _DIRECTIONS:
            w = {k[len(pre):]: v for k, v in ws.items() if k.startswith(pre)}
            ins = [x[:, ::-1] for x in xs] if rev else xs
            y, *final = cell.reference(cp, ins, w)
            if p["return_sequences"]:  # in the input's order, zeros where masked (Keras')
                y = (y[:, ::-1] if rev else y) * keep
            halves.append(y)
            states += final
        f, r = halves
        return {"none": [f, r], "concat": [np.concatenate([f, r], -1)], "sum": [f + r],
                "mul": [f * r], "ave": [(f + r) / 2]}[p["merge_mode"]] + states


def _as(t, like, p):
    """A scratch tensor viewed with one direction's per-sample output shape."""
    shape = tuple(like.shape[:-1]) + (p["units"],)
    return Tensor(t.buf, shape)


_CELLS = {"SimpleRNN": SimpleRNN(), "LSTM": LSTM(), "GRU": GRU()}
