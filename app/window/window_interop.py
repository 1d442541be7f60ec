"""The editor window's way in and out: File > Import Model... (an ONNX, Keras .keras or legacy
.h5 model becomes a new, unsaved project with its weights, laid out) and File > Export (the
document's trained model as an ONNX or Keras model file, or as a Keras or PyTorch training
script shown first in a preview with Copy and Save As...). The conversions are the command
line's (layerloom.interop), run in model_tasks.ModelTask threads on a snapshot of the
project. A mixin of MainWindow (app/window/main_window.py)."""
import os
import tempfile

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog

from layerloom import interop
from layerloom.app.look.dialogs import start_in

from .code_preview import CodePreview
from layerloom.app.editing.document import Document
from .model_tasks import ModelTask, snapshot

IMPORT_FILTER = ("Models (*.onnx *.keras *.h5);;ONNX models (*.onnx);;"
                 "Keras models (*.keras *.h5);;All files (*)")
CODE = {"keras-code": "train_keras.py", "pytorch-code": "train_torch.py"}


def read_model(path):
    """(project laid out on the canvas, weights) from a model file."""
    from layerloom.core.layout import auto_layout
    project, weights = interop.importer(path).read(path)
    project.ui = {"positions": {k: list(p) for k, p in auto_layout(project.graph).items()}}
    return project, weights


def script_text(project, weights, format):
    """The script an export would write (into a scratch folder), for the preview."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, CODE[format])
        interop.export(project, weights, path, format)
        with open(path, encoding="utf-8") as f:
            return f.read()


class InteropActions:
    interop_task = None
    code_preview = None

    def _build_interop_menu(self, file_menu):
        a = QAction("&Import Model...", self)
        a.setShortcut("Ctrl+I")
        a.triggered.connect(self.import_dialog)
        file_menu.addAction(a)
        self.import_action = a
        m = file_menu.addMenu("&Export")
        self.export_actions = {}
        for fmt, (_, _, what, _) in interop.EXPORTS.items():
            act = m.addAction(f"{what[0].upper()}{what[1:]}...")
            act.triggered.connect(lambda checked=False, f=fmt: self.export_dialog(f))
            self.export_actions[fmt] = act

    def _busy(self):
        if self.interop_task is not None:
            self.message("An import or export is still running")
            return True
        return False

    def _run(self, fn, *args, done, what):
        task = ModelTask(fn, *args)
        task.sigDone.connect(lambda r: not self.closing and done(r))
        task.sigFailed.connect(lambda m: not self.closing and self.message(
            f"{what} failed: {m}"))
        task.finished.connect(lambda: setattr(self, "interop_task", None))
        self.interop_task = task
        self.statusBar().showMessage(f"{what}...")
        task.start()

    # -- import ---------------------------------------------------------------------------------
    def import_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Import a model", start_in(self),
                                              IMPORT_FILTER)
        if path:
            self.import_model(path)

    def import_model(self, path):
        """Read the model at `path` (in a thread) into a new untitled document with its
        weights: unsaved until Save As."""
        if self.training.worker is not None or self._busy() or not self._may_discard():
            return False

        def done(result):
            project, weights = result
            self.set_document(Document(project))
            self.doc.set_trained(weights)
            self.message(f"Imported {path}: {len(project.graph.nodes)} layers with their "
                         "weights; Save As to keep them as a project")
        self._run(read_model, path, done=done, what=f"Importing {os.path.basename(path)}")
        return True

    # -- export ---------------------------------------------------------------------------------
    def _export_args(self, format):
        """(project snapshot, weights) for an export, or None with the reason said (before any
        file dialog: a package the export needs and this Python lacks, named with its extra)."""
        problem = self.doc.weights_problem()
        if problem is not None:
            self.message(f"Cannot export: no trained model ({problem}); train it first")
            return None
        missing = interop.missing(format)
        if missing:
            self.message(f"Cannot export: {missing}")
            return None
        if self._busy():
            return None
        return snapshot(self.doc.project), self.doc.weights

    def export_dialog(self, format):
        if format in CODE:
            return self.preview_code(format)
        if self._export_args(format) is None:
            return False
        _, _, what, pattern = interop.EXPORTS[format]
        base = os.path.splitext(os.path.basename(self.doc.path or "model.loom"))[0]
        path, _ = QFileDialog.getSaveFileName(self, f"Export as {what}",
                                              start_in(self, base + pattern[1:]),
                                              f"{what}s ({pattern})")
        return bool(path) and self.export_to(path, format)

    def export_to(self, path, format):
        """Write the document's model to `path` as `format` (in a thread)."""
        args = self._export_args(format)
        if args is None:
            return False
        what = interop.EXPORTS[format][2]
        self._run(interop.export, *args, path, format, what=f"Exporting the {what}",
                  done=lambda _: self.message(f"Exported the {what} to {path}"))
        return True

    def preview_code(self, format):
        """Generate the script (in a thread) and show it in the preview."""
        args = self._export_args(format)
        if args is None:
            return False
        what = interop.EXPORTS[format][2]

        def done(text):
            if self.code_preview is not None:
                self.code_preview.close()
            note = (f"{CODE[format]}: Save As writes the script and, beside it, the trained "
                    "weights it loads.")
            self.code_preview = CodePreview(f"{what} - {self.windowTitle()}", text, note, self)
            self.code_preview.sigSave.connect(lambda: self._save_code(format))
            self.code_preview.show()
        self._run(script_text, *args, format, done=done, what=f"Writing the {what}")
        return True

    def _save_code(self, format):
        path, _ = QFileDialog.getSaveFileName(self, "Save the script",
                                              start_in(self, CODE[format]),
                                              "Python scripts (*.py)")
        if path:
            self.export_to(path, format)
