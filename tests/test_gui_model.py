"""The editor's trained model: its weights saved beside the project and reopened, stale weights
after a structural edit, Predict on a CSV and on an image, and the test evaluation after Stop
(pytest-qt, offscreen)."""
import json
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from layerloom.app.editing.document import Document, weights_mismatch  # noqa: E402

from guikit import EXAMPLES, start_spirals  # noqa: E402

WINE_CSV = os.path.join(EXAMPLES, "data", "wine.csv")
SHAPES = os.path.join(EXAMPLES, "data", "shapes")


def example_copy(tmp_path, name):
    """An example project copied into tmp_path, its data path made absolute."""
    with open(os.path.join(EXAMPLES, name), encoding="utf-8") as f:
        d = json.load(f)
    if "path" in d["dataset"]:
        d["dataset"]["path"] = os.path.join(EXAMPLES, d["dataset"]["path"])
    path = str(tmp_path / name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f)
    return path


def initial_weights(project):
    """The weights a model of `project` starts from (no training), as {name: array}."""
    from layerloom import api
    return api.Model(project).session.model.get_weights()


def train(win, qtbot, path, epochs):
    assert win.open_path(path)
    win.training.epochs.setValue(epochs)
    win.training.start_training()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=120_000)
    assert "Finished" in win.training.status.text(), win.log.toPlainText()


def predicted(win, qtbot, path):
    win.predict_path(path)
    qtbot.waitUntil(lambda: win.predict_task is None, timeout=60_000)
    return win.predictions


# -- without training (fast) ---------------------------------------------------------------

def test_weights_are_saved_beside_the_project_and_reopened(win, tmp_path):
    path = example_copy(tmp_path, "spirals.loom")
    assert win.open_path(path)
    assert win.doc.weights is None and not win.predict_action.isEnabled()
    weights = initial_weights(win.doc.project)
    win.doc.set_trained(weights)
    assert win.doc.dirty and win.windowTitle().startswith("spirals.loom*")
    assert win.predict_action.isEnabled()
    assert win.save()
    assert not win.doc.dirty
    wfile = path + ".weights.npz"
    with open(path, encoding="utf-8") as f:
        assert json.load(f)["weights"] == "spirals.loom.weights.npz"
    with np.load(wfile) as z:
        assert sorted(z.files) == sorted(weights)
    assert win.open_path(path)
    got = win.doc.weights
    assert set(got) == set(weights) and all(np.array_equal(got[k], weights[k]) for k in got)
    assert not win.doc.dirty and win.predict_action.isEnabled()
    # the engine reads what the editor wrote
    from layerloom import api
    model = api.load(path)
    assert all(np.array_equal(model.get_weights()[k], weights[k]) for k in weights)


def test_a_structural_edit_makes_the_weights_stale_and_undo_makes_them_fit(win, tmp_path):
    path = example_copy(tmp_path, "spirals.loom")
    assert win.open_path(path)
    win.doc.set_trained(initial_weights(win.doc.project))
    assert win.save()
    win.scene.clearSelection()
    win.scene.nodes["hidden_2"].setSelected(True)
    units = win.inspector.widgets["units"]
    units.setValue(units.value() + 3)
    units.editingFinished.emit()
    problem = weights_mismatch(win.doc.graph, win.doc.weights)
    assert problem and "hidden_2/kernel" in problem
    assert not win.predict_action.isEnabled()
    assert "no longer fit the graph" in win.log.toPlainText()
    assert "Save keeps the weights of the layers that still fit" in win.log.toPlainText()
    assert win.save()  # with the weights that still fit (Keras' skip_mismatch), not none
    with open(path, encoding="utf-8") as f:
        assert json.load(f)["weights"] == "spirals.loom.weights.npz"
    with np.load(path + ".weights.npz") as z:
        assert "hidden_1/kernel" in z.files and "hidden_2/kernel" not in z.files
    log = win.log.toPlainText()
    assert "without the weights of hidden_2, hidden_3/kernel:" in log and \
        "they no longer fit" in log
    win.doc.undo.undo()
    assert weights_mismatch(win.doc.graph, win.doc.weights) is None
    assert win.predict_action.isEnabled() and win.doc.dirty
    assert "fit the graph again" in win.log.toPlainText()
    # an activation change keeps every shape: the weights still fit
    win.inspector.widgets["activation"].setCurrentText("tanh")
    assert win.predict_action.isEnabled()


def test_a_stray_node_keeps_the_trained_weights(win, tmp_path):
    """An unconnected Dense dropped on a trained graph: Predict is off while the graph cannot
    run, but every trained weight is kept, saved, and usable again once the node is gone."""
    path = example_copy(tmp_path, "spirals.loom")
    assert win.open_path(path)
    weights = initial_weights(win.doc.project)
    win.doc.set_trained(weights)
    assert win.save()
    win.scene.clearSelection()
    stray = win.add_at_centre("Dense")  # placed alone, unconnected
    assert stray not in {k.split("/")[0] for k in weights}
    assert not win.predict_action.isEnabled()
    assert win.save()
    with np.load(path + ".weights.npz") as z:
        assert sorted(z.files) == sorted(weights)
    win.doc.undo.undo()
    assert win.predict_action.isEnabled()
    # reopened with the stray node: the weights are there, Predict waits for the graph
    assert win.open_path(path) and set(win.doc.weights) == set(weights)


def test_a_missing_weights_file_opens_the_project_without_them(win, tmp_path):
    path = example_copy(tmp_path, "spirals.loom")
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    d["weights"] = "gone.npz"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f)
    assert win.open_path(path)
    assert win.doc.weights is None and not win.predict_action.isEnabled()
    assert "gone.npz" in win.log.toPlainText()


def test_predict_on_a_file_that_does_not_fit_shows_a_message(win, qtbot, tmp_path):
    path = example_copy(tmp_path, "spirals.loom")
    assert win.open_path(path)
    win.doc.set_trained(initial_weights(win.doc.project))
    p = predicted(win, qtbot, WINE_CSV)  # a CSV for a model trained on synthetic data
    assert "trained on 'synthetic' data" in p.message.text()
    assert "Traceback" not in p.message.text() and p.table.model().rowCount() == 0
    assert "--input" not in p.message.text()  # the command line's word, not the editor's
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 5), np.float32))  # spirals' Input takes 2 values
    p = predicted(win, qtbot, str(bad))
    assert "Input 'point' takes samples shaped (None, 2)" in p.message.text()
    assert "set the Input's shape" not in p.message.text()  # not a fix for a trained model
    p = predicted(win, qtbot, str(tmp_path / "missing.csv"))
    assert "file not found" in p.message.text()


# -- with training (slow) ------------------------------------------------------------------

@pytest.mark.slow
def test_train_save_reopen_then_predict_the_wine_csv(win, qtbot, tmp_path):
    path = example_copy(tmp_path, "wine_csv.loom")
    train(win, qtbot, path, epochs=20)
    trained = win.doc.weights
    assert trained is not None and win.doc.dirty and win.predict_action.isEnabled()
    assert win.save()
    assert win.open_path(path)
    assert all(np.array_equal(win.doc.weights[k], trained[k]) for k in trained)
    assert win.doc.project.dataset["fitted"]["columns"]["labels"] == ["cultivar"]
    p = predicted(win, qtbot, WINE_CSV)
    model = p.table.model()
    assert model.rowCount() == 178
    header = [model.headerData(c, Qt.Horizontal) for c in range(model.columnCount())]
    assert header == ["class", "cultivar_1", "cultivar_2", "cultivar_3"]
    # the rows the command line writes for the same file
    from layerloom import api
    from layerloom.cli.use_model import predictions_csv
    from layerloom.data import inputs
    m = api.load(path)
    want = predictions_csv(m, {"cultivar": m.predict(inputs.read(m.project, WINE_CSV).arrays)})
    assert p.prediction.csv_text == want
    truth = inputs.read(m.project, WINE_CSV).labels["y"]
    classes = [model.data(model.index(r, 0)) for r in range(178)]
    accuracy = np.mean([c == f"cultivar_{int(t) + 1}" for c, t in zip(classes, truth)])
    assert accuracy > 0.8
    assert "178 rows" in p.message.text()
    assert win.output_tabs.currentWidget() is win.predictions
    assert p.save_csv(str(tmp_path / "out.csv"))
    assert (tmp_path / "out.csv").read_text() == want


@pytest.mark.slow
def test_predict_a_shapes_image_shows_its_top_three_classes(win, qtbot, tmp_path):
    path = example_copy(tmp_path, "shapes_folder.loom")
    train(win, qtbot, path, epochs=3)
    image = os.path.join(SHAPES, "triangle", sorted(os.listdir(os.path.join(
        SHAPES, "triangle")))[0])
    p = predicted(win, qtbot, image)
    assert len(p.shown_cards()) == 1
    card = p.shown_cards()[0]
    assert card.name.text() == os.path.basename(image)
    top = card.top
    assert [c for c, _ in top] and len(top) == 3
    assert {c for c, _ in top} == {"circle", "square", "triangle"}
    probs = [v for _, v in top]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
    assert top[0][0] in card.lines.text()
    # a folder: one card per image
    folder = tmp_path / "some"
    folder.mkdir()
    for cls in ("circle", "square"):
        src = os.path.join(SHAPES, cls, f"{cls}_000.png")
        shutil.copy(src, folder / f"{cls}.png")
    p = predicted(win, qtbot, str(folder))
    assert [c.name.text() for c in p.shown_cards()] == ["circle.png", "square.png"]


@pytest.mark.slow
def test_stop_shows_the_test_evaluation_as_a_full_run_does(win, qtbot, tmp_path):
    start_spirals(win, qtbot, 500)
    win.training.stop_training()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=60_000)
    assert win.training.last_history["stopped"]
    qtbot.waitUntil(lambda: win.results.result is not None, timeout=60_000)
    r = win.results.result
    assert r["split"] == "test" and r["matrix"].sum() == 500
    assert "after Stop" in win.results.title.text()
    qtbot.waitUntil(lambda: "Test after Stop: loss" in win.log.toPlainText(), timeout=10_000)
    assert win.output_tabs.currentWidget() is win.results
    assert win.doc.weights is not None and win.doc.dirty
    # the stopped run's weights are the document's model
    assert all(np.array_equal(win.doc.weights[k], win.training.last_weights[k])
               for k in win.doc.weights)


def test_replacing_the_document_waits_for_the_old_panels_threads(win, qtbot, monkeypatch):
    """Opening another project while the old panels' threads run (the device survey, which
    probes for seconds on a first run; the data panel's read) used to delete them running:
    "QThread: Destroyed while thread is still running" aborted the editor."""
    import gc
    import time
    from PySide6.QtCore import QCoreApplication, QEvent
    from layerloom.app.panels import train_worker
    real = train_worker.DeviceSurvey.run

    def slow(self):
        time.sleep(0.5)
        real(self)
    monkeypatch.setattr(train_worker.DeviceSurvey, "run", slow)
    for name in ("spirals.loom", "sine.loom", "multitask.loom"):
        win.set_document(Document.open(os.path.join(EXAMPLES, name)))
        assert win.training.device_survey.isRunning()
        QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
        gc.collect()
    assert win.doc.project.path.endswith("multitask.loom")
