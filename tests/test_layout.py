"""The auto-layout of long graphs (issue 30, item 4): a deep model wraps into rows of the
window's shape instead of one row 177 nodes long; engine/core/layout.py, no Qt."""
import math

import pytest

from layerloom.core.graph import Graph
from layerloom.core.layout import GAP, READABLE, SHORT, STEPS, auto_layout, wrap_width

W, H = 170, 74  # a node's size on the canvas (two rows), for the overlap test


def chain(n, branch_every=0):
    """An Input and n - 1 Dense nodes in a chain; every branch_every-th step a residual pair
    (two Dense into an Add) instead of one Dense."""
    g = Graph()
    g.add_node("Input", {"shape": [8]}, id="in")
    prev, k = "in", 0
    while len(g.nodes) < n:
        k += 1
        if branch_every and k % branch_every == 0 and len(g.nodes) + 3 <= n:
            a, b = f"a{k}", f"b{k}"
            for x in (a, b):
                g.add_node("Dense", {"units": 8}, id=x)
                g.connect(prev, 0, x, 0)
            g.add_node("Add", {}, id=f"s{k}")
            g.connect(a, 0, f"s{k}", 0)
            g.connect(b, 0, f"s{k}", 1)
            prev = f"s{k}"
        else:
            g.add_node("Dense", {"units": 8}, id=f"d{k}")
            g.connect(prev, 0, f"d{k}", 0)
            prev = f"d{k}"
    return g


def box(pos):
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    return min(xs), min(ys), max(xs) + W, max(ys) + H


def rows(pos):
    """{node: row number}: rows are told apart by a vertical gap between their nodes."""
    tops = sorted({p[1] for p in pos.values()})
    row, out, last = 0, {}, None
    for y in tops:
        if last is not None and y - last > STEPS["right"][1]:
            row += 1
        out[y], last = row, y
    return {nid: out[p[1]] for nid, p in pos.items()}


@pytest.mark.parametrize("view", [(1200, 750), (1600, 900), (900, 900)])
def test_a_177_node_chain_lays_out_in_rows_of_the_windows_shape(view):
    g = chain(177)
    pos = auto_layout(g, view=view)
    left, top, right, bottom = box(pos)
    aspect = (right - left) / (bottom - top)
    want = view[0] / view[1]
    assert abs(math.log(aspect / want)) < math.log(1.35), (aspect, want)
    # each row is no wider than the whole: a snake, not one row
    assert right - left < 177 * STEPS["right"][0] / 4
    # no two nodes overlap
    rects = sorted((p[0], p[1], nid) for nid, p in pos.items())
    for i, (x, y, a) in enumerate(rects):
        for x2, y2, b in rects[i + 1:]:
            if x2 >= x + W:
                break
            assert abs(y2 - y) >= H, (a, b)
    # every edge goes forward in reading order: right along a row, or to a later row
    r = rows(pos)
    for e in g.edges:
        s, d = pos[e.src], pos[e.dst]
        assert r[e.dst] > r[e.src] or (r[e.dst] == r[e.src] and d[0] > s[0]), (e.src, e.dst)
    # and rows are filled in order: row k + 1 starts where row k ended
    assert sorted(set(r.values())) == list(range(max(r.values()) + 1))


def test_a_branching_model_wraps_with_its_branches_together():
    g = chain(200, branch_every=3)
    pos = auto_layout(g)
    r = rows(pos)
    for nid in g.nodes:
        if nid.startswith("a"):  # a residual pair stays in one row, one above the other
            b = "b" + nid[1:]
            assert r[nid] == r[b] and pos[nid][0] == pos[b][0] and pos[nid][1] != pos[b][1]
    for e in g.edges:
        s, d = pos[e.src], pos[e.dst]
        assert r[e.dst] > r[e.src] or (r[e.dst] == r[e.src] and d[0] > s[0])


def test_a_short_graph_stays_in_one_row_and_none_never_wraps():
    g = chain(6)
    assert len({p[1] for p in auto_layout(g).values()}) == 1
    # a small model in a small window too (the fashion CNN flowing down in a short window)
    g = chain(SHORT)
    assert len({p[1] for p in auto_layout(g, view=(400, 300)).values()}) == 1
    assert len({p[0] for p in auto_layout(g, flow="down", view=(400, 300)).values()}) == 1
    long = chain(60)
    assert len({p[1] for p in auto_layout(long, view=None).values()}) == 1
    assert len({p[1] for p in auto_layout(long).values()}) > 1


def test_flowing_down_the_rows_become_columns_of_the_windows_shape():
    g = chain(177)
    pos = auto_layout(g, flow="down", view=(1200, 750))
    left, top, right, bottom = box(pos)
    assert abs(math.log((right - left) / (bottom - top) / 1.6)) < math.log(1.5)
    for e in g.edges:  # down a column, or to a column further right
        s, d = pos[e.src], pos[e.dst]
        assert d[1] > s[1] or d[0] > s[0] + W


def test_wrap_width_fits_in_the_width_or_matches_the_shape():
    dx, dy = STEPS["right"]
    assert wrap_width([1] * 40, dx, dy, 40 * dx, 1.6) == 40
    assert wrap_width([1] * SHORT, dx, dy, 100, 1.6) == SHORT
    assert wrap_width([], dx, dy, 1000, 1.6) == 1
    k = wrap_width([1] * 100, dx, dy, 1200 / READABLE, 1.6)
    n_rows = math.ceil(100 / k)
    aspect = k * dx / ((n_rows * (1 + GAP) - GAP) * dy)
    # no other row length is closer to the shape
    for j in range(1, 101):
        m = math.ceil(100 / j)
        other = j * dx / ((m * (1 + GAP) - GAP) * dy)
        assert abs(math.log(aspect / 1.6)) <= abs(math.log(other / 1.6)) + 0.06, (k, j)
