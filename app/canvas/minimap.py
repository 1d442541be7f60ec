"""A minimap in the canvas's bottom-right corner (issue 19, item 13): the whole graph small,
the part in view framed; a click or drag there moves the view. Shown only while the graph
does not fit in the view. The graph is rendered into a picture at most every 200 ms, not
painted again on every change (the canvas's edits stay as fast as without it)."""
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QWidget

from layerloom.app.look import theme

W, H, MARGIN = 200, 130, 8


class Minimap(QWidget):
    enabled = True  # View > Minimap

    def __init__(self, view):
        super().__init__(view.viewport())
        self.main = view
        self.setFixedSize(W, H)
        self.setCursor(Qt.PointingHandCursor)
        self.setToolTip("The whole graph; click or drag to move the view")
        self.picture, self.source = None, QRectF()
        self._timer = QTimer(self, singleShot=True, interval=200)
        self._timer.timeout.connect(self.refresh)
        view.scene().changed.connect(lambda _: self._timer.start())
        for bar in (view.horizontalScrollBar(), view.verticalScrollBar()):
            bar.valueChanged.connect(lambda _: self.update())
        self.hide()

    def schedule(self):
        self._timer.start()

    def visible_rect(self):
        return self.main.mapToScene(self.main.viewport().rect()).boundingRect()

    def refresh(self):
        """Shown when part of the graph is out of view (and the canvas has room for it),
        with the graph rendered afresh."""
        scene = self.main.scene()
        try:
            nodes = scene.itemsBoundingRect()
        except RuntimeError:  # the scene went with its document
            return
        vp = self.main.viewport().rect()
        needed = (self.enabled and bool(scene.items()) and not self.visible_rect().contains(nodes)
                  and vp.width() > 3 * W and vp.height() > 2 * H)
        self.setVisible(needed)
        if not needed:
            return
        self.move(vp.width() - W - MARGIN, vp.height() - H - MARGIN)
        src = nodes.adjusted(-40, -40, 40, 40)
        if not scene.sceneRect().contains(src):  # room to scroll to every part of it
            scene.setSceneRect(scene.sceneRect().united(src.adjusted(-2000, -2000, 2000, 2000)))
        # the scene's rect at the widget's aspect, centred on the graph
        scale = max(src.width() / W, src.height() / H)
        self.source = QRectF(src.center().x() - W * scale / 2, src.center().y() - H * scale / 2,
                             W * scale, H * scale)
        self.picture = QPixmap(W, H)
        self.picture.fill(theme.color("canvas"))
        p = QPainter(self.picture)
        p.setRenderHint(QPainter.Antialiasing)
        scene.render(p, QRectF(0, 0, W, H), self.source, Qt.KeepAspectRatio)
        p.end()
        self.update()

    def to_widget(self, r):
        s = W / self.source.width() if self.source.width() else 1
        return QRectF((r.x() - self.source.x()) * s, (r.y() - self.source.y()) * s,
                      r.width() * s, r.height() * s)

    def to_scene(self, pos):
        s = self.source.width() / W
        return QPointF(self.source.x() + pos.x() * s, self.source.y() + pos.y() * s)

    def paintEvent(self, event):
        if self.picture is None:
            return
        p = QPainter(self)
        p.drawPixmap(0, 0, self.picture)
        p.setPen(QPen(QColor("#ffb703"), 1.5))
        p.setBrush(QColor(255, 183, 3, 40))
        p.drawRect(self.to_widget(self.visible_rect()).intersected(QRectF(0, 0, W - 1, H - 1)))
        p.setPen(QPen(theme.color("border"), 1))
        p.setBrush(Qt.NoBrush)
        p.drawRect(0, 0, W - 1, H - 1)

    def mousePressEvent(self, event):
        self._move_to(event.position())

    def mouseMoveEvent(self, event):
        if event.buttons() & Qt.LeftButton:
            self._move_to(event.position())

    def _move_to(self, pos):
        self.main.centerOn(self.to_scene(pos))
        self.main._fitted = False
        self.update()
