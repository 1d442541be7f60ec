"""Declarations for the project file's sections and their object-valued keys (the dataset
section, its split and columns, each source's own keys), so that a section is validated from
its declaration like a layer's parameters: unknown keys are refused with the nearest known one,
every known key is checked by its Param, with its place in the message. The training section's
declarations (optimizers, losses, metrics, callbacks, schedules) are train/'s: it declares them
here (`declare_training`) for project/training.py, which asks `training(part)`."""
import difflib
import json
import types

from layerloom.core import plugins
from layerloom.core.errors import ParamError, ProjectError, quote
from layerloom.core.params import Param, _is_int, validate_params


def unknown_keys(d, known, place):
    """A refusal for each key of object d that is not in `known`, naming the nearest known
    one: a misspelt "parmas" must not silently give default parameters."""
    out = []
    for k in d:
        if k not in known:
            close = difflib.get_close_matches(str(k), sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean {quote(close[0])}?" if close else \
                f"; known keys: {', '.join(sorted(known))}"
            out.append(ProjectError("unknown key" + hint, f"{place}.{k}" if place else k))
    return out


def check_section(decls, d, place):
    """Problems of object d against declarations `decls` (absent keys take their defaults,
    which must validate: a required key has a default its Param refuses)."""
    problems = unknown_keys(d, {p.name for p in decls}, place)
    for p in decls:
        problems += _problems(p, d.get(p.name, p.default), f"{place}.{p.name}")
    return problems


def _problems(param, value, place):
    """What param says of value: nothing, one ParamError, or a group's or map's several."""
    try:
        param.validate(value, place)
    except ParamError as e:
        return [e]
    except SectionProblems as e:
        return e.problems
    return []


class SectionProblems(Exception):
    """Several problems from inside one key (a group's or a map's members)."""

    def __init__(self, problems):
        super().__init__(str(problems[0]))
        self.problems = problems


def _fmt(v):
    """A choice as a message shows it: words bare, punctuation, a tab or true/false as JSON."""
    return v if isinstance(v, str) and v.replace("_", "").isalnum() else json.dumps(v)


class Option(Param):
    """One of a fixed set of JSON values (strings, true/false), e.g. a CSV header: "auto",
    true or false. `unknown`: what the value names, for "unknown synthetic dataset 'moonz'"."""
    kind = "choice"

    def __init__(self, name, default, choices, help="", unknown=None):
        super().__init__(name, default, help)
        self.choices, self.unknown = tuple(choices), unknown

    def validate(self, value, place):
        if not any(value is c or (type(value) is type(c) and value == c) for c in self.choices):
            listed = ", ".join(_fmt(c) for c in self.choices)
            if self.unknown:
                raise ParamError(f"unknown {self.unknown} {quote(value)}; expected one of {listed}",
                                 place)
            raise ParamError(f"expected one of {listed}; got {quote(value)}", place)
        return value

    def describe(self):
        return "one of " + ", ".join(_fmt(c) for c in self.choices)


class Path(Param):
    """A file or folder path (relative to the project file); `what` says which."""
    kind = "path"

    def __init__(self, name, what, help=""):
        super().__init__(name, None, help)
        self.what = what

    def validate(self, value, place):
        if not isinstance(value, str) or not value:
            raise ParamError(f"expected the path of {self.what}, got {quote(value)}", place)
        return value

    def describe(self):
        return f"the path of {self.what}"


class Size(Param):
    """[height, width] in pixels."""
    kind = "size"

    def __init__(self, name, default, max=4096, help=""):
        super().__init__(name, default, help)
        self.max = max

    def validate(self, value, place):
        if (not isinstance(value, list) or len(value) != 2
                or not all(_is_int(v) and 1 <= v <= self.max for v in value)):
            raise ParamError(f"expected [height, width] in pixels (1 to {self.max}), got "
                             f"{quote(value)}", place)
        return value

    def describe(self):
        return f"[height, width] in pixels, 1 to {self.max}"


class Object(Param):
    """Any JSON object, kept as it is (the statistics a trained project records)."""
    kind = "object"

    def __init__(self, name, help=""):
        super().__init__(name, {}, help)

    def validate(self, value, place):
        if not isinstance(value, dict):
            raise ParamError("expected an object", place)
        return value

    def describe(self):
        return "an object"


class Group(Param):
    """An object whose keys are declared Params. nearest: refuse unknown keys naming the
    nearest known one (else as a layer's params: 'unknown parameter; expected one of')."""
    kind = "group"

    def __init__(self, name, decls, help="", nearest=True, expected=None):
        super().__init__(name, {}, help)
        self.decls, self.nearest = tuple(decls), nearest
        self.expected = expected or "an object {" + ", ".join(
            f'"{p.name}"' for p in self.decls) + "}"

    def validate(self, value, place):
        if not isinstance(value, dict):
            raise ParamError(f"expected {self.expected}", place)
        if self.nearest:
            problems = check_section(self.decls, value, place)
        else:
            _, problems = validate_params(self.decls, value, place)
        if problems:
            raise SectionProblems(problems)
        return value

    def describe(self):
        return self.expected


class MapOf(Param):
    """{name: value} with every value checked by `value` (a Param whose place is the name).
    nonempty: at least one entry."""
    kind = "map"

    def __init__(self, name, value, expected, help="", nonempty=False):
        super().__init__(name, {}, help)
        self.value, self.expected, self.nonempty = value, expected, nonempty

    def validate(self, value, place):
        if not isinstance(value, dict) or (self.nonempty and not value):
            raise ParamError(f"expected {self.expected}", place)
        problems = [e for k, v in value.items() for e in _problems(self.value, v, f"{place}.{k}")]
        if problems:
            raise SectionProblems(problems)
        return value

    def describe(self):
        return self.expected


class Str(Param):
    """A string naming something the file refers to (an array, a file). nonempty: not ""."""
    kind = "text"

    def __init__(self, name="", nonempty=False, help=""):
        super().__init__(name, None, help)
        self.nonempty = nonempty

    def validate(self, value, place):
        if not isinstance(value, str) or (self.nonempty and not value):
            raise ParamError(f"expected a{' non-empty' if self.nonempty else ''} string, got "
                             f"{quote(value)}", place)
        return value


# -- the training section's declarations, which train/ makes ----------------------------------
# project/ reads the training section against them and sits below train/, so it never imports
# train/: train/training_section.py declares each part here, and is loaded by name (a built-in,
# core/plugins.py) when a part is first asked for.
_TRAINING = {}


def declare_training(part, **declared):
    """Declare a part of the training section ("optimizers", "losses", "metrics",
    "callbacks", "schedules"): its names become the attributes `training(part)` has. Refuses
    a part declared twice (ValueError)."""
    if part in _TRAINING:
        raise ValueError(f"the training section's {part} are declared twice")
    _TRAINING[part] = types.SimpleNamespace(**declared)


def training(part):
    """What train/ declared for `part` of the training section (train/training_section.py)."""
    if part not in _TRAINING:
        plugins.load_builtins("layerloom.training")
    return _TRAINING[part]
