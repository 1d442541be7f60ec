"""Freezing in the editor (issue 30, item 3): the inspector's Frozen box, the lock drawn on a
frozen node, the context menu's Freeze / Freeze Everything Before, each one undo step, and
the flag saved with the project (pytest-qt, offscreen)."""
import os

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QColor, QImage, QPainter  # noqa: E402

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.project import loom as projectfile  # noqa: E402
from guikit import EXAMPLES, start_without_a_process  # noqa: E402


def _open(win, qtbot):
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    qtbot.waitExposed(win)
    win.view.fit(whole=True)
    return win.doc.graph


def _select(win, nid):
    win.scene.clearSelection()
    win.scene.nodes[nid].setSelected(True)


def _header_pixels(item):
    """The node item painted alone: its header's right end, where the lock is drawn."""
    from layerloom.app.canvas.canvas_items import HEADER_H, NODE_W
    img = QImage(NODE_W + 16, int(item.h) + 8, QImage.Format_ARGB32)
    img.fill(QColor("black"))
    p = QPainter(img)
    p.translate(8, 4)
    item.paint(p, None)
    p.end()
    return [img.pixelColor(x + 8, y + 4).lightness() for x in range(NODE_W - 22, NODE_W - 6)
            for y in range(4, HEADER_H - 4)]


def test_inspector_toggle_marks_the_node_and_undoes(win, qtbot):
    g = _open(win, qtbot)
    _select(win, "hidden_2")
    box = win.inspector.frozen
    assert win.inspector.node_id == "hidden_2" and box.isVisible() and not box.isChecked()
    item = win.scene.nodes["hidden_2"]
    plain = _header_pixels(item)
    total = g.analysis().total_params()
    box.click()  # as a user does
    assert not g.nodes["hidden_2"].trainable and box.isChecked()
    assert win.doc.undo.undoText() == "Freeze hidden_2"
    locked = _header_pixels(item)
    # the white padlock on the header: bright pixels where the plain header has none
    assert sum(v > 200 for v in locked) > sum(v > 200 for v in plain) + 20
    assert "frozen" in item.toolTip()
    assert "frozen: not trained" in win.inspector.info.text()
    after = g.analysis().total_params()
    assert after.total == total.total and after.trainable == total.trainable - 64 * 64 - 64
    qtbot.waitUntil(lambda: f"Non-trainable: {64 * 64 + 64:,}" in win.summary.totals.text())
    win.doc.undo.undo()
    assert g.nodes["hidden_2"].trainable and not box.isChecked()
    assert _header_pixels(item) == plain
    win.doc.undo.redo()
    assert not g.nodes["hidden_2"].trainable and box.isChecked()


def test_context_menu_freezes_everything_before_a_node_in_one_step(win, qtbot, tmp_path):
    from layerloom.app.canvas import context_menus
    g = _open(win, qtbot)
    view = win.view
    at = view.mapFromScene(win.scene.nodes["hidden_3"].sceneBoundingRect().center())
    menu = context_menus.build(win, at)
    act = next(a for a in menu.actions() if a.text() == "Freeze Everything &Before This Node")
    act.trigger()
    assert g.frozen() == ["hidden_1", "hidden_2"]  # the Input is not a layer to freeze
    assert win.doc.undo.undoText() == "Freeze 2 node(s) before hidden_3"
    win.doc.undo.undo()
    assert g.frozen() == []
    win.doc.undo.redo()
    # the selection, frozen and unfrozen from the menu
    for nid in ("hidden_3", "class"):
        win.scene.nodes[nid].setSelected(True)
    menu = context_menus.build(win, at)
    next(a for a in menu.actions() if a.text() == "&Freeze 2 Nodes").trigger()
    assert g.frozen() == ["hidden_1", "hidden_2", "hidden_3", "class"]
    # saved with the project; a frozen node deleted and undone comes back frozen
    path = tmp_path / "frozen.loom"
    projectfile.save(win.doc.project, str(path))
    assert projectfile.load(str(path)).graph.frozen() == g.frozen()
    _select(win, "hidden_2")
    place = win.scene.nodes["hidden_2"].pos()
    win.scene.delete_selection()
    assert "hidden_2" not in g.nodes
    win.doc.undo.undo()
    assert not g.nodes["hidden_2"].trainable
    # back where it was (an undone deletion put the node at the canvas's default spot, on top
    # of hidden_3, while its saved position said otherwise)
    assert win.scene.nodes["hidden_2"].pos() == place
    at = view.mapFromScene(win.scene.nodes["hidden_3"].sceneBoundingRect().center())
    menu = context_menus.build(win, at)  # on an unselected node: that node alone
    next(a for a in menu.actions() if a.text() == "Un&freeze Node").trigger()
    assert g.frozen() == ["hidden_1", "hidden_2", "class"]


def test_copy_and_paste_keep_the_flag(win, qtbot):
    from layerloom.app.editing.clipboard import copy_text
    g = _open(win, qtbot)
    g.set_trainable("hidden_1", False)
    text = copy_text(win.doc, ["hidden_1", "hidden_2"])
    win.paste(text)
    new = [n for n in g.nodes if n not in ("point", "hidden_1", "hidden_2", "hidden_3", "class")]
    assert len(new) == 2 and [g.nodes[n].trainable for n in new] == [False, True]


def _start_capturing(win, qtbot, monkeypatch):
    """Start pressed with the training process replaced: the weights the run is handed."""
    return start_without_a_process(win, qtbot, monkeypatch)[-1][-1]


def test_a_run_with_frozen_layers_starts_from_the_documents_weights(win, qtbot, monkeypatch):
    """A newcomer's trial: trained, froze every layer before the head, pressed Run: the run
    started from fresh random weights, so the frozen layers held noise (loss flat, accuracy
    0). A project with frozen layers is a fine-tuning: its run starts from the weights the
    document holds; one without starts from scratch as before."""
    import numpy as np
    g = _open(win, qtbot)
    rng = np.random.default_rng(0)
    win.doc.weights = {f"{nid}/{spec.name}": rng.normal(size=spec.shape).astype(np.float32)
                       for nid, node in g.nodes.items()
                       for spec in node.layer.weights(node.params, [
                           g.analysis().shapes[e.src][e.src_port] for e in g.in_edges(nid)])}
    assert _start_capturing(win, qtbot, monkeypatch) is None  # nothing frozen: from scratch
    g.nodes["hidden_1"].trainable = False
    initial = _start_capturing(win, qtbot, monkeypatch)
    assert set(initial) == set(win.doc.weights)
    for k, v in win.doc.weights.items():
        np.testing.assert_array_equal(initial[k], v)


def test_problems_warn_where_freezing_leaves_nothing_or_noise_to_train(win, qtbot):
    """A newcomer froze every layer and pressed Run: no word before the flat loss. Problems
    now warns where every weight is frozen, and where a frozen layer has no weights of its
    own yet (it would keep its random initial ones)."""
    g = _open(win, qtbot)

    def lines():
        win._changed()
        return [win.problems.item(i).text() for i in range(win.problems.count())]
    assert not [t for t in lines() if "frozen" in t.lower()]
    win.doc.weights = None
    g.set_trainable("hidden_1", False)
    warned = [t for t in lines() if "hidden_1" in t and "no trained weights" in t]
    assert warned and warned[0].startswith("Frozen (warning)")
    for nid in g.nodes:
        g.set_trainable(nid, False)
    assert any(t.startswith("Training (warning)") and "nothing will train" in t
               for t in lines())
