"""Dark mode (issue 19, item 18): the canvas, nodes, wires and plots follow the system
palette (they were hard-coded light), and LAYERLOOM_THEME forces either."""
import os

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QColor, QPalette  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from layerloom.app.look import theme  # noqa: E402
from layerloom.app.editing.document import Document  # noqa: E402
from guikit import EXAMPLES  # noqa: E402


def node_pixel(win, qtbot, nid):
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    qtbot.wait(50)
    node = win.scene.nodes[nid]
    inside = node.sceneBoundingRect().bottomRight() + type(node.pos())(-8, -3)  # the body
    img = win.view.viewport().grab().toImage()
    at = win.view.mapFromScene(inside)
    return QColor(img.pixel(at.x(), at.y())), win.view.backgroundBrush().color()


def test_a_dark_system_palette_gives_a_dark_canvas(make_window, qtbot, monkeypatch):
    monkeypatch.delenv("LAYERLOOM_THEME", raising=False)
    app = QApplication.instance()
    old = app.palette()
    assert not theme.is_dark()
    light_body, light_bg = node_pixel(make_window(), qtbot, "hidden_1")
    assert light_bg == QColor(theme.LIGHT["canvas"]) and light_body.lightness() > 200
    dark = QPalette(old)
    dark.setColor(QPalette.Window, QColor("#202225"))
    dark.setColor(QPalette.Base, QColor("#1a1c1f"))
    app.setPalette(dark)
    try:
        assert theme.is_dark()
        body, bg = node_pixel(make_window(), qtbot, "hidden_1")
        assert bg == QColor(theme.DARK["canvas"]) and body.lightness() < 80
    finally:
        app.setPalette(old)


def test_layerloom_theme_forces_dark(monkeypatch):
    monkeypatch.setenv("LAYERLOOM_THEME", "dark")
    assert theme.is_dark() and theme.color("canvas") == QColor(theme.DARK["canvas"])
    monkeypatch.setenv("LAYERLOOM_THEME", "light")
    assert not theme.is_dark()


def test_view_theme_switches_the_open_project_between_light_and_dark(win, qtbot, monkeypatch):
    """The second trial: dark mode existed only as an environment variable."""
    from layerloom.app.editing.commands import SetParamsCmd
    monkeypatch.delenv("LAYERLOOM_THEME", raising=False)
    app = QApplication.instance()
    style, palette = app.style().name(), QPalette(app.palette())
    try:
        win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
        win.doc.push(SetParamsCmd(win.doc, "hidden_1", {"units": 9}))
        scene, panel = win.scene, win.training
        assert win.theme_actions["system"].isChecked()
        win.theme_actions["dark"].trigger()
        assert theme.is_dark() and win.theme_actions["dark"].isChecked()
        assert win.view.backgroundBrush().color() == QColor(theme.DARK["canvas"])
        assert app.palette().color(QPalette.Window).lightness() < 128
        assert win.doc.graph.nodes["hidden_1"].params["units"] == 9  # the project as it was
        assert win.doc.undo.canUndo() and win.windowTitle().endswith("* - Layerloom")
        assert win.scene is scene and win.training is panel  # restyled in place, not rebuilt
        label = next(iter(win.scene.edges.values())).label
        assert label.brush().color() == QColor(theme.DARK["label"])
        assert win.training.plots.backgroundBrush().color() == QColor(theme.DARK["plot_bg"])
        assert theme.DARK["subtext"] in win.training.summary.styleSheet()
        win.theme_actions["system"].trigger()
        assert not theme.is_dark()
        assert win.view.backgroundBrush().color() == QColor(theme.LIGHT["canvas"])
        assert app.style().name() == style  # the desktop's own style again
        win.doc.undo.undo()
        assert win.doc.graph.nodes["hidden_1"].params["units"] != 9
    finally:
        os.environ.pop("LAYERLOOM_THEME", None)
        app.setStyle(style)
        app.setPalette(palette)
