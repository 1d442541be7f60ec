"""Model > Fine-tune... and the start page's Fine-tune...: pick a trained model (the open
project, or a .loom, .keras, .h5 or .onnx file), the node to cut at (every layer with its
output shape; by default the last one before the classifier head), and the data (the open
project's, or a folder of images); the dialog shows what will be frozen, the new head and the
learning rate. OK makes the fine-tuning project (layerloom.project.finetune) and opens it as
a new untitled document, its frozen nodes locked and their trained weights kept."""
import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QPushButton, QVBoxLayout)

from layerloom.core.errors import LayerloomError
from layerloom.core.finetune import default_cut, fine_tune_graph
from layerloom.core.graph import fmt_shape
from layerloom.core.sections import training
from layerloom.project import finetune as projfinetune
from layerloom.project import loom as projectfile

from layerloom.app.look.dialogs import start_in

MODEL_FILTER = ("Models (*.loom *.keras *.h5 *.onnx);;Layerloom projects (*.loom);;"
                "Keras models (*.keras *.h5);;ONNX models (*.onnx);;All files (*)")
OPEN, FILE = "open", "file"
PROJECT_DATA, FOLDER = "project", "folder"


def read_any_model(path):
    """(project, weights or None) of a .loom project (its weights file) or an imported model."""
    if path.lower().endswith(".loom"):
        from layerloom.train.session import load_weights
        project = projectfile.load(path)
        weights = load_weights(project.resolve(project.weights)) if project.weights else None
        return project, weights
    from .window_interop import read_model
    return read_model(path)


def _wrapped(text):
    label = QLabel(text)
    label.setWordWrap(True)
    return label


class FineTuneDialog(QDialog):
    """`win`: the MainWindow (its document is the open project, its data the project's)."""

    def __init__(self, win):
        super().__init__(win)
        self.win = win
        self.setWindowTitle("Fine-tune a Model")
        self.model = None      # (project, weights) of the chosen model
        self.folder = None     # the image folder chosen
        self._targets = {}     # data key -> (classes, target shape) or an error text
        col = QVBoxLayout(self)
        col.addWidget(_wrapped("Keep a trained network up to a layer, frozen with its weights, "
                               "and train a new head on your data with a low learning rate."))
        form = QFormLayout()
        self.source = QComboBox()
        has_open = bool(win.doc.graph.nodes)
        if has_open:
            self.source.addItem("The open project", OPEN)
        self.source.addItem("A model file (.loom, .keras, .h5, .onnx)...", FILE)
        self.model_file = QLabel("")
        self.model_file.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form.addRow("Model", self.source)
        form.addRow("", self.model_file)
        self.cut = QComboBox()
        form.addRow("Cut after", self.cut)
        self.data = QComboBox()
        self.data.addItem("The open project's data", PROJECT_DATA)
        self.data.addItem("A folder of images (one subfolder per class)...", FOLDER)
        row = QHBoxLayout()
        row.addWidget(self.data, 1)
        self.browse = QPushButton("Browse...")
        row.addWidget(self.browse)
        form.addRow("Data", row)
        self.data_note = QLabel("")
        self.data_note.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form.addRow("", self.data_note)
        col.addLayout(form)
        self.plan_text = _wrapped("")
        self.plan_text.setObjectName("finetune_plan")
        self.plan_text.setTextFormat(Qt.RichText)
        self.plan_text.setMinimumWidth(520)
        col.addWidget(self.plan_text)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Fine-tune")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        col.addWidget(self.buttons)
        self.source.activated.connect(self._source_picked)
        self.data.activated.connect(self._data_picked)
        self.browse.clicked.connect(self._ask_folder)
        self.cut.currentIndexChanged.connect(lambda _: self.update_plan())
        if not (win.doc.project.dataset or {}):
            self.data.setCurrentIndex(1)
        if has_open:
            self.use_model(win.doc.project, win.doc.weights)
        else:
            self.update_plan()

    # -- choices ------------------------------------------------------------------------------
    def _source_picked(self, _=None):
        if self.source.currentData() == OPEN:
            self.model_file.setText("")
            self.use_model(self.win.doc.project, self.win.doc.weights)
            return
        path, _ = QFileDialog.getOpenFileName(self, "Model to fine-tune", start_in(self.win),
                                              MODEL_FILTER)
        if path:
            self.use_file(path)

    def use_file(self, path):
        """The model in file `path`; False (with the reason shown) when it cannot be read."""
        try:
            project, weights = read_any_model(path)
        except LayerloomError as e:
            self.model_file.setText(f"Cannot read {os.path.basename(path)}: {e}")
            self.model = None
            self.update_plan()
            return False
        self.source.setCurrentIndex(self.source.findData(FILE))
        self.model_file.setText(path)
        self.use_model(project, weights)
        return True

    def use_model(self, project, weights):
        self.model = (project, weights)
        g = project.graph
        shapes = g.analysis().shapes
        self.cut.blockSignals(True)
        self.cut.clear()
        try:
            order = g.topo_order()
        except LayerloomError:
            order = list(g.nodes)
        for nid in order:
            node = g.nodes[nid]
            if node.layer.is_input:
                continue
            shape = ", ".join(fmt_shape(s) for s in shapes.get(nid, [])) or "?"
            self.cut.addItem(f"{nid}  ({node.type})  {shape}", nid)
        try:
            default = default_cut(g)
        except LayerloomError:
            default = None
        i = self.cut.findData(default)
        self.cut.setCurrentIndex(i if i >= 0 else self.cut.count() - 1)
        self.cut.blockSignals(False)
        self.update_plan()

    def _data_picked(self, _=None):
        if self.data.currentData() == FOLDER and not self.folder:
            self._ask_folder()
        self.update_plan()

    def _ask_folder(self):
        path = QFileDialog.getExistingDirectory(self, "Folder of images", start_in(self.win))
        if path:
            self.use_folder(path)

    def use_folder(self, path):
        self.folder = path
        self.data.setCurrentIndex(self.data.findData(FOLDER))
        self.update_plan()

    # -- what OK will do -----------------------------------------------------------------------
    def _dataset(self):
        """The data as fine_tune_project takes it: a folder, or the open project's section."""
        if self.data.currentData() == FOLDER:
            return self.folder
        doc = self.win.doc.project
        return projfinetune.absolute_paths(doc.dataset, doc)

    def _target(self):
        """(classes, target shape) of the chosen data, cached; raises LayerloomError."""
        project = self.model[0]
        data = self._dataset()
        if not data:
            raise LayerloomError("choose the data: the open project has none; pick a folder "
                                 "of images")
        key = ("folder", data) if isinstance(data, str) else ("project", id(self.win.doc))
        if key not in self._targets:
            try:
                ds = (projfinetune.image_folder_dataset(project.graph, data)
                      if isinstance(data, str) else data)
                probe = projectfile.Project(project.graph, dataset=ds)
                self._targets[key] = projfinetune.data_target(probe, ds)
            except LayerloomError as e:
                self._targets[key] = str(e)
        result = self._targets[key]
        if isinstance(result, str):
            raise LayerloomError(result)
        return result

    def plan(self):
        """The core.finetune.FineTunePlan the choices make; raises LayerloomError."""
        if self.model is None:
            raise LayerloomError("choose a model")
        project = self.model[0]
        classes, shape = self._target()
        return fine_tune_graph(project.graph, self.cut.currentData(), classes, shape,
                               project.training.get("optimizer"), training("optimizers").kinds)

    def update_plan(self):
        ok = self.buttons.button(QDialogButtonBox.Ok)
        if self.data.currentData() == FOLDER:
            self.data_note.setText(self.folder or "no folder chosen")
        else:
            d = self.win.doc.project.dataset or {}
            where = d.get("name") or d.get("path")
            self.data_note.setText(f"{d['source']}: {where}" if d.get("source") and where
                                   else d.get("source") or "the open project has no data")
        self.model_file.setVisible(bool(self.model_file.text()))
        try:
            plan = self.plan()
        except LayerloomError as e:
            self.plan_text.setText(f"<span style='color:#c0392b'>{e}</span>")
            ok.setEnabled(False)
            return
        ok.setEnabled(True)
        counts = plan.graph.analysis().params
        frozen_w = sum(counts[n].total for n in plan.frozen if counts.get(n))
        head_w = sum(counts[n].total for n in plan.head if counts.get(n))
        names = ", ".join(plan.frozen[:8]) + (f", ... ({len(plan.frozen)} in all)"
                                              if len(plan.frozen) > 8 else "")
        trained = self.model[1] is not None
        lr = plan.optimizer["params"]["learning_rate"]
        loss = next(iter(plan.loss.values()))["name"].replace("_", " ")
        self.plan_text.setText(
            f"<b>Frozen</b> ({len(plan.frozen)} layers, {frozen_w:,} weights"
            f"{', trained weights kept' if trained else ', not trained: initialised at random'}"
            f"): {names}<br><b>New head</b> ({head_w:,} weights, trained): "
            + "; ".join(plan.description)
            + f"<br><b>Training</b>: {plan.optimizer['name']}, learning rate {lr:g}; "
            f"loss {loss}; metrics {', '.join(plan.metrics)}<br>"
            "Later: Model &gt; Unfreeze Top Layers... trains the top frozen layers too.")

    def result_project(self):
        """(project, weights, plan) for the choices; raises LayerloomError."""
        project, weights = self.model
        data = self._dataset()
        classes, shape = self._target()
        return projfinetune.fine_tune_project(project, weights, self.cut.currentData(), data,
                                              classes, shape)
