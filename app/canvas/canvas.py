"""The node canvas's scene. Its items (app/canvas/canvas_items.py) mirror the graph model: the scene
subscribes to the model's events and never edits the model itself; user gestures become undo
commands on the document. The view, app/canvas/canvas_view.py."""
import contextlib

from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFontMetrics, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QGraphicsScene

from layerloom.core.errors import GraphError
from layerloom.core.graph import fmt_count, fmt_dims, fmt_shape
from layerloom.core.layout import flow_of

from layerloom.app.look import theme
from . import wire_route
from .canvas_items import GRID, NODE_W, EdgeItem, NodeItem, PortItem
from layerloom.app.editing.document import LOCKED
from layerloom.app.editing.commands import (AddNodeCmd, ConnectCmd, DisconnectCmd, MoveNodesCmd,
                                            RemoveNodesCmd)

class _Buckets:
    """Rectangles in a grid of square cells, to find those a rectangle meets without testing
    every one."""
    CELL = 200

    def __init__(self):
        self.cells = {}

    def _keys(self, r):
        c = self.CELL
        for i in range(int(r.left() // c), int(r.right() // c) + 1):
            for j in range(int(r.top() // c), int(r.bottom() // c) + 1):
                yield i, j

    def add(self, r):
        for k in self._keys(r):
            self.cells.setdefault(k, []).append(r)

    def hits(self, r):
        return any(r.intersects(o) for k in self._keys(r) for o in self.cells.get(k, ()))


class GraphScene(QGraphicsScene):
    sigMessage = Signal(str)       # a refusal or a hint for the status bar / log
    sigSelectionNode = Signal(str)  # the single selected node id, or ""
    sigOpenNode = Signal(str)      # a node double-clicked (a block opens)

    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
        self.nodes, self.edges = {}, {}
        self._wires_of = {}  # {node id: its wires' items}, made again after a wire changes
        # what changed on the canvas since the last refresh: the nodes whose ports may have
        # moved, and the places where a node came, went or changed size (wires there are
        # routed again; the others keep their paths)
        self._dirty_nodes, self._dirty_rects = set(), []
        self._building = False
        self._wire = None
        self._press_positions = None
        self._dragged = False  # the pressed nodes moved with the mouse
        self._needs_refresh = False
        self.data_problem = None  # (node id, message): the data does not fit this node
        self._rects = None  # node rectangles while every wire is routed (_fixed_rects)
        self._flipped = None  # (those rectangles, transposed)
        self.flow = flow_of(doc.project.ui)  # "right" or "down": where ports sit, wires run
        self.setSceneRect(-5000, -5000, 10000, 10000)
        # no BSP index: with it, nodes removed by an undone paste of 200 after a layout were
        # painted once more (their graph node gone) and then crashed the editor; a list of a
        # few thousand items is quick to walk, and a moved item costs no re-indexing
        self.setItemIndexMethod(QGraphicsScene.NoIndex)
        doc.sigChanged.connect(self._refresh_if_stale)
        doc.sigLocked.connect(self._locked)
        g = doc.graph
        self._subscriptions = [(g.node_added, self._on_node_added),
                               (g.node_removed, self._on_node_removed),
                               (g.edge_added, self._on_edge_added),
                               (g.edge_removed, self._on_edge_removed),
                               (g.params_changed, self._on_params_changed),
                               (g.trainable_changed, self._on_trainable_changed),
                               (g.shares_changed, self._on_trainable_changed)]
        for event, handler in self._subscriptions:
            event.connect(handler)
        self._building = True  # the nodes are made with their wires there already
        for node in g.nodes.values():
            self._on_node_added(node)
        with self._fixed_rects():  # (taken once, not once per wire: issue 30, item 4)
            for e in g.edges:
                self._on_edge_added(e)
        self._building = False
        self._dirty_nodes, self._dirty_rects = set(), []  # every wire is routed as new
        self.selectionChanged.connect(self._selection_changed)
        self.refresh()

    # -- model events ------------------------------------------------------------------------
    def _on_node_added(self, node):
        item = NodeItem(self, node)
        # drawn once into a pixmap and copied from it after (until it changes or the zoom
        # does): dragging among 500 nodes painted each of them in Python on every frame
        item.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        pos = self.doc.positions().get(node.id)
        if pos is None:
            pos = (len(self.nodes) * 200 % 1200, len(self.nodes) // 6 * 140)
            self.doc.positions()[node.id] = list(pos)
        item.setPos(*pos)
        item.setFlag(QGraphicsItem.ItemIsMovable, not self.doc.locked)
        self.addItem(item)
        self.nodes[node.id] = item
        self._dirty_rects.append(self.rect_of(item))
        self._stale()

    def _on_node_removed(self, node):
        item = self.nodes.pop(node.id, None)
        if item is not None:
            self._dirty_rects.append(self.rect_of(item))
            self.removeItem(item)
        self._stale()

    def _on_edge_added(self, edge):
        item = EdgeItem(self, edge)
        self.addItem(item)
        self.edges[edge.key()] = item
        self._wires_of.clear()
        if edge.dst in self.nodes and not self._building:
            self._rebuild(edge.dst)
        self._stale()

    def _on_edge_removed(self, edge):
        item = self.edges.pop(edge.key(), None)
        self._wires_of.clear()
        if item is not None:
            self.removeItem(item)
        if edge.dst in self.nodes:
            self._rebuild(edge.dst)
        self._stale()

    def set_data_problem(self, problem):
        """(node id or None, message) from the Data tab's check, or None when the data fits."""
        if problem != self.data_problem:
            self.data_problem = problem
            self.refresh()

    def _locked(self, locked):
        """While training runs nothing on the canvas moves (selection still works)."""
        for item in self.nodes.values():
            item.setFlag(QGraphicsItem.ItemIsMovable, not locked)

    def editable(self):
        """False (and the reason said once in the status bar) while training runs."""
        if self.doc.locked:
            self.sigMessage.emit(f"Not changed: {LOCKED}")
            return False
        return True

    def detach(self):
        """Stop following the model (the window drops this scene or closes)."""
        for event, handler in self._subscriptions:
            event.disconnect(handler)
        self._subscriptions = []
        for signal, slot in ((self.doc.sigChanged, self._refresh_if_stale),
                             (self.doc.sigLocked, self._locked)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass

    def _on_params_changed(self, node, old):
        self._refresh_node(node.id)

    def _on_trainable_changed(self, node):  # the lock mark, the parameter count
        self._refresh_node(node.id)

    def _refresh_node(self, nid):
        if nid in self.nodes:
            self._rebuild(nid)
        self._stale()

    def _rebuild(self, nid):
        """A node's ports and size again: its wires and those by it are routed at the next
        refresh."""
        item = self.nodes[nid]
        before = self.rect_of(item)
        item.rebuild()
        self._dirty_nodes.add(nid)
        self._dirty_rects += [before, self.rect_of(item)]

    @staticmethod
    def rect_of(item):
        p = item.pos()
        return (p.x(), p.y(), p.x() + NODE_W, p.y() + item.h)

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
        fm = QFontMetrics(NodeItem.small_font())  # the nodes' bottom row
        for nid, item in self.nodes.items():
            probs = a.node_problems(nid) + ([self.data_problem[1]] if self.data_problem
                                            and self.data_problem[0] == nid else [])
            item.problem = "\n".join(probs) or None
            node = g.nodes[nid]
            out = a.shapes.get(nid)
            # the short form on every face and wire (fmt_dims), Keras' in the tooltips
            summary = fmt_dims(out[0]) if out else "shape unknown"
            count = a.params.get(nid)
            if count and count.total:
                whole = summary + f"  {count.total:,} params"
                # the count whole where it fits, else abbreviated, never cut ("784,999,99...")
                summary = whole if fm.horizontalAdvance(whole) <= NODE_W - 16 else \
                    summary + f"  {fmt_count(count.total)} params"
            item.summary = summary
            item.setToolTip(item.problem or f"{node.type} {nid}" + (
                "" if node.trainable else " (frozen: its weights are not trained)")
                + (f"\noutput {fmt_shape(out[0])}" if out else "")
                + (f", {count.total:,} parameters" if count and count.total else "")
                + f"\n{node.layer.help}")
            item.update()
        # a wire is routed again only when its label changes, it touches a node that changed
        # or it passes where a node came or went (every wire was routed on every edit: 0.5 s
        # an edit at 500 nodes)
        again = self._near(self._dirty_nodes, self._dirty_rects)
        self._dirty_nodes, self._dirty_rects = set(), []
        with self._fixed_rects():
            for key, e in self.edges.items():
                s = a.shapes.get(e.edge.src)
                shape = s[e.edge.src_port] if s and e.edge.src_port < len(s) else None
                if not e.full_text or (tuple(shape) if shape is not None else None) != e.dims:
                    e.set_shape(shape)
                elif key in again:
                    e.update_path()
            self.separate_labels()

    def _near(self, nids, rects):
        """{edge key: item} of the wires of nodes `nids` and of those whose path reaches into
        one of `rects` ((left, top, right, bottom) each)."""
        out = {e.edge.key(): e for nid in nids for e in self.wires_of(nid)}
        if rects:
            boxes = _Buckets()
            for r in rects:
                boxes.add(QRectF(r[0], r[1], r[2] - r[0], r[3] - r[1]))
            for key, e in self.edges.items():
                # (grown: a straight wire's box has no height, and meets nothing)
                if key not in out and boxes.hits(e.path().boundingRect().adjusted(-12, -12,
                                                                                  12, 12)):
                    out[key] = e
        return out

    # -- gestures ------------------------------------------------------------------------------
    def wires_of(self, nid):
        """The items of the wires into and out of node `nid`."""
        if not self._wires_of:
            for e in self.edges.values():
                self._wires_of.setdefault(e.edge.src, []).append(e)
                if e.edge.dst != e.edge.src:
                    self._wires_of.setdefault(e.edge.dst, []).append(e)
        return self._wires_of.get(nid, ())

    def node_moved(self, item):
        for e in self.wires_of(item.node_id):
            e.update_path()

    def apply_positions(self, positions):
        """Nodes moved to {node id: (x, y)}; their wires and those where they were or are now
        routed again (all of them when most nodes move)."""
        moved, rects = set(), []
        for nid, pos in positions.items():
            if nid in self.nodes:
                item = self.nodes[nid]
                rects.append(self.rect_of(item))
                item.setPos(*pos)
                rects.append(self.rect_of(item))
                moved.add(nid)
        if 2 * len(moved) > len(self.nodes):
            self.reroute()
            return
        with self._fixed_rects():
            for e in self._near(moved, rects).values():
                e.update_path()
            self.separate_labels()

    def set_flow(self, flow):
        """Draw the graph flowing "right" or "down" (the document's ui.flow): ports move to
        the sides or to the top and bottom, and every wire is routed again."""
        if flow != self.flow:
            self.flow = flow
            for item in self.nodes.values():
                item.rebuild()
            self.reroute()

    def restyle(self):
        """After a theme change: items read their colours when they paint, wire labels keep
        theirs in a brush."""
        for e in self.edges.values():
            e.label.setBrush(QBrush(theme.color("label")))
        for item in self.nodes.values():  # their cached pictures drawn again
            item.update()
        self.update()

    def reroute(self):
        """Every wire's path again: a moved node may now stand in the way of wires that do not
        touch it (while it is dragged, only its own wires follow it)."""
        with self._fixed_rects():
            for e in self.edges.values():
                e.update_path()
            self.separate_labels()

    @contextlib.contextmanager
    def _fixed_rects(self):
        """Nodes stay put while every wire is routed: their rectangles are taken once."""
        self._rects = self.node_rects()
        try:
            yield
        finally:
            self._rects = None

    def separate_labels(self):
        """A wire label on another one or on a node moves along its wire to a free place
        (two wires routed through one gap put theirs on each other)."""
        nodes, placed = _Buckets(), _Buckets()  # (every label against every node and label
        for r in self.node_rects().values():     # took 1 s at 300 nodes)
            nodes.add(QRectF(r[0], r[1], r[2] - r[0], r[3] - r[1]))
        for e in self.edges.values():
            box = e.label.mapRectToScene(e.label.boundingRect())

            def free(b):
                return not placed.hits(b) and not nodes.hits(b)
            if not free(box):
                for spot in e.label_spots():
                    b = QRectF(spot, box.size())
                    if free(b):
                        e.label.setPos(spot)
                        box = b
                        break
            placed.add(box)

    def flipped_rects(self):
        """node_rects() with x and y swapped (a top-to-bottom graph is routed transposed),
        taken once with them while every wire is routed."""
        rects = self.node_rects()
        if self._flipped is None or self._flipped[0] is not rects:
            self._flipped = (rects, {n: (r[1], r[0], r[3], r[2]) for n, r in rects.items()})
        return self._flipped[1]

    def node_rects(self):
        """{node id: (left, top, right, bottom)} in scene coordinates, for the wires' routes."""
        if self._rects is not None:
            return self._rects
        out = {}
        for nid, item in self.nodes.items():
            p = item.pos()
            out[nid] = (p.x(), p.y(), p.x() + NODE_W, p.y() + item.h)
        return out

    def add_node(self, type_id, pos, params=None):
        x, y = round(pos[0] / GRID) * GRID, round(pos[1] / GRID) * GRID
        cmd = AddNodeCmd(self.doc, type_id, (x, y), params)
        self.doc.push(cmd)
        return cmd.node_id

    def connect_ports(self, src, src_port, dst, dst_port):
        if not self.editable():
            return False
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
        if not nodes and not edges or not self.editable():
            return
        self.doc.undo.beginMacro("Delete")
        for e in edges:
            self.doc.push(DisconnectCmd(self.doc, e))
        if nodes:
            self.doc.push(RemoveNodesCmd(self.doc, nodes))
        self.doc.undo.endMacro()

    def begin_wire(self, port, pos):
        if not self.editable():
            return
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
        if self._press_positions:  # nodes being dragged: their wires follow (quickly routed;
            self._dragged = True  # in full when the drag ends)
            with self._fixed_rects(), wire_route.quick():
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
        dragged, self._dragged = self._dragged, False
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
        elif before and dragged:  # back where it was: its wires routed in full
            with self._fixed_rects():
                for nid in before:
                    if nid in self.nodes:
                        self.node_moved(self.nodes[nid])

    def _selection_changed(self):
        sel = [i for i in self.selectedItems() if isinstance(i, NodeItem)]
        self.sigSelectionNode.emit(sel[0].node_id if len(sel) == 1 else "")
