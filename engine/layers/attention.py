"""Attention layers: MultiHeadAttention here, Attention (Luong) and AdditiveAttention (Bahdanau)
in attention_luong.py, on the sequences, masked softmax and seeded dropout this module holds.
The learned tables of a sequence (keras-hub's PositionEmbedding and TokenAndPositionEmbedding,
a ViT's ClassToken) are sequence_tables.py; MultiHeadAttention's ONNX reader of torch's
exported nn.MultiheadAttention is attention_torch_in.py.

Inputs are sequences (steps, features), as Keras takes them: [query, value] or [query, value,
key] (key defaults to value). Scores are batched matrix products over samples and heads
(backend/attention_ops.py bgemm, reading each head's slice of a projection in place), the
softmax per row with an optional causal mask (row i attends to steps j <= i, Keras'
use_causal_mask), and dropout on the attention probabilities while training, seeded as Dropout
(Philox keyed by (seed, layer), regenerated in the backward pass)."""

import zlib

import numpy as np

from layerloom.backend.attention_ops import heads_view, stacked_view
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Float, Int
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, get_layer, register,
                                     ShapeError, TorchForm, WeightSpec)
from layerloom.layers.attention_onnx_in import layerloom_attention_in
from layerloom.layers.attention_torch_in import torch_attention_in
from layerloom.layers.kit import kernel_and_bias_params

_MASKED = -1e9  # what Keras adds to a masked score (float32): its probability is exactly 0


def _salt(s):
    return zlib.crc32(s.node_id.encode()) ^ s.params["seed"]


def _seed_param():
    return Int("seed", 0, min=0, max=2**31 - 1, help="Added to the training seed for this layer "
                                                      "(the dropout's masks).")


def _softmax_reference(scores, causal):
    """float64 softmax over the last axis, masked positions (j > i) exactly 0."""
    if causal:
        tq, tv = scores.shape[-2:]
        keep = np.arange(tv)[None, :] <= np.arange(tq)[:, None]
        scores = np.where(keep, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sequences(in_shapes):
    """Checks [query, value(, key)] are (steps, features) and that key has value's steps."""
    if len(in_shapes) not in (2, 3):
        raise ShapeError(f"takes 2 or 3 inputs (query, value, key), has {len(in_shapes)}")
    for name, sh in zip(("query", "value", "key"), in_shapes):
        if len(sh) != 2:
            raise ShapeError(f"expects its {name} shaped (None, steps, features), got "
                             f"{fmt_shape(sh)}")
    if len(in_shapes) == 3 and in_shapes[2][0] != in_shapes[1][0]:
        raise ShapeError(f"key and value must have the same steps; value is "
                         f"{fmt_shape(in_shapes[1])}, key {fmt_shape(in_shapes[2])}")


def _causal_onnx(b, scores, tq, tv):
    """scores + a constant with -1e9 where j > i (Keras' causal mask)."""
    mask = np.where(np.arange(tv)[None, :] <= np.arange(tq)[:, None], 0.0, _MASKED)
    return b.op("Add", [scores, b.const(mask.astype(np.float32), "causal_mask")])


_CAUSAL_TORCH = ("masked_fill(~torch.ones({tq}, {tv}, dtype=torch.bool, device={x}.device)"
                 ".tril(), float('-inf'))")


class _Sequences(Layer):
    """[query, value(, key)]: key optional (ports 0 and 1 must be connected)."""
    category = "Attention"
    inputs = ("query", "value", "key")

    def min_inputs(self):
        return 2

    def output_names(self, p):
        return ["y", "scores"] if p["return_attention_scores"] else ["y"]


# -- MultiHeadAttention -------------------------------------------------------------------------
def _mha_dims(p, in_shapes):
    """(Tq, Tv, query features, value features, key features, heads, key_dim, value_dim,
    output features)."""
    _sequences(in_shapes)
    (tq, dq), (tv, dv) = in_shapes[0], in_shapes[1]
    dk = in_shapes[2][1] if len(in_shapes) == 3 else dv
    kd = p["key_dim"]
    vd = p["value_dim"] if p["value_dim"] is not None else kd
    out = p["output_shape"] if p["output_shape"] is not None else dq
    return tq, tv, dq, dv, dk, p["num_heads"], kd, vd, out


_MHA_PROJ = ("query", "key", "value")  # the input projections, in Keras' weight order


def _mha_onnx(b, n):
    p = n.params
    tq, tv, dq, dv, dk, H, kd, vd, out = _mha_dims(p, n.in_shapes)
    key = n.x[2] if len(n.x) == 3 else n.x[1]
    xs = {"query": n.x[0], "key": key, "value": n.x[1]}

    def project(name, width, perm):
        z = b.op("MatMul", [xs[name], b.const(n.w[f"{name}_kernel"].reshape(-1, H * width),
                                              f"{n.id}/{name}_kernel")])
        if p["use_bias"]:
            z = b.op("Add", [z, b.const(n.w[f"{name}_bias"].reshape(-1),
                                        f"{n.id}/{name}_bias")])
        z = b.op("Reshape", [z, b.ints([0, 0, H, width])])
        return b.op("Transpose", [z], perm=perm)
    q = b.op("Mul", [project("query", kd, [0, 2, 1, 3]), b.const(1.0 / np.sqrt(kd), "scale")])
    k = project("key", kd, [0, 2, 3, 1])  # (N, H, kd, Tv)
    v = project("value", vd, [0, 2, 1, 3])
    scores = b.op("MatMul", [q, k])
    if p["use_causal_mask"]:
        scores = _causal_onnx(b, scores, tq, tv)
    probs = b.op("Softmax", [scores], axis=-1)
    o = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    o = b.op("Reshape", [o, b.ints([0, 0, H * vd])])
    y = b.op("MatMul", [o, b.const(n.w["output_kernel"].reshape(H * vd, out),
                                   f"{n.id}/output_kernel")])
    if p["use_bias"]:
        y = b.op("Add", [y, b.const(n.w["output_bias"], f"{n.id}/output_bias")])
    return [y, probs] if p["return_attention_scores"] else [y]


_TORCH_INIT = {"zeros": "nn.init.zeros_({})", "ones": "nn.init.ones_({})",
               "random_uniform": "nn.init.uniform_({}, -0.05, 0.05)"}


def _torch_params(t, n, specs, key_of=None):
    """nn.ParameterDict of the weights in Keras' shapes, started as Keras starts them
    (glorot_uniform with Keras' fans, which torch's xavier_uniform_ computes otherwise for
    more than two axes). key_of(weight name): the parameter naming its initializer."""
    t.no_regularizers(n)
    s = n.self
    init = [f"{s} = nn.ParameterDict({{" + ", ".join(
        f"{w.name!r}: nn.Parameter(torch.empty({tuple(w.shape)!r}))" for w in specs) + "})"]
    for w in specs:
        attr = f"{s}.{w.name}"
        if w.init == "glorot_uniform":
            lim = float(np.sqrt(6.0 / (w.fan_in + w.fan_out)))
            init.append(f"nn.init.uniform_({attr}, -{lim!r}, {lim!r})  # Keras' glorot_uniform")
        elif isinstance(w.init, str) and w.init in _TORCH_INIT:
            init.append(_TORCH_INIT[w.init].format(attr))
        else:
            key = key_of(w.name) if key_of else (
                "bias_initializer" if w.name.endswith("bias") else "kernel_initializer")
            raise t.unsupported(n.id, n.type, key, w.init)
    return init


def _mha_torch(t, n):
    p, s, o = n.params, n.self, n.out
    tq, tv, dq, dv, dk, H, kd, vd, out = _mha_dims(p, n.in_shapes)
    specs = get_layer(n.type).weights(p, n.in_shapes)
    init = _torch_params(t, n, specs)
    key = n.x[2] if len(n.x) == 3 else n.x[1]
    xs = {"query": n.x[0], "key": key, "value": n.x[1]}
    fwd = []
    for name in _MHA_PROJ:
        bias = f" + {s}.{name}_bias" if p["use_bias"] else ""
        fwd.append(f"{o}_{name} = torch.einsum('btc,chd->bthd', {xs[name]}, "
                   f"{s}.{name}_kernel){bias}")
    fwd.append(f"{o}_logits = torch.einsum('bshd,bthd->bhts', {o}_key, {o}_query * "
               f"{1.0 / np.sqrt(kd)!r})")
    if p["use_causal_mask"]:
        fwd.append(f"{o}_logits = {o}_logits." + _CAUSAL_TORCH.format(tq=tq, tv=tv, x=n.x[0]))
    fwd += [f"{o}_scores = torch.softmax({o}_logits, -1)",
            f"{o}_drop = F.dropout({o}_scores, {float(p['dropout'])!r}, self.training)",
            f"{o} = torch.einsum('bhts,bshd->bthd', {o}_drop, {o}_value)",
            f"{o} = torch.einsum('bthd,hdo->bto', {o}, {s}.output_kernel)"
            + (f" + {s}.output_bias" if p["use_bias"] else "")]
    return init, fwd, {w.name: (w.name, "") for w in specs}


def _mha_keras(k, n):
    p = n.params
    kw = k.kw(n, ["num_heads", "key_dim"])
    for name, default in (("value_dim", None), ("dropout", 0.0), ("use_bias", True),
                          ("output_shape", None)):
        if p[name] != default:
            kw += k.kw(n, [name])
    kw += k.weight_args(n, ("kernel", "bias"))
    call = list(n.x[:2]) + ([f"key={n.x[2]}"] if len(n.x) == 3 else [])
    for name in ("use_causal_mask", "return_attention_scores"):
        if p[name]:
            call.append(f"{name}=True")
    line = f"layers.MultiHeadAttention({', '.join(kw + [f'name={n.id!r}'])})({', '.join(call)})"
    return [f"{', '.join(n.out)} = {line}"]


def _mha_keras_in(o, shapes):
    axes = o.get("attention_axes")
    if axes not in (None, [1], 1, [-2], -2):
        o.fail("attention_axes", "has no Layerloom form (only the sequence axis)")
    out = o.get("output_shape")
    if isinstance(out, (list, tuple)):
        if len(out) != 1:
            o.fail("output_shape", "has no Layerloom form (only one output axis)")
        out = out[0]
    return {"num_heads": o.get("num_heads"), "key_dim": o.get("key_dim"),
            "value_dim": o.get("value_dim"), "dropout": o.floats("dropout", 0.0),
            "use_bias": o.get("use_bias", True), "output_shape": out,
            **o.weight_params("kernel", "bias")}


def _mha_weight_order(p):
    names = ["query", "key", "value", "output"]
    return [f"{x}_{w}" for x in names for w in (("kernel", "bias") if p["use_bias"]
                                                 else ("kernel",))]


@register
class MultiHeadAttention(_Sequences):
    type_id = "MultiHeadAttention"
    help = ("Multi-head scaled dot-product attention (Keras' MultiHeadAttention): inputs query "
            "(Tq, dim), value (Tv, dim) and optionally key (Tv, dim); output (Tq, output_shape "
            "or query's dim), and the scores (heads, Tq, Tv) with return_attention_scores.")
    params = (
        Int("num_heads", 2, min=1, help="Number of attention heads."),
        Int("key_dim", 8, min=1, help="Size of each head for query and key."),
        Int("value_dim", None, min=1, help="Size of each head for value (null: key_dim)."),
        Float("dropout", 0.0, min=0.0, max=1.0, max_exclusive=True,
              help="Dropout on the attention probabilities, while training."),
        Bool("use_bias", True, help="The projections add biases."),
        Int("output_shape", None, min=1, help="Features of the output (null: query's)."),
        Int("attention_axes", None, min=1, max=1,
            help="Axis attention runs over: null or 1, the sequence axis (the only one "
                 "available)."),
        Bool("use_causal_mask", False, help="Each query step attends to key steps up to its "
                                            "own (Keras' call argument)."),
        Bool("return_attention_scores", False, help="A second output: the attention "
                                                    "probabilities (heads, Tq, Tv)."),
        _seed_param(),
    ) + kernel_and_bias_params()
    headline = ("num_heads", "key_dim")
    examples = (
        ({"num_heads": 2, "key_dim": 3}, [(4, 5), (3, 5)]),
        ({"num_heads": 1, "key_dim": 4, "value_dim": 2, "output_shape": 3,
          "use_causal_mask": True}, [(4, 3), (5, 2), (5, 6)]),
        ({"num_heads": 3, "key_dim": 2, "use_bias": False, "return_attention_scores": True,
          "use_causal_mask": True}, [(5, 4), (3, 4)]),
        ({"num_heads": 2, "key_dim": 5, "dropout": 0.3, "kernel_regularizer": {"l2": 0.01}},
         [(6, 7), (6, 7)]),
        # 8 and 16 value steps: the softmax in vectors (attn_softmax_ew)
        ({"num_heads": 2, "key_dim": 3, "return_attention_scores": True}, [(3, 4), (8, 4)]),
        ({"num_heads": 1, "key_dim": 2}, [(2, 3), (16, 3)]),
    )
    onnx_form = OnnxForm(_mha_onnx, "MatMul, Add (projections), Reshape, Transpose, Mul (scale), "
                         "MatMul, Add (causal mask), Softmax, MatMul, Transpose, Reshape, "
                         "MatMul, Add",
                         reads={"Transpose": OnnxRead({"perm"}, torch_attention_in),
                                "MatMul": OnnxRead((), layerloom_attention_in)})
    torch_form = TorchForm(_mha_torch, state_ports=True)
    keras_form = KerasForm("MultiHeadAttention", read=_mha_keras_in, write=_mha_keras,
                           weights=("kernel", "bias"), weight_order=_mha_weight_order,
                           doc="layers.MultiHeadAttention(...)(query, value, key=key, "
                               "use_causal_mask=..., return_attention_scores=...)")

    def output_shapes(self, p, in_shapes):
        tq, tv, dq, dv, dk, H, kd, vd, out = _mha_dims(p, in_shapes)
        return [(tq, out)] + ([(H, tq, tv)] if p["return_attention_scores"] else [])

    def weights(self, p, in_shapes):
        tq, tv, dq, dv, dk, H, kd, vd, out = _mha_dims(p, in_shapes)
        ws = []
        for name, shape, bias in (("query", (dq, H, kd), (H, kd)), ("key", (dk, H, kd), (H, kd)),
                                  ("value", (dv, H, vd), (H, vd)),
                                  ("output", (H, vd, out), (out,))):
            rf = int(np.prod(shape[:-2]))  # Keras' fans of an EinsumDense kernel
            ws.append(WeightSpec(f"{name}_kernel", shape, p["kernel_initializer"],
                                 shape[-2] * rf, shape[-1] * rf,
                                 regularizer=p["kernel_regularizer"]))
            if p["use_bias"]:
                ws.append(WeightSpec(f"{name}_bias", bias, p["bias_initializer"],
                                     regularizer=p["bias_regularizer"]))
        return ws

    def scratch(self, p, in_shapes):
        tq, tv, dq, dv, dk, H, kd, vd, out = _mha_dims(p, in_shapes)
        sc = {"q": (tq, H * kd), "k": (tv, H * kd), "v": (tv, H * vd), "o": (tq, H * vd),
              "dq": (tq, H * kd), "dk": (tv, H * kd), "dv": (tv, H * vd), "do": (tq, H * vd),
              "dp": (H, tq, tv)}
        if not p["return_attention_scores"]:
            sc["p"] = (H, tq, tv)
        if p["dropout"] > 0:
            sc["pd"] = (H, tq, tv)
        return sc

    def _probs(self, s):
        return s.y[1].buf if s.params["return_attention_scores"] else s.scratch["p"].buf

    def _dropped(self, s):
        return s.training and s.params["dropout"] > 0

    def forward(self, ops, s):
        p, n = s.params, s.n
        tq, tv, dq, dv, dk, H, kd, vd, out = _mha_dims(p, [x.shape for x in s.x])
        sc, w = s.scratch, s.w
        key = s.x[2] if len(s.x) == 3 else s.x[1]
        bias = (lambda name: w[f"{name}_bias"].buf) if p["use_bias"] else (lambda name: None)
        ops.gemm(n * tq, H * kd, dq, s.x[0].buf, w["query_kernel"].buf, sc["q"].buf,
                 bias=bias("query"))
        ops.gemm(n * tv, H * kd, dk, key.buf, w["key_kernel"].buf, sc["k"].buf,
                 bias=bias("key"))
        ops.gemm(n * tv, H * vd, dv, s.x[1].buf, w["value_kernel"].buf, sc["v"].buf,
                 bias=bias("value"))
        probs = self._probs(s)
        ops.bgemm(tq, tv, kd, n, H, heads_view(sc["q"].buf, tq, H, kd),
                  heads_view(sc["k"].buf, tv, H, kd).T, stacked_view(probs, tq, tv, H),
                  alpha=1.0 / np.sqrt(kd))
        ops.attn_softmax(probs, probs, n * H * tq, tv, tq, p["use_causal_mask"])
        if self._dropped(s):
            ops.dropout(probs, sc["pd"].buf, n * H * tq * tv, p["dropout"], s.seed, _salt(s),
                        s.step)
            probs = sc["pd"].buf
        ops.bgemm(tq, vd, tv, n, H, stacked_view(probs, tq, tv, H),
                  heads_view(sc["v"].buf, tv, H, vd), heads_view(sc["o"].buf, tq, H, vd))
        ops.gemm(n * tq, out, H * vd, sc["o"].buf, w["output_kernel"].buf, s.y[0].buf,
                 bias=bias("output"))

    def backward(self, ops, s):
        p, n = s.params, s.n
        tq, tv, dq, dv, dk, H, kd, vd, out = _mha_dims(p, [x.shape for x in s.x])
        sc, w, dw = s.scratch, s.w, s.dw
        dy = s.dy[0].buf
        # output projection
        ops.gemm(H * vd, out, n * tq, sc["o"].buf, dy, dw["output_kernel"].buf, trans_a=True)
        if p["use_bias"]:
            ops.bias_grad(dy, dw["output_bias"].buf, n * tq, out)
        ops.gemm(n * tq, H * vd, out, dy, w["output_kernel"].buf, sc["do"].buf, trans_b=True)
        probs = self._probs(s)
        used = sc["pd"].buf if self._dropped(s) else probs
        do_h = heads_view(sc["do"].buf, tq, H, vd)
        dp = sc["dp"].buf
        ops.bgemm(tq, tv, vd, n, H, do_h, heads_view(sc["v"].buf, tv, H, vd).T,
                  stacked_view(dp, tq, tv, H))
        ops.bgemm(tv, vd, tq, n, H, stacked_view(used, tq, tv, H).T, do_h,
                  heads_view(sc["dv"].buf, tv, H, vd))
        count = n * H * tq * tv
        if self._dropped(s):
            ops.dropout(dp, dp, count, p["dropout"], s.seed, _salt(s), s.step)
        if p["return_attention_scores"] and s.dy[1] is not None:
            ops.add2(dp, s.dy[1].buf, dp, count)
        ops.attn_softmax_grad(probs, dp, dp, n * H * tq, tv)
        alpha = 1.0 / np.sqrt(kd)
        ops.bgemm(tq, kd, tv, n, H, stacked_view(dp, tq, tv, H),
                  heads_view(sc["k"].buf, tv, H, kd), heads_view(sc["dq"].buf, tq, H, kd),
                  alpha=alpha)
        ops.bgemm(tv, kd, tq, n, H, stacked_view(dp, tq, tv, H).T,
                  heads_view(sc["q"].buf, tq, H, kd), heads_view(sc["dk"].buf, tv, H, kd),
                  alpha=alpha)
        # the input projections; without a key input, value takes both key's and value's
        keyed = len(s.x) == 3
        plan = (("query", 0, dq, kd, tq, s.acc[0]), ("value", 1, dv, vd, tv, s.acc[1]),
                ("key", 2 if keyed else 1, dk, kd, tv, s.acc[2] if keyed else True))
        for name, port, d_in, width, steps, acc in plan:
            dz, rows = sc[f"d{name[0]}"].buf, n * steps
            ops.gemm(d_in, H * width, rows, s.x[port].buf, dz, dw[f"{name}_kernel"].buf,
                     trans_a=True)
            if p["use_bias"]:
                ops.bias_grad(dz, dw[f"{name}_bias"].buf, rows, H * width)
            if s.dx[port] is not None:
                ops.gemm(rows, d_in, H * width, dz, w[f"{name}_kernel"].buf, s.dx[port].buf,
                         trans_b=True, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        tq, tv, dq, dv, dk, H, kd, vd, out = _mha_dims(p, [x.shape[1:] for x in xs])
        key = xs[2] if len(xs) == 3 else xs[1]

        def project(x, name):
            z = np.einsum("btc,chd->bthd", x, ws[f"{name}_kernel"])
            return z + ws[f"{name}_bias"] if p["use_bias"] else z
        q, k, v = project(xs[0], "query"), project(key, "key"), project(xs[1], "value")
        probs = _softmax_reference(np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(kd),
                                   p["use_causal_mask"])
        o = np.einsum("bhts,bshd->bthd", probs, v)
        y = np.einsum("bthd,hdo->bto", o, ws["output_kernel"])
        if p["use_bias"]:
            y = y + ws["output_bias"]
        return [y, probs] if p["return_attention_scores"] else [y]
