"""Run records: every training run (the editor's or `layerloom --run`'s) kept in its output
folder as records/<id>/run.json (when and where it ran, its settings, its history, its final
and test figures) and records/<id>/weights.npz (the weights it ended with), so runs can be
listed, compared and one restored later. The editor's output folder for PROJECT.loom is
runs/PROJECT beside it, the folder `layerloom --run PROJECT.loom` writes when run there.

A record folder is read as untrusted input: a run.json that cannot be read, or is not a
record, is skipped and named in `problems`, never an error for the others."""
import json
import os
import shutil
import time

from layerloom import gallery
from layerloom.core.fileio import load_weights, npz_bytes, remove_stale_staging, write_folder_unit
from layerloom.core.sections import training

RECORDS = "records"
RUN_FILE, WEIGHTS_FILE = "run.json", "weights.npz"
FORMAT, VERSION = "layerloom-run", 1
# what an epoch's record holds besides its figures: its number, its time and whether Stop
# interrupted it (a status: the monitors skip such an epoch; never shown or kept as a figure)
NOT_FIGURES = ("epoch", "seconds", "interrupted")


def figures(record):
    """An epoch's record without its number, time and status: the logged figures alone."""
    return {k: v for k, v in record.items() if k not in NOT_FIGURES}


def folder_for(project_path):
    """The output folder of the saved project at `project_path`: runs/<name> beside it."""
    path = os.path.abspath(project_path)
    return os.path.join(os.path.dirname(path), "runs", os.path.splitext(os.path.basename(path))[0])


def folder_of(project_path):
    """The output folder the editor records a project's runs in: runs/<name> beside it; None
    for the bundled examples (the installed package's folder is never written: their runs are
    kept in memory until the project is saved elsewhere)."""
    examples = gallery.folder()
    if examples and os.path.realpath(os.path.dirname(os.path.abspath(project_path))) == \
            os.path.realpath(examples):
        return None
    return folder_for(project_path)


def settings_of(project_dict, epochs=None, batch_size=None, device=None, parameters=None):
    """The settings of a run of this project (a dict of the .loom file), as a person compares
    them: {label: value}, in the order the Runs tab shows them; the values the run used where
    they differ from the file's (the editor's Epochs and Batch size, the device)."""
    from .training import TRAINING_PARAMS
    default = {p.name: p.default for p in TRAINING_PARAMS}
    t = project_dict.get("training") or {}
    t = {**default, **{k: v for k, v in t.items() if v is not None}}
    opt = t.get("optimizer") or {}
    opt = {"name": opt} if isinstance(opt, str) else opt
    params = dict(opt.get("params") or {})
    ds = project_dict.get("dataset") or {}
    nodes = (project_dict.get("graph") or {}).get("nodes") or []
    out = {"Data": ds.get("name") or os.path.basename(str(ds.get("path") or "")) or
           ds.get("source") or "",
           "Optimizer": opt.get("name", ""),
           "Learning rate": _text(params.pop("learning_rate", ""))}
    for k in sorted(params):
        out[f"  {k}"] = _text(params[k])
    out.update({
        "Loss": _loss_text(t.get("loss")),
        "Metrics": _metrics_text(t.get("metrics") or []),
        "Epochs": epochs if epochs is not None else t.get("epochs"),
        "Batch size": batch_size if batch_size is not None else t.get("batch_size"),
        "Seed": t.get("seed"),
        "Validation split": t.get("validation_split"),
        "Shuffle": t.get("shuffle"),
        "Callbacks": _text(t.get("callbacks")) if t.get("callbacks") else "none",
        "Layers": len(nodes),
        "Parameters": parameters,
        "Device": device or ""})
    return with_defaults(out)


def with_defaults(settings):
    """The settings with the optimizer's defaults where they leave a parameter out or empty: a
    project whose optimizer was left as it came (params {}) ran with those values, and its runs
    compare by them (records written before this kept "" as the learning rate and no beta_1)."""
    optimizers = training("optimizers").kinds
    name = settings.get("Optimizer")
    decls = optimizers[name].params if isinstance(name, str) and name in optimizers else ()
    rows = {_param_label(p.name): p.default for p in decls}
    if not rows or "Optimizer" not in settings:
        return settings
    given = {k: v for k, v in settings.items() if k in rows or k.startswith("  ")}
    rows.update({k: v for k, v in given.items() if v not in ("", None)})
    out = {}
    for k, v in settings.items():
        if k in given:
            continue  # the optimizer's rows, put back after its name
        out[k] = v
        if k == "Optimizer":
            out["Learning rate"] = rows.pop("Learning rate", "")
            out.update((row, rows[row]) for row in sorted(rows))
    return out


def _param_label(name):
    return "Learning rate" if name == "learning_rate" else f"  {name}"


def differs(values):
    """Whether a row of settings (one value a run) holds different values: numbers compare by
    value (0 and 0.0, 1e-07 and 1e-7 are one), a flag or a text never equals a number."""
    return len({_value_key(v) for v in values}) > 1


def _value_key(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return ("number", float(v))
    return (type(v).__name__, json.dumps(v, sort_keys=True, default=str))


def _metrics_text(metrics):
    if isinstance(metrics, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in metrics.items())
    return _text(metrics)


def _loss_text(loss):
    if not isinstance(loss, dict):
        return _text(loss)
    parts = []
    for name, entry in loss.items():
        entry = entry if isinstance(entry, dict) else {"name": entry}
        text = str(entry.get("name", ""))
        if entry.get("from_logits"):
            text += " (from logits)"
        if len(loss) > 1:
            text = f"{name}: {text} x{entry.get('weight', 1.0):g}"
        parts.append(text)
    return ", ".join(parts)


def _text(value):
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    return json.dumps(value, sort_keys=True)


def make_record(project_dict, history, source, device, parameters, started=None, **used):
    """The run.json contents of a finished (or stopped) run of the project `project_dict`;
    `used`: training settings the run used in place of the file's (epochs, batch_size, seed),
    kept in the record's project so that restoring the run restores them."""
    started = time.time() if started is None else started
    project_dict = json.loads(json.dumps(project_dict))  # a copy that later edits leave alone
    project_dict["training"] = {**(project_dict.get("training") or {}),
                                **{k: v for k, v in used.items() if v is not None}}
    eps = [_without_status(e) for e in history.get("epochs") or []]
    return {
        "format": FORMAT, "version": VERSION,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "source": source,
        "project_name": project_dict.get("name") or "",
        "settings": settings_of(project_dict, device=device, parameters=parameters),
        "epochs": eps,
        "final": figures(eps[-1]) if eps else {},
        "test": dict(history.get("test") or {}),
        "stopped": bool(history.get("stopped")),
        "stopped_reason": history.get("stopped_reason") or "",
        "seconds": sum(e.get("seconds", 0.0) for e in eps),
        "project": project_dict,
    }


def _new_id(records, started):
    base = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    rid, n = base, 2
    while os.path.exists(os.path.join(records, rid)):
        rid, n = f"{base}-{n}", n + 1
    return rid


def save(folder, record, weights):
    """Write a record (and its weights, when there are any) as records/<id>/ in `folder`, whole
    or not at all; returns the id."""
    records = os.path.join(folder, RECORDS)
    remove_stale_staging(records)  # a killed run's half-written record
    started = time.mktime(time.strptime(record["started"], "%Y-%m-%dT%H:%M:%S"))
    rid = _new_id(records, started)
    files = {RUN_FILE: (json.dumps(dict(record, id=rid), indent=1) + "\n").encode("utf-8")}
    if weights:
        files[WEIGHTS_FILE] = npz_bytes(weights)
    write_folder_unit(os.path.join(records, rid), files)
    return rid


class Listing:
    """The records of an output folder, oldest first, and the files that were skipped."""

    def __init__(self, records, problems):
        self.records, self.problems = records, problems


def load(folder):
    """Listing of folder's records; each record a dict with "id" and "path" (its folder)."""
    records_dir = os.path.join(folder, RECORDS)
    found, problems = [], []
    try:
        names = sorted(os.listdir(records_dir))
    except OSError:
        return Listing([], [])
    for name in names:
        path = os.path.join(records_dir, name)
        run_file = os.path.join(path, RUN_FILE)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        try:
            with open(run_file, "rb") as f:
                rec = json.loads(f.read(16 << 20).decode("utf-8"))
        except (OSError, ValueError) as e:
            problems.append(f"{run_file}: not read ({getattr(e, 'strerror', None) or e})")
            continue
        why = _not_a_record(rec)
        if why:
            problems.append(f"{run_file}: {why}")
            continue
        rec["id"], rec["path"] = name, path
        found.append(_as_now(rec))
    found.sort(key=lambda r: (r["started"], r["id"]))
    return Listing(found, problems)


def _not_a_record(rec):
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        return "not a Layerloom run record"
    if not isinstance(rec.get("version"), int) or rec["version"] > VERSION:
        return f"a run record of a newer Layerloom (version {rec.get('version')!r})"
    for key, kind in (("started", str), ("settings", dict), ("epochs", list), ("final", dict),
                      ("test", dict), ("project", dict)):
        if not isinstance(rec.get(key), kind):
            return f"its {key!r} is missing or not a {kind.__name__}"
    if not all(isinstance(e, dict) and all(isinstance(v, (int, float)) for v in e.values())
               for e in rec["epochs"]):
        return "its 'epochs' are not lists of figures"
    return None


def _as_now(rec):
    """A record read back as this version writes it: an interrupted epoch's flag (kept as a
    figure before) is the run's status, the optimizer's settings have their defaults."""
    flagged = rec["final"].pop("interrupted", None)
    for e in rec["epochs"]:
        flagged = e.pop("interrupted", None) or flagged
    if flagged:
        rec["stopped"] = True
    rec["settings"] = with_defaults(rec["settings"])
    return rec


def _without_status(epoch):
    """An epoch's record as a run keeps it: its number, time and figures, without the flag
    Stop leaves on an interrupted epoch (the run's status, "stopped")."""
    return {k: v for k, v in epoch.items() if k != "interrupted"}


def weights_of(record):
    """The weights a record kept ({name: array}), or None when it kept none."""
    path = os.path.join(record["path"], WEIGHTS_FILE) if record.get("path") else None
    if not path or not os.path.isfile(path):
        return record.get("weights")  # a record not written yet (an untitled project's)
    return load_weights(path)


def delete(record):
    """Remove a written record's folder (its run.json and weights)."""
    records = os.path.dirname(os.path.realpath(record["path"]))
    if os.path.basename(records) != RECORDS:  # only ever a folder inside records/
        raise ValueError(f"{record['path']} is not a run record's folder")
    shutil.rmtree(os.path.realpath(record["path"]))


def curve(record, key):
    """(epochs, values) of one logged quantity ("loss", "val_accuracy", ...) over a run."""
    xs, ys = [], []
    for e in record["epochs"]:
        if key in e and "epoch" in e:
            xs.append(e["epoch"])
            ys.append(e[key])
    return xs, ys


def quantities(records):
    """The logged quantities the records share some of, training ones first."""
    keys = []
    for r in records:
        for e in r["epochs"]:
            for k in e:
                if k not in NOT_FIGURES and k not in keys:
                    keys.append(k)
    return sorted(keys, key=lambda k: (k.startswith("val_"), k != "loss", k))
