"""ONNX in, its tensors and layouts (onnx_import.py reads the graph): the onnx package loaded on
use, a node's attributes, a tensor's sizes as ONNX knows them, the transpositions between
channels-first and channels-last, an ONNX tensor as our node's output port with its layout
(_Value), and the imported model (Imported), whose predict() undoes that layout."""
import numpy as np

from layerloom.core.errors import DataError

PLACE = "--import"
ATTR_RTOL = 1e-6  # how close a float attribute must be to ours


class _Value:
    """An ONNX tensor as our node's output port. nchw: the ONNX tensor is channels-first
    (N, C, ...) where ours is channels-last; pooled: ONNX's (N, C, 1, 1) is our (C,)."""
    __slots__ = ("node", "port", "nchw", "pooled")

    def __init__(self, node, port=0, nchw=False, pooled=False):
        self.node, self.port, self.nchw, self.pooled = node, port, nchw, pooled

    def like(self, node):
        """Our node `node`'s output, in this value's layout (an elementwise layer's)."""
        return _Value(node, 0, self.nchw, self.pooled)


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise DataError("ONNX import needs the onnx package: pip install 'layerloom[onnx]'",
                        PLACE) from None
    return onnx, numpy_helper


def _attrs(node):
    onnx, _ = _onnx()
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _tensor(proto):
    return _onnx()[1].to_array(proto)


def _constant_of_shape(shape, value):
    v = _tensor(value) if value is not None else np.zeros(1, np.float32)  # ONNX's default
    return np.full([int(d) for d in np.reshape(shape, -1)], v.reshape(-1)[0], v.dtype)


def _dims(value_info):
    """A tensor's sizes as ONNX knows them (None for one it does not), or None (no shape)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _close(a, b):
    return abs(a - b) <= ATTR_RTOL * max(abs(b), 1.0)


def _perms(rank):
    """(to channels-first, to channels-last) transposition of an ONNX tensor of `rank`."""
    return ([0, rank - 1] + list(range(1, rank - 1)), [0] + list(range(2, rank)) + [1])



class Imported:
    """An imported model: project, weights, and how the ONNX model's inputs and outputs map
    onto the Input and output nodes ({ONNX name: _Value}), whose layout predict() undoes."""

    def __init__(self, project, weights, inputs, outputs):
        self.project, self.weights = project, weights
        self.inputs, self.outputs = inputs, outputs

    def predict(self, arrays):
        """{ONNX output name: array as ONNX lays it out} for {ONNX input name: array}."""
        from layerloom.data.prepare import named_arrays, prepare_inputs
        from layerloom.train.session import Session
        x = {}
        for name, v in self.inputs.items():
            a = np.asarray(arrays[name], np.float32)
            x[v.node] = np.moveaxis(a, 1, -1) if v.nchw else a
        # as layerloom.api.Model predicts (the importer gives every layer its weights)
        project = self.project
        rows = prepare_inputs(project, named_arrays(project, x, project.graph.inputs(),
                                                    "inputs"))
        session = Session(project, initial_weights=self.weights)
        got = session.model.predict(rows, session.batch_size)
        out = {}
        for name, v in self.outputs.items():
            a = got[v.node]
            out[name] = (a.reshape(a.shape + (1, 1)) if v.pooled else
                         np.moveaxis(a, -1, 1) if v.nchw else a)
        return out

