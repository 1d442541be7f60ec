"""The training dock's losses and its rows per output and per array (a mixin of
TrainingPanel): one loss for every output, or with several outputs a loss and a weight for
each (Keras' loss dict and loss_weights); which dataset array feeds each Input (with several)
and which is each output's target (an array, or the input itself). Each change is an undoable
SetSetupCmd, as everywhere in the dock."""
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QVBoxLayout, QWidget

from layerloom.core.params import Bool
from layerloom.data.prepare import INPUT_TARGET
from layerloom.train.losses import KINDS as LOSS_KINDS, NAMES as LOSS_NAMES

from layerloom.app.editing.commands import SetSetupCmd
from .param_widgets import narrow_box
from .paramform import ParamForm, drop_form


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


def auto_name(names):
    return f"auto ({', '.join(names)})"


def loss_fields(name):
    """The fields a loss shows under its box: from_logits where it has a logits form, and its
    own parameters (huber's delta); the weight has its own box."""
    kind = LOSS_KINDS.get(name)
    if kind is None:
        return ()
    logits = (Bool("from_logits", False, help="The output is logits, not probabilities"),)
    return (logits if kind.k_logits else ()) + kind.params


class LossFields(QWidget):
    """A loss entry's fields (loss_fields), rebuilt when the loss changes; sigEdited(key,
    value) reports an accepted edit."""
    sigEdited = Signal(str, object)

    def __init__(self, place, parent=None):
        super().__init__(parent)
        self.place, self.name, self.form = place, None, None
        self.slot = QVBoxLayout(self)
        self.slot.setContentsMargins(12, 0, 0, 0)
        self.hide()

    def show_entry(self, entry):
        name = entry.get("name") if isinstance(entry, dict) else None
        if name != self.name:
            self.name = name
            drop_form(self.slot, self.form)
            self.form = None
            params = loss_fields(name)
            if params:
                self.form = ParamForm(params, entry, place=self.place)
                self.form.sigChanged.connect(self.sigEdited.emit)
                self.slot.addWidget(self.form)
        elif self.form is not None:
            self.form.set_values(entry)
        self.setVisible(self.form is not None)


class OutputRows:
    """Needs self.doc, self.loss, self.per_output_form, self.output_rows, self.mapping_form,
    self.mapping_rows, self._mapping_key, self._names_for, _push, _changed_setup, _fit_height."""

    def _load_output_rows(self):
        """With several outputs, a loss and a weight per output (Keras' loss dict and
        loss_weights); rebuilt when the outputs change."""
        outputs = self.doc.graph.outputs()
        current = self.doc.project.training.get("loss", {})
        if len(outputs) < 2:
            outputs = []
        if list(self.output_rows) != outputs:
            while self.per_output_form.rowCount():
                self.per_output_form.removeRow(0)
            self.output_rows, self.output_fields = {}, {}
            for o in outputs:
                combo = narrow_box()
                combo.addItem("(choose a loss)")
                combo.addItems(list(LOSS_NAMES))
                weight = QDoubleSpinBox(minimum=0.0, maximum=1000.0, decimals=3, singleStep=0.1)
                weight.setToolTip("This output's share of the total loss (Keras' loss_weights)")
                row = QHBoxLayout()
                row.addWidget(combo, 3)
                row.addWidget(weight, 1)
                row.setContentsMargins(0, 0, 0, 0)
                fields = LossFields(f"training.loss.{o}")
                fields.sigEdited.connect(lambda k, v, o=o: self._loss_field_edited([o], k, v))
                holder = QWidget()
                lay = QVBoxLayout(holder)
                lay.setContentsMargins(0, 0, 0, 0)
                lay.addLayout(row)
                lay.addWidget(fields)
                combo.activated.connect(lambda _, o=o: self._output_loss_changed(o))
                weight.editingFinished.connect(lambda o=o: self._output_loss_changed(o))
                self.per_output_form.addRow(f"  {o}", holder)
                self.output_rows[o] = (combo, weight)
                self.output_fields[o] = fields
        for o, (combo, weight) in self.output_rows.items():
            spec = current.get(o, {})
            combo.setCurrentText(spec.get("name", "(choose a loss)"))
            weight.setValue(float(spec.get("weight", 1.0)))
            self.output_fields[o].show_entry(spec)
        self.per_output.setVisible(bool(self.output_rows))
        # one output: its loss's fields under the Loss box
        only = self.doc.graph.outputs()
        self.loss_fields.show_entry(current.get(only[0], {}) if len(only) == 1 else {})
        self._fit_height()

    def _loss_field_edited(self, outputs, key, value):
        new = {k: dict(v) for k, v in self.doc.project.training.get("loss", {}).items()}
        for o in outputs:
            if o in new:
                new[o][key] = value
        if self.doc.project.training.get("loss") != new:
            self._push(SetSetupCmd(self.doc, "training", "loss", new, self._changed_setup))

    def _load_mapping_rows(self):
        """Which dataset array feeds each Input (shown with several: one takes x) and which
        is each output's target, for every output (issue 31, item 5): an array, or the
        input itself (an autoencoder: dataset.targets' "=input:<Input id>")."""
        g, d = self.doc.graph, self.doc.project.dataset
        ins, outs = g.inputs(), g.outputs()
        rows = ([("inputs", n) for n in ins] if len(ins) > 1 else []) + \
            [("targets", n) for n in outs] if d else []
        names = self._array_names() if rows else []
        key = (tuple(rows), tuple(names), tuple(ins))
        if self._mapping_key != key:
            self._mapping_key = key
            while self.mapping_form.rowCount():
                self.mapping_form.removeRow(0)
            self.mapping_rows = {}
            for kind, nid in rows:
                combo = narrow_box()
                combo.addItem("(choose)", None)
                for name in names:
                    combo.addItem(name, name)
                if kind == "targets":
                    for i in ins:
                        combo.addItem("the input itself" if len(ins) == 1 else
                                      f"the input {i!r} itself", INPUT_TARGET + i)
                combo.activated.connect(lambda _, k=kind, n=nid: self._mapping_changed(k, n))
                label = f"  {nid} {'<-' if kind == 'inputs' else 'target'}"
                self.mapping_form.addRow(label, combo)
                self.mapping_rows[(kind, nid)] = combo
        lone = {"inputs": "x" if len(ins) == 1 else None,
                "targets": "y" if len(outs) == 1 else None}
        for (kind, nid), combo in self.mapping_rows.items():
            mapped = (d.get(kind) or {}).get(nid) or (
                None if d.get(kind) else lone[kind] or nid)  # what the engine takes unmapped
            combo.setCurrentIndex(max(0, combo.findData(mapped)))
        self.mapping.setVisible(bool(self.mapping_rows))
        self._fit_height()

    def _array_names(self):
        """The dataset's array names, read once per dataset rather than on every edit (this
        runs after each change, and an .npz would be opened each time)."""
        from layerloom.data.prepare import array_names
        d = self.doc.project.dataset
        key = (d.get("source"), d.get("name"), d.get("path"))
        if self._names_for != key:
            self._names_for, self._names = key, array_names(self.doc.project)
        return self._names

    def _mapping_changed(self, kind, nid):
        combo = self.mapping_rows[(kind, nid)]
        if combo.currentData() is None:  # the placeholder
            return
        new = dict(self.doc.project.dataset)
        new[kind] = dict(new.get(kind, {}))
        new[kind][nid] = combo.currentData()
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

    # -- the loss set by itself (issue 31, item 6) -----------------------------------------
    implied = {}  # {output: the loss its activation and targets leave no doubt about}

    def show_implied_loss(self, implied):
        """The Data tab's check found the loss each output's activation and targets imply
        (overview's implied_loss): an output without a loss gets it as one undo step ("Loss:
        auto (...)"), once per output, so Undo takes it back for good; the Loss box shows
        "auto (name)" while an output's loss is the implied one."""
        self.implied = dict(implied)
        done = self.__dict__.setdefault("_auto_set", set())
        losses = self.doc.project.training.get("loss")
        losses = losses if isinstance(losses, dict) else {}
        todo = {o: name for o, name in self.implied.items() if o not in losses and o not in done
                and o in self.doc.graph.outputs()}
        if todo and not self.doc.locked:
            done |= set(todo)
            new = {k: dict(v) for k, v in losses.items()}
            new.update({o: loss_entry(name) for o, name in todo.items()})
            cmd = SetSetupCmd(self.doc, "training", "loss", new, self._changed_setup)
            cmd.setText(f"Loss: {auto_name(sorted(set(todo.values())))}")
            self._push(cmd)
        self.load_setup()

    def auto_loss(self):
        """"auto (name)" while every output's loss is the one its activation and targets
        imply, else None."""
        losses = self.doc.project.training.get("loss")
        if not isinstance(losses, dict) or not losses or set(losses) != set(self.implied):
            return None
        if any(v.get("name") != self.implied[o] for o, v in losses.items()):
            return None
        return auto_name(sorted({v["name"] for v in losses.values()}))

    def _loss_chosen(self):
        name = self.loss.currentText()
        if name not in LOSS_NAMES:  # the placeholder
            return
        new = {o: loss_entry(name) for o in self.doc.graph.outputs()}
        if self.doc.project.training.get("loss") != new:
            self._push(SetSetupCmd(self.doc, "training", "loss", new, self._changed_setup))
