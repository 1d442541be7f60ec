"""TimeDistributed: any layer of one output applied to every step of a sequence, the same weights
at each step. The engine runs layers on `n` rows; the wrapped layer runs on n * steps rows of
the per-step shape, its parameters held in the project file as {"type", "params"} and checked
against that layer's own declaration."""
import dataclasses
from types import SimpleNamespace

import numpy as np

from layerloom.backend.ops import Tensor
from layerloom.core.errors import ParamError, quote
from layerloom.core.graph import fmt_shape
from layerloom.core.params import Param
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, ShapeError, TorchForm,
                                     get_layer, layer_types, register)


class InnerLayer(Param):
    """A wrapped layer, {"type": its type id, "params": its parameters}: validated against that
    layer's declaration (each parameter by its own Param, the missing ones its defaults)."""
    kind = "layer"

    def validate(self, value, place):
        if not isinstance(value, dict) or set(value) - {"type", "params"} or \
                not isinstance(value.get("params", {}), dict):
            raise ParamError('expected {"type": a layer type, "params": {...}}, got '
                             f"{quote(value)}", place)
        layer = get_layer(value.get("type"))
        if layer is None:
            raise ParamError(f"no layer type is called {quote(value.get('type'))}",
                             f"{place}.type")
        if layer.is_input or layer.integer_inputs or layer.max_inputs() != 1 or \
                layer.type_id in ("TimeDistributed", "Bidirectional"):
            raise ParamError(f"a {layer.type_id} cannot be wrapped (TimeDistributed wraps a "
                             "layer of one input and one output)", f"{place}.type")
        declared = {q.name: q for q in layer.params}
        given = value.get("params", {})
        for name in given:
            if name not in declared:
                raise ParamError(f"{layer.type_id} has no parameter {quote(name)}",
                                 f"{place}.params.{name}")
        return {"type": layer.type_id, "params": {
            q.name: q.validate(given[q.name], f"{place}.params.{q.name}") if q.name in given
            else q.default for q in layer.params}}

    def describe(self):
        return 'a layer, {"type": ..., "params": {...}}'


def _inner(p):
    """(the wrapped layer's declaration, its full parameters)."""
    layer = get_layer(p["layer"]["type"])
    return layer, {**layer.defaults(), **p["layer"].get("params", {})}


class _Steps:
    """A TimeDistributed node's step as its wrapped layer sees it: n * steps rows of the
    per-step shape, the weights and constants as they are, its scratch per row."""

    def __init__(self, s, params, in_shape, out_shape, scratch_shapes):
        self.node_id, self.params, self.n = s.node_id, params, s.n * s.x[0].shape[0]
        self.training, self.seed, self.step = s.training, s.seed, s.step
        self.x = [Tensor(s.x[0].buf, in_shape)]
        self.y = [Tensor(s.y[0].buf, out_shape)]
        self.dx = [None if not s.dx or s.dx[0] is None else Tensor(s.dx[0].buf, in_shape)]
        self.dy = [None if not s.dy or s.dy[0] is None else Tensor(s.dy[0].buf, out_shape)]
        self.acc = list(s.acc) or [False]
        self.w, self.dw, self.const = s.w, s.dw, s.const
        self.scratch = {k: Tensor(s.scratch[k].buf, sh) for k, sh in scratch_shapes.items()}
        self.logits, self.skip_act_grad, self.fold_act = None, False, "linear"
        self.frozen = s.frozen  # a frozen wrapped BatchNormalization: inference mode


def _td_onnx(b, n):
    """The wrapped layer's ops on (N * steps, per-step shape), between two Reshapes."""
    inner, ip = _inner(n.params)
    T, S, So = n.in_shapes[0][0], tuple(n.in_shapes[0][1:]), tuple(n.out_shapes[0][1:])
    x = b.op("Reshape", [n.x[0], b.ints([-1, *S])])
    sub = dataclasses.replace(n, type=inner.type_id, params=ip, layer=inner, x=[x],
                              in_shapes=[S], out_shapes=[So])
    y = inner.onnx_form.convert(b, sub)[0]
    return [b.op("Reshape", [y, b.ints([-1, T, *So])])]


def _td_torch(t, n):
    inner, ip = _inner(n.params)
    T, S, So = n.in_shapes[0][0], tuple(n.in_shapes[0][1:]), tuple(n.out_shape[1:])
    steps = f"{n.out}_steps"
    sub = dataclasses.replace(n, type=inner.type_id, params=ip, x=[steps], in_shapes=[S],
                              out_shape=So)
    init, fwd, weights = inner.torch_form.convert(t, sub)
    fwd = [f"{steps} = {n.x[0]}.reshape(-1, {', '.join(map(str, S))})"] + fwd + \
        [f"{n.out} = {n.out}.reshape(-1, {T}, {', '.join(map(str, So))})"]
    return init, fwd, weights


def _td_keras(k, n):
    """layers.TimeDistributed(<the wrapped layer as its own form writes it>)."""
    inner, ip = _inner(n.params)
    form = inner.keras_form
    sub = SimpleNamespace(id=f"{n.id}_{inner.type_id.lower()}", type=inner.type_id, params=ip,
                          layer=inner, x=["__x__"], out=["__y__"], layer_takes_list=False,
                          in_shapes=[tuple(n.in_shapes[0][1:])] if n.in_shapes else [])
    lines = form.write(k, sub) if form.write is not None else \
        k.simple(form.cls, form.params, form.weights)(sub)
    if len(lines) != 1 or not lines[0].startswith("__y__ = layers.") or \
            not lines[0].endswith("(__x__)"):
        raise k.unsupported(n.id, n.type, "layer", n.params["layer"],
                            "has no Keras form inside a TimeDistributed (its Keras form is "
                            "more than one layer)")
    layer = lines[0][len("__y__ = "):-len("(__x__)")]
    return [f"{n.out[0]} = " + k.call("TimeDistributed", [layer], n, n.x)]


def _td_keras_in(o, shapes):
    if len(shapes[0]) < 2:
        o.fail("layer", "is wrapped over an input without steps")
    type_id, params = o.convert_layer(o.get("layer") or {}, [tuple(shapes[0][1:])])
    return {"layer": {"type": type_id, "params": params}}


def _td_order(p):
    """Keras' weights of a TimeDistributed: its wrapped layer's, in that layer's order."""
    inner, ip = _inner(p)
    order = inner.keras_form.weight_order if inner.keras_form is not None else None
    if order is not None:
        return list(order(ip) if callable(order) else order)
    return ["kernel"] + (["bias"] if ip.get("use_bias") else [])


@register
class TimeDistributed(Layer):
    type_id = "TimeDistributed"
    category = "Recurrent"
    help = ("Applies a layer (Dense, Conv2D, Flatten, pooling, Dropout...) to every step of a "
            "sequence, the same weights at each step.")
    params = (InnerLayer("layer", {"type": "Dense", "params": {"units": 32}},
                         help="The layer applied to each step: its type and parameters."),)
    examples = (({"layer": {"type": "Dense", "params": {"units": 3, "activation": "tanh"}}},
                 [(4, 5)]),
                ({"layer": {"type": "Conv2D", "params": {"filters": 2, "kernel_size": [2, 2],
                                                         "activation": "relu"}}}, [(3, 4, 4, 2)]),
                ({"layer": {"type": "Flatten", "params": {}}}, [(2, 3, 2)]),
                ({"layer": {"type": "MaxPooling2D", "params": {"pool_size": [2, 2]}}},
                 [(2, 4, 4, 3)]),
                ({"layer": {"type": "GlobalAveragePooling2D", "params": {}}}, [(3, 2, 2, 2)]))
    # (a Dropout inside: tests/test_recurrent_wrappers.py, as the harness checks a stochastic
    # layer's backward only in training mode, which `stochastic` says per layer type)

    onnx_form = OnnxForm(_td_onnx, "Reshape to (N * steps, ...), the wrapped layer's ops, "
                                   "Reshape back")
    torch_form = TorchForm(_td_torch)
    keras_form = KerasForm("TimeDistributed", write=_td_keras, read=_td_keras_in,
                           weight_order=_td_order,
                           doc="layers.TimeDistributed(the wrapped layer)")

    def headline_text(self, params):
        inner, ip = _inner(params)
        return f"{inner.type_id} {inner.headline_text(ip)}".strip()

    def parse_headline(self, words):
        """The inverse of headline_text: "TimeDistributed Dense 64 relu" wraps a Dense 64
        relu (the wrapped layer's own headline words)."""
        if not words:
            return {}
        inner = next((l for l in layer_types() if l.type_id.lower() == words[0].lower()), None)
        if inner is None or inner.is_input:
            raise ParamError(f"TimeDistributed takes a layer type first, not {words[0]!r}")
        layer = {"type": inner.type_id, "params": inner.parse_headline(words[1:])}
        return {"layer": self.params[0].validate(layer, "layer")}

    def _step_shapes(self, p, in_shapes):
        if len(in_shapes[0]) < 2:
            raise ShapeError(f"expects input shaped (None, steps, ...), got "
                             f"{fmt_shape(in_shapes[0])}")
        inner, ip = _inner(p)
        S = tuple(in_shapes[0][1:])
        outs = inner.output_shapes(ip, [S])
        if len(outs) != 1:
            raise ShapeError(f"the wrapped {inner.type_id} has {len(outs)} outputs; "
                             "TimeDistributed takes a layer of one output")
        return inner, ip, S, tuple(outs[0])

    def output_shapes(self, p, in_shapes):
        _, _, _, So = self._step_shapes(p, in_shapes)
        return [(in_shapes[0][0],) + So]

    def weights(self, p, in_shapes):
        inner, ip, S, _ = self._step_shapes(p, in_shapes)
        return inner.weights(ip, [S])

    def constants(self, p, in_shapes):
        inner, ip, S, _ = self._step_shapes(p, in_shapes)
        return inner.constants(ip, [S])

    def scratch(self, p, in_shapes):
        inner, ip, S, _ = self._step_shapes(p, in_shapes)
        T = in_shapes[0][0]
        return {k: (T * int(np.prod(sh)),) for k, sh in inner.scratch(ip, [S]).items()}

    def _steps(self, s):
        inner, ip, S, So = self._step_shapes(s.params, [s.x[0].shape])
        return inner, _Steps(s, ip, S, So, inner.scratch(ip, [S]))

    def forward(self, ops, s):
        inner, st = self._steps(s)
        if inner.alias_output:  # the wrapped layer only views its input (Flatten): copy it
            ops.copy(s.x[0].buf, s.y[0].buf, s.n * s.y[0].size)
        else:
            inner.forward(ops, st)

    def backward(self, ops, s):
        inner, st = self._steps(s)
        if inner.alias_output:
            if s.dx and s.dx[0] is not None:
                ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.y[0].size, accumulate=s.acc[0])
        else:
            inner.backward(ops, st)

    def reference(self, p, xs, ws, training=False):
        inner, ip, S, So = self._step_shapes(p, [xs[0].shape[1:]])
        N, T = xs[0].shape[:2]
        y = inner.reference(ip, [xs[0].reshape((N * T,) + S)], ws, training)[0]
        return [y.reshape((N, T) + So)]
