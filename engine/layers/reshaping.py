"""Shape layers. Reshape aliases its input (row-major data needs no copy). The others declare a
numpy transform once; from it come the output shape, the float64 reference and, applied to an
index array, the gather map the kernels use (forward) with its inverse (backward)."""

import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Choice, Dims, Int, Margins, Pair, Shape
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, register, ShapeError,
                                     TorchForm)
from layerloom.layers.kit import alias_backward


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py) -------------------------------------------------------------
def _reshape_onnx_to(b, x, shape):
    """x to (batch,) + shape; 0 keeps the batch axis as it is."""
    return b.op("Reshape", [x, b.ints([0] + list(shape))])


def _margins(v):
    """((before, after), ...) per spatial axis of Keras' int, (h, w) or ((t, b), (l, r)) forms
    (three axes for the 3-D layers: their Margins3 parameter's pairs)."""
    if isinstance(v, int):
        return (v, v), (v, v)
    return tuple(tuple(a) if isinstance(a, (list, tuple)) else (a, a) for a in v)


def _reshape_torch(t, n):
    return [], [f"{n.out} = {n.x[0]}.reshape({n.x[0]}.shape[0], "
                f"*{tuple(int(d) for d in n.out_shape)!r})"], {}


@register
class Reshape(Layer):
    type_id = "Reshape"
    category = "Reshaping"
    help = "Gives each sample a new shape with the same number of values; one entry may be -1."
    params = (Dims("target_shape", (-1,), help="New per-sample shape, e.g. [7, 7, 16]."),)
    alias_output = True
    examples = (({"target_shape": [5, 6]}, [(3, 10)]), ({"target_shape": [-1, 2]}, [(2, 3, 2)]))

    onnx_form = OnnxForm(lambda b, n: [_reshape_onnx_to(b, n.x[0], n.out_shapes[0])], "Reshape")
    torch_form = TorchForm(_reshape_torch)
    keras_form = KerasForm("Reshape", ("target_shape",))

    def output_shapes(self, p, in_shapes):
        size = int(np.prod(in_shapes[0]))
        t = list(p["target_shape"])
        known = int(np.prod([d for d in t if d != -1]))
        if -1 in t:
            if size % known:
                raise ShapeError(f"cannot reshape {fmt_shape(in_shapes[0])} ({size} values) to "
                                 f"{fmt_shape(t)}")
            t[t.index(-1)] = size // known
        elif known != size:
            raise ShapeError(f"cannot reshape {fmt_shape(in_shapes[0])} ({size} values) to "
                             f"{fmt_shape(t)} ({known} values)")
        return [tuple(t)]

    def forward(self, ops, s):
        pass

    def backward(self, ops, s):
        alias_backward(ops, s)

    def reference(self, p, xs, ws, training=False):
        return [xs[0].reshape((len(xs[0]),) + self.output_shapes(p, [xs[0].shape[1:]])[0])]


class _IndexMap(Layer):
    """Subclasses define transform(p, a, fill) on arrays with a batch axis."""
    category = "Reshaping"

    def check(self, p, in_shape):
        pass

    def output_shapes(self, p, in_shapes):
        self.check(p, in_shapes[0])
        return [self.transform(p, np.zeros((1,) + tuple(in_shapes[0]), np.int8), 0).shape[1:]]

    def constants(self, p, in_shapes):
        in_size = int(np.prod(in_shapes[0]))
        idx = np.arange(in_size, dtype=np.int64).reshape((1,) + tuple(in_shapes[0]))
        mp = self.transform(p, idx, -1)[0].ravel().astype(np.int32)
        used = mp >= 0
        src = np.nonzero(used)[0]
        order = np.argsort(mp[used], kind="stable")
        src = src[order].astype(np.int32)
        offs = np.zeros(in_size + 1, np.int32)
        np.cumsum(np.bincount(mp[used], minlength=in_size), out=offs[1:])
        return {"map": mp, "offs": offs, "src": src}

    def forward(self, ops, s):
        ops.gather_map(s.x[0].buf, s.y[0].buf, s.const["map"], s.n, s.x[0].size, s.y[0].size)

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.gather_map_grad(s.dy[0].buf, s.dx[0].buf, s.const["offs"], s.const["src"], s.n,
                                s.x[0].size, s.y[0].size, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [self.transform(p, xs[0], 0.0)]


def _permute_torch(t, n):
    dims = ", ".join(str(int(d)) for d in n.params["dims"])
    return [], [f"{n.out} = {n.x[0]}.permute(0, {dims})"], {}


@register
class Permute(_IndexMap):
    type_id = "Permute"
    help = "Reorders the per-sample axes; dims counts from 1, e.g. [2, 1] swaps two axes."
    params = (Shape("dims", (2, 1), help="A permutation of 1..rank."),)
    examples = (({"dims": [2, 1]}, [(3, 5)]), ({"dims": [3, 1, 2]}, [(2, 3, 4)]))

    onnx_form = OnnxForm(lambda b, n: [b.op("Transpose", [n.x[0]],
                                            perm=[0] + list(n.params["dims"]))], "Transpose")
    torch_form = TorchForm(_permute_torch)
    keras_form = KerasForm("Permute", ("dims",))

    def check(self, p, in_shape):
        if sorted(p["dims"]) != list(range(1, len(in_shape) + 1)):
            raise ShapeError(f"dims {list(p['dims'])} is not a permutation of 1..{len(in_shape)} "
                             f"for input {fmt_shape(in_shape)}")

    def transform(self, p, a, fill):
        return np.transpose(a, (0,) + tuple(p["dims"]))


def _repeat_vector_onnx(b, n):
    y = b.op("Unsqueeze", [n.x[0], b.ints([1], "axes")])
    return [b.op("Tile", [y, b.ints([1, n.params["n"], 1], "repeats")])]


def _repeat_vector_torch(t, n):
    return [], [f"{n.out} = {n.x[0]}.unsqueeze(1).expand(-1, {int(n.params['n'])}, -1)"], {}


@register
class RepeatVector(_IndexMap):
    type_id = "RepeatVector"
    help = "Repeats a (features) input n times: (features) -> (n, features)."
    params = (Int("n", 2, min=1, help="Number of repetitions."),)
    examples = (({"n": 3}, [(4,)]), ({"n": 1}, [(33,)]))

    onnx_form = OnnxForm(_repeat_vector_onnx, "Unsqueeze, Tile")
    torch_form = TorchForm(_repeat_vector_torch)
    keras_form = KerasForm("RepeatVector", ("n",))

    def check(self, p, in_shape):
        if len(in_shape) != 1:
            raise ShapeError(f"expects input shaped (None, features), got {fmt_shape(in_shape)}")

    def transform(self, p, a, fill):
        return np.repeat(a[:, None, :], p["n"], axis=1)


def _need_image(in_shape):
    if len(in_shape) != 3:
        raise ShapeError(f"expects input shaped (None, height, width, channels), got "
                         f"{fmt_shape(in_shape)}")


# -- ONNX in: Pad as ZeroPadding1D/2D/3D, Slice as Cropping1D/2D/3D ---------------------------
_SPATIAL = {"ZeroPadding1D": 2, "ZeroPadding2D": 3, "ZeroPadding3D": 4, "Cropping1D": 2,
            "Cropping2D": 3, "Cropping3D": 4}


def _margins_in(imp, node, type_id):
    """The value an ONNX Pad or Slice reads, if its rank is the layer's (else declined: a
    sequence is the 1-D layer's, an image the 2-D one's)."""
    v = imp.value(node, 0)
    rank, want = len(imp.shape(v)), _SPATIAL[type_id]
    if rank != want or v.pooled:
        imp.decline(node, f"an input of {rank} axes besides the batch ({type_id} takes {want})")
    return v, rank


def _spatial(imp, node, v, rank, amounts, what):
    """{ONNX axis: [before, after]} as the layer's parameter: [before, after] of the steps, or
    [[top, bottom], [left, right]] (3-D: three pairs); the batch and the channels must be left
    as they are."""
    # ONNX axis -> ours (batch counted): channels-first moves axis 1 last
    ours = [0] + ([rank] + list(range(1, rank)) if v.nchw else list(range(1, rank + 1)))
    by_ours = {ours[ax]: list(amounts.get(ax, (0, 0))) for ax in range(rank + 1)}
    if any(by_ours[ax] != [0, 0] for ax in (0, rank)):
        imp.fail(node, f"{what} of the batch or the channels (only the steps, the rows and "
                       "columns, or the depth, rows and columns)")
    spatial = [by_ours[ax] for ax in range(1, rank)]
    return spatial[0] if rank == 2 else spatial


def _pad_onnx_in(imp, node, type_id):
    """ONNX's Pad with zeros on the spatial axes, in either layout."""
    v, rank = _margins_in(imp, node, type_id)
    a = imp.attrs(node)
    if a.get("mode", b"constant") not in (b"constant", "constant"):
        imp.fail(node, f"mode {imp.text(a['mode'])!r} (only constant zeros)")
    if imp.opset < 11:
        pads, value = list(a.get("pads", [])), float(a.get("value", 0.0))
    else:
        pads = [int(p) for p in imp.const(node, 1, "pads")]
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            value = float(np.asarray(imp.const(node, 2, "constant value")).ravel()[0])
    axes = list(range(rank + 1))
    if len(node.input) > 3 and node.input[3]:
        axes = [int(x) % (rank + 1) for x in imp.const(node, 3, "axes")]
    if len(pads) != 2 * len(axes):
        imp.fail(node, f"{len(pads)} pads for {len(axes)} axes")
    if value != 0.0:
        imp.fail(node, f"constant value {value!r} (only zeros)")
    if any(p < 0 for p in pads):
        imp.fail(node, f"negative pads {pads} (a crop)")
    amounts = {ax: (pads[i], pads[i + len(axes)]) for i, ax in enumerate(axes)}
    params = {"padding": _spatial(imp, node, v, rank, amounts, "padding")}
    imp.set(node, v.like(imp.add(node, type_id, params, [v])))


def _slice_onnx_in(imp, node, type_id):
    """ONNX's Slice of a tensor with step 1 along the spatial axes: the rows, columns or steps
    it leaves out at each end."""
    v, rank = _margins_in(imp, node, type_id)
    starts, ends, axes, steps = imp.slice_args(node)
    if any(st != 1 for st in steps):
        imp.fail(node, f"steps {steps} (only 1: a crop)")
    dims = (None,) + tuple(imp.onnx_shape(v))
    amounts = {}
    for s0, e0, ax in zip(starts, ends, axes):
        ax = int(ax) % (rank + 1)
        if ax == 0:  # the batch: only as a whole
            amounts[0] = (0, 0) if int(s0) == 0 and int(e0) >= 2 ** 31 - 1 else (1, 1)
            continue
        first, last, _ = slice(int(s0), int(e0)).indices(dims[ax])
        amounts[ax] = (first, dims[ax] - max(last, first))
    params = {"cropping": _spatial(imp, node, v, rank, amounts, "a slice")}
    imp.set(node, v.like(imp.add(node, type_id, params, [v])))


def _cropping_onnx(b, n):
    m = n.params["cropping"]
    ends = [size - after for size, (_, after) in zip(n.in_shapes[0], m)]
    return [b.op("Slice", [n.x[0], b.ints([before for before, _ in m], "starts"),
                           b.ints(ends, "ends"), b.ints(list(range(1, len(m) + 1)), "axes")])]


def _cropping_torch(t, n):
    m = _margins(n.params["cropping"])
    spans = ", ".join(f"{before}:{size - after}"
                      for (before, after), size in zip(m, n.in_shapes[0]))
    return [], [f"{n.out} = {n.x[0]}[:, {spans}, :]"], {}


@register
class Cropping2D(_IndexMap):
    type_id = "Cropping2D"
    help = "Removes rows and columns at the image borders."
    params = (Margins("cropping", ((0, 0), (0, 0)),
                      help="[[top, bottom], [left, right]], [rows, cols] or one integer."),)
    examples = (({"cropping": [[1, 0], [2, 1]]}, [(4, 5, 2)]), ({"cropping": 1}, [(3, 3, 1)]))

    onnx_form = OnnxForm(_cropping_onnx, "Slice",
                         reads={"Slice": OnnxRead({"starts", "ends", "axes"}, _slice_onnx_in)})
    torch_form = TorchForm(_cropping_torch)
    keras_form = KerasForm("Cropping2D", ("cropping",))

    def check(self, p, in_shape):
        _need_image(in_shape)
        (t, b), (l, r) = p["cropping"]
        if t + b >= in_shape[0] or l + r >= in_shape[1]:
            raise ShapeError(f"cropping {[list(c) for c in p['cropping']]} removes the whole "
                             f"input {fmt_shape(in_shape)}")

    def transform(self, p, a, fill):
        return a[(slice(None),) + tuple(slice(before, size - after) for (before, after), size
                                        in zip(p["cropping"], a.shape[1:])) + (slice(None),)]


def _zero_padding_onnx(b, n):
    m = n.params["padding"]
    pads = [0] + [before for before, _ in m] + [0, 0] + [after for _, after in m] + [0]
    return [b.op("Pad", [n.x[0], b.ints(pads, "pads"), b.const(0.0)], mode="constant")]


def _zero_padding_torch(t, n):
    pads = (0, 0) + tuple(v for pair in reversed(_margins(n.params["padding"])) for v in pair)
    return [], [f"{n.out} = F.pad({n.x[0]}, {pads})  # channels last: the last axis first"], {}


@register
class ZeroPadding2D(_IndexMap):
    type_id = "ZeroPadding2D"
    help = "Adds rows and columns of zeros at the image borders."
    params = (Margins("padding", ((1, 1), (1, 1)),
                      help="[[top, bottom], [left, right]], [rows, cols] or one integer."),)
    examples = (({"padding": [[1, 0], [2, 1]]}, [(2, 3, 2)]), ({}, [(1, 1, 3)]))

    onnx_form = OnnxForm(_zero_padding_onnx, "Pad",
                         reads={"Pad": OnnxRead({"mode", "pads", "value"}, _pad_onnx_in)})
    torch_form = TorchForm(_zero_padding_torch)
    keras_form = KerasForm("ZeroPadding2D", ("padding",))

    def check(self, p, in_shape):
        _need_image(in_shape)

    def transform(self, p, a, fill):
        return np.pad(a, ((0, 0),) + tuple(p["padding"]) + ((0, 0),), constant_values=fill)


def _upsampling_onnx(b, n):
    """Nearest neighbour: (N, H, W, C) -> (N, H, 1, W, 1, C), tiled, then merged (exact)."""
    if n.params["interpolation"] != "nearest":
        b.fail(f"interpolation {n.params['interpolation']!r} is not exported (only nearest)")
    H, W, C = n.in_shapes[0]
    sh, sw = n.params["size"]
    y = _reshape_onnx_to(b, n.x[0], (H, 1, W, 1, C))
    y = b.op("Tile", [y, b.ints([1, 1, sh, 1, sw, 1], "repeats")])
    return [_reshape_onnx_to(b, y, n.out_shapes[0])]


def _upsampling_torch(t, n):
    if n.params.get("interpolation", "nearest") != "nearest":
        raise t.unsupported(n.id, n.type, "interpolation", n.params["interpolation"])
    sh, sw = t.pair(n.params["size"])
    return [], [f"{n.out} = {n.x[0]}.repeat_interleave({sh}, 1).repeat_interleave({sw}, 2)"], {}


def _upsampling_keras(k, n):
    if n.params["interpolation"] != "nearest":
        raise k.unsupported(n.id, n.type, "interpolation", n.params["interpolation"])
    return k.simple("UpSampling2D", ("size", "interpolation"))(n)


def _upsampling_keras_in(o, shapes):
    o.must("interpolation", "nearest")
    return {"size": o.get("size", [2, 2])}


@register
class UpSampling2D(_IndexMap):
    type_id = "UpSampling2D"
    help = "Repeats each row and column size times (nearest-neighbour upsampling)."
    params = (Pair("size", (2, 2), help="Repetitions along height and width."),
              Choice("interpolation", "nearest", ("nearest",),
                     help="Only nearest is available (Keras also has bilinear)."))
    examples = (({}, [(2, 3, 2)]), ({"size": [1, 3]}, [(3, 2, 1)]))

    onnx_form = OnnxForm(_upsampling_onnx, "Reshape, Tile, Reshape (nearest)")
    torch_form = TorchForm(_upsampling_torch)
    keras_form = KerasForm("UpSampling2D", ("size", "interpolation"), write=_upsampling_keras,
                           read=_upsampling_keras_in)

    def check(self, p, in_shape):
        _need_image(in_shape)

    def transform(self, p, a, fill):
        return np.repeat(np.repeat(a, p["size"][0], axis=1), p["size"][1], axis=2)


# -- the 1-D forms: (steps, features) per sample -------------------------------------------------
def _need_sequence(in_shape):
    if len(in_shape) != 2:
        raise ShapeError(f"expects input shaped (None, steps, features), got {fmt_shape(in_shape)}")


def _cropping1d_onnx(b, n):
    left, right = n.params["cropping"]
    T = n.in_shapes[0][0]
    return [b.op("Slice", [n.x[0], b.ints([left], "starts"), b.ints([T - right], "ends"),
                           b.ints([1], "axes")])]


def _cropping1d_torch(t, n):
    left, right = n.params["cropping"]
    return [], [f"{n.out} = {n.x[0]}[:, {left}:{n.in_shapes[0][0] - right}, :]"], {}


@register
class Cropping1D(_IndexMap):
    type_id = "Cropping1D"
    help = "Removes steps at the start and end of a sequence."
    params = (Pair("cropping", (1, 1), min=0,
                   help="Steps removed at the start and the end: [start, end] or one integer."),)
    examples = (({}, [(5, 2)]), ({"cropping": [0, 2]}, [(4, 3)]), ({"cropping": 2}, [(33, 1)]))

    onnx_form = OnnxForm(_cropping1d_onnx, "Slice",
                         reads={"Slice": OnnxRead({"starts", "ends", "axes"}, _slice_onnx_in)})
    torch_form = TorchForm(_cropping1d_torch)
    keras_form = KerasForm("Cropping1D", ("cropping",))

    def check(self, p, in_shape):
        _need_sequence(in_shape)
        if sum(p["cropping"]) >= in_shape[0]:
            raise ShapeError(f"cropping {list(p['cropping'])} removes the whole input "
                             f"{fmt_shape(in_shape)}")

    def transform(self, p, a, fill):
        start, end = p["cropping"]
        return a[:, start:a.shape[1] - end, :]


def _zero_padding1d_onnx(b, n):
    left, right = n.params["padding"]
    return [b.op("Pad", [n.x[0], b.ints([0, left, 0, 0, right, 0], "pads"), b.const(0.0)],
                 mode="constant")]


def _zero_padding1d_torch(t, n):
    left, right = n.params["padding"]
    return [], [f"{n.out} = F.pad({n.x[0]}, (0, 0, {left}, {right}))  # (N, steps, features)"], {}


@register
class ZeroPadding1D(_IndexMap):
    type_id = "ZeroPadding1D"
    help = "Adds steps of zeros at the start and end of a sequence."
    params = (Pair("padding", (1, 1), min=0,
                   help="Steps added at the start and the end: [start, end] or one integer."),)
    examples = (({}, [(3, 2)]), ({"padding": [0, 2]}, [(2, 3)]), ({"padding": 3}, [(1, 1)]))

    onnx_form = OnnxForm(_zero_padding1d_onnx, "Pad",
                         reads={"Pad": OnnxRead({"mode", "pads", "value"}, _pad_onnx_in)})
    torch_form = TorchForm(_zero_padding1d_torch)
    keras_form = KerasForm("ZeroPadding1D", ("padding",))

    def check(self, p, in_shape):
        _need_sequence(in_shape)

    def transform(self, p, a, fill):
        return np.pad(a, ((0, 0), tuple(p["padding"]), (0, 0)), constant_values=fill)


def _upsampling1d_onnx(b, n):
    """(N, T, C) -> (N, T, 1, C), tiled size times, merged: each step repeated (exact)."""
    T, C = n.in_shapes[0]
    y = _reshape_onnx_to(b, n.x[0], (T, 1, C))
    y = b.op("Tile", [y, b.ints([1, 1, n.params["size"], 1], "repeats")])
    return [_reshape_onnx_to(b, y, n.out_shapes[0])]


@register
class UpSampling1D(_IndexMap):
    type_id = "UpSampling1D"
    help = "Repeats each step of a sequence size times."
    params = (Int("size", 2, min=1, help="Repetitions of each step."),)
    examples = (({}, [(3, 2)]), ({"size": 3}, [(2, 33)]), ({"size": 1}, [(4, 1)]))

    onnx_form = OnnxForm(_upsampling1d_onnx, "Reshape, Tile, Reshape")
    torch_form = TorchForm(lambda t, n: ([], [
        f"{n.out} = {n.x[0]}.repeat_interleave({int(n.params['size'])}, 1)"], {}))
    keras_form = KerasForm("UpSampling1D", ("size",))

    def check(self, p, in_shape):
        _need_sequence(in_shape)

    def transform(self, p, a, fill):
        return np.repeat(a, p["size"], axis=1)


def _flatten_torch(t, n):
    return [], [f"{n.out} = {n.x[0]}.reshape({n.x[0]}.shape[0], -1)  # channels-last order"], {}


@register
class Flatten(Layer):
    type_id = "Flatten"
    category = "Reshaping"
    help = "Flattens each sample to one axis, e.g. (28, 28, 1) -> (784,). Costs no copy."
    alias_output = True  # row-major layout: the output is the input buffer
    examples = (({}, [(3, 5, 2)]), ({}, [(7,)]))

    onnx_form = OnnxForm(lambda b, n: [b.op("Flatten", [n.x[0]], axis=1)], "Flatten (axis 1)")
    torch_form = TorchForm(_flatten_torch)
    keras_form = KerasForm("Flatten")

    def output_shapes(self, p, in_shapes):
        return [(int(np.prod(in_shapes[0])),)]

    def forward(self, ops, s):
        pass

    def backward(self, ops, s):
        alias_backward(ops, s)

    def reference(self, p, xs, ws, training=False):
        return [xs[0].reshape(len(xs[0]), -1)]
