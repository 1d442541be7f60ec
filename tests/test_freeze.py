"""Fine-tuning: a node's `trainable` flag (issue 30, item 3). Frozen weights keep their values and
get no optimizer state; a gradient still flows through a frozen node to trainable ones before
it; a frozen BatchNormalization runs in inference mode, as Keras'; the flag travels through the
project file, the summary, the API, Keras import and export and the PyTorch code export."""
import json
import os

import numpy as np
import pytest

from conftest import numeric_grad
from test_model import reference_forward
from layerloom import api
from layerloom.core.errors import GraphError, ProjectError
from layerloom.core.graph import Graph
from layerloom.project import loom as projectfile
from layerloom.project.loom import Project
from layerloom.train.fit import Trainer
from layerloom.train.losses import Loss
from layerloom.train.model import Model


def chain():
    """x -> d1 (trainable) -> d2 (frozen) -> bn (frozen) -> out (trainable)."""
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="x")
    g.add_node("Dense", {"units": 6, "activation": "tanh"}, id="d1")
    g.add_node("Dense", {"units": 5, "activation": "tanh"}, id="d2", trainable=False)
    g.add_node("BatchNormalization", {"momentum": 0.5}, id="bn", trainable=False)
    g.add_node("Dense", {"units": 3}, id="out")
    for a, b in (("x", "d1"), ("d1", "d2"), ("d2", "bn"), ("bn", "out")):
        g.connect(a, 0, b, 0)
    return g


def project_of(g, optimizer="adam"):
    p = Project(g)
    p.training.update({"loss": {"out": {"name": "mean_squared_error"}}, "metrics": [],
                       "optimizer": {"name": optimizer, "params": {"learning_rate": 0.05}},
                       "batch_size": 8, "shuffle": False})
    return p


def data(rng, n=40):
    return rng.normal(size=(n, 4)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)


# -- the graph and the file ---------------------------------------------------------------------
def test_the_flag_is_in_the_file_only_when_false_and_old_files_load_unchanged(tmp_path):
    g = chain()
    text = projectfile.dumps(project_of(g))
    nodes = json.loads(text)["graph"]["nodes"]
    assert [n.get("trainable") for n in nodes] == [None, None, False, False, None]
    back = projectfile.loads(text)
    assert back.graph.frozen() == ["d2", "bn"]
    assert projectfile.to_dict(back)["graph"] == json.loads(text)["graph"]
    old = open("assets/examples/spirals.loom", encoding="utf-8").read()
    assert '"trainable"' not in old
    p = projectfile.loads(old)
    assert p.graph.frozen() == [] and '"trainable"' not in projectfile.dumps(p)


@pytest.mark.parametrize("value", ["no", 0, None, [False]])
def test_a_flag_that_is_not_a_boolean_is_refused_with_its_place(value):
    d = projectfile.to_dict(project_of(chain()))
    d["graph"]["nodes"][1]["trainable"] = value
    with pytest.raises(ProjectError) as e:
        projectfile.from_dict(d)
    assert "graph.nodes[1].trainable" in str(e.value) and "true or false" in str(e.value)
    with pytest.raises(GraphError):
        chain().set_trainable("d1", value)


def test_counts_summary_and_what_is_upstream():
    g = chain()
    a = g.analysis().params
    assert (a["d1"].trainable, a["d2"].trainable, a["bn"].trainable) == (30, 0, 0)
    assert a["d2"].total == 35 and a["bn"].total == 20
    total = g.analysis().total_params()
    assert (total.total, total.trainable) == (30 + 35 + 20 + 18, 30 + 18)
    text = api.Model(project_of(g)).summary(print_fn=None)
    assert "Trainable params: 48" in text and "Non-trainable params: 55" in text
    assert [line.split()[-1] for line in text.splitlines() if line.startswith(("d2", "out"))] \
        == ["N", "Y"]
    assert g.upstream("bn") == ["x", "d1", "d2"] and g.upstream("x") == []
    assert g.layers_before("bn") == ["d1", "d2"]
    version = g.version
    g.set_trainable("d1", False)
    assert g.version > version and g.analysis().params["d1"].trainable == 0


# -- training -------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_frozen_weights_stay_while_others_train_and_get_no_optimizer_state(rng, optimizer):
    x, y = data(rng)
    model = api.Model(project_of(chain(), optimizer))
    before = {k: v.copy() for k, v in model.session.model.get_weights().items()}
    model.fit(x, y, epochs=3, verbose=False)
    after = model.get_weights()
    for key in before:
        if key.split("/")[0] in ("d2", "bn"):  # moving statistics too: inference mode
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)
        else:
            assert not np.array_equal(after[key], before[key]), key
    opt = model.session.trainer.optimizer
    assert {nid for nid, _ in opt._state} == {"d1", "out"}
    params = {p.key: p for p in model.session.model.params}
    assert params["d2/kernel"].dw is None and params["bn/gamma"].dw is None
    assert params["d1/kernel"].dw is not None


class _NoUpdate:
    """An optimizer that leaves the gradients to be read."""

    def step(self, model):
        pass


def test_gradient_through_frozen_nodes_matches_float64_reference(rt, rng):
    """d1 learns through the frozen d2 and the frozen BatchNormalization (inference mode:
    its moving statistics, as the float64 reference's)."""
    g = chain()
    n = 7
    model = Model(g, rt, batch_size=8, seed=3)
    w = model.get_weights()
    w["bn/moving_mean"] = rng.normal(size=5).astype(np.float32) * 0.3
    w["bn/moving_variance"] = rng.uniform(0.5, 2.0, 5).astype(np.float32)
    w["bn/gamma"] = rng.uniform(0.5, 1.5, 5).astype(np.float32)
    w["bn/beta"] = rng.normal(size=5).astype(np.float32)
    model.set_weights(w)
    losses = {"out": Loss("mean_squared_error")}
    trainer = Trainer(model, losses, [], optimizer=_NoUpdate())
    xs, ys = {"x": rng.normal(size=(n, 4))}, {"out": rng.normal(size=(n, 3))}
    trainer.reset()
    trainer.train_batch({"x": xs["x"].astype(np.float32)}, {"out": ys["out"].astype(np.float32)},
                        n, 0)  # forward in training, the loss, backward; no update
    got = {p.key: rt.read(p.dw.buf, int(np.prod(p.spec.shape)), p.spec.shape)
           for p in model.params if p.dw is not None}
    assert set(got) == {"d1/kernel", "d1/bias", "out/kernel", "out/bias"}
    weights = {k: v.astype(np.float64) for k, v in model.get_weights().items()}
    np.testing.assert_array_equal(weights["bn/moving_mean"], w["bn/moving_mean"])

    def total():
        vals = reference_forward(g, weights, xs)  # BatchNormalization: inference mode
        return losses["out"].reference(vals["out"], ys["out"]).mean()
    assert np.isclose(trainer.read_logs()["loss"], total(), rtol=1e-4)
    for key in got:
        np.testing.assert_allclose(got[key], numeric_grad(total, weights[key]), rtol=1e-3,
                                   atol=1e-5, err_msg=key)


def test_frozen_batch_norm_in_training_is_inference_mode(rt, rng):
    g = Graph()
    g.add_node("Input", {"shape": [3, 4]}, id="x")
    g.add_node("BatchNormalization", {"momentum": 0.5}, id="bn", trainable=False)
    g.connect("x", 0, "bn", 0)
    model = Model(g, rt, batch_size=16)
    w = {"bn/moving_mean": rng.normal(size=4).astype(np.float32),
         "bn/moving_variance": rng.uniform(0.5, 2, 4).astype(np.float32),
         "bn/gamma": rng.uniform(0.5, 1.5, 4).astype(np.float32),
         "bn/beta": rng.normal(size=4).astype(np.float32)}
    model.set_weights(w)
    x = (3 + 2 * rng.normal(size=(16, 3, 4))).astype(np.float32)  # far from the moving stats
    model.load_inputs({"x": x})
    model.forward(16, training=True)
    t = model.output("bn")
    trained = rt.read(t.buf, 16 * t.size, (16,) + t.shape)
    inference = model.predict({"x": x})["bn"]
    np.testing.assert_array_equal(trained, inference)
    ref = g.nodes["bn"].layer.reference(g.nodes["bn"].params, [x.astype(np.float64)],
                                        {k.split("/")[1]: v.astype(np.float64)
                                         for k, v in w.items()}, training=False)[0]
    np.testing.assert_allclose(trained, ref, rtol=1e-5, atol=1e-5)
    for k, v in model.get_weights().items():  # moving statistics not updated
        np.testing.assert_array_equal(v, w[k], err_msg=k)
    # the same node unfrozen normalises with the batch's statistics
    g.set_trainable("bn", True)
    free = Model(g, rt, batch_size=16)
    free.set_weights(w)
    free.load_inputs({"x": x})
    free.forward(16, training=True)
    t = free.output("bn")
    assert not np.allclose(rt.read(t.buf, 16 * t.size, (16,) + t.shape), inference, atol=1e-2)


def test_a_frozen_time_distributed_batch_norm_runs_in_inference_mode(rt, rng):
    g = Graph()
    g.add_node("Input", {"shape": [5, 3]}, id="x")
    g.add_node("Dense", {"units": 3}, id="d")
    g.add_node("TimeDistributed", {"layer": {"type": "BatchNormalization", "params": {}}},
               id="td", trainable=False)
    g.connect("x", 0, "d", 0)
    g.connect("d", 0, "td", 0)
    model = Model(g, rt, batch_size=4)
    w = model.get_weights()
    w["td/moving_mean"] = rng.normal(size=3).astype(np.float32)
    model.set_weights(w)
    x = (2 + rng.normal(size=(4, 5, 3))).astype(np.float32)
    model.load_inputs({"x": x})
    model.forward(4, training=True)
    model.backward(4)  # d learns through it
    t = model.output("td")
    np.testing.assert_array_equal(rt.read(t.buf, 4 * t.size, (4,) + t.shape),
                                  model.predict({"x": x})["td"])
    np.testing.assert_array_equal(model.get_weights()["td/moving_mean"], w["td/moving_mean"])


def test_a_frozen_node_with_nothing_trainable_before_it_is_not_differentiated(rt):
    g = chain()
    g.set_trainable("d1", False)
    model = Model(g, rt, batch_size=4)
    assert model.needs_grad == {"out"}
    assert all(p.dw is None for p in model.params if p.node_id != "out")


# -- the API ----------------------------------------------------------------------------------
def test_api_freeze_before_a_node_and_unfreeze(rng):
    g = chain()
    for nid in g.frozen():
        g.set_trainable(nid, True)
    model = api.Model(project_of(g))
    x, y = data(rng)
    model.fit(x, y, epochs=1, verbose=False)
    assert model.freeze(before="out") == ["d1", "d2", "bn"] == model.frozen
    kept = model.get_weights()
    model.fit(x, y, epochs=2, verbose=False)  # continues from the weights, d1..bn frozen
    after = model.get_weights()
    assert all(np.array_equal(after[k], kept[k]) for k in kept if not k.startswith("out/"))
    assert not np.array_equal(after["out/kernel"], kept["out/kernel"])
    assert model.unfreeze("d2") == ["d1", "bn"]
    assert model.unfreeze() == []
    with pytest.raises(GraphError, match="no layer 'nope'"):
        model.freeze("nope")


# -- interop -----------------------------------------------------------------------------------
def test_pytorch_code_sets_requires_grad_and_eval_for_frozen_batch_norm(tmp_path, rng):
    torch = pytest.importorskip("torch")
    from layerloom.interop import torch_code
    p = project_of(chain())
    p.path = str(tmp_path / "frozen.loom")
    weights = api.Model(p).session.model.get_weights()
    path = tmp_path / "frozen_torch.py"
    text = torch_code.write(p, weights, str(path))
    assert "self.d2.requires_grad_(False)  # frozen" in text and "def train(self" in text
    import importlib.util
    spec = importlib.util.spec_from_file_location("frozen_torch", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m = mod.build_model().train()
    assert not m.bn.training and m.d1.training
    frozen = {n for n, q in m.named_parameters() if not q.requires_grad}
    assert frozen == {"d2.weight", "d2.bias", "bn.weight", "bn.bias"}
    x = rng.normal(size=(6, 4)).astype(np.float32)
    ours = api.Model(p, weights).predict(x)
    np.testing.assert_allclose(m(torch.tensor(x)).detach().numpy(), ours, rtol=1e-4, atol=1e-5)
    # one training step in torch changes d1 (the gradient flows through the frozen layers)
    loss = (m(torch.tensor(x)) ** 2).mean()
    loss.backward()
    assert m.d1.weight.grad is not None and m.d2.weight.grad is None


def test_keras_export_and_import_keep_the_flag(tmp_path, rng):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    from layerloom.interop import keras_export, keras_import
    p = project_of(chain())
    p.path = str(tmp_path / "frozen.loom")
    weights = api.Model(p).session.model.get_weights()
    model = keras_export.export(p, weights, str(tmp_path / "frozen.keras"))
    assert [layer.name for layer in model.layers if not layer.trainable] == ["d2", "bn"]
    back, w = keras_import.read(str(tmp_path / "frozen.keras"))
    assert back.graph.frozen() == ["d2", "bn"]
    x = rng.normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(api.Model(back, w).predict(x), api.Model(p, weights).predict(x),
                               rtol=1e-5, atol=1e-6)


def test_a_keras_model_with_frozen_layers_imports_frozen_and_trains_like_keras(tmp_path, rng):
    """A Keras model with trainable=False layers (a frozen BatchNormalization runs in inference
    mode in Keras' fit too): imported, its frozen weights stay in our fit as in Keras'."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from layerloom.interop import keras_import
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name="x")
    h = keras.layers.Dense(6, activation="tanh", name="d1")(inp)
    base = keras.layers.Dense(5, activation="tanh", name="d2")
    bn = keras.layers.BatchNormalization(name="bn")
    out = keras.layers.Dense(3, name="out")(bn(base(h)))
    km = keras.Model(inp, out)
    base.trainable = False
    bn.trainable = False
    km.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    path = str(tmp_path / "frozen.keras")
    km.save(path)
    project, weights = keras_import.read(path)
    assert project.graph.frozen() == ["d2", "bn"]
    x, y = data(rng, 32)
    project.training.update({"batch_size": 8, "shuffle": False, "metrics": []})
    ours = api.Model(project, weights)
    ours.fit(x, y, epochs=2, verbose=False)
    km.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    theirs = {f"{layer.name}/{v.name}": np.asarray(v) for layer in km.layers
              for v in layer.weights}
    got = ours.get_weights()
    for key, v in got.items():
        np.testing.assert_allclose(v, theirs[key], rtol=1e-4, atol=1e-5, err_msg=key)
    assert np.array_equal(got["d2/kernel"], weights["d2/kernel"])


def test_onnx_export_is_unaffected_by_the_flag(tmp_path, rng):
    """ONNX has no trainable flag: a frozen model exports as the same graph, and onnxruntime
    computes what Layerloom's predict does (a frozen BatchNormalization: inference, as ever)."""
    ort = pytest.importorskip("onnxruntime")
    from layerloom.interop import export
    p = project_of(chain())
    model = api.Model(p)
    weights = model.session.model.get_weights()
    export(p, weights, str(tmp_path / "frozen.onnx"))
    for nid in p.graph.frozen():
        p.graph.set_trainable(nid, True)
    export(p, weights, str(tmp_path / "free.onnx"))
    assert (tmp_path / "frozen.onnx").read_bytes() == (tmp_path / "free.onnx").read_bytes()
    s = ort.InferenceSession(str(tmp_path / "frozen.onnx"), providers=["CPUExecutionProvider"])
    x = rng.normal(size=(5, 4)).astype(np.float32)
    got = s.run(None, {s.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, model.predict(x), rtol=1e-5, atol=1e-5)


def test_a_frozen_layers_penalty_is_not_in_the_loss_as_in_keras_3(rt):
    """Keras 3 adds the regularizers of trainable weights only (Layer._get_regularization_losses
    reads trainable_weights): a frozen layer's penalty is neither a gradient nor in the loss."""
    g = chain()
    g.set_params("d2", kernel_regularizer={"l1": 0.0, "l2": 0.5})
    g.set_params("out", kernel_regularizer={"l1": 0.0, "l2": 0.5})
    trainer = Trainer(Model(g, rt, batch_size=4), {"out": Loss("mean_squared_error")}, [])
    assert [p.key for p in trainer.regularized] == ["out/kernel"]


def test_the_editors_training_process_starts_from_the_weights_it_is_handed():
    """The editor's training process took initial weights only from a resumed run: a frozen
    layer of the document's trained model started from random ones."""
    import queue
    import threading
    from layerloom.cli.train_process import child_main
    from layerloom.project import loom as projectfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = projectfile.load(os.path.join(root, "assets", "examples", "spirals.loom"))
    p.graph.nodes["hidden_1"].trainable = False
    rng = np.random.default_rng(1)
    given = {"hidden_1/kernel": rng.normal(size=(2, 64)).astype(np.float32),
             "hidden_1/bias": rng.normal(size=(64,)).astype(np.float32)}
    q = queue.Queue()
    child_main(projectfile.to_dict(p), p.path, 1, 64, None, q, threading.Event(),
               threading.Event(), None, given)
    got = {}
    while not q.empty():
        kind, value = q.get()
        assert kind != "failed", value
        if kind == "weights":
            got = value
    for k, v in given.items():  # frozen: exactly what it was handed
        np.testing.assert_array_equal(got[k], v)
