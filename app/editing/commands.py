"""Undoable edits. Each command's redo/undo calls graph-model methods only; the canvas follows
the model's events. Names end in Cmd."""
from PySide6.QtGui import QUndoCommand

from layerloom.core.errors import GraphError, LayerloomError
from layerloom.core.blocks import used_blocks
from layerloom.core.graph import Edge, too_many_nodes


class AddNodeCmd(QUndoCommand):
    def __init__(self, doc, type_id, pos, params=None, node_id=None):
        super().__init__(f"Add {type_id}")
        self.doc, self.type_id, self.pos = doc, type_id, tuple(pos)
        self.params = params
        self.node_id = node_id or doc.graph.new_id(type_id)

    def redo(self):
        self.doc.positions()[self.node_id] = list(self.pos)
        self.doc.graph.add_node(self.type_id, self.params, id=self.node_id)

    def undo(self):
        self.doc.graph.remove_node(self.node_id)
        self.doc.positions().pop(self.node_id, None)


class RemoveNodesCmd(QUndoCommand):
    """Removes nodes and every edge touching them; undo restores both, in order."""

    def __init__(self, doc, node_ids):
        super().__init__(f"Delete {len(node_ids)} node(s)")
        self.doc = doc
        g = doc.graph
        ids = [i for i in g.nodes if i in set(node_ids)]  # keep file order
        order = {nid: k for k, nid in enumerate(g.nodes)}
        self.nodes = [(i, g.nodes[i].type, dict(g.nodes[i].params), order[i],
                       doc.positions().get(i), g.nodes[i].trainable, g.nodes[i].shares)
                      for i in ids]
        self.edges = [e for e in g.edges if e.src in ids or e.dst in ids]

    def redo(self):
        for nid, *_ in self.nodes:
            self.doc.graph.remove_node(nid)
            self.doc.positions().pop(nid, None)

    def undo(self):
        g = self.doc.graph
        for nid, typ, params, index, pos, trainable, shares in self.nodes:
            if pos is not None:  # before the node: the canvas places it on node_added
                self.doc.positions()[nid] = pos
            g.add_node(typ, params, id=nid, index=index, trainable=trainable, shares=shares)
        for e in self.edges:
            g.connect(e.src, e.src_port, e.dst, e.dst_port)


class ConnectCmd(QUndoCommand):
    def __init__(self, doc, src, src_port, dst, dst_port):
        super().__init__(f"Connect {src} to {dst}")
        self.doc, self.edge = doc, Edge(src, src_port, dst, dst_port)

    def redo(self):
        e = self.edge
        self.doc.graph.connect(e.src, e.src_port, e.dst, e.dst_port)

    def undo(self):
        self.doc.graph.disconnect(self.edge)


class DisconnectCmd(QUndoCommand):
    def __init__(self, doc, edge):
        super().__init__(f"Disconnect {edge.src} from {edge.dst}")
        self.doc, self.edge = doc, edge

    def redo(self):
        self.doc.graph.disconnect(self.edge)

    def undo(self):
        e = self.edge
        self.doc.graph.connect(e.src, e.src_port, e.dst, e.dst_port)


class MoveNodesCmd(QUndoCommand):
    """One command per drag, pushed on release."""

    def __init__(self, doc, moves, apply_positions):
        super().__init__(f"Move {len(moves)} node(s)")
        moves = {k: (tuple(a), tuple(b)) for k, (a, b) in moves.items()}
        self.doc, self.moves, self.apply = doc, moves, apply_positions  # {id: (old, new)}
        self.first = True

    def _set(self, which):
        pos = self.doc.positions()
        for nid, pair in self.moves.items():
            pos[nid] = list(pair[which])
        self.apply({nid: pair[which] for nid, pair in self.moves.items()})

    def redo(self):
        self._set(1)

    def undo(self):
        self._set(0)


class SetParamsCmd(QUndoCommand):
    def __init__(self, doc, node_id, changes):
        super().__init__(f"Change {', '.join(changes)} of {node_id}")
        self.doc, self.node_id = doc, node_id
        self.new = dict(changes)
        self.old = {k: doc.graph.nodes[node_id].params[k] for k in changes}

    def redo(self):
        self.doc.graph.set_params(self.node_id, **self.new)

    def undo(self):
        self.doc.graph.set_params(self.node_id, **self.old)


class SetSharesCmd(QUndoCommand):
    """Node `node_id` uses node `other`'s weights (None: its own again), one undo step;
    Graph.set_shares refuses a wrong one (GraphError) before anything is pushed."""

    def __init__(self, doc, node_id, other):
        g = doc.graph
        self.doc, self.node_id = doc, node_id
        self.old, self.new = g.nodes[node_id].shares, other
        if other is not None:
            why = g.share_problem(node_id, other)
            if why:
                raise GraphError(why, node=node_id, kind="shared_weights")
        super().__init__(f"Share weights of {other} with {node_id}" if other is not None
                         else f"Own weights for {node_id}")

    def redo(self):
        self.doc.graph.set_shares(self.node_id, self.new)
        self.setObsolete(self.old == self.new)

    def undo(self):
        self.doc.graph.set_shares(self.node_id, self.old)


class SetTrainableCmd(QUndoCommand):
    """Freeze (trainable False) or unfreeze nodes, one undo step: {node id: trainable}."""

    def __init__(self, doc, changes, text=None):
        g = doc.graph
        self.doc = doc
        self.new = {nid: bool(v) for nid, v in changes.items() if g.nodes[nid].trainable != v}
        self.old = {nid: not v for nid, v in self.new.items()}
        if text is None:
            verb = "Freeze" if not any(self.new.values()) else "Unfreeze" if all(
                self.new.values()) else "Freeze/Unfreeze"
            text = f"{verb} {', '.join(self.new) if len(self.new) <= 3 else len(self.new)}" \
                + ("" if len(self.new) <= 3 else " nodes")
        super().__init__(text)

    def _set(self, values):
        for nid, v in values.items():
            self.doc.graph.set_trainable(nid, v)

    def redo(self):
        self._set(self.new)
        self.setObsolete(not self.new)  # nothing to change: not kept on the undo stack

    def undo(self):
        self._set(self.old)


class PasteCmd(QUndoCommand):
    """Adds a copied sub-graph with fresh ids, offset from the original positions. The graph
    and positions come from clipboard.parse_text, which refused whatever a project file would;
    should the graph still refuse a node or an edge, redo takes back what it added and the
    command is dropped (obsolete) instead of going on the undo stack half applied."""

    def __init__(self, doc, graph, positions, offset=(40, 40)):
        super().__init__(f"Paste {len(graph.nodes)} node(s)")
        self.doc = doc
        self.ids = {}
        taken, counters = set(), {}  # the ids chosen so far; the next number per type
        for nid, node in graph.nodes.items():
            if nid in doc.graph.nodes or nid in taken:
                nid = doc.graph.new_id(node.type, taken=taken, counters=counters)
            self.ids[node.id] = nid
            taken.add(nid)
        self.nodes = [(self.ids[n.id], n.type, dict(n.params), n.trainable)
                      for n in graph.nodes.values()]
        self.edges = [(self.ids[e.src], e.src_port, self.ids[e.dst], e.dst_port)
                      for e in graph.edges]
        self.pos = {self.ids[k]: [v[0] + offset[0], v[1] + offset[1]]
                    for k, v in positions.items() if k in self.ids}
        self.shares = {self.ids[n.id]: self.ids[n.shares] for n in graph.nodes.values()
                       if n.shares in self.ids}  # weights shared among the pasted nodes
        # block types the pasted instances use that the project lacks, defined first
        self.types = [graph.blocks[n] for n in used_blocks(graph)]
        self.defined = []

    def _define_blocks(self):
        from layerloom.project.loom import block_dict
        g = self.doc.graph
        for t in self.types:
            have = g.blocks.get(t.type_id)
            if have is None:
                g.define_block(t)
                self.defined.append(t.type_id)
            elif block_dict(have) != block_dict(t):
                raise GraphError(f"the project has another block called {t.type_id!r}; "
                                 "rename one of them first")

    def redo(self):
        g = self.doc.graph
        added = []
        self.defined = []
        try:
            too_many = too_many_nodes(len(g.nodes) + len(self.nodes))
            if too_many:  # the graph would be one its project file cannot hold
                raise GraphError(f"the graph would have {too_many}")
            self._define_blocks()
            for nid, typ, params, trainable in self.nodes:
                if nid in self.pos:  # before the node: the canvas places it on node_added
                    self.doc.positions()[nid] = list(self.pos[nid])
                g.add_node(typ, params, id=nid, trainable=trainable)
                added.append(nid)
            for e in self.edges:
                g.connect(*e)
            for nid, owner in self.shares.items():
                g.set_shares(nid, owner)
        except LayerloomError as e:
            self._remove(added)
            self._undefine()
            for nid, *_ in self.nodes[len(added):]:
                self.doc.positions().pop(nid, None)
            self.setObsolete(True)  # QUndoStack.push deletes it instead of keeping it
            raise RuntimeError(f"Nothing pasted: {e}") from None

    def undo(self):
        self._remove([nid for nid, *_ in self.nodes])
        self._undefine()

    def _undefine(self):
        for name in reversed(self.defined):
            self.doc.graph.remove_block(name)
        self.defined = []

    def _remove(self, ids):
        for nid in reversed(ids):
            self.doc.graph.remove_node(nid)
            self.doc.positions().pop(nid, None)


def keep_mapping(old, new):
    """A new dataset keeps the old one's array-to-node mapping (the graph did not change)."""
    return {**new, **{k: old[k] for k in ("inputs", "targets") if k in old}}


class RenameNodeCmd(QUndoCommand):
    """A node gets another name (its id) with every reference the project holds to it
    (engine/project/rename.py) and its trained weights' keys; undo puts all of it back."""

    def __init__(self, doc, old, new):
        super().__init__(f"Rename {old} to {new}")
        import json
        self.doc, self.old, self.new = doc, old, new
        self.saved = json.loads(json.dumps({"dataset": doc.project.dataset,
                                            "training": doc.project.training}))

    def _weights(self, a, b):
        w = self.doc.weights
        if w is not None:
            prefix = a + "/"
            self.doc.weights = {(b + "/" + k[len(prefix):] if k.startswith(prefix) else k): v
                                for k, v in w.items()}
            self.doc._weights_saved_in = None  # the file beside the project has the old keys
            self.doc.sigModelChanged.emit()

    def redo(self):
        from layerloom.project.rename import rename
        rename(self.doc.project, self.old, self.new)
        self._weights(self.old, self.new)

    def undo(self):
        import json
        from layerloom.project.rename import rename
        rename(self.doc.project, self.new, self.old)
        saved = json.loads(json.dumps(self.saved))
        self.doc.project.dataset, self.doc.project.training = saved["dataset"], saved["training"]
        self._weights(self.new, self.old)


class SetSetupCmd(QUndoCommand):
    """Changes part of the project's setup: `section` is "dataset" (the whole object) or
    "training" (one key of it)."""

    def __init__(self, doc, section, key, value, on_change=None):
        super().__init__(f"Change {key or section}")
        self.doc, self.section, self.key, self.value = doc, section, key, value
        self.on_change = on_change
        self.old = self._get()

    def _get(self):
        p = self.doc.project
        if self.section == "dataset":
            return dict(p.dataset)
        return p.training.get(self.key)

    def _set(self, value):
        p = self.doc.project
        if self.section == "dataset":
            p.dataset = dict(value)
        else:
            p.training[self.key] = value
        if self.on_change:
            self.on_change()

    def redo(self):
        self._set(self.value)

    def undo(self):
        self._set(self.old)


class SetFlowCmd(QUndoCommand):
    """The direction the graph is drawn in (the project's ui.flow, "right" or "down");
    `show(flow)` redraws the canvas. Auto Layout for the new direction follows it in the
    same macro (window_edit.set_flow)."""

    def __init__(self, doc, flow, show):
        super().__init__("Flow " + ("Top to Bottom" if flow == "down" else "Left to Right"))
        self.doc, self.flow, self.show = doc, flow, show
        self.old = doc.project.ui.get("flow")

    def _set(self, flow):
        if flow is None:
            self.doc.project.ui.pop("flow", None)
        else:
            self.doc.project.ui["flow"] = flow
        self.show(flow or "right")

    def redo(self):
        self._set(self.flow)

    def undo(self):
        self._set(self.old)
