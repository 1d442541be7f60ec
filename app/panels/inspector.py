"""The inspector: the selected node's parameters with widgets generated from the layer
declaration (a ParamForm, app/forms/paramform.py), its help, output shape, parameter
count and problems. Every accepted change is one undoable SetParamsCmd; the Frozen box (the
node's `trainable` flag, fine-tuning) one SetTrainableCmd; "Shares weights with" (the node's
`shares`: another node's weights instead of its own) one SetSharesCmd."""
from PySide6.QtCore import QEvent, QTimer, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QLabel, QLineEdit,
                               QVBoxLayout, QWidget)

from layerloom.core.graph import fmt_shape

from layerloom.core.errors import GraphError

from layerloom.app.editing.commands import (RenameNodeCmd, SetParamsCmd, SetSharesCmd,
                                            SetTrainableCmd)
from layerloom.app.forms.paramform import ParamForm
from layerloom.app.look import theme


def lock_icon(color):
    """The canvas's padlock (a frozen node's mark) as a 16 px icon in `color`."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QIcon, QPainter, QPixmap
    from layerloom.app.canvas.canvas_items import paint_lock
    pm = QPixmap(16, 16)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    paint_lock(p, QPointF(8, 8.5), color)
    p.end()
    return QIcon(pm)


class Inspector(QWidget):
    sigRenamed = Signal(str)  # the node's new name (its id): the canvas selects it again

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.node_id = ""
        self.lay = QVBoxLayout(self)
        self.title = QLabel("Select a node to see its parameters.")
        self.title.setWordWrap(True)
        self.help = QLabel()
        self.help.setWordWrap(True)
        theme.subtext(self.help)
        self.form = None  # the node's ParamForm
        self.form_slot = QVBoxLayout()
        self.form_slot.setContentsMargins(0, 0, 0, 0)
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c1121f;")
        self.name = QLineEdit()
        self.name.setToolTip("The layer's name (Keras' name=): in the project file, the "
                             "exports and the weights file; Enter renames it")
        self.name.editingFinished.connect(self._rename)
        self.name.installEventFilter(self)
        self.name_row = QWidget()
        row = QHBoxLayout(self.name_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("name"))
        row.addWidget(self.name, 1)
        self.frozen = QCheckBox("Frozen")
        self.frozen.setIcon(lock_icon(self.palette().text().color()))
        self.frozen.setToolTip("Freeze the layer (Keras' trainable=False): training leaves its "
                               "weights as they are; a BatchNormalization runs in inference "
                               "mode. Gradients still reach the layers before it.")
        self.frozen.clicked.connect(self._set_frozen)
        row.addWidget(self.frozen)
        self.name_row.hide()
        self.shares = QComboBox()  # none, or each node of the same type and parameters
        self.shares.setToolTip("Use another layer's weights instead of its own (Keras' layer "
                               "called twice, a siamese network): the same type and "
                               "parameters; trained once, with both uses' gradients")
        self.shares.activated.connect(self._set_shares)
        self.shares_row = QWidget()
        srow = QHBoxLayout(self.shares_row)
        srow.setContentsMargins(0, 0, 0, 0)
        srow.addWidget(QLabel("Shares weights with"))
        srow.addWidget(self.shares, 1)
        self.shares_row.hide()
        for w in (self.title, self.name_row, self.shares_row, self.help):
            self.lay.addWidget(w)
        self.lay.addLayout(self.form_slot)
        self.lay.addWidget(self.info)
        self.lay.addWidget(self.error)
        self.lay.addStretch(1)
        self.widgets = {}
        doc.sigChanged.connect(self.refresh_info)

    def show_node(self, node_id):
        self.node_id = node_id
        if self.form is not None:  # it reports nothing more (a focused field may finish)
            self.form.blockSignals(True)
            self.form.hide()
            self.form_slot.removeWidget(self.form)
            self.form.deleteLater()
            self.form = None
        self.widgets = {}
        self.error.setText("")
        if not node_id or node_id not in self.doc.graph.nodes:
            self.title.setText("Select a node to see its parameters.")
            self.name_row.hide()
            self.shares_row.hide()
            self.help.setText("")
            self.info.setText("")
            self.setMinimumHeight(0)
            return
        node = self.doc.graph.nodes[node_id]
        self.title.setText(f"<b>{node.type}</b>")
        self.name.setText(node_id)
        self.frozen.setChecked(not node.trainable)
        self.name_row.show()
        self.help.setText(node.layer.help)
        # a refused value's message under its field (a long form's end may be scrolled away)
        # and, with its place, in the node's problems line
        self.form = ParamForm(node.layer.params, node.params, place=node_id)
        self.form.sigChanged.connect(self.commit)
        self.form.sigError.connect(self._refused)
        self.form_slot.addWidget(self.form)
        self.widgets = self.form.widgets
        for w in self.widgets.values():  # Ctrl+Z in a field: see eventFilter
            for f in [w] + w.findChildren(QWidget):
                f.installEventFilter(self)
        self.refresh_info()
        # inside a scroll area: keep rows at their natural height and let the area scroll;
        # again once Qt has laid the new form out (right after a longer form, the new one's
        # hint was still short: a Dense after a Conv2D got its fields squeezed to 13 px)
        self._fit_height()
        QTimer.singleShot(0, self, self._fit_height)

    def eventFilter(self, obj, event):
        """Ctrl+Z (Ctrl+Shift+Z) in a field: the field's own text undo while it holds typing
        not yet committed, else the window's Undo (Redo) of the document (a focused field
        took the keys and did nothing: issue 31, item 7)."""
        if event.type() == QEvent.ShortcutOverride and (
                event.matches(QKeySequence.Undo) or event.matches(QKeySequence.Redo)):
            if not _typing(obj):
                event.ignore()  # not taken by the field: the window's shortcut goes
                return True
        return False

    def _saved(self, name):
        """Field `name`'s typing committed: Ctrl+Z in it undoes the document from now on."""
        w = self.widgets.get(name) if name is not None else self.name
        edit = w if isinstance(w, QLineEdit) else w.findChild(QLineEdit) if w else None
        if edit is not None:
            edit.setModified(False)

    def _fit_height(self):
        if self.form is not None:
            self.setMinimumHeight(self.lay.sizeHint().height())

    def commit(self, name, value):
        """A value the form accepted (validated against the declaration) for param `name`."""
        node = self.doc.graph.nodes.get(self.node_id)
        if node is None:
            return
        self.error.setText("")
        self._saved(name)
        if value == node.params[name]:
            return
        try:
            self.doc.push(SetParamsCmd(self.doc, self.node_id, {name: value}))
        except RuntimeError as e:
            self.error.setText(str(e))
        # a field may have grown (a wrapped layer of another type brings its own form)
        QTimer.singleShot(0, self, self._fit_height)

    def _rename(self):
        from layerloom.project.rename import problem
        new = self.name.text().strip()
        old = self.node_id
        self._saved(None)
        if not old or old not in self.doc.graph.nodes or new == old:
            return
        why = problem(self.doc.graph, old, new)
        if why is None:
            try:
                self.doc.push(RenameNodeCmd(self.doc, old, new))
            except RuntimeError as e:  # locked while training runs
                why = str(e)
        if why:
            self.error.setText(f"Not renamed: {why}")
            self.name.setText(old)
            return
        self.sigRenamed.emit(new)

    def _set_frozen(self, frozen):
        node = self.doc.graph.nodes.get(self.node_id)
        if node is None:
            return
        try:
            self.doc.push(SetTrainableCmd(self.doc, {self.node_id: not frozen}))
        except RuntimeError as e:  # locked while training runs
            self.error.setText(str(e))
        self.frozen.setChecked(not node.trainable)

    def _set_shares(self, index):
        node = self.doc.graph.nodes.get(self.node_id)
        if node is None:
            return
        other = self.shares.itemData(index)
        if other != node.shares:
            try:
                self.doc.push(SetSharesCmd(self.doc, self.node_id, other))
            except (RuntimeError, GraphError) as e:  # locked while training runs; refused
                self.error.setText(str(getattr(e, "message", e)))
        self._fill_shares()

    def _fill_shares(self):
        """The combo as the graph is now: shown for a node with weights (or sharing some)."""
        g = self.doc.graph
        node = g.nodes.get(self.node_id)
        a = g.analysis()
        has = node is not None and not node.layer.is_input and (
            node.shares is not None or (self.node_id in a.params
                                        and a.params[self.node_id].total > 0))
        self.shares_row.setVisible(bool(has))
        if not has:
            return
        choices = g.shareable(self.node_id)
        if node.shares is not None and node.shares not in choices:
            choices.insert(0, node.shares)  # kept as the file has it (its problem is shown)
        self.shares.blockSignals(True)
        self.shares.clear()
        self.shares.addItem("none (its own weights)", None)
        for other in choices:
            self.shares.addItem(other, other)
        self.shares.setCurrentIndex(self.shares.findData(node.shares) if node.shares else 0)
        self.shares.blockSignals(False)
        self.shares.setEnabled(self.shares.count() > 1)

    def _refused(self, name, message):
        if self.node_id in self.doc.graph.nodes:
            self.error.setText(message)
            self._fit_height()  # room for the line under the field

    def refresh_info(self):
        nid = self.node_id
        if not nid or nid not in self.doc.graph.nodes:
            return
        if self.form is not None:
            # the values as the graph has them now: a fix, an undo or a paste may have set
            # them (the third trial saw a fixed Input's shape field still say (2,)); the field
            # being typed in is left alone
            node = self.doc.graph.nodes[nid]
            self.form.set_values(node.params, keep=[n for n, w in self.widgets.items()
                                                    if w.hasFocus() and _typing(w)])
        a = self.doc.graph.analysis()
        trainable = self.doc.graph.nodes[nid].trainable
        self.frozen.setChecked(not trainable)  # as an undo or a menu left it
        shapes = a.shapes.get(nid)
        text = "Output: " + (", ".join(fmt_shape(s) for s in shapes) if shapes else "unknown")
        self._fill_shares()
        shares = self.doc.graph.nodes[nid].shares
        if nid in a.params:
            text += f"<br>Parameters: {a.params[nid].total:,}"
            if shares is not None:
                text += f" (uses {shares}'s weights)"
            if not trainable and a.params[nid].total:
                text += " (frozen: not trained)"
        self.info.setText(text)
        # the node's problems as the graph is now: an edit elsewhere (a wire) may have fixed them
        self.error.setText("<br>".join(a.node_problems(nid)))


def _typing(widget):
    """Whether a field (a line edit, or a box holding one) has typing not yet committed."""
    edit = widget if isinstance(widget, QLineEdit) else widget.findChild(QLineEdit)
    return edit is not None and edit.isModified()
