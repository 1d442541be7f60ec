"""The attention layers (engine/layers/attention.py) against the real Keras (KERAS_BACKEND=torch):
the same inputs and weights give Keras' outputs within 1e-5; models that Keras builds and saves
import with their weights; dropout on the attention probabilities while training; the batched
strided product (bgemm) on its own against numpy; and what is refused is refused by name.
The float64 reference, its gradients and the ONNX, PyTorch and Keras exports of every example
are checked by test_layers, test_onnx_export, test_torch_code and test_keras_export."""
import os

import numpy as np
import pytest

from conftest import from_dev, to_dev
from layerloom.core.errors import LayerloomError
from layerloom.core.graph import Graph
from layerloom.core.registry import get_layer
from layerloom.train.model import Model
from test_layers import _graph_for as layer_graph, run_layer

TOL = 1e-5


def _keras():
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def _graph(type_id, params, shapes):
    g = layer_graph(type_id, params, shapes)
    assert not g.validate()
    return g


def _weights(layer, params, shapes, rng):
    return {s.name: (rng.normal(size=s.shape) * 0.5).astype(np.float32)
            for s in layer.weights(layer_params(layer, params), [tuple(s) for s in shapes])}


def layer_params(layer, params):
    return {**layer.defaults(), **params}


def _engine(rt, type_id, params, xs, ws):
    g = _graph(type_id, params, [x.shape[1:] for x in xs])
    ports = g.nodes["node"].layer.output_names(g.nodes["node"].params)
    if len(ports) > 1:  # each port a graph output, through an identity
        for i, port in enumerate(ports):
            g.add_node("Dropout", {"rate": 0.0}, id=f"node_{port}")
            g.connect("node", i, f"node_{port}", 0)
    model = Model(g, rt, xs[0].shape[0], weights={f"node/{k}": v for k, v in ws.items()})
    return model.predict({f"in{i}": x for i, x in enumerate(xs)})


MHA_CASES = [
    ({"num_heads": 2, "key_dim": 3}, [(4, 5), (3, 5)], {}),
    ({"num_heads": 4, "key_dim": 8}, [(6, 16), (6, 16), (6, 12)], {}),
    ({"num_heads": 1, "key_dim": 4, "value_dim": 2, "output_shape": 3}, [(4, 3), (5, 2), (5, 6)],
     {}),
    ({"num_heads": 3, "key_dim": 2, "use_bias": False, "use_causal_mask": True},
     [(5, 4), (3, 4)], {"use_causal_mask": True}),
    ({"num_heads": 2, "key_dim": 3, "return_attention_scores": True, "use_causal_mask": True},
     [(4, 6), (4, 6)], {"use_causal_mask": True, "return_attention_scores": True}),
]


@pytest.mark.parametrize("params,shapes,call", MHA_CASES)
def test_multi_head_attention_is_keras_on_the_same_weights(rt, rng, params, shapes, call):
    keras = _keras()
    layer = get_layer("MultiHeadAttention")
    p = layer_params(layer, params)
    xs = [rng.normal(size=(3,) + sh).astype(np.float32) for sh in shapes]
    ws = _weights(layer, params, shapes, rng)
    got = _engine(rt, "MultiHeadAttention", params, xs, ws)
    mha = keras.layers.MultiHeadAttention(
        num_heads=p["num_heads"], key_dim=p["key_dim"], value_dim=p["value_dim"],
        use_bias=p["use_bias"], output_shape=p["output_shape"])
    key = {"key": xs[2]} if len(xs) == 3 else {}
    mha(xs[0], xs[1], **key)  # builds it
    assert [tuple(v.shape) for v in mha.weights] == [tuple(s.shape) for s in
                                                    layer.weights(p, shapes)]
    mha.set_weights([ws[s.name] for s in layer.weights(p, shapes)])
    want = mha(xs[0], xs[1], **key, **call)
    want = [want] if not isinstance(want, tuple) else list(want)
    want = [np.asarray(w.detach().cpu()) for w in want]
    assert len(got) == len(want)
    ids = ["node"] if len(want) == 1 else ["node_y", "node_scores"]
    for nid, w in zip(ids, want):
        np.testing.assert_allclose(got[nid], w, rtol=0, atol=TOL)


def test_a_keras_model_with_attention_imports_and_predicts_what_keras_does(tmp_path, rng):
    """Keras calls MultiHeadAttention with two positional tensors and key= by name, and
    Attention/AdditiveAttention on a list: all become the layer's inputs in order."""
    keras = _keras()
    from layerloom.api import Model as ApiModel
    from layerloom.interop import keras_import
    q_in, v_in = keras.Input((5, 8)), keras.Input((4, 8))
    h = keras.layers.MultiHeadAttention(2, 4, name="mha")(q_in, v_in)
    h2 = keras.layers.MultiHeadAttention(1, 3, value_dim=2, output_shape=6, name="mha_key")(
        h, v_in, key=v_in)
    model = keras.Model([q_in, v_in], h2)
    path = str(tmp_path / "m.keras")
    model.save(path)
    xs = [rng.normal(size=(3, 5, 8)).astype(np.float32),
          rng.normal(size=(3, 4, 8)).astype(np.float32)]
    project, weights = keras_import.read(path)
    types = sorted(n.type for n in project.graph.nodes.values() if not n.layer.is_input)
    assert types == ["MultiHeadAttention", "MultiHeadAttention"]
    inputs = dict(zip(project.graph.inputs(), xs))
    got = ApiModel(project, weights).predict(inputs)
    got = got if not isinstance(got, dict) else next(iter(got.values()))
    np.testing.assert_allclose(got, model.predict(xs, verbose=0), rtol=0, atol=TOL)


def test_a_causal_mask_in_a_keras_call_imports_as_the_layers_parameter(tmp_path):
    """use_causal_mask is a call argument in Keras, a parameter here: a saved model calling
    MultiHeadAttention with it imports and predicts what Keras predicts."""
    keras = _keras()
    from layerloom.api import Model as ApiModel
    from layerloom.interop import keras_import
    x = keras.Input((4, 6))
    model = keras.Model(x, keras.layers.MultiHeadAttention(2, 3)(x, x, use_causal_mask=True))
    path = str(tmp_path / "m.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    (node,) = [n for n in project.graph.nodes.values() if n.type == "MultiHeadAttention"]
    assert node.params["use_causal_mask"]
    xs = np.random.default_rng(5).normal(size=(3, 4, 6)).astype(np.float32)
    got = ApiModel(project, weights).predict({project.graph.inputs()[0]: xs})
    np.testing.assert_allclose(got, model.predict(xs, verbose=0), rtol=0, atol=TOL)


def test_other_attention_axes_and_output_shapes_are_refused_by_name():
    from layerloom.interop import keras_in_layers
    shapes = [(None, 4, 6), (None, 4, 6)]
    base = {"num_heads": 2, "key_dim": 3}
    for option, value in (("attention_axes", [2]), ("output_shape", [2, 3])):
        with pytest.raises(LayerloomError, match=option):
            keras_in_layers.convert("mha", "MultiHeadAttention", {**base, option: value},
                                    shapes)
    with pytest.raises(LayerloomError, match="attention_axes"):
        _graph("MultiHeadAttention", {"attention_axes": 2}, [(4, 6), (4, 6)])


def test_inputs_that_are_not_sequences_are_refused_naming_the_input():
    g = Graph()
    g.add_node("Input", {"shape": [6]}, id="q")
    g.add_node("Input", {"shape": [4, 6]}, id="v")
    g.add_node("MultiHeadAttention", {}, id="node")
    g.connect("q", 0, "node", 0)
    g.connect("v", 0, "node", 1)
    problems = g.validate()
    assert problems and "query" in str(problems[0])


@pytest.mark.parametrize("training", [True, False])
def test_dropout_applies_while_training_only_and_repeats_for_a_seed(rt, ops, rng, training):
    layer = get_layer("MultiHeadAttention")
    params = layer_params(layer, {"num_heads": 2, "key_dim": 4, "dropout": 0.5,
                                  "return_attention_scores": True})
    xs = [rng.normal(size=(2, 6, 5)), rng.normal(size=(2, 7, 5))]
    ws = {s.name: rng.normal(size=s.shape) * 0.5 for s in layer.weights(params, [(6, 5), (7, 5)])}
    dys = [rng.normal(size=(2, 6, 5)), np.zeros((2, 2, 6, 7))]
    (y, scores), dxs, _ = run_layer(rt, ops, layer, params, xs, ws, dys, training=training,
                                    step=3)
    ref_y, ref_scores = layer.reference(params, xs, ws)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)  # before dropout
    if not training:
        np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
        return
    assert np.abs(y - ref_y).max() > 1e-2  # dropped
    (y2, _), dxs2, _ = run_layer(rt, ops, layer, params, xs, ws, dys, training=True, step=3)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(dxs[0], dxs2[0])
    (y3, _), _, _ = run_layer(rt, ops, layer, params, xs, ws, dys, training=True, step=4)
    assert np.abs(y3 - y).max() > 1e-3  # another step, another mask


def test_batched_strided_product_matches_numpy(rt, ops, rng):
    """bgemm over samples x heads, operands read as heads of (steps, heads, dim) tensors and
    transposed in place, with alpha and accumulate."""
    from layerloom.backend.attention_ops import heads_view, stacked_view
    n, H, tq, tv, d = 3, 2, 5, 7, 6
    q = rng.normal(size=(n, tq, H, d)).astype(np.float32)
    k = rng.normal(size=(n, tv, H, d)).astype(np.float32)
    c0 = rng.normal(size=(n, H, tq, tv)).astype(np.float32)
    qb, kb, cb = to_dev(rt, q), to_dev(rt, k), to_dev(rt, c0)
    ops.bgemm(tq, tv, d, n, H, heads_view(qb, tq, H, d), heads_view(kb, tv, H, d).T,
              stacked_view(cb, tq, tv, H), alpha=0.5, accumulate=True)
    want = c0 + 0.5 * np.einsum("nthd,nshd->nhts", q, k)
    np.testing.assert_allclose(from_dev(rt, cb, c0.shape), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda L: L.Attention(),
    lambda L: L.Attention(use_scale=True, score_mode="concat", dropout=0.1),
    lambda L: L.AdditiveAttention(),
    lambda L: L.AdditiveAttention(use_scale=False),
])
def test_keras_luong_and_bahdanau_attention_import_and_predict_what_keras_does(tmp_path, rng,
                                                                             make):
    keras = _keras()
    from layerloom.api import Model as ApiModel
    from layerloom.interop import keras_import
    q_in, v_in, k_in = keras.Input((5, 4)), keras.Input((3, 6)), keras.Input((3, 4))
    layer = make(keras.layers)
    model = keras.Model([q_in, v_in, k_in], layer([q_in, v_in, k_in]))
    for w in layer.weights:  # away from the initial ones, so that a lost weight shows
        w.assign(rng.normal(size=tuple(w.shape)).astype(np.float32))
    path = str(tmp_path / "m.keras")
    model.save(path)
    xs = [rng.normal(size=(2,) + s).astype(np.float32) for s in ((5, 4), (3, 6), (3, 4))]
    project, weights = keras_import.read(path)
    node = next(n for n in project.graph.nodes.values() if not n.layer.is_input)
    assert node.type == type(layer).__name__
    got = ApiModel(project, weights).predict(dict(zip(project.graph.inputs(), xs)))
    got = got if not isinstance(got, dict) else next(iter(got.values()))
    np.testing.assert_allclose(got, model.predict(xs, verbose=0), rtol=0, atol=TOL)


def test_query_and_key_of_other_features_are_refused():
    g = Graph()
    for nid, shape in (("q", [4, 3]), ("v", [5, 2])):
        g.add_node("Input", {"shape": shape}, id=nid)
    g.add_node("Attention", {}, id="node")
    g.connect("q", 0, "node", 0)
    g.connect("v", 0, "node", 1)
    problems = g.validate()
    assert problems and "same features" in str(problems[0])


def _keras_hub_position_embedding(keras):
    """A stand-in for keras_hub.layers.PositionEmbedding (keras-hub is not installed here):
    its class name, config keys, weight and computation for inputs up to sequence_length."""
    @keras.saving.register_keras_serializable(package="keras_hub")
    class PositionEmbedding(keras.layers.Layer):
        def __init__(self, sequence_length, initializer="glorot_uniform",
                     hierarchical_alpha=0.4, **kwargs):
            super().__init__(**kwargs)
            self.sequence_length = int(sequence_length)
            self.hierarchical_alpha = hierarchical_alpha
            self.initializer = keras.initializers.get(initializer)

        def get_config(self):
            return {**super().get_config(), "sequence_length": self.sequence_length,
                    "hierarchical_alpha": self.hierarchical_alpha,
                    "initializer": keras.initializers.serialize(self.initializer)}

        def build(self, shape):
            self.position_embeddings = self.add_weight(
                name="embeddings", shape=[self.sequence_length, shape[-1]],
                initializer=self.initializer)

        def call(self, inputs):
            shape = keras.ops.shape(inputs)
            table = keras.ops.slice(self.position_embeddings, (0, 0), (shape[-2], shape[-1]))
            return keras.ops.broadcast_to(table, shape)
    return PositionEmbedding


def test_a_keras_hub_position_embedding_imports_and_predicts_what_keras_does(tmp_path, rng):
    keras = _keras()
    from layerloom.api import Model as ApiModel
    from layerloom.interop import keras_import
    layer = _keras_hub_position_embedding(keras)(7, initializer="he_normal", name="pos")
    x = keras.Input((5, 3))
    model = keras.Model(x, keras.layers.Add()([x, layer(x)]))
    path = str(tmp_path / "m.keras")
    model.save(path)
    xs = rng.normal(size=(2, 5, 3)).astype(np.float32)
    project, weights = keras_import.read(path)
    node = project.graph.nodes["pos"]
    assert node.type == "PositionEmbedding"
    assert node.params == {"sequence_length": 7, "initializer": "he_normal"}
    got = ApiModel(project, weights).predict(xs)
    np.testing.assert_allclose(got, model.predict(xs, verbose=0), rtol=0, atol=TOL)


def test_a_sequence_longer_than_the_position_table_is_refused():
    g = Graph()
    g.add_node("Input", {"shape": [9, 3]}, id="x")
    g.add_node("PositionEmbedding", {"sequence_length": 8}, id="node")
    g.connect("x", 0, "node", 0)
    problems = g.validate()
    assert problems and "more than sequence_length 8" in str(problems[0])


def test_attention_dropout_in_training_is_the_returned_probabilities_times_value(rt, ops,
                                                                                 rng):
    """Keras' Attention returns the dropped probabilities: output = scores . value, the
    scores the softmax's, zeroed at random and scaled by 1 / (1 - rate), and the value's
    gradient scores^T . dy, by the same mask."""
    for type_id in ("Attention", "AdditiveAttention"):
        layer = get_layer(type_id)
        params = layer_params(layer, {"dropout": 0.4, "return_attention_scores": True})
        xs = [rng.normal(size=(3, 20, 4)), rng.normal(size=(3, 30, 5)),
              rng.normal(size=(3, 30, 4))]
        ws = {s.name: np.asarray(rng.normal(size=s.shape))
              for s in layer.weights(params, [x.shape[1:] for x in xs])}
        dys = [rng.normal(size=(3, 20, 5)), np.zeros((3, 20, 30))]
        (y, scores), dxs, _ = run_layer(rt, ops, layer, params, xs, ws, dys, training=True,
                                        step=5)
        probs = layer.reference({**params, "return_attention_scores": True}, xs, ws)[1]
        kept = scores != 0
        assert abs(kept.mean() - 0.6) < 0.05
        np.testing.assert_allclose(scores[kept], probs[kept] / 0.6, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y, scores @ xs[1], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dxs[1], np.swapaxes(scores, 1, 2) @ dys[0], rtol=1e-5,
                                   atol=1e-5)


def test_self_attention_adds_both_inputs_gradients_in_a_model(rt, rng):
    """query and value the same tensor (Keras' mha(x, x)): the Dense before it gets the sum of
    both ports' gradients (and the key's, taken from value)."""
    from conftest import numeric_grad
    g = Graph()
    g.add_node("Input", {"shape": [5, 3]}, id="x")
    g.add_node("Dense", {"units": 4}, id="d")
    g.add_node("MultiHeadAttention", {"num_heads": 2, "key_dim": 3, "use_causal_mask": True},
               id="mha")
    g.connect("x", 0, "d", 0)
    g.connect("d", 0, "mha", 0)
    g.connect("d", 0, "mha", 1)
    assert not g.validate()
    n = 3
    model = Model(g, rt, n, seed=1)
    model.set_weights({}, init_missing=True)
    x = rng.normal(size=(n, 5, 3))
    dy = rng.normal(size=(n, 5, 4))
    model.load_inputs({"x": x.astype(np.float32)})
    model.forward(n, training=True)
    rt.write(model.grad[("mha", 0)].buf, dy.astype(np.float32), blocking=True)
    model.backward(n)
    got = {p.key: rt.read(p.dw.buf, int(np.prod(p.spec.shape)), p.spec.shape)
           for p in model.params}
    ws = {k: v.astype(np.float64) for k, v in model.get_weights().items()}
    dense, mha = get_layer("Dense"), get_layer("MultiHeadAttention")
    pd, pm = g.nodes["d"].params, g.nodes["mha"].params
    mw = {k.split("/")[1]: v for k, v in ws.items() if k.startswith("mha/")}

    def f():
        h = dense.reference(pd, [x], {"kernel": ws["d/kernel"], "bias": ws["d/bias"]})[0]
        return float((mha.reference(pm, [h, h], mw)[0] * dy).sum())
    for key in ("d/kernel", "d/bias"):
        np.testing.assert_allclose(got[key], numeric_grad(f, ws[key]), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("type_id,params,shapes", [
    ("MultiHeadAttention", {"num_heads": 2, "key_dim": 3, "value_dim": 2, "output_shape": 4,
                            "kernel_initializer": "he_uniform"}, [(4, 5), (3, 5), (3, 6)]),
    ("Attention", {"use_scale": True, "score_mode": "concat", "dropout": 0.25},
     [(4, 3), (5, 2), (5, 3)]),
    ("AdditiveAttention", {"use_scale": True}, [(4, 3), (5, 3)]),
])
def test_exported_attention_imports_back_to_the_same_layer(tmp_path, rng, type_id, params,
                                                           shapes):
    """--export to .keras, then --import: the same parameters and weights."""
    _keras()
    from layerloom.interop import export as interop_export
    from layerloom.interop import keras_import
    from layerloom.project import loom
    g = _graph(type_id, params, shapes)
    layer = g.nodes["node"].layer
    ws = {f"node/{k}": v for k, v in _weights(layer, params, shapes, rng).items()}
    path = str(tmp_path / "m.keras")
    interop_export(loom.Project(g), ws, path)
    back, back_weights = keras_import.read(path)
    nodes = [n for n in back.graph.nodes.values() if n.type == type_id]
    assert len(nodes) == 1 and nodes[0].params == g.nodes["node"].params
    for k, a in ws.items():
        np.testing.assert_array_equal(back_weights[k.replace("node", nodes[0].id, 1)], a)


def test_a_keras_hub_token_and_position_embedding_imports_and_predicts_what_keras_does(
        tmp_path, rng):
    """A stand-in for keras_hub.layers.TokenAndPositionEmbedding: its class name, config keys,
    sub-layers (token_embedding, position_embedding) and computation."""
    keras = _keras()
    from layerloom.api import Model as ApiModel
    from layerloom.interop import keras_import
    position_cls = _keras_hub_position_embedding(keras)

    @keras.saving.register_keras_serializable(package="keras_hub")
    class TokenAndPositionEmbedding(keras.layers.Layer):
        def __init__(self, vocabulary_size, sequence_length, embedding_dim, tie_weights=True,
                     embeddings_initializer="uniform", mask_zero=False, **kwargs):
            super().__init__(**kwargs)
            self.config_ = dict(vocabulary_size=vocabulary_size, sequence_length=sequence_length,
                                embedding_dim=embedding_dim, tie_weights=tie_weights,
                                embeddings_initializer=keras.initializers.serialize(
                                    keras.initializers.get(embeddings_initializer)),
                                mask_zero=mask_zero)
            self.token_embedding = keras.layers.Embedding(vocabulary_size, embedding_dim,
                                                          name="token_embedding")
            self.position_embedding = position_cls(sequence_length, name="position_embedding")

        def get_config(self):
            return {**super().get_config(), **self.config_}

        def build(self, shape):
            self.token_embedding.build(shape)
            self.position_embedding.build(tuple(shape) + (self.config_["embedding_dim"],))

        def call(self, inputs):
            tokens = self.token_embedding(inputs)
            return tokens + self.position_embedding(tokens)

    x = keras.Input((6,))
    model = keras.Model(x, TokenAndPositionEmbedding(11, 8, 5, name="emb")(x))
    path = str(tmp_path / "m.keras")
    model.save(path)
    xs = rng.integers(0, 11, (3, 6)).astype(np.float32)
    project, weights = keras_import.read(path)
    node = project.graph.nodes["emb"]
    assert node.type == "TokenAndPositionEmbedding"
    assert node.params == {"vocabulary_size": 11, "sequence_length": 8, "embedding_dim": 5,
                           "embeddings_initializer": "random_uniform"}
    got = ApiModel(project, weights).predict(xs)
    np.testing.assert_allclose(got, model.predict(xs, verbose=0), rtol=0, atol=TOL)
    from layerloom.interop import keras_in_layers
    config = {**model.layers[1].get_config(), "embeddings_initializer": "uniform"}
    assert keras_in_layers.convert("emb", "TokenAndPositionEmbedding", config, [(None, 6)])[1][
        "embeddings_initializer"] == "random_uniform"  # keras-hub's default, as a string
    for option, value in (("mask_zero", True), ("tie_weights", False)):
        with pytest.raises(LayerloomError, match=option):
            keras_in_layers.convert("emb", "TokenAndPositionEmbedding", {**config, option: value},
                                    [(None, 6)])
