"""Custom layers built as blocks from the primitives (issue 30, item 2), the bundled block files
assets/examples/blocks/{PatchExtractor,PositionTable,VAESampler,SelfAttention}.lblock: each
computes what the same thing computes in PyTorch on the same inputs and weights (float32;
tolerance atol 1e-5 / rtol 1e-5, the harness's forward figures), and each trains inside a small
project (api.Model.fit), its loss going down.

VAESampler's samples cannot be matched draw for draw: the test reads the block's own eps (its
RandomNormal node wired to a graph output of the inlined graph, the same forward pass) and
checks z = z_mean + exp(0.5 z_log_var) eps against torch with that eps, and the samples'
mean and standard deviation over many draws against the distribution's."""
import json
import os

import numpy as np
import pytest

from layerloom import api
from layerloom.core import blocks
from layerloom.project import block_library, loom
from layerloom.train.model import Model

torch = pytest.importorskip("torch")
# Keras' own warnings about numpy 2's __array__ protocol, not ours
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FOLDER = os.path.join(os.path.dirname(__file__), "..", "assets", "examples", "blocks")
TOL = {"rtol": 1e-5, "atol": 1e-5}


def section(name):
    with open(os.path.join(FOLDER, f"{name}.lblock"), encoding="utf-8") as f:
        return json.load(f)["blocks"]


def project(name, inputs, block_params, head, loss="mean_squared_error", instance="blk"):
    """A project: Inputs {id: shape} -> an instance of block `name` (its ports in order) ->
    the head [(id, type, params)] in a chain, the last node the output."""
    nodes = [{"id": i, "type": "Input", "params": {"shape": list(sh)}}
             for i, sh in inputs.items()]
    nodes.append({"id": instance, "type": name, "params": dict(block_params)})
    edges = [{"from": [i, 0], "to": [instance, port]} for port, i in enumerate(inputs)]
    prev = instance
    for nid, type_id, params in head:
        nodes.append({"id": nid, "type": type_id, "params": params})
        edges.append({"from": [prev, 0], "to": [nid, 0]})
        prev = nid
    d = {"format": "layerloom-project", "version": 1, "blocks": section(name),
         "graph": {"nodes": nodes, "edges": edges},
         "training": {"loss": {prev: loss}, "epochs": 1, "batch_size": 16,
                      "optimizer": {"name": "adam", "params": {"learning_rate": 0.01}}}}
    return loom.from_dict(json.loads(json.dumps(d)))


def weights_of(graph, rng, scale=0.3):
    shapes = graph.analysis().shapes
    out = {}
    for nid, node in graph.nodes.items():
        ins = [shapes[e.src][e.src_port] for e in graph.in_edges(nid)]
        for w in node.weights(ins):
            out[f"{nid}/{w.name}"] = rng.normal(0, scale, size=w.shape).astype(np.float32)
    return out


def trains(p, x, y, epochs=6):
    """The losses of `epochs` epochs of fitting p on (x, y); the last below the first."""
    model = api.Model(p)
    history = model.fit(x, y, epochs=epochs, verbose=False)
    losses = [e["loss"] for e in history["epochs"]]
    assert losses[-1] < losses[0], losses
    return losses


def test_the_four_block_files_read_with_their_help():
    for name in ("PatchExtractor", "PositionTable", "VAESampler", "SelfAttention"):
        bts = block_library.read(os.path.join(FOLDER, f"{name}.lblock"))
        assert list(bts) == [name] and bts[name].help


# -- PatchExtractor -------------------------------------------------------------------------------
def torch_patches(x, p):
    """NHWC images -> (N, patches, p*p*C) with torch's unfold, each patch (rows, cols,
    channels) as a channels-last patch flattens."""
    t = torch.from_numpy(x).permute(0, 3, 1, 2)  # NCHW
    n, c = t.shape[:2]
    cols = torch.nn.functional.unfold(t, kernel_size=p, stride=p)  # (N, C*p*p, L): (c, r, col)
    L = cols.shape[-1]
    return cols.reshape(n, c, p, p, L).permute(0, 4, 2, 3, 1).reshape(n, L, p * p * c).numpy()


def test_patch_extractor_is_torchs_unfold(rt, rng):
    p = project("PatchExtractor", {"images": (32, 32, 3)}, {}, [])
    x = rng.normal(size=(5, 32, 32, 3)).astype(np.float32)
    got = Model(p.graph, rt, 5).predict({"images": x})["blk"]
    assert got.shape == (5, 64, 48)
    np.testing.assert_allclose(got, torch_patches(x, 4), **TOL)


def test_patch_extractor_is_keras_extract_patches(rt, rng):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if not hasattr(keras.ops, "image") or not hasattr(keras.ops.image, "extract_patches"):
        pytest.skip("this keras has no ops.image.extract_patches")
    p = project("PatchExtractor", {"images": (32, 32, 3)}, {}, [])
    x = rng.normal(size=(3, 32, 32, 3)).astype(np.float32)
    got = Model(p.graph, rt, 3).predict({"images": x})["blk"]
    want = np.asarray(keras.ops.convert_to_numpy(
        keras.ops.image.extract_patches(x, 4, data_format="channels_last"))).reshape(3, 64, 48)
    np.testing.assert_allclose(got, want, **TOL)


def test_patch_extractor_trains_a_classifier(rng):
    p = project("PatchExtractor", {"images": (32, 32, 3)}, {},
                [("mix", "Dense", {"units": 4, "activation": "relu"}),
                 ("flat", "Flatten", {}), ("out", "Dense", {"units": 3,
                                                          "activation": "softmax"})],
                loss="sparse_categorical_crossentropy")
    x = rng.normal(size=(48, 32, 32, 3)).astype(np.float32)
    y = (x[:, :16, :16, 0].mean((1, 2)) > 0).astype(np.int64) + (x[:, 16:, 16:, 1].mean(
        (1, 2)) > 0)
    trains(p, x, y)


# -- PositionTable --------------------------------------------------------------------------------
def test_position_table_adds_its_table_as_torch_does(rt, rng):
    p = project("PositionTable", {"x": (16, 32)}, {}, [])
    ws = weights_of(p.graph, rng)
    assert list(ws) == ["blk/table/weight"] and ws["blk/table/weight"].shape == (16, 32)
    x = rng.normal(size=(4, 16, 32)).astype(np.float32)
    got = Model(p.graph, rt, 4, weights=ws).predict({"x": x})["blk"]
    table = torch.nn.Parameter(torch.from_numpy(ws["blk/table/weight"]))
    want = (torch.from_numpy(x) + table).detach().numpy()
    np.testing.assert_allclose(got, want, **TOL)


def test_position_table_learns_its_table(rng):
    p = project("PositionTable", {"x": (16, 32)}, {},
                [("flat", "Flatten", {}), ("out", "Dense", {"units": 1})])
    x = rng.normal(size=(64, 16, 32)).astype(np.float32)
    y = x[:, :, 0].sum(1, keepdims=True).astype(np.float32)
    model = api.Model(p)
    before = model.session.model.get_weights()["blk/table/weight"].copy()
    losses = [e["loss"] for e in model.fit(x, y, epochs=6, verbose=False)["epochs"]]
    assert losses[-1] < losses[0], losses
    assert not np.array_equal(model.get_weights()["blk/table/weight"], before)


# -- VAESampler -----------------------------------------------------------------------------------
def sampler_with_eps(rt, batch):
    """The VAESampler project's inlined graph with the block's eps wired to an output too, and
    a Model of it: z and the eps it was computed from come out of one forward pass."""
    p = project("VAESampler", {"z_mean": (2,), "z_log_var": (2,)}, {}, [])
    g = blocks.flatten(p.graph)
    g.add_node("Identity", {}, id="eps_out")
    g.connect("blk/eps", 0, "eps_out", 0)
    assert set(g.outputs()) == {"blk", "eps_out"}  # the instance's output keeps its id
    return Model(g, rt, batch)


def test_vae_sampler_is_the_reparameterisation_with_its_own_eps(rt, rng):
    model = sampler_with_eps(rt, 6)
    mu = rng.normal(size=(6, 2)).astype(np.float32)
    lv = rng.normal(size=(6, 2)).astype(np.float32)
    out = model.predict({"z_mean": mu, "z_log_var": lv})
    z, eps = out["blk"], out["eps_out"]
    assert np.std(eps) > 0.1  # drawn, not zeros
    want = (torch.from_numpy(mu) + torch.exp(0.5 * torch.from_numpy(lv))
            * torch.from_numpy(eps)).numpy()
    np.testing.assert_allclose(z, want, **TOL)


def test_vae_sampler_draws_the_distribution(rt):
    """Over 20,000 draws per latent: mean within 4 standard errors of z_mean, standard
    deviation within 3% of exp(0.5 z_log_var); fresh draws at each prediction."""
    n = 20000
    model = sampler_with_eps(rt, n)
    mu = np.tile(np.float32([1.5, -2.0]), (n, 1))
    lv = np.tile(np.float32([0.0, np.log(0.25)]), (n, 1))  # stddev 1 and 0.5
    z = model.predict({"z_mean": mu, "z_log_var": lv})["blk"]
    sd = np.float32([1.0, 0.5])
    assert np.all(np.abs(z.mean(0) - mu[0]) < 4 * sd / np.sqrt(n)), z.mean(0)
    assert np.all(np.abs(z.std(0) / sd - 1) < 0.03), z.std(0)
    again = model.predict({"z_mean": mu, "z_log_var": lv})["blk"]
    assert not np.array_equal(z, again)


def test_vae_sampler_trains_an_autoencoder(rng):
    """x (4) -> Dense z_mean, Dense z_log_var -> the sampler -> Dense decoder -> x."""
    d = {"format": "layerloom-project", "version": 1, "blocks": section("VAESampler"),
         "graph": {"nodes": [
             {"id": "x", "type": "Input", "params": {"shape": [4]}},
             {"id": "mean", "type": "Dense", "params": {"units": 2}},
             {"id": "log_var", "type": "Dense", "params": {"units": 2}},
             {"id": "sample", "type": "VAESampler", "params": {}},
             {"id": "decoded", "type": "Dense", "params": {"units": 4}}],
             "edges": [{"from": ["x", 0], "to": ["mean", 0]},
                       {"from": ["x", 0], "to": ["log_var", 0]},
                       {"from": ["mean", 0], "to": ["sample", 0]},
                       {"from": ["log_var", 0], "to": ["sample", 1]},
                       {"from": ["sample", 0], "to": ["decoded", 0]}]},
         "training": {"loss": {"decoded": "mean_squared_error"}, "epochs": 1,
                      "batch_size": 16, "optimizer": {"name": "adam", "params": {"learning_rate": 0.02}}}}
    p = loom.from_dict(json.loads(json.dumps(d)))
    z = rng.normal(size=(128, 2))
    x = (z @ rng.normal(size=(2, 4))).astype(np.float32)  # data on a plane: 2 latents fit
    model = api.Model(p)
    before = {k: v.copy() for k, v in model.session.model.get_weights().items()}
    losses = [e["loss"] for e in model.fit(x, x, epochs=10, verbose=False)["epochs"]]
    assert np.mean(losses[-3:]) < losses[0], losses
    after = model.get_weights()
    for k in ("mean/kernel", "log_var/kernel"):  # the gradient goes through the sampler
        assert not np.array_equal(after[k], before[k]), k


# -- SelfAttention --------------------------------------------------------------------------------
def test_self_attention_is_torchs_scaled_dot_product_attention(rt, rng):
    units, out_dim = 12, 16
    p = project("SelfAttention", {"x": (8, 16)}, {"units": units, "output_dim": out_dim}, [])
    ws = weights_of(p.graph, rng)
    x = rng.normal(size=(3, 8, 16)).astype(np.float32)
    got = Model(p.graph, rt, 3, weights=ws).predict({"x": x})["blk"]
    w = {k[len("blk/"):]: torch.from_numpy(v) for k, v in ws.items()}
    t = torch.from_numpy(x)
    q, k, v = (t @ w[f"{n}/kernel"] + w[f"{n}/bias"] for n in ("query", "key", "value"))
    ctx = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # 1 / sqrt(units)
    want = (ctx @ w["output/kernel"] + w["output/bias"]).numpy()
    assert got.shape == (3, 8, out_dim) and q.shape[-1] == units
    np.testing.assert_allclose(got, want, **TOL)


def test_self_attention_trains(rng):
    p = project("SelfAttention", {"x": (8, 16)}, {"units": 8, "output_dim": 4},
                [("flat", "Flatten", {}), ("out", "Dense", {"units": 1})])
    x = rng.normal(size=(64, 8, 16)).astype(np.float32)
    y = x[:, :, :2].mean((1, 2))[:, None].astype(np.float32)
    trains(p, x, y)
