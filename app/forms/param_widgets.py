"""Form widgets for the parameters that are small objects in the project file (issue 19,
item 14): an initializer (a name from a box; "constant" with its value) and a regularizer
(none, or L1 and L2 factors), instead of JSON text with quotes and null, and a wrapped layer
(its type from a box, its parameters a form of their own). Each has set_value(value)
(paramform._show uses it) and reports through commit(value)."""
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from layerloom.core.errors import LayerloomError
from layerloom.core.registry import get_layer, layer_types


def narrow_box(chars=10, hint=""):
    """A combo box as narrow as `chars` characters allow rather than as wide as its longest
    item, so that a dock of them never scrolls sideways (the longest item still shows in the
    open list)."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(chars)
    # the whole choice as its tooltip, where the box cuts it short; then what it is for
    box.currentTextChanged.connect(
        lambda text: box.setToolTip(f"{text}\n{hint}" if hint and text else text or hint))
    box.setToolTip(hint)
    return box


def _number(text):
    try:
        return float(text)
    except ValueError:
        return text  # the Param's check says what it expected


class InitializerWidget(QWidget):
    def __init__(self, p, value, commit):
        super().__init__()
        from layerloom.core.params import VARIANCE_DISTRIBUTIONS, VARIANCE_MODES
        from layerloom.train.initializers import NAMES
        self.commit = commit
        self.name = narrow_box()
        self.name.addItems(list(NAMES) + ["variance_scaling"])
        self.constant = QLineEdit()
        self.constant.setPlaceholderText("value")
        self.constant.setMaximumWidth(80)
        # variance_scaling: its scale, mode and distribution (a seed it has is kept)
        self.scale = QLineEdit()
        self.scale.setPlaceholderText("scale")
        self.scale.setMaximumWidth(60)
        self.mode, self.dist = narrow_box(7), narrow_box(7)
        self.mode.addItems(list(VARIANCE_MODES))
        self.dist.addItems(list(VARIANCE_DISTRIBUTIONS))
        self.seed = None
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.name, 1)
        for w in (self.constant, self.scale, self.mode, self.dist):
            lay.addWidget(w)
        self.name.activated.connect(lambda _: self._report())
        self.constant.editingFinished.connect(self._report)
        self.scale.editingFinished.connect(self._report)
        self.mode.activated.connect(lambda _: self._report())
        self.dist.activated.connect(lambda _: self._report())
        self.set_value(value)

    def _parts(self):
        return (self.name, self.constant, self.scale, self.mode, self.dist)

    def _show_parts(self, name):
        self.constant.setVisible(name == "constant")
        for w in (self.scale, self.mode, self.dist):
            w.setVisible(name == "variance_scaling")

    def set_value(self, value):
        name = value.get("name") if isinstance(value, dict) else str(value)
        for w in self._parts():
            w.blockSignals(True)
        self.name.setCurrentText(name)
        self.constant.setText(f"{value.get('value', 0.0):g}" if name == "constant" else "0")
        vs = value if name == "variance_scaling" else {}
        self.scale.setText(f"{vs.get('scale', 1.0):g}")
        self.mode.setCurrentText(vs.get("mode", "fan_in"))
        self.dist.setCurrentText(vs.get("distribution", "truncated_normal"))
        self.seed = vs.get("seed")
        self._show_parts(name)
        for w in self._parts():
            w.blockSignals(False)

    def _report(self):
        name = self.name.currentText()
        self._show_parts(name)
        if name == "constant":
            self.commit({"name": "constant", "value": _number(self.constant.text())})
        elif name == "variance_scaling":
            self.commit({"name": "variance_scaling", "scale": _number(self.scale.text()),
                         "mode": self.mode.currentText(),
                         "distribution": self.dist.currentText(), "seed": self.seed})
        else:
            self.commit(name)


class RegularizerWidget(QWidget):
    def __init__(self, p, value, commit):
        super().__init__()
        self.commit = commit
        self.kind = narrow_box()
        self.kind.addItems(["none", "l1", "l2", "l1_l2"])
        self.l1, self.l2 = QLineEdit(), QLineEdit()
        self.labels = (QLabel("l1"), QLabel("l2"))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.kind, 1)
        for label, field in zip(self.labels, (self.l1, self.l2)):
            field.setMaximumWidth(70)
            field.editingFinished.connect(self._report)
            lay.addWidget(label)
            lay.addWidget(field)
        self.kind.activated.connect(lambda _: self._kind_chosen())
        self.set_value(value)

    def set_value(self, value):
        for w in (self.kind, self.l1, self.l2):
            w.blockSignals(True)
        v = value or {}
        a, b = v.get("l1", 0.0), v.get("l2", 0.0)
        kind = "none" if not value else ("l1_l2" if a and b else "l1" if a else "l2")
        self.kind.setCurrentText(kind)
        self.l1.setText(f"{a:g}")
        self.l2.setText(f"{b:g}")
        self._show_fields(kind)
        for w in (self.kind, self.l1, self.l2):
            w.blockSignals(False)

    def _show_fields(self, kind):
        for label, field, key in zip(self.labels, (self.l1, self.l2), ("l1", "l2")):
            on = kind != "none" and key in kind
            label.setVisible(on)
            field.setVisible(on)

    def _kind_chosen(self):
        """A kind chosen: Keras' default factor (0.01) where its field was 0."""
        kind = self.kind.currentText()
        for field, key in ((self.l1, "l1"), (self.l2, "l2")):
            if key in kind and _number(field.text()) in (0, 0.0):
                field.setText("0.01")
        self._show_fields(kind)
        self._report()

    def _report(self):
        kind = self.kind.currentText()
        if kind == "none":
            self.commit(None)
            return
        self.commit({"l1": _number(self.l1.text()) if "l1" in kind else 0.0,
                     "l2": _number(self.l2.text()) if "l2" in kind else 0.0})


class InnerLayerWidget(QWidget):
    """A wrapped layer (TimeDistributed's `layer`): its type from a box of the layers the
    parameter accepts (those its own check takes) and that layer's parameters as a form of
    their own beneath it. A parameter changed reports the whole layer, the others kept; a type
    chosen reports it with its defaults."""

    def __init__(self, p, value, commit):
        super().__init__()
        self.p, self.commit, self.form = p, commit, None
        self.value = {}
        self.kind = narrow_box(hint="the layer applied to every step")
        for layer in layer_types():
            try:
                p.validate({"type": layer.type_id}, p.name)
            except LayerloomError:
                continue
            self.kind.addItem(layer.type_id)
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.lay.addWidget(self.kind)
        self.kind.activated.connect(lambda _: self.commit({"type": self.kind.currentText(),
                                                           "params": {}}))
        self.set_value(value)

    def set_value(self, value):
        from .paramform import ParamForm, drop_form  # which imports this module
        value = value if isinstance(value, dict) else {}
        kind = value.get("type", "")
        params = dict(value.get("params") or {})
        same = self.form is not None and self.value.get("type") == kind
        self.value = {"type": kind, "params": params}
        self.kind.blockSignals(True)
        self.kind.setCurrentText(kind)
        self.kind.blockSignals(False)
        layer = get_layer(kind)
        if same:
            self.form.set_values(params)
            return
        drop_form(self.lay, self.form)
        self.form = None
        if layer is not None:
            self.form = ParamForm(layer.params, {**layer.defaults(), **params},
                                  place=f"{self.p.name}.params")
            self.form.setObjectName("inner_layer_form")
            self.form.sigChanged.connect(self._param)
            self.lay.addWidget(self.form)

    def _param(self, name, v):
        self.commit({"type": self.value["type"], "params": {**self.value["params"], name: v}})
