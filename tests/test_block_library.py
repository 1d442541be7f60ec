"""The bundled block library (assets/examples/blocks/*.lblock): each file reads, each block
analyses at its Input's example shape with the parameter count of its hand formula, trains a
step inside a small project and computes what its layers' float64 references compute; the
TransformerEncoder against torch.nn.TransformerEncoderLayer (the same post-norm structure as
keras_hub's) with the same weights; the FNetEncoder against keras_hub's FNetEncoder computation
written in torch (torch.fft.fft2's real part, LayerNorm, Linear), and a small project with it
learning."""
import glob
import json
import os

import numpy as np
import pytest

from layerloom import api
from layerloom.core import blocks
from layerloom.project import block_library, loom

from test_blocks import reference

FOLDER = os.path.join(os.path.dirname(__file__), "..", "assets", "examples", "blocks")
NAMES = ["Bottleneck", "FNetEncoder", "InvertedResidual", "ResBlock", "TransformerDecoder",
         "TransformerEncoder", "UNetStage"]
# the custom layers built from primitives, checked against PyTorch in tests/test_custom_blocks.py
CUSTOM = ["PatchExtractor", "PositionTable", "SelfAttention", "VAESampler"]


def path(name):
    return os.path.join(FOLDER, f"{name}.lblock")


def section(name):
    """The file's "blocks" section, as a project's."""
    with open(path(name), encoding="utf-8") as f:
        return json.load(f)["blocks"]


def example_shapes(bt):
    """{inner Input id: its example shape} of a block type, in port order."""
    return {i: list(bt.graph.nodes[i].params["shape"]) for i in bt.input_ids}


# -- hand formulas -----------------------------------------------------------------------------
def conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def bn(c):  # gamma, beta (trained), moving mean and variance (not)
    return 4 * c


def mha(q_dim, kv_dim, heads, key_dim):
    hk = heads * key_dim
    return (q_dim * hk + hk) + 2 * (kv_dim * hk + hk) + (hk * q_dim + q_dim)


def ln(c):
    return 2 * c


def dense(cin, cout):
    return cin * cout + cout


def res_block(c, f):
    return conv(3, c, f) + bn(f) + conv(3, f, f) + bn(f)


def bottleneck(c, f):
    return conv(1, c, f) + bn(f) + conv(3, f, f) + bn(f) + conv(1, f, 4 * f) + bn(4 * f)


def inverted_residual(c, expanded, f):
    return (conv(1, c, expanded, bias=False) + bn(expanded)
            + 3 * 3 * expanded + bn(expanded)              # depthwise, no bias
            + conv(1, expanded, f, bias=False) + bn(f))


def encoder(h, inter, heads, key_dim):
    return mha(h, h, heads, key_dim) + ln(h) + dense(h, inter) + dense(inter, h) + ln(h)


def decoder(h, e, inter, heads, key_dim):
    return (mha(h, h, heads, key_dim) + ln(h) + mha(h, e, heads, key_dim) + ln(h)
            + dense(h, inter) + dense(inter, h) + ln(h))


def fnet_encoder(h, inter):  # the Fourier mixing has no weights
    return ln(h) + dense(h, inter) + dense(inter, h) + ln(h)


def unet_stage(c, f):
    return conv(3, c, f) + conv(3, f, f)


# name: (input shapes of the small project, instance params, expected count, output shapes)
CASES = {
    "ResBlock": ([[16, 16, 64]], {}, res_block(64, 64), [(16, 16, 64)]),
    "Bottleneck": ([[14, 14, 256]], {}, bottleneck(256, 64), [(14, 14, 256)]),
    "InvertedResidual": ([[32, 32, 16]], {}, inverted_residual(16, 96, 16), [(32, 32, 16)]),
    "TransformerEncoder": ([[16, 128]], {}, encoder(128, 256, 4, 32), [(16, 128)]),
    "FNetEncoder": ([[16, 128]], {}, fnet_encoder(128, 512), [(16, 128)]),
    "TransformerDecoder": ([[16, 128], [16, 128]], {}, decoder(128, 128, 256, 4, 32),
                           [(16, 128)]),
    "UNetStage": ([[64, 64, 3]], {}, unet_stage(3, 64), [(64, 64, 64), (32, 32, 64)]),
}
# smaller instances, another shape: the parameters reach the inner layers
SMALL = {
    "ResBlock": ([[8, 8, 8]], {"filters": 8, "repeat": 2}, 2 * res_block(8, 8)),
    "Bottleneck": ([[6, 6, 16]], {"filters": 4}, bottleneck(16, 4)),
    "InvertedResidual": ([[8, 8, 8]], {"expanded": 24, "filters": 8},
                         inverted_residual(8, 24, 8)),
    "TransformerEncoder": ([[6, 16]], {"intermediate_dim": 24, "hidden_dim": 16,
                                       "num_heads": 2, "key_dim": 8, "repeat": 2},
                           2 * encoder(16, 24, 2, 8)),
    "TransformerDecoder": ([[5, 16], [7, 12]], {"intermediate_dim": 24, "hidden_dim": 16,
                                                "num_heads": 2, "key_dim": 8},
                           decoder(16, 12, 24, 2, 8)),
    "UNetStage": ([[16, 16, 3]], {"filters": 8}, unet_stage(3, 8)),
    "FNetEncoder": ([[6, 16]], {"intermediate_dim": 24, "hidden_dim": 16, "dropout": 0.1,
                                "repeat": 2}, 2 * fnet_encoder(16, 24)),
}


def project_dict(name, shapes, params):
    """Inputs -> the block -> (global average pooling of each output, concatenated) -> a
    3-class softmax."""
    nodes, edges = [], []
    ins = [f"in_{k}" for k in range(len(shapes))]
    for i, s in zip(ins, shapes):
        nodes.append({"id": i, "type": "Input", "params": {"shape": s}})
    nodes.append({"id": "blk", "type": name, "params": dict(params)})
    for port, i in enumerate(ins):
        edges.append({"from": [i, 0], "to": ["blk", port]})
    n_out = len(section(name)[name]["outputs"])
    pool = "GlobalAveragePooling2D" if len(shapes[0]) == 3 else "GlobalAveragePooling1D"
    pooled = []
    for port in range(n_out):
        nodes.append({"id": f"gap_{port}", "type": pool, "params": {}})
        edges.append({"from": ["blk", port], "to": [f"gap_{port}", 0]})
        pooled.append(f"gap_{port}")
    last = pooled[0]
    if len(pooled) > 1:
        nodes.append({"id": "cat", "type": "Concatenate", "params": {}})
        for k, p in enumerate(pooled):
            edges.append({"from": [p, 0], "to": ["cat", k]})
        last = "cat"
    nodes.append({"id": "out", "type": "Dense", "params": {"units": 3,
                                                           "activation": "softmax"}})
    edges.append({"from": [last, 0], "to": ["out", 0]})
    return {"format": "layerloom-project", "version": 1, "blocks": section(name),
            "graph": {"nodes": nodes, "edges": edges},
            "training": {"loss": {"out": "sparse_categorical_crossentropy"}, "epochs": 1,
                         "batch_size": 4, "seed": 0}}


def load(d):
    return loom.from_dict(json.loads(json.dumps(d)))


# -- the files --------------------------------------------------------------------------------
def test_the_bundled_folder_holds_these_blocks_and_the_library_lists_them(monkeypatch,
                                                                          tmp_path):
    assert sorted(os.path.basename(p)[:-len(".lblock")]
                  for p in glob.glob(os.path.join(FOLDER, "*.lblock"))) == sorted(NAMES + CUSTOM)
    monkeypatch.setenv("LAYERLOOM_BLOCKS", str(tmp_path))  # no user blocks
    entries, problems = block_library.library()
    assert problems == []
    bundled = block_library.bundled_folder()
    if bundled and os.path.samefile(bundled, FOLDER):  # the checkout's (not an installed copy)
        assert sorted(entries) == sorted(NAMES + CUSTOM)
        for name in NAMES:
            assert entries[name].bundled and entries[name].help == section(name)[name]["help"]


@pytest.mark.parametrize("name", NAMES)
def test_each_file_reads_with_one_line_help_and_round_trips(name):
    types = block_library.read(path(name))
    assert list(types) == [name]
    bt = types[name]
    help_ = section(name)[name]["help"]
    assert bt.help == help_ and "\n" not in help_ and 40 < len(help_) <= 240
    assert ("repeat" in [p.name for p in bt.params]) == (name not in (
        "TransformerDecoder", "UNetStage"))
    # written back, the block is the same declaration
    again = block_library.loads(json.dumps({"format": "layerloom-blocks", "version": 1,
                                            "blocks": {name: loom.block_dict(bt)}}))
    assert loom.block_dict(again[name]) == loom.block_dict(bt)


@pytest.mark.parametrize("name", NAMES)
def test_each_block_analyses_at_its_example_shape_with_the_hand_count(name):
    bt = block_library.read(path(name))[name]
    shapes, params, count, out_shapes = CASES[name]
    assert list(example_shapes(bt).values()) == shapes
    p = load(project_dict(name, shapes, params))
    a = p.graph.analysis()
    assert not a.problems, [str(x) for x in a.problems]
    assert a.params["blk"].total == count
    assert a.shapes["blk"] == out_shapes


@pytest.mark.parametrize("name", NAMES)
def test_block_parameters_reach_the_inner_layers(name):
    shapes, params, count = SMALL[name]
    p = load(project_dict(name, shapes, params))
    a = p.graph.analysis()
    assert not a.problems, [str(x) for x in a.problems]
    assert a.params["blk"].total == count
    assert a.shapes["blk"][0][:-1] == tuple(shapes[0][:-1])


def test_transformer_parameters_set_every_inner_use():
    bt = block_library.read(path("TransformerDecoder"))["TransformerDecoder"]
    inner = bt.inner_params({"dropout": 0.25, "layer_norm_epsilon": 1e-6, "num_heads": 3,
                             "key_dim": 5, "activation": "gelu"})
    assert inner["self_attention"]["use_causal_mask"] is True
    assert not inner["cross_attention"].get("use_causal_mask", False)
    for n in ("self_attention", "cross_attention"):
        assert (inner[n]["dropout"], inner[n]["num_heads"], inner[n]["key_dim"]) == (0.25, 3, 5)
    for n in ("self_attention_dropout", "cross_attention_dropout", "feedforward_dropout"):
        assert inner[n]["rate"] == 0.25
    for n in ("self_attention_layer_norm", "cross_attention_layer_norm",
              "feedforward_layer_norm"):
        assert inner[n]["epsilon"] == 1e-6
    assert inner["feedforward_intermediate_dense"]["activation"] == "gelu"
    assert inner["feedforward_output_dense"].get("activation", "linear") == "linear"


# -- the engine -------------------------------------------------------------------------------
def random_inputs(shapes, rng, n):
    return {f"in_{k}": rng.normal(size=(n, *s)).astype(np.float32)
            for k, s in enumerate(shapes)}


@pytest.mark.parametrize("name", NAMES)
def test_each_block_trains_a_step_and_computes_its_layers_references(name, rng):
    shapes, params, _ = SMALL[name]
    p = load(project_dict(name, shapes, params))
    x = random_inputs(shapes, rng, 4)
    y = rng.integers(0, 3, size=4)
    model = api.Model(p)
    before = {k: v.copy() for k, v in model.session.model.get_weights().items()}
    history = model.fit(x, y, epochs=1, verbose=False)
    assert np.isfinite(history["epochs"][-1]["loss"])
    after = model.get_weights()
    assert set(after) == set(before)
    assert all(np.isfinite(v).all() for v in after.values())
    moved = [k for k in before if not np.array_equal(before[k], after[k])]
    assert any(k.startswith("blk/") for k in moved), moved
    flat = blocks.flatten(p.graph)
    assert not any(isinstance(n.layer, blocks.BlockType) for n in flat.nodes.values())
    got = model.predict(x)
    assert got.shape == (4, 3) and np.isfinite(got).all()
    want = reference(p.graph, after, x)[("out", 0)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_transformer_encoder_matches_torch_transformer_encoder_layer(rng):
    """keras_hub's TransformerEncoder (normalize_first=False) is torch's post-norm
    TransformerEncoderLayer: the same weights give the same outputs (inference)."""
    torch = pytest.importorskip("torch")
    name, h, heads, key_dim, inter, steps = "TransformerEncoder", 16, 2, 8, 24, 6
    d = {"format": "layerloom-project", "version": 1, "blocks": section(name),
         "graph": {"nodes": [
             {"id": "seq", "type": "Input", "params": {"shape": [steps, h]}},
             {"id": "enc", "type": name, "params": {
                 "hidden_dim": h, "num_heads": heads, "key_dim": key_dim,
                 "intermediate_dim": inter, "layer_norm_epsilon": 1e-5}}],
             "edges": [{"from": ["seq", 0], "to": ["enc", 0]}]},
         "training": {"loss": {"enc": "mse"}, "batch_size": 4}}
    p = load(d)
    built = api.Model(p).session.model.get_weights()  # the names the engine gives them
    ws = trained_like(rng, built)
    x = rng.normal(size=(4, steps, h)).astype(np.float32)
    got = api.Model(p, weights=ws).predict(x)

    assert all(k.startswith("enc/") for k in ws)
    w = {k[len("enc/"):]: torch.from_numpy(v) for k, v in ws.items()}
    att = "self_attention/"
    assert sorted(w) == sorted(
        [f"{att}{part}_{k}" for part in ("query", "key", "value", "output")
         for k in ("kernel", "bias")]
        + [f"{n}/{k}" for n in ("self_attention_layer_norm", "feedforward_layer_norm")
           for k in ("gamma", "beta")]
        + [f"feedforward_{n}_dense/{k}" for n in ("intermediate", "output")
           for k in ("kernel", "bias")])
    layer = torch.nn.TransformerEncoderLayer(d_model=h, nhead=heads, dim_feedforward=inter,
                                             dropout=0.1, activation="relu",
                                             layer_norm_eps=1e-5, batch_first=True,
                                             norm_first=False)

    def proj(part):  # Keras (in, heads, key_dim) -> torch (out, in)
        return w[f"{att}{part}_kernel"].reshape(h, heads * key_dim).T
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([proj("query"), proj("key"),
                                                        proj("value")]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([w[f"{att}{part}_bias"].reshape(-1)
                                                      for part in ("query", "key", "value")]))
        layer.self_attn.out_proj.weight.copy_(
            w[f"{att}output_kernel"].reshape(heads * key_dim, h).T)
        layer.self_attn.out_proj.bias.copy_(w[f"{att}output_bias"])
        layer.norm1.weight.copy_(w["self_attention_layer_norm/gamma"])
        layer.norm1.bias.copy_(w["self_attention_layer_norm/beta"])
        layer.linear1.weight.copy_(w["feedforward_intermediate_dense/kernel"].T)
        layer.linear1.bias.copy_(w["feedforward_intermediate_dense/bias"])
        layer.linear2.weight.copy_(w["feedforward_output_dense/kernel"].T)
        layer.linear2.bias.copy_(w["feedforward_output_dense/bias"])
        layer.norm2.weight.copy_(w["feedforward_layer_norm/gamma"])
        layer.norm2.bias.copy_(w["feedforward_layer_norm/beta"])
        layer.eval()
        want = layer(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)



def trained_like(rng, built):
    """Random weights for the weights a model built ({name: array}), the layer norms' scales
    near 1, as trained ones are."""
    ws = {k: rng.normal(0, 0.3, size=v.shape).astype(np.float32) for k, v in built.items()}
    for k in ws:
        if k.endswith("layer_norm/gamma"):
            ws[k] = (1 + 0.1 * rng.normal(size=ws[k].shape)).astype(np.float32)
    return ws

def fnet_project(steps, h, **params):
    """Input (steps, h) -> FNetEncoder with these parameters (its id "enc", the output)."""
    name = "FNetEncoder"
    return {"format": "layerloom-project", "version": 1, "blocks": section(name),
            "graph": {"nodes": [
                {"id": "seq", "type": "Input", "params": {"shape": [steps, h]}},
                {"id": "enc", "type": name, "params": {"hidden_dim": h, **params}}],
                "edges": [{"from": ["seq", 0], "to": ["enc", 0]}]},
            "training": {"loss": {"enc": "mse"}, "batch_size": 4}}


@pytest.mark.parametrize("activation,eps", [("relu", 1e-5), ("gelu", 1e-3)])
def test_fnet_encoder_matches_keras_hub_fnet_encoder_written_in_torch(rng, activation, eps):
    """keras_hub's FNetEncoder.call (keras_hub/src/layers/modeling/f_net_encoder.py, inference)
    in torch: mixing = real part of fft2 over (steps, features); mixed = LayerNorm(x + mixing);
    out = LayerNorm(mixed + Dense(h)(Dense(inter, activation)(mixed))); the same weights give
    the same outputs."""
    torch = pytest.importorskip("torch")
    steps, h, inter = 6, 16, 24
    p = load(fnet_project(steps, h, intermediate_dim=inter, activation=activation,
                          layer_norm_epsilon=eps, dropout=0.3))
    built = api.Model(p).session.model.get_weights()
    assert sorted(built) == sorted(
        [f"enc/{n}/{k}" for n in ("mixing_layer_norm", "output_layer_norm")
         for k in ("gamma", "beta")]
        + [f"enc/{n}_dense/{k}" for n in ("intermediate", "output") for k in ("kernel", "bias")])
    ws = trained_like(rng, built)
    x = rng.normal(size=(4, steps, h)).astype(np.float32)
    got = api.Model(p, weights=ws).predict(x)

    w = {k[len("enc/"):]: torch.from_numpy(v) for k, v in ws.items()}
    act = {"relu": torch.relu, "gelu": torch.nn.functional.gelu}[activation]

    def norm(t, which):
        return torch.nn.functional.layer_norm(t, (h,), w[f"{which}/gamma"], w[f"{which}/beta"],
                                              eps)

    def dense(t, which):  # Keras kernel (in, out): t @ kernel + bias
        return t @ w[f"{which}/kernel"] + w[f"{which}/bias"]
    with torch.no_grad():
        xt = torch.from_numpy(x)
        mixing = torch.fft.fft2(xt).real  # the last two axes, as keras.ops.fft2
        mixed = norm(xt + mixing, "mixing_layer_norm")
        ff = dense(act(dense(mixed, "intermediate_dense")), "output_dense")  # dropout: eval
        want = norm(mixed + ff, "output_layer_norm").numpy()
    assert got.shape == want.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the Fourier mixing is not an identity or a scaling here: it changes the result
    assert np.abs(got - norm(torch.from_numpy(2 * x), "mixing_layer_norm").numpy()).max() > 0.1


@pytest.mark.parametrize("activation,eps", [("relu", 1e-5), ("gelu", 1e-3)])
def test_fnet_encoder_matches_keras_hubs_own_layer(rng, activation, eps):
    """The block against keras_hub.layers.FNetEncoder itself (Keras on torch), with the same
    weights set into its sublayers: the same outputs (inference)."""
    pytest.importorskip("torch")
    import importlib.util
    import os
    if importlib.util.find_spec("keras_hub") is None:
        pytest.skip("keras_hub is not installed")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras_hub
    steps, h, inter = 6, 16, 24
    p = load(fnet_project(steps, h, intermediate_dim=inter, activation=activation,
                          layer_norm_epsilon=eps))
    built = api.Model(p).session.model.get_weights()
    ws = {k: rng.normal(0, 0.3, size=v.shape).astype(np.float32) for k, v in built.items()}
    x = rng.normal(size=(4, steps, h)).astype(np.float32)
    got = api.Model(p, weights=ws).predict(x)
    layer = keras_hub.layers.FNetEncoder(intermediate_dim=inter, activation=activation,
                                         layer_norm_epsilon=eps)
    layer(x)  # built
    for sub, name in ((layer._mixing_layer_norm, "mixing_layer_norm"),
                      (layer._output_layer_norm, "output_layer_norm")):
        sub.set_weights([ws[f"enc/{name}/gamma"], ws[f"enc/{name}/beta"]])
    for sub, name in ((layer._intermediate_dense, "intermediate_dense"),
                      (layer._output_dense, "output_dense")):
        sub.set_weights([ws[f"enc/{name}/kernel"], ws[f"enc/{name}/bias"]])
    want = np.asarray(layer(x, training=False).detach().cpu())
    print("max abs error vs keras_hub.layers.FNetEncoder:", np.abs(got - want).max())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_small_project_with_the_fnet_encoder_learns(rng):
    """Tokens -> FNetEncoder -> GlobalAveragePooling1D -> softmax over 3 classes, on a task
    that needs the features (the class is which of three feature groups is largest on
    average): the loss falls over a few epochs and the training accuracy beats chance."""
    steps, h, n = 8, 12, 96
    d = project_dict("FNetEncoder", [[steps, h]], {"intermediate_dim": 16, "hidden_dim": h})
    d["training"].update({"epochs": 8, "batch_size": 16, "seed": 3, "optimizer": {
        "name": "adam", "params": {"learning_rate": 0.01}}})
    p = load(d)
    y = rng.integers(0, 3, size=n)
    x = rng.normal(size=(n, steps, h)).astype(np.float32)
    for i, c in enumerate(y):  # shift class c's group of features up
        x[i, :, 4 * c:4 * c + 4] += 1.0
    model = api.Model(p)
    history = model.fit({"in_0": x}, y, epochs=8, verbose=False)
    losses = [e["loss"] for e in history["epochs"]]
    assert all(np.isfinite(losses)), losses
    assert losses[-1] < 0.7 * losses[0], losses
    accuracy = float((model.predict({"in_0": x}).argmax(-1) == y).mean())
    assert accuracy > 0.6, accuracy


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # keras' numpy 2 notes
def test_a_project_with_the_fnet_encoder_exports_to_onnx_keras_and_pytorch(rng, tmp_path):
    """Two chained FNetEncoders in a classifier: onnxruntime, the .keras file and the PyTorch
    script give Layerloom's outputs; the ONNX and Keras files read back with FourierMixing."""
    import importlib.util
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    from layerloom.interop import export as interop_export
    from layerloom.interop import keras_import, onnx_import
    p = load(project_dict("FNetEncoder", [[8, 12]], {"intermediate_dim": 16, "hidden_dim": 12,
                                                     "repeat": 2}))
    built = api.Model(p).session.model.get_weights()
    ws = {k: rng.normal(0, 0.3, size=v.shape).astype(np.float32) for k, v in built.items()}
    x = rng.normal(size=(5, 8, 12)).astype(np.float32)
    want = api.Model(p, weights=ws).predict({"in_0": x})
    interop_export(p, ws, str(tmp_path / "m.onnx"))
    s = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert float(np.abs(s.run(None, {"in_0": x})[0] - want).max()) <= 1e-5
    back = onnx_import.read(str(tmp_path / "m.onnx"))[0]
    assert sum(n.type == "FourierMixing" for n in back.graph.nodes.values()) == 2
    interop_export(p, ws, str(tmp_path / "m.keras"))
    km = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert float(np.abs(np.asarray(km.predict(x, verbose=0)) - want).max()) <= 1e-5
    back = keras_import.read(str(tmp_path / "m.keras"))[0]
    assert sum(n.type == "FourierMixing" for n in back.graph.flat().nodes.values()) == 2
    interop_export(p, ws, str(tmp_path / "t.py"), "pytorch-code")
    spec = importlib.util.spec_from_file_location("t", str(tmp_path / "t.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with torch.no_grad():
        got = module.build_model()({"in_0": torch.from_numpy(x)})
    got = (next(iter(got.values())) if isinstance(got, dict) else got).numpy()
    assert float(np.abs(got - want).max()) <= 1e-5


@pytest.mark.parametrize("example,name", [("resnet_blocks", "ResBlock"),
                                          ("transformer_blocks", "TransformerEncoder")])
def test_the_block_examples_declare_the_bundled_blocks_and_analyse(example, name):
    p = loom.load(os.path.join(FOLDER, "..", f"{example}.loom"))
    assert loom.block_dict(p.graph.blocks[name]) == loom.block_dict(
        block_library.read(path(name))[name])
    assert any(n.type == name for n in p.graph.nodes.values())
    a = p.graph.analysis()
    assert not a.problems, [str(x) for x in a.problems]
