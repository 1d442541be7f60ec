"""GroupNormalization and UnitNormalization (Keras' names and defaults), on the grouped
normalisation of layers/normalization.py: GroupNormalization views each sample as rows of
columns, its groups runs of columns (gn_* kernels); UnitNormalization walks its groups as
constants (_Grouped)."""
import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Int
from layerloom.core.registry import KerasForm, OnnxForm, ShapeError, TorchForm, register
from layerloom.layers.kit import weight_params
from layerloom.layers.normalization import (
    Axes, _Grouped, _affine_onnx, _affine_order, _affine_torch_forward, _affine_torch_init,
    _affine_weights, _axes_plan, _broadcast, _moments_onnx, _norm_params, _outside,
    _sample_axes, _standardise, _torch_dims, _wbuf)


# -- GroupNormalization ------------------------------------------------------------------------
def _gn_layout(p, shape):
    """(A, G, B, c, inner): each sample as (A, groups, B) with the group axis where the
    channels were (channel axis c of the sample, `inner` values after it)."""
    rank = len(shape)
    c = _sample_axes([p["axis"]], shape)[0]
    C = shape[c]
    G = C if p["groups"] == -1 else p["groups"]
    if G < 1:
        raise ShapeError(f"groups {p['groups']}: a positive number of groups, or -1 (one per "
                         "channel)")
    if C % G:
        raise ShapeError(f"groups {G} does not divide the {C} channels of input "
                         f"{fmt_shape(shape)}")
    inner = int(np.prod(shape[c + 1:])) if c + 1 < rank else 1
    return int(np.prod(shape[:c])), G, C // G * inner, c, inner


def _group_norm_onnx(b, n):
    """(N, A, G, B) by Reshape, standardised over axes 1 and 3, reshaped back, gamma and beta on
    the channel axis."""
    p, shape = n.params, n.in_shapes[0]
    A, G, B, c, _ = _gn_layout(p, shape)
    y = b.op("Reshape", [n.x[0], b.ints([0, A, G, B])])
    y = _moments_onnx(b, y, [1, 3], p["epsilon"])
    y = b.op("Reshape", [y, b.ints([0] + list(shape))])
    return [_affine_onnx(b, n, y, (c,))]


def _group_norm_torch(t, n):
    p, shape = n.params, n.in_shapes[0]
    A, G, B, c, _ = _gn_layout(p, shape)
    init, weights = _affine_torch_init(t, n, (shape[c],))
    x, o = n.x[0], n.out
    fwd = [f"{o} = {x}.reshape(-1, {A}, {G}, {B})",
           f"{o} = {o} - {o}.mean(dim=(1, 3), keepdim=True)",
           f"{o} = ({o} / torch.sqrt(({o} * {o}).mean(dim=(1, 3), keepdim=True) + "
           f"{p['epsilon']!r})).reshape({x}.shape)"] + _affine_torch_forward(n, o, (c,))
    return init, fwd, weights


def _group_norm_keras_in(o, shapes):
    for k in ("beta", "gamma"):
        o.must(f"{k}_constraint", None)
    return {"groups": o.get("groups", 32), "axis": o.get("axis", -1),
            "epsilon": o.floats("epsilon", 1e-3), "center": o.get("center", True),
            "scale": o.get("scale", True), **o.weight_params("gamma", "beta")}


@register
class GroupNormalization(_Grouped):
    type_id = "GroupNormalization"
    help = ("Splits the channels into groups and normalises each sample's groups, then scales "
            "and shifts each channel.")
    params = (Int("groups", 32, min=-1, help="Number of groups; they divide the channels; -1: "
                                             "one per channel (instance normalisation)."),
              Int("axis", -1, help="Channel axis (-1: the last); not the batch axis 0."),
              ) + _norm_params(1e-3) + weight_params("gamma", "ones") + weight_params("beta",
                                                                                     "zeros")
    headline = ("groups",)
    examples = (({"groups": 2}, [(3, 4)]), ({"groups": -1, "epsilon": 1e-5}, [(2, 2, 3)]),
                ({"groups": 1, "center": False}, [(5,)]),
                ({"groups": 3, "axis": 1, "scale": False}, [(6, 2)]),
                ({"groups": 2, "beta_initializer": "ones"}, [(2, 2, 4)]))

    onnx_form = OnnxForm(_group_norm_onnx, "Reshape, ReduceMean, Sub, Mul, ReduceMean, Add, "
                         "Sqrt, Div, Reshape, Mul (gamma), Add (beta)")
    torch_form = TorchForm(_group_norm_torch)
    keras_form = KerasForm("GroupNormalization", ("groups", "axis", "epsilon", "center",
                                                  "scale"), weights=("gamma", "beta"),
                           read=_group_norm_keras_in, weight_order=_affine_order)

    def groups(self, p, shape):
        _, G, _, c, _ = _gn_layout(p, shape)
        return G, shape[c]

    def plan(self, p, shape):
        _, G, _, c, _ = _gn_layout(p, shape)
        channel = np.indices(shape)[c].ravel()
        return channel // (shape[c] // G), channel

    def weights(self, p, in_shapes):
        _, _, _, c, _ = _gn_layout(p, in_shapes[0])
        return _affine_weights(p, in_shapes[0][c])

    # Over the last axis (Keras' default) its own kernels, which need no member lists;
    # over another axis the grouped_norm_* kernels (_Grouped)
    def constants(self, p, in_shapes):
        return {} if _gn_layout(p, in_shapes[0])[4] == 1 else super().constants(p, in_shapes)

    def forward(self, ops, s):
        A, G, CW, _, inner = _gn_layout(s.params, s.x[0].shape)
        if inner != 1:
            self.grouped_forward(ops, s)
            return
        ops.group_norm_forward(s.x[0].buf, s.y[0].buf, _wbuf(s.w, "gamma"), _wbuf(s.w, "beta"),
                               s.scratch["mean"].buf, s.scratch["rstd"].buf, s.n, A, G * CW, G,
                               s.params["epsilon"])

    def backward(self, ops, s):
        A, G, CW, _, inner = _gn_layout(s.params, s.x[0].shape)
        if inner != 1:
            self.grouped_backward(ops, s)
            return
        dx = s.dx[0].buf if s.dx[0] is not None else None
        if dx is None and not s.dw:
            return
        ops.group_norm_backward(s.x[0].buf, s.dy[0].buf, _wbuf(s.w, "gamma"),
                                s.scratch["mean"].buf, s.scratch["rstd"].buf, s.n, A, G * CW,
                                G, dx=dx, dgamma=_wbuf(s.dw, "gamma"), dbeta=_wbuf(s.dw, "beta"),
                                accumulate=dx is not None and s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x, shape = xs[0], xs[0].shape[1:]
        A, G, B, c, _ = _gn_layout(p, shape)
        y = _standardise(x.reshape(len(x), A, G, B), (1, 3), p["epsilon"]).reshape(x.shape)
        if p["scale"]:
            y = y * _broadcast(ws["gamma"], shape, (c,))
        if p["center"]:
            y = y + _broadcast(ws["beta"], shape, (c,))
        return [y]


# -- UnitNormalization -------------------------------------------------------------------------
def _unit_norm_onnx(b, n):
    """x / max(sqrt(sum(x^2)), 1e-12), which is Keras' x * min(1 / sqrt(sum(x^2)), 1e12)."""
    axes = [a + 1 for a in _sample_axes(n.params["axis"], n.in_shapes[0])]
    ss = b.reduce("ReduceSum", b.op("Mul", [n.x[0], n.x[0]]), axes, 1)
    return [b.op("Div", [n.x[0], b.op("Max", [b.op("Sqrt", [ss]),
                                              b.const(np.float32(1e-12))])])]


def _unit_norm_torch(t, n):
    dims = _torch_dims(_sample_axes(n.params["axis"], n.in_shapes[0]))
    x = n.x[0]
    return [], [f"{n.out} = {x} * torch.clamp(torch.rsqrt(({x} * {x}).sum(dim={dims!r}, "
                f"keepdim=True)), max=1e12)"], {}


@register
class UnitNormalization(_Grouped):
    type_id = "UnitNormalization"
    help = "Scales each sample to length 1 (L2 norm) over its last axis or the axes given."
    params = (Axes("axis", (-1,), help="Axes of each vector: -1 (the last) or a list such as "
                                       "[1, 2]; not the batch axis 0."),)
    unit = True
    examples = (({}, [(5,)]), ({"axis": [1, 2]}, [(2, 3)]), ({"axis": 1}, [(3, 2, 2)]),
                ({"axis": -1}, [(2, 33)]))

    onnx_form = OnnxForm(_unit_norm_onnx, "Mul, ReduceSum, Sqrt, Max (1e-12), Div")
    torch_form = TorchForm(_unit_norm_torch)
    keras_form = KerasForm("UnitNormalization", ("axis",))

    def groups(self, p, shape):
        return _outside(shape, _sample_axes(p["axis"], shape)), 1

    def plan(self, p, shape):
        grp, _ = _axes_plan(shape, _sample_axes(p["axis"], shape))
        return grp, np.zeros_like(grp)

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        axes = tuple(a + 1 for a in _sample_axes(p["axis"], x.shape[1:]))
        ss = (x * x).sum(axes, keepdims=True)
        with np.errstate(divide="ignore"):
            inv = np.minimum(1.0 / np.sqrt(ss), 1e12)
        return [x * inv]
