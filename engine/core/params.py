"""Typed layer parameters, declared once per layer type.

A declaration gives name, kind, default, bounds or choices and help text. From it come
validation (with the value's place in the message), the inspector widget (keyed by `kind`),
serialisation and the docs table.
"""
import re
import math
from abc import ABC, abstractmethod

from layerloom.core.errors import ParamError, quote


class Param(ABC):
    kind = "param"

    def __init__(self, name, default, help=""):
        self.name = name
        self.default = default
        self.help = help

    @abstractmethod
    def validate(self, value, place):
        """Return the normalised value or raise ParamError naming `place`."""

    def to_json(self, value):
        return value

    def describe(self):
        return ""


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


INT_LIMIT = 2**31 - 1  # every integer a file sets: kernels take sizes as 32-bit ints
MAX_RANK = 8  # axes of a per-sample shape


class Int(Param):
    kind = "int"

    def __init__(self, name, default, min=None, max=None, help=""):
        super().__init__(name, default, help)
        self.min, self.max = min, max

    def _expected(self):
        if self.min == 1 and self.max is None:
            return "a positive integer"
        if self.min == 0 and self.max is None:
            return "a non-negative integer"
        if self.min is not None and self.max is not None:
            return f"an integer from {self.min} to {self.max}"
        if self.min is not None:
            return f"an integer >= {self.min}"
        if self.max is not None:
            return f"an integer <= {self.max}"
        return "an integer"

    def validate(self, value, place):
        if value is None and self.default is None:
            return None  # "not set" (Keras' strides=None)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_int(value) or (self.min is not None and value < self.min) or (
                self.max is not None and value > self.max):
            raise ParamError(f"expected {self._expected()}, got {quote(value)}", place)
        if abs(value) > INT_LIMIT:
            raise ParamError(f"expected {self._expected()} of at most {INT_LIMIT:,}, got "
                             f"{quote(value)}", place)
        return value

    def describe(self):
        return self._expected()


class Float(Param):
    kind = "float"

    def __init__(self, name, default, min=None, max=None, min_exclusive=False,
                 max_exclusive=False, help=""):
        super().__init__(name, default, help)
        self.min, self.max = min, max
        self.min_exclusive, self.max_exclusive = min_exclusive, max_exclusive

    def _expected(self):
        lo = "" if self.min is None else ("> " if self.min_exclusive else ">= ") + f"{self.min:g}"
        hi = "" if self.max is None else ("< " if self.max_exclusive else "<= ") + f"{self.max:g}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        return "a number" + (f" {bounds}" if bounds else "")

    def validate(self, value, place):
        try:  # an integer of 400 digits is a number, but no float
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
        except OverflowError:
            ok = False
        if ok and self.min is not None:
            ok = value > self.min if self.min_exclusive else value >= self.min
        if ok and self.max is not None:
            ok = value < self.max if self.max_exclusive else value <= self.max
        if not ok:
            raise ParamError(f"expected {self._expected()}, got {quote(value)}", place)
        return float(value) + 0.0  # -0.0 -> 0.0 (numpy refuses a scale of -0.0)

    def describe(self):
        return self._expected()


class Bool(Param):
    kind = "bool"

    def validate(self, value, place):
        if not isinstance(value, bool):
            raise ParamError(f"expected true or false, got {quote(value)}", place)
        return value

    def describe(self):
        return "true or false"


class Choice(Param):
    kind = "choice"

    def __init__(self, name, default, choices, help="", aliases=None):
        super().__init__(name, default, help)
        self.choices = tuple(choices)
        self.aliases = dict(aliases or {})  # other accepted spellings -> canonical choice

    def validate(self, value, place):
        if isinstance(value, str) and value in self.aliases:
            return self.aliases[value]
        if value not in self.choices:
            raise ParamError(f"expected one of {', '.join(self.choices)}; got {quote(value)}", place)
        return value

    def describe(self):
        return "one of " + ", ".join(self.choices)


class Text(Param):
    """A non-empty string (a file name, a logged key)."""
    kind = "text"

    def validate(self, value, place):
        if not isinstance(value, str) or not value:
            raise ParamError(f"expected a non-empty string, got {quote(value)}", place)
        return value

    def describe(self):
        return "a non-empty string"


class Shape(Param):
    """A tensor shape without the batch dimension, e.g. [28, 28, 1]."""
    kind = "shape"

    def validate(self, value, place):
        if isinstance(value, str):  # as Keras users write it: "28, 28, 1", "(28, 28, 1)"
            value = self.parse_text(value)
        if (not isinstance(value, (list, tuple)) or not value or len(value) > MAX_RANK
                or not all(_is_int(v) and 0 < v <= INT_LIMIT for v in value)):
            raise ParamError(f"expected 1 to {MAX_RANK} positive integers such as 28, 28, 1 "
                             f"or (28, 28, 1) or [28, 28, 1], got {quote(value)}", place)
        return tuple(value)

    @staticmethod
    def parse_text(text):
        """'28, 28, 1', '(28, 28, 1)', '[28, 28, 1]', '(784,)', '28 28' -> a list of ints;
        text that is not such a list comes back unchanged (validate then says why)."""
        inner = text.strip()
        if inner[:1] + inner[-1:] in ("()", "[]"):
            inner = inner[1:-1]
        parts = [p for p in re.split(r"[,\s]+", inner.strip()) if p]
        if parts and all(re.fullmatch(r"-?\d{1,12}", p) for p in parts):
            return [int(p) for p in parts]
        return text

    @staticmethod
    def text(value):
        """How the editor shows a shape: Keras' tuple, (28, 28, 1) or (784,)."""
        v = list(value)
        return "(" + ", ".join(map(str, v)) + ("," if len(v) == 1 else "") + ")"

    def to_json(self, value):
        return list(value)

    def describe(self):
        return "list of positive integers"


def validate_params(decls, given, place):
    """Validate a params dict against declarations; fill defaults. Returns (values, problems)."""
    values, problems = {}, []
    if not isinstance(given, dict):
        return None, [ParamError(f"expected an object, got {type(given).__name__}", place)]
    known = {p.name for p in decls}
    for key in given:
        if key not in known:
            problems.append(ParamError(
                f"unknown parameter; expected one of {', '.join(sorted(known)) or '(none)'}",
                f"{place}.{key}"))
    for p in decls:
        if p.name in given:
            try:
                values[p.name] = p.validate(given[p.name], f"{place}.{p.name}")
            except ParamError as e:
                problems.append(e)
        else:
            values[p.name] = p.validate(p.default, f"{place}.{p.name}")
    return values, problems


class Pair(Param):
    """A pair of positive integers; a single integer means the same for both (Keras style:
    kernel_size=3 is (3, 3)). Triple: three, for the 3-D layers."""
    kind = "pair"
    count, words = 2, "two"

    def __init__(self, name, default, min=1, help=""):
        super().__init__(name, default, help)
        self.min = min

    def validate(self, value, place):
        if value is None and self.default is None:
            return None
        v = [value] * self.count if _is_int(value) else value
        if (not isinstance(v, (list, tuple)) or len(v) != self.count
                or not all(_is_int(e) and self.min <= e <= INT_LIMIT for e in v)):
            raise ParamError(f"expected an integer >= {self.min} or a list of {self.words}, "
                             f"got {quote(value)}", place)
        return tuple(v)

    def to_json(self, value):
        return None if value is None else list(value)

    def describe(self):
        return f"an integer >= {self.min} or a list of {self.words}" + (
            "; null: default" if self.default is None else "")


class Triple(Pair):
    """Three positive integers (depth, height, width); a single integer means all three."""
    count, words = 3, "three"


class Margins(Param):
    """Keras' 2-D padding/cropping amounts: an integer (all sides), [rows, cols] (symmetric), or
    [[top, bottom], [left, right]]. Normalised to ((top, bottom), (left, right)). Margins3:
    the 3-D layers' three axes (depth, rows, cols) the same way."""
    kind = "margins"
    axes, spelling = 2, "[rows, cols] or [[top, bottom], [left, right]]"

    def validate(self, value, place):
        v, n = value, self.axes
        if _is_int(v):
            v = [[v, v]] * n
        elif isinstance(v, (list, tuple)) and len(v) == n and all(_is_int(e) for e in v):
            v = [[e, e] for e in v]
        ok = (isinstance(v, (list, tuple)) and len(v) == n and all(
            isinstance(e, (list, tuple)) and len(e) == 2
            and all(_is_int(i) and 0 <= i <= INT_LIMIT for i in e) for e in v))
        if not ok:
            raise ParamError(f"expected an integer >= 0, {self.spelling}, got {quote(value)}",
                             place)
        return tuple(tuple(e) for e in v)

    def to_json(self, value):
        return [list(e) for e in value]

    def describe(self):
        return f"an integer >= 0, {self.spelling}"


class Margins3(Margins):
    axes = 3
    spelling = ("[depth, rows, cols] or [[front, back], [top, bottom], [left, right]]")


class Dims(Param):
    """A target shape without the batch axis; one entry may be -1 (inferred), as in Reshape."""
    kind = "shape"

    def validate(self, value, place):
        if isinstance(value, str):  # the editor's text: "7, 7, 16", "(-1, 2)"
            value = self.parse_text(value)
        ok = (isinstance(value, (list, tuple)) and value and len(value) <= MAX_RANK
              and all(_is_int(v) and (0 < v <= INT_LIMIT or v == -1) for v in value)
              and sum(v == -1 for v in value) <= 1)
        if not ok:
            raise ParamError("expected a non-empty list of positive integers (one may be -1), "
                             f"got {quote(value)}", place)
        return tuple(value)

    def to_json(self, value):
        return list(value)

    def describe(self):
        return "list of positive integers, one may be -1"

    # written and shown as a Shape is
    parse_text, text = staticmethod(Shape.parse_text), staticmethod(Shape.text)


class Expr(Param):
    """A Lambda expression: checked text (see engine/core/expr.py), never code."""
    kind = "expr"

    def validate(self, value, place):
        from layerloom.core.expr import parse
        parse(value, place)
        return value.strip()

    def describe(self):
        return "an expression over the inputs, e.g. x * sigmoid(x)"


# the initialisers' names (Keras'), declared here for validation; train/initializers.py computes
# each (core sits below train and never imports it)
INITIALIZER_NAMES = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                     "lecun_uniform", "lecun_normal", "orthogonal", "random_uniform",
                     "random_normal", "zeros", "ones", "constant", "lstm_bias")


# Keras' VarianceScaling: {"name": "variance_scaling", "scale": s > 0, "mode": one of
# VARIANCE_MODES, "distribution": one of VARIANCE_DISTRIBUTIONS, "seed": null or an integer}
# (Keras' defaults 1.0, fan_in, truncated_normal; its "normal" is truncated_normal)
VARIANCE_MODES = ("fan_in", "fan_out", "fan_avg")
VARIANCE_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")
_NUMBER = (int, float)


def _is_number(v):
    return isinstance(v, _NUMBER) and not isinstance(v, bool) and math.isfinite(v)


def variance_scaling(value, place):
    """A VarianceScaling dict normalised (defaults filled in), or a ParamError naming what is
    wrong."""
    extra = sorted(set(value) - {"name", "scale", "mode", "distribution", "seed"})
    if extra:
        raise ParamError(f"variance_scaling has no option {quote(extra[0])} (its options: "
                         "scale, mode, distribution, seed)", place)
    scale = value.get("scale", 1.0)
    if not _is_number(scale) or scale <= 0:
        raise ParamError(f"variance_scaling's scale must be a number > 0; got {quote(scale)}",
                         place)
    mode = value.get("mode", "fan_in")
    if mode not in VARIANCE_MODES:
        raise ParamError(f"variance_scaling's mode must be one of {', '.join(VARIANCE_MODES)}; "
                         f"got {quote(mode)}", place)
    dist = value.get("distribution", "truncated_normal")
    dist = "truncated_normal" if dist == "normal" else dist
    if dist not in VARIANCE_DISTRIBUTIONS:
        raise ParamError(f"variance_scaling's distribution must be one of "
                         f"{', '.join(VARIANCE_DISTRIBUTIONS)}; got {quote(dist)}", place)
    seed = value.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                             or not 0 <= seed < 2 ** 32):
        raise ParamError(f"variance_scaling's seed must be null or an integer 0..2^32-1; got "
                         f"{quote(seed)}", place)
    return {"name": "variance_scaling", "scale": float(scale), "mode": mode,
            "distribution": dist, "seed": seed}


class Initializer(Param):
    """An initialiser name, {"name": "constant", "value": v} or a variance_scaling dict."""
    kind = "initializer"

    def validate(self, value, place):
        if isinstance(value, dict):
            if value.get("name") == "variance_scaling":
                return variance_scaling(value, place)
            ok = (value.get("name") == "constant" and set(value) <= {"name", "value"}
                  and _is_number(value.get("value", 0.0)))
            if ok:
                return {"name": "constant", "value": float(value.get("value", 0.0))}
        elif value == "variance_scaling":  # Keras' identifier: its defaults
            return variance_scaling({}, place)
        elif value in INITIALIZER_NAMES:
            return value
        raise ParamError(f"expected one of {', '.join(INITIALIZER_NAMES)}, "
                         f"{{\"name\": \"constant\", \"value\": number}} or {{\"name\": "
                         f"\"variance_scaling\", \"scale\": s, \"mode\": m, \"distribution\": d}}"
                         f"; got {quote(value)}", place)

    def describe(self):
        return "an initializer name, a constant or a variance_scaling"


class Regularizer(Param):
    """null, or {"l1": a, "l2": b}: adds a * sum|w| + b * sum(w^2) to the loss."""
    kind = "regularizer"

    def validate(self, value, place):
        if value is None:
            return None
        if (isinstance(value, dict) and value and set(value) <= {"l1", "l2"}
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                        for v in value.values())):
            return {"l1": float(value.get("l1", 0.0)), "l2": float(value.get("l2", 0.0))}
        raise ParamError(f"expected null or {{\"l1\": number >= 0, \"l2\": number >= 0}}; got "
                         f"{quote(value)}", place)

    def describe(self):
        return "null or {\"l1\": a, \"l2\": b}"
