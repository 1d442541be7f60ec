"""Run records (engine/project/runs.py): written whole in the output folder, read back as
untrusted input, and `layerloom --run` records each run."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from layerloom.project import loom as projectfile, runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


def history(n=3, stopped=False):
    return {"epochs": [{"epoch": i, "seconds": 0.5, "loss": 1.0 / i, "val_loss": 1.2 / i,
                        "accuracy": 0.5 + 0.1 * i} for i in range(1, n + 1)],
            "test": {"loss": 0.4, "accuracy": 0.8}, "stopped": stopped}


def spirals_dict():
    return projectfile.to_dict(projectfile.load(os.path.join(EXAMPLES, "spirals.loom")))


def test_a_record_is_written_whole_and_read_back(tmp_path):
    w = {"dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}
    rec = runs.make_record(spirals_dict(), history(), "editor", "cpu X", 4610, started=1e9,
                           epochs=3, batch_size=16)
    rid = runs.save(tmp_path, rec, w)
    rid2 = runs.save(tmp_path, rec, w)  # the same second: another id, nothing overwritten
    assert rid != rid2 and rid2.startswith(rid)
    listing = runs.load(tmp_path)
    assert [r["id"] for r in listing.records] == [rid, rid2] and listing.problems == []
    r = listing.records[0]
    assert r["final"] == pytest.approx({"loss": 1 / 3, "val_loss": 0.4, "accuracy": 0.8})
    assert r["settings"]["Epochs"] == 3 and r["settings"]["Batch size"] == 16
    assert r["settings"]["Optimizer"] == "adam" and r["settings"]["Learning rate"] == 0.005
    assert r["settings"]["Loss"] == "sparse_categorical_crossentropy"
    assert r["settings"]["Parameters"] == 4610 and r["settings"]["Device"] == "cpu X"
    assert r["project"]["training"]["epochs"] == 3  # what restoring the run restores
    assert r["seconds"] == 1.5 and runs.curve(r, "val_loss") == ([1, 2, 3], [1.2, 0.6, 1.2 / 3])
    np.testing.assert_array_equal(runs.weights_of(r)["dense/kernel"], w["dense/kernel"])
    assert sorted(os.listdir(tmp_path / "records" / rid)) == ["run.json", "weights.npz"]
    assert runs.quantities(listing.records) == ["loss", "accuracy", "val_loss"]


def test_the_record_keeps_the_project_as_it_ran(tmp_path):
    d = spirals_dict()
    rec = runs.make_record(d, history(), "editor", "", 1)
    d["training"]["optimizer"]["params"]["learning_rate"] = 1.0  # an edit after the run
    assert rec["project"]["training"]["optimizer"]["params"]["learning_rate"] == 0.005


def test_settings_of_a_two_output_project():
    d = projectfile.to_dict(projectfile.load(os.path.join(EXAMPLES, "multitask.loom")))
    s = runs.settings_of(d)
    assert s["Loss"] == ("inside: sparse_categorical_crossentropy x1, "
                         "value: mean_squared_error x0.5")
    assert s["Metrics"] == "inside: accuracy; value: mae"
    assert s["  beta_1"] == 0.9 and s["Data"] == "multitask"


@pytest.mark.parametrize("content, why", [
    (b"{not json", "not read"),
    (b'{"format": "something-else"}', "not a Layerloom run record"),
    (b'{"format": "layerloom-run", "version": 99}', "newer Layerloom"),
    (b'{"format": "layerloom-run", "version": 1, "started": "x", "settings": {}, '
     b'"epochs": "many", "final": {}, "test": {}, "project": {}}', "'epochs' is missing or not"),
    (b'{"format": "layerloom-run", "version": 1, "started": "x", "settings": {}, '
     b'"epochs": [{"loss": "high"}], "final": {}, "test": {}, "project": {}}', "not lists of"),
])
def test_a_damaged_record_is_skipped_and_named(tmp_path, content, why):
    good = runs.save(tmp_path, runs.make_record(spirals_dict(), history(), "editor", "", 1),
                     None)
    bad = tmp_path / "records" / "bad"
    bad.mkdir()
    (bad / "run.json").write_bytes(content)
    listing = runs.load(tmp_path)
    assert [r["id"] for r in listing.records] == [good]
    assert len(listing.problems) == 1 and why in listing.problems[0], listing.problems


def test_no_folder_is_no_runs(tmp_path):
    listing = runs.load(tmp_path / "missing")
    assert listing.records == [] and listing.problems == []


def test_delete_removes_only_a_record_folder(tmp_path):
    rid = runs.save(tmp_path, runs.make_record(spirals_dict(), history(), "editor", "", 1), None)
    rec = runs.load(tmp_path).records[0]
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(ValueError):
        runs.delete({"path": str(tmp_path)})  # not a folder inside records/
    runs.delete(rec)
    assert not (tmp_path / "records" / rid).exists() and (tmp_path / "keep.txt").exists()


def test_folder_for_is_runs_beside_the_project(tmp_path):
    assert runs.folder_for(str(tmp_path / "a" / "net.loom")) == str(tmp_path / "a" / "runs" / "net")


def test_layerloom_run_records_the_run(tmp_path):
    shutil.copy(os.path.join(EXAMPLES, "sine.loom"), tmp_path / "sine.loom")
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", "sine.loom", "--epochs",
                        "2", "--seed", "5"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("Recorded as run ")
    listing = runs.load(runs.folder_for(str(tmp_path / "sine.loom")))
    (rec,) = listing.records
    with open(tmp_path / "runs" / "sine" / "history.json") as f:
        h = json.load(f)
    assert rec["source"] == "command line" and rec["epochs"] == h["epochs"]
    assert rec["test"] == h["test"] and rec["settings"]["Seed"] == 5
    assert rec["settings"]["Epochs"] == 2 and rec["project"]["training"]["seed"] == 5
    w = runs.weights_of(rec)
    with np.load(tmp_path / "runs" / "sine" / "weights.npz") as z:
        assert set(z.files) == set(w) and all(np.array_equal(z[k], w[k]) for k in z.files)


def new_project_dict(**optimizer_params):
    """A spirals project as a new document has it: the optimizer's parameters left at their
    defaults (an empty params object), or those given."""
    d = spirals_dict()
    d["training"]["optimizer"] = {"name": "adam", "params": dict(optimizer_params)}
    return d


def test_a_default_optimizer_is_recorded_with_its_values():
    """A first run with the optimizer untouched recorded an empty learning rate and none of
    Adam's other settings, so a later run with the same values set differed in 8 rows."""
    s = runs.settings_of(new_project_dict())
    assert s["Learning rate"] == 0.001 and s["  beta_1"] == 0.9 and s["  epsilon"] == 1e-7
    explicit = runs.settings_of(new_project_dict(
        learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, weight_decay=0,
        clipvalue=0.0, clipnorm=0.0, global_clipnorm=0.0))
    assert list(s) == list(explicit)
    assert [k for k in s if runs.differs([s[k], explicit[k]])] == []


def test_settings_differ_by_value_not_by_spelling():
    assert not runs.differs([0, 0.0]) and not runs.differs([1e-7, 1e-07])
    assert not runs.differs([0.001, 0.001]) and not runs.differs(["adam", "adam"])
    assert runs.differs([0.001, 0.002]) and runs.differs([True, 1]) and runs.differs(["", 0])
    assert runs.differs([0.9, None])


def test_an_old_record_with_empty_settings_reads_with_the_defaults(tmp_path):
    """Records written before the fix hold "" for the learning rate and no beta_1...: read
    back, they carry the values the run used."""
    rec = runs.make_record(new_project_dict(), history(), "editor", "", 1)
    s = rec["settings"]
    old = {k: v for k, v in s.items() if not k.startswith("  ")}
    old["Learning rate"] = ""
    rec["settings"] = old
    runs.save(tmp_path, rec, None)
    (back,) = runs.load(tmp_path).records
    assert back["settings"] == s and list(back["settings"]) == list(s)


def stopped_history():
    h = history(2, stopped=True)
    h["epochs"][-1]["interrupted"] = True
    h.pop("test")
    return h


def test_interrupted_is_the_runs_status_not_a_figure(tmp_path):
    rec = runs.make_record(spirals_dict(), stopped_history(), "editor", "", 1)
    assert rec["stopped"] is True
    assert "interrupted" not in rec["final"] and all("interrupted" not in e for e in rec["epochs"])
    # a record written before the fix: its flag is read as the status it is
    old = runs.make_record(spirals_dict(), stopped_history(), "editor", "", 1)
    old["epochs"][-1]["interrupted"] = True
    old["final"]["interrupted"] = True
    runs.save(tmp_path, old, None)
    (back,) = runs.load(tmp_path).records
    assert back["stopped"] and "interrupted" not in back["final"]
    assert runs.quantities([back]) == ["loss", "accuracy", "val_loss"]


def test_the_console_line_of_a_stopped_epoch_says_so():
    import io
    from layerloom.train.progress import ConsoleProgress, metrics_text
    logs = {"epoch": 2, "seconds": 0.5, "loss": 0.25, "interrupted": True}
    assert metrics_text(logs) == "loss 0.2500"
    out = io.StringIO()
    ConsoleProgress(5, out).on_epoch_end(2, logs)
    line = out.getvalue()
    assert "interrupted 1" not in line and "True" not in line and "stopped" in line, line
