"""The canvas's items: a node (header, ports, its output shape and parameter count, its problem),
a port, and a wire that shows the tensor shape it carries. They draw what the scene tells them
(app/canvas/canvas.py); a press on a port starts a wire."""
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QGraphicsSimpleTextItem

from layerloom.core.graph import fmt_dims, fmt_shape

from layerloom.app.look import theme
from . import wire_route

GRID = 20
NODE_W = 170
ROW_H = 20
HEADER_H = 26
LEGIBLE = 0.35  # the zoom below which a node's text is not drawn (it would be 3 px high)
CATEGORY_COLORS = {"Core": "#4c78a8", "Convolution": "#f58518", "Pooling": "#e45756",
                   "Normalization": "#72b7b2", "Regularization": "#54a24b", "Merging": "#b279a2",
                   "Reshaping": "#9d755d", "Recurrent": "#eeca3b", "Preprocessing": "#ff9da6",
                   "Activation": "#bab0ac", "Attention": "#8c6d31", "Augmentation": "#d67195",
                   "Blocks": "#3d5a80", "Primitives": "#5f7c8a"}


def rounded_path(points, radius=8.0):
    """A path through axis-parallel points with its corners rounded."""
    path = QPainterPath(QPointF(*points[0]))
    for i in range(1, len(points) - 1):
        (px, py), (cx, cy), (nx, ny) = points[i - 1], points[i], points[i + 1]
        r = min(radius, (abs(cx - px) + abs(cy - py)) / 2, (abs(nx - cx) + abs(ny - cy)) / 2)

        def toward(x, y, d):
            n = abs(x - cx) + abs(y - cy) or 1.0
            return QPointF(cx + (x - cx) * d / n, cy + (y - cy) * d / n)
        path.lineTo(toward(px, py, r))
        path.quadTo(QPointF(cx, cy), toward(nx, ny, r))
    path.lineTo(QPointF(*points[-1]))
    return path


def paint_lock(p, centre, color="white"):
    """A padlock about 12 px wide centred on `centre`: the mark of a frozen node."""
    x, y = centre.x(), centre.y()
    p.save()
    p.setPen(QPen(QColor(color), 1.8))
    p.setBrush(Qt.NoBrush)
    p.drawArc(QRectF(x - 4, y - 8, 8, 9), 0, 180 * 16)  # the shackle
    p.drawLine(QPointF(x - 4, y - 3.5), QPointF(x - 4, y - 1))
    p.drawLine(QPointF(x + 4, y - 3.5), QPointF(x + 4, y - 1))
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(color))
    p.drawRoundedRect(QRectF(x - 6, y - 1, 12, 9), 1.5, 1.5)  # the body
    p.restore()


class PortItem(QGraphicsItem):
    R = 6

    def __init__(self, node, index, is_output, name, optional=False):
        super().__init__(node)
        self.node, self.index, self.is_output, self.name = node, index, is_output, name
        self.optional = optional  # an input the layer works without (MHA's key, a mask)
        self.setAcceptHoverEvents(True)
        self.setToolTip(f"{'output' if is_output else 'input'} {index}: {name}"
                        + (" (optional)" if optional else ""))

    def boundingRect(self):
        return QRectF(-self.R - 2, -self.R - 2, 2 * self.R + 4, 2 * self.R + 4)

    def paint(self, p, option, widget=None):
        if option is not None and option.levelOfDetailFromTransform(p.worldTransform()) < LEGIBLE:
            return  # a dot of a pixel or two: the graph is seen whole
        p.setRenderHint(QPainter.Antialiasing)
        p.setPen(QPen(theme.color("port_pen"), 1.2, Qt.DashLine if self.optional else
                      Qt.SolidLine))
        fill = QColor("#ffd166") if self.is_output else QColor("#8ecae6")
        if self.optional:
            fill.setAlpha(110)
        p.setBrush(fill)
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
        fixed = layer.max_inputs() is not None  # a merge's next port is not "optional"
        self.in_ports = [PortItem(self, i, False, n, fixed and i >= layer.min_inputs())
                         for i, n in enumerate(ins)]
        self.out_ports = [PortItem(self, i, True, n) for i, n in enumerate(outs)]
        # the names of a side's ports where it has several that differ in what they take or
        # give (query/value/key, y/scores, forward/backward); a merge's x0, x1... go unnamed
        fm = QFontMetrics(self.label_font())
        self.in_labels = ins if len(ins) > 1 and layer.max_inputs() is not None else []
        self.out_labels = outs if len(outs) > 1 else []
        self.label_ws = [[fm.horizontalAdvance(n) for n in names]
                         for names in (self.in_labels, self.out_labels)]
        # the header's text, made here (on a parameter change) rather than in every paint
        self.title = f"{node.type} {layer.headline_text(node.params)}".strip()
        if self.gscene.flow == "down":  # inputs along the top, outputs along the bottom
            self.h = HEADER_H + 2 * ROW_H + 8
            for ports, y in ((self.in_ports, 0), (self.out_ports, self.h)):
                for i, p in enumerate(ports):
                    p.setPos(NODE_W * (i + 1) / (len(ports) + 1), y)
        else:  # inputs down the left side, outputs down the right, a row each
            # (two rows at least: the name and the shape with the parameter count)
            rows = max(len(ins), len(outs), 2)
            self.h = HEADER_H + rows * ROW_H + 8
            for i, p in enumerate(self.in_ports):
                p.setPos(0, HEADER_H + ROW_H * i + ROW_H / 2)
            for i, p in enumerate(self.out_ports):
                p.setPos(NODE_W, HEADER_H + ROW_H * i + ROW_H / 2)
        self.prepareGeometryChange()
        self.update()

    def mouseDoubleClickEvent(self, event):
        self.gscene.sigOpenNode.emit(self.node_id)
        super().mouseDoubleClickEvent(event)

    def boundingRect(self):
        if self.gscene.flow == "down":  # port names outside, above and below
            return QRectF(-8, -4 - ROW_H, NODE_W + 16, self.h + 8 + 2 * ROW_H)
        return QRectF(-8, -4, NODE_W + 16, self.h + 8)

    def paint(self, p, option, widget=None):
        p.setRenderHint(QPainter.Antialiasing)
        node = self.node
        color = QColor(CATEGORY_COLORS.get(node.layer.category, "#888"))
        body = QRectF(0, 0, NODE_W, self.h)
        border = QColor("#d62828") if self.problem else (
            QColor("#ffb703") if self.isSelected() else theme.color("border"))
        if node.layer.category == "Blocks":  # a block: a card with another behind it
            p.setPen(QPen(color, 1.5))
            p.setBrush(theme.color("node"))
            p.drawRoundedRect(body.translated(5, 5), 6, 6)
        p.setPen(QPen(border, 3 if (self.problem or self.isSelected()) else 1.2))
        p.setBrush(theme.color("node"))
        p.drawRoundedRect(body, 6, 6)
        head = QPainterPath()
        head.addRoundedRect(QRectF(0, 0, NODE_W, HEADER_H), 6, 6)
        p.fillPath(head, color)
        if option is not None and option.levelOfDetailFromTransform(p.worldTransform()) < LEGIBLE:
            return  # text too small to read (a large graph seen whole): the boxes only
        p.setPen(QColor("white"))
        f = QFont()
        f.setBold(True)
        p.setFont(f)
        frozen = not node.trainable
        room = NODE_W - 16 - (22 if self.problem else 0) - (18 if frozen else 0)
        p.drawText(QRectF(8, 0, room, HEADER_H), Qt.AlignVCenter | Qt.AlignLeft,
                   QFontMetrics(f).elidedText(self.title, Qt.ElideRight, room))
        if self.problem:
            p.setPen(QColor("#d62828"))
            p.drawText(QRectF(NODE_W - 22, 0, 20, HEADER_H), Qt.AlignCenter, "!")
        if frozen:
            paint_lock(p, QPointF(NODE_W - (22 if self.problem else 0) - 14, HEADER_H / 2))
        f = self.small_font()
        p.setFont(f)
        p.setPen(theme.color("text"))
        fm = QFontMetrics(f)
        for row, (text, elide) in enumerate(((node.id, Qt.ElideMiddle),
                                             (self.summary, Qt.ElideRight))):
            left, right = (8 + self._label_room(i, row) for i in (0, 1))
            room = NODE_W - left - right
            p.drawText(QRectF(left, HEADER_H + ROW_H * row, room, ROW_H),
                       Qt.AlignVCenter | Qt.AlignLeft, fm.elidedText(text, elide, room))
            p.setPen(theme.color("subtext"))
        self._paint_port_names(p)

    def _label_room(self, side, row):
        """The width a port's name takes from text row `row` (side 0: inputs, 1: outputs):
        flowing right, the names are inside the node beside their ports."""
        ws = self.label_ws[side]
        return ws[row] + 8 if self.gscene.flow != "down" and row < len(ws) else 0

    def _paint_port_names(self, p):
        """Each named port's name: beside it inside the node (flowing right), or outside it,
        right of the port as far as the next one (flowing down: inputs above the node, outputs
        below; a side whose names do not fit so is left to the ports' tooltips)."""
        p.setFont(self.label_font())
        p.setPen(theme.color("subtext"))
        for name, rect, align in self.port_names():
            p.drawText(rect, Qt.AlignVCenter | align, name)

    def port_names(self):
        """[(name, rect, alignment)] of the port names drawn."""
        out = []
        for ports, names, ws in ((self.in_ports, self.in_labels, self.label_ws[0]),
                                 (self.out_ports, self.out_labels, self.label_ws[1])):
            spots = [self._name_spot(ports, k, w) for k, w in enumerate(ws)]
            if self.gscene.flow == "down" and any(
                    w > rect.width() for w, (rect, _) in zip(ws, spots)):
                continue
            out += [(name, rect, align) for name, (rect, align) in zip(names, spots)]
        return out

    def _name_spot(self, ports, k, w):
        """(rect, alignment) of port k's name, `w` wide."""
        port = ports[k]
        x, y = port.pos().x(), port.pos().y()
        if self.gscene.flow == "down":  # clear of the ports' circles, short of the next wire
            end = ports[k + 1].pos().x() - 3 if k + 1 < len(ports) else NODE_W + 8
            top = y - ROW_H if not port.is_output else y + 4
            return QRectF(x + PortItem.R + 2, top, end - x - PortItem.R - 2, ROW_H - 4), \
                Qt.AlignLeft
        if port.is_output:
            return QRectF(x - PortItem.R - 4 - w, y - ROW_H / 2, w, ROW_H), Qt.AlignRight
        return QRectF(x + PortItem.R + 4, y - ROW_H / 2, w, ROW_H), Qt.AlignLeft

    @classmethod
    def label_font(cls):
        f = cls.small_font()
        f.setItalic(True)
        return f

    @staticmethod
    def small_font():
        f = QFont()
        f.setPointSizeF(f.pointSizeF() * 0.85)
        return f

    # No itemChange() override: every selection or geometry change would cross into Python.
    # Wires follow moved nodes from the scene's mouse handler and apply_positions() instead.

    def port_pos(self, is_output, index):
        ports = self.out_ports if is_output else self.in_ports
        if index < len(ports):
            return ports[index].scenePos()
        if self.gscene.flow == "down":
            return self.scenePos() + QPointF(NODE_W / 2, self.h if is_output else 0)
        return self.scenePos() + QPointF(NODE_W if is_output else 0, HEADER_H + ROW_H / 2)


class EdgeItem(QGraphicsPathItem):
    def __init__(self, scene, edge):
        super().__init__()
        self.gscene, self.edge = scene, edge
        self.setFlags(QGraphicsItem.ItemIsSelectable)
        self.setZValue(-1)
        self.label = QGraphicsSimpleTextItem("", self)
        self.label.setBrush(QBrush(theme.color("label")))
        f = QFont()
        f.setPointSizeF(7.5)
        self.label.setFont(f)
        self.ok = True
        self.dims, self.full_text = None, ""
        self.routed = False  # around nodes (app/canvas/wire_route.py), not the S-curve
        self._other_spot = None  # the label's second place on a routed wire (label_spots)
        # routed when the scene's refresh gives it its shape (set_shape), once, not twice

    def update_path(self):
        s = self.gscene.nodes.get(self.edge.src)
        d = self.gscene.nodes.get(self.edge.dst)
        if s is None or d is None:
            return
        down = self.gscene.flow == "down"
        # routed as if flowing right: a top-to-bottom graph is routed transposed
        flip = (lambda p: (p[1], p[0])) if down else (lambda p: p)
        a, b = (flip((q.x(), q.y())) for q in (s.port_pos(True, self.edge.src_port),
                                              d.port_pos(False, self.edge.dst_port)))
        rects = self.gscene.node_rects()
        routed = self.gscene.flipped_rects() if down else rects
        points = wire_route.route(a, b, list(routed.values()),
                                  routed.get(self.edge.src), routed.get(self.edge.dst))
        if points is None:
            c1, c2 = wire_route.curve_controls(a, b)
            path = QPainterPath(QPointF(*flip(a)))
            path.cubicTo(QPointF(*flip(c1)), QPointF(*flip(c2)), QPointF(*flip(b)))
            mid = path.pointAtPercent(0.5)
            # going down to another column, the curve runs across at its middle, below it
            # on the side it goes to and above it on the other: the label goes above it on
            # that side (right of the middle for a wire going right)
            across = b[1] - a[1] if down else 0.0  # (a, b are transposed when down)
        else:
            path = rounded_path([flip(p) for p in points])
            # the label at the middle of the longest run along the flow
            p, q = max(zip(points, points[1:]),
                       key=lambda pq: abs(pq[1][0] - pq[0][0]) if pq[0][1] == pq[1][1] else -1)
            mid = QPointF(*flip(((p[0] + q[0]) / 2, p[1])))
        self.routed = points is not None
        self.setPath(path)
        # the short form (28x28x1), as on the node faces; Keras' form in the tooltip
        text = fmt_dims(self.dims) if self.dims is not None else "?"
        if self.label.text() != text:
            self.label.setText(text)
        r = self.label.boundingRect()
        if down and points is None and abs(across) > 8:
            x = mid.x() + 4 if across > 0 else mid.x() - 4 - r.width()
            y = mid.y() - r.height() - 1
        elif down:  # beside the wire, at its middle
            x, y = mid.x() + 5, mid.y() - r.height() / 2
        else:  # above it
            x, y = mid.x() - r.width() / 2, mid.y() - r.height() - 2
        # a routed wire's label goes above its run (right of it), or, where a node or another
        # label is in the way, below it (left of it): the scene's separate_labels tries that
        # first of the label_spots
        self._other_spot = (QPointF(mid.x() - 5 - r.width(), y) if down else
                            QPointF(x, mid.y() + 2)) if self.routed else None
        self.label.setPos(x, y)

    def label_spots(self):
        """Other places for the label (its top-left), along its wire: above or below it (left
        or right of it in a top-to-bottom graph) at points from its middle outwards."""
        r = self.label.boundingRect()
        down = self.gscene.flow == "down"
        spots = [self._other_spot] if self._other_spot is not None else []
        for t in (0.5, 0.35, 0.65, 0.2, 0.8, 0.1, 0.9):
            p = self.path().pointAtPercent(t)
            if down:
                spots += [QPointF(p.x() + 5, p.y() - r.height() / 2),
                          QPointF(p.x() - 5 - r.width(), p.y() - r.height() / 2)]
            else:
                spots += [QPointF(p.x() - r.width() / 2, p.y() - r.height() - 2),
                          QPointF(p.x() - r.width() / 2, p.y() + 2)]
        return spots

    def boundingRect(self):
        # the curve's own extent (Qt's default is its control points', which for a wire drawn
        # back to an earlier column reach far past it and made Fit leave a wide empty margin)
        m = 2.5  # the widest pen (selected)
        return self.path().boundingRect().adjusted(-m, -m, m, m)

    def set_shape(self, shape):
        self.dims = tuple(shape) if shape is not None else None  # not "shape": a Qt method
        self.full_text = fmt_shape(shape) if shape is not None else "?"
        self.label.setText(fmt_dims(self.dims) if self.dims is not None else "?")
        self.setToolTip(f"{self.edge.src} \u2192 {self.edge.dst}: {self.full_text}")
        self.ok = shape is not None
        self.update_path()

    def paint(self, p, option, widget=None):
        color = QColor("#ffb703") if self.isSelected() else (
            theme.color("wire") if self.ok else theme.color("wire_off"))
        self.setPen(QPen(color, 2.5 if self.isSelected() else 1.8))
        super().paint(p, option, widget)
