"""The canvas's view: zoom, pan, fit, drops from the palette and the keyboard (delete, search to
add a layer). It shows a GraphScene (app/canvas/canvas.py)."""
from PySide6.QtCore import QEvent, QLineF, QPointF, Qt, Signal
from PySide6.QtGui import QPainter, QPen
from PySide6.QtWidgets import QCompleter, QGraphicsView, QLineEdit

from layerloom.app.look import theme
from .canvas_items import GRID, NODE_W


def free_place(taken, x, y, across=False):
    """(x, y), or the first place below it (right of it: across) clear of every node whose
    top-left is in `taken`: a new node never hides another."""
    while any(abs(px - x) < NODE_W + 20 and abs(py - y) < 90 for px, py in taken):
        if across:
            x += NODE_W + 60
        else:
            y += 100
    return x, y

class _QuickBox(QLineEdit):
    """The Tab box: gone on Escape or when the user clicks elsewhere (its completer's list
    taking the focus does not count)."""

    def keyPressEvent(self, event):
        if event.key() == Qt.Key_Escape:
            self.deleteLater()
            return
        super().keyPressEvent(event)

    def focusOutEvent(self, event):
        super().focusOutEvent(event)
        if event.reason() != Qt.PopupFocusReason:
            self.deleteLater()


class GraphView(QGraphicsView):
    sigDropLayer = Signal(str, QPointF)
    # the Tab box: the layers typed, [(type, parameters), ...] (one, or a chain), the first's place
    sigQuickAdd = Signal(object, QPointF)
    sigMessage = Signal(str)
    sigContextMenu = Signal(object, object)  # viewport point, global point

    def __init__(self, scene, parent=None):
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.SmartViewportUpdate)
        self.setAcceptDrops(True)
        self.setBackgroundBrush(theme.color("canvas"))
        self._pan = None
        # after fit() the view stays fitted as it is resized (the docks settle after Open, the
        # user resizes the window) until the user zooms or scrolls
        self._fitted, self._whole = False, False
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.actionTriggered.connect(self._leave_fit)
        from .minimap import Minimap
        self.minimap = Minimap(self)

    def _leave_fit(self, *_):
        self._fitted = False

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self.minimap.schedule()
        if self._fitted:
            self.fit()

    def drawBackground(self, p, rect):
        super().drawBackground(p, rect)
        if self.transform().m11() < 0.4:
            return
        p.setPen(QPen(theme.color("grid"), 1))
        left, top = int(rect.left()) - int(rect.left()) % GRID, int(rect.top()) - int(rect.top()) % GRID
        lines = [QLineF(x, rect.top(), x, rect.bottom()) for x in range(left, int(rect.right()), GRID)]
        lines += [QLineF(rect.left(), y, rect.right(), y) for y in range(top, int(rect.bottom()), GRID)]
        p.drawLines(lines)

    def wheelEvent(self, event):
        factor = 1.15 if event.angleDelta().y() > 0 else 1 / 1.15
        scale = self.transform().m11() * factor
        if 0.1 < scale < 4:
            self.scale(factor, factor)
            self._fitted = False
            self.minimap.schedule()

    def mousePressEvent(self, event):
        if event.button() == Qt.MiddleButton:
            self._pan = event.position()
            self._fitted = False
            self.setCursor(Qt.ClosedHandCursor)
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._pan is not None:
            d = event.position() - self._pan
            self._pan = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._pan is not None and event.button() == Qt.MiddleButton:
            self._pan = None
            self.setCursor(Qt.ArrowCursor)
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event):
        if event.key() in (Qt.Key_Delete, Qt.Key_Backspace):
            self.scene().delete_selection()
            return
        if event.key() == Qt.Key_Tab:
            self.quick_add()
            return
        super().keyPressEvent(event)

    def changeEvent(self, event):
        super().changeEvent(event)
        if event.type() == QEvent.PaletteChange:  # the system switched light/dark
            self.restyle()

    def restyle(self):
        """The canvas, its items and the minimap in the theme's colours as they are now."""
        self.setBackgroundBrush(theme.color("canvas"))
        scene = self.scene()
        if hasattr(scene, "restyle"):
            scene.restyle()
        self.minimap.refresh()

    def contextMenuEvent(self, event):
        self.sigContextMenu.emit(event.pos(), event.globalPos())
        event.accept()

    def focusNextPrevChild(self, forward):
        return False  # Tab opens the quick-add box instead of moving the focus

    def quick_add(self, at=None):
        """A search box at the cursor; Enter adds the chosen layer there (below, where a node
        is there already), with the parameters typed after its name in Keras' order or as
        name=value ("embedding 10000 32", "conv2d 16 3x3 relu padding=same"; core/quickadd.py);
        several separated by ";" are added as a chain ("input 28 28; flatten; dense 10");
        Escape cancels."""
        from layerloom.core.errors import LayerloomError
        from layerloom.core.registry import layers_from_text, layer_types
        extra = getattr(self, "extra_types", ())  # block types (the window's refresh_blocks)
        names = [l.type_id for l in extra] + [l.type_id for l in layer_types()]
        pos = at if at is not None else self.mapFromGlobal(self.cursor().pos())
        if not self.viewport().rect().contains(pos):
            pos = self.viewport().rect().center()
        box = _QuickBox(self.viewport())
        box.setPlaceholderText("Add: dense 64 relu; dense 10 softmax")
        completer = QCompleter(names, box)
        completer.setCaseSensitivity(Qt.CaseInsensitive)
        completer.setFilterMode(Qt.MatchContains)
        box.setCompleter(completer)
        box.resize(260, box.sizeHint().height())
        vp = self.viewport().rect()  # wholly inside the canvas, even at its right/bottom edge
        box.move(max(0, min(pos.x(), vp.width() - box.width() - 4)),
                 max(0, min(pos.y(), vp.height() - box.height() - 4)))
        scene_pos = self.mapToScene(pos)

        def done():
            text = box.text()
            if not text.split():
                box.deleteLater()
                return
            try:  # Keras' order and name=value: "embedding 10000 32", "conv2d 16 3 same";
                chain = layers_from_text(text, extra)  # several: "dense 64 relu; dense 10"
            except LayerloomError as e:  # the box stays, its text selected to be mended or
                self.sigMessage.emit(f"Not added: {e.message}")  # typed over (Esc closes)
                box.setToolTip(f"Not added: {e.message}")
                box.setFocus()
                box.selectAll()
                return
            box.hide()  # at once: deleteLater leaves it painted until the event loop runs
            box.deleteLater()
            taken = [(n.pos().x(), n.pos().y()) for n in getattr(self.scene(), "nodes",
                                                                   {}).values()]
            self.sigQuickAdd.emit(chain, QPointF(*free_place(taken, scene_pos.x(),
                                                             scene_pos.y())))
        box.returnPressed.connect(done)
        box.show()
        box.setFocus()
        self.quick_box = box
        return box

    def actual_size(self):
        """View > Actual Size: 1:1, the minimap shown if the graph no longer fits."""
        self.resetTransform()
        self._fitted = False
        self.minimap.schedule()

    def fit(self, whole=None):
        """Fit the graph, never larger than 1.2x. whole=True (View > Fit to View): all of it
        at any size (as a project opens); whole=False: never so small that node text is
        unreadable (0.6x), centred along each axis where it fits at that zoom, else showing
        its start (left, top). None: as the last fit (refits on resize)."""
        self._whole = self._whole if whole is None else whole
        self.minimap.schedule()
        r = self.scene().itemsBoundingRect()
        if r.isEmpty():
            return
        self._fitted = True
        r = r.adjusted(-40, -40, 40, 40)
        scene = self.scene()
        if not scene.sceneRect().contains(r):  # a graph past the canvas' area: room to scroll
            scene.setSceneRect(scene.sceneRect().united(r.adjusted(-2000, -2000, 2000, 2000)))
        self.fitInView(r, Qt.KeepAspectRatio)
        scale = self.transform().m11()
        floor = 0.1 if self._whole else 0.6
        if floor <= scale <= 1.2:
            return
        self.resetTransform()
        s = min(max(scale, floor), 1.2)
        self.scale(s, s)
        view = self.mapToScene(self.viewport().rect()).boundingRect()
        x = r.center().x() if r.width() <= view.width() else r.left() + view.width() / 2
        y = r.center().y() if r.height() <= view.height() else r.top() + view.height() / 2
        self.centerOn(x, y)

    def dragEnterEvent(self, event):
        if event.mimeData().hasFormat("application/x-layerloom-layer"):
            event.acceptProposedAction()

    def dragMoveEvent(self, event):
        if event.mimeData().hasFormat("application/x-layerloom-layer"):
            event.acceptProposedAction()

    def dropEvent(self, event):
        data = event.mimeData().data("application/x-layerloom-layer")
        type_id = bytes(data).decode()
        self.sigDropLayer.emit(type_id, self.mapToScene(event.position().toPoint()))
        event.acceptProposedAction()
