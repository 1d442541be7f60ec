"""Merge layers: Subtract, Multiply, Average, Maximum, Minimum (Add and Concatenate have their
own files) and Dot. Inputs of equal shapes, as Keras requires."""

import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Int
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, register, ShapeError,
                                     TorchForm, Variadic)
from layerloom.layers.kit import same_shapes


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py); Keras calls a merge on the list of its inputs ----------------
def _chain_onnx(op_type):
    """Inputs combined left to right, as the kernels do (x0 op x1, then op x2...)."""
    def convert(b, n):
        y = n.x[0]
        for x in n.x[1:]:
            y = b.op(op_type, [y, x])
        return [y]
    return convert


def _average_onnx(b, n):
    y = _chain_onnx("Add")(b, n)[0]
    return [b.op("Mul", [y, b.const(1.0 / len(n.x))])]


def _merge_torch(op):
    def convert(t, n):
        xs = n.x
        if op == "add":
            e = " + ".join(xs)
        elif op == "subtract":
            e = f"{xs[0]} - {xs[1]}"
        elif op == "multiply":
            e = " * ".join(xs)
        elif op == "average":
            e = f"({' + '.join(xs)}) / {len(xs)}"
        elif op in ("maximum", "minimum"):
            e = xs[0]
            for x in xs[1:]:
                e = f"torch.{op}({e}, {x})"
        else:  # concatenate
            axis = int(n.params["axis"])
            e = f"torch.cat([{', '.join(xs)}], {axis})"
        return [], [f"{n.out} = {e}"], {}
    return TorchForm(convert)


def _merge_forms(cls, onnx_op, ops):
    """(onnx_form, torch_form, keras_form) of an elementwise merge: ONNX's op chained."""
    return (OnnxForm(_chain_onnx(onnx_op), ops), _merge_torch(cls.lower()),
            KerasForm(cls, takes_list=True))


class _Merge(Layer):
    category = "Merging"
    inputs = Variadic("x", min=2)
    op = "add"
    examples = (({}, [(5,), (5,)]), ({}, [(3, 4), (3, 4), (3, 4)]))

    def output_shapes(self, p, in_shapes):
        return same_shapes(in_shapes)

    def forward(self, ops, s):
        n = s.n * s.y[0].size
        ops.binary(self.op, s.x[0].buf, s.x[1].buf, s.y[0].buf, n)
        for x in s.x[2:]:
            ops.binary(self.op, s.y[0].buf, x.buf, s.y[0].buf, n)


@register
class Subtract(_Merge):
    type_id = "Subtract"
    help = "Input 0 minus input 1 (exactly two inputs)."
    op = "subtract"
    examples = (({}, [(5,), (5,)]), ({}, [(2, 33), (2, 33)]))

    onnx_form, torch_form, keras_form = _merge_forms("Subtract", "Sub", "Sub")

    def output_shapes(self, p, in_shapes):
        if len(in_shapes) != 2:
            raise ShapeError(f"takes exactly 2 inputs, has {len(in_shapes)}")
        return same_shapes(in_shapes)

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        for i, (dx, acc) in enumerate(zip(s.dx, s.acc)):
            if dx is not None:
                ops.scaled(s.dy[0].buf, dx.buf, n, 1.0 if i == 0 else -1.0, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [xs[0] - xs[1]]


@register
class Multiply(_Merge):
    type_id = "Multiply"
    help = "Product of its inputs, elementwise."
    op = "multiply"

    onnx_form, torch_form, keras_form = _merge_forms("Multiply", "Mul", "Mul (chained)")

    def scratch(self, p, in_shapes):
        return {"prod": in_shapes[0]}

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        prod = s.scratch["prod"].buf
        for i, (dx, acc) in enumerate(zip(s.dx, s.acc)):
            if dx is None:
                continue
            others = [x for j, x in enumerate(s.x) if j != i]
            ops.binary("multiply", s.dy[0].buf, others[0].buf, prod, n)
            for x in others[1:]:
                ops.binary("multiply", prod, x.buf, prod, n)
            ops.copy(prod, dx.buf, n, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [np.prod(xs, axis=0)]


@register
class Average(_Merge):
    type_id = "Average"
    help = "Mean of its inputs, elementwise."

    onnx_form = OnnxForm(_average_onnx, "Add (chained), Mul")
    torch_form = _merge_torch("average")
    keras_form = KerasForm("Average", takes_list=True)

    def forward(self, ops, s):
        super().forward(ops, s)
        n = s.n * s.y[0].size
        ops.scaled(s.y[0].buf, s.y[0].buf, n, 1.0 / len(s.x))

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        for dx, acc in zip(s.dx, s.acc):
            if dx is not None:
                ops.scaled(s.dy[0].buf, dx.buf, n, 1.0 / len(s.x), accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [np.mean(xs, axis=0)]


class _Pick(_Merge):
    """Maximum/Minimum: the gradient flows to the first input that holds the result."""

    def scratch(self, p, in_shapes):
        # sink receives the gradient of inputs that take none, so their claims still count
        return {"claimed": in_shapes[0], "sink": in_shapes[0]}

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        last = max((i for i, dx in enumerate(s.dx) if dx is not None), default=-1)
        for i, (x, dx, acc) in enumerate(zip(s.x, s.dx, s.acc)):
            if i > last:
                break
            target = dx.buf if dx is not None else s.scratch["sink"].buf
            ops.pick_grad(x.buf, s.y[0].buf, s.dy[0].buf, target, s.scratch["claimed"].buf, n,
                          first=(i == 0), accumulate=acc and dx is not None)


@register
class Maximum(_Pick):
    type_id = "Maximum"
    help = "Largest of its inputs, elementwise."
    op = "maximum"

    onnx_form, torch_form, keras_form = _merge_forms("Maximum", "Max", "Max (chained)")

    def reference(self, p, xs, ws, training=False):
        return [np.max(xs, axis=0)]


@register
class Minimum(_Pick):
    type_id = "Minimum"
    help = "Smallest of its inputs, elementwise."
    op = "minimum"

    onnx_form, torch_form, keras_form = _merge_forms("Minimum", "Min", "Min (chained)")

    def reference(self, p, xs, ws, training=False):
        return [np.min(xs, axis=0)]


def _dot_onnx(b, n):
    return [b.reduce("ReduceSum", b.op("Mul", [n.x[0], n.x[1]]), [-1], 1)]


def _dot_torch(t, n):
    if n.params["axes"] not in (-1, 1) or any(len(s) != 1 for s in n.in_shapes):
        raise t.unsupported(n.id, n.type, "axes", n.params["axes"], "is written for vectors only")
    return [], [f"{n.out} = ({n.x[0]} * {n.x[1]}).sum(-1, keepdim=True)"], {}


def _dot_keras_in(o, shapes):
    axes = o.get("axes", -1)
    if isinstance(axes, list) and len(set(axes)) == 1:
        axes = axes[0]
    if axes not in (-1, 1):
        o.fail("axes", "has no Layerloom form (only -1 or 1 on vectors)")
    o.must("normalize", False)
    return {"axes": axes}


@register
class Dot(Layer):
    type_id = "Dot"
    category = "Merging"
    help = ("Dot product of two (features) inputs along their last axis: (d), (d) -> (1). "
            "Only axes=-1 on vectors (Keras' most common use) is available.")
    params = (Int("axes", -1, min=-1, max=1, help="Axis to sum over: -1 or 1 (the features)."),)
    inputs = ("a", "b")
    examples = (({}, [(5,), (5,)]), ({"axes": 1}, [(33,), (33,)]))

    onnx_form = OnnxForm(_dot_onnx, "Mul, ReduceSum (keepdims)")
    torch_form = TorchForm(_dot_torch)
    keras_form = KerasForm("Dot", ("axes",), read=_dot_keras_in, takes_list=True)

    def output_shapes(self, p, in_shapes):
        a, b = in_shapes
        if len(a) != 1 or a != b:
            raise ShapeError(f"expects two inputs shaped (None, d) with the same d; got "
                             f"{fmt_shape(a)} and {fmt_shape(b)}")
        return [(1,)]

    def forward(self, ops, s):
        ops.row_dot(s.x[0].buf, s.x[1].buf, s.y[0].buf, s.n, s.x[0].size)

    def backward(self, ops, s):
        for i, (dx, acc) in enumerate(zip(s.dx, s.acc)):
            if dx is not None:
                ops.row_dot_grad(s.dy[0].buf, s.x[1 - i].buf, dx.buf, s.n, s.x[0].size,
                                 accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [(xs[0] * xs[1]).sum(-1, keepdims=True)]


@register
class Add(Layer):
    type_id = "Add"
    category = "Merging"
    help = "Sums its inputs elementwise; all inputs must have the same shape."
    inputs = Variadic("x", min=2)
    examples = (({}, [(5,), (5,)]), ({}, [(33,), (33,), (33,)]))

    onnx_form, torch_form, keras_form = _merge_forms("Add", "Add", "Add (chained)")

    def output_shapes(self, p, in_shapes):
        return same_shapes(in_shapes)

    def forward(self, ops, s):
        n = s.n * s.y[0].size
        ops.add2(s.x[0].buf, s.x[1].buf, s.y[0].buf, n)
        for x in s.x[2:]:
            ops.copy(x.buf, s.y[0].buf, n, accumulate=True)

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        for dx, acc in zip(s.dx, s.acc):
            if dx is not None:
                ops.copy(s.dy[0].buf, dx.buf, n, accumulate=acc)

    def reference(self, p, xs, ws, training=False):
        return [sum(xs)]


def _axis(axis, rank):
    """Keras axis (counting the batch axis as 0) -> per-sample axis, or None if invalid."""
    a = axis - 1 if axis > 0 else axis + rank
    return a if 0 <= a < rank else None


def _concatenate_onnx(b, n):
    axis = n.params["axis"]
    rank = len(n.in_shapes[0])
    a = axis - 1 if axis > 0 else axis + rank  # Keras' axis, batch counted, per sample
    return [b.op("Concat", n.x, axis=a + 1)]


def _concatenate_onnx_in(imp, node, type_id):
    vs = [imp.value(node, i) for i in range(len(node.input))]
    if len({(v.nchw, v.pooled) for v in vs}) != 1:
        imp.fail(node, "inputs in different layouts")
    rank = len(imp.onnx_shape(vs[0])) + 1
    axis = imp.attrs(node).get("axis", 1)
    if axis % rank != imp.channel_axis(vs[0]) or vs[0].pooled:
        imp.fail(node, f"axis {axis}; Layerloom concatenates along the channels/features")
    imp.set(node, vs[0].like(imp.add(node, type_id, {"axis": -1}, vs)))


@register
class Concatenate(Layer):
    type_id = "Concatenate"
    category = "Merging"
    help = "Joins its inputs along `axis` (Keras counting: -1 is the last axis, 0 the batch)."
    params = (Int("axis", -1, help="Axis to join along; not 0 (the batch axis)."),)
    inputs = Variadic("x", min=2)
    examples = (({}, [(3,), (5,)]), ({"axis": 1}, [(2, 3), (4, 3), (1, 3)]),
                ({"axis": -1}, [(2, 31), (2, 2)]))

    onnx_form = OnnxForm(_concatenate_onnx, "Concat",
                         reads={"Concat": OnnxRead({"axis"}, _concatenate_onnx_in)})
    torch_form = _merge_torch("concatenate")
    keras_form = KerasForm("Concatenate", ("axis",), takes_list=True,
                           read=lambda o, shapes: {"axis": o.get("axis", -1)})

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
