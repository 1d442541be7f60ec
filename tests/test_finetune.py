"""Fine-tuning (issue 30, item 3): core/finetune.py's graph transform (the frozen set, the head
and its shapes, the default cut, the learning rate, unfreezing the top layers),
project/finetune.py's data (an image folder's classes, a regression target) and the API's
Model.fine_tune: the kept weights are the trained ones, and training changes only the head,
whose outputs are checked against a float64 numpy forward."""
import os

import numpy as np
import pytest

from layerloom import api
from layerloom.core.errors import DataError, GraphError, ParamError
from layerloom.core.finetune import (default_cut, fine_tune_graph, kept_weights,
                                     low_learning_rate, top_frozen, unfreeze_top)
from layerloom.project import loom as projectfile
from layerloom.project.finetune import fine_tune_project

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = os.path.join(ROOT, "assets", "examples", "shapes_folder.loom")
SHAPES_DATA = os.path.join(ROOT, "assets", "examples", "data", "shapes")


def chain(*layers, shape=(20,)):
    """Input 'x' -> layers (id, type, params) in a row, read as a project file's graph."""
    nodes = [{"id": "x", "type": "Input", "params": {"shape": list(shape)}}] + [
        {"id": nid, "type": t, "params": params} for nid, t, params in layers]
    edges = [{"from": [a["id"], 0], "to": [b["id"], 0]} for a, b in zip(nodes, nodes[1:])]
    problems = []
    g = projectfile.parse_graph({"nodes": nodes, "edges": edges}, problems)
    assert not problems
    return g


def mlp(seed=0, lr=0.01, head="out", classes=4):
    g = chain(("h1", "Dense", {"units": 16, "activation": "relu"}),
              ("h2", "Dense", {"units": 8, "activation": "relu"}),
              (head, "Dense", {"units": classes, "activation": "softmax"}))
    p = projectfile.Project(g)
    p.training.update({"loss": {head: {"name": "sparse_categorical_crossentropy"}},
                       "batch_size": 16, "seed": seed,
                       "optimizer": {"name": "adam", "params": {"learning_rate": lr}}})
    return p


def test_cnn_cut_at_the_dense_before_the_classifier_freezes_everything_before():
    p = projectfile.load(SHAPES)
    g = p.graph
    assert default_cut(g) == "hidden"
    plan = fine_tune_graph(g, None, classes=5, optimizer=p.training["optimizer"])
    assert plan.kept == ["image", "conv", "pool", "conv_2", "pool_2", "flatten", "hidden"]
    assert plan.frozen == plan.graph.frozen() == plan.kept[1:]
    assert plan.head == ["head_dropout", "head"] and plan.output == "head"
    assert plan.graph.outputs() == ["head"]
    shapes = plan.graph.analysis().shapes
    assert shapes["head_dropout"] == [(32,)] and shapes["head"] == [(5,)]
    n = plan.graph.nodes
    assert n["head_dropout"].params["rate"] == 0.2
    assert n["head"].params["units"] == 5 and n["head"].params["activation"] == "softmax"
    assert n["head"].params["kernel_initializer"] == "zeros"  # first outputs uniform
    assert plan.loss == {"head": {"name": "sparse_categorical_crossentropy"}}
    assert plan.metrics == ["accuracy"]
    # the shapes example trains with Adam 0.003: a tenth
    assert plan.optimizer["name"] == "adam"
    assert plan.optimizer["params"]["learning_rate"] == pytest.approx(3e-4, rel=1e-12)
    assert not problems(plan.graph)
    # the old graph is untouched
    assert "shape" in g.nodes and not g.frozen()


def problems(graph):
    return graph.validate()


def test_image_like_cut_gets_global_average_pooling_other_shapes_a_flatten():
    g = projectfile.load(SHAPES).graph
    plan = fine_tune_graph(g, "pool_2", classes=3)
    assert plan.head == ["head_pool", "head_dropout", "head"]
    assert plan.graph.nodes["head_pool"].type == "GlobalAveragePooling2D"
    assert plan.graph.analysis().shapes["head_pool"] == [(32,)]
    assert plan.frozen == ["conv", "pool", "conv_2", "pool_2"]
    seq = chain(("emb", "Dense", {"units": 6}), ("out", "Dense", {"units": 2}), shape=(10, 4))
    plan = fine_tune_graph(seq, "emb", classes=3)
    assert [plan.graph.nodes[h].type for h in plan.head] == ["Flatten", "Dropout", "Dense"]
    assert plan.graph.analysis().shapes["head_flatten"] == [(60,)]
    assert plan.graph.analysis().shapes["head"] == [(3,)]


def test_regression_head_linear_units_reshaped_and_mse():
    g = chain(("h", "Dense", {"units": 8}), ("out", "Dense", {"units": 1}))
    plan = fine_tune_graph(g, "h", target_shape=(2, 3))
    assert [plan.graph.nodes[h].type for h in plan.head] == ["Dropout", "Dense", "Reshape"]
    assert plan.graph.nodes["head"].params["activation"] == "linear"
    assert plan.graph.analysis().shapes["head_reshape"] == [(2, 3)]
    assert plan.loss == {"head_reshape": {"name": "mean_squared_error"}}
    assert plan.metrics == ["mean_absolute_error"]


def test_head_ids_do_not_clash_and_other_branches_are_left_out():
    g = chain(("head", "Dense", {"units": 8}), ("head_dropout", "Dropout", {"rate": 0.5}),
              ("out", "Dense", {"units": 2, "activation": "softmax"}))
    g.add_node("Dense", {"units": 3}, id="side")
    g.connect("x", 0, "side", 0)  # a second output, not before the cut
    plan = fine_tune_graph(g, "head_dropout", classes=4)
    assert plan.head == ["head_dropout_2", "head_2"]
    assert "side" not in plan.graph.nodes and "out" not in plan.graph.nodes
    assert plan.graph.outputs() == ["head_2"]


def test_default_cut_walks_back_over_activation_and_dropout():
    g = chain(("body", "Dense", {"units": 8}), ("drop", "Dropout", {"rate": 0.3}),
              ("logits", "Dense", {"units": 4}), ("act", "Activation",
                                                  {"activation": "softmax"}))
    assert default_cut(g) == "body"
    g.add_node("Dense", {"units": 3}, id="side")
    g.connect("x", 0, "side", 0)
    with pytest.raises(GraphError, match="2 outputs"):
        default_cut(g)


@pytest.mark.parametrize("optimizer,expected", [
    ({"name": "adam"}, 1e-4),                                       # Keras' 1e-3 default
    ({"name": "adam", "params": {"learning_rate": 5e-4}}, 5e-5),
    ({"name": "sgd", "params": {"learning_rate": 0.05}}, 0.005),
    ({"name": "sgd"}, 0.001),                                       # SGD's 0.01 default
    ({"name": "rmsprop", "params": {"learning_rate": {
        "name": "exponential_decay", "params": {"initial_learning_rate": 0.02}}}}, 0.002),
])
def test_learning_rate_set_low(optimizer, expected):
    from layerloom.core.sections import training
    out = low_learning_rate(optimizer, training("optimizers").kinds)
    assert out["name"] == optimizer["name"]
    assert out["params"]["learning_rate"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"cut": "x", "classes": 3}, GraphError, "is an Input"),
    ({"cut": "nope", "classes": 3}, GraphError, "no node 'nope'"),
    ({"cut": "h1", "classes": 1}, ParamError, "at least 2 classes"),
    ({"cut": "h1", "classes": True}, ParamError, "at least 2 classes"),
    ({"cut": "h1"}, ParamError, "classes or the regression"),
    ({"cut": "h1", "classes": 3, "target_shape": (1,)}, ParamError, "classes or"),
    ({"cut": "h1", "target_shape": (0,)}, ParamError, "positive sizes"),
])
def test_bad_requests_are_refused_by_name(kwargs, error, match):
    with pytest.raises(error, match=match):
        fine_tune_graph(mlp().graph, **kwargs)


def test_unfreeze_top_counts_layers_with_weights_and_keeps_batchnorm_frozen():
    g = projectfile.load(SHAPES).graph
    plan = fine_tune_graph(g, "hidden", classes=3)
    assert top_frozen(plan.graph, 1) == ["hidden"]
    # two with weights: conv_2 and hidden, and the weightless layers between them
    assert unfreeze_top(plan.graph, 2) == ["conv_2", "pool_2", "flatten", "hidden"]
    assert plan.graph.frozen() == ["conv", "pool"]
    assert unfreeze_top(plan.graph, 5) == ["conv", "pool"]
    assert unfreeze_top(plan.graph, 1) == [] and not plan.graph.frozen()
    bn = chain(("d1", "Dense", {"units": 8}), ("bn", "BatchNormalization", {}),
               ("d2", "Dense", {"units": 8}), ("out", "Dense", {"units": 2}))
    plan = fine_tune_graph(bn, "d2", classes=2)
    assert unfreeze_top(plan.graph, 2) == ["d1", "d2"]
    assert plan.graph.frozen() == ["bn"]
    with pytest.raises(ParamError, match="positive number"):
        top_frozen(plan.graph, 0)


def test_image_folder_data_sizes_the_head_and_reads_at_the_input_size():
    project, weights, plan = fine_tune_project(projectfile.load(SHAPES), None, "pool_2",
                                               SHAPES_DATA)
    assert weights == {}
    assert project.graph.nodes["head"].params["units"] == 3  # circle, square, triangle
    d = project.dataset
    assert d["source"] == "images" and d["path"] == os.path.abspath(SHAPES_DATA)
    assert d["size"] == [28, 28] and d["color"] == "grayscale"
    assert d["inputs"] == {"image": "x"} and d["targets"] == {"head": "y"}
    assert project.training["loss"] == {"head": {"name": "sparse_categorical_crossentropy"}}
    assert projectfile.problems_of(project) == []  # ready for --run as it is
    # the kept nodes keep their canvas places, the head goes right of the cut
    old = projectfile.load(SHAPES).ui["positions"]
    pos = project.ui["positions"]
    assert pos["conv"] == old["conv"] and pos["head_pool"][0] > old["pool_2"][0]
    # a project file that reads back with its frozen nodes
    text = projectfile.dumps(project)
    back = projectfile.loads(text)
    assert back.graph.frozen() == ["conv", "pool", "conv_2", "pool_2"]
    mlp_project = mlp()
    with pytest.raises(DataError, match="height, width"):
        fine_tune_project(mlp_project, None, "h2", SHAPES_DATA)
    with pytest.raises(DataError, match="no dataset"):
        fine_tune_project(mlp_project, None, "h2")


def test_the_projects_own_data_gives_classes_or_a_regression_shape():
    p = projectfile.load(os.path.join(ROOT, "assets", "examples", "spirals.loom"))
    project, _, plan = fine_tune_project(p, None)
    assert plan.cut == default_cut(p.graph)
    assert project.graph.nodes["head"].params["units"] == 2  # two spirals
    assert project.dataset["targets"] == {"head": "y"}
    p = projectfile.load(os.path.join(ROOT, "assets", "examples", "sine.loom"))
    project, _, plan = fine_tune_project(p, None, cut=default_cut(p.graph))
    assert project.training["loss"] == {"head": {"name": "mean_squared_error"}}
    assert project.graph.analysis().shapes["head"] == [(1,)]


def _forward64(w, x):
    """The fine-tuned MLP in float64: relu(relu(x W1 + b1) W2 + b2) W + b, softmax."""
    def dense(a, n):
        return a @ w[f"{n}/kernel"].astype(np.float64) + w[f"{n}/bias"].astype(np.float64)
    h = np.maximum(dense(np.maximum(dense(x.astype(np.float64), "h1"), 0), "h2"), 0)
    z = dense(h, "head")
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_fit_trains_the_head_only_from_the_kept_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32) + 2 * (x[:, 1] > 0)
    pre = api.Model(mlp())
    pre.fit(x, y, epochs=2, verbose=False)
    trained = {k: v.copy() for k, v in pre.get_weights().items()}
    tuned = pre.fine_tune(cut="h2", classes=3)
    assert tuned.frozen == ["h1", "h2"]
    assert set(tuned.get_weights()) == {"h1/kernel", "h1/bias", "h2/kernel", "h2/bias"}
    assert all(np.array_equal(tuned.get_weights()[k], trained[k]) for k in tuned.get_weights())
    assert tuned.project.training["optimizer"]["params"]["learning_rate"] == pytest.approx(1e-3)
    tuned.project.training["optimizer"]["params"]["learning_rate"] = 0.05
    start = tuned.session.model.get_weights()
    assert not start["head/kernel"].any()  # the head starts at zero
    tuned.fit(x, y % 3, epochs=3, verbose=False)
    after = tuned.get_weights()
    for k in ("h1/kernel", "h1/bias", "h2/kernel", "h2/bias"):
        assert np.array_equal(after[k], trained[k]), k
    assert not np.allclose(after["head/kernel"], start["head/kernel"])
    assert not np.allclose(after["head/bias"], start["head/bias"])
    got = tuned.predict(x)
    np.testing.assert_allclose(got, _forward64(after, x), rtol=1e-4, atol=1e-6)
    # the second step: the top layer trains too, h1 still kept
    assert tuned.unfreeze_top(1) == ["h2"] and tuned.frozen == ["h1"]
    tuned.fit(x, y % 3, epochs=1, verbose=False)
    again = tuned.get_weights()
    assert np.array_equal(again["h1/kernel"], trained["h1/kernel"])
    assert not np.allclose(again["h2/kernel"], trained["h2/kernel"])


def test_kept_weights_are_those_of_the_kept_nodes():
    w = {"a/kernel": 1, "a/bias": 2, "ab/kernel": 3, "b/moving_mean": 4}
    assert kept_weights(w, ["a", "b"]) == {"a/kernel": 1, "a/bias": 2, "b/moving_mean": 4}
    assert kept_weights(None, ["a"]) == {}


def test_an_imported_keras_model_keeps_what_keras_computes_up_to_the_cut():
    """A Keras CNN (tests/data/keras/cnn.keras: Conv2D, BatchNormalization, pooling, Conv2D,
    Flatten, Dropout, Dense) read as the editor's dialog reads a model file and fine-tuned at its
    default cut: the kept layers compute what Keras' own model up to that layer computes, the
    frozen BatchNormalization in inference mode, and the rate is a tenth of its SGD's."""
    pytest.importorskip("h5py")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    pytest.importorskip("PySide6")
    from layerloom.app.window.finetune_dialog import read_any_model
    data = os.path.join(ROOT, "tests", "data", "keras")
    project, weights = read_any_model(os.path.join(data, "cnn.keras"))
    x = np.load(os.path.join(data, "cnn_x.npy"))
    tuned, kept, plan = fine_tune_project(project, weights, classes=5)
    assert plan.cut == "flatten"  # before the Dropout and Dense of Keras' head
    assert plan.frozen == ["conv2d", "batch_normalization", "max_pooling2d", "conv2d_1",
                           "flatten"]
    assert tuned.graph.analysis().shapes["head"] == [(5,)]
    assert tuned.training["optimizer"]["name"] == "sgd"
    assert tuned.training["optimizer"]["params"]["learning_rate"] == pytest.approx(0.002)
    assert tuned.training["optimizer"]["params"]["momentum"] == 0.9  # the rest kept
    assert sorted(kept) == sorted(k for k in weights if not k.startswith("dense/"))
    body = fine_tune_graph(tuned.graph, "flatten", classes=2).graph  # a copy to cut the head off
    for nid in ("head_dropout", "head"):
        body.remove_node(nid)
    features = projectfile.Project(body)
    features.training["loss"] = {"flatten": {"name": "mean_squared_error"}}
    features.training["metrics"] = []
    got = api.Model(features, kept).predict(x)
    k = keras.saving.load_model(os.path.join(data, "cnn.keras"))
    want = keras.Model(k.inputs, k.get_layer("flatten").output).predict(x, verbose=0)
    np.testing.assert_allclose(got, np.asarray(want), rtol=1e-4, atol=1e-5)


def test_the_fine_tuning_project_trains_on_the_image_folder(data_env):
    """End to end as a user runs it: the shapes CNN fine-tuned on the folder, fit on the
    project's own (new) data, the frozen layers unchanged, the test split evaluated."""
    p = projectfile.load(SHAPES)
    p.training["epochs"] = 1
    pre = api.Model(p)
    trained = {k: v.copy() for k, v in pre.session.model.get_weights().items()}
    pre.set_weights(trained)
    tuned = pre.fine_tune(cut="pool_2", data=SHAPES_DATA)
    tuned.fit(epochs=1, verbose=False)
    after = tuned.get_weights()
    for k in ("conv/kernel", "conv_2/kernel", "conv_2/bias"):
        assert np.array_equal(after[k], trained[k]), k
    assert after["head/kernel"].any()
    logs = tuned.evaluate()
    assert set(logs) >= {"loss", "accuracy"} and 0.0 <= logs["accuracy"] <= 1.0


def test_image_folder_inputs_are_prepared_as_the_frozen_body_was_trained():
    """The image-folder dataset always divided by 255: a body trained on standardised inputs,
    or an imported model that scales its own input (Rescaling 1/255 in the graph), then saw
    inputs on another scale, silently. Now the source's normalisation and its fitted
    statistics carry over, and a model with no dataset of its own (imported) gets its inputs
    as the files hold them."""
    from layerloom.data.prepare import prepare_data
    src = projectfile.load(SHAPES)
    stats = {"kind": "standardize", "shift": [100.0], "scale": [0.02]}
    src.dataset = {**src.dataset, "normalize": "standardize",
                   "inputs": {"image": "pixels"}, "fitted": {"normalization": {"pixels": stats}}}
    project, _, _ = fine_tune_project(src, None, "pool_2", SHAPES_DATA)
    d = project.dataset
    assert d["normalize"] == "standardize"
    assert d["fitted"] == {"normalization": {"x": stats}}  # under the new data's array name
    raw = dict(d, normalize="none")
    raw.pop("fitted")
    from layerloom.project.loom import Project
    rows = np.arange(50)
    plain = np.asarray(prepare_data(Project(project.graph, dataset=raw)).x["image"][rows])
    got = np.asarray(prepare_data(project).x["image"][rows])
    np.testing.assert_allclose(got, (plain - 100.0) * 0.02, rtol=1e-5, atol=1e-5)
    imported = projectfile.load(SHAPES)
    imported.dataset = {}
    project, _, _ = fine_tune_project(imported, None, "pool_2", SHAPES_DATA)
    assert project.dataset["normalize"] == "none"
    assert np.asarray(prepare_data(project).x["image"][rows]).max() > 1.0  # as the files hold


def test_the_projects_own_data_keeps_its_fitted_normalization():
    src = projectfile.load(SHAPES)
    stats = {"kind": "standardize", "shift": [100.0], "scale": [0.02]}
    src.dataset = {**src.dataset, "normalize": "standardize",
                   "fitted": {"normalization": {"x": stats}, "classes": ["a", "b", "c"]}}
    project, _, _ = fine_tune_project(src, None, "pool_2")
    assert project.dataset["fitted"] == {"normalization": {"x": stats}}
