"""The project file's training section: its scalar settings (TRAINING_PARAMS), the optimizer,
a loss per output, metrics and callbacks, each read against its declaration (optimizer Params,
train/losses.py, train/metrics.py, train/callbacks.py, train/schedules.py) with every problem's
place. `problems` collects what makes a file unusable; `soft` what an unfinished project in the
editor may still have (an output without a loss). The declarations are train/'s, asked for
through core/sections.py `training(part)`: project/ sits below train/ and never imports it."""
from layerloom.core.errors import ProjectError, quote
from layerloom.core.params import Bool, Float, Int, validate_params
from layerloom.core.sections import training, unknown_keys

TRAINING_PARAMS = (
    Int("epochs", 10, min=1, max=1_000_000, help="Passes over the training data."),
    Int("batch_size", 32, min=1, max=1_000_000, help="Samples per step."),
    Int("seed", 0, min=0, max=2**32 - 1, help="Seeds initialisation, shuffling and dropout."),
    Float("validation_split", 0.0, min=0.0, max=1.0, max_exclusive=True,
          help="Fraction of the training data (the last samples) held out for validation."),
    Bool("shuffle", True, help="Shuffle the training data every epoch."),
)
SECTIONS = ("optimizer", "loss", "metrics", "callbacks")


def default_training():
    t = {p.name: p.default for p in TRAINING_PARAMS}
    t.update({"optimizer": {"name": "adam", "params": {}}, "loss": {}, "metrics": ["accuracy"],
              "callbacks": []})
    return t


# a new project's share of the training data held out for validation where its source has no
# validation split of its own (Keras' examples use 0.1-0.2): the first curves have a
# validation line. A file that says nothing of it keeps meaning none (default_training).
NEW_PROJECT_VALIDATION = 0.2


def new_project_training():
    """The training section of a project made new in the editor."""
    return {**default_training(), "validation_split": NEW_PROJECT_VALIDATION}


def parse_training(t, graph, problems, soft=None):
    """The checked training section of a file (defaults where it is silent)."""
    soft = problems if soft is None else soft
    out = default_training()
    if not isinstance(t, dict):
        problems.append(ProjectError("expected an object", "training"))
        return out
    names = {p.name for p in TRAINING_PARAMS}
    values, perr = validate_params(TRAINING_PARAMS, {k: v for k, v in t.items() if k in names},
                                   "training")
    problems.extend(perr)
    if not perr:
        out.update(values)
    problems.extend(unknown_keys(t, names | set(SECTIONS), "training"))
    optimizer = _optimizer(t.get("optimizer", {"name": "adam"}), problems)
    if optimizer is not None:
        out["optimizer"] = optimizer
    outputs = graph.outputs()
    out["loss"] = _losses(t.get("loss", {}), outputs, problems, soft)
    out["callbacks"], cerr = training("callbacks").validate(t.get("callbacks", []))
    problems.extend(cerr)
    out["metrics"] = _metrics(t.get("metrics", ["accuracy"]), outputs, problems, soft)
    # the editor opens such a file with the problem listed; --run refuses it
    soft.extend(_metrics_against_losses(out["metrics"], out["loss"], outputs))
    return out


def _metrics_against_losses(metrics, losses, outputs):
    """A metric that cannot be computed against its output's targets (precision on class
    indices), placed at the metric."""
    found, metric = [], training("metrics")
    for o in outputs:
        loss = losses.get(o, {}).get("name") if isinstance(losses.get(o), dict) else None
        if isinstance(metrics, dict):
            entries, place = metrics.get(o, []), f"training.metrics.{o}"
        else:
            entries, place = metrics, "training.metrics"
        for i, m in enumerate(entries):
            why = metric.columnwise_problem(metric.entry_name(m), loss)
            if why and not any(e.place == f"{place}[{i}]" for e in found):
                found.append(ProjectError(f"output {quote(o)}: {why}", f"{place}[{i}]"))
    return found


def _name(v):
    """v where it can name something (a string), else None: a list or an object where a name
    is expected must not reach a dict lookup (unhashable)."""
    return v if isinstance(v, str) else None


def _optimizer(opt, problems):
    """{"name", "params"} of a name or {"name", "params"}; None if it names no optimizer. A
    learning_rate may be a schedule (train/schedules.py)."""
    optimizers = training("optimizers").kinds
    if isinstance(opt, str):
        opt = {"name": opt}
    if not isinstance(opt, dict) or _name(opt.get("name")) not in optimizers:
        got = opt.get("name") if isinstance(opt, dict) else opt
        problems.append(ProjectError(f"expected an optimizer, one of {', '.join(optimizers)}; "
                                     f"got {quote(got)}", "training.optimizer"))
        return None
    place = "training.optimizer.params"
    problems.extend(unknown_keys(opt, {"name", "params"}, "training.optimizer"))
    given = opt.get("params", {})
    if not isinstance(given, dict):
        problems.append(ProjectError(f"expected an object {{parameter: value}}, got "
                                     f"{quote(given)}", place))
        given = {}
    given = dict(given)
    lr = given.pop("learning_rate") if isinstance(given.get("learning_rate"), dict) else None
    vals, perr = validate_params(optimizers[opt["name"]].params, given, place)
    problems.extend(perr)
    if lr is not None:
        sched, serr = training("schedules").validate(lr, f"{place}.learning_rate")
        problems.extend(serr)
        if vals is not None and sched:
            vals["learning_rate"] = sched
    return {"name": opt["name"], "params": vals if not perr else {}}


def _losses(loss, outputs, problems, soft):
    """{output: loss entry}; one loss (a name or an entry) stands for every output."""
    if isinstance(loss, str) or (isinstance(loss, dict) and "name" in loss):
        loss = {o: loss for o in outputs}
    if not isinstance(loss, dict):
        problems.append(ProjectError("expected a loss name or an object {output_id: loss}",
                                     "training.loss"))
        loss = {}
    losses, known = {}, set(outputs)  # a set: a graph may have thousands of outputs
    for o, spec in loss.items():
        place = f"training.loss.{o}"
        if o not in known:
            soft.append(ProjectError(f"no output node {quote(o)}; outputs are "
                                     f"{', '.join(map(repr, outputs)) or '(none)'}", place))
            continue
        entry, perr = training("losses").check_entry(spec, place)
        problems.extend(perr)
        if entry is not None:
            losses[o] = entry
    # every output without a loss, unless the loss section itself could not be read
    if not any(p.place and p.place.startswith("training.loss") for p in problems):
        soft.extend(ProjectError(f"output {quote(o)} has no loss", "training.loss",
                                 kind="no_loss", fields={"output": o})
                    for o in outputs if o not in losses)
    return losses


def _metrics(metrics, outputs, problems, soft):
    """A list of metrics for every output, or {output: [metrics]}."""
    if isinstance(metrics, list):
        return _metric_list(metrics, "training.metrics", problems)
    if not isinstance(metrics, dict):
        problems.append(ProjectError("expected a list of metric names or an object "
                                     "{output_id: [names]}", "training.metrics"))
        return ["accuracy"]
    out, known = {}, set(outputs)
    for o, ms in metrics.items():
        place = f"training.metrics.{o}"
        if o not in known:
            soft.append(ProjectError(f"no output node {quote(o)}", place))
        elif not isinstance(ms, list):
            problems.append(ProjectError("expected a list of metric names", place))
        else:
            out[o] = _metric_list(ms, place, problems)
    return out


def _metric_list(metrics, place, problems):
    good, seen, metric = [], set(), training("metrics")
    for i, m in enumerate(metrics):
        entry, perr = metric.check_entry(m, f"{place}[{i}]")
        problems.extend(perr)
        if entry is None:
            continue
        name = metric.canonical(entry)
        if name in seen:  # one history key per metric and output
            problems.append(ProjectError(f"{name} is listed twice", f"{place}[{i}]"))
            continue
        seen.add(name)
        good.append(entry)
    return good
