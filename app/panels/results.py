"""Results after training: for a classifier the confusion matrix (rows: true class, columns:
predicted) and test samples with predicted and true labels (green right, red wrong); for an
image output inputs above their reconstructions; for a regression predicted against true
values."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from layerloom.app.look.images import pixmap
from layerloom.core.graph import fmt_count


class _Counts(pg.GraphicsObject):
    """Every cell's count in one item, painted in screen space so text stays upright and
    readable at any zoom (a hundred TextItems cost ~60 ms to create on the GUI thread)."""

    def __init__(self):
        super().__init__()
        self.m = np.zeros((0, 0), int)
        self.rates = self.m

    def set_counts(self, m, rates):
        self.prepareGeometryChange()
        self.m, self.rates = m, rates
        self.update()

    def boundingRect(self):
        return QRectF(0, 0, self.m.shape[1], self.m.shape[0])

    def paint(self, painter, *args):
        if self.m.size == 0:
            return
        t = painter.transform()
        painter.resetTransform()
        cell = t.map(QPointF(1, 1)) - t.map(QPointF(0, 0))
        w, h = abs(cell.x()), abs(cell.y())
        font, texts = count_texts(self.m, w, h)
        if texts is None:
            return  # cells a few pixels wide: their colours say it, no number would fit
        painter.setFont(font)
        for i in range(self.m.shape[0]):
            for j in range(self.m.shape[1]):
                c = t.map(QPointF(j + 0.5, i + 0.5))
                painter.setPen(QColor("#ffffff" if self.rates[i, j] < 0.6 else "#000000"))
                painter.drawText(QRectF(c.x() - w / 2, c.y() - h / 2, w, h), Qt.AlignCenter,
                                 texts[i][j])


def count_texts(m, w, h):
    """(font, [[text]]) for the counts `m` in w x h cells: each count whole where the widest
    fits at the smallest font, else abbreviated (12k, 1.2M) so that none runs past its cell;
    texts None where even those do not fit (cells a few pixels across)."""
    from PySide6.QtGui import QFontMetricsF
    texts = [[str(v) for v in row] for row in m.tolist()]
    for _ in range(2):
        widest = max((t for row in texts for t in row), key=len, default="")
        font = count_font(w, h, len(widest))
        fm = QFontMetricsF(font)
        if fm.horizontalAdvance("8" * len(widest)) <= w - 2 and fm.height() <= h:
            return font, texts
        texts = [[fmt_count(v) for v in row] for row in m.tolist()]
    return font, None


def count_font(w, h, digits):
    """The largest font (9 px at least, up to 14) whose `digits`-digit counts fit a w x h cell."""
    from PySide6.QtGui import QFontMetricsF
    font = QFont()
    for px in range(14, 8, -1):
        font.setPixelSize(px)
        m = QFontMetricsF(font)
        if m.horizontalAdvance("8" * digits) <= w - 2 and m.height() <= h:
            break
    return font


def _cut(name, limit=10):
    return name if len(name) <= limit else name[:limit - 1] + "\u2026"


class _Sample(QWidget):
    """One test sample: the image, and the predicted label (true label too when wrong)."""

    def __init__(self):
        super().__init__()
        self.cell = QLabel()
        self.label = QLabel()
        box = QVBoxLayout(self)
        box.setSpacing(0)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(self.cell)
        box.addWidget(self.label)

    def show_sample(self, img, pred, true, names):
        self.cell.setPixmap(pixmap(img, 44))
        ok = pred == true
        self.cell.setToolTip(f"predicted {names[pred]}, true {names[true]}")
        self.label.setText(_cut(names[pred]) + ("" if ok else f"\n({_cut(names[true])})"))
        self.label.setToolTip(self.cell.toolTip())
        self.label.setStyleSheet(f"color: {'#2a9d8f' if ok else '#d62828'}; font-size: 8pt;")


    def show_pair(self, given, made):
        """An image output's sample: the input above what the model made of it."""
        both = np.concatenate([np.asarray(given, np.float32), np.asarray(made, np.float32)])
        self.cell.setPixmap(pixmap(both, 88))
        self.cell.setToolTip("above: the input; below: the output")
        self.label.setText("input / output")
        self.label.setToolTip(self.cell.toolTip())
        self.label.setStyleSheet("font-size: 8pt;")


class ResultsPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("Train a model to see its results here: a classifier's confusion "
                            "matrix, an image output's reconstructions, a regression's "
                            "predicted against true values.")
        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideButtons()
        self.plot.setMinimumWidth(420)
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.counts = _Counts()
        self.plot.addItem(self.counts)
        # a regression's predicted against true values, and the line where they are equal
        self.scatter = pg.ScatterPlotItem(size=5, pen=None, brush=pg.mkBrush(42, 157, 143, 150))
        self.diagonal = pg.PlotDataItem(pen=pg.mkPen("#888888", style=Qt.DashLine))
        for item in (self.scatter, self.diagonal):
            self.plot.addItem(item)
            item.hide()
        self.cells = []
        self.samples = QWidget()
        self.grid = QGridLayout(self.samples)
        self.grid.setSpacing(2)
        row = QHBoxLayout()
        row.addWidget(self.plot, 3)
        row.addWidget(self.samples, 4)
        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addLayout(row)
        self.result = None

    def show_results(self, r, note=""):
        """r: engine/train/evaluation.py's output_results (a classifier's confusion matrix, an
        image output's reconstructions, a regression's predicted against true values); note:
        when they were taken (" after Stop")."""
        self.result = r
        kind = r.get("kind", "classification")
        split = "test split" if r["split"] == "test" else r["split"]
        for item in (self.image, self.counts):
            item.setVisible(kind == "classification")
        for item in (self.scatter, self.diagonal):
            item.setVisible(kind == "regression")
        self.plot.setVisible(kind != "reconstruction")
        if kind == "regression":
            return self._show_regression(r, split, note)
        if kind == "reconstruction":
            self.title.setText(f"Output '{r['output']}' on the {split}{note}: mse "
                               f"{r['mse']:.4g}. Each sample: the input above, the output "
                               "below.")
            return self._show_cells(r["samples"], lambda cell, pair: cell.show_pair(*pair))
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        m = r["matrix"]
        C = m.shape[0]
        self.title.setText(f"Output '{r['output']}' on the {split}{note}: accuracy "
                           f"{r['accuracy']:.4f} ({int(m.sum())} samples). Rows: true class; "
                           "columns: predicted.")
        rates = m / np.maximum(m.sum(1, keepdims=True), 1)
        self.image.setImage(rates.T, levels=(0, 1))
        self.image.setLookupTable(pg.colormap.get("viridis").getLookupTable())
        self.counts.set_counts(m if C <= 20 else np.zeros((0, 0), int), rates)
        names = r["classes"]
        if C <= 20:  # names down the side, indices along the bottom (names would collide)
            # "0 T-shirt/top"; classes named by their index alone are not said twice ("0 0")
            self.plot.getAxis("left").setTicks([[(k + 0.5, str(k) if names[k] == str(k) else
                                                  f"{k} {names[k][:11]}") for k in range(C)]])
            self.plot.getAxis("bottom").setTicks([[(k + 0.5, str(k)) for k in range(C)]])
        self.plot.setLabel("bottom", "predicted")
        self.plot.setLabel("left", "true")
        self._show_cells(r["samples"], lambda cell, sample: cell.show_sample(*sample, names))

    def _show_cells(self, samples, show):
        while len(self.cells) < len(samples):  # cells are made once and reused
            self.cells.append(_Sample())
            k = len(self.cells) - 1
            self.grid.addWidget(self.cells[-1], k // 8, k % 8)
        for k, cell in enumerate(self.cells):
            cell.setVisible(k < len(samples))
            if k < len(samples):
                show(cell, samples[k])

    def _show_regression(self, r, split, note):
        """Predicted against true values, the line y = x dashed: points on it are right."""
        t, p = np.asarray(r["true"], float), np.asarray(r["predicted"], float)
        r2 = f", R\u00b2 {r['r2']:.4f}" if r.get("r2") is not None else ""
        self.title.setText(f"Output '{r['output']}' on the {split}{note}: predicted against "
                           f"true values ({len(t)}{r2}); on the dashed line they are equal.")
        self.plot.setAspectLocked(False)
        self.plot.invertY(False)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setTicks(None)  # the matrix's class ticks gone
        self.plot.setLabel("bottom", "true")
        self.plot.setLabel("left", "predicted")
        self.scatter.setData(t, p)
        ends = [min(t.min(), p.min()), max(t.max(), p.max())] if len(t) else [0.0, 1.0]
        self.diagonal.setData(ends, ends)
        self.plot.enableAutoRange()
        self._show_cells([], None)
