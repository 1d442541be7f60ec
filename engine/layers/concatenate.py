import numpy as np

from ..graph import fmt_shape
from ..params import Int
from ..registry import Layer, ShapeError, Variadic, register


def _axis(axis, rank):
    """Keras axis (counting the batch axis as 0) -> per-sample axis, or None if invalid."""
    a = axis - 1 if axis > 0 else axis + rank
    return a if 0 <= a < rank else None


@register
class Concatenate(Layer):
    type_id = "Concatenate"
    category = "Merging"
    help = "Joins its inputs along `axis` (Keras counting: -1 is the last axis, 0 the batch)."
    params = (Int("axis", -1, help="Axis to join along; not 0 (the batch axis)."),)
    inputs = Variadic("x", min=2)
    examples = (({}, [(3,), (5,)]), ({"axis": 1}, [(2, 3), (4, 3), (1, 3)]),
                ({"axis": -1}, [(2, 31), (2, 2)]))

    def output_shapes(self, p, in_shapes):
        rank = len(in_shapes[0])
        a = _axis(p["axis"], rank)
        if a is None:
            raise ShapeError(f"axis {p['axis']} is out of range for inputs of rank {rank + 1}"
                             " (axis 0 is the batch)")
        first = in_shapes[0]
        for i, sh in enumerate(in_shapes[1:], 1):
            if len(sh) != rank or sh[:a] + sh[a + 1:] != first[:a] + first[a + 1:]:
                raise ShapeError(f"inputs must match except on axis {p['axis']}; input 0 is "
                                 f"{fmt_shape(first)} but input {i} is {fmt_shape(sh)}")
        return [first[:a] + (sum(sh[a] for sh in in_shapes),) + first[a + 1:]]

    def _layout(self, s):
        """(rows, [(cols_i, offset_i)], total_cols) viewing each tensor as rows x cols."""
        a = _axis(s.params["axis"], len(s.x[0].shape))
        outer = s.n * int(np.prod(s.x[0].shape[:a]))
        widths = [int(np.prod(x.shape[a:])) for x in s.x]
        offs = np.cumsum([0] + widths[:-1]).tolist()
        return outer, list(zip(widths, offs)), sum(widths)

    def forward(self, ops, s):
        rows, parts, total = self._layout(s)
        for x, (w, off) in zip(s.x, parts):
            ops.copy2d(x.buf, w, 0, s.y[0].buf, total, off, rows, w)

    def backward(self, ops, s):
        rows, parts, total = self._layout(s)
        for dx, acc, (w, off) in zip(s.dx, s.acc, parts):
            if dx is not None:
                ops.copy2d(s.dy[0].buf, total, off, dx.buf, w, 0, rows, w, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [np.concatenate(xs, axis=p["axis"])]
