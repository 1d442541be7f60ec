"""The training dock's metrics as widgets (issue 19, item 14), from the metric declarations
(engine/train/metrics.py), in an EntryPicker (app/forms/entry_picker.py): a menu of every metric to
tick, and fields for a chosen metric's parameters (top_k's k, precision's threshold). With
several outputs, "per output" gives each output its own list (Keras' metrics dict); turned
off and on again it gives back the lists it merged. What is reported is what the project
file holds: a list of entries, or {output: list}."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QVBoxLayout, QWidget

from layerloom.train.metrics import ALIASES, KINDS

from .entry_picker import EntryPicker, Kinds

PLACE = "training.metrics"


METRICS = Kinds({name: (k.help, k.params) for name, k in KINDS.items()}, ALIASES)


def metrics_picker(place=PLACE):
    """One list of metrics; sigEntries(list) reports an edit."""
    return EntryPicker(METRICS, place, "Choose the metrics reported for each epoch")


class MetricsSetup(QWidget):
    """Every output's metrics, or with several outputs each output's own. sigMetrics(value)
    reports the new training.metrics (a list, or {output: list})."""
    sigMetrics = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.value, self.outputs = [], []
        self._kept = None  # (the merged list, the per-output lists it was made from)
        self.all = metrics_picker()
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
        top.addWidget(self.per_output, 0, Qt.AlignTop)  # beside the button, not its fields
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
                p = metrics_picker(place=f"{PLACE}.{o}")
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
        if on:
            # the outputs' own lists as they were before "per output" was turned off (while
            # the shared list is unchanged since), else each output starts from the shared list
            shared = self.value if isinstance(self.value, list) else []
            kept = self._kept
            if kept and kept[0] == shared and set(kept[1]) == set(self.outputs):
                self.sigMetrics.emit({o: list(kept[1][o]) for o in self.outputs})
            else:
                self.sigMetrics.emit({o: list(shared) for o in self.outputs})
        else:  # back to one list: every metric any output had, in order
            merged = []
            for entries in (self.value.values() if isinstance(self.value, dict) else []):
                for e in entries:
                    # one entry per metric (the file refuses one listed twice): the first
                    if METRICS.canonical(e)[0] not in [METRICS.canonical(m)[0] for m in merged]:
                        merged.append(e)
            self._kept = (merged, {o: list(v) for o, v in self.value.items()}) \
                if isinstance(self.value, dict) else None
            self.sigMetrics.emit(merged)
