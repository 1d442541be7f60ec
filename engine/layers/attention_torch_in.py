"""ONNX in: torch's nn.MultiheadAttention (self-attention, batch_first, as torchvision's ViT
calls it) as torch.onnx.export writes it, read as one MultiHeadAttention. torch's export moves
the batch axis (the sequence first, heads folded into the batch), which no Keras-like layer
does, so the whole subgraph is recognised from its first node, the Transpose [1, 0, 2] of the
(N, S, D) input, and every ONNX node in it absorbed:

  Transpose [1, 0, 2] -> MatMul (in_proj, a (D, 3D) constant) -> Add (in_proj_bias) ->
  Reshape (S, N, 3, D) -> Unsqueeze -> Transpose [3, 1, 2, 0, 4] -> Squeeze -> Gather 0/1/2,
  each Reshape (S, N * H, d) -> Transpose [1, 0, 2] -> Reshape (N, H, S, d); q and k
  (Transpose [0, 1, 3, 2]) scaled by numbers whose product is 1 / sqrt(d) -> MatMul ->
  Softmax (last axis) -> MatMul (v) -> Transpose [2, 0, 1, 3] -> Reshape (S * N, D) ->
  Gemm (out_proj; or MatMul + Add) -> Reshape (S, N, D) -> Transpose [1, 0, 2].

Each step is checked by its operator, its attributes and the shape ONNX's shape inference gives
its result, which with the operator fix what it computes; every tensor between is read by the
next step alone. Anything else (an attention mask added to the scores, dropout, separate q, k,
v projections of other inputs) is refused naming the node and what was expected. The packed
weights map exactly: in_proj's columns [i * D, (i + 1) * D) are q, k, v (the Gather's index),
each head h its columns [h * d, (h + 1) * d), Keras' (D, heads, d) kernels; out_proj's
(D, D) as (heads, d, D)."""
import numpy as np


class _Match:
    """Walks the subgraph from its first node; fail() refuses naming the node reached.
    (attention_onnx_in.py's walker of Layerloom's own export extends it.)"""
    who = "torch's attention"

    def __init__(self, imp, start):
        self.imp, self.start, self.nodes = imp, start, []
        self.batch = imp.batch_size

    def fail(self, node, why):
        self.imp.fail(node, f"{self.who} (from {self.start.name!r}): {why}")

    def next(self, node, op, what):
        """The one node that reads node's output, of operator op; else refused."""
        n = self.imp.reader(node.output[0])
        if n is None or n.op_type != op:
            found = "several readers or a graph output" if n is None else n.op_type
            self.fail(node, f"expected {what} ({op}) to read its output alone; found {found}")
        self.nodes.append(n)
        return n

    def shape(self, node, want, what):
        dims = self.imp.dims(node.output[0])
        if dims is None or list(dims) != list(want):
            self.fail(node, f"{what} shaped {dims}, expected {list(want)}")

    def perm(self, node, want, what=None):
        perm = list(self.imp.attrs(node).get("perm", []))
        if perm != want:
            self.fail(node, f"{what + ': ' if what else ''}perm {perm}, expected {want}")

    def only(self, node, allowed):
        extra = sorted(set(self.imp.attrs(node)) - set(allowed))
        if extra:
            self.fail(node, f"attribute {extra[0]!r} is not mapped")

    def scales(self, node, ops=("Mul", "Div"), transpose=None):
        """From node on: Mul or Div by a number (their product), and (transpose: its perm) at
        most one Transpose, each read by the next alone, up to the node after them. Returns
        (that node, the tensor it reads, scale, transposed)."""
        imp, scale, transposed, name = self.imp, 1.0, False, node.output[0]
        while True:
            n = imp.reader(name)
            if n is None:
                self.fail(node, f"expected one reader of {name!r}")
            if n.op_type in ops:
                other = [i for i in n.input if i != name]
                c = imp.scalar(other[0]) if len(other) == 1 else None
                if c is None or (n.op_type == "Div" and list(n.input) != [name, other[0]]):
                    self.fail(n, "a Mul or Div by something other than one number")
                scale = scale * c if n.op_type == "Mul" else scale / c
            elif n.op_type == "Transpose" and transpose and not transposed:
                self.perm(n, transpose)
                transposed = True
            else:
                return n, name, scale, transposed
            self.nodes.append(n)
            name = n.output[0]


def torch_attention_in(imp, node, type_id):
    """The Transpose [1, 0, 2] that starts torch's exported self-attention: the subgraph as
    one MultiHeadAttention (the module docstring); declines any other Transpose."""
    m = _Match(imp, node)
    x = imp.values.get(node.input[0])  # None: a tensor the walk gave no value (an LSTM's)
    proj = imp.reader(node.output[0])
    w_in = imp.consts.get(proj.input[1]) if proj is not None and len(proj.input) == 2 else None
    shape = imp.shape(x) if x is not None else ()
    if list(imp.attrs(node).get("perm", [])) != [1, 0, 2] or x is None or x.nchw or \
            x.pooled or len(shape) != 2 or proj is None or proj.op_type != "MatMul" or \
            proj.input[0] != node.output[0] or w_in is None or \
            w_in.shape != (shape[1], 3 * shape[1]):
        imp.decline(node, "not torch's self-attention (a Transpose [1, 0, 2] of a sequence "
                          "read by a MatMul with a (D, 3D) constant)")
    S, D, N = shape[0], shape[1], m.batch
    m.nodes.append(proj)
    step = m.next(proj, "Add", "in_proj_bias")
    b_in = imp.consts.get(next((i for i in step.input if i != proj.output[0]), ""))
    if b_in is None or b_in.shape != (3 * D,):
        m.fail(step, f"expected in_proj_bias, a ({3 * D},) constant")
    step = m.next(step, "Reshape", "the split into q, k, v")
    m.shape(step, [S, N, 3, D], "the split")
    step = m.next(step, "Unsqueeze", "the split's Unsqueeze")
    m.shape(step, [1, S, N, 3, D], "the Unsqueeze")
    step = m.next(step, "Transpose", "q, k, v first")
    m.perm(step, [3, 1, 2, 0, 4])
    step = m.next(step, "Squeeze", "the Squeeze")
    m.shape(step, [3, S, N, D], "q, k, v")
    gathers = imp.users(step.output[0])
    if imp.uses.get(step.output[0]) != 3 or len(gathers) != 3 or \
            step.output[0] in imp.graph_outputs or \
            any(g.op_type != "Gather" or g.input[0] != step.output[0] for g in gathers):
        m.fail(step, "expected three Gathers of q, k and v to read it alone")
    roles, heads = {}, set()
    for g in gathers:
        m.nodes.append(g)
        m.only(g, {"axis"})
        index = imp.consts.get(g.input[1])
        if imp.attrs(g).get("axis", 0) != 0 or index is None or index.size != 1 or \
                int(index.reshape(-1)[0]) not in (0, 1, 2):
            m.fail(g, "expected a Gather of index 0, 1 or 2 along axis 0")
        r = m.next(g, "Reshape", "the heads")
        dims = imp.dims(r.output[0]) or [None] * 3
        H = dims[1] // N if len(dims) == 3 and dims[1] and dims[1] % N == 0 else None
        if H is None or H * dims[2] != D:
            m.fail(r, f"heads shaped {dims}, expected ({S}, {N} * heads, {D} / heads)")
        heads.add(H)
        d = D // H
        m.shape(r, [S, N * H, d], "the heads")
        t = m.next(r, "Transpose", "the heads first")
        m.perm(t, [1, 0, 2])
        r = m.next(t, "Reshape", "the batch apart")
        m.shape(r, [N, H, S, d], "the heads")
        end, name, scale, transposed = m.scales(r, transpose=[0, 1, 3, 2])
        at = list(end.input).index(name) if end.op_type == "MatMul" else None
        role = {(0, False): "q", (1, True): "k"}.get((at, transposed)) or \
            ("v" if (at, transposed, scale) == (1, False, 1.0) else None)
        if role is None or role in roles:
            m.fail(end, "expected q, k (transposed) and v to meet in the attention's MatMuls")
        roles[role] = (int(index.reshape(-1)[0]), end, scale)
    scores = roles["q"][1] if set(roles) == {"q", "k", "v"} else None
    if len(heads) != 1 or scores is None or roles["k"][1] is not scores or \
            list(scores.input).count(scores.input[0]) != 1 or \
            sorted(r[0] for r in roles.values()) != [0, 1, 2]:
        m.fail(step, "q, k and v do not make one attention")
    H = heads.pop()
    d = D // H
    m.nodes.append(scores)
    m.shape(scores, [N, H, S, S], "the scores")
    softmax, _, scale, _ = m.scales(scores)
    scale *= roles["q"][2] * roles["k"][2]
    if softmax.op_type != "Softmax":
        m.fail(softmax, f"expected the scores' Softmax, found {softmax.op_type} (an attention "
                        "mask has no Layerloom form)")
    m.nodes.append(softmax)
    m.only(softmax, {"axis"})
    if imp.attrs(softmax).get("axis", -1 if imp.opset >= 13 else 1) % 4 != 3:
        m.fail(softmax, "a softmax along another axis than the keys'")
    if abs(scale * np.sqrt(d) - 1.0) > 1e-6:
        m.fail(softmax, f"the scores scaled by {scale!r}, not 1 / sqrt({d}) (Keras' and "
                        "Layerloom's)")
    mix = m.next(softmax, "MatMul", "the values' MatMul (dropout has no Layerloom form here)")
    if mix is not roles["v"][1] or mix.input[0] != softmax.output[0]:
        m.fail(mix, "expected the probabilities times v")
    step = m.next(mix, "Transpose", "the heads back")
    m.perm(step, [2, 0, 1, 3])
    step = m.next(step, "Reshape", "the heads joined")
    m.shape(step, [S * N, D], "the heads joined")
    w_out, b_out, step = _out_proj(imp, m, step, D)
    step = m.next(step, "Reshape", "the sequence back")
    m.shape(step, [S, N, D], "the output")
    last = m.next(step, "Transpose", "the batch first again")
    m.perm(last, [1, 0, 2])
    nid = imp.add(node, type_id, {"num_heads": H, "key_dim": d}, [x, x])
    for role, name in (("q", "query"), ("k", "key"), ("v", "value")):
        cols = slice(roles[role][0] * D, (roles[role][0] + 1) * D)
        imp.weights[f"{nid}/{name}_kernel"] = np.ascontiguousarray(
            w_in[:, cols].reshape(D, H, d), np.float32)
        imp.weights[f"{nid}/{name}_bias"] = np.ascontiguousarray(b_in[cols].reshape(H, d),
                                                                 np.float32)
    imp.weights[f"{nid}/output_kernel"] = np.ascontiguousarray(w_out.reshape(H, d, D),
                                                               np.float32)
    imp.weights[f"{nid}/output_bias"] = np.asarray(b_out, np.float32)
    imp.absorbed.update(n.output[0] for n in m.nodes)
    imp.set(last, imp.result(nid))


def _out_proj(imp, m, step, D):
    """out_proj after step: a Gemm (transB, alpha, beta) or a MatMul and an Add of constants;
    returns (its (D, D) kernel as (inputs, outputs), its bias, its last node)."""
    n = imp.reader(step.output[0])
    if n is not None and n.op_type == "Gemm":
        m.nodes.append(n)
        m.only(n, {"alpha", "beta", "transA", "transB"})
        a = imp.attrs(n)
        w = imp.consts.get(n.input[1])
        b = imp.consts.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if a.get("transA", 0) or n.input[0] != step.output[0] or w is None or \
                w.shape != (D, D) or b is None or np.size(b) != D:
            m.fail(n, f"expected out_proj, a Gemm of the heads by a ({D}, {D}) constant "
                      f"plus a ({D},) one")
        w = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
        return w, np.reshape(b, -1) * a.get("beta", 1.0), n
    n = m.next(step, "MatMul", "out_proj")
    w = imp.consts.get(n.input[1])
    if n.input[0] != step.output[0] or w is None or w.shape != (D, D):
        m.fail(n, f"expected out_proj, the heads times a ({D}, {D}) constant")
    add = m.next(n, "Add", "out_proj's bias")
    b = imp.consts.get(next((i for i in add.input if i != n.output[0]), ""))
    if b is None or b.shape != (D,):
        m.fail(add, f"expected out_proj's bias, a ({D},) constant")
    return w, b, add
