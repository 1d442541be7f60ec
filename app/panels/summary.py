"""A model summary like Keras' model.summary(): layer, output shape, parameters, inputs."""
from PySide6.QtWidgets import QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from layerloom.core.errors import GraphError
from layerloom.core.graph import fmt_shape


class SummaryPanel(QWidget):
    def __init__(self, doc, parent=None):
        super().__init__(parent)
        self.doc = doc
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
        g = self.doc.graph
        a = g.analysis()
        try:
            order = g.topo_order()
        except GraphError:  # a cycle (the Problems list says where): the file order
            order = list(g.nodes)
        out = []
        for nid in order:
            shape = a.shapes.get(nid)
            count = a.params.get(nid)
            out.append((f"{nid} ({g.nodes[nid].type})",
                        ", ".join(fmt_shape(s) for s in shape) if shape else "?",
                        f"{count.total if count else 0:,}",
                        ", ".join(f"{e.src}[{e.src_port}]" for e in g.in_edges(nid))))
        totals = a.total_params()
        return out, totals.total, totals.trainable

    def refresh(self):
        rows, total, trainable = self.rows()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.totals.setText(f"Total params: {total:,}   Trainable: {trainable:,}   "
                            f"Non-trainable: {total - trainable:,}")

