"""An open project in the editor: the project (graph model, dataset, training), its file, an
undo stack whose commands call only graph-model methods, the trained model's weights (from a
training run or the project's weights file; saved beside the project), and the dirty state."""
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

import json
import os


from layerloom.core.errors import LayerloomError
from layerloom.project import loom as projectfile
from layerloom.core.fileio import atomic_write_bytes, atomic_write_text, npz_bytes
from layerloom.project.loom import Project
from layerloom.project.training import new_project_training

LOCKED = "the graph is locked while training runs; stop it to edit"
WEIGHTS_SUFFIX = ".weights.npz"  # PROJECT.loom.weights.npz, as layerloom.api.Model.save names it


class Document(QObject):
    sigChanged = Signal()        # anything that may change shapes, problems or the title
    sigPathChanged = Signal(str)
    sigModelChanged = Signal()   # trained weights set or dropped
    sigLocked = Signal(bool)     # training started (True) or ended: edits refused meanwhile

    def __init__(self, project=None, parent=None):
        super().__init__(parent)
        # a new project: a validation split held out by default (issue 31, item 6)
        self.project = project or Project(training=new_project_training())
        self.undo = QUndoStack(self)
        # A bound method, not a lambda: Qt drops the connection when this object is destroyed.
        # indexChanged covers every clean-state change but setClean(), which save() announces.
        self.undo.indexChanged.connect(self._emit_changed)
        self.undo.cleanChanged.connect(self._clean_changed)
        self.locked = False  # True while training: edits are refused
        # The trained model: {"node/name": array}, or None. Not an undoable edit (Undo reverts
        # edits, not a training run); a structural edit makes it stale (weights_problem), and
        # undoing that edit makes it fit again.
        self.weights = None
        self._weights_unsaved = False  # trained since the last save
        self._weights_saved_in = None  # the weights file that holds self.weights, if any
        self.load_message = None  # why the project's weights file could not be read
        self.flow_positions = {}  # {flow: positions} the graph had in it, for switching back
        self._mismatch = None  # (graph version, id of the weights, message) last computed
        self._autosave_written = False  # this document wrote the autosave that is there now
        self._autosaved_weights = None  # the weights (this dict) written beside that autosave

    def _emit_changed(self, *_):
        self.sigChanged.emit()

    def _clean_changed(self, clean):
        """Undone (or redone) back to the saved state: nothing left to recover."""
        if clean and not self.dirty and self._autosave_written:
            self.remove_autosave()

    @property
    def graph(self):
        return self.project.graph

    @property
    def path(self):
        return self.project.path

    @property
    def weights_unsaved(self):
        """Trained since the last save (and not saved since)."""
        return self._weights_unsaved

    @property
    def dirty(self):
        return not self.undo.isClean() or self._weights_unsaved

    # -- the trained model ----------------------------------------------------------------------
    def set_trained(self, weights):
        """The weights a training run ended with (a full run or after Stop): unsaved."""
        self.weights = dict(weights)
        self._weights_unsaved, self._weights_saved_in = True, None
        self.sigModelChanged.emit()  # the title's * and the Model actions (not sigChanged:
        # the setup panels reload from the project on it, dropping uncommitted field edits)

    def weights_problem(self):
        """None when the document has weights that fit the graph as it is now; otherwise why
        there is no usable model ('not trained yet', or the first weight that differs)."""
        if self.weights is None:
            return "not trained yet"
        key = (self.graph.version, id(self.weights))
        if self._mismatch is None or self._mismatch[:2] != key:
            self._mismatch = key + (weights_mismatch(self.graph, self.weights),)
        return self._mismatch[2]

    @property
    def has_model(self):
        return self.weights_problem() is None

    def weights_file(self, path):
        return os.path.basename(path) + WEIGHTS_SUFFIX

    def positions(self):
        return self.project.ui.setdefault("positions", {})

    def set_locked(self, locked):
        self.locked = bool(locked)
        self.sigLocked.emit(self.locked)

    def push(self, cmd):
        if self.locked:
            raise RuntimeError(LOCKED)
        self.undo.push(cmd)

    @classmethod
    def open(cls, path, parent=None):
        """Open a project for editing: an unfinished network is fine (its problems are shown);
        a damaged file raises ProjectError. Its weights file (the `weights` key) is read; one
        that is missing or unreadable leaves the document without weights and says why in
        load_message."""
        doc = cls(projectfile.load(path, strict=False), parent)
        p = doc.project
        if p.weights:
            from layerloom.train.session import load_weights
            try:
                doc.weights = load_weights(p.resolve(p.weights))
                doc._weights_saved_in = os.path.abspath(p.resolve(p.weights))
            except LayerloomError as e:
                doc.load_message = f"The project's trained weights were not loaded: {e}"
        return doc

    @classmethod
    def recover(cls, auto, path, parent=None):
        """The unsaved work an autosave holds, as a document on `path` (None: untitled) that
        differs from its file until saved (undo cannot make it look saved): its trained weights
        are the project's saved ones the autosave names, or the unsaved ones written beside it
        (unsaved here too: Save puts them beside the project). Raises ProjectError."""
        doc = cls.open(auto, parent)
        doc.project.path = path
        if doc._weights_saved_in == os.path.abspath(auto + WEIGHTS_SUFFIX):
            doc._weights_saved_in, doc._weights_unsaved = None, True
            doc.project.weights = None  # Save names the file it writes beside the project
        doc.undo.resetClean()  # no undo step leads back to the file's state
        return doc

    def save(self, path=None):
        """The project, and beside it its trained weights (PROJECT.loom.weights.npz, named by
        the file's `weights` key), each written atomically, the weights first. Weights that no
        longer fit the graph are left out (and the key dropped). Returns a note for the log,
        or None."""
        path = path or self.project.path
        before = self.autosave_path()  # an untitled one's lives elsewhere: removed too
        note = self._save_weights(path)
        projectfile.save(self.project, path)
        if before != self.autosave_path():
            remove_autosave_files(before)
        self._weights_unsaved = False  # saved, or knowingly left out as stale
        self.undo.setClean()
        self.remove_autosave()
        self.sigPathChanged.emit(self.project.path)
        self.sigChanged.emit()
        return note

    def _save_weights(self, path):
        from layerloom.core.trained import fit_weights
        p = self.project
        if self.weights is None:
            p.weights = None  # no key naming a file that was not read
            return None
        fit = fit_weights(self.graph, self.weights)
        if not fit.kept:
            p.weights = None
            return (f"Saved without the trained weights: none fits the graph now "
                    f"({fit.problem}); train again")
        name = self.weights_file(path)
        target = os.path.join(os.path.dirname(os.path.abspath(path)), name)
        if fit.dropped:  # Keras' skip_mismatch: the layers that still fit keep theirs
            atomic_write_bytes(target, npz_bytes(fit.kept))
            self._weights_saved_in = None  # the file holds part of self.weights
            p.weights = name
            return (f"Saved without the weights of {', '.join(fit.dropped_names())}: they no "
                    f"longer fit the graph ({fit.problem}); the other layers keep theirs")
        if self._weights_saved_in != target:  # unchanged weights already there are not rewritten
            atomic_write_bytes(target, npz_bytes(self.weights))
            self._weights_saved_in = target
        p.weights = name
        return None

    # -- autosave: a separate file, never the project itself ------------------------------------
    def autosave_path(self):
        if self.project.path:
            return self.project.path + ".autosave"
        folder = os.path.join(os.environ.get("XDG_STATE_HOME")
                              or os.path.join(os.path.expanduser("~"), ".local", "state"),
                              "layerloom")
        return os.path.join(folder, f"untitled-{os.getpid()}.loom.autosave")

    def autosave(self):
        """Write the unsaved state atomically to the autosave file; True if written. It names
        the trained weights: the file they were saved in, or, when they are only in memory
        (trained and not saved, renamed), PATH.autosave.weights.npz written (atomically, before
        the autosave itself) beside it. A document with nothing unsaved removes the autosave
        it wrote."""
        if not self.dirty:
            if self._autosave_written:
                self.remove_autosave()
            return False
        auto = self.autosave_path()
        d = projectfile.to_dict(self.project)
        d.pop("weights", None)
        beside = auto + WEIGHTS_SUFFIX
        if self.weights is not None and self._weights_saved_in is not None:
            saved = self._weights_saved_in
            d["weights"] = (os.path.basename(saved) if os.path.dirname(saved) ==
                            os.path.dirname(os.path.abspath(auto)) else saved)
        elif self.weights is not None:
            if self._autosaved_weights is not self.weights or not os.path.exists(beside):
                atomic_write_bytes(beside, npz_bytes(self.weights))
                self._autosaved_weights = self.weights
            d["weights"] = os.path.basename(beside)
        atomic_write_text(auto, json.dumps(d, indent=2, ensure_ascii=False) + "\n")
        self._autosave_written = True
        if d.get("weights") != os.path.basename(beside) and self._autosaved_weights is not None:
            _remove(beside)  # weights written by an earlier autosave: not named any more
            self._autosaved_weights = None
        return True

    def remove_autosave(self):
        remove_autosave_files(self.autosave_path())
        self._autosave_written, self._autosaved_weights = False, None


def remove_autosave_files(auto):
    """An autosave and the weights written beside it (the autosave first: never one that
    names weights that are gone)."""
    _remove(auto)
    _remove(auto + WEIGHTS_SUFFIX)


def autosave_weights(auto):
    """The weights file an autosave names, or None (none named, no readable autosave, or the
    file it names is gone: the recovery question must not promise a trained model)."""
    try:
        with open(auto, encoding="utf-8") as f:
            w = json.load(f).get("weights")
    except (OSError, ValueError, RecursionError, AttributeError):
        return None
    if not isinstance(w, str) or not w:
        return None
    return w if os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(auto)), w)) \
        else None


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def weights_mismatch(graph, weights):
    """Why trained `weights` ({"node/name": array}) do not fit `graph`: the first weight the
    graph declares that they lack or hold in another shape, or one they hold that the graph no
    longer has; None when they fit exactly (a compiled model would take them)."""
    from layerloom.core.trained import fit_weights
    return fit_weights(graph, weights).problem


def recoverable(path):
    """The autosave of `path` if it is newer than the project (left by a crash), else None."""
    auto = path + ".autosave"
    if os.path.exists(auto) and (not os.path.exists(path)
                                 or os.path.getmtime(auto) >= os.path.getmtime(path)):
        return auto
    return None
