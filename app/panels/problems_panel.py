"""The Problems tab: the project's problems (what `layerloom --run` would refuse), each leading
to its node when clicked, and under the list the standard fixes of the selected problem (or
of the first that has any) as buttons (engine/core/fixes.py: each checked on a copy of the
graph before it is offered). A fix is applied by the window as one undo step (sigFix)."""
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
        """found: [(line, node id or None)], as the window lists them."""
        current = self.list.currentRow()
        self.list.blockSignals(True)
        self.list.clear()
        look = len(graph.nodes) <= MAX_NODES
        for k, (line, nid) in enumerate(found):
            item = QListWidgetItem(line)
            item.setData(Qt.UserRole, nid)
            found_fixes = []
            if look and k < MAX_PROBLEMS:
                try:
                    found_fixes = fixes.fixes_for(graph, nid, line, positions, losses,
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
        if 0 <= current < self.list.count():
            self.list.setCurrentRow(current)
        self.list.blockSignals(False)
        self._show_fixes()

    def fixes_shown(self):
        return [b.fix for b in self.fix_buttons]

    def _show_fixes(self):
        """The buttons of the selected problem's fixes, else of the first problem with any."""
        for b in self.fix_buttons:
            self.bar.removeWidget(b)
            b.hide()  # at once: deleteLater leaves it painted until the event loop runs
            b.deleteLater()
        self.fix_buttons = []
        item = self.list.currentItem()
        if item is None or not item.data(FIXES):
            item = next((self.list.item(i) for i in range(self.list.count())
                         if self.list.item(i).data(FIXES)), None)
        shown = item.data(FIXES) if item is not None else []
        if shown:
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


def push_fix(doc, fix, after=None):
    """Apply a fix to the document as one undo step ("Fix: Insert Flatten before 'dense'").
    A node the fix adds goes between the nodes it joins, a little below them."""
    from layerloom.core.graph import Edge
    from layerloom.app.canvas.canvas_items import NODE_W
    from layerloom.app.editing.commands import (AddNodeCmd, ConnectCmd, DisconnectCmd,
                                                RemoveNodesCmd, SetParamsCmd, SetSetupCmd)
    from layerloom.app.forms.setup_rows import loss_entry
    pos = doc.positions()
    g = doc.graph
    doc.undo.beginMacro(f"Fix: {fix.label}")
    try:
        for k, step in enumerate(fix.steps):
            a = step.args
            if step.op == "add":
                ends = [s.args for s in fix.steps[k:] if s.op == "connect" and a[0] in
                        (s.args[0], s.args[2])]
                near = [pos.get(e[0] if e[2] == a[0] else e[2]) for e in ends]
                near = [p for p in near if p is not None] or [pos.get(fix.near) or (0, 0)]
                x = round(sum(p[0] for p in near) / len(near) / 20) * 20
                y = round(sum(p[1] for p in near) / len(near) / 20) * 20 + 100
                while any(abs(p[0] - x) < NODE_W + 20 and abs(p[1] - y) < 80
                          for p in pos.values()) and y < 1e5:
                    y += 100  # below the nodes it joins, on free canvas
                doc.push(AddNodeCmd(doc, a[1], (x, y), a[2], node_id=a[0]))
            elif step.op == "remove":
                doc.push(RemoveNodesCmd(doc, [a[0]]))
            elif step.op == "connect":
                doc.push(ConnectCmd(doc, *a))
            elif step.op == "disconnect":
                doc.push(DisconnectCmd(doc, Edge(*a)))
            elif step.op == "set":
                doc.push(SetParamsCmd(doc, a[0], a[1]))
            elif step.op == "loss":
                losses = {k: dict(v) for k, v in doc.project.training.get("loss", {}).items()}
                losses[a[0]] = loss_entry(a[1])
                doc.push(SetSetupCmd(doc, "training", "loss", losses))
        if after is not None:
            after()
    finally:
        doc.undo.endMacro()
    return g
