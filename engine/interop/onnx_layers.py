"""One converter per layer type, declared beside the layer (its `onnx_form`, an OnnxForm of
core/registry.py) or, for the layers not yet moved there, written below: convert(b, n) appends the node's ONNX ops to the Builder b and
returns its output tensors, one per port. n (a Node) holds the node's id, params, layer
declaration, input tensors, per-sample input and output shapes and weights (float32 arrays by
name). Tensors are batch first and channels last, as in Layerloom; convolutions and pooling
transpose to ONNX's NCHW and back around their op."""
from dataclasses import dataclass

import numpy as np

from layerloom.core.registry import declared


@dataclass
class Node:
    id: str
    type: str
    params: dict
    layer: object
    x: list
    in_shapes: list
    out_shapes: list
    w: dict


# -- recurrent ---------------------------------------------------------------------------------
def _gate_blocks(a, order):
    """Reorder the gate blocks along the last axis (Keras [i, f, c, o] -> ONNX [i, o, f, c])."""
    blocks = np.split(a, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def _recurrent_outputs(b, n, seq, last, states):
    """Ports from ONNX's Y (T, 1, N, u), Y_h and Y_c (1, N, u): y, then h (and c)."""
    p = n.params
    if p["return_sequences"]:
        y = b.op("Transpose", [b.op("Squeeze", [seq, b.ints([1], "axes")])], perm=[1, 0, 2])
    else:
        y = b.op("Squeeze", [last, b.ints([0], "axes")])
    outs = [y]
    if p["return_state"]:
        outs += [b.op("Squeeze", [s, b.ints([0], "axes")]) for s in states]
    return outs


def _recurrent_op(b, n, op_type, order, recurrent_bias, **attrs):
    """LSTM, GRU or RNN as one ONNX op over the time-major sequence (zero initial state)."""
    p, u = n.params, n.params["units"]
    W = _gate_blocks(n.w["kernel"], order).T[None]
    R = _gate_blocks(n.w["recurrent_kernel"], order).T[None]
    B = np.concatenate([_gate_blocks(n.w["bias"], order), recurrent_bias])[None]
    x_tm = b.op("Transpose", [n.x[0]], perm=[1, 0, 2])
    states = 2 if op_type == "LSTM" else 1
    flags = [p["return_sequences"], True] + [p["return_state"]] * (states - 1)
    outs = b.op(op_type, [x_tm, b.const(np.ascontiguousarray(W), f"{n.id}/W"),
                          b.const(np.ascontiguousarray(R), f"{n.id}/R"),
                          b.const(B, f"{n.id}/B")], outputs=flags, hidden_size=u, **attrs)
    return _recurrent_outputs(b, n, outs[0], outs[1], outs[1:])


def _lstm(b, n):
    u = n.params["units"]
    return _recurrent_op(b, n, "LSTM", [0, 3, 1, 2], np.zeros(4 * u, np.float32))


def _gru(b, n):
    # Keras' reset_after GRU is ONNX's linear_before_reset=1; both order the gates z, r, h
    return _recurrent_op(b, n, "GRU", [0, 1, 2], n.w["recurrent_bias"], linear_before_reset=1)


_RNN_OPS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def _simple_rnn(b, n):
    p, u = n.params, n.params["units"]
    act = p["activation"]
    if act in _RNN_OPS:
        return _recurrent_op(b, n, "RNN", [0], np.zeros(u, np.float32),
                             activations=[_RNN_OPS[act]])
    # other activations: unrolled over the (static) steps, h_t = act(x_t W + h_{t-1} U + b)
    T = n.in_shapes[0][0]
    xw = b.op("Add", [b.op("MatMul", [n.x[0], b.const(n.w["kernel"], f"{n.id}/kernel")]),
                      b.const(n.w["bias"], f"{n.id}/bias")])
    U = b.const(n.w["recurrent_kernel"], f"{n.id}/recurrent_kernel")
    h, seq = None, []
    for t in range(T):
        z = b.op("Gather", [xw, b.const(t, "step", np.int64)], axis=1)
        if h is not None:
            z = b.op("Add", [z, b.op("MatMul", [h, U])])
        h = b.activation(act, z)
        seq.append(h)
    if p["return_sequences"]:
        steps = [b.op("Unsqueeze", [s, b.ints([1], "axes")]) for s in seq]
        y = b.op("Concat", steps, axis=1) if T > 1 else steps[0]
    else:
        y = h
    return [y] + ([h] if p["return_state"] else [])


# the layers whose converter is still written here, not yet declared beside the layer (its
# OnnxForm): convolution, normalization, recurrent, merging, reshaping, regularization
_NOT_YET_DECLARED = {
    "LSTM": _lstm, "GRU": _gru, "SimpleRNN": _simple_rnn,
}

# for docs/onnx.md: the ops each layer type becomes (a declared one: its OnnxForm's ops)
_NOT_YET_DECLARED_OPS = {
    "LSTM": "Transpose to time-major, LSTM (gates reordered i,f,c,o -> i,o,f,c), Squeeze, "
            "Transpose",
    "GRU": "Transpose, GRU (linear_before_reset=1, gates z,r,h), Squeeze, Transpose",
    "SimpleRNN": "Transpose, RNN (tanh, relu, sigmoid); other activations unrolled: MatMul, "
                 "Add, Gather, activation, Unsqueeze, Concat",
}

# every layer's converter: its declaration's OnnxForm (core/registry.py), else the table above
CONVERTERS = {t: f.convert for t, f in declared("onnx").items()}
CONVERTERS.update(_NOT_YET_DECLARED)
LAYER_OPS = {t: f.ops for t, f in declared("onnx").items()}
LAYER_OPS.update(_NOT_YET_DECLARED_OPS)
