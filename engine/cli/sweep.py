"""`layerloom --sweep PROJECT SPEC`: the trials of a spec (engine/project/sweeps.py) trained
one after another, each as `layerloom --run` trains (run.py) and recorded among the output
folder's runs with the trial's values, a ranking by the spec's metric printed after each
trial. The sweep's state (DIR/sweeps/NAME/sweep.json, written atomically after every change)
lets a rerun of the same command skip the finished trials and continue a stopped one where it
stopped. Nothing here imports Qt."""
import argparse
import hashlib
import json
import os
import re
import sys
import time

from layerloom.core.errors import DataError, LayerloomError, ProjectError, quote
from layerloom.core.fileio import atomic_write_text
from layerloom.project import loom as projectfile, runs, sweeps
from layerloom.train.state import FILENAME as TRAINING_STATE

from .run import run

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
STATE = "sweep.json"
DONE, STOPPED, FAILED, PENDING, RUNNING = "done", "stopped", "failed", "pending", "running"


def read_spec(spec_arg, proj):
    """The Spec that SPEC (a file, or inline JSON or short text) gives; SpecError if bad, its
    places prefixed with the file's name."""
    if os.path.isfile(spec_arg):
        try:
            with open(spec_arg, encoding="utf-8") as f:
                text = f.read(1 << 20)
        except (OSError, UnicodeDecodeError) as e:
            raise sweeps.SpecError(f"could not read {spec_arg}: {getattr(e, 'strerror', e)}") \
                from None
        default = re.sub(r"[^A-Za-z0-9_.=+-]", "_",
                         os.path.splitext(os.path.basename(spec_arg))[0]).lstrip("_.=+-")
    elif spec_arg.strip().endswith((".json", ".txt")):
        raise sweeps.SpecError(f"no such file: {spec_arg}")
    else:
        text, default = spec_arg, None
    spec = sweeps.read(text, proj, default)
    return spec


def sweep(args, out=None):
    out = sys.stdout if out is None else out  # sys.stdout at the call, not at import
    path, spec_arg = args.sweep
    proj = projectfile.load(path)
    where = spec_arg if os.path.isfile(spec_arg) else "the sweep spec"
    try:
        spec = read_spec(spec_arg, proj)
    except sweeps.SpecError as e:
        return _refused(where, e)
    folder = args.out or os.path.join("runs", os.path.splitext(os.path.basename(path))[0])
    here = os.path.join(folder, "sweeps", spec.name)
    base = projectfile.to_dict(proj)
    overrides = {k: getattr(args, k) for k in ("epochs", "batch_size", "seed")
                 if getattr(args, k) is not None}
    base["training"] = {**base.get("training", {}), **overrides}
    try:
        trials = _trial_projects(spec, base, proj)
    except sweeps.SpecError as e:
        return _refused(where, e)
    state = _load_state(here, path, spec, overrides, trials, _model_hash(base))
    out.write(f"Sweep {spec.name}: {len(trials)} trials of {path}, ranked by {spec.metric} "
              f"({'lower' if spec.goal == 'min' else 'higher'} is better); state in "
              f"{os.path.join(here, STATE)}\n")
    finished = sum(t["status"] in (DONE, FAILED) for t in state["trials"])
    if finished:
        out.write(f"Resuming: {finished} of {len(trials)} trials already finished, skipped\n")
    out.flush()
    todo = [(e, t) for e, t in zip(state["trials"], trials) if e["status"] not in (DONE, FAILED)]
    try:
        if not todo:
            print_ranking(spec, state, folder, out)
        for entry, (values, trial_proj) in todo:
            code = _run_trial(args, spec, folder, here, state, entry, values, trial_proj, out)
            print_ranking(spec, state, folder, out)
            if code not in (EXIT_OK, EXIT_FAILED):
                out.write(f"Sweep interrupted: run the same command again to continue it "
                          f"(trial {entry['trial']} goes on from where it stopped).\n")
                return code
    except sweeps.SpecError as e:  # a metric the runs do not log, known after the first
        return _refused(where, e)
    failed = [t for t in state["trials"] if t["status"] == FAILED]
    best = _ranking(spec, state, folder)
    if best and best[0][0] is not None:
        rec = best[0][1]
        out.write(f"Best: trial {rec['sweep']['trial']} ({sweeps.describe(rec['sweep']['values'])}"
                  f"): {spec.metric} {best[0][0]:.4f}, run {rec['id']} (Restore in the editor's "
                  "Runs tab)\n")
    if failed:
        out.write(f"{len(failed)} trial(s) failed: "
                  + "; ".join(f"trial {t['trial']}: {t['error']}" for t in failed) + "\n")
        return EXIT_FAILED
    return EXIT_OK


def _refused(where, e, limit=20):
    """A spec's problems, one line each (at most `limit`), and exit code 2."""
    lines = e.lines()
    for line in lines[:limit]:
        sys.stderr.write(f"layerloom: error: {where}: {line}\n")
    if len(lines) > limit:
        sys.stderr.write(f"layerloom: error: {where}: ... and {len(lines) - limit} more\n")
    return EXIT_INVALID


def _trial_projects(spec, base, proj):
    """[(values, Project)] of every trial, each checked as --run checks a project, before any
    runs: a value that breaks the graph (units 0, a kernel larger than its input) is said
    with its trial."""
    trials, problems = [], []
    for n, values in enumerate(spec.points(), 1):
        try:
            trials.append((values, projectfile.from_dict(sweeps.apply(base, values), proj.path)))
        except ProjectError as e:
            problems += [f"trial {n} ({sweeps.describe(values)}): {line}" for line in e.lines()]
    if problems:
        raise sweeps.SpecError(problems[0], problems=[LayerloomError(p) for p in problems])
    return trials


def _model_hash(base):
    """What a sweep's finished trials depend on: the graph, the data and the training setup
    (not the canvas' layout, nor statistics fitted by an earlier training)."""
    dataset = {k: v for k, v in (base.get("dataset") or {}).items() if k != "fitted"}
    text = json.dumps([base.get("graph"), dataset, base.get("training")], sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _load_state(here, path, spec, overrides, trials, model):
    """The sweep's state: the one on disk when it is this sweep's (same project, spec,
    overrides and model), a new one when there is none; another sweep's is refused, as is
    this one's when the project changed since its trials ran."""
    key = {"project": os.path.abspath(path), "spec": spec.source, "overrides": overrides}
    state_path = os.path.join(here, STATE)
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
    except FileNotFoundError:
        state = None
    except (OSError, ValueError) as e:
        raise LayerloomError(f"{state_path}: the sweep's state was not read ({e}); delete it "
                             "to start the sweep again") from None
    if state is not None:
        if not isinstance(state, dict) or state.get("format") != sweeps.FORMAT:
            raise LayerloomError(f"{state_path} is not a Layerloom sweep's state")
        if {k: state.get(k) for k in key} != key:
            raise LayerloomError(
                f"{state_path} holds another sweep named {quote(spec.name)} (its project, spec "
                "or --epochs/--batch-size/--seed differ); give this one another \"name\" or "
                "--out, or delete that folder to start again")
        if state.get("model") != model:
            raise LayerloomError(
                f"{state_path}: the project changed since this sweep's trials ran (its graph, "
                "data or training setup); give the sweep another \"name\" or --out, or delete "
                "that folder to run it again")
        for t in state["trials"]:
            if t["status"] == RUNNING:  # killed mid-trial: its outputs, if any, are whole
                t["status"] = STOPPED
        return state
    return {"format": sweeps.FORMAT, "version": sweeps.VERSION, **key, "model": model,
            "trials": [{"trial": n, "values": values, "status": PENDING}
                       for n, (values, _) in enumerate(trials, 1)]}


def _save_state(here, state):
    try:
        os.makedirs(here, exist_ok=True)
        atomic_write_text(os.path.join(here, STATE), json.dumps(state, indent=1) + "\n")
    except OSError as e:
        raise LayerloomError(f"could not write the sweep's state {os.path.join(here, STATE)}: "
                             f"{e.strerror or e}") from None


def _run_trial(args, spec, folder, here, state, entry, values, proj, out):
    n = len(state["trials"])
    trial_dir = os.path.join(here, f"trial-{entry['trial']:03d}")
    resume = os.path.isfile(os.path.join(trial_dir, TRAINING_STATE)) and \
        entry["status"] == STOPPED
    out.write(f"\n=== Trial {entry['trial']} of {n}: {sweeps.describe(values)}"
              + (" (continuing where it stopped)" if resume else "") + "\n")
    out.flush()
    entry["status"] = RUNNING
    entry["started"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _save_state(here, state)
    trial_args = argparse.Namespace(**{**vars(args), "run": args.sweep[0], "out": trial_dir,
                                       "resume": trial_dir if resume else None,
                                       "epochs": None, "batch_size": None, "seed": None})
    into = {"folder": folder, "extra": {"sweep": {
        "name": spec.name, "trial": entry["trial"], "values": values, "metric": spec.metric,
        "goal": spec.goal, "state": os.path.abspath(os.path.join(here, STATE))}}}
    t0 = time.perf_counter()
    try:
        code = run(trial_args, out, proj=proj, record_into=into)
    except (DataError, ProjectError):
        entry["status"] = PENDING
        _save_state(here, state)
        raise  # the data or the project: every trial would fail the same way
    except Exception as e:  # noqa: BLE001 - this trial's failure; the next ones may train
        if os.environ.get("LAYERLOOM_DEBUG"):
            raise
        code = EXIT_FAILED
        entry["error"] = str(e) if isinstance(e, LayerloomError) else \
            f"{type(e).__name__}: {e}"
        out.write(f"Trial {entry['trial']} failed: {entry['error']}\n")
    entry["seconds"] = entry.get("seconds", 0.0) + time.perf_counter() - t0
    if "id" in into:
        entry["runs"] = entry.get("runs", []) + [into["id"]]
    if code == EXIT_OK:
        entry["status"] = DONE
    elif code == EXIT_FAILED:
        entry["status"] = FAILED
        entry.setdefault("error", "training stopped (see above)")
    else:
        entry["status"] = STOPPED
    _save_state(here, state)
    return code


def _records(folder, state):
    """{run id: record} of the sweep's recorded runs."""
    ids = {rid for t in state["trials"] for rid in t.get("runs", [])}
    return {r["id"]: r for r in runs.load(folder).records if r["id"] in ids}


def _ranking(spec, state, folder):
    """[(value, record)] of the trials' last runs, best first."""
    recs = _records(folder, state)
    items = []
    for t in state["trials"]:
        rec = recs.get((t.get("runs") or [None])[-1])
        if rec is not None and t["status"] == DONE:
            items.append((sweeps.value_of(rec, spec.metric), rec))
    return sweeps.ranked(items, spec.goal)


def print_ranking(spec, state, folder, out):
    ranking = _ranking(spec, state, folder)
    if ranking and all(v is None for v, _ in ranking):
        raise sweeps.SpecError(
            f"the runs logged no {quote(spec.metric)}; the metric is one of: "
            + ", ".join(sweeps.figures_of(ranking[0][1])), "metric")
    names = list(spec.parameters)
    head = ["rank", "trial"] + names + [spec.metric, "epochs run", "time", "run", "note"]
    rows = []
    for i, (value, rec) in enumerate(ranking, 1):
        t = rec["sweep"]["trial"]
        rows.append([str(i), str(t)] + [sweeps.show(rec["sweep"]["values"].get(k))
                                        for k in names]
                    + ["" if value is None else f"{value:.4f}", str(len(rec["epochs"])),
                       f"{rec['seconds']:.1f}s", rec["id"], sweeps.early_stop_note(rec)])
    for t in state["trials"]:
        if t["status"] != DONE:
            why = {FAILED: f"failed: {t.get('error', '')}", STOPPED: "stopped",
                   PENDING: "not run yet", RUNNING: "running"}[t["status"]]
            rows.append(["-", str(t["trial"])] + [sweeps.show(t["values"].get(k))
                                                  for k in names] + ["", "", "", "", why])
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(len(head))]
    out.write(f"Ranking by {spec.metric} ({'lowest' if spec.goal == 'min' else 'highest'} "
              f"first), {sum(t['status'] == DONE for t in state['trials'])} of "
              f"{len(state['trials'])} trials done:\n")
    for r in [head] + rows:
        out.write("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")
    out.flush()
