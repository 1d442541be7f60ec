"""Model > Fine-tune... and the start page's Fine-tune... (issue 30, item 3): the dialog lists
the cut nodes with their shapes (the default before the classifier head), shows what will be
frozen and the head, reads a model file or the open project, and OK opens a new document with
the frozen nodes locked and their trained weights kept; Model > Unfreeze Top Layers... is one
undo step (pytest-qt, offscreen). With $LAYERLOOM_SCREENSHOTS set, the dialog is saved as
finetune_dialog.png there (README's picture: assets/finetune_dialog.png)."""
import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QApplication, QDialogButtonBox  # noqa: E402

from layerloom import api  # noqa: E402
from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.project import loom as projectfile  # noqa: E402
from guikit import EXAMPLES  # noqa: E402

SHAPES_DATA = os.path.join(EXAMPLES, "data", "shapes")


def _trained_shapes(tmp_path):
    """The shapes example with (untrained, initialised) weights saved beside it: a trained
    model as a .loom file."""
    p = projectfile.load(os.path.join(EXAMPLES, "shapes_folder.loom"))
    m = api.Model(p)
    weights = m.session.model.get_weights()
    m.set_weights(weights)
    path = str(tmp_path / "trained.loom")
    m.save(path)
    return path, weights


def test_dialog_on_the_open_project_opens_a_locked_fine_tuning_document(win, qtbot, tmp_path):
    win.set_document(Document.open(os.path.join(EXAMPLES, "shapes_folder.loom")))
    weights = api.Model(win.doc.project).session.model.get_weights()
    win.doc.set_trained(weights)
    dlg = win.finetune_dialog(run=False)
    items = [dlg.cut.itemText(i) for i in range(dlg.cut.count())]
    assert items[0].startswith("conv  (Conv2D)  (None, 26, 26, 16)")
    assert "image" not in [dlg.cut.itemData(i) for i in range(dlg.cut.count())]
    assert dlg.cut.currentData() == "hidden"  # the last node before the classifier head
    text = dlg.plan_text.text()
    assert "6 layers" in text and "trained weights kept" in text
    assert "head: Dense 3, softmax" in text and "learning rate 0.0003" in text
    dlg.cut.setCurrentIndex(dlg.cut.findData("pool_2"))
    assert "head_pool: GlobalAveragePooling2D" in dlg.plan_text.text()
    assert "4 layers" in dlg.plan_text.text()
    assert dlg.buttons.button(QDialogButtonBox.Ok).isEnabled()
    assert not dlg.model_file.isVisible()
    dlg.show()
    qtbot.waitExposed(dlg)
    QApplication.processEvents()
    shot = dlg.grab()
    assert shot.width() > 400 and shot.height() > 200
    target = os.environ.get("LAYERLOOM_SCREENSHOTS")
    if target:
        shot.save(os.path.join(target, "finetune_dialog.png"))
    dlg.close()
    win.doc.undo.setClean()  # nothing to ask about before the document is replaced
    win.doc._weights_unsaved = False
    assert win.finetune_accepted(dlg)
    g = win.doc.graph
    assert win.doc.path is None and list(g.nodes)[-3:] == ["head_pool", "head_dropout", "head"]
    assert g.frozen() == ["conv", "pool", "conv_2", "pool_2"]
    # the frozen nodes' weights are the trained ones; the head's are not there yet
    assert set(win.doc.weights) == {"conv/kernel", "conv/bias", "conv_2/kernel", "conv_2/bias"}
    assert np.array_equal(win.doc.weights["conv/kernel"], weights["conv/kernel"])
    assert "head" in win.doc.weights_problem()
    for nid in g.frozen():  # locked on the canvas
        assert "frozen" in win.scene.nodes[nid].toolTip()
    assert "frozen" not in win.scene.nodes["head"].toolTip()
    assert win.doc.project.training["optimizer"]["params"]["learning_rate"] == \
        pytest.approx(3e-4)
    # Unfreeze Top Layers: one undo step
    assert win.unfreeze_top_dialog(1) == ["conv_2", "pool_2"]
    assert g.frozen() == ["conv", "pool"] and win.doc.undo.undoText() == "Unfreeze top 1"
    win.doc.undo.undo()
    assert g.frozen() == ["conv", "pool", "conv_2", "pool_2"]


def test_dialog_reads_a_model_file_and_an_image_folder(win, qtbot, tmp_path):
    path, weights = _trained_shapes(tmp_path)
    dlg = win.finetune_dialog(run=False)  # the empty window: no open project to offer
    assert dlg.source.currentData() == "file"
    assert not dlg.buttons.button(QDialogButtonBox.Ok).isEnabled()
    assert "choose a model" in dlg.plan_text.text()
    assert not dlg.use_file(str(tmp_path / "missing.loom"))
    assert "Cannot read missing.loom" in dlg.model_file.text()
    assert dlg.use_file(path)
    assert dlg.cut.currentData() == "hidden"
    assert "no dataset" in dlg.plan_text.text() or "choose the data" in dlg.plan_text.text()
    assert not dlg.buttons.button(QDialogButtonBox.Ok).isEnabled()
    dlg.use_folder(SHAPES_DATA)
    assert dlg.buttons.button(QDialogButtonBox.Ok).isEnabled()
    assert "head: Dense 3, softmax" in dlg.plan_text.text()
    assert win.finetune_accepted(dlg)
    dlg.close()
    d = win.doc.project.dataset
    assert d["source"] == "images" and d["path"] == os.path.abspath(SHAPES_DATA)
    assert win.doc.graph.frozen() == ["conv", "pool", "conv_2", "pool_2", "flatten", "hidden"]
    assert np.array_equal(win.doc.weights["hidden/kernel"], weights["hidden/kernel"])
    # the fine-tuning project saves and reads back with its locks
    out = str(tmp_path / "tuned.loom")
    assert win._save_to(out)
    back = projectfile.load(out)
    assert back.graph.frozen() == win.doc.graph.frozen()


def test_start_page_and_model_menu_offer_fine_tune(qapp, qtbot, monkeypatch):
    from conftest import _dispose
    from layerloom.app.window.main_window import MainWindow
    w = MainWindow(confirm=False, start_page=True)
    try:
        w.resize(1000, 700)
        w.show()
        qtbot.waitExposed(w)
        opened = []
        monkeypatch.setattr(type(w), "finetune_dialog", lambda self, run=True: opened.append(1))
        assert w.start_page is not None and w.start_page.finetune_button is not None
        w.start_page.finetune_button.click()
        assert opened == [1] and w.start_page is None
        assert w.finetune_action.text().replace("&", "") == "Fine-tune..."
        w.finetune_action.trigger()
        assert opened == [1, 1]
        assert not w.unfreeze_top_dialog(1)  # nothing frozen: said, nothing done
    finally:
        _dispose(w, qapp)
