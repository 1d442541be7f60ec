"""The Runs tab (issue 19, item 17): every run recorded beside the project, listed, its curves
overlaid and settings set side by side; Restore brings back a run's weights and settings."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from layerloom.app.editing.commands import SetSetupCmd  # noqa: E402
from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.project import runs  # noqa: E402
from guikit import EXAMPLES  # noqa: E402


def train(win, qtbot, epochs=2):
    win.training.epochs.setValue(epochs)
    win.training.start_training()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=120_000)
    assert "Finished" in win.training.status.text(), win.log.toPlainText()


def set_lr(win, lr):
    t = win.doc.project.training
    opt = {**t["optimizer"], "params": {**t["optimizer"]["params"], "learning_rate": lr}}
    win.doc.push(SetSetupCmd(win.doc, "training", "optimizer", opt))


@pytest.mark.slow
def test_runs_are_recorded_compared_and_restored(win, qtbot, tmp_path):
    path = tmp_path / "sine.loom"
    shutil.copy(os.path.join(EXAMPLES, "sine.loom"), path)
    assert win.open_path(str(path))
    panel = win.runs
    assert panel.records == [] and "No runs yet" in panel.where.text()
    train(win, qtbot)
    first_weights = {k: v.copy() for k, v in win.doc.weights.items()}
    set_lr(win, 0.002)
    train(win, qtbot, epochs=3)
    folder = tmp_path / "runs" / "sine"
    listing = runs.load(str(folder))
    assert [len(r["epochs"]) for r in listing.records] == [2, 3]  # on disk, beside the project
    assert [r["source"] for r in listing.records] == ["editor", "editor"]
    assert [r["settings"]["Learning rate"] for r in listing.records] == [0.01, 0.002]
    # the table: newest first, with the final figures
    assert panel.table.rowCount() == 2
    headers = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    assert {"loss", "val_loss", "mae", "val_mae", "test loss", "test mae"} <= set(headers)
    assert panel.table.item(0, 3).text() == "3" and panel.table.item(1, 3).text() == "2"
    # both runs' curves overlaid: training and validation, one point per epoch
    panel.quantity.setCurrentText("loss")
    shown = panel.curves_shown()
    assert sorted(n for _, n in shown) == [2, 2, 3, 3]
    # one legend entry a run, naming what differs
    assert sorted(name for name, _ in shown if name) == ["#1  Learning rate 0.01  Epochs 2",
                                                          "#2  Learning rate 0.002  Epochs 3"]
    # their settings side by side: the learning rate and the epochs differ
    assert panel.differing_settings() == ["Learning rate", "Epochs"]
    assert panel.compare.rowCount() == 2  # only what differs, unless asked for all
    panel.only_diff.setChecked(False)
    assert panel.compare.rowCount() > 15 and panel.differing_settings() == [
        "Learning rate", "Epochs"]
    # restore the first run: its weights are the model, its settings the project's
    set_lr(win, 0.5)
    panel.table.selectRow(1)
    panel.restore.click()
    assert win.doc.project.training["optimizer"]["params"]["learning_rate"] == 0.01
    assert win.doc.project.training["epochs"] == 2 and win.training.epochs.value() == 2
    assert all(np.array_equal(win.doc.weights[k], first_weights[k]) for k in first_weights)
    assert "Restore Settings of Run" in win.doc.undo.undoText()
    win.doc.undo.undo()  # one step back to the settings before
    assert win.doc.project.training["optimizer"]["params"]["learning_rate"] == 0.5
    # a run of `layerloom --run` in the project's folder is listed too
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", "sine.loom", "--epochs",
                        "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    panel.reload()
    assert [rec["source"] for rec in panel.records] == ["editor", "editor", "command line"]
    # a run whose graph is not the document's any more is not restored
    win.doc.push(SetSetupCmd(win.doc, "training", "epochs", 7))
    g = win.doc.graph
    node = next(n for n in g.nodes.values() if n.type == "Dense")
    win.scene.nodes[node.id].setSelected(True)
    win.scene.delete_selection()
    panel.table.selectRow(0)
    assert not win.restore_run(panel.selected())
    assert "the graph changed since" in win.statusBar().currentMessage()
    assert win.doc.project.training["epochs"] == 7
    # Delete removes the run and its folder
    n = len(os.listdir(folder / "records"))
    assert panel.delete_selected()
    assert len(os.listdir(folder / "records")) == n - 1 and len(panel.records) == 2


@pytest.mark.slow
def test_an_untitled_projects_runs_are_written_when_it_is_saved(win, qtbot, tmp_path):
    doc = Document.open(os.path.join(EXAMPLES, "sine.loom"))
    doc.project.path = None  # as an example opened from the gallery before it is saved
    win.set_document(doc)
    train(win, qtbot)
    (rec,) = win.runs.records
    assert rec["path"] is None and "until it is saved" in win.runs.where.text()
    assert win.runs.table.item(0, 2).text() == "editor (unsaved)"
    target = tmp_path / "mine.loom"
    win._save_to(str(target))  # File > Save As
    listing = runs.load(str(tmp_path / "runs" / "mine"))
    assert len(listing.records) == 1 and win.runs.records[0]["path"] is not None
    assert runs.weights_of(listing.records[0]).keys() == win.doc.weights.keys()


def test_a_damaged_record_is_skipped_with_a_line_in_the_log(win, tmp_path):
    path = tmp_path / "sine.loom"
    shutil.copy(os.path.join(EXAMPLES, "sine.loom"), path)
    bad = tmp_path / "runs" / "sine" / "records" / "20260101-000000"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text("{")
    assert win.open_path(str(path))
    assert win.runs.records == []
    assert "Runs: skipped" in win.log.toPlainText() and "not read" in win.log.toPlainText()


def test_the_bundled_examples_folder_gets_no_records(win):
    """Training an example opened in place (not a copy from File > Open Example) wrote
    runs/<name>/records/ into the package's examples folder; its runs are kept in memory,
    as an untitled project's are, until it is saved elsewhere."""
    from layerloom import gallery
    win.set_document(Document.open(os.path.join(gallery.folder(), "sine.loom")))
    assert win.runs.folder is None
    assert "until it is saved" in win.runs.where.text() or "No runs yet" in win.runs.where.text()
    assert runs.folder_of(win.doc.path) is None
    assert runs.folder_of("/somewhere/else/sine.loom") == runs.folder_for("/somewhere/else/sine.loom")


def _spirals(**optimizer_params):
    from layerloom.project import loom as projectfile
    d = projectfile.to_dict(projectfile.load(os.path.join(EXAMPLES, "spirals.loom")))
    d["training"]["optimizer"] = {"name": "adam", "params": dict(optimizer_params)}
    return d


def _history(n=2, stopped=False):
    h = {"epochs": [{"epoch": i, "seconds": 0.5, "loss": 1.0 / i, "accuracy": 0.5 + 0.1 * i}
                    for i in range(1, n + 1)], "test": {}, "stopped": stopped}
    if stopped:
        h["epochs"][-1]["interrupted"] = True
    return h


def test_runs_compare_by_value_and_a_stop_is_no_figure(qtbot, tmp_path):
    """Issue 26, item 4: a first run with the optimizer as it came (its parameters left out)
    against one with the same values written out and one with another learning rate: only
    the learning rate differs and the legend shows its values; a stopped run's `interrupted`
    is no column and no quantity. The first and the stopped run are written as records were
    before the fix (an empty learning rate; the flag among the figures)."""
    from layerloom.app.panels.runs_panel import RunsPanel
    first = runs.make_record(_spirals(), _history(), "editor", "cpu", 10, started=1e9)
    first["settings"] = {k: v for k, v in first["settings"].items() if not k.startswith("  ")}
    first["settings"]["Learning rate"] = ""
    runs.save(str(tmp_path), first, None)
    same = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, weight_decay=0,
                clipvalue=0.0, clipnorm=0.0, global_clipnorm=0.0)
    runs.save(str(tmp_path), runs.make_record(_spirals(**same), _history(), "editor", "cpu", 10,
                                              started=1e9 + 60), None)
    stopped = runs.make_record(_spirals(**dict(same, learning_rate=0.002)), _history(), "editor",
                               "cpu", 10, started=1e9 + 120)
    stopped["epochs"][-1]["interrupted"] = True
    stopped["final"]["interrupted"] = True
    runs.save(str(tmp_path), stopped, None)
    panel = RunsPanel(str(tmp_path), confirm=False)
    qtbot.addWidget(panel)
    panel.reload()
    assert len(panel.shown()) == 3
    assert panel.differing_settings() == ["Learning rate"]
    panel.only_diff.setChecked(False)
    assert panel.differing_settings() == ["Learning rate"]
    panel.quantity.setCurrentText("loss")
    assert sorted(name for name, _ in panel.curves_shown() if name) == [
        "#1  Learning rate 0.001", "#2  Learning rate 0.001", "#3  Learning rate 0.002"]
    headers = [panel.table.horizontalHeaderItem(c).text()
               for c in range(panel.table.columnCount())]
    assert "interrupted" not in headers and "loss" in headers
    assert "interrupted" not in [panel.quantity.itemText(i) for i in range(panel.quantity.count())]
    assert "(stopped)" in panel.table.item(0, 1).text()


def test_the_log_line_of_a_stopped_epoch_has_no_interrupted_figure(win):
    win.training._epoch({"epoch": 3, "seconds": 0.5, "loss": 0.25, "interrupted": True})
    line = win.log.toPlainText().splitlines()[-1]
    assert "loss 0.2500" in line and "interrupted" not in line and "(stopped)" in line, line
