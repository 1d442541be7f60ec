"""Form widgets for the parameters that are numbers in a small structure rather than one number:
a window's `padding` (Keras' words in an editable box, or amounts typed: 1, "1, 2" or
[[1, 1], [2, 2]]), an augmentation's factor (a number or "lower, upper"), a list of axes, one
number per channel, an optional number, a pair, margins. Typed as people write them (no JSON
quotes, "none" for null); what a field cannot read goes to the parameter as typed, whose own
check says what it expected. Each widget has set_value(value) (paramform._show uses it) and
reports through commit(value)."""
import json
import re

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLineEdit

NONE_WORDS = ("", "none", "null", "default")


def _number_text(v):
    """A number as short as it reads back exactly: 0.2, 1e-07, 0.00392156862745098."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    short = f"{v:.6g}"
    return short if float(short) == v else repr(v)


def _token(t):
    """'3' -> 3, '0.5' -> 0.5, '1/255' -> 0.00392156862745098 (as Keras users write a scale)."""
    if re.fullmatch(r"[-+]?\d+", t):
        return int(t)
    if "/" in t:
        top, bottom = t.split("/", 1)
        return float(top) / float(bottom)
    return float(t)


def numbers_from_text(text):
    """'0.2' -> 0.2, '-0.1, 0.3' (or '(-0.1, 0.3)', '0.1x0.3', '1 2') -> [-0.1, 0.3],
    '1/255' -> 0.0039..., '[[1, 1], [2, 2]]' (or with parentheses) -> nested lists, '' or 'none'
    -> None; text that is none of these comes back as it is."""
    raw = text.strip()
    if raw.lower() in NONE_WORDS:
        return None
    for candidate in (raw, raw.replace("(", "[").replace(")", "]")):
        try:
            v = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(v, (int, float, list)) and not isinstance(v, bool):
            return v
    inner = raw[1:-1] if raw[:1] + raw[-1:] in ("()", "[]") else raw
    parts = [t for t in re.split(r"[,\s]+|(?<=\d)x(?=[-+.\d])", inner) if t]
    try:
        nums = [_token(t) for t in parts]
    except (ValueError, ZeroDivisionError):
        return text
    if not nums:
        return text
    return nums[0] if len(nums) == 1 else nums


def numbers_text(value):
    """How a field shows a value: '' for None, a number, or numbers with commas; nested lists
    as brackets."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        if any(isinstance(e, (list, tuple)) for e in value):
            return "[" + ", ".join("[" + numbers_text(e) + "]" if isinstance(e, (list, tuple))
                                   else numbers_text(e) for e in value) + "]"
        return ", ".join(_number_text(e) for e in value)
    return _number_text(value)


def amounts_text(value):
    """Padding or margins as the shortest spelling that means them: (1, 1) -> '1',
    ((1, 1), (2, 2)) -> '1, 2', ((1, 1), (1, 1)) -> '1', uneven ones in full."""
    if isinstance(value, str) or value is None:
        return "" if value is None else value
    v = [list(e) if isinstance(e, (list, tuple)) else e for e in value]
    if all(isinstance(e, list) and len(e) == 2 and e[0] == e[1] for e in v):
        v = [e[0] for e in v]  # each axis even: [rows, cols]
    if isinstance(v, list) and v and all(e == v[0] for e in v) and not isinstance(v[0], list):
        return _number_text(v[0])
    return numbers_text(v)


def int_from_text(text, optional=False):
    """What an integer field's text means: '64' -> 64, '1e3' -> 1000.0 (Keras users write
    sizes so; the parameter takes an integral number), '' -> None where the parameter may be
    unset; anything else comes back as typed, for the parameter's check to refuse with its
    reason (-5, 1e12, 99999999999 and 'abc' are never changed into something else)."""
    raw = text.strip()
    if optional and raw.lower() in NONE_WORDS:
        return None
    if re.fullmatch(r"[-+]?\d+", raw):
        return int(raw)
    try:
        return float(raw)
    except ValueError:
        return raw


class IntField(QLineEdit):
    """An integer typed as text: what is typed goes to the parameter unchanged (a spin box
    drops a minus sign, cuts 99999999999 to its width and ignores letters, silently), so the
    parameter's check refuses a bad value with the reason and the value stays as it was. Up
    and Down step by one. setValue/value as a spin box's: value() is the last value shown or
    the number typed, when it is an integer within the bounds."""

    def __init__(self, value=None, minimum=None, maximum=None, optional=False, commit=None):
        super().__init__()
        self.minimum, self.maximum, self.optional = minimum, maximum, optional
        self._value = value
        if optional:
            self.setPlaceholderText("default")
        self.set_value(value)
        if commit is not None:
            self.editingFinished.connect(lambda: commit(self.read()))

    def read(self):
        return int_from_text(self.text(), self.optional)

    def _fits(self, v):
        return (isinstance(v, int) and (self.minimum is None or v >= self.minimum)
                and (self.maximum is None or v <= self.maximum))

    def set_value(self, value):
        self._value = value
        self.setText("" if value is None else str(value))
        self.setCursorPosition(0)

    setValue = set_value

    def value(self):
        v = self.read()
        return v if self._fits(v) else self._value

    def _step(self, step):
        v = self.read()
        if isinstance(v, int) and self._fits(v + step):
            self.setText(str(v + step))
            return True
        return False

    def keyPressEvent(self, event):
        step = {Qt.Key_Up: 1, Qt.Key_Down: -1}.get(event.key())
        if not (step and self._step(step)):
            super().keyPressEvent(event)

    def wheelEvent(self, event):
        """A focused field steps with the wheel, as a spin box; an unfocused one leaves the
        wheel to the form around it (app/window/wheel_guard.py)."""
        dy = event.angleDelta().y()
        if self.hasFocus() and dy:
            self._step(1 if dy > 0 else -1)
            event.accept()
        else:
            event.ignore()


# per kind: how its field shows a value, and its hint (what may be typed)
TEXTS = {
    "factor": (numbers_text, lambda p: "0.2, or lower, upper: -0.1, 0.3"
               + ("; empty: the height's" if getattr(p, "optional", False) else "")),
    "per_channel": (numbers_text, lambda p: "0.5, or one per channel: 0.5, 1, 2"),
    "axes": (numbers_text, lambda p: "none, or axes: 1, 2"),
    "optional_float": (numbers_text, lambda p: "none, or a number"),
    "pair": (numbers_text, lambda p: f"3, or {p.words}: " + ", ".join(["3"] * p.count)
             + ("; empty: default" if p.default is None else "")),
    "margins": (amounts_text, lambda p: f"1, or {p.spelling.replace(' or ', ', or ')}"),
}


class NumbersField(QLineEdit):
    """A line edit for one of TEXTS' kinds: shown as people type them, read back the same."""

    def __init__(self, p, value, commit):
        super().__init__()
        self.to_text, hint = TEXTS[p.kind]
        self.setPlaceholderText(hint(p))
        self.set_value(value)
        self.editingFinished.connect(lambda: commit(numbers_from_text(self.text())))

    def set_value(self, value):
        self.setText(self.to_text(value))
        self.setCursorPosition(0)


class PaddingBox(QComboBox):
    """A window's padding: Keras' words (the declaration's choices) in the list, explicit
    amounts typed into the same box (1, "1, 2", "[[1, 1], [2, 2]]")."""

    def __init__(self, p, value, commit):
        super().__init__()
        self.words = list(p.choices)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.NoInsert)
        self.addItems(self.words)
        self.lineEdit().setPlaceholderText(" / ".join(self.words) + " or amounts: 1, 2")
        # Qt reports a typed word twice (the field finished, then the box "activated" by the
        # item it matches): a text is sent once until it changes or a value is shown
        self.sent = None
        self.set_value(value)

        def typed():
            text = self.currentText().strip()
            if text != self.sent:
                self.sent = text
                commit(text if text in self.words else numbers_from_text(text))
        self.currentTextChanged.connect(lambda _: setattr(self, "sent", None))
        self.activated.connect(lambda _: typed())
        self.lineEdit().editingFinished.connect(typed)

    def set_value(self, value):
        self.sent = None
        self.setEditText(amounts_text(value))
        self.lineEdit().setCursorPosition(0)


WIDGETS = {"padding": PaddingBox, **{kind: NumbersField for kind in TEXTS}}
