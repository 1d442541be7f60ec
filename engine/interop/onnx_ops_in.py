"""ONNX in, the operators (engine/interop/onnx_import.py walks the graph): the op_* readers of the
operators no layer declares a reader for, and the patterns that span layers (MatMul + Add as
Dense, Add/Sub/Mul as a merge, a Lambda or a BatchNormalization), as methods of the importer's
base class _OperatorReads; with them the shared steps the layers' readers call too (padding,
flatten, reduce_axes). Also here: the context readers tried before the layers' (a 1x1 Conv of
a global pooling as a Dense, a Slice of the channels), the activations exporters write out as
formulas (onnx_formulas_in.py, a base class: GELU's erf and tanh forms, SiLU), a
per-channel tensor broadcast over an image (squeeze-and-excitation), ShuffleNet's channel
shuffle, a Reshape that keeps the batch, Cast to float32, one step of a sequence (a recurrent
layer's last step, a ViT's class token) and a table added to a sequence (a ViT's positions)."""
import numpy as np

from layerloom.core.activations import GELU_TANH_C, GELU_TANH_K
from layerloom.interop.onnx_formulas_in import _ActivationFormulas
from layerloom.interop.onnx_layout import (_Value, _attrs, _close, _ints, _perms, _text,
                                           slice_args)

ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": "softplus",
               "Softsign": "softsign", "Exp": "exponential", "Selu": "selu", "Elu": "elu",
               "Softmax": "softmax", "LogSoftmax": "log_softmax", "Gelu": "gelu"}
MERGES = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply"}
LAMBDA_OPS = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}
# ONNX's Selu defaults (float32 attributes)
ONNX_SELU = (1.67326319628502807617, 1.05070102214813232422)
# the layers whose activation parameter applies to their output, into which a following
# activation folds
FOLDS_ACTIVATION = {"Dense", "Conv1D", "Conv2D", "Conv2DTranspose", "Conv1DTranspose",
                    "DepthwiseConv2D", "SeparableConv2D"}
FLOAT32 = 1  # ONNX's TensorProto.FLOAT
# elementwise operators of one tensor, as a Lambda of it
UNARY = {"Neg": "-a", "Abs": "abs(a)", "Sqrt": "sqrt(a)", "Reciprocal": "1 / a", "Log": "log(a)",
         "Sin": "sin(a)", "Cos": "cos(a)", "Tan": "tan(a)", "Erf": "erf(a)", "Sign": "sign(a)"}
# elementwise operators of two: (the merge layer of tensors of one shape, the Lambda with a
# number: {0} the tensor, {1} the number)
BINARY = {"Max": ("Maximum", "maximum({0}, {1})"), "Min": ("Minimum", "minimum({0}, {1})"),
          "Pow": (None, "{0} ** {1}")}
AFFINE_EPS = 1e-3  # a per-channel Sub/Add/Mul/Div's BatchNormalization: variance 1 - this


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


class _OperatorReads(_ActivationFormulas):
    """The importer's operator methods (onnx_import._Importer's base): each reads one ONNX
    node through the importer's value, const, add, set and fail."""

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
            approximate = _text(a["approximate"])
            if approximate != "tanh":
                self.fail(node, f"approximate {approximate!r}")
            act = "gelu_tanh"
        self.apply_activation(node, act, v, self.only_use(node.input[0]))

    def apply_activation(self, node, act, v, only_use):
        """node's output is activation `act` of v: folded into the layer that computed v where
        that layer has a linear activation and nothing else reads v (as Keras would write it),
        else an Activation layer (a Lambda of the formula for the tanh GELU where the
        activation table has no gelu_tanh)."""
        from layerloom.core.activations import NAMES
        if act == "gelu_tanh" and act not in NAMES:
            self.formula(node, v, f"0.5 * a * (1 + tanh({GELU_TANH_C!r} * (a + "
                                  f"{GELU_TANH_K!r} * a * a * a)))")
            return
        prev = self.graph.nodes[v.node]
        if (prev.type in FOLDS_ACTIVATION and prev.params.get("activation") == "linear"
                and only_use):
            self.graph.set_params(v.node, activation=act)
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
        """x times a constant matrix: a Dense, of features or (as Keras' Dense) along the
        last axis of a channels-last tensor (a transformer's sequence)."""
        v = self.value(node, 0)
        if v.nchw or v.pooled or len(self.shape(v)) != 2:
            v = self.flat(node, v)
        w = self.const(node, 1, "second operand (the weights)")
        if w.ndim != 2:
            self.fail(node, f"weights of {w.ndim} dimensions; expected a matrix")
        self.dense(node, v, w, None)

    def dense(self, node, v, w, bias, pooled=False):
        if self.shape(v)[-1:] != (w.shape[0],):
            self.fail(node, f"weights for {w.shape[0]} inputs, given {self.shape(v)}")
        nid = self.add(node, "Dense", {"units": int(w.shape[1]), "use_bias": bias is not None},
                       [_Value(v.node, v.port)])
        self.weights[f"{nid}/kernel"] = np.ascontiguousarray(w, np.float32)
        if bias is not None:
            self.weights[f"{nid}/bias"] = np.asarray(bias, np.float32)
        self.set(node, _Value(nid, pooled=pooled))

    def flat(self, node, v):
        """v as features (a rank-2 ONNX tensor); a pooled (N, C, 1, 1) is not one (ONNX's
        Gemm and MatMul would refuse it)."""
        if v.pooled or len(self.shape(v)) != 1:
            self.fail(node, f"an input of shape {['N', *self.onnx_shape(v)]}; expected features "
                            "(N, F) (Flatten first)")
        return v

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
            v = self.to_onnx_order(node, v)
        return _Value(self.add(node, "Flatten", {}, [v]))

    def op_Reshape(self, node):
        v, shape = self.value(node, 0), self.const(node, 1, "target shape")
        onnx_shape = self.onnx_shape(v)
        size = int(np.prod(onnx_shape))
        shape = _ints(shape)
        zero_keeps = not _attrs(node).get("allowzero", 0)
        rest = shape[1:]
        # the batch kept: as 0, as the batch's size (folded from Shape, or the model's fixed
        # one), or as -1 with every other size given
        batch_kept = shape and ((shape[0] == 0 and zero_keeps) or shape[0] == self.batch_size
                                or (shape[0] == -1 and all(d > 0 for d in rest)
                                    and int(np.prod(rest)) == size))
        if not batch_kept:
            self.fail(node, f"target shape {shape}; the batch axis must stay first (as 0, "
                            "-1 or the batch size)")
        # a 0 copies ONNX's size there (per sample: our onnx_shape has no batch axis)
        rest = [onnx_shape[i] if d == 0 and zero_keeps and i < len(onnx_shape) else d
                for i, d in enumerate(rest)]
        if rest in ([-1], [size]):  # (batch, features)
            self.set(node, self.flatten(node, v))
            return
        if list(onnx_shape) == [size if d == -1 else d for d in rest]:  # the same shape
            self.set(node, v)
            return
        if self.channel_shuffle(node, v, rest):
            return
        known = [size // int(np.prod([d for d in rest if d != -1])) if d == -1 else d
                 for d in rest] if rest.count(-1) <= 1 and all(d != 0 for d in rest) else None
        if v.nchw and not v.pooled and known and len(known) >= 2 and \
                known[0] == onnx_shape[0] and int(np.prod(known)) == size:
            # the channels stay at ONNX's axis 1 (a ViT's patches, (N, C, H, W) -> (N, C, H *
            # W)): each channel's positions reshaped, the layout kept
            self.reshaped(node, v, known, "axis 0 (the batch)")
            return
        if v.nchw and not v.pooled:  # ONNX reshapes channels-first: the same order first
            v = self.to_onnx_order(node, v)
        nid = self.add(node, "Reshape", {"target_shape": [int(d) for d in rest]},
                       [_Value(v.node, v.port)])
        self.set(node, _Value(nid))

    def to_onnx_order(self, node, v):
        """v (channels-first in ONNX) as our tensor in ONNX's order: a Permute."""
        rank = len(self.shape(v))
        return _Value(self.add(node, "Permute", {"dims": [rank] + list(range(1, rank))}, [v],
                               name=f"{self.scope(node)}_to_nchw"))

    def unary(self, node):
        v = self.value(node, 0)
        self.set(node, v.like(self.add(node, "Lambda", {"expression": UNARY[node.op_type]},
                                       [v])))

    def binary(self, node):
        """Max, Min (of two or more) and Pow: of tensors of one shape, a merge layer (Pow a
        Lambda); with a number, a Lambda."""
        merge, formula = BINARY[node.op_type]
        names = list(node.input)
        consts = [n in self.consts for n in names]
        if node.op_type == "Pow" and len(names) != 2:
            self.fail(node, f"{len(names)} inputs")
        if not any(consts):
            vs = [self.value(node, i) for i in range(len(names))]
            if len({(self.shape(v), v.nchw, v.pooled) for v in vs}) != 1:
                self.fail(node, "inputs of different shapes (broadcasting is not mapped)")
            if len(vs) == 1:
                self.set(node, vs[0])
                return
            nid = self.add(node, merge, {}, vs) if merge else \
                self.add(node, "Lambda", {"expression": formula.format("a", "b")}, vs)
            self.set(node, vs[0].like(nid))
            return
        numbers = [self.consts[n] for n, c in zip(names, consts) if c]
        if all(consts) or len(names) != 2 or np.size(numbers[0]) != 1:
            self.fail(node, "a constant that is not one number beside one tensor")
        k = repr(float(np.reshape(numbers[0], -1)[0]))
        i = consts.index(False)
        v = self.value(node, i)
        args = ("a", k) if i == 0 else (k, "a")
        self.set(node, v.like(self.add(node, "Lambda", {"expression": formula.format(*args)},
                                       [v])))

    def op_Unsqueeze(self, node):
        """Axes of size 1 put into a tensor (torch's 1-D pooling: (N, C, L) -> (N, C, 1, L)):
        a Reshape of ours; a channels-first tensor's axes after the channels are ours before
        them."""
        v = self.value(node, 0)
        axes = _attrs(node).get("axes")
        if len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes")
        if axes is None:
            self.fail(node, "no axes")
        onnx_shape = list(self.onnx_shape(v))
        rank = len(onnx_shape) + 1 + np.size(axes)
        new = [None] + onnx_shape
        for ax in sorted(int(a) % rank for a in np.reshape(axes, -1)):
            new.insert(ax, 1)
        self.reshaped(node, v, new[1:] if new[0] is None else None, "axis 0 (the batch)")

    def reshaped(self, node, v, onnx_shape, what):
        """v as ONNX's tensor of per-sample shape onnx_shape (the same values in the same
        order but for axes of size 1): a Reshape, keeping a channels-first tensor's layout
        where its channels stay at ONNX's axis 1."""
        if onnx_shape is None:
            self.fail(node, f"{what}; only axes after the batch map")
        if v.pooled:
            v = _Value(v.node, v.port)  # our (C,) is ONNX's (C, 1, 1) in the same order
        if v.nchw and len(onnx_shape) >= 2 and onnx_shape[0] == self.onnx_shape(v)[0]:
            ours = onnx_shape[1:] + onnx_shape[:1]  # the channels stay first in ONNX
            nid = self.add(node, "Reshape", {"target_shape": ours}, [_Value(v.node, v.port)])
            self.set(node, _Value(nid, nchw=True))
            return
        if v.nchw:
            v = self.to_onnx_order(node, v)
        self.set(node, _Value(self.add(node, "Reshape", {"target_shape": list(onnx_shape)},
                                       [_Value(v.node, v.port)])))

    def op_Sum(self, node):
        """ONNX's Sum of tensors of one shape: an Add of them (one input: itself)."""
        if any(i in self.consts for i in node.input):
            self.fail(node, "a constant among its inputs (only tensors of one shape map)")
        vs = [self.value(node, i) for i in range(len(node.input))]
        if len(vs) == 1:
            self.set(node, vs[0])
            return
        if len({(self.shape(v), v.nchw, v.pooled) for v in vs}) != 1:
            self.fail(node, "inputs of different shapes (broadcasting is not mapped)")
        self.set(node, vs[0].like(self.add(node, "Add", {}, vs)))

    def op_Cast(self, node):
        """A cast of a tensor to float32, which Layerloom's tensors are: the same tensor."""
        onnx_type = int(_attrs(node).get("to", 0))
        if onnx_type != FLOAT32:
            self.fail(node, f"a cast to ONNX type {onnx_type}; Layerloom's tensors are float32 "
                            f"(type {FLOAT32}) only")
        self.pass_through(node)

    def op_CastLike(self, node):
        like = self.consts.get(node.input[1]) if len(node.input) > 1 else None
        if like is None or like.dtype != np.float32:
            self.fail(node, "a cast to another type than a float32 constant's; Layerloom's "
                            "tensors are float32 only")
        self.pass_through(node)

    def op_Gather(self, node):
        """One step of a (N, steps, features) sequence (axis 1, one index): a recurrent layer's
        last step (torch's y[:, -1] after an LSTM, GRU or RNN) as its return_sequences off,
        where nothing else reads its sequence; any other step (a ViT's x[:, 0], its class
        token) as Cropping1D to that step and a Reshape to its features."""
        v, idx = self.value(node, 0), self.const(node, 1, "indices")
        axis = _attrs(node).get("axis", 0)
        shape = self.shape(v)
        if v.nchw or v.pooled or len(shape) != 2 or axis % 3 != 1 or np.size(idx) != 1 or \
                np.ndim(idx) > 1 or not -shape[0] <= int(np.reshape(idx, -1)[0]) < shape[0]:
            self.fail(node, f"indices {np.asarray(idx).tolist()} along axis {axis}; only one "
                            "step of a (N, steps, features) sequence (axis 1) maps")
        step = int(np.reshape(idx, -1)[0]) % shape[0]
        prev = self.graph.nodes[v.node]
        if (np.ndim(idx) == 0 and step == shape[0] - 1 and v.port == 0 and
                prev.type in ("LSTM", "GRU", "SimpleRNN") and
                prev.params.get("return_sequences") and self.only_use(node.input[0]) and
                not any(e.src == v.node for e in self.graph.edges)):
            self.graph.set_params(v.node, return_sequences=False)
            self.shapes[v.node] = [tuple(s) for s in prev.layer.output_shapes(
                prev.params, self.in_shapes(v.node))]
            self.set(node, _Value(v.node))
            return
        scope = self.scope(node)
        x = _Value(self.add(node, "Cropping1D", {"cropping": [step, shape[0] - 1 - step]}, [v],
                            name=f"{scope}_step"))
        if np.ndim(idx) == 0:  # the steps axis dropped
            x = _Value(self.add(node, "Reshape", {"target_shape": [shape[1]]}, [x]))
        self.set(node, x)

    def in_shapes(self, nid):
        """The shapes of node nid's inputs, port by port."""
        edges = sorted((e for e in self.graph.edges if e.dst == nid), key=lambda e: e.dst_port)
        return [self.shapes[e.src][e.src_port] for e in edges]

    def op_Squeeze(self, node):
        """Axes of size 1 taken out: a global pooling's (N, C, 1, 1) is our (C,) already;
        otherwise a Reshape of ours (unsqueeze's inverse)."""
        v = self.value(node, 0)
        axes = _attrs(node).get("axes")
        if len(node.input) > 1 and node.input[1]:
            axes = self.const(node, 1, "axes")
        onnx_shape = list(self.onnx_shape(v))
        rank = len(onnx_shape) + 1
        axes = sorted({int(a) % rank for a in np.reshape(axes, -1)}) if axes is not None else \
            [i + 1 for i, d in enumerate(onnx_shape) if d == 1]
        if v.pooled and axes == [2, 3]:
            self.set(node, _Value(v.node, v.port))
            return
        if 0 in axes or any(onnx_shape[a - 1] != 1 for a in axes):
            self.fail(node, f"axes {axes}, not all of size 1 after the batch")
        self.reshaped(node, v, [d for i, d in enumerate(onnx_shape, 1) if i not in axes],
                      "axis 0 (the batch)")

    def arithmetic(self, node):
        names = list(node.input)
        consts = [n in self.consts for n in names]
        if not any(consts):
            vs = [self.value(node, 0), self.value(node, 1)]
            vs = self.broadcast_channels(node, vs)
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
        seq = self.shape(v)
        if node.op_type == "Add" and len(seq) == 2 and not (v.nchw or v.pooled) and \
                c.shape[-2:] == tuple(seq) and c.size == seq[0] * seq[1] and seq[0] > 1:
            self.position_table(node, v, c.reshape(seq))
            return
        if c.size != 1:
            self.channel_affine(node, v, c, consts[1])
            return
        k = repr(float(c.reshape(-1)[0]))
        expr = f"a {LAMBDA_OPS[node.op_type]} {k}" if consts[1] else \
            f"{k} {LAMBDA_OPS[node.op_type]} a"
        self.set(node, v.like(self.add(node, "Lambda", {"expression": expr}, [v])))

    def position_table(self, node, v, table):
        """x + a constant with a value per step and feature (a ViT's position embedding,
        (1, steps, features)): keras-hub's PositionEmbedding holding it, and Add."""
        scope = self.scope(node)
        pe = self.add(node, "PositionEmbedding", {"sequence_length": int(table.shape[0])}, [v],
                      name=f"{scope}_positions")
        self.weights[f"{pe}/embeddings"] = np.ascontiguousarray(table, np.float32)
        self.set(node, _Value(self.add(node, "Add", {}, [_Value(v.node, v.port), _Value(pe)])))

    def broadcast_channels(self, node, vs):
        """A per-channel tensor (a global pooling's (N, C, 1, 1), a squeeze-and-excitation's
        scale) against an image (N, C, H, W): repeated over the image (Reshape to (1, 1, C),
        UpSampling2D to (H, W)), exactly as ONNX broadcasts it."""
        for i in (0, 1):
            img, chan = vs[1 - i], vs[i]
            if not (chan.pooled and img.nchw and not img.pooled and len(self.shape(img)) == 3
                    and self.shape(chan) == self.shape(img)[-1:]):
                continue
            h, w, c = self.shape(img)
            scope = self.scope(node)
            r = self.add(node, "Reshape", {"target_shape": [1, 1, c]}, [_Value(chan.node,
                                                                             chan.port)],
                         name=f"{scope}_to_image")
            up = self.add(node, "UpSampling2D", {"size": [h, w]}, [_Value(r)],
                          name=f"{scope}_repeat")
            out = list(vs)
            out[i] = _Value(up, nchw=True)
            return out
        return vs

    def slice_args(self, node, decline=False):
        """(starts, ends, axes, steps) of a Slice node (onnx_layout.slice_args); inputs that are
        not constants decline the node (decline) or refuse it by name."""
        if self.opset < 10:
            return slice_args(_attrs(node))
        given = []
        for i, what in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")):
            if len(node.input) <= i or not node.input[i]:
                given.append(None)
            elif node.input[i] in self.consts:
                given.append(self.consts[node.input[i]])
            elif decline:
                self.decline(node, f"{what} that are not constants")
            else:
                given.append(self.const(node, i, what))  # refused, naming them
        return slice_args(_attrs(node), given)

    def channel_slice(self, node):
        """A Slice (step 1) along the channels alone (ShuffleNet's split of the channels in
        two): the channels put first in our layout (Reshape to (positions, C), Permute),
        cropped there (Cropping1D) and put back. Declines a slice along another axis (the
        cropping layers' readers take those)."""
        v = self.value(node, 0)
        starts, ends, axes, steps = self.slice_args(node, decline=True)
        rank = len(self.onnx_shape(v)) + 1
        if v.pooled or len(axes) != 1 or axes[0] % rank != self.channel_axis(v) or \
                steps != [1]:
            self.decline(node, "not a slice along the channels alone")
        first, last, _ = slice(starts[0], ends[0]).indices(self.shape(v)[-1])
        self.set(node, self.channels(node, v, first, max(last, first)))

    def channels(self, node, v, first, last, name=None):
        """Channels first..last of v: v itself for all of them, else v's channels put first
        in our layout (Reshape to (positions, C), Permute), cropped there (Cropping1D) and
        put back."""
        shape = list(self.shape(v))
        count = shape[-1]
        if (first, last) == (0, count):
            return v
        if first >= last:
            self.fail(node, f"channels {first}..{last} of {count}: none")
        positions, scope = int(np.prod(shape[:-1])), name or self.scope(node)
        x = _Value(v.node, v.port)
        for type_id, params, what in (
                ("Reshape", {"target_shape": [positions, count]}, "rows"),
                ("Permute", {"dims": [2, 1]}, "channels_first"),
                ("Cropping1D", {"cropping": [first, count - last]}, "crop"),
                ("Permute", {"dims": [2, 1]}, "channels_last"),
                ("Reshape", {"target_shape": shape[:-1] + [last - first]}, "back")):
            x = _Value(self.add(node, type_id, params, [x], name=f"{scope}_{what}"))
        return v.like(x.node)

    def op_Split(self, node):
        """A Split along the channels (torch's chunk, GLU): each output a run of them."""
        v, a = self.value(node, 0), _attrs(node)
        rank = len(self.onnx_shape(v)) + 1
        if v.pooled or a.get("axis", 0) % rank != self.channel_axis(v):
            self.fail(node, f"axis {a.get('axis', 0)}; only a split of the channels maps")
        count = self.shape(v)[-1]
        sizes = a.get("split")
        if len(node.input) > 1 and node.input[1]:
            sizes = self.const(node, 1, "split")
        outs = len(node.output)
        if sizes is None:  # equal parts (the last smaller, from opset 18)
            step = -(-count // outs)
            sizes = [min(step, count - i * step) for i in range(outs)]
        sizes = _ints(sizes)
        if len(sizes) != outs or sum(sizes) != count or min(sizes) <= 0:
            self.fail(node, f"split {sizes} of {count} channels into {outs}")
        first = 0
        for port, size in enumerate(sizes):
            if node.output[port]:
                name = f"{self.scope(node)}_{port}"
                self.set(node, self.channels(node, v, first, first + size, name), port)
            first += size

    def channel_shuffle(self, node, v, rest):
        """ShuffleNet's channel shuffle, ONNX's Reshape (N, g, C / g, H, W), Transpose
        [0, 2, 1, 3, 4], Reshape (N, C, H, W), as Reshape (H * W, g, C / g), Permute (swap the
        last two) and Reshape (H, W, C) on our channels-last image; True when node starts
        one (the Transpose and the last Reshape are read here), else False."""
        if not v.nchw or v.pooled or len(rest) != 4 or len(self.shape(v)) != 3:
            return False
        h, w, c = self.shape(v)
        g = rest[0]
        if g <= 0 or c % g or [c // g if d == -1 else d for d in rest[1:]] != [c // g, h, w]:
            return False
        t = self.reader(node.output[0])
        if t is None or t.op_type != "Transpose" or \
                list(_attrs(t).get("perm", [])) != [0, 2, 1, 3, 4]:
            return False
        back = self.reader(t.output[0])
        target = self.consts.get(back.input[1]) if back is not None and \
            back.op_type == "Reshape" and len(back.input) > 1 else None
        if target is None:
            return False
        target = _ints(target)
        if len(target) != 4 or target[0] not in (0, -1, self.batch_size) or \
                [c if d == -1 else d for d in target[1:]] != [c, h, w]:
            return False
        scope = self.scope(node)
        x = _Value(v.node, v.port)
        for type_id, params, what in (
                ("Reshape", {"target_shape": [h * w, g, c // g]}, "groups"),
                ("Permute", {"dims": [1, 3, 2]}, "shuffle"),
                ("Reshape", {"target_shape": [h, w, c]}, "back")):
            x = _Value(self.add(node, type_id, params, [x], name=f"{scope}_{what}"))
        self.absorbed.update((t.output[0], back.output[0]))
        self.values[back.output[0]] = _Value(x.node, nchw=True)
        return True

    def conv_of_pooled(self, node):
        """A 1x1 Conv (group 1, no padding) of a global pooling's (N, C, 1, 1), as
        squeeze-and-excitation blocks have: a Dense on the C features, its result (N, F, 1, 1)
        again. Declines any other Conv (the layers' readers take those)."""
        v = self.value(node, 0)
        w = self.consts.get(node.input[1]) if len(node.input) > 1 else None
        a = _attrs(node)
        if not v.pooled or w is None or w.ndim != 4 or tuple(w.shape[2:]) != (1, 1):
            self.decline(node, "not a 1x1 convolution of a (N, C, 1, 1) pooling")
        if int(a.get("group", 1)) != 1 or any(a.get("pads", [])) or \
                _text(a.get("auto_pad", "NOTSET")) not in ("NOTSET", "VALID"):
            self.decline(node, "a grouped or padded convolution of a (N, C, 1, 1) pooling")
        bias = self.const(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
        self.dense(node, v, w[:, :, 0, 0].T, bias, pooled=True)

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
        if v.pooled and perm == [0, 2, 3, 1]:  # a pooled (N, C, 1, 1) to (N, 1, 1, C): ours
            # (C,) as (1, 1, C), channels-last (timm's LayerNorm2d after a global pool)
            nid = self.add(node, "Reshape", {"target_shape": [1, 1, self.shape(v)[-1]]},
                           [_Value(v.node, v.port)])
            self.set(node, _Value(nid))
            return
        rank = len(self.onnx_shape(v)) + 1
        if rank >= 3 and not v.pooled:
            to_first, to_last = _perms(rank)
            if v.nchw and perm == to_last:  # to channels-last, which ours is already
                self.set(node, _Value(v.node, v.port, nchw=False))
                return
            if not v.nchw and perm == to_first:  # tf2onnx's way into NCHW convolutions
                self.set(node, _Value(v.node, v.port, nchw=True))
                return
        if rank >= 3 and not v.pooled and sorted(perm) == list(range(rank)) and perm[0] == 0:
            # any other order of the per-sample axes: a Permute of ours whose result is read
            # as channels-first, as ONNX's convolutions read it (its ONNX axes 2.. then 1 in
            # our order). ONNX axis k of a channels-first value is our axis k - 2, its
            # channels our last; of any other value, our k - 1.
            ours = (lambda k: rank - 2 if k == 1 else k - 2) if v.nchw else (lambda k: k - 1)
            order = list(range(2, rank)) + [1]  # ONNX's output axes in our order
            dims = [ours(perm[o]) + 1 for o in order]
            if dims == list(range(1, rank)):
                self.set(node, _Value(v.node, v.port, nchw=True))
                return
            nid = self.add(node, "Permute", {"dims": dims}, [_Value(v.node, v.port)])
            self.set(node, _Value(nid, nchw=True))
            return
        self.fail(node, f"perm {perm}; a transpose that moves the batch axis has no "
                        "Layerloom form")

