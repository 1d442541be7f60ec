"""The Predictions tab: what the trained model says about a file the user chose (Model >
Predict...). Images get a card each: the picture as the model saw it (decoded, resized,
coloured) and its three most probable classes; a CSV or arrays get a table, one row per
sample, with the columns `layerloom --predict` writes (class and a probability per class, or
values). A file that does not fit shows its message here."""
from PySide6.QtCore import QAbstractTableModel, Qt, Signal
from PySide6.QtWidgets import (QFileDialog, QGridLayout, QHBoxLayout, QLabel, QPushButton,
                               QScrollArea, QStackedWidget, QTableView, QVBoxLayout, QWidget)

from layerloom.app.look.dialogs import start_in
from layerloom.app.look.images import pixmap
from layerloom.app.look import theme

TOP = 3


class _Rows(QAbstractTableModel):
    """A header and rows of text (the predictions CSV), for a view of any length."""

    def __init__(self):
        super().__init__()
        self.header, self.rows = [], []

    def set_rows(self, header, rows):
        self.beginResetModel()
        self.header, self.rows = header, rows
        self.endResetModel()

    def rowCount(self, parent=None):
        return len(self.rows)

    def columnCount(self, parent=None):
        return len(self.header)

    def data(self, index, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and index.isValid():
            return self.rows[index.row()][index.column()]
        if role == Qt.TextAlignmentRole and index.column() > 0:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role != Qt.DisplayRole:
            return None
        return self.header[section] if orientation == Qt.Horizontal else str(section + 1)


def top_classes(header, row, k=TOP):
    """[(class, probability)] most probable first, from a predictions CSV row of a classifier
    (columns: [file,] class, a probability per class); None for other outputs."""
    if "class" not in header:
        return None
    first = header.index("class") + 1
    probs = sorted(((float(v), c) for c, v in zip(header[first:], row[first:])), reverse=True)
    return [(c, p) for p, c in probs[:k]]


class _Card(QWidget):
    """One image: the picture, its file name and its top classes."""

    def __init__(self):
        super().__init__()
        self.picture, self.name, self.lines = QLabel(), QLabel(), QLabel()
        self.picture.setAlignment(Qt.AlignCenter)
        theme.subtext(self.name, " font-size: 8pt;")
        self.lines.setTextFormat(Qt.RichText)
        self.top = []
        box = QVBoxLayout(self)
        box.setContentsMargins(4, 4, 4, 4)
        box.setSpacing(1)
        for w in (self.picture, self.name, self.lines):
            box.addWidget(w)
        self.setFixedWidth(150)

    def show_image(self, img, name, top):
        self.picture.setPixmap(pixmap(img, 72))
        self.name.setText(name)
        self.name.setToolTip(name)
        self.top = top
        self.lines.setText("<br>".join(
            (f"<b>{c}</b>" if i == 0 else c) + f"&nbsp;&nbsp;{100 * p:.1f}%"
            for i, (c, p) in enumerate(top)))


class PredictionsPanel(QWidget):
    sigPredict = Signal(str)  # "file" or "folder": the window asks which

    def __init__(self, parent=None):
        super().__init__(parent)
        self.prediction = None
        self.message = QLabel("Train a model (or open a trained project), then predict for a "
                              "CSV/TSV file, an .npy/.npz file, an image or a folder of images.")
        self.message.setWordWrap(True)
        self.predict_button = QPushButton("Predict a file...")
        self.folder_button = QPushButton("An image folder...")
        self.save_button = QPushButton("Save as CSV...")
        self.save_button.setEnabled(False)
        top = QHBoxLayout()
        top.addWidget(self.message, 1)
        top.addWidget(self.predict_button)
        top.addWidget(self.folder_button)
        top.addWidget(self.save_button)
        self.table = QTableView()
        self.table.setModel(_Rows())
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.cards, self.card_area = [], QWidget()
        self.grid = QGridLayout(self.card_area)
        self.grid.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        scroll = QScrollArea()
        scroll.setWidget(self.card_area)
        scroll.setWidgetResizable(True)
        self.views = QStackedWidget()
        self.views.addWidget(self.table)
        self.views.addWidget(scroll)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.views, 1)
        self.predict_button.clicked.connect(lambda: self.sigPredict.emit("file"))
        self.folder_button.clicked.connect(lambda: self.sigPredict.emit("folder"))
        self.save_button.clicked.connect(self._save_dialog)

    def set_enabled_for(self, why_not):
        """why_not: None when the document has a usable model, else the reason shown."""
        for b in (self.predict_button, self.folder_button):
            b.setEnabled(why_not is None)
            b.setToolTip("" if why_not is None else f"No model: {why_not}")

    def show_busy(self, path):
        self.message.setStyleSheet("")
        self.message.setText(f"Predicting for {path}...")

    def show_failed(self, path, text):
        self.prediction = None
        self.save_button.setEnabled(False)
        self.table.model().set_rows([], [])
        self.views.setCurrentWidget(self.table)
        self.message.setStyleSheet("color: #c1121f;")
        self.message.setText(f"Cannot predict for {path}: {text}")

    def show_prediction(self, p):
        self.prediction = p
        self.save_button.setEnabled(True)
        self.message.setStyleSheet("")
        self.message.setText(f"{p.description}: {len(p.rows)} prediction(s).")
        first = p.rows[0] if p.rows else None
        if p.images is not None and first is not None and \
                top_classes(p.header, first) is not None:
            self._show_cards(p)
        else:
            self.table.model().set_rows(p.header, p.rows)
            self.table.resizeColumnsToContents()
            self.views.setCurrentWidget(self.table)

    def _show_cards(self, p):
        per_row = max(1, (self.width() - 20) // 160)
        while len(self.cards) < len(p.rows):  # made once and reused
            self.cards.append(_Card())
            k = len(self.cards) - 1
            self.grid.addWidget(self.cards[-1], k // per_row, k % per_row)
        for k, card in enumerate(self.cards):
            card.setVisible(k < len(p.rows))
            if k < len(p.rows):
                card.show_image(p.images[k], p.names[k], top_classes(p.header, p.rows[k]))
        self.table.model().set_rows(p.header, p.rows)  # the same rows, for Save as CSV
        self.views.setCurrentIndex(1)

    def shown_cards(self):
        return [c for c in self.cards if not c.isHidden()]

    def _save_dialog(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save predictions",
                                              start_in(self, "predictions.csv"),
                                              "CSV files (*.csv)")
        if path:
            self.save_csv(path)

    def save_csv(self, path):
        from layerloom.core.fileio import atomic_write_text
        try:
            atomic_write_text(path, self.prediction.csv_text)
        except OSError as e:
            self.message.setText(f"Could not write {path}: {e.strerror or e}")
            return False
        self.message.setText(f"{self.prediction.description}: wrote {path}")
        return True
