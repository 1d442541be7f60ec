"""The Sweep dialog: parameters of the project (training ones and the nodes' numbers) each with
its values (a list, a range or a log range), every combination or N random trials, the metric
to rank by; spec() is the spec `layerloom --sweep` reads (engine/project/sweeps.py), checked
as it is typed (the trials it makes, or the first problem with its place)."""
from PySide6.QtWidgets import (QAbstractItemView, QButtonGroup, QComboBox, QDialog,
                               QDialogButtonBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QPushButton, QRadioButton, QSpinBox, QTableWidget,
                               QVBoxLayout, QWidget)

from layerloom.core.errors import LayerloomError
from layerloom.project import sweeps

FORMS = ("list", "range", "log range")
HINTS = {"list": "values, comma-separated", "range": "low, high", "log range": "low, high"}


class SweepDialog(QDialog):
    def __init__(self, project, parent=None):
        super().__init__(parent)
        self.project = project
        self.setWindowTitle("Sweep")
        self.names = sweeps.sweepable(project)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Parameter", "Values as", "Values", "Count"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.Stretch)
        self.table.setColumnWidth(0, 180)  # hidden_1.units whole
        self.table.setColumnWidth(1, 100)
        add = QPushButton("Add Parameter")
        add.clicked.connect(lambda: self.add_row())
        remove = QPushButton("Remove Parameter")
        remove.clicked.connect(self.remove_row)
        self.grid = QRadioButton("Every combination")
        self.random = QRadioButton("Random trials:")
        self.grid.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.grid)
        group.addButton(self.random)
        self.trials = QSpinBox()
        self.trials.setRange(1, sweeps.MAX_TRIALS)
        self.trials.setValue(8)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.metric_box = QComboBox()
        self.metric_box.setEditable(True)
        self.metric_box.addItems(self._metrics())
        self.name = QLineEdit()
        self.name.setPlaceholderText("named after its parameters")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        for w in (self.grid, self.random):
            w.toggled.connect(lambda _: self.check())
        for w in (self.trials, self.seed):
            w.valueChanged.connect(lambda _: self.check())
        self.metric_box.currentTextChanged.connect(lambda _: self.check())
        self.name.textChanged.connect(lambda _: self.check())

        rows = QHBoxLayout()
        rows.addWidget(add)
        rows.addWidget(remove)
        rows.addStretch(1)
        how = QHBoxLayout()
        how.addWidget(self.grid)
        how.addWidget(self.random)
        how.addWidget(self.trials)
        how.addWidget(QLabel("seed"))
        how.addWidget(self.seed)
        how.addStretch(1)
        form = QFormLayout()
        form.addRow("Trials", _boxed(how))
        form.addRow("Rank by", self.metric_box)
        form.addRow("Name", self.name)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.button(QDialogButtonBox.Ok).setText("Start Sweep")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Each trial trains the saved project with one combination of "
                             "these values and is recorded in the Runs tab."))
        lay.addWidget(self.table, 1)
        lay.addLayout(rows)
        lay.addLayout(form)
        lay.addWidget(self.summary)
        lay.addWidget(self.buttons)
        self.resize(640, 420)
        self.add_row("learning_rate", "log range", "0.0001, 0.1", 6)

    def _metrics(self):
        names = ["loss"] + [m if isinstance(m, str) else str(m.get("name", ""))
                            for m in _metric_list(self.project.training.get("metrics"))]
        vals = [f"val_{n}" for n in names] if self.project.training.get("validation_split") \
            else []
        default = sweeps.check({"parameters": {"epochs": [1]}}, self.project).metric
        out = [default] + [n for n in vals + names + [f"test_{n}" for n in names]
                           if n != default]
        return list(dict.fromkeys(out))

    # -- rows ----------------------------------------------------------------------------------
    def add_row(self, name=None, form="list", values="", count=5):
        row = self.table.rowCount()
        self.table.insertRow(row)
        param = QComboBox()
        param.addItems(self.names)
        taken = {self.table.cellWidget(r, 0).currentText() for r in range(row)}
        param.setCurrentText(name or next((n for n in self.names if n not in taken),
                                          self.names[0]))
        kind = QComboBox()
        kind.addItems(FORMS)
        kind.setCurrentText(form)
        text = QLineEdit(values)
        n = QSpinBox()
        n.setRange(0, sweeps.MAX_TRIALS)
        n.setSpecialValueText("any")  # random trials draw from the whole range
        n.setToolTip("How many values the range gives (both ends in); 'any': random trials "
                     "draw from the whole range")
        n.setValue(count)
        for col, w in enumerate((param, kind, text, n)):
            self.table.setCellWidget(row, col, w)
        param.currentTextChanged.connect(lambda _: self.check())
        kind.currentTextChanged.connect(lambda _: self.check())
        text.textChanged.connect(lambda _: self.check())
        n.valueChanged.connect(lambda _: self.check())
        self.check()
        return row

    def remove_row(self):
        rows = sorted({i.row() for i in self.table.selectedIndexes()} or
                      {self.table.rowCount() - 1}, reverse=True)
        for r in rows:
            if r >= 0:
                self.table.removeRow(r)
        self.check()

    def set_row(self, row, name=None, form=None, values=None, count=None):
        """Fill a row's fields (as a person would type them)."""
        cells = [self.table.cellWidget(row, c) for c in range(4)]
        if name is not None:
            cells[0].setCurrentText(name)
        if form is not None:
            cells[1].setCurrentText(form)
        if values is not None:
            cells[2].setText(values)
        if count is not None:
            cells[3].setValue(count)

    # -- the spec ------------------------------------------------------------------------------
    def spec(self):
        """The spec as `layerloom --sweep` reads it (JSON form)."""
        params = {}
        for r in range(self.table.rowCount()):
            name, form, text, count = (self.table.cellWidget(r, 0).currentText(),
                                       self.table.cellWidget(r, 1).currentText(),
                                       self.table.cellWidget(r, 2).text(),
                                       self.table.cellWidget(r, 3).value())
            values = [_value(v) for v in text.split(",") if v.strip()]
            if form == "list":
                params[name] = values
            else:
                key = "range" if form == "range" else "log_range"
                params[name] = {key: values}
                if count:
                    params[name]["count"] = count
        d = {"parameters": params, "metric": self.metric_box.currentText().strip()}
        if self.random.isChecked():
            d.update(trials=self.trials.value(), seed=self.seed.value())
        if self.name.text().strip():
            d["name"] = self.name.text().strip()
        return d

    def check(self):
        """The spec's trials or its first problem in the summary line; Start only when good.
        Returns the Spec or None."""
        for r in range(self.table.rowCount()):
            self.table.cellWidget(r, 2).setPlaceholderText(
                HINTS[self.table.cellWidget(r, 1).currentText()])
            self.table.cellWidget(r, 3).setEnabled(
                self.table.cellWidget(r, 1).currentText() != "list")
        try:
            spec = sweeps.check(self.spec(), self.project)
            n = len(spec.points())
        except LayerloomError as e:
            self.summary.setText(f"<span style='color:#c62828'>{e}</span>")
            self._ok(False)
            return None
        self.summary.setText(f"{n} trial{'s' if n != 1 else ''}, ranked by {spec.metric} "
                             f"({'lower' if spec.goal == 'min' else 'higher'} is better); "
                             f"recorded as sweep {spec.name}")
        self._ok(True)
        return spec

    def _ok(self, on):
        if hasattr(self, "buttons"):
            self.buttons.button(QDialogButtonBox.Ok).setEnabled(on)


def _metric_list(metrics):
    if isinstance(metrics, dict):
        out = []
        for v in metrics.values():
            out += [m for m in v if m not in out]
        return out
    return list(metrics or [])


def _value(text):
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _boxed(layout):
    w = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    w.setLayout(layout)
    return w
