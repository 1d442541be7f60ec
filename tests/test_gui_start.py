"""The start page over an empty untitled canvas (app/panels/start_page.py; issue 19, item 8)."""
import os

import pytest

pytest.importorskip("pytestqt")

from layerloom import gallery  # noqa: E402
from guikit import EXAMPLES  # noqa: E402


@pytest.fixture
def start_win(make_window, monkeypatch):
    """The tests' window (confirm=False, which has no start page) with the start page on."""
    from layerloom.app.window.main_window import MainWindow
    real_init = MainWindow.__init__

    def init(self, doc=None, confirm=True, remember_layout=None, start_page=None):
        real_init(self, doc, confirm, remember_layout, start_page=True)
    monkeypatch.setattr(MainWindow, "__init__", init)
    return make_window()


def test_it_offers_every_example_and_goes_when_a_node_is_added(start_win):
    page = start_win.start_page
    assert page is not None and page.isVisible()
    assert set(page.example_buttons) == {e.key for e in gallery.examples()}
    start_win.add_at_centre("Dense")
    assert start_win.start_page is None


def test_an_example_card_opens_a_copy(start_win, tmp_path, monkeypatch):
    monkeypatch.setattr(type(start_win), "examples_home", staticmethod(lambda: str(tmp_path)))
    start_win.start_page.example_buttons["spirals"].click()
    assert start_win.doc.path == str(tmp_path / "spirals" / "spirals.loom")
    assert start_win.start_page is None and "hidden_1" in start_win.doc.graph.nodes


def test_empty_canvas_dismisses_it_and_an_opened_project_has_none(start_win):
    from PySide6.QtWidgets import QPushButton
    buttons = {b.text(): b for b in start_win.start_page.findChildren(QPushButton)}
    buttons["Empty canvas"].click()
    assert start_win.start_page is None
    assert start_win.open_path(os.path.join(EXAMPLES, "sine.loom"))
    assert start_win.start_page is None
