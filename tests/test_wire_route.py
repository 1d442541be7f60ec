"""Wires that do not run behind nodes (issue 19, item 12): app/canvas/wire_route.py's geometry."""
from layerloom.app.canvas.wire_route import curve_is_clear, curve_points, route

W, H = 170, 74


def node(x, y):
    return (x, y, x + W, y + H)


def out_port(r):
    return (r[2], r[1] + 36)


def in_port(r):
    return (r[0], r[1] + 36)


def crosses(points, rect, m=1.0):
    """True when the polyline passes inside rect (tested every 2 px)."""
    for (px, py), (qx, qy) in zip(points, points[1:]):
        n = max(1, int((abs(qx - px) + abs(qy - py)) / 2))
        for i in range(n + 1):
            x, y = px + (qx - px) * i / n, py + (qy - py) * i / n
            if rect[0] + m < x < rect[2] - m and rect[1] + m < y < rect[3] - m:
                return True
    return False


def check_path(points, a, b, rects):
    assert points[0] == a and points[-1] == b
    for p, q in zip(points, points[1:]):
        assert p[0] == q[0] or p[1] == q[1], "runs are horizontal or vertical"
    assert points[1][0] > a[0] and points[1][1] == a[1], "leaves its output port to the right"
    assert points[-2][0] < b[0] and points[-2][1] == b[1], "enters its input port from the left"
    for r in rects:
        assert not crosses(points, r), f"runs behind the node at {r}"


def test_a_clear_wire_keeps_its_curve():
    s, d = node(0, 0), node(260, 40)
    assert route(out_port(s), in_port(d), [s, d], s, d) is None


def test_a_wire_that_skips_a_column_goes_around_the_node_in_its_row():
    s, mid, d = node(0, 0), node(260, 0), node(520, 0)
    a, b = out_port(s), in_port(d)
    assert not curve_is_clear(a, b, [mid])
    pts = route(a, b, [s, mid, d], s, d)
    check_path(pts, a, b, [s, mid, d])


def test_a_wire_back_to_an_earlier_column_runs_in_a_lane_between_the_rows():
    # the CNN's snake: the first row's last node feeds the second row's first node
    row1 = [node(x, 0) for x in (0, 260, 520, 780)]
    row2 = [node(x, 150) for x in (0, 260, 520)]
    s, d = row1[-1], row2[0]
    a, b = out_port(s), in_port(d)
    pts = route(a, b, row1 + row2, s, d)
    check_path(pts, a, b, row1 + row2)
    lane = [p[1] for p in pts[2:-2]]
    assert all(H < y < 150 for y in lane), "in the gap between the rows, not around the outside"


def test_a_wire_back_into_the_same_row_goes_over_or_under_it():
    row = [node(x, 0) for x in (0, 260, 520)]
    s, d = row[-1], row[0]
    a, b = out_port(s), in_port(d)
    pts = route(a, b, row, s, d)
    check_path(pts, a, b, row)


def test_a_wire_between_stacked_nodes_finds_the_gap_column():
    # a column of three nodes between the two ends, with a gap between the 2nd and the 3rd
    s, d = node(0, 150), node(600, 150)
    col = [node(300, 0), node(300, 150), node(300, 300)]
    a, b = out_port(s), in_port(d)
    pts = route(a, b, [s, d] + col, s, d)
    check_path(pts, a, b, [s, d] + col)


def test_the_curve_samples_lie_between_its_ends():
    pts = curve_points((0, 0), (200, 100))
    assert all(0 <= x <= 200 and 0 <= y <= 100 for x, y in pts)


def test_no_path_turns_back_on_itself():
    # two nodes close together, the second left of the first: a lane at the port's own height
    # would run back through the first node
    s, d = node(100, 0), node(0, 90)
    a, b = out_port(s), in_port(d)
    pts = route(a, b, [s, d], s, d)
    check_path(pts, a, b, [s, d])


def test_nodes_on_top_of_each_other_keep_the_curve():
    s, d = node(0, 0), node(20, 20)
    assert route(out_port(s), in_port(d), [s, d], s, d) is None


def test_a_wire_with_no_nodes_given_is_drawn_as_its_curve():
    assert route((0, 0), (-100, 0), []) is None
