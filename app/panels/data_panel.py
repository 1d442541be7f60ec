"""The Data tab: choose a CSV/TSV file or an image folder, set column roles, missing values,
split and normalisation, and see what the engine makes of it: a table preview (CSV) or a
grid of images, class counts, and whether the arrays fit the graph's Input nodes and outputs
(the message names both sides and a fix). Loading and checking run in a worker thread, on
the same code path as `layerloom --run`; every change is an undoable SetSetupCmd."""
import os
import re
import threading
import time

from PySide6.QtCore import QThread, QTimer, Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout,
                               QGridLayout, QHBoxLayout, QLabel, QPushButton, QSpinBox,
                               QSplitter,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from layerloom.data import preprocess, sources, tabular
from layerloom.data.cancel import Cancelled, cancellable
from layerloom.data.overview import overview
from layerloom.data.progress_words import ProgressWords

from layerloom.app.editing.commands import SetSetupCmd, keep_mapping
from layerloom.app.look.dialogs import ask_path
from layerloom.app.look.images import pixmap

_last_image_folder = None  # chosen last in this session: where the next dialog starts


class _Inspector(QThread):
    """overview() of the project off the GUI thread: sigProgress(line) while the data is read
    (the words `layerloom --run` prints, at most every PROGRESS_EVERY s), then done(info);
    info {"cancelled": True} after cancel()."""
    done = Signal(object)
    sigProgress = Signal(str)
    PROGRESS_EVERY = 0.1

    def __init__(self, project_dict, path):
        super().__init__()
        self.project_dict, self.path = project_dict, path
        self.cancelled = threading.Event()
        self.words, self.last = ProgressWords(), 0.0

    def cancel(self):
        """The read stops at its next progress call (a block of a CSV, a tenth of a second
        of an image folder); nothing is written (engine/data/cancel.py)."""
        self.cancelled.set()

    def _progress(self, path, done, total, unit="bytes"):
        now = time.perf_counter()
        if now - self.last >= self.PROGRESS_EVERY or total and done >= total:
            self.last = now
            self.sigProgress.emit(self.words.line(path, done, total, unit))

    def run(self):
        from layerloom.core.errors import LayerloomError
        from layerloom.project import loom as projectfile
        try:
            try:  # read off the GUI thread, unfinished as the editor holds it
                project = projectfile.from_dict(self.project_dict, self.path, strict=False)
            except LayerloomError as e:
                self.done.emit({"error": str(e)})
                return
            self.done.emit(overview(project, cancellable(self._progress,
                                                         self.cancelled.is_set)))
        except Cancelled:
            self.done.emit({"cancelled": True})
        except Exception as e:  # shown in the tab, never a crash of the window
            self.done.emit({"error": f"{type(e).__name__}: {e}"})


class DataPanel(QWidget):
    sigFit = Signal(object)  # (node id or None, message) when the data does not fit, or None
    sigImpliedLoss = Signal(dict)  # {output: the loss its activation and targets imply}
    sigProgress = Signal(str)  # the read's progress line for the status bar ("" at its end)
    fit_problem = None
    fit_error = None

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.worker, self.pending, self.shown_for = None, False, None
        self.shown_info = None  # the last read's result, for its status line
        lay = QHBoxLayout(self)
        lay.addLayout(self._build_settings(), 1)
        lay.addLayout(self._build_views(), 2)
        self._connect_settings()
        self.timer = QTimer(self, singleShot=True, interval=250)
        self.timer.timeout.connect(self.refresh)
        doc.sigChanged.connect(self.schedule)
        self.load_fields()
        self.schedule()

    def _build_settings(self):
        """The left column: the source buttons, the settings form, status and class counts."""
        self.csv_button = QPushButton("Use a CSV/TSV file...")
        self.folder_button = QPushButton("Use an image folder...")
        self.source = QLabel()
        self.source.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.csv_button)
        top.addWidget(self.folder_button)
        top.addWidget(self.source, 1)
        self.missing = QComboBox()
        self.missing.addItems(tabular.MISSING_POLICIES)
        self.normalize = QComboBox()
        self.normalize.addItems(preprocess.NORMALIZATIONS)
        self.normalize.setToolTip("Fitted on the training rows only, then applied to every "
                                  "split; saved with the project after training.")
        for w in (self.missing, self.normalize):
            w.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.test = QDoubleSpinBox(minimum=0.0, maximum=0.9, singleStep=0.05, decimals=2)
        self.validation = QDoubleSpinBox(minimum=0.0, maximum=0.9, singleStep=0.05, decimals=2)
        self.seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.height_px = QSpinBox(minimum=1, maximum=4096)
        self.width_px = QSpinBox(minimum=1, maximum=4096)
        self.color = QComboBox()
        self.color.addItems(("grayscale", "rgb"))
        self.form = form = QFormLayout()
        form.addRow("Missing values", self.missing)
        form.addRow("Normalise", self.normalize)
        form.addRow("Split", _row(QLabel("test"), self.test, QLabel("validation"),
                                  self.validation, QLabel("seed"), self.seed))
        self.size_row = QWidget()
        self.size_row.setLayout(_row(self.height_px, QLabel("x"), self.width_px, self.color))
        form.addRow("Images (height x width)", self.size_row)
        self.status = QLabel()
        self.status.setWordWrap(True)
        # Cancel while the data is read (a large CSV or folder); Read again after a cancel
        self.read_button = QPushButton("Cancel")
        self.read_button.setToolTip("Stop reading the data; nothing is written")
        self.read_button.hide()
        self.read_button.clicked.connect(self._read_button_clicked)
        status_row = QHBoxLayout()
        status_row.addWidget(self.status, 1)
        status_row.addWidget(self.read_button, 0, Qt.AlignTop)
        self.counts = QLabel()
        self.counts.setWordWrap(True)
        left = QVBoxLayout()
        left.addLayout(top)
        left.addLayout(form)
        left.addLayout(status_row)
        left.addWidget(self.counts)
        left.addStretch(1)
        return left

    def _build_views(self):
        """The right column: column settings beside the rows they describe, image thumbnails."""
        self.columns = QTableWidget(0, 5)
        self.columns.setHorizontalHeaderLabels(["column", "kind", "missing", "role", "encoding"])
        self.columns.verticalHeader().hide()
        self.preview = QTableWidget(0, 0)
        self.thumbs = QWidget()
        self.thumb_grid = QGridLayout(self.thumbs)
        self.thumb_grid.setSpacing(2)
        self.tables = tables = QSplitter(Qt.Horizontal)
        tables.addWidget(self.columns)
        tables.addWidget(self.preview)
        tables.setStretchFactor(0, 1)
        tables.setStretchFactor(1, 1)
        for t in (self.columns, self.preview):
            t.setMinimumSize(120, 120)
        right = QVBoxLayout()
        right.addWidget(tables, 1)
        right.addWidget(self.thumbs, 1)
        return right

    def _connect_settings(self):
        """Each setting, once edited, becomes an undoable change of the dataset section."""
        self.csv_button.clicked.connect(self.choose_csv)
        self.folder_button.clicked.connect(self.choose_folder)
        self.missing.activated.connect(lambda _: self._set("missing", self.missing.currentText()))
        self.normalize.activated.connect(
            lambda _: self._set("normalize", self.normalize.currentText()))
        for w in (self.test, self.validation, self.seed):
            w.editingFinished.connect(self._split_changed)
        for w in (self.height_px, self.width_px):
            w.editingFinished.connect(
                lambda: self._set("size", [self.height_px.value(), self.width_px.value()]))
        self.color.activated.connect(lambda _: self._set("color", self.color.currentText()))

    # -- editing ------------------------------------------------------------------------------
    def _dataset(self):
        return dict(self.doc.project.dataset or {})

    def _push_dataset(self, new):
        if self.doc.locked:
            self.status.setText("Training is running; the data cannot change now.")
            return
        if new != self.doc.project.dataset:
            new.pop("fitted", None)  # statistics of other data or settings are stale
            self.doc.push(SetSetupCmd(self.doc, "dataset", None, new, self.load_fields))

    def _set(self, key, value):
        d = self._dataset()
        d[key] = value
        self._push_dataset(d)

    def _split_changed(self):
        self._set("split", {"test": round(self.test.value(), 4),
                            "validation": round(self.validation.value(), 4),
                            "seed": self.seed.value()})

    def _relative(self, path):
        base = self.doc.project.folder if self.doc.path else None
        if base and os.path.abspath(path).startswith(os.path.abspath(base) + os.sep):
            return os.path.relpath(path, base)
        return path

    def use_csv(self, path):
        self._push_dataset(keep_mapping(self._dataset(), {
            "source": "csv", "path": self._relative(path), "missing": "error",
            "split": {"test": 0.2, "validation": 0.1, "seed": 0}, "normalize": "standardize"}))

    def use_folder(self, path):
        shape = self._input_shape()
        size = list(shape[:2]) if shape and len(shape) == 3 else [32, 32]
        color = "rgb" if shape and len(shape) == 3 and shape[2] == 3 else "grayscale"
        self._push_dataset(keep_mapping(self._dataset(), {
            "source": "images", "path": self._relative(path), "size": size, "color": color,
            "split": {"test": 0.2, "validation": 0.1, "seed": 0}, "normalize": "scale"}))

    def _input_shape(self):
        g = self.doc.graph
        ins = g.inputs()
        return tuple(g.nodes[ins[0]].params.get("shape") or ()) if len(ins) == 1 else None

    def choose_csv(self):
        ask_path(self, "Table for training", self.use_csv,
                 "Tables (*.csv *.tsv *.txt);;All files (*)")

    def choose_folder(self):
        """The image-folder dialog, starting in this project's image folder, else the last
        one chosen, else the project's folder (start_in)."""
        def chosen(path):
            global _last_image_folder
            _last_image_folder = path
            self.use_folder(path)
        d = self._dataset()
        mine = d.get("path") if d.get("source") == "images" else None
        if mine and not os.path.isabs(mine) and self.doc.path:
            mine = os.path.join(self.doc.project.folder, mine)
        start = next((f for f in (mine, _last_image_folder) if f and os.path.isdir(f)), None)
        ask_path(self, "Folder with one subfolder per class", chosen, start=start)

    def _column_changed(self, name, key, value):
        d = self._dataset()
        cols = {k: dict(v) for k, v in (d.get("columns") or {}).items()}
        cols.setdefault(name, {})[key] = value
        d["columns"] = cols
        self._push_dataset(d)

    # -- showing ------------------------------------------------------------------------------
    def load_fields(self):
        d = self._dataset()
        src = d.get("source")
        where = d.get("path") or d.get("name") or ""
        self.source.setText(f"Dataset: {src or '(none)'} {where}".strip())
        self.missing.setEnabled(src == "csv")
        self.form.setRowVisible(self.size_row, src == "images")
        self.missing.setCurrentText(d.get("missing", "error"))
        from layerloom.data.prepare import default_normalization
        self.normalize.setCurrentText(d.get("normalize") or default_normalization(d))
        s = d.get("split") or {}
        self.test.setValue(float(s.get("test", 0.0)))
        self.validation.setValue(float(s.get("validation", 0.0)))
        self.seed.setValue(int(s.get("seed", 0)))
        size = d.get("size") or [32, 32]
        self.height_px.setValue(size[0])
        self.width_px.setValue(size[1])
        self.color.setCurrentText(d.get("color", "grayscale"))
        self.tables.setVisible(src == "csv")
        self.thumbs.setVisible(src != "csv")
        s = sources.get(src)  # the "test" fraction applies where a source may lack a test split
        self.test.setEnabled(bool(s) and not s.brings_test_split)

    def schedule(self):
        self.timer.start()

    def refresh(self):
        from layerloom.project import loom as projectfile
        key = repr((self.doc.project.dataset, [(n.id, n.type, n.params) for n in
                                               self.doc.graph.nodes.values()],
                    [e.key() for e in self.doc.graph.edges],
                    self.doc.project.training.get("loss")))
        if key == self.shown_for:  # the same data: only what the status line says may change
            if self.shown_info is not None and self.worker is None:
                self._show_status(self.shown_info)
            return
        if self.worker is not None:
            self.pending = True
            return
        self.shown_for = key
        self.status.setText("Reading the data...")
        self.status.setStyleSheet("")
        self.read_button.setText("Cancel")
        self.read_button.setToolTip("Stop reading the data; nothing is written")
        self.read_button.setEnabled(True)
        self.read_button.show()
        self.worker = _Inspector(projectfile.to_dict(self.doc.project), self.doc.path)
        self.worker.done.connect(self.show_info)
        self.worker.sigProgress.connect(self._show_progress)
        self.worker.finished.connect(self._worker_finished)
        self.worker.start()

    def _show_progress(self, line):
        if self.worker is not None and not self.worker.cancelled.is_set():
            self.status.setText(line)
            self.sigProgress.emit(line)

    def attach_status_bar(self, bar):
        """The read's progress in the window's status bar too, cleared at its end (a message
        of another kind shown meanwhile stays)."""
        shown = [""]

        def show(line):
            if line:
                bar.showMessage(line, 10_000)
            elif shown[0] and bar.currentMessage() == shown[0]:
                bar.clearMessage()
            shown[0] = line
        self.sigProgress.connect(show)

    def cancel(self):
        """Stop the running read: the tab says so and offers to read again."""
        if self.worker is not None:
            self.worker.cancel()
            self.read_button.setEnabled(False)
            self.status.setText("Cancelling...")

    def _read_button_clicked(self):
        if self.worker is not None and not self.worker.cancelled.is_set():
            self.cancel()
        else:  # Read again
            self.shown_for = None
            self.refresh()

    def shutdown(self):
        """The window closes: no new reads, and a running one is cancelled and waited for."""
        self.timer.stop()
        try:
            self.doc.sigChanged.disconnect(self.schedule)
        except (RuntimeError, TypeError):
            pass
        if self.worker is not None:
            self.worker.done.disconnect()
            self.worker.sigProgress.disconnect()
            self.worker.cancel()
            self.worker.wait()

    def _worker_finished(self):
        self.worker = None
        if self.pending:
            self.pending = False
            self.refresh()

    def show_info(self, info):
        self.load_fields()
        self.sigProgress.emit("")
        if info.get("cancelled"):  # what was shown stays; the next change reads again
            self.shown_for = None
            self.status.setText("Reading the data was cancelled; nothing was written. "
                                "Read again, or change a setting, to see the data.")
            self.status.setStyleSheet("color: #b7791f;")
            self.read_button.setText("Read again")
            self.read_button.setToolTip("Read the data again")
            self.read_button.setEnabled(True)
            self.read_button.show()
            return
        if "error" in info:  # fixed outside (a dataset installed, a file mended): look again
            self.read_button.setText("Read again")
            self.read_button.setToolTip("Read the data again")
            self.read_button.setEnabled(True)
            self.read_button.show()
        else:
            self.read_button.hide()
        # what the window's Problems list and the node concerned show (None: it fits)
        self.fit_problem = ((info.get("check_node"), info.get("check_message") or
                             info["check"]) if info.get("check") else
                            (None, info["error"]) if "error" in info else None)
        # the check's problem itself, with its kind and fields, for the Problems tab's fixes
        self.fit_error = info.get("check_problem") if info.get("check") else None
        self.sigFit.emit(self.fit_problem)
        self.sigImpliedLoss.emit(info.get("implied_loss") or {})
        self._show_status(info)
        counts = info.get("counts")
        lines = []
        if counts:
            lines.append("Classes (training rows): " + ", ".join(f"{n}: {c}" for n, c in counts))
        if info.get("mapping"):
            lines.append("Mapping: " + "; ".join(  # "=input:image": the file's words
                re.sub(r"^=input:(\S+)", r"the rows of Input '\1'", m)
                for m in info["mapping"]))
        self.counts.setText("\n".join(lines))
        self._show_columns(info.get("columns") or [])
        self._show_rows(info.get("header") or [], info.get("rows") or [])
        self._show_thumbs(info.get("thumbs") or [], info.get("class_names"))

    def _show_status(self, info):
        """The status line of a read: an error, a misfit, or the rows and what the training's
        validation split holds out of them (redrawn alone when that setting changes)."""
        self.shown_info = info
        if "error" in info:
            self.status.setText(info["error"])
            self.status.setStyleSheet("color: #d62828;")
        elif info.get("check"):
            self.status.setText("Data and graph do not fit: " + info["check"])
            self.status.setStyleSheet("color: #d62828;")
        else:
            sizes = ", ".join(f"{n:,} {k}" for k, n in info.get("sizes", {}).items())
            text = f"{info.get('description', '')}. Rows: {sizes}{self._held_out(info)}. " \
                "Fits the graph."
            if info.get("warning"):
                text += " Note: " + info["warning"] + "."
            self.status.setText(text)
            self.status.setStyleSheet("color: #b7791f;" if info.get("warning") else
                                      "color: #2a9d8f;")

    def _held_out(self, info):
        """Where the data has no validation rows and the Training panel holds out a share of
        the training rows (validation_split, Keras' last rows): said beside the rows, as the
        Training panel says it (newcomer trial: "validation 0.00" here, "the last 20%" there)."""
        n = (info.get("sizes") or {}).get("training")
        share = self.doc.project.training.get("validation_split") or 0.0
        if not n or "validation" in info.get("sizes", {}) or not share:
            return ""
        held = int(n * share)  # as engine/train/fit.py's _hold_out
        return (f" (training holds out the last {share:.0%} of the training rows for "
                f"validation: {held:,})")

    def _show_columns(self, columns):
        self.columns.setRowCount(len(columns))
        for r, (name, kind, missing, role, enc) in enumerate(columns):
            for c, v in enumerate((name, kind, str(missing))):
                self.columns.setItem(r, c, QTableWidgetItem(v))
            rbox, ebox = QComboBox(), QComboBox()
            rbox.addItems(tabular.ROLES)
            rbox.setCurrentText(role)
            ebox.addItems(tabular.ENCODINGS)
            ebox.setCurrentText(enc)
            rbox.activated.connect(lambda _, n=name, b=rbox: self._column_changed(
                n, "role", b.currentText()))
            ebox.activated.connect(lambda _, n=name, b=ebox: self._column_changed(
                n, "encoding", b.currentText()))
            self.columns.setCellWidget(r, 3, rbox)
            self.columns.setCellWidget(r, 4, ebox)
        self.columns.resizeColumnsToContents()

    def _show_rows(self, header, rows):
        self.preview.setColumnCount(len(header))
        self.preview.setRowCount(len(rows))
        self.preview.setHorizontalHeaderLabels(header)
        for r, row in enumerate(rows):
            for c, v in enumerate(row):
                self.preview.setItem(r, c, QTableWidgetItem(v))
        self.preview.resizeColumnsToContents()

    def _show_thumbs(self, thumbs, names):
        while self.thumb_grid.count():
            w = self.thumb_grid.takeAt(0).widget()
            if w:
                w.deleteLater()
        for k, (img, label) in enumerate(thumbs):
            cell = QLabel()
            cell.setPixmap(pixmap(img, 48))  # 0..1 or 0..255: pixmap() scales either
            name = names[label] if names and label < len(names) else str(label)
            cell.setToolTip(name)
            text = QLabel(name[:10])
            text.setStyleSheet("font-size: 8pt;")
            self.thumb_grid.addWidget(cell, (k // 8) * 2, k % 8)
            self.thumb_grid.addWidget(text, (k // 8) * 2 + 1, k % 8)


def _row(*widgets):
    """A horizontal layout of `widgets`."""
    lay = QHBoxLayout()
    for w in widgets:
        lay.addWidget(w)
    return lay
