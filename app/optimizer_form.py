"""The training dock's optimizer section: a box of the optimizers (train/optimizers.py) and a
ParamForm of every parameter the chosen one declares, rebuilt when the choice changes. Values
are checked as the project file's reader checks them (project/training.py: a learning rate
may be a schedule object) and reported as the whole entry, {"name", "params"} with every
declared parameter, as a loaded file has it."""
import json

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QLineEdit, QVBoxLayout, QWidget

from layerloom.core.graph import Graph
from layerloom.project.training import parse_training
from layerloom.train.optimizers import OPTIMIZERS

from .paramform import ParamForm, shown

PLACE = "training.optimizer.params"


def checked(entry):
    """(the optimizer entry as the project file's reader leaves it: every declared parameter,
    a schedule normalised; its problems)."""
    problems = []
    out = parse_training({"optimizer": entry}, Graph(), problems, [])
    return out["optimizer"], problems


def _rate_widget(p, value, commit):
    """learning_rate: a number, or a schedule object written as JSON."""
    w = QLineEdit(shown(p, value))
    w.setCursorPosition(0)

    def done():
        text = w.text().strip()
        try:
            commit(json.loads(text) if text.startswith("{") else float(text))
        except ValueError:  # JSONDecodeError too: let the reader say what it expected
            commit(text)
    w.editingFinished.connect(done)
    return w


class OptimizerForm(QWidget):
    """The parameters' rows; `choice` (the optimizer box) goes where the dock puts it.
    sigEntry(entry) reports an edit that changes the entry, sigError a refused value."""
    sigEntry = Signal(object)
    sigError = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.choice = QComboBox()
        self.choice.addItems(list(OPTIMIZERS))
        self.name, self.values, self.form = None, {}, None
        self.slot = QVBoxLayout(self)
        self.slot.setContentsMargins(12, 0, 0, 0)  # under the box, as its part
        self.choice.activated.connect(lambda _: self._chosen(self.choice.currentText()))

    def show_entry(self, entry):
        """Show the project's optimizer entry (a name, or {"name", "params"} with some or all
        of its parameters)."""
        opt, problems = checked(entry)
        if problems:  # not what the reader would leave: show the optimizer's defaults
            opt, _ = checked({"name": opt["name"]})
        self.choice.setCurrentText(opt["name"])
        if opt["name"] != self.name:
            self._build(opt["name"], opt["params"])
        else:
            self.form.set_values(opt["params"])
        self.values = dict(opt["params"])

    def _build(self, name, values):
        if self.form is not None:
            self.form.blockSignals(True)
            self.form.hide()
            self.slot.removeWidget(self.form)
            self.form.deleteLater()
        self.name = name
        self.form = ParamForm(OPTIMIZERS[name].params, values, place=PLACE, check=self._check,
                              widgets={"learning_rate": _rate_widget})
        self.form.sigChanged.connect(self._edited)
        self.form.sigError.connect(lambda *_: self.sigError.emit())
        self.slot.addWidget(self.form)

    def _check(self, p, value, place):
        opt, problems = checked({"name": self.name, "params": {**self.values, p.name: value}})
        if problems:
            raise next((e for e in problems if (e.place or "").startswith(place)), problems[0])
        return opt["params"][p.name]

    def _edited(self, name, value):
        if value != self.values.get(name):
            self.sigEntry.emit({"name": self.name, "params": {**self.values, name: value}})

    def _chosen(self, name):
        """Another optimizer: what was set away from the old one's defaults carries over where
        the new one declares the same parameter; the rest are the new one's defaults."""
        if name == self.name:
            return
        old = {p.name: p.default for p in OPTIMIZERS[self.name].params}
        names = {p.name for p in OPTIMIZERS[name].params}
        kept = {k: v for k, v in self.values.items() if k in names and v != old.get(k)}
        opt, _ = checked({"name": name, "params": kept})
        self.sigEntry.emit(opt)

    def learning_rate(self):
        """As the summary names it: the number, or the schedule's name."""
        lr = self.values.get("learning_rate")
        return lr.get("schedule") if isinstance(lr, dict) else lr
