"""ONNX local functions for blocks: the ONNX export (onnx_export.py) writes each block
instance as one call of a function of the domain `layerloom.blocks`, the block's layers its
body, so the file reads as the project does (Netron shows "ResBlock" nodes, opened on a
click). Instances whose bodies are the same (a block type with the same parameters and input
shapes) call one function; a repeat is in its instance's call. A function takes the tensors
its layers read from outside the block and their weights as inputs (ONNX functions hold no
initializers), and gives what is read after it.

The graph is the inlined one the export converts; `owners` names, for each ONNX node, the
inlined node it was made for (`res/conv_1`, `res/#2/conv_1`): the instance is the part before
the first "/", where the project's graph has a block instance of that id."""
from layerloom.core.blocks import SEP, BlockType

DOMAIN = "layerloom.blocks"


def group(model, graph, owners, opset):
    """Rewrite ModelProto `model` in place: each block instance of `graph` (the project's,
    with its instances) one call of a local function. `owners`: the inlined node id per node
    of model.graph.node, in order."""
    import onnx
    from onnx import helper
    nodes = list(model.graph.node)
    by_instance = {}
    for k, owner in enumerate(owners):
        inst = owner.split(SEP, 1)[0] if SEP in owner else None
        if inst is not None and inst in graph.nodes and \
                isinstance(graph.nodes[inst].layer, BlockType):
            by_instance.setdefault(inst, []).append(k)
    if not by_instance:
        return model
    graph_outputs = {o.name for o in model.graph.output}
    initializers = {t.name for t in model.graph.initializer}
    readers = {}
    for k, n in enumerate(nodes):
        for t in n.input:
            readers.setdefault(t, set()).add(k)
    functions, bodies, calls = {}, {}, {}
    for inst, ks in by_instance.items():
        mine = set(ks)
        made = [t for k in ks for t in nodes[k].output if t]
        made_set = set(made)
        ins, seen = [], set()
        for k in ks:
            for t in nodes[k].input:
                if t and t not in made_set and t not in seen:
                    seen.add(t)
                    ins.append(t)
        outs = [t for t in made if t in graph_outputs or readers.get(t, set()) - mine]
        if not outs:
            continue
        prefix = inst + SEP
        local = {}

        def name(t, kind, i=None):  # the body's own names: the same for every instance
            if t not in local:
                local[t] = (f"{kind}{i}" if i is not None else
                            (t[len(prefix):] if t.startswith(prefix) else t))
            return local[t]
        formal_in = [name(t, "w" if t in initializers else "x", i) for i, t in enumerate(ins)]
        body = []
        for k in ks:
            n = nodes[k]
            body.append(helper.make_node(
                n.op_type, [name(t, "") if t else "" for t in n.input],
                [name(t, "") if t else "" for t in n.output],
                name=n.name[len(prefix):] if n.name.startswith(prefix) else n.name,
                domain=n.domain or None, **{a.name: helper.get_attribute_value(a)
                                            for a in n.attribute}))
        formal_out = [local[t] for t in outs]
        key = (tuple(formal_in), tuple(formal_out),
               tuple(b.SerializeToString(deterministic=True) for b in body))
        fname = bodies.get(key)
        if fname is None:
            base = graph.nodes[inst].type
            fname, i = base, 1
            while fname in functions:
                i += 1
                fname = f"{base}_{i}"
            functions[fname] = helper.make_function(
                DOMAIN, fname, formal_in, formal_out, body,
                [helper.make_opsetid("", int(opset))],
                doc_string=f"Layerloom block {base}")
            bodies[key] = fname
        calls[inst] = (ks, helper.make_node(fname, ins, outs, name=inst, domain=DOMAIN))
    if not calls:
        return model
    first = {ks[0]: call for ks, call in calls.values()}
    dropped = {k for ks, _ in calls.values() for k in ks}
    kept = []
    for k, n in enumerate(nodes):
        if k in first:
            kept.append(first[k])
        elif k not in dropped:
            kept.append(n)
    # a call stands where its first node stood: what it reads is made before it only if each
    # of its inputs is made before that place; the nodes are put in a topological order
    del model.graph.node[:]
    model.graph.node.extend(_topological(kept, model))
    model.functions.extend(functions.values())
    model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    onnx.checker.check_model(model)
    return model


def _topological(nodes, model):
    """`nodes` in an order where each comes after the makers of what it reads (stable)."""
    available = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    left, out = list(nodes), []
    while left:
        rest = []
        for n in left:
            if all(not t or t in available for t in n.input):
                out.append(n)
                available.update(t for t in n.output if t)
            else:
                rest.append(n)
        if len(rest) == len(left):  # a cycle cannot be: the inlined graph was acyclic
            out.extend(rest)
            break
        left = rest
    return out
