"""FourierMixing: keras_hub FNetEncoder's token mixing, the real part of the 2-D discrete Fourier
transform over the last two axes of each sample, (..., steps, features) -> the same shape
(keras_hub/src/layers/modeling/f_net_encoder.py: `ops.fft2((x, zeros))[0]`).

With C_N, S_N the N x N matrices cos(2 pi j k / N) and sin(2 pi j k / N) (both symmetric),
the DFT matrix is F_N = C_N - i S_N and

    Re(F_S X F_H) = C_S X C_H - S_S X S_H,

so the forward is two batched matrix products with constant matrices (attention's strided
batched GEMM, backend/attention_ops.py bgemm; no kernel of its own): T = X . [C_H, S_H] per
sample (two heads, into scratch shaped (2, steps, features)), then Y = [C_S, -S_S] . T, a
(steps, 2 steps) constant times T's (2 steps, features) stack. The map is linear and, the four
matrices being symmetric, its own transpose: dX = C_S dY C_H - S_S dY S_H, the same two
products run on dY. The constants are computed in float64 (j k taken mod N, so the angles stay
small) and uploaded as float32 once, when the graph compiles.

Its forms: ONNX as those four MatMuls with constant initializers and a Sub (read back as the
layer from that pattern), PyTorch `torch.fft.fft2(x).real`, Keras a layer the export defines
and registers that calls keras.ops.fft2 (read back by its class name)."""
import math

import numpy as np

from layerloom.backend.attention_ops import Strided
from layerloom.core.graph import fmt_shape
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, register, ShapeError,
                                     TorchForm)


def dft_matrices(n):
    """(C, S): the n x n cosine and sine parts of the DFT matrix, float64, C[j, k] =
    cos(2 pi j k / n), S[j, k] = sin(2 pi j k / n) (the DFT matrix is C - i S)."""
    jk = np.outer(np.arange(n), np.arange(n)) % n  # exact; keeps the angles below 2 pi
    angle = 2.0 * np.pi * jk / n
    return np.cos(angle), np.sin(angle)


def _shape(in_shapes):
    sh = tuple(in_shapes[0])
    if len(sh) < 2:
        raise ShapeError(f"expects input shaped (None, steps, features) (the transform runs "
                         f"over the last two axes), got {fmt_shape(sh)}")
    return sh


# -- ONNX ---------------------------------------------------------------------------------------
def _fourier_onnx(b, n):
    """C_S (X C_H) - S_S (X S_H): four MatMuls with constant matrices (MatMul broadcasts a
    matrix on the left over the batch and any leading axes), a Sub."""
    S, H = n.in_shapes[0][-2:]
    cs, ss = dft_matrices(S)
    ch, sh = dft_matrices(H)
    x = n.x[0]
    real = b.op("MatMul", [b.const(cs, f"{n.id}/cos_steps"),
                           b.op("MatMul", [x, b.const(ch, f"{n.id}/cos_features")])])
    imag = b.op("MatMul", [b.const(ss, f"{n.id}/sin_steps"),
                           b.op("MatMul", [x, b.const(sh, f"{n.id}/sin_features")])])
    return [b.op("Sub", [real, imag])]


_TOL_IN = 1e-5  # how far a read constant may be from the DFT matrix's float32 value


def _is_dft(a, n, part):
    """Is `a` the n x n cosine (part 0) or sine (part 1) DFT matrix (within float32)?"""
    return (a is not None and np.shape(a) == (n, n)
            and np.allclose(a, dft_matrices(n)[part], rtol=0, atol=_TOL_IN))


def _fourier_onnx_in(imp, node, type_id):
    """The export's pattern read back as one FourierMixing, recognised from its first MatMul
    (x times the features' cosine matrix; any other MatMul with a constant is declined, for
    Dense's reader): x -> MatMul(x, C_H) -> MatMul(C_S, .) -> Sub <- MatMul(S_S, .) <-
    MatMul(x, S_H), each intermediate read by the next node alone."""
    if len(node.input) != 2 or node.input[1] not in imp.consts:
        imp.decline(node, "not a product with a constant on the right")
    x = imp.values.get(node.input[0])
    if x is None or x.nchw or x.pooled:
        imp.decline(node, "its input is not a tensor held as it is")
    shape = tuple(imp.shape(x))
    if len(shape) < 2:
        imp.decline(node, "its input has fewer than two axes per sample")
    S, H = shape[-2:]
    if not _is_dft(imp.consts[node.input[1]], H, 0):
        imp.decline(node, "its constant is not the cosine DFT matrix")

    def only_reader(name, op):
        r = imp.reader(name)
        return r if r is not None and r.op_type == op else None

    left = only_reader(node.output[0], "MatMul")
    sub = only_reader(left.output[0], "Sub") if left is not None else None
    if left is None or sub is None or list(left.input[1:]) != [node.output[0]] or \
            not _is_dft(imp.consts.get(left.input[0]), S, 0) or \
            len(sub.input) != 2 or sub.input[0] != left.output[0]:
        imp.decline(node, "not followed by the steps' cosine product and a Sub")
    other = imp.producer(sub.input[1])
    first = imp.producer(other.input[1]) if other is not None and other.op_type == "MatMul" \
        and len(other.input) == 2 else None
    if first is None or first.op_type != "MatMul" or list(first.input) != [
            node.input[0], first.input[1]] or \
            not _is_dft(imp.consts.get(first.input[1]), H, 1) or \
            not _is_dft(imp.consts.get(other.input[0]), S, 1) or \
            imp.reader(first.output[0]) is not other or imp.reader(other.output[0]) is not sub:
        imp.decline(node, "the Sub's other operand is not the sine products of the same input")
    nid = imp.add(node, type_id, {}, [imp.result(x.node, x.port)])
    imp.absorbed.update(n.output[0] for n in (left, first, other, sub))
    imp.set(sub, imp.result(nid))


# -- PyTorch and Keras --------------------------------------------------------------------------
def _fourier_torch(t, n):
    return [], [f"{n.out} = torch.fft.fft2({n.x[0]}).real  # over the last two axes"], {}


_FOURIER_CLASS = '''
@keras.saving.register_keras_serializable(package="layerloom")
class FourierMixing(layers.Layer):
    """keras_hub FNetEncoder's token mixing (Layerloom's FourierMixing): the real part of the
    2-D DFT over the last two axes, keras.ops.fft2 of (x, 0) as FNetEncoder computes it."""

    def __init__(self, **kwargs):  # its own: Keras' automatic config then holds only these
        super().__init__(**kwargs)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")  # the FFT takes no float16
        real, _ = ops.fft2((x, ops.zeros_like(x)))
        return ops.cast(real, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
'''


def _fourier_keras(k, n):
    k.define(n, {"FourierMixing": _FOURIER_CLASS})
    return [f"{n.out[0]} = " + k.call("FourierMixing", [], n, n.x, module="")]


@register
class FourierMixing(Layer):
    type_id = "FourierMixing"
    category = "Attention"
    help = ("FNet's token mixing (keras_hub FNetEncoder): the real part of the 2-D Fourier "
            "transform over the last two axes, (steps, features) -> same shape; no weights.")
    params = ()
    headline = ()
    examples = (({}, [(4, 6)]), ({}, [(5, 5)]), ({}, [(1, 7)]), ({}, [(3, 1)]),
                ({}, [(2, 3, 4)]), ({}, [(3, 33)]), ({}, [(16, 8)]))
    onnx_form = OnnxForm(_fourier_onnx, "MatMul by the cosine and sine DFT matrices (constants) "
                                        "on both sides, Sub",
                         reads={"MatMul": OnnxRead((), _fourier_onnx_in)})
    torch_form = TorchForm(_fourier_torch)
    keras_form = KerasForm("FourierMixing", write=_fourier_keras,
                           doc="a Keras layer the export defines and registers: keras.ops.fft2's "
                               "real part, as keras_hub's FNetEncoder computes its mixing")

    def output_shapes(self, p, in_shapes):
        return [_shape(in_shapes)]

    def constants(self, p, in_shapes):
        """right: [C_H, S_H] stacked, (2, H, H); left: [C_S, -S_S] side by side, (S, 2 S)."""
        S, H = _shape(in_shapes)[-2:]
        cs, ss = dft_matrices(S)
        ch, sh = dft_matrices(H)
        return {"right": np.stack([ch, sh]).astype(np.float32),
                "left": np.concatenate([cs, -ss], axis=1).astype(np.float32)}

    def scratch(self, p, in_shapes):
        """t: X . C_H and X . S_H of every matrix of the sample, (lead..., 2, S, H)."""
        sh = _shape(in_shapes)
        return {"t": sh[:-2] + (2,) + sh[-2:]}

    def _mix(self, ops, s, x, y, accumulate):
        """y (+)= C_S x C_H - S_S x S_H for every (S, H) matrix of the batch."""
        sh = s.x[0].shape
        S, H = sh[-2:]
        count = s.n * math.prod(sh[:-2])
        t = s.scratch["t"].buf
        ops.bgemm(S, H, H, count, 2, Strided(x, S * H, 0, H, 1),
                  Strided(s.const["right"], 0, H * H, H, 1),
                  Strided(t, 2 * S * H, S * H, H, 1))
        ops.bgemm(S, H, 2 * S, count, 1, Strided(s.const["left"], 0, 0, 2 * S, 1),
                  Strided(t, 2 * S * H, 0, H, 1), Strided(y, S * H, 0, H, 1),
                  accumulate=accumulate)

    def forward(self, ops, s):
        self._mix(ops, s, s.x[0].buf, s.y[0].buf, False)

    def backward(self, ops, s):
        # the map is its own transpose (C and S symmetric): dX = C_S dY C_H - S_S dY S_H
        if s.dx[0] is not None:
            self._mix(ops, s, s.dy[0].buf, s.dx[0].buf, s.acc[0])

    def reference(self, p, xs, ws, training=False):
        return [np.fft.fft2(np.asarray(xs[0], np.float64), axes=(-2, -1)).real]
