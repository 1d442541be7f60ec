"""The file and folder questions several rooms ask: a path chosen in Qt's dialog and handed on,
nothing on Cancel."""
from PySide6.QtWidgets import QFileDialog


def ask_path(parent, title, use, file_filter=None):
    """Ask for a file (one of `file_filter`) or, without a filter, a folder; `use(path)` when
    one is chosen."""
    if file_filter is None:
        path = QFileDialog.getExistingDirectory(parent, title)
    else:
        path, _ = QFileDialog.getOpenFileName(parent, title, "", file_filter)
    if path:
        use(path)
