"""Fine-tuning as a graph transform (issue 30, item 3), as Keras' transfer-learning guide does it
by hand: keep a trained network up to a cut node, freeze it, put a new head on it sized to the
new data, and train with a low learning rate; later unfreeze the top layers in one step.

    plan = fine_tune_graph(graph, "hidden", classes=3, optimizer=project.training["optimizer"])
    plan.graph        # a new Graph: the kept nodes (frozen), then the head
    kept_weights(weights, plan.kept)   # the trained weights the new graph keeps
    unfreeze_top(plan.graph, 2)        # later: the 2 top frozen layers with weights train too

The head: GlobalAveragePooling2D where the cut's output is image-like (height, width,
channels), Flatten where it has more than one axis otherwise, then Dropout 0.2 and Dense(classes,
softmax) with sparse categorical cross-entropy, or for a regression target Dense(units, linear)
(and a Reshape to a target of several axes) with mean squared error; the Dense's kernel starts at
zero (HEAD_INIT). The learning rate: a tenth of the model's. Pure: no Qt, no project file.
"""
from dataclasses import dataclass, field
from math import prod

from layerloom.core.errors import GraphError, ParamError, quote
from layerloom.core.graph import Graph

DROPOUT = 0.2
# the new head starts at zero: its first outputs are uniform (the mean, for a regression), not
# confident guesses from the kept layers' unnormalised features, which a low rate is slow to
# undo (MAE's and BEiT's fine-tuning start their heads near zero for the same reason)
HEAD_INIT = "zeros"
LR_FACTOR = 0.1  # a tenth of the learning rate the model was trained with (Adam's 1e-3: 1e-4)
# trailing layers of a classifier head, walked over from the output to find the default cut
HEAD_TAIL = ("Dropout", "Activation", "Softmax", "ReLU", "LeakyReLU")
HEAD_BEFORE = ("Dropout",)


@dataclass
class FineTunePlan:
    graph: Graph                 # the new graph: kept nodes (frozen) and the head
    cut: str                     # the node the head is put on
    kept: list                   # ids of the nodes kept from the old graph, file order
    frozen: list                 # ids frozen (kept nodes less the Inputs)
    head: list                   # ids of the new head's nodes, in order
    output: str                  # the head's last node: the new graph's output
    loss: dict                   # {output: {"name": ...}}
    metrics: list
    optimizer: dict              # {"name", "params"} with the low learning rate
    description: list = field(default_factory=list)  # the head, one line per node


def default_cut(graph):
    """The last node before the classifier head: from the graph's output back over trailing
    Dropout/activation nodes and the final Dense (with a Dropout before it), the node that
    feeds it. A graph with several outputs (or none) has no default: GraphError."""
    outs = graph.outputs()
    if len(outs) != 1:
        raise GraphError(f"the graph has {len(outs)} outputs ({', '.join(outs) or 'none'}); "
                         "name the node to cut at", "cut")
    node = outs[0]

    def before(nid):
        ins = graph.in_edges(nid)
        return ins[0].src if len(ins) == 1 else None

    n = node
    while n is not None and graph.nodes[n].type in HEAD_TAIL:
        n = before(n)
    if n is not None and graph.nodes[n].type == "Dense":
        n = before(n)
        while n is not None and graph.nodes[n].type in HEAD_BEFORE:
            n = before(n)
    if n is None or graph.nodes[n].layer.is_input:
        return node if not graph.nodes[node].layer.is_input else None
    return n


def low_learning_rate(optimizer, kinds=None):
    """The optimizer section with a fine-tuning learning rate: a tenth of the one it has (its
    default where it names none: Adam's 1e-3 gives 1e-4; a schedule: a tenth of its initial
    rate, as a constant). kinds: {name: Optimizer class} for the defaults."""
    opt = dict(optimizer or {"name": "adam"})
    name = opt.get("name", "adam")
    params = dict(opt.get("params") or {})
    lr = params.get("learning_rate")
    if isinstance(lr, dict):
        lr = (lr.get("params") or lr).get("initial_learning_rate")
    if lr is None and kinds and name in kinds:
        lr = next((p.default for p in kinds[name].params if p.name == "learning_rate"), None)
    if lr is None:
        lr = 1e-3
    params["learning_rate"] = float(lr) * LR_FACTOR
    return {"name": name, "params": params}


def _free_id(graph, base):
    i, nid = 1, base
    while nid in graph.nodes:
        i += 1
        nid = f"{base}_{i}"
    return nid


def fine_tune_graph(graph, cut=None, classes=None, target_shape=None, optimizer=None,
                    kinds=None, dropout=DROPOUT):
    """The FineTunePlan of `graph` cut at node `cut` (None: default_cut) for a classifier of
    `classes` classes, or a regression to per-sample `target_shape` (give one of the two)."""
    if (classes is None) == (target_shape is None):
        raise ParamError("give the number of classes or the regression target's shape",
                         "classes")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int)
                                or classes < 2):
        raise ParamError(f"expected at least 2 classes, got {quote(classes)}", "classes")
    if target_shape is not None:
        target_shape = tuple(target_shape)
        if not target_shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                   for d in target_shape):
            raise ParamError(f"expected a shape of positive sizes, got {quote(target_shape)}",
                             "target_shape")
    if cut is None:
        cut = default_cut(graph)
    if cut not in graph.nodes:
        raise GraphError(f"no node {quote(cut)}; the nodes are "
                         f"{', '.join(list(graph.nodes)[:20])}", "cut")
    if graph.nodes[cut].layer.is_input:
        raise GraphError(f"{quote(cut)} is an Input: cut at a layer (its layers and those "
                         "before it are kept, frozen)", "cut")
    shapes = graph.analysis().shapes.get(cut)
    if not shapes:
        raise GraphError(f"the output shape of {quote(cut)} is unknown (the graph has a "
                         "problem before it)", "cut")
    if len(shapes) != 1:
        raise GraphError(f"{quote(cut)} has {len(shapes)} outputs; cut at a node with one",
                         "cut")
    shape = tuple(shapes[0])
    keep = set(graph.upstream(cut)) | {cut}
    kept = [n for n in graph.nodes if n in keep]
    g = Graph(blocks=graph.blocks)
    for nid in kept:
        node = graph.nodes[nid]
        g.add_node(node.type, dict(node.params), id=nid,
                   trainable=bool(node.layer.is_input))
    for e in graph.edges:
        if e.src in keep and e.dst in keep:
            g.connect(e.src, e.src_port, e.dst, e.dst_port)
    head, lines, prev = [], [], cut

    def add(type_id, params, base, line):
        nonlocal prev
        nid = _free_id(g, base)
        g.add_node(type_id, params, id=nid)
        g.connect(prev, 0, nid, 0)
        head.append(nid)
        lines.append(f"{nid}: {line}")
        prev = nid
    if len(shape) == 3:
        add("GlobalAveragePooling2D", {}, "head_pool", "GlobalAveragePooling2D")
    elif len(shape) > 1:
        add("Flatten", {}, "head_flatten", "Flatten")
    if dropout:
        add("Dropout", {"rate": float(dropout)}, "head_dropout", f"Dropout {dropout:g}")
    if classes is not None:
        add("Dense", {"units": classes, "activation": "softmax",
                      "kernel_initializer": HEAD_INIT}, "head",
            f"Dense {classes}, softmax")
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    else:
        units = prod(target_shape)
        add("Dense", {"units": units, "activation": "linear", "kernel_initializer": HEAD_INIT},
            "head", f"Dense {units}, linear")
        if len(target_shape) > 1:
            add("Reshape", {"target_shape": list(target_shape)}, "head_reshape",
                f"Reshape {target_shape}")
        loss, metrics = "mean_squared_error", ["mean_absolute_error"]
    return FineTunePlan(g, cut, kept, g.frozen(), head, prev, {prev: {"name": loss}}, metrics,
                        low_learning_rate(optimizer, kinds), lines)


def kept_weights(weights, kept):
    """The weights ({"node/name": array}) of the nodes in `kept`."""
    keep = set(kept)
    return {k: v for k, v in (weights or {}).items() if k.split("/", 1)[0] in keep}


def top_frozen(graph, n):
    """The ids `unfreeze_top(graph, n)` would unfreeze, in file order."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ParamError(f"expected a positive number of layers, got {quote(n)}", "n")
    order = graph.topo_order()
    params = graph.analysis().params
    with_weights = [nid for nid in order if not graph.nodes[nid].trainable
                    and graph.nodes[nid].type != "BatchNormalization"
                    and params.get(nid) is not None and params[nid].total > 0]
    chosen = with_weights[-n:]
    if not chosen:
        return []
    first = order.index(chosen[0])
    # the weightless frozen layers among them (activations, pools) are unlocked too; a frozen
    # BatchNormalization stays in inference mode (Keras' advice when fine-tuning)
    pick = {nid for nid in order[first:] if not graph.nodes[nid].trainable
            and graph.nodes[nid].type != "BatchNormalization"
            and not graph.nodes[nid].layer.is_input}
    return [nid for nid in graph.nodes if nid in pick]


def unfreeze_top(graph, n):
    """Unfreeze the top `n` frozen layers that have weights (nearest the output; a frozen
    BatchNormalization is left frozen) and the weightless layers after the first of them.
    Returns the ids unfrozen, in file order."""
    ids = top_frozen(graph, n)
    for nid in ids:
        graph.set_trainable(nid, True)
    return ids
