"""Graphs of hundreds of nodes in the editor (issue 30, item 4): Ctrl+F finds a node, a paste
of 200 nodes is undone in one step, an imported deep model opens laid out in rows of the
canvas's shape and fitted to it. Timings: bench/editor.py."""
import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from layerloom.app.editing.clipboard import copy_text
from layerloom.app.editing.document import Document
from layerloom.core.layout import auto_layout
from layerloom.project import loom as projectfile


def deep_project(n):
    """A project of an Input and n - 1 nodes: conv, batch norm and relu repeated, in one chain,
    laid out as the Keras import lays it out."""
    nodes = [{"id": "in", "type": "Input", "params": {"shape": [8, 8, 3]}}]
    kinds = [("Conv2D", {"filters": 4, "kernel_size": 3, "padding": "same"}),
             ("BatchNormalization", {}), ("Activation", {"activation": "relu"})]
    edges, prev = [], "in"
    for i in range(1, n):
        t, p = kinds[i % 3]
        nid = f"{t.lower()}_{i}"
        nodes.append({"id": nid, "type": t, "params": p})
        edges.append({"from": [prev, 0], "to": [nid, 0]})
        prev = nid
    project = projectfile.loads(json.dumps(
        {"format": "layerloom-project", "version": 1, "graph": {"nodes": nodes, "edges": edges},
         "dataset": {"source": "synthetic", "name": "spirals"},
         "training": {"loss": "mse"}}), strict=False)
    project.ui = {"positions": {k: list(p) for k, p in auto_layout(project.graph).items()}}
    return project


def shown(win, qtbot, n):
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    win.set_document(Document(deep_project(n)))
    for _ in range(5):
        QApplication.processEvents()
    return win.scene


def test_a_deep_model_opens_in_rows_and_fitted_to_the_canvas(win, qtbot):
    """Keras' ResNet50 opened at 100% showing 5 nodes of one row 177 nodes long."""
    scene = shown(win, qtbot, 177)
    view, vp = win.view, win.view.viewport().rect()
    r = scene.itemsBoundingRect()
    assert view.mapToScene(vp).boundingRect().contains(r)  # all of it in view
    assert len({round(i.pos().y()) for i in scene.nodes.values()}) >= 4  # rows, not one
    # the rows take the window's shape: the graph fills the canvas along both axes nearly
    s = view.transform().m11()
    fill_w, fill_h = r.width() * s / vp.width(), r.height() * s / vp.height()
    assert max(fill_w, fill_h) > 0.85 and min(fill_w, fill_h) > 0.5, (fill_w, fill_h)
    assert not view.minimap.isVisible()
    # Auto Layout in the window keeps the rows of the canvas's shape
    win.auto_layout()
    r2 = scene.itemsBoundingRect()
    assert 0.5 < (r2.width() / r2.height()) / (vp.width() / vp.height()) < 2


def test_ctrl_f_jumps_to_the_next_matching_node_and_selects_it(win, qtbot):
    scene = shown(win, qtbot, 177)
    qtbot.keyClick(win.view, Qt.Key_F, Qt.ControlModifier)
    box = win.find_box
    assert box is not None and box.isVisible() and box.hasFocus()
    qtbot.keyClicks(box, "BATCHNORM")  # the type, case aside
    qtbot.keyClick(box, Qt.Key_Return)
    found = [i.node_id for i in scene.selectedItems()]
    assert found == ["batchnormalization_1"]
    centre = win.view.mapToScene(win.view.viewport().rect().center())
    assert scene.nodes[found[0]].sceneBoundingRect().adjusted(-20, -20, 20, 20).contains(centre)
    assert win.view.transform().m11() >= 0.6  # readable where it was found
    vp = win.view.viewport().geometry()  # the box stays at the canvas's top right
    assert vp.contains(box.geometry()) and box.geometry().top() - vp.top() < 20
    qtbot.keyClick(box, Qt.Key_Return)
    assert [i.node_id for i in scene.selectedItems()] == ["batchnormalization_4"]
    # by name; the last match goes round to the first
    box.clear()
    qtbot.keyClicks(box, "activation_17")
    for want in ("activation_17", "activation_170", "activation_173", "activation_176",
                 "activation_17"):
        qtbot.keyClick(box, Qt.Key_Return)
        assert [i.node_id for i in scene.selectedItems()] == [want]
    # nothing matches: said, the selection kept
    box.clear()
    qtbot.keyClicks(box, "lstm")
    qtbot.keyClick(box, Qt.Key_Return)
    assert [i.node_id for i in scene.selectedItems()] == ["activation_17"]
    assert "No node matches 'lstm'" in win.statusBar().currentMessage()
    qtbot.keyClick(box, Qt.Key_Escape)
    assert not box.isVisible()


def test_a_paste_of_200_nodes_is_one_undo_step(win, qtbot):
    scene = shown(win, qtbot, 300)
    g = win.doc.graph
    # laid out again and undone first, as bench/editor.py does (there, with the scene's BSP
    # index, the undone paste's paint crashed the editor; this test alone did not crash)
    pos = win.doc.positions()
    scene.apply_positions({k: (y, x) for k, (x, y) in pos.items()})
    pos.update({k: [y, x] for k, (x, y) in pos.items()})
    win.auto_layout()
    win.doc.undo.undo()
    before = (list(g.nodes), sorted(e.key() for e in g.edges))
    ids = list(g.nodes)[:200]
    step = win.doc.undo.index()
    pasted = win.paste(copy_text(win.doc, ids))
    QApplication.processEvents()
    assert len(pasted) == 200 and len(g.nodes) == 500 and len(scene.nodes) == 500
    assert win.doc.undo.index() == step + 1
    assert sorted(i.node_id for i in scene.selectedItems()) == sorted(pasted)
    assert len(scene.edges) == len(g.edges) == len(before[1]) + 199
    win.undo_action.trigger()
    for _ in range(3):  # painted after it (Qt painted removed nodes once more, which then
        QApplication.processEvents()  # had no node to draw: a KeyError in their paint)
    assert (list(g.nodes), sorted(e.key() for e in g.edges)) == before
    assert len(scene.nodes) == 300 and len(scene.edges) == len(before[1])
    win.redo_action.trigger()
    QApplication.processEvents()
    assert len(g.nodes) == 500 and set(pasted) <= set(g.nodes)


def test_a_dragged_nodes_wires_follow_it_and_go_around_nodes_when_dropped(win, qtbot):
    """Dragging routes a node's wires quickly each frame (wire_route.quick); dropped, they are
    routed in full, and Undo puts the node back with every wire clear of the nodes."""
    from PySide6.QtCore import QEvent, QPointF
    from PySide6.QtGui import QMouseEvent
    from layerloom.app.canvas import wire_route
    from test_gui_wires import _behind
    scene = shown(win, qtbot, 30)
    view, vp = win.view, win.view.viewport()
    item = scene.nodes["conv2d_6"]
    target = scene.nodes["conv2d_15"].pos()  # dropped below a node of the same row, so that
    drop = QPointF(target.x() + 40, target.y() + 200)  # its wires pass other nodes
    start = item.pos() + QPointF(60, 12)
    move = drop - item.pos()

    def send(kind, scene_pos, button, buttons):
        p = view.mapFromScene(scene_pos)
        QApplication.sendEvent(vp, QMouseEvent(kind, QPointF(p), QPointF(vp.mapToGlobal(p)),
                                               button, buttons, Qt.NoModifier))
    calls = []
    quick = wire_route.quick

    def counting_quick():
        calls.append(1)
        return quick()
    wire_route.quick = counting_quick
    try:
        send(QEvent.MouseButtonPress, start, Qt.LeftButton, Qt.LeftButton)
        for i in range(1, 11):
            send(QEvent.MouseMove, start + move * i / 10, Qt.NoButton, Qt.LeftButton)
        send(QEvent.MouseButtonRelease, start + move, Qt.LeftButton, Qt.NoButton)
    finally:
        wire_route.quick = quick
    QApplication.processEvents()
    assert len(calls) == 10  # every move routed quickly
    assert abs(item.pos().x() - drop.x()) <= 20 and abs(item.pos().y() - drop.y()) <= 20
    wires = scene.wires_of("conv2d_6")
    dropped = [e.path() for e in wires]
    scene.reroute()  # what routing them in full gives: the same
    assert [e.path() for e in wires] == dropped
    assert any(e.routed for e in wires)
    assert win.doc.undo.undoText().startswith("Move")
    win.doc.undo.undo()
    assert not any(_behind(scene, e) for e in scene.edges.values())
