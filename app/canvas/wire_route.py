"""Where a wire runs on the canvas: the usual S-curve from an output port to an input port when
that curve passes no other node, else a path of horizontal and vertical runs around the nodes in
its way (a wire back to an earlier column, or one that skips a column with a node in its row).

Plain geometry on (x, y) tuples and (left, top, right, bottom) rectangles, without Qt, so that
it is tested on its own (tests/test_wire_route.py); app/canvas/canvas_items.py draws the result."""
import contextlib

STUB = 20      # how far a routed wire runs straight out of its port before it turns
CLEAR = 10     # the room a routed run keeps from a node's edge
BEND = 40      # a bend costs as much as this much length: fewer bends win over a little length
SAMPLES = 24   # points of the S-curve tested against the nodes
QUICK = 24     # while a node is dragged: the candidate paths tested before a wire is drawn as
# its S-curve (forward) or shortest path (backward) for that frame (see quick())
_budget = None


@contextlib.contextmanager
def quick():
    """Routes made inside test at most QUICK candidate paths each and skip the second, wider
    search: a dragged node's wires, routed on every mouse move, take a frame at most (they
    are routed in full when the drag ends)."""
    global _budget
    _budget = QUICK
    try:
        yield
    finally:
        _budget = None


def curve_controls(a, b):
    """The S-curve's two control points (the canvas draws the same cubic)."""
    dx = max(40.0, abs(b[0] - a[0]) / 2)
    return (a[0] + dx, a[1]), (b[0] - dx, b[1])


def curve_points(a, b, n=SAMPLES):
    (c1x, c1y), (c2x, c2y) = curve_controls(a, b)
    pts = []
    for i in range(1, n):
        t = i / n
        u = 1 - t
        w0, w1, w2, w3 = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
        pts.append((w0 * a[0] + w1 * c1x + w2 * c2x + w3 * b[0],
                    w0 * a[1] + w1 * c1y + w2 * c2y + w3 * b[1]))
    return pts


def _inside(p, r, m=0.0):
    return r[0] - m < p[0] < r[2] + m and r[1] - m < p[1] < r[3] + m


def curve_is_clear(a, b, rects, m=2.0):
    """True when the S-curve from a to b passes none of the rectangles."""
    x0, x1 = min(a[0], b[0]) - 60, max(a[0], b[0]) + 60
    y0, y1 = min(a[1], b[1]), max(a[1], b[1])
    near = [r for r in rects if r[2] > x0 and r[0] < x1 and r[3] > y0 - m and r[1] < y1 + m]
    return not any(_inside(p, r, m) for r in near for p in curve_points(a, b))


def _within(rects, points, m):
    """The rectangles that reach into the points' bounding box grown by m."""
    if not points:
        return []
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs) - m, max(xs) + m, min(ys) - m, max(ys) + m
    return [r for r in rects if r[2] > x0 and r[0] < x1 and r[3] > y0 and r[1] < y1]


def _clear(points, rects, src, dst, m):
    """No axis-parallel run of the path passes through a rectangle grown by m (the first and
    last runs leave their own node's edge: they are not tested against src and dst). Written
    out rather than a call per run and rectangle: it runs for every candidate path of every
    wire of a dragged node, each frame."""
    last = len(points) - 2
    for i in range(last + 1):
        (px, py), (qx, qy) = points[i], points[i + 1]
        if px == qx and py == qy:
            continue
        s = src if i == 0 else None
        d = dst if i == last else None
        if py == qy:  # horizontal
            lo, hi = (px, qx) if px < qx else (qx, px)
            for r in rects:
                if r[1] - m < py < r[3] + m and lo < r[2] + m and hi > r[0] - m \
                        and r is not s and r is not d:
                    return False
        else:
            lo, hi = (py, qy) if py < qy else (qy, py)
            for r in rects:
                if r[0] - m < px < r[2] + m and lo < r[3] + m and hi > r[1] - m \
                        and r is not s and r is not d:
                    return False
    return True


def _overlap(r, s):
    return r[0] < s[2] and r[2] > s[0] and r[1] < s[3] and r[3] > s[1]


def _on_line(u, v, w):
    """For three points on one horizontal or vertical line: 1 when v-w runs on in u-v's
    direction, -1 when it turns back; 0 when they are not on one line."""
    if u[0] == v[0] == w[0]:
        d = (v[1] - u[1]) * (w[1] - v[1])
    elif u[1] == v[1] == w[1]:
        d = (v[0] - u[0]) * (w[0] - v[0])
    else:
        return 0
    return (d > 0) - (d < 0)


def _turns_back(points):
    """A run followed by one in the opposite direction on the same line."""
    return any(_on_line(u, v, w) < 0 for u, v, w in zip(points, points[1:], points[2:]))


def _cost(points):
    length = sum(abs(q[0] - p[0]) + abs(q[1] - p[1]) for p, q in zip(points, points[1:]))
    bends = sum(1 for p, q, s in zip(points, points[1:], points[2:])
                if (p[0] == q[0]) != (q[0] == s[0]) and p != q and q != s)
    return length + BEND * bends


def _simplify(points):
    """Drops repeated points and the middle of three points that run on in one direction (a
    run that turns back on itself keeps its corner)."""
    out = []
    for p in points:
        if out and p == out[-1]:
            continue
        if len(out) >= 2 and _on_line(out[-2], out[-1], p) > 0:
            out[-1] = p
            continue
        out.append(p)
    return out


def route(a, b, rects, src=None, dst=None):
    """The points of a path from output port a to input port b around `rects` (every node's
    rectangle; src and dst are the two ends' own, by identity), or None when the S-curve is
    clear and should be drawn. A path leaves a to the right and enters b from the left. When
    no path is clear of every node, a backward wire takes the shortest path tried and a forward
    one the S-curve."""
    if src is not None and dst is not None and _overlap(src, dst):
        return None  # nodes on top of each other: no way around, the curve shows the link
    others = [r for r in rects if r is not src and r is not dst]
    forward = b[0] - a[0] >= 2 * STUB
    if forward and curve_is_clear(a, b, others):
        return None
    x1, x2 = a[0] + STUB, b[0] - STUB
    lo_x, hi_x = min(x1, x2), max(x1, x2)
    # nodes that could be in the way: those across the columns the wire spans
    span = [r for r in rects if r[2] + CLEAR > lo_x - STUB and r[0] - CLEAR < hi_x + STUB]
    direct = []
    if forward:
        # one vertical run, in a gap between nodes' columns
        xs = {round((x1 + x2) / 2)}
        edges = sorted({r[0] - CLEAR for r in span} | {r[2] + CLEAR for r in span})
        xs.update(x for x in edges if x1 <= x <= x2)
        bounds = sorted({r[0] for r in span} | {r[2] for r in span})
        xs.update(round((u + v) / 2) for u, v in zip(bounds, bounds[1:])
                  if v - u > 2 * CLEAR + 4 and x1 <= (u + v) / 2 <= x2)
        for x in xs:
            direct.append([a, (x, a[1]), (x, b[1]), b])
    # a lane above, below or between nodes: out of a, along the lane, into b
    lanes = {a[1], b[1]}
    for r in span:
        lanes.add(r[1] - CLEAR - 2)
        lanes.add(r[3] + CLEAR + 2)
    # and the middle of each gap between nodes' rows, so that a lane keeps off both rows
    ys = sorted({r[1] for r in span} | {r[3] for r in span})
    lanes.update(round((y0 + y1) / 2) for y0, y1 in zip(ys, ys[1:]) if y1 - y0 > 2 * CLEAR + 4)
    outs = {x1} | {r[2] + CLEAR + 2 for r in span if x1 < r[2] + CLEAR + 2 < x1 + 200}
    ins = {x2} | {r[0] - CLEAR - 2 for r in span if x2 - 200 < r[0] - CLEAR - 2 < x2}
    # lanes near the two ends first: with hundreds of nodes across the wire's columns (rows of
    # a wrapped layout) the lanes are many. A lane farther than BAND from both ends makes a
    # path at least `bound` long, so a clear one nearer and shorter than that is the best
    lo, hi = min(a[1], b[1]), max(a[1], b[1])
    bound = abs(b[0] - a[0]) + hi - lo + 2 * BAND
    near_lanes = {y for y in lanes if lo - BAND <= y <= hi + BAND}
    tried = _candidates(a, b, direct, near_lanes, outs, ins)
    best = _best(tried, rects, src, dst, span)
    if best is not None and best[0] + 0.5 < bound:
        return best[2]
    if _budget is not None:  # dragging: no wider search this frame
        return best[2] if best is not None else (
            tried[0][1] if tried and not forward else None)
    candidates = _candidates(a, b, direct, lanes, outs, ins)
    best = _best(candidates, rects, src, dst, span)
    if best is not None:
        return best[2]
    return candidates[0][1] if candidates and not forward else None


BAND = 300  # how far from a wire's ends its lanes are tried first


def _candidates(a, b, direct, lanes, outs, ins):
    """[(cost, points)] cheapest first: the paths with one vertical run (`direct`) and those
    out of a, along a lane, into b."""
    out = list(direct)
    for y in lanes:
        for xo in outs:
            for xi in ins:
                out.append([a, (xo, a[1]), (xo, y), (xi, y), (xi, b[1]), b])
    return sorted((_cost(c), c) for c in map(_simplify, out) if not _turns_back(c))


def _best(candidates, rects, src, dst, span):
    """(cost, room, points) of the cheapest clear candidate (the roomiest of those as cheap),
    or None."""
    # only the nodes within the candidates' reach can be in their way (a graph of hundreds of
    # nodes tested every candidate against every node: issue 30, item 4)
    near = _within(rects, [p for _, c in candidates for p in c], CLEAR)
    best = None
    for n, (cost, c) in enumerate(candidates):
        if best is not None and cost > best[0] + 0.5 or _budget is not None and n >= _budget:
            break
        if _clear(c, near, src, dst, CLEAR - 2):  # (most are blocked by a node soon)
            room = _room(c, _within(span, c, 60.0))  # (nodes farther do not count)
            if best is None or room > best[1]:
                best = (cost, room, c)
    return best


def _room(points, rects, most=60.0):
    """How far the path's middle runs keep from the nodes (up to `most`): of two equally short
    paths, the one in the middle of a gap is drawn."""
    room = most
    for p, q in zip(points[1:-2], points[2:-1]):
        for r in rects:
            if p[1] == q[1]:
                lo, hi = sorted((p[0], q[0]))
                if lo < r[2] and hi > r[0]:
                    room = min(room, max(r[1] - p[1], p[1] - r[3]))
            else:
                lo, hi = sorted((p[1], q[1]))
                if lo < r[3] and hi > r[1]:
                    room = min(room, max(r[0] - p[0], p[0] - r[2]))
    return room
