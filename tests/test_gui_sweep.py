"""Sweeps in the editor (issue 31, item 8): the Sweep dialog builds the spec `layerloom --sweep`
reads, the Runs tab ranks a sweep's runs by its metric, plots the metric against the swept
parameter and restores the best in one click, and Sweep... runs the command line's sweep as a
child process."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QDialogButtonBox  # noqa: E402

from layerloom.project import loom, runs, sweeps  # noqa: E402
from guikit import EXAMPLES  # noqa: E402


@pytest.fixture(scope="module")
def spirals():
    return loom.load(os.path.join(EXAMPLES, "spirals.loom"))


def test_the_dialog_builds_the_spec(qtbot, spirals):
    from layerloom.app.window.sweep_dialog import SweepDialog
    d = SweepDialog(spirals)
    qtbot.addWidget(d)
    ok = d.buttons.button(QDialogButtonBox.Ok)
    # it opens with six learning rates on a log scale, ranked by the validation loss
    assert d.spec() == {"parameters": {"learning_rate": {"log_range": [0.0001, 0.1],
                                                          "count": 6}},
                        "metric": "val_loss"}
    assert d.summary.text().startswith("6 trials, ranked by val_loss (lower is better)")
    assert ok.isEnabled()
    # a node's units as a list, ranked by validation accuracy, named
    row = d.add_row()
    d.set_row(row, name="hidden_1.units", form="list", values="16, 32")
    d.metric_box.setCurrentText("val_accuracy")
    d.name.setText("lr-units")
    assert d.spec() == {"parameters": {"learning_rate": {"log_range": [0.0001, 0.1], "count": 6},
                                       "hidden_1.units": [16, 32]},
                        "metric": "val_accuracy", "name": "lr-units"}
    assert d.summary.text().startswith("12 trials, ranked by val_accuracy (higher is better)")
    assert sweeps.check(d.spec(), spirals).points()[1] == {"learning_rate": 0.0001,
                                                           "hidden_1.units": 32}
    # random trials: a range whose count is "any" is drawn from as a whole
    d.random.setChecked(True)
    d.trials.setValue(5)
    d.seed.setValue(3)
    d.set_row(0, count=0)
    spec = d.spec()
    assert spec["trials"] == 5 and spec["seed"] == 3
    assert spec["parameters"]["learning_rate"] == {"log_range": [0.0001, 0.1]}
    assert d.summary.text().startswith("5 trials")
    # a bad value: the problem with its place, and no Start
    d.set_row(row, values="16, 0")
    assert not ok.isEnabled()
    assert "parameters.hidden_1.units[1]: expected a positive integer, got 0" in d.summary.text()
    d.set_row(row, values="16, 8")
    assert ok.isEnabled()
    # without the random trials a whole range needs its count
    d.grid.setChecked(True)
    assert not ok.isEnabled() and "add \"count\"" in d.summary.text()
    d.remove_row()  # the last row goes
    assert list(d.spec()["parameters"]) == ["learning_rate"]
    d.show()  # painted (a field named `metric` shadowed QWidget.metric: Qt crashed)
    qtbot.waitExposed(d)
    assert not d.grab().isNull()


def _record(project_dict, lr, trial, vals, early=None, name="lr"):
    h = {"epochs": [{"epoch": i + 1, "seconds": 0.1, "loss": v, "val_loss": v}
                    for i, v in enumerate(vals)], "test": {}, "stopped": False}
    d = sweeps.apply(project_dict, {"learning_rate": lr})
    rec = runs.make_record(d, h, "command line", "cpu", 10, started=1e9 + 60 * trial)
    rec["sweep"] = {"name": name, "trial": trial, "values": {"learning_rate": lr},
                    "metric": "val_loss", "goal": "min"}
    if early:
        rec["early_stopping"] = early
    return rec


def test_the_runs_tab_ranks_a_sweep_and_restores_the_best(qtbot, tmp_path, spirals):
    from layerloom.app.panels.runs_panel import RunsPanel
    base = loom.to_dict(spirals)
    plain = runs.make_record(base, {"epochs": [{"epoch": 1, "seconds": 0.1, "loss": 0.01,
                                                "val_loss": 0.01}]}, "editor", "cpu", 10,
                             started=1e9)
    runs.save(str(tmp_path), plain, None)
    # val_loss kept: 0.5, 0.2 (its best epoch, restored: not the last 0.9), 0.3
    for rec in (_record(base, 0.1, 1, [0.6, 0.5]),
                _record(base, 0.01, 2, [0.2, 0.9], {"stopped_epoch": 2, "best_epoch": 1,
                                                    "restored": True}),
                _record(base, 0.001, 3, [0.4, 0.3])):
        runs.save(str(tmp_path), rec, {"w": np.full(2, rec["sweep"]["trial"], np.float32)})
    panel = RunsPanel(str(tmp_path), confirm=False)
    qtbot.addWidget(panel)
    restored = []
    panel.sigRestore.connect(restored.append)
    panel.reload()
    assert panel.table.rowCount() == 4 and not panel.restore_best.isVisibleTo(panel)
    assert [panel.show_which.itemText(i) for i in range(panel.show_which.count())] == [
        "All runs (4)", "Sweep lr (3 runs, ranked)"]
    assert panel.show_sweep("lr")
    # ranked by the kept val_loss: trial 2, 3, 1; the plain run is not among them
    headers = [panel.table.horizontalHeaderItem(c).text()
               for c in range(panel.table.columnCount())]
    rank, value, lr = (headers.index(h) for h in ("Rank", "val_loss", "learning_rate"))
    assert headers.count("val_loss") == 1
    rows = [tuple(panel.table.item(r, c).text() for c in (rank, value, lr))
            for r in range(panel.table.rowCount())]
    assert rows == [("1", "0.2000", "0.01"), ("2", "0.3000", "0.001"), ("3", "0.5000", "0.1")]
    assert "(early-stopped)" in panel.table.item(0, 1).text()
    assert "early-stopped at epoch 2 (best 1, restored)" in panel.table.item(0, 1).toolTip()
    # the metric against the parameter, in the parameter's order, on a log axis
    assert panel.parameter.currentText() == "learning_rate"
    assert panel.sweep_points() == [(0.001, 0.3), (0.01, 0.2), (0.1, 0.5)]
    assert panel.sweep_plot.getPlotItem().ctrl.logXCheck.isChecked()
    assert panel.views.currentIndex() == panel.sweep_tab
    # Restore Best: the best trial's record, in one click
    assert panel.restore_best.isVisibleTo(panel) and panel.restore_best.isEnabled()
    panel.restore_best.click()
    assert [r["sweep"]["trial"] for r in restored] == [2]
    assert runs.weights_of(restored[0])["w"][0] == 2
    # back to every run
    assert panel.show_sweep(None) and panel.table.rowCount() == 4
    assert not panel.restore_best.isVisibleTo(panel)


def test_a_sweep_from_the_editor_runs_ranks_and_restores_the_best(win, qtbot, tmp_path):
    """Sweep... with the spirals example saved: `layerloom --sweep` as a child, each trial in
    the Runs tab as it ends, the ranking equal to the recorded figures; Restore Best sets the
    best trial's units on the node (one undo step) and its weights as the model."""
    path = tmp_path / "spirals.loom"
    shutil.copy(os.path.join(EXAMPLES, "spirals.loom"), path)
    assert win.open_path(str(path))
    spec = {"name": "units", "metric": "val_accuracy",
            "parameters": {"hidden_3.units": [8, 16], "epochs": [2]}}
    assert win.start_sweep(spec)
    assert win.runs.sweep_button.text() == "Stop Sweep"
    qtbot.waitUntil(lambda: win.sweep_process is None, timeout=300_000)
    log = win.log.toPlainText()
    assert "Sweep units finished" in log, log[-3000:]
    assert "Ranking by val_accuracy" in log
    panel = win.runs
    assert panel.sweep_name == "units" and panel.table.rowCount() == 2
    recs = runs.load(str(tmp_path / "runs" / "spirals")).records
    ranked = sorted(recs, key=lambda r: -r["final"]["val_accuracy"])
    assert [r["id"] for _, r in panel.ranking()] == [r["id"] for r in ranked] or \
        ranked[0]["final"]["val_accuracy"] == ranked[1]["final"]["val_accuracy"]
    best = panel.best()
    units = best["sweep"]["values"]["hidden_3.units"]
    assert win.doc.graph.nodes["hidden_3"].params["units"] == 32  # the file's, not swept
    panel.restore_best.click()
    assert win.doc.graph.nodes["hidden_3"].params["units"] == units
    assert win.doc.project.training["epochs"] == 2
    w = runs.weights_of(best)
    assert all(np.array_equal(win.doc.weights[k], w[k]) for k in w)
    win.doc.undo.undo()  # the units and the epochs back in one step
    assert win.doc.graph.nodes["hidden_3"].params["units"] == 32
    assert win.doc.project.training["epochs"] == 40
    # the same sweep again: every trial finished, nothing trains, no new run
    assert win.start_sweep(spec)
    qtbot.waitUntil(lambda: win.sweep_process is None, timeout=300_000)
    assert "2 of 2 trials already finished, skipped" in win.log.toPlainText()
    assert len(runs.load(str(tmp_path / "runs" / "spirals")).records) == 2


def test_a_sweep_needs_a_saved_project(win):
    from layerloom import gallery
    from layerloom.app.editing.document import Document
    win.set_document(Document.open(os.path.join(gallery.folder(), "spirals.loom")))
    assert not win.start_sweep({"parameters": {"epochs": [1]}})
    assert "Save the project first" in win.statusBar().currentMessage()
    assert win.sweep_process is None


def test_sweep_ranking_screenshot(qtbot, tmp_path):
    """The README's picture: a 6-learning-rate sweep of the spirals MLP from the command line,
    as the Runs tab ranks it (assets/sweep_ranking.png when $LAYERLOOM_SCREENSHOTS is set)."""
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "layerloom.cli", "--sweep",
                        os.path.join(EXAMPLES, "spirals.loom"),
                        "learning_rate=logrange(1e-4,1e-1,6); metric=val_accuracy; name=lr6",
                        "--epochs", "8", "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    from layerloom.app.panels.runs_panel import RunsPanel
    panel = RunsPanel(str(out), confirm=False)
    qtbot.addWidget(panel)
    panel.resize(1300, 420)
    panel.reload()
    assert panel.show_sweep("lr6")
    panel.show()
    qtbot.waitExposed(panel)
    values = [v for v, _ in panel.ranking()]
    assert len(values) == 6 and values == sorted(values, reverse=True)
    table = r.stdout[r.stdout.rindex("Ranking by"):].splitlines()[2:8]
    assert [int(line.split()[1]) for line in table] == [
        rec["sweep"]["trial"] for _, rec in panel.ranking()] or len(set(values)) < 6
    target = os.environ.get("LAYERLOOM_SCREENSHOTS")
    if target:
        panel.grab().save(os.path.join(target, "sweep_ranking.png"))


def test_a_changed_project_is_saved_before_its_sweep_and_stop_stops_it(win, qtbot, tmp_path):
    from layerloom.app.editing.commands import SetSetupCmd
    path = tmp_path / "spirals.loom"
    shutil.copy(os.path.join(EXAMPLES, "spirals.loom"), path)
    assert win.open_path(str(path))
    win.doc.push(SetSetupCmd(win.doc, "training", "epochs", 500))
    # a bad spec starts nothing and saves nothing
    assert not win.start_sweep({"parameters": {"hidden_1.units": [0]}})
    assert "parameters.hidden_1.units[0]" in win.statusBar().currentMessage()
    assert not win.doc.undo.isClean() and win.sweep_process is None
    assert win.start_sweep({"name": "long", "parameters": {"learning_rate": [0.01, 0.02]}})
    assert win.doc.undo.isClean()  # saved: the sweep trains the file
    assert loom.load(str(path)).training["epochs"] == 500
    qtbot.waitUntil(lambda: "Epoch" in win.log.toPlainText(), timeout=120_000)
    win.runs.sweep_button.click()  # Stop Sweep
    qtbot.waitUntil(lambda: win.sweep_process is None, timeout=120_000)
    assert "Sweep long stopped; start it again to go on" in win.log.toPlainText()
    assert win.runs.sweep_button.text() == "Sweep..."
    state = json.loads((tmp_path / "runs" / "spirals" / "sweeps" / "long" / "sweep.json")
                       .read_text())
    assert [t["status"] for t in state["trials"]] == ["stopped", "pending"]


def test_sweep_asks_for_a_saved_project_before_its_dialog(win, monkeypatch):
    """A newcomer filled the whole Sweep dialog on a bundled example, pressed Start and only
    then read "Save the project first", the settings lost. Now it is said before the dialog."""
    from layerloom import gallery
    from layerloom.app.editing.document import Document
    from layerloom.app.window import sweep_dialog
    win.set_document(Document.open(os.path.join(gallery.folder(), "spirals.loom")))

    def no_dialog(*a, **k):
        raise AssertionError("the dialog opened on a project that cannot be swept")
    monkeypatch.setattr(sweep_dialog, "SweepDialog", no_dialog)
    assert not win.sweep_pressed()
    assert "Save the project first" in win.statusBar().currentMessage()
