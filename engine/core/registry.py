"""The layer registry: every layer type is declared once, in one file under engine/layers/.

A declaration (a `Layer` subclass decorated with `@register`) gives the type id, category, help,
typed params, ports, the output-shape rule, trainable weights, the OpenCL forward/backward, a
float64 numpy reference used by the test harness, and its interop forms (OnnxForm, TorchForm,
KerasForm below: ONNX out and in, PyTorch code, Keras out and in). Palette, inspector, file
format, shape inference, engine, docs and interop/ all read this registry, so adding a layer is
its module (and docs/layers.md, generated; a new kernel is its .cl file and op).
An installed package adds layers the same way, through the entry point group layerloom.layers
(core/plugins.py).
"""
from abc import ABC, abstractmethod

import numpy as np

from layerloom.core import plugins
from layerloom.core.errors import GraphError, ParamError


class ShapeError(GraphError):
    """Raised by a layer's shape rule; the graph adds the node's place."""


class Variadic:
    """A layer taking any number (>= min) of inputs on ports 0..k-1 (Add, Concatenate)."""

    def __init__(self, name="x", min=2):
        self.name, self.min = name, min


class WeightSpec:
    def __init__(self, name, shape, init="zeros", fan_in=None, fan_out=None, trainable=True,
                 regularizer=None):
        self.name, self.shape, self.init = name, tuple(shape), init
        self.fan_in, self.fan_out = fan_in, fan_out
        self.regularizer = regularizer  # None or {"l1": a, "l2": b}
        self.trainable = trainable  # False: state such as BatchNorm's moving statistics


# -- interop forms: how a layer is written to and read from other formats, declared beside the
# layer (as a class attribute). layers/ sits below interop/ and never imports it: a form holds
# names, parameter maps and plain functions, which interop/ calls with what they need (its
# builder or kit object). interop/'s tables (CONVERTERS) are made from these (`declared`).
class OnnxForm:
    """ONNX export: convert(b, n) appends the node's ops to interop's Builder b and returns its
    output tensors, one per port (n: interop.onnx_layers.Node); ops: what it becomes, in words
    (docs/onnx.md). reads: the ONNX operators imported as this layer, {op type: OnnxRead}."""

    def __init__(self, convert, ops, reads=None):
        self.convert, self.ops, self.reads = convert, ops, dict(reads or {})


class OnnxRead:
    """ONNX import of one operator as the layer: attributes, the ones its reader maps (any
    other present is refused by name); read(imp, node, type_id) adds the layer through
    interop.onnx_import's importer imp (its value, shape, add, set, result, fail, padding...)."""

    def __init__(self, attributes, read):
        self.attributes, self.read = frozenset(attributes), read


class TorchForm:
    """PyTorch code: convert(t, n) returns (lines of __init__, lines of forward, the weights'
    {name: (torch attribute, layout)}) for the node n (interop.torch_code.TNode); t is
    interop.torch_layers' kit (activation, init, unsupported, no_regularizers, pair,
    same_pads, to_first, to_last, source). state_ports: it writes the ports after the first
    (return_state: named <out>_h and <out>_c)."""

    def __init__(self, convert, state_ports=False):
        self.convert, self.state_ports = convert, state_ports


class KerasForm:
    """Keras, both directions. cls: the Keras class; params: the parameters of the same name
    and meaning on both sides; weights: the weight prefixes whose initializers and
    regularizers are Keras' (kernel, bias). Export: write(k, n) returns the lines (k:
    interop.keras_out_layers' kit), else `layers.<cls>(params..., weights' args)`. Import:
    read(o, shapes) returns the params from the Keras config read through o
    (interop.keras_in_layers.Options), else each of `params` the config sets. also: other Keras
    classes read as this layer, {class: read or None (read as cls)}. weight_order: Layerloom's
    weight names in the Keras layer's order (default: kernel, then bias with use_bias). doc:
    the export in words where it is not the plain class (docs/keras_export.md); weight_order
    may be a function of the params. takes_list: the Keras layer is called on a list of its
    inputs (the merges)."""

    def __init__(self, cls, params=(), weights=(), write=None, read=None, also=None,
                 weight_order=None, doc=None, takes_list=False):
        self.cls, self.params, self.weights = cls, tuple(params), tuple(weights)
        self.write, self.read, self.also = write, read, dict(also or {})
        self.weight_order, self.doc, self.takes_list = weight_order, doc, takes_list


FORMATS = {"onnx": "onnx_form", "torch": "torch_form", "keras": "keras_form"}


def declared(fmt):
    """{type id: form} of every registered layer that declares one for `fmt` (a key of
    FORMATS)."""
    return {l.type_id: getattr(l, FORMATS[fmt]) for l in layer_types()
            if getattr(l, FORMATS[fmt], None) is not None}


class Layer(ABC):
    """Base declaration. Subclasses override what differs; see engine/layers/core.py. The
    abstract methods must be given: a declaration missing one fails when it is registered."""

    type_id = ""
    category = "Core"
    help = ""
    params = ()
    inputs = ("x",)          # port names, or a Variadic
    outputs = ("y",)
    alias_output = False     # output shares the input buffer (Flatten): forward enqueues nothing
    activation_param = None  # name of a param holding a final elementwise activation
    is_input = False
    stochastic = False       # training output is random (Dropout): tests check it statistically
    test_in_training = False  # the harness checks forward/backward in training mode (BatchNorm)
    differentiable = True    # False: its inputs get no gradient (Embedding's indices)
    integer_inputs = False   # its inputs are indices (Embedding): the test harness feeds integers
    pre_activation_is_input = False  # a loss fused with its activation reads its input (Activation)
    # interop forms (OnnxForm, TorchForm, KerasForm above); None: not declared here.
    # no_form: {format: why this layer has none}, where it has none on purpose: a key of FORMATS,
    # or "keras_in" for a Keras form that is export only (its cls None)
    onnx_form = None
    torch_form = None
    keras_form = None
    no_form = {}
    # Examples for the numerics harness: (params, [per-sample input shapes]).
    examples = ()
    # parameters shown on the node's face ("Dense 64 relu"); None: those of HEADLINE it has
    headline = None
    HEADLINE = ("units", "filters", "kernel_size", "pool_size", "rate", "stddev", "input_dim",
                "output_dim", "target_shape", "dims", "n", "size", "cropping", "axes",
                "expression", "activation")

    def headline_text(self, params):
        """The key parameter values, short: "64 relu", "32 3x3 relu", "0.3" (a linear
        activation and unset values left out)."""
        names = self.headline if self.headline is not None else [
            q.name for q in self.params if q.name in self.HEADLINE]
        out = []
        for name in names:
            v = params.get(name)
            if v is None or (name == "activation" and v == "linear"):
                continue
            if isinstance(v, bool):
                continue
            if isinstance(v, (list, tuple)):
                flat = [x for row in v for x in (row if isinstance(row, (list, tuple)) else [row])]
                out.append("x".join(str(x) for x in flat))
            elif isinstance(v, float):
                out.append(f"{v:g}")
            else:
                out.append(str(v))
        return " ".join(out)

    def parse_headline(self, words):
        """The parameters the words typed after a layer's name give, in Keras' positional
        order and as name=value (core/quickadd.py parse_words). Raises ParamError naming a
        word no parameter takes."""
        from layerloom.core.quickadd import parse_words
        return parse_words(self, words)

    # -- ports ---------------------------------------------------------------
    def input_ports(self, n_connected=0):
        if isinstance(self.inputs, Variadic):
            return [f"{self.inputs.name}{i}" for i in range(max(n_connected, self.inputs.min))]
        return list(self.inputs)

    def output_names(self, p):
        """Output port names; may depend on params (return_state adds state outputs)."""
        return list(self.outputs)

    def min_inputs(self):
        return self.inputs.min if isinstance(self.inputs, Variadic) else len(self.inputs)

    def max_inputs(self):
        return None if isinstance(self.inputs, Variadic) else len(self.inputs)

    # -- declarations ----------------------------------------------------------
    @abstractmethod
    def output_shapes(self, p, in_shapes):
        """Per-sample output shapes from the params and input shapes; raise ShapeError."""

    def weights(self, p, in_shapes):
        return []

    def folds_activation(self, p, in_shapes):
        """Whether this layer's backward can take over the derivative of the activation its
        input's producer ends with (NodeStep.fold_act; engine/train/model.py decides where):
        max pooling over tiled windows can, for the activations differentiated through their
        output."""
        return False

    def scratch(self, p, in_shapes):
        """Per-sample shapes of scratch buffers the engine allocates for this node (float32 or
        int32 elements; both are 4 bytes)."""
        return {}

    def constants(self, p, in_shapes):
        """Arrays (int32 or float32) uploaded once when the graph is compiled (index maps)."""
        return {}

    def param_count(self, p, in_shapes):
        return int(sum(np.prod(w.shape) for w in self.weights(p, in_shapes)))

    # -- engine -----------------------------------------------------------------
    @abstractmethod
    def forward(self, ops, s):
        """Enqueue the forward pass for the NodeStep s."""

    @abstractmethod
    def backward(self, ops, s):
        """Enqueue the backward pass: s.dx (+)= ..., s.dw = ... ."""

    @abstractmethod
    def reference(self, p, xs, ws, training=False):
        """float64 numpy forward: xs are arrays with a batch axis; returns list of outputs."""

    def defaults(self):
        return {q.name: q.default for q in self.params}


_REGISTRY = {}


def register(cls):
    """Class decorator: instantiate and register a layer declaration; the built-ins and
    installed plugins (entry point group layerloom.layers) register this way. Refuses a
    type id already registered (ValueError). Returns the class."""
    if not cls.type_id:
        raise ValueError(f"{cls.__name__} declares no type_id")
    if cls.type_id in _REGISTRY:
        raise ValueError(f"layer type {cls.type_id!r} is registered twice")
    names = [q.name for q in cls.params]
    if len(set(names)) != len(names):
        raise ValueError(f"layer type {cls.type_id!r} declares a parameter twice")
    _REGISTRY[cls.type_id] = cls()
    return cls


_loaded = False


def _load_all():
    """The built-in layers (engine/layers/, loaded by name: core never imports layers/), then
    the installed plugins' (entry points in the group layerloom.layers), all through
    `register`; a broken plugin is reported and skipped (core/plugins.py)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    plugins.load_builtins("layerloom.layers")
    plugins.load_plugins("layerloom.layers")


def get_layer(type_id):
    _load_all()
    return _REGISTRY.get(type_id)


def layer_types():
    """All registered declarations, sorted by category then type id."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda l: (l.category, l.type_id))


def find_layer(word, extra=()):
    """The layer declaration a typed word names: its type exactly, else the first whose
    type starts with it, else contains it, else whose help does (case aside); or None.
    extra: more declarations, tried first (a project's block types)."""
    word = word.lower()
    layers = list(extra) + layer_types()
    for test in (lambda l: l.type_id.lower() == word,
                 lambda l: l.type_id.lower().startswith(word),
                 lambda l: word in l.type_id.lower(),
                 lambda l: word in l.help.lower()):
        found = [l for l in layers if test(l)]
        if found:
            return found[0]
    return None


def layer_from_text(text, extra=()):
    """(type id, parameters) from a layer typed as Keras takes it ("embedding 10000 32",
    "conv2d 16 3x3 relu padding=same", "Dense(64, activation='relu')": the words read by
    core/quickadd.py); raises ParamError saying what was not understood."""
    from layerloom.core.quickadd import split_words
    words = split_words(text)
    if not words:
        raise ParamError("type a layer's name")
    layer = find_layer(words[0], extra)
    if layer is None:
        raise ParamError(f"no layer type is called {words[0]!r}; the Layers panel lists them")
    return layer.type_id, layer.parse_headline(words[1:])


def layers_from_text(text, extra=()):
    """[(type id, parameters), ...] from layers typed one after another, separated by ";" or
    a new line: "input 28 28; flatten; dense 128 relu; dense 10 softmax" (a Sequential model in
    one line); one layer gives a list of one, read as layer_from_text reads it. A ";" inside
    brackets or quotes separates nothing. Every part is read before any is used: a refused
    one raises ParamError naming its place ("layer 2 of 3, 'dense x': ...")."""
    from layerloom.core.quickadd import split_chain
    parts = split_chain(text)
    if len(parts) <= 1:
        return [layer_from_text(parts[0] if parts else "", extra)]
    out = []
    for i, part in enumerate(parts, 1):
        try:
            out.append(layer_from_text(part, extra))
        except ParamError as e:
            raise ParamError(f"layer {i} of {len(parts)}, {part!r}: {e.message}") from None
    return out
