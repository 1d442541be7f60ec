"""A project as a readable Keras training script (`layerloom --export P --format keras-code
--to train_keras.py`):

    from layerloom.interop import keras_code
    keras_code.write_code(project, weights, "train_keras.py")  # + train_keras.weights.npz
    text = keras_code.code(project, "train_keras.weights.npz")

The script builds the graph with keras.layers (Functional API, each layer named by its node
id) behind a Normalization layer per Input holding the fitted statistics (so the model takes
raw inputs, as `layerloom --predict`), compiles it with the project's optimizer (and learning
rate schedule), losses, loss weights and metrics, and loads the weights written beside it
(an .npz in Layerloom's names; the script converts the one layout that differs, GRU's bias).
Imported, it gives build_model(); run, it trains on the project's data (docs/keras_export.md
says which sources) with the project's epochs, batch size, split, shuffling and callbacks.
Anything without a Keras form raises DataError naming the node (or section), type and
option."""
import os

import numpy as np

from layerloom.core.errors import DataError, quote
from layerloom.core import blocks as blocks_kit
from layerloom.project import loom
from layerloom.interop.keras_code_blocks import structured_lines
from layerloom.interop.keras_graph import (  # noqa: F401 (read from here by torch_code)
    _check, _indent, _normalization, graph_lines, host_params, keras_ready)
from layerloom.interop.keras_script import HEAD, TAIL, WEIGHTS

__all__ = ["code", "write_code", "weights_path_for", "SCRIPT_WEIGHTS_SUFFIX"]

SCRIPT_WEIGHTS_SUFFIX = ".weights.npz"


def weights_path_for(script_path):
    """train_keras.py -> train_keras.weights.npz beside it."""
    return os.path.splitext(script_path)[0] + SCRIPT_WEIGHTS_SUFFIX


# -- training: optimizer, schedule, losses, metrics, callbacks ----------------------------------
_OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "nadam": "Nadam",
               "rmsprop": "RMSprop", "adagrad": "Adagrad"}
_COMMON = ("weight_decay", "clipvalue", "clipnorm", "global_clipnorm")


def _schedule(s):
    name, rest = s["schedule"], {k: v for k, v in s.items() if k != "schedule"}
    place = "training.optimizer.params.learning_rate"
    if name == "exponential_decay":
        return ("keras.optimizers.schedules.ExponentialDecay(" + ", ".join(
            f"{k}={rest[k]!r}" for k in ("initial_learning_rate", "decay_steps", "decay_rate",
                                         "staircase")) + ")")
    if name == "piecewise_constant_decay":
        return (f"keras.optimizers.schedules.PiecewiseConstantDecay(boundaries="
                f"{list(rest['boundaries'])!r}, values={list(rest['values'])!r})")
    if name == "cosine_decay":
        args = [f"{k}={rest[k]!r}" for k in ("initial_learning_rate", "decay_steps", "alpha")]
        if rest.get("warmup_target"):
            args += [f"warmup_target={rest['warmup_target']!r}",
                     f"warmup_steps={rest['warmup_steps']!r}"]
        return "keras.optimizers.schedules.CosineDecay(" + ", ".join(args) + ")"
    raise DataError(f"schedule {quote(name)} has no Keras form", place)


def optimizer_source(training):
    from layerloom.train.optimizers import OPTIMIZERS
    opt = training["optimizer"]
    name = opt["name"]
    if name not in _OPTIMIZERS:
        raise DataError(f"optimizer {quote(name)} has no Keras form", "training.optimizer.name")
    values = {p.name: p.default for p in OPTIMIZERS[name].params}
    values.update(opt.get("params") or {})
    args = []
    for k, v in values.items():
        if k == "learning_rate" and isinstance(v, dict):
            args.append(f"learning_rate={_schedule(v)}")
        elif k in _COMMON:
            if v:  # Keras' None: off
                args.append(f"{k}={v!r}")
        else:
            args.append(f"{k}={v!r}")
    clips = [k for k in ("clipvalue", "clipnorm", "global_clipnorm") if values.get(k)]
    if len(clips) > 1:
        raise DataError(f"optimizer {name}: options {' and '.join(clips)} are set together; "
                        "Keras takes only one of them", f"training.optimizer.params.{clips[1]}")
    return f"keras.optimizers.{_OPTIMIZERS[name]}(" + ", ".join(args) + ")"


_LOSSES = {"sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
           "categorical_crossentropy": "CategoricalCrossentropy",
           "binary_crossentropy": "BinaryCrossentropy", "mean_squared_error": "MeanSquaredError",
           "mean_absolute_error": "MeanAbsoluteError", "huber": "Huber",
           "kl_divergence": "KLDivergence"}


def loss_source(entry, place):
    name = entry["name"]
    if name not in _LOSSES:
        raise DataError(f"loss {quote(name)} has no Keras form", place)
    args = []
    if name in ("sparse_categorical_crossentropy", "categorical_crossentropy",
                "binary_crossentropy"):
        args.append(f"from_logits={bool(entry.get('from_logits'))!r}")
    elif entry.get("from_logits"):
        raise DataError(f"loss {name}: option from_logits=True has no Keras form",
                        f"{place}.from_logits")
    if name == "huber":
        args.append(f"delta={entry.get('delta', 1.0)!r}")
    return f"keras.losses.{_LOSSES[name]}(" + ", ".join(args) + ")"


def metric_source(spec, loss_name, place):
    """A metric entry as Keras source, from its declaration's Keras form (train/metrics.py)."""
    from layerloom.train import metrics
    name = metrics.entry_name(spec)
    kind = metrics.KINDS.get(metrics.canonical(spec))
    if kind is None or kind.keras is None:
        raise DataError(f"metric {quote(name)} has no Keras form", place)
    cls = kind.keras(loss_name) if callable(kind.keras) else kind.keras
    if cls is None:
        return repr(name)
    given = spec if isinstance(spec, dict) else {}
    defaults = {p.name: p.default for p in kind.params}
    args = [f"{arg}={given.get(ours, defaults[ours])!r}" for arg, ours in kind.keras_args]
    # history keys: the name the project wrote, as Layerloom's
    return f"keras.metrics.{cls}(" + ", ".join(args + [f"name={name!r}"]) + ")"


def compile_lines(project):
    t = project.training
    outs = project.graph.outputs()
    losses = t.get("loss") or {}
    # an output without a loss (a graph exported before its training is set up) is not
    # trained: Keras' None loss, as Layerloom would refuse to train it
    metrics = t.get("metrics") or []
    per_output = metrics if isinstance(metrics, dict) else {o: metrics for o in outs}
    mlists = {o: [metric_source(m, losses[o]["name"], f"training.metrics.{o}[{i}]")
                  for i, m in enumerate(per_output.get(o, []))] if o in losses else []
              for o in outs}

    def source(o):
        return loss_source(losses[o], f"training.loss.{o}") if o in losses else "None"

    def weight(o):
        return float(losses[o].get("weight", 1.0)) if o in losses else 1.0

    lines = [f"optimizer = {optimizer_source(t)}"]
    if len(outs) == 1:
        o = outs[0]
        lines.append(f"loss = {source(o)}")
        lines.append(f"loss_weights = {weight(o)!r}" if o in losses else "loss_weights = None")
        lines.append("metrics = [" + ", ".join(mlists[o]) + "]")
    else:
        lines.append("loss = {")
        lines += [f"    {o!r}: {source(o)}," for o in outs]
        lines.append("}")
        lines.append("loss_weights = {" + ", ".join(
            f"{o!r}: {weight(o)!r}" for o in outs) + "}")
        lines.append("metrics = {")
        lines += [f"    {o!r}: [" + ", ".join(mlists[o]) + "]," for o in outs]
        lines.append("}")
    lines.append("model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights, "
                 "metrics=metrics)")
    return lines


def callback_lines(project):
    out = []
    for i, c in enumerate(project.training.get("callbacks") or []):
        name, place = c["name"], f"training.callbacks[{i}]"
        mon = f"monitor={c.get('monitor', 'val_loss')!r}, mode={c.get('mode', 'auto')!r}"
        if name == "early_stopping":
            out.append(f"keras.callbacks.EarlyStopping({mon}, min_delta={c['min_delta']!r}, "
                       f"patience={c['patience']!r}, "
                       f"restore_best_weights={c['restore_best_weights']!r}, "
                       f"start_from_epoch={c['start_from_epoch']!r})")
        elif name == "model_checkpoint":
            path = c["filepath"]
            if path.endswith(".weights.npz"):
                path = path[:-len(".weights.npz")] + ".weights.h5"
            elif not path.endswith(".weights.h5"):
                path += ".weights.h5"
            # Keras writes weights only: save_state (Layerloom's --resume state) has no form
            out.append(f"keras.callbacks.ModelCheckpoint({path!r}, {mon}, "
                       f"save_best_only={c['save_best_only']!r}, save_weights_only=True)")
        elif name == "terminate_on_nan":
            out.append("keras.callbacks.TerminateOnNaN()")
        elif name == "reduce_lr_on_plateau":
            out.append(f"keras.callbacks.ReduceLROnPlateau({mon}, factor={c['factor']!r}, "
                       f"patience={c['patience']!r}, min_delta={c['min_delta']!r}, "
                       f"cooldown={c['cooldown']!r}, min_lr={c['min_lr']!r})")
        else:
            raise DataError(f"callback {quote(name)} has no Keras form", f"{place}.name")
    return out


# -- the script (its text: keras_script.py) ------------------------------------------------------
def _fmt_normalization(stats):
    if not stats:
        return "{}"
    rows = [f"    {nid!r}: {{\"shift\": {s['shift']!r},\n{' ' * (len(repr(nid)) + 7)}"
            f"\"scale\": {s['scale']!r}}}," for nid, s in stats.items()]
    return "{\n" + "\n".join(rows) + "\n}"


def _fmt_weights(weights):
    if not weights:
        return "{}"
    return "{\n" + "".join(f"    {nid!r}: {names!r},\n" for nid, names in weights.items()) + "}"


def _mappings(project):
    g, d = project.graph, project.dataset or {}
    ins, outs = g.inputs(), g.outputs()
    inputs = dict(d.get("inputs") or {}) or ({ins[0]: "x"} if len(ins) == 1 else
                                             {n: n for n in ins})
    targets = dict(d.get("targets") or {}) or ({outs[0]: "y"} if len(outs) == 1 else
                                               {n: n for n in outs})
    losses = project.training.get("loss") or {}
    sparse = [o for o in outs if (losses.get(o) or {}).get("name") ==
              "sparse_categorical_crossentropy"]
    return inputs, targets, sparse


def code(project, weights_file, script_name="train_keras.py"):
    """The script's text; weights_file: the weights' file name, beside the script."""
    body = None
    if blocks_kit.has_blocks(project.graph):
        try:  # a function per block type; the inlined script where that cannot be written
            body, stats, weights, classes = structured_lines(project)
        except Exception:  # noqa: BLE001 (the inlined script raises what is wrong, placed)
            body = None
    project, _ = keras_ready(project)
    if body is None:
        body, stats, weights, classes = graph_lines(project)
    t = project.training
    path = project.path
    module = os.path.splitext(os.path.basename(script_name))[0]
    inputs, targets, sparse = _mappings(project)
    text = HEAD.format(project=os.path.basename(path) if path else "a Layerloom project",
                        script=os.path.basename(script_name), module=module,
                        project_path=os.path.abspath(path) if path else "",
                        weights=os.path.basename(weights_file), epochs=int(t["epochs"]),
                        batch_size=int(t["batch_size"]), seed=int(t["seed"]),
                        validation_split=float(t.get("validation_split", 0.0)),
                        shuffle=bool(t.get("shuffle", True)),
                        normalization=_fmt_normalization(stats))
    if classes:  # before build_layers, after the imports and settings
        head, sep, tail = text.rpartition("\n\ndef build_layers():")
        text = head + "\n\n" + "\n\n".join(c.strip("\n") + "\n" for c in
                                           classes.values()) + sep + tail
    text += _indent(body)
    text += WEIGHTS.format(keras_weights=_fmt_weights(weights))
    text += _indent(compile_lines(project) + ["return model"])
    cbs = callback_lines(project)
    text += TAIL.format(callbacks=(",\n            ".join(cbs)), inputs=inputs,
                         targets=targets, sparse=sparse)
    return text


def weight_arrays(project, weights, keras_names=True):
    """The weights the graph needs, float32, checked (names and shapes); keyed by the
    layers' Keras names (keras_ready), or with keras_names=False by the ids of the graph with
    its blocks inlined (the PyTorch script's)."""
    from layerloom.interop.onnx_export import _check_weights, _node_weights
    if keras_names:
        project, weights = keras_ready(project, weights)
    else:
        project = loom.flat(project)
    g = _check(project)
    shapes = g.analysis().shapes
    weights = dict(weights or {})
    _check_weights(g, shapes, weights)
    out = {}
    for nid, node in g.nodes.items():
        if node.layer.is_input or node.shares is not None:  # a sharer's: its owner's
            continue
        in_shapes = [shapes[e.src][e.src_port] for e in g.in_edges(nid)]
        for name, a in _node_weights(g, nid, in_shapes, weights).items():
            out[f"{nid}/{name}"] = np.asarray(a, np.float32)
    return out


def write_code(project, weights, path):
    """Write the script to `path` and the weights beside it (NAME.weights.npz), each
    atomically. Returns the script's text."""
    from layerloom.core.fileio import atomic_write_bytes, atomic_write_text, npz_bytes
    wpath = weights_path_for(path)
    text = code(project, os.path.basename(wpath), os.path.basename(path))
    arrays = weight_arrays(project, weights)
    atomic_write_bytes(wpath, npz_bytes(arrays))
    atomic_write_text(path, text)
    return text
