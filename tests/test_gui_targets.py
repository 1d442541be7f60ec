"""Targets for any output and the defaults a newcomer expects (issue 31, items 5 and 6): every
output shows its target, the input itself among them (an autoencoder); a new project holds
out a validation split; the loss is set by itself where the output and its targets leave no
doubt, and shown as such."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.project import loom as projectfile  # noqa: E402
from guikit import EXAMPLES, build_mlp  # noqa: E402

SHOTS = os.environ.get("LAYERLOOM_SHOTS")  # a folder: the screenshots looked at


def shot(widget, name):
    if SHOTS:
        from PySide6.QtWidgets import QApplication
        for _ in range(5):
            QApplication.processEvents()
        widget.grab().save(os.path.join(SHOTS, name))


# -- item 6: defaults ------------------------------------------------------------------------
def test_a_new_project_holds_out_a_fifth_for_validation_and_an_old_file_keeps_its_meaning(
        win, tmp_path):
    assert Document().project.training["validation_split"] == 0.2
    win.new()
    assert win.doc.project.training["validation_split"] == 0.2
    assert "validation: the last 20%" in win.training.summary.text()
    # a file that says nothing of it still means none, as it always did
    with open(os.path.join(EXAMPLES, "spirals.loom")) as f:
        raw = json.load(f)
    raw["training"].pop("validation_split", None)
    path = tmp_path / "silent.loom"
    path.write_text(json.dumps(raw))
    assert projectfile.load(str(path)).training["validation_split"] == 0.0
    win.set_document(Document.open(str(path)))
    assert "validation" not in win.training.summary.text().lower()
    # a new project saved and opened again keeps its split
    win.new()
    out = build_mlp(win)[-1]
    win.doc.project.training["loss"] = {out: {"name": "mean_squared_error"}}
    win.doc.save(str(tmp_path / "new.loom"))
    assert projectfile.load(str(tmp_path / "new.loom")).training["validation_split"] == 0.2


# -- item 5: a target for every output, the input itself among them ---------------------------
def autoencoder_doc(tmp_path):
    from layerloom.core.graph import Graph
    from layerloom.project.loom import Project
    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=(x.mean((1, 2, 3)) > 0.5).astype(np.float32))
    g = Graph()
    for nid, typ, params in (("image", "Input", {"shape": [8, 8, 1]}),
                             ("code", "Conv2D", {"filters": 4, "kernel_size": 3,
                                                 "padding": "same", "activation": "relu"}),
                             ("decoded", "Conv2D", {"filters": 1, "kernel_size": 3,
                                                    "padding": "same",
                                                    "activation": "sigmoid"})):
        g.add_node(typ, params, id=nid)
    g.connect("image", 0, "code", 0)
    g.connect("code", 0, "decoded", 0)
    p = Project(g, dataset={"source": "npz", "path": str(tmp_path / "d.npz")})
    p.training["loss"] = {"decoded": {"name": "mean_squared_error", "weight": 1.0,
                                      "from_logits": False}}
    p.training.update(epochs=2, batch_size=16, metrics=[])
    p.ui = {"positions": {"image": [0, 0], "code": [0, 120], "decoded": [0, 240]}}
    return Document(p)


def test_the_one_output_shows_its_target_and_takes_the_input_itself(win, tmp_path, qtbot):
    win.set_document(autoencoder_doc(tmp_path))
    t = win.training
    combo = t.mapping_rows[("targets", "decoded")]
    assert ("inputs", "image") not in t.mapping_rows  # one Input: x, as before
    items = [combo.itemText(i) for i in range(combo.count())]
    assert "the input itself" in items and "y" in items, items
    assert combo.currentText() == "y"  # the one output's default
    assert t.mapping.isVisible()
    combo.setCurrentText("the input itself")
    combo.activated.emit(combo.currentIndex())
    assert win.doc.project.dataset["targets"] == {"decoded": "=input:image"}
    assert win.doc.undo.count() == 1
    assert t.mapping_rows[("targets", "decoded")].currentText() == "the input itself"
    shot(t, "training_target_input.png")
    # the Data tab's check maps it in words, and finds it fits
    qtbot.waitUntil(lambda: "the rows of Input 'image' -> target of 'decoded'"
                    in win.data.counts.text(), timeout=30_000)
    assert win.data.fit_problem is None
    win.doc.undo.undo()
    assert "targets" not in win.doc.project.dataset or \
        win.doc.project.dataset["targets"] == {}
    assert t.mapping_rows[("targets", "decoded")].currentText() == "y"


# -- Results for outputs that are no classifier ---------------------------------------------
def test_results_show_reconstructions_and_a_predicted_against_true_scatter(qtbot):
    from layerloom.app.panels.results import ResultsPanel
    panel = ResultsPanel()
    qtbot.addWidget(panel)
    panel.resize(900, 400)
    panel.show()
    t = np.linspace(-1, 1, 30)
    panel.show_results({"kind": "regression", "output": "value", "split": "test",
                        "predicted": t * 0.9, "true": t, "r2": 0.97})
    x, y = panel.scatter.getData()
    np.testing.assert_allclose(x, t)
    np.testing.assert_allclose(y, t * 0.9)
    assert panel.scatter.isVisible() and not panel.image.isVisible()
    assert panel.plot.getAxis("bottom").labelText == "true"
    assert panel.plot.getAxis("left").labelText == "predicted"
    assert "R\u00b2 0.9700" in panel.title.text() and "'value'" in panel.title.text()
    (lx, ly) = panel.diagonal.getData()
    assert lx.min() <= -1 and lx.max() >= 1 and np.all(lx == ly)  # the y = x line
    shot(panel, "results_regression.png")
    rng = np.random.default_rng(0)
    pairs = [(rng.random((8, 8, 1)), rng.random((8, 8, 1))) for _ in range(5)]
    panel.show_results({"kind": "reconstruction", "output": "decoded",
                        "split": "training data (last samples)", "mse": 0.0123,
                        "samples": pairs})
    shown = [c for c in panel.cells if c.isVisible()]
    assert len(shown) == 5 and not panel.plot.isVisible()
    assert shown[0].label.text() == "input / output"
    assert shown[0].cell.pixmap().height() > 44  # two images, one above the other
    assert "mse 0.0123" in panel.title.text()
    shot(panel, "results_reconstruction.png")
    m = np.array([[5, 1], [2, 7]])
    panel.show_results({"kind": "classification", "output": "c", "split": "test",
                        "classes": ["a", "b"], "matrix": m, "accuracy": 0.8,
                        "samples": [(pairs[0][0], 0, 1)]})
    assert panel.plot.isVisible() and panel.image.isVisible()
    assert not panel.scatter.isVisible()
    assert [c.isVisible() for c in panel.cells].count(True) == 1


def test_an_autoencoder_trained_in_the_editor_shows_its_reconstructions(win, tmp_path, qtbot):
    win.set_document(autoencoder_doc(tmp_path))
    t = win.training
    combo = t.mapping_rows[("targets", "decoded")]
    combo.setCurrentIndex(combo.findText("the input itself"))
    combo.activated.emit(combo.currentIndex())
    t.start_training()
    qtbot.waitUntil(lambda: t.worker is None, timeout=120_000)
    qtbot.waitUntil(lambda: win.results.result is not None, timeout=60_000)
    r = win.results.result
    assert (r["kind"], r["output"]) == ("reconstruction", "decoded"), r.get("kind")
    assert len(r["samples"]) == 16 and r["samples"][0][0].shape == (8, 8, 1)
    assert win.output_tabs.currentWidget() is win.results
    assert "the input above, the output below" in win.results.title.text()
    shot(win, "window_autoencoder_results.png")


# -- item 6: the loss set by itself where the output and its targets leave no doubt -----------
def test_the_loss_is_set_by_itself_and_shown_as_auto_and_undo_keeps_it_unset(win, tmp_path,
                                                                             qtbot):
    p = projectfile.load(os.path.join(EXAMPLES, "spirals.loom"))
    p.training["loss"] = {}  # softmax 'class' over integer labels 0, 1
    win.set_document(Document(p))
    t = win.training
    qtbot.waitUntil(lambda: "class" in win.doc.project.training["loss"], timeout=30_000)
    assert win.doc.project.training["loss"]["class"]["name"] == \
        "sparse_categorical_crossentropy"
    assert t.loss.currentText() == "auto (sparse_categorical_crossentropy)"
    assert "auto (sparse_categorical_crossentropy)" in t.summary.text()
    assert not [i for i in range(win.problems.count())
                if "no loss" in win.problems.item(i).text()]
    shot(t, "training_auto_loss.png")
    assert win.doc.undo.undoText() == "Loss: auto (sparse_categorical_crossentropy)"
    win.doc.undo.undo()  # taken back: not set again behind the user's back
    qtbot.wait(1000)
    win.data.refresh()
    qtbot.waitUntil(lambda: win.data.worker is None, timeout=30_000)
    qtbot.wait(300)
    assert win.doc.project.training["loss"] == {}
    # a loss chosen by hand is shown as itself
    t.loss.setCurrentText("categorical_crossentropy")
    t.loss.activated.emit(t.loss.currentIndex())
    assert t.loss.currentText() == "categorical_crossentropy"
    # a file's own loss is never replaced
    q = projectfile.load(os.path.join(EXAMPLES, "sine.loom"))
    q.training["loss"] = {"y": {"name": "huber", "weight": 1.0, "from_logits": False,
                                "delta": 1.0}}
    win.set_document(Document(q))
    qtbot.waitUntil(lambda: win.data.worker is None and win.data.shown_for is not None,
                    timeout=30_000)
    qtbot.wait(300)
    assert win.doc.project.training["loss"]["y"]["name"] == "huber"
    assert win.training.loss.currentText() == "huber"
