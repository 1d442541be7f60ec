"""What a model's device buffers take at a batch size, known from the graph alone, before any
device is asked: the editor lists it under Problems before Run (an error where it exceeds the
device chosen), and the model refuses, before it allocates anything, what its device cannot
hold (engine/train/model.py)."""
from math import prod
from typing import NamedTuple

from layerloom.core.analysis import in_shapes
from layerloom.core.errors import GraphError


def size_text(nbytes):
    """12,204.0 GiB, 3.1 MiB, 512 bytes."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"


def known_in_shapes(graph, shapes, nid):
    """A node's input shapes, or None where one is unknown (the node counts nothing)."""
    if nid not in shapes:
        return None
    ins = in_shapes(graph, shapes, nid)
    return None if any(s is None for s in ins) else ins


def nodes_needing_grad(graph, shapes, order=None):
    """Gradients flow only where they reach a trainable weight: a node's output needs one when
    the node or anything upstream has trainable weights (a frozen node's are not). The first
    Dense after an Input then skips its dX GEMM; a frozen node with nothing trainable before it
    is not differentiated. order: the nodes upstream first (default: the graph's)."""
    needs = set()
    for nid in graph.topo_order() if order is None else order:
        ins = known_in_shapes(graph, shapes, nid)
        if ins is None:
            continue
        own = any(w.trainable for w in graph.nodes[nid].weights(ins))
        if own or any(e.src in needs for e in graph.in_edges(nid)):
            needs.add(nid)
    return needs


def discarded_gradients(graph, shapes, needs, nid):
    """The weights of a frozen node that a gradient flows through (to a trainable layer
    upstream) whose layer declares them trainable: its backward computes their gradients with
    dX, into buffers nobody reads (no update, no optimizer state)."""
    node = graph.nodes[nid]
    ins = known_in_shapes(graph, shapes, nid)
    if node.trainable or nid not in needs or ins is None:
        return set()
    return {s.name for s in node.layer.weights(node.params, ins) if s.trainable}


class NodeRun(NamedTuple):
    """What a node's passes run, for the scratch it declares (a convolution's columns): ops,
    the device's (conv_plan picks each pass's algorithm; None: no device known, the most
    memory); backward: its backward runs; dx: a gradient flows to its input."""
    ops: object
    backward: bool
    dx: bool


def gradient_flows(graph, needs, outputs, nid):
    """Whether node nid's outputs get a gradient buffer (engine/train/model.py): a node
    upstream of a trainable weight, or an output; never an Input."""
    return not graph.nodes[nid].layer.is_input and (nid in needs or nid in outputs)


def gradient_plan(graph, needs, outputs, shapes, order=None):
    """The gradient buffers of a training step, shared where their lives do not overlap:
    ({(node, port): slot}, [each slot's per-sample size in numbers]). In the backward pass
    (the nodes in reverse order) a node's output gradient lives from the backward of the
    first consumer that differentiates into it (or from the pass's start: a model output,
    whose gradient the loss writes, or one nobody writes, zeroed) to the node's own backward,
    which reads it last; a slot is reused by a gradient whose life starts after the slot's
    last one ended. Nodes whose shapes are unknown get none (memory_needed counts nothing
    for them)."""
    order = graph.topo_order() if order is None else order
    at = {nid: i for i, nid in enumerate(reversed(order))}  # the backward's order
    lives = []
    for nid in order:
        if nid not in shapes or not gradient_flows(graph, needs, outputs, nid):
            continue
        for port, shape in enumerate(shapes[nid]):
            writers = [at[e.dst] for e in graph.out_edges(nid) if e.src_port == port and
                       e.dst in needs and e.dst in at and graph.nodes[e.dst].layer.differentiable]
            start = -1 if (nid in outputs and port == 0) or not writers else min(writers)
            lives.append((start, at[nid], (nid, port), prod(shape)))
    slots, ends, plan = [], [], {}
    for start, end, key, size in sorted(lives, key=lambda life: (life[0], life[1])):
        free = [i for i, e in enumerate(ends) if e < start]
        if free:  # the smallest that holds it, else the largest (grown)
            fits = [i for i in free if slots[i] >= size]
            i = min(fits, key=slots.__getitem__) if fits else max(free, key=slots.__getitem__)
            slots[i] = max(slots[i], size)
            ends[i] = end
        else:
            i = len(slots)
            slots.append(size)
            ends.append(end)
        plan[key] = i
    return plan, slots


def node_scratch(graph, shapes, needs, nid, ops=None, outputs=None):
    """(kept, shared): the scratch node nid holds alone ({name: per-sample shape}) and what it
    shares with the model's other nodes ({name: (pool, per-sample shape)}: one buffer per pool
    at the largest size), for ops' device (None: no device known)."""
    node = graph.nodes[nid]
    layer, ins = node.layer, known_in_shapes(graph, shapes, nid)
    if not hasattr(layer, "shared_scratch"):
        return layer.scratch(node.params, ins), {}
    run = node_run(graph, needs, nid, ops, outputs)
    return layer.scratch(node.params, ins, run), layer.shared_scratch(node.params, ins, run)


def node_run(graph, needs, nid, ops=None, outputs=None):
    """Node nid's NodeRun on ops' device."""
    outputs = graph.outputs() if outputs is None else outputs
    return NodeRun(ops, nid in needs, graph.nodes[nid].layer.differentiable and any(
        gradient_flows(graph, needs, outputs, e.src) for e in graph.in_edges(nid)))


def memory_needed(graph, batch, shapes=None, needs=None, ops=None, fused=()):
    """(bytes in all, the largest single buffer, the node holding it) at `batch`: activations
    and the gradients that flow into them, weights, their gradients and two optimizer slots
    each (Adam's), the layers' scratch (a pool the nodes share once, at its largest), a fused
    loss's pre-activations, and a frozen node's discarded weight gradients. shapes: per-node
    output shapes (default: the graph's analysis; a node whose shape is unknown counts
    nothing); needs: nodes_needing_grad's set, where the caller has it; ops: the device's
    (its convolution plans: fewer columns), None for the most any device takes; fused: the
    nodes whose loss is fused with their activation (train/model.py)."""
    shapes = graph.analysis().shapes if shapes is None else shapes
    if needs is None:
        try:
            needs = nodes_needing_grad(graph, shapes)
        except GraphError:  # a cycle (the graph's own problem): counted as if all trained
            needs = set(graph.nodes)
    outputs = graph.outputs()
    total = largest = 0
    at = None
    pools = {}  # pool -> (bytes, node)
    for nid, node in graph.nodes.items():
        ins = known_in_shapes(graph, shapes, nid)
        if ins is None:
            continue
        layer = node.layer
        dropped = discarded_gradients(graph, shapes, needs, nid)
        sizes = [(4 * batch * prod(s), 0 if layer.alias_output else 1) for s in shapes[nid]]
        if nid in fused and not layer.pre_activation_is_input:
            sizes.append((4 * batch * prod(shapes[nid][0]), 1))
        for spec in node.weights(ins):  # a frozen node's: not trained
            trains = spec.trainable or spec.name in dropped
            if node.shares is not None:  # the owner's weights: only its gradients are its own
                sizes.append((4 * prod(spec.shape), 1 if trains else 0))
                continue
            sizes.append((4 * prod(spec.shape), 4 if spec.trainable else 2 if trains else 1))
        kept, shared = node_scratch(graph, shapes, needs, nid, ops, outputs)
        sizes += [(4 * batch * prod(s), 1) for s in kept.values()]
        for pool, s in shared.values():
            pools[pool] = max(pools.get(pool, (0, None)), (4 * batch * prod(s), nid),
                              key=lambda b: b[0])
        for nbytes, count in sizes:
            total += nbytes * count
            if count and nbytes > largest:
                largest, at = nbytes, nid
    for nbytes, nid in pools.values():
        total += nbytes
        if nbytes > largest:
            largest, at = nbytes, nid
    try:
        order = graph.topo_order()
    except GraphError:  # a cycle (the graph's own problem): planned in the nodes' order
        order = list(graph.nodes)
    plan, slots = gradient_plan(graph, needs, outputs, shapes, order)
    owner = {i: key[0] for key, i in plan.items()}
    for i, size in enumerate(slots):
        total += 4 * batch * size
        if 4 * batch * size > largest:
            largest, at = 4 * batch * size, owner[i]
    return total, largest, at


# the kernels index a buffer with 32-bit integers: no buffer of more numbers, on any device
MAX_BUFFER_BYTES = 4 * (2**31 - 1)
INDEX_LIMIT = (f"more than {size_text(MAX_BUFFER_BYTES)} (2^31 numbers, the most the kernels' "
               "32-bit indices reach)")


def memory_problem(graph, batch, have=None, one=None, device="the device"):
    """(message, node, is_error) where the model's memory is worth a line before Run, else
    None: an error where it exceeds `have` bytes (or one buffer exceeds `one`), a warning where
    it takes more than half of them, and, with no device known, a note from 4 GiB up."""
    top = graph
    try:
        graph = graph.flat()  # the engine runs a block inlined
    except GraphError:
        pass
    total, largest, at = memory_needed(graph, batch)
    if at is not None and at not in top.nodes:  # inside a block: the block's node
        at = at.split("/", 1)[0]
    need = (f"the model needs about {size_text(total)} of device memory at batch size {batch} "
            f"(its largest buffer {size_text(largest)}"
            + (f", in {at!r})" if at else ")"))
    index = (f"{need}; one buffer of {INDEX_LIMIT}: lower the batch size or make the layer "
             "smaller", at, True) if largest > MAX_BUFFER_BYTES else None
    if have is None:
        return index or ((need, at, False) if total >= 4 * 2**30 else None)
    has = f"{device} has {size_text(have)}" + (
        f" (at most {size_text(one)} in one buffer)" if one else "")
    if total > have or (one and largest > one):
        return f"{need}; {has}: make layers smaller or lower the batch size", at, True
    if index:
        return index
    if total > have / 2:
        return f"{need}: more than half of what {has}", at, False
    return None
