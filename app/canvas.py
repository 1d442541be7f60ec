"""The node canvas. Items mirror the graph model: the scene subscribes to the model's events and
never edits the model itself; user gestures become undo commands on the document."""
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (QCompleter, QGraphicsItem, QGraphicsPathItem, QGraphicsScene,
                               QGraphicsSimpleTextItem, QGraphicsView, QLineEdit)

from layerloom.core.errors import GraphError
from layerloom.core.graph import fmt_shape

from .commands import AddNodeCmd, ConnectCmd, DisconnectCmd, MoveNodesCmd, RemoveNodesCmd

GRID = 20
NODE_W = 170
ROW_H = 20
HEADER_H = 26
CATEGORY_COLORS = {"Core": "#4c78a8", "Convolution": "#f58518", "Pooling": "#e45756",
                   "Normalization": "#72b7b2", "Regularization": "#54a24b", "Merging": "#b279a2",
                   "Reshaping": "#9d755d", "Recurrent": "#eeca3b"}


class PortItem(QGraphicsItem):
    R = 6

    def __init__(self, node, index, is_output, name):
        super().__init__(node)
        self.node, self.index, self.is_output, self.name = node, index, is_output, name
        self.setAcceptHoverEvents(True)
        self.setToolTip(f"{'output' if is_output else 'input'} {index}: {name}")

    def boundingRect(self):
        return QRectF(-self.R - 2, -self.R - 2, 2 * self.R + 4, 2 * self.R + 4)

    def paint(self, p, option, widget=None):
        p.setRenderHint(QPainter.Antialiasing)
        p.setPen(QPen(QColor("#222"), 1.2))
        p.setBrush(QColor("#ffd166") if self.is_output else QColor("#8ecae6"))
        p.drawEllipse(QPointF(0, 0), self.R, self.R)

    def mousePressEvent(self, event):
        if self.is_output and event.button() == Qt.LeftButton:
            self.scene().begin_wire(self, event.scenePos())
            event.accept()
        else:
            super().mousePressEvent(event)


class NodeItem(QGraphicsItem):
    def __init__(self, scene, node):
        super().__init__()
        self.gscene, self.node_id = scene, node.id
        self.setFlags(QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemIsSelectable)
        self.setAcceptHoverEvents(True)
        self.problem = None
        self.in_ports, self.out_ports = [], []
        self.summary = ""
        self.rebuild()

    @property
    def node(self):
        return self.gscene.doc.graph.nodes[self.node_id]

    def rebuild(self):
        for p in self.in_ports + self.out_ports:
            if self.scene() is not None:
                self.scene().removeItem(p)
            p.setParentItem(None)
        node = self.node
        layer = node.layer
        connected = len(self.gscene.doc.graph.in_edges(self.node_id))
        ins = layer.input_ports(connected + (1 if layer.max_inputs() is None else 0))
        outs = layer.output_names(node.params)
        self.in_ports = [PortItem(self, i, False, n) for i, n in enumerate(ins)]
        self.out_ports = [PortItem(self, i, True, n) for i, n in enumerate(outs)]
        rows = max(len(ins), len(outs), 1)
        self.h = HEADER_H + rows * ROW_H + 8
        for i, p in enumerate(self.in_ports):
            p.setPos(0, HEADER_H + ROW_H * i + ROW_H / 2)
        for i, p in enumerate(self.out_ports):
            p.setPos(NODE_W, HEADER_H + ROW_H * i + ROW_H / 2)
        self.prepareGeometryChange()
        self.update()

    def boundingRect(self):
        return QRectF(-8, -4, NODE_W + 16, self.h + 8)

    def paint(self, p, option, widget=None):
        p.setRenderHint(QPainter.Antialiasing)
        node = self.node
        color = QColor(CATEGORY_COLORS.get(node.layer.category, "#888"))
        body = QRectF(0, 0, NODE_W, self.h)
        border = QColor("#d62828") if self.problem else (
            QColor("#ffb703") if self.isSelected() else QColor("#333"))
        p.setPen(QPen(border, 3 if (self.problem or self.isSelected()) else 1.2))
        p.setBrush(QColor("#fbfbfb"))
        p.drawRoundedRect(body, 6, 6)
        head = QPainterPath()
        head.addRoundedRect(QRectF(0, 0, NODE_W, HEADER_H), 6, 6)
        p.fillPath(head, color)
        p.setPen(QColor("white"))
        f = QFont()
        f.setBold(True)
        p.setFont(f)
        p.drawText(QRectF(8, 0, NODE_W - 16, HEADER_H), Qt.AlignVCenter | Qt.AlignLeft,
                   node.type)
        f.setBold(False)
        f.setPointSizeF(f.pointSizeF() * 0.85)
        p.setFont(f)
        p.setPen(QColor("#222"))
        p.drawText(QRectF(8, HEADER_H, NODE_W - 16, ROW_H), Qt.AlignVCenter | Qt.AlignLeft,
                   node.id)
        p.setPen(QColor("#555"))
        p.drawText(QRectF(8, HEADER_H + ROW_H, NODE_W - 16, ROW_H), Qt.AlignVCenter | Qt.AlignLeft,
                   self.summary)
        if self.problem:
            p.setPen(QColor("#d62828"))
            p.drawText(QRectF(NODE_W - 22, 0, 20, HEADER_H), Qt.AlignCenter, "!")

    # No itemChange() override: every selection or geometry change would cross into Python.
    # Wires follow moved nodes from the scene's mouse handler and apply_positions() instead.

    def port_pos(self, is_output, index):
        ports = self.out_ports if is_output else self.in_ports
        if index < len(ports):
            return ports[index].scenePos()
        return self.scenePos() + QPointF(NODE_W if is_output else 0, HEADER_H + ROW_H / 2)


class EdgeItem(QGraphicsPathItem):
    def __init__(self, scene, edge):
        super().__init__()
        self.gscene, self.edge = scene, edge
        self.setFlags(QGraphicsItem.ItemIsSelectable)
        self.setZValue(-1)
        self.label = QGraphicsSimpleTextItem("", self)
        self.label.setBrush(QBrush(QColor("#1d3557")))
        f = QFont()
        f.setPointSizeF(7.5)
        self.label.setFont(f)
        self.ok = True
        self.update_path()

    def update_path(self):
        s = self.gscene.nodes.get(self.edge.src)
        d = self.gscene.nodes.get(self.edge.dst)
        if s is None or d is None:
            return
        a = s.port_pos(True, self.edge.src_port)
        b = d.port_pos(False, self.edge.dst_port)
        path = QPainterPath(a)
        dx = max(40.0, abs(b.x() - a.x()) / 2)
        path.cubicTo(a + QPointF(dx, 0), b - QPointF(dx, 0), b)
        self.setPath(path)
        mid = path.pointAtPercent(0.5)
        r = self.label.boundingRect()
        self.label.setPos(mid.x() - r.width() / 2, mid.y() - r.height() - 2)

    def boundingRect(self):
        # the curve's own extent (Qt's default is its control points', which for a wire drawn
        # back to an earlier column reach far past it and made Fit leave a wide empty margin)
        m = 2.5  # the widest pen (selected)
        return self.path().boundingRect().adjusted(-m, -m, m, m)

    def set_shape(self, shape):
        self.label.setText(fmt_shape(shape) if shape is not None else "?")
        self.ok = shape is not None
        self.update_path()

    def paint(self, p, option, widget=None):
        color = QColor("#ffb703") if self.isSelected() else (
            QColor("#555") if self.ok else QColor("#c0c0c0"))
        self.setPen(QPen(color, 2.5 if self.isSelected() else 1.8))
        super().paint(p, option, widget)


class GraphScene(QGraphicsScene):
    sigMessage = Signal(str)       # a refusal or a hint for the status bar / log
    sigSelectionNode = Signal(str)  # the single selected node id, or ""

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.nodes, self.edges = {}, {}
        self._wire = None
        self._press_positions = None
        self._needs_refresh = False
        self.setSceneRect(-5000, -5000, 10000, 10000)
        doc.sigChanged.connect(self._refresh_if_stale)
        g = doc.graph
        self._subscriptions = [(g.node_added, self._on_node_added),
                               (g.node_removed, self._on_node_removed),
                               (g.edge_added, self._on_edge_added),
                               (g.edge_removed, self._on_edge_removed),
                               (g.params_changed, self._on_params_changed)]
        for event, handler in self._subscriptions:
            event.connect(handler)
        for node in g.nodes.values():
            self._on_node_added(node)
        for e in g.edges:
            self._on_edge_added(e)
        self.selectionChanged.connect(self._selection_changed)
        self.refresh()

    # -- model events ------------------------------------------------------------------------
    def _on_node_added(self, node):
        item = NodeItem(self, node)
        pos = self.doc.positions().get(node.id)
        if pos is None:
            pos = (len(self.nodes) * 200 % 1200, len(self.nodes) // 6 * 140)
            self.doc.positions()[node.id] = list(pos)
        item.setPos(*pos)
        self.addItem(item)
        self.nodes[node.id] = item
        self._stale()

    def _on_node_removed(self, node):
        item = self.nodes.pop(node.id, None)
        if item is not None:
            self.removeItem(item)
        self._stale()

    def _on_edge_added(self, edge):
        item = EdgeItem(self, edge)
        self.addItem(item)
        self.edges[edge.key()] = item
        if edge.dst in self.nodes:
            self.nodes[edge.dst].rebuild()
        self._stale()

    def _on_edge_removed(self, edge):
        item = self.edges.pop(edge.key(), None)
        if item is not None:
            self.removeItem(item)
        if edge.dst in self.nodes:
            self.nodes[edge.dst].rebuild()
        self._stale()

    def detach(self):
        """Stop following the model (the window drops this scene or closes)."""
        for event, handler in self._subscriptions:
            event.disconnect(handler)
        self._subscriptions = []
        try:
            self.doc.sigChanged.disconnect(self._refresh_if_stale)
        except (RuntimeError, TypeError):
            pass

    def _on_params_changed(self, node, old):
        self._refresh_node(node.id)

    def _refresh_node(self, nid):
        if nid in self.nodes:
            self.nodes[nid].rebuild()
        self._stale()

    def _stale(self):
        """Shapes and problems are recomputed once per command (a paste of N nodes used to
        recompute them N times), when the undo stack reports it done; the zero-time timer
        covers model changes made outside a command."""
        if not self._needs_refresh:
            self._needs_refresh = True
            QTimer.singleShot(0, self._refresh_if_stale)

    def _refresh_if_stale(self):
        if self._needs_refresh:
            self.refresh()

    def refresh(self):
        """Shapes on wires, problems on nodes (tooltips), parameter counts: the graph's
        analysis, shown."""
        self._needs_refresh = False
        g = self.doc.graph
        a = g.analysis()
        for nid, item in self.nodes.items():
            item.problem = "\n".join(a.node_problems(nid)) or None
            node = g.nodes[nid]
            out = a.shapes.get(nid)
            summary = fmt_shape(out[0]) if out else "shape unknown"
            count = a.params.get(nid)
            if count and count.total:
                summary += f"  {count.total:,} params"
            item.summary = summary
            item.setToolTip(item.problem or f"{node.type} {nid}\n{node.layer.help}")
            item.update()
        for key, e in self.edges.items():
            s = a.shapes.get(e.edge.src)
            e.set_shape(s[e.edge.src_port] if s and e.edge.src_port < len(s) else None)

    # -- gestures ------------------------------------------------------------------------------
    def node_moved(self, item):
        for e in self.edges.values():
            if item.node_id in (e.edge.src, e.edge.dst):
                e.update_path()

    def apply_positions(self, positions):
        for nid, pos in positions.items():
            if nid in self.nodes:
                self.nodes[nid].setPos(*pos)
                self.node_moved(self.nodes[nid])

    def add_node(self, type_id, pos, params=None):
        x, y = round(pos[0] / GRID) * GRID, round(pos[1] / GRID) * GRID
        cmd = AddNodeCmd(self.doc, type_id, (x, y), params)
        self.doc.push(cmd)
        return cmd.node_id

    def connect_ports(self, src, src_port, dst, dst_port):
        try:
            self.doc.graph.check_connect(src, src_port, dst, dst_port)
        except GraphError as e:
            self.sigMessage.emit(f"Connection refused: {e.message}")
            return False
        self.doc.push(ConnectCmd(self.doc, src, src_port, dst, dst_port))
        return True

    def delete_selection(self):
        nodes = [i.node_id for i in self.selectedItems() if isinstance(i, NodeItem)]
        edges = [i.edge for i in self.selectedItems()
                 if isinstance(i, EdgeItem) and i.edge.src not in nodes and i.edge.dst not in nodes]
        if not nodes and not edges:
            return
        self.doc.undo.beginMacro("Delete")
        for e in edges:
            self.doc.push(DisconnectCmd(self.doc, e))
        if nodes:
            self.doc.push(RemoveNodesCmd(self.doc, nodes))
        self.doc.undo.endMacro()

    def begin_wire(self, port, pos):
        self._wire = (port, QGraphicsPathItem())
        self._wire[1].setPen(QPen(QColor("#219ebc"), 2, Qt.DashLine))
        self.addItem(self._wire[1])
        self._update_wire(pos)

    def _update_wire(self, pos):
        port, item = self._wire
        a = port.scenePos()
        path = QPainterPath(a)
        path.lineTo(pos)
        item.setPath(path)

    def mouseMoveEvent(self, event):
        if self._wire:
            self._update_wire(event.scenePos())
            return
        super().mouseMoveEvent(event)
        if self._press_positions:  # nodes being dragged: their wires follow
            for nid in self._press_positions:
                if nid in self.nodes:
                    self.node_moved(self.nodes[nid])

    def mousePressEvent(self, event):
        super().mousePressEvent(event)
        if not self._wire:
            self._press_positions = {i.node_id: (i.pos().x(), i.pos().y())
                                     for i in self.selectedItems() if isinstance(i, NodeItem)}

    def mouseReleaseEvent(self, event):
        if self._wire:
            port, item = self._wire
            self.removeItem(item)
            self._wire = None
            target = next((i for i in self.items(event.scenePos())
                           if isinstance(i, PortItem) and not i.is_output), None)
            if target is not None:
                self.connect_ports(port.node.node_id, port.index, target.node.node_id,
                                   target.index)
            elif not any(isinstance(i, PortItem) for i in self.items(event.scenePos())):
                self.sigMessage.emit("Drop the wire on an input port (blue) to connect.")
            return
        super().mouseReleaseEvent(event)
        self._finish_move()

    def _finish_move(self):
        before = self._press_positions or {}
        self._press_positions = None
        moves = {}
        for nid, old in before.items():
            item = self.nodes.get(nid)
            if item is None:
                continue
            x = round(item.pos().x() / GRID) * GRID
            y = round(item.pos().y() / GRID) * GRID
            if (x, y) != old:
                moves[nid] = (old, (x, y))
        if moves:
            self.doc.push(MoveNodesCmd(self.doc, moves, self.apply_positions))

    def _selection_changed(self):
        sel = [i for i in self.selectedItems() if isinstance(i, NodeItem)]
        self.sigSelectionNode.emit(sel[0].node_id if len(sel) == 1 else "")


class GraphView(QGraphicsView):
    sigDropLayer = Signal(str, QPointF)

    def __init__(self, scene, parent=None):
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.SmartViewportUpdate)
        self.setAcceptDrops(True)
        self.setBackgroundBrush(QColor("#eef1f5"))
        self._pan = None
        # after fit() the view stays fitted as it is resized (the docks settle after Open, the
        # user resizes the window) until the user zooms or scrolls
        self._fitted = False
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.actionTriggered.connect(self._leave_fit)

    def _leave_fit(self, *_):
        self._fitted = False

    def resizeEvent(self, event):
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    def drawBackground(self, p, rect):
        super().drawBackground(p, rect)
        if self.transform().m11() < 0.4:
            return
        p.setPen(QPen(QColor("#dde2e8"), 1))
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

    def focusNextPrevChild(self, forward):
        return False  # Tab opens the quick-add box instead of moving the focus

    def quick_add(self, at=None):
        """A search box at the cursor; Enter adds the chosen layer there (Escape cancels)."""
        from layerloom.core.registry import layer_types
        names = [l.type_id for l in layer_types()]
        pos = at if at is not None else self.mapFromGlobal(self.cursor().pos())
        if not self.viewport().rect().contains(pos):
            pos = self.viewport().rect().center()
        box = QLineEdit(self.viewport())
        box.setPlaceholderText("Add layer...")
        completer = QCompleter(names, box)
        completer.setCaseSensitivity(Qt.CaseInsensitive)
        completer.setFilterMode(Qt.MatchContains)
        box.setCompleter(completer)
        box.move(pos)
        box.resize(200, box.sizeHint().height())
        scene_pos = self.mapToScene(pos)

        def done():
            text = box.text().strip().lower()
            match = ([n for n in names if n.lower() == text]
                     or [n for n in names if text and n.lower().startswith(text)]
                     or [n for n in names if text and text in n.lower()])
            box.deleteLater()
            if match:
                self.sigDropLayer.emit(match[0], scene_pos)
        box.returnPressed.connect(done)
        box.editingFinished.connect(lambda: box.isVisible() and not box.text() and box.deleteLater())
        box.show()
        box.setFocus()
        self.quick_box = box
        return box

    def fit(self):
        """Fit the graph, but never so small that node text is unreadable nor larger than 1.2x:
        centred along each axis where it fits at that zoom, else showing its start (left,
        top)."""
        r = self.scene().itemsBoundingRect()
        if r.isEmpty():
            return
        self._fitted = True
        r = r.adjusted(-40, -40, 40, 40)
        self.fitInView(r, Qt.KeepAspectRatio)
        scale = self.transform().m11()
        if 0.6 <= scale <= 1.2:
            return
        self.resetTransform()
        s = min(max(scale, 0.6), 1.2)
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
