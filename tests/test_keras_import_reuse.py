"""Keras import of a layer called at several places (engine/interop/keras_import.py, shared
weights: docs/file-format.md): each call is a node wired to that call's tensors, the first
named as the layer, the n-th `<name>_call<n>`, each later one `shares` the first, whose weights
alone are in the weights; a nested model called twice (the siamese tower) is a second instance
of the first call's block type sharing the first (blocks), or its layers again each sharing the
first call's (blocks=False). The imports predict what Keras does and one training step moves
the one set of weights as Keras' step does. Models are built with Keras here (torch backend)
and saved as .keras and as Keras 3's legacy .h5."""
import os

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from layerloom import api  # noqa: E402
from layerloom.interop import keras_import, write_imported  # noqa: E402
from layerloom.project import loom  # noqa: E402

TOLERANCE = 1e-5
L = keras.layers


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.standard_normal(w.shape) * 0.5).astype(np.float32)
                       for w in model.get_weights()])


def _plain():
    """One Dense called on two inputs (the brief's model), then a third call on their
    difference, a weightless ReLU called twice too."""
    keras.utils.set_random_seed(1)
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    dense, relu = L.Dense(4, activation="tanh", name="dense"), L.ReLU(name="relu")
    d = L.Subtract(name="diff")([relu(dense(a)), relu(dense(b))])
    model = keras.Model([a, b], dense(d), name="plain")
    _randomize(model)
    return model


def _brief():
    inp_a, inp_b = keras.Input((4,)), keras.Input((4,))
    dense = L.Dense(3)
    out = L.Subtract()([dense(inp_a), dense(inp_b)])
    model = keras.Model([inp_a, inp_b], out)
    _randomize(model)
    return model


def _siamese():
    """A nested Sequential tower called on both inputs, a head on their difference."""
    keras.utils.set_random_seed(2)
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    encoder = keras.Sequential([L.Dense(6, activation="tanh", name="e1"),
                                L.Dense(5, activation="sigmoid", name="e2")], name="encoder")
    d = L.Subtract(name="diff")([encoder(a), encoder(b)])
    model = keras.Model([a, b], L.Dense(2, name="head")(d), name="siamese")
    _randomize(model, 3)
    return model


def _functional_tower():
    """A nested Functional tower (two Dense and an Add skip) called three times."""
    keras.utils.set_random_seed(3)
    x = keras.Input((4,), name="t_in")
    h = L.Dense(4, activation="relu", name="t1")(x)
    tower = keras.Model(x, L.Add(name="t_add")([x, L.Dense(4, name="t2")(h)]), name="tower")
    ins = [keras.Input((4,), name=n) for n in ("a", "b", "c")]
    out = L.Concatenate(name="cat")([tower(i) for i in ins])
    model = keras.Model(ins, L.Dense(1, name="head")(out), name="triplet")
    _randomize(model, 4)
    return model


def _save(model, tmp_path, ext):
    path = str(tmp_path / f"{model.name}.{ext}")
    model.save(path)
    return path


def _xs(model, n=7, seed=5):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n,) + tuple(i.shape[1:])).astype(np.float32)
            for i in model.inputs]


def _check(model, project, weights):
    """No problems, Keras' parameter count, Keras' outputs within TOLERANCE. Returns the
    error."""
    g = project.graph
    assert g.analysis().problems == [], g.analysis().problems
    assert g.analysis().total_params().total == model.count_params()
    xs = _xs(model)
    got = api.Model(project, weights).predict(dict(zip(g.inputs(), xs)))
    err = float(np.abs(got - model.predict(xs, verbose=0)).max())
    print(model.name, "max error", err)
    assert err <= TOLERANCE, err
    return err


def _shares(graph):
    return {nid: n.shares for nid, n in graph.nodes.items() if n.shares}


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("blocks", [True, False])
def test_a_layer_called_at_several_places_is_a_node_per_call_sharing_the_first(
        tmp_path, ext, blocks):
    model = _plain()
    project, weights = keras_import.read(_save(model, tmp_path, ext), blocks=blocks)
    g = project.graph
    assert {nid: n.type for nid, n in g.nodes.items()} == {
        "a": "Input", "b": "Input", "dense": "Dense", "relu": "ReLU", "dense_call2": "Dense",
        "relu_call2": "ReLU", "diff": "Subtract", "dense_call3": "Dense"}
    assert [e.src for e in g.in_edges("relu_call2")] == ["dense_call2"]
    assert _shares(g) == {"dense_call2": "dense", "dense_call3": "dense"}
    assert [e.src for e in g.in_edges("dense")] == ["a"]
    assert [e.src for e in g.in_edges("dense_call2")] == ["b"]
    assert [e.src for e in g.in_edges("dense_call3")] == ["diff"]
    assert sorted(weights) == ["dense/bias", "dense/kernel"]
    _check(model, project, weights)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_the_briefs_model_with_keras_names(tmp_path, ext):
    model = _brief()
    project, weights = keras_import.read(_save(model, tmp_path, ext))
    dense = next(layer.name for layer in model.layers if isinstance(layer, L.Dense))
    assert _shares(project.graph) == {f"{dense}_call2": dense}
    assert sorted(weights) == [f"{dense}/bias", f"{dense}/kernel"]
    _check(model, project, weights)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_a_nested_model_called_twice_is_a_second_instance_sharing_the_first(tmp_path, ext):
    model = _siamese()
    path = _save(model, tmp_path, ext)
    project, weights = keras_import.read(path)
    g = project.graph
    assert [(nid, n.type) for nid, n in g.nodes.items()] == [
        ("a", "Input"), ("b", "Input"), ("encoder", "Encoder"), ("encoder_call2", "Encoder"),
        ("diff", "Subtract"), ("head", "Dense")]
    assert _shares(g) == {"encoder_call2": "encoder"}
    assert [e.src for e in g.in_edges("encoder_call2")] == ["b"]
    assert [e.src for e in g.in_edges("diff")] == ["encoder", "encoder_call2"]
    assert sorted(weights) == ["encoder/e1/bias", "encoder/e1/kernel", "encoder/e2/bias",
                               "encoder/e2/kernel", "head/bias", "head/kernel"]
    assert g.analysis().params["encoder_call2"].total == 0
    _check(model, project, weights)
    # written and opened again as --import writes it: the sharing is in the file
    to = str(tmp_path / "siamese.loom")
    write_imported(project, weights, to)
    assert _shares(loom.load(to).graph) == {"encoder_call2": "encoder"}
    xs = _xs(model)
    got = api.load(to).predict(dict(zip(g.inputs(), xs)))
    assert np.abs(got - model.predict(xs, verbose=0)).max() <= TOLERANCE


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_a_nested_model_called_twice_flat_shares_each_layer(tmp_path, ext):
    model = _siamese()
    project, weights = keras_import.read(_save(model, tmp_path, ext), blocks=False)
    g = project.graph
    assert [nid for nid in g.nodes] == ["a", "b", "e1", "e2", "e1_call2", "e2_call2", "diff",
                                        "head"]
    assert _shares(g) == {"e1_call2": "e1", "e2_call2": "e2"}
    assert [e.src for e in g.in_edges("e1_call2")] == ["b"]
    assert sorted(weights) == ["e1/bias", "e1/kernel", "e2/bias", "e2/kernel", "head/bias",
                               "head/kernel"]
    _check(model, project, weights)


@pytest.mark.parametrize("blocks", [True, False])
def test_a_functional_tower_called_three_times(tmp_path, blocks):
    model = _functional_tower()
    project, weights = keras_import.read(_save(model, tmp_path, "keras"), blocks=blocks)
    g = project.graph
    if blocks:
        assert _shares(g) == {"tower_call2": "tower", "tower_call3": "tower"}
        assert [e.src for e in g.in_edges("cat")] == ["tower", "tower_call2", "tower_call3"]
    else:
        assert _shares(g) == {"t1_call2": "t1", "t2_call2": "t2", "t1_call3": "t1",
                              "t2_call3": "t2"}
        assert [e.src for e in g.in_edges("t_add_call3")] == ["c", "t2_call3"]
    assert len(weights) == 6
    _check(model, project, weights)


@pytest.mark.parametrize("make, blocks", [(_plain, False), (_siamese, True), (_siamese, False)])
def test_one_training_step_moves_the_shared_weights_once_as_keras_does(tmp_path, make, blocks):
    """SGD on one batch: Layerloom sums both calls' gradients into the owner's weights, as
    Keras' train_on_batch does; only the owner's keys are in get_weights."""
    model = make()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    project, weights = keras_import.read(_save(model, tmp_path, "keras"), blocks=blocks)
    project.training.update({"batch_size": 8, "shuffle": False, "epochs": 1,
                             "validation_split": 0.0, "metrics": []})
    assert project.training["optimizer"]["name"] == "sgd"
    xs = _xs(model, n=8, seed=6)
    y = np.random.default_rng(7).standard_normal((8,) + tuple(model.outputs[0].shape[1:]))
    y = y.astype(np.float32)
    lm = api.Model(project, weights)
    lm.fit(dict(zip(project.graph.inputs(), xs)), y, epochs=1, batch_size=8, verbose=False)
    after = lm.get_weights()
    assert sorted(after) == sorted(weights)  # the owners' keys only
    model.train_on_batch(xs, y)
    keras_after = model.get_weights()
    # the import's weights in Keras' order: the owners' keys, each layer's kernel then bias
    order = [k for k in weights]
    assert len(order) == len(keras_after)
    errs = {k: float(np.abs(after[k] - w).max()) for k, w in zip(order, keras_after)}
    print("step", max(errs.values()))
    assert max(errs.values()) <= TOLERANCE, errs
    moved = {k: float(np.abs(after[k] - weights[k]).max()) for k in weights}
    assert min(moved.values()) > 1e-4, moved


def test_a_later_call_that_cannot_share_is_refused_naming_the_layer(tmp_path):
    """A Keras layer whose weights depend on nothing the input changes cannot differ between
    calls, but a file edited by hand may say it does: the message names the layer."""
    import json
    import zipfile
    model = _brief()
    path = _save(model, tmp_path, "keras")
    with zipfile.ZipFile(path) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    inputs = [lay for lay in config["config"]["layers"] if lay["class_name"] == "InputLayer"]
    inputs[1]["config"]["batch_shape"] = [None, 5]  # the second call gets 5 features
    files["config.json"] = json.dumps(config).encode()
    bad = str(tmp_path / "bad.keras")
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    from layerloom.core.errors import DataError
    with pytest.raises(DataError, match=r"called at two places.*cannot use the weights"):
        keras_import.read(bad)


def test_the_fixture_once_refused_for_its_shared_layer_now_imports():
    """tests/data/keras/shared.keras (a Dense called twice) was the import's example of what
    Layerloom lacked; its second call now shares the first's weights."""
    path = os.path.join(os.path.dirname(__file__), "data", "keras", "shared.keras")
    project, weights = keras_import.read(path)
    g = project.graph
    assert g.nodes["twice_call2"].shares == "twice" and not g.validate()
    assert not [k for k in weights if k.startswith("twice_call2/")]
