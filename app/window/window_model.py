"""The editor window's Model menu: Predict for a file or an image folder (the Predictions tab)
and Evaluate on the test split (the Results tab and a Test: line in the log), on the
document's trained weights; after a stopped run the evaluation a full run ends with;
Fine-tune... (finetune_dialog.py: a new project, a trained model's body frozen under a new
head) and Unfreeze Top Layers... (one undo step). A mixin of
MainWindow (app/window/main_window.py), whose document, panels and messages it uses; the work
runs in model_tasks.ModelTask threads."""
import os

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QInputDialog, QMessageBox

from layerloom.core.errors import LayerloomError
from layerloom.core.finetune import top_frozen

from layerloom.data import imagefolder
from layerloom.data.inputs import TABLE_EXTENSIONS

from layerloom.app.look.dialogs import ask_path

from layerloom.app.editing.commands import SetTrainableCmd
from layerloom.app.editing.document import Document

from .finetune_dialog import FineTuneDialog
from .model_tasks import ModelTask, evaluate_test, predict_file, snapshot

INPUT_FILTER = ("Inputs (" + " ".join(f"*{e}" for e in TABLE_EXTENSIONS + (".npy", ".npz")
                                      + imagefolder.EXTENSIONS) + ");;All files (*)")


def test_line(logs, note=""):
    """The log's line for test-split figures, after a full run or an evaluation."""
    return f"Test{note}: " + "  ".join(f"{k} {v:.4f}" for k, v in logs.items())


class ModelActions:
    predict_task = evaluate_task = None
    closing = False  # set by the window's closeEvent
    _model_state = None  # "none", "fit" or "stale": the document's weights, last seen

    def _build_model_menu(self, menubar):
        m = menubar.addMenu("&Model")
        self.predict_action = QAction("&Predict...", self)
        self.predict_action.setShortcut("Ctrl+P")
        self.predict_action.triggered.connect(self.predict_dialog)
        self.predict_folder_action = QAction("Predict for an Image &Folder...", self)
        self.predict_folder_action.triggered.connect(self.predict_folder_dialog)
        self.evaluate_action = QAction("&Evaluate on the Test Split", self)
        self.evaluate_action.triggered.connect(lambda: self.evaluate_model())
        for a in (self.predict_action, self.predict_folder_action, self.evaluate_action):
            a.setEnabled(False)
            m.addAction(a)
        m.addSeparator()
        self.finetune_action = QAction("Fine-&tune...", self)
        self.finetune_action.setStatusTip("A new project: a trained model's layers frozen up "
                                          "to a cut, a new head for your data, a low rate")
        self.finetune_action.triggered.connect(lambda: self.finetune_dialog())
        self.unfreeze_top_action = QAction("&Unfreeze Top Layers...", self)
        self.unfreeze_top_action.setStatusTip("Train the top frozen layers too (fine-tuning's "
                                               "second step)")
        self.unfreeze_top_action.triggered.connect(lambda: self.unfreeze_top_dialog())
        m.addAction(self.finetune_action)
        m.addAction(self.unfreeze_top_action)
        m.setToolTipsVisible(True)  # an item that is off says why

    def _connect_model(self):
        """Called for each document's panels."""
        self._model_state = None
        self.predictions.sigPredict.connect(self._predict_from_panel)
        self.training.sigTrained.connect(self._trained)
        self.doc.sigModelChanged.connect(self._changed)

    # -- the document's model -----------------------------------------------------------------
    def _update_model_state(self):
        """Enable the Model actions when the weights fit the graph; say in the log when an
        edit makes them stale, and when undoing it makes them fit again."""
        doc = self.doc
        problem = doc.weights_problem()
        state = "none" if doc.weights is None else ("stale" if problem else "fit")
        if self._model_state == "fit" and state == "stale":
            self.message(f"The trained weights no longer fit the graph ({problem}): Predict "
                         "is off until they do; Save keeps the weights of the layers that still "
                         "fit. Undo the change or train again.", 10000)
        elif self._model_state == "stale" and state == "fit":
            self.log_line("The trained weights fit the graph again.")
        self._model_state = state
        usable = state == "fit" and not doc.locked
        for a in (self.predict_action, self.predict_folder_action, self.evaluate_action):
            a.setEnabled(usable)
            why = "training runs" if doc.locked else problem or "not trained yet"
            a.setToolTip("" if usable else f"Off: {why}")
            a.setStatusTip(a.toolTip())
        self.predictions.set_enabled_for(None if usable else problem)

    def _trained(self, weights, stopped):
        """A training run ended (finished or stopped) with these weights."""
        self.doc.set_trained(weights)
        if stopped and not self.closing:  # what a full run ends with: the test figures and the Results tab
            self.evaluate_model(note=" after Stop")

    def _device(self):
        return self.training.device.currentData()

    def _start(self, attr, fn, *args, done, failed):
        if self.closing:
            return
        task = ModelTask(fn, snapshot(self.doc.project), self.doc.weights, *args,
                         self._device())
        doc = self.doc
        # a result that arrives after the document was replaced or the window closed is dropped
        task.sigDone.connect(lambda r: doc is self.doc and not self.closing and done(r))
        task.sigFailed.connect(lambda m: doc is self.doc and not self.closing and failed(m))
        task.finished.connect(lambda: setattr(self, attr, None))
        setattr(self, attr, task)
        task.start()

    # -- Predict --------------------------------------------------------------------------------
    def predict_dialog(self):
        ask_path(self, "Predict for a file", self.predict_path, INPUT_FILTER)

    def predict_folder_dialog(self):
        ask_path(self, "Predict for a folder of images", self.predict_path)

    def _predict_from_panel(self, kind):
        (self.predict_folder_dialog if kind == "folder" else self.predict_dialog)()

    def predict_path(self, path):
        """Run the document's model on the file or folder at `path` (in a thread); the
        Predictions tab shows the result or why the file does not fit."""
        problem = self.doc.weights_problem()
        if problem is not None:
            self.message(f"Cannot predict: no model ({problem})")
            return False
        if self.predict_task is not None:
            self.message("A prediction is still running")
            return False
        self.predictions.show_busy(path)
        self.output_tabs.setCurrentWidget(self.predictions)

        def done(p):
            self.predictions.show_prediction(p)
            self.log_line(f"Predicted {len(p.rows)} sample(s) of {p.description}")

        def failed(message):
            self.predictions.show_failed(os.path.basename(path.rstrip(os.sep)) or path,
                                         message)
            self.log_line(f"Cannot predict for {path}: {message}")
        self._start("predict_task", predict_file, path, done=done, failed=failed)
        return True

    # -- Evaluate -------------------------------------------------------------------------------
    def evaluate_model(self, note=""):
        """Loss and metrics on the test split (a Test: line in the log) and, for a classifier,
        the Results tab, from the document's weights."""
        if self.doc.weights_problem() is not None or self.evaluate_task is not None:
            return False
        self.statusBar().showMessage("Evaluating on the test split...", 4000)

        def done(result):
            logs, r = result
            if logs is not None:
                self.log_line(test_line(logs, note))
            if r is not None:
                self.results.show_results(r, note)
                self.output_tabs.setCurrentWidget(self.results)
                self.make_room_for_results()

        def failed(message):
            self.log_line(f"Could not evaluate the model: {message}")
        self._start("evaluate_task", evaluate_test, done=done, failed=failed)
        return True

    # -- Fine-tune ------------------------------------------------------------------------------
    def finetune_dialog(self, run=True):
        """The Fine-tune dialog; run=False returns it unshown (tests, screenshots). OK opens
        the fine-tuning project as a new document."""
        if self.training.worker is not None:
            self.message("Cannot fine-tune while training runs")
            return None
        dlg = FineTuneDialog(self)
        if run and dlg.exec() == QDialog.Accepted:
            self.finetune_accepted(dlg)
        return dlg

    def finetune_accepted(self, dlg):
        """Open the project `dlg` describes (False when it cannot be made, said in a box)."""
        try:
            project, weights, plan = dlg.result_project()
        except LayerloomError as e:
            QMessageBox.warning(self, "Cannot fine-tune", str(e))
            return False
        if not self._may_discard():
            return False
        self.set_document(Document(project))
        if weights:
            self.doc.set_trained(weights)
        self.message(f"Fine-tuning project: {len(plan.frozen)} layers frozen up to "
                     f"{plan.cut!r}, new head {', '.join(plan.head)}; train it, then "
                     "Model > Unfreeze Top Layers... to tune the top ones too", 12000)
        return True

    def unfreeze_top_dialog(self, n=None):
        """Unfreeze the top n frozen layers with weights (asked for when None), one undo
        step. Returns the ids unfrozen."""
        g = self.doc.graph
        if not g.frozen():
            self.message("Nothing is frozen")
            return []
        if self.doc.locked:
            self.message("Cannot unfreeze while training runs")
            return []
        if n is None:
            n, ok = QInputDialog.getInt(self, "Unfreeze Top Layers",
                                        "Frozen layers with weights to train again, counted "
                                        "from the output:", 1, 1, 10_000)
            if not ok:
                return []
        try:
            ids = top_frozen(g, n)
        except LayerloomError as e:
            self.message(f"Cannot unfreeze: {e}")
            return []
        if not ids:
            self.message("No frozen layer with trainable weights is left (a frozen "
                         "BatchNormalization stays frozen)")
            return []
        self.doc.push(SetTrainableCmd(self.doc, {nid: True for nid in ids},
                                      f"Unfreeze top {n}"))
        self.message(f"Unfrozen: {', '.join(ids)}")
        return ids

    def wait_model_tasks(self):
        for task in (self.predict_task, self.evaluate_task, self.interop_task):
            if task is not None:
                task.wait(60000)
