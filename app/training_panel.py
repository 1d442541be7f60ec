"""The training dock: the setup (dataset, optimizer, losses, array mapping, metrics, epochs,
batch size, device) as undoable edits of the project, and run control (Start, Pause, Stop,
Continue, progress). Training runs in a child process (train_worker.py, train_process.py);
its batch and epoch logs arrive as queued signals and feed the Curves tab (curves.py). Stop
is cooperative: the current batch finishes, weights stay consistent. The graph is locked
while training runs."""
import json
import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from layerloom.data import sources
from layerloom.train.losses import KINDS as LOSS_KINDS, NAMES as LOSS_NAMES
from layerloom.train.metrics import NAMES as METRIC_NAMES, check_entry as check_metric_entry
from layerloom.train.optimizers import OPTIMIZERS

from .commands import SetSetupCmd, keep_mapping
from .curves import Curves
from .train_worker import DeviceSurvey, TrainWorker, short_name



def loss_entry(name, old=None, **given):
    """An output's loss entry for loss `name`: its declared parameters at their defaults, or
    as `old` had them when it was the same loss (a weight, huber's delta), then `given`."""
    old = old or {}
    same = old.get("name") == name
    entry = {"name": name, "weight": old.get("weight", 1.0),
             "from_logits": old.get("from_logits", False) and same}
    entry.update({p.name: old[p.name] if same and p.name in old else p.default
                  for p in LOSS_KINDS[name].params})
    entry.update(given)
    return entry


def dataset_choices():
    """The dataset box's entries from the source declarations: (source, name or None)."""
    return [(s.name, n) for s in sources.all_sources() if s.editor
            for n in (s.choices if s.editor == "named" else (None,))]


class TrainingPanel(QWidget):
    sigChooseData = Signal(str)
    sigLog = Signal(str)
    sigRunning = Signal(bool)
    sigResults = Signal(object)

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.worker = None
        t = doc.project.training
        self.epochs = QSpinBox(minimum=1, maximum=100000, value=t.get("epochs", 10))
        self.batch = QSpinBox(minimum=1, maximum=100000, value=t.get("batch_size", 32))
        # setup editors: each change is an undoable command on the project
        self.dataset = QComboBox()
        self.dataset.addItem("(choose a dataset)", None)  # shown while none is chosen
        for src, name in dataset_choices():
            self.dataset.addItem(f"{name} ({src})" if name else sources.get(src).label,
                                 f"{src}:{name or ''}")
        self.optimizer = QComboBox()
        self.optimizer.addItems(list(OPTIMIZERS))
        self.lr = QLineEdit()
        self.loss = QComboBox()
        self.loss.addItem("(choose a loss)")
        self.loss.addItems(list(LOSS_NAMES))
        # one row per output when the graph has several: loss and weight each
        self.per_output = QWidget()
        self.per_output_form = QFormLayout(self.per_output)
        self.per_output_form.setContentsMargins(0, 0, 0, 0)
        self.output_rows = {}
        self.metrics = QLineEdit()
        self.metrics.setToolTip("Comma-separated: " + ", ".join(METRIC_NAMES))
        self.setup_error = QLabel()
        self.setup_error.setWordWrap(True)
        self.setup_error.setStyleSheet("color: #c1121f;")
        self.load_setup()
        self.dataset.activated.connect(self._dataset_chosen)
        self.optimizer.activated.connect(lambda _: self._optimizer_chosen())
        self.lr.editingFinished.connect(self._optimizer_chosen)
        self.loss.activated.connect(lambda _: self._loss_chosen())
        self.metrics.editingFinished.connect(self._metrics_chosen)
        self.epochs.editingFinished.connect(
            lambda: self._set_training("epochs", self.epochs.value()))
        self.batch.editingFinished.connect(
            lambda: self._set_training("batch_size", self.batch.value()))
        self.device = QComboBox()
        self.device.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.device.setMinimumContentsLength(16)
        self.device.addItem("auto (finding the devices...)", None)
        self.device_survey = DeviceSurvey(self)
        self.device_survey.sigFound.connect(self._devices_found)
        self.device_survey.start()
        self.start = QPushButton("Start")
        self.continue_run = QPushButton("Continue")
        self.continue_run.setToolTip("Continue the stopped run exactly where it stopped")
        self.continue_run.setEnabled(False)
        self.stop = QPushButton("Stop")
        self.stop.setEnabled(False)
        self.pause = QPushButton("Pause")
        self.pause.setCheckable(True)
        self.pause.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.log_scale = QCheckBox("log scale")
        self.summary = QLabel(self._summary())
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("color: #444;")
        form = QFormLayout()
        form.addRow("Dataset", self.dataset)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Learning rate", self.lr)
        form.addRow("Loss", self.loss)
        form.addRow(self.per_output)
        self.mapping = QWidget()
        self.mapping_form = QFormLayout(self.mapping)
        self.mapping_form.setContentsMargins(0, 0, 0, 0)
        self.mapping_rows = {}
        form.addRow(self.mapping)
        form.addRow("Metrics", self.metrics)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Device", self.device)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start)
        buttons.addWidget(self.pause)
        buttons.addWidget(self.stop)
        buttons.addWidget(self.continue_run)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addLayout(form)
        lay.addWidget(self.setup_error)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.log_scale)
        lay.addStretch(1)
        self._fit_height()
        self.start.clicked.connect(lambda: self.start_training())
        self.continue_run.clicked.connect(self.continue_training)
        self._load_mapping_rows()
        doc.sigChanged.connect(self.load_setup)  # undo/redo of setup changes shows up here
        self.stop.clicked.connect(self.stop_training)
        self.pause.clicked.connect(self.toggle_pause)

        self.plots = Curves(self.epochs.value())
        self.last_history = self.last_weights = self.last_state = None  # of the latest run
        self.log_scale.toggled.connect(lambda on: self.plots.loss_plot.setLogMode(y=on))

    # -- setup ----------------------------------------------------------------------------------
    def _devices_found(self, choices):
        """Fill the device list from layerloom.backend.runtime.survey(): auto names the device it means
        and why; each device says in its tooltip why it is or is not the default, as
        `layerloom --list-devices` does."""
        from layerloom.backend.runtime import describe_device
        current = self.device.currentData()
        self.device.clear()
        if isinstance(choices, str):  # no OpenCL at all: training will say so
            self.device.addItem(f"no OpenCL device ({choices})", None)
            return
        default = next((c for c in choices if c.default), None)
        self.device.addItem(f"auto: {default.pi}:{default.di} {short_name(default)}"
                            if default else "auto (no device works: see each one)", None)
        self.device.setItemData(0, default.why if default else "", Qt.ToolTipRole)
        for c in choices:
            self.device.addItem(f"{c.pi}:{c.di} {describe_device(c.plat, c.dev)}",
                                f"{c.pi}:{c.di}")
            self.device.setItemData(self.device.count() - 1, c.why, Qt.ToolTipRole)
        i = self.device.findData(current)
        self.device.setCurrentIndex(max(0, i))
        # the list shows whole names, wider than the dock if need be
        view = self.device.view()
        view.setMinimumWidth(view.sizeHintForColumn(0) + 2 * view.frameWidth())

    def load_setup(self):
        """Show the project's current setup in the editors."""
        p = self.doc.project
        d, t = p.dataset, p.training
        s = sources.get(d.get("source")) if d else None
        key = (f"{s.name}:" if s and s.editor != "named" else
               f"{d.get('source')}:{d.get('name') or ''}")
        idx = self.dataset.findData(key) if d else -1
        self.dataset.setCurrentIndex(max(idx, 0))  # 0: "(choose a dataset)"
        opt = t.get("optimizer", {"name": "adam"})
        self.optimizer.setCurrentText(opt.get("name", "adam"))
        lr = opt.get("params", {}).get("learning_rate")
        default = {q.name: q.default for q in OPTIMIZERS[opt.get("name", "adam")].params}
        self.lr.setText(json.dumps(lr) if isinstance(lr, dict) else
                        f"{lr if lr is not None else default['learning_rate']:g}")
        losses = {v["name"] for v in t.get("loss", {}).values()}
        self.loss.setCurrentIndex(0)  # "(choose a loss)" unless one loss is set for all
        if len(losses) == 1:
            self.loss.setCurrentText(losses.pop())
        self._load_output_rows()
        if hasattr(self, "mapping_form"):
            self._load_mapping_rows()
        m = t.get("metrics", [])
        plain = isinstance(m, list) and all(isinstance(v, str) for v in m)
        self.metrics.setText(", ".join(m) if plain else json.dumps(m))
        self.epochs.setValue(t.get("epochs", 10))
        self.batch.setValue(t.get("batch_size", 32))
        self.summary.setText(self._summary()) if hasattr(self, "summary") else None

    def _push(self, cmd):
        try:
            self.doc.push(cmd)
        except RuntimeError as e:
            self.setup_error.setText(str(e))
            self.load_setup()

    def _changed_setup(self):
        self.setup_error.setText("")
        if hasattr(self, "summary"):
            self.summary.setText(self._summary())

    def _set_training(self, key, value):
        if self.doc.project.training.get(key) != value:
            self._push(SetSetupCmd(self.doc, "training", key, value, self._changed_setup))

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
            path, _ = QFileDialog.getOpenFileName(self, "Data for training", "", s.file_filter)
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

    def _optimizer_chosen(self):
        name = self.optimizer.currentText()
        text = self.lr.text().strip()
        try:
            lr = json.loads(text) if text.startswith("{") else float(text)
        except ValueError:
            self.setup_error.setText(f"learning rate: expected a number, got {text!r}")
            return
        opt = {"name": name, "params": {"learning_rate": lr}}
        from layerloom.project import loom as projectfile
        probe = dict(projectfile.default_training(), optimizer=opt)
        problems = []
        projectfile.parse_training(probe, self.doc.graph, problems, [])
        if problems:
            self.setup_error.setText(str(problems[0]))
            return
        if self.doc.project.training.get("optimizer") != opt:
            self._push(SetSetupCmd(self.doc, "training", "optimizer", opt, self._changed_setup))

    def _load_output_rows(self):
        """With several outputs, a loss and a weight per output (Keras' loss dict and
        loss_weights); rebuilt when the outputs change."""
        from PySide6.QtWidgets import QDoubleSpinBox
        outputs = self.doc.graph.outputs()
        current = self.doc.project.training.get("loss", {})
        if len(outputs) < 2:
            outputs = []
        if list(self.output_rows) != outputs:
            while self.per_output_form.rowCount():
                self.per_output_form.removeRow(0)
            self.output_rows = {}
            for o in outputs:
                combo = QComboBox()
                combo.addItem("(choose a loss)")
                combo.addItems(list(LOSS_NAMES))
                weight = QDoubleSpinBox(minimum=0.0, maximum=1000.0, decimals=3, singleStep=0.1)
                row = QHBoxLayout()
                row.addWidget(combo, 3)
                row.addWidget(weight, 1)
                holder = QWidget()
                holder.setLayout(row)
                row.setContentsMargins(0, 0, 0, 0)
                combo.activated.connect(lambda _, o=o: self._output_loss_changed(o))
                weight.editingFinished.connect(lambda o=o: self._output_loss_changed(o))
                self.per_output_form.addRow(f"  {o}", holder)
                self.output_rows[o] = (combo, weight)
        for o, (combo, weight) in self.output_rows.items():
            spec = current.get(o, {})
            combo.setCurrentText(spec.get("name", "(choose a loss)"))
            weight.setValue(float(spec.get("weight", 1.0)))
        self.per_output.setVisible(bool(self.output_rows))
        self._fit_height()

    def _fit_height(self):
        """Inside a scroll area: keep rows at their natural height and let the area scroll."""
        if self.layout() is not None:
            self.setMinimumHeight(self.layout().sizeHint().height())

    def _load_mapping_rows(self):
        """Which dataset array feeds each Input and which is each output's target; shown when
        the graph has several of either (one input and one output map to x and y)."""
        g, d = self.doc.graph, self.doc.project.dataset
        ins, outs = g.inputs(), g.outputs()
        rows = ([("inputs", n) for n in ins] + [("targets", n) for n in outs]
                if d and (len(ins) > 1 or len(outs) > 1) else [])
        names = self._array_names() if rows else []
        key = (tuple(rows), tuple(names))
        if getattr(self, "_mapping_key", None) != key:
            self._mapping_key = key
            while self.mapping_form.rowCount():
                self.mapping_form.removeRow(0)
            self.mapping_rows = {}
            for kind, nid in rows:
                combo = QComboBox()
                combo.addItems(["(choose)"] + names)
                combo.activated.connect(lambda _, k=kind, n=nid: self._mapping_changed(k, n))
                label = f"  {nid} {'<-' if kind == 'inputs' else 'target'}"
                self.mapping_form.addRow(label, combo)
                self.mapping_rows[(kind, nid)] = combo
        for (kind, nid), combo in self.mapping_rows.items():
            combo.setCurrentText(d.get(kind, {}).get(nid, "(choose)"))
        self.mapping.setVisible(bool(self.mapping_rows))
        self._fit_height()

    def _array_names(self):
        """The dataset's array names, read once per dataset rather than on every edit (this
        runs after each change, and an .npz would be opened each time)."""
        from layerloom.data.prepare import array_names
        d = self.doc.project.dataset
        key = (d.get("source"), d.get("name"), d.get("path"))
        if getattr(self, "_names_for", None) != key:
            self._names_for, self._names = key, array_names(self.doc.project)
        return self._names

    def _mapping_changed(self, kind, nid):
        combo = self.mapping_rows[(kind, nid)]
        if combo.currentText() == "(choose)":
            return
        new = dict(self.doc.project.dataset)
        new[kind] = dict(new.get(kind, {}))
        new[kind][nid] = combo.currentText()
        if new != self.doc.project.dataset:
            self._push(SetSetupCmd(self.doc, "dataset", None, new, self._changed_setup))

    def _output_loss_changed(self, output):
        combo, weight = self.output_rows[output]
        if combo.currentText() not in LOSS_NAMES:  # the placeholder
            return
        new = {k: dict(v) for k, v in self.doc.project.training.get("loss", {}).items()}
        new[output] = loss_entry(combo.currentText(), new.get(output, {}),
                                 weight=float(weight.value()))
        if self.doc.project.training.get("loss") != new:
            self._push(SetSetupCmd(self.doc, "training", "loss", new, self._changed_setup))

    def _loss_chosen(self):
        name = self.loss.currentText()
        if name not in LOSS_NAMES:  # the placeholder
            return
        new = {o: loss_entry(name) for o in self.doc.graph.outputs()}
        if self.doc.project.training.get("loss") != new:
            self._push(SetSetupCmd(self.doc, "training", "loss", new, self._changed_setup))

    def _metrics_chosen(self):
        """Names separated by commas, or JSON for metrics with parameters
        ([{"name": "top_k_categorical_accuracy", "k": 3}]) or per output."""
        text = self.metrics.text().strip()
        try:
            entries = json.loads(text) if text[:1] in "[{" and text else \
                [m.strip() for m in text.split(",") if m.strip()]
        except json.JSONDecodeError as e:
            self.setup_error.setText(f"metrics: not JSON ({e.msg})")
            return
        per_output = entries if isinstance(entries, dict) else {None: entries}
        for ms in per_output.values():
            for i, m in enumerate(ms if isinstance(ms, list) else [ms]):
                _, problems = check_metric_entry(m, f"metrics[{i}]")
                if problems:
                    self.setup_error.setText(str(problems[0]))
                    return
        self._set_training("metrics", entries)

    def _summary(self):
        p = self.doc.project
        d, t = p.dataset, p.training
        data = f"{d.get('name') or d.get('path')} ({d.get('source')})" if d else "none chosen"
        opt = t.get("optimizer", {})
        lr = opt.get("params", {}).get("learning_rate")
        lr_text = lr.get("schedule") if isinstance(lr, dict) else lr
        losses = sorted({v["name"] for v in t.get("loss", {}).values()}) or ["none"]
        metrics = t.get("metrics", [])
        if isinstance(metrics, dict):
            metrics = [m for ms in metrics.values() for m in ms]
        metrics = sorted({m.get("name") if isinstance(m, dict) else m for m in metrics})
        return (f"<b>Data</b> {data}<br><b>Optimizer</b> {opt.get('name')}"
                + (f", learning rate {lr_text}" if lr_text is not None else "")
                + f"<br><b>Loss</b> {', '.join(losses)}<br><b>Metrics</b> "
                + (", ".join(metrics) or "none"))

    # -- control ----------------------------------------------------------------------------
    def continue_training(self):
        """Continue the stopped run exactly where it stopped (its weights, optimizer state,
        position and callbacks), to the Epochs set here in all."""
        if self.last_state is not None and self.last_weights is not None:
            self.start_training(resume=(self.last_weights, self.last_state))

    def start_training(self, resume=None):
        if self.worker is not None:
            return
        from layerloom.project import loom as projectfile
        from layerloom.core.errors import ProjectError
        try:  # the same checks as `layerloom --run`
            projectfile.from_dict(projectfile.to_dict(self.doc.project))
        except ProjectError as e:
            self.sigLog.emit("Cannot train: " + "; ".join(e.lines()[:3]))
            self.status.setText("Fix the problems listed under Problems first.")
            return
        self.plots.begin(keep=resume is not None)  # a resumed run goes on drawing its curves
        self.doc.locked = True
        self.sigRunning.emit(True)
        self.continue_run.setEnabled(False)
        self.worker = TrainWorker(self.doc.project, self.epochs.value(), self.batch.value(),
                                  self.device.currentData(), resume)
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
        self.status.setText("Preparing data and compiling kernels...")
        self.t0 = time.perf_counter()
        self.worker.start()

    def stop_training(self):
        if self.worker is not None:
            self.worker.request_stop()
            self.status.setText("Stopping after the current batch...")

    def toggle_pause(self):
        if self.worker is None:
            return
        self.worker.set_paused(not self.worker.paused)
        self.pause.setChecked(self.worker.paused)
        self.pause.setText("Resume" if self.worker.paused else "Pause")
        self.status.setText("Paused after the current batch." if self.worker.paused
                            else "Resumed.")

    def _begin(self, epochs, batches):
        self.total_batches = epochs * batches
        self.batches = batches
        self.progress.setRange(0, self.total_batches)

    def _batch(self, epoch, batch, num_batches, logs):
        done = (epoch - 1) * num_batches + batch
        self.progress.setValue(done)
        elapsed = time.perf_counter() - self.t0
        left = elapsed / max(done, 1) * (self.total_batches - done)
        self.status.setText(f"Epoch {epoch}, batch {batch}/{num_batches}, loss "
                            f"{logs['loss']:.4f}, about {left:.0f} s left")
        x = epoch - 1 + batch / num_batches
        for k, v in logs.items():
            self.plots.add_point(k, x, v)

    def _epoch(self, logs):
        for k, v in logs.items():
            if k.startswith("val_"):
                self.plots.add_point(k, logs["epoch"], v)
        self.sigLog.emit(f"Epoch {logs['epoch']}: " + "  ".join(
            f"{k} {v:.4f}" for k, v in logs.items() if k not in ("epoch", "seconds"))
            + f"  ({logs['seconds']:.2f}s)")

    def _done(self, history):
        self.plots.flush()
        if "test" in history:
            self.sigLog.emit("Test: " + "  ".join(f"{k} {v:.4f}"
                                                  for k, v in history["test"].items()))
        self.status.setText("Stopped." if history.get("stopped") else "Finished.")
        self.last_history = history

    def _failed(self, message):
        self.status.setText(message.splitlines()[0])
        self.sigLog.emit("Error: " + message)

    def _finished(self):
        self.doc.locked = False
        fitted = self.worker.fitted if self.worker is not None else None
        if self.worker is not None and self.worker.weights is not None:
            self.last_weights = self.worker.weights
            self.last_state = self.worker.state
        self.worker = None
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
