"""Sweeps: a spec of parameters and their values, the trials it makes, a trial's project, and
how trials rank. Shared by `layerloom --sweep` (engine/cli/sweep.py) and the editor's Sweep
dialog and Runs tab. No Qt, no training here.

A spec is a JSON object (a file, or inline text), or the short text form:

    {"name": "lr",                      optional; default: the file's name or the parameters'
     "metric": "val_accuracy",          optional; default val_loss with a validation split,
                                          else loss; test_X ranks by the test figure X
     "goal": "max",                     optional where the metric says it (loss: min, accuracy: max)
     "trials": 8, "seed": 0,            N random trials (seeded) instead of every combination
     "parameters": {
        "learning_rate": {"log_range": [1e-4, 1e-1], "count": 6},
        "batch_size": [32, 64, 128],
        "optimizer": ["adam", "sgd"],
        "epochs": {"range": [5, 20], "step": 5},
        "hidden_1.units": {"range": [16, 64], "count": 4},
        "dropout.rate": {"range": [0.0, 0.5]}}}     (a range without count/step: random only)

    learning_rate=logrange(1e-4, 1e-1, 6); hidden_1.units=16,32,64; metric=val_accuracy

The values of a parameter: a list; {"range": [lo, hi], "count": n} (n evenly spaced, both
ends in) or "step": s; {"log_range": [lo, hi], "count": n} (n spaced evenly on a log scale).
Without "trials" every combination is a trial (a grid); with it, each trial draws each
parameter: a list's value or a range's point at random, a range without count or step
uniformly (log-uniformly for log_range). Training parameters: learning_rate (on a schedule:
its initial_learning_rate), batch_size, epochs, optimizer, seed; a node's parameter as
NODE.PARAM (hidden_1.units, conv_1.filters, dropout.rate, ...)."""
import itertools
import json
import math
import random
import re

from layerloom.core.errors import ProjectError, quote
from layerloom.core.params import Bool, Choice, Float, Int
from layerloom.core.sections import training

FORMAT, VERSION = "layerloom-sweep", 1
MAX_TRIALS = 1000
KEYS = ("name", "metric", "goal", "trials", "seed", "parameters")
TRAINING = {
    "learning_rate": Float("learning_rate", 0.001, min=0.0, min_exclusive=True),
    "batch_size": Int("batch_size", 32, min=1, max=1_000_000),
    "epochs": Int("epochs", 10, min=1, max=1_000_000),
    "seed": Int("seed", 0, min=0, max=2**32 - 1),
}
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "mape", "msle", "hinge", "crossentropy",
                   "divergence", "poisson", "cosh")
HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall", "f1", "r2", "iou", "score")


class SpecError(ProjectError):
    """A spec that cannot be swept: each problem placed in the spec (parameters.x.range)."""


class Spec:
    """A checked spec: name, metric, goal ("min" or "max"), trials (None: a grid), seed and
    parameters {name: Values}, and `source` (the normalised spec, which a resumed sweep must
    equal)."""

    def __init__(self, name, metric, goal, trials, seed, parameters, source):
        self.name, self.metric, self.goal = name, metric, goal
        self.trials, self.seed, self.parameters, self.source = trials, seed, parameters, source

    def points(self):
        """The trials' parameter values, [{name: value}], in order."""
        names = list(self.parameters)
        if self.trials is None:
            grid = itertools.product(*(self.parameters[n].points for n in names))
            return [dict(zip(names, combo)) for combo in grid]
        rng = random.Random(self.seed)
        return [{n: self.parameters[n].draw(rng) for n in names} for _ in range(self.trials)]


class Values:
    """One parameter's values: `points` (a list, or a range's points) or a continuous range
    (`points` None) that random trials draw from."""

    def __init__(self, decl, points=None, low=None, high=None, log=False):
        self.decl, self.points, self.low, self.high, self.log = decl, points, low, high, log

    def draw(self, rng):
        if self.points is not None:
            return rng.choice(self.points)
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            v = rng.uniform(self.low, self.high)
        return round(v) if isinstance(self.decl, Int) else float(f"{v:.6g}")


# -- reading a spec --------------------------------------------------------------------------
def read(text, project, default_name=None):
    """The Spec of `text` (JSON, or the short form) for `project` (a loom.Project), every
    problem placed; raises SpecError. Its name: the spec's, else default_name, else the
    swept parameters'."""
    text = text.strip()
    if text.startswith("{"):
        from .loom import parse_json
        try:
            d = parse_json(text, "a sweep spec")
        except json.JSONDecodeError as e:
            raise SpecError(f"not JSON: {e}") from None
        except ProjectError as e:  # nested too deep, an integer of thousands of digits
            raise SpecError(e.message) from None
    else:
        d = parse_short(text)
    return check(d, project, default_name)


def parse_short(text):
    """The short form ("learning_rate=logrange(1e-4,1e-1,6); metric=val_accuracy") as the
    JSON form's dict."""
    d, params = {}, {}
    for i, item in enumerate(p.strip() for p in re.split(r"[;\n]", text)):
        if not item:
            continue
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or not key or not value:
            raise SpecError(f"expected NAME=VALUES, got {quote(item)}", f"item {i + 1}")
        if key in ("name", "metric", "goal"):
            d[key] = value
        elif key in ("trials", "seed"):
            d[key] = _number(value, f"item {i + 1}")
        else:
            params[key] = _short_values(value, f"item {i + 1}")
    d["parameters"] = params
    return d


def _short_values(text, place):
    m = re.fullmatch(r"(range|logrange|log_range)\((.*)\)", text.replace(" ", ""))
    if not m:
        return [_number(v, place, text_ok=True) for v in text.split(",")]
    args = [a for a in m.group(2).split(",") if a]
    named = dict(a.split("=", 1) for a in args if "=" in a)
    plain = [_number(a, place) for a in args if "=" not in a]
    if len(plain) not in (2, 3) or set(named) - {"count", "step"}:
        raise SpecError(f"expected {m.group(1)}(LOW, HIGH[, COUNT]) or step=S, got "
                        f"{quote(text)}", place)
    out = {("range" if m.group(1) == "range" else "log_range"): plain[:2]}
    if len(plain) == 3:
        out["count"] = plain[2]
    out.update({k: _number(v, place) for k, v in named.items()})
    return out


def _number(text, place, text_ok=False):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text_ok and text:
        return text
    raise SpecError(f"expected a number, got {quote(text)}", place)


def check(d, project, default_name=None):
    problems = []
    if not isinstance(d, dict):
        raise SpecError("expected a JSON object with \"parameters\"")
    for k in d:
        if k not in KEYS:
            problems.append(SpecError(f"unknown key; expected one of {', '.join(KEYS)}", k))
    params = d.get("parameters")
    if not isinstance(params, dict) or not params:
        problems.append(SpecError("expected an object naming at least one parameter, e.g. "
                                  "{\"learning_rate\": [0.001, 0.01]}", "parameters"))
        params = {}
    trials = d.get("trials")
    if trials is not None and not _int_in(trials, 1, MAX_TRIALS):
        problems.append(SpecError(f"expected the number of random trials, 1 to {MAX_TRIALS}, "
                                  f"got {quote(trials)}", "trials"))
        trials = 1
    seed = d.get("seed", 0)
    if not _int_in(seed, 0, 2**32 - 1):
        problems.append(SpecError(f"expected an integer from 0 to 2^32-1, got {quote(seed)}",
                                  "seed"))
    values = {}
    for name, given in params.items():
        try:
            values[name] = _values(name, given, project, random_trials=trials is not None)
        except SpecError as e:
            problems.extend(e.problems or [e])
    metric = d.get("metric") or _default_metric(project)
    if not isinstance(metric, str) or not re.fullmatch(r"[A-Za-z0-9_.:/-]+", metric):
        problems.append(SpecError(f"expected a logged figure (loss, val_accuracy, "
                                  f"test_accuracy, ...), got {quote(metric)}", "metric"))
        metric = "loss"
    goal = d.get("goal") or goal_of(metric)
    if goal not in ("min", "max"):
        problems.append(SpecError(
            f"say whether a lower or a higher {metric} is better: \"min\" or \"max\""
            + (f", got {quote(goal)}" if d.get("goal") else ""), "goal"))
    name = d.get("name") or default_name or "-".join(params)[:60] or "sweep"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=+-]{0,79}", name):
        problems.append(SpecError("expected a name of letters, digits and _.=+- (it names the "
                                  f"sweep's folder), got {quote(name)}", "name"))
    spec = Spec(name, metric, goal, trials, seed, values, None)
    if not problems and trials is None:
        n = math.prod(len(v.points) for v in values.values())
        if n > MAX_TRIALS:
            problems.append(SpecError(f"{n:,} combinations; at most {MAX_TRIALS} (use "
                                      "\"trials\": N for N random ones)", "parameters"))
    if problems:
        raise SpecError(str(problems[0]), problems=problems)
    spec.source = {"name": name, "metric": metric, "goal": goal, "trials": trials,
                   "seed": seed, "parameters": json.loads(json.dumps(params))}
    return spec


def _int_in(v, lo, hi):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _default_metric(project):
    """val_loss where the training holds rows out (its validation_split, or the dataset's
    split), else loss."""
    split = (project.dataset or {}).get("split") or {}
    held = project.training.get("validation_split") or (
        isinstance(split, dict) and split.get("validation"))
    return "val_loss" if held else "loss"


def goal_of(metric):
    """"min" or "max" where a figure's name says which is better, else None."""
    base = metric.lower()
    for prefix in ("val_", "test_"):
        base = base[len(prefix):] if base.startswith(prefix) else base
    if any(w in base for w in LOWER_IS_BETTER):
        return "min"
    if any(w in base for w in HIGHER_IS_BETTER):
        return "max"
    return None


def declaration(name, project):
    """The Param a swept parameter's values are checked against; raises SpecError."""
    place = f"parameters.{name}"
    if name in TRAINING:
        return TRAINING[name]
    if name == "optimizer":
        return Choice("optimizer", "adam", sorted(training("optimizers").kinds))
    node_id, dot, param = name.rpartition(".")
    if not dot:
        raise SpecError(f"unknown parameter; expected one of {', '.join(sweepable(project))}",
                        place)
    node = project.graph.nodes.get(node_id)
    if node is None:
        raise SpecError(f"no node named {quote(node_id)} in the project (its nodes: "
                        f"{', '.join(project.graph.nodes)})", place)
    decls = {p.name: p for p in node.layer.params}
    decl = decls.get(param)
    if decl is None or not isinstance(decl, (Int, Float, Choice, Bool)):
        numeric = [p for p, d in decls.items() if isinstance(d, (Int, Float, Choice, Bool))]
        raise SpecError(f"{node.type} {quote(node_id)} has no parameter {quote(param)} that "
                        f"can be swept (it has: {', '.join(numeric) or 'none'})", place)
    return decl


def sweepable(project):
    """The names a spec can sweep for this project: the training ones, then each node's
    numeric parameters (units, filters, rate, ...)."""
    names = list(TRAINING) + ["optimizer"]
    for node in project.graph.nodes.values():
        names += [f"{node.id}.{p.name}" for p in node.layer.params
                  if isinstance(p, (Int, Float)) and p.default is not None]
    return names


def _values(name, given, project, random_trials):
    place = f"parameters.{name}"
    decl = declaration(name, project)
    if isinstance(given, list):
        if not given:
            raise SpecError("expected at least one value", place)
        return Values(decl, [_checked(decl, v, f"{place}[{i}]") for i, v in enumerate(given)])
    if not isinstance(given, dict) or len({"range", "log_range"} & set(given)) != 1:
        raise SpecError("expected a list of values, {\"range\": [low, high], \"count\": n}, "
                        "{\"range\": [low, high], \"step\": s} or {\"log_range\": [low, high], "
                        f"\"count\": n}}, got {quote(given)}", place)
    log = "log_range" in given
    key = "log_range" if log else "range"
    extra = set(given) - {key, "count", "step"}
    if extra:
        raise SpecError(f"unknown key {quote(sorted(extra)[0])}; expected count or step", place)
    if not isinstance(decl, (Int, Float)):
        raise SpecError(f"a range needs a numeric parameter; list {name}'s values instead",
                        place)
    bounds = given[key]
    if not (isinstance(bounds, list) and len(bounds) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
            and all(math.isfinite(b) for b in bounds) and bounds[0] < bounds[1]):
        raise SpecError(f"expected [low, high] with low < high, got {quote(bounds)}",
                        f"{place}.{key}")
    low, high = (_checked(decl, b, f"{place}.{key}") for b in bounds)
    if log and low <= 0:
        raise SpecError(f"a log range needs low > 0, got {quote(bounds[0])}", f"{place}.{key}")
    if "count" in given and "step" in given:
        raise SpecError("give count or step, not both", place)
    if "step" in given:
        step = given["step"]
        if log:
            raise SpecError("a log range takes count, not step", f"{place}.step")
        if not isinstance(step, (int, float)) or isinstance(step, bool) or not step > 0 or \
                (high - low) / step > MAX_TRIALS:
            raise SpecError(f"expected a step > 0 that fits at most {MAX_TRIALS} values in the "
                            f"range, got {quote(step)}", f"{place}.step")
        n = int(math.floor((high - low) / step + 1e-9)) + 1
        points = [low + i * step for i in range(n)]
    elif "count" in given:
        n = given["count"]
        if not _int_in(n, 2 if not isinstance(decl, Int) else 1, MAX_TRIALS):
            raise SpecError(f"expected a count from 2 to {MAX_TRIALS}, got {quote(n)}",
                            f"{place}.count")
        if log:
            points = [math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (n - 1))
                      for i in range(n)]
        else:
            points = [low + i * (high - low) / (n - 1) for i in range(n)]
    elif random_trials:
        return Values(decl, None, low, high, log)
    else:
        raise SpecError("every combination needs the range's values: add \"count\" (or "
                        "\"step\"), or draw from it with \"trials\": N", place)
    if isinstance(decl, Int):
        points = list(dict.fromkeys(round(p) for p in points))
    else:
        points = [float(f"{p:.6g}") for p in points]
    return Values(decl, [_checked(decl, p, place) for p in points], low, high, log)


def _checked(decl, value, place):
    from layerloom.core.errors import ParamError
    try:
        return decl.validate(value, place)
    except ParamError as e:
        raise SpecError(e.message, e.place) from None


# -- a trial ---------------------------------------------------------------------------------
def apply(project_dict, values):
    """A copy of the project's dict (loom.to_dict) with a trial's values set."""
    d = json.loads(json.dumps(project_dict))
    t = d.setdefault("training", {})
    for name in sorted(values, key=lambda n: n != "optimizer"):  # its params, then the rate
        v = values[name]
        if name == "learning_rate":
            opt = t.get("optimizer") or {"name": "adam"}
            opt = {"name": opt} if isinstance(opt, str) else dict(opt)
            p = dict(opt.get("params") or {})
            lr = p.get("learning_rate")
            if isinstance(lr, dict) and "initial_learning_rate" in lr:
                p["learning_rate"] = dict(lr, initial_learning_rate=v)
            else:
                p["learning_rate"] = v
            opt["params"] = p
            t["optimizer"] = opt
        elif name == "optimizer":
            opt = t.get("optimizer") or {}
            opt = {"name": opt} if isinstance(opt, str) else opt
            known = {p.name for p in training("optimizers").kinds[v].params}
            t["optimizer"] = {"name": v, "params": {
                k: x for k, x in (opt.get("params") or {}).items() if k in known}}
        elif name in TRAINING:
            t[name] = v
        else:
            node_id, _, param = name.rpartition(".")
            for n in d["graph"]["nodes"]:
                if n["id"] == node_id:
                    n.setdefault("params", {})[param] = v
    return d


def describe(values):
    """A trial's values as one line: "learning_rate=0.001, hidden_1.units=32"."""
    return ", ".join(f"{k}={show(v)}" for k, v in values.items())


def show(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


# -- ranking ---------------------------------------------------------------------------------
def value_of(record, metric):
    """The metric a run's record ranks by: a test figure for test_X, else the figure of the
    epoch whose weights the run kept (early stopping's best epoch where it restored them, else
    the last); None when the run logged no such figure."""
    if metric.startswith("test_") and metric[5:] in record.get("test", {}):
        return record["test"][metric[5:]]
    epochs = record.get("epochs") or []
    es = record.get("early_stopping") or {}
    if es.get("restored"):
        kept = [e for e in epochs if e.get("epoch") == es.get("best_epoch")]
        if kept and metric in kept[0]:
            return kept[0][metric]
    return epochs[-1].get(metric) if epochs else None


def figures_of(record):
    """The names a run's record can rank by."""
    names = [k for k in ((record.get("epochs") or [{}])[-1]) if k not in ("epoch", "seconds")]
    return names + [f"test_{k}" for k in record.get("test", {})]


def ranked(items, goal):
    """[(value, item)] best first; items without a value (None, NaN) last, in their order."""
    good = [(v, i) for v, i in items if isinstance(v, (int, float)) and math.isfinite(v)]
    bad = [(v, i) for v, i in items if (v, i) not in good]
    good.sort(key=lambda p: p[0], reverse=goal == "max")
    return good + bad


def early_stop_note(record):
    es = record.get("early_stopping")
    if not es:
        return ""
    return (f"early-stopped at epoch {es.get('stopped_epoch')} (best {es.get('best_epoch')}"
            + (", restored" if es.get("restored") else "") + ")")
