"""Issue 31, item 7's leftovers and a newcomer trial's findings: one shape format on node faces
and wires, node text within the node, confusion-matrix numbers within their cells, the Training
panel while a run goes, the residual skip offered first. Screenshots under $L7_SHOTS (if set)."""
import os

import numpy as np
import pytest

from layerloom.core import fixes
from test_fixes import chain

SHOTS = os.environ.get("L7_SHOTS")


def shot(widget, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        widget.grab().save(os.path.join(SHOTS, name))


# -- j: the residual skip first --------------------------------------------------------------
def test_an_add_missing_its_skip_is_offered_the_node_the_block_spans_first():
    # Input -> conv2d_1 -> BN -> conv2d_2 -> Add(conv2d_2, ?): BN is nearer the Add and of
    # the same shape, but it is conv2d_2's own input; the skip spans the block from conv2d_1
    g = chain(("x", "Input", {"shape": [28, 28, 1]}),
              ("conv2d_1", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
              ("batchnormalization_1", "BatchNormalization", {}),
              ("conv2d_2", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
              ("add", "Add", {}), ("flat", "Flatten", {}), ("out", "Dense", {"units": 10}))
    pos = {n: (0, 100 * k) for k, n in enumerate(
        ["x", "conv2d_1", "batchnormalization_1", "conv2d_2", "add", "flat", "out"])}
    (problem,) = [p for p in g.validate() if p.node == "add"]
    fs = fixes.fixes_for(g, problem, pos)
    labels = [f.label for f in fs]
    assert labels[0] == "Connect 'conv2d_1' to 'add'", labels
    assert "Connect 'batchnormalization_1' to 'add'" in labels  # still offered, second
    h = fixes.copy_graph(g)
    fixes.apply(h, fs[0].steps)
    assert h.validate() == []


# -- a, b: one shape format on node faces and wires; node text within the node ----------------
def _built(win, layers):
    """Nodes added and wired in a row as a user does; their ids."""
    ids = [win.add_at_centre(t, p) for t, p in layers]
    for a, b in zip(ids, ids[1:]):
        assert win.scene.connect_ports(a, 0, b, 0)
    win.scene.refresh()
    return ids


def test_every_node_face_and_wire_shows_a_shape_the_same_way(win):
    from layerloom.core.graph import fmt_dims
    ids = _built(win, [("Input", {"shape": [28, 28, 1]}),
                       ("Conv2D", {"filters": 16, "kernel_size": 3, "padding": "same"}),
                       ("BatchNormalization", {}), ("ReLU", {}), ("Flatten", {}),
                       ("Dense", {"units": 10})])
    faces = {n: win.scene.nodes[n].summary for n in ids}
    assert fmt_dims((28, 28, 16)) == "28x28x16" and fmt_dims((12544,)) == "12544"
    for n in ids[1:4]:  # with a count (Conv, BN) or without (ReLU): the same form
        assert faces[n].split("  ")[0] == "28x28x16", faces
    assert faces[ids[4]] == "12544", faces
    assert not any("None" in t for t in faces.values()), faces
    labels = [e.label.text() for e in win.scene.edges.values()]
    assert sorted(labels) == sorted(["28x28x1", "28x28x16", "28x28x16", "28x28x16", "12544"])
    for e in win.scene.edges.values():  # Keras' form where there is room for it: the tooltip
        assert "(None, " in e.toolTip()
    shot(win.view, "a_shapes.png")


def test_a_huge_count_is_abbreviated_to_fit_the_node(win):
    from PySide6.QtGui import QFontMetrics
    from layerloom.app.canvas.canvas_items import NODE_W, NodeItem
    from layerloom.core.graph import fmt_count
    assert [fmt_count(n) for n in (320, 1200, 99_999, 2_500_000, 784_999_999_216)] == \
        ["320", "1.2k", "100k", "2.5M", "785G"]
    ids = _built(win, [("Input", {"shape": [784]}), ("Dense", {"units": 999_999_999}),
                       ("Dense", {"units": 784})])
    fm = QFontMetrics(NodeItem.small_font())
    for n in ids[1:]:
        face = win.scene.nodes[n].summary
        assert fm.horizontalAdvance(face) <= NODE_W - 16, face
        assert "..." not in face and "\u2026" not in face
    for n, dims, count in ((ids[1], "999999999", 785 * 999_999_999),
                           (ids[2], "784", 784 * 10**9)):
        whole = f"{dims}  {count:,} params"  # whole where it fits, else abbreviated
        fits = fm.horizontalAdvance(whole) <= NODE_W - 16
        assert win.scene.nodes[n].summary == (
            whole if fits else f"{dims}  {fmt_count(count)} params")
    assert win.scene.nodes[ids[1]].summary == "999999999  785G params"
    # the exact count stays a hover away
    assert "784,000,000,000" in win.scene.nodes[ids[2]].toolTip().replace("\u202f", ",")
    shot(win.view, "b_huge_count.png")


# -- c: confusion-matrix numbers within their cells --------------------------------------------
def _matrix_shown(win, qtbot, m):
    """Show counts m as a classifier's results; (font, texts, cell width) as painted."""
    from PySide6.QtCore import QPointF
    from layerloom.app.panels.results import count_texts
    img = np.zeros((28, 28, 1), np.float32)
    win._show_results({"matrix": m, "split": "test", "output": "class", "accuracy": 0.9,
                       "classes": [str(k) for k in range(len(m))], "samples": [(img, 0, 0)]})
    win.output_tabs.setCurrentWidget(win.results)
    qtbot.wait(200)
    vb = win.results.plot.getViewBox()
    cell = vb.mapViewToDevice(QPointF(1, 1)) - vb.mapViewToDevice(QPointF(0, 0))
    return count_texts(m, abs(cell.x()), abs(cell.y())) + (abs(cell.x()),)


def test_confusion_counts_too_wide_for_their_cells_are_abbreviated(win, qtbot):
    from PySide6.QtGui import QFontMetricsF
    from layerloom.app.panels.results import count_texts
    from layerloom.core.graph import fmt_count
    win.resize(1400, 860)
    qtbot.waitExposed(win)
    # 20 classes of a large test split: five- and six-digit counts in small cells
    rng = np.random.default_rng(1)
    m = rng.integers(0, 900, (20, 20))
    np.fill_diagonal(m, rng.integers(10_000, 250_000, 20))
    font, texts, w = _matrix_shown(win, qtbot, m)  # as shown: all fit, or none are drawn
    fm = QFontMetricsF(font)
    assert texts is None and w < 16 or all(
        fm.horizontalAdvance(t) <= w - 2 for row in texts for t in row), (w, texts)
    # cells 30 x 20 px: the six-digit counts do not fit whole, abbreviated they do
    font, texts = count_texts(m, 30, 20)
    fm = QFontMetricsF(font)
    assert fm.horizontalAdvance("888888") > 28 and fm.height() <= 20
    assert all(fm.horizontalAdvance(t) <= 28 for row in texts for t in row), texts
    big = divmod(int(m.argmax()), 20)
    assert texts[big[0]][big[1]] == fmt_count(m.max()) and texts[big[0]][big[1]][-1] == "k"
    assert count_texts(m, 3, 3)[1] is None  # a few pixels: colours only
    # a roomy cell shows every count whole
    font, texts = count_texts(np.array([[950, 12], [3, 871]]), 120, 60)
    assert texts == [["950", "12"], ["3", "871"]]
    # ten classes of a large split, as shown: six-digit counts abbreviated within their cells
    m = m[:10, :10] * 3
    font, texts, w = _matrix_shown(win, qtbot, m)
    fm = QFontMetricsF(font)
    assert texts is not None and fm.horizontalAdvance(str(m.max())) > w - 2, w
    assert all(fm.horizontalAdvance(t) <= w - 2 for row in texts for t in row), (w, texts)
    shot(win.results, "c_confusion.png")


# -- d, e: the Training panel while a run goes; the epoch time after Continue -----------------
def _fake_runs(monkeypatch):
    """train_process.start replaced: each run is handed the messages of the next list in
    `runs` (appended by the test), then holds until `release` is set; returns (runs, release,
    started)."""
    import queue
    import threading
    from layerloom.cli import train_process
    runs, release, started = [], threading.Event(), []

    class Held:
        exitcode = 0

        def is_alive(self):
            return True

        def join(self, timeout=None):
            pass

    class Feed(queue.Queue):
        def __init__(self, messages):
            super().__init__()
            self.messages = list(messages)

        def get(self, timeout=None):
            if self.messages:
                return self.messages.pop(0)
            if release.wait(timeout):
                return ("end", None)
            raise queue.Empty

    def start(project_dict, path, epochs, batch_size, device, resume=None, initial=None):
        started.append(resume)
        release.clear()
        return Held(), Feed(runs.pop(0)), threading.Event(), threading.Event()
    monkeypatch.setattr(train_process, "start", start)
    return runs, release, started


def _setup_fields(panel):
    return [panel.dataset, panel.optimizer.choice, panel.optimizer, panel.loss, panel.metrics,
            panel.callbacks, panel.epochs, panel.batch, panel.device, panel.mapping,
            panel.per_output, panel.loss_fields]


def test_the_training_fields_are_greyed_while_a_run_goes_and_the_epoch_time_is_whole(
        win, qtbot, monkeypatch):
    from guikit import EXAMPLES
    from layerloom.app.editing.document import Document
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    panel = win.training
    runs, release, started = _fake_runs(monkeypatch)
    logged = []
    panel.sigLog.connect(logged.append)
    assert all(w.isEnabled() for w in _setup_fields(panel))
    runs.append([("begin", (3, 10)),
                 ("epoch", {"epoch": 1, "seconds": 1.0, "loss": 0.5}),
                 ("epoch", {"epoch": 2, "seconds": 0.75, "loss": 0.4, "interrupted": True}),
                 ("done", {"stopped": True, "epochs": []}),
                 ("weights", {"w": 1}), ("state", {"position": (1, 4)})])
    panel.start_training()
    qtbot.waitUntil(lambda: any("Epoch 2" in line for line in logged), timeout=10_000)
    assert panel.worker is not None
    # while the run goes: greyed, and the user's edits cannot reach the project
    assert not any(w.isEnabled() for w in _setup_fields(panel)), [
        type(w).__name__ for w in _setup_fields(panel) if w.isEnabled()]
    shot(panel, "d_training_running.png")
    release.set()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=10_000)
    assert all(w.isEnabled() for w in _setup_fields(panel))
    shot(panel, "d_training_after.png")
    # Continue: epoch 2 goes on from its 4th batch; its time is the whole epoch's, 0.75 s
    # before the stop and 0.5 s after
    runs.append([("begin", (3, 10)),
                 ("epoch", {"epoch": 2, "seconds": 0.5, "loss": 0.3}),
                 ("epoch", {"epoch": 3, "seconds": 1.5, "loss": 0.2}),
                 ("done", {"stopped": False, "epochs": []})])
    panel.last_weights, panel.last_state = {"w": 1}, {"position": (1, 4)}
    panel.continue_training()
    qtbot.waitUntil(lambda: logged[-1].startswith("Epoch 3"), timeout=10_000)
    release.set()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=10_000)
    assert started[-1] is not None  # resumed
    lines = [line for line in logged if line.startswith("Epoch ")]
    assert "(1.25s" in lines[-2] and lines[-2].startswith("Epoch 2:"), lines
    assert "(1.50s)" in lines[-1], lines


# -- g: Epochs and Batch size near the top ------------------------------------------------------
def test_epochs_and_batch_size_come_right_after_the_dataset(win, qtbot):
    panel = win.training
    qtbot.waitExposed(win)
    ys = {name: w.mapTo(panel, w.rect().topLeft()).y() for name, w in (
        ("dataset", panel.dataset), ("epochs", panel.epochs), ("batch", panel.batch),
        ("optimizer", panel.optimizer.choice), ("loss", panel.loss),
        ("device", panel.device))}
    assert ys["dataset"] < ys["epochs"] < ys["batch"] < ys["optimizer"] < ys["loss"], ys
    assert ys["batch"] < ys["device"]


# -- f: Ctrl+Z with an inspector field focused ---------------------------------------------------
def test_ctrl_z_in_an_inspector_field_undoes_the_document_unless_it_holds_unsaved_typing(
        win, qtbot):
    from PySide6.QtCore import Qt
    win.activateWindow()
    qtbot.waitActive(win)
    inp, d1, d2 = __import__("guikit").build_mlp(win)
    win.scene.clearSelection()
    win.scene.nodes[d1].setSelected(True)
    assert win.inspector.node_id == d1
    field = win.inspector.widgets["units"]
    before = win.doc.graph.nodes[d1].params["units"]
    field.setFocus()
    qtbot.waitUntil(field.hasFocus)
    field.selectAll()
    qtbot.keyClicks(field, "64")
    qtbot.keyClick(field, Qt.Key_Return)
    assert win.doc.graph.nodes[d1].params["units"] == 64
    assert field.hasFocus()
    qtbot.keyClick(field, Qt.Key_Z, Qt.ControlModifier)  # the change saved: the document's
    assert win.doc.graph.nodes[d1].params["units"] == before
    assert field.text() == str(before)  # the field shows what the undo left
    qtbot.keyClick(field, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)  # and Redo
    assert win.doc.graph.nodes[d1].params["units"] == 64 and field.text() == "64"
    # typing not yet committed: Ctrl+Z undoes the typing, the document stays as it is
    index = win.doc.undo.index()
    qtbot.keyClick(field, Qt.Key_End)
    qtbot.keyClicks(field, "7")
    assert field.text() == "647"
    qtbot.keyClick(field, Qt.Key_Z, Qt.ControlModifier)
    assert field.text() == "64" and win.doc.undo.index() == index
    assert win.doc.graph.nodes[d1].params["units"] == 64
    # the name field too
    win.inspector.name.setFocus()
    qtbot.waitUntil(win.inspector.name.hasFocus)
    qtbot.keyClick(win.inspector.name, Qt.Key_Z, Qt.ControlModifier)
    assert win.doc.graph.nodes[d1].params["units"] == before


# -- i: the image-folder dialog starts where the images are, never in a missing Documents ------
def test_the_image_folder_dialog_starts_in_an_existing_folder_then_the_last_chosen(
        win, tmp_path, monkeypatch):
    from PySide6.QtCore import QStandardPaths
    from PySide6.QtWidgets import QFileDialog
    from layerloom.app.panels import data_panel
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(QStandardPaths, "writableLocation",
                        lambda where: str(home / "Documents"))  # not made: a fresh account
    monkeypatch.setattr(data_panel, "_last_image_folder", None, raising=False)
    monkeypatch.setattr(win, "recent_files", lambda: [])
    asked, answer = [], [""]

    def ask(parent, title, folder, *rest):
        asked.append(folder)
        return answer[0]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", ask)
    win.data.choose_folder()  # untitled, nothing recent: home, Documents being absent
    assert asked[-1] == str(home), asked
    pictures = tmp_path / "pictures" / "flowers"
    (pictures / "rose").mkdir(parents=True)
    answer[0] = str(pictures)
    # the Training panel's Dataset box -> image folder goes to the same dialog
    win._choose_data("images")
    assert asked[-1] == str(home)
    assert win.doc.project.dataset["path"] == str(pictures)
    # this project's image folder next time, and in another project the last one chosen
    answer[0] = ""
    win.data.choose_folder()
    assert asked[-1] == str(pictures)
    from layerloom.app.editing.document import Document
    win.set_document(Document())
    win.data.choose_folder()
    assert asked[-1] == str(pictures)
    assert all(os.path.isdir(a) for a in asked)


# -- h: one way to start, said the same way ------------------------------------------------------
def test_the_panels_buttons_say_and_do_what_the_toolbars_do(win, monkeypatch):
    panel = win.training
    pairs = [(panel.start, win.run_action), (panel.pause, win.pause_action),
             (panel.stop, win.stop_action), (panel.continue_run, win.continue_action)]
    for button, action in pairs:
        assert button.text() == action.text(), (button.text(), action.text())
    assert "F5" in panel.start.toolTip() and "F5" in win.run_action.toolTip()
    started = []
    monkeypatch.setattr(panel, "start_training", lambda resume=None: started.append(resume))
    win.run_action.trigger()
    panel.start.click()
    assert started == [None, None]  # the same run, from either
    shot(panel, "h_buttons.png")
