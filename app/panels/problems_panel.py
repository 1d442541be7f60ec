"""The Problems tab: the project's problems (what `layerloom --run` would refuse), each leading
to its node when clicked, and under the list the standard fixes of the selected problem (with
none selected, of the first that has any) as buttons (engine/core/fixes.py: each checked on a
copy of the graph before it is offered). A fix is applied by the window as one undo step
(sigFix): each of its steps by its kind through STEP_COMMANDS, the one table from a step kind
to the undo command that makes it; a kind not there is refused before anything changes."""
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QPushButton, QSizePolicy, \
    QVBoxLayout, QWidget

from layerloom.core import fixes

# fixes are looked for while the graph is small enough to copy and check on every edit
MAX_NODES, MAX_PROBLEMS = 150, 8
FIXES = Qt.UserRole + 1


class ProblemsPanel(QWidget):
    sigFix = Signal(object)  # a fixes.Fix

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setWordWrap(True)  # long messages wrap instead of scrolling sideways
        self.list.currentItemChanged.connect(lambda *_: self._show_fixes())
        self.fix_label = QLabel()
        self.fix_label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.fix_buttons = []
        # one button a row: a row of them widened the dock and squeezed the ones beside it
        self.bar = QVBoxLayout()
        self.bar.setContentsMargins(4, 0, 4, 2)
        self.bar.setSpacing(2)
        self.bar.addWidget(self.fix_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.list, 1)
        lay.addLayout(self.bar)
        self._show_fixes()

    def set_problems(self, found, graph, positions=None, losses=(), metrics=None):
        """found: [(line, node id or None, problem or None)], as the window lists them; the
        problem (a LayerloomError with its kind and fields) is what its fixes are found
        from, the line only shown."""
        item = self.list.currentItem()
        current = (item.text(), item.data(Qt.UserRole)) if item is not None else None
        self.list.blockSignals(True)
        self.list.clear()
        look = len(graph.nodes) <= MAX_NODES
        for k, (line, nid, *problem) in enumerate(found):
            item = QListWidgetItem(line)
            item.setData(Qt.UserRole, nid)
            found_fixes = []
            if look and k < MAX_PROBLEMS and problem and problem[0] is not None:
                try:
                    found_fixes = fixes.fixes_for(graph, problem[0], positions, losses,
                                                  metrics)
                except Exception:  # a fix finder's fault never hides the problem itself
                    found_fixes = []
            item.setData(FIXES, found_fixes)
            tips = []
            if nid:
                tips.append(f"Click to select {nid!r} on the canvas")
            if found_fixes:
                tips.append("Fixes: " + "; ".join(f.label for f in found_fixes))
            item.setToolTip("\n".join(tips))
            self.list.addItem(item)
        # the same problem stays selected when the list is redone (its row may have moved)
        same = [i for i in range(self.list.count()) if current is not None and
                (self.list.item(i).text(), self.list.item(i).data(Qt.UserRole)) == current]
        if same:
            self.list.setCurrentRow(same[0])
        self.list.blockSignals(False)
        self._show_fixes()

    def fixes_shown(self):
        return [b.fix for b in self.fix_buttons]

    def _show_fixes(self):
        """The buttons of the selected problem's fixes (none, and a line saying so, where it
        has none: never another problem's); with none selected, of the first with any."""
        for b in self.fix_buttons:
            self.bar.removeWidget(b)
            b.hide()  # at once: deleteLater leaves it painted until the event loop runs
            b.deleteLater()
        self.fix_buttons = []
        item = self.list.currentItem()
        chosen = item is not None
        if not chosen:
            item = next((self.list.item(i) for i in range(self.list.count())
                         if self.list.item(i).data(FIXES)), None)
        shown = item.data(FIXES) if item is not None else []
        if chosen and not shown:
            self.fix_label.setText("No standard fix for this problem.")
        elif shown:
            text = item.text()
            nid = item.data(Qt.UserRole)
            self.fix_label.setText(f"Fix {nid!r}:" if nid else
                                   "Fix: " + (text[:60] + "..." if len(text) > 60 else text))
        else:
            self.fix_label.setText("")
        for k, fix in enumerate(shown[:4]):
            b = QPushButton(fix.label)
            b.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)  # never widens the dock
            b.setStyleSheet("text-align: left; padding: 2px 8px;")
            b.fix = fix
            b.setToolTip("One undo step (Ctrl+Z takes it back)")
            b.clicked.connect(lambda _=False, f=fix: self.sigFix.emit(f))
            self.bar.insertWidget(1 + k, b)
            self.fix_buttons.append(b)


def _place_new_node(doc, step, fix):
    """Where a node the fix inserts goes: between the nodes it joins, a little below them,
    on free canvas."""
    from layerloom.app.canvas.canvas_view import free_place
    pos = doc.positions()
    near = [p for p in (pos.get(step.src), pos.get(step.dst)) if p is not None] \
        or [pos.get(fix.near) or (0, 0)]
    x = round(sum(p[0] for p in near) / len(near) / 20) * 20
    y = round(sum(p[1] for p in near) / len(near) / 20) * 20 + 100
    return free_place(list(pos.values()), x, y)  # below the nodes it joins, on free canvas


def _insert(doc, step, fix):
    from layerloom.app.editing.commands import AddNodeCmd, ConnectCmd, DisconnectCmd
    from layerloom.core.graph import Edge
    doc.push(DisconnectCmd(doc, Edge(step.src, step.src_port, step.dst, step.dst_port)))
    doc.push(AddNodeCmd(doc, step.type, _place_new_node(doc, step, fix), dict(step.params),
                        node_id=step.node))
    doc.push(ConnectCmd(doc, step.src, step.src_port, step.node, 0))
    doc.push(ConnectCmd(doc, step.node, 0, step.dst, step.dst_port))


def _connect(doc, step, fix):
    from layerloom.app.editing.commands import ConnectCmd
    doc.push(ConnectCmd(doc, step.src, step.src_port, step.dst, step.dst_port))


def _disconnect(doc, step, fix):
    from layerloom.app.editing.commands import DisconnectCmd
    from layerloom.core.graph import Edge
    doc.push(DisconnectCmd(doc, Edge(step.src, step.src_port, step.dst, step.dst_port)))


def _remove(doc, step, fix):
    from layerloom.app.editing.commands import RemoveNodesCmd
    doc.push(RemoveNodesCmd(doc, [step.node]))


def _set_param(doc, step, fix):
    from layerloom.app.editing.commands import SetParamsCmd
    doc.push(SetParamsCmd(doc, step.node, {step.param: step.value}))


def _set_loss(doc, step, fix):
    from layerloom.app.editing.commands import SetSetupCmd
    from layerloom.app.forms.setup_rows import loss_entry
    losses = {k: dict(v) for k, v in doc.project.training.get("loss", {}).items()}
    losses[step.output] = loss_entry(step.loss)
    doc.push(SetSetupCmd(doc, "training", "loss", losses))


# step kind (engine/core/fixes.py STEPS) -> how the editor makes it: undo commands pushed on
# the document
STEP_COMMANDS = {
    "insert": _insert,
    "connect": _connect,
    "disconnect": _disconnect,
    "remove": _remove,
    "set_param": _set_param,
    "set_loss": _set_loss,
}
REWIRING = frozenset({"insert", "remove", "disconnect"})  # the layout is redone after these


def check_steps(fix):
    """Refuse (fixes.UnknownStep, a LayerloomError) a fix with a step of a kind the editor has
    no command for, before anything is changed."""
    for step in fix.steps:
        if step.kind not in STEP_COMMANDS:
            raise fixes.UnknownStep(step.kind, STEP_COMMANDS)


def push_fix(doc, fix, after=None):
    """Apply a fix to the document as one undo step ("Fix: Insert Flatten before 'dense'"),
    each step through STEP_COMMANDS. A node the fix inserts goes between the nodes it joins,
    a little below them."""
    check_steps(fix)
    g = doc.graph
    doc.undo.beginMacro(f"Fix: {fix.label}")
    try:
        for step in fix.steps:
            STEP_COMMANDS[step.kind](doc, step, fix)
        if after is not None:
            after()
    finally:
        doc.undo.endMacro()
    return g
