"""The editor window's file handling: new, open (with the recovery of an autosave a crashed
session left), save and save as, the recent-files menu and the autosave. A mixin of MainWindow
(app/window/main_window.py), whose document, training panel, messages and set_document it uses."""
import glob
import os

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox

from layerloom.core.errors import LayerloomError
from layerloom.app.look.dialogs import start_in

from layerloom.app.editing.document import (Document, autosave_weights, recoverable,
                                            remove_autosave_files)

FILTER = "Layerloom projects (*.loom);;All files (*)"


class FileActions:
    # -- files --------------------------------------------------------------------------------
    def _may_discard(self):
        """Ask before unsaved work goes: Save (True once saved), Discard (True: its autosave
        is removed, there is nothing to recover) or Cancel (False)."""
        if not self.close_block(True):  # a block open: back to the project, with its edits
            return False
        if not self.doc.dirty:
            return True
        if self.confirm:
            r = QMessageBox.question(self, "Unsaved changes", self.unsaved_text(),
                                     QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel)
            if r == QMessageBox.Save:
                return self.save()
            if r != QMessageBox.Discard:
                return False
        self.doc.remove_autosave()  # knowingly discarded (a dirty document that stays, as
        return True                 # after a failed Open, is autosaved again at the next tick)

    def unsaved_text(self):
        """What the question before discarding says is unsaved: edits, a trained model, or
        both (training an example alone asked about 'the changes' without saying which)."""
        edits, weights = not self.doc.undo.isClean(), self.doc.weights_unsaved
        what = ("your edits and the trained model" if edits and weights else
                "the trained model (the weights of the last run)" if weights else "your edits")
        return f"Save {what} first?"

    def new(self):
        if self.training.worker is None and self._may_discard():
            self.set_document(Document())

    def open_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open project", start_in(self), FILTER)
        if path:
            self.open_path(path)

    def ask_recover(self, path, auto):
        """Offer the autosave left by a crash. Tests replace this."""
        if not self.confirm:
            return False
        model = ", with the trained model" if autosave_weights(auto) else ""
        r = QMessageBox.question(
            self, "Recover unsaved changes?",
            f"{os.path.basename(path)} has unsaved changes from a session that did not end "
            f"normally. Recover them{model}? (No keeps the file as it was saved; the autosave "
            "is removed.)", QMessageBox.Yes | QMessageBox.No)
        return r == QMessageBox.Yes

    def offer_untitled_recovery(self):
        """An untitled project's autosave left by another (crashed) session: offer it."""
        folder = os.path.dirname(Document().autosave_path())
        mine = os.path.basename(self.doc.autosave_path())
        found = sorted((p for p in glob.glob(os.path.join(folder, "untitled-*.loom.autosave"))
                        if os.path.basename(p) != mine), key=os.path.getmtime)
        if not found:
            return False
        newest = found[-1]
        if self.ask_recover("an untitled project", newest) and not self._recover(newest):
            return False
        for p in found:  # the recovered one's weights are in memory now
            remove_autosave_files(p)
        return True

    def _recover(self, auto, path=None):
        """Open an autosave as unsaved work on `path` (None: untitled), with the trained
        weights it names; the log says what came back. False if unreadable."""
        try:
            doc = Document.recover(auto, path)
        except LayerloomError as e:
            self.message(f"The autosave {auto} could not be read: {e}")
            return False
        self.set_document(doc)
        self.message(f"Recovered unsaved changes from {auto}{recovered_model(doc)}", 10000)
        return True

    def autosave(self):
        try:  # with a block open, the project (the block's edits join it on Back)
            if self.root_doc().autosave():
                self.statusBar().showMessage("Autosaved", 2000)
        except OSError as e:
            self.log_line(f"Autosave failed: {e}")

    # -- recent files -----------------------------------------------------------------------
    @staticmethod
    def _settings():
        return QSettings("Layerloom", "Layerloom")

    def recent_files(self):
        v = self._settings().value("recent", [])
        v = [v] if isinstance(v, str) else list(v or [])
        return [p for p in v if os.path.exists(p)]

    def _remember(self, path):
        path = os.path.abspath(path)
        recent = [path] + [p for p in self.recent_files() if p != path]
        self._settings().setValue("recent", recent[:10])

    def _fill_recent(self):
        self.recent_menu.clear()
        files = self.recent_files()
        for p in files:
            a = self.recent_menu.addAction(os.path.basename(p))
            a.setToolTip(p)
            a.triggered.connect(lambda checked=False, p=p: self.open_path(p))
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def open_path(self, path):
        if self.training.worker is not None or not self._may_discard():
            return False
        auto = recoverable(path)
        if auto is not None:
            if self.ask_recover(path, auto):
                if self._recover(auto, path):
                    return True
                self.message("Opening the saved file instead.")
            else:
                remove_autosave_files(auto)
        try:
            doc = Document.open(path)
        except LayerloomError as e:
            lines = e.lines()
            QMessageBox.warning(self, "Cannot open project", f"{path}:\n" + "\n".join(lines[:12]))
            return False
        self.set_document(doc)
        self._remember(path)
        if doc.load_message:
            self.message(doc.load_message)
        return True

    def save(self):
        if not self.close_block(True):  # a block open: its edits join the project first
            return False
        if not self.doc.path:
            return self.save_as()
        return self._save_to(self.doc.path)

    def save_as_start(self):
        """Where Save As starts: the project's own file, else the folder of the last project
        opened, else Documents (not the folder the editor was started from)."""
        if self.doc.path:
            return self.doc.path
        name = (self.doc.project.name or "untitled").replace(os.sep, "_")
        return start_in(self, f"{name}.loom")

    def save_as(self):
        if not self.close_block(True):
            return False
        path, _ = QFileDialog.getSaveFileName(self, "Save project", self.save_as_start(), FILTER)
        if not path:
            return False
        if not path.endswith(".loom"):
            path += ".loom"
        return self._save_to(path)

    def _save_to(self, path):
        try:
            note = self.doc.save(path)
        except OSError as e:
            QMessageBox.warning(self, "Save failed", f"{path}: {e.strerror or e}\n"
                                "The file on disk was not changed.")
            return False
        self._remember(path)
        if note:  # weights left out: said where the user looks, and kept there longer
            self.message(f"{note} ({path})", 15000)
        else:
            self.message(f"Saved {path}" + (f" and its trained weights ({self.doc.project.weights})"
                                            if self.doc.project.weights else ""))
        return True


def recovered_model(doc):
    """What the recovery message adds about the trained model that came back with it."""
    if doc.load_message:
        return f"; {doc.load_message}"
    if doc.weights is None:
        return " (no trained model)"
    problem = doc.weights_problem()
    if problem is not None:
        return (f"; its trained weights came back too but no longer fit the graph ({problem}):"
                " train again")
    if doc.weights_unsaved:
        return ", with the trained model (the weights of the last run, not saved yet)"
    return f", with the trained model saved beside the project ({doc.project.weights})"
