"""The normalisation layers, with Keras' names and defaults: BatchNormalization over the last
axis, LayerNormalization over any axes, and what GroupNormalization and UnitNormalization
(normalization_grouped.py) and Normalization (normalization_adapted.py) share with it: the axes,
the grouped layer (_Grouped), the affine weights and their interop forms.
LayerNormalization over trailing axes runs one work-item per row (ln_* kernels);
GroupNormalization views each sample as rows of columns, its groups runs of columns (gn_*
kernels); the others (and LayerNormalization over axes that are not the trailing ones) list
each sample's groups once, as constants (_Grouped.constants), which the grouped_norm_* kernels
walk."""
import numpy as np

from layerloom.core.errors import ParamError, quote
from layerloom.core.graph import fmt_shape
from layerloom.core.params import MAX_RANK, Bool, Float, Int, Param, Shape
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, ShapeError, TorchForm,
                                     WeightSpec, register)


def _affine_weights(p, C):
    """gamma and beta of shape C (a size or a shape), with the initializers and regularizers the
    layer's params give where it has them."""
    shape = (C,) if isinstance(C, (int, np.integer)) else tuple(C)
    ws = []
    for name, on, init in (("gamma", "scale", "ones"), ("beta", "center", "zeros")):
        if p[on]:
            ws.append(WeightSpec(name, shape, p.get(f"{name}_initializer", init),
                                 regularizer=p.get(f"{name}_regularizer")))
    return ws


def _norm_params(eps):
    return (Float("epsilon", eps, min=0.0, min_exclusive=True, help="Added to the variance."),
            Bool("center", True, help="Learn an offset beta."),
            Bool("scale", True, help="Learn a scale gamma."))


def _axis_param():
    return Int("axis", -1, min=-1, max=-1, help="Normalised axis; only the last (-1).")


# -- BatchNormalization's interop forms (the converters receive interop's builder or kit: see
# OnnxForm, TorchForm and KerasForm in core/registry.py) ---------------------------------------
def _batch_norm_onnx(b, n):
    """Inference form: (x - moving_mean) * (gamma / sqrt(moving_variance + epsilon)) + beta,
    the scale folded into one constant."""
    p, w = n.params, n.w
    scale = 1.0 / np.sqrt(w["moving_variance"].astype(np.float64) + p["epsilon"])
    if p["scale"]:
        scale = scale * w["gamma"]
    y = b.op("Sub", [n.x[0], b.const(w["moving_mean"], f"{n.id}/moving_mean")])
    y = b.op("Mul", [y, b.const(scale, f"{n.id}/scale")])
    if p["center"]:
        y = b.op("Add", [y, b.const(w["beta"], f"{n.id}/beta")])
    return [y]


def _batch_norm_onnx_in(imp, node, type_id):
    a, v = imp.attrs(node), imp.value(node, 0)
    if imp.channel_axis(v) != 1:
        imp.fail(node, f"an input of shape {['N', *imp.onnx_shape(v)]} whose channel "
                       "axis 1 is not Layerloom's last axis (read as it is, not "
                       "channels-first)")
    if a.get("spatial", 1) != 1:
        imp.fail(node, "spatial 0 (statistics per element); Layerloom's are per channel")
    if a.get("training_mode", 0) or (imp.opset < 7 and not a.get("is_test", 0)):
        imp.fail(node, "training mode (batch statistics)")
    gamma, beta, mean, var = (imp.const(node, i, w) for i, w in
                              enumerate(("scale", "bias", "mean", "variance"), 1))
    channels = imp.shape(v)[-1]
    if any(x.shape != (channels,) for x in (gamma, beta, mean, var)):
        imp.fail(node, f"statistics of shapes {[list(x.shape) for x in (gamma, beta, mean, var)]}"
                       f" for {channels} channels")
    nid = imp.add(node, type_id, {"epsilon": float(a.get("epsilon", 1e-5))}, [v])
    for name, arr in (("gamma", gamma), ("beta", beta), ("moving_mean", mean),
                      ("moving_variance", var)):
        imp.weights[f"{nid}/{name}"] = arr.astype(np.float32)
    imp.set(node, v.like(nid))


def _batch_norm_torch(t, n):
    p, s = n.params, n.self
    if p["axis"] not in (-1, len(n.in_shapes[0])):
        raise t.unsupported(n.id, n.type, "axis", p["axis"])
    c = n.in_shapes[0][-1]
    rank = len(n.in_shapes[0])
    init = [f"{s} = nn.BatchNorm1d({c}, eps={p['epsilon']!r}, momentum={1 - p['momentum']!r}, "
            f"affine=True)  # torch momentum = 1 - Keras momentum"]
    if not p["center"]:
        init.append(f"{s}.bias.requires_grad_(False)")
    if not p["scale"]:
        init.append(f"{s}.weight.requires_grad_(False)")
    if rank == 1:
        fwd = [f"{n.out} = {s}({n.x[0]})"]
    else:  # channels-last: features on axis 1 for torch, every other axis a "sample"
        fwd = [f"{n.out} = {s}({n.x[0]}.reshape(-1, {c})).reshape({n.x[0]}.shape)"]
    return init, fwd, {"gamma": ("weight", ""), "beta": ("bias", ""),
                  "moving_mean": ("running_mean", ""), "moving_variance": ("running_var", "")}


def _batch_norm_keras_in(o, shapes):
    o.axis_last(shapes)
    for k in ("renorm", "synchronized"):
        o.must(k, False)
    for k, want in (("beta", "Zeros"), ("gamma", "Ones"), ("moving_mean", "Zeros"),
                    ("moving_variance", "Ones")):
        o.initializer_is(f"{k}_initializer", want)
        o.must(f"{k}_regularizer", None)
        o.must(f"{k}_constraint", None)
    o.must("virtual_batch_size", None)
    o.must("adjustment", None)
    return {"momentum": o.floats("momentum", 0.99), "epsilon": o.floats("epsilon", 1e-3),
            "center": o.get("center", True), "scale": o.get("scale", True)}


def _affine_order(p):
    """gamma, beta as scale and center have them: the Keras layer's order of its weights."""
    return (["gamma"] if p["scale"] else []) + (["beta"] if p["center"] else [])


@register
class BatchNormalization(Layer):
    type_id = "BatchNormalization"
    category = "Normalization"
    help = ("Normalises each channel (last axis) with the batch's mean and variance while "
            "training, and with moving averages of them at inference.")
    params = (_axis_param(),
              Float("momentum", 0.99, min=0.0, max=1.0, help="Decay of the moving statistics."),
              ) + _norm_params(1e-3)
    test_in_training = True
    examples = (({}, [(5,)]), ({"momentum": 0.9, "epsilon": 0.01}, [(3, 4, 2)]),
                ({"center": False}, [(33,)]), ({"scale": False}, [(2, 3)]),
                # enough rows for the statistics in parts: channels in vectors, and not
                ({}, [(8, 8, 16)]), ({"momentum": 0.5}, [(10, 11, 3)]))

    onnx_form = OnnxForm(_batch_norm_onnx, "Sub (moving mean), Mul (gamma / sqrt(moving var + "
                         "eps)), Add (beta)", reads={"BatchNormalization": OnnxRead(
                             {"epsilon", "momentum", "spatial", "is_test", "training_mode"},
                             _batch_norm_onnx_in)})
    torch_form = TorchForm(_batch_norm_torch)
    keras_form = KerasForm("BatchNormalization", ("axis", "momentum", "epsilon", "center", "scale"),
                           read=_batch_norm_keras_in,
                           weight_order=lambda p: _affine_order(p) + ["moving_mean",
                                                                      "moving_variance"])

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def weights(self, p, in_shapes):
        C = in_shapes[0][-1]
        return _affine_weights(p, C) + [
            WeightSpec("moving_mean", (C,), "zeros", trainable=False),
            WeightSpec("moving_variance", (C,), "ones", trainable=False)]

    def scratch(self, p, in_shapes):
        C = in_shapes[0][-1]
        return {"mean": (C,), "var": (C,), "sdy": (C,), "sdx": (C,)}

    def _rows(self, s):
        return s.n * (s.x[0].size // s.x[0].cols), s.x[0].cols

    def _wbuf(self, s, name):
        return s.w[name].buf if name in s.w else None

    def forward(self, ops, s):
        p = s.params
        rows, C = self._rows(s)
        if s.training and not s.frozen:  # frozen: inference mode in training too, as Keras
            mean, var = s.scratch["mean"].buf, s.scratch["var"].buf
            ops.bn_stats(s.x[0].buf, rows, C, mean, var, s.w["moving_mean"].buf,
                         s.w["moving_variance"].buf, p["momentum"], update=True)
        else:
            mean, var = s.w["moving_mean"].buf, s.w["moving_variance"].buf
        ops.bn_apply(s.x[0].buf, s.y[0].buf, rows, C, mean, var, self._wbuf(s, "gamma"),
                     self._wbuf(s, "beta"), p["epsilon"])

    def backward(self, ops, s):
        p = s.params
        rows, C = self._rows(s)
        if s.frozen:  # inference mode: dx = dy * gamma / sqrt(moving variance + eps)
            if s.dx[0] is None:
                return
            zero = s.scratch["sdy"].buf
            ops.fill(zero, C)
            ops.bn_grad_input(s.x[0].buf, s.dy[0].buf, s.w["moving_mean"].buf,
                              s.w["moving_variance"].buf, self._wbuf(s, "gamma"), p["epsilon"],
                              zero, zero, rows, C, s.dx[0].buf, s.acc[0])
            return
        mean, var = s.scratch["mean"].buf, s.scratch["var"].buf
        sdy = s.dw["beta"].buf if "beta" in s.dw else s.scratch["sdy"].buf
        sdx = s.dw["gamma"].buf if "gamma" in s.dw else s.scratch["sdx"].buf
        ops.bn_grad_sums(s.x[0].buf, s.dy[0].buf, mean, var, p["epsilon"], rows, C, sdy, sdx)
        if s.dx[0] is not None:
            ops.bn_grad_input(s.x[0].buf, s.dy[0].buf, mean, var, self._wbuf(s, "gamma"),
                              p["epsilon"], sdy, sdx, rows, C, s.dx[0].buf, s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        if training:
            axes = tuple(range(x.ndim - 1))
            mean, var = x.mean(axes), x.var(axes)
        else:
            mean, var = ws["moving_mean"], ws["moving_variance"]
        y = (x - mean) / np.sqrt(var + p["epsilon"])
        if p["scale"]:
            y = y * ws["gamma"]
        if p["center"]:
            y = y + ws["beta"]
        return [y]


# -- axes and groups, shared by LayerNormalization, GroupNormalization and UnitNormalization ----
class Axes(Param):
    """Keras' `axis` of a normalisation: one axis or a list, the batch axis counted (-1 is the
    last); kept as a tuple, written as an integer when it is one. empty: None (or []) is taken,
    as ()."""
    kind = "shape"  # typed as a list: "-1" or "1, 2"

    def __init__(self, name, default, help="", empty=False):
        super().__init__(name, default, help)
        self.empty = empty

    def validate(self, value, place):
        if isinstance(value, str):
            value = Shape.parse_text(value) if value.strip() not in ("", "None") else None
        if self.empty and value in (None, [], ()):
            return ()
        v = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        ok = (isinstance(v, (list, tuple)) and 0 < len(v) <= MAX_RANK
              and all(isinstance(a, int) and not isinstance(a, bool)
                      and -MAX_RANK - 1 <= a <= MAX_RANK for a in v)
              and len(set(v)) == len(v))
        if not ok:
            raise ParamError(f"expected an axis such as -1 or a list of different axes such as "
                             f"[1, 2]{', or None' if self.empty else ''}, got {quote(value)}",
                             place)
        return tuple(v)

    def to_json(self, value):
        return None if not value else value[0] if len(value) == 1 else list(value)

    def describe(self):
        return ("an axis (-1: the last) or a list of axes; the batch axis is 0"
                + ("; None: none" if self.empty else ""))

    @staticmethod
    def text(value):
        return Shape.text(value) if value else "None"

    parse_text = staticmethod(Shape.parse_text)


def _sample_axes(axes, in_shape, name="axis"):
    """Sorted per-sample axes of Keras' axis list; refuses the batch axis and repeats."""
    rank = len(in_shape)
    out = []
    for a in axes:
        k = a + rank + 1 if a < 0 else a
        if not 1 <= k <= rank:
            raise ShapeError(f"{name} {a} is {'the batch axis' if k == 0 else 'out of range'} "
                             f"for input {fmt_shape(in_shape)}")
        if k - 1 in out:
            raise ShapeError(f"{name} {list(axes)} names axis {k} twice for input "
                             f"{fmt_shape(in_shape)}")
        out.append(k - 1)
    return tuple(sorted(out))


def _csr(keys, count):
    """(offs, src): the elements whose key is k are src[offs[k]:offs[k + 1]], in order."""
    src = np.argsort(keys, kind="stable").astype(np.int32)
    offs = np.zeros(count + 1, np.int32)
    np.cumsum(np.bincount(keys, minlength=count), out=offs[1:])
    return offs, src


def _axes_plan(shape, axes):
    """(each element's position along the axes not in `axes`, its position along `axes`),
    flat over a sample of `shape`, row-major: LayerNormalization's groups and gamma entries."""
    idx = np.indices(shape).reshape(len(shape), -1)

    def along(which):
        if not which:
            return np.zeros(idx.shape[1], np.int64)
        return np.ravel_multi_index(tuple(idx[i] for i in which), tuple(shape[i] for i in which))
    return along([i for i in range(len(shape)) if i not in axes]), along(list(axes))


def _outside(shape, axes):
    """How many positions the axes not in `axes` give: groups, one statistic each."""
    return int(np.prod([d for i, d in enumerate(shape) if i not in axes]))


def _broadcast(w, in_shape, axes):
    """Weight w (its axes the per-sample `axes` of in_shape) shaped to broadcast over a batch."""
    return np.reshape(w, (1,) + tuple(d if i in axes else 1 for i, d in enumerate(in_shape)))


class _Grouped(Layer):
    """A normalisation over groups of each sample's elements. Subclasses give groups(p, shape):
    (G groups, K gamma entries), and plan(p, shape): (each element's group, each element's
    gamma entry), both flat over the sample; unit: L2 normalisation (UnitNormalization)."""
    category = "Normalization"
    unit = False

    def output_shapes(self, p, in_shapes):
        self.groups(p, in_shapes[0])
        return [in_shapes[0]]

    def scratch(self, p, in_shapes):
        G, _ = self.groups(p, in_shapes[0])
        return {"mean": (G,), "rstd": (G,)}

    def constants(self, p, in_shapes):
        G, K = self.groups(p, in_shapes[0])
        grp, pidx = self.plan(p, tuple(in_shapes[0]))
        offs, src = _csr(grp, G)
        poffs, psrc = _csr(pidx, K)
        return {"offs": offs, "src": src, "grp": grp.astype(np.int32),
                "pidx": pidx.astype(np.int32), "poffs": poffs, "psrc": psrc}

    def _plan(self, s):
        G, K = self.groups(s.params, s.x[0].shape)
        return {**s.const, "G": G, "K": K}

    def _eps(self, p):
        return 1e-12 if self.unit else p["epsilon"]

    def grouped_forward(self, ops, s):
        ops.grouped_norm_forward(s.x[0].buf, s.y[0].buf, _wbuf(s.w, "gamma"), _wbuf(s.w, "beta"),
                                 s.scratch["mean"].buf, s.scratch["rstd"].buf, self._plan(s),
                                 s.n, s.x[0].size, self._eps(s.params), unit=self.unit)

    def grouped_backward(self, ops, s):
        plan, x, dy = self._plan(s), s.x[0].buf, s.dy[0].buf
        mean, rstd = s.scratch["mean"].buf, s.scratch["rstd"].buf
        if s.dw:
            ops.grouped_norm_param_grad(x, dy, mean, rstd, plan, s.n, s.x[0].size,
                                        _wbuf(s.dw, "gamma"), _wbuf(s.dw, "beta"))
        if s.dx[0] is not None:
            ops.grouped_norm_backward(x, dy, _wbuf(s.w, "gamma"), mean, rstd, plan, s.n,
                                      s.x[0].size, self._eps(s.params), s.dx[0].buf,
                                      accumulate=s.acc[0], unit=self.unit)

    forward, backward = grouped_forward, grouped_backward


def _wbuf(ws, name):
    return ws[name].buf if name in ws else None


def _standardise(x, axes, eps):
    """(x - mean) / sqrt(var + eps) over `axes` (of x, batch counted), float64."""
    d = x - x.mean(axes, keepdims=True)
    return d / np.sqrt((d * d).mean(axes, keepdims=True) + eps)


def _moments_onnx(b, x, axes, eps):
    """The same in ONNX operators: (x - mean) / sqrt(mean((x - mean)^2) + eps) over axes."""
    d = b.op("Sub", [x, b.reduce("ReduceMean", x, axes, 1)])
    v = b.reduce("ReduceMean", b.op("Mul", [d, d]), axes, 1)
    return b.op("Div", [d, b.op("Sqrt", [b.op("Add", [v, b.const(np.float32(eps))])])])


def _affine_onnx(b, n, y, axes):
    """y * gamma + beta, each shaped to broadcast over its per-sample `axes`."""
    shape = n.in_shapes[0]
    for name, op in (("gamma", "Mul"), ("beta", "Add")):
        if name in n.w:
            y = b.op(op, [y, b.const(_broadcast(n.w[name], shape, axes), f"{n.id}/{name}")])
    return y


def _affine_torch_init(t, n, shape, gamma_init="ones", beta_init="zeros"):
    """A ParameterDict of gamma and beta (those the layer has), Keras' initialisers."""
    p, s = n.params, n.self
    names = _affine_order(p)
    for k in names:
        if p.get(f"{k}_regularizer"):
            raise t.unsupported(n.id, n.type, f"{k}_regularizer", p[f"{k}_regularizer"])
    if not names:
        return [], {}
    init = [f"{s} = nn.ParameterDict({{" + ", ".join(
        f"{k!r}: nn.Parameter(torch.empty{tuple(shape)!r})" for k in names) + "})"]
    init += [t.init(n, f"{s}.{k}", f"{k}_initializer", {"gamma": gamma_init,
                                                         "beta": beta_init}[k]) for k in names]
    return init, {k: (k, "") for k in names}


def _affine_torch_forward(n, y, axes):
    """Lines applying gamma and beta (broadcast over `axes`) to the tensor named y."""
    shape, lines = n.in_shapes[0], []
    bshape = (1,) + tuple(d if i in axes else 1 for i, d in enumerate(shape))
    if "gamma" in _affine_order(n.params):
        lines.append(f"{y} = {y} * {n.self}.gamma.reshape{bshape!r}")
    if "beta" in _affine_order(n.params):
        lines.append(f"{y} = {y} + {n.self}.beta.reshape{bshape!r}")
    return lines


def _torch_dims(axes):
    return tuple(a + 1 for a in axes)


# -- LayerNormalization's interop forms --------------------------------------------------------
def _ln_axes(p, shape):
    return _sample_axes(p["axis"], shape)


def _trailing(axes, shape):
    return axes == tuple(range(len(shape) - len(axes), len(shape)))


def _layer_norm_onnx(b, n):
    p, shape = n.params, n.in_shapes[0]
    axes = _ln_axes(p, shape)
    if not _trailing(axes, shape):
        return [_affine_onnx(b, n, _moments_onnx(b, n.x[0], [a + 1 for a in axes],
                                                 p["epsilon"]), axes)]
    dims = tuple(shape[a] for a in axes)
    gamma = n.w["gamma"] if p["scale"] else np.ones(dims, np.float32)
    inputs = [n.x[0], b.const(np.reshape(gamma, dims), f"{n.id}/gamma")]
    if p["center"]:
        inputs.append(b.const(np.reshape(n.w["beta"], dims), f"{n.id}/beta"))
    return [b.op("LayerNormalization", inputs, axis=axes[0] + 1 if len(axes) > 1 else -1,
                 epsilon=p["epsilon"])]


def _layer_norm_onnx_in(imp, node, type_id):
    """ONNX's LayerNormalization (opset 17): over the axes from `axis` to the last, its Scale
    and B constants; a channels-first input's axes are mapped to ours."""
    a, v = imp.attrs(node), imp.value(node, 0)
    if v.pooled:
        imp.fail(node, "a pooled (N, C, 1, 1) input")
    if a.get("stash_type", 1) != 1:
        imp.fail(node, f"stash_type {a['stash_type']} (Layerloom computes in float32)")
    onnx_shape = imp.onnx_shape(v)
    rank = len(onnx_shape) + 1
    first = int(a.get("axis", -1)) % rank
    if first == 0:
        imp.fail(node, "axis 0 (the batch axis is not normalised in Layerloom)")
    dims = tuple(onnx_shape[first - 1:])
    ws = {}
    for i, name in ((1, "gamma"), (2, "beta")):
        if i < len(node.input) and node.input[i]:
            w = np.asarray(imp.const(node, i, "scale" if i == 1 else "bias"), np.float32)
            try:
                ws[name] = np.broadcast_to(w, dims).copy()
            except ValueError:
                imp.fail(node, f"its {'scale' if i == 1 else 'bias'} of shape {list(w.shape)} "
                               f"for normalised axes of sizes {list(dims)}")
    onnx_axes = list(range(first, rank))
    if v.nchw:  # ONNX axis 1 is our last, axis k >= 2 our k - 1
        ours = sorted(len(onnx_shape) if ax == 1 else ax - 1 for ax in onnx_axes)
        if first == 1:  # (C, ...) -> (..., C)
            ws = {k: np.moveaxis(w, 0, -1) for k, w in ws.items()}
    else:
        ours = onnx_axes
    params = {"axis": ours if len(ours) > 1 else ours[0] - rank,
              "epsilon": float(a.get("epsilon", 1e-5)), "center": "beta" in ws}
    nid = imp.add(node, type_id, params, [v])
    for name, w in ws.items():
        imp.weights[f"{nid}/{name}"] = np.ascontiguousarray(w, np.float32)
    imp.set(node, v.like(nid))


def _layer_norm_torch(t, n):
    p, s = n.params, n.self
    shape = n.in_shapes[0]
    axes = _ln_axes(p, shape)
    dims = tuple(shape[a] for a in axes)
    if not _trailing(axes, shape):
        init, weights = _affine_torch_init(t, n, dims)
        x, o = n.x[0], n.out
        fwd = [f"{o} = {x} - {x}.mean(dim={_torch_dims(axes)!r}, keepdim=True)",
               f"{o} = {o} / torch.sqrt(({o} * {o}).mean(dim={_torch_dims(axes)!r}, "
               f"keepdim=True) + {p['epsilon']!r})"] + _affine_torch_forward(n, o, axes)
        return init, fwd, weights
    affine = bool(p["center"] or p["scale"])
    init = [f"{s} = nn.LayerNorm({dims!r}, eps={p['epsilon']!r}, elementwise_affine={affine!r})"]
    if affine and not p["center"]:
        init += [f"{s}.bias.requires_grad_(False)"]
    if affine and not p["scale"]:
        init += [f"{s}.weight.requires_grad_(False)"]
    return init, [f"{n.out} = {s}({n.x[0]})"], {"gamma": ("weight", ""), "beta": ("bias", "")}


def _layer_norm_keras_in(o, shapes):
    o.must("rms_scaling", False)
    for k, want in (("beta", "Zeros"), ("gamma", "Ones")):
        o.initializer_is(f"{k}_initializer", want)
        o.must(f"{k}_regularizer", None)
        o.must(f"{k}_constraint", None)
    return {"axis": o.get("axis", -1), "epsilon": o.floats("epsilon", 1e-3),
            "center": o.get("center", True), "scale": o.get("scale", True)}


@register
class LayerNormalization(_Grouped):
    type_id = "LayerNormalization"
    help = ("Normalises each sample over its last axis (or the axes given), then scales and "
            "shifts it.")
    params = (Axes("axis", (-1,), help="Normalised axes: -1 (the last) or a list such as "
                                       "[-2, -1]; not the batch axis 0."),) + _norm_params(1e-3)
    examples = (({}, [(5,)]), ({"epsilon": 1e-5}, [(3, 33)]), ({"center": False, "scale": False},
                                                              [(2, 4)]),
                ({"axis": [-2, -1]}, [(2, 3, 4)]), ({"axis": [1, 3], "center": False},
                                                     [(3, 2, 2)]),
                # columns a multiple of the vector width: the ln_*_ew kernels
                ({}, [(3, 16)]), ({"center": False}, [(32,)]))

    onnx_form = OnnxForm(_layer_norm_onnx, "LayerNormalization (trailing axes; others: "
                         "ReduceMean, Sub, Mul, Add, Sqrt, Div, Mul, Add)",
                         reads={"LayerNormalization": OnnxRead({"axis", "epsilon", "stash_type"},
                                                               _layer_norm_onnx_in)})
    torch_form = TorchForm(_layer_norm_torch)
    keras_form = KerasForm("LayerNormalization", ("axis", "epsilon", "center", "scale"),
                           read=_layer_norm_keras_in, weight_order=_affine_order)

    def groups(self, p, shape):
        axes = _ln_axes(p, shape)
        return _outside(shape, axes), int(np.prod([shape[a] for a in axes]))

    def plan(self, p, shape):
        return _axes_plan(shape, _ln_axes(p, shape))

    def weights(self, p, in_shapes):
        shape = in_shapes[0]
        dims = tuple(shape[a] for a in _ln_axes(p, shape))
        return _affine_weights(p, dims)

    def _rows(self, s):
        G, cols = self.groups(s.params, s.x[0].shape)
        return s.n * G, cols

    def forward(self, ops, s):
        if not _trailing(_ln_axes(s.params, s.x[0].shape), s.x[0].shape):
            return self.grouped_forward(ops, s)
        rows, cols = self._rows(s)
        ops.ln_forward(s.x[0].buf, s.y[0].buf, _wbuf(s.w, "gamma"), _wbuf(s.w, "beta"),
                       s.scratch["mean"].buf, s.scratch["rstd"].buf, rows, cols,
                       s.params["epsilon"])

    def backward(self, ops, s):
        if not _trailing(_ln_axes(s.params, s.x[0].shape), s.x[0].shape):
            return self.grouped_backward(ops, s)
        rows, cols = self._rows(s)
        if s.dw:
            ops.ln_param_grad(s.x[0].buf, s.dy[0].buf, s.scratch["mean"].buf,
                              s.scratch["rstd"].buf, rows, cols, _wbuf(s.dw, "gamma"),
                              _wbuf(s.dw, "beta"))
        if s.dx[0] is not None:
            ops.ln_backward(s.x[0].buf, s.dy[0].buf, _wbuf(s.w, "gamma"), s.scratch["mean"].buf,
                            s.scratch["rstd"].buf, rows, cols, s.dx[0].buf, s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x, shape = xs[0], xs[0].shape[1:]
        axes = _ln_axes(p, shape)
        y = _standardise(x, tuple(a + 1 for a in axes), p["epsilon"])
        if p["scale"]:
            y = y * _broadcast(ws["gamma"], shape, axes)
        if p["center"]:
            y = y + _broadcast(ws["beta"], shape, axes)
        return [y]
