"""Attention (Luong's dot-product) and AdditiveAttention (Bahdanau's), Keras' names, inputs
([query, value] or [query, value, key]) and defaults, on the sequences, the masked softmax and
the seeded dropout of attention.py's MultiHeadAttention."""
import numpy as np

from layerloom.backend.attention_ops import stacked_view
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Choice, Float
from layerloom.core.registry import (KerasForm, OnnxForm, get_layer, register, ShapeError,
                                     TorchForm, WeightSpec)
from layerloom.layers.attention import (_CAUSAL_TORCH, _Sequences, _causal_onnx, _salt,
                                        _seed_param, _sequences, _softmax_reference,
                                        _torch_params)


# -- Attention (Luong) and AdditiveAttention (Bahdanau) -----------------------------------------
def _luong_dims(in_shapes):
    """(Tq, Tv, dim of query and key, dim of value)."""
    _sequences(in_shapes)
    (tq, d), (tv, dv) = in_shapes[0], in_shapes[1]
    dk = in_shapes[2][1] if len(in_shapes) == 3 else dv
    if dk != d:
        raise ShapeError(f"query and key must have the same features; query is "
                         f"{fmt_shape(in_shapes[0])}, key {fmt_shape(in_shapes[-1])}"
                         + ("" if len(in_shapes) == 3 else " (the value, without a key)"))
    return tq, tv, d, dv


def _luong_onnx(b, n):
    p, layer = n.params, n.layer
    tq, tv, d, dv = _luong_dims(n.in_shapes)
    q, v = n.x[0], n.x[1]
    k = n.x[2] if len(n.x) == 3 else v
    if layer.mode(p) == "dot":
        scores = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 2, 1])])
        if p["use_scale"]:
            scores = b.op("Mul", [scores, b.const(n.w["scale"], f"{n.id}/scale")])
    else:
        u = b.op("Add", [b.op("Unsqueeze", [q, b.ints([2])]),
                         b.op("Unsqueeze", [k, b.ints([1])])])  # (N, Tq, Tv, d)
        if p["use_scale"] and n.type == "Attention":
            u = b.op("Mul", [u, b.const(n.w["scale"], f"{n.id}/scale")])
        t = b.op("Tanh", [u])
        if p["use_scale"] and n.type == "AdditiveAttention":
            t = b.op("Mul", [t, b.const(n.w["scale"], f"{n.id}/scale")])
        scores = b.reduce("ReduceSum", t, [-1], 0)
        if n.type == "Attention":
            scores = b.op("Mul", [scores, b.const(n.w["concat_score_weight"],
                                                  f"{n.id}/concat_score_weight")])
    if p["use_causal_mask"]:
        scores = _causal_onnx(b, scores, tq, tv)
    probs = b.op("Softmax", [scores], axis=-1)
    y = b.op("MatMul", [probs, v])
    return [y, probs] if p["return_attention_scores"] else [y]


def _luong_torch(t, n):
    p, s, o, layer = n.params, n.self, n.out, get_layer(n.type)  # a TNode holds no layer
    tq, tv, d, dv = _luong_dims(n.in_shapes)
    specs = layer.weights(p, n.in_shapes)
    init = _torch_params(t, n, specs) if specs else []
    q, v = n.x[0], n.x[1]
    k = n.x[2] if len(n.x) == 3 else v
    if layer.mode(p) == "dot":
        fwd = [f"{o}_logits = {q} @ {k}.transpose(1, 2)"
               + (f" * {s}.scale" if p["use_scale"] else "")]
    else:
        u = f"({q}.unsqueeze(2) + {k}.unsqueeze(1))"
        if n.type == "Attention":
            inner = f"torch.tanh({s}.scale * {u})" if p["use_scale"] else f"torch.tanh({u})"
            fwd = [f"{o}_logits = {s}.concat_score_weight * {inner}.sum(-1)"]
        else:
            w = f"{s}.scale * " if p["use_scale"] else ""
            fwd = [f"{o}_logits = ({w}torch.tanh({u})).sum(-1)"]
    if p["use_causal_mask"]:
        fwd.append(f"{o}_logits = {o}_logits." + _CAUSAL_TORCH.format(tq=tq, tv=tv, x=q))
    fwd += [f"{o}_scores = F.dropout(torch.softmax({o}_logits, -1), {float(p['dropout'])!r}, "
            "self.training)",
            f"{o} = {o}_scores @ {v}"]
    return init, fwd, {w.name: (w.name, "") for w in specs}


def _luong_keras(k, n):
    p = n.params
    names = [q.name for q in n.layer.params if q.name in ("use_scale", "score_mode", "dropout")]
    call = [f"[{', '.join(n.x)}]"] + [f"{name}=True" for name in
                                      ("use_causal_mask", "return_attention_scores") if p[name]]
    line = (f"layers.{n.type}({', '.join(k.kw(n, names) + [f'name={n.id!r}'])})"
            f"({', '.join(call)})")
    return [f"{', '.join(n.out)} = {line}"]


def _luong_keras_in(o, shapes):
    p = {"use_scale": o.get("use_scale", o.cls == "AdditiveAttention"),
         "dropout": o.floats("dropout", 0.0)}
    if o.cls == "Attention":
        p["score_mode"] = o.get("score_mode", "dot")
    return p


class _Luong(_Sequences):
    """Attention and AdditiveAttention: scores of query and key, the softmax over the value's
    steps (masked when causal), dropout while training, then the probabilities times value."""
    onnx_form = OnnxForm(_luong_onnx, "dot: Transpose, MatMul, Mul (scale); concat and "
                         "additive: Unsqueeze, Add, Mul, Tanh, ReduceSum; then Add (causal "
                         "mask), Softmax, MatMul")
    torch_form = TorchForm(_luong_torch, state_ports=True)

    def mode(self, p):
        return "additive"

    def output_shapes(self, p, in_shapes):
        tq, tv, d, dv = _luong_dims(in_shapes)
        return [(tq, dv)] + ([(tq, tv)] if p["return_attention_scores"] else [])

    def scratch(self, p, in_shapes):
        tq, tv, d, dv = _luong_dims(in_shapes)
        sc = {"p": (tq, tv), "dp": (tq, tv)}
        if p["dropout"] > 0 and not p["return_attention_scores"]:
            sc["pd"] = (tq, tv)
        if self.mode(p) == "dot":
            if p["use_scale"]:
                sc.update(raw=(tq, tv), parts=(tq,))
        else:
            sc.update(pw=(tq, d), ps=(tq, d), pc=(tq, d))
        return sc

    def _factors(self, s):
        """additive_scores' w, s and c buffers (None: 1)."""
        w = s.w.get("scale")
        if self.type_id == "AdditiveAttention":
            return w, None, None
        return None, w, s.w["concat_score_weight"]

    def _used(self, s):
        """The probabilities the output is made of: dropped while training."""
        p = s.params
        if s.training and p["dropout"] > 0:
            return s.y[1].buf if p["return_attention_scores"] else s.scratch["pd"].buf
        return s.scratch["p"].buf

    def forward(self, ops, s):
        p, n, sc = s.params, s.n, s.scratch
        tq, tv, d, dv = _luong_dims([x.shape for x in s.x])
        q, v = s.x[0], s.x[1]
        k = s.x[2] if len(s.x) == 3 else v
        probs = sc["p"].buf
        if self.mode(p) == "dot":
            raw = sc["raw"].buf if p["use_scale"] else probs
            ops.bgemm(tq, tv, d, n, 1, stacked_view(q.buf, tq, d),
                      stacked_view(k.buf, tv, d).T, stacked_view(raw, tq, tv))
            if p["use_scale"]:
                ops.scale_by(raw, probs, s.w["scale"].buf, n * tq * tv)
        else:
            w, sv, cv = (t.buf if t is not None else None for t in self._factors(s))
            ops.additive_scores(q.buf, k.buf, probs, n, tq, tv, d, w, sv, cv)
        ops.attn_softmax(probs, probs, n * tq, tv, tq, p["use_causal_mask"])
        used = self._used(s)
        if used is not probs:
            ops.dropout(probs, used, n * tq * tv, p["dropout"], s.seed, _salt(s), s.step)
        elif p["return_attention_scores"]:
            ops.copy(probs, s.y[1].buf, n * tq * tv)
        ops.bgemm(tq, dv, tv, n, 1, stacked_view(used, tq, tv), stacked_view(v.buf, tv, dv),
                  stacked_view(s.y[0].buf, tq, dv))

    def backward(self, ops, s):
        p, n, sc = s.params, s.n, s.scratch
        tq, tv, d, dv = _luong_dims([x.shape for x in s.x])
        q, v = s.x[0], s.x[1]
        keyed = len(s.x) == 3
        k = s.x[2] if keyed else v
        dy, dp, probs, used = s.dy[0].buf, sc["dp"].buf, sc["p"].buf, self._used(s)
        count = n * tq * tv
        ops.bgemm(tq, tv, dv, n, 1, stacked_view(dy, tq, dv), stacked_view(v.buf, tv, dv).T,
                  stacked_view(dp, tq, tv))
        if s.dx[1] is not None:
            ops.bgemm(tv, dv, tq, n, 1, stacked_view(used, tq, tv).T, stacked_view(dy, tq, dv),
                      stacked_view(s.dx[1].buf, tv, dv), accumulate=s.acc[1])
        if p["return_attention_scores"] and s.dy[1] is not None:
            ops.add2(dp, s.dy[1].buf, dp, count)  # Keras returns the dropped probabilities
        if used is not probs:
            ops.dropout(dp, dp, count, p["dropout"], s.seed, _salt(s), s.step)
        ops.attn_softmax_grad(probs, dp, dp, n * tq, tv)
        dk = s.dx[2] if keyed else s.dx[1]
        acc_k = s.acc[2] if keyed else True  # value's own gradient came first
        if self.mode(p) == "dot":
            if p["use_scale"]:
                ops.row_dot(dp, sc["raw"].buf, sc["parts"].buf, n * tq, tv)
                ops.bias_grad(sc["parts"].buf, s.dw["scale"].buf, n * tq, 1)
                ops.scale_by(dp, dp, s.w["scale"].buf, count)
            if s.dx[0] is not None:
                ops.bgemm(tq, d, tv, n, 1, stacked_view(dp, tq, tv), stacked_view(k.buf, tv, d),
                          stacked_view(s.dx[0].buf, tq, d), accumulate=s.acc[0])
            if dk is not None:
                ops.bgemm(tv, d, tq, n, 1, stacked_view(dp, tq, tv).T,
                          stacked_view(q.buf, tq, d), stacked_view(dk.buf, tv, d),
                          accumulate=acc_k)
            return
        w, sv, cv = (t.buf if t is not None else None for t in self._factors(s))
        parts = (sc["pw"].buf, sc["ps"].buf, sc["pc"].buf)
        ops.additive_grad(q.buf, k.buf, dp, n, tq, tv, d,
                          s.dx[0].buf if s.dx[0] is not None else None,
                          dk.buf if dk is not None else None, parts, w, sv, cv,
                          acc_q=s.acc[0], acc_k=acc_k)
        if self.type_id == "AdditiveAttention":
            if p["use_scale"]:
                ops.bias_grad(parts[0], s.dw["scale"].buf, n * tq, d)
            return
        ops.bias_grad(parts[2], s.dw["concat_score_weight"].buf, n * tq * d, 1)
        if p["use_scale"]:
            ops.bias_grad(parts[1], s.dw["scale"].buf, n * tq * d, 1)

    def scores_reference(self, p, q, k, ws):
        t = np.tanh(q[:, :, None] + k[:, None])
        return (t * ws["scale"]).sum(-1) if p["use_scale"] else t.sum(-1)

    def reference(self, p, xs, ws, training=False):
        q, v = xs[0], xs[1]
        k = xs[2] if len(xs) == 3 else v
        probs = _softmax_reference(self.scores_reference(p, q, k, ws), p["use_causal_mask"])
        y = probs @ v
        return [y, probs] if p["return_attention_scores"] else [y]


_LUONG_CALL = (
    Bool("use_causal_mask", False, help="Each query step attends to value steps up to its own "
                                        "(Keras' call argument)."),
    Bool("return_attention_scores", False, help="A second output: the attention "
                                                "probabilities (Tq, Tv), dropped as the output "
                                                "uses them."),
)


def _dropout_param():
    return Float("dropout", 0.0, min=0.0, max=1.0, max_exclusive=True,
                 help="Dropout on the attention probabilities, while training.")


def _luong_keras_form(cls, weight_order):
    return KerasForm(cls, read=_luong_keras_in, write=_luong_keras, weight_order=weight_order,
                     doc=f"layers.{cls}(...)([query, value, key], use_causal_mask=..., "
                         "return_attention_scores=...)")


@register
class Attention(_Luong):
    type_id = "Attention"
    help = ("Dot-product (Luong) attention of query (Tq, dim) over value (Tv, dv), keyed by "
            "key (Tv, dim; default value): softmax(query . key^T) . value, or concat scores.")
    params = (Bool("use_scale", False, help="Scale the scores by a learned scalar."),
              Choice("score_mode", "dot", ("dot", "concat"),
                     help="dot: query . key; concat: sum(tanh(query + key)) times a learned "
                          "scalar."),
              _dropout_param(), _seed_param()) + _LUONG_CALL
    headline = ("score_mode",)
    examples = (
        ({}, [(4, 3), (5, 3)]),
        ({"use_scale": True, "use_causal_mask": True, "return_attention_scores": True},
         [(5, 4), (3, 2), (3, 4)]),
        ({"score_mode": "concat"}, [(3, 4), (5, 4)]),
        ({"return_attention_scores": True}, [(3, 4), (8, 4)]),
        ({"score_mode": "concat", "use_scale": True, "use_causal_mask": True, "dropout": 0.2},
         [(4, 3), (4, 2), (4, 3)]),
    )
    keras_form = _luong_keras_form("Attention", lambda p: (["scale"] if p["use_scale"] else [])
                                   + (["concat_score_weight"] if p["score_mode"] == "concat"
                                      else []))

    def mode(self, p):
        return p["score_mode"]

    def weights(self, p, in_shapes):
        _luong_dims(in_shapes)
        ws = [WeightSpec("scale", (), "ones")] if p["use_scale"] else []
        if p["score_mode"] == "concat":
            ws.append(WeightSpec("concat_score_weight", (), "ones"))
        return ws

    def scores_reference(self, p, q, k, ws):
        scale = ws["scale"] if p["use_scale"] else 1.0
        if p["score_mode"] == "dot":
            return (q @ np.swapaxes(k, 1, 2)) * scale
        return ws["concat_score_weight"] * np.tanh(scale * (q[:, :, None] + k[:, None])).sum(-1)


@register
class AdditiveAttention(_Luong):
    type_id = "AdditiveAttention"
    help = ("Additive (Bahdanau) attention of query (Tq, dim) over value (Tv, dv), keyed by key "
            "(Tv, dim; default value): softmax(sum(scale * tanh(query + key))) . value.")
    params = (Bool("use_scale", True, help="Weigh the features by a learned vector (scale)."),
              _dropout_param(), _seed_param()) + _LUONG_CALL
    examples = (
        ({}, [(4, 3), (5, 3)]),
        ({"use_scale": False, "use_causal_mask": True, "return_attention_scores": True},
         [(5, 4), (3, 2), (3, 4)]),
        ({"dropout": 0.3, "use_causal_mask": True}, [(3, 5), (3, 5)]),
    )
    keras_form = _luong_keras_form("AdditiveAttention",
                                   lambda p: ["scale"] if p["use_scale"] else [])

    def weights(self, p, in_shapes):
        tq, tv, d, dv = _luong_dims(in_shapes)
        return [WeightSpec("scale", (d,), "glorot_uniform", d, d)] if p["use_scale"] else []
