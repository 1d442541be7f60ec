"""An open project in the editor: the project (graph model, dataset, training), its file, an
undo stack whose commands call only graph-model methods, and the dirty state."""
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from engine import project as projectfile
from engine.project import Project


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
        return cls(projectfile.load(path), parent)

    def save(self, path=None):
        projectfile.save(self.project, path or self.project.path)
        self.undo.setClean()
        self.sigPathChanged.emit(self.project.path)
        self.sigChanged.emit()
