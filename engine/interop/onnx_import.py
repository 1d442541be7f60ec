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
An operator is read either by the reader a layer declares beside it (its OnnxForm's reads: an
OnnxRead handed this importer; pooling, Conv2D, Dropout, BatchNormalization and Concatenate so
far) or by an op_* method here (the rest, among them the patterns that span layers: MatMul +
Add as Dense, Add/Sub/Mul as a merge, a Lambda or a BatchNormalization).

Layerloom's own export comes back as the graph it was: node ids from the ONNX nodes' scopes
("dense_1/MatMul" -> dense_1), Dropout from ONNX's Dropout, and the fitted input normalisation
(its Sub and Mul, as the model's metadata states them) as the project's fitted statistics."""
import json
import math
import os
import re

import numpy as np

from layerloom.core.errors import DataError, GraphError, ParamError
from layerloom.core.graph import Graph
from layerloom.core.registry import declared, ShapeError

PLACE = "--import"
ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
               "Softsign": "softsign", "Exp": "exponential", "Selu": "selu", "Elu": "elu",
               "Softmax": "softmax", "LogSoftmax": "log_softmax", "Gelu": "gelu"}
MERGES = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply"}
LAMBDA_OPS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}
PASS_THROUGH = {"Identity"}
# the attributes each operator's mapping reads; any other present is refused by name
ATTRIBUTES = {
    **{op: set() for op in ("Relu", "Sigmoid", "Tanh", "Softplus", "Softsign", "Exp", "Add",
                            "Sub", "Mul", "Div", "Identity", "MatMul")},
    "Selu": {"alpha", "gamma"}, "Elu": {"alpha"}, "LeakyRelu": {"alpha"},
    "Softmax": {"axis"}, "LogSoftmax": {"axis"}, "Gelu": {"approximate"},
    "Gemm": {"alpha", "beta", "transA", "transB", "broadcast"},
    "Flatten": {"axis"}, "Reshape": {"allowzero"}, "Squeeze": {"axes"},
    "Transpose": {"perm"},
}
# the operators a layer declares it is read from (its OnnxForm's reads: pooling, Conv2D, Dropout,
# BatchNormalization, Concatenate so far), with the layer they become; the rest map through the
# op_* methods below
READS = {op: (type_id, r) for type_id, f in declared("onnx").items() for op, r in f.reads.items()}
ATTRIBUTES.update({op: set(r.attributes) for op, (_, r) in READS.items()})
# operators on constants alone (a weight transposed, the light models' ConstantOfShape) are
# computed here, giving constants
FOLDED = {
    "Transpose": lambda a, x: np.transpose(x[0], a.get("perm")),
    "Identity": lambda a, x: x[0],
    "ConstantOfShape": lambda a, x: _constant_of_shape(x[0], a.get("value")),
}
CLAIMED_OPS = frozenset(ATTRIBUTES) | {"Constant"} | frozenset(FOLDED)
# operators that read ONNX's axis 1 as the channels: a graph input that reaches one is
# channels-first; elementwise ones pass the question on
CHANNEL_OPS = {"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
               "BatchNormalization"}
ELEMENTWISE = (set(ACTIVATIONS) - {"Softmax", "LogSoftmax"}) | set(LAMBDA_OPS) | PASS_THROUGH | {
    "LeakyRelu", "Dropout"}
# ONNX's Selu defaults (float32 attributes) and how close a float attribute must be to ours
ONNX_SELU = (1.67326319628502807617, 1.05070102214813232422)
ATTR_RTOL = 1e-6
AFFINE_EPS = 1e-3  # a per-channel Sub/Add/Mul/Div's BatchNormalization: variance 1 - this


class _Value:
    """An ONNX tensor as our node's output port. nchw: the ONNX tensor is channels-first
    (N, C, ...) where ours is channels-last; pooled: ONNX's (N, C, 1, 1) is our (C,)."""
    __slots__ = ("node", "port", "nchw", "pooled")

    def __init__(self, node, port=0, nchw=False, pooled=False):
        self.node, self.port, self.nchw, self.pooled = node, port, nchw, pooled

    def like(self, node):
        """Our node `node`'s output, in this value's layout (an elementwise layer's)."""
        return _Value(node, 0, self.nchw, self.pooled)


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise DataError("ONNX import needs the onnx package: pip install 'layerloom[onnx]'",
                        PLACE) from None
    return onnx, numpy_helper


def _attrs(node):
    onnx, _ = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _tensor(proto):
    return _onnx()[1].to_array(proto)


def _constant_of_shape(shape, value):
    v = _tensor(value) if value is not None else np.zeros(1, np.float32)  # ONNX's default
    return np.full([int(d) for d in np.reshape(shape, -1)], v.reshape(-1)[0], v.dtype)


def _dims(value_info):
    """A tensor's sizes as ONNX knows them (None for one it does not), or None (no shape)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def _affine_step(state, op_type, c):
    """(gamma, mean, beta) of y = gamma * (x - mean) + beta after `op_type` with c; state None:
    the identity, where a first Sub or Add is the mean (as our export's BatchNormalization
    subtracts its moving mean first)."""
    if state is None:
        zero = np.zeros_like(c)
        return {"Sub": (zero + 1, c, zero), "Add": (zero + 1, -c, zero),
                "Mul": (c, zero, zero), "Div": (1.0 / c, zero, zero)}[op_type]
    gamma, mean, beta = state
    return {"Sub": (gamma, mean, beta - c), "Add": (gamma, mean, beta + c),
            "Mul": (gamma * c, mean, beta * c), "Div": (gamma / c, mean, beta / c)}[op_type]


def _elu(alpha):
    """ELU with `alpha` as a Lambda formula (exp of the negative part only: no overflow)."""
    return f"where(a > 0, a, {float(alpha)!r} * (exp(minimum(a, 0)) - 1))"


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _close(a, b):
    return abs(a - b) <= ATTR_RTOL * max(abs(b), 1.0)


def _perms(rank):
    """(to channels-first, to channels-last) transposition of an ONNX tensor of `rank`."""
    return ([0, rank - 1] + list(range(1, rank - 1)), [0] + list(range(2, rank)) + [1])


class Imported:
    """An imported model: project, weights, and how the ONNX model's inputs and outputs map
    onto the Input and output nodes ({ONNX name: _Value}), whose layout predict() undoes."""

    def __init__(self, project, weights, inputs, outputs):
        self.project, self.weights = project, weights
        self.inputs, self.outputs = inputs, outputs

    def predict(self, arrays):
        """{ONNX output name: array as ONNX lays it out} for {ONNX input name: array}."""
        from layerloom.data.prepare import named_arrays, prepare_inputs
        from layerloom.train.session import Session
        x = {}
        for name, v in self.inputs.items():
            a = np.asarray(arrays[name], np.float32)
            x[v.node] = np.moveaxis(a, 1, -1) if v.nchw else a
        # as layerloom.api.Model predicts (the importer gives every layer its weights)
        project = self.project
        rows = prepare_inputs(project, named_arrays(project, x, project.graph.inputs(),
                                                    "inputs"))
        session = Session(project, initial_weights=self.weights)
        got = session.model.predict(rows, session.batch_size)
        out = {}
        for name, v in self.outputs.items():
            a = got[v.node]
            out[name] = (a.reshape(a.shape + (1, 1)) if v.pooled else
                         np.moveaxis(a, -1, 1) if v.nchw else a)
        return out


class _Importer:
    # for the layers' readers (OnnxRead.read(imp, node, type_id)): a node's attributes, a
    # result value (its node id; nchw, pooled), an attribute's text
    attrs, result, text = staticmethod(_attrs), _Value, staticmethod(_text)

    def __init__(self, model):
        onnx, numpy_helper = _onnx()
        self.graph, self.weights, self.ids = Graph(), {}, {}
        self.shapes = {}  # node id -> its output shapes, as the layers' rules give them
        g = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.uses, self.readers = {}, {}  # tensor -> how many inputs read it; its readers
        for n in g.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
                self.readers.setdefault(i, []).append(n)
        self.values = {}
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          1)
        self.graph_outputs = {o.name for o in g.output}
        self.known = {vi.name: vi for vi in list(g.value_info) + list(g.output)}
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
        if name not in self.values:
            self.fail(node, f"input {name!r} is neither a graph input nor computed before "
                            "(a constant where a tensor is expected?)")
        return self.values[name]

    def const(self, node, i, what):
        if i >= len(node.input) or node.input[i] not in self.consts:
            self.fail(node, f"its {what} must be a constant (an initializer)")
        return self.consts[node.input[i]]

    def set(self, node, v):
        """v is the node's output; where ONNX's shape inference knows that tensor's shape, ours
        must be the same (a layout mapped wrongly is refused here, not computed)."""
        name = node.output[0]
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
        for node in g.node:
            if node.output[0] not in self.absorbed:
                self.operator(node)
        return self.outputs()

    def operator(self, node):
        if node.domain not in ("", "ai.onnx"):
            self.fail(node, f"operator domain {node.domain!r}; only ONNX's own operators map")
        if node.op_type == "Constant":
            self.constant(node)
            return
        if node.op_type in FOLDED and node.input and all(i in self.consts for i in node.input):
            self.consts[node.output[0]] = FOLDED[node.op_type](_attrs(node), [
                self.consts[i] for i in node.input])
            return
        if node.op_type not in ATTRIBUTES:
            self.fail(node, "this operator has no Layerloom layer")
        extra = sorted(set(_attrs(node)) - ATTRIBUTES[node.op_type])
        if extra:
            self.fail(node, f"attribute {extra[0]!r} is not mapped by the importer")
        used = [o for o in node.output[1:] if o and (o in self.uses or o in self.graph_outputs)]
        if used:  # named but read by nothing (a Dropout's mask) it does not matter
            self.fail(node, f"its output {used[0]!r} (beyond the first) has no Layerloom form")
        if node.op_type in ACTIVATIONS:
            self.activation(node)
        elif node.op_type in LAMBDA_OPS:
            self.arithmetic(node)
        elif node.op_type in PASS_THROUGH:
            self.pass_through(node)
        elif node.op_type in READS:
            type_id, r = READS[node.op_type]
            r.read(self, node, type_id)
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
        if len(dims) not in (2, 3, 4) or any(d is None or d <= 0 for d in dims[1:]):
            raise DataError(f"ONNX input {inp.name!r}: shape {dims}; expected a batch axis and "
                            "fixed sizes (2-D features, 3-D sequences, 4-D images)", PLACE)
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
                        n.op_type in ("ReduceMean", "ReduceMax") and rank == 4
                        and self.reduce_axes(n, rank) == [2, 3]):  # a channels-first global pooling
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

    # -- operators ------------------------------------------------------------------------------
    def pass_through(self, node):
        self.set(node, self.value(node, 0))

    def activation(self, node):
        a, v = _attrs(node), self.value(node, 0)
        act = ACTIVATIONS[node.op_type]
        if node.op_type in ("Softmax", "LogSoftmax"):
            self.softmax_axis(node, v, a)
        if node.op_type == "Elu" and not _close(a.get("alpha", 1.0), 1.0):
            self.formula(node, v, _elu(a["alpha"]))  # another alpha than our elu's 1
            return
        if node.op_type == "Selu":
            from layerloom.core.activations import SELU_ALPHA, SELU_SCALE
            alpha, gamma = a.get("alpha", ONNX_SELU[0]), a.get("gamma", ONNX_SELU[1])
            if not (_close(alpha, SELU_ALPHA) and _close(gamma, SELU_SCALE)):
                self.formula(node, v, f"{float(gamma)!r} * {_elu(alpha)}")
                return
        if node.op_type == "Gelu" and _text(a.get("approximate", "none")) != "none":
            self.fail(node, "the tanh approximation; Layerloom's gelu is the exact (erf) one")
        prev = self.graph.nodes[v.node]
        if (prev.type in ("Dense", "Conv2D", "Conv1D") and prev.params["activation"] == "linear"
                and self.only_use(node.input[0])):
            self.graph.set_params(v.node, activation=act)  # folded, as Keras would write it
            self.set(node, v)
            return
        self.set(node, v.like(self.add(node, "Activation", {"activation": act}, [v])))

    def softmax_axis(self, node, v, a):
        """Layerloom's softmax is along our last axis. From opset 13 ONNX's is along `axis`;
        before, along axis and every axis after it taken as one."""
        rank = len(self.onnx_shape(v)) + 1
        axis = a.get("axis", -1 if self.opset >= 13 else 1)
        ax = axis % rank
        after = self.onnx_shape(v)[ax:]  # the axes after it (per sample)
        ok = ax == self.channel_axis(v) and (self.opset >= 13 or all(d == 1 for d in after))
        if not ok:
            self.fail(node, f"along axis {axis} (opset {self.opset}); Layerloom's softmax is "
                            "along the channels (features) axis alone")

    def op_LeakyRelu(self, node):
        from layerloom.core.activations import LEAKY_SLOPE
        alpha, v = _attrs(node).get("alpha", 0.01), self.value(node, 0)
        if not _close(alpha, LEAKY_SLOPE):  # another slope than our leaky_relu's
            self.formula(node, v, f"where(a > 0, a, {float(alpha)!r} * a)")
            return
        self.set(node, v.like(self.add(node, "Activation", {"activation": "leaky_relu"}, [v])))

    def formula(self, node, v, expression):
        """An activation with constants our activation table does not have, as a Lambda."""
        self.set(node, v.like(self.add(node, "Lambda", {"expression": expression}, [v])))

    def op_Gemm(self, node):
        a = _attrs(node)
        if a.get("transA", 0):
            self.fail(node, "transA; expected the input as rows")
        v = self.flat(node, self.value(node, 0))
        w = self.const(node, 1, "weight matrix")
        if w.ndim != 2:
            self.fail(node, f"weights of {w.ndim} dimensions; expected a matrix")
        w = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
        bias = None
        if len(node.input) > 2 and node.input[2]:
            if self.opset < 7 and not a.get("broadcast", 0):
                self.fail(node, "broadcast 0 (opset 6 and before): a bias per row and column")
            c = self.const(node, 2, "bias") * a.get("beta", 1.0)
            units = w.shape[1]
            # C broadcasts to (rows, units): one value per unit (or one for all) is a Dense
            # bias; a value per row depends on the batch, which Layerloom's layers do not fix
            if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or c.shape[-1:] not in (
                    (), (1,), (units,)):
                self.fail(node, f"a bias of shape {list(c.shape)}; only one value per output "
                                f"({units}) or one for all maps (as (N,) or (1, N))")
            bias = np.broadcast_to(c.reshape(-1), (units,))
        self.dense(node, v, w, bias)

    def op_MatMul(self, node):
        v = self.flat(node, self.value(node, 0))
        w = self.const(node, 1, "second operand (the weights)")
        if w.ndim != 2:
            self.fail(node, f"weights of {w.ndim} dimensions; expected a matrix")
        self.dense(node, v, w, None)

    def dense(self, node, v, w, bias):
        if self.shape(v) != (w.shape[0],):
            self.fail(node, f"weights for {w.shape[0]} inputs, given {self.shape(v)}")
        nid = self.add(node, "Dense", {"units": int(w.shape[1]), "use_bias": bias is not None},
                       [v])
        self.weights[f"{nid}/kernel"] = np.ascontiguousarray(w, np.float32)
        if bias is not None:
            self.weights[f"{nid}/bias"] = np.asarray(bias, np.float32)
        self.set(node, _Value(nid))

    def flat(self, node, v):
        """v as features (a rank-2 ONNX tensor); a pooled (N, C, 1, 1) is not one (ONNX's
        Gemm and MatMul would refuse it)."""
        if v.pooled or len(self.shape(v)) != 1:
            self.fail(node, f"an input of shape {['N', *self.onnx_shape(v)]}; expected features "
                            "(N, F) (Flatten first)")
        return v

    def padding(self, node, v, a, k, strides, dil, pad_value_matters):
        """(input, "valid" | "same"): ONNX's explicit pads as Keras' "same" where they are
        the same, else (zeros only) a ZeroPadding2D before a "valid" layer."""
        auto = _text(a.get("auto_pad", "NOTSET"))
        if auto not in ("NOTSET", "VALID", "SAME_UPPER"):
            self.fail(node, f"auto_pad {auto}")
        h, w_, _ = self.shape(v)
        same = []
        for n, kk, s, d in zip((h, w_), k, strides, dil):
            total = max((math.ceil(n / s) - 1) * s + (kk - 1) * d + 1 - n, 0)
            same.append((total // 2, total - total // 2))
        same = [same[0][0], same[1][0], same[0][1], same[1][1]]
        if auto == "SAME_UPPER":  # the extra pixel after, as Keras' "same"
            return v, "same"
        pads = list(a.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
        if not any(pads):
            return v, "valid"
        if same == pads:
            return v, "same"
        if pad_value_matters:
            self.fail(node, f"pads {pads}, which are not Keras' \"same\" for this input")
        zp = self.add(node, "ZeroPadding2D", {"padding": [[pads[0], pads[2]],
                                                          [pads[1], pads[3]]]}, [v],
                      name=f"{self.scope(node)}_pad")
        return _Value(zp, nchw=True), "valid"

    def reduce_axes(self, node, rank):
        """A Reduce*'s axes (an attribute before opset 18, a constant input from 18), sorted
        and counted from the front of a tensor of `rank`; None where not given or not
        constant."""
        axes = _attrs(node).get("axes")
        if len(node.input) > 1 and node.input[1]:
            axes = self.consts.get(node.input[1])
        return None if axes is None else sorted(int(x) % rank for x in np.reshape(axes, -1))

    def op_Flatten(self, node):
        v = self.value(node, 0)
        axis = _attrs(node).get("axis", 1)
        if axis % (len(self.onnx_shape(v)) + 1) != 1:
            self.fail(node, f"axis {axis}; expected 1 (keep the batch axis)")
        self.set(node, self.flatten(node, v))

    def flatten(self, node, v):
        if v.pooled:
            return _Value(v.node, v.port)
        if len(self.shape(v)) == 1:
            return v
        if v.nchw:  # ONNX flattens channels-first: the same order after a Permute
            rank = len(self.shape(v))
            dims = [rank] + list(range(1, rank))
            v = _Value(self.add(node, "Permute", {"dims": dims}, [v],
                                name=f"{self.scope(node)}_to_nchw"))
        return _Value(self.add(node, "Flatten", {}, [v]))

    def op_Reshape(self, node):
        v, shape = self.value(node, 0), self.const(node, 1, "target shape")
        size = int(np.prod(self.onnx_shape(v)))
        shape = [int(d) for d in np.asarray(shape).reshape(-1)]
        zero_keeps = not _attrs(node).get("allowzero", 0)
        # (batch, features): the batch kept as 0 (or -1 with the features given)
        if len(shape) == 2 and ((shape[0] == 0 and zero_keeps and shape[1] in (-1, size)) or
                                (shape[0] == -1 and shape[1] == size)):
            self.set(node, self.flatten(node, v))
            return
        self.fail(node, f"target shape {shape}; only a flatten to (batch, features), the batch "
                        "kept as 0, maps to a Layerloom layer")

    def op_Squeeze(self, node):
        v = self.value(node, 0)
        axes = _attrs(node).get("axes")
        if len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes")
        if not v.pooled or axes is None or sorted(int(a) % 4 for a in np.reshape(axes, -1)) \
                != [2, 3]:
            self.fail(node, "only the (N, C, 1, 1) of a global pooling can be squeezed, along "
                            "axes 2 and 3 named")
        self.set(node, _Value(v.node, v.port))

    def arithmetic(self, node):
        names = list(node.input)
        consts = [n in self.consts for n in names]
        if not any(consts):
            vs = [self.value(node, 0), self.value(node, 1)]
            if self.shape(vs[0]) != self.shape(vs[1]) or (vs[0].nchw, vs[0].pooled) != (
                    vs[1].nchw, vs[1].pooled):
                self.fail(node, "operands of different shapes (broadcasting is not mapped)")
            if node.op_type in MERGES:
                nid = self.add(node, MERGES[node.op_type], {}, vs)
            else:
                nid = self.add(node, "Lambda", {"expression": "a / b"}, vs)
            self.set(node, vs[0].like(nid))
            return
        if all(consts):
            self.fail(node, "both operands are constants")
        c = np.asarray(self.consts[names[consts.index(True)]])
        v = self.value(node, consts.index(False))
        if c.ndim > len(self.onnx_shape(v)) + 1:
            self.fail(node, f"a constant of shape {list(c.shape)}, of more dimensions than the "
                            "tensor")
        prev = self.graph.nodes[v.node]
        if (node.op_type == "Add" and prev.type == "Dense" and not prev.params["use_bias"]
                and c.shape[-1:] == (prev.params["units"],) and c.size == c.shape[-1]
                and self.only_use(names[consts.index(False)]) and not v.pooled):
            self.graph.set_params(v.node, use_bias=True)  # MatMul + Add: one Dense
            self.weights[f"{v.node}/bias"] = c.reshape(-1).astype(np.float32)
            self.set(node, v)
            return
        if c.size != 1:
            self.channel_affine(node, v, c, consts[1])
            return
        k = repr(float(c.reshape(-1)[0]))
        expr = f"a {LAMBDA_OPS[node.op_type]} {k}" if consts[1] else \
            f"{k} {LAMBDA_OPS[node.op_type]} a"
        self.set(node, v.like(self.add(node, "Lambda", {"expression": expr}, [v])))

    def channel_affine(self, node, v, c, const_second):
        """x - c, x + c, x * c or x / c with c one value per channel (a fitted normalisation,
        a per-feature scale) as a BatchNormalization in inference form that computes exactly
        gamma * (x - mean) + beta: variance 1 - epsilon; a chain of them (our export's
        BatchNormalization: Sub, Mul, Add) is one such layer. One value per channel means c
        broadcasts along ONNX's channel axis alone, as ONNX's rules (aligned from the last
        axis) give it."""
        channels = self.shape(v)[-1]
        rank = len(self.onnx_shape(v)) + 1
        axis = self.channel_axis(v) - rank  # counted from the end, as broadcasting aligns
        want = [1] * (-axis)
        want[0] = channels
        per_channel = list(c.shape[-len(want):]) == want and c.size == channels
        if not per_channel or not const_second and node.op_type in ("Sub", "Div"):
            self.fail(node, f"a constant of shape {list(c.shape)}; only a number or one value "
                            "per channel (after the tensor) maps")
        c = c.reshape(-1).astype(np.float64)
        x_name = node.input[0 if const_second else 1]
        # the next step of one affine map (our export's BatchNormalization) only when it reads
        # that map's own last result and nothing else does: an alias of it (Identity, a
        # transpose) may be read elsewhere too, which would see the merged step
        if v.node in self.affine and self.affine_out.get(v.node) == x_name and \
                self.only_use(x_name) and x_name not in self.graph_outputs:
            nid = v.node
        else:
            nid = self.add(node, "BatchNormalization", {"epsilon": AFFINE_EPS}, [v])
            self.affine[nid] = None
        self.affine[nid] = _affine_step(self.affine[nid], node.op_type, c)
        self.affine_out[nid] = node.output[0]
        gamma, mean, beta = self.affine[nid]
        for name, arr in (("gamma", gamma), ("beta", beta), ("moving_mean", mean),
                          ("moving_variance", np.full(channels, 1.0 - AFFINE_EPS))):
            self.weights[f"{nid}/{name}"] = arr.astype(np.float32)
        self.set(node, v.like(nid))

    def op_Transpose(self, node):
        v, perm = self.value(node, 0), list(_attrs(node).get("perm", []))
        rank = len(self.onnx_shape(v)) + 1
        if rank >= 3 and not v.pooled:
            to_first, to_last = _perms(rank)
            if v.nchw and perm == to_last:  # to channels-last, which ours is already
                self.set(node, _Value(v.node, v.port, nchw=False))
                return
            if not v.nchw and perm == to_first:  # tf2onnx's way into NCHW convolutions
                self.set(node, _Value(v.node, v.port, nchw=True))
                return
        self.fail(node, f"perm {perm}; only the transposes between channels-last and "
                        "channels-first are mapped")


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
