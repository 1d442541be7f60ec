"""ONNX in: an ONNX model (what Layerloom exports, what torch.onnx.export and tf2onnx emit for MLPs
and CNNs) as a Layerloom project with its weights. Layerloom's tensors are channels-last (NHWC,
as Keras), so an NCHW graph is read with its channel axis moved last: a value keeps a flag saying
whether the ONNX tensor is channels-first where ours is channels-last, convolution kernels are
transposed to (KH, KW, Cin, Cout), a Flatten of an NCHW tensor flattens in ONNX's order (a
Permute first), and the Transposes tf2onnx puts around an NHWC graph only change that flag.
An operator or attribute that cannot be mapped is a DataError naming the ONNX node, its op type
and why (exit 2 from the command line): nothing is guessed."""
import math
import os
import re

import numpy as np

from layerloom.core.errors import DataError
from layerloom.core.graph import Graph

PLACE = "--import"
ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
               "Softsign": "softsign", "Exp": "exponential", "Selu": "selu", "Elu": "elu",
               "Softmax": "softmax", "LogSoftmax": "log_softmax", "Gelu": "gelu"}
MERGES = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply"}
LAMBDA_OPS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}
PASS_THROUGH = {"Dropout", "Identity"}


class _Value:
    """An ONNX tensor as our node's output port. nchw: the ONNX tensor is channels-first
    (N, C, ...) where ours is channels-last; pooled: ONNX's (N, C, 1, 1) is our (C,)."""
    __slots__ = ("node", "port", "nchw", "pooled")

    def __init__(self, node, port=0, nchw=False, pooled=False):
        self.node, self.port, self.nchw, self.pooled = node, port, nchw, pooled


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


class _Importer:
    def __init__(self, model):
        onnx, numpy_helper = _onnx()
        self.graph, self.weights, self.ids = Graph(), {}, {}
        g = model.graph
        self.consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.uses = {}
        for n in g.node:
            for i in n.input:
                self.uses[i] = self.uses.get(i, 0) + 1
        self.values = {}
        self.model = model

    # -- helpers ------------------------------------------------------------------------------
    def fail(self, node, why):
        raise DataError(f"ONNX node {node.name or node.output[0]!r} ({node.op_type}): {why}",
                        PLACE)

    def new_id(self, name):
        base = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "node"
        nid, k = base, 2
        while nid in self.graph.nodes:
            nid, k = f"{base}_{k}", k + 1
        return nid

    def add(self, node, type_id, params, inputs, name=None):
        nid = self.new_id(name or node.name or node.output[0])
        try:
            self.graph.add_node(type_id, params, id=nid)
            for port, v in enumerate(inputs):
                self.graph.connect(v.node, v.port, nid, port)
        except Exception as e:  # a parameter or wiring our layer refuses
            self.fail(node, str(e))
        problems = self.graph.analysis().node_problems(nid)
        if problems:
            self.fail(node, problems[0])
        return nid

    def shape(self, v):
        return self.graph.analysis().shapes[v.node][v.port]

    def value(self, node, i):
        name = node.input[i]
        if name not in self.values:
            self.fail(node, f"input {name!r} is neither a graph input nor computed before "
                            "(a constant where a tensor is expected?)")
        return self.values[name]

    def const(self, node, i, what):
        if i >= len(node.input) or node.input[i] not in self.consts:
            self.fail(node, f"its {what} must be a constant (an initializer)")
        return self.consts[node.input[i]]

    def set(self, node, v):
        self.values[node.output[0]] = v

    def only_use(self, v_name):
        return self.uses.get(v_name, 0) == 1

    # -- the graph --------------------------------------------------------------------------
    def run(self):
        g = self.model.graph
        for inp in g.input:
            if inp.name not in self.consts:
                self.graph_input(inp)
        for node in g.node:
            if node.op_type == "Constant":
                _, numpy_helper = _onnx()
                self.consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.op_type in ACTIVATIONS:
                handler = self.activation
            elif node.op_type in LAMBDA_OPS:
                handler = self.arithmetic
            elif node.op_type in PASS_THROUGH:
                handler = self.pass_through
            if handler is None:
                self.fail(node, "this operator has no Layerloom layer")
            handler(node)
        names = {}
        for out in g.output:
            if out.name not in self.values:
                raise DataError(f"ONNX output {out.name!r} is a constant", PLACE)
            names.setdefault(self.values[out.name].node, out.name)
        self.rename(names)
        return [self.values[out.name].node for out in g.output]

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
        for v in {id(v): v for v in self.values.values()}.values():  # shared by pass-throughs
            v.node = new[v.node]

    def graph_input(self, inp):
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in inp.type.tensor_type.shape.dim]
        if len(dims) not in (2, 3, 4) or any(d is None or d <= 0 for d in dims[1:]):
            raise DataError(f"ONNX input {inp.name!r}: shape {dims}; expected a batch axis and "
                            "fixed sizes (2-D features, 3-D sequences, 4-D NCHW images)", PLACE)
        nchw = len(dims) == 4 and not self.transposed_before_use(inp.name)
        shape = dims[2:] + dims[1:2] if nchw else dims[1:]
        nid = self.new_id(inp.name)
        self.graph.add_node("Input", {"shape": shape}, id=nid)
        self.values[inp.name] = _Value(nid, nchw=nchw)

    def transposed_before_use(self, name):
        """A 4-D input is NCHW unless (tf2onnx, Layerloom's own export) it is NHWC and goes
        through a Transpose into NCHW before any operator that cares, elementwise arithmetic
        with constants (a fitted normalisation) and Identity aside."""
        elementwise = set(LAMBDA_OPS) | PASS_THROUGH
        while True:
            users = [n for n in self.model.graph.node if name in n.input]
            if len(users) != 1:
                return bool(users) and all(
                    n.op_type == "Transpose" and list(_attrs(n).get("perm", [])) == [0, 3, 1, 2]
                    for n in users)
            n = users[0]
            if n.op_type == "Transpose":
                return list(_attrs(n).get("perm", [])) == [0, 3, 1, 2]
            if n.op_type not in elementwise:
                return False
            name = n.output[0]

    # -- operators ------------------------------------------------------------------------------
    def pass_through(self, node):
        self.set(node, self.value(node, 0))

    def activation(self, node):
        a, v = _attrs(node), self.value(node, 0)
        act = ACTIVATIONS[node.op_type]
        if node.op_type in ("Softmax", "LogSoftmax"):
            rank = len(self.shape(v)) + 1
            axis = a.get("axis", -1) % rank
            ours_last = (axis == 1) if v.nchw else (axis == rank - 1)
            if not ours_last:
                self.fail(node, f"along axis {a.get('axis')}; Layerloom's softmax is along the "
                                "channels (features) axis")
        if node.op_type == "Elu" and abs(a.get("alpha", 1.0) - 1.0) > 1e-6:
            self.fail(node, f"alpha {a['alpha']}; Layerloom's elu has alpha 1")
        if node.op_type == "Gelu" and a.get("approximate", "none") != "none":
            self.fail(node, "the tanh approximation; Layerloom's gelu is the exact (erf) one")
        prev = self.graph.nodes[v.node]
        if (prev.type in ("Dense", "Conv2D", "Conv1D") and prev.params["activation"] == "linear"
                and self.only_use(node.input[0])):
            self.graph.set_params(v.node, activation=act)  # folded, as Keras would write it
            self.set(node, v)
            return
        self.set(node, _Value(self.add(node, "Activation", {"activation": act}, [v]), 0,
                              v.nchw, v.pooled))

    def op_LeakyRelu(self, node):
        from layerloom.core.activations import LEAKY_SLOPE
        if abs(_attrs(node).get("alpha", 0.01) - LEAKY_SLOPE) > 1e-6:
            self.fail(node, f"alpha {_attrs(node).get('alpha', 0.01)}; Layerloom's leaky_relu "
                            f"has slope {LEAKY_SLOPE}")
        v = self.value(node, 0)
        self.set(node, _Value(self.add(node, "Activation", {"activation": "leaky_relu"}, [v]),
                              0, v.nchw, v.pooled))

    def op_Gemm(self, node):
        a = _attrs(node)
        if a.get("transA", 0):
            self.fail(node, "transA; expected the input as rows")
        v = self.flat(node, self.value(node, 0))
        w = self.const(node, 1, "weight matrix") * a.get("alpha", 1.0)
        w = w.T if a.get("transB", 0) else w
        bias = self.const(node, 2, "bias") * a.get("beta", 1.0) if len(node.input) > 2 else None
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
            self.weights[f"{nid}/bias"] = np.broadcast_to(bias, (w.shape[1],)).astype(np.float32)
        self.set(node, _Value(nid))

    def flat(self, node, v):
        """v as features (a rank-2 ONNX tensor); a pooled (N, C, 1, 1) counts as one."""
        if v.pooled:
            return _Value(v.node, v.port)
        if len(self.shape(v)) != 1:
            self.fail(node, f"an input of shape {self.shape(v)}; expected features (Flatten "
                            "first)")
        return v

    def op_Conv(self, node):
        a, v = _attrs(node), self.value(node, 0)
        w = self.const(node, 1, "kernel")
        if w.ndim != 4 or not v.nchw:
            self.fail(node, "expected a 2-D convolution of an NCHW tensor")
        if a.get("group", 1) != 1:
            self.fail(node, f"group {a['group']}; grouped convolutions have no Layerloom layer")
        k, strides = list(w.shape[2:]), list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        v, padding = self.padding(node, v, a, k, strides, dil, pad_value_matters=False)
        bias = self.const(node, 2, "bias") if len(node.input) > 2 else None
        nid = self.add(node, "Conv2D", {"filters": int(w.shape[0]), "kernel_size": k,
                                        "strides": strides, "padding": padding,
                                        "dilation_rate": dil, "use_bias": bias is not None}, [v])
        self.weights[f"{nid}/kernel"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0), np.float32)
        if bias is not None:
            self.weights[f"{nid}/bias"] = bias.astype(np.float32)
        self.set(node, _Value(nid, nchw=True))

    def padding(self, node, v, a, k, strides, dil, pad_value_matters):
        """(input, "valid" | "same"): ONNX's explicit pads as Keras' "same" where they are
        the same, else (zeros only) a ZeroPadding2D before a "valid" layer."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER",):
            return v, "same"
        if auto not in ("NOTSET", "VALID"):
            self.fail(node, f"auto_pad {auto}")
        pads = list(a.get("pads", [0, 0, 0, 0])) if auto == "NOTSET" else [0, 0, 0, 0]
        if not any(pads):
            return v, "valid"
        h, w_, _ = self.shape(v)
        same = []
        for n, kk, s, d in zip((h, w_), k, strides, dil):
            total = max((math.ceil(n / s) - 1) * s + (kk - 1) * d + 1 - n, 0)
            same.append((total // 2, total - total // 2))
        if [same[0][0], same[1][0], same[0][1], same[1][1]] == pads:
            return v, "same"
        if pad_value_matters:
            self.fail(node, f"pads {pads}, which are not Keras' \"same\" for this input")
        zp = self.add(node, "ZeroPadding2D", {"padding": [[pads[0], pads[2]],
                                                          [pads[1], pads[3]]]}, [v],
                      name=f"{node.name or node.output[0]}_pad")
        return _Value(zp, nchw=True), "valid"

    def pool(self, node, type_id):
        a, v = _attrs(node), self.value(node, 0)
        if not v.nchw or len(self.shape(v)) != 3:
            self.fail(node, "expected 2-D pooling of an NCHW tensor")
        if a.get("ceil_mode", 0):
            self.fail(node, "ceil_mode 1; Layerloom's pooling rounds down")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(node, "dilated pooling")
        if type_id == "AveragePooling2D" and a.get("count_include_pad", 0) and any(
                a.get("pads", [0])):
            self.fail(node, "count_include_pad with pads; Layerloom averages the input only")
        k = list(a["kernel_shape"])
        strides = list(a.get("strides", [1, 1]))
        v, padding = self.padding(node, v, a, k, strides, [1, 1], pad_value_matters=True)
        nid = self.add(node, type_id, {"pool_size": k, "strides": strides, "padding": padding},
                       [v])
        self.set(node, _Value(nid, nchw=True))

    def op_MaxPool(self, node):
        self.pool(node, "MaxPooling2D")

    def op_AveragePool(self, node):
        self.pool(node, "AveragePooling2D")

    def global_pool(self, node, type_id):
        v = self.value(node, 0)
        if not v.nchw or len(self.shape(v)) != 3:
            self.fail(node, "expected an NCHW tensor")
        self.set(node, _Value(self.add(node, type_id, {}, [v]), pooled=True))

    def op_GlobalAveragePool(self, node):
        self.global_pool(node, "GlobalAveragePooling2D")

    def op_GlobalMaxPool(self, node):
        self.global_pool(node, "GlobalMaxPooling2D")

    def op_Flatten(self, node):
        v = self.value(node, 0)
        if _attrs(node).get("axis", 1) != 1:
            self.fail(node, f"axis {_attrs(node)['axis']}; expected 1 (keep the batch axis)")
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
                                name=f"{node.name or node.output[0]}_to_nchw"))
        return _Value(self.add(node, "Flatten", {}, [v]))

    def op_Reshape(self, node):
        v, shape = self.value(node, 0), self.const(node, 1, "target shape")
        size = int(np.prod(self.shape(v)))
        if len(shape) == 2 and int(shape[1]) in (-1, size):  # (batch or 0 or -1, features)
            self.set(node, self.flatten(node, v))
            return
        self.fail(node, f"target shape {list(shape)}; only a flatten to (batch, features) maps "
                        "to a Layerloom layer")

    def op_Squeeze(self, node):
        v = self.value(node, 0)
        if not v.pooled:
            self.fail(node, "only the (N, C, 1, 1) of a global pooling can be squeezed")
        self.set(node, _Value(v.node, v.port))

    def op_BatchNormalization(self, node):
        a, v = _attrs(node), self.value(node, 0)
        if len(node.output) > 1 and any(node.output[1:]):
            self.fail(node, "training-mode outputs (running statistics)")
        gamma, beta, mean, var = (self.const(node, i, w) for i, w in
                                  enumerate(("scale", "bias", "mean", "variance"), 1))
        nid = self.add(node, "BatchNormalization", {"epsilon": float(a.get("epsilon", 1e-5))},
                       [v])
        for name, arr in (("gamma", gamma), ("beta", beta), ("moving_mean", mean),
                          ("moving_variance", var)):
            self.weights[f"{nid}/{name}"] = arr.astype(np.float32)
        self.set(node, _Value(nid, 0, v.nchw, v.pooled))

    def op_Concat(self, node):
        vs = [self.value(node, i) for i in range(len(node.input))]
        if len({(v.nchw, v.pooled) for v in vs}) != 1:
            self.fail(node, "inputs in different layouts")
        rank = len(self.shape(vs[0])) + 1
        axis = _attrs(node)["axis"] % rank
        if not ((vs[0].nchw and axis == 1) or (not vs[0].nchw and axis == rank - 1)):
            self.fail(node, f"axis {axis}; Layerloom concatenates along the channels/features")
        self.set(node, _Value(self.add(node, "Concatenate", {"axis": -1}, vs), 0, vs[0].nchw,
                              vs[0].pooled))

    def arithmetic(self, node):
        names = list(node.input)
        consts = [n in self.consts for n in names]
        if not any(consts):
            vs = [self.value(node, 0), self.value(node, 1)]
            if self.shape(vs[0]) != self.shape(vs[1]) or vs[0].nchw != vs[1].nchw:
                self.fail(node, "operands of different shapes (broadcasting is not mapped)")
            if node.op_type in MERGES:
                nid = self.add(node, MERGES[node.op_type], {}, vs)
            else:
                nid = self.add(node, "Lambda", {"expression": "a / b"}, vs)
            self.set(node, _Value(nid, 0, vs[0].nchw, vs[0].pooled))
            return
        c = self.consts[names[consts.index(True)]]
        v = self.value(node, consts.index(False))
        prev = self.graph.nodes[v.node]
        if (node.op_type == "Add" and prev.type == "Dense" and not prev.params["use_bias"]
                and c.size == prev.params["units"] and self.only_use(names[consts.index(False)])):
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
        self.set(node, _Value(self.add(node, "Lambda", {"expression": expr}, [v]), 0, v.nchw,
                              v.pooled))

    def channel_affine(self, node, v, c, const_second):
        """x - c, x + c, x * c or x / c with c one value per channel (a fitted normalisation,
        a per-feature scale) as a BatchNormalization in inference form that computes exactly
        gamma * (x - mean) + beta: variance 1 - epsilon."""
        channels = self.shape(v)[-1]
        per_channel = c.reshape(-1).size == channels and (
            c.shape[-1] == channels if not v.nchw else
            c.reshape(-1).size == c.shape[-3 if c.ndim >= 3 else 0])
        if not per_channel or not const_second and node.op_type in ("Sub", "Div"):
            self.fail(node, f"a constant of shape {list(c.shape)}; only a number or one value "
                            "per channel (after the tensor) maps")
        c = c.reshape(-1).astype(np.float64)
        one, zero = np.ones(channels), np.zeros(channels)
        gamma, mean = {"Sub": (one, c), "Add": (one, -c), "Mul": (c, zero),
                       "Div": (1.0 / c, zero)}[node.op_type]
        eps = 1e-3
        nid = self.add(node, "BatchNormalization", {"epsilon": eps}, [v])
        for name, arr in (("gamma", gamma), ("beta", zero), ("moving_mean", mean),
                          ("moving_variance", np.full(channels, 1.0 - eps))):
            self.weights[f"{nid}/{name}"] = arr.astype(np.float32)
        self.set(node, _Value(nid, 0, v.nchw, v.pooled))

    def op_Transpose(self, node):
        v, perm = self.value(node, 0), list(_attrs(node).get("perm", []))
        if len(self.shape(v)) == 3 and not v.pooled:
            if v.nchw and perm == [0, 2, 3, 1]:  # to NHWC, which ours is already
                self.set(node, _Value(v.node, v.port, nchw=False))
                return
            if not v.nchw and perm == [0, 3, 1, 2]:  # tf2onnx's way into NCHW convolutions
                self.set(node, _Value(v.node, v.port, nchw=True))
                return
        self.fail(node, f"perm {perm}; only the transposes between NHWC and NCHW are mapped")


def read(path):
    """(Project, weights) of the ONNX model at `path`."""
    onnx, _ = _onnx()
    from layerloom.project.loom import Project
    from layerloom.project.training import parse_training
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}", PLACE)
    try:
        model = onnx.load(path)
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as e:  # not a protobuf, a damaged file
        raise DataError(f"{path}: not a readable ONNX model ({e})", PLACE) from None
    imp = _Importer(model)
    outputs = imp.run()
    loss, metrics = {}, []
    for o in outputs:  # a guess from the output's activation, for a later fit in Layerloom
        act = imp.graph.nodes[o].params.get("activation")
        loss[o] = {"softmax": "sparse_categorical_crossentropy",
                   "sigmoid": "binary_crossentropy"}.get(act, "mean_squared_error")
        metrics = ["accuracy"] if act in ("softmax", "sigmoid") else ["mae"]
    problems = []
    training = parse_training({"loss": loss, "metrics": metrics}, imp.graph, problems)
    if problems:
        raise DataError(f"{path}: {problems[0]}", PLACE)
    name = os.path.splitext(os.path.basename(path))[0]
    return Project(imp.graph, training=training, name=name), imp.weights


def convert(path, to):
    """Write the ONNX model at `path` as the project `to` with `to`.weights.npz beside it,
    laid out, each file atomically. Returns the project."""
    from layerloom.interop import write_imported
    return write_imported(*read(path), to)
