"""Primitives: what custom layers are built from as blocks, without Python code in the project
file (issue 30, item 2): Weight (a declared, learned tensor of any shape, broadcast over the
batch: a learnable scale, a position table), MatMul (batched over the samples and the leading
axes, either operand transposed), Reduce (sum, mean or max along an axis), Slice (a range along
an axis) and RandomNormal (a sampler, drawing in training and at inference). With Reshape,
Permute, Softmax, Concatenate, Lambda, Dense and the merges they build a transformer block, a
patch extractor, a position embedding or a VAE's sampler (assets/examples/blocks/).

Axes count as Keras counts them (Softmax's, Concatenate's): the batch is axis 0, 1 the first
per-sample axis, -1 the last. The kernels: clkernels/primitives.cl, attention.cl's batched GEMM
and elementwise.cl's copies, launched by backend/primitive_ops.py."""
import itertools
import math
import zlib

import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Choice, Float, Initializer, Int, Shape
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, register, ShapeError,
                                     TorchForm, WeightSpec)
from layerloom.layers.attention import _torch_params

CATEGORY = "Primitives"


def sample_axis(axis, shape, what="axis"):
    """Keras' axis (the batch 0, -1 the last) as a 0-based per-sample axis of `shape`, or a
    ShapeError naming the axes there are."""
    rank = len(shape)
    if axis == 0 or not -rank <= axis <= rank:
        raise ShapeError(f"{what} {axis} is not an axis of the input {fmt_shape(shape)} "
                         f"(1 to {rank}, or -{rank} to -1; 0 is the batch)")
    return axis + rank if axis < 0 else axis - 1


def _geometry(shape, a):
    """(outer per sample, length, inner) of `shape` around axis a."""
    return math.prod(shape[:a]), shape[a], math.prod(shape[a + 1:])


def _keras_identity(n, expr, note):
    """A keras.ops expression as the node: layers.Identity named by the node id around it, as
    Lambda's Keras form writes its formula."""
    return [f"# {n.type}: {note}", f"{n.out[0]} = layers.Identity(name={n.id!r})({expr})"]


_NO_KERAS_IN = ("its Keras form is keras.ops calls inside layers.Identity (Lambda's way): "
                "the Keras import reads the Identity, not the ops before it")


# -- Weight --------------------------------------------------------------------------------------
def _keras_fans(shape):
    """(fan_in, fan_out) as Keras' compute_fans gives them (train/initializers.py fans)."""
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _weight_onnx(b, n):
    """The weight as a constant shaped (1, ...), Expand to (the input's batch, ...)."""
    shape = tuple(n.params["shape"])
    table = b.const(n.w["weight"].reshape((1,) + shape), f"{n.id}/weight")
    batch = b.op("Shape", [n.x[0]], end=1)
    target = b.op("Concat", [batch, b.ints(shape)], axis=0)
    return [b.op("Expand", [table, target])]


def _weight_torch(t, n):
    from layerloom.core.registry import get_layer
    specs = get_layer(n.type).weights(n.params, n.in_shapes)
    init = _torch_params(t, n, specs, key_of=lambda name: "initializer")
    shape = n.params["shape"]
    ones = ", 1" * len(shape)
    fwd = [f"{n.out} = {n.self}.weight.unsqueeze(0).repeat({n.x[0]}.shape[0]{ones})  # the "
           "input's batch size only"]
    return init, fwd, {"weight": ("weight", "")}


_WEIGHT_CLASS = '''
@keras.saving.register_keras_serializable(package="layerloom")
class Weight(layers.Layer):
    """Layerloom's Weight: a learned tensor of `shape`, repeated for each sample of the input
    (of which only the batch size is used)."""

    def __init__(self, shape, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.table_shape = tuple(int(d) for d in shape)
        self.initializer = keras.initializers.get(initializer)

    def get_config(self):
        return {**super().get_config(), "shape": list(self.table_shape),
                "initializer": keras.initializers.serialize(self.initializer)}

    def build(self, input_shape):
        self.table = self.add_weight(name="weight", shape=self.table_shape,
                                     initializer=self.initializer)

    def call(self, inputs):
        table = ops.expand_dims(ops.convert_to_tensor(self.table), 0)
        return ops.broadcast_to(table, (ops.shape(inputs)[0],) + self.table_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self.table_shape
'''


def _weight_keras(k, n):
    p = n.params
    k.define(n, {"Weight": _WEIGHT_CLASS})
    args = [f"{list(p['shape'])!r}", f"initializer={k.initializer(p['initializer'])}"]
    return [f"{n.out[0]} = " + k.call("Weight", args, n, n.x, module="")]


def _weight_keras_in(o, shapes):
    p = {"shape": [int(d) for d in o.get("shape")]}
    init = o.initializer("initializer")
    if init is not None:
        p["initializer"] = init
    return p


@register
class Weight(Layer):
    type_id = "Weight"
    category = CATEGORY
    help = ("A learned tensor of `shape` (a declared weight: a learnable scale, a position "
            "table), repeated for each sample; only the input's batch size is used.")
    params = (Shape("shape", (4,), help="Per-sample shape of the weight and of the output."),
              Initializer("initializer", "glorot_uniform", help="How the weight starts."))
    headline = ("shape",)
    differentiable = False  # the input gives only its batch size
    examples = (({"shape": [3, 4]}, [(2,)]), ({"shape": [5], "initializer": "ones"}, [(3, 2)]),
                ({"shape": [2, 3, 33], "initializer": "zeros"}, [(1,)]))
    onnx_form = OnnxForm(_weight_onnx, "the weight (constant), Expand to the input's batch "
                                       "(Shape, Concat)")
    torch_form = TorchForm(_weight_torch)
    keras_form = KerasForm("Weight", write=_weight_keras, read=_weight_keras_in,
                           weight_order=("weight",),
                           doc="a Keras layer the export defines and registers (its config: "
                               "shape, initializer; one weight)")

    def output_shapes(self, p, in_shapes):
        return [tuple(p["shape"])]

    def weights(self, p, in_shapes):
        shape = tuple(p["shape"])
        return [WeightSpec("weight", shape, p["initializer"], *_keras_fans(shape))]

    def forward(self, ops, s):
        ops.broadcast_rows(s.w["weight"].buf, s.y[0].buf, s.n, s.y[0].size)

    def backward(self, ops, s):
        if "weight" in s.dw:
            ops.sum_rows(s.dy[0].buf, s.dw["weight"].buf, s.n, s.y[0].size)

    def reference(self, p, xs, ws, training=False):
        w = np.asarray(ws["weight"], np.float64)
        return [np.broadcast_to(w, (len(xs[0]),) + w.shape).copy()]


# -- MatMul -------------------------------------------------------------------------------------
def _matmul_dims(p, in_shapes):
    """(leading axes, m, k, n) of the product, or a ShapeError saying what does not fit."""
    a, b = (tuple(s) for s in in_shapes)
    for name, sh in (("a", a), ("b", b)):
        if len(sh) < 2:
            raise ShapeError(f"input {name} must have at least 2 axes per sample (a matrix "
                             f"each), got {fmt_shape(sh)}")
    if len(a) != len(b) or a[:-2] != b[:-2]:
        raise ShapeError(f"a and b must have the same leading axes (only the last two are "
                         f"multiplied); a is {fmt_shape(a)} and b is {fmt_shape(b)}")
    m, k = a[-1:-3:-1] if p["transpose_a"] else a[-2:]
    k2, n = b[-1:-3:-1] if p["transpose_b"] else b[-2:]
    if k != k2:
        ta = " transposed" if p["transpose_a"] else ""
        tb = " transposed" if p["transpose_b"] else ""
        raise ShapeError(f"a{ta} has {k} columns but b{tb} has {k2} rows; a is {fmt_shape(a)}, "
                         f"b is {fmt_shape(b)}")
    return a[:-2], m, k, n


def _matmul_onnx(b, n):
    rank = len(n.in_shapes[0]) + 1  # with the batch
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    x, y = n.x
    if n.params["transpose_a"]:
        x = b.op("Transpose", [x], perm=perm)
    if n.params["transpose_b"]:
        y = b.op("Transpose", [y], perm=perm)
    return [b.op("MatMul", [x, y])]


def _matmul_onnx_in(imp, node, type_id):
    """A MatMul of two computed tensors (a constant second operand is a Dense: declined, for
    the importer's own reader) of the same rank and leading axes. An operand the importer holds
    channels-first (a Transpose of a matrix per sample, read as a layout) is that matrix
    transposed: transpose_a or transpose_b."""
    if len(node.input) > 1 and node.input[1] in imp.consts:
        imp.decline(node, "a constant second operand (read as a Dense)")
    a, b = imp.value(node, 0), imp.value(node, 1)
    flags = {}
    for name, v in (("transpose_a", a), ("transpose_b", b)):
        if v.pooled or (v.nchw and len(imp.shape(v)) != 2):
            imp.decline(node, "an operand held channels-first")
        flags[name] = bool(v.nchw)
    sa, sb = imp.shape(a), imp.shape(b)
    if len(sa) < 2 or len(sa) != len(sb) or sa[:-2] != sb[:-2]:
        imp.decline(node, f"operands {list(sa)} and {list(sb)} (numpy's broadcast; the MatMul "
                          "layer takes two of the same leading axes)")
    nid = imp.add(node, type_id, flags, [type(a)(a.node, a.port), type(b)(b.node, b.port)])
    imp.set(node, type(a)(nid))


def _matmul_torch(t, n):
    x, y = n.x
    if n.params["transpose_a"]:
        x = f"{x}.transpose(-1, -2)"
    if n.params["transpose_b"]:
        y = f"{y}.transpose(-1, -2)"
    return [], [f"{n.out} = torch.matmul({x}, {y})"], {}


def _matmul_keras(k, n):
    x, y = n.x
    if n.params["transpose_a"]:
        x = f"ops.swapaxes({x}, -1, -2)"
    if n.params["transpose_b"]:
        y = f"ops.swapaxes({y}, -1, -2)"
    return _keras_identity(n, f"ops.matmul({x}, {y})", "keras.ops.matmul")


@register
class MatMul(Layer):
    type_id = "MatMul"
    category = CATEGORY
    help = ("Matrix product of the last two axes, a (..., m, k) times b (..., k, n) -> (..., m, "
            "n), for each sample and each index of the leading axes (the same in a and b).")
    params = (Bool("transpose_a", False, help="Use a's last two axes swapped: a is (..., k, m)."),
              Bool("transpose_b", False, help="Use b's last two axes swapped: b is (..., n, k) "
                                              "(attention's q . k^T)."))
    inputs = ("a", "b")
    headline = ()
    examples = (({}, [(3, 4), (4, 5)]), ({"transpose_b": True}, [(2, 3, 4), (2, 5, 4)]),
                ({"transpose_a": True}, [(4, 3), (4, 2)]),
                ({"transpose_a": True, "transpose_b": True}, [(2, 2, 5, 3), (2, 2, 4, 5)]),
                ({}, [(31, 9), (9, 33)]))
    onnx_form = OnnxForm(_matmul_onnx, "MatMul (Transpose of the last two axes before it for a "
                                       "transposed operand)",
                         reads={"MatMul": OnnxRead((), _matmul_onnx_in)})
    torch_form = TorchForm(_matmul_torch)
    keras_form = KerasForm(None, write=_matmul_keras,
                           doc="ops.matmul (ops.swapaxes for a transposed operand), then "
                               "layers.Identity(name=node id)")
    no_form = {"keras_in": _NO_KERAS_IN}

    def output_shapes(self, p, in_shapes):
        lead, m, k, n = _matmul_dims(p, in_shapes)
        return [lead + (m, n)]

    def _dims(self, s):
        lead, m, k, n = _matmul_dims(s.params, [x.shape for x in s.x])
        return s.n * math.prod(lead), m, k, n

    def forward(self, ops, s):
        count, m, k, n = self._dims(s)
        ops.matmul(s.x[0].buf, s.x[1].buf, s.y[0].buf, count, m, k, n,
                   s.params["transpose_a"], s.params["transpose_b"])

    def backward(self, ops, s):
        count, m, k, n = self._dims(s)
        da, db = (d.buf if d is not None else None for d in s.dx)
        ops.matmul_backward(s.x[0].buf, s.x[1].buf, s.dy[0].buf, da, db, count, m, k, n,
                            s.params["transpose_a"], s.params["transpose_b"], s.acc[0],
                            s.acc[1])

    def reference(self, p, xs, ws, training=False):
        a, b = xs
        if p["transpose_a"]:
            a = np.swapaxes(a, -1, -2)
        if p["transpose_b"]:
            b = np.swapaxes(b, -1, -2)
        return [np.matmul(a, b)]


# -- Reduce -------------------------------------------------------------------------------------
_ONNX_REDUCE = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax"}
_TORCH_REDUCE = {"sum": "torch.sum", "mean": "torch.mean", "max": "torch.amax"}


def _reduce_onnx(b, n):
    a = sample_axis(n.params["axis"], n.in_shapes[0])
    return [b.reduce(_ONNX_REDUCE[n.params["op"]], n.x[0], [a + 1], int(n.params["keepdims"]))]


def _reduce_torch(t, n):
    p = n.params
    a = sample_axis(p["axis"], n.in_shapes[0]) + 1
    return [], [f"{n.out} = {_TORCH_REDUCE[p['op']]}({n.x[0]}, dim={a}, "
                f"keepdim={bool(p['keepdims'])!r})"], {}


def _reduce_keras(k, n):
    p = n.params
    a = sample_axis(p["axis"], n.in_shapes[0]) + 1
    return _keras_identity(n, f"ops.{p['op']}({n.x[0]}, axis={a}, "
                              f"keepdims={bool(p['keepdims'])!r})", f"keras.ops.{p['op']}")


@register
class Reduce(Layer):
    type_id = "Reduce"
    category = CATEGORY
    help = ("Sum, mean or maximum along one axis (Keras' axis: -1 the last, 1 the first after "
            "the batch); keepdims keeps that axis with size 1.")
    params = (Choice("op", "sum", ("sum", "mean", "max"), help="What the values along the axis "
                     "give: their sum, mean or maximum (whose gradient goes to the first "
                     "maximum)."),
              Int("axis", -1, help="The axis reduced; counts the batch as 0."),
              Bool("keepdims", False, help="Keep the reduced axis, with size 1."))
    headline = ("op", "axis")
    examples = (({"op": "sum"}, [(3, 5)]), ({"op": "mean", "axis": 1, "keepdims": True}, [(4, 3)]),
                ({"op": "max", "axis": 2}, [(2, 33, 3)]),
                ({"op": "max", "axis": -1, "keepdims": True}, [(7,)]),
                ({"op": "mean", "axis": -2}, [(1, 4)]))
    onnx_form = OnnxForm(_reduce_onnx, "ReduceSum, ReduceMean or ReduceMax over one axis "
                                       "(keepdims)")
    torch_form = TorchForm(_reduce_torch)
    keras_form = KerasForm(None, write=_reduce_keras,
                           doc="ops.sum, ops.mean or ops.max (axis, keepdims), then "
                               "layers.Identity(name=node id)")
    no_form = {"keras_in": _NO_KERAS_IN}

    def output_shapes(self, p, in_shapes):
        shape = tuple(in_shapes[0])
        a = sample_axis(p["axis"], shape)
        if p["keepdims"]:
            return [shape[:a] + (1,) + shape[a + 1:]]
        if len(shape) == 1:
            raise ShapeError(f"reducing the only axis of {fmt_shape(shape)} leaves no axis per "
                             "sample; set keepdims to keep it with size 1")
        return [shape[:a] + shape[a + 1:]]

    def _geometry(self, s):
        shape = s.x[0].shape
        outer, length, inner = _geometry(shape, sample_axis(s.params["axis"], shape))
        return s.n * outer, length, inner

    def forward(self, ops, s):
        ops.reduce_axis(s.params["op"], s.x[0].buf, s.y[0].buf, *self._geometry(s))

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.reduce_axis_backward(s.params["op"], s.x[0].buf, s.dy[0].buf, s.dx[0].buf,
                                     *self._geometry(s), accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        a = sample_axis(p["axis"], xs[0].shape[1:]) + 1
        f = {"sum": np.sum, "mean": np.mean, "max": np.max}[p["op"]]
        return [f(xs[0], axis=a, keepdims=p["keepdims"])]


# -- Slice --------------------------------------------------------------------------------------
def _slice_range(p, shape):
    """(axis, start, stop) 0-based and within the axis (Python's rules: negative counts from
    the end, stop null the end), or a ShapeError for an empty slice."""
    a = sample_axis(p["axis"], shape)
    length = shape[a]
    start, stop, _ = slice(p["start"], p["stop"]).indices(length)
    if stop <= start:
        stop_word = "the end" if p["stop"] is None else p["stop"]
        raise ShapeError(f"start {p['start']} to stop {stop_word} is empty on axis "
                         f"{p['axis']} of {length} (input {fmt_shape(shape)})")
    return a, start, stop


def _slice_onnx(b, n):
    a, start, stop = _slice_range(n.params, n.in_shapes[0])
    return [b.op("Slice", [n.x[0], b.ints([start], "starts"), b.ints([stop], "ends"),
                           b.ints([a + 1], "axes")])]


def _slice_torch(t, n):
    a, start, stop = _slice_range(n.params, n.in_shapes[0])
    return [], [f"{n.out} = {n.x[0]}.narrow({a + 1}, {start}, {stop - start})"], {}


def _slice_keras(k, n):
    a, start, stop = _slice_range(n.params, n.in_shapes[0])
    index = ", ".join([":"] * (a + 1) + [f"{start}:{stop}"])
    return _keras_identity(n, f"{n.x[0]}[{index}]", "indexing (keras.ops' GetItem)")


@register
class Slice(Layer):
    type_id = "Slice"
    category = CATEGORY
    help = ("Takes start:stop along one axis, as Python slices (negative counts from the end; "
            "stop null: to the end); the other axes whole.")
    params = (Int("axis", -1, help="The axis sliced; counts the batch as 0."),
              Int("start", 0, help="First index taken; negative counts from the end."),
              Int("stop", None, help="Index after the last taken; negative counts from the "
                                     "end; null: to the end."))
    headline = ("axis", "start", "stop")
    examples = (({"axis": 1, "start": 1, "stop": 3}, [(4, 5)]),
                ({"axis": -1, "start": -3}, [(2, 33)]),
                ({"axis": 2, "start": 0, "stop": 2}, [(3, 4, 2)]),
                ({"axis": -2, "start": 1, "stop": -1}, [(5, 3)]))
    onnx_form = OnnxForm(_slice_onnx, "Slice (one axis, step 1)")
    torch_form = TorchForm(_slice_torch)
    keras_form = KerasForm(None, write=_slice_keras,
                           doc="indexing x[:, ..., start:stop], then "
                               "layers.Identity(name=node id)")
    no_form = {"keras_in": _NO_KERAS_IN}

    def output_shapes(self, p, in_shapes):
        shape = tuple(in_shapes[0])
        a, start, stop = _slice_range(p, shape)
        return [shape[:a] + (stop - start,) + shape[a + 1:]]

    def _geometry(self, s):
        shape = s.x[0].shape
        a, start, stop = _slice_range(s.params, shape)
        outer, length, inner = _geometry(shape, a)
        return s.n * outer, length, inner, start, stop - start

    def forward(self, ops, s):
        ops.slice_axis(s.x[0].buf, s.y[0].buf, *self._geometry(s))

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.slice_axis_backward(s.dy[0].buf, s.dx[0].buf, *self._geometry(s),
                                    accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        a, start, stop = _slice_range(p, xs[0].shape[1:])
        index = (slice(None),) * (a + 1) + (slice(start, stop),)
        return [xs[0][index]]


# -- RandomNormal -------------------------------------------------------------------------------
# Philox lanes (primitives.cl random_normal's counter word 2): training draws are keyed by the
# step, so a seed reproduces a run; draws at inference by a count of them in this process, so
# that two predictions (and two batches of one) get fresh samples
TRAINING_LANE, INFERENCE_LANE = 3, 4
_DRAWS = itertools.count(1)


def _random_normal_onnx(b, n):
    """RandomNormalLike; with stddev 0 the mean Expanded to the input's shape (onnxruntime's
    RandomNormalLike refuses a scale of 0: an assertion that ends the process)."""
    p = n.params
    if p["stddev"] == 0:
        return [b.op("Expand", [b.const(p["mean"]), b.op("Shape", [n.x[0]])])]
    return [b.op("RandomNormalLike", [n.x[0]], mean=p["mean"], scale=p["stddev"], dtype=1)]


def _random_normal_onnx_in(imp, node, type_id):
    a, v = imp.attrs(node), imp.value(node, 0)
    if a.get("dtype", 1) != 1:
        imp.fail(node, f"dtype {a.get('dtype')}; Layerloom draws float32")
    f32 = lambda x: float(str(np.float32(x)))  # noqa: E731  0.1, not 0.100000001
    params = {"mean": f32(a.get("mean", 0.0)), "stddev": f32(a.get("scale", 1.0))}
    if "seed" in a:
        params["seed"] = int(abs(float(a["seed"]))) % 2**31
    imp.set(node, v.like(imp.add(node, type_id, params, [v])))


def _random_normal_torch(t, n):
    p = n.params
    return [], [f"{n.out} = {p['mean']!r} + {p['stddev']!r} * torch.randn_like({n.x[0]})  "
                "# a sampler: in training and at inference"], {}


_RANDOM_NORMAL_CLASS = '''
@keras.saving.register_keras_serializable(package="layerloom")
class RandomNormal(layers.Layer):
    """Layerloom's RandomNormal: samples of N(mean, stddev) shaped like the input, drawn in
    training and at inference (a VAE's sampler)."""

    def __init__(self, mean=0.0, stddev=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.stddev, self.seed = float(mean), float(stddev), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev,
                "seed": self.seed}

    def call(self, inputs):
        return keras.random.normal(ops.shape(inputs), mean=self.mean, stddev=self.stddev,
                                   seed=self.seed_generator, dtype=inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
'''


def _random_normal_keras(k, n):
    k.define(n, {"RandomNormal": _RANDOM_NORMAL_CLASS})
    return [f"{n.out[0]} = " + k.call("RandomNormal", k.kw(n, ("mean", "stddev", "seed")), n,
                                      n.x, module="")]


def _random_normal_keras_in(o, shapes):
    seed = o.get("seed")
    return {"mean": o.floats("mean", 0.0), "stddev": o.floats("stddev", 1.0),
            **({"seed": int(seed) % 2**31} if seed is not None else {})}


@register
class RandomNormal(Layer):
    type_id = "RandomNormal"
    category = CATEGORY
    help = ("Samples of a normal distribution N(mean, stddev) shaped like its input, drawn in "
            "training and at inference (a VAE's sampler); only the input's shape is used.")
    params = (Float("mean", 0.0, help="Mean of the samples."),
              Float("stddev", 1.0, min=0.0, help="Standard deviation of the samples."),
              Int("seed", 0, min=0, max=2**31 - 1, help="Added to the training seed for this "
                                                        "layer."))
    headline = ("mean", "stddev")
    stochastic = True
    differentiable = False  # the samples do not depend on the input's values
    # the harness compares the forward with `reference`: with stddev 0 the samples are the mean
    # exactly; their distribution is tests/test_primitives.py's
    examples = (({"mean": 0.5, "stddev": 0.0}, [(7,)]), ({"stddev": 0.0}, [(3, 4)]))
    onnx_form = OnnxForm(_random_normal_onnx, "RandomNormalLike(mean, scale); with stddev "
                                              "0 the mean, Expanded to the input's Shape",
                         reads={"RandomNormalLike": OnnxRead({"mean", "scale", "seed", "dtype"},
                                                             _random_normal_onnx_in)})
    torch_form = TorchForm(_random_normal_torch)
    keras_form = KerasForm("RandomNormal", write=_random_normal_keras,
                           read=_random_normal_keras_in,
                           doc="a Keras layer the export defines and registers: "
                               "keras.random.normal shaped like its input")

    def output_shapes(self, p, in_shapes):
        return [tuple(in_shapes[0])]

    def forward(self, ops, s):
        salt = zlib.crc32(s.node_id.encode()) ^ s.params["seed"]
        if s.training:
            counter, lane = s.step, TRAINING_LANE
        else:
            counter, lane = next(_DRAWS), INFERENCE_LANE
        ops.random_normal(s.y[0].buf, s.n * s.y[0].size, s.params["mean"], s.params["stddev"],
                          s.seed, salt, counter, lane)

    def backward(self, ops, s):
        pass  # the samples do not depend on the input (differentiable False)

    def reference(self, p, xs, ws, training=False):
        """The mean where stddev is 0; else samples of the distribution (not the device's)."""
        if p["stddev"] == 0:
            return [np.full(xs[0].shape, p["mean"])]
        return [np.random.default_rng().normal(p["mean"], p["stddev"], xs[0].shape)]
