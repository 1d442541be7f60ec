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
