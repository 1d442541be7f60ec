"""Keras import's blocks (issue 30): the flat graph keras_import builds, regrouped into block
instances (core/blocks.py) where the Keras model says what belongs together, so that an
imported ResNet50 opens as 25 readable nodes instead of 177 in a row. Nothing is computed
differently: a block instance is inlined before the model runs or is exported, and the
weights are renamed to the instance's keys (`<instance>/<inner id>/<weight>`).

- Repeated units, by the naming convention of keras.applications: the layers whose names share
  a unit prefix (PATTERNS: ResNet's and DenseNet's `conv2_block1_...`, MobileNetV2's
  `block_1_...`, EfficientNet's `block1a_...`, Xception's and VGG's `block2_...`, MobileNet's
  `expanded_conv_3_...`), with any unnamed layer wholly between two of them (MobileNetV3's
  `re_lu_2`), become one instance whose id is the prefix and whose inner ids are the rest of
  the names (`1_conv`, `out`). Units of the same structure (layer types, parameters, wiring)
  share one block type; `filters`, `units` and `rate` are promoted to block parameters where
  every layer of the unit setting one is a whole multiple of the smallest value, so ResNet50's
  identity units of conv2..conv5 are one type with filters 64, 128, 256, 512.
- A nested model (a Sequential or Functional model used as a layer, a keras.applications base
  among them) becomes one block type of its own, named from the model's name in CamelCase,
  with one instance named as the model; its units stay blocks inside it.
- A nested model called twice (a siamese network's tower): its first call is an instance as
  above, each later call (`<name>_call<n>`) another instance of the same block type that
  `shares` the first's weights, where the later call's layers are wired as the first's; else
  both stay flat, each layer of the later call sharing the first's. Units of the naming
  convention whose layers share weights stay flat.
- A selection whose layers are all frozen (a nested model with trainable=False) becomes a block
  of trainable layers with its instance frozen.

A unit or a model that does not make a valid block (nothing enters it, a path leaves it and
comes back, it holds a model output that would change name) stays flat: grouping never refuses
an import."""
import json
import re

from layerloom.core import block_edits as edits, blocks as kit
from layerloom.core.errors import LayerloomError
from layerloom.core.registry import get_layer

# unit prefixes of keras.applications' layer names: (prefix, rest of the name)
PATTERNS = (
    re.compile(r"^([A-Za-z]+\d+_block\d+)_(\w+)$"),       # ResNet(V2), DenseNet: conv2_block1_
    re.compile(r"^(block_\d+)_(\w+)$"),                    # MobileNetV2: block_1_
    re.compile(r"^(block\d+[a-z])_(\w+)$"),                # EfficientNet(V2): block1a_
    re.compile(r"^(block\d+)_(\w+)$"),                     # Xception, VGG: block2_
    re.compile(r"^(expanded_conv(?:_\d+)?)_(\w+)$"),       # MobileNetV2 / V3: expanded_conv_1_
)
PROMOTE = ("filters", "units", "rate")  # block parameters where the unit's values allow
MIN_UNIT = 2  # layers: a unit of one layer stays that layer


def unit_of(nid):
    """(unit prefix, inner id) of a node id named by the unit convention, or None."""
    for pattern in PATTERNS:
        m = pattern.match(nid)
        if m:
            return m.group(1), m.group(2)
    return None


def camel(name, fallback="Block"):
    """A block type name from a Keras name: resnet50 -> Resnet50, conv2_block1 ->
    Conv2Block1, block_1 -> Block1, mobilenetv2_1.00_224 -> Mobilenetv2_1_00_224."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", str(name)) if p]
    out = ""
    for p in parts:
        if out and p[0].isdigit() and out[-1].isdigit():
            out += "_"
        out += p[0].upper() + p[1:]
    if not out or not out[0].isalpha():
        out = fallback + out
    return out[:56]


class Nested:
    """A nested model's call, as keras_import's builder recorded it: its Keras name and the
    ids of the nodes it added (its own nested models' among them); a later call of a model
    called several times: which call (2, 3 ...), twin_of the first call's Nested, and same
    {node of this call: the first call's node it repeats}."""

    def __init__(self, name, nodes, call=1, twin_of=None, same=None):
        self.name, self.nodes = name, set(nodes)
        self.call, self.twin_of, self.same = call, twin_of, dict(same or {})


class _Grouper:
    def __init__(self, graph, weights, outputs, nested):
        self.graph, self.weights = graph, dict(weights)
        self.outputs = dict(outputs)  # {Keras output name: node id}
        self.nested = [m for m in nested if m.nodes]
        # {node of a nested model's later call: the first call's node}, instances included
        self.same = {k: v for m in self.nested for k, v in m.same.items()}
        self.done = set()  # indices of later calls already made instances of the first's type
        self.renamed = {}   # weight key prefix -> new one
        self.types = {}     # unit signature -> BlockType
        # the innermost nested model each node belongs to (index into self.nested; None: the
        # top model); a replaced selection's instance takes its place
        self.owner = {}
        for i in reversed(range(len(self.nested))):  # inner models finish first
            for nid in self.nested[i].nodes:
                self.owner[nid] = i

    # -- names ----------------------------------------------------------------------------
    def type_name(self, base, fallback="Block"):
        name = camel(base, fallback)
        if get_layer(name) is not None or name in ("Input",):
            name += "Model" if fallback == "Model" else "Block"
        out, k = name, 2
        while out in self.graph.blocks or get_layer(out) is not None:
            out, k = f"{name}_{k}", k + 1
        return out

    def instance_id(self, base, removed):
        base = re.sub(r"[^A-Za-z0-9_]+", "_", str(base)).strip("_") or "block"
        if not base[0].isalpha():
            base = "b_" + base
        out, k = base, 2
        while out in self.graph.nodes and out not in removed:
            out, k = f"{base}_{k}", k + 1
        return out

    # -- checks ---------------------------------------------------------------------------
    def convex(self, chosen):
        """No path leaves the selection and comes back into it (replacing it with one node
        would make a cycle)."""
        g, seen = self.graph, set()
        stack = [e.dst for nid in chosen for e in g.out_edges(nid) if e.dst not in chosen]
        while stack:
            n = stack.pop()
            if n in chosen:
                return False
            if n not in seen:
                seen.add(n)
                stack.extend(e.dst for e in g.out_edges(n))
        return True

    # -- units ----------------------------------------------------------------------------
    def units(self):
        """{(owner, prefix): [node ids]} of the unit convention, with the unnamed layers
        wholly inside one unit, each list in file order."""
        g = self.graph
        found, unit = {}, {}
        for nid, node in g.nodes.items():
            named = unit_of(nid)
            if named and not node.layer.is_input:
                key = (self.owner.get(nid), named[0])
                found.setdefault(key, []).append(nid)
                unit[nid] = key
        # the unnamed layers (hard-swish's Lambda, ReLU and Multiply, MobileNetV3's re_lu_2):
        # a connected group of them read only from and read only by one unit joins it
        seen = set()
        for start, node in g.nodes.items():
            if start in unit or start in seen or node.layer.is_input:
                continue
            group, stack, keys, ins, outs = [], [start], set(), False, False
            seen.add(start)
            while stack:
                nid = stack.pop()
                group.append(nid)
                for e in g.in_edges(nid) + g.out_edges(nid):
                    other = e.src if e.dst == nid else e.dst
                    if other in unit:
                        keys.add(unit[other])
                        ins, outs = ins or e.dst == nid, outs or e.src == nid
                    elif g.nodes[other].layer.is_input:
                        keys.add(None)
                    elif other not in seen:
                        seen.add(other)
                        stack.append(other)
            key = next(iter(keys)) if len(keys) == 1 else None
            if key is not None and ins and outs and \
                    all(self.owner.get(nid) == key[0] for nid in group):
                for nid in group:
                    unit[nid] = key
                found[key].extend(group)
        order = {nid: k for k, nid in enumerate(g.nodes)}
        return {key: sorted(ids, key=order.get) for key, ids in found.items()
                if len(ids) >= MIN_UNIT}

    def unit_type(self, made, inner_ids, promote):
        """The BlockType of a unit made by make_block (inner ids its node ids), renamed to
        inner_ids ({node id: inner id}) and with the `promote` parameters, shared with the
        units of the same structure already made. Returns (type, its parameters for this
        unit)."""
        src = made.block
        ids = dict(inner_ids)
        used = set(ids.values())
        for iid in src.input_ids:
            new = iid
            while new in used:
                new = "_" + new
            ids[iid] = new
            used.add(new)
        targets = {}  # (inner id, param) -> times
        spec, values = {}, {}
        for pname, (default, ts) in promote.items():
            spec[pname] = {"default": default,
                           "sets": [kit.Target(ids[t.node], t.param, t.times).text() for t in ts]}
            values[pname] = default
            for t in ts:
                targets[(ids[t.node], t.param)] = t.times
        nodes = []
        for nid, n in src.graph.nodes.items():
            if n.layer.is_input:
                nodes.append((ids[nid], "Input"))
                continue
            p = {k: (["promoted", targets[(ids[nid], k)]] if (ids[nid], k) in targets else v)
                 for k, v in n.params.items()}
            nodes.append((ids[nid], n.type, p, n.trainable))
        sig = json.dumps([sorted(nodes, key=lambda x: x[0]),
                          sorted((ids[e.src], e.src_port, ids[e.dst], e.dst_port)
                                 for e in src.graph.edges),
                          [ids[i] for i in src.input_ids],
                          [[ids[n], p] for n, p in src.output_refs], sorted(spec)],
                         sort_keys=True, default=str)
        block = self.types.get(sig)
        if block is None:
            inner = type(self.graph)(blocks=self.graph.blocks)
            for nid, n in src.graph.nodes.items():
                inner.add_node(n.type, dict(n.params), id=ids[nid], trainable=n.trainable)
            for e in src.graph.edges:
                inner.connect(ids[e.src], e.src_port, ids[e.dst], e.dst_port)
            name = self.type_name(made.instance)
            block = kit.define(name, inner, [ids[i] for i in src.input_ids],
                               [[ids[n], p] for n, p in src.output_refs], spec,
                               f"Keras unit {made.instance} and those like it", "block")
            self.types[sig] = block
        params = dict(values)
        # the shared type with this unit's values computes what the unit did
        made_params = block.inner_params(params)
        for nid, n in src.graph.nodes.items():
            if not n.layer.is_input and made_params[ids[nid]] != n.params:
                raise LayerloomError(f"unit {made.instance}: {nid} would change")
        if block.chains:
            params["repeat"] = 1
        return block, params, ids

    def promoted(self, chosen):
        """{param: (default, [Target])} of PROMOTE for which every chosen layer that sets it
        is a target (a whole multiple of the smallest value)."""
        g, out = self.graph, {}
        for pname, (default, targets) in edits.suggested_params(g, chosen).items():
            if pname not in PROMOTE:
                continue
            setting = {nid for nid in chosen if pname in g.nodes[nid].params}
            if {t.node for t in targets} == setting and \
                    isinstance(default, (int, float)) and not isinstance(default, bool):
                out[pname] = (default, targets)
        return out

    def make_units(self):
        outs = set(self.outputs.values())
        repeated = set(self.same) | set(self.same.values())
        for (owner, prefix), chosen in self.units().items():
            if outs & set(chosen) or not self.convex(set(chosen)):
                continue  # a model output keeps its name; a non-convex one would be a cycle
            if any(self.graph.nodes[n].shares or self.graph.sharers(n) or n in repeated
                   for n in chosen):
                continue  # weights shared with layers outside the unit, a model's later call
            frozen = self.thaw(chosen)
            try:
                made = edits.make_block(self.graph, chosen, "KerasUnit",
                                      instance=self.instance_id(prefix, set(chosen)))
                inner_ids = _inner_ids(chosen, prefix)
                block, params, ids = self.unit_type(made, inner_ids, self.promoted(chosen))
            except LayerloomError:  # not a block (ProjectError), or a type that would not fit
                self.freeze(frozen)
                continue
            self.apply(made, block, params, {nid: ids[nid] for nid in chosen}, owner, frozen)

    def thaw(self, chosen):
        """A selection all frozen (a frozen nested model's) is made a block of trainable
        layers whose instance is frozen, so units alike share a type and unfreezing the
        instance unfreezes them. Returns the ids unfrozen here."""
        g = self.graph
        if any(g.nodes[nid].trainable for nid in chosen):
            return []
        for nid in chosen:
            g.set_trainable(nid, True)
        return list(chosen)

    def freeze(self, ids):
        for nid in ids:
            self.graph.set_trainable(nid, False)

    # -- nested models --------------------------------------------------------------------
    def chosen(self, i):
        return [nid for nid in self.graph.nodes if self.owner.get(nid) == i and
                not getattr(self.graph.nodes[nid].layer, "host", False)]

    def parent(self, i):
        return next((j for j in range(i + 1, len(self.nested))
                     if self.nested[i].nodes <= self.nested[j].nodes), None)

    def make_models(self):
        for i, model in enumerate(self.nested):
            if i in self.done:
                continue
            chosen = self.chosen(i)
            parent = self.parent(i)
            # the later calls of this model, made instances sharing this one's where each is
            # wired as this one (else all stay flat, their layers sharing this call's)
            twins = [j for j in range(i + 1, len(self.nested))
                     if self.nested[j].twin_of is model]
            ok = bool(chosen) and self.convex(set(chosen))
            twin_sets = {j: self.chosen(j) for j in twins}
            if ok and twins:
                ok = all(self.twin_ports(chosen, twin_sets[j]) is not None for j in twins)
            cut = self.unshare(twin_sets.values(), set(chosen)) if ok and twins else {}
            outs = [k for k, nid in self.outputs.items() if nid in set(chosen)]
            made, frozen = None, self.thaw(chosen) if ok else []
            if ok:
                try:
                    made = edits.make_block(self.graph, chosen, self.type_name(model.name, "Model"),
                                          help=f"Keras model {model.name}",
                                          instance=self.instance_id(model.name, set(chosen)))
                except LayerloomError:
                    made = None
            if made is not None and outs and len(made.block.output_refs) != 1:
                made = None  # a block with several outputs cannot end the model
            if made is not None and twins and len(made.block.output_refs) != len(
                    {(s, p) for s, p in made.block.output_refs}):
                made = None
            if made is None:  # stays flat: its layers are its parent's
                self.freeze(frozen)
                for nid, owner in cut.items():
                    self.graph.set_shares(nid, owner)
                for nid in chosen:
                    self.owner[nid] = parent
                for j in twins:  # and so do its later calls', sharing this call's weights
                    self.done.add(j)
                    for nid in twin_sets[j]:
                        self.owner[nid] = self.parent(j)
                continue
            self.apply(made, made.block, made.params, {nid: nid for nid in chosen}, parent,
                       frozen)
            for k in outs:
                self.outputs[k] = made.instance
            for j in twins:
                self.done.add(j)
                self.twin(j, twin_sets[j], made, frozen)

    def twin_ports(self, first, later):
        """The sources the later call's nodes `later` read, as the first call's `first` read
        theirs ([(node, port)], by the first's reading order), or None where the later call is
        not the same layers (types, parameters, frozen, wiring inside) or is read or reads
        differently (then neither is made an instance)."""
        g, same, first_set, later_set = self.graph, self.same, set(first), set(later)
        if len(first) != len(later) or any(same.get(n) not in first_set for n in later) or \
                len({same[n] for n in later}) != len(later) or not self.convex(later_set):
            return None
        back = {same[n]: n for n in later}
        for nid in later:
            a, b = g.nodes[nid], g.nodes[same[nid]]
            if (a.type, a.params, a.trainable) != (b.type, b.params, b.trainable):
                return None
        inner = lambda ids, nid: sorted((e.src in ids, e.src if e.src in ids else None,  # noqa
                                         e.src_port, e.dst_port) for e in g.in_edges(nid))
        for nid in later:
            mine = [(i, same.get(s) if i else None, p, d) for i, s, p, d in
                    inner(later_set, nid)]
            if mine != inner(first_set, same[nid]):
                return None
        # the sources entering each: the first's k-th distinct source -> the later's
        sources, mine = [], []
        for nid in first:
            for e in g.in_edges(nid):
                if e.src not in first_set and (e.src, e.src_port) not in sources:
                    sources.append((e.src, e.src_port))
                    other = next(x for x in g.in_edges(back[nid]) if x.dst_port == e.dst_port)
                    mine.append((other.src, other.src_port))
        for nid in first:  # every later edge entering reads the matching source
            for e in g.in_edges(nid):
                if e.src not in first_set:
                    other = next(x for x in g.in_edges(back[nid]) if x.dst_port == e.dst_port)
                    if mine[sources.index((e.src, e.src_port))] != (other.src, other.src_port):
                        return None
        first_outs = {(n, e.src_port) for n in first for e in g.out_edges(n)
                      if e.dst not in first_set}
        for nid in later:
            edges = g.out_edges(nid)
            if not edges and g.out_edges(same[nid]):
                return None  # a model output inside the later call only
            if any(e.dst not in later_set and (same[nid], e.src_port) not in first_outs
                   for e in edges):
                return None  # read outside where the first call's is not
        if len(set(mine)) != len(mine):
            return None
        return mine

    def unshare(self, later_sets, first_set):
        """The later calls' layers no longer use the first call's weights (make_block refuses
        weights shared across a selection's border); returns {node: owner} to put back."""
        cut = {}
        for ids in later_sets:
            for nid in ids:
                owner = self.graph.nodes[nid].shares
                if owner in first_set:
                    cut[nid] = owner
                    self.graph.set_shares(nid, None)
        return cut

    def twin(self, j, later, made, frozen):
        """Replace the later call `j`'s nodes with an instance of made's block type that shares
        made's instance (wired as twin_ports says)."""
        g, model = self.graph, self.nested[j]
        block, src_refs = made.block, made.block.output_refs  # in the first call's ids
        order = {port: None for port in range(len(block.input_ids))}
        pairs = []  # (instance port, src, src port), by the block's inputs (twin_ports checked)
        for nid in later:
            for e in g.in_edges(nid):
                if e.src in set(later):
                    continue
                fid = self.same[nid]
                iedge = next(x for x in block.graph.in_edges(fid) if x.dst_port == e.dst_port)
                port = block.input_ids.index(iedge.src)
                if order[port] not in (None, (e.src, e.src_port)):
                    raise LayerloomError("a later call reads its inputs otherwise")
                order[port] = (e.src, e.src_port)
                pairs.append((port, e.src, e.src_port))
        outs = []
        for nid in later:
            for e in g.out_edges(nid):
                if e.dst not in set(later):
                    outs.append((src_refs.index((self.same[nid], e.src_port)), e.dst,
                                 e.dst_port))
        index = list(g.nodes).index(later[0])
        for nid in later:
            g.remove_node(nid)
            self.owner.pop(nid, None)
        inst = self.instance_id(f"{model.name}_call{model.call}", set(later))
        g.add_node(block.type_id, made.params, id=inst, index=index, trainable=not frozen,
                   shares=made.instance)
        for port, src, sp in sorted(set(pairs)):
            g.connect(src, sp, inst, port)
        for port, dst, dp in outs:
            g.connect(inst, port, dst, dp)
        self.owner[inst] = self.parent(j)
        self.same[inst] = made.instance
        for k, nid in list(self.outputs.items()):
            if nid in set(later):
                self.outputs[k] = inst

    # -- replacing a selection with an instance ---------------------------------------------
    def apply(self, made, block, params, inner_ids, owner, frozen=False):
        """Replace made.removed with one instance of `block` (inner ids: {node id: inner id}),
        wired as the selection was, in the place of its first node; frozen: the instance."""
        g, chosen = self.graph, set(made.removed)
        src_refs = made.block.output_refs  # in the selection's own ids
        entering = [(made.inputs.index((e.src, e.src_port)), e.src, e.src_port)
                    for nid in made.removed for e in g.in_edges(nid) if e.src not in chosen]
        leaving = [(src_refs.index((e.src, e.src_port)), e.dst, e.dst_port)
                   for nid in made.removed for e in g.out_edges(nid) if e.dst not in chosen]
        index = list(g.nodes).index(made.removed[0])
        if block.type_id not in g.blocks:
            g.define_block(block)
        for nid in made.removed:
            g.remove_node(nid)
            self.owner.pop(nid, None)
        inst = made.instance
        g.add_node(block.type_id, params, id=inst, index=index, trainable=not frozen)
        for port, src, sp in sorted(set(entering)):
            g.connect(src, sp, inst, port)
        for port, dst, dp in leaving:
            g.connect(inst, port, dst, dp)
        self.owner[inst] = owner
        prefixes = {f"{nid}/": f"{inst}{kit.SEP}{inner_ids[nid]}/" for nid in made.removed}
        self.weights = edits.rename_weights(self.weights, prefixes)


def _inner_ids(chosen, prefix):
    """{node id: inner id} of a unit: the rest of a named layer's name (conv2_block1_1_conv ->
    1_conv); an unnamed layer's Keras name less its counter (re_lu_2 -> re_lu), numbered in
    file order where the unit has several, so that units alike have the same inner ids."""
    out = {}
    for nid in chosen:
        named = unit_of(nid)
        if named and named[0] == prefix:
            out[nid] = named[1]
    for nid in chosen:
        if nid in out:
            continue
        base = re.sub(r"_\d+$", "", nid) or nid
        new, k = base, 2
        while new in out.values():
            new, k = f"{base}_{k}", k + 1
        out[nid] = new
    return out


def group(graph, weights, outputs, nested=()):
    """Regroup keras_import's flat `graph` in place: units and nested models (`nested`: Nested
    records in the order their calls finished) as block instances. Returns (weights renamed,
    outputs: {Keras output name: node id} with a nested model's output its instance)."""
    g = _Grouper(graph, weights, outputs, nested)
    g.make_units()
    g.make_models()
    return g.weights, g.outputs
