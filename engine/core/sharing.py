"""Shared weights, a part of the graph model (core/graph.py's Graph is a SharedWeights): a
node may use another node's weights instead of its own (Keras' layer called twice, a siamese
network; a block instance sharing another instance's). What may share what, the edit, the
problems of links an edit broke, and the graph the engine runs (a frozen owner freezes its
sharers)."""
from layerloom.core import analysis
from layerloom.core.errors import GraphError, quote


class SharedWeights:
    """The Graph's shared-weight methods (it holds `_nodes`, `nodes`, `analysis()`, the
    events and node_error)."""

    def share_problem(self, id, other):
        """Why node `id` cannot use node `other`'s weights (a message), or None: `other` must
        exist, be another node of the same type and parameters (a block instance: the same
        block type and parameters), share no weights itself, and `id` must not be shared."""
        node = self.nodes[id]
        if not isinstance(other, str):
            return f"expected a node id, got {quote(other)}"
        if other == id:
            return "a node cannot share its own weights"
        owner = self._nodes.get(other)
        if owner is None:
            return f"shares the weights of {quote(other)}, which is not in the graph"
        if node.layer.is_input:
            return "an Input has no weights to share"
        if owner.type != node.type:
            return (f"shares the weights of {quote(other)}, a {owner.type}; the layers must "
                    f"be of one type (this is a {node.type})")
        if owner.params != node.params:
            diff = sorted(k for k in set(owner.params) | set(node.params)
                          if owner.params.get(k) != node.params.get(k))
            return (f"shares the weights of {quote(other)}, whose parameters differ ("
                    + ", ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")
                    + "): set the same, or share no weights")
        users = self.sharers(id)
        if users:
            return (f"{quote(users[0])} uses this node's weights, so it cannot use another's "
                    "(no chains)")
        if owner.shares is not None:
            return (f"{quote(other)} uses the weights of {quote(owner.shares)} itself: share "
                    f"{quote(owner.shares)}'s instead")
        return None

    def sharers(self, id):
        """The ids of the nodes that use node `id`'s weights, in file order."""
        return [n.id for n in self._nodes.values() if n.shares == id]

    def set_shares(self, id, other):
        """Node `id` uses node `other`'s weights (None: its own), refused with the reason
        (share_problem)."""
        node = self.nodes[id]
        if other is not None:
            why = self.share_problem(id, other)
            if why:
                raise GraphError(why, node=id, kind="shared_weights",
                                 fields={"node": id, "shares": other})
        if node.shares == other:
            return
        node.shares = other
        self._edited()
        self.shares_changed.emit(node)

    def shareable(self, id):
        """The nodes whose weights node `id` could use: share_problem says none is wrong, and
        their weights have the shapes its inputs need (where both are known)."""
        shapes = self.analysis().shapes
        mine = analysis.weight_shapes(self, shapes, id)
        out = []
        for o in self._nodes:
            if o == id or self._nodes[o].type != self._nodes[id].type or \
                    self.share_problem(id, o) is not None:
                continue
            theirs = analysis.weight_shapes(self, shapes, o)
            if mine is None or theirs is None or mine == theirs:
                out.append(o)
        return out

    def shared_frozen(self):
        """What the engine runs: this graph where a node using a frozen node's weights is
        frozen too (itself where none is); a copy otherwise."""
        change = {n.id for n in self._nodes.values() if n.shares is not None and n.trainable
                  and n.shares in self._nodes and not self._nodes[n.shares].trainable}
        if not change:
            return self
        out = type(self)(blocks=self.blocks)
        for n in self._nodes.values():
            out.add_node(n.type, n.params, id=n.id, trainable=n.trainable and n.id not in change,
                         shares=n.shares)
        for e in self._edges:
            out.connect(e.src, e.src_port, e.dst, e.dst_port)
        return out

    def share_problems(self):
        """A problem on each node whose weights link no longer holds (its owner gone, of
        other parameters, or sharing itself)."""
        out = []
        for n in self._nodes.values():
            if n.shares is None:
                continue
            why = self.share_problem(n.id, n.shares)
            if why:
                out.append(self.node_error(why, n.id, "shared_weights", shares=n.shares))
        return out
