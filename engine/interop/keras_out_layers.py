"""Each Layerloom layer as Keras source text: one converter per layer type (made from the
layer's declared `keras_form`, a KerasForm of core/registry.py) returns the lines
that build the node with keras.layers (Functional API, the layer named by the node id) and the
Python names of its output tensors, one per port. keras_code.py puts the lines into a script;
keras_export.py runs the same lines to build the model it saves, so the script and the .keras
file are one model.

Layer configurations are Keras 3's (Layerloom's layers are declared with Keras semantics and
weight layouts). Where Keras has no layer (a Lambda's formula, Embedding's zero vectors for
indices out of range) the lines use keras.ops, which Keras 3 stores in a Functional model's
config like layers, so the .keras file loads without custom objects or safe_mode=False."""
import functools
import keyword
import re
from types import SimpleNamespace

from layerloom.core.errors import DataError, quote
from layerloom.core.registry import declared
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
    if isinstance(value, dict) and value["name"] == "variance_scaling":
        return (f"keras.initializers.VarianceScaling(scale={value['scale']!r}, "
                f"mode={value['mode']!r}, distribution={value['distribution']!r}, "
                f"seed={value.get('seed')!r})")
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


# activations Keras has by an argument, not a name (gelu's approximate=True): the layer is
# written with a linear activation and this keras.ops call applied to its output
KERAS_OP_ACTIVATIONS = {"gelu_tanh": "ops.gelu({x}, approximate=True)"}


def call(cls, args, n, x, module="layers."):
    """`layers.Cls(args..., name=id)(x)`; x one tensor name or several (a list); module ""
    for a class the script defines (define())."""
    args = list(args) + [f"name={n.id!r}"]
    inputs = x[0] if len(x) == 1 and not n.layer_takes_list else "[" + ", ".join(x) + "]"
    text = f"{module}{cls}({', '.join(args)})({inputs})"
    after = KERAS_OP_ACTIVATIONS.get(n.params.get("activation"))
    return after.format(x=text) if after else text


def _kw(n, names):
    return [f"{k}=" + ("'linear'" if k == "activation" and n.params[k] in KERAS_OP_ACTIVATIONS
                       else fmt(n.params[k])) for k in names]


def _simple(cls, params=(), weights=()):
    def convert(n):
        return [f"{n.out[0]} = " + call(cls, _kw(n, params) + _weight_args(n, weights), n, n.x)]
    return convert


def _merge(cls, params=()):
    def convert(n):
        n.layer_takes_list = True
        return [f"{n.out[0]} = " + call(cls, _kw(n, params), n, n.x)]
    return convert


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






def define(n, classes):
    """The node needs these Keras classes ({name: source}, module-level Python that the script
    runs before build_layers: a keras.saving.register_keras_serializable layer for what Keras
    has no class of, so that the .keras file keeps it one layer with its own config, which
    --import reads back). The script defines each once, in the order first asked."""
    n.classes.update(classes)


# what a layer's KerasForm write(k, n) is handed: this module's helpers; source(tree, env,
# nid=node id) writes a Lambda formula as keras.ops calls
KIT = SimpleNamespace(call=call, kw=_kw, weight_args=_weight_args, unsupported=unsupported,
                      simple=_simple, define=define, initializer=initializer,
                      fmt=fmt, source=functools.partial(expr_source.source, dialect=KERAS_OPS))


def _from_form(form):
    if form.write is not None:
        return lambda n: form.write(KIT, n)
    if form.takes_list:
        return _merge(form.cls, form.params)
    return _simple(form.cls, form.params, form.weights)


# every layer's converter: its declaration's KerasForm (core/registry.py)
CONVERTERS = {t: _from_form(f) for t, f in declared("keras").items()}

# for docs/keras_export.md
KERAS_FORMS = {t: f.doc for t, f in declared("keras").items() if f.doc}


def keras_weight_names(type_id, specs, params=None):
    """Layerloom's weight names in the order of the Keras layer's weights; a tuple is one Keras
    weight stacked from several (GRU's (2, 3 * units) bias). A weight_order that is a function
    of the params (Bidirectional's) is called with them."""
    form = declared("keras").get(type_id)
    if form is not None and form.weight_order is not None:
        if not callable(form.weight_order):
            return list(form.weight_order)
        if params is not None:
            return list(form.weight_order(params))
    return [s.name for s in specs]
