"""A list of named entries chosen from declarations, as widgets (issue 19, item 14): a button
naming the chosen ones opens a menu of every declared kind to tick (its help as tooltip), and
each chosen kind with parameters gets its fields under it. The training dock's metrics
(app/forms/metrics_form.py) and callbacks use it. An entry is what the project file holds: a name,
or {"name", the parameters set away from their defaults}."""
from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QLabel, QMenu, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from .paramform import ParamForm, drop_form


@dataclass(frozen=True)
class Kinds:
    """What a picker offers: `kinds` {name: (help, params)}; `aliases` {alias: name};
    `bare`: an entry without parameters is written as its name alone (metrics) rather than
    {"name": ...} (callbacks); `check(p, value, place, name, entries)`: the value to keep, or
    raises a LayerloomError (default: the Param's own validation)."""
    kinds: dict
    aliases: dict = None
    bare: bool = True
    check: object = None

    def canonical(self, entry):
        """(the declared name, the parameters) of an entry."""
        name = entry.get("name") if isinstance(entry, dict) else entry
        name = (self.aliases or {}).get(name, name)
        params = {k: v for k, v in entry.items() if k != "name"} if isinstance(entry, dict) \
            else {}
        return name, params

    def label(self, entry):
        """As the button lists it: a long name by its shortest alias (mae, top_k), parameters
        set away from their defaults in brackets: top_k (k=3)."""
        name, params = self.canonical(entry)
        shown = name
        if len(name) > 12:
            shown = min((a for a, n in (self.aliases or {}).items() if n == name), key=len,
                        default=name)
        defaults = {p.name: p.default for p in self.kinds.get(name, ("", ()))[1]}
        values = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in params.items() if k not in defaults or v != defaults[k])
        return f"{shown} ({values})" if values else shown

    def entry(self, name, params):
        """The entry for `name` with `params`, those at their defaults left out."""
        defaults = {p.name: p.default for p in self.kinds[name][1]}
        params = {k: v for k, v in params.items() if k not in defaults or v != defaults[k]}
        return {"name": name, **params} if params or not self.bare else name


class ListButton(QToolButton):
    """A tool button whose text (the chosen entries) is cut short with "..." to the width it
    is given rather than widening its dock; the whole text is its tooltip."""

    def __init__(self, tooltip=""):
        super().__init__()
        self.full, self.hint = "", tooltip
        self.setPopupMode(QToolButton.InstantPopup)
        self.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)

    def set_full_text(self, text):
        self.full = text
        self.setToolTip(f"{text}\n{self.hint}" if self.hint else text)
        self._elide()

    def minimumSizeHint(self):
        return QSize(60, super().minimumSizeHint().height())

    def sizeHint(self):
        return QSize(120, super().sizeHint().height())

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._elide()

    def _elide(self):
        room = max(20, self.width() - 28)  # the menu arrow's share
        text = self.fontMetrics().elidedText(self.full, Qt.ElideRight, room)
        if text != self.text():
            self.setText(text)


class EntryPicker(QWidget):
    """One list of entries. sigEntries(list) reports an edit."""
    sigEntries = Signal(list)

    def __init__(self, kinds, place, tooltip="", parent=None):
        super().__init__(parent)
        self.kinds, self.place, self.entries, self.forms = kinds, place, [], {}
        self.button = ListButton(tooltip)
        self.menu = QMenu(self.button)
        self.actions = {}
        for name, (help_text, _) in kinds.kinds.items():
            a = self.menu.addAction(name)
            a.setCheckable(True)
            a.setToolTip(help_text)
            a.toggled.connect(lambda on, n=name: self._ticked(n, on))
            self.actions[name] = a
        self.menu.setToolTipsVisible(True)
        self.button.setMenu(self.menu)
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
        chosen = {self.kinds.canonical(e)[0] for e in self.entries}
        for name, a in self.actions.items():
            a.blockSignals(True)
            a.setChecked(name in chosen)
            a.blockSignals(False)
        self.button.set_full_text(", ".join(self.kinds.label(e) for e in self.entries) or "none")
        with_fields = [self.kinds.canonical(e) for e in self.entries
                       if self.kinds.kinds.get(self.kinds.canonical(e)[0], ("", ()))[1]]
        if [n for n, _ in with_fields] == list(self.forms):
            # the same kinds: their fields show the values (rebuilding them would take the
            # focus from the field the user went on to)
            for name, params in with_fields:
                self.forms[name].set_values(params)
            return
        for form in self.forms.values():
            drop_form(self.fields, form)
        self.forms = {}
        for i, e in enumerate(self.entries):
            name, params = self.kinds.canonical(e)
            if name not in self.kinds.kinds or not self.kinds.kinds[name][1]:
                continue
            form = ParamForm(self.kinds.kinds[name][1], params, place=f"{self.place}[{i}]",
                             check=self._check_for(name))
            # whose fields these are; a long name may wrap after its underscores
            caption = QLabel(self.kinds.label(name).replace("_", "_\u200b"))
            caption.setWordWrap(True)
            form.form.insertRow(0, caption)
            form.sigChanged.connect(lambda key, v, n=name: self._edited(n, key, v))
            self.fields.addWidget(form)
            self.forms[name] = form

    def _check_for(self, name):
        if self.kinds.check is None:
            return None
        return lambda p, value, where: self.kinds.check(p, value, where, name, self.entries)

    def _ticked(self, name, on):
        names = [self.kinds.canonical(e)[0] for e in self.entries]
        if on and name not in names:
            new = self.entries + [self.kinds.entry(name, {})]
        elif not on and name in names:
            new = [e for e in self.entries if self.kinds.canonical(e)[0] != name]
        else:
            return
        self.sigEntries.emit(new)

    def _edited(self, name, key, value):
        new = []
        for e in self.entries:
            n, params = self.kinds.canonical(e)
            new.append(self.kinds.entry(n, {**params, key: value}) if n == name else e)
        if new != self.entries:
            self.sigEntries.emit(new)
