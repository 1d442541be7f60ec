"""The canvas's wires and their shape labels: routed around nodes, apart from each other, and
the graph flowing top to bottom (split from test_gui_editing.py), pytest-qt, offscreen."""
import os

import pytest

pytest.importorskip("pytestqt")


from PySide6.QtCore import QRectF  # noqa: E402

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.project import loom as projectfile  # noqa: E402
from guikit import EXAMPLES  # noqa: E402


def test_shape_labels_never_run_under_a_port_and_counts_are_not_cut(win):
    """Issue 19, item 12: "(None, 28, 28, 1)" between two close nodes ran under the ports
    ("lone, 28, 28,") and "(None, 26, 26, 32)  320 params" was cut to "320 para"."""
    from PySide6.QtGui import QFontMetrics
    from layerloom.app.canvas.canvas_items import NODE_W, NodeItem
    win.set_document(Document.open(os.path.join(EXAMPLES, "fashion_mnist_cnn.loom")))
    edge = next(e for e in win.scene.edges.values() if e.edge.dst == "conv_1")
    a = win.scene.nodes[edge.edge.src].port_pos(True, 0)
    b = win.scene.nodes["conv_1"].port_pos(False, 0)
    r = edge.label.mapRectToScene(edge.label.boundingRect())
    assert edge.label.text() == "28x28x1" and "(None, 28, 28, 1)" in edge.toolTip()
    assert r.left() > a.x() + 6 and r.right() < b.x() - 6
    node = win.scene.nodes["conv_1"]
    fm = QFontMetrics(NodeItem.small_font())
    assert node.summary == "26x26x32  320 params"
    assert fm.horizontalAdvance(node.summary) <= NODE_W - 16



def _behind(scene, edge_item, n=300):
    """The nodes an edge's drawn path passes inside (its two ends' nodes count only away from
    the ports)."""
    path = edge_item.path()
    rects = scene.node_rects()
    hit = set()
    for i in range(n + 1):
        t = i / n
        p = path.pointAtPercent(t)
        for nid, (l, tp, r, b) in rects.items():
            ends = nid in (edge_item.edge.src, edge_item.edge.dst)
            if ends and (t < 0.08 or t > 0.92):
                continue
            if l + 1 < p.x() < r - 1 and tp + 1 < p.y() < b - 1:
                hit.add(nid)
    return hit


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".loom")))
def test_no_wire_runs_behind_a_node_in_the_examples(win, name):
    """Issue 19, item 12: the CNN's wire back to its second row passed behind the nodes between;
    a wire that would pass a node goes around it."""
    win.set_document(Document.open(os.path.join(EXAMPLES, name)))
    for e in win.scene.edges.values():
        assert not _behind(win.scene, e), f"{e.edge.src} -> {e.edge.dst} runs behind a node"
    win.auto_layout()
    for e in win.scene.edges.values():
        assert not _behind(win.scene, e), f"after Auto Layout: {e.edge.src} -> {e.edge.dst}"


def test_a_node_moved_into_a_wires_way_makes_it_go_around(win):
    """A wire that does not touch the moved node is routed again when the move ends, and put
    back on its curve by Undo."""
    from layerloom.app.editing.commands import MoveNodesCmd
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    sc = win.scene
    e = next(iter(sc.edges.values()))
    assert not e.routed
    src, dst = sc.nodes[e.edge.src], sc.nodes[e.edge.dst]
    # a third node put right between the two ends
    other = next(nid for nid in sc.nodes if nid not in (e.edge.src, e.edge.dst))
    a = src.pos()
    old = (sc.nodes[other].pos().x(), sc.nodes[other].pos().y())
    dst.setPos(a.x() + 600, a.y())
    sc.reroute()
    mid = (round((a.x() + 300) / 20) * 20, round(a.y() / 20) * 20)
    win.doc.push(MoveNodesCmd(win.doc, {other: (old, mid)}, sc.apply_positions))
    assert e.routed and not _behind(sc, e)
    win.doc.undo.undo()
    assert not e.routed


def test_the_graph_can_flow_top_to_bottom_and_back(win, tmp_path):
    """Issue 19, item 13: View > Flow Top to Bottom puts inputs on the top edge and outputs on
    the bottom edge, lays the graph out in rows going down and routes the wires for it; one
    undo step; saved in the project's ui section and reopened so."""
    win.set_document(Document.open(os.path.join(EXAMPLES, "fashion_mnist_cnn.loom")))
    sc = win.scene
    before = {k: list(v) for k, v in win.doc.positions().items()}
    win.flow_action.trigger()
    assert win.flow_action.isChecked() and sc.flow == "down"
    assert win.doc.project.ui["flow"] == "down"
    item = sc.nodes["conv_1"]
    top, bottom = item.port_pos(False, 0), item.port_pos(True, 0)
    assert top.y() == item.pos().y() and bottom.y() == item.pos().y() + item.h
    assert top.x() == bottom.x() == item.pos().x() + 85
    chain = ["image", "conv_1", "pool_1", "conv_2", "pool_2", "flatten", "dense", "dropout",
             "class"]
    ys = [win.doc.positions()[n][1] for n in chain]
    assert ys == sorted(ys) and len(set(ys)) == len(ys), "one row per layer, going down"
    assert len({win.doc.positions()[n][0] for n in chain}) == 1, "a chain is one column"
    for e in sc.edges.values():
        assert not _behind(sc, e)
        r = e.label.mapRectToScene(e.label.boundingRect())
        s, d = sc.nodes[e.edge.src], sc.nodes[e.edge.dst]
        assert r.top() >= s.pos().y() + s.h - 1 and r.bottom() <= d.pos().y() + 1, \
            "the shape label between the two nodes"
    # a layer added after the selection goes below it, wired
    sc.clearSelection()
    sc.nodes["class"].setSelected(True)
    nid = win.add_from_palette("Dense")
    assert win.doc.positions()[nid][1] > win.doc.positions()["class"][1]
    assert any(e.src == "class" and e.dst == nid for e in win.doc.graph.edges)
    win.doc.undo.undo()
    path = tmp_path / "down.loom"
    path.write_text(projectfile.dumps(win.doc.project))
    assert projectfile.load(str(path)).ui["flow"] == "down"
    win.set_document(Document.open(str(path)))
    assert win.scene.flow == "down" and win.flow_action.isChecked()
    win.doc.undo.clear()
    win.set_document(Document.open(os.path.join(EXAMPLES, "fashion_mnist_cnn.loom")))
    assert win.scene.flow == "right" and not win.flow_action.isChecked()
    win.flow_action.trigger()
    win.flow_action.trigger()  # and back: the nodes where they were (the third trial: one row)
    assert win.scene.flow == "right"
    assert {k: list(v) for k, v in win.doc.positions().items()} == before
    win.doc.undo.undo()
    assert win.scene.flow == "down"
    win.doc.undo.redo()
    assert win.scene.flow == "right"
    win.doc.undo.undo()
    win.doc.undo.undo()  # flow and layout in one step
    assert win.scene.flow == "right" and "flow" not in win.doc.project.ui
    assert {k: list(v) for k, v in win.doc.positions().items()} == before
    item = win.scene.nodes["conv_1"]
    assert item.port_pos(False, 0).x() == item.pos().x()


def test_a_node_body_holds_its_name_and_shape_rows(win):
    """The node's second text row (shape, parameter count) was drawn under its body's edge."""
    from layerloom.app.canvas.canvas_items import HEADER_H, ROW_H
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    for item in win.scene.nodes.values():
        assert item.h >= HEADER_H + 2 * ROW_H + 4


@pytest.mark.parametrize("flow", ["right", "down"])
@pytest.mark.parametrize("name", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".loom")))
def test_wire_labels_overlap_no_node_and_no_other_label(win, name, flow):
    """The second trial: two labels drawn on each other where wires shared a gap, and labels
    on the curves of a top-to-bottom graph."""
    win.set_document(Document.open(os.path.join(EXAMPLES, name)))
    if win.scene.flow != flow:
        win.set_flow(flow)
    else:
        win.auto_layout()
    sc = win.scene
    boxes = {k: e.label.mapRectToScene(e.label.boundingRect()) for k, e in sc.edges.items()}
    for k, r in boxes.items():
        for nid, (left, top, right, bottom) in sc.node_rects().items():
            assert not r.intersects(QRectF(left, top, right - left, bottom - top)), (k, nid)
        for j, other in boxes.items():
            assert j == k or not r.intersects(other), (k, j)


def test_labels_of_wires_sharing_a_gap_are_moved_apart(win):
    """The second trial dropped the CNN's last layer where two routed wires then ran through
    one gap with their labels on each other."""
    win.set_document(Document.open(os.path.join(EXAMPLES, "fashion_mnist_cnn.loom")))
    sc = win.scene
    for spot in ((460, -100), (700, -160), (1180, -160)):  # each made two labels collide
        sc.apply_positions({"class": spot})
        boxes = {k: e.label.mapRectToScene(e.label.boundingRect()) for k, e in sc.edges.items()}
        for k, r in boxes.items():
            for j, other in boxes.items():
                assert j == k or not r.intersects(other), (spot, k, j)
