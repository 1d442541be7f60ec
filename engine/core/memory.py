"""What a model's device buffers take at a batch size, known from the graph alone, before any
device is asked: the editor lists it under Problems before Run (an error where it exceeds the
device chosen), and the model refuses, before it allocates anything, what its device cannot
hold (engine/train/model.py)."""
from math import prod

from layerloom.core.analysis import in_shapes


def size_text(nbytes):
    """12,204.0 GiB, 3.1 MiB, 512 bytes."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} bytes"


def memory_needed(graph, batch, shapes=None, discard=None):
    """(bytes in all, the largest single buffer, the node holding it) at `batch`: activations
    and their gradients, weights, their gradients and two optimizer slots each (Adam's), the
    layers' scratch. shapes: per-node output shapes (default: the graph's analysis; a node
    whose shape is unknown counts nothing); discard(node id): the names of a frozen node's
    weights whose gradients are computed and dropped (one buffer more each)."""
    shapes = graph.analysis().shapes if shapes is None else shapes
    total = largest = 0
    at = None
    for nid, node in graph.nodes.items():
        if nid not in shapes:
            continue
        layer = node.layer
        ins = in_shapes(graph, shapes, nid)
        if any(s is None for s in ins):
            continue
        dropped = discard(nid) if discard is not None else ()
        sizes = [] if layer.alias_output else [
            (4 * batch * prod(s), 1 if layer.is_input else 2) for s in shapes[nid]]
        for spec in node.weights(ins):  # a frozen node's: not trained
            trains = spec.trainable or spec.name in dropped
            sizes.append((4 * prod(spec.shape), 4 if spec.trainable else 2 if trains else 1))
        sizes += [(4 * batch * prod(s), 1) for s in layer.scratch(node.params, ins).values()]
        for nbytes, count in sizes:
            total += nbytes * count
            if nbytes > largest:
                largest, at = nbytes, nid
    return total, largest, at


def memory_problem(graph, batch, have=None, one=None, device="the device"):
    """(message, node, is_error) where the model's memory is worth a line before Run, else
    None: an error where it exceeds `have` bytes (or one buffer exceeds `one`), a warning where
    it takes more than half of them, and, with no device known, a note from 4 GiB up."""
    total, largest, at = memory_needed(graph, batch)
    need = (f"the model needs about {size_text(total)} of device memory at batch size {batch} "
            f"(its largest buffer {size_text(largest)}"
            + (f", in {at!r})" if at else ")"))
    if have is None:
        return (need, at, False) if total >= 4 * 2**30 else None
    has = f"{device} has {size_text(have)}" + (
        f" (at most {size_text(one)} in one buffer)" if one else "")
    if total > have or (one and largest > one):
        return f"{need}; {has}: make layers smaller or lower the batch size", at, True
    if total > have / 2:
        return f"{need}: more than half of what {has}", at, False
    return None
