"""Projects in the editor: save and open, autosave and recovery, screenshots, and how Open fits
the graph to the canvas (pytest-qt, offscreen)."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QAction, QImage  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.project import loom as projectfile  # noqa: E402
from guikit import EXAMPLES, open_shown  # noqa: E402


@pytest.mark.slow
def test_save_reopen_and_run_headless(win, tmp_path, make_window):
    doc = Document.open(os.path.join(EXAMPLES, "sine.loom"))
    win.set_document(doc)
    win.doc.push(__import__("layerloom.app.editing.commands", fromlist=["SetParamsCmd"]).SetParamsCmd(
        win.doc, "hidden_1", {"units": 24}))
    path = str(tmp_path / "edited.loom")
    assert win._save_to(path)
    assert win.windowTitle() == "edited.loom - Layerloom"
    again = make_window()
    assert again.open_path(path)
    assert projectfile.to_dict(again.doc.project) == projectfile.to_dict(win.doc.project)
    r = subprocess.run([sys.executable, "-m", "layerloom.app", "--run", path, "--epochs", "1", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_screenshot_is_not_blank(tmp_path):
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    r = subprocess.run([sys.executable, "-m", "layerloom.app", os.path.join(EXAMPLES, "multitask.loom"),
                        "--screenshot", str(out), "--size", "1000x700"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    img = QImage(str(out))
    assert (img.width(), img.height()) == (1000, 700)
    colors = {img.pixel(x, y) for x in range(0, 1000, 7) for y in range(0, 700, 7)}
    assert len(colors) > 30
    r = subprocess.run([sys.executable, "-m", "layerloom.app", str(tmp_path / "missing.loom"),
                        "--screenshot", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "no such file" in r.stderr


@pytest.mark.slow
def test_autosave_and_recovery_after_a_crash(win, make_window, tmp_path):
    path = str(tmp_path / "p.loom")
    win.set_document(Document.open(os.path.join(EXAMPLES, "sine.loom")))
    assert win._save_to(path)
    saved = open(path, "rb").read()
    assert not win.doc.autosave()  # nothing unsaved: nothing written
    from layerloom.app.editing.commands import SetParamsCmd
    win.doc.push(SetParamsCmd(win.doc, "hidden_1", {"units": 5}))
    win.autosave()
    assert os.path.exists(path + ".autosave")
    assert open(path, "rb").read() == saved  # the project file itself is untouched
    # "crash": the window goes away without saving; the next window offers recovery
    crashed = make_window()
    crashed.ask_recover = lambda p, a: True
    assert crashed.open_path(path)
    assert crashed.doc.graph.nodes["hidden_1"].params["units"] == 5
    assert crashed.windowTitle() == "p.loom* - Layerloom"
    assert crashed._save_to(path)
    assert not os.path.exists(path + ".autosave")  # a clean save removes it
    # declining recovery keeps the saved file and removes the autosave
    crashed.doc.push(SetParamsCmd(crashed.doc, "hidden_1", {"units": 6}))
    crashed.autosave()
    other = make_window()
    other.ask_recover = lambda p, a: False
    assert other.open_path(path)
    assert other.doc.graph.nodes["hidden_1"].params["units"] == 5
    assert not os.path.exists(path + ".autosave")


def test_untitled_autosave_is_offered_at_start(make_window, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    first = make_window()
    first.add_at_centre("Input")
    first.autosave()
    auto = first.doc.autosave_path()
    assert os.path.exists(auto) and str(tmp_path / "state") in auto
    # a later session (another pid) finds it
    os.rename(auto, auto.replace(f"untitled-{os.getpid()}", "untitled-1"))
    later = make_window()
    later.ask_recover = lambda p, a: True
    assert later.offer_untitled_recovery()
    assert list(later.doc.graph.nodes) == ["input_1"] and later.doc.dirty
    assert not os.listdir(tmp_path / "state" / "layerloom")


def test_opening_a_project_in_a_shown_window_keeps_the_canvas_wide(win, qtbot):
    """Bug: replacing the docks' contents on Open let the palette dock take the canvas's
    width (the canvas shrank to a strip)."""
    win.resize(1600, 1000)
    win.show()
    qtbot.waitExposed(win)
    assert win.open_path(os.path.join(EXAMPLES, "spirals.loom"))
    for _ in range(5):
        QApplication.processEvents()
    assert win.view.width() > 2 * win._docks["Layers"].width(), (
        win.view.width(), win._docks["Layers"].width())


def test_opening_a_project_fits_the_graph_to_the_final_canvas(win, qtbot):
    """Bug: Open fitted the graph while the canvas still had its old size; when the docks'
    new contents resized it the graph stayed at the size fitted to the small canvas (the
    minimum zoom), pinned left of centre."""
    view, vp = open_shown(win, qtbot, (2000, 1200), "spirals.loom")
    r = win.scene.itemsBoundingRect()
    centre = view.mapFromScene(r.center())
    assert abs(centre.x() - vp.center().x()) < 0.05 * vp.width(), (centre.x(), vp.width())
    assert abs(centre.y() - vp.center().y()) < 0.05 * vp.height(), (centre.y(), vp.height())
    # zoomed to the final canvas: the graph (and its margins) fill it along one axis
    fill = max((r.width() + 80) * view.transform().m11() / vp.width(),
               (r.height() + 80) * view.transform().m11() / vp.height())
    assert view.transform().m11() == pytest.approx(1.2) or fill == pytest.approx(1, abs=0.02)


def test_fit_at_the_minimum_zoom_centres_what_fits_and_shows_the_start_of_the_rest(win,
                                                                                  qtbot):
    view, vp = open_shown(win, qtbot, (1600, 1000), "spirals.loom")
    last = list(win.scene.nodes.values())[-1]
    x, y = last.pos().x(), last.pos().y()
    last.setPos(x, y + 4000)  # very tall: centred across, its top shown
    view.fit(whole=False)  # (opening fits the whole graph since issue 30, item 4)
    r = win.scene.itemsBoundingRect()
    assert view.transform().m11() == pytest.approx(0.6)
    assert abs(view.mapFromScene(r.center()).x() - vp.center().x()) < 0.05 * vp.width()
    assert 0 <= view.mapFromScene(r.topLeft()).y() <= 30
    last.setPos(x + 6000, y)  # very wide: centred down, its left end shown
    view.fit(whole=False)
    r = win.scene.itemsBoundingRect()
    assert view.transform().m11() == pytest.approx(0.6)
    assert abs(view.mapFromScene(r.center()).y() - vp.center().y()) < 0.05 * vp.height()
    assert 0 <= view.mapFromScene(r.topLeft()).x() <= 30


def test_fit_to_view_shows_the_whole_graph_at_any_size(win, qtbot):
    """View > Fit to View (F) has no readability floor (issue 19, item 13): a graph 6000
    wide is all in view."""
    view, vp = open_shown(win, qtbot, (1600, 1000), "spirals.loom")
    last = list(win.scene.nodes.values())[-1]
    last.setPos(last.pos().x() + 6000, last.pos().y())
    fit = next(a for a in win.findChildren(QAction) if a.text() == "&Fit to View")
    fit.trigger()
    assert view.transform().m11() < 0.6
    area = view.mapToScene(vp).boundingRect()
    assert area.contains(win.scene.itemsBoundingRect())


def test_the_question_before_discarding_says_what_is_unsaved(win):
    """The second trial: after only training an example the editor asked to 'save the
    changes', without saying there were none but the trained model."""
    import numpy as np
    from layerloom.app.editing.commands import SetParamsCmd
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    win.doc.set_trained({"hidden_1/kernel": np.zeros(1)})
    assert win.unsaved_text() == "Save the trained model (the weights of the last run) first?"
    win.doc.push(SetParamsCmd(win.doc, "hidden_1", {"units": 8}))
    assert win.unsaved_text() == "Save your edits and the trained model first?"
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    win.doc.push(SetParamsCmd(win.doc, "hidden_1", {"units": 8}))
    assert win.unsaved_text() == "Save your edits first?"
