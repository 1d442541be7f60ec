"""Each Layerloom layer as PyTorch source text, for torch_code.py's script: one converter per
layer type (declared beside the layer, its `torch_form`: a TorchForm of core/registry.py,
handed this module's KIT) returns (lines of __init__, lines of forward) for a node. Data stays channels-last
(Layerloom's and Keras' layout) between layers; a convolution or pooling permutes to torch's
channels-first and back around its own call. Weights keep Layerloom's names and layout in the
.npz; TORCH_WEIGHTS in the script says how each becomes a torch parameter (transpose)."""
import functools
import math
from types import SimpleNamespace

from layerloom.core.errors import DataError, quote
from layerloom.core.registry import declared
from layerloom.interop import expr_source
from layerloom.interop.expr_source import Dialect

# activation -> torch expression of `x`
ACTIVATIONS = {
    "linear": "{x}", "relu": "F.relu({x})", "relu6": "F.relu6({x})",
    "leaky_relu": "F.leaky_relu({x}, 0.2)", "elu": "F.elu({x})", "selu": "F.selu({x})",
    "gelu": "F.gelu({x})", "gelu_tanh": "F.gelu({x}, approximate='tanh')",
    "silu": "F.silu({x})", "mish": "F.mish({x})", "sigmoid": "torch.sigmoid({x})",
    "hard_sigmoid": "F.relu6({x} + 3.0) / 6.0", "hard_silu": "F.hardswish({x})",
    "tanh": "torch.tanh({x})",
    "softmax": "torch.softmax({x}, -1)", "log_softmax": "torch.log_softmax({x}, -1)",
    "softplus": "F.softplus({x})", "softsign": "F.softsign({x})",
    "exponential": "torch.exp({x})", "log_sigmoid": "F.logsigmoid({x})",
    "hard_tanh": "F.hardtanh({x})", "tanh_shrink": "F.tanhshrink({x})",
    "squareplus": "0.5 * ({x} + torch.sqrt({x} * {x} + 4.0))",
    "sparse_plus": "torch.where({x} <= -1.0, torch.zeros_like({x}), "
                   "torch.where({x} < 1.0, 0.25 * ({x} + 1.0) ** 2, {x}))",
    "soft_shrink": "F.softshrink({x}, 0.5)", "hard_shrink": "F.hardshrink({x}, 0.5)",
}


def unsupported(nid, type_id, option, value, why="has no PyTorch form in this export"):
    return DataError(f"{type_id} layer {quote(nid)}: option {option}={quote(value)} {why}",
                     f"graph.nodes.{nid}.params.{option}")


def activation(n, x):
    a = n.params.get("activation", "linear")
    if a not in ACTIVATIONS:
        raise unsupported(n.id, n.type, "activation", a)
    return ACTIVATIONS[a].format(x=x)


def _no_regularizers(n):
    for k in ("kernel_regularizer", "bias_regularizer"):
        if n.params.get(k):
            raise unsupported(n.id, n.type, k, n.params[k])


def _init(n, attr, key, default):
    """Keras' initialiser of a torch parameter (training from scratch)."""
    name = n.params.get(key, default)
    # glorot_uniform: U(+-sqrt(6 / (fan_in + fan_out))), torch's xavier_uniform_ (same fans
    # for Linear's (out, in) and Conv2d's OIHW weights)
    table = {"glorot_uniform": f"nn.init.xavier_uniform_({attr})",
             "zeros": f"nn.init.zeros_({attr})", "ones": f"nn.init.ones_({attr})",
             # Keras' RandomUniform default: U(-0.05, 0.05)
             "random_uniform": f"nn.init.uniform_({attr}, -0.05, 0.05)"}
    if isinstance(name, dict) and name["name"] == "variance_scaling":
        return _variance_scaling(n, attr, key, name)
    if not isinstance(name, str) or name not in table:
        raise unsupported(n.id, n.type, key, name)
    return table[name]


def _variance_scaling(n, attr, key, init):
    """Keras' VarianceScaling with its bound or stddev worked out here from the fans Layerloom
    gives the weight (Keras', whatever layout torch keeps it in); the weight is the layer's
    `<prefix>` or `<prefix>_kernel` (kernel_initializer: kernel)."""
    from layerloom.core.registry import get_layer
    from layerloom.train.initializers import fans
    prefix = key[:-len("_initializer")]
    specs = [w for w in get_layer(n.type).weights(n.params, n.in_shapes)
             if w.name in (prefix, f"{prefix}_kernel")]
    if len(specs) != 1:
        raise unsupported(n.id, n.type, key, init, "has no PyTorch form in this export (its "
                                                   "weight's fans are not one pair)")
    fan_in, fan_out = fans(specs[0])
    size = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
    scale = init["scale"] / max(1.0, size[init["mode"]])
    gen = "" if init.get("seed") is None else \
        f", generator=torch.Generator().manual_seed({init['seed']})"
    if init["distribution"] == "uniform":
        limit = math.sqrt(3.0 * scale)
        return f"nn.init.uniform_({attr}, -{limit!r}, {limit!r}{gen})  # VarianceScaling"
    if init["distribution"] == "untruncated_normal":
        return f"nn.init.normal_({attr}, 0.0, {math.sqrt(scale)!r}{gen})  # VarianceScaling"
    std = math.sqrt(scale) / 0.87962566103423978  # Keras' truncated normal's correction
    return f"nn.init.trunc_normal_({attr}, 0.0, {std!r}, -{2 * std!r}, {2 * std!r}{gen})  " \
           "# VarianceScaling"


def _pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _same_pads(size, k, s, d):
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


_TO_FIRST = {1: "(0, 2, 1)", 2: "(0, 3, 1, 2)", 3: "(0, 4, 1, 2, 3)"}  # to torch's channels-first
_TO_LAST = {1: "(0, 2, 1)", 2: "(0, 2, 3, 1)", 3: "(0, 2, 3, 4, 1)"}


# -- Lambda: the formula as torch calls (no Python function is stored) -------------------------
TORCH = Dialect(
    "torch",
    unary={"exp": "torch.exp", "log": "torch.log", "sqrt": "torch.sqrt", "abs": "torch.abs",
           "sin": "torch.sin", "cos": "torch.cos", "tan": "torch.tan", "tanh": "torch.tanh",
           "sigmoid": "torch.sigmoid", "relu": "torch.relu", "softplus": "F.softplus",
           "square": "torch.square", "erf": "torch.erf", "sign": "torch.sign", "neg": "torch.neg"},
    binary={"+": "torch.add", "-": "torch.sub", "*": "torch.mul", "/": "torch.div",
            "**": "torch.pow", "pow": "torch.pow", "maximum": "torch.maximum",
            "minimum": "torch.minimum"},
    compare=lambda op, a, b: f"({a} {op} {b}).to(torch.float32)",
    where="torch.where({c} != 0, {a}, {b})",
    clip="torch.minimum(torch.maximum({x}, {lo}), {hi})",
    # numbers as 0-d tensors: torch.maximum takes no Python float
    number=lambda v: f"torch.tensor({v!r})")


# what a layer's TorchForm converter is handed (convert(KIT, n)): this module's helpers;
# source(tree, env, nid=node id) writes a Lambda formula as torch calls
KIT = SimpleNamespace(activation=activation, init=_init, unsupported=unsupported,
                      no_regularizers=_no_regularizers, pair=_pair, same_pads=_same_pads,
                      to_first=_TO_FIRST, to_last=_TO_LAST,
                      source=functools.partial(expr_source.source, dialect=TORCH))

# every layer's converter: its declaration's TorchForm (core/registry.py)
CONVERTERS = {t: (lambda n, f=f: f.convert(KIT, n)) for t, f in declared("torch").items()}
STATE_PORTS = {t for t, f in declared("torch").items() if f.state_ports}  # return_state written
