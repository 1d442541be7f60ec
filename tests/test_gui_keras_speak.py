"""Issue 31, building and reading (items 1, 2, 3 and parts of 7): number fields refuse bad input
with the reason, quick-add in Keras' order, a run that cannot start says so before and when it
is started, dialogs in the project's folder (pytest-qt, offscreen)."""
import os

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from guikit import EXAMPLES, build_mlp  # noqa: E402


def _select(win, nid):
    win.scene.clearSelection()
    win.scene.nodes[nid].setSelected(True)
    assert win.inspector.node_id == nid


def _type(field, text):
    field.setText(text)
    field.editingFinished.emit()


# -- item 2: number fields -------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["-5", "1e12", "99999999999", "abc", "2.5", ""])
def test_an_integer_field_refuses_bad_input_with_the_reason(win, bad):
    inp, d1, d2 = build_mlp(win)
    _select(win, d1)
    units = win.inspector.widgets["units"]
    _type(units, bad)
    assert win.doc.graph.nodes[d1].params["units"] == 32  # the old value kept
    error = win.inspector.form.errors["units"]
    assert not error.isHidden() and "expected a positive integer" in error.text()
    assert units.text() == bad  # what was typed stays, to be mended (as text fields do)
    assert not win.doc.undo.canUndo() or win.doc.undo.undoText() != "Set units"
    _type(units, "64")  # an in-range value still works, and clears the reason
    assert win.doc.graph.nodes[d1].params["units"] == 64 and error.isHidden()
    _type(units, "1e3")  # as Keras users write sizes
    assert win.doc.graph.nodes[d1].params["units"] == 1000


def test_a_float_field_takes_keras_floats_and_refuses_bad_ones(win):
    nid = win.add_at_centre("Dropout")
    _select(win, nid)
    rate = win.inspector.widgets["rate"]
    _type(rate, "1e-3")
    assert win.doc.graph.nodes[nid].params["rate"] == 0.001
    for bad in ("-5", "abc", "1.5"):
        _type(rate, bad)
        assert win.doc.graph.nodes[nid].params["rate"] == 0.001
        assert "expected a number" in win.inspector.form.errors["rate"].text()


def test_an_optional_integer_field_is_unset_when_emptied(win):
    nid = win.add_at_centre("MaxPooling1D")  # strides=None: the pool size
    _select(win, nid)
    strides = win.inspector.widgets["strides"]
    _type(strides, "2")
    assert win.doc.graph.nodes[nid].params["strides"] == 2
    _type(strides, "")
    assert win.doc.graph.nodes[nid].params["strides"] is None
    assert strides.placeholderText() == "default"
    _type(strides, "-1")
    assert win.doc.graph.nodes[nid].params["strides"] is None
    assert "expected" in win.inspector.form.errors["strides"].text()


def test_epochs_and_batch_size_refuse_bad_input_with_the_reason(win):
    t = win.training
    for field, key in ((t.epochs, "epochs"), (t.batch, "batch_size")):
        before = win.doc.project.training[key]
        for bad in ("-5", "abc", "99999999999"):
            _type(field, bad)
            assert win.doc.project.training[key] == before
            assert "expected an integer from 1 to" in t.setup_error.text()
            assert field.value() == before
        _type(field, "7")
        assert win.doc.project.training[key] == 7 and t.setup_error.text() == ""


# -- item 3: quick-add ---------------------------------------------------------------------

def test_the_tab_box_adds_in_keras_order(win, qtbot):
    box = win.view.quick_add()
    box.setText("embedding 10000 32")
    qtbot.keyClick(box, Qt.Key_Return)
    node = win.doc.graph.nodes[win.selected_ids()[0]]
    assert node.type == "Embedding"
    assert (node.params["input_dim"], node.params["output_dim"]) == (10000, 32)


def test_a_refused_entry_keeps_its_text_selected_with_the_reason(win, qtbot):
    box = win.view.quick_add()
    box.setText("dense 64 sideways")
    qtbot.keyClick(box, Qt.Key_Return)
    assert not win.doc.graph.nodes
    assert box.isVisible() and box.selectedText() == "dense 64 sideways"
    assert "sideways" in box.toolTip() and "name=value" in box.toolTip()
    assert "Not added" in win.statusBar().currentMessage()


def test_quick_add_with_nothing_selected_never_covers_a_node(win, qtbot):
    """The Tab box over a node, and the palette's Enter (at the view's centre) five times:
    every node on free canvas."""
    from layerloom.app.canvas.canvas_items import NODE_W
    first = win.add_at_centre("Dense")
    win.scene.clearSelection()
    at = win.view.mapFromScene(win.scene.nodes[first].sceneBoundingRect().center())
    box = win.view.quick_add(at)
    box.setText("dense 8")
    qtbot.keyClick(box, Qt.Key_Return)
    for _ in range(5):
        win.scene.clearSelection()
        win.palette.search.setText("dropout 0.2")
        qtbot.keyClick(win.palette.search, Qt.Key_Return)
    pos = list(win.doc.positions().values())
    assert len(pos) == 7
    for i, (x, y) in enumerate(pos):
        for (u, v) in pos[i + 1:]:
            assert not (abs(x - u) < NODE_W and abs(y - v) < 60), pos


def test_the_palette_says_when_nothing_matches(win, qtbot):
    win.palette.search.setText("zzzz")
    assert win.palette.visible_types() == []
    assert win.palette.nothing.isVisible() and "zzzz" in win.palette.nothing.text()
    qtbot.keyClick(win.palette.search, Qt.Key_Return)
    assert not win.doc.graph.nodes
    win.palette.search.setText("dense")
    assert not win.palette.nothing.isVisible()


def test_the_palette_adds_in_keras_order_and_says_a_refusal(win, qtbot):
    win.palette.search.setText("conv2d 16 3 same relu")
    qtbot.keyClick(win.palette.search, Qt.Key_Return)
    node = win.doc.graph.nodes[win.selected_ids()[0]]
    assert (node.type, node.params["filters"], node.params["kernel_size"],
            node.params["padding"], node.params["activation"]) == \
        ("Conv2D", 16, (3, 3), "same", "relu")
    win.palette.search.setText("dense 64 colour=red")
    qtbot.keyClick(win.palette.search, Qt.Key_Return)
    assert len(win.doc.graph.nodes) == 1
    assert win.palette.search.selectedText() == "dense 64 colour=red"
    assert "no parameter 'colour'" in win.palette.search.toolTip()


def _chain_of(win):
    """The graph's nodes in the order its single path runs, with their types."""
    g = win.doc.graph
    targets = {e.dst for e in g.edges}
    order = [n for n in g.nodes if n not in targets]
    assert len(order) == 1, g.edges
    while True:
        nxt = [e.dst for e in g.edges if e.src == order[-1]]
        if not nxt:
            return [g.nodes[n].type for n in order]
        order.append(nxt[0])


MLP_LINE = "input 28 28; flatten; dense 128 relu; dropout 0.2; dense 10 softmax"


def test_the_tab_box_adds_a_chain_typed_in_one_line_in_one_undo_step(win, qtbot):
    box = win.view.quick_add()
    box.setText(MLP_LINE)
    qtbot.keyClick(box, Qt.Key_Return)
    assert _chain_of(win) == ["Input", "Flatten", "Dense", "Dropout", "Dense"]
    last = win.doc.graph.nodes[win.selected_ids()[0]]
    assert (last.type, last.params["units"], last.params["activation"]) == \
        ("Dense", 10, "softmax")
    pos = list(win.doc.positions().values())
    assert len({tuple(p) for p in pos}) == 5  # no node on another
    win.doc.undo.undo()
    assert not win.doc.graph.nodes  # one step
    win.doc.undo.redo()
    assert len(win.doc.graph.nodes) == 5


def test_the_palette_adds_a_chain_after_the_selected_node(win, qtbot):
    win.palette.search.setText("input 8")
    qtbot.keyClick(win.palette.search, Qt.Key_Return)
    win.palette.search.setText("dense 16 relu; dense 1")
    qtbot.keyClick(win.palette.search, Qt.Key_Return)
    assert _chain_of(win) == ["Input", "Dense", "Dense"]
    assert win.doc.graph.nodes[win.selected_ids()[0]].params["units"] == 1
    win.doc.undo.undo()
    assert _chain_of(win) == ["Input"]


def test_a_chain_with_a_refused_part_adds_nothing_and_names_the_part(win, qtbot):
    box = win.view.quick_add()
    box.setText("input 28 28; dense sideways; dense 10")
    qtbot.keyClick(box, Qt.Key_Return)
    assert not win.doc.graph.nodes
    assert box.isVisible() and "layer 2 of 3" in box.toolTip()
    win.palette.search.setText("input 4; blorp")
    qtbot.keyClick(win.palette.search, Qt.Key_Return)
    assert not win.doc.graph.nodes
    assert "blorp" in win.statusBar().currentMessage()


# -- item 1: a run that cannot start ----------------------------------------------------------

def _huge_mlp(win):
    inp, d1, d2 = build_mlp(win)
    _select(win, d1)
    _type(win.inspector.widgets["units"], "999999999")
    assert win.doc.graph.nodes[d1].params["units"] == 999_999_999
    return d1


def _problems(win):
    return [win.problems.item(i).text() for i in range(win.problems.count())]


def test_the_memory_a_model_needs_is_a_problem_before_run(win, qtbot, monkeypatch):
    monkeypatch.setattr(win.training, "device_memory",
                        lambda: (8 * 2**30, 2 * 2**30, "Test GPU"))
    d1 = _huge_mlp(win)
    memory = [line for line in _problems(win) if line.startswith("Memory")]
    assert len(memory) == 1 and "needs about" in memory[0] and "Test GPU has 8.0 GiB" in memory[0]
    item = next(win.problems.item(i) for i in range(win.problems.count())
                if win.problems.item(i).text().startswith("Memory"))
    assert item.data(Qt.UserRole) == d1  # a click leads to the node that holds the most
    _type(win.inspector.widgets["units"], "32")
    assert not [line for line in _problems(win) if line.startswith("Memory")]


def test_the_devices_found_give_the_memory_to_compare_with(win, qtbot):
    qtbot.waitUntil(lambda: win.training.choices is not None, timeout=120_000)
    if not win.training.choices:
        pytest.skip("no OpenCL device here")
    have, one, name = win.training.device_memory()
    assert have >= one > 0 and name


def test_a_run_that_cannot_start_says_so_in_a_dialog(win, qtbot, monkeypatch):
    from layerloom.app.editing.document import Document
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    monkeypatch.setattr(win.training, "device_memory",
                        lambda: (8 * 2**30, 2 * 2**30, "Test GPU"))
    _select(win, "hidden_2")
    _type(win.inspector.widgets["units"], "999999999")
    win.run_action.trigger()
    assert win.training.worker is None  # refused before a process was started
    box = win.training.failure
    assert box is not None and box.isVisible()
    assert box.windowTitle() == "Training could not start"
    assert "needs about" in box.text() and "Test GPU" in box.text()
    assert "needs about" in win.log.toPlainText()
    box.accept()
    assert win.training.failure is None


def test_a_start_that_fails_in_the_training_process_says_so_in_a_dialog(win, qtbot):
    """A device that is not there: the training process fails at once."""
    from layerloom.app.editing.document import Document
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    qtbot.waitUntil(lambda: win.training.choices is not None, timeout=120_000)
    win.training.device.addItem("9:9 nowhere", "9:9")
    win.training.device.setCurrentIndex(win.training.device.count() - 1)
    win.run_action.trigger()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=120_000)
    box = win.training.failure
    assert box is not None and box.isVisible()
    assert box.windowTitle() == "Training could not start"
    assert "9:9" in box.text() or "device" in box.text().lower()


# -- item 7: dialogs start in the project's folder; Continue while paused ---------------------

def test_file_dialogs_start_in_the_projects_folder(win, tmp_path, monkeypatch):
    import shutil
    from PySide6.QtWidgets import QFileDialog
    asked = []

    def record(parent, title, start="", *args, **kw):
        asked.append((title, start))
        return "", ""
    monkeypatch.setattr(QFileDialog, "getOpenFileName", record)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", record)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda parent, title, start="", *a: asked.append((title, start)) or "")
    monkeypatch.chdir(tmp_path)  # the launch folder: no dialog may start here
    folder = tmp_path / "projects"
    folder.mkdir()
    shutil.copy(os.path.join(EXAMPLES, "spirals.loom"), folder / "spirals.loom")
    assert win.open_path(str(folder / "spirals.loom"))
    win.open_dialog()
    win.import_dialog()
    win.predict_dialog()
    win.predict_folder_dialog()
    win.save_as()
    assert [t for t, _ in asked] == ["Open project", "Import a model", "Predict for a file",
                                     "Predict for a folder of images", "Save project"]
    for title, start in asked:
        assert os.path.dirname(start) == str(folder) or start == str(folder), (title, start)


def test_continue_is_enabled_while_paused(win, qtbot):
    from guikit import start_spirals
    start_spirals(win, qtbot, epochs=200)
    qtbot.mouseClick(win.training.pause, Qt.LeftButton)
    assert win.training.worker.paused
    assert win.training.continue_run.isEnabled() and win.continue_action.isEnabled()
    win.continue_action.trigger()  # resumes
    assert not win.training.worker.paused
    assert not win.continue_action.isEnabled()
    win.pause_action.trigger()
    assert win.continue_action.isEnabled() and win.training.continue_run.isEnabled()
    qtbot.mouseClick(win.training.continue_run, Qt.LeftButton)
    assert not win.training.worker.paused
    win.training.stop_training()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=120_000)


def test_a_chain_typed_while_training_runs_changes_nothing(win, qtbot):
    """Review: the chain's undo macro went onto the stack while the document was locked (an
    empty step, the title marked modified)."""
    win.doc.set_locked(True)
    count, dirty = win.doc.undo.count(), win.doc.dirty
    win.palette.search.setText("dense 4; dense 2")
    qtbot.keyClick(win.palette.search, Qt.Key_Return)
    assert not win.doc.graph.nodes
    assert win.doc.undo.count() == count and win.doc.dirty == dirty
    win.doc.set_locked(False)


def test_a_chain_whose_first_layer_cannot_be_added_leaves_no_undo_step(win, monkeypatch):
    count = win.doc.undo.count()
    monkeypatch.setattr(win.scene, "add_node", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("no room")))
    assert win.add_chain([("Dense", {"units": 4}), ("Dense", {"units": 2})]) is None
    assert win.doc.undo.count() == count and not win.doc.graph.nodes
