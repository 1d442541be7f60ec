"""Results after training a classifier: the confusion matrix (rows: true class, columns:
predicted) and test samples with predicted and true labels (green right, red wrong)."""
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget


class ResultsPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("Train a classifier to see its confusion matrix and samples here.")
        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideButtons()
        self.plot.setMinimumWidth(420)
        self.image = pg.ImageItem()
        self.plot.addItem(self.image)
        self.texts = []
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

    def show_results(self, r):
        self.result = r
        m = r["matrix"]
        C = m.shape[0]
        self.title.setText(f"Output '{r['output']}' on the {r['split']}: accuracy "
                           f"{r['accuracy']:.4f} ({int(m.sum())} samples). Rows: true class; "
                           "columns: predicted.")
        rates = m / np.maximum(m.sum(1, keepdims=True), 1)
        self.image.setImage(rates.T, levels=(0, 1))
        self.image.setLookupTable(pg.colormap.get("viridis").getLookupTable())
        for t in self.texts:
            self.plot.removeItem(t)
        self.texts = []
        if C <= 20:
            for i in range(C):
                for j in range(C):
                    color = "#ffffff" if rates[i, j] < 0.6 else "#000000"
                    t = pg.TextItem(html=f'<span style="font-size:7pt; color:{color}">'
                                         f'{m[i, j]}</span>', anchor=(0.5, 0.5))
                    t.setPos(j + 0.5, i + 0.5)
                    self.plot.addItem(t)
                    self.texts.append(t)
        names = r["classes"]
        if C <= 20:  # names down the side, indices along the bottom (names would collide)
            self.plot.getAxis("left").setTicks([[(k + 0.5, f"{k} {names[k][:11]}")
                                                 for k in range(C)]])
            self.plot.getAxis("bottom").setTicks([[(k + 0.5, str(k)) for k in range(C)]])
        self.plot.setLabel("bottom", "predicted")
        self.plot.setLabel("left", "true")
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w:
                w.deleteLater()
        for k, (img, pred, true) in enumerate(r["samples"]):
            cell = QLabel()
            a = np.clip(np.asarray(img) * (255.0 if img.max() <= 1.0 else 1.0), 0, 255)
            a = a.astype(np.uint8)
            h, w = a.shape[:2]
            if a.shape[-1] == 1:
                q = QImage(np.ascontiguousarray(a[..., 0]).data, w, h, w, QImage.Format_Grayscale8)
            else:
                q = QImage(np.ascontiguousarray(a).data, w, h, 3 * w, QImage.Format_RGB888)
            cell.setPixmap(QPixmap.fromImage(q.copy()).scaled(44, 44, Qt.KeepAspectRatio))
            ok = pred == true
            cell.setToolTip(f"predicted {names[pred]}, true {names[true]}")
            label = QLabel(f"{names[pred][:8]}" + ("" if ok else f"\n({names[true][:8]})"))
            label.setStyleSheet(f"color: {'#2a9d8f' if ok else '#d62828'}; font-size: 8pt;")
            box = QVBoxLayout()
            box.setSpacing(0)
            holder = QWidget()
            holder.setLayout(box)
            box.addWidget(cell)
            box.addWidget(label)
            self.grid.addWidget(holder, k // 8, k % 8)
