"""The training dock's metrics as widgets (issue 19, item 14), from the metric declarations
(engine/train/metrics.py): a button naming the chosen metrics opens a menu of every metric to
tick, and each chosen metric with parameters (top_k's k, precision's threshold) gets its fields
under it. With several outputs, "per output" gives each output its own list (Keras' metrics
dict). What is reported is what the project file holds: a list of entries, or {output: list}."""
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QHBoxLayout, QMenu, QSizePolicy,
                               QToolButton, QVBoxLayout, QWidget)

from layerloom.train.metrics import ALIASES, KINDS

from .paramform import ParamForm, drop_form

PLACE = "training.metrics"


def canonical(entry):
    """(the metric's declared name, its parameters) of a project entry (a name or a dict)."""
    name = entry.get("name") if isinstance(entry, dict) else entry
    name = ALIASES.get(name, name)
    params = {k: v for k, v in entry.items() if k != "name"} if isinstance(entry, dict) else {}
    return name, params


def label(entry):
    """As the button lists it: a long name by its short alias (mae, top_k), parameters set
    away from their defaults in brackets: top_k (k=3)."""
    name, params = canonical(entry)
    shown = name
    if len(name) > 12:
        shown = min((a for a, n in ALIASES.items() if n == name), key=len, default=name)
    values = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in params.items())
    return f"{shown} ({values})" if values else shown


class MetricsPicker(QWidget):
    """One list of metrics. sigEntries(list) reports an edit."""
    sigEntries = Signal(list)

    def __init__(self, place=PLACE, parent=None):
        super().__init__(parent)
        self.place, self.entries, self.forms = place, [], {}
        self.button = QToolButton()
        self.button.setPopupMode(QToolButton.InstantPopup)
        self.button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.menu = QMenu(self.button)
        self.actions = {}
        for name, kind in KINDS.items():
            a = self.menu.addAction(name)
            a.setCheckable(True)
            a.setToolTip(kind.help)
            a.toggled.connect(lambda on, n=name: self._ticked(n, on))
            self.actions[name] = a
        self.menu.setToolTipsVisible(True)
        self.button.setMenu(self.menu)
        self.button.setToolTip("Choose the metrics reported for each epoch")
        self.fields = QVBoxLayout()
        self.fields.setContentsMargins(12, 0, 0, 0)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.button)
        lay.addLayout(self.fields)

    def show_entries(self, entries):
        """Show `entries` (the project's list) without reporting them."""
        self.entries = list(entries)
        chosen = {canonical(e)[0]: e for e in self.entries}
        for name, a in self.actions.items():
            a.blockSignals(True)
            a.setChecked(name in chosen)
            a.blockSignals(False)
        self.button.setText(", ".join(label(e) for e in self.entries) or "none")
        for form in self.forms.values():
            drop_form(self.fields, form)
        self.forms = {}
        for i, e in enumerate(self.entries):
            name, params = canonical(e)
            kind = KINDS.get(name)
            if kind is None or not kind.params:
                continue
            form = ParamForm(kind.params, params, place=f"{self.place}[{i}]")
            form.form.insertRow(0, label(name), QWidget())  # whose fields these are
            form.sigChanged.connect(lambda key, v, n=name: self._edited(n, key, v))
            self.fields.addWidget(form)
            self.forms[name] = form

    def _ticked(self, name, on):
        names = [canonical(e)[0] for e in self.entries]
        if on and name not in names:
            new = self.entries + [name]
        elif not on and name in names:
            new = [e for e in self.entries if canonical(e)[0] != name]
        else:
            return
        self.sigEntries.emit(new)

    def _edited(self, name, key, value):
        new = []
        for e in self.entries:
            n, params = canonical(e)
            if n == name:
                kind = KINDS[n]
                params = {**params, key: value}
                # a parameter back at its default is left out: the entry is the name again
                params = {k: v for k, v in params.items()
                          if v != next(p.default for p in kind.params if p.name == k)}
                e = {"name": n, **params} if params else n
            new.append(e)
        if new != self.entries:
            self.sigEntries.emit(new)


class MetricsSetup(QWidget):
    """Every output's metrics, or with several outputs each output's own. sigMetrics(value)
    reports the new training.metrics (a list, or {output: list})."""
    sigMetrics = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.value, self.outputs = [], []
        self.all = MetricsPicker()
        self.all.sigEntries.connect(self.sigMetrics.emit)
        self.per_output = QCheckBox("per output")
        self.per_output.setToolTip("Choose the metrics of each output on its own")
        self.per_output.toggled.connect(self._per_output_toggled)
        self.rows_holder = QWidget()
        self.rows = QFormLayout(self.rows_holder)
        self.rows.setContentsMargins(0, 0, 0, 0)
        self.pickers = {}
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.all, 1)
        top.addWidget(self.per_output)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.rows_holder)

    def show_metrics(self, metrics, outputs):
        """Show the project's training.metrics for these outputs without reporting them."""
        self.value, self.outputs = metrics, list(outputs)
        several = len(self.outputs) > 1
        per = isinstance(metrics, dict)
        self.per_output.blockSignals(True)
        self.per_output.setChecked(per)
        self.per_output.blockSignals(False)
        self.per_output.setVisible(several or per)
        self.all.setVisible(not per)
        self.all.show_entries(metrics if isinstance(metrics, list) else [])
        wanted = self.outputs if per else []
        if list(self.pickers) != wanted:
            while self.rows.rowCount():
                self.rows.removeRow(0)
            self.pickers = {}
            for o in wanted:
                p = MetricsPicker(place=f"{PLACE}.{o}")
                p.sigEntries.connect(lambda entries, o=o: self._output_edited(o, entries))
                self.rows.addRow(f"  {o}", p)
                self.pickers[o] = p
        for o, p in self.pickers.items():
            p.show_entries(metrics.get(o, []) if per else [])
        self.rows_holder.setVisible(per)

    def _output_edited(self, output, entries):
        new = {o: list(v) for o, v in self.value.items()}
        new[output] = entries
        self.sigMetrics.emit(new)

    def _per_output_toggled(self, on):
        if on:  # each output starts from the shared list
            shared = self.value if isinstance(self.value, list) else []
            self.sigMetrics.emit({o: list(shared) for o in self.outputs})
        else:  # back to one list: every metric any output had, in order
            merged = []
            for entries in (self.value.values() if isinstance(self.value, dict) else []):
                for e in entries:
                    if canonical(e) not in [canonical(m) for m in merged]:
                        merged.append(e)
            self.sigMetrics.emit(merged)
