"""Shared weights (issue 30, item 1): a node may use another node's weights instead of its own
(Keras' layer called twice, a siamese network; two instances of one block type). The node's
`shares` key, its checks and placed problems, parameter counts, blocks' flattening, the engine
(the owner's weights, the gradients summed before the update), the exports and the editor."""
import json
import os

import numpy as np
import pytest

from test_model import reference_forward
from layerloom.core.errors import GraphError, ProjectError
from layerloom.core.graph import Graph
from layerloom.project import loom
from layerloom.project.loom import Project
from layerloom.train.fit import Trainer
from layerloom.train.losses import Loss
from layerloom.train.model import Model
from layerloom.train.optimizers import OPTIMIZERS


def siamese(share=True):
    """a, b -> one Dense stack (d1, d2) used by both -> Subtract -> head."""
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="a")
    g.add_node("Input", {"shape": [4]}, id="b")
    g.add_node("Dense", {"units": 6, "activation": "tanh"}, id="a1")
    g.add_node("Dense", {"units": 5, "activation": "sigmoid"}, id="a2")
    g.add_node("Dense", {"units": 6, "activation": "tanh"}, id="b1")
    g.add_node("Dense", {"units": 5, "activation": "sigmoid"}, id="b2")
    g.add_node("Subtract", {}, id="diff")
    g.add_node("Dense", {"units": 2}, id="out")
    for s, d, p in (("a", "a1", 0), ("a1", "a2", 0), ("b", "b1", 0), ("b1", "b2", 0),
                    ("a2", "diff", 0), ("b2", "diff", 1), ("diff", "out", 0)):
        g.connect(s, 0, d, p)
    if share:
        g.set_shares("b1", "a1")
        g.set_shares("b2", "a2")
    return g


def project_of(g, lr=0.1):
    p = Project(g)
    p.training.update({"loss": {"out": {"name": "mean_squared_error"}}, "metrics": [],
                       "optimizer": {"name": "sgd", "params": {"learning_rate": lr}},
                       "batch_size": 8, "shuffle": False, "epochs": 1})
    return p


def sgd(lr):
    cls = OPTIMIZERS["sgd"]
    return cls(**{**{p.name: p.default for p in cls.params}, "learning_rate": lr})


def owners_weights(weights):
    """The sharers' weights as the owners' (for a float64 reference of the graph)."""
    out = dict(weights)
    for mine, theirs in (("b1", "a1"), ("b2", "a2")):
        for name in ("kernel", "bias"):
            out[f"{mine}/{name}"] = weights[f"{theirs}/{name}"]
    return out


# -- the graph and the file ------------------------------------------------------------------------
def test_shares_is_checked_counted_once_and_in_the_file_only_when_set():
    g = siamese()
    a = g.analysis()
    assert a.problems == []
    assert a.params["b1"].total == 0 and a.params["b2"].total == 0
    assert a.params["a1"].total == 4 * 6 + 6
    assert a.total_params().total == (4 * 6 + 6) + (6 * 5 + 5) + (5 * 2 + 2)
    assert g.sharers("a1") == ["b1"] and g.shareable("b1") == ["a1"]
    nodes = loom.to_dict(project_of(g))["graph"]["nodes"]
    assert [n.get("shares") for n in nodes] == [None, None, None, None, "a1", "a2", None, None]
    back = loom.loads(loom.dumps(project_of(g)))
    assert back.graph.nodes["b1"].shares == "a1" and back.graph.nodes["a1"].shares is None
    assert '"shares"' not in loom.dumps(project_of(siamese(share=False)))
    events = []
    g.shares_changed.connect(lambda n: events.append((n.id, n.shares)))
    g.set_shares("b1", None)
    assert events == [("b1", None)] and g.analysis().params["b1"].total == 4 * 6 + 6


@pytest.mark.parametrize("other, words", [
    ("b1", "its own"), ("nope", "not in the graph"), ("a2", "parameters differ"),
    ("diff", "of one type"), ("b2", "uses the weights of")])
def test_a_wrong_share_is_refused_with_the_reason(other, words):
    g = siamese()
    if other == "b2":  # a chain: b1 would share b2, which shares a2
        g.set_shares("b1", None)
        g.set_params("b1", units=5, activation="sigmoid")
    with pytest.raises(GraphError, match=words) as e:
        g.set_shares("b1", other)
    assert e.value.kind == "shared_weights" and e.value.node == "b1"


def test_an_owner_cannot_share_and_edits_that_break_sharing_are_problems_on_the_sharer():
    g = siamese()
    with pytest.raises(GraphError, match="no chains"):
        g.set_shares("a1", "b1")
    g.set_params("a1", units=7)
    found = [p for p in g.validate() if p.kind == "shared_weights"]
    # b1's parameters differ; b2 (a2's sharer) would now need a 7x5 kernel, a2's is 6x5
    assert [p.node for p in found] == ["b1", "b2"]
    assert "parameters differ (units)" in found[0].message and "(7, 5)" in found[1].message
    assert "graph.nodes[4] 'b1'" in str(found[0])


def test_weight_shapes_must_match_for_the_inputs_each_gets():
    g = siamese()
    g.set_params("b", shape=[3])  # b1 would need a 3x6 kernel, a1's is 4x6
    found = [p for p in g.validate() if p.kind == "shared_weights"]
    assert [p.node for p in found] == ["b1"]
    assert "(3, 6)" in found[0].message and "(4, 6)" in found[0].message


def test_the_file_reader_places_what_is_wrong():
    d = loom.to_dict(project_of(siamese()))
    d["graph"]["nodes"][4]["shares"] = "a2"
    with pytest.raises(ProjectError) as e:
        loom.from_dict(json.loads(json.dumps(d)))
    assert any(p.place == "graph.nodes[4].shares" and "parameters differ" in p.message
               for p in e.value.problems)
    d["graph"]["nodes"][4]["shares"] = 3
    with pytest.raises(ProjectError) as e:
        loom.from_dict(json.loads(json.dumps(d)))
    assert any(p.place == "graph.nodes[4].shares" for p in e.value.problems)


# -- the engine ------------------------------------------------------------------------------------
class _NoUpdate:
    def step(self, model):
        pass


def test_forward_matches_float64_and_only_the_owner_has_weights(rt, rng):
    g = siamese()
    model = Model(g, rt, batch_size=8, seed=2)
    w = model.get_weights()
    assert sorted(w) == ["a1/bias", "a1/kernel", "a2/bias", "a2/kernel", "out/bias",
                         "out/kernel"]
    assert model.param_count() == g.analysis().total_params().total
    with pytest.raises(ProjectError, match="name no weight"):
        model.set_weights({"b1/kernel": w["a1/kernel"]})
    w = {k: v + rng.normal(size=v.shape).astype(np.float32) * 0.3 for k, v in w.items()}
    model.set_weights(w)
    xs = {"a": rng.normal(size=(7, 4)).astype(np.float32),
          "b": rng.normal(size=(7, 4)).astype(np.float32)}
    got = model.predict(xs)["out"]
    ref = reference_forward(g, owners_weights({k: v.astype(np.float64) for k, v in w.items()}),
                            {k: v.astype(np.float64) for k, v in xs.items()})["out"]
    err = np.abs(got - ref).max()
    print("forward", err)
    assert err < 1e-5, err


def torch_step(weights, xs, y, lr):
    """One SGD step of the siamese model in PyTorch, one module called twice."""
    torch = pytest.importorskip("torch")
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in
         weights.items()}

    def tower(x):
        h = torch.tanh(x @ t["a1/kernel"] + t["a1/bias"])
        return torch.sigmoid(h @ t["a2/kernel"] + t["a2/bias"])
    xa, xb = (torch.tensor(xs[k], dtype=torch.float64) for k in ("a", "b"))
    out = (tower(xa) - tower(xb)) @ t["out/kernel"] + t["out/bias"]
    loss = ((out - torch.tensor(y, dtype=torch.float64)) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        return {k: (v - lr * v.grad).numpy() for k, v in t.items()}


def test_one_training_step_sums_both_uses_gradients_as_pytorch_does(rt, rng):
    g = siamese()
    lr = 0.5
    model = Model(g, rt, batch_size=8, seed=4)
    before = model.get_weights()
    assert len(model.params) == 6
    trainer = Trainer(model, {"out": Loss("mean_squared_error")}, [],
                      optimizer=sgd(lr))
    xs = {"a": rng.normal(size=(8, 4)).astype(np.float32),
          "b": rng.normal(size=(8, 4)).astype(np.float32)}
    y = rng.normal(size=(8, 2)).astype(np.float32)
    trainer.reset()
    trainer.train_batch(xs, {"out": y}, 8, 0)
    after = model.get_weights()
    want = torch_step({k: v.astype(np.float64) for k, v in before.items()}, xs, y, lr)
    errs = {k: float(np.abs(after[k] - want[k]).max()) for k in want}
    print("step", max(errs.values()))
    assert max(errs.values()) < 1e-5, errs
    moved = {k: float(np.abs(after[k] - before[k]).max()) for k in before}
    assert min(moved.values()) > 1e-4, moved


def test_a_frozen_owner_freezes_its_sharers(rt, rng):
    g = siamese()
    g.set_trainable("a1", False)
    model = Model(g, rt, batch_size=8, seed=4)
    before = model.get_weights()
    trainer = Trainer(model, {"out": Loss("mean_squared_error")}, [],
                      optimizer=sgd(0.5))
    xs = {"a": rng.normal(size=(8, 4)).astype(np.float32),
          "b": rng.normal(size=(8, 4)).astype(np.float32)}
    trainer.reset()
    trainer.train_batch(xs, {"out": rng.normal(size=(8, 2)).astype(np.float32)}, 8, 0)
    after = model.get_weights()
    for k in before:
        same = np.array_equal(after[k], before[k])
        assert same == k.startswith("a1/"), k
    assert g.nodes["b1"].trainable  # the file's flag is left as it is


# -- blocks ----------------------------------------------------------------------------------------
def block_project(inner_share=False):
    """Two instances of one block type (Dense -> Dense, repeat 2), the second sharing the
    first's weights; inner_share: the block's second Dense shares its first's."""
    from layerloom.core import blocks
    inner = Graph()
    inner.add_node("Input", {"shape": [4]}, id="x")
    inner.add_node("Dense", {"units": 4, "activation": "tanh"}, id="p")
    inner.add_node("Dense", {"units": 4, "activation": "tanh"}, id="q")
    inner.connect("x", 0, "p", 0)
    inner.connect("p", 0, "q", 0)
    if inner_share:
        inner.set_shares("q", "p")
    bt = blocks.define("Tower", inner, ["x"], [["q", 0]])
    g = Graph(blocks={"Tower": bt})
    g.add_node("Input", {"shape": [4]}, id="a")
    g.add_node("Input", {"shape": [4]}, id="b")
    g.add_node("Tower", {"repeat": 2}, id="ta")
    g.add_node("Tower", {"repeat": 2}, id="tb")
    g.add_node("Subtract", {}, id="diff")
    g.add_node("Dense", {"units": 2}, id="out")
    for s, d, p in (("a", "ta", 0), ("b", "tb", 0), ("ta", "diff", 0), ("tb", "diff", 1),
                    ("diff", "out", 0)):
        g.connect(s, 0, d, p)
    g.set_shares("tb", "ta")
    return project_of(g)


def test_flatten_carries_sharing_into_blocks_and_their_copies():
    p = block_project()
    flat = p.graph.flat()
    shares = {nid: n.shares for nid, n in flat.nodes.items() if n.shares}
    assert shares == {"tb/p": "ta/p", "tb/q": "ta/q", "tb/#2/p": "ta/#2/p",
                      "tb/#2/q": "ta/#2/q"}
    a = p.graph.analysis()
    assert a.problems == [] and a.params["tb"].total == 0
    assert a.params["ta"].total == 4 * (4 * 4 + 4)
    inner = loom.flat(block_project(inner_share=True)).graph
    assert {nid: n.shares for nid, n in inner.nodes.items() if n.shares} == {
        "ta/q": "ta/p", "ta/#2/q": "ta/#2/p", "tb/p": "ta/p", "tb/q": "ta/p",
        "tb/#2/p": "ta/#2/p", "tb/#2/q": "ta/#2/p"}
    assert block_project(inner_share=True).graph.analysis().params["ta"].total == 2 * 20
    back = loom.loads(loom.dumps(block_project(inner_share=True)))
    assert back.graph.nodes["tb"].shares == "ta"
    assert back.graph.blocks["Tower"].graph.nodes["q"].shares == "p"


def test_shared_block_instances_train_one_set_of_weights(rt, rng):
    p = block_project(inner_share=True)
    model = Model(p.graph, rt, batch_size=8, seed=1)
    assert sorted(model.get_weights()) == ["out/bias", "out/kernel", "ta/#2/p/bias",
                                           "ta/#2/p/kernel", "ta/p/bias", "ta/p/kernel"]
    flat = p.graph.flat()
    w = model.get_weights()
    full = dict(w)
    for nid, n in flat.nodes.items():
        if n.shares:
            for name in ("kernel", "bias"):
                full[f"{nid}/{name}"] = w[f"{n.shares}/{name}"]
    xs = {k: rng.normal(size=(5, 4)) for k in ("a", "b")}
    vals = dict(xs)  # float64, by node (the weights' keys hold "/": rsplit)
    for nid in flat.topo_order():
        node = flat.nodes[nid]
        if not node.layer.is_input:
            ws = {k.rsplit("/", 1)[1]: v.astype(np.float64) for k, v in full.items()
                  if k.rsplit("/", 1)[0] == nid}
            vals[nid] = node.layer.reference(node.params, [vals[e.src] for e in
                                                           flat.in_edges(nid)], ws)[0]
    ref = vals["out"]
    got = model.predict({k: v.astype(np.float32) for k, v in xs.items()})["out"]
    assert np.abs(got - ref).max() < 1e-5


# -- exports ---------------------------------------------------------------------------------------
def _trained_siamese(rt, rng):
    g = siamese()
    model = Model(g, rt, batch_size=8, seed=5)
    w = {k: v + rng.normal(size=v.shape).astype(np.float32) * 0.3
         for k, v in model.get_weights().items()}
    model.set_weights(w)
    xs = {"a": rng.normal(size=(6, 4)).astype(np.float32),
          "b": rng.normal(size=(6, 4)).astype(np.float32)}
    return g, w, xs, model.predict(xs)["out"]


def test_onnx_export_uses_the_owners_initializers(rt, rng):
    ort = pytest.importorskip("onnxruntime")
    from layerloom.interop import onnx_export
    g, w, xs, want = _trained_siamese(rt, rng)
    m = onnx_export.to_onnx(project_of(g), w)
    assert len(m.graph.initializer) == 6  # a1's, a2's and out's kernel and bias, once each
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(["out"], xs)[0]
    err = float(np.abs(got - want).max())
    print("onnx", err)
    assert err < 1e-5


def test_pytorch_code_calls_one_module_twice_and_trains_one_tensor(rt, rng, tmp_path):
    torch = pytest.importorskip("torch")
    from test_torch_code import _load_script
    from layerloom.interop import torch_code
    g, w, xs, want = _trained_siamese(rt, rng)
    path = str(tmp_path / "siamese_torch.py")
    text = torch_code.write(project_of(g), w, path)
    assert "self.b1 = self.a1" in text and "b1/kernel" not in text
    module = _load_script(path)
    net = module.build_model()
    assert net.b1 is net.a1 and net.b2 is net.a2
    with torch.no_grad():
        got = net({k: torch.from_numpy(v) for k, v in xs.items()}).numpy()
    err = float(np.abs(got - want).max())
    print("torch", err)
    assert err < 1e-5
    params = list(net.parameters())
    assert len(params) == 6
    opt = torch.optim.SGD(params, lr=0.5)
    net.train()
    y = torch.from_numpy(rng.normal(size=(6, 2)).astype(np.float32))
    loss = ((net({k: torch.from_numpy(v) for k, v in xs.items()}) - y) ** 2).mean()
    before = net.a1.weight.detach().clone()
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert not torch.equal(before, net.b1.weight) and net.b1.weight is net.a1.weight


def test_keras_code_calls_one_layer_twice(rt, rng, tmp_path):
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    from layerloom.interop import keras_code, keras_export
    g, w, xs, want = _trained_siamese(rt, rng)
    text = keras_code.code(project_of(g), "siamese.weights.npz")
    assert "a1_layer = layers.Dense(" in text and "b1 = a1_layer(" in text
    model = keras_export.to_keras(project_of(g), w, compile=False)
    assert "b1" not in [layer.name for layer in model.layers]
    assert len(model.weights) == 6
    got = np.asarray(model.predict(dict(xs), verbose=0))
    err = float(np.abs(got - want).max())
    print("keras", err)
    assert err < 1e-5


# -- the editor ------------------------------------------------------------------------------------
def test_inspector_shares_weights_in_one_undo_step(win, qtbot, tmp_path):
    pytest.importorskip("pytestqt")
    from layerloom.app.editing.commands import RemoveNodesCmd, SetParamsCmd
    from layerloom.app.editing.document import Document
    from guikit import EXAMPLES
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    qtbot.waitExposed(win)
    g = win.doc.graph
    win.doc.push(SetParamsCmd(win.doc, "hidden_3", {"units": 64}))  # as hidden_2
    win.scene.clearSelection()
    win.scene.nodes["hidden_3"].setSelected(True)
    ins = win.inspector
    assert ins.node_id == "hidden_3" and ins.shares_row.isVisible()
    combo = ins.shares
    # hidden_1 has the same parameters but is fed 2 features: its kernel does not fit
    assert [combo.itemData(i) for i in range(combo.count())] == [None, "hidden_2"]
    total = g.analysis().total_params().total
    combo.setCurrentIndex(1)
    combo.activated.emit(1)  # as a user's choice
    assert g.nodes["hidden_3"].shares == "hidden_2"
    assert win.doc.undo.undoText() == "Share weights of hidden_2 with hidden_3"
    assert g.analysis().total_params().total == total - (64 * 64 + 64)
    assert "uses hidden_2's weights" in ins.info.text()
    win.doc.undo.undo()
    assert g.nodes["hidden_3"].shares is None and combo.currentIndex() == 0
    win.doc.undo.redo()
    assert g.nodes["hidden_3"].shares == "hidden_2" and combo.currentData() == "hidden_2"
    win.doc.push(RemoveNodesCmd(win.doc, ["hidden_3"]))
    win.doc.undo.undo()  # a deleted sharer comes back sharing
    assert g.nodes["hidden_3"].shares == "hidden_2"
    path = tmp_path / "shared.loom"
    loom.save(win.doc.project, str(path))
    assert loom.load(str(path)).graph.nodes["hidden_3"].shares == "hidden_2"
    win.scene.clearSelection()
    win.scene.nodes["point"].setSelected(True)
    assert not ins.shares_row.isVisible()  # an Input has no weights


def test_trained_weights_fit_a_graph_with_sharers_and_the_memory_counts_them_once(rt, rng):
    """The trained weights hold the owners' keys only: the editor's fit check (core/trained.py)
    found a sharer's 'missing' and said the model no longer fits; the memory estimate counted
    a sharer's weights and optimizer slots as its own."""
    from layerloom.core.memory import memory_needed
    from layerloom.core.trained import fit_weights
    g, w, _, _ = _trained_siamese(rt, rng)
    assert fit_weights(g, w).problem is None
    shared = memory_needed(g, 8)[0]
    plain = memory_needed(siamese(share=False), 8)[0]
    owned = 4 * sum(v.size for k, v in w.items() if k.startswith(("a1/", "a2/")))
    # a sharer's weights and their two optimizer slots are its owner's; its gradients its own
    assert shared == plain - 3 * owned


def test_a_graph_with_a_text_layer_keeps_its_sharing_on_the_device():
    from layerloom.core import host
    g = siamese()
    g.add_node("Input", {"shape": [1], "dtype": "string"}, id="text")
    g.add_node("StringLookup", {"vocabulary": ["a", "b"]}, id="lookup")
    g.add_node("Embedding", {"input_dim": 4, "output_dim": 2}, id="emb")
    g.add_node("Flatten", {}, id="flat")
    g.add_node("Dense", {"units": 2}, id="out2")
    for s, d in (("text", "lookup"), ("lookup", "emb"), ("emb", "flat"), ("flat", "out2")):
        g.connect(s, 0, d, 0)
    assert not g.validate()
    dev = host.device_graph(g)
    assert dev.nodes["b1"].shares == "a1" and dev.nodes["b2"].shares == "a2"
