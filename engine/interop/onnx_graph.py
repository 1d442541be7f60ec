"""The ONNX graph under construction: unique tensor names, deduplicated constants, the few ops
whose form depends on the opset (Reduce* take axes as an attribute before opset 18, as an
input from 18), and the elementwise maths shared by layers: the activation table
(core/activations.py) and Lambda expressions (core/expr.py).

Every tensor is float32 unless a converter casts it; layouts are Layerloom's (batch first,
channels last)."""
import numpy as np

from layerloom.core.activations import (GELU_TANH_C, GELU_TANH_K, LEAKY_SLOPE, SELU_ALPHA,
                                        SELU_SCALE)
from layerloom.core.errors import ProjectError, quote

try:  # the optional extra: onnx_export turns its absence into a message naming the extra
    import onnx
    from onnx import helper, numpy_helper
except ImportError:  # pragma: no cover - checked by onnx_export.require_onnx
    onnx = helper = numpy_helper = None


class ExportError(ProjectError):
    """A node the ONNX export cannot express, placed at that node: names its id and type and
    why (never skipped silently)."""


class Builder:
    def __init__(self, opset, reserved=()):
        self.opset = opset
        self.nodes, self.initializers = [], []
        self._taken = set(reserved)
        self._consts = {}
        self.where = None  # (graph, node id) of the node being converted, for errors

    # -- names and constants ---------------------------------------------------------------------
    def name(self, hint):
        """A tensor or node name not used before (node ids are reserved for the graph's own
        inputs and outputs)."""
        base, i = hint, 1
        while hint in self._taken:
            i += 1
            hint = f"{base}_{i}"
        self._taken.add(hint)
        return hint

    def const(self, value, hint="const", dtype=np.float32):
        """An initializer holding `value` (kept once per distinct small value)."""
        a = np.array(value, dtype, order="C")  # ascontiguousarray would make scalars 1-d
        key = (a.dtype.str, a.shape, a.tobytes()) if a.size <= 64 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        t = numpy_helper.from_array(a, self.name(hint))
        self.initializers.append(t)
        if key is not None:
            self._consts[key] = t.name
        return t.name

    def ints(self, values, hint="shape"):
        return self.const(list(values), hint, np.int64)

    def op(self, op_type, inputs, hint=None, outputs=1, **attrs):
        """Append one node; returns its output name (a list when outputs > 1). `outputs` may
        also be a list of flags: False leaves that optional output unnamed."""
        stem = hint or (f"{self.where[1]}/{op_type}" if self.where else op_type)
        flags = [True] * outputs if isinstance(outputs, int) else list(outputs)
        outs = [self.name(f"{stem}:{i}" if len(flags) > 1 else stem) if f else ""
                for i, f in enumerate(flags)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name(stem),
                                           **attrs))
        return outs[0] if isinstance(outputs, int) and outputs == 1 else outs

    def reduce(self, op_type, x, axes, keepdims):
        """ReduceMean/ReduceMax/ReduceSum over `axes`, in the opset's form (ReduceSum takes
        axes as an input since 13, the others since 18)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes, "axes")], keepdims=keepdims)
        return self.op(op_type, [x], axes=list(axes), keepdims=keepdims)

    def fail(self, why):
        graph, nid = self.where
        node = graph.nodes[nid]
        raise ExportError(f"{node.type} layer {quote(nid)} cannot be exported to ONNX: {why}",
                          graph.place(nid))

    # -- activations -----------------------------------------------------------------------------
    def activation(self, name, x):
        """Layerloom's activation `name` (core/activations.py) applied to x; softmax and
        log_softmax over the last axis."""
        make = _ACTIVATIONS.get(name)
        if make is None:
            self.fail(f"activation {quote(name)} has no ONNX form")
        return make(self, x)

    # -- Lambda expressions ----------------------------------------------------------------------
    def expression(self, tree, env):
        """The expression tree (core/expr.py parse) over env {input name: tensor}; common
        subtrees are computed once."""
        memo = {}

        def emit(t):
            if t in memo:
                return memo[t]
            op = t[0]
            if op == "num":
                out = self.const(t[1], "c")
            elif op == "var":
                out = env[t[1]]
            elif op in _EXPR:
                out = _EXPR[op](self, *[emit(a) for a in t[1:]])
            else:
                self.fail(f"the expression's {quote(op)} has no ONNX form")
            memo[t] = out
            return out
        return emit(tree)


def _as_float(b, boolean):
    return b.op("Cast", [boolean], to=onnx.TensorProto.FLOAT)


def _compare(op_type, negate=False):
    def make(b, x, y):
        t = b.op(op_type, [x, y])
        return _as_float(b, b.op("Not", [t]) if negate else t)
    return make


def _unary(op_type, **attrs):
    return lambda b, x: b.op(op_type, [x], **attrs)


def _binary(op_type):
    return lambda b, x, y: b.op(op_type, [x, y])


def _softplus(b, x):
    # max(x, 0) + log(1 + exp(-|x|)), the kernels' form: no overflow for large |x|
    e = b.op("Exp", [b.op("Neg", [b.op("Abs", [x])])])
    return b.op("Add", [b.op("Relu", [x]), b.op("Log", [b.op("Add", [e, b.const(1.0)])])])


def _gelu(b, x):
    # 0.5 x (1 + erf(x / sqrt 2)), exact GELU (Keras' approximate=False); Gelu is an op from
    # opset 20 only
    inner = b.op("Erf", [b.op("Mul", [x, b.const(0.70710678118654752)])])
    half_x = b.op("Mul", [x, b.const(0.5)])
    return b.op("Mul", [half_x, b.op("Add", [inner, b.const(1.0)])])


def _gelu_tanh(b, x):
    # 0.5 x (1 + tanh(c (x + k x^3))), Keras' gelu(approximate=True)
    if b.opset >= 20:
        return b.op("Gelu", [x], approximate="tanh")
    cube = b.op("Mul", [b.op("Mul", [x, x]), x])
    inner = b.op("Add", [x, b.op("Mul", [cube, b.const(GELU_TANH_K)])])
    t = b.op("Tanh", [b.op("Mul", [inner, b.const(GELU_TANH_C)])])
    half_x = b.op("Mul", [x, b.const(0.5)])
    return b.op("Mul", [half_x, b.op("Add", [t, b.const(1.0)])])


def _mish(b, x):
    # x tanh(softplus(x)); Mish is an op from opset 18
    if b.opset >= 18:
        return b.op("Mish", [x])
    return b.op("Mul", [x, b.op("Tanh", [_softplus(b, x)])])


def _log_sigmoid(b, x):
    # min(x, 0) - log(1 + exp(-|x|)): -softplus(-x) without overflow
    e = b.op("Exp", [b.op("Neg", [b.op("Abs", [x])])])
    return b.op("Sub", [b.op("Min", [x, b.const(0.0)]),
                        b.op("Log", [b.op("Add", [e, b.const(1.0)])])])


def _sparse_plus(b, x):
    # 0 at and below -1, (x + 1)^2 / 4 below 1, x from 1
    t = b.op("Add", [x, b.const(1.0)])
    middle = b.op("Mul", [b.op("Mul", [t, t]), b.const(0.25)])
    upper = b.op("Where", [b.op("Less", [x, b.const(1.0)]), middle, x])
    return b.op("Where", [b.op("LessOrEqual", [x, b.const(-1.0)]), b.const(0.0), upper])


def _hard_sigmoid(b, x):
    # clip(x + 3, 0, 6) / 6 in the kernels' order of operations
    t = b.op("Clip", [b.op("Add", [x, b.const(3.0)]), b.const(0.0), b.const(6.0)])
    return b.op("Mul", [t, b.const(1.0 / 6.0)])


_ACTIVATIONS = {
    "linear": lambda b, x: x,
    "relu": _unary("Relu"),
    "relu6": lambda b, x: b.op("Clip", [x, b.const(0.0), b.const(6.0)]),
    "leaky_relu": _unary("LeakyRelu", alpha=LEAKY_SLOPE),
    "elu": _unary("Elu", alpha=1.0),
    "selu": _unary("Selu", alpha=SELU_ALPHA, gamma=SELU_SCALE),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "silu": lambda b, x: b.op("Mul", [x, b.op("Sigmoid", [x])]),
    "mish": _mish,
    "sigmoid": _unary("Sigmoid"),
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": _unary("HardSwish"),  # x max(0, min(1, x / 6 + 1/2)), Keras' hard_silu
    "tanh": _unary("Tanh"),
    "softmax": _unary("Softmax", axis=-1),
    "log_softmax": _unary("LogSoftmax", axis=-1),
    "softplus": _softplus,
    "softsign": _unary("Softsign"),
    "exponential": _unary("Exp"),
    "log_sigmoid": _log_sigmoid,
    "hard_tanh": lambda b, x: b.op("Clip", [x, b.const(-1.0), b.const(1.0)]),
    "tanh_shrink": lambda b, x: b.op("Sub", [x, b.op("Tanh", [x])]),
    "squareplus": lambda b, x: b.op("Mul", [b.op("Add", [x, b.op("Sqrt", [b.op("Add", [
        b.op("Mul", [x, x]), b.const(4.0)])])]), b.const(0.5)]),
    "sparse_plus": _sparse_plus,
    "soft_shrink": _unary("Shrink", bias=0.5, lambd=0.5),
    "hard_shrink": _unary("Shrink", bias=0.0, lambd=0.5),
}
ACTIVATION_OPS = {  # for docs/onnx.md and the tests: what each activation becomes
    "linear": "(nothing)", "relu": "Relu", "relu6": "Clip(0, 6)", "leaky_relu": "LeakyRelu(0.2)",
    "elu": "Elu", "selu": "Selu", "gelu": "Mul, Erf, Add (exact GELU)",
    "gelu_tanh": "Gelu(approximate=tanh) from opset 20, else Mul, Add, Tanh",
    "silu": "Sigmoid, Mul", "mish": "Mish from opset 18, else Softplus's ops, Tanh, Mul",
    "sigmoid": "Sigmoid", "hard_sigmoid": "Add, Clip, Mul", "hard_silu": "HardSwish",
    "tanh": "Tanh",
    "softmax": "Softmax(axis=-1)", "log_softmax": "LogSoftmax(axis=-1)",
    "softplus": "Relu, Abs, Neg, Exp, Add, Log", "softsign": "Softsign", "exponential": "Exp",
    "log_sigmoid": "Min, Abs, Neg, Exp, Add, Log, Sub", "hard_tanh": "Clip(-1, 1)",
    "tanh_shrink": "Tanh, Sub", "squareplus": "Mul, Add, Sqrt, Mul (b = 4)",
    "sparse_plus": "Add, Mul, Less, LessOrEqual, Where", "soft_shrink": "Shrink(0.5, 0.5)",
    "hard_shrink": "Shrink(bias=0, lambd=0.5)",
}

_EXPR = {
    "+": _binary("Add"), "-": _binary("Sub"), "*": _binary("Mul"), "/": _binary("Div"),
    "**": _binary("Pow"), "pow": _binary("Pow"), "neg": _unary("Neg"),
    ">": _compare("Greater"), ">=": _compare("GreaterOrEqual"), "<": _compare("Less"),
    "<=": _compare("LessOrEqual"), "==": _compare("Equal"), "!=": _compare("Equal", negate=True),
    "exp": _unary("Exp"), "log": _unary("Log"), "sqrt": _unary("Sqrt"), "abs": _unary("Abs"),
    "sin": _unary("Sin"), "cos": _unary("Cos"), "tan": _unary("Tan"), "tanh": _unary("Tanh"),
    "erf": _unary("Erf"), "sign": _unary("Sign"), "sigmoid": _unary("Sigmoid"),
    "relu": _unary("Relu"), "softplus": _softplus,
    "square": lambda b, x: b.op("Mul", [x, x]),
    "maximum": _binary("Max"), "minimum": _binary("Min"),
    "where": lambda b, c, x, y: b.op("Where", [b.op("Not", [b.op("Equal", [c, b.const(0.0)])]),
                                               x, y]),
    "clip": lambda b, x, lo, hi: b.op("Min", [b.op("Max", [x, lo]), hi]),
}
EXPRESSION_OPS = {  # for docs/onnx.md
    "+ - * /": "Add, Sub, Mul, Div", "** pow": "Pow", "unary -": "Neg",
    "> >= < <= == !=": "Greater, GreaterOrEqual, Less, LessOrEqual, Equal (Not for !=), Cast",
    "exp log sqrt abs sin cos tan tanh erf sign sigmoid relu": "the op of that name",
    "softplus": "Relu, Abs, Neg, Exp, Add, Log", "square": "Mul", "maximum minimum": "Max, Min",
    "where(c, a, b)": "Equal, Not, Where (c != 0)", "clip(x, lo, hi)": "Max, Min",
}
