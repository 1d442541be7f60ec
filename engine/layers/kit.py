"""Helpers shared by layer declarations: the `activation` parameter's forward/backward plumbing,
written once for Dense, Conv1D, Conv2D and friends."""
from layerloom.core.activations import ALIASES, NAMES, NEEDS_INPUT, ROW_WISE
from layerloom.core.graph import fmt_shape
from layerloom.core.registry import ShapeError
from layerloom.core.errors import ParamError, quote
from layerloom.core.params import INT_LIMIT, Choice, Initializer, Param, Regularizer


def activation_param(default="linear"):
    return Choice("activation", default, NAMES, help="Activation applied to the output.",
                  aliases=ALIASES)


def activation_scratch(act, out_shape):
    """Per-sample scratch a layer needs for its activation: dz (gradient through the activation)
    and z (the pre-activation, kept only for activations whose derivative needs it)."""
    sc = {}
    if act != "linear":
        sc["dz"] = out_shape
    if act in NEEDS_INPUT:
        sc["z"] = out_shape
    return sc


def forward_with_activation(ops, s, act, rows, cols, compute):
    """compute(out_buf, epilogue_act) writes the layer's linear result (with the activation
    fused into its epilogue when epilogue_act is not 'linear')."""
    y = s.y[0].buf
    if s.logits is not None:  # a fused loss wants the pre-activation too
        compute(s.logits.buf, "linear")
        ops.act_forward(act, s.logits.buf, y, rows, cols)
    elif act in NEEDS_INPUT:
        z = s.scratch["z"].buf
        compute(z, "linear")
        ops.act_forward(act, z, y, rows, cols)
    elif act in ROW_WISE:
        compute(y, "linear")
        ops.act_forward(act, y, y, rows, cols)
    else:
        compute(y, act)


def backward_through_activation(ops, s, act, rows, cols):
    """Returns the buffer holding dL/d(pre-activation)."""
    if act == "linear" or s.skip_act_grad:
        return s.dy[0].buf
    dz = s.scratch["dz"].buf
    x = s.scratch["z"].buf if act in NEEDS_INPUT else None
    ops.act_backward(act, s.y[0].buf, s.dy[0].buf, dz, rows, cols, x=x)
    return dz


class WindowPadding(Param):
    """A convolution's or pooling's `padding`: one of Keras' words (valid, same, causal where
    the layer has it) or explicit amounts of zeros, the way ONNX and PyTorch give them: an
    integer (every side), for 2-D layers [rows, cols] (each on both sides, PyTorch's
    padding=(1, 2)) or [[top, bottom], [left, right]] (ZeroPadding2D's spelling), for 3-D
    layers the same with three axes (depth, rows, cols), for 1-D layers [before, after].
    Normalised to the word, or ((top, bottom), (left, right)) for 2-D (three pairs for 3-D)
    and (before, after) for 1-D."""
    kind = "padding"

    def __init__(self, name, default, choices, rank, help=""):
        super().__init__(name, default, help)
        self.choices, self.rank = tuple(choices), rank

    def _expected(self):
        amounts = {2: "an integer >= 0, [rows, cols] or [[top, bottom], [left, right]]",
                   3: "an integer >= 0, [depth, rows, cols] or [[front, back], [top, bottom], "
                      "[left, right]]"}.get(self.rank, "an integer >= 0 or [before, after]")
        return f"one of {', '.join(self.choices)}, or {amounts}"

    def validate(self, value, place):
        if isinstance(value, str):
            if value in self.choices:
                return value
            raise ParamError(f"expected {self._expected()}; got {quote(value)}", place)
        count = lambda v: (isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
                           and 0 <= v <= INT_LIMIT)
        pair = lambda v: (isinstance(v, (list, tuple)) and len(v) == 2  # noqa: E731
                          and all(count(e) for e in v))
        v, r = value, self.rank
        if count(v):
            v = [v, v] if r == 1 else [[v, v]] * r
        elif r > 1 and isinstance(v, (list, tuple)) and len(v) == r and all(map(count, v)):
            v = [[e, e] for e in v]
        ok = pair(v) if r == 1 else (isinstance(v, (list, tuple)) and len(v) == r
                                     and all(pair(e) for e in v))
        if not ok:
            raise ParamError(f"expected {self._expected()}; got {quote(value)}", place)
        return tuple(v) if r == 1 else tuple(tuple(e) for e in v)

    def to_json(self, value):
        if isinstance(value, str) or value is None:
            return value
        return list(value) if self.rank == 1 else [list(e) for e in value]

    def describe(self):
        return self._expected()


def padding_param(choices=("valid", "same"), rank=2, what="zeros"):
    """A convolution's or pooling's `padding` (WindowPadding), its help saying the spellings."""
    words = {"valid": "valid: none", "same": "same: output = ceil(size / stride)",
             "causal": "causal: pad the start"}
    amounts = {2: "an integer, [rows, cols] or [[top, bottom], [left, right]]",
               3: "an integer, [depth, rows, cols] or three [before, after]"}.get(
                   rank, "an integer or [before, after]")
    return WindowPadding("padding", "valid", choices, rank, help=(
        "; ".join(words[c] for c in choices) + f"; or explicit {what} (as ONNX and PyTorch): "
        + amounts + "."))


def axis_pads(padding, rank):
    """Explicit padding as ((top, bottom), (left, right)) (a 3-D layer's: three pairs); a 1-D
    layer's (before, after) is its width's. None for Keras' words."""
    if isinstance(padding, str):
        return None
    return ((0, 0), tuple(padding)) if rank == 1 else tuple(tuple(e) for e in padding)


def window_geometry(size, k, stride, dilation, padding, ceil_mode=False):
    """Output size and padding before, for one spatial axis: Keras/TF's for valid, same and
    causal; for explicit (before, after) amounts ONNX's and PyTorch's, rounding the window
    count down, or up with ceil_mode (a last window that would start in the padding after the
    input is dropped, as PyTorch does). Returns (out, pad_before) or raises ValueError when
    the window does not fit."""
    eff = (k - 1) * dilation + 1
    if padding == "valid":
        padding = (0, 0)
    if padding == "causal":
        out, before = (size - 1) // stride + 1, eff - 1
    elif padding == "same":
        out = -(-size // stride)
        before = max((out - 1) * stride + eff - size, 0) // 2
    else:
        before, after = padding
        span = size + before + after - eff
        out = (-(-span // stride) if ceil_mode else span // stride) + 1
        if ceil_mode and span >= 0 and (out - 1) * stride >= size + before:
            out -= 1
        if span < 0:
            out = 0
    if out < 1:
        name = padding if isinstance(padding, str) else (
            "valid" if padding == (0, 0) else list(padding))
        raise ValueError(f"a window of {k} (dilation {dilation}) does not fit an input of {size} "
                         f"with padding {name}")
    return out, before


def window_geometry_3d(in_shape, kernel, strides, dilation, padding):
    """A 3-D layer's Geometry3D over a (depth, height, width, channels) input: per axis
    window_geometry (Keras' valid and same, or explicit amounts: three pairs), the padding
    after what the last window reaches. Raises ShapeError."""
    from layerloom.backend.geometry import Geometry3D
    if len(in_shape) != 4:
        raise ShapeError("expects input shaped (None, depth, height, width, channels), got "
                         f"{fmt_shape(in_shape)}")
    pads = axis_pads(padding, 3) or (padding,) * 3
    axes = []
    try:
        for n, k, s, d, pad in zip(in_shape[:3], kernel, strides, dilation, pads):
            out, before = window_geometry(n, k, s, d, pad)
            axes.append((out, before, onnx_pads_after(n, out, k, s, d, before)))
    except ValueError as e:
        raise ShapeError(f"{e} (input {fmt_shape(in_shape)})") from None
    (OD, PD, PDA), (OH, PT, PTA), (OW, PL, PLA) = axes
    return Geometry3D(*in_shape, OD, OH, OW, *kernel, *strides, *dilation, PD, PT, PL,
                      PDA, PTA, PLA)


def padded_reference(x, axes_pads, value=0.0):
    """np.pad on the spatial axes: axes_pads is [(before, after), ...] for axes 1..; after may be
    negative meaning crop."""
    import numpy as np
    pads = [(0, 0)] + [(b, max(a, 0)) for b, a in axes_pads] + [(0, 0)]
    return np.pad(x, pads, constant_values=value)


def weight_params(prefix, init):
    """`<prefix>_initializer` and `<prefix>_regularizer`, Keras' names."""
    return (Initializer(f"{prefix}_initializer", init, help=f"How the {prefix} starts."),
            Regularizer(f"{prefix}_regularizer", None,
                        help=f"Penalty on the {prefix} added to the loss: l1 and/or l2."))


def kernel_and_bias_params():
    return weight_params("kernel", "glorot_uniform") + weight_params("bias", "zeros")


def same_shapes(in_shapes):
    """The shape rule of elementwise merges: every input shaped like input 0."""
    first = in_shapes[0]
    for i, sh in enumerate(in_shapes[1:], 1):
        if sh != first:
            raise ShapeError(f"inputs must have the same shape; input 0 is {fmt_shape(first)} "
                             f"but input {i} is {fmt_shape(sh)}")
    return [first]


def alias_backward(ops, s):
    """Backward of a layer whose output aliases its input buffer (Flatten, Reshape): the
    gradient passes through unchanged, added in when the input fans out."""
    if s.dx[0] is not None:
        ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.y[0].size, accumulate=s.acc[0])


# -- interop helpers the layers' ONNX forms share (b: interop's ONNX Builder) -----------------
def onnx_pads_after(size, out, k, stride, dilation, before):
    """Padding after the data that gives `out` windows (Keras' valid/same/causal): what the
    last window reaches past the end, never negative (ONNX floors the count)."""
    return max((out - 1) * stride + (k - 1) * dilation + 1 - size - before, 0)


def onnx_channels_first(b, x, rank):
    return b.op("Transpose", [x], perm=[0, rank + 1] + list(range(1, rank + 1)))


def onnx_channels_last(b, x, rank):
    return b.op("Transpose", [x], perm=[0] + list(range(2, rank + 2)) + [1])


def onnx_padding(imp, node, sizes, k, strides, dil, ceil_mode=False):
    """An ONNX Conv's or pooling's pads (its auto_pad, or pads [begin..., end...]) over the
    spatial `sizes` as our `padding`: "valid" where none, "same" where Keras' same gives the
    same amounts (and ceil_mode changes nothing), else explicit amounts (1-D: (before, after);
    2-D: ((top, bottom), (left, right))). Returns (padding, ceil_mode), ceil_mode dropped
    where it does not change the window count. 3-D: three pairs."""
    a = imp.attrs(node)
    auto, rank = imp.text(a.get("auto_pad", "NOTSET")), len(sizes)
    if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        imp.fail(node, f"auto_pad {auto}")
    same = []  # Keras' same (ONNX's SAME_UPPER) per axis: (before, after)
    for n, kk, s, d in zip(sizes, k, strides, dil):
        total = max((-(-n // s) - 1) * s + (kk - 1) * d + 1 - n, 0)
        same.append((total // 2, total - total // 2))
    if auto == "SAME_UPPER":
        pads = same
    elif auto == "SAME_LOWER":
        pads = [(after, before) for before, after in same]  # the extra one before
    elif auto == "VALID":
        pads = [(0, 0)] * rank
    else:
        flat = [int(v) for v in a.get("pads", [0] * 2 * rank)]
        if len(flat) != 2 * rank or min(flat) < 0:
            imp.fail(node, f"pads {flat}; expected {2 * rank} amounts >= 0")
        pads = list(zip(flat[:rank], flat[rank:]))
    if ceil_mode and auto in ("NOTSET", "VALID"):
        try:
            ceil_mode = any(window_geometry(n, kk, s, d, p_, True) !=
                            window_geometry(n, kk, s, d, p_, False)
                            for n, kk, s, d, p_ in zip(sizes, k, strides, dil, pads))
        except ValueError as e:
            imp.fail(node, str(e))
    else:
        ceil_mode = False  # auto_pad SAME_*: the output is ceil(size / stride) already
    if not ceil_mode and all(p_ == (0, 0) for p_ in pads):
        return "valid", False
    if not ceil_mode and pads == same:
        return "same", False
    return (tuple(pads[0]) if rank == 1 else tuple(tuple(e) for e in pads)), ceil_mode


def keras_padding_word(layer, p, in_shape):
    """Keras' padding word (valid, same) whose windows are exactly the layer's with its
    explicit padding (and ceil_mode), or None where none is."""
    g = layer.geometry(p, in_shape)
    for word in ("valid", "same"):
        q = dict(p, padding=word, **({"ceil_mode": False} if "ceil_mode" in p else {}))
        try:
            h = layer.geometry(q, in_shape)
        except ShapeError:
            continue
        same = ("OD", "OH", "OW", "PD", "PT", "PL")  # a 2-D geometry has no depth: None
        if all(getattr(h, f, None) == getattr(g, f, None) for f in same):
            return word
    return None
