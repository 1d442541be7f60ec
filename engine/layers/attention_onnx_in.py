"""ONNX in: Layerloom's own MultiHeadAttention export (attention.py's _mha_onnx) read back as one
MultiHeadAttention. The export spreads the layer over plain operators, so the whole subgraph is
recognised from its first node, the query's projection (a MatMul, which is otherwise a Dense),
and every ONNX node in it absorbed:

  query: MatMul (a (dq, H * kd) constant) -> [Add (H * kd,)] -> Reshape (N, Tq, H, kd) ->
         Transpose [0, 2, 1, 3] -> Mul (1 / sqrt(kd), one number)
  key:   MatMul (a (dk, H * kd) constant) -> [Add (H * kd,)] -> Reshape (N, Tv, H, kd) ->
         Transpose [0, 2, 3, 1]
  value: MatMul (a (dv, H * vd) constant) -> [Add (H * vd,)] -> Reshape (N, Tv, H, vd) ->
         Transpose [0, 2, 1, 3]
  MatMul (query, key) -> [Add of the causal mask, a (Tq, Tv) constant: 0 where j <= i,
  -1e9 or less above] -> Softmax (last axis) -> MatMul (the probabilities, value) ->
  Transpose [0, 2, 1, 3] -> Reshape (N, Tq, H * vd) -> MatMul (a (H * vd, out) constant) ->
  [Add (out,)]

The Adds in brackets are there with use_bias (all five or none, Keras' one use_bias), the
causal mask's with use_causal_mask. Each step is checked by its operator, its attributes and
the shape ONNX's shape inference gives its result; every tensor between is read by the next
step alone, except the probabilities, which other nodes may read too: they are then the
layer's second output (return_attention_scores). Until the scores' MatMul of a scaled query
and a transposed key projection is found, the MatMul is declined (a Dense, the importer's own
reader); after that anything else is refused naming the node and what was expected.

What the export does not write comes back as the defaults: dropout 0 (ONNX holds the
inference graph, without the attention's dropout), seed 0, the initializers and regularizers;
attention_axes null (1, the only other value, is the same computation); value_dim and
output_shape null where they equal key_dim and the query's features; the key as a third input
only where it is another tensor than the value; return_attention_scores only where the scores
are read (an unread second output leaves no trace in the file)."""
import numpy as np

from layerloom.layers.attention_torch_in import _Match as _TorchMatch

_MASKED = -1e9  # attention.py's causal mask value (its probability is exactly 0)


class _Projection:
    """One input's projection: x (the tensor name), kernel, bias (None), heads, width, steps,
    end (its Transpose)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Match(_TorchMatch):
    """Walks the subgraph from its first node (torch's walker's steps). fail() declines while
    not yet committed (the MatMul may be a Dense), else refuses naming the node reached."""
    who = "Layerloom's attention"

    def __init__(self, imp, start):
        super().__init__(imp, start)
        self.nodes.append(start)
        self.committed = False

    def fail(self, node, why):
        if not self.committed:
            self.imp.decline(self.start, f"not Layerloom's MultiHeadAttention export ({why})")
        super().fail(node, why)

    refuse = fail

    def other(self, node, name):
        """node's input other than tensor `name` (a binary operator's), else None."""
        others = [i for i in node.input if i != name]
        return others[0] if len(others) == 1 and len(node.input) == 2 else None

    def perm(self, node, want, what=None):
        self.only(node, {"perm"})
        super().perm(node, want, what)

    def before(self, name, op, what, reader):
        """The node computing tensor `name`, of operator op and read by `reader` alone."""
        n = self.imp.producer(name)
        if n is None or n.op_type != op or self.imp.reader(name) is not reader:
            found = "no node" if n is None else n.op_type
            self.refuse(reader, f"expected {what} ({op}) computed for it alone; found {found}")
        return n

    def projection(self, mm, perm, what):
        """The projection from its MatMul `mm` to its Transpose `perm` (the module docstring);
        its nodes taken."""
        imp = self.imp
        w = imp.consts.get(mm.input[1]) if len(mm.input) == 2 else None
        x = imp.values.get(mm.input[0])
        if w is None or np.ndim(w) != 2:
            self.refuse(mm, f"{what}'s projection: expected the input times a matrix constant")
        if x is None:
            self.refuse(mm, f"{what}'s projection: its input {mm.input[0]!r} is not computed "
                            "before the attention")
        if x.nchw or x.pooled or len(imp.shape(x)) != 2 or imp.shape(x)[1] != w.shape[0]:
            self.refuse(mm, f"{what}'s projection: expected a sequence (steps, {w.shape[0]}) "
                            "times the kernel")
        steps, cols = imp.shape(x)[0], w.shape[1]
        if mm is not self.start:
            self.nodes.append(mm)
        bias, after = None, imp.reader(mm.output[0])
        if after is not None and after.op_type == "Add":
            add = self.next(mm, "Add", f"{what}'s bias")
            bias = imp.consts.get(self.other(add, mm.output[0]) or "")
            if bias is None or np.shape(bias) != (cols,):
                self.refuse(add, f"{what}'s bias: expected a ({cols},) constant")
            step = self.next(add, "Reshape", f"{what}'s heads")
        else:
            step = self.next(mm, "Reshape", f"{what}'s heads")
        dims = imp.dims(step.output[0]) or []
        heads = dims[2] if len(dims) == 4 and dims[2] and cols % dims[2] == 0 else None
        if heads is None:
            self.refuse(step, f"{what}'s heads shaped {dims}, expected (N, {steps}, heads, "
                              f"{cols} / heads)")
        self.shape(step, [self.batch, steps, heads, cols // heads], f"{what}'s heads")
        end = self.next(step, "Transpose", f"{what}'s heads first")
        self.perm(end, perm, f"{what}'s heads first")
        return _Projection(x=mm.input[0], kernel=w, bias=bias, heads=heads,
                           width=cols // heads, steps=steps, end=end)

    def projection_of(self, name, perm, what, reader):
        """The projection whose Transpose computes tensor `name`, read by `reader` alone,
        walked back to its MatMul then forward as projection() does."""
        end = self.before(name, "Transpose", f"{what}'s heads first", reader)
        reshape = self.before(end.input[0], "Reshape", f"{what}'s heads", end)
        first = self.imp.producer(reshape.input[0])
        if first is not None and first.op_type == "Add":
            const = [i for i in first.input if i in self.imp.consts]
            rest = [i for i in first.input if i not in self.imp.consts]
            first = self.imp.producer(rest[0]) if len(const) == 1 and len(rest) == 1 else None
        if first is None or first.op_type != "MatMul":
            self.refuse(reshape, f"expected {what}'s projection (a MatMul, and an Add of its "
                                 "bias) before it")
        p = self.projection(first, perm, what)
        if p.end is not end:
            self.refuse(end, f"{what}'s projection does not lead to it")
        return p


def _causal(mask, tq, tv):
    """Whether mask is the export's causal mask: 0 where j <= i, -1e9 or less above."""
    if mask is None or np.shape(mask) not in ((tq, tv), (1, tq, tv), (1, 1, tq, tv)):
        return False
    m = np.reshape(np.asarray(mask, np.float64), (tq, tv))
    keep = np.arange(tv)[None, :] <= np.arange(tq)[:, None]
    return bool(np.all(m[keep] == 0.0) and np.all(m[~keep] <= _MASKED))


def layerloom_attention_in(imp, node, type_id):
    """The MatMul that starts Layerloom's exported MultiHeadAttention (the query's projection):
    the subgraph as one MultiHeadAttention (the module docstring); declines a MatMul that is
    not its start (a Dense, a MatMul of two tensors)."""
    if len(node.input) != 2 or node.input[1] not in imp.consts or \
            node.input[0] not in imp.values:
        imp.decline(node, "not Layerloom's MultiHeadAttention export (a MatMul of a tensor by a "
                          "constant starts it)")
    m = _Match(imp, node)
    q = m.projection(node, [0, 2, 1, 3], "the query")
    mul = m.next(q.end, "Mul", "the query's scale")
    scale = imp.scalar(m.other(mul, q.end.output[0]) or "")
    if scale is None:
        m.refuse(mul, "the query's scale: expected a Mul by one number")
    scores = m.next(mul, "MatMul", "the scores")
    key_t = imp.producer(scores.input[1]) if len(scores.input) == 2 else None
    if scores.input[0] != mul.output[0] or key_t is None or key_t.op_type != "Transpose" or \
            list(imp.attrs(key_t).get("perm", [])) != [0, 2, 3, 1]:
        m.refuse(scores, "the scores: expected the scaled query times the key's Transpose "
                         "[0, 2, 3, 1]")
    m.committed = True  # from here on it is the attention: anything else is refused
    k = m.projection_of(scores.input[1], [0, 2, 3, 1], "the key", scores)
    H, kd, tq, tv = q.heads, q.width, q.steps, k.steps
    if (k.heads, k.width) != (H, kd):
        m.refuse(k.end, f"the key's heads ({k.heads} of {k.width}) differ from the query's "
                        f"({H} of {kd})")
    if abs(scale * np.sqrt(kd) - 1.0) > 1e-6:
        m.refuse(mul, f"the query scaled by {scale!r}, not 1 / sqrt({kd}) (Keras' and "
                      "Layerloom's)")
    m.shape(scores, [m.batch, H, tq, tv], "the scores")
    step, causal, after = scores, False, imp.reader(scores.output[0])
    if after is not None and after.op_type == "Add":
        step = m.next(scores, "Add", "the causal mask")
        if not _causal(imp.consts.get(m.other(step, scores.output[0]) or ""), tq, tv):
            m.refuse(step, f"expected the causal mask, a ({tq}, {tv}) constant of 0 where "
                           "j <= i and -1e9 above (another mask has no Layerloom form)")
        causal = True
    softmax = m.next(step, "Softmax", "the scores' Softmax")
    m.only(softmax, {"axis"})
    if imp.attrs(softmax).get("axis", -1 if imp.opset >= 13 else 1) % 4 != 3:
        m.refuse(softmax, "a softmax along another axis than the keys'")
    probs = softmax.output[0]
    mixes = [n for n in imp.users(probs) if n.op_type == "MatMul" and n.input[0] == probs and
             len(n.input) == 2 and _values_transpose(imp, n.input[1])]
    if len(mixes) != 1:
        m.refuse(softmax, "expected one MatMul of the probabilities by the value's heads")
    mix = mixes[0]
    m.nodes.append(mix)
    scores_read = imp.uses.get(probs, 0) > 1 or probs in imp.graph_outputs
    v = m.projection_of(mix.input[1], [0, 2, 1, 3], "the value", mix)
    vd = v.width
    if v.heads != H or v.steps != tv:
        m.refuse(v.end, f"the value's heads ({v.heads}, over {v.steps} steps) differ from the "
                        f"key's ({H}, over {tv} steps)")
    if len({q.bias is None, k.bias is None, v.bias is None}) != 1:
        m.refuse(node, "projections with and without biases (Keras' one use_bias)")
    use_bias = q.bias is not None
    m.shape(mix, [m.batch, H, tq, vd], "the heads' values")
    step = m.next(mix, "Transpose", "the heads back")
    m.perm(step, [0, 2, 1, 3], "the heads back")
    step = m.next(step, "Reshape", "the heads joined")
    m.shape(step, [m.batch, tq, H * vd], "the heads joined")
    out_mm = m.next(step, "MatMul", "the output's projection")
    w_out = imp.consts.get(out_mm.input[1]) if len(out_mm.input) == 2 else None
    if out_mm.input[0] != step.output[0] or w_out is None or np.ndim(w_out) != 2 or \
            w_out.shape[0] != H * vd:
        m.refuse(out_mm, f"the output's projection: expected the heads times a ({H * vd}, "
                         "out) constant")
    out, last, b_out = w_out.shape[1], out_mm, None
    if use_bias:
        last = m.next(out_mm, "Add", "the output's bias")
        b_out = imp.consts.get(m.other(last, out_mm.output[0]) or "")
        if b_out is None or np.shape(b_out) != (out,):
            m.refuse(last, f"the output's bias: expected a ({out},) constant")
    xs = {name: imp.values[p.x] for name, p in (("query", q), ("value", v), ("key", k))}
    dq = imp.shape(xs["query"])[1]
    inputs = [xs["query"], xs["value"]] + ([xs["key"]] if k.x != v.x else [])
    params = {"num_heads": H, "key_dim": kd, "value_dim": vd if vd != kd else None,
              "use_bias": use_bias, "output_shape": out if out != dq else None,
              "use_causal_mask": causal, "return_attention_scores": scores_read}
    nid = imp.add(node, type_id, params, inputs)
    for name, p in (("query", q), ("key", k), ("value", v)):
        imp.weights[f"{nid}/{name}_kernel"] = np.ascontiguousarray(
            np.reshape(p.kernel, (-1, H, p.width)), np.float32)
        if use_bias:
            imp.weights[f"{nid}/{name}_bias"] = np.ascontiguousarray(
                np.reshape(p.bias, (H, p.width)), np.float32)
    imp.weights[f"{nid}/output_kernel"] = np.ascontiguousarray(
        np.reshape(w_out, (H, vd, out)), np.float32)
    if use_bias:
        imp.weights[f"{nid}/output_bias"] = np.ascontiguousarray(np.reshape(b_out, -1),
                                                                 np.float32)
    imp.absorbed.update(n.output[0] for n in m.nodes)
    imp.set(last, imp.result(nid))
    if scores_read:
        imp.set(softmax, imp.result(nid, 1))


def _values_transpose(imp, name):
    """Whether tensor `name` is computed by a Transpose [0, 2, 1, 3] (the value's heads)."""
    t = imp.producer(name)
    return t is not None and t.op_type == "Transpose" and \
        list(imp.attrs(t).get("perm", [])) == [0, 2, 1, 3]
