"""The inspector: the selected node's parameters with widgets generated from the layer
declaration (a dict from parameter kind to widget factory), its help, output shape, parameter
count and problems. Every accepted change is one undoable SetParamsCmd."""
import json

from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QSpinBox,
                               QVBoxLayout, QWidget)

from layerloom.core.errors import ParamError
from layerloom.core.graph import fmt_shape

from .commands import SetParamsCmd


def _int_widget(p, value, commit):
    w = QSpinBox()
    w.setRange(p.min if p.min is not None else -2**31 + 1, p.max if p.max is not None else 2**31 - 1)
    if p.default is None:  # "not set", e.g. strides=None
        w.setMinimum(w.minimum() - 1)
        w.setSpecialValueText("default")
        w.setValue(w.minimum() if value is None else value)
        w.editingFinished.connect(lambda: commit(None if w.value() == w.minimum() else w.value()))
    else:
        w.setValue(value)
        w.editingFinished.connect(lambda: commit(w.value()))
    return w


def _bool_widget(p, value, commit):
    w = QCheckBox()
    w.setChecked(bool(value))
    w.toggled.connect(commit)
    return w


def _choice_widget(p, value, commit):
    w = QComboBox()
    w.addItems(list(p.choices))
    w.setCurrentText(str(value))
    w.currentTextChanged.connect(commit)
    return w


def _text_widget(p, value, commit, as_json=True):
    text = json.dumps(p.to_json(value)) if as_json else str(value)
    w = QLineEdit(text)

    def done():
        raw = w.text()
        if as_json:
            try:
                v = json.loads(raw)
            except json.JSONDecodeError:
                v = raw  # let the parameter say what it expected
        else:
            v = raw
        commit(v)
    w.editingFinished.connect(done)
    return w


def _float_widget(p, value, commit):
    w = QLineEdit(f"{value:g}")

    def done():
        try:
            commit(float(w.text()))
        except ValueError:
            commit(w.text())
    w.editingFinished.connect(done)
    return w


WIDGETS = {
    "int": _int_widget,
    "float": _float_widget,
    "bool": _bool_widget,
    "choice": _choice_widget,
    "expr": lambda p, v, c: _text_widget(p, v, c, as_json=False),
    "text": lambda p, v, c: _text_widget(p, v, c, as_json=False),
}


class Inspector(QWidget):
    def __init__(self, doc, scene, parent=None):
        super().__init__(parent)
        self.doc, self.scene = doc, scene
        self.node_id = ""
        self.lay = QVBoxLayout(self)
        self.title = QLabel("Select a node to see its parameters.")
        self.title.setWordWrap(True)
        self.help = QLabel()
        self.help.setWordWrap(True)
        self.help.setStyleSheet("color: #555;")
        self.form = QFormLayout()
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c1121f;")
        for w in (self.title, self.help):
            self.lay.addWidget(w)
        self.lay.addLayout(self.form)
        self.lay.addWidget(self.info)
        self.lay.addWidget(self.error)
        self.lay.addStretch(1)
        self.widgets = {}
        doc.sigChanged.connect(self.refresh_info)

    def show_node(self, node_id):
        self.node_id = node_id
        while self.form.rowCount():
            self.form.removeRow(0)
        self.widgets = {}
        self.error.setText("")
        if not node_id or node_id not in self.doc.graph.nodes:
            self.title.setText("Select a node to see its parameters.")
            self.help.setText("")
            self.info.setText("")
            self.setMinimumHeight(0)
            return
        node = self.doc.graph.nodes[node_id]
        self.title.setText(f"<b>{node.type}</b> &nbsp; {node_id}")
        self.help.setText(node.layer.help)
        for p in node.layer.params:
            make = WIDGETS.get(p.kind, _text_widget)
            w = make(p, node.params[p.name], lambda v, name=p.name: self.commit(name, v))
            w.setToolTip(f"{p.help}\nExpected: {p.describe()}")
            w.setObjectName(f"param_{p.name}")
            self.widgets[p.name] = w
            self.form.addRow(p.name, w)
        self.refresh_info()
        # inside a scroll area: keep rows at their natural height and let the area scroll
        self.setMinimumHeight(self.lay.sizeHint().height())

    def commit(self, name, value):
        node = self.doc.graph.nodes.get(self.node_id)
        if node is None:
            return
        decl = {p.name: p for p in node.layer.params}[name]
        try:
            value = decl.validate(value, f"{self.node_id}.{name}")
        except ParamError as e:
            self.error.setText(str(e))
            return
        self.error.setText("")
        if value == node.params[name]:
            return
        try:
            self.doc.push(SetParamsCmd(self.doc, self.node_id, {name: value}))
        except RuntimeError as e:
            self.error.setText(str(e))

    def refresh_info(self):
        nid = self.node_id
        if not nid or nid not in self.doc.graph.nodes:
            return
        a = self.doc.graph.analysis()
        shapes = a.shapes.get(nid)
        text = "Output: " + (", ".join(fmt_shape(s) for s in shapes) if shapes else "unknown")
        if nid in a.params:
            text += f"<br>Parameters: {a.params[nid].total:,}"
        self.info.setText(text)
        probs = a.node_problems(nid)
        if probs:
            self.error.setText("<br>".join(probs))
