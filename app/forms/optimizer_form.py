"""The training dock's optimizer section: a box of the optimizers (train/optimizers.py) and a
ParamForm of every parameter the chosen one declares, rebuilt when the choice changes. Values
are checked as the project file's reader checks them (project/training.py: a learning rate
may be a schedule object) and reported as the whole entry, {"name", "params"} with every
declared parameter, as a loaded file has it."""
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QLineEdit, QVBoxLayout, QWidget

from layerloom.core.graph import Graph
from layerloom.project.training import parse_training
from layerloom.train.optimizers import OPTIMIZERS
from layerloom.train.schedules import SCHEDULES

from .param_widgets import narrow_box
from .paramform import ParamForm, drop_form, shown

PLACE = "training.optimizer.params"


def checked(entry):
    """(the optimizer entry as the project file's reader leaves it: every declared parameter,
    a schedule normalised; its problems)."""
    problems = []
    out = parse_training({"optimizer": entry}, Graph(), problems, [])
    return out["optimizer"], problems


class RateWidget(QWidget):
    """learning_rate: "constant" and a number, or a schedule (train/schedules.py) chosen in a
    box with a field for each of its parameters, instead of JSON text."""

    def __init__(self, p, value, commit):
        super().__init__()
        self.p, self.commit = p, commit
        self.kind = narrow_box(hint="A constant learning rate, or a schedule of it over the steps")
        self.kind.addItems(["constant"] + list(SCHEDULES))
        self.number = QLineEdit()
        self.number.editingFinished.connect(self._number_done)
        self.fields = None
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.lay.setSpacing(2)
        self.lay.addWidget(self.kind)
        self.lay.addWidget(self.number)
        self.kind.activated.connect(lambda _: self._kind_chosen())
        self.set_value(value)

    def set_value(self, value):
        """Show `value` (a number or a schedule object) without reporting it."""
        self.value = value
        name = value.get("schedule") if isinstance(value, dict) else None
        self.kind.blockSignals(True)
        self.kind.setCurrentText(name if name in SCHEDULES else "constant")
        self.kind.blockSignals(False)
        self.number.setVisible(name is None)
        self.number.setText(shown(self.p, value) if name is None else "")
        self._build_fields(name, value if isinstance(value, dict) else {})

    def _build_fields(self, name, values):
        if self.fields is not None:
            self.fields.hide()
            self.lay.removeWidget(self.fields)
            self.fields.deleteLater()
            self.fields = None
        if name in SCHEDULES:
            self.fields = ParamForm(SCHEDULES[name].params, values,
                                    place=f"{PLACE}.learning_rate")
            self.fields.sigChanged.connect(self._field_done)
            self.lay.addWidget(self.fields)

    def _number_done(self):
        text = self.number.text().strip()
        try:
            self.commit(float(text))
        except ValueError:  # the reader says what it expected
            self.commit(text)

    def _field_done(self, key, v):
        self.commit({**self.value, key: v})

    def _kind_chosen(self):
        """A schedule starts from the rate there was (as its initial rate); constant keeps the
        schedule's initial rate."""
        name = self.kind.currentText()
        old = self.value
        start = old.get("initial_learning_rate", 0.001) if isinstance(old, dict) else old
        if name == "constant":
            self.commit(float(start) if isinstance(start, (int, float)) else 0.001)
        else:
            spec = {"schedule": name}
            if isinstance(start, (int, float)) and any(
                    q.name == "initial_learning_rate" for q in SCHEDULES[name].params):
                spec["initial_learning_rate"] = float(start)
            self.commit(spec)


def _rate_widget(p, value, commit):
    return RateWidget(p, value, commit)


class OptimizerForm(QWidget):
    """The parameters' rows; `choice` (the optimizer box) goes where the dock puts it.
    sigEntry(entry) reports an edit that changes the entry, sigError a refused value."""
    sigEntry = Signal(object)
    sigError = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.choice = narrow_box()
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
        drop_form(self.slot, self.form)
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
