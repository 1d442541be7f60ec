"""The training dock: the setup (dataset, optimizer, losses, array mapping, metrics, epochs,
batch size, device) as undoable edits of the project, and run control (Start, Pause, Stop,
Continue, progress). Training runs in a child process (train_worker.py starts
layerloom.cli.train_process); its batch and epoch logs arrive as queued signals and feed the
Curves tab (curves.py). Stop is cooperative: the current batch finishes, weights stay
consistent. The graph is locked while training runs."""
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QVBoxLayout, QWidget)

from layerloom.core.errors import LayerloomError
from layerloom.data import sources
from layerloom.project.training import TRAINING_PARAMS
from layerloom.train.losses import NAMES as LOSS_NAMES
from layerloom.train.metrics import entry_name

from layerloom.app.look import theme
from layerloom.app.look.dialogs import start_in
from layerloom.app.editing.commands import SetSetupCmd, keep_mapping
from layerloom.app.forms.callbacks_form import callbacks_picker
from .curves import Curves
from layerloom.app.forms.metrics_form import MetricsSetup
from layerloom.app.forms.optimizer_form import OptimizerForm
from layerloom.app.forms.number_widgets import IntField
from layerloom.app.forms.param_widgets import narrow_box
from layerloom.app.forms.setup_rows import LossFields, OutputRows
from .train_worker import DeviceSurvey, TrainWorker, short_name


_SETTING = {p.name: p for p in TRAINING_PARAMS}  # epochs, batch size: the project's checks


def dataset_choices():
    """The dataset box's entries from the source declarations: (source, name or None)."""
    return [(s.name, n) for s in sources.all_sources() if s.editor
            for n in (s.choices if s.editor == "named" else (None,))]


class TrainingPanel(OutputRows, QWidget):
    sigChooseData = Signal(str)
    sigLog = Signal(str)
    sigRunning = Signal(bool)
    sigPaused = Signal(bool)  # a run paused (True) or resumed
    sigResults = Signal(object)
    sigTrained = Signal(object, bool)  # a run's weights as it ended, and whether it was stopped
    sigRun = Signal(object, object)  # a run's record (engine/project/runs.py) and its weights
    sigProgress = Signal(int, int, str)  # batches done, in all, and the status line

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.worker = None
        self.choices = None  # the devices found (runtime.Choice), once the survey is done
        self.failure = None  # the dialog of the last run that failed, while it is open
        self.batches_seen = 0  # of the run going on: none when it fails is a failed start
        self.cut_epoch = self.cut_before = None  # (epoch, seconds) stopped in: _epoch
        self.last_history = self.last_weights = self.last_state = None  # of the latest run
        self.output_rows, self.mapping_rows = {}, {}  # rebuilt when the outputs/arrays change
        self.output_fields = {}  # an output's loss fields, beside output_rows
        self._mapping_key = self._names_for = self._names = None
        self._build_setup(doc.project.training)
        self._build_control()
        self._build_layout()
        self.plots = Curves(self.epochs.value())
        self.load_setup()
        self._connect(doc)
        self.device_survey.start()

    def _build_setup(self, t):
        """The setup editors: each change is an undoable command on the project."""
        self.dataset = narrow_box()
        self.dataset.addItem("(choose a dataset)", None)  # shown while none is chosen
        for src, name in dataset_choices():
            self.dataset.addItem(f"{name} ({src})" if name else sources.get(src).label,
                                 f"{src}:{name or ''}")
        self.optimizer = OptimizerForm()
        self.loss = narrow_box()
        self.loss.addItem("(choose a loss)")
        self.loss.addItems(list(LOSS_NAMES))
        self.loss_fields = LossFields("training.loss")  # one output: its loss's fields
        self.loss_fields.sigEdited.connect(
            lambda k, v: self._loss_field_edited(self.doc.graph.outputs(), k, v))
        self.per_output, self.per_output_form = self._subform()  # a loss and weight per output
        self.mapping, self.mapping_form = self._subform()  # arrays to inputs and targets
        self.metrics = MetricsSetup()
        self.callbacks = callbacks_picker()
        # typed as text: a bad value is refused with the reason, never changed (issue 31)
        self.epochs, self.batch = (IntField(t.get(p.name, p.default), p.min, p.max)
                                   for p in (_SETTING["epochs"], _SETTING["batch_size"]))
        self.device = narrow_box(16)
        self.device.addItem("auto (finding the devices...)", None)
        self.device_survey = DeviceSurvey(self)
        self.setup_error = QLabel()
        self.setup_error.setWordWrap(True)
        self.setup_error.setStyleSheet("color: #c1121f;")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        theme.subtext(self.summary)

    @staticmethod
    def _subform():
        holder = QWidget()
        form = QFormLayout(holder)
        form.setContentsMargins(0, 0, 0, 0)
        return holder, form

    def _build_control(self):
        # said as the toolbar says it, and the same press (window_training's actions click
        # these): one way to start a run, in view in either place (issue 31, item 7)
        self.start = QPushButton("\u25b6 Run")
        self.start.setToolTip("Train the model (F5)")
        self.continue_run = QPushButton("Continue")
        self.continue_run.setToolTip("Resume the paused run, or continue the stopped run "
                                     "exactly where it stopped")
        self.continue_run.setEnabled(False)
        self.stop = QPushButton("\u25a0 Stop")
        self.stop.setEnabled(False)
        self.pause = QPushButton("Resume")  # as wide as its longer text: nothing shifts
        self.pause.setMinimumWidth(self.pause.sizeHint().width())
        self.pause.setText("Pause")
        self.pause.setCheckable(True)
        self.pause.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.log_scale = QCheckBox("log scale")

    def _build_layout(self):
        # the setup in one box, greyed while a run goes (it looked editable: issue 31)
        self.setup_box = QWidget()
        form = QFormLayout(self.setup_box)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Dataset", self.dataset)
        # what every run sets first, above the fold (they were at the bottom: issue 31)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Optimizer", self.optimizer.choice)
        form.addRow(self.optimizer)
        form.addRow("Loss", self.loss)
        form.addRow(self.loss_fields)
        form.addRow(self.per_output)
        form.addRow(self.mapping)
        form.addRow("Metrics", self.metrics)
        form.addRow("Callbacks", self.callbacks)
        form.addRow("Device", self.device)
        buttons = QHBoxLayout()
        for b in (self.start, self.pause, self.stop, self.continue_run):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.setup_box)
        lay.addWidget(self.setup_error)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.log_scale)
        lay.addStretch(1)

    def _connect(self, doc):
        self.dataset.activated.connect(self._dataset_chosen)
        self.optimizer.sigEntry.connect(lambda opt: self._set_training("optimizer", opt))
        self.optimizer.sigError.connect(self._fit_height)  # a line under its parameter
        self.loss.activated.connect(lambda _: self._loss_chosen())
        self.metrics.sigMetrics.connect(lambda m: self._set_training("metrics", m))
        self.callbacks.sigEntries.connect(lambda c: self._set_training("callbacks", c))
        self.epochs.editingFinished.connect(lambda: self._set_number("epochs", self.epochs))
        self.batch.editingFinished.connect(lambda: self._set_number("batch_size", self.batch))
        self.device_survey.sigFound.connect(self._devices_found)
        self.start.clicked.connect(lambda: self.start_training())
        self.continue_run.clicked.connect(self.continue_training)
        self.stop.clicked.connect(self.stop_training)
        self.pause.clicked.connect(self.toggle_pause)
        self.log_scale.toggled.connect(lambda on: self.plots.loss_plot.setLogMode(y=on))
        doc.sigChanged.connect(self.load_setup)  # undo/redo of setup changes shows up here

    # -- setup ----------------------------------------------------------------------------------
    def _devices_found(self, choices):
        """Fill the device list from layerloom.backend.runtime.survey(): auto names the device it means
        and why; each device says in its tooltip why it is or is not the default, as
        `layerloom --list-devices` does."""
        from layerloom.backend.runtime import describe_device
        current = self.device.currentData()
        self.device.clear()
        self.choices = [] if isinstance(choices, str) else list(choices)
        if isinstance(choices, str):  # no OpenCL at all: training will say so
            self.device.addItem(f"no OpenCL device ({choices})", None)
            return
        default = next((c for c in choices if c.default), None)
        self.device.addItem(f"auto: {default.pi}:{default.di} {short_name(default)}"
                            if default else "auto (no device works: see each one)", None)
        advice = default.caps.advice if default and default.caps else ""
        self.device.setItemData(0, (default.why + (f"\n{advice}" if advice else ""))
                                if default else "", Qt.ToolTipRole)
        for c in choices:
            self.device.addItem(f"{c.pi}:{c.di} {describe_device(c.plat, c.dev)}",
                                f"{c.pi}:{c.di}")
            self.device.setItemData(self.device.count() - 1, c.why, Qt.ToolTipRole)
        i = self.device.findData(current)
        self.device.setCurrentIndex(max(0, i))
        # the list shows whole names, wider than the dock if need be
        view = self.device.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 2 * view.frameWidth())

    def device_memory(self):
        """(bytes, bytes in one buffer, its name) of the device a run would use now, or None
        while the devices are not known."""
        data = self.device.currentData()
        c = next((c for c in self.choices or () if (f"{c.pi}:{c.di}" == data if data
                                                     else c.default)), None)
        if c is None:
            return None
        try:
            return int(c.dev.global_mem_size), int(c.dev.max_mem_alloc_size), short_name(c)
        except Exception:  # a driver that cannot say: nothing to compare with
            return None

    def memory_problem(self):
        """(message, node, is_error) of the model's memory at the batch size set, against the
        device a run would use (core/memory.py), or None when it is no concern."""
        from layerloom.core.memory import memory_problem
        have, one, name = self.device_memory() or (None, None, "the device")
        try:
            return memory_problem(self.doc.graph, self.batch.value(), have, one, name)
        except Exception:  # a half-built graph the analysis has no shapes for
            return None

    def load_setup(self):
        """Show the project's current setup in the editors."""
        p = self.doc.project
        d, t = p.dataset, p.training
        s = sources.get(d.get("source")) if d else None
        key = (f"{s.name}:" if s and s.editor != "named" else
               f"{d.get('source')}:{d.get('name') or ''}")
        idx = self.dataset.findData(key) if d else -1
        self.dataset.setCurrentIndex(max(idx, 0))  # 0: "(choose a dataset)"
        self.optimizer.show_entry(t.get("optimizer", {"name": "adam"}))
        losses = {v["name"] for v in t.get("loss", {}).values()}
        # "(choose a loss)" unless one loss is set for all, or each output has its own
        outputs = self.doc.graph.outputs()
        own = len(losses) > 1 and set(t.get("loss", {})) >= set(outputs)
        self.loss.setItemText(0, "(one per output, below)" if own else "(choose a loss)")
        self.loss.setCurrentIndex(0)
        auto = self.auto_loss()
        if auto and len(losses) == 1:  # the one the data implies: said as such
            self.loss.setItemText(0, auto)
        elif len(losses) == 1:
            self.loss.setCurrentText(losses.pop())
        self._load_output_rows()
        self._load_mapping_rows()
        self.metrics.show_metrics(t.get("metrics", []), self.doc.graph.outputs())
        callbacks = t.get("callbacks", [])
        self.callbacks.show_entries(callbacks if isinstance(callbacks, list) else [])
        self.epochs.setValue(t.get("epochs", 10))
        self.batch.setValue(t.get("batch_size", 32))
        self.summary.setText(self._summary())
        self._fit_height()

    def _push(self, cmd):
        try:
            self.doc.push(cmd)
        except RuntimeError as e:
            self.setup_error.setText(str(e))
            self.load_setup()

    def _changed_setup(self):
        self.setup_error.setText("")
        self.summary.setText(self._summary())

    def _set_training(self, key, value):
        if self.doc.project.training.get(key) != value:
            self._push(SetSetupCmd(self.doc, "training", key, value, self._changed_setup))

    def _set_number(self, key, field):
        """A typed epochs or batch size: set when the project's check takes it, else refused
        with the reason under the setup (the field keeps the text, the project its value)."""
        try:
            value = _SETTING[key].validate(field.read(), key)
        except LayerloomError as e:
            self.setup_error.setText(f"{key}: {e.message}")
            return
        field.setValue(value)
        self.setup_error.setText("")
        self._set_training(key, value)

    def _dataset_chosen(self, index):
        if self.dataset.itemData(index) is None:  # the placeholder
            return
        src, name = self.dataset.itemData(index).split(":", 1)
        s = sources.get(src)
        if s.editor == "data_tab":  # the Data tab holds their settings
            self.sigChooseData.emit(src)
            self.load_setup()
            return
        if s.editor == "file":
            from PySide6.QtWidgets import QFileDialog
            path, _ = QFileDialog.getOpenFileName(self, "Data for training", start_in(self),
                                                  s.file_filter)
            if not path:
                self.load_setup()
                return
            new = {"source": src, "path": path}
        else:
            new = {"source": src, "name": name}
        self.set_dataset(new)

    def set_dataset(self, new):
        old = self.doc.project.dataset
        new = keep_mapping(old, new)
        if new != old:
            self._push(SetSetupCmd(self.doc, "dataset", None, new, self._changed_setup))

    def _fit_height(self):
        """Inside a scroll area: keep rows at their natural height and let the area scroll
        down (never sideways: the dock's boxes are narrow_box()es)."""
        self.setMinimumHeight(self.layout().sizeHint().height())

    def _summary(self):
        p = self.doc.project
        d, t = p.dataset, p.training
        data = f"{d.get('name') or d.get('path')} ({d.get('source')})" if d else "none chosen"
        lr = self.optimizer.learning_rate()
        losses = [self.auto_loss()] if self.auto_loss() else \
            sorted({v["name"] for v in t.get("loss", {}).values()}) or ["none"]
        metrics = t.get("metrics", [])
        if isinstance(metrics, dict):
            metrics = [m for ms in metrics.values() for m in ms]
        metrics = sorted({entry_name(m) for m in metrics})
        held = t.get("validation_split") or 0.0
        own = ((d or {}).get("split") or {}).get("validation")
        if own:
            data += f", validation: the dataset's split ({own:g})"
        elif held:  # Keras' validation_split: the last samples, before shuffling
            data += f", validation: the last {held:.0%} of the training data"
        return (f"<b>Data</b> {data}<br><b>Optimizer</b> {self.optimizer.name}"
                + f", learning rate {lr}"
                + f"<br><b>Loss</b> {', '.join(losses)}<br><b>Metrics</b> "
                + (", ".join(metrics) or "none"))

    def _fine_tuning_weights(self):
        """The document's weights that fit the graph where it has frozen layers (a fine-tuning:
        a frozen layer holds what it learnt, and unfrozen ones go on from theirs), else None:
        a project without frozen layers trains from scratch, as each run in Runs does."""
        if not self.doc.graph.frozen() or not self.doc.weights:
            return None
        from layerloom.core.trained import fit_weights
        return dict(fit_weights(self.doc.graph, self.doc.weights).kept) or None

    # -- control ----------------------------------------------------------------------------
    def continue_training(self):
        """Continue the stopped run exactly where it stopped (its weights, optimizer state,
        position and callbacks), to the Epochs set here in all; or resume a paused one."""
        if self.worker is not None:
            if self.worker.paused:
                self.toggle_pause()
            return
        if self.last_state is not None and self.last_weights is not None:
            self.start_training(resume=(self.last_weights, self.last_state))

    def start_training(self, resume=None):
        if self.worker is not None:
            return
        from layerloom.project import loom as projectfile
        from layerloom.core.errors import ProjectError
        # a number typed and not yet committed (F5 with the focus still in the field): the
        # run takes it, and so does the project, as a click on Run (which takes the focus) does
        for key, field in (("epochs", self.epochs), ("batch_size", self.batch)):
            if self.doc.project.training.get(key) != field.value():
                self._set_number(key, field)
        # the project as this run trains it, serialised once: checked here, parsed once more
        # in the training process, and kept for the run's record
        as_file = projectfile.to_dict(self.doc.project)
        try:  # the same checks as `layerloom --run`
            projectfile.from_dict(as_file)
        except ProjectError as e:
            self.sigLog.emit("Cannot train: " + "; ".join(e.lines()[:3]))
            self.status.setText("Fix the problems listed under Problems first.")
            return
        memory = self.memory_problem()
        if memory and memory[2]:  # refused before a process is started: said, not only logged
            self._failed(f"could not start training: {memory[0]}")
            return
        # a resumed run goes on drawing its curves
        self.plots.begin(keep=resume is not None, epochs=self.epochs.value())
        self.doc.set_locked(True)
        self.setup_box.setEnabled(False)
        self.sigRunning.emit(True)
        self.continue_run.setEnabled(False)
        initial = self._fine_tuning_weights() if resume is None else None
        if initial:
            self.sigLog.emit("The project has frozen layers: this run starts from the model's "
                             "weights (trained, imported or kept by Fine-tune), and initialises "
                             "only the layers that have none")
        self.worker = TrainWorker(as_file, self.doc.project.path, self.epochs.value(),
                                  self.batch.value(), self.device.currentData(), resume,
                                  initial)
        self.worker.sigBegin.connect(self._begin)
        self.worker.sigBatch.connect(self._batch)
        self.worker.sigEpoch.connect(self._epoch)
        self.worker.sigDone.connect(self._done)
        self.worker.sigResults.connect(self.sigResults)
        self.worker.sigFailed.connect(self._failed)
        self.worker.sigStatus.connect(self.status.setText)
        self.worker.finished.connect(self._finished)
        self.start.setEnabled(False)
        self.stop.setEnabled(True)
        self.pause.setEnabled(True)
        self.status.setText("Preparing the data and compiling the kernels (the first run on "
                            "a device takes longest)...")
        self.rate_from, self.paused_total, self.paused_at = None, 0.0, None
        self.batches_seen = 0
        # (epoch, seconds) of the epoch the last run stopped in: Continue finishes that
        # epoch, whose time is then the whole epoch's, not only the resumed part's
        self.cut_before = self.cut_epoch if resume is not None else None
        self.cut_epoch = None
        self.t0 = time.perf_counter()
        self.started = time.time()
        self.last_history = None  # until this run's arrives
        self.run_project = as_file  # as this run trains it
        self.run_epochs = self.epochs.value()  # the field may be reloaded before the record
        self.worker.start()

    def stop_training(self):
        if self.worker is not None:
            self.worker.request_stop()
            self.status.setText("Stopping after the current batch...")

    def toggle_pause(self):
        if self.worker is None:
            return
        self.worker.set_paused(not self.worker.paused)
        if self.worker.paused:
            self.paused_at = time.perf_counter()
        elif self.paused_at is not None:
            self.paused_total += time.perf_counter() - self.paused_at
            self.paused_at = None
        paused = self.worker.paused
        self.pause.setChecked(paused)
        self.pause.setText("Resume" if paused else "Pause")
        self.continue_run.setEnabled(paused)  # Continue resumes a paused run too
        self.status.setText("Paused after the current batch." if paused else "Resumed.")
        self.sigPaused.emit(paused)

    def time_left(self, done, now=None):
        """What the status says of the time left: measured from the first batch read back
        (data preparation and kernel compilation before it say nothing of the rest), the
        time paused left out, once it has a second of batches to go by."""
        now = time.perf_counter() if now is None else now
        if self.rate_from is None:
            self.rate_from = (now, done, self.paused_total)
            return "estimating the time left..."
        t, first, paused = self.rate_from
        spent = now - t - (self.paused_total - paused)
        if done <= first or spent < 1.0:
            return "estimating the time left..."
        left = spent / (done - first) * (self.total_batches - done)
        return (f"about {left:.0f} s left" if left < 120 else
                f"about {left / 60:.0f} min left")

    def _begin(self, epochs, batches):
        self.total_batches = epochs * batches
        self.batches = batches
        self.progress.setRange(0, self.total_batches)
        self.sigProgress.emit(0, self.total_batches, "")

    def _batch(self, epoch, batch, num_batches, logs):
        done = (epoch - 1) * num_batches + batch
        self.batches_seen += 1
        self.progress.setValue(done)
        self.status.setText(f"Epoch {epoch}, batch {batch}/{num_batches}, loss "
                            f"{logs['loss']:.4f}, " + self.time_left(done))
        self.sigProgress.emit(done, self.total_batches, self.status.text())
        x = epoch - 1 + batch / num_batches
        for k, v in logs.items():
            self.plots.add_point(k, x, v)

    def _epoch(self, logs):
        for k, v in logs.items():
            if k.startswith("val_"):
                self.plots.add_point(k, logs["epoch"], v)
        from layerloom.train.fit import figures  # not Stop's "interrupted" flag: a status
        seconds, took = logs["seconds"], f"{logs['seconds']:.2f}s"
        if self.cut_before is not None and self.cut_before[0] == logs["epoch"]:
            seconds += self.cut_before[1]
            took = f"{seconds:.2f}s, {logs['seconds']:.2f}s of it after Continue"
        if logs.get("interrupted"):
            self.cut_epoch = (logs["epoch"], seconds)
        self.sigLog.emit(f"Epoch {logs['epoch']}: " + "  ".join(
            f"{k} {v:.4f}" for k, v in figures(logs).items())
            + f"  ({took})" + ("  (stopped)" if logs.get("interrupted") else ""))

    def _done(self, history):
        self.plots.flush()
        if "test" in history:
            from layerloom.app.window.window_model import test_line
            self.sigLog.emit(test_line(history["test"]))
        self.status.setText("Stopped." if history.get("stopped") else "Finished.")
        self.last_history = history

    def _record(self, history, weights, fitted):
        from layerloom.project import runs
        if fitted:  # the normalisation these weights were trained with, restored with them
            self.run_project["dataset"] = {**self.run_project["dataset"], "fitted": fitted}
        record = runs.make_record(self.run_project, history, "editor", history.get("device"),
                                  history.get("parameters"), started=self.started,
                                  epochs=self.run_epochs, batch_size=history.get("batch_size"),
                                  seed=history.get("seed"))
        self.sigRun.emit(record, weights)

    def _failed(self, message):
        """A run that could not start or ended in an error: in the status, the Log and a
        dialog (the Log tab alone went unseen: issue 31)."""
        from PySide6.QtWidgets import QMessageBox
        self.status.setText(message.splitlines()[0])
        self.sigLog.emit("Error: " + message)
        started = self.worker is not None and self.batches_seen > 0
        title = "Training failed" if started else "Training could not start"
        text = message[:1].upper() + message[1:]
        if self.failure is not None:
            self.failure.close()
        self.failure = QMessageBox(QMessageBox.Warning, title, text, QMessageBox.Ok, self)
        self.failure.setInformativeText("The whole message is in the Log tab.")
        self.failure.finished.connect(lambda _: setattr(self, "failure", None))
        self.failure.open()  # window-modal, without blocking the run's signals

    def _finished(self):
        self.doc.set_locked(False)
        self.setup_box.setEnabled(True)
        fitted = self.worker.fitted if self.worker is not None else None
        weights = self.worker.weights if self.worker is not None else None
        if weights is not None:
            self.last_weights = weights
            self.last_state = self.worker.state
        self.worker = None
        if weights is not None and self.last_history is not None:  # this run's history
            self._record(self.last_history, weights, fitted)
        stopped = bool(self.last_history and self.last_history.get("stopped"))
        self.continue_run.setEnabled(stopped and self.last_state is not None)
        d = self.doc.project.dataset
        if fitted and d.get("fitted") != fitted:  # saved with the project, for prediction
            self._push(SetSetupCmd(self.doc, "dataset", None, {**d, "fitted": fitted},
                                   self._changed_setup))
        self.start.setEnabled(True)
        self.stop.setEnabled(False)
        self.pause.setEnabled(False)
        self.pause.setChecked(False)
        self.pause.setText("Pause")
        self.sigRunning.emit(False)
        if weights is not None:  # the document's model from now on (saved with it)
            self.sigTrained.emit(weights, stopped)
