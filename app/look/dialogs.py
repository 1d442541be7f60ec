"""The file and folder questions several rooms ask: a path chosen in Qt's dialog and handed on,
nothing on Cancel; each starts in the project's folder (start_in)."""
import os

from PySide6.QtWidgets import QFileDialog


def start_in(widget, name=""):
    """Where a file dialog starts (with `name` in it, where given): the folder of the
    window's project, else of the last project opened, else Documents (home where there is
    none); never the folder
    the editor happened to be started from (Qt's default for an empty or bare name)."""
    win = widget.window() if widget is not None else None
    path = getattr(getattr(win, "doc", None), "path", None)
    folder = os.path.dirname(path) if path else None
    if not folder:
        recent = getattr(win, "recent_files", None)
        files = recent() if callable(recent) else []
        folder = os.path.dirname(files[0]) if files else None
    if not folder:
        from PySide6.QtCore import QStandardPaths
        folder = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation)
        if not folder or not os.path.isdir(folder):  # a fresh account may have none
            folder = os.path.expanduser("~")
    return os.path.join(folder, name) if name else folder


def ask_path(parent, title, use, file_filter=None, start=None):
    """Ask for a file (one of `file_filter`) or, without a filter, a folder, starting in
    `start` (else start_in); `use(path)` when one is chosen."""
    start = start or start_in(parent)
    if file_filter is None:
        path = QFileDialog.getExistingDirectory(parent, title, start)
    else:
        path, _ = QFileDialog.getOpenFileName(parent, title, start, file_filter)
    if path:
        use(path)
