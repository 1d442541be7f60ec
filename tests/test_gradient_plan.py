"""The output gradients share device buffers where their lives in the backward pass do not
overlap (core/memory.gradient_plan, engine/train/model.py): no two gradients of one buffer are
alive at once, on random graphs; a model's weight gradients are the same numbers as with a
buffer per gradient, on a residual network with a fork, a multi-input merge and two outputs;
and the memory it saves on a chain."""
import numpy as np
from hypothesis import given, settings, strategies as st

from layerloom.core import memory
from layerloom.core.graph import Graph


def lives(graph, needs, outputs, shapes, order):
    """Each gradient's life in the backward's order, as gradient_plan defines it (written by
    the first consumer that differentiates into it, or from the start; read last by its own
    node's backward)."""
    at = {nid: i for i, nid in enumerate(reversed(order))}
    out = {}
    for nid in order:
        if not memory.gradient_flows(graph, needs, outputs, nid):
            continue
        for port in range(len(shapes[nid])):
            writers = [at[e.dst] for e in graph.out_edges(nid) if e.src_port == port and
                       e.dst in needs and graph.nodes[e.dst].layer.differentiable]
            start = -1 if (nid in outputs and port == 0) or not writers else min(writers)
            out[(nid, port)] = (start, at[nid])
    return out


@st.composite
def dags(draw):
    """Random graphs of Dense layers of assorted widths with forks and Add/Concatenate merges;
    some nodes frozen."""
    g = Graph()
    ids = [g.add_node("Input", {"shape": [4]}).id]
    widths = {ids[0]: 4}
    for i in range(draw(st.integers(2, 14))):
        kind = draw(st.sampled_from(["Dense", "Dense", "Concatenate", "Add"]))
        if kind == "Dense" or len(ids) < 2:
            src = draw(st.sampled_from(ids))
            units = draw(st.sampled_from([3, 4, 8, 16]))
            n = g.add_node("Dense", {"units": units}).id
            g.connect(src, 0, n, 0)
            g.nodes[n].trainable = draw(st.booleans()) or i == 0
            widths[n] = units
        else:
            a, b = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=2, unique=True))
            if kind == "Add" and widths[a] != widths[b]:
                continue
            n = g.add_node(kind, {}).id
            g.connect(a, 0, n, 0)
            g.connect(b, 0, n, 1)
            widths[n] = widths[a] + widths[b] if kind == "Concatenate" else widths[a]
        ids.append(n)
    return g


@settings(max_examples=150, deadline=None)
@given(dags())
def test_no_two_gradients_of_a_buffer_are_alive_at_once(g):
    shapes = g.analysis().shapes
    order = g.topo_order()
    needs = memory.nodes_needing_grad(g, shapes, order)
    outputs = g.outputs()
    plan, slots = memory.gradient_plan(g, needs, outputs, shapes, order)
    life = lives(g, needs, outputs, shapes, order)
    assert set(plan) == set(life)  # every gradient the model allocates has a buffer
    by_slot = {}
    for key, slot in plan.items():
        assert slots[slot] >= int(np.prod(shapes[key[0]][key[1]]))
        by_slot.setdefault(slot, []).append(life[key])
    for spans in by_slot.values():
        spans.sort()
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            assert e1 < s2, spans  # closed lives: one ends before the next starts


def residual(g):
    x = g.add_node("Input", {"shape": [8, 8, 3]}, id="x").id
    c1 = g.add_node("Conv2D", {"filters": 8, "kernel_size": [3, 3], "padding": "same",
                               "activation": "relu"}, id="c1").id
    c2 = g.add_node("Conv2D", {"filters": 8, "kernel_size": [3, 3], "padding": "same"},
                    id="c2").id
    bn = g.add_node("BatchNormalization", {}, id="bn").id
    add = g.add_node("Add", {}, id="add").id
    relu = g.add_node("Activation", {"activation": "relu"}, id="relu").id
    pool = g.add_node("GlobalAveragePooling2D", {}, id="pool").id
    side = g.add_node("Dense", {"units": 5, "activation": "tanh"}, id="side").id
    cat = g.add_node("Concatenate", {}, id="cat").id
    out = g.add_node("Dense", {"units": 4, "activation": "softmax"}, id="out").id
    aux = g.add_node("Dense", {"units": 2}, id="aux").id
    for s, t, port in ((x, c1, 0), (c1, c2, 0), (c2, bn, 0), (bn, add, 0), (c1, add, 1),
                       (add, relu, 0), (relu, pool, 0), (pool, side, 0), (pool, cat, 0),
                       (side, cat, 1), (cat, out, 0), (side, aux, 0)):
        g.connect(s, 0, t, port)
    return g


def weight_gradients(rt, monkeypatch, shared):
    from layerloom.train.model import Model
    if not shared:  # a buffer per gradient, as before the plan
        def one_each(graph, needs, outputs, shapes, order=None):
            keys = [(nid, p) for nid in (order or graph.topo_order())
                    if memory.gradient_flows(graph, needs, outputs, nid)
                    for p in range(len(shapes[nid]))]
            return ({k: i for i, k in enumerate(keys)},
                    [int(np.prod(shapes[k[0]][k[1]])) for k in keys])
        monkeypatch.setattr(memory, "gradient_plan", one_each)
    g = residual(Graph())
    m = Model(g, rt, batch_size=6, seed=3)
    rng = np.random.default_rng(0)
    m.load_inputs({"x": rng.standard_normal((6, 8, 8, 3)).astype(np.float32)})
    m.forward(6, training=True)
    for o in ("out", "aux"):
        t = m.output(o)
        rt.write(m.grad[(o, 0)].buf, rng.standard_normal((6,) + t.shape).astype(np.float32))
    m.backward(6)
    rt.finish()
    buffers = len({id(t.buf) for t in m.grad.values()})
    return {p.key: rt.read(p.dw.buf, int(np.prod(p.spec.shape)), p.spec.shape)
            for p in m.params if p.dw is not None}, buffers, len(m.grad)


def test_shared_gradient_buffers_give_the_same_weight_gradients(rt, monkeypatch):
    mine, buffers, grads = weight_gradients(rt, monkeypatch, shared=True)
    with monkeypatch.context() as mp:
        theirs, separate, _ = weight_gradients(rt, mp, shared=False)
    assert separate == grads and buffers < grads  # fewer buffers than gradients
    assert sorted(mine) == sorted(theirs)
    for k in mine:
        np.testing.assert_array_equal(mine[k], theirs[k], err_msg=k)
        assert np.abs(mine[k]).max() > 0, k  # every weight learns something


def test_a_chain_needs_two_gradient_buffers():
    """Input -> 10 Dense (64 wide) -> Dense 10: a gradient lives from its consumer's backward
    to its own, so two are alive at once at most: two buffers, taken in turn (the output's,
    10 wide, grown to 64 once its life ends), in place of eleven."""
    g = Graph()
    prev = g.add_node("Input", {"shape": [32]}).id
    for i in range(10):
        n = g.add_node("Dense", {"units": 64}).id
        g.connect(prev, 0, n, 0)
        prev = n
    out = g.add_node("Dense", {"units": 10}).id
    g.connect(prev, 0, out, 0)
    shapes = g.analysis().shapes
    needs = memory.nodes_needing_grad(g, shapes)
    plan, slots = memory.gradient_plan(g, needs, g.outputs(), shapes)
    assert len(plan) == 11 and slots == [64, 64]
    assert plan[(out, 0)] == 0 and plan[(prev, 0)] == 1
    assert memory_needed_grads(g, 32) == 4 * 32 * 128


def memory_needed_grads(g, batch):
    """What memory_needed counts for the gradients: its total less everything else."""
    shapes = g.analysis().shapes
    acts = sum(4 * batch * int(np.prod(s)) for nid in g.nodes for s in shapes[nid])
    weights = sum(4 * int(np.prod(w.shape)) * 4 for nid in g.nodes
                  for w in g.nodes[nid].weights([shapes[e.src][e.src_port]
                                                 for e in g.in_edges(nid)]))
    return memory.memory_needed(g, batch)[0] - acts - weights
