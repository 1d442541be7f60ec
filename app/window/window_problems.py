"""The editor window's Problems list: the checks of `layerloom --run` and the data's fit,
redone on every change (with the window's title), and a problem's click leading to its node.
A mixin of MainWindow (app/window/main_window.py), whose document, scene, view and panels it
uses."""
import os
import re

from PySide6.QtCore import Qt

from layerloom.core.errors import LayerloomError
from layerloom.project import loom as projectfile


class ProblemsActions:
    def _problem_clicked(self, item):
        """A problem leads to its node: selected, centred, shown in the inspector."""
        nid = item.data(Qt.UserRole)
        if nid and nid in self.scene.nodes:
            self.scene.clearSelection()
            node = self.scene.nodes[nid]
            node.setSelected(True)
            self.view.centerOn(node)

    def _data_fit(self, problem):
        """The Data tab's check of the data against the graph: on the node and in Problems."""
        self.scene.set_data_problem(problem if problem and problem[0] else None)
        self._changed()

    def _changed(self):
        name = os.path.basename(self.doc.path) if self.doc.path else "untitled"
        self.setWindowTitle(f"{name}{'*' if self.doc.dirty else ''} - Layerloom")
        # an empty canvas is not a problem: the start page says where to begin
        found = self._problems_found() if self.doc.graph.nodes else []
        found = [(plain(line), nid, problem) for line, nid, problem in found]
        losses = self.doc.project.training.get("loss") or {}
        self.problems_panel.set_problems(found, self.doc.graph, self.doc.positions(),
                                         list(losses) if isinstance(losses, dict) else (),
                                         self.doc.project.training.get("metrics"))
        self.inspector.refresh_info()
        self._update_model_state()

    def _problems_found(self):
        """[(line, node id or None, problem or None)]: the checks of `layerloom --run` on the
        project as it is now, and the data's fit, listed whenever its node is marked red; the
        problem, with its kind and fields, is what the Problems tab finds fixes from."""
        if getattr(self.doc, "block_of", None):  # an open block: no data, loss or run
            return self.block_problems()
        try:
            found = [(str(p), node_of(p.place, self.doc.graph), p)
                     for p in projectfile.problems_of(self.doc.project)]
        except LayerloomError as e:
            found = [(line, None, None) for line in e.lines()]
        fit = self.data.fit_problem
        if fit:  # first: the loss set by itself waits for the data to fit (newcomer trial)
            found.insert(0, (f"Data: {fit[1]}" + (f" (at '{fit[0]}')" if fit[0] else ""),
                             fit[0], self.data.fit_error))
        found += self._freezing_problems()
        training = getattr(self, "training", None)
        memory = training.memory_problem() if training is not None else None
        if memory:  # before Run, not only in the Log after it (issue 31)
            line, nid, error = memory
            found.append((("Memory: " if error else "Memory (warning): ") + line, nid, None))
        if training is not None:
            self._watch_device()
        return found

    def _freezing_problems(self):
        """Warnings where freezing leaves nothing to train, or a frozen layer with no weights of
        its own yet (a run would keep its random initial ones: a run of a project with frozen
        layers starts from the document's weights where it has them)."""
        g = self.doc.graph
        frozen = g.frozen()
        if not frozen:
            return []
        try:
            params = g.analysis().total_params()
        except LayerloomError:
            return []
        out = []
        if params.total and not params.trainable:
            out.append(("Training (warning): every layer with weights is frozen: nothing will "
                        "train (unfreeze some in the inspector or the node's menu)", None, None))
        from layerloom.core.trained import fit_weights
        have = set(fit_weights(g, self.doc.weights).kept) if self.doc.weights else set()
        shapes = g.analysis().shapes
        for nid in frozen:
            node = g.nodes[nid]
            if nid not in shapes:
                continue
            ins = [shapes[e.src][e.src_port] for e in g.in_edges(nid)]
            names = [f"{nid}/{w.name}" for w in node.layer.weights(node.params, ins)]
            if names and not all(k in have for k in names):
                out.append((f"Frozen (warning): {nid!r} has no trained weights: it keeps its "
                            "random initial ones (train or import the model first)", nid, None))
        return out

    def _watch_device(self):
        """The memory line follows the device and the batch size chosen, and the devices once
        found (their memory is known then): connected once per training panel."""
        t = self.training
        if getattr(t, "_problems_watch", False):
            return
        t._problems_watch = True
        t.device.currentIndexChanged.connect(lambda _: self._changed())


def plain(line):
    """A problem as the Problems list says it: the node by name, not the file's path to it
    ("'conv_1' (Conv2D): ..." for "graph.nodes[5] 'conv_1' (Conv2D): ...")."""
    line = re.sub(r"^graph\.nodes\[\d+\] ('[^']+' \([^)]+\)): ", r"\1: ", line)
    line = re.sub(r"^graph\.(nodes|edges): ", "", line)
    line = re.sub(r"^training\.loss(\.[\w.]+)?: ", "Loss: ", line)
    line = re.sub(r"^training\.metrics(\.[\w.]+)?: ", "Metrics: ", line)
    line = re.sub(r"^training\.optimizer[\w.]*: ", "Optimizer: ", line)
    return re.sub(r"^dataset(\.[\w.]+)?: ", "Data: ", line)


def node_of(place, graph):
    """The node a problem's place names ("graph.nodes[1] 'hidden_2' (Dense)"), or None."""
    m = re.search(r"graph\.nodes\[\d+\] '([^']+)'", str(place or ""))
    return m.group(1) if m and m.group(1) in graph.nodes else None
