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
        rows_given = max(len(r) for r in rows.values()) if rows else 1
        # buffers for the rows given, not the training section's batch (a large model at 32
        # rows may not fit the device where one row does)
        session = Session(project, initial_weights=self.weights, batch_size=max(1, min(
            rows_given, int(project.training.get("batch_size", 32)))))
        got = session.model.predict(rows, session.batch_size)
        out = {}
        for name, v in self.outputs.items():
            a = got[v.node]
            out[name] = (a.reshape(a.shape + (1, 1)) if v.pooled else
                         np.moveaxis(a, -1, 1) if v.nchw else a)
        return out



# -- constant folding: the shape arithmetic exporters write, computed before the graph walk ------
# The batch size, where the graph's inputs leave it open, is taken as this number while shapes
# are computed: a folded shape that holds it has the batch there (a Reshape keeping the batch);
# a tensor of that many rows is a constant repeated along the batch, which is not folded.
BATCH = 9973
MAX_FOLDED = 1 << 27  # the most values a folded constant may hold (VGG-19's fc6: 102.8M)
TOO_LARGE = f"computes a constant of more than {MAX_FOLDED} values from constants alone"


def _ints(a):
    return [int(x) for x in np.reshape(a, -1)]


def _axes(a, x, i, rank, name="axes"):
    """Axes from attribute `name` (before their opset turned them into input i) or input i."""
    axes = x[i] if len(x) > i and x[i] is not None else a.get(name)
    return None if axes is None else [int(v) % rank for v in np.reshape(axes, -1)]


def _unsqueeze(a, x):
    rank = x[0].ndim + len(np.reshape(x[1] if len(x) > 1 else a["axes"], -1))
    out = x[0]
    for ax in sorted(_axes(a, x, 1, rank)):
        out = np.expand_dims(out, ax)
    return out


def _squeeze(a, x):
    axes = _axes(a, x, 1, x[0].ndim)
    if axes is None:
        axes = [i for i, d in enumerate(x[0].shape) if d == 1]
    return np.squeeze(x[0], tuple(axes))


def slice_args(a, given=None):
    """(starts, ends, axes, steps) of an ONNX Slice, as lists of ints: before opset 10 from its
    attributes a (given None); from opset 10 on from its inputs 1..4 (given: their values,
    None where an optional one is absent: every axis in order, steps of 1)."""
    if given is None:
        starts, ends = _ints(a.get("starts", [])), _ints(a.get("ends", []))
        return starts, ends, _ints(a.get("axes", range(len(starts)))), [1] * len(starts)
    given = list(given) + [None] * (4 - len(given))
    starts, ends = _ints(given[0]), _ints(given[1])
    axes = _ints(given[2]) if given[2] is not None else list(range(len(starts)))
    steps = _ints(given[3]) if given[3] is not None else [1] * len(starts)
    return starts, ends, axes, steps


def _slice(a, x):
    data = x[0]
    starts, ends, axes, steps = slice_args(a, x[1:] if len(x) > 1 else None)
    index = [slice(None)] * data.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[ax % data.ndim] = slice(s, e, st)  # Python clamps as ONNX does, steps < 0 too
    return data[tuple(index)]


def _reshape(a, x):
    data, shape = x[0], _ints(x[1])
    shape = [data.shape[i] if d == 0 and not a.get("allowzero", 0) else d
             for i, d in enumerate(shape)]
    return np.reshape(data, shape)


def _divide(x, y):
    if np.issubdtype(x.dtype, np.integer):  # ONNX's integer division truncates
        return (np.sign(x) * np.sign(y) * (np.abs(x) // np.abs(y))).astype(x.dtype)
    return np.asarray(np.divide(x, y), np.result_type(x, y))


def _reduce(f):
    def run(a, x):
        axes = _axes(a, x, 1, x[0].ndim)
        if not axes and a.get("noop_with_empty_axes", 0):
            return x[0]
        return f(x[0], axis=tuple(axes) if axes else None,
                 keepdims=bool(a.get("keepdims", 1)))
    return run


def _cast(a, x):
    onnx, _ = _onnx()
    return x[0].astype(onnx.helper.tensor_dtype_to_np_dtype(a["to"]))


# ONNX operators computed on constants, {op type: f(attributes, input arrays) -> output}
FOLD = {
    "Identity": lambda a, x: x[0],
    "Gather": lambda a, x: np.take(x[0], x[1].astype(np.int64) % x[0].shape[a.get("axis", 0)],
                                   axis=a.get("axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda a, x: np.concatenate(x, axis=a["axis"]),
    "Cast": _cast,
    "Slice": _slice,
    "Where": lambda a, x: np.where(x[0].astype(bool), x[1], x[2]),
    "Equal": lambda a, x: np.equal(x[0], x[1]),
    "Less": lambda a, x: np.less(x[0], x[1]),
    "Greater": lambda a, x: np.greater(x[0], x[1]),
    "Not": lambda a, x: np.logical_not(x[0]),
    "And": lambda a, x: np.logical_and(x[0], x[1]),
    "Or": lambda a, x: np.logical_or(x[0], x[1]),
    "Reshape": _reshape,
    "Transpose": lambda a, x: np.transpose(x[0], a.get("perm")),
    "Expand": lambda a, x: np.broadcast_to(x[0], np.broadcast_shapes(
        x[0].shape, tuple(_ints(x[1])))).copy(),
    "Tile": lambda a, x: np.tile(x[0], _ints(x[1])),
    "Flatten": lambda a, x: x[0].reshape(int(np.prod(x[0].shape[:a.get("axis", 1)])), -1),
    "ConstantOfShape": lambda a, x: _constant_of_shape(x[0], a.get("value")),
    "Range": lambda a, x: np.arange(x[0], x[1], x[2]).astype(x[0].dtype),
    "Add": lambda a, x: x[0] + x[1],
    "Sub": lambda a, x: x[0] - x[1],
    "Mul": lambda a, x: x[0] * x[1],
    "Div": lambda a, x: _divide(x[0], x[1]),
    "Mod": lambda a, x: np.fmod(x[0], x[1]) if a.get("fmod", 0) else np.mod(x[0], x[1]),
    "Neg": lambda a, x: -x[0],
    "Abs": lambda a, x: np.abs(x[0]),
    "Sqrt": lambda a, x: np.sqrt(x[0]),
    "Pow": lambda a, x: np.power(x[0], x[1]).astype(x[0].dtype),
    "Floor": lambda a, x: np.floor(x[0]),
    "Ceil": lambda a, x: np.ceil(x[0]),
    "Min": lambda a, x: np.minimum.reduce(x),
    "Max": lambda a, x: np.maximum.reduce(x),
    "ReduceProd": _reduce(np.prod),
    "ReduceSum": _reduce(np.sum),
}


def _sizes(value_info):
    """A tensor's sizes: ints, dim_param names, None; or None (no shape)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else
            d.dim_param if d.HasField("dim_param") else None for d in t.shape.dim]


# the operators whose input (by index) gives their result's shape: a constant repeated along the
# batch is computed with a batch of 1 (and said to be, fold_constants' per_sample)
SIZED_BY = {"ConstantOfShape": 0, "Expand": 1, "Tile": 1}
PER_SAMPLE = ("repeats a constant along the batch axis; Layerloom makes a tensor of a constant "
              "only as a class token put before a (N, steps, features) sequence (Concat along "
              "axis 1: ClassToken)")


def _fold_node(node, consts, known):
    """node's output computed (an array), None where it is not to be, or a str: why a node on
    constants alone could not be computed."""
    _, numpy_helper = _onnx()
    a = _attrs(node)
    if node.op_type == "Constant":
        if "value" in a:
            return numpy_helper.to_array(a["value"])
        key = next((k for k in ("value_float", "value_floats", "value_int", "value_ints")
                    if k in a), None)  # any other the walk refuses by name
        return None if key is None else np.asarray(a[key], np.float32 if "float" in key
                                                   else np.int64)
    if node.op_type in ("Shape", "Size") and (node.input[0] in known or
                                              node.input[0] in consts):
        # the shape inferred (a constant repeated along the batch has it there), else the
        # constant's
        dims = _sizes(known[node.input[0]]) if node.input[0] in known else None
        if node.input[0] in consts and (dims is None or not all(
                isinstance(d, int) and d > 0 for d in dims)):
            dims = list(np.shape(consts[node.input[0]]))
        if dims is None or not all(isinstance(d, int) and d > 0 for d in dims):
            return None
        if node.op_type == "Size":
            return np.asarray(np.prod(dims), np.int64)
        return np.asarray(dims[slice(a.get("start", 0), a.get("end"))], np.int64)
    if node.op_type not in FOLD or not node.input or not all(
            not i or i in consts for i in node.input):
        return None
    x = [np.asarray(consts[i]) if i else None for i in node.input]
    shape_input = SIZED_BY.get(node.op_type)
    if shape_input is not None and len(x) > shape_input and x[shape_input] is not None:
        # a constant the size of the batch: computed once, its batch axis 1 (it broadcasts)
        x[shape_input] = np.where(x[shape_input] == BATCH, 1, x[shape_input])
    if max((v.size for v in x if v is not None), default=0) > MAX_FOLDED:
        return TOO_LARGE
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(FOLD[node.op_type](a, x))
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, MemoryError,
            np.exceptions.AxisError) as e:
        return f"computes on constants alone, which the importer could not compute " \
               f"({type(e).__name__}: {e})"
    if out.size > MAX_FOLDED:
        return TOO_LARGE
    return out


def _add_constants(graph, arrays):
    """The arrays as initializers of graph, a large one as a graph input of its type and shape
    (for shape inference, which reads only a small constant's values: a shape, axes)."""
    onnx, numpy_helper = _onnx()
    names = {i.name for i in graph.input}
    for k, v in arrays.items():
        v = np.asarray(v)
        if v.size <= 4096:
            graph.initializer.append(numpy_helper.from_array(v, k))
        elif k not in names:
            graph.input.append(onnx.helper.make_tensor_value_info(
                k, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)))


def fold_constants(model):
    """Compute every node whose inputs are all constants (initializers, Constant, earlier
    ones), and Shape/Size of a tensor whose sizes ONNX's shape inference knows, the open
    batch size taken as BATCH; the shapes are inferred again after each round (a Reshape's
    target computed lets the tensors after it have sizes). A constant repeated along the batch
    (torch's zero initial state of an LSTM, a ViT's class token) is computed with a batch of 1.
    Returns ({tensor: array} of the initializers and the computed outputs, the names computed,
    {output: why it is no constant a layer can take} for nodes on constants alone that could
    not be computed and for those repeated along the batch, {tensor: ValueInfo} as inferred
    last)."""
    onnx, numpy_helper = _onnx()
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    # shape inference on a copy whose large constants are typed inputs (their values matter to
    # no shape; copied into every round they would cost seconds and memory)
    work = onnx.ModelProto()
    work.CopyFrom(model)
    del work.graph.initializer[:]
    _add_constants(work.graph, consts)
    for inp in work.graph.input:
        dims = inp.type.tensor_type.shape.dim if inp.type.tensor_type.HasField("shape") else []
        if inp.name not in consts and dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = BATCH
    folded, failed, known, per_sample = set(), {}, {}, set()
    for _ in range(32):  # rounds; each computes at least one more tensor
        try:
            work = onnx.shape_inference.infer_shapes(work)
        except Exception:  # noqa: BLE001 - with the batch fixed; the shapes known before stand
            pass
        g = work.graph
        known.update({vi.name: vi for vi in list(g.value_info) + list(g.output) +
                      list(g.input)})
        new = {}
        for node in g.node:
            if node.domain not in ("", "ai.onnx") or not node.output or \
                    node.output[0] in folded:
                continue
            out = _fold_node(node, {**consts, **new}, known)
            if isinstance(out, str):
                failed[node.output[0]] = out
            elif out is not None:
                new[node.output[0]] = out
                shape_input = SIZED_BY.get(node.op_type)
                # (a shape is no value per sample: Shape of one gives the batch as BATCH)
                if node.op_type not in ("Shape", "Size") and any(
                        i in per_sample for i in node.input) or (
                        shape_input is not None and len(node.input) > shape_input and
                        BATCH in np.reshape(consts.get(node.input[shape_input],
                                                       new.get(node.input[shape_input], [])),
                                            -1)):
                    per_sample.add(node.output[0])
        if not new:
            break
        consts.update(new)
        folded.update(new)
        # a constant repeated along the batch stays computed by its node in the shapes' copy
        # (as a constant its batch axis would be 1, and the shapes after it wrong)
        fixed = {k: v for k, v in new.items() if k not in per_sample}
        keep = [n for n in g.node if not (n.output and n.output[0] in fixed)]
        del g.node[:]
        g.node.extend(keep)
        _add_constants(g, fixed)
    failed = {k: v for k, v in failed.items() if k not in folded}
    failed.update((k, PER_SAMPLE) for k in per_sample)
    return consts, folded, failed, known
