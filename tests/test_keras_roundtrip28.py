"""Issue 28's leftovers in the Keras round trip: a pooling that no Keras padding word gives
(explicit padding, ceil_mode, count_include_pad) and keras-hub's PositionEmbedding and
TokenAndPositionEmbedding go out to .keras as one Keras layer each (a class the export defines
and registers: Padded<cls>; keras-hub's class names, configs and weights) and come back
through --import as the same single Layerloom layer, with the same outputs."""
import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from layerloom.core.errors import DataError  # noqa: E402
from layerloom.core.registry import get_layer  # noqa: E402
from layerloom.interop import export as interop_export  # noqa: E402
from layerloom.interop import keras_code, keras_export, keras_import  # noqa: E402
from layerloom.layers.kit import keras_padding_word  # noqa: E402
from layerloom.project import loom  # noqa: E402
from layerloom.train.model import Model  # noqa: E402
from test_onnx_export import _graph_for, _inputs, _random_weights  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TOL = 1e-6


def _padded_cases():
    """Every declared pooling example that no Keras padding word gives (it is written as
    Padded<cls>), and a few more."""
    out = []
    for t in ("MaxPooling2D", "AveragePooling2D", "MaxPooling1D", "AveragePooling1D",
              "MaxPooling3D", "AveragePooling3D"):
        for params, shapes in get_layer(t).examples:
            g = _graph_for(t, params, shapes)
            node = g.nodes["node"]
            if keras_padding_word(node.layer, node.params, shapes[0]) is None or \
                    node.params.get("count_include_pad"):
                out.append((t, params, shapes))
    out += [("AveragePooling2D", {"pool_size": 2, "strides": 2, "padding": [[1, 0], [0, 1]]},
             [(5, 5, 3)]),
            ("MaxPooling1D", {"pool_size": 3, "strides": 2, "padding": [1, 0]}, [(8, 2)])]
    return out


CASES = _padded_cases()
IDS = [f"{t}-{i}" for i, (t, _, _) in enumerate(CASES)]


def _one(out):
    """The single output of Layerloom's predict (a dict by output id, or the array)."""
    return next(iter(out.values())) if isinstance(out, dict) else out


def _round_trip(rt, rng, tmp_path, type_id, params, shapes):
    g = _graph_for(type_id, params, shapes)
    ws = _random_weights(g, rng)
    xs = _inputs(g, rng, batch=3)
    want = _one(Model(g, rt, 3, weights=ws).predict(xs))
    project = loom.Project(g)
    path = str(tmp_path / "m.keras")
    interop_export(project, ws, path)
    back, back_ws = keras_import.read(path)
    return g, ws, xs, want, back, back_ws, path


def test_the_padded_cases_are_the_ones_keras_has_no_word_for():
    """The cases below include torchvision's stem, squeezenet's ceil_mode and an average
    counting asymmetric padding (else the test would pass on Keras' words alone)."""
    kinds = {(t, bool(p.get("ceil_mode")), bool(p.get("count_include_pad"))) for t, p, _ in CASES}
    assert ("MaxPooling2D", False, False) in kinds and ("MaxPooling2D", True, False) in kinds
    assert ("AveragePooling2D", True, True) in kinds and ("AveragePooling1D", True, True) in kinds


@pytest.mark.parametrize("type_id,params,shapes", CASES, ids=IDS)
def test_a_padded_pooling_comes_back_as_the_same_single_layer(rt, rng, tmp_path, type_id,
                                                              params, shapes):
    g, ws, xs, want, back, _, path = _round_trip(rt, rng, tmp_path, type_id, params, shapes)
    model = keras_export.to_keras(loom.Project(g), ws, compile=False)
    node_layers = [layer for layer in model.layers if layer.name.startswith("node")]
    assert [type(layer).__name__ for layer in node_layers] == [f"Padded{type_id}"]
    got = np.asarray(model.predict(next(iter(xs.values())), verbose=0))
    assert float(np.abs(got - want).max()) <= TOL
    # the float64 reference of the declaration
    ref = g.nodes["node"].layer.reference(g.nodes["node"].params,
                                          [next(iter(xs.values())).astype(np.float64)], {})[0]
    assert float(np.abs(got - ref).max()) <= 1e-5
    # --import: one layer, the same type and parameters, the same outputs
    assert {k: n.type for k, n in back.graph.nodes.items()} == {"in0": "Input", "node": type_id}
    assert back.graph.nodes["node"].params == g.nodes["node"].params
    got_back = _one(Model(back.graph, rt, 3, weights={}).predict(xs))
    assert float(np.abs(got_back - want).max()) <= TOL
    # Keras loads its own file (the class registered by the export's definitions)
    again = keras.saving.load_model(path, compile=False)
    got_again = np.asarray(again.predict(next(iter(xs.values())), verbose=0))
    assert float(np.abs(got_again - want).max()) <= TOL


def test_count_include_pad_is_what_keras_zero_padding_before_an_average_computes(rt, rng):
    """A ZeroPadding2D before a valid AveragePooling2D (what a Keras user writes for a torch
    stem) counts the padded zeros: Layerloom's count_include_pad=True, not False."""
    x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    i = keras.Input(shape=(6, 5, 3))
    y = keras.layers.AveragePooling2D(3, 2)(keras.layers.ZeroPadding2D(((1, 1), (1, 1)))(i))
    keras_out = np.asarray(keras.Model(i, y).predict(x, verbose=0))
    avg = get_layer("AveragePooling2D")
    results = {}
    for inc in (True, False):
        g = _graph_for("AveragePooling2D", {"pool_size": 3, "strides": 2, "padding": 1,
                                            "count_include_pad": inc}, [(6, 5, 3)])
        results[inc] = _one(Model(g, rt, 2, weights={}).predict({"in0": x}))
        ref = avg.reference(g.nodes["node"].params, [x.astype(np.float64)], {})[0]
        assert float(np.abs(results[inc] - ref).max()) <= 1e-5
    assert float(np.abs(results[True] - keras_out).max()) <= TOL
    assert float(np.abs(results[False] - keras_out).max()) > 1e-2


def test_the_script_defines_each_class_once_before_build_layers(tmp_path):
    g = _graph_for("MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": 1}, [(7, 6, 2)])
    second = g.add_node("AveragePooling2D", {"pool_size": 2, "padding": [[1, 0], [0, 1]],
                                             "count_include_pad": True}, id="avg")
    g.connect("node", 0, second.id, 0)
    text = keras_code.code(loom.Project(g), "w.npz")
    assert text.count("class PaddedPooling(") == 1
    assert text.count("class PaddedMaxPooling2D(") == 1
    assert text.count("class PaddedAveragePooling2D(") == 1
    assert text.index("class PaddedPooling(") < text.index("def build_layers():")
    assert "ops.pad(" not in text.split("def build_layers():")[1].split("def ")[0]


# -- keras-hub's position embeddings ----------------------------------------------------------
def _hub_position(table, x):
    """keras-hub's PositionEmbedding.call in float64: the table's first steps rows (start_index
    0), broadcast to the input's shape."""
    return np.broadcast_to(table[:x.shape[-2], :x.shape[-1]], x.shape)


def _hub_token_position(tokens, positions, ids):
    """keras-hub's TokenAndPositionEmbedding.call in float64 (indices inside the vocabulary;
    Layerloom's zero vectors for the others)."""
    k = np.trunc(ids).astype(np.int64)
    inside = (k >= 0) & (k < tokens.shape[0])
    t = tokens[np.where(inside, k, 0)] * inside[..., None]
    return t + _hub_position(positions, t)


EMBEDDINGS = [("PositionEmbedding", {"sequence_length": 7}, [(4, 3)]),
              ("PositionEmbedding", {"sequence_length": 5, "initializer": "he_normal"}, [(5, 8)]),
              ("TokenAndPositionEmbedding", {"vocabulary_size": 7, "sequence_length": 5,
                                             "embedding_dim": 3}, [(5,)]),
              ("TokenAndPositionEmbedding", {"vocabulary_size": 4, "sequence_length": 9,
                                             "embedding_dim": 6,
                                             "embeddings_initializer": "glorot_uniform"},
               [(6,)])]


@pytest.mark.parametrize("type_id,params,shapes", EMBEDDINGS,
                         ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(EMBEDDINGS)])
def test_a_position_embedding_comes_back_as_the_same_layer(rt, rng, tmp_path, type_id, params,
                                                           shapes):
    g, ws, xs, want, back, back_ws, path = _round_trip(rt, rng, tmp_path, type_id, params,
                                                       shapes)
    x = next(iter(xs.values()))
    model = keras_export.to_keras(loom.Project(g), ws, compile=False)
    layer = model.get_layer("node")
    assert type(layer).__name__ == type_id
    got = np.asarray(model.predict(x, verbose=0))
    f64 = {k.split("/")[1]: v.astype(np.float64) for k, v in ws.items()}
    ref = (_hub_position(f64["embeddings"], x.astype(np.float64))
           if type_id == "PositionEmbedding" else
           _hub_token_position(f64["token_embeddings"], f64["position_embeddings"], x))
    assert float(np.abs(got - ref).max()) <= TOL
    assert float(np.abs(got - want).max()) <= TOL
    # the .keras file has keras-hub's class name and config keys
    config = layer.get_config()
    keys = ({"sequence_length", "initializer"} if type_id == "PositionEmbedding" else
            {"vocabulary_size", "sequence_length", "embedding_dim", "embeddings_initializer",
             "tie_weights", "mask_zero"})
    assert keys <= set(config)
    # --import: the same layer, parameters and weights
    assert {k: n.type for k, n in back.graph.nodes.items()} == {"in0": "Input", "node": type_id}
    assert back.graph.nodes["node"].params == g.nodes["node"].params
    assert set(back_ws) == set(ws)
    for k, a in ws.items():
        np.testing.assert_array_equal(back_ws[k], a)
    got_back = _one(Model(back.graph, rt, 3, weights=back_ws).predict(xs))
    assert float(np.abs(got_back - want).max()) <= TOL
    again = keras.saving.load_model(path, compile=False)
    assert float(np.abs(np.asarray(again.predict(x, verbose=0)) - want).max()) <= TOL


def test_a_token_and_position_embedding_with_mask_zero_is_refused_by_name(tmp_path, rng):
    """keras-hub's mask_zero has no Layerloom form: --import says which layer and option."""
    g = _graph_for("TokenAndPositionEmbedding", {"vocabulary_size": 7, "sequence_length": 5,
                                                 "embedding_dim": 3}, [(5,)])
    ns = keras_export._namespace(loom.Project(g))
    cls = ns["TokenAndPositionEmbedding"]
    layer = cls(7, 5, 3, name="tok")
    layer.get_config = lambda: {**cls.get_config(layer), "mask_zero": True}
    i = keras.Input(shape=(5,))
    path = str(tmp_path / "m.keras")
    keras.Model(i, layer(i)).save(path)
    with pytest.raises(DataError, match="'tok'.*mask_zero"):
        keras_import.read(path)


# -- Layerloom's ClassToken (Keras has no class token) ------------------------------------------
@pytest.mark.parametrize("params,shape", [({}, (4, 3)), ({"initializer": "he_normal"}, (1, 6))])
def test_a_class_token_goes_to_keras_as_one_layer_and_comes_back(rt, rng, tmp_path, params,
                                                                  shape):
    """ClassToken is written as the class the export defines and registers (config
    initializer, weight token), computes the token before the sequence in Keras, and
    --import reads it back as the same layer with the same weight."""
    g, ws, xs, want, back, back_ws, path = _round_trip(rt, rng, tmp_path, "ClassToken", params,
                                                       [shape])
    x = next(iter(xs.values()))
    model = keras_export.to_keras(loom.Project(g), ws, compile=False)
    assert type(model.get_layer("node")).__name__ == "ClassToken"
    got = np.asarray(model.predict(x, verbose=0))
    token = ws["node/token"].astype(np.float64)
    ref = np.concatenate([np.broadcast_to(token, (len(x), 1, shape[1])), x], axis=1)
    assert float(np.abs(got - ref).max()) <= TOL
    assert float(np.abs(got - want).max()) <= TOL
    assert {k: n.type for k, n in back.graph.nodes.items()} == {"in0": "Input",
                                                                 "node": "ClassToken"}
    assert back.graph.nodes["node"].params == g.nodes["node"].params
    np.testing.assert_array_equal(back_ws["node/token"], ws["node/token"])
    again = keras.saving.load_model(path, compile=False)
    assert float(np.abs(np.asarray(again.predict(x, verbose=0)) - want).max()) <= TOL


# -- keras_cv's DropPath (stochastic depth), the bench's one-layer blocker --------------------
@keras.saving.register_keras_serializable(package="keras_cv")
class DropPath(keras.layers.Layer):
    """keras_cv.layers.DropPath as keras_cv defines it (config rate, seed): in training each
    sample is dropped whole with probability rate, the others scaled by 1 / (1 - rate); at
    inference the identity."""

    def __init__(self, rate=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self._random_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if self.rate == 0.0 or not training:
            return x
        shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        keep = keras.ops.cast(keras.random.uniform(shape, seed=self._random_generator) >
                              self.rate, x.dtype)
        return x / (1.0 - self.rate) * keep

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def test_keras_cv_drop_path_imports_as_a_per_sample_dropout(rt, rng, tmp_path):
    import layerloom
    i = keras.Input(shape=(4, 3))
    h = keras.layers.Dense(5, name="dense")(i)
    y = DropPath(0.25, seed=3, name="drop")(h)
    model = keras.Model(i, keras.layers.Dense(2, name="out")(y))
    path = str(tmp_path / "m.keras")
    model.save(path)
    back, _ = keras_import.read(path)
    node = back.graph.nodes["drop"]
    assert node.type == "Dropout"
    assert node.params["per_sample"] is True and node.params["rate"] == 0.25
    keras_import.convert(path, str(tmp_path / "m.loom"))
    x = rng.normal(size=(6, 4, 3)).astype(np.float32)
    got = layerloom.load(str(tmp_path / "m.loom")).predict(x)
    assert float(np.abs(got - model.predict(x, verbose=0)).max()) <= 1e-5
    # training: Dropout's per_sample drops whole samples, scaled by 1 / (1 - rate) as
    # DropPath.call above (test_layers' float64 harness checks Dropout per_sample)
