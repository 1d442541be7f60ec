"""The start page: over an empty, untitled canvas, what a newcomer can do first: open a
bundled example (a gallery card each: title and a one-line summary), open a project or a
recent one, fine-tune a trained model (Fine-tune...: a model file's layers frozen under a new
head for your data), or start from the empty canvas. It goes away as soon as the graph gets a node
(from the palette, a paste, an import) or the user picks one of its actions."""
import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton,
                               QVBoxLayout)

from layerloom import gallery


class StartPage(QFrame):
    """A card over the canvas' viewport; `win` is the MainWindow (open_example, open_dialog,
    open_path, recent_files)."""

    def __init__(self, view, win):
        super().__init__(view.viewport())
        self.win, self.view = win, view
        self.setObjectName("start_page")
        self.setFrameShape(QFrame.StyledPanel)
        self.setAutoFillBackground(True)
        self.setStyleSheet("#start_page { background: palette(base); border-radius: 8px; }"
                           " QPushButton { text-align: left; padding: 6px 10px; }")
        col = QVBoxLayout(self)
        title = QLabel("<h2>Start</h2>Build a network by dragging layers from the palette, "
                       "or begin with an example (a copy opens, ready to train).")
        title.setWordWrap(True)
        col.addWidget(title)
        row = QHBoxLayout()
        self.finetune_button = None
        for text, slot in (("Empty canvas", self.dismiss), ("Open...", self._open),
                           ("Fine-tune...", self._finetune)):
            b = QPushButton(text)
            if slot == self._finetune:
                self.finetune_button = b
                b.setToolTip("Start from a trained model (.loom, .keras, .onnx): its layers "
                             "frozen up to a cut, a new head for your images")
            b.clicked.connect(slot)
            row.addWidget(b)
        row.addStretch(1)
        col.addLayout(row)
        col.addWidget(QLabel("<b>Examples</b>"))
        grid = QGridLayout()
        self.example_buttons = {}
        for i, ex in enumerate(gallery.examples()):
            b = QPushButton()
            line = b.fontMetrics().elidedText(ex.summary, Qt.ElideRight, 320)
            b.setText(f"{ex.title}\n{line}")
            b.setToolTip(ex.summary)
            b.clicked.connect(lambda checked=False, key=ex.key: self._example(key))
            grid.addWidget(b, i // 2, i % 2)
            self.example_buttons[ex.key] = b
        col.addLayout(grid)
        # the recent files are the user's (not for tests and --screenshot: confirm=False)
        recent = [p for p in win.recent_files() if os.path.exists(p)][:5] if win.confirm else []
        if recent:
            col.addWidget(QLabel("<b>Recent</b>"))
            for p in recent:
                folder = os.path.dirname(p).replace(os.path.expanduser("~"), "~", 1)
                b = QPushButton(f"{os.path.basename(p)}    {folder}")
                b.setToolTip(p)
                b.clicked.connect(lambda checked=False, p=p: self._recent(p))
                col.addWidget(b)
        view.viewport().installEventFilter(self)
        self.place()
        self.show()

    def place(self):
        vp = self.view.viewport().rect()
        w = min(760, max(360, vp.width() - 40))
        self.setFixedWidth(w)
        self.adjustSize()
        self.move(max(0, (vp.width() - w) // 2), max(0, (vp.height() - self.height()) // 2))

    def eventFilter(self, obj, event):
        if event.type() == event.Type.Resize:
            self.place()
        return False

    def dismiss(self):
        self.view.viewport().removeEventFilter(self)
        self.hide()
        self.deleteLater()
        if self.win.start_page is self:
            self.win.start_page = None

    def _example(self, key):
        self.dismiss()
        self.win.open_example(key)

    def _open(self):
        self.dismiss()
        self.win.open_dialog()

    def _finetune(self):
        self.dismiss()
        self.win.finetune_dialog()

    def _recent(self, path):
        self.dismiss()
        self.win.open_path(path)

