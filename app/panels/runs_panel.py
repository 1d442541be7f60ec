"""The Runs tab: every training run of the project (the editor's and `layerloom --run`'s in
the project's folder, engine/project/runs.py), listed with its final figures; the checked
runs' curves overlaid (training solid, validation dashed, one colour per run) and their
settings side by side, the rows that differ marked. Restore (sigRestore) and Delete act on the
selected run. An untitled project's runs are kept here until it is saved, then written.

A sweep's runs (layerloom --sweep, engine/project/sweeps.py) can be shown alone ("Show"):
ranked by the sweep's metric with its parameters as columns, the metric plotted against a
swept parameter, and Restore Best in one click. Sweep... asks the window for a new sweep."""
import os
import time

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHBoxLayout,
                               QHeaderView, QLabel, QMessageBox, QPushButton, QSplitter,
                               QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from layerloom.project import runs, sweeps

from .runs_sweeps import SweepRanking, refill

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf"]
FIXED = ("Run", "Started", "From", "Epochs", "Time")  # the table's first columns; figures follow


class RunsPanel(SweepRanking, QWidget):
    sigRestore = Signal(object)  # the record to restore
    sigLog = Signal(str)
    sigSweep = Signal()  # Sweep... (or Stop Sweep while one runs) pressed

    def __init__(self, folder=None, confirm=True, parent=None):
        super().__init__(parent)
        self.folder, self.confirm = folder, confirm
        self.records, self.pending, self.problems = [], [], []
        self.checked = set()  # ids of the runs whose curves and settings are shown
        self.sweep_name = None  # the sweep shown alone, or None for every run
        self.sweeping = False
        self._unsaved = 0
        self._build()  # reload() fills it, once its sigLog is connected

    # -- widgets -------------------------------------------------------------------------------
    def _build(self):
        self.table = QTableWidget(0, len(FIXED))
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.itemChanged.connect(self._check_changed)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.restore = QPushButton("Restore Weights and Settings")
        self.restore.setToolTip("Make the selected run's weights the model and its settings the "
                                "project's (undo restores the settings)")
        self.restore.clicked.connect(self._restore_clicked)
        self.delete = QPushButton("Delete Run...")
        self.delete.clicked.connect(self.delete_selected)
        self.show_which = QComboBox()
        self.show_which.setToolTip("Every run, or one sweep's runs ranked by its metric")
        self.show_which.currentIndexChanged.connect(self._show_which_changed)
        self.sweep_button = QPushButton("Sweep...")
        self.sweep_button.setToolTip("Train the project once for each of several values of "
                                     "chosen parameters and rank the runs")
        self.sweep_button.clicked.connect(self.sigSweep.emit)
        self.restore_best = QPushButton("Restore Best")
        self.restore_best.setToolTip("Make the sweep's best run's weights the model and its "
                                     "settings (and swept node parameters) the project's")
        self.restore_best.clicked.connect(self._restore_best_clicked)
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.show_which, 1)
        top.addWidget(self.sweep_button)
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.where.setStyleSheet("color: gray")
        buttons = QHBoxLayout()
        buttons.addWidget(self.restore)
        buttons.addWidget(self.restore_best)
        buttons.addWidget(self.delete)
        buttons.addStretch(1)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addLayout(top)
        lv.addWidget(self.table, 1)
        lv.addLayout(buttons)
        lv.addWidget(self.where)

        self.quantity = QComboBox()
        self.quantity.currentIndexChanged.connect(lambda _: self._draw())
        self.plot = _plot()
        self.plot.setLabel("bottom", "epoch")
        self.legend = self.plot.addLegend(offset=(-10, 10), labelTextSize="8pt")
        curves = _chooser_over("Show", self.quantity, self.plot, "(validation dashed)")

        self.compare = QTableWidget(0, 0)
        self.compare.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.compare.verticalHeader().setDefaultSectionSize(22)
        self.only_diff = QCheckBox("Only settings that differ")
        self.only_diff.setChecked(True)
        self.only_diff.toggled.connect(lambda _: self._fill_compare())
        settings = QWidget()
        sv = QVBoxLayout(settings)
        sv.setContentsMargins(0, 0, 0, 0)
        sv.addWidget(self.only_diff)
        sv.addWidget(self.compare, 1)

        self.parameter = QComboBox()
        self.parameter.currentIndexChanged.connect(lambda _: self._draw_sweep())
        self.sweep_plot = _plot()
        by_param = _chooser_over("Against", self.parameter, self.sweep_plot)

        self.views = QTabWidget()
        self.views.addTab(curves, "Curves of Checked Runs")
        self.views.addTab(settings, "Settings Side by Side")
        self.sweep_tab = self.views.addTab(by_param, "Sweep: Metric by Parameter")
        split = QSplitter(Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(self.views)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([520, 420])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(split)

    # -- records -------------------------------------------------------------------------------
    def set_folder(self, folder):
        """The project was saved under a (new) name: its runs folder; the runs kept while it was
        untitled are written there."""
        self.folder = folder
        if folder is None:  # saved into the bundled examples' folder: kept in memory still
            self.reload()
            return
        for rec in self.pending:
            weights = rec.pop("weights", None)
            try:
                runs.save(folder, {k: v for k, v in rec.items() if k not in ("id", "path")},
                          weights)
            except OSError as e:
                self.sigLog.emit(f"Run {rec['id']} could not be recorded in {folder}: "
                                 f"{e.strerror or e}")
        self.pending = []
        self.reload()

    def reload(self, select=None):
        listing = runs.load(self.folder) if self.folder else runs.Listing([], [])
        self.records = listing.records + self.pending
        for p in listing.problems:
            if p not in self.problems:
                self.sigLog.emit(f"Runs: skipped {p}")
        self.problems = listing.problems
        ids = {r["id"] for r in self.records}
        self.checked &= ids
        if not self.checked and self.records:  # the latest three shown to begin with
            self.checked = {r["id"] for r in self.records[-3:]}
        self._fill_show_which()
        self._fill_table(select)
        self._fill_quantities()
        self._draw()
        self._fill_compare()
        self._fill_parameters()
        self.where.setText(
            (f"Kept in {os.path.join(self.folder, runs.RECORDS)}; runs of layerloom --run "
             "made in the project's folder are listed too." if self.folder else
             "Runs of an untitled project or a bundled example are kept until it is saved "
             "(elsewhere).")
            if self.records else
            "No runs yet: each training run (Run in the editor, or layerloom --run in the "
            "project's folder) is recorded here with its settings, curves and weights.")

    def add(self, record, weights):
        """A run ended in the editor: record it (on disk when the project has a file)."""
        if self.folder:
            try:
                rid = runs.save(self.folder, record, weights)
            except OSError as e:
                self.sigLog.emit(f"The run could not be recorded in {self.folder}: "
                                 f"{e.strerror or e}")
                return None
        else:
            self._unsaved += 1
            rid = f"unsaved-{self._unsaved}"
            self.pending.append(dict(record, id=rid, path=None, weights=weights))
        self.checked.add(rid)
        self.reload(select=rid)
        return rid

    def record(self, rid):
        return next((r for r in self.records if r["id"] == rid), None)

    def selected(self):
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 1)
        return self.record(item.data(Qt.UserRole)) if item else None

    def set_checked(self, rid, on=True):
        for row in range(self.table.rowCount()):
            if self.table.item(row, 1).data(Qt.UserRole) == rid:
                self.table.item(row, 0).setCheckState(Qt.Checked if on else Qt.Unchecked)

    # -- the table -----------------------------------------------------------------------------
    def figure_columns(self):
        keys = []
        for r in self.records:
            keys += [k for k in r["final"] if k not in keys]
        keys = sorted(keys, key=lambda k: (k.startswith("val_"), k != "loss", k))
        tests = []
        for r in self.records:
            tests += [k for k in r["test"] if k not in tests]
        return [("final", k) for k in keys] + [("test", k) for k in tests]

    def _fill_table(self, select=None):
        cols = self.figure_columns()
        ranking = self.ranking() if self.sweep_name else None
        swept = self.swept() if ranking is not None else []
        metric = self.sweep_metric()[0] if ranking is not None else ""
        extra = (["Rank", metric] + swept) if ranking is not None else []
        cols = [c for c in cols if c != ("final", metric)]  # the ranked value stands for it
        shown = [rec for _, rec in ranking] if ranking is not None else \
            list(reversed(self.records))  # newest first
        self.table.blockSignals(True)
        self.table.clear()
        self.table.setColumnCount(len(FIXED) + len(extra) + len(cols))
        self.table.setHorizontalHeaderLabels(list(FIXED) + extra + [
            k if part == "final" else f"test {k}" for part, k in cols])
        self.table.setRowCount(len(shown))
        for row, rec in enumerate(shown):
            check = QTableWidgetItem()
            check.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled | Qt.ItemIsSelectable)
            check.setCheckState(Qt.Checked if rec["id"] in self.checked else Qt.Unchecked)
            check.setToolTip("Overlay this run's curves and compare its settings")
            color = self._color(rec)
            check.setBackground(QBrush(QColor(color)) if rec["id"] in self.checked else QBrush())
            self.table.setItem(row, 0, check)
            check.setText(self.label(rec))
            name = QTableWidgetItem(_when(rec) + (" (stopped)" if rec.get("stopped") else "")
                                    + (" (early-stopped)" if rec.get("early_stopping") else ""))
            name.setData(Qt.UserRole, rec["id"])
            name.setToolTip(f"{rec['id']}: {rec.get('settings', {}).get('Device', '')}"
                            + (f"; {sweeps.early_stop_note(rec)}" if rec.get("early_stopping")
                               else ""))
            self.table.setItem(row, 1, name)
            source = rec.get("source", "")
            self.table.setItem(row, 2, QTableWidgetItem(
                source + (" (unsaved)" if rec.get("path") is None else "")))
            self.table.setItem(row, 3, _number_item(len(rec["epochs"]), "{:d}"))
            self.table.setItem(row, 4, _number_item(rec.get("seconds", 0.0), "{:.1f} s"))
            if ranking is not None:
                value = ranking[row][0]
                rank = _number_item(row + 1 if value is not None else None, "{:d}")
                rank.setToolTip(f"{metric} of the epoch whose weights the run kept"
                                if value is not None else f"no {metric}: stopped or not logged")
                self.table.setItem(row, len(FIXED), rank)
                self.table.setItem(row, len(FIXED) + 1, _number_item(value, "{:.4f}"))
                for c, name in enumerate(swept, len(FIXED) + 2):
                    v = rec["sweep"]["values"].get(name)
                    self.table.setItem(row, c, QTableWidgetItem(sweeps.show(v)))
            for c, (part, key) in enumerate(cols, len(FIXED) + len(extra)):
                value = rec[part].get(key)
                self.table.setItem(row, c, _number_item(value, "{:.4f}"))
            if select == rec["id"] or (select is None and row == 0):
                self.table.selectRow(row)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.blockSignals(False)
        self._selection_changed()

    def _check_changed(self, item):
        if item.column() != 0:
            return
        rid = self.table.item(item.row(), 1).data(Qt.UserRole)
        (self.checked.add if item.checkState() == Qt.Checked else self.checked.discard)(rid)
        self.table.blockSignals(True)
        item.setBackground(QBrush(QColor(self._color(self.record(rid))))
                           if rid in self.checked else QBrush())
        self.table.blockSignals(False)
        self._fill_quantities()
        self._draw()
        self._fill_compare()

    def _selection_changed(self):
        rec = self.selected()
        self.restore.setEnabled(rec is not None)
        self.delete.setEnabled(rec is not None)
        self.restore_best.setVisible(self.sweep_name is not None)
        self.restore_best.setEnabled(self.best() is not None)

    def label(self, rec):
        """A run's short name: its place in the list ("#3")."""
        return f"#{1 + next(i for i, r in enumerate(self.records) if r['id'] == rec['id'])}"

    def _color(self, rec):
        index = next(i for i, r in enumerate(self.records) if r["id"] == rec["id"])
        return COLORS[index % len(COLORS)]

    def shown(self):
        """The checked runs, oldest first."""
        return [r for r in self.records if r["id"] in self.checked]

    # -- curves --------------------------------------------------------------------------------
    def _fill_quantities(self):
        refill(self.quantity, [k for k in runs.quantities(self.shown() or self.records)
                                if not k.startswith("val_")])

    def _draw(self):
        self.plot.clear()
        self.legend.clear()
        key = self.quantity.currentText()
        self.plot.setTitle(key)
        if not key:
            return
        differ = [label for label, _, differs in self.setting_rows() if differs
                  and label not in ("Device", "Parameters")][:2]
        for rec in self.shown():
            color = self._color(rec)
            name = self.label(rec) + "".join(
                f"  {label.strip()} {_short(rec['settings'].get(label, ''))}"
                for label in differ)
            for k, style in ((key, Qt.SolidLine), ("val_" + key, Qt.DashLine)):
                xs, ys = runs.curve(rec, k)
                if xs:  # one legend entry a run; its validation curve is the dashed one
                    dots = {"symbol": "o", "symbolSize": 6, "symbolBrush": color,
                            "symbolPen": color} if len(xs) < 3 else {}  # one epoch: a dot
                    self.plot.plot(xs, ys, pen=pg.mkPen(color, width=2, style=style),
                                   name=None if k.startswith("val_") else name, **dots)

    def curves_shown(self):
        """[(legend name or None for a validation curve, number of points)] (for tests)."""
        return [(item.name(), len(item.xData)) for item in self.plot.listDataItems()]

    # -- settings side by side -----------------------------------------------------------------
    def setting_rows(self):
        """[(label, the shown runs' values, whether they differ)]."""
        shown = self.shown()
        labels = []
        for r in shown:
            labels += [k for k in r["settings"] if k not in labels]
        rows = []
        for label in labels:
            values = [r["settings"].get(label, "") for r in shown]
            rows.append((label, values, runs.differs(values)))
        return rows

    def _fill_compare(self):
        shown = self.shown()
        rows = [row for row in self.setting_rows()
                if row[2] or not self.only_diff.isChecked()]
        self.compare.clear()
        self.compare.setColumnCount(len(shown))
        self.compare.setRowCount(len(rows))
        self.compare.setHorizontalHeaderLabels([self.label(r) for r in shown])
        self.compare.setVerticalHeaderLabels([label.strip() if not label.startswith(" ")
                                              else "  " + label.strip() for label, *_ in rows])
        bold = QFont()
        bold.setBold(True)
        for i, (label, values, differs) in enumerate(rows):
            for j, v in enumerate(values):
                item = QTableWidgetItem(_show(v))
                item.setToolTip(_show(v))
                if differs:
                    item.setFont(bold)
                    item.setBackground(QBrush(QColor(255, 236, 179)))
                    item.setForeground(QBrush(QColor("#000000")))  # readable in dark mode too
                self.compare.setItem(i, j, item)
        for j, r in enumerate(shown):
            head = self.compare.horizontalHeaderItem(j)
            if head is not None:
                head.setForeground(QBrush(QColor(self._color(r))))
        self.compare.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)

    def differing_settings(self):
        """Labels of the rows marked as differing (for tests)."""
        out = []
        for i in range(self.compare.rowCount()):
            item = self.compare.item(i, 0)
            if item is not None and item.font().bold():
                out.append(self.compare.verticalHeaderItem(i).text().strip())
        return out

    # -- actions -------------------------------------------------------------------------------
    def _restore_clicked(self):
        rec = self.selected()
        if rec is not None:
            self.sigRestore.emit(rec)

    def delete_selected(self):
        rec = self.selected()
        if rec is None:
            return False
        if self.confirm and QMessageBox.question(
                self, "Delete run", f"Delete run {self.label(rec)} ({_when(rec)}) with its "
                "weights?"
                f"{'' if rec.get('path') is None else ' Its folder ' + rec['path'] + ' goes.'}"
        ) != QMessageBox.Yes:
            return False
        if rec.get("path") is None:
            self.pending = [r for r in self.pending if r["id"] != rec["id"]]
        else:
            try:
                runs.delete(rec)
            except (OSError, ValueError) as e:
                self.sigLog.emit(f"Could not delete run {rec['id']}: {e}")
                return False
        self.checked.discard(rec["id"])
        self.sigLog.emit(f"Deleted run {self.label(rec)} ({_when(rec)})")
        self.reload()
        return True


def _plot():
    plot = pg.PlotWidget()
    plot.showGrid(x=True, y=True, alpha=0.3)
    for side in ("bottom", "left"):
        plot.getAxis(side).enableAutoSIPrefix(False)
    return plot


def _chooser_over(label, box, plot, note=None):
    """A plot with a labelled combo box above it, as one widget."""
    w = QWidget()
    lay = QVBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    row = QHBoxLayout()
    row.addWidget(QLabel(label))
    row.addWidget(box, 1)
    if note:
        row.addWidget(QLabel(note))
    lay.addLayout(row)
    lay.addWidget(plot, 1)
    return w


def _when(rec):
    """When a run started ("Dec 02 21:55")."""
    try:
        t = time.strptime(rec["started"], "%Y-%m-%dT%H:%M:%S")
        return time.strftime("%b %d %H:%M", t)
    except (ValueError, KeyError):
        return str(rec.get("id"))


def _short(v, limit=18):
    """A setting as a legend shows it: a schedule by its name, anything long cut, "-" for none
    (a setting the run's optimizer does not have)."""
    text = _show(v) or "-"
    if text.startswith("{") and '"schedule": "' in text:
        text = text.split('"schedule": "', 1)[1].split('"', 1)[0]
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


def _show(v):
    if isinstance(v, float):
        return f"{v:g}"
    return "" if v is None else str(v)


def _number_item(value, fmt):
    item = QTableWidgetItem("" if value is None else fmt.format(value))
    if value is not None:
        item.setData(Qt.UserRole + 1, value)
        item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
    return item
