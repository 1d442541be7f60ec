"""A generated script shown before it is saved (File > Export > Keras/PyTorch Code...): the
text in a monospace, read-only editor with Python highlighting, Copy (to the clipboard) and
Save As... (the script and its weights file, written by the exporter)."""
import keyword
import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QSyntaxHighlighter, QTextCharFormat
from PySide6.QtWidgets import (QApplication, QDialog, QHBoxLayout, QLabel, QPlainTextEdit,
                               QPushButton, QVBoxLayout)


def _format(color, bold=False, italic=False):
    f = QTextCharFormat()
    f.setForeground(QColor(color))
    if bold:
        f.setFontWeight(QFont.Bold)
    f.setFontItalic(italic)
    return f


class PythonHighlighter(QSyntaxHighlighter):
    """Keywords, built-in constants, definitions, numbers, strings and comments; a string
    spanning lines (a docstring) is carried over by the block state."""
    RULES = [
        (re.compile(r"\b(" + "|".join(keyword.kwlist) + r")\b"), _format("#0b4f9c", bold=True)),
        (re.compile(r"\b(True|False|None|self)\b"), _format("#7a3e9d")),
        (re.compile(r"(?<=\bdef )\w+|(?<=\bclass )\w+"), _format("#1d6f42", bold=True)),
        (re.compile(r"\b\d+(\.\d*)?([eE][-+]?\d+)?\b"), _format("#b5560b")),
        (re.compile(r"@\w+(\.\w+)*"), _format("#7a3e9d")),
        (re.compile(r"'[^'\n]*'|\"[^\"\n]*\""), _format("#a31515")),
        (re.compile(r"#[^\n]*"), _format("#6a737d", italic=True)),
    ]
    STRING = _format("#a31515")

    def highlightBlock(self, text):
        for pattern, fmt in self.RULES:
            for m in pattern.finditer(text):
                self.setFormat(m.start(), m.end() - m.start(), fmt)
        self._triple_quotes(text)

    def _triple_quotes(self, text):
        """Docstrings: from an opening triple quote to its closing one, across lines."""
        self.setCurrentBlockState(0)
        start = 0 if self.previousBlockState() == 1 else -1
        pos = 0
        while True:
            if start < 0:
                start = text.find('"""', pos)
                if start < 0:
                    return
                pos = start + 3
            end = text.find('"""', pos)
            if end < 0:
                self.setFormat(start, len(text) - start, self.STRING)
                self.setCurrentBlockState(1)
                return
            self.setFormat(start, end + 3 - start, self.STRING)
            start, pos = -1, end + 3


class CodePreview(QDialog):
    """The script's text; sigSave asks the window to write it (with its weights) somewhere."""
    sigSave = Signal()

    def __init__(self, title, text, note, parent=None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(900, 700)
        self.text = text
        self.editor = QPlainTextEdit(readOnly=True)
        font = QFontDatabase.systemFont(QFontDatabase.FixedFont)
        font.setStyleHint(QFont.TypeWriter)  # a fixed-pitch face where "monospace" is unknown
        self.editor.setFont(font)
        self.editor.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.highlighter = PythonHighlighter(self.editor.document())
        self.editor.setPlainText(text)
        self.note = QLabel(note)
        self.note.setWordWrap(True)
        self.copy_button = QPushButton("Copy")
        self.save_button = QPushButton("Save As...")
        close = QPushButton("Close")
        self.copy_button.clicked.connect(self.copy)
        self.save_button.clicked.connect(self.sigSave.emit)
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.note, 1)
        for b in (self.copy_button, self.save_button, close):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.editor, 1)
        lay.addLayout(buttons)
        self.setAttribute(Qt.WA_DeleteOnClose, False)

    def copy(self):
        QApplication.clipboard().setText(self.text)
        self.note.setText(f"Copied {self.text.count(chr(10))} lines to the clipboard.")
