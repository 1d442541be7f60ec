"""The Problems tab's fix area follows the selected problem, and a residual block's usual
mistakes are fixed in one click (issue 31, item 4)."""
import os

import pytest

pytest.importorskip("pytestqt")

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.core.graph import Graph  # noqa: E402
from layerloom.project.loom import Project  # noqa: E402

SHOTS = os.environ.get("LAYERLOOM_SHOTS")  # a folder: the screenshots looked at


def shot(win, name):
    """The window, and its Problems tab alone (its fix buttons under the list)."""
    if SHOTS:
        from PySide6.QtWidgets import QApplication
        for _ in range(5):
            QApplication.processEvents()
        win.grab().save(os.path.join(SHOTS, name))
        panel = win.problems_panel
        panel.resize(panel.width(), max(panel.height(), 300))
        QApplication.processEvents()
        panel.grab().save(os.path.join(SHOTS, "panel_" + name))


def residual_doc(pad_b="same", skip=True):
    g = Graph()
    chain = [("x", "Input", {"shape": [28, 28, 1]}),
             ("conv_a", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": "same"}),
             ("conv_b", "Conv2D", {"filters": 8, "kernel_size": 3, "padding": pad_b}),
             ("add", "Add", {}), ("flat", "Flatten", {}),
             ("out", "Dense", {"units": 10, "activation": "softmax"})]
    for k, (nid, typ, params) in enumerate(chain):
        g.add_node(typ, params, id=nid)
        if k:
            g.connect(chain[k - 1][0], 0, nid, 0)
    if skip:
        g.connect("conv_a", 0, "add", 1)
    p = Project(g)
    p.training["loss"] = {"out": {"name": "sparse_categorical_crossentropy", "weight": 1.0,
                                  "from_logits": False}}
    p.ui = {"positions": {nid: [0, 120 * k] for k, (nid, _, _) in enumerate(chain)}}
    return Document(p)


def lines(win):
    return [win.problems.item(i).text() for i in range(win.problems.count())]


def select(win, text):
    (row,) = [i for i, line in enumerate(lines(win)) if text in line]
    win.problems.setCurrentRow(row)


def test_the_fix_area_shows_the_selected_problems_fixes_not_another_ones(win):
    from layerloom.app.editing.commands import AddNodeCmd
    win.set_document(residual_doc(skip=False))
    win.doc.push(AddNodeCmd(win.doc, "Dense", (600, 0), {"units": 3}, "stray"))
    panel = win.problems_panel
    select(win, "'stray' (Dense)")
    assert [b.text() for b in panel.fix_buttons][-1] == "Delete 'stray'"
    assert panel.fix_label.text() == "Fix 'stray':"
    select(win, "'add'")
    assert [b.text() for b in panel.fix_buttons][0] == "Connect 'conv_a' to 'add'"
    assert panel.fix_label.text() == "Fix 'add':"
    shot(win, "problems_follow_add.png")
    # a problem without a standard fix says so; it never shows another problem's fixes
    panel.set_problems([("Data: no dataset chosen", None, None)] +
                       [(panel.list.item(i).text(), panel.list.item(i).data(256), None)
                        for i in range(panel.list.count())][:1], win.doc.graph)
    panel.list.setCurrentRow(0)
    assert panel.fix_buttons == []
    assert panel.fix_label.text() == "No standard fix for this problem."
    # the selection stays on the same problem when the list is redone after an edit
    win.set_document(residual_doc(skip=False))
    win.doc.push(AddNodeCmd(win.doc, "Dense", (600, 0), {"units": 3}, "stray"))
    select(win, "'add'")
    win.doc.push(AddNodeCmd(win.doc, "Dense", (600, 200), {"units": 3}, "another"))
    assert "'add'" in win.problems.currentItem().text()
    assert [b.text() for b in win.problems_panel.fix_buttons][0] == "Connect 'conv_a' to 'add'"


def test_an_add_missing_its_skip_is_connected_in_one_click(win):
    win.set_document(residual_doc(skip=False))
    select(win, "'add'")
    win.problems_panel.fix_buttons[0].click()
    assert [(e.src, e.dst_port) for e in win.doc.graph.in_edges("add")] == \
        [("conv_b", 0), ("conv_a", 1)]
    assert not [line for line in lines(win) if "'add'" in line]
    win.doc.undo.undo()
    assert len(win.doc.graph.in_edges("add")) == 1


def test_add_inputs_of_26_and_28_offer_padding_same_cropping_and_zero_padding(win):
    win.set_document(residual_doc(pad_b="valid"))
    select(win, "'add'")
    labels = [b.text() for b in win.problems_panel.fix_buttons]
    assert labels[:3] == ["Set padding same on 'conv_b'",
                          "Insert Cropping2D [[1, 1], [1, 1]] before 'add'",
                          "Insert ZeroPadding2D [[1, 1], [1, 1]] before 'add'"], labels
    shot(win, "problems_add_sizes.png")
    win.problems_panel.fix_buttons[1].click()
    (crop,) = [n for n in win.doc.graph.nodes.values() if n.type == "Cropping2D"]
    assert crop.params["cropping"] == ((1, 1), (1, 1)) or \
        [list(c) for c in crop.params["cropping"]] == [[1, 1], [1, 1]]
    assert not [line for line in lines(win) if "'add'" in line]
    win.doc.undo.undo()
    select(win, "'add'")
    win.problems_panel.fix_buttons[0].click()
    assert win.doc.graph.nodes["conv_b"].params["padding"] == "same"
    assert not [line for line in lines(win) if "'add'" in line]
