"""The interop forms of SimpleRNN, LSTM and GRU (engine/layers/recurrent.py), shared with
Bidirectional and ConvLSTM2D: ONNX out (the LSTM, GRU and RNN ops over the time-major sequence,
or the unrolled steps where the op cannot say it) and in (the ops with the Transposes, Squeezes
and Gathers exporters put around them), the PyTorch code (a loop over the steps with the
layer's own cell) and Keras in and out."""
import numpy as np

from layerloom.core.registry import KerasForm, OnnxForm, OnnxRead, TorchForm

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


_RNN_OPS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}
# the ONNX operator of each cell and its gate blocks in Keras' order (LSTM's [i, f, c, o] ->
# ONNX's [i, o, f, c]; GRU's z, r, h are ONNX's; Keras' reset_after is linear_before_reset=1)
_ONNX_CELL = {"LSTM": ("LSTM", [0, 3, 1, 2]), "GRU": ("GRU", [0, 1, 2]), "SimpleRNN": ("RNN", [0])}


def _recurrent_op(b, n, kind, prefixes, flags):
    """LSTM, GRU or RNN as one ONNX op over the time-major sequence (zero initial state), one
    direction per weight prefix (two: direction=bidirectional, the second reading backwards).
    Returns the op's outputs (Y (T, dirs, N, u), Y_h, Y_c), those flags names."""
    p, u = n.params, n.params["units"]
    op_type, order = _ONNX_CELL[kind]
    W, R, B = [], [], []
    for pre in prefixes:
        W.append(_gate_blocks(n.w[pre + "kernel"], order).T)
        R.append(_gate_blocks(n.w[pre + "recurrent_kernel"], order).T)
        rb = n.w[pre + "recurrent_bias"] if kind == "GRU" else np.zeros(len(order) * u)
        B.append(np.concatenate([_gate_blocks(n.w[pre + "bias"], order), rb]))
    attrs = {"hidden_size": u}
    if kind == "GRU":
        attrs["linear_before_reset"] = 1
    if kind == "SimpleRNN":
        attrs["activations"] = [_RNN_OPS[p["activation"]]] * len(prefixes)
    if len(prefixes) == 2:
        attrs["direction"] = "bidirectional"
    x_tm = b.op("Transpose", [n.x[0]], perm=[1, 0, 2])
    return b.op(op_type, [x_tm, b.const(np.stack(W), f"{n.id}/W"),
                          b.const(np.stack(R), f"{n.id}/R"),
                          b.const(np.stack(B), f"{n.id}/B")], outputs=flags, **attrs)


def _single_op(b, n):
    _no_mask_onnx(b, n)
    p = n.params
    states = 2 if n.type == "LSTM" else 1
    if not p["return_sequences"] and not p["return_state"]:
        # the last step of Y (as the importer reads it back; Y_h is the same tensor)
        y = _recurrent_op(b, n, n.type, [""], [True])[0]
        last = b.op("Gather", [y, b.const(n.in_shapes[0][0] - 1, "step", np.int64)], axis=0)
        return [b.op("Squeeze", [last, b.ints([0], "axes")])]
    flags = [p["return_sequences"], True] + [p["return_state"]] * (states - 1)
    outs = _recurrent_op(b, n, n.type, [""], flags)
    return _recurrent_outputs(b, n, outs[0], outs[1], outs[1:])


def _unrolled_rnn(b, n, prefix="", reverse=False):
    """A SimpleRNN whose activation ONNX's RNN lacks, unrolled over the (static) steps:
    h_t = act(x_t W + h_{t-1} U + b). (the output: the sequence in the input's order where
    return_sequences, else the last step's; the final state)"""
    p, act = n.params, n.params["activation"]
    T = n.in_shapes[0][0]
    xw = b.op("Add", [b.op("MatMul", [n.x[0], b.const(n.w[prefix + "kernel"],
                                                       f"{n.id}/{prefix}kernel")]),
                      b.const(n.w[prefix + "bias"], f"{n.id}/{prefix}bias")])
    U = b.const(n.w[prefix + "recurrent_kernel"], f"{n.id}/{prefix}recurrent_kernel")
    h, seq = None, {}
    for t in (reversed(range(T)) if reverse else range(T)):
        z = b.op("Gather", [xw, b.const(t, "step", np.int64)], axis=1)
        if h is not None:
            z = b.op("Add", [z, b.op("MatMul", [h, U])])
        h = b.activation(act, z)
        seq[t] = h
    if p["return_sequences"]:
        steps = [b.op("Unsqueeze", [seq[t], b.ints([1], "axes")]) for t in range(T)]
        return (b.op("Concat", steps, axis=1) if T > 1 else steps[0]), h
    return h, h


def _simple_rnn_onnx(b, n):
    _no_mask_onnx(b, n)
    p = n.params
    if p["activation"] in _RNN_OPS:
        return _single_op(b, n)
    y, h = _unrolled_rnn(b, n)
    return [y] + ([h] if p["return_state"] else [])


# ONNX in: LSTM, GRU and RNN over a batch-first sequence, as torch.onnx.export writes nn.LSTM,
# nn.GRU and nn.RNN with batch_first: Transpose (N, T, D) -> (T, N, D), the op, its Y (T, dirs,
# N, u) squeezed (one direction) or Transposed to (T, N, dirs, u) and Reshaped to (T, N, 2u)
# (bidirectional), and Transposed back to (N, T, ...). The time-major tensors between are kept
# in the importer's `rnn_seqs` ({ONNX tensor: (what, our value)}) and become no layer of ours.
_ONNX_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"],
                      "RNN": ["Tanh"]}
_ONNX_KIND = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "SimpleRNN"}
_RNN_ACTS_IN = {v: k for k, v in _RNN_OPS.items()}


def _seqs(imp):
    if not hasattr(imp, "rnn_seqs"):
        imp.rnn_seqs = {}
    return imp.rnn_seqs


def _transpose_in(imp, node, type_id):
    """The Transposes around a recurrent op: batch-first -> time-major before it, and back
    after it; any other is the importer's own."""
    perm = list(imp.attrs(node).get("perm", []))
    seen = _seqs(imp).get(node.input[0])
    users = imp.users(node.output[0])
    if perm == [1, 0, 2] and seen is None and node.input[0] in imp.values and users and all(
            u.op_type in _ONNX_KIND and u.input[0] == node.output[0] for u in users):
        _seqs(imp)[node.output[0]] = ("time_major", imp.values[node.input[0]])
    elif perm == [1, 0, 2] and seen is not None and seen[0] == "output":
        imp.set(node, seen[1])
    elif perm == [0, 2, 1, 3] and seen is not None and seen[0] == "Y" and seen[2] == 2:
        _seqs(imp)[node.output[0]] = ("Y_steps", seen[1])
    else:
        imp.decline(node, "not around a recurrent operator")


def _squeeze_in(imp, node, type_id):
    """Y (T, 1, N, u) of one direction squeezed to (T, N, u); its last step (1, N, u) to
    (N, u)."""
    seen = _seqs(imp).get(node.input[0])
    axes = imp.attrs(node).get("axes")
    if len(node.input) > 1 and node.input[1]:
        axes = imp.consts.get(node.input[1])
    axes = None if axes is None else sorted(int(a) % 4 for a in np.reshape(axes, -1))
    if seen is not None and seen[0] == "last" and axes == [0]:
        imp.set(node, seen[1])
    elif seen is not None and seen[0] == "Y" and seen[2] == 1 and axes == [1]:
        _seqs(imp)[node.output[0]] = ("output", seen[1])
    else:
        imp.decline(node, "not a recurrent operator's direction axis")


def _last_step(imp, node, T):
    """node takes the last step of Y: Gather on axis 0 of index T-1 (or -1)."""
    index = imp.consts.get(node.input[1]) if len(node.input) > 1 else None
    return node.op_type == "Gather" and imp.attrs(node).get("axis", 0) == 0 and \
        index is not None and np.size(index) == 1 and int(np.reshape(index, -1)[0]) in (T - 1, -1)


def _gather_in(imp, node, type_id):
    """The last step of a recurrent operator's Y: the layer's output without the sequence."""
    seen = _seqs(imp).get(node.input[0])
    if seen is None or seen[0] != "Y_last":
        imp.decline(node, "not the last step of a recurrent operator's output")
    _seqs(imp)[node.output[0]] = ("last", seen[1])


def _reshape_in(imp, node, type_id):
    """Both directions' (T, N, 2, u) as (T, N, 2u): the Bidirectional's concatenated output."""
    seen = _seqs(imp).get(node.input[0])
    shape = imp.consts.get(node.input[1]) if len(node.input) > 1 else None
    if seen is None or seen[0] != "Y_steps" or shape is None:
        imp.decline(node, "not a bidirectional recurrent operator's output")
    shape = [int(d) for d in np.reshape(shape, -1)]
    u = imp.shape(seen[1])[-1] // 2
    if len(shape) != 3 or shape[2] not in (-1, 2 * u):
        imp.fail(node, f"target shape {shape}: only the two directions side by side, "
                       f"(steps, batch, {2 * u}), map")
    _seqs(imp)[node.output[0]] = ("output", seen[1])


def _rnn_in(imp, node, type_id):
    """ONNX's LSTM, GRU or RNN (forward or bidirectional, zero initial state) as our layer of
    that cell, or a Bidirectional (merge_mode concat) over it; its output the whole sequence."""
    kind = _ONNX_KIND[node.op_type]
    a = imp.attrs(node)
    seen = _seqs(imp).get(node.input[0])
    if seen is None or seen[0] != "time_major":
        imp.fail(node, "its input is not a (batch, steps, features) sequence transposed to "
                       "time-major (perm [1, 0, 2]), as torch.onnx.export writes batch_first")
    direction = imp.text(a.get("direction", "forward"))
    if direction not in ("forward", "bidirectional"):
        imp.fail(node, f"direction {direction!r} has no Layerloom form (forward, bidirectional)")
    dirs = 2 if direction == "bidirectional" else 1
    if a.get("layout", 0):
        imp.fail(node, "layout=1 (batch-major) has no Layerloom form")
    if a.get("input_forget", 0):
        imp.fail(node, "input_forget=1 has no Layerloom form")
    if kind == "GRU" and a.get("linear_before_reset", 0) != 1:
        imp.fail(node, "linear_before_reset=0 has no Layerloom form (Keras' GRU is "
                       "reset_after: linear_before_reset=1)")
    acts = [imp.text(x) for x in a.get("activations", [])] or \
        _ONNX_DEFAULT_ACTS[node.op_type] * dirs
    params = {}
    if kind == "SimpleRNN":
        if len(set(acts)) != 1 or acts[0] not in _RNN_ACTS_IN:
            imp.fail(node, f"activations {acts}: one of Tanh, Relu, Sigmoid, the same for "
                           "both directions")
        params["activation"] = _RNN_ACTS_IN[acts[0]]
    elif acts != _ONNX_DEFAULT_ACTS[node.op_type] * dirs:
        imp.fail(node, f"activations {acts} have no Layerloom form (only ONNX's defaults)")
    for i, what in ((4, "sequence_lens"), (7, "peepholes")):
        if len(node.input) > i and node.input[i]:
            if what == "peepholes" and not np.any(imp.const(node, i, what)):
                continue
            imp.fail(node, f"its {what} have no Layerloom form")
    for i in (5, 6):  # initial_h, initial_c: zeros only
        if len(node.input) > i and node.input[i]:
            init = imp.consts.get(node.input[i])
            if init is None or np.any(init):
                imp.fail(node, "an initial state other than zeros has no Layerloom form")
    op_type, order = _ONNX_CELL[kind]
    back = np.argsort(order)  # ONNX's gate blocks -> Keras'
    G = len(order)
    u = int(a.get("hidden_size") or imp.const(node, 2, "R").shape[-1])
    W, R = imp.const(node, 1, "W"), imp.const(node, 2, "R")
    B = imp.const(node, 3, "B") if len(node.input) > 3 and node.input[3] else \
        np.zeros((dirs, 2 * G * u), np.float32)
    if W.shape[0] != dirs or W.shape[1] != G * u or R.shape != (dirs, G * u, u) or \
            B.shape != (dirs, 2 * G * u):
        imp.fail(node, f"weights shaped W {W.shape}, R {R.shape}, B {B.shape} do not match "
                       f"hidden_size {u}")
    weights = {}
    for d, pre in enumerate(["forward_", "backward_"][:dirs] if dirs == 2 else [""]):
        wb, rb = B[d, :G * u], B[d, G * u:]
        weights[pre + "kernel"] = _gate_blocks(W[d].T, back)
        weights[pre + "recurrent_kernel"] = _gate_blocks(R[d].T, back)
        if kind == "GRU":  # reset_after keeps the recurrent bias apart
            weights[pre + "bias"] = _gate_blocks(wb, back)
            weights[pre + "recurrent_bias"] = _gate_blocks(rb, back)
        else:
            weights[pre + "bias"] = _gate_blocks(wb + rb, back)
    T = imp.shape(seen[1])[0]
    users = imp.users(node.output[0])
    last = dirs == 1 and users and all(_last_step(imp, n, T) for n in users)
    params.update(units=u, return_sequences=not last)
    if dirs == 2:
        params.update(layer=kind, merge_mode="concat")
    nid = imp.add(node, "Bidirectional" if dirs == 2 else kind, params, [seen[1]])
    for k, v in weights.items():
        imp.weights[f"{nid}/{k}"] = np.ascontiguousarray(v, np.float32)
    _seqs(imp)[node.output[0]] = ("Y_last", imp.result(nid)) if last else \
        ("Y", imp.result(nid), dirs)


_ONNX_ATTRIBUTES = {"hidden_size", "direction", "activations", "layout", "input_forget"}


def _onnx_reads(op):
    """The ONNX operator this cell is read from, and (declared once, on LSTM) the Transposes,
    Squeezes and Reshapes around one."""
    attrs = _ONNX_ATTRIBUTES | ({"linear_before_reset"} if op == "GRU" else set())
    reads = {op: OnnxRead(attrs, _rnn_in)}
    if op == "LSTM":
        reads.update(Transpose=OnnxRead({"perm"}, _transpose_in),
                     Squeeze=OnnxRead({"axes"}, _squeeze_in),
                     Gather=OnnxRead({"axis"}, _gather_in),
                     Reshape=OnnxRead({"allowzero"}, _reshape_in))
    return reads


# PyTorch: Keras' equations as a loop over the steps, the weights in Layerloom's (and Keras')
# layout: kernel (features, G * units), recurrent_kernel (units, G * units)
_RNN_STEP = {  # w(name): the weight's expression; x: the step's input
    "SimpleRNN": lambda t, n, o, x, u, w: [f"{o}_h = " + t.activation(
        n, f"{x} @ {w('kernel')} + {o}_h @ {w('recurrent_kernel')} + {w('bias')}")],
    "LSTM": lambda t, n, o, x, u, w: [
        f"{o}_z = {x} @ {w('kernel')} + {o}_h @ {w('recurrent_kernel')} + {w('bias')}",
        f"{o}_i, {o}_f = torch.sigmoid({o}_z[:, :{u}]), torch.sigmoid({o}_z[:, {u}:{2 * u}])",
        f"{o}_c = {o}_f * {o}_c + {o}_i * torch.tanh({o}_z[:, {2 * u}:{3 * u}])",
        f"{o}_h = torch.sigmoid({o}_z[:, {3 * u}:]) * torch.tanh({o}_c)"],
    "GRU": lambda t, n, o, x, u, w: [  # reset_after: r multiplies the recurrent projection
        f"{o}_xw = {x} @ {w('kernel')} + {w('bias')}",
        f"{o}_hu = {o}_h @ {w('recurrent_kernel')} + {w('recurrent_bias')}",
        f"{o}_zt = torch.sigmoid({o}_xw[:, :{u}] + {o}_hu[:, :{u}])",
        f"{o}_r = torch.sigmoid({o}_xw[:, {u}:{2 * u}] + {o}_hu[:, {u}:{2 * u}])",
        f"{o}_hh = torch.tanh({o}_xw[:, {2 * u}:] + {o}_r * {o}_hu[:, {2 * u}:])",
        f"{o}_h = {o}_zt * {o}_h + (1 - {o}_zt) * {o}_hh"],
}
_GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def _cell_weights(kind):
    return _WEIGHTS + (("recurrent_bias",) if kind == "GRU" else ())


def _torch_init(t, n, kind, prefixes):
    """A ParameterDict of the weights (Layerloom's names, each prefix's) and their
    initialisation."""
    t.no_regularizers(n)
    if n.params.get("recurrent_regularizer"):
        raise t.unsupported(n.id, n.type, "recurrent_regularizer",
                            n.params["recurrent_regularizer"])
    p, s = n.params, n.self
    u, g, d = int(p["units"]), _GATES[kind], n.in_shapes[0][-1]
    shapes = {"kernel": (d, g * u), "recurrent_kernel": (u, g * u), "bias": (g * u,),
              "recurrent_bias": (g * u,)}
    names = [(pre + k, k) for pre in prefixes for k in _cell_weights(kind)]
    init = [f"{s} = nn.ParameterDict({{" + ", ".join(
        f"{name!r}: nn.Parameter(torch.empty{shapes[k]!r})" for name, k in names) + "})"]
    rec = p.get("recurrent_initializer", "orthogonal")
    for name, k in names:
        if k == "kernel":
            init.append(t.init(n, f"{s}.{name}", "kernel_initializer", "glorot_uniform"))
        elif k == "recurrent_kernel":
            init.append(t.init(n, f"{s}.{name}", "recurrent_initializer", rec)
                        if rec != "orthogonal" else f"nn.init.orthogonal_({s}.{name})")
        else:
            init.append(t.init(n, f"{s}.{name}", "bias_initializer", "zeros"))
            if kind == "LSTM" and k == "bias" and p.get("bias_initializer", "zeros") == "zeros":
                init.append(f"nn.init.ones_({s}.{name}[{u}:{2 * u}])  # Keras' unit_forget_bias")
    return init, {name: (name, "") for name, _ in names}


def _torch_loop(t, n, kind, o, x, prefix="", reverse=False, zero_masked=False):
    """The lines running one direction over the steps of x: {o}_h (and {o}_c) the final
    state, {o}_seq the outputs (in the input's order) where return_sequences. With a mask
    input (n.x[1], the ids) a step of id 0 keeps the state (its output zeros with
    zero_masked, a Bidirectional's)."""
    u = int(n.params["units"])
    ids = n.x[1] if len(n.x) > 1 else None
    fwd = [f"{o}_h = {x}.new_zeros({x}.shape[0], {u})"]
    if kind == "LSTM":
        fwd.append(f"{o}_c = torch.zeros_like({o}_h)")
    steps = f"reversed(range({x}.shape[1]))" if reverse else f"range({x}.shape[1])"
    fwd += [f"{o}_seq = []", f"for {o}_t in {steps}:"]
    states = [f"{o}_h"] + ([f"{o}_c"] if kind == "LSTM" else [])
    if ids is not None:
        fwd.append(f"    {o}_before = ({', '.join(states)},)")
    fwd += ["    " + line for line in _RNN_STEP[kind](
        t, n, o, f"{x}[:, {o}_t]", u, lambda k: f"{n.self}.{prefix}{k}")]
    out = f"{o}_h"
    if ids is not None:  # a masked step carries the state over
        fwd.append(f"    {o}_m = ({ids}[:, {o}_t] != 0).unsqueeze(1)")
        fwd += [f"    {st} = torch.where({o}_m, {st}, {o}_before[{i}])"
                for i, st in enumerate(states)]
        if zero_masked:
            out = f"{o}_h * {o}_m"
    fwd.append(f"    {o}_seq.append({out})")
    if n.params["return_sequences"]:
        fwd.append(f"{o}_seq = torch.stack({o}_seq{'[::-1]' if reverse else ''}, 1)")
    else:
        fwd.append(f"{o}_seq = {o}_h")
    return fwd


def _recurrent_torch(t, n):
    init, weights = _torch_init(t, n, n.type, [""])
    o = n.out
    fwd = _torch_loop(t, n, n.type, o, n.x[0]) + [f"{o} = {o}_seq"]
    # return_state: ports h (and c) are {o}_h and {o}_c, the final states (torch_code's names)
    return init, fwd, weights


# Keras out and in
def _recurrent_keras(k, n):
    names = ["units"] + (["activation"] if n.type == "SimpleRNN" else []) + \
        ["return_sequences", "return_state"]
    line = _with_mask(n, k.call(n.type, k.kw(n, names) + k.weight_args(
        n, ("kernel", "recurrent", "bias")), n, n.x[:1]))
    if len(n.out) == 1:
        return [f"{n.out[0]} = {line}"]
    return [f"{', '.join(n.out)} = {line}"]


def _with_mask(n, call):
    """A layer's call `layers.X(...)(x)` given the mask its ids make (x, mask=ids != 0)."""
    if len(n.x) < 2:
        return call
    return f"{call[:-1]}, mask=ops.not_equal({n.x[1]}, 0))"


def _no_mask_onnx(b, n):
    if len(n.in_shapes) > 1:
        b.fail("a mask input has no ONNX form (ONNX's recurrent operators take sequence "
               "lengths, not a mask of any steps)")


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
    onnx_op = {"SimpleRNN": "RNN"}.get(type_id, type_id)
    return (OnnxForm(onnx_convert, onnx_ops, reads=_onnx_reads(onnx_op)),
            TorchForm(_recurrent_torch, state_ports=True),
            KerasForm(type_id, write=_recurrent_keras, read=_recurrent_keras_in(type_id),
                      weight_order=("kernel", "recurrent_kernel", "bias"), **keras))
