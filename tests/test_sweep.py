"""Sweeps (issue 31, item 8): the spec's every form and its refusals (engine/project/sweeps.py),
and `layerloom --sweep` on the spirals example: each trial a recorded run, the ranking in the
order of the recorded metrics, a rerun that skips the finished trials, a stopped sweep that
goes on where it stopped."""
import json
import math
import os
import signal
import subprocess
import sys

import pytest

from layerloom.project import loom, runs, sweeps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


@pytest.fixture(scope="module")
def spirals():
    return loom.load(os.path.join(EXAMPLES, "spirals.loom"))


def spec(d, project):
    return sweeps.check(d, project)


# -- the spec --------------------------------------------------------------------------------
def test_a_list_makes_one_trial_a_value(spirals):
    s = spec({"parameters": {"learning_rate": [0.001, 0.01, 0.1]}}, spirals)
    assert s.points() == [{"learning_rate": v} for v in (0.001, 0.01, 0.1)]
    assert (s.name, s.metric, s.goal, s.trials) == ("learning_rate", "val_loss", "min", None)


def test_ranges_log_ranges_and_their_grid(spirals):
    s = spec({"parameters": {
        "learning_rate": {"log_range": [1e-4, 1e-1], "count": 4},
        "hidden_1.units": {"range": [16, 64], "step": 16},
        "batch_size": {"range": [16, 64], "count": 3}}, "metric": "val_accuracy"}, spirals)
    lr = [1e-4, 1e-3, 1e-2, 1e-1]
    assert s.parameters["learning_rate"].points == pytest.approx(lr, rel=1e-9)
    assert s.parameters["hidden_1.units"].points == [16, 32, 48, 64]
    assert s.parameters["batch_size"].points == [16, 40, 64]
    points = s.points()
    assert len(points) == 4 * 4 * 3 and s.goal == "max"
    assert points[0] == {"learning_rate": 1e-4, "hidden_1.units": 16, "batch_size": 16}
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 48


def test_random_trials_are_seeded_and_inside_their_ranges(spirals):
    d = {"trials": 20, "seed": 5, "parameters": {
        "learning_rate": {"log_range": [1e-4, 1e-1]}, "hidden_2.units": {"range": [8, 64]},
        "optimizer": ["adam", "sgd"]}}
    a, b = spec(d, spirals).points(), spec(d, spirals).points()
    assert a == b and len(a) == 20
    assert a != spec(dict(d, seed=6), spirals).points()
    for p in a:
        assert 1e-4 <= p["learning_rate"] <= 1e-1
        assert isinstance(p["hidden_2.units"], int) and 8 <= p["hidden_2.units"] <= 64
        assert p["optimizer"] in ("adam", "sgd")
    # log-uniform: about as many draws below 1e-2.5 as above it
    logs = [math.log10(p["learning_rate"]) for p in a]
    assert 4 <= sum(v < -2.5 for v in logs) <= 16


def test_the_short_text_form_reads_as_the_json_form(spirals):
    s = sweeps.read("learning_rate=logrange(1e-3, 1e-1, 3); hidden_1.units=16,32\n"
                    "metric=val_accuracy; goal=max; name=short", spirals)
    assert s.name == "short" and s.metric == "val_accuracy" and s.goal == "max"
    assert s.parameters["learning_rate"].points == pytest.approx([1e-3, 1e-2, 1e-1])
    assert s.parameters["hidden_1.units"].points == [16, 32]
    assert len(s.points()) == 6
    r = sweeps.read("class.units=range(2,4,step=1); trials=2; seed=3", spirals)
    assert r.trials == 2 and r.parameters["class.units"].points == [2, 3, 4]
    assert sweeps.read('{"parameters": {"optimizer": ["sgd"]}}', spirals).points() == \
        [{"optimizer": "sgd"}]


@pytest.mark.parametrize("d, place, words", [
    ({}, "parameters", "at least one parameter"),
    ({"parameters": {"lr": [1]}}, "parameters.lr", "unknown parameter"),
    ({"parameters": {"hidden_9.units": [1]}}, "parameters.hidden_9.units", "no node named"),
    ({"parameters": {"hidden_1.unit": [1]}}, "parameters.hidden_1.unit", "it has: units"),
    ({"parameters": {"hidden_1.units": [0, 8]}}, "parameters.hidden_1.units[0]",
     "positive integer"),
    ({"parameters": {"learning_rate": []}}, "parameters.learning_rate", "at least one"),
    ({"parameters": {"learning_rate": {"range": [0.1, 0.01], "count": 3}}},
     "parameters.learning_rate.range", "low < high"),
    ({"parameters": {"learning_rate": {"log_range": [0, 1], "count": 3}}},
     "parameters.learning_rate.log_range", "number > 0"),
    ({"parameters": {"learning_rate": {"range": [0.1, 1]}}}, "parameters.learning_rate",
     "add \"count\""),
    ({"parameters": {"learning_rate": {"range": [0.1, 1], "count": 2, "step": 1}}},
     "parameters.learning_rate", "not both"),
    ({"parameters": {"learning_rate": {"range": [0.1, 1], "cnt": 2}}},
     "parameters.learning_rate", "unknown key 'cnt'"),
    ({"parameters": {"optimizer": {"range": [1, 2], "count": 2}}}, "parameters.optimizer",
     "numeric parameter"),
    ({"parameters": {"optimizer": ["adam", "adamm"]}}, "parameters.optimizer[1]",
     "expected one of"),
    ({"parameters": {"batch_size": {"range": [1, 100000], "step": 1}}},
     "parameters.batch_size.step", "at most 1000"),
    ({"parameters": {"learning_rate": [0.1]}, "trials": 0}, "trials", "random trials"),
    ({"parameters": {"learning_rate": [0.1]}, "seed": -1}, "seed", "0 to 2^32-1"),
    ({"parameters": {"learning_rate": [0.1]}, "metric": "my metric"}, "metric",
     "logged figure"),
    ({"parameters": {"learning_rate": [0.1]}, "metric": "val_foo"}, "goal", "\"min\" or"),
    ({"parameters": {"learning_rate": [0.1]}, "name": "../x"}, "name", "letters, digits"),
    ({"parameters": {"learning_rate": [0.1]}, "epochs": 3}, "epochs", "unknown key"),
    ({"parameters": {f"hidden_{i}.units": {"range": [1, 11], "count": 11}
                     for i in (1, 2, 3)}}, "parameters", "1,331 combinations"),
])
def test_bad_specs_are_refused_with_the_place(spirals, d, place, words):
    with pytest.raises(sweeps.SpecError) as e:
        spec(d, spirals)
    lines = e.value.lines()
    assert any(line.startswith(place + ":") and words in line for line in lines), lines


@pytest.mark.parametrize("text, words", [
    ("learning_rate", "item 1: expected NAME=VALUES"),
    ("learning_rate=range(1)", "item 1: expected range(LOW, HIGH[, COUNT])"),
    ("trials=many; learning_rate=1", "item 1: expected a number"),
    ("{not json", "not JSON"),
    ('{"parameters": ' + "[" * 100000 + "]" * 100000 + "}", "nested more than"),
    ('{"parameters": {"epochs": [' + "9" * 5000 + "]}}", "not a sweep spec"),
    ('{"parameters": {"hidden_1.units": ["many"]}}',
     "parameters.hidden_1.units[0]: expected a positive integer, got 'many'"),
])
def test_bad_short_forms_are_refused_with_the_item(spirals, text, words):
    with pytest.raises(sweeps.SpecError) as e:
        sweeps.read(text, spirals)
    assert words in str(e.value)


def test_a_trial_sets_its_values_in_a_copy(spirals):
    base = loom.to_dict(spirals)
    d = sweeps.apply(base, {"learning_rate": 0.02, "optimizer": "sgd", "batch_size": 8,
                            "hidden_1.units": 5, "epochs": 3})
    t = d["training"]
    assert t["optimizer"]["name"] == "sgd" and t["optimizer"]["params"]["learning_rate"] == 0.02
    assert "beta_1" in base["training"]["optimizer"]["params"]
    assert "beta_1" not in t["optimizer"]["params"]  # adam's own parameters left behind
    assert (t["batch_size"], t["epochs"]) == (8, 3)
    assert [n["params"]["units"] for n in d["graph"]["nodes"] if n["id"] == "hidden_1"] == [5]
    assert base["training"]["optimizer"]["name"] == "adam"  # the base is left alone
    p = loom.from_dict(d)
    assert p.graph.nodes["hidden_1"].params["units"] == 5
    # a schedule's initial rate is the one a learning_rate sweep sets
    base["training"]["optimizer"]["params"]["learning_rate"] = {
        "schedule": "cosine_decay", "initial_learning_rate": 0.002, "decay_steps": 100}
    lr = sweeps.apply(base, {"learning_rate": 0.5})["training"]["optimizer"]["params"]
    assert lr["learning_rate"] == {"schedule": "cosine_decay", "initial_learning_rate": 0.5,
                                   "decay_steps": 100}


def test_ranking_uses_the_kept_epoch_and_puts_missing_values_last():
    def rec(vals, es=None):
        r = {"epochs": [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(vals)],
             "test": {"loss": vals[-1] * 2}}
        if es:
            r["early_stopping"] = es
        return r
    a = rec([0.5, 0.3])
    b = rec([0.2, 0.4], {"stopped_epoch": 2, "best_epoch": 1, "restored": True})
    c = rec([0.1, 0.35], {"stopped_epoch": 2, "best_epoch": 1, "restored": False})
    assert sweeps.value_of(b, "val_loss") == 0.2 and sweeps.value_of(c, "val_loss") == 0.35
    assert sweeps.value_of(a, "test_loss") == 0.6 and sweeps.value_of(a, "val_acc") is None
    items = [(sweeps.value_of(r, "val_loss"), n) for n, r in enumerate((a, b, c))]
    items.append((float("nan"), 3))
    assert [n for _, n in sweeps.ranked(items, "min")] == [1, 0, 2, 3]
    assert [n for _, n in sweeps.ranked(items, "max")] == [2, 0, 1, 3]
    assert "early-stopped at epoch 2 (best 1, restored)" == sweeps.early_stop_note(b)


# -- layerloom --sweep -----------------------------------------------------------------------
def layerloom(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "layerloom.cli", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


SPEC = {"name": "lr3", "metric": "val_accuracy",
        "parameters": {"learning_rate": [0.001, 0.03, 0.3]}}


def test_a_sweep_of_three_trials_ranks_by_the_recorded_metric_and_resumes(tmp_path):
    spec_file = tmp_path / "lr3.json"
    spec_file.write_text(json.dumps(SPEC))
    out = tmp_path / "out"
    project = os.path.join(EXAMPLES, "spirals.loom")
    r = layerloom("--sweep", project, str(spec_file), "--epochs", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    recs = [x for x in runs.load(str(out)).records if x.get("sweep", {}).get("name") == "lr3"]
    assert sorted(x["sweep"]["trial"] for x in recs) == [1, 2, 3]
    for x in recs:  # each a normal run: two epochs, its learning rate, its weights
        assert len(x["epochs"]) == 2 and x["source"] == "command line"
        lr = SPEC["parameters"]["learning_rate"][x["sweep"]["trial"] - 1]
        assert x["settings"]["Learning rate"] == lr == x["sweep"]["values"]["learning_rate"]
        assert runs.weights_of(x)
    # the last ranking printed: trials in the order of their recorded val_accuracy
    table = r.stdout[r.stdout.rindex("Ranking by val_accuracy"):].splitlines()[2:5]
    order = [int(line.split()[1]) for line in table]
    by_metric = sorted(recs, key=lambda x: -x["final"]["val_accuracy"])
    assert [x["final"]["val_accuracy"] for x in by_metric] == sorted(
        (x["final"]["val_accuracy"] for x in recs), reverse=True)
    assert [x["sweep"]["trial"] for x in by_metric] == order or len(
        {x["final"]["val_accuracy"] for x in recs}) < 3  # a tie may order either way
    for line, x in zip(table, by_metric):
        assert f"{x['final']['val_accuracy']:.4f}" in line
    assert f"Best: trial {order[0]} (learning_rate=" in r.stdout
    state = json.loads((out / "sweeps" / "lr3" / "sweep.json").read_text())
    assert [t["status"] for t in state["trials"]] == ["done"] * 3
    # a rerun skips the finished trials: no training, no new record, the same ranking
    again = layerloom("--sweep", project, str(spec_file), "--epochs", "2", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "3 of 3 trials already finished, skipped" in again.stdout
    assert "Epoch 1/2" not in again.stdout
    assert len(runs.load(str(out)).records) == 3
    assert again.stdout[again.stdout.rindex("Ranking"):].splitlines()[2:5] == table
    # the same name with another spec is refused, the state left alone
    other = layerloom("--sweep", project, str(spec_file), "--epochs", "3", "--out", str(out))
    assert other.returncode == 2 and "holds another sweep named 'lr3'" in other.stderr
    assert json.loads((out / "sweeps" / "lr3" / "sweep.json").read_text()) == state


def test_an_interrupted_sweep_goes_on_where_it_stopped(tmp_path):
    """Ctrl-C in trial 1 of 2: the trial stops after its batch, recorded as stopped; the rerun
    continues trial 1 from its training state (not from epoch 1) and then runs trial 2."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "layerloom.cli", "--sweep",
            os.path.join(EXAMPLES, "spirals.loom"),
            "learning_rate=0.01,0.02; name=stop", "--epochs", "300", "--out", str(out)]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.split()[:2] == ["Epoch", "2/300"]:
            break
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    assert "Sweep interrupted" in stdout and "Traceback" not in stderr
    state = json.loads((out / "sweeps" / "stop" / "sweep.json").read_text())
    assert [t["status"] for t in state["trials"]] == ["stopped", "pending"]
    stopped_at = len(runs.load(str(out)).records[0]["epochs"])
    assert 2 <= stopped_at < 300
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Trial 1 of 2: learning_rate=0.01 (continuing where it stopped)" in r.stdout
    first = r.stdout.split("=== Trial 2")[0]
    assert "Resuming after epoch" in first and "Epoch   1/300" not in first
    assert sum(line.startswith("Epoch ") for line in first.splitlines()) <= 300 - stopped_at + 1
    state = json.loads((out / "sweeps" / "stop" / "sweep.json").read_text())
    assert [t["status"] for t in state["trials"]] == ["done", "done"]
    assert len(state["trials"][0]["runs"]) == 2  # its stopped run and the finished one


def test_bad_specs_from_the_command_line_exit_2_with_one_line_each(tmp_path):
    project = os.path.join(EXAMPLES, "spirals.loom")
    bad = tmp_path / "bad.json"
    bad.write_text('{"parameters": {"hidden_1.units": [0, 8]}, "trials": 0}')
    r = layerloom("--sweep", project, str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"layerloom: error: {bad}: trials: expected the number of random trials, 1 to 1000, "
        "got 0",
        f"layerloom: error: {bad}: parameters.hidden_1.units[0]: expected a positive integer, "
        "got 0"]
    r = layerloom("--sweep", project, "missing.json")
    assert r.returncode == 2 and "no such file: missing.json" in r.stderr
    r = layerloom("--sweep", project, "hidden_1.units=100000000000")
    assert r.returncode == 2 and "the sweep spec: parameters.hidden_1.units[0]" in r.stderr
    assert not (tmp_path / "o").exists()
    # a metric the runs do not log: said after the first trial, with the figures they log
    r = layerloom("--sweep", project, "learning_rate=0.01,0.02; metric=val_foo; goal=min",
                  "--epochs", "1", "--out", str(tmp_path / "m"))
    assert r.returncode == 2 and r.stderr.splitlines() == [
        "layerloom: error: the sweep spec: metric: the runs logged no 'val_foo'; the metric is "
        "one of: loss, accuracy, val_loss, val_accuracy, test_loss, test_accuracy"]
    assert "Trial 2 of 2" not in r.stdout


def test_early_stopped_trials_are_marked_and_rank_by_their_kept_epoch(tmp_path):
    """Early stopping with min_delta 10 (nothing improves that much) stops every trial at
    epoch 2 and restores epoch 1's weights: the record keeps it, the ranking marks it and
    ranks by epoch 1's figure."""
    with open(os.path.join(EXAMPLES, "spirals.loom")) as f:
        d = json.load(f)
    d["training"]["callbacks"] = [{"name": "early_stopping", "monitor": "val_loss",
                                   "min_delta": 10.0, "patience": 1,
                                   "restore_best_weights": True}]
    d["dataset"]["params"]["samples"] = 400
    project = tmp_path / "es.loom"
    project.write_text(json.dumps(d))
    out = tmp_path / "out"
    r = layerloom("--sweep", str(project), "learning_rate=0.01,0.001; name=es", "--out",
                  str(out))
    assert r.returncode == 0, r.stderr
    recs = runs.load(str(out)).records
    assert [x["early_stopping"] for x in recs] == [
        {"stopped_epoch": 2, "best_epoch": 1, "best": x["epochs"][0]["val_loss"],
         "restored": True} for x in recs]
    table = r.stdout[r.stdout.rindex("Ranking by val_loss"):].splitlines()[2:4]
    assert all(line.endswith("early-stopped at epoch 2 (best 1, restored)") for line in table)
    kept = sorted((x["epochs"][0]["val_loss"], x["sweep"]["trial"]) for x in recs)
    assert [int(line.split()[1]) for line in table] == [t for _, t in kept]
    for line, (v, _) in zip(table, kept):
        assert f"{v:.4f}" in line


def test_a_failed_trial_is_marked_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "out"
    r = layerloom("--sweep", os.path.join(EXAMPLES, "spirals.loom"),
                  "learning_rate=1e9,0.01; name=nan", "--epochs", "2", "--out", str(out))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    table = r.stdout[r.stdout.rindex("Ranking by val_loss"):].splitlines()[2:4]
    assert table[0].split()[:3] == ["1", "2", "0.01"]
    assert table[1].split()[:3] == ["-", "1", "1e+09"] and "failed: the loss became nan" in \
        table[1]
    state = json.loads((out / "sweeps" / "nan" / "sweep.json").read_text())
    assert [t["status"] for t in state["trials"]] == ["failed", "done"]


def test_a_trial_killed_before_its_outputs_trains_again(tmp_path):
    """A kill (SIGKILL, a crash) mid-trial leaves the state saying "running" and no outputs in
    the trial's folder: the rerun trains that trial from the start, the finished one skipped."""
    import shutil
    out = tmp_path / "out"
    args = ("--sweep", os.path.join(EXAMPLES, "spirals.loom"), "learning_rate=0.01,0.02",
            "--epochs", "1", "--out", str(out))
    assert layerloom(*args).returncode == 0
    here = out / "sweeps" / "learning_rate"
    state = json.loads((here / "sweep.json").read_text())
    state["trials"][1]["status"] = "running"
    del state["trials"][1]["runs"]
    (here / "sweep.json").write_text(json.dumps(state))
    shutil.rmtree(here / "trial-002")
    r = layerloom(*args)
    assert r.returncode == 0, r.stderr
    assert "1 of 2 trials already finished" in r.stdout
    assert "Trial 2 of 2: learning_rate=0.02\n" in r.stdout and "Trial 1 of 2" not in r.stdout
    assert "Resuming after" not in r.stdout
    state = json.loads((here / "sweep.json").read_text())
    assert [t["status"] for t in state["trials"]] == ["done", "done"]


def test_a_sweep_of_a_project_changed_since_is_not_resumed(tmp_path):
    """The state was matched by the project's path, spec and overrides only: after an edit of
    the graph, the same sweep said "Resuming" and skipped every finished trial, so its ranking
    and Restore Best came from the old model. Now an edit of the graph, data or training is
    refused as another sweep; moving nodes on the canvas is not an edit of the model."""
    project = tmp_path / "spirals.loom"
    d = json.loads(open(os.path.join(EXAMPLES, "spirals.loom"), encoding="utf-8").read())
    project.write_text(json.dumps(d))
    spec_file = tmp_path / "one.json"
    spec_file.write_text(json.dumps({"name": "one", "parameters": {"learning_rate": [0.01]}}))
    out = tmp_path / "out"
    r = layerloom("--sweep", str(project), str(spec_file), "--epochs", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    d.setdefault("ui", {})["moved"] = True  # what is not the model: still this sweep
    project.write_text(json.dumps(d))
    again = layerloom("--sweep", str(project), str(spec_file), "--epochs", "1", "--out", str(out))
    assert again.returncode == 0 and "1 of 1 trials already finished" in again.stdout
    d["graph"]["nodes"][1]["params"]["units"] = 8
    project.write_text(json.dumps(d))
    state = (out / "sweeps" / "one" / "sweep.json").read_text()
    edited = layerloom("--sweep", str(project), str(spec_file), "--epochs", "1", "--out", str(out))
    assert edited.returncode == 2 and "the project changed since" in edited.stderr, edited.stdout
    assert "Traceback" not in edited.stderr
    assert (out / "sweeps" / "one" / "sweep.json").read_text() == state


def test_the_default_metric_is_the_validation_loss_where_the_dataset_holds_one_out(spirals):
    """A validation split of the dataset (dataset.split.validation, as a fine-tuning project's
    image folder has) ranked trials by their training loss, which favours overfitting."""
    p = loom.from_dict(loom.to_dict(spirals), spirals.path)
    p.training.pop("validation_split", None)
    assert spec({"parameters": {"learning_rate": [0.1]}}, p).metric == "loss"
    p.dataset = {**p.dataset, "split": {"validation": 0.1}}
    assert spec({"parameters": {"learning_rate": [0.1]}}, p).metric == "val_loss"
