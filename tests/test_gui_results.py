"""The Results tab (issue 19, item 16): the confusion matrix is large enough for the
three-digit counts of a 10-class test split (Fashion-MNIST: up to ~950 a cell), with class
names down the side."""
import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPointF  # noqa: E402
from PySide6.QtGui import QFontMetricsF  # noqa: E402

from layerloom.app.panels.results import count_font  # noqa: E402

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"]


def test_ten_classes_three_digit_counts_fit_their_cells(win, qtbot):
    win.resize(1400, 860)
    win.show()
    qtbot.waitExposed(win)
    rng = np.random.default_rng(0)
    m = rng.integers(0, 60, (10, 10))
    np.fill_diagonal(m, rng.integers(700, 990, 10))
    img = np.zeros((28, 28, 1), np.float32)
    win._show_results({"matrix": m, "split": "test", "output": "class", "accuracy": 0.88,
                       "classes": NAMES, "samples": [(img, 0, 0), (img, 1, 3)]})
    qtbot.wait(200)
    vb = win.results.plot.getViewBox()
    cell = vb.mapViewToDevice(QPointF(1, 1)) - vb.mapViewToDevice(QPointF(0, 0))
    w, h = abs(cell.x()), abs(cell.y())
    font = count_font(w, h, 3)
    assert font.pixelSize() >= 9, (w, h)
    assert QFontMetricsF(font).horizontalAdvance("999") <= w - 2
    ticks = win.results.plot.getAxis("left")._tickLevels[0]
    assert [t[1] for t in ticks][:2] == ["0 T-shirt/top", "1 Trouser"]


def test_classes_named_by_their_index_are_not_said_twice(win, qtbot):
    """The second trial: the multitask example's matrix rows read "0 0", "1 1"."""
    img = np.zeros((28, 28, 1), np.float32)
    win._show_results({"matrix": np.array([[5, 1], [2, 7]]), "split": "test",
                       "output": "inside", "accuracy": 0.8, "classes": ["0", "1"],
                       "samples": [(img, 0, 0)]})
    ticks = win.results.plot.getAxis("left")._tickLevels[0]
    assert [t[1] for t in ticks] == ["0", "1"]
