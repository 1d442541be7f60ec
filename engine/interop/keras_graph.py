"""The graph part of the Keras script (keras_code.py): a project's graph as the lines of
build_layers(), layer by layer through each layer's declared Keras form (keras_out_layers.py),
each Keras layer named by its node id; a project with blocks inlined first, its layers named
by their paths with "__" (Keras refuses "/")."""
import copy
import os
from dataclasses import dataclass, field

from layerloom.core.errors import DataError, ProjectError, quote
from layerloom.project import loom
from layerloom.interop import keras_out_layers as kl


@dataclass
class KNode:
    id: str
    type: str
    params: dict
    layer: object
    x: list            # Python names of the input tensors
    out: list          # Python names of the output tensors, one per port
    layer_takes_list: bool = field(default=False)
    in_shapes: list = field(default_factory=list)  # per-sample shapes of the inputs
    classes: dict = field(default_factory=dict)  # Keras classes the script defines for it



# -- the graph ---------------------------------------------------------------------------------
KERAS_SEP = "__"  # between a block instance's name and its layer's: Keras refuses "/"


def keras_ready(project, weights=None):
    """(project, weights) with the blocks inlined and the inlined layers' ids as Keras takes a
    layer's name ("resblock_1/conv_1" is "resblock_1__conv_1"); the weights' keys to match."""
    project = loom.flat(project)
    g = project.graph
    if not any("/" in nid for nid in g.nodes):
        return project, weights
    from layerloom.core.graph import Graph
    ids = {nid: nid.replace("/", KERAS_SEP) for nid in g.nodes}
    if len(set(ids.values())) != len(ids):
        clash = next(n for n in ids if list(ids.values()).count(ids[n]) > 1)
        raise ProjectError(f"the layer {quote(clash)} of a block would have the Keras name "
                           f"{quote(ids[clash])}, which another layer has; rename one")
    out = Graph()
    for nid, n in g.nodes.items():
        out.add_node(n.type, n.params, id=ids[nid], trainable=n.trainable,
                     shares=None if n.shares is None else ids.get(n.shares, n.shares))
    for e in g.edges:
        out.connect(ids[e.src], e.src_port, ids[e.dst], e.dst_port)
    renamed = copy.copy(project)
    renamed.graph = out
    if weights is not None:
        weights = {f"{ids.get(k.rsplit('/', 1)[0], k.rsplit('/', 1)[0])}/{k.rsplit('/', 1)[1]}": v
                   for k, v in weights.items()}
    return renamed, weights


def _check(project):
    g = project.graph
    problems = g.validate()
    if problems:
        raise ProjectError(str(problems[0]), problems=problems)
    return g


def _normalization(project):
    from layerloom.interop.onnx_export import input_normalization
    return {nid: {"shift": [float(v) for v in s["shift"]], "scale": [float(v) for v in
                                                                     s["scale"]]}
            for nid, s in input_normalization(project).items() if s}


def input_lines(g, shapes, names, stats, lines, tensors):
    """Append a keras.Input line per Input of g to `lines` (then its Normalization, where it
    has fitted statistics) and its tensor to `tensors` ({(id, 0): python name}); returns
    {Input id: the keras.Input's python name}."""
    in_names = {}
    for nid in g.inputs():
        v = names.make(nid)
        in_names[nid] = v
        shape = tuple(int(d) for d in shapes[nid][0])
        dtype = g.nodes[nid].params.get("dtype", "float32")
        lines.append(f"{v} = keras.Input(shape={kl.fmt(shape)}, name={nid!r}"
                     + (f", dtype={dtype!r})" if dtype != "float32" else ")"))
        if nid in stats:
            nv = names.make(f"{nid}_normalized")
            lines.append(f"{nv} = normalization({nid!r})({v})  # (x - shift) * scale, "
                         "as Layerloom's predict")
            tensors[(nid, 0)] = nv
        else:
            tensors[(nid, 0)] = v
    return in_names


def graph_lines(project):
    """(lines of build_layers()'s body, {node id: python name}, KERAS_WEIGHTS, {class name:
    module-level source of a Keras class the lines use})."""
    g = _check(project)
    shapes = g.analysis().shapes
    names = kl.Names()
    tensors, lines, weights, classes = {}, [], {}, {}
    shared = {}  # owner id -> the Python name of its layer object (shared weights)
    owners = {n.shares for n in g.nodes.values() if n.shares is not None}
    stats = _normalization(project)
    ins = g.inputs()
    in_names = input_lines(g, shapes, names, stats, lines, tensors)
    for nid in g.topo_order():
        node = g.nodes[nid]
        if node.layer.is_input:
            continue
        convert = kl.CONVERTERS.get(node.type)
        if convert is None:
            raise DataError(f"{node.type} layer {quote(nid)}: no Keras form is written for this "
                            "layer type", f"graph.nodes.{nid}.type")
        edges = g.in_edges(nid)
        ports = node.layer.output_names(node.params)
        base = names.make(nid)
        out = [base] + [names.make(f"{nid}_{p}") for p in ports[1:]]
        in_shapes = [shapes[e.src][e.src_port] for e in edges]
        n = KNode(nid, node.type, host_params(project, nid), node.layer,
                  [tensors[(e.src, e.src_port)] for e in edges], out, in_shapes=in_shapes)
        made = convert(n)
        owner = node.shares or (nid if nid in owners else None)
        if owner is not None:  # one layer object, called by each node that uses its weights
            made = _shared_call(n, made, owner, shared, names)
        lines.extend(made)
        classes.update(n.classes)
        for port, t in enumerate(out):
            tensors[(nid, port)] = t
        specs = node.layer.weights(node.params, in_shapes)
        if specs and node.shares is None:  # a sharer's weights are its owner's layer's
            weights[nid] = kl.keras_weight_names(node.type, specs, node.params)
    outs = g.outputs()
    if len(ins) == 1:
        inputs = in_names[ins[0]]
    else:
        inputs = "{" + ", ".join(f"{nid!r}: {in_names[nid]}" for nid in ins) + "}"
    if len(outs) == 1:
        outputs = tensors[(outs[0], 0)]
    else:
        outputs = "{" + ", ".join(f"{nid!r}: {tensors[(nid, 0)]}" for nid in outs) + "}"
    model = (f"keras.Model(inputs={inputs}, outputs={outputs}, "
             f"name={_model_name(project)!r})")
    frozen = tuple(nid for nid in g.frozen() if not g.nodes[nid].layer.is_input
                   and g.nodes[nid].shares is None)  # a sharer is its owner's layer
    if frozen:  # frozen in Layerloom (a BatchNormalization then runs in inference mode)
        lines += [f"model = {model}", f"for name in {frozen!r}:",
                  "    model.get_layer(name).trainable = False", "return model"]
    else:
        lines.append(f"return {model}")
    return lines, stats, weights, classes


def _shared_call(n, made, owner, shared, names):
    """The lines of node `n` calling the layer object of `owner` (Keras' layer called twice:
    shared weights): the layer is made once, as a variable named by the owner and carrying
    its name, at the first of its nodes met; each node then calls it."""
    head = f"{n.out[0]} = "
    args = ", ".join(n.x)
    suffix = next((c for c in (f"({args})", f"([{args}])") if len(made) == 1
                   and made[0].startswith(head) and made[0].endswith(c)), None)
    if suffix is None or len(n.out) != 1:
        raise DataError(f"{n.type} layer {quote(n.id)}: its weights are shared, which its "
                        "Keras form cannot write (one layer object called twice)",
                        f"graph.nodes.{n.id}.shares")
    lines = []
    if owner not in shared:
        ctor = made[0][len(head):-len(suffix)]
        if n.id != owner:  # the same parameters; the layer carries the owner's name
            ctor = ctor.replace(f"name={n.id!r}", f"name={owner!r}")
        shared[owner] = names.make(f"{owner}_layer")
        lines.append(f"{shared[owner]} = {ctor}  # used by every node sharing its weights")
    lines.append(f"{head}{shared[owner]}{suffix}")
    return lines


def host_params(project, nid):
    """A node's parameters for its Keras layer: a host layer's (text, layers/text.py) with the
    vocabulary training adapted (dataset.fitted.vocabulary) where none is given."""
    node = project.graph.nodes[nid]
    if not getattr(node.layer, "host", False) or node.params.get("vocabulary") or \
            not node.layer.adapts:
        return node.params
    vocab = (((project.dataset or {}).get("fitted") or {}).get("vocabulary") or {}).get(nid)
    if not vocab:
        raise DataError(f"{node.type} layer {quote(nid)} has no vocabulary adapted by training; "
                        "export the trained.loom that training wrote", "dataset.fitted")
    return {**node.params, "vocabulary": list(vocab)}


def _model_name(project):
    import re
    path = project.path
    base = os.path.splitext(os.path.basename(path))[0] if path else "layerloom"
    return re.sub(r"\W", "_", base) or "layerloom"


def _indent(lines):
    return "".join(f"    {line}\n" for line in lines)
