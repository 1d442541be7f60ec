"""ONNX in: an ONNX model (what Layerloom exports, what torch.onnx.export and tf2onnx emit for MLPs
and CNNs) as a Layerloom project with its weights. Layerloom's tensors are channels-last (NHWC,
as Keras), so an NCHW graph is read with its channel axis moved last: a value keeps a flag saying
whether the ONNX tensor is channels-first where ours is channels-last, convolution kernels are
transposed to (KH, KW, Cin, Cout), a Flatten of an NCHW tensor flattens in ONNX's order (a
Permute first), and the Transposes tf2onnx puts around an NHWC graph only change that flag.
Which layout a graph input has is read from the operators it reaches, never from its sizes.
An operator, attribute, extra output or layout that cannot be mapped is a DataError naming the
ONNX node, its op type and why (exit 2 from the command line): nothing is guessed. After each
operator, our result's shape is checked against the one ONNX's shape inference gives.
An operator is read by the readers layers declare beside them (their OnnxForm's reads: an
OnnxRead handed this importer) and by the importer's own (an op_* method of onnx_ops_in.py, the
activations, the arithmetic: among them the patterns that span layers, MatMul + Add as Dense,
Add/Sub/Mul as a merge, a Lambda or a BatchNormalization); the tensor and layout helpers and
Imported are in onnx_layout.py.

The readers of one operator, the protocol. Several layers may declare a reader for the same
ONNX operator (Conv: Conv2D, a grouped or depthwise convolution...). READS[op] lists them in
the order the layers registered; the importer's context readers of that operator
(CONTEXT_READS: a 1x1 Conv of a global pooling is a Dense, a Slice of the channels) come
before them and its own reader (OWN_ATTRIBUTES, onnx_ops_in.py), if any, after them. Each is
tried in turn:
- a reader whose OnnxRead.attributes lack an attribute the node sets is skipped (that is its
  reason: "attribute 'x' is not mapped");
- a reader that is not the one for this node calls imp.decline(node, why) BEFORE it adds
  anything to the graph (a node added and then declined is a bug, raised as one): the next
  reader is tried;
- a reader that is the one for this node but cannot map it calls imp.fail(node, why): a
  DataError, and no other reader is tried;
- otherwise it adds its layer(s) and sets the node's output (imp.set) and the walk goes on.
When every reader declined or was skipped, the node is refused with their reasons, joined by
"; ", each naming its layer where there were several. An operator nobody reads is refused as
"this operator has no Layerloom layer"; every refusal names the ONNX node and its op type.

Before the walk, the shape arithmetic exporters write (torch.onnx.export's Shape, Gather,
Unsqueeze, Concat, ConstantOfShape, Cast, Slice, Where, Equal, Range, Reshape of a constant...)
is folded into constants (fold_constants): any node whose inputs are all constants, or the
static shape of a tensor, is computed with numpy; the walk then sees constants where it
reads a target shape or axes.

Layerloom's own export comes back as the graph it was: node ids from the ONNX nodes' scopes
("dense_1/MatMul" -> dense_1), Dropout from ONNX's Dropout, and the fitted input normalisation
(its Sub and Mul, as the model's metadata states them) as the project's fitted statistics."""
import json
import os
import re

import numpy as np

from layerloom.core.errors import DataError, GraphError, ParamError
from layerloom.core.graph import Graph
from layerloom.core.registry import declared, ShapeError
from layerloom.interop.onnx_layout import (BATCH, FOLD, PER_SAMPLE, PLACE, Imported, _Value,
                                           _attrs, _dims, _onnx, _perms, _sizes, _text,
                                           fold_constants)
from layerloom.interop.onnx_ops_in import ACTIVATIONS, BINARY, LAMBDA_OPS, UNARY, _OperatorReads

PASS_THROUGH = {"Identity"}
MULTI_OUTPUT = {"Split"}  # the operators whose readers set every output
# the attributes the importer's own reader of each operator maps; any other present is refused
# by name
OWN_ATTRIBUTES = {
    **{op: set() for op in ("Relu", "Sigmoid", "Tanh", "Softplus", "Softsign", "Exp",
                            "Identity", "MatMul")},
    # broadcast: opset 6 and before, numpy's alignment (from the last axis) where no axis is given
    **{op: {"broadcast"} for op in ("Add", "Sub", "Mul", "Div")},
    "Selu": {"alpha", "gamma"}, "Elu": {"alpha"}, "LeakyRelu": {"alpha"},
    "Softmax": {"axis"}, "LogSoftmax": {"axis"}, "Gelu": {"approximate"},
    "Gemm": {"alpha", "beta", "transA", "transB", "broadcast"},
    "Flatten": {"axis"}, "Reshape": {"allowzero"}, "Squeeze": {"axes"},
    "Transpose": {"perm"}, "Gather": {"axis"}, "Cast": {"to", "saturate"},
    "CastLike": {"saturate"}, "Sum": set(), "Unsqueeze": {"axes"},
    "Split": {"axis", "split", "num_outputs"},
    **{op: set() for op in list(UNARY) + list(BINARY)},
}
# the operators layers declare they are read from (their OnnxForm's reads), {op: [(the layer they
# become, OnnxRead), ...]} in the order the layers registered (the protocol: the docstring); the
# rest map through the importer's own readers (op_* methods of onnx_ops_in.py)
READS = {}
for _type_id, _form in declared("onnx").items():
    for _op, _read in _form.reads.items():
        READS.setdefault(_op, []).append((_type_id, _read))
# the importer's readers of an operator in a context no layer's reader knows, tried before the
# layers' (each declines any other node): a 1x1 Conv of a global pooling's (N, C, 1, 1), a
# Slice of the channels
CONTEXT_READS = [("Conv", "conv_of_pooled"), ("Slice", "channel_slice")]
# the attributes some reader of each operator maps
ATTRIBUTES = {op: set(a) for op, a in OWN_ATTRIBUTES.items()}
for _op, _readers in READS.items():
    for _, _read in _readers:
        ATTRIBUTES.setdefault(_op, set()).update(_read.attributes)
# operators on constants alone (a weight transposed, the shape arithmetic of torch's exports)
# are computed before the walk (onnx_layout.fold_constants), giving constants
CLAIMED_OPS = frozenset(ATTRIBUTES) | {"Constant", "Shape", "Size"} | frozenset(FOLD)
# operators that read ONNX's axis 1 as the channels: a graph input that reaches one is
# channels-first; elementwise ones (and Slice, Concat, which keep the layout) pass the question on
CHANNEL_OPS = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
               "BatchNormalization", "ConvTranspose"}
ELEMENTWISE = (set(ACTIVATIONS) - {"Softmax", "LogSoftmax"}) | set(LAMBDA_OPS) | PASS_THROUGH | {
    "LeakyRelu", "Dropout", "Clip", "HardSwish", "HardSigmoid", "Mish", "PRelu", "Shrink", "Celu",
    "ThresholdedRelu", "Cast", "CastLike", "Slice", "Concat", "Sum", "Unsqueeze", "Squeeze",
    "Split"} | \
    set(UNARY) | set(BINARY)


class _Declined(Exception):
    """A declared reader's "not mine": the next reader of the operator is tried."""

    def __init__(self, why):
        super().__init__(why)
        self.why = why


class _Importer(_OperatorReads):
    # for the layers' readers (OnnxRead.read(imp, node, type_id)): a node's attributes, a
    # result value (its node id; nchw, pooled), an attribute's text
    attrs, result, text = staticmethod(_attrs), _Value, staticmethod(_text)

    def __init__(self, model):
        _onnx()  # the package, or the message naming the extra
        self.graph, self.weights, self.ids = Graph(), {}, {}
        self.shapes = {}  # node id -> its output shapes, as the layers' rules give them
        g = model.graph
        inits = {t.name for t in g.initializer}
        # the batch size: the graph inputs' where fixed, else BATCH while folding
        firsts = [(_sizes(i) or [None])[0] for i in g.input if i.name not in inits]
        self.batch_size = next((d for d in firsts if isinstance(d, int) and d > 0), BATCH)
        self.consts, self.folded, self.unfolded, known = fold_constants(model)
        self.known = {vi.name: vi for vi in list(g.value_info) + list(g.output)}
        self.known.update(known)
        self.uses, self.readers = {}, {}  # tensor -> how many inputs read it; its readers
        self.producers = {}  # tensor -> the node that computes it (that the walk reads)
        self.made_by = {o: n for n in g.node for o in n.output if o}
        for n in g.node:
            if n.output and n.output[0] in self.folded:
                continue
            self.producers.update((o, n) for o in n.output if o)
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
                self.readers.setdefault(i, []).append(n)
        self.values = {}
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          1)
        self.graph_outputs = {o.name for o in g.output}
        meta = {p.key: p.value for p in model.metadata_props}
        self.stated = _stated(meta.get("layerloom.normalization")) \
            if model.producer_name == "layerloom" else {}
        self.normalization = {}  # Input id -> fitted statistics
        self.affine = {}  # BatchNormalization id -> (gamma, mean, beta) from Sub/Add/Mul/Div
        self.affine_out = {}  # BatchNormalization id -> the tensor its last step wrote
        self.absorbed = set()  # outputs of the ONNX nodes those stand for

    # -- helpers ------------------------------------------------------------------------------
    def fail(self, node, why):
        raise DataError(f"ONNX node {node.name or node.output[0]!r} ({node.op_type}): {why}",
                        PLACE)

    @staticmethod
    def decline(node, why):
        """A reader's "this node is not mine" (before it adds anything): the next reader of
        node's operator is tried; why is said if none takes it."""
        raise _Declined(why)

    def new_id(self, name):
        base = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "node"
        nid, k = base, 2
        while nid in self.graph.nodes:
            nid, k = f"{base}_{k}", k + 1
        return nid

    @staticmethod
    def scope(node):
        """The layer an ONNX node belongs to, from its name's scope: "dense_1/MatMul_2"
        (Layerloom's export) -> dense_1, "/conv1/Conv" (PyTorch's) -> conv1; else the name."""
        name = (node.name or "").strip("/")
        return name.rsplit("/", 1)[0] if "/" in name else (name or node.output[0])

    def add(self, node, type_id, params, inputs, name=None):
        nid = self.new_id(name or self.scope(node))
        try:
            self.graph.add_node(type_id, params, id=nid)
            for port, v in enumerate(inputs):
                self.graph.connect(v.node, v.port, nid, port)
        except (GraphError, ParamError) as e:  # a parameter or wiring our layer refuses
            self.fail(node, str(e))
        # this node's shapes from its layer's rule, not the whole graph's analysis again
        # (which made an import of n nodes take n analyses: 2,000 nodes 13 s)
        layer = self.graph.nodes[nid]
        try:
            self.shapes[nid] = [tuple(s) for s in layer.layer.output_shapes(
                layer.params, [self.shape(v) for v in inputs])]
        except ShapeError as e:
            self.fail(node, e.message)
        return nid

    def shape(self, v):
        return self.shapes[v.node][v.port]

    def onnx_shape(self, v):
        """The per-sample shape ONNX gives v (ours with the channels moved back)."""
        s = tuple(self.shape(v))
        return s + (1, 1) if v.pooled else (s[-1],) + s[:-1] if v.nchw else s

    def channel_axis(self, v):
        """The ONNX axis (batch counted) that is our last axis."""
        return 1 if v.nchw or v.pooled else len(self.shape(v))

    def value(self, node, i):
        name = node.input[i] if i < len(node.input) else ""
        if name in self.consts and name in self.unfolded:  # a constant repeated per sample
            self.fail(self.made_by[name], self.unfolded[name])
        if name not in self.values:
            self.fail(node, f"input {name!r} is neither a graph input nor computed before "
                            "(a constant where a tensor is expected?)")
        return self.values[name]

    def per_sample(self, name):
        """The constant tensor `name` is repeated along the batch (torch's Expand of a class
        token to (N, 1, D)), computed with a batch of 1; None when it is no such constant."""
        if name in self.consts and self.unfolded.get(name) == PER_SAMPLE:
            return np.asarray(self.consts[name])
        return None

    def dims(self, name):
        """ONNX's shape of tensor `name`, the batch counted (an open batch as batch_size,
        as the shapes were computed), None for an unknown size; None when not known."""
        return _dims(self.known[name]) if name in self.known else None

    def values_of(self, node, name):
        """The value of tensor `name`, which node's computation reads."""
        if name not in self.values:
            self.fail(node, f"input {name!r} is neither a graph input nor computed before")
        return self.values[name]

    def const(self, node, i, what):
        if i >= len(node.input) or node.input[i] not in self.consts:
            self.fail(node, f"its {what} must be a constant (an initializer)")
        return self.consts[node.input[i]]

    def set(self, node, v, port=0):
        """v is the node's output (that of port); where ONNX's shape inference knows that
        tensor's shape, ours must be the same (a layout mapped wrongly is refused here, not
        computed)."""
        name = node.output[port]
        dims = _dims(self.known[name]) if name in self.known else None
        ours = self.onnx_shape(v)
        if dims is not None and (len(dims) != len(ours) + 1 or any(
                d is not None and d != o for d, o in zip(dims[1:], ours))):
            self.fail(node, f"Layerloom's result would have shape {['N', *ours]} where ONNX's "
                            f"is {dims}: a layout this importer does not map")
        self.values[name] = v

    def only_use(self, v_name):
        return self.uses.get(v_name, 0) == 1

    def users(self, name):
        return list({id(n): n for n in self.readers.get(name, [])}.values())  # each once

    # -- the graph --------------------------------------------------------------------------
    def run(self):
        g = self.model.graph
        for inp in g.input:
            if inp.name not in self.consts:
                self.graph_input(inp)
        formulas = self.find_activations()
        for node in g.node:
            if node.output and node.output[0] in formulas:
                act, x, only = formulas[node.output[0]]
                self.apply_activation(node, act, self.values_of(node, x), only)
            elif node.output and node.output[0] not in self.absorbed and \
                    node.output[0] not in self.folded:
                self.operator(node)
        return self.outputs()

    def operator(self, node):
        if node.domain not in ("", "ai.onnx"):
            self.fail(node, f"operator domain {node.domain!r}; only ONNX's own operators map")
        if node.op_type == "Constant":
            self.constant(node)
            return
        if node.output[0] in self.unfolded:
            self.fail(node, self.unfolded[node.output[0]])
        readers = [(None, ATTRIBUTES[node.op_type], lambda m=method: getattr(self, m)(node))
                   for op, method in CONTEXT_READS if op == node.op_type]
        readers += [(type_id, r.attributes, lambda r=r, t=type_id: r.read(self, node, t))
                    for type_id, r in READS.get(node.op_type, [])]
        if node.op_type in OWN_ATTRIBUTES:
            readers.append((None, OWN_ATTRIBUTES[node.op_type], lambda: self.own_read(node)))
        if not readers:
            self.fail(node, "this operator has no Layerloom layer")
        used = [o for o in node.output[1:] if o and (o in self.uses or o in self.graph_outputs)
                and node.op_type not in MULTI_OUTPUT]
        if used:  # named but read by nothing (a Dropout's mask) it does not matter
            self.fail(node, f"its output {used[0]!r} (beyond the first) has no Layerloom form")
        present, reasons = set(_attrs(node)), []
        for type_id, attributes, read in readers:
            who = "the importer" if type_id is None else f"{type_id}'s reader"
            extra = sorted(present - set(attributes))
            if extra:
                reasons.append((type_id, f"attribute {extra[0]!r} is not mapped by {who}"))
                continue
            before = (len(self.graph.nodes), len(self.values))
            try:
                read()
                return
            except _Declined as d:
                if (len(self.graph.nodes), len(self.values)) != before:
                    raise RuntimeError(f"{who} declined ONNX node {node.name!r} after adding "
                                       "to the graph (decline before adding)") from None
                reasons.append((type_id, d.why))
        several = len(reasons) > 1
        self.fail(node, "; ".join(f"{t}: {why}" if several and t else why
                                  for t, why in reasons))

    def own_read(self, node):
        """The importer's own reader of node's operator (onnx_ops_in.py)."""
        if node.op_type in ACTIVATIONS:
            self.activation(node)
        elif node.op_type in LAMBDA_OPS:
            self.arithmetic(node)
        elif node.op_type in PASS_THROUGH:
            self.pass_through(node)
        elif node.op_type in UNARY:
            self.unary(node)
        elif node.op_type in BINARY:
            self.binary(node)
        else:
            getattr(self, f"op_{node.op_type}")(node)

    def constant(self, node):
        _, numpy_helper = _onnx()
        a = _attrs(node)
        if "value" in a:
            self.consts[node.output[0]] = numpy_helper.to_array(a["value"])
        elif set(a) & {"value_float", "value_floats", "value_int", "value_ints"}:
            key = next(iter(a))
            self.consts[node.output[0]] = np.asarray(
                a[key], np.float32 if "float" in key else np.int64)
        else:
            self.fail(node, f"a constant given as {sorted(a)}; only numbers map")

    def outputs(self):
        """{ONNX output name: value}; each output is a node of its own that nothing reads (as
        Layerloom's outputs are), named after the output."""
        read = {e.src for e in self.graph.edges}
        taken, names = set(), {}
        for out in self.model.graph.output:
            v = self.values.get(out.name)
            why = ("is a constant" if v is None else
                   "is a graph input passed through" if self.graph.nodes[v.node].layer.is_input
                   else "is read by other nodes too" if v.node in read
                   else "is the same tensor as another output" if v.node in taken else None)
            if why:
                raise DataError(f"ONNX output {out.name!r} {why}; Layerloom's outputs are "
                                "layers that nothing else reads", PLACE)
            taken.add(v.node)
            names[v.node] = out.name
        self.rename(names)
        return {out.name: self.values[out.name] for out in self.model.graph.output}

    def rename(self, names):
        """Give the nodes that compute the graph's outputs the outputs' names (as Layerloom's
        export names its outputs by node id), rebuilding the graph in the same order."""
        new = {nid: nid for nid in self.graph.nodes}
        for nid, name in names.items():
            want = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
            if want and want not in new.values():
                new[nid] = want
        if all(old == nid for old, nid in new.items()):
            return
        old_graph, self.graph = self.graph, Graph()
        for node in old_graph.nodes.values():
            self.graph.add_node(node.type, node.params, id=new[node.id])
        for e in old_graph.edges:
            self.graph.connect(new[e.src], e.src_port, new[e.dst], e.dst_port)
        self.weights = {f"{new[k.split('/')[0]]}/{k.split('/', 1)[1]}": v
                        for k, v in self.weights.items()}
        self.normalization = {new[k]: s for k, s in self.normalization.items()}
        for v in {id(v): v for v in self.values.values()}.values():  # shared by pass-throughs
            v.node = new[v.node]

    def graph_input(self, inp):
        onnx, _ = _onnx()
        t = inp.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT:
            kind = onnx.TensorProto.DataType.Name(t.elem_type) if t.elem_type else "non-tensor"
            raise DataError(f"ONNX input {inp.name!r} holds {kind} values; Layerloom's inputs "
                            "are float32", PLACE)
        dims = _dims(inp) or []
        if len(dims) not in (2, 3, 4, 5) or any(d is None or d <= 0 for d in dims[1:]):
            raise DataError(f"ONNX input {inp.name!r}: shape {dims}; expected a batch axis and "
                            "fixed sizes (2-D features, 3-D sequences, 4-D images, 5-D "
                            "volumes)", PLACE)
        nchw = self.channels_first(inp.name, len(dims))
        shape = dims[2:] + dims[1:2] if nchw else dims[1:]
        nid = self.new_id(inp.name)
        self.graph.add_node("Input", {"shape": shape}, id=nid)
        self.shapes[nid] = [tuple(shape)]
        self.values[inp.name] = _Value(nid, nchw=nchw)
        self.stated_normalization(inp.name, nid)

    def channels_first(self, name, rank):
        """Whether a graph input is channels-first (N, C, ...): it reaches, through elementwise
        operators, one that reads ONNX's axis 1 as the channels (Conv, pooling,
        BatchNormalization). One that first goes through a Transpose to channels-first
        (tf2onnx, Layerloom's export) is channels-last; one that only meets operators
        indifferent to layout (Flatten, MatMul) is taken as it is. Never read from sizes."""
        if rank < 3:
            return False
        to_first, found, todo, seen = _perms(rank)[0], set(), [name], set()
        while todo:
            t = todo.pop()
            for n in self.users(t):
                if n.op_type == "Transpose" and list(_attrs(n).get("perm", [])) == to_first:
                    found.add("last")
                elif n.op_type in CHANNEL_OPS or (
                        n.op_type in ("ReduceMean", "ReduceMax") and rank in (4, 5)
                        and self.reduce_axes(n, rank) == list(range(2, rank))):
                    # a channels-first global pooling (an image's or a volume's cells)
                    found.add("first")
                elif n.op_type in ELEMENTWISE and n.output[0] not in seen:
                    seen.add(n.output[0])
                    todo.append(n.output[0])
        return "first" in found

    def stated_normalization(self, name, nid):
        """Layerloom's export normalises each input with a Sub and a Mul by the statistics its
        metadata states: those two operators become the Input's fitted normalisation (the
        project's, as training fitted it), when they are exactly that."""
        stats = self.stated.get(name)
        users = self.users(name)
        if not stats or len(users) != 1 or users[0].op_type != "Sub":
            return
        sub = users[0]
        muls = self.users(sub.output[0])
        if list(sub.input) != [name, sub.input[1]] or len(muls) != 1 or \
                muls[0].op_type != "Mul" or list(muls[0].input[:1]) != [sub.output[0]]:
            return
        shift, scale = self.consts.get(sub.input[1]), self.consts.get(muls[0].input[1])
        f32 = lambda a: np.asarray(a, np.float32).reshape(-1)  # noqa: E731
        if shift is None or scale is None or f32(shift).shape != f32(stats["shift"]).shape or \
                f32(scale).shape != f32(stats["scale"]).shape or \
                not (np.array_equal(f32(shift), f32(stats["shift"])) and
                     np.array_equal(f32(scale), f32(stats["scale"]))):
            return
        self.normalization[nid] = stats
        self.absorbed.update({sub.output[0], muls[0].output[0]})
        self.values[muls[0].output[0]] = self.values[name]


def _stated(text):
    """The input normalisation our export states in its metadata, {input: {"kind", "shift",
    "scale"}}, or {} when the text is not what the export writes (a file is untrusted: what
    does not check out is ignored, and its Sub and Mul are read as the operators they are)."""
    from layerloom.data.preprocess import NORMALIZATIONS
    try:
        d = json.loads(text or "{}")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(d, dict):
        return {}

    def numbers(v):
        return isinstance(v, list) and v and all(
            isinstance(n, (int, float)) and not isinstance(n, bool) and np.isfinite(n)
            for n in v)
    return {k: {"kind": s["kind"], "shift": s["shift"], "scale": s["scale"]}
            for k, s in d.items() if isinstance(k, str) and isinstance(s, dict)
            and s.get("kind") in NORMALIZATIONS and numbers(s.get("shift"))
            and numbers(s.get("scale"))}


def _dataset(graph, normalization):
    """The imported project's dataset part: none, or the statistics the model normalises its
    inputs with as fitted ones, of the kind they were fitted as (an Input without gets the
    identity), its Inputs fed by arrays of their names."""
    if not normalization:
        return {}
    kinds = {s.get("kind") or "standardize" for s in normalization.values()}
    kind = kinds.pop() if len(kinds) == 1 else "standardize"
    stats = {nid: {"kind": kind, "shift": list(s["shift"]), "scale": list(s["scale"])}
             for nid, s in normalization.items()}
    for nid in graph.inputs():
        stats.setdefault(nid, {"kind": kind, "shift": [0.0], "scale": [1.0]})
    return {"inputs": {nid: nid for nid in graph.inputs()}, "normalize": kind,
            "fitted": {"normalization": stats}}


def from_model(model, name="model"):
    """The ONNX ModelProto `model` as an Imported (project, weights, input/output mapping)."""
    onnx, _ = _onnx()
    from layerloom.project.loom import Project
    from layerloom.project.training import parse_training
    if model.functions:  # local functions (Layerloom's blocks, torch.export's modules):
        try:             # their bodies in place of their calls, as the layers they are
            from onnx import inliner
            model = inliner.inline_local_functions(model)
        except Exception as e:  # the onnx package's C++ part (no common type but Exception)
            raise DataError(f"{name}: ONNX's inliner refuses the model's functions ({e})",
                            PLACE) from None
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # an inconsistent model: InferenceError, and whatever else the
        # onnx package's C++ part raises (no common type but Exception)
        raise DataError(f"{name}: ONNX's shape inference refuses the model ({e})", PLACE) \
            from None
    imp = _Importer(model)
    outputs = imp.run()
    loss, metrics = {}, []
    for v in outputs.values():  # a guess from the output's activation, for a later fit
        act = imp.graph.nodes[v.node].params.get("activation")
        loss[v.node] = {"softmax": "sparse_categorical_crossentropy",
                        "sigmoid": "binary_crossentropy"}.get(act, "mean_squared_error")
        metrics = ["accuracy"] if act in ("softmax", "sigmoid") else ["mae"]
    problems = []
    training = parse_training({"loss": loss, "metrics": metrics}, imp.graph, problems)
    if problems:
        raise DataError(f"{name}: {problems[0]}", PLACE)
    project = Project(imp.graph, dataset=_dataset(imp.graph, imp.normalization),
                      training=training, name=name)
    inputs = {i.name: imp.values[i.name] for i in model.graph.input if i.name not in imp.consts}
    return Imported(project, imp.weights, inputs, outputs)


def read(path):
    """(Project, weights) of the ONNX model at `path`."""
    onnx, _ = _onnx()
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}", PLACE)
    try:
        model = onnx.load(path)
    except Exception as e:  # not a protobuf, a damaged file: protobuf's DecodeError, the
        # onnx package's own errors, OSError (no common type but Exception)
        raise DataError(f"{path}: not a readable ONNX model ({e})", PLACE) from None
    imported = from_model(model, os.path.splitext(os.path.basename(path))[0])
    return imported.project, imported.weights


def convert(path, to):
    """Write the ONNX model at `path` as the project `to` with `to`.weights.npz beside it,
    laid out, each file atomically. Returns the project."""
    from layerloom.interop import write_imported
    return write_imported(*read(path), to)
