"""Keras layer configurations as Layerloom layers, for keras_import: one converter per Keras
class (made from the declared `keras_form` of the layer it becomes, a KerasForm of
core/registry.py) reads the config's keys through an Options (every key is either mapped to a Layerloom
parameter, checked to have the one value Layerloom computes, or harmless), and says in which
order the Keras layer stores its weights. Keras 2 (tf.keras) and Keras 3 spellings both: dtype
as a string or a DTypePolicy/Policy object, initializers and regularizers as objects with or
without `module`, axis as -1 or [rank], pool sizes of 1-D layers as [n]. Whatever has no
Layerloom form is a DataError naming the layer, its Keras class and the option."""
import re

import numpy as np

from layerloom.core.activations import ALIASES, NAMES
from layerloom.core.errors import DataError, ParamError
from layerloom.core.params import variance_scaling
from layerloom.core.registry import declared

# keys every layer may have that change nothing Layerloom computes
HARMLESS = {"name", "build_config", "seed", "unroll", "use_cudnn", "implementation", "fused",
            "input_length", "time_major", "renorm_momentum", "renorm_clipping",
            "ema_momentum", "jit_compile", "batch_input_shape", "batch_shape"}
INITIALIZERS = {"GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal",
                "HeUniform": "he_uniform", "HeNormal": "he_normal",
                "LecunUniform": "lecun_uniform", "LecunNormal": "lecun_normal",
                "Orthogonal": "orthogonal", "RandomUniform": "random_uniform",
                "RandomNormal": "random_normal", "Zeros": "zeros", "Ones": "ones"}
# the initializer's config values Layerloom's version of it has (seeds aside)
INITIALIZER_CONFIG = {"RandomUniform": {"minval": -0.05, "maxval": 0.05},
                      "RandomNormal": {"mean": 0.0, "stddev": 0.05},
                      "Orthogonal": {"gain": 1.0}}
VARIANCE_SCALING = {(1.0, "fan_avg", "uniform"): "glorot_uniform",
                    (1.0, "fan_avg", "truncated_normal"): "glorot_normal",
                    (2.0, "fan_in", "uniform"): "he_uniform",
                    (2.0, "fan_in", "truncated_normal"): "he_normal",
                    (1.0, "fan_in", "uniform"): "lecun_uniform",
                    (1.0, "fan_in", "truncated_normal"): "lecun_normal"}
FLOAT_DTYPES = {"float32", None}


def f32(v):
    """A float stored as float32 (0.009999999776482582) as the number it was (0.01)."""
    return float(str(np.float32(v)))


def snake(name):
    """Keras' naming.to_snake_case: the key a layer's weights have in model.weights.h5."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def dtype_name(d):
    """'float32' from 'float32', a DTypePolicy / Policy object or None."""
    if isinstance(d, dict):
        d = (d.get("config") or {}).get("name")
    return d


class Options:
    """A Keras layer's config, read key by key; finish() refuses what no converter read."""

    f32 = staticmethod(f32)

    def __init__(self, name, cls, config, keras2=False, place="--import"):
        self.name, self.cls, self.c, self.keras2 = name, cls, dict(config), keras2
        self.place, self.read = place, set(HARMLESS)

    def fail(self, option, why="has no Layerloom form"):
        value = self.c.get(option, "(missing)")
        raise DataError(f"layer {self.name!r} ({self.cls}): option {option}={value!r} {why}",
                        self.place)

    def get(self, key, default=None):
        self.read.add(key)
        v = self.c.get(key, default)
        return default if v is None and default is not None else v

    def must(self, key, *allowed):
        """The option is absent or one of `allowed` (the values Layerloom computes)."""
        self.read.add(key)
        if key in self.c and self.c[key] not in allowed:
            self.fail(key, f"has no Layerloom form (only {', '.join(map(repr, allowed))})")

    def number(self, key, default=None):
        v = self.get(key, default)
        if isinstance(v, list) and len(v) == 1:  # a 1-D layer's (n,)
            v = v[0]
        return v

    def floats(self, key, default):
        return f32(self.get(key, default))

    def activation(self, key="activation", default="linear"):
        a = self.get(key, default)
        if isinstance(a, dict):  # a serialized function
            a = a.get("config") if isinstance(a.get("config"), str) else a.get("class_name")
        a = ALIASES.get(a, a)
        if a == "hard_sigmoid" and self.keras2:
            self.fail(key, "is tf.keras 2's 0.2 x + 0.5 (Layerloom's is Keras 3's relu6(x+3)/6)")
        if a not in NAMES:
            self.fail(key, f"is not one of Layerloom's activations ({', '.join(NAMES)})")
        return a

    def initializer(self, key):
        v = self.get(key)
        if v is None:
            return None
        if isinstance(v, str):
            return v if v in INITIALIZERS.values() else self.fail(key)
        cls, cfg = v.get("class_name"), dict(v.get("config") or {})
        if cls == "VarianceScaling":
            return self.variance_scaling(key, cfg)
        cfg.pop("seed", None)
        if cls == "Constant":
            return {"name": "constant", "value": f32(cfg.get("value", 0.0))}
        if cls not in INITIALIZERS:
            self.fail(key)
        want = INITIALIZER_CONFIG.get(cls, {})
        for k, val in cfg.items():
            differs = f32(val) != want[k] if k in want and val is not None else \
                val not in (None, {}, [])
            if differs:
                self.fail(key, f"({k}={val!r}) differs from Layerloom's {INITIALIZERS[cls]}")
        return INITIALIZERS[cls]

    def variance_scaling(self, key, cfg):
        """Keras' VarianceScaling: glorot/he/lecun by name where it is one of them (unseeded),
        else Layerloom's variance_scaling (its seed kept); fans over chosen axes refused."""
        for k in ("input_axes", "output_axes"):
            if cfg.get(k) is not None:
                self.fail(key, f"({k}={cfg[k]!r}) has no Layerloom form (the fans are the "
                               "weight's, as Keras computes them by default)")
        extra = sorted(set(cfg) - {"scale", "mode", "distribution", "seed", "input_axes",
                                   "output_axes"})
        if extra:
            self.fail(key, f"({extra[0]}={cfg[extra[0]]!r}) has no Layerloom form")
        dist = str(cfg.get("distribution", "truncated_normal")).lower()
        value = {"name": "variance_scaling", "scale": f32(cfg.get("scale", 1.0)),
                 "mode": cfg.get("mode", "fan_in"),
                 "distribution": "truncated_normal" if dist == "normal" else dist,
                 "seed": cfg.get("seed")}
        named = VARIANCE_SCALING.get((value["scale"], value["mode"], value["distribution"]))
        if named and value["seed"] is None:
            return named
        try:
            return variance_scaling(value, key)
        except ParamError as e:
            self.fail(key, f"has no Layerloom form: {e.message}")

    def regularizer(self, key):
        v = self.get(key)
        if v is None:
            return None
        cls, cfg = v.get("class_name"), v.get("config") or {}
        if cls not in ("L1", "L2", "L1L2", "L1L2Regularizer") or set(cfg) - {"l1", "l2"}:
            self.fail(key, "is not an L1/L2 penalty")
        out = {"l1": f32(cfg.get("l1") or 0.0), "l2": f32(cfg.get("l2") or 0.0)}
        return out if out["l1"] or out["l2"] else None

    def weight_params(self, *prefixes):
        """<prefix>_initializer / _regularizer where given, constraints refused."""
        out = {}
        for p in prefixes:
            init = self.initializer(f"{p}_initializer")
            if init is not None:
                out[f"{p}_initializer"] = init
            reg = self.regularizer(f"{p}_regularizer")
            if reg is not None:
                out[f"{p}_regularizer"] = reg
            self.must(f"{p}_constraint", None)
        return out

    def axis_last(self, shapes, key="axis"):
        """The option names the last axis (Keras counts the batch axis: the last is `rank`)."""
        rank = len(shapes[0])
        self.must(key, -1, rank, [-1], [rank])

    def initializer_is(self, key, want):
        """The initializer is absent or `want` (a Keras class name, or its snake_case)."""
        v = self.get(key)
        if v is not None and (v.get("class_name") if isinstance(v, dict) else v) not in (
                want, snake(want)):
            self.fail(key, f"has no Layerloom form (only {want})")

    def convert_layer(self, layer, shapes):
        """(type id, params) of a layer config nested in this one ({"class_name", "config"}:
        TimeDistributed's wrapped layer) given its inputs' per-sample shapes; its errors name
        it as <this layer>/<its name>."""
        if not isinstance(layer, dict) or not isinstance(layer.get("config", {}), dict):
            self.fail("layer", "is not a layer config")
        config = layer.get("config") or {}
        return convert(f"{self.name}/{config.get('name')}", layer.get("class_name"), config,
                       shapes, self.keras2, self.place)

    def finish(self):
        """Common options, then any other key that is set is one Layerloom lacks."""
        if not isinstance(self.get("trainable", True), bool):  # False: imported frozen
            self.fail("trainable", "is not true or false")
        d = dtype_name(self.get("dtype"))
        if d not in FLOAT_DTYPES:
            self.fail("dtype", "is not float32 (Layerloom computes in float32)")
        for key in ("activity_regularizer", "kernel_constraint", "bias_constraint",
                    "quantization_config", "lora_rank"):
            self.must(key, None)
        self.must("data_format", None, "channels_last")
        for key, v in self.c.items():
            if key not in self.read and v not in (None, False, [], {}):
                self.fail(key)


def _from_form(type_id, form, read):
    """A declared KerasForm's reader as a converter: (type id, params)."""
    if read is None:
        def read(o, shapes):
            return {k: o.get(k) for k in form.params if o.c.get(k) is not None}
    return lambda o, shapes: (type_id, read(o, shapes))


def _declared():
    """Keras class -> converter, from the layers' KerasForms (the class itself, and `also`)."""
    out = {}
    for type_id, form in declared("keras").items():
        if form.cls is None:  # export only
            continue
        out[form.cls] = _from_form(type_id, form, form.read)
        for cls, read in form.also.items():
            out[cls] = _from_form(type_id, form, read or form.read)
    return out


# every Keras class read: its layer's declared KerasForm (core/registry.py)
CONVERTERS = _declared()


def convert(name, cls, config, shapes, keras2=False, place="--import"):
    """(type id, params) of the Keras layer `name` of class `cls` with `config`, given its
    inputs' per-sample shapes."""
    if cls not in CONVERTERS:
        why = (" (a Python function: Layerloom's Lambda takes a formula)" if cls == "Lambda"
               else "")
        raise DataError(f"layer {name!r} ({cls}): Layerloom has no {cls} layer{why}", place)
    o = Options(name, cls, config, keras2, place)
    try:
        type_id, params = CONVERTERS[cls](o, shapes)
    except ParamError as e:  # a layer's reader refusing its config: said with the layer's name
        raise DataError(f"layer {name!r} ({cls}): {e.message}", place) from None
    o.finish()
    return type_id, params


def keras_order(type_id, params):
    """Layerloom's weight names in the order the Keras layer stores its weights; a tuple is one
    Keras weight split into several (GRU's (2, 3 * units) bias: bias, recurrent_bias)."""
    form = declared("keras").get(type_id)
    if form is not None and form.weight_order is not None:
        order = form.weight_order
        return list(order(params) if callable(order) else order)
    return ["kernel"] + (["bias"] if params.get("use_bias") else [])


# keras.ops arithmetic of a tensor and a Python number (MobileNetV3's hard_sigmoid: x + 3.0,
# then * (1 / 6)), which a Functional model saves as an operation of keras.src.ops.numpy
# called with the number among its arguments: the Lambda formula of it, x the tensor
KERAS_OPS_WITH_NUMBER = {"Add": "{} + {}", "Subtract": "{} - {}", "Multiply": "{} * {}",
                         "Divide": "{} / {}", "TrueDivide": "{} / {}", "Power": "{} ** {}",
                         "Maximum": "maximum({}, {})", "Minimum": "minimum({}, {})"}


def _is_keras_tensor(v):
    return isinstance(v, dict) and v.get("class_name") == "__keras_tensor__"


def number_operand(lay, node, fail):
    """(the tensor's keras_history, Lambda formula) of a keras.ops call on one tensor and a
    number, or None when the layer is not a keras.ops call with a constant (the layers'
    readers take it); fail(why) refuses a constant that has no formula."""
    module = str(lay.get("module") or "")
    if not (module.startswith("keras.src.ops.") or module.startswith("keras.ops")) or \
            not isinstance(node, dict):
        return None
    args = node.get("args") or []
    if len(args) != 2 or sum(map(_is_keras_tensor, args)) != 1:
        return None
    cls = lay.get("class_name")
    op = f"keras.ops.{snake(str(cls))}"
    number = args[1] if _is_keras_tensor(args[0]) else args[0]
    if cls not in KERAS_OPS_WITH_NUMBER:
        fail(f"is {op} with a constant, which has no Layerloom form (those with one: "
             f"{', '.join(snake(c) for c in KERAS_OPS_WITH_NUMBER)})")
    if not isinstance(number, (int, float)) or isinstance(number, bool) or \
            not np.isfinite(number):
        fail(f"is {op} with the constant {number!r}: only a finite number maps (to a Lambda "
             "formula)")
    if node.get("kwargs"):
        fail(f"is {op} with the options {node['kwargs']!r}, which have no Layerloom form")
    text = repr(float(number))
    text = f"({text})" if number < 0 else text
    pair = ("x", text) if _is_keras_tensor(args[0]) else (text, "x")
    tensor = args[0] if _is_keras_tensor(args[0]) else args[1]
    return tuple(tensor["config"]["keras_history"]), KERAS_OPS_WITH_NUMBER[cls].format(*pair)
