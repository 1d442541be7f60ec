"""An open project in the editor: the project (graph model, dataset, training), its file, an
undo stack whose commands call only graph-model methods, and the dirty state."""
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

import os

from layerloom.project import loom as projectfile
from layerloom.project.fileio import atomic_write_text
from layerloom.project.loom import Project


class Document(QObject):
    sigChanged = Signal()        # anything that may change shapes, problems or the title
    sigPathChanged = Signal(str)

    def __init__(self, project=None, parent=None):
        super().__init__(parent)
        self.project = project or Project()
        self.undo = QUndoStack(self)
        # A bound method, not a lambda: Qt drops the connection when this object is destroyed.
        # indexChanged covers every clean-state change but setClean(), which save() announces.
        self.undo.indexChanged.connect(self._emit_changed)
        self.locked = False  # True while training: edits are refused

    def _emit_changed(self, *_):
        self.sigChanged.emit()

    @property
    def graph(self):
        return self.project.graph

    @property
    def path(self):
        return self.project.path

    @property
    def dirty(self):
        return not self.undo.isClean()

    def positions(self):
        return self.project.ui.setdefault("positions", {})

    def push(self, cmd):
        if self.locked:
            raise RuntimeError("the graph cannot be edited while training runs; stop it first")
        self.undo.push(cmd)

    @classmethod
    def open(cls, path, parent=None):
        """Open a project for editing: an unfinished network is fine (its problems are shown);
        a damaged file raises ProjectError."""
        return cls(projectfile.load(path, strict=False), parent)

    def save(self, path=None):
        projectfile.save(self.project, path or self.project.path)
        self.undo.setClean()
        self.remove_autosave()
        self.sigPathChanged.emit(self.project.path)
        self.sigChanged.emit()

    # -- autosave: a separate file, never the project itself ------------------------------------
    def autosave_path(self):
        if self.project.path:
            return self.project.path + ".autosave"
        folder = os.path.join(os.environ.get("XDG_STATE_HOME")
                              or os.path.join(os.path.expanduser("~"), ".local", "state"),
                              "layerloom")
        return os.path.join(folder, f"untitled-{os.getpid()}.loom.autosave")

    def autosave(self):
        """Write the unsaved state atomically to the autosave file; True if written."""
        if not self.dirty:
            return False
        atomic_write_text(self.autosave_path(), projectfile.dumps(self.project))
        return True

    def remove_autosave(self):
        try:
            os.remove(self.autosave_path())
        except OSError:
            pass


def recoverable(path):
    """The autosave of `path` if it is newer than the project (left by a crash), else None."""
    auto = path + ".autosave"
    if os.path.exists(auto) and (not os.path.exists(path)
                                 or os.path.getmtime(auto) >= os.path.getmtime(path)):
        return auto
    return None
