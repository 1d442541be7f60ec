"""A model summary like Keras' model.summary(): layer, output shape, parameters, inputs."""
from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from layerloom.core.graph import fmt_shape


class SummaryPanel(QWidget):
    def __init__(self, doc, scene, parent=None):
        super().__init__(parent)
        self.doc, self.scene = doc, scene
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Layer (type)", "Output shape", "Param #",
                                              "Connected to"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.totals = QLabel()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.table)
        lay.addWidget(self.totals)
        doc.sigChanged.connect(self.refresh)
        self.refresh()

    def rows(self):
        g, shapes = self.doc.graph, self.scene.shapes
        try:
            order = g.topo_order()
        except Exception:
            order = list(g.nodes)
        out, total, trainable = [], 0, 0
        for nid in order:
            node = g.nodes[nid]
            edges = g.in_edges(nid)
            shape = shapes.get(nid)
            count = tr = 0
            if shape is not None:
                ins = [shapes[e.src][e.src_port] for e in edges]
                specs = node.layer.weights(node.params, ins)
                count = sum(int(_prod(w.shape)) for w in specs)
                tr = sum(int(_prod(w.shape)) for w in specs if w.trainable)
            total += count
            trainable += tr
            out.append((f"{nid} ({node.type})",
                        ", ".join(fmt_shape(s) for s in shape) if shape else "?",
                        f"{count:,}", ", ".join(f"{e.src}[{e.src_port}]" for e in edges)))
        return out, total, trainable

    def refresh(self):
        rows, total, trainable = self.rows()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.totals.setText(f"Total params: {total:,}   Trainable: {trainable:,}   "
                            f"Non-trainable: {total - trainable:,}")


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n
