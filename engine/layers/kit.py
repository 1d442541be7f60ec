"""Helpers shared by layer declarations: the `activation` parameter's forward/backward plumbing,
written once for Dense, Conv1D, Conv2D and friends."""
from layerloom.core.activations import ALIASES, NAMES, NEEDS_INPUT, ROW_WISE
from layerloom.core.graph import fmt_shape
from layerloom.core.registry import ShapeError
from layerloom.core.params import Choice, Initializer, Regularizer


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


def window_geometry(size, k, stride, dilation, padding):
    """Keras/TF output size and padding before, for one spatial axis. Returns (out, pad_before)
    or raises ValueError when the window does not fit."""
    eff = (k - 1) * dilation + 1
    if padding == "valid":
        out, before = (size - eff) // stride + 1, 0
    elif padding == "causal":
        out, before = (size - 1) // stride + 1, eff - 1
    else:  # same
        out = -(-size // stride)
        before = max((out - 1) * stride + eff - size, 0) // 2
    if out < 1:
        raise ValueError(f"a window of {k} (dilation {dilation}) does not fit an input of {size} "
                         f"with padding {padding}")
    return out, before


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
