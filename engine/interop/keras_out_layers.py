"""Each Layerloom layer as Keras source text: one converter per layer type returns the lines
that build the node with keras.layers (Functional API, the layer named by the node id) and the
Python names of its output tensors, one per port. keras_code.py puts the lines into a script;
keras_export.py runs the same lines to build the model it saves, so the script and the .keras
file are one model.

Layer configurations are Keras 3's (Layerloom's layers are declared with Keras semantics and
weight layouts). Where Keras has no layer (a Lambda's formula, Embedding's zero vectors for
indices out of range) the lines use keras.ops, which Keras 3 stores in a Functional model's
config like layers, so the .keras file loads without custom objects or safe_mode=False."""
import keyword
import re

from layerloom.core import expr
from layerloom.core.errors import DataError, quote
from layerloom.interop import expr_source
from layerloom.interop.expr_source import Dialect

# names the generated script itself uses: a node id that spells one gets a trailing _
RESERVED = {"np", "os", "sys", "keras", "layers", "ops", "argparse", "model", "inputs",
            "outputs", "build_layers", "build_model", "normalization", "main", "HERE",
            "PROJECT", "WEIGHTS", "NORMALIZATION", "KERAS_WEIGHTS", "compile_model",
            "make_callbacks", "load_data", "load_layerloom_weights"}


def unsupported(nid, type_id, option, value, why="has no Keras form"):
    return DataError(f"{type_id} layer {quote(nid)}: option {option}={quote(value)} {why}",
                     f"graph.nodes.{nid}.params.{option}")


class Names:
    """Python identifiers for node ids (and the ports after the first), unique."""

    def __init__(self):
        self.used = set(RESERVED)

    def make(self, text):
        base = re.sub(r"\W", "_", str(text)) or "t"
        if base[0].isdigit():
            base = "n_" + base
        if keyword.iskeyword(base) or base in self.used:
            base += "_"
        name, k = base, 2
        while name in self.used:
            name, k = f"{base}{k}", k + 1
        self.used.add(name)
        return name


def fmt(v):
    """A parameter value as Python source (tuples for lists, as Keras prints them)."""
    if isinstance(v, (list, tuple)):
        items = [fmt(x) for x in v]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {fmt(x)}" for k, x in v.items()) + "}"
    return repr(v)


def initializer(value):
    if isinstance(value, dict):  # {"name": "constant", "value": v}
        return f"keras.initializers.Constant({value['value']!r})"
    return repr(value)


def regularizer(value):
    return f"keras.regularizers.L1L2(l1={value['l1']!r}, l2={value['l2']!r})"


def _weight_args(n, prefixes):
    """Initializers that differ from Layerloom's defaults (which are Keras') and every
    regularizer."""
    out = []
    defaults = {p.name: p.default for p in n.layer.params}
    for prefix in prefixes:
        init = n.params.get(f"{prefix}_initializer")
        if init is not None and init != defaults.get(f"{prefix}_initializer"):
            if init == "lstm_bias":
                raise unsupported(n.id, n.type, f"{prefix}_initializer", init)
            out.append(f"{prefix}_initializer={initializer(init)}")
        reg = n.params.get(f"{prefix}_regularizer")
        if reg:
            out.append(f"{prefix}_regularizer={regularizer(reg)}")
    return out


def call(cls, args, n, x):
    """`layers.Cls(args..., name=id)(x)`; x one tensor name or several (a list)."""
    args = list(args) + [f"name={n.id!r}"]
    inputs = x[0] if len(x) == 1 and not n.layer_takes_list else "[" + ", ".join(x) + "]"
    return f"layers.{cls}({', '.join(args)})({inputs})"


def _kw(n, names):
    return [f"{k}={fmt(n.params[k])}" for k in names]


def _simple(cls, params=(), weights=()):
    def convert(n):
        return [f"{n.out[0]} = " + call(cls, _kw(n, params) + _weight_args(n, weights), n, n.x)]
    return convert


def _merge(cls, params=()):
    def convert(n):
        n.layer_takes_list = True
        return [f"{n.out[0]} = " + call(cls, _kw(n, params), n, n.x)]
    return convert


def _recurrent(n):
    names = ["units"] + (["activation"] if n.type == "SimpleRNN" else []) + \
        ["return_sequences", "return_state"]
    line = call(n.type, _kw(n, names) + _weight_args(n, ("kernel", "recurrent", "bias")),
                n, n.x)
    if len(n.out) == 1:
        return [f"{n.out[0]} = {line}"]
    return [f"{', '.join(n.out)} = {line}"]


def _embedding(n):
    """Keras' Embedding refuses indices out of range; Layerloom's gives them zero vectors:
    they look up row 0 and are multiplied by 0."""
    V, x, y = n.params["input_dim"], n.x[0], n.out[0]
    ids, ok = f"{y}_ids", f"{y}_inside"
    return [f"{ids} = ops.cast({x}, 'int32')  # indices, truncated towards zero",
            f"{ok} = ops.logical_and(ops.greater_equal({ids}, 0), ops.less({ids}, {V}))",
            f"{y} = " + call("Embedding", _kw(n, ["input_dim", "output_dim"])
                             + _weight_args(n, ("embeddings",)), n,
                             [f"ops.where({ok}, {ids}, 0)"]),
            f"{y} = {y} * ops.expand_dims(ops.cast({ok}, 'float32'), -1)  # zero vectors "
            "for indices out of range, as Layerloom"]


def _upsampling(n):
    if n.params["interpolation"] != "nearest":
        raise unsupported(n.id, n.type, "interpolation", n.params["interpolation"])
    return _simple("UpSampling2D", ("size", "interpolation"))(n)


# -- Lambda: the formula as keras.ops calls ----------------------------------------------------
KERAS_OPS = Dialect(
    "keras.ops",
    unary={"exp": "ops.exp", "log": "ops.log", "sqrt": "ops.sqrt", "abs": "ops.abs",
           "sin": "ops.sin", "cos": "ops.cos", "tan": "ops.tan", "tanh": "ops.tanh",
           "sigmoid": "ops.sigmoid", "relu": "ops.relu", "softplus": "ops.softplus",
           "square": "ops.square", "erf": "ops.erf", "sign": "ops.sign", "neg": "ops.negative"},
    binary={"+": "ops.add", "-": "ops.subtract", "*": "ops.multiply", "/": "ops.divide",
            "**": "ops.power", "pow": "ops.power", "maximum": "ops.maximum",
            "minimum": "ops.minimum"},
    compare=lambda op, a, b: f"ops.cast(ops.{_COMPARE[op]}({a}, {b}), 'float32')",
    where="ops.where(ops.not_equal({c}, 0.0), {a}, {b})",
    clip="ops.minimum(ops.maximum({x}, {lo}), {hi})")
_COMPARE = {">": "greater", ">=": "greater_equal", "<": "less", "<=": "less_equal",
            "==": "equal", "!=": "not_equal"}


def _lambda(n):
    tree = expr.parse(n.params["expression"])
    env = dict(zip(expr.INPUT_NAMES, n.x))
    src = expr_source.source(tree, env, KERAS_OPS, n.id)
    if not expr.variables(tree):  # a constant formula, shaped like input 0 as Layerloom's
        src = f"ops.full_like({n.x[0]}, {src})"
    return [f"# Lambda {n.params['expression']!r}: keras.ops (no Python function is stored)",
            f"{n.out[0]} = layers.Identity(name={n.id!r})({src})"]


_CONV = ("filters", "kernel_size", "strides", "padding", "dilation_rate", "activation",
         "use_bias")
_POOL = ("pool_size", "strides", "padding")
_NORM = ("axis", "epsilon", "center", "scale")

CONVERTERS = {
    "Dense": _simple("Dense", ("units", "activation", "use_bias"), ("kernel", "bias")),
    "Activation": _simple("Activation", ("activation",)),
    "Lambda": _lambda, "Embedding": _embedding,
    "Dropout": _simple("Dropout", ("rate", "seed")),
    "SpatialDropout2D": _simple("SpatialDropout2D", ("rate", "seed")),
    "GaussianNoise": _simple("GaussianNoise", ("stddev", "seed")),
    "Conv1D": _simple("Conv1D", _CONV, ("kernel", "bias")),
    "Conv2D": _simple("Conv2D", _CONV, ("kernel", "bias")),
    "MaxPooling1D": _simple("MaxPooling1D", _POOL), "MaxPooling2D": _simple("MaxPooling2D", _POOL),
    "AveragePooling1D": _simple("AveragePooling1D", _POOL),
    "AveragePooling2D": _simple("AveragePooling2D", _POOL),
    "GlobalAveragePooling2D": _simple("GlobalAveragePooling2D"),
    "GlobalMaxPooling2D": _simple("GlobalMaxPooling2D"),
    "BatchNormalization": _simple("BatchNormalization", ("axis", "momentum", "epsilon", "center",
                                                         "scale")),
    "LayerNormalization": _simple("LayerNormalization", _NORM),
    "LSTM": _recurrent, "GRU": _recurrent, "SimpleRNN": _recurrent,
    "Add": _merge("Add"), "Subtract": _merge("Subtract"), "Multiply": _merge("Multiply"),
    "Maximum": _merge("Maximum"), "Minimum": _merge("Minimum"), "Average": _merge("Average"),
    "Dot": _merge("Dot", ("axes",)), "Concatenate": _merge("Concatenate", ("axis",)),
    "Reshape": _simple("Reshape", ("target_shape",)), "Flatten": _simple("Flatten"),
    "Permute": _simple("Permute", ("dims",)), "RepeatVector": _simple("RepeatVector", ("n",)),
    "Cropping2D": _simple("Cropping2D", ("cropping",)),
    "ZeroPadding2D": _simple("ZeroPadding2D", ("padding",)),
    "UpSampling2D": _upsampling,
}

# for docs/keras_export.md
KERAS_FORMS = {
    "Lambda": "keras.ops calls of the formula, then layers.Identity(name=node id)",
    "Embedding": "layers.Embedding on ops.where(inside, index, 0), times the 'inside' mask",
    "GRU": "layers.GRU (reset_after=True, Keras' default); bias = stack(bias, recurrent_bias)",
}


def keras_weight_names(type_id, specs):
    """Layerloom's weight names in the order of the Keras layer's weights; a tuple is one Keras
    weight stacked from several (GRU's (2, 3 * units) bias)."""
    names = [s.name for s in specs]
    if type_id == "GRU":
        return ["kernel", "recurrent_kernel", ("bias", "recurrent_bias")]
    return names
