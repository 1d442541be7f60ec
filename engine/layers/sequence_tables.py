"""The tables of a sequence, in the Attention category beside the layers that read them:
keras-hub's PositionEmbedding (a learned table of positions, added by the user),
TokenAndPositionEmbedding (token and position tables, summed) and SinePositionEncoding (the
fixed sinusoidal table, added by the user), and a ViT's ClassToken (a learned vector put before
the sequence). The learned ones moved from attention.py unchanged."""
import numpy as np

from layerloom.core.graph import fmt_shape
from layerloom.core.params import Float, Initializer, Int
from layerloom.core.registry import (KerasForm, Layer, OnnxForm, OnnxRead, get_layer, register,
                                     ShapeError, TorchForm, WeightSpec)
from layerloom.layers.attention import _torch_params


# -- PositionEmbedding (keras-hub) ----------------------------------------------------------------
def _table_steps(p, in_shapes, rank, want):
    """The input's shape, of `rank` axes (`want` in words), its steps within sequence_length."""
    sh = in_shapes[0]
    if len(sh) != rank:
        raise ShapeError(f"expects {want}, got {fmt_shape(sh)}")
    if sh[0] > p["sequence_length"]:
        raise ShapeError(f"the input has {sh[0]} steps, more than sequence_length "
                         f"{p['sequence_length']}")
    return sh


def _position_steps(p, in_shapes):
    """(T, D) of a (steps, features) input that fits sequence_length."""
    return _table_steps(p, in_shapes, 2, "input shaped (None, steps, features)")


class _PositionTable(Layer):
    """A learned table of sequence_length rows whose first `steps` rows are added per step;
    the input gets no gradient (its shape, or indices)."""
    category = "Attention"
    differentiable = False

    def position_grad(self, ops, s, steps, D, weight):
        ops.position_grad(s.dy[0].buf, s.dw[weight].buf, s.n, steps * D,
                          s.params["sequence_length"] * D)


def _position_onnx(b, n):
    T = n.in_shapes[0][0]
    table = b.const(np.ascontiguousarray(n.w["embeddings"][:T]), f"{n.id}/embeddings")
    return [b.op("Expand", [table, b.op("Shape", [n.x[0]])])]


def _position_torch(t, n):
    specs = get_layer(n.type).weights(n.params, n.in_shapes)
    T = n.in_shapes[0][0]
    init = _torch_params(t, n, specs, key_of=lambda name: "initializer")
    fwd = [f"{n.out} = torch.zeros_like({n.x[0]}) + {n.self}.embeddings[:{T}]  # the input's "
           "shape only"]
    return init, fwd, {"embeddings": ("embeddings", "")}


# keras-hub's layers as the export defines them (keras_hub needs TensorFlow): the same class
# names, configs and weights, so --import reads a .keras file of them as it reads keras-hub's
_POSITION_CLASS = '''
@keras.saving.register_keras_serializable(package="layerloom")
class PositionEmbedding(layers.Layer):
    """keras-hub's PositionEmbedding (its config and weight): the first steps rows of a
    learned (sequence_length, features) table, broadcast to the input's shape."""

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        kwargs.pop("hierarchical_alpha", None)  # keras-hub's, used only past sequence_length
        super().__init__(**kwargs)
        self.sequence_length = int(sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer)}

    def build(self, input_shape):
        self.position_embeddings = self.add_weight(
            name="embeddings", shape=(self.sequence_length, input_shape[-1]),
            initializer=self.initializer)

    def call(self, inputs):
        shape = ops.shape(inputs)
        table = ops.slice(ops.convert_to_tensor(self.position_embeddings), (0, 0),
                          (shape[-2], shape[-1]))
        return ops.broadcast_to(table, shape)

    def compute_output_shape(self, input_shape):
        return input_shape
'''
_TOKEN_POSITION_CLASS = '''
@keras.saving.register_keras_serializable(package="layerloom")
class TokenAndPositionEmbedding(layers.Layer):
    """keras-hub's TokenAndPositionEmbedding (its config; token_embedding and
    position_embedding, in that order): the token's vector plus the position's; indices
    outside 0 .. vocabulary_size-1 give zero token vectors, as Layerloom."""

    def __init__(self, vocabulary_size, sequence_length, embedding_dim,
                 embeddings_initializer="uniform", tie_weights=True, mask_zero=False,
                 **kwargs):
        super().__init__(**kwargs)
        if mask_zero or not tie_weights:
            raise ValueError("mask_zero and untied weights have no Layerloom form")
        self.vocabulary_size, self.sequence_length = int(vocabulary_size), int(sequence_length)
        self.embedding_dim = int(embedding_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.token_embedding = layers.Embedding(
            self.vocabulary_size, self.embedding_dim,
            embeddings_initializer=self.embeddings_initializer, name="token_embedding")
        self.position_embedding = PositionEmbedding(
            self.sequence_length, initializer=self.embeddings_initializer,
            name="position_embedding")

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length, "embedding_dim": self.embedding_dim,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer),
                "tie_weights": True, "mask_zero": False}

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.position_embedding.build(tuple(input_shape) + (self.embedding_dim,))

    def call(self, inputs):
        ids = ops.cast(inputs, "int32")  # indices, truncated towards zero
        inside = ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, self.vocabulary_size))
        tokens = self.token_embedding(ops.where(inside, ids, 0))
        tokens = tokens * ops.expand_dims(ops.cast(inside, tokens.dtype), -1)
        return tokens + self.position_embedding(tokens)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)
'''


def _position_keras(k, n):
    """keras-hub's PositionEmbedding as the export's registered class of the same name, config
    and weight."""
    p = n.params
    k.define(n, {"PositionEmbedding": _POSITION_CLASS})
    args = [str(p["sequence_length"]), f"initializer={k.initializer(p['initializer'])}"]
    return [f"{n.out[0]} = " + k.call("PositionEmbedding", args, n, n.x, module="")]


def _position_keras_in(o, shapes):
    o.get("hierarchical_alpha")  # used only past sequence_length, which the layer refuses
    p = {"sequence_length": o.get("sequence_length")}
    init = o.initializer("initializer")
    if init is not None:
        p["initializer"] = init
    return p


@register
class PositionEmbedding(_PositionTable):
    type_id = "PositionEmbedding"
    help = ("keras-hub's learned position embedding: (steps, features) -> the table's first "
            "steps rows, (steps, features); only the input's shape is used (add it to the "
            "input with Add).")
    params = (Int("sequence_length", 16, min=1, help="Longest sequence: rows of the table."),
              Initializer("initializer", "glorot_uniform", help="How the table starts."))
    headline = ("sequence_length",)
    examples = (({"sequence_length": 5}, [(5, 3)]), ({"sequence_length": 7}, [(4, 33)]))
    onnx_form = OnnxForm(_position_onnx, "the table's first rows (constant), Expand to the "
                                         "input's Shape")
    torch_form = TorchForm(_position_torch)
    keras_form = KerasForm("PositionEmbedding", read=_position_keras_in, write=_position_keras,
                           weight_order=("embeddings",),
                           doc="keras-hub's class name, config and weight: a Keras layer the "
                               "export defines and registers")

    def output_shapes(self, p, in_shapes):
        return [tuple(_position_steps(p, in_shapes))]

    def weights(self, p, in_shapes):
        T, D = _position_steps(p, in_shapes)
        S = p["sequence_length"]
        return [WeightSpec("embeddings", (S, D), p["initializer"], S, D)]

    def forward(self, ops, s):
        T, D = s.x[0].shape
        ops.position_forward(s.w["embeddings"].buf, None, s.y[0].buf, s.n, T * D)

    def backward(self, ops, s):
        T, D = s.x[0].shape
        self.position_grad(ops, s, T, D, "embeddings")

    def reference(self, p, xs, ws, training=False):
        T = xs[0].shape[1]
        return [np.broadcast_to(ws["embeddings"][:T], xs[0].shape).copy()]


# -- TokenAndPositionEmbedding (keras-hub) -------------------------------------------------------
def _token_position_onnx(b, n):
    """The token table with a zero row appended for indices outside 0..V-1 (as the kernel
    gives them zero vectors), Gather, plus the position table's first rows."""
    p, T = n.params, n.in_shapes[0][0]
    V = p["vocabulary_size"]
    table = np.concatenate([n.w["token_embeddings"],
                            np.zeros((1, p["embedding_dim"]), np.float32)])
    k = b.op("Cast", [n.x[0]], to=7)  # onnx.TensorProto.INT64, truncating towards zero
    ok = b.op("And", [b.op("GreaterOrEqual", [k, b.const(0, "zero", np.int64)]),
                      b.op("Less", [k, b.const(V, "vocabulary_size", np.int64)])])
    k = b.op("Where", [ok, k, b.const(V, "vocabulary_size", np.int64)])
    tokens = b.op("Gather", [b.const(table, f"{n.id}/token_embeddings"), k], axis=0)
    positions = np.ascontiguousarray(n.w["position_embeddings"][:T])
    return [b.op("Add", [tokens, b.const(positions, f"{n.id}/position_embeddings")])]


def _token_position_torch(t, n):
    specs = get_layer(n.type).weights(n.params, n.in_shapes)
    init = _torch_params(t, n, specs, key_of=lambda name: "embeddings_initializer")
    s, o, V, T = n.self, n.out, n.params["vocabulary_size"], n.in_shapes[0][0]
    fwd = [f"{o}_index = {n.x[0]}.long()",
           f"{o}_inside = (({o}_index >= 0) & ({o}_index < {V})).unsqueeze(-1).to(torch.float32)",
           f"{o} = F.embedding({o}_index.clamp(0, {V - 1}), {s}.token_embeddings) * {o}_inside"
           "  # zero vectors out of range, as Layerloom",
           f"{o} = {o} + {s}.position_embeddings[:{T}]"]
    return init, fwd, {w.name: (w.name, "") for w in specs}


def _token_position_keras(k, n):
    """keras-hub's TokenAndPositionEmbedding as the export's registered class of the same name,
    config and weights (its PositionEmbedding with it)."""
    p = n.params
    k.define(n, {"PositionEmbedding": _POSITION_CLASS,
                 "TokenAndPositionEmbedding": _TOKEN_POSITION_CLASS})
    args = [str(p[key]) for key in ("vocabulary_size", "sequence_length", "embedding_dim")]
    args.append(f"embeddings_initializer={k.initializer(p['embeddings_initializer'])}")
    return [f"{n.out[0]} = " + k.call("TokenAndPositionEmbedding", args, n, n.x, module="")]


def _token_position_keras_in(o, shapes):
    o.must("mask_zero", False)  # a Keras mask has no Layerloom form
    o.must("tie_weights", True)  # untied: a reverse projection, used only in reverse mode
    p = {"vocabulary_size": o.get("vocabulary_size"), "sequence_length": o.get("sequence_length"),
         "embedding_dim": o.get("embedding_dim")}
    if o.get("embeddings_initializer") == "uniform":  # keras-hub's default, by Keras' alias
        p["embeddings_initializer"] = "random_uniform"
    elif o.initializer("embeddings_initializer") is not None:
        p["embeddings_initializer"] = o.initializer("embeddings_initializer")
    return p


@register
class TokenAndPositionEmbedding(_PositionTable):
    type_id = "TokenAndPositionEmbedding"
    help = ("keras-hub's token and position embedding: integer indices (steps) -> token vector "
            "plus the position's learned vector, (steps, embedding_dim). Indices outside "
            "0 .. vocabulary_size-1 give zero token vectors.")
    params = (Int("vocabulary_size", 1000, min=1, help="Vocabulary size: largest index + 1."),
              Int("sequence_length", 16, min=1, help="Longest sequence: rows of the position "
                                                     "table."),
              Int("embedding_dim", 16, min=1, help="Length of each vector."),
              Initializer("embeddings_initializer", "random_uniform",
                          help="How both tables start."))
    headline = ("vocabulary_size", "sequence_length", "embedding_dim")
    integer_inputs = True   # the test harness feeds indices
    examples = (({"vocabulary_size": 7, "sequence_length": 5, "embedding_dim": 3}, [(5,)]),
                ({"vocabulary_size": 4, "sequence_length": 9, "embedding_dim": 33}, [(6,)]))
    onnx_form = OnnxForm(_token_position_onnx, "Cast to int64, GreaterOrEqual, Less, And, "
                         "Where, Gather (zero row for out-of-range indices), Add (positions)")
    torch_form = TorchForm(_token_position_torch)
    keras_form = KerasForm("TokenAndPositionEmbedding", read=_token_position_keras_in,
                           write=_token_position_keras,
                           weight_order=("token_embeddings", "position_embeddings"),
                           doc="keras-hub's class name, config and weights: a Keras layer "
                               "the export defines and registers (zero token vectors out of "
                               "range, as Layerloom)")

    def _steps(self, p, in_shapes):
        return _table_steps(p, in_shapes, 1, "indices shaped (None, steps)")[0]

    def output_shapes(self, p, in_shapes):
        return [(self._steps(p, in_shapes), p["embedding_dim"])]

    def weights(self, p, in_shapes):
        self._steps(p, in_shapes)
        V, S, D = p["vocabulary_size"], p["sequence_length"], p["embedding_dim"]
        init = p["embeddings_initializer"]
        return [WeightSpec("token_embeddings", (V, D), init, V, D),
                WeightSpec("position_embeddings", (S, D), init, S, D)]

    def forward(self, ops, s):
        p, T = s.params, s.x[0].shape[0]
        V, D = p["vocabulary_size"], p["embedding_dim"]
        y = s.y[0].buf
        ops.embed(s.x[0].buf, s.w["token_embeddings"].buf, y, s.n * T, V, D)
        ops.position_forward(s.w["position_embeddings"].buf, y, y, s.n, T * D)

    def backward(self, ops, s):
        p, T = s.params, s.x[0].shape[0]
        V, D = p["vocabulary_size"], p["embedding_dim"]
        ops.embed_grad(s.x[0].buf, s.dy[0].buf, s.dw["token_embeddings"].buf, s.n * T, V, D)
        self.position_grad(ops, s, T, D, "position_embeddings")

    def reference(self, p, xs, ws, training=False):
        idx, V = xs[0].astype(int), p["vocabulary_size"]
        ok = (idx >= 0) & (idx < V)
        tokens = np.where(ok[..., None], ws["token_embeddings"][np.clip(idx, 0, V - 1)], 0.0)
        return [tokens + ws["position_embeddings"][:idx.shape[1]]]


# -- SinePositionEncoding (keras-hub) -------------------------------------------------------------
def sine_table(steps, features, max_wavelength, dtype=np.float64):
    """keras-hub's SinePositionEncoding table, (steps, features), computed in `dtype`: for
    position p and feature i, angle = p * (1 / max_wavelength) ** (2 * (i // 2) / features);
    sin(angle) at even i, cos(angle) at odd i."""
    dtype = np.dtype(dtype).type
    positions = np.arange(steps, dtype=dtype)
    i = np.arange(features)
    timescales = np.power(dtype(1) / dtype(max_wavelength),
                          (2 * (i // 2)).astype(dtype) / dtype(features))
    angles = positions[:, None] * timescales[None, :]
    return np.where(i % 2 == 0, np.sin(angles), np.cos(angles)).astype(dtype)


def _sine_shape(in_shapes):
    sh = tuple(in_shapes[0])
    if len(sh) < 2:
        raise ShapeError(f"expects input shaped (None, steps, features), got {fmt_shape(sh)}")
    return sh


def _sine_onnx(b, n):
    T, D = n.in_shapes[0][-2:]
    table = sine_table(T, D, n.params["max_wavelength"]).astype(np.float32)
    table = b.const(table, f"{n.id}/table")
    return [b.op("Expand", [table, b.op("Shape", [n.x[0]])])]


def _sine_torch(t, n):
    """The table as a buffer (not persistent: no weight), made once in __init__ in float64 as
    Layerloom does, expanded to the input's shape."""
    T, D = n.in_shapes[0][-2:]
    o, mw = n.out, float(n.params["max_wavelength"])
    init = [f"{n.self} = nn.Module()  # SinePositionEncoding: its table, no weights",
            f"{o}_i = torch.arange({D})",
            f"{o}_angles = torch.arange({T}, dtype=torch.float64)[:, None] * "
            f"(1.0 / {mw!r}) ** ((2 * ({o}_i // 2)).to(torch.float64) / {D})",
            f"{n.self}.register_buffer('table', torch.where({o}_i % 2 == 0, "
            f"torch.sin({o}_angles), torch.cos({o}_angles)).to(torch.float32), "
            "persistent=False)"]
    fwd = [f"{o} = {n.self}.table.expand_as({n.x[0]})  # the input's shape only"]
    return init, fwd, {}


_SINE_CLASS = '''
@keras.saving.register_keras_serializable(package="layerloom")
class SinePositionEncoding(layers.Layer):
    """keras-hub's SinePositionEncoding (its config and formula): for position p and feature
    i, sin (even i) or cos (odd i) of p * (1 / max_wavelength) ** (2 * (i // 2) / features),
    broadcast to the input's shape."""

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = max_wavelength

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}

    def call(self, inputs):
        shape = ops.shape(inputs)
        steps, features = shape[-2], shape[-1]
        dtype = self.compute_dtype
        positions = ops.cast(ops.arange(steps), dtype)
        min_freq = ops.cast(1 / self.max_wavelength, dtype)
        timescales = ops.power(min_freq, ops.cast(2 * (ops.arange(features) // 2), dtype)
                               / ops.cast(features, dtype))
        angles = ops.expand_dims(positions, 1) * ops.expand_dims(timescales, 0)
        cos_mask = ops.cast(ops.arange(features) % 2, dtype)
        table = ops.sin(angles) * (1 - cos_mask) + ops.cos(angles) * cos_mask
        return ops.broadcast_to(table, shape)

    def compute_output_shape(self, input_shape):
        return input_shape
'''


def _sine_keras(k, n):
    """keras-hub's SinePositionEncoding as the export's registered class of the same name and
    config."""
    k.define(n, {"SinePositionEncoding": _SINE_CLASS})
    args = [f"max_wavelength={float(n.params['max_wavelength'])!r}"]
    return [f"{n.out[0]} = " + k.call("SinePositionEncoding", args, n, n.x, module="")]


def _sine_keras_in(o, shapes):
    mw = o.get("max_wavelength", 10000)
    if isinstance(mw, bool) or not isinstance(mw, (int, float)) or not mw > 0:
        o.fail("max_wavelength", "has no Layerloom form (a number > 0)")
    return {"max_wavelength": float(mw)}


@register
class SinePositionEncoding(Layer):
    type_id = "SinePositionEncoding"
    category = "Attention"
    help = ("keras-hub's sinusoidal position encoding: (steps, features) -> the fixed sin/cos "
            "table of the positions, same shape (no weights; only the input's shape is used: "
            "add it to the input with Add).")
    params = (Float("max_wavelength", 10000.0, min=0, min_exclusive=True,
                    help="Longest wavelength of the sine and cosine curves."),)
    headline = ("max_wavelength",)
    differentiable = False  # the input gives only its shape
    examples = (({"max_wavelength": 10000.0}, [(5, 4)]),
                ({"max_wavelength": 10000.0}, [(9, 33)]),
                ({"max_wavelength": 50.5}, [(6, 5)]),
                ({"max_wavelength": 1e4}, [(2, 3, 6)]))
    onnx_form = OnnxForm(_sine_onnx, "the table (constant, computed at export), Expand to the "
                                     "input's Shape")
    torch_form = TorchForm(_sine_torch)
    keras_form = KerasForm("SinePositionEncoding", read=_sine_keras_in, write=_sine_keras,
                           doc="keras-hub's class name and config: a Keras layer the export "
                               "defines and registers")

    def output_shapes(self, p, in_shapes):
        return [_sine_shape(in_shapes)]

    def constants(self, p, in_shapes):
        """table: the encoding of one sample (float32), made once when the graph compiles."""
        sh = _sine_shape(in_shapes)
        table = sine_table(sh[-2], sh[-1], p["max_wavelength"])
        return {"table": np.ascontiguousarray(np.broadcast_to(table, sh), np.float32)}

    def forward(self, ops, s):
        ops.position_forward(s.const["table"], None, s.y[0].buf, s.n, s.y[0].size)

    def backward(self, ops, s):
        pass  # no weights, and the input takes no gradient (differentiable = False)

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        table = sine_table(x.shape[-2], x.shape[-1], p["max_wavelength"])
        return [np.broadcast_to(table, x.shape).copy()]


# -- ClassToken (a ViT's class token) ------------------------------------------------------------
def _class_token_onnx(b, n):
    """The token as a (1, 1, D) constant, Expand to (N, 1, D) (the batch from the input's
    Shape), Concat before the sequence (axis 1)."""
    D = n.in_shapes[0][1]
    token = b.const(n.w["token"].reshape(1, 1, D), f"{n.id}/token")
    batch = b.op("Slice", [b.op("Shape", [n.x[0]]), b.ints([0], "starts"), b.ints([1], "ends")])
    tokens = b.op("Expand", [token, b.op("Concat", [batch, b.ints([1, 1])], axis=0)])
    return [b.op("Concat", [tokens, n.x[0]], axis=1)]


def _class_token_torch(t, n):
    specs = get_layer(n.type).weights(n.params, n.in_shapes)
    init = _torch_params(t, n, specs, key_of=lambda name: "initializer")
    x = n.x[0]
    fwd = [f"{n.out} = torch.cat([{n.self}.token.expand({x}.shape[0], 1, -1), {x}], 1)"]
    return init, fwd, {"token": ("token", "")}


_CLASS_TOKEN_CLASS = '''
@keras.saving.register_keras_serializable(package="layerloom")
class ClassToken(layers.Layer):
    """A ViT's class token: a learned (1, features) vector put before the sequence (Keras has
    no such layer; Layerloom's ClassToken, its config and weight)."""

    def __init__(self, initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.initializer = keras.initializers.get(initializer)

    def get_config(self):
        return {**super().get_config(),
                "initializer": keras.initializers.serialize(self.initializer)}

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, input_shape[-1]),
                                     initializer=self.initializer)

    def call(self, inputs):
        shape = ops.shape(inputs)
        tokens = ops.broadcast_to(ops.expand_dims(ops.convert_to_tensor(self.token), 0),
                                  (shape[0], 1, shape[-1]))
        return ops.concatenate([ops.cast(tokens, inputs.dtype), inputs], axis=1)

    def compute_output_shape(self, input_shape):
        steps = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], steps, input_shape[-1])
'''


def _class_token_keras(k, n):
    """The export's registered ClassToken class (Keras has none), its config and weight."""
    k.define(n, {"ClassToken": _CLASS_TOKEN_CLASS})
    args = [f"initializer={k.initializer(n.params['initializer'])}"]
    return [f"{n.out[0]} = " + k.call("ClassToken", args, n, n.x, module="")]


def _class_token_keras_in(o, shapes):
    init = o.initializer("initializer")
    return {} if init is None else {"initializer": init}


def _class_token_onnx_in(imp, node, type_id):
    """Concat along the steps (axis 1) of constants repeated along the batch (a class token
    Expanded to (N, 1, D), as torchvision's ViT writes it) before a (N, steps, D) sequence: a
    ClassToken per constant, the last one's first. Declines any other Concat."""
    tokens = [imp.per_sample(name) is not None for name in node.input]
    if not any(tokens):
        imp.decline(node, "not a class token (a constant repeated along the batch) put before "
                          "a sequence")
    others = [name for name, token in zip(node.input, tokens) if not token]
    v = imp.values.get(others[0]) if len(others) == 1 else None
    shape = imp.shape(v) if v is not None else ()
    axis = imp.attrs(node).get("axis")
    if v is None or v.nchw or v.pooled or len(shape) != 2 or axis is None or axis % 3 != 1:
        imp.decline(node, "not a class token: a constant repeated along the batch joined along "
                          f"axis {axis} to something other than one (N, steps, features) "
                          "sequence")
    n_tokens = tokens.index(False)
    if n_tokens != len(tokens) - 1:
        imp.fail(node, "constants repeated along the batch (class tokens) that are not all "
                       "before one sequence; only tokens put before it map (a ClassToken each)")
    tokens = []
    for name in node.input[:n_tokens]:
        c = imp.per_sample(name)
        if c.ndim != 3 or c.shape[0] != 1 or c.shape[2] != shape[1]:
            imp.fail(node, f"a constant of shape {list(c.shape)} repeated along the batch; "
                           f"only (1, steps, {shape[1]}) maps")
        tokens += list(c[0])
    for i, token in enumerate(reversed(tokens)):
        name = imp.scope(node) if i == len(tokens) - 1 else f"{imp.scope(node)}_token{i}"
        nid = imp.add(node, type_id, {}, [v], name=name)
        imp.weights[f"{nid}/token"] = np.asarray(token, np.float32).reshape(1, -1)
        v = imp.result(nid)
    imp.set(node, v)


@register
class ClassToken(Layer):
    type_id = "ClassToken"
    category = "Attention"
    help = ("A ViT's class token: a learned (1, features) vector put before the sequence, "
            "(steps, features) -> (steps + 1, features).")
    params = (Initializer("initializer", "zeros", help="How the token starts."),)
    examples = (({}, [(4, 3)]), ({"initializer": "glorot_uniform"}, [(1, 33)]))
    onnx_form = OnnxForm(_class_token_onnx, "the token (constant), Expand to (N, 1, features) "
                                            "(Shape, Slice, Concat), Concat before the input",
                         reads={"Concat": OnnxRead({"axis"}, _class_token_onnx_in)})
    torch_form = TorchForm(_class_token_torch)
    keras_form = KerasForm("ClassToken", read=_class_token_keras_in, write=_class_token_keras,
                           weight_order=("token",),
                           doc="a Keras layer the export defines and registers (Keras has no "
                               "class token)")

    def output_shapes(self, p, in_shapes):
        sh = in_shapes[0]
        if len(sh) != 2:
            raise ShapeError(f"expects input shaped (None, steps, features), got "
                             f"{fmt_shape(sh)}")
        return [(sh[0] + 1, sh[1])]

    def weights(self, p, in_shapes):
        D = self.output_shapes(p, in_shapes)[0][1]
        return [WeightSpec("token", (1, D), p["initializer"], 1, D)]

    def forward(self, ops, s):
        T, D = s.x[0].shape
        y = s.y[0].buf
        ops.copy2d(s.w["token"].buf, 0, 0, y, (T + 1) * D, 0, s.n, D)  # the token, each sample
        ops.copy2d(s.x[0].buf, T * D, 0, y, (T + 1) * D, D, s.n, T * D)

    def backward(self, ops, s):
        T, D = s.x[0].shape
        dy = s.dy[0].buf
        ops.position_grad(dy, s.dw["token"].buf, s.n, (T + 1) * D, D)  # summed over samples
        if s.dx[0] is not None:
            ops.copy2d(dy, (T + 1) * D, D, s.dx[0].buf, T * D, 0, s.n, T * D,
                       accumulate=s.acc[0])

    def reference(self, p, xs, ws, training=False):
        x = xs[0]
        tokens = np.broadcast_to(ws["token"][None], (x.shape[0], 1, x.shape[2]))
        return [np.concatenate([tokens, x], axis=1)]
