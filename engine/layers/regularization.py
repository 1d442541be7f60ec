"""Regularization layers: Dropout, SpatialDropout2D and GaussianNoise.

SpatialDropout2D and GaussianNoise: active while training only; randomness from Philox keyed
by (seed, layer) with the step as counter, so a seed reproduces a run."""

import zlib

import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Bool, Float, Int
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, register, ShapeError,
                                     TorchForm)


# -- interop forms (the converters receive interop's builder or kit: see OnnxForm, TorchForm and
# KerasForm in core/registry.py); at inference each of these layers is the identity ---------
def _identity_onnx(b, n):
    """Inference form of SpatialDropout2D, GaussianNoise: the input itself."""
    return [n.x[0]]


def _dropout_onnx(b, n):
    """ONNX's Dropout, the identity at inference: kept (with its ratio) so that the model read
    back (onnx_import) has its Dropout layer again."""
    return [b.op("Dropout", [n.x[0], b.const(n.params["rate"], f"{n.id}/ratio")])]


def _dropout_onnx_in(imp, node, type_id):
    """Dropout at inference: the identity, as Layerloom's Dropout layer (its rate kept for
    training in Layerloom). Training mode is refused."""
    a, v = imp.attrs(node), imp.value(node, 0)
    if imp.opset < 7 and not a.get("is_test", 0):
        imp.fail(node, "is_test 0: training mode (dropout applied)")
    if len(node.input) > 2 and node.input[2]:
        mode = imp.const(node, 2, "training_mode")
        if np.any(mode):
            imp.fail(node, "training_mode true (dropout applied)")
    ratio = a.get("ratio", 0.5)
    if len(node.input) > 1 and node.input[1]:
        ratio = float(np.asarray(imp.const(node, 1, "ratio")).reshape(-1)[0])
    rate = float(str(np.float32(ratio)))  # 0.3, not float32's 0.30000001
    if not 0.0 <= rate < 1.0:
        imp.fail(node, f"ratio {ratio}; expected 0 <= ratio < 1")
    imp.set(node, v.like(imp.add(node, type_id, {"rate": rate}, [v])))


def _dropout_torch(t, n):
    s, x, rate = n.self, n.x[0], float(n.params["rate"])
    if n.params.get("per_sample"):  # a mask of one value per sample, broadcast over the rest
        ones = ", 1" * len(n.in_shapes[0])
        return [], [f"{n.out} = {x} * (torch.rand({x}.shape[0]{ones}, device={x}.device) >= "
                    f"{rate!r}).to({x}.dtype) / {1.0 - rate!r} if self.training else {x}"], {}
    return ([f"{s} = nn.Dropout({rate!r})"], [f"{n.out} = {s}({x})"], {})


def _dropout_keras_in(o, shapes):
    """noise_shape: None (each value) or (None, 1, ..., 1): whole samples (per_sample)."""
    ns = o.get("noise_shape")
    per_sample = ns is not None and list(ns) == [None] + [1] * len(shapes[0])
    if ns is not None and not per_sample:
        o.fail("noise_shape", "has no Layerloom form (only None, or (None, 1, ..., 1): whole "
                              "samples dropped)")
    return {"rate": o.floats("rate", 0.5), "per_sample": per_sample}


def _drop_path_keras_in(o, shapes):
    """keras_cv's DropPath (stochastic depth): whole samples dropped in training, the others
    scaled by 1 / (1 - rate), the identity at inference: Dropout per_sample."""
    return {"rate": o.floats("rate", 0.5), "per_sample": True}


def _dropout_keras_out(k, n):
    noise = [f"noise_shape={(None,) + (1,) * len(n.in_shapes[0])!r}"] \
        if n.params.get("per_sample") else []
    return [f"{n.out[0]} = " + k.call("Dropout", k.kw(n, ("rate", "seed")) + noise, n, n.x)]


@register
class Dropout(Layer):
    type_id = "Dropout"
    category = "Regularization"
    help = ("While training, zeroes a fraction `rate` of the inputs at random and scales the rest "
            "by 1/(1-rate); passes inputs through unchanged at inference. Masks come from a "
            "counter-based RNG (Philox), so a seed reproduces them.")
    params = (
        Float("rate", 0.5, min=0.0, max=1.0, max_exclusive=True, help="Fraction to drop."),
        Int("seed", 0, min=0, max=2**31 - 1, help="Added to the training seed for this layer."),
        Bool("per_sample", False, help="Drop whole samples rather than single values (Keras' "
             "noise_shape=(None, 1, ..., 1): stochastic depth, as in EfficientNet's blocks)."),
    )
    stochastic = True
    examples = (({"rate": 0.5}, [(33,)]), ({"rate": 0.0}, [(3, 5)]),
                ({"rate": 0.5, "per_sample": True}, [(3, 5)]))

    onnx_form = OnnxForm(_dropout_onnx, "Dropout (its ratio kept; the identity at inference)",
                         reads={"Dropout": OnnxRead({"ratio", "seed", "is_test"},
                                                    _dropout_onnx_in)})
    torch_form = TorchForm(_dropout_torch)
    keras_form = KerasForm("Dropout", ("rate", "seed"), read=_dropout_keras_in,
                           write=_dropout_keras_out, also={"DropPath": _drop_path_keras_in})

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def _salt(self, s):
        return zlib.crc32(s.node_id.encode()) ^ s.params["seed"]

    def _drop(self, ops, s, src, dst, accumulate=False):
        n = s.n * s.x[0].size
        if s.params.get("per_sample"):  # one mask value per sample: groups of the sample's size
            ops.dropout_grouped(src, dst, n, s.params["rate"], s.seed, self._salt(s), s.step,
                                s.x[0].size, 1, accumulate)
        else:
            ops.dropout(src, dst, n, s.params["rate"], s.seed, self._salt(s), s.step,
                        accumulate=accumulate)

    def forward(self, ops, s):
        x, y, n = s.x[0], s.y[0], s.n * s.x[0].size
        if s.training and s.params["rate"] > 0:
            self._drop(ops, s, x.buf, y.buf)
        else:
            ops.copy(x.buf, y.buf, n)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        n = s.n * s.y[0].size
        if s.params["rate"] > 0:  # regenerate the same mask from (seed, salt, step)
            self._drop(ops, s, s.dy[0].buf, s.dx[0].buf, accumulate=s.acc[0])
        else:
            ops.copy(s.dy[0].buf, s.dx[0].buf, n, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [np.array(xs[0], copy=True)]  # inference behaviour; training is tested statistically


def _salt(s):
    return zlib.crc32(s.node_id.encode()) ^ s.params["seed"]


def _seed_param():
    return Int("seed", 0, min=0, max=2**31 - 1, help="Added to the training seed for this layer.")


def _spatial_dropout_torch(t, n):
    s = n.self
    return ([f"{s} = nn.Dropout2d({float(n.params['rate'])!r})"],
            [f"{n.out} = {s}({n.x[0]}.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)"], {})


@register
class SpatialDropout2D(Layer):
    type_id = "SpatialDropout2D"
    category = "Regularization"
    help = ("While training, drops whole channels of (height, width, channels) inputs with "
            "probability `rate` and scales the rest by 1/(1-rate).")
    params = (Float("rate", 0.5, min=0.0, max=1.0, max_exclusive=True, help="Fraction of channels "
                    "to drop."), _seed_param())
    stochastic = True
    examples = (({"rate": 0.5}, [(3, 4, 5)]),)

    onnx_form = OnnxForm(_identity_onnx, "nothing (identity)")
    torch_form = TorchForm(_spatial_dropout_torch)
    keras_form = KerasForm("SpatialDropout2D", ("rate", "seed"),
                           read=lambda o, shapes: {"rate": o.floats("rate", 0.5)})

    def output_shapes(self, p, in_shapes):
        if len(in_shapes[0]) != 3:
            raise ShapeError("expects input shaped (None, height, width, channels), got "
                             f"{fmt_shape(in_shapes[0])}")
        return [in_shapes[0]]

    def _run(self, ops, s, src, dst, accumulate):
        H, W, C = s.x[0].shape
        ops.dropout_grouped(src, dst, s.n * H * W * C, s.params["rate"], s.seed, _salt(s),
                            s.step, H * W, C, accumulate)

    def forward(self, ops, s):
        if s.training and s.params["rate"] > 0:
            self._run(ops, s, s.x[0].buf, s.y[0].buf, False)
        else:
            ops.copy(s.x[0].buf, s.y[0].buf, s.n * s.x[0].size)

    def backward(self, ops, s):
        if s.dx[0] is None:
            return
        if s.params["rate"] > 0:
            self._run(ops, s, s.dy[0].buf, s.dx[0].buf, s.acc[0])
        else:
            ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [np.array(xs[0], copy=True)]


def _gaussian_noise_torch(t, n):
    sd = float(n.params["stddev"])
    return [], [f"{n.out} = {n.x[0]} + {sd!r} * torch.randn_like({n.x[0]}) if self.training "
                f"else {n.x[0]}"], {}


@register
class GaussianNoise(Layer):
    type_id = "GaussianNoise"
    category = "Regularization"
    help = "While training, adds zero-mean gaussian noise with standard deviation `stddev`."
    params = (Float("stddev", 0.1, min=0.0, help="Standard deviation of the noise."),
              _seed_param())
    stochastic = True
    examples = (({"stddev": 0.5}, [(7,)]),)

    onnx_form = OnnxForm(_identity_onnx, "nothing (identity)")
    torch_form = TorchForm(_gaussian_noise_torch)
    keras_form = KerasForm("GaussianNoise", ("stddev", "seed"),
                           read=lambda o, shapes: {"stddev": o.floats("stddev", 0.1)})

    def output_shapes(self, p, in_shapes):
        return [in_shapes[0]]

    def forward(self, ops, s):
        n = s.n * s.x[0].size
        if s.training and s.params["stddev"] > 0:
            ops.gaussian_noise(s.x[0].buf, s.y[0].buf, n, s.params["stddev"], s.seed, _salt(s),
                               s.step)
        else:
            ops.copy(s.x[0].buf, s.y[0].buf, n)

    def backward(self, ops, s):
        if s.dx[0] is not None:
            ops.copy(s.dy[0].buf, s.dx[0].buf, s.n * s.x[0].size, accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [np.array(xs[0], copy=True)]
