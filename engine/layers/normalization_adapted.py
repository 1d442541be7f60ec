"""Keras' Normalization preprocessing layer: the mean and variance adapted on the training
rows before the first epoch (or given), (x - mean) / sqrt(variance) over the kept axes."""
import numpy as np

from layerloom.core.params import Bool
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, ShapeError, TorchForm,
                                     WeightSpec, register)
from layerloom.layers.normalization import Axes, _axes_plan, _broadcast, _sample_axes


# -- Normalization (Keras' preprocessing layer) --------------------------------------------------
def _keep(p, shape):
    """The per-sample axes Normalization keeps a statistic along (Keras' axis)."""
    return _sample_axes(p["axis"], shape)


def _stats_shape(p, shape):
    return tuple(shape[a] for a in _keep(p, shape))


def _stats_scale(variance):
    """Keras' max(sqrt(variance), 1e-7), a negative variance (no data gives one) taken as 0."""
    return np.maximum(np.sqrt(np.maximum(variance, 0.0)), 1e-7)


def _normalization_onnx(b, n):
    shape, keep = n.in_shapes[0], _keep(n.params, n.in_shapes[0])
    mean = b.const(_broadcast(n.w["mean"], shape, keep), f"{n.id}/mean")
    scale = b.const(_broadcast(_stats_scale(n.w["variance"].astype(np.float64)), shape, keep),
                    f"{n.id}/scale")
    if n.params["invert"]:
        return [b.op("Add", [b.op("Mul", [n.x[0], scale]), mean])]
    return [b.op("Div", [b.op("Sub", [n.x[0], mean]), scale])]


def _normalization_torch(t, n):
    shape, s, x = n.in_shapes[0], n.self, n.x[0]
    keep = _keep(n.params, shape)
    stats = _stats_shape(n.params, shape)
    bshape = (1,) + tuple(d if i in keep else 1 for i, d in enumerate(shape))
    init = [f"{s} = nn.ParameterDict({{" + ", ".join(
        f"{k!r}: nn.Parameter(torch.{f}({stats!r}), requires_grad=False)"
        for k, f in (("mean", "zeros"), ("variance", "ones"))) +
        ", 'count': nn.Parameter(torch.zeros(()), requires_grad=False)})"]
    m, sc = f"{s}.mean.reshape{bshape!r}", \
        f"torch.clamp(torch.sqrt(torch.clamp({s}.variance, min=0.0)), min=1e-7).reshape{bshape!r}"
    fwd = [f"{n.out} = {m} + {x} * {sc}" if n.params["invert"] else
           f"{n.out} = ({x} - {m}) / {sc}"]
    return init, fwd, {k: (k, "") for k in ("mean", "variance", "count")}


def _normalization_keras_in(o, shapes):
    o.get("mean")  # values given in the config: the importer makes them the weights
    o.get("variance")
    return {"axis": o.get("axis", -1), "invert": o.get("invert", False)}


@register
class Normalization(Layer):
    type_id = "Normalization"
    category = "Preprocessing"
    help = ("Shifts and scales its input with a mean and variance per position of the axis "
            "given, adapted to the training rows before the first epoch (or imported).")
    params = (Axes("axis", (-1,), empty=True,
                   help="Axes with a statistic per position: -1 (the last), a list, or None "
                        "(one statistic for all)."),
              Bool("invert", False, help="Undo the normalisation: mean + x * sqrt(variance)."))
    headline = ()
    examples = (({}, [(4,)]), ({"axis": None}, [(2, 3)]), ({"axis": [1, 3], "invert": True},
                                                         [(2, 3, 2)]),
                ({"invert": True}, [(33,)]))

    onnx_form = OnnxForm(_normalization_onnx, "Sub (mean), Div (max(sqrt(variance), 1e-7)); "
                         "invert: Mul, Add")
    torch_form = TorchForm(_normalization_torch)
    keras_form = KerasForm("Normalization", ("axis", "invert"), read=_normalization_keras_in,
                           weight_order=["mean", "variance", "count"])

    def output_shapes(self, p, in_shapes):
        _keep(p, in_shapes[0])
        return [in_shapes[0]]

    def weights(self, p, in_shapes):
        shape = _stats_shape(p, in_shapes[0])
        # count: the values each statistic summarises (Keras' variable); 0 until adapted
        return [WeightSpec("mean", shape, "zeros", trainable=False),
                WeightSpec("variance", shape, "ones", trainable=False),
                WeightSpec("count", (), "zeros", trainable=False)]

    def constants(self, p, in_shapes):
        shape = tuple(in_shapes[0])
        _, sidx = _axes_plan(shape, _keep(p, shape))  # each element's statistic
        return {"sidx": sidx.astype(np.int32)}

    def adapt(self, p, rows):
        """Keras' adapt: mean and (biased) variance of the rows over the axes not kept, and
        the number of values each summarises."""
        rows = np.asarray(rows, np.float64)
        keep = _keep(p, rows.shape[1:])
        axes = (0,) + tuple(i + 1 for i in range(rows.ndim - 1) if i not in keep)
        return {"mean": rows.mean(axes).astype(np.float32),
                "variance": rows.var(axes).astype(np.float32),
                "count": np.float32(int(np.prod([rows.shape[a] for a in axes])))}

    @staticmethod
    def adapted(ws):
        """Its statistics were adapted or given: a count, or other values than the initial
        zeros and ones (Keras' adapt leaves its count 0)."""
        return float(ws["count"]) > 0 or bool(np.any(ws["mean"] != 0)) or bool(
            np.any(ws["variance"] != 1))

    def given(self, p, in_shape, mean, variance):
        """The weights of statistics given as values (Keras' mean=, variance=): broadcast to
        the kept axes as Keras does, count 1 (given, so never adapted)."""
        shape = _stats_shape(p, in_shape)
        try:
            return {"mean": np.broadcast_to(np.asarray(mean, np.float32), shape).copy(),
                    "variance": np.broadcast_to(np.asarray(variance, np.float32), shape).copy(),
                    "count": np.float32(1)}
        except ValueError:
            raise ShapeError(f"mean of shape {list(np.shape(mean))} for statistics of shape "
                             f"{list(shape)}") from None

    def forward(self, ops, s):
        ops.stats_apply(s.x[0].buf, s.y[0].buf, s.w["mean"].buf, s.w["variance"].buf,
                        s.const["sidx"], s.n, s.x[0].size, s.params["invert"])

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.stats_apply_grad(s.dy[0].buf, s.dx[0].buf, s.w["variance"].buf,
                                 s.const["sidx"], s.n, s.x[0].size, s.params["invert"],
                                 accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x, shape = xs[0], xs[0].shape[1:]
        keep = _keep(p, shape)
        m = _broadcast(ws["mean"], shape, keep)
        sc = _broadcast(_stats_scale(ws["variance"]), shape, keep)
        return [m + x * sc if p["invert"] else (x - m) / sc]
