"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate and Dot. The
elementwise merges take inputs of equal ranks whose sizes agree or are 1 on each axis, as
Keras' broadcast (a squeeze-and-excitation's (1, 1, C) scale times an (H, W, C) image): an
input of size 1 on an axis the output is longer on is repeated along it (an index map into a
scratch buffer, kept from the forward for the backward), and its gradient is the output's
summed over the repeats."""
import functools

import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Int
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, register, ShapeError,
                                     TorchForm, Variadic)


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


def broadcast_shapes(in_shapes):
    """The shape rule of elementwise merges: equal ranks, and on each axis the same size or 1
    (Keras' broadcast); the output takes the largest."""
    out = tuple(in_shapes[0])
    for i, sh in enumerate(in_shapes[1:], 1):
        if len(sh) != len(out) or any(a != b and 1 not in (a, b) for a, b in zip(sh, out)):
            raise ShapeError(f"inputs must have the same shape; input 0 is "
                             f"{fmt_shape(in_shapes[0])} but input {i} is {fmt_shape(sh)}")
        out = tuple(max(a, b) for a, b in zip(sh, out))
    return [out]


class _Elementwise(Layer):
    """An elementwise merge over broadcast inputs: forward and backward call their kernels on
    full-size operands (inputs(s)) and write each input's gradient where grads(s) says."""
    category = "Merging"
    inputs = Variadic("x", min=2)

    def output_shapes(self, p, in_shapes):
        return broadcast_shapes(in_shapes)

    @staticmethod
    def _repeated(in_shapes, out):
        return [i for i, sh in enumerate(in_shapes) if tuple(sh) != tuple(out)]

    def scratch(self, p, in_shapes):
        out = self.output_shapes(p, in_shapes)[0]
        wide = {f"wide{i}": out for i in self._repeated(in_shapes, out)}
        return dict(wide, grad=out) if wide else {}

    def constants(self, p, in_shapes):
        """map<i>: the input element each output element reads (input i repeated);
        offs<i>/src<i>: the output elements that read each of its elements."""
        out = self.output_shapes(p, in_shapes)[0]
        const = {}
        for i in self._repeated(in_shapes, out):
            size = int(np.prod(in_shapes[i]))
            mp = np.broadcast_to(np.arange(size).reshape(in_shapes[i]), out).ravel()
            const[f"map{i}"] = mp.astype(np.int32)
            const[f"src{i}"] = np.argsort(mp, kind="stable").astype(np.int32)
            const[f"offs{i}"] = np.concatenate(
                [[0], np.cumsum(np.bincount(mp, minlength=size))]).astype(np.int32)
        return const

    def inputs_full(self, ops, s, expand=False):
        """Each input's buffer at the output's size: a repeated input's scratch copy, filled
        in when expand (the forward)."""
        bufs = []
        for i, x in enumerate(s.x):
            if f"map{i}" not in s.const:
                bufs.append(x.buf)
                continue
            wide = s.scratch[f"wide{i}"].buf
            if expand:
                ops.gather_map(x.buf, wide, s.const[f"map{i}"], s.n, x.size, s.y[0].size)
            bufs.append(wide)
        return bufs

    def grad_into(self, ops, s, i, grad):
        """grad(target buffer, accumulate) writes input i's gradient at the output's size: into
        its dx, or (a repeated input) into scratch, then summed over the repeats into dx."""
        x, dx, acc = s.x[i], s.dx[i], s.acc[i]
        if f"map{i}" not in s.const:
            grad(dx.buf, acc)
            return
        grad(s.scratch["grad"].buf, False)
        ops.gather_map_grad(s.scratch["grad"].buf, dx.buf, s.const[f"offs{i}"],
                            s.const[f"src{i}"], s.n, x.size, s.y[0].size, accumulate=acc)

    def each_grad(self, ops, s, grad):
        """grad(i, target buffer, accumulate) for each input that takes a gradient."""
        for i, dx in enumerate(s.dx):
            if dx is not None:
                self.grad_into(ops, s, i, functools.partial(grad, i))


class _Merge(_Elementwise):
    op = "add"
    examples = (({}, [(5,), (5,)]), ({}, [(3, 4), (3, 4), (3, 4)]),
                ({}, [(3, 4, 5), (1, 1, 5)]), ({}, [(2, 1), (1, 3), (2, 3)]))

    def forward(self, ops, s):
        n = s.n * s.y[0].size
        xs = self.inputs_full(ops, s, expand=True)
        ops.binary(self.op, xs[0], xs[1], s.y[0].buf, n)
        for x in xs[2:]:
            ops.binary(self.op, s.y[0].buf, x, s.y[0].buf, n)


@register
class Subtract(_Merge):
    type_id = "Subtract"
    help = "Input 0 minus input 1 (exactly two inputs)."
    op = "subtract"
    examples = (({}, [(5,), (5,)]), ({}, [(2, 33), (2, 33)]), ({}, [(1, 4, 1), (3, 4, 5)]))

    onnx_form, torch_form, keras_form = _merge_forms("Subtract", "Sub", "Sub")

    def output_shapes(self, p, in_shapes):
        if len(in_shapes) != 2:
            raise ShapeError(f"takes exactly 2 inputs, has {len(in_shapes)}")
        return broadcast_shapes(in_shapes)

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        self.each_grad(ops, s, lambda i, dx, acc: ops.scaled(
            s.dy[0].buf, dx, n, 1.0 if i == 0 else -1.0, accumulate=acc))

    def reference(self, p, xs, ws, training=False):
        return [xs[0] - xs[1]]


@register
class Multiply(_Merge):
    type_id = "Multiply"
    help = ("Product of its inputs, elementwise; an input of size 1 on an axis is repeated "
            "along it (a squeeze-and-excitation's (1, 1, C) scale of an image).")
    op = "multiply"

    onnx_form, torch_form, keras_form = _merge_forms("Multiply", "Mul", "Mul (chained)")

    def scratch(self, p, in_shapes):
        return dict(super().scratch(p, in_shapes), prod=self.output_shapes(p, in_shapes)[0])

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        prod, xs = s.scratch["prod"].buf, self.inputs_full(ops, s)

        def grad(i, dx, acc):
            others = [x for j, x in enumerate(xs) if j != i]
            ops.binary("multiply", s.dy[0].buf, others[0], prod, n)
            for x in others[1:]:
                ops.binary("multiply", prod, x, prod, n)
            ops.copy(prod, dx, n, accumulate=acc)
        self.each_grad(ops, s, grad)

    def reference(self, p, xs, ws, training=False):
        return [functools.reduce(np.multiply, xs)]


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
        self.each_grad(ops, s, lambda i, dx, acc: ops.scaled(
            s.dy[0].buf, dx, n, 1.0 / len(s.x), accumulate=acc))

    def reference(self, p, xs, ws, training=False):
        return [functools.reduce(np.add, xs) / len(xs)]


class _Pick(_Merge):
    """Maximum/Minimum: the gradient flows to the first input that holds the result."""

    def scratch(self, p, in_shapes):
        # sink receives the gradient of inputs that take none, so their claims still count
        out = self.output_shapes(p, in_shapes)[0]
        return dict(super().scratch(p, in_shapes), claimed=out, sink=out)

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        xs, claimed = self.inputs_full(ops, s), s.scratch["claimed"].buf
        last = max((i for i, dx in enumerate(s.dx) if dx is not None), default=-1)
        for i in range(last + 1):  # in order: each claims what the ones before left

            def pick(dx, acc, i=i):
                ops.pick_grad(xs[i], s.y[0].buf, s.dy[0].buf, dx, claimed, n,
                              first=(i == 0), accumulate=acc)
            if s.dx[i] is None:
                pick(s.scratch["sink"].buf, False)
            else:
                self.grad_into(ops, s, i, pick)


@register
class Maximum(_Pick):
    type_id = "Maximum"
    help = "Largest of its inputs, elementwise."
    op = "maximum"

    onnx_form, torch_form, keras_form = _merge_forms("Maximum", "Max", "Max (chained)")

    def reference(self, p, xs, ws, training=False):
        return [functools.reduce(np.maximum, xs)]


@register
class Minimum(_Pick):
    type_id = "Minimum"
    help = "Smallest of its inputs, elementwise."
    op = "minimum"

    onnx_form, torch_form, keras_form = _merge_forms("Minimum", "Min", "Min (chained)")

    def reference(self, p, xs, ws, training=False):
        return [functools.reduce(np.minimum, xs)]


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
class Add(_Elementwise):
    type_id = "Add"
    help = ("Sums its inputs elementwise; inputs of the same shape, or of size 1 where they "
            "differ (repeated: Keras' broadcast).")
    examples = (({}, [(5,), (5,)]), ({}, [(33,), (33,), (33,)]), ({}, [(4, 1, 3), (4, 5, 3)]))

    onnx_form, torch_form, keras_form = _merge_forms("Add", "Add", "Add (chained)")

    def forward(self, ops, s):
        n = s.n * s.y[0].size
        xs = self.inputs_full(ops, s, expand=True)
        ops.add2(xs[0], xs[1], s.y[0].buf, n)
        for x in xs[2:]:
            ops.copy(x, s.y[0].buf, n, accumulate=True)

    def backward(self, ops, s):
        n = s.n * s.y[0].size
        self.each_grad(ops, s, lambda i, dx, acc: ops.copy(s.dy[0].buf, dx, n, accumulate=acc))

    def reference(self, p, xs, ws, training=False):
        return [functools.reduce(np.add, xs)]


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
