"""Undoable edits of blocks (issue 30, item 1): Make Block replaces selected nodes with one
instance of a new block type; Expand Block puts an instance's layers back in its place; Define
Blocks adds block types (a block file imported, a library block added). Each keeps the trained
weights' keys with the layers they belong to (resblock_1/conv_1/kernel <-> conv_1/kernel), so
a trained model still fits after either edit and after its undo."""
from PySide6.QtGui import QUndoCommand

from layerloom.core.block_edits import rename_weights


def _carry_weights(doc, renamed):
    if doc.weights is not None and renamed:
        doc.weights = rename_weights(doc.weights, renamed)
        doc._weights_saved_in = None  # the file beside the project has the old keys
        doc.sigModelChanged.emit()


def _snapshot(doc, ids):
    """(nodes as (id, type, params, file index, position, trainable, shares), edges touching
    them)."""
    g = doc.graph
    order = {nid: k for k, nid in enumerate(g.nodes)}
    keep = [i for i in g.nodes if i in set(ids)]
    nodes = [(i, g.nodes[i].type, dict(g.nodes[i].params), order[i], doc.positions().get(i),
              g.nodes[i].trainable, g.nodes[i].shares) for i in keep]
    edges = [e.key() for e in g.edges if e.src in keep or e.dst in keep]
    return nodes, edges


def _restore(doc, nodes, edges):
    g = doc.graph
    for nid, typ, params, index, pos, trainable, shares in nodes:
        if pos is not None:  # before the node: the canvas places it on node_added
            doc.positions()[nid] = list(pos)
        g.add_node(typ, params, id=nid, index=index, trainable=trainable, shares=shares)
    for e in edges:
        if not any(x.key() == e for x in g.in_edges(e[2])):
            g.connect(*e)


def _remove(doc, ids):
    for nid in ids:
        if nid in doc.graph.nodes:
            doc.graph.remove_node(nid)
        doc.positions().pop(nid, None)


class MakeBlockCmd(QUndoCommand):
    """The selection (core.blocks.MadeBlock) becomes one instance at `pos`."""

    def __init__(self, doc, made, pos):
        super().__init__(f"Make Block {made.block.type_id}")
        self.doc, self.made, self.pos = doc, made, list(pos)
        self.nodes, self.edges = _snapshot(doc, made.removed)
        first = min((n[3] for n in self.nodes), default=None)
        self.index = first  # the instance takes the first selected node's place in the file

    def redo(self):
        m, g = self.made, self.doc.graph
        g.define_block(m.block)
        _remove(self.doc, m.removed)
        self.doc.positions()[m.instance] = list(self.pos)
        g.add_node(m.block.type_id, m.params, id=m.instance, index=self.index)
        for port, (src, sp) in enumerate(m.inputs):
            g.connect(src, sp, m.instance, port)
        for port, dst, dp in m.outputs:
            g.connect(m.instance, port, dst, dp)
        _carry_weights(self.doc, m.weights_renamed())

    def undo(self):
        m = self.made
        _remove(self.doc, [m.instance])
        self.doc.graph.remove_block(m.block.type_id)
        _restore(self.doc, self.nodes, self.edges)
        _carry_weights(self.doc, {new: old for old, new in m.weights_renamed().items()})


class ExpandBlockCmd(QUndoCommand):
    """Instance `plan.instance` (core.blocks.Inlined) replaced by its layers, placed from
    `positions` ({id: (x, y)}); the block type stays in the project."""

    def __init__(self, doc, plan, positions):
        super().__init__(f"Expand Block {plan.instance}")
        self.doc, self.plan, self.positions = doc, plan, positions
        self.nodes, self.edges = _snapshot(doc, [plan.instance])

    def redo(self):
        g, p = self.doc.graph, self.plan
        index = self.nodes[0][3]
        _remove(self.doc, [p.instance])
        for k, (nid, typ, params, trainable) in enumerate(p.nodes):
            self.doc.positions()[nid] = list(self.positions[nid])
            g.add_node(typ, params, id=nid, index=index + k, trainable=trainable)
        for e in p.edges:
            g.connect(*e)
        for nid, owner in p.shares.items():  # layers of the block that shared weights
            g.set_shares(nid, owner)
        _carry_weights(self.doc, p.weights_renamed())

    def undo(self):
        _remove(self.doc, [n[0] for n in self.plan.nodes])
        _restore(self.doc, self.nodes, self.edges)
        _carry_weights(self.doc, {new: old for old, new in self.plan.weights_renamed().items()})


class DefineBlocksCmd(QUndoCommand):
    """Block types added to the project (a block file imported, a library block's types
    before its first instance), each after those it uses; undo removes them."""

    def __init__(self, doc, types, text=None):
        names = [t.type_id for t in types]
        super().__init__(text or f"Add Block {', '.join(names)}")
        self.doc, self.types = doc, list(types)

    def redo(self):
        for t in self.types:
            self.doc.graph.define_block(t)

    def undo(self):
        for t in reversed(self.types):
            self.doc.graph.remove_block(t.type_id)


class RedefineBlockCmd(QUndoCommand):
    """Block type `old` replaced by `new` (of the same name: an opened block edited; old
    None: a block made inside an opened one, new to the project); its instances keep the
    parameters it still has. Undo puts the old type and their parameters back."""

    def __init__(self, doc, old, new):
        super().__init__(f"Edit Block {new.type_id}")
        self.doc, self.old, self.new = doc, old, new
        self.before = {}

    def redo(self):
        self.before = self.doc.graph.define_block(self.new)

    def undo(self):
        if self.old is None:
            self.doc.graph.remove_block(self.new.type_id)
        else:
            self.doc.graph.define_block(self.old, params=self.before)
