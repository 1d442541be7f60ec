"""A form for a list of Params (engine/core/params.py): one editing widget per parameter from
WIDGETS (a dict from parameter kind to widget factory), each accepted value reported as
sigChanged(name, value), a refused one as sigError(name, message) and, with inline errors,
shown under its widget. The inspector shows a layer's params with it, the training dock an
optimizer's."""
import json

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QLabel, QLineEdit, QSpinBox,
                               QVBoxLayout, QWidget)

from layerloom.core.errors import LayerloomError

from .number_widgets import WIDGETS as NUMBER_WIDGETS, IntField
from .param_widgets import InitializerWidget, InnerLayerWidget, RegularizerWidget

ERROR_STYLE = "color: #c1121f;"


def shown(p, value):
    """A value as a text field shows it: numbers by %g, objects as JSON."""
    if p.kind == "float" and isinstance(value, (int, float)):
        return f"{value:g}"
    if p.kind in ("expr", "text") and isinstance(value, str):
        return value
    if p.kind == "shape" and isinstance(value, (list, tuple)):
        return p.text(value)
    if p.kind == "tokenids" and value is None:
        return ""
    if p.kind in ("token", "vocabulary"):  # the text layers': empty for none (null)
        return "" if value is None else value if isinstance(value, str) else (
            json.dumps(value, ensure_ascii=False) if p.kind == "vocabulary" else str(value))
    return json.dumps(p.to_json(value))


def _int_widget(p, value, commit):
    """An integer as typed: the parameter refuses what it cannot take, with the reason (empty
    or "default": not set, where the parameter may be, e.g. strides=None)."""
    return IntField(value, p.min, p.max, optional=p.default is None, commit=commit)


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


def _shape_widget(p, value, commit):
    """A shape as Keras writes it, (28, 28, 1); also taken: 28, 28, 1 and [28, 28, 1]."""
    w = QLineEdit(shown(p, value))
    w.setPlaceholderText("e.g. 28, 28, 1")
    w.editingFinished.connect(lambda: commit(w.text()))
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


def _typed_tokens(p, text):
    """A text layer's token or vocabulary as typed: empty is none (null); a vocabulary is a
    JSON list or words separated by commas; integers for IntegerLookup's."""
    text = text.strip()
    if not text:
        return None
    if p.kind == "vocabulary" and text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # the parameter says what it expected
    parts = [t.strip() for t in text.split(",")] if p.kind == "vocabulary" else [text]
    if p.integers:
        try:
            parts = [int(t) for t in parts]
        except ValueError:
            return text
    return parts if p.kind == "vocabulary" else parts[0]


def _tokens_widget(p, value, commit):
    """A text layer's special token ("[UNK]") or vocabulary (red, green, blue), as typed; empty:
    none (a vocabulary then is adapted to the training rows)."""
    w = QLineEdit(shown(p, value))
    w.setPlaceholderText("adapted to the training rows" if p.kind == "vocabulary" else "none")
    w.editingFinished.connect(lambda: commit(_typed_tokens(p, w.text())))
    return w


def _typed_list(p, text):
    """keras_hub's token lists as typed: reserved tokens ("[PAD], [UNK]" or a JSON list) and
    start/end ids (empty or null: none; 2; "2, 5" or [2, 5]). What is not such a value goes
    to the parameter as typed, which says what it expected."""
    text = text.strip()
    if p.kind == "tokenids" and text in ("", "null"):
        return None
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass  # tokens that start with "[": [PAD], [UNK]
    parts = [t.strip() for t in text.split(",")] if text else []
    if p.kind == "tokenids":
        try:
            ids = [int(t) for t in parts]
        except ValueError:
            return text
        return ids[0] if len(ids) == 1 and "," not in text else ids
    return parts


def _list_widget(p, value, commit):
    """A list of tokens or ids in one line: JSON, or words separated by commas."""
    w = QLineEdit(shown(p, value))
    w.setPlaceholderText("none" if p.kind == "tokenids" else "e.g. [PAD], [UNK]")
    w.editingFinished.connect(lambda: commit(_typed_list(p, w.text())))
    return w


WIDGETS = {
    "initializer": lambda p, v, c: InitializerWidget(p, v, c),
    "regularizer": lambda p, v, c: RegularizerWidget(p, v, c),
    "int": _int_widget,
    "float": _float_widget,
    "shape": _shape_widget,
    "bool": _bool_widget,
    "choice": _choice_widget,
    "expr": lambda p, v, c: _text_widget(p, v, c, as_json=False),
    "text": lambda p, v, c: _text_widget(p, v, c, as_json=False),
    "layer": lambda p, v, c: InnerLayerWidget(p, v, c),  # a wrapped layer, its own form
    "token": _tokens_widget,  # the text layers' special tokens and vocabulary
    "vocabulary": _tokens_widget,
    "tokenlist": _list_widget,  # keras_hub's reserved tokens (WordPieceTokenizer)
    "tokenids": _list_widget,  # its start and end ids (StartEndPacker)
    **NUMBER_WIDGETS,  # padding, factor, axes, per-channel numbers, pairs, margins
}


def _show(w, p, value):
    """Put `value` in widget `w` (made by a factory for `p`) without reporting it."""
    w.blockSignals(True)
    try:
        if hasattr(w, "set_value"):  # a widget of its own (the learning rate's)
            w.set_value(value)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QSpinBox):
            w.setValue(w.minimum() if value is None else value)
        elif isinstance(w, QComboBox):
            w.setCurrentText(str(value))
        elif isinstance(w, QLineEdit):
            w.setText(shown(p, value))
            w.setCursorPosition(0)  # a long value (a schedule object) from its start
    finally:
        w.blockSignals(False)


def drop_form(layout, form):
    """Take `form` (a widget, or None) out of `layout` for good, reporting nothing more."""
    if form is not None:
        form.blockSignals(True)
        form.hide()
        layout.removeWidget(form)
        form.deleteLater()


class ParamForm(QWidget):
    """Widgets for `params` showing `values` ({name: value}, defaults where absent). `check(p,
    value, place)` returns the value to report or raises a LayerloomError (default: the
    Param's own validation); `widgets` maps a param's name to a factory of its own."""
    sigChanged = Signal(str, object)
    sigError = Signal(str, str)

    def __init__(self, params, values, place="", check=None, widgets=None, inline_errors=True,
                 parent=None):
        super().__init__(parent)
        self.params = {p.name: p for p in params}
        self.place = place
        self.check = check or (lambda p, value, where: p.validate(value, where))
        self.inline_errors = inline_errors
        self.widgets, self.errors = {}, {}
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        widgets = widgets or {}
        for p in params:
            make = widgets.get(p.name) or WIDGETS.get(p.kind, _text_widget)
            w = make(p, values.get(p.name, p.default), lambda v, name=p.name: self.commit(name, v))
            w.setToolTip(f"{p.help}\nExpected: {p.describe()}")
            w.setObjectName(f"param_{p.name}")
            self.widgets[p.name] = w
            self.form.addRow(p.name, self._with_error(p.name, w))

    def _with_error(self, name, w):
        """`w` with its error line under it (hidden while there is none)."""
        if not self.inline_errors:
            return w
        error = QLabel()
        error.setWordWrap(True)
        error.setStyleSheet(ERROR_STYLE)
        error.setObjectName(f"error_{name}")
        error.hide()
        self.errors[name] = error
        holder = QWidget()
        lay = QVBoxLayout(holder)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(w)
        lay.addWidget(error)
        return holder

    def commit(self, name, value):
        where = f"{self.place}.{name}" if self.place else name
        try:
            value = self.check(self.params[name], value, where)
        except LayerloomError as e:
            self.show_error(name, e.message if self.inline_errors else str(e))
            self.sigError.emit(name, str(e))
            return
        self.show_error(name, "")
        self.sigChanged.emit(name, value)

    def show_error(self, name, message):
        error = self.errors.get(name)
        if error is not None:
            error.setText(message)
            error.setVisible(bool(message))

    def set_values(self, values, keep=()):
        """Show `values` (defaults where absent) without reporting them; clears the errors.
        The fields named in `keep` are left as they are."""
        for name, p in self.params.items():
            if name in keep:
                continue
            _show(self.widgets[name], p, values.get(name, p.default))
            self.show_error(name, "")
