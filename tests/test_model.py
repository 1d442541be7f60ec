"""Whole-graph autodiff: gradients of the total weighted loss w.r.t. every weight, computed by
the engine (forward, fused or unfused losses, backward with accumulation at fan-out) against
central differences of a float64 numpy evaluation of the same graph."""
import numpy as np
import pytest

from conftest import numeric_grad
from layerloom.core.graph import Graph
from layerloom.train.losses import Loss
from layerloom.train.model import Model
from layerloom.train.session import fused_outputs
from layerloom.train.fit import Trainer


def reference_forward(graph, weights, xs):
    """float64 evaluation of a graph from its layers' references: {node_id: output 0}, and
    {(node_id, port): output} for every port."""
    vals = {}
    for nid in graph.topo_order():
        node = graph.nodes[nid]
        if node.layer.is_input:
            vals[nid] = vals[(nid, 0)] = xs[nid]
            continue
        ins = [vals[(e.src, e.src_port)] for e in graph.in_edges(nid)]
        ws = {k.split("/", 1)[1]: v for k, v in weights.items() if k.split("/", 1)[0] == nid}
        outs = node.layer.reference(node.params, ins, ws)
        vals[nid] = outs[0]
        for port, o in enumerate(outs):
            vals[(nid, port)] = o
    return vals


def build(head_act, via_activation_layer):
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="x")
    g.add_node("Input", {"shape": [3]}, id="x2")
    g.add_node("Dense", {"units": 5, "activation": "tanh"}, id="d1")
    g.add_node("Dense", {"units": 5, "activation": "relu"}, id="d2")
    g.add_node("Dense", {"units": 5, "activation": "sigmoid"}, id="d3")
    g.add_node("Add", id="add")
    g.add_node("Concatenate", id="cat")
    g.add_node("Dense", {"units": 3, "activation": "linear" if via_activation_layer else head_act},
               id="head")
    g.add_node("Dense", {"units": 2, "kernel_regularizer": {"l1": 0.01, "l2": 0.05},
                         "bias_regularizer": {"l2": 0.2}}, id="reg")
    for a, b, port in [("x", "d1", 0), ("d1", "d2", 0), ("d1", "d3", 0), ("d2", "add", 0),
                       ("d3", "add", 1), ("d1", "add", 2), ("add", "head", 0), ("d2", "cat", 0),
                       ("x2", "cat", 1), ("d1", "cat", 2), ("cat", "reg", 0)]:
        g.connect(a, 0, b, port)
    if via_activation_layer:
        g.add_node("Activation", {"activation": head_act}, id="act")
        g.connect("head", 0, "act", 0)
    return g


@pytest.mark.parametrize("head_act,loss_name,from_logits", [
    ("softmax", "sparse_categorical_crossentropy", False),
    ("softmax", "categorical_crossentropy", False),
    ("sigmoid", "binary_crossentropy", False),
    ("sigmoid", "categorical_crossentropy", False),
    ("linear", "categorical_crossentropy", True),
    ("tanh", "mean_squared_error", False),
])
@pytest.mark.parametrize("via_activation_layer", [False, True])
def test_graph_gradients(rt, rng, head_act, loss_name, from_logits, via_activation_layer):
    g = build(head_act, via_activation_layer)
    out = "act" if via_activation_layer else "head"
    assert set(g.outputs()) == {"reg", out}
    losses = {out: Loss(loss_name, weight=0.6, from_logits=from_logits),
              "reg": Loss("mean_squared_error", weight=1.5)}
    fused = fused_outputs(g, losses)
    expect_fused = (head_act, loss_name) in {
        ("softmax", "sparse_categorical_crossentropy"), ("softmax", "categorical_crossentropy"),
        ("sigmoid", "binary_crossentropy")}
    assert (out in fused) == expect_fused
    n = 7
    model = Model(g, rt, batch_size=8, seed=3, fused_logits=fused)
    trainer = Trainer(model, losses, [])
    xs = {"x": rng.normal(size=(n, 4)), "x2": rng.normal(size=(n, 3))}
    if losses[out].sparse:
        t_head = rng.integers(0, 3, n).astype(np.float64)
    elif loss_name == "mean_squared_error":
        t_head = rng.normal(size=(n, 3))
    elif loss_name == "binary_crossentropy":
        t_head = rng.integers(0, 2, (n, 3)).astype(np.float64)
    else:
        t_head = np.eye(3)[rng.integers(0, 3, n)]
    ys = {out: t_head, "reg": rng.normal(size=(n, 2))}
    trainer.reset()
    trainer._upload({k: v.astype(np.float32) for k, v in xs.items()},
                    {k: v.astype(np.float32) for k, v in ys.items()})
    model.forward(n, training=True)
    trainer._loss_and_metrics(n)
    model.backward(n)
    trainer._regularize()
    got = {p.key: rt.read(p.dw.buf, int(np.prod(p.spec.shape)), p.spec.shape)
           for p in model.params if p.dw is not None}
    weights = {k: v.astype(np.float64) for k, v in model.get_weights().items()}

    def total():
        vals = reference_forward(g, weights, xs)
        penalty = (0.01 * np.abs(weights["reg/kernel"]).sum()
                   + 0.05 * (weights["reg/kernel"] ** 2).sum()
                   + 0.2 * (weights["reg/bias"] ** 2).sum())
        return penalty + sum(l.weight * l.reference(vals[o], ys[o]).mean()
                             for o, l in losses.items())
    # the engine's reported loss agrees with the reference
    logs = trainer.read_logs()
    assert np.isclose(logs["loss"], total(), rtol=1e-4)
    for key, w in weights.items():
        num = numeric_grad(total, w)
        np.testing.assert_allclose(got[key], num, rtol=1e-3, atol=1e-5, err_msg=key)


def test_predict_matches_reference_and_init_is_seeded(rt, rng):
    g = build("softmax", False)
    m1 = Model(g, rt, batch_size=16, seed=9)
    m2 = Model(g, rt, batch_size=4, seed=9)
    m3 = Model(g, rt, batch_size=4, seed=10)
    w1, w2, w3 = m1.get_weights(), m2.get_weights(), m3.get_weights()
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)
    assert not all(np.array_equal(w1[k], w3[k]) for k in w1)
    assert all(not w1[k].any() for k in w1 if k.endswith("/bias"))  # zero biases
    xs = {"x": rng.normal(size=(37, 4)).astype(np.float32),
          "x2": rng.normal(size=(37, 3)).astype(np.float32)}
    pred = m2.predict(xs)  # several batches, the last one partial
    ref = reference_forward(g, {k: v.astype(np.float64) for k, v in w2.items()},
                            {k: v.astype(np.float64) for k, v in xs.items()})
    for o in ("head", "reg"):
        np.testing.assert_allclose(pred[o], ref[o], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("init", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
                                  "lecun_uniform", "lecun_normal", "orthogonal", "random_uniform",
                                  "random_normal", "zeros", "ones"])
def test_initializers_follow_keras(init):
    from layerloom.train.initializers import initialize, node_rng
    from layerloom.core.registry import WeightSpec
    spec = WeightSpec("kernel", (400, 300), init, 400, 300)
    w = initialize(spec, node_rng(0, "n", "kernel")).astype(np.float64)
    expect_std = {"glorot_uniform": np.sqrt(2 / 700), "glorot_normal": np.sqrt(2 / 700),
                  "he_uniform": np.sqrt(2 / 400), "he_normal": np.sqrt(2 / 400),
                  "lecun_uniform": np.sqrt(1 / 400), "lecun_normal": np.sqrt(1 / 400),
                  "random_normal": 0.05, "random_uniform": 0.05 / np.sqrt(3)}
    if init in expect_std:
        assert abs(w.std() / expect_std[init] - 1) < 0.02 and abs(w.mean()) < 0.01
    if init.endswith("_normal") and init != "random_normal":
        assert np.abs(w).max() <= 2 * expect_std[init] / 0.87962566103423978 + 1e-6  # truncated
    if init == "orthogonal":
        np.testing.assert_allclose(w.T @ w, np.eye(300), atol=1e-4)
    if init in ("zeros", "ones"):
        assert (w == (init == "ones")).all()
    c = initialize(WeightSpec("b", (3,), {"name": "constant", "value": 0.25}), None)
    assert (c == 0.25).all()


def test_recurrent_graph_gradients_with_state_outputs(rt, rng):
    """LSTM whose final state (port 1) feeds a head while its sequence output (port 0) is unused,
    and a GRU on the LSTM's cell state path: whole-graph gradients against finite differences."""
    g = Graph()
    g.add_node("Input", {"shape": [4, 3]}, id="seq")
    g.add_node("LSTM", {"units": 3, "return_state": True, "return_sequences": True}, id="lstm")
    g.add_node("GRU", {"units": 2}, id="gru")
    g.add_node("Dense", {"units": 2}, id="head")
    g.add_node("Concatenate", id="cat")
    g.add_node("Dense", {"units": 1}, id="out")
    g.connect("seq", 0, "lstm", 0)
    g.connect("lstm", 1, "head", 0)        # final h
    g.connect("seq", 0, "gru", 0)
    g.connect("head", 0, "cat", 0)
    g.connect("gru", 0, "cat", 1)
    g.connect("cat", 0, "out", 0)
    g.connect("lstm", 2, "cat", 2)          # final c
    assert g.validate() == [] and g.outputs() == ["out"]
    rng_x = rng.normal(size=(5, 4, 3))
    check_mse_gradients(rt, g, {"seq": rng_x}, rng.normal(size=(5, 1)), seed=4)


def check_mse_gradients(rt, g, xs, y, seed):
    """The engine's gradient of the mean squared error of the graph's one output "out" against
    y, for every weight, against central differences of the graph's float64 reference (and
    its loss against the reference's). Returns the weights' keys."""
    n = len(y)
    losses = {"out": Loss("mean_squared_error")}
    model = Model(g, rt, batch_size=8, seed=seed)
    trainer = Trainer(model, losses, [])
    ys = {"out": y}
    trainer.reset()
    trainer._upload({k: v.astype(np.float32) for k, v in xs.items()},
                    {"out": y.astype(np.float32)})
    model.forward(n, training=True)
    trainer._loss_and_metrics(n)
    model.backward(n)
    got = {p.key: rt.read(p.dw.buf, int(np.prod(p.spec.shape)), p.spec.shape)
           for p in model.params if p.dw is not None}
    weights = {k: v.astype(np.float64) for k, v in model.get_weights().items()}

    def total():
        vals = reference_forward(g, weights, xs)
        return losses["out"].reference(vals["out"], ys["out"]).mean()
    assert np.isclose(trainer.read_logs()["loss"], total(), rtol=1e-4)
    for key, w in weights.items():
        np.testing.assert_allclose(got[key], numeric_grad(total, w), rtol=1e-3, atol=1e-5,
                                   err_msg=key)
    return set(got)


def test_gradients_only_flow_where_weights_learn(rt):
    """No gradient tensor (and no dX GEMM) toward an Input/Flatten chain; a weightless
    branch after a trainable layer still gets its gradient."""
    g = Graph()
    g.add_node("Input", {"shape": [4, 3]}, id="x")
    g.add_node("Flatten", id="flat")
    g.add_node("Dense", {"units": 5, "activation": "relu"}, id="d1")
    g.add_node("Dropout", {"rate": 0.1}, id="drop")
    g.add_node("Dense", {"units": 2}, id="out")
    for a, b in (("x", "flat"), ("flat", "d1"), ("d1", "drop"), ("drop", "out")):
        g.connect(a, 0, b, 0)
    m = Model(g, rt, 4)
    assert ("flat", 0) not in m.grad and "flat" not in m.needs_grad
    assert {("d1", 0), ("drop", 0), ("out", 0)} <= set(m.grad)


# -- trained weights on an edited graph (issue 26, item 5) ------------------------------------
def _spirals_with_weights():
    import os
    from layerloom import api
    from layerloom.project import loom as projectfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    project = projectfile.load(os.path.join(root, "assets", "examples", "spirals.loom"))
    return project, api.Model(project).session.model.get_weights()


def test_fit_weights_keeps_the_layers_that_still_fit_and_says_why_others_do_not():
    from layerloom.core.trained import fit_weights
    project, weights = _spirals_with_weights()
    g = project.graph
    assert fit_weights(g, weights).problem is None
    g.set_params("hidden_2", units=7)
    f = fit_weights(g, weights)
    assert f.dropped_layers() == ["hidden_2", "hidden_3"] and "hidden_1/kernel" in f.kept
    # hidden_3 keeps its bias (7 inputs change only its kernel): said as it is
    assert f.dropped_names() == ["hidden_2", "hidden_3/kernel"] and "hidden_3/bias" in f.kept
    assert "'hidden_2/kernel' is" in f.problem and not f.missing
    assert set(f.kept) | set(f.dropped) == set(weights)


def test_a_model_given_part_of_its_weights_refuses_to_predict_but_fine_tunes():
    import pytest
    from layerloom import api
    from layerloom.core.errors import DataError
    project, weights = _spirals_with_weights()
    partial = {k: v for k, v in weights.items() if not k.startswith("class/")}
    model = api.Model(project, partial)
    with pytest.raises(DataError, match="no trained weights for class "):
        model.predict(np.zeros((2, 2), np.float32))
    model.fit(np.zeros((8, 2), np.float32), np.zeros(8, np.float32), epochs=1, verbose=False)
    assert model.predict(np.zeros((2, 2), np.float32)).shape == (2, 2)  # trained now
