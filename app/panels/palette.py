"""The layer palette: every registered layer by category, with a search box. Drag a layer onto
the canvas, or double-click it to add it at the centre of the view."""
from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QColor, QDrag, QIcon, QPixmap
from PySide6.QtWidgets import (QLabel, QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout,
                               QWidget)

from layerloom.core.registry import layer_types

from layerloom.app.canvas.canvas_items import CATEGORY_COLORS

MIME = "application/x-layerloom-layer"


class _SearchBox(QLineEdit):
    """The palette's search: a click that brings the focus selects what it holds, so the
    next layer is typed over the last entry (a second click places the cursor as usual)."""
    _clicked_in = False

    def focusInEvent(self, event):
        super().focusInEvent(event)
        self._clicked_in = event.reason() == Qt.MouseFocusReason

    def mouseReleaseEvent(self, event):
        super().mouseReleaseEvent(event)
        if self._clicked_in:
            self._clicked_in = False
            self.selectAll()


def _swatch(category):
    pix = QPixmap(12, 12)
    pix.fill(QColor(CATEGORY_COLORS.get(category, "#888")))  # as NodeItem.paint's default
    return QIcon(pix)


class _Tree(QTreeWidget):
    def startDrag(self, actions):
        item = self.currentItem()
        if item is None or item.data(0, Qt.UserRole) is None:
            return
        mime = QMimeData()
        mime.setData(MIME, item.data(0, Qt.UserRole).encode())
        drag = QDrag(self)
        drag.setMimeData(mime)
        drag.exec(Qt.CopyAction)


class Palette(QWidget):
    sigActivated = Signal(str, object)  # a layer type to add, and parameters typed or None
    sigTyped = Signal(object)  # the layers typed: [(type, parameters), ...] (one, or a chain)
    sigMessage = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.search = _SearchBox(placeholderText="Search layers (Enter adds)")
        self.hint = ("Type to filter the layers; Enter adds the first one shown, with the "
                     "parameters typed after its name in Keras' order or as name=value: "
                     "dense 128 relu, embedding 10000 32, conv2d 32 3 padding=same, "
                     "dropout 0.3")
        self.search.setToolTip(self.hint)
        self.search.setClearButtonEnabled(True)
        self.tree = _Tree()
        self.tree.setHeaderHidden(True)
        self.tree.setDragEnabled(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        self.nothing = QLabel()  # what the search found nothing for, where the list was
        self.nothing.setWordWrap(True)
        self.nothing.hide()
        lay.addWidget(self.search)
        lay.addWidget(self.nothing)
        lay.addWidget(self.tree)
        self.items = {}
        cats = {}
        for layer in layer_types():
            cat = cats.get(layer.category)
            if cat is None:
                cat = cats[layer.category] = QTreeWidgetItem(self.tree, [layer.category])
                cat.setFlags(Qt.ItemIsEnabled)
                cat.setIcon(0, _swatch(layer.category))  # the colour of its nodes' headers
            item = QTreeWidgetItem(cat, [layer.type_id])
            item.setData(0, Qt.UserRole, layer.type_id)
            item.setToolTip(0, layer.help)
            self.items[layer.type_id] = item
        # block types (core/blocks.py): the project's and the library's, set by the window
        self.blocks_item = QTreeWidgetItem(["Blocks"])  # first: the user's own pieces
        self.tree.insertTopLevelItem(0, self.blocks_item)
        self.blocks_item.setFlags(Qt.ItemIsEnabled)
        self.blocks_item.setIcon(0, _swatch("Blocks"))
        self.block_types = []
        self.extra_types = []  # the block types' declarations, for typed entries
        self.set_blocks([])
        self.tree.expandAll()
        self.search.textChanged.connect(self.filter)
        self.tree.itemDoubleClicked.connect(self._activated)
        self.search.returnPressed.connect(self._enter)

    def set_blocks(self, entries):
        """The Blocks category: entries [(name, help, where)], where says whose it is ("this
        project", "library", "bundled"). With none, a line says how one is made."""
        for name in self.block_types:
            self.items.pop(name, None)
        self.blocks_item.takeChildren()
        self.block_types = []
        for name, help, where in entries:
            item = QTreeWidgetItem(self.blocks_item, [name])
            item.setData(0, Qt.UserRole, name)
            item.setToolTip(0, f"{help} ({where})")
            self.items[name] = item
            self.block_types.append(name)
        if not entries:
            hint = QTreeWidgetItem(self.blocks_item, ["Select layers, then Ctrl+B"])
            hint.setFlags(Qt.NoItemFlags)
            hint.setToolTip(0, "Edit > Make Block: the selected layers become one reusable "
                               "node")
        self.blocks_item.setExpanded(True)
        self.filter(self.search.text())

    def filter(self, text):
        """Shows the layers whose name holds the first word typed (the words after it are
        parameters: "dense 128 relu"); where no name does, those whose help does. ("lstm" is
        the LSTM, not also the Bidirectional whose help names it; "pixel" finds Rescaling.)
        In a chain ("dense 64 relu; drop"), the layer being typed: the last."""
        from layerloom.core.quickadd import split_chain
        parts = split_chain(text)
        text = (parts[-1].split() if parts else [""])[0].lower()
        named = {t for t, item in self.items.items() if text in item.text(0).lower()}
        shown = named or {t for t, item in self.items.items()
                          if text in item.toolTip(0).lower()}
        for i in range(self.tree.topLevelItemCount()):
            cat = self.tree.topLevelItem(i)
            visible = 0
            for j in range(cat.childCount()):
                item = cat.child(j)
                show = item.data(0, Qt.UserRole) in shown or (
                    item.data(0, Qt.UserRole) is None and not text)
                item.setHidden(not show)
                visible += show
            cat.setHidden(visible == 0)
        self.nothing.setText(f"No layer is called or described as {text!r}." if not shown
                             else "")
        self.nothing.setVisible(not shown)
        self.search.setToolTip(self.hint)  # a refusal said is gone once the text changes

    def visible_types(self):
        return [t for t, item in self.items.items()
                if not item.isHidden() and not item.parent().isHidden()]

    def _activated(self, item, column=0):
        t = item.data(0, Qt.UserRole)
        if t:
            self.sigActivated.emit(t, None)

    def _enter(self):
        """Enter adds the layer the first word names (as the Tab box finds it), with the
        parameters typed after its name in Keras' order or as name=value
        (core/quickadd.py); several separated by ";" are added as a chain."""
        from layerloom.core.errors import LayerloomError
        from layerloom.core.registry import layers_from_text
        if not self.visible_types():
            self.sigMessage.emit(f"Not added: {self.nothing.text()}")
            self.search.selectAll()
            return
        try:  # several separated by ";": a chain ("dense 64 relu; dense 10 softmax")
            chain = layers_from_text(self.search.text(), self.extra_types)
        except LayerloomError as e:  # said, and the text selected to be mended or typed over
            self.sigMessage.emit(f"Not added: {e.message}")
            self.search.setToolTip(f"Not added: {e.message}")
            self.search.selectAll()
            return
        self.sigTyped.emit(chain)
        self.search.selectAll()  # the next layer is typed over it, without clearing it first
