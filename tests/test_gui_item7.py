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
