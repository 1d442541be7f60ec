"""ONNX in (engine/interop/onnx_import.py), the patterns exporters write: PyTorch's shape
arithmetic and GELU, reshapes and permutes in ONNX order, squeeze-and-excitation, recurrent
layers with their zero state, channel split and shuffle, attention as one MultiHeadAttention,
class tokens and positions, a layer norm over a pooled image's channels. Each model is written
here (torch.onnx.export or onnx.helper) and its import compared with the exporter's outputs
(TOLERANCE, absolute, float32), or refused by name."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from layerloom.api import Model  # noqa: E402
from layerloom.core.errors import DataError  # noqa: E402
from layerloom.interop import onnx_import  # noqa: E402
from test_onnx_import import TOLERANCE, _model  # noqa: E402

def _torch_export(module, x, path, dynamic=True):
    torch = pytest.importorskip("torch")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(x),), path, dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}} if dynamic else None)
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("dynamic", [True, False], ids=["batch-open", "batch-fixed"])
@pytest.mark.parametrize("gelu", ["none", "tanh"])
def test_torch_shape_arithmetic_is_folded_and_its_gelu_is_one_activation(tmp_path, dynamic,
                                                                        gelu):
    """x.view(x.size(0), -1) exports as Shape, Gather, Unsqueeze, Concat, Reshape (computed
    at import: the batch kept), nn.GELU as Div, Erf, Add, Mul, Mul (one gelu folded into the
    Dense), the tanh GELU as its formula (gelu_tanh)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 5 * 6, 7)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return torch.nn.functional.gelu(self.fc(y.view(y.size(0), -1)), approximate=gelu)
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((3, 3, 5, 6)).astype(np.float32) * 2
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path, dynamic)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Reshape", "Erf" if gelu == "none" else "Tanh"} <= ops
    assert ("Shape" in ops) == dynamic
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    assert [(g.nodes[n].type, g.nodes[n].params.get("activation")) for n in g.topo_order()] \
        == [("Input", None), ("Conv2D", "relu"), ("Permute", None), ("Flatten", None),
            ("Dense", "gelu" if gelu == "none" else "gelu_tanh")]
    got = imported.predict({"x": x})["y"]
    assert np.abs(got - want).max() <= 1e-5


def test_a_gelu_whose_input_is_read_elsewhere_is_an_activation_layer(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(5, 4)

        def forward(self, x):
            h = self.fc(x)
            return 0.5 * h * (1 + torch.erf(h / 2 ** 0.5)) + h  # the factors in another order
    x = np.random.default_rng(1).standard_normal((4, 5)).astype(np.float32) * 3
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    types = sorted(n.type for n in imported.project.graph.nodes.values())
    assert types == ["Activation", "Add", "Dense", "Input"]
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_a_reshape_that_keeps_the_batch_is_a_reshape_layer_in_onnx_order(tmp_path):
    """(N, C, H, W) -> (N, C, H * W) -> softmax over H * W: our channels-last tensor is put
    in ONNX's order first (Permute), then reshaped."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 1)

        def forward(self, x):
            y = self.conv(x)
            return torch.softmax(y.reshape(y.shape[0], y.shape[1], -1), dim=-1)
    x = np.random.default_rng(2).standard_normal((2, 2, 3, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    assert "Reshape" in {n.type for n in imported.project.graph.nodes.values()}
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_identity_of_initializers_is_a_constant(tmp_path):
    """torch shares equal initial weights through Identity nodes of an initializer (refused
    before: 'a constant where a tensor is expected?')."""
    from onnx import helper
    nodes = [helper.make_node("Identity", ["b0"], ["b"], name="share"),
             helper.make_node("Identity", ["k0"], ["k"], name="share_k"),
             helper.make_node("Conv", ["x", "k", "b"], ["y"], name="conv", pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3])]
    rng = np.random.default_rng(3)
    inits = {"k0": rng.standard_normal((4, 3, 3, 3)), "b0": rng.standard_normal(4)}
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, inits), path)
    project, weights = onnx_import.read(path)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x.transpose(0, 2, 3, 1))
    assert np.abs(got - want.transpose(0, 2, 3, 1)).max() <= TOLERANCE


def test_a_squeeze_and_excitation_block_with_silu_imports(tmp_path):
    """EfficientNet's block: SiLU (x * sigmoid(x): one silu folded into the convolution), a
    global pooling kept (N, C, 1, 1), 1x1 convolutions of it (Dense layers), and the scale
    multiplied into the image (repeated over it, as ONNX broadcasts)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
            self.fc1, self.fc2 = torch.nn.Conv2d(6, 2, 1), torch.nn.Conv2d(2, 6, 1)

        def forward(self, x):
            h = torch.nn.functional.silu(self.conv(x))
            s = torch.nn.functional.adaptive_avg_pool2d(h, 1)
            s = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
            return torch.flatten(h * s, 1)
    torch.manual_seed(1)
    x = np.random.default_rng(5).standard_normal((3, 3, 5, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    layers = [(g.nodes[n].type, g.nodes[n].params.get("activation")) for n in g.topo_order()]
    assert ("Conv2D", "silu") in layers and ("Dense", "relu") in layers
    assert ("Dense", "sigmoid") in layers and ("UpSampling2D", None) in layers
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_torch_recurrent_layer_with_its_zero_state_and_last_step_imports(tmp_path, kind):
    """torch's nn.LSTM/GRU without a state exports a zero state the size of the batch
    (Shape, Gather, Concat, ConstantOfShape: folded with a batch of 1, zeros as the readers
    take them), y[:, -1] as Gather: the layer's return_sequences off."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(4, 5, batch_first=True)
            self.fc = torch.nn.Linear(5, 3)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])
    torch.manual_seed(2)
    x = np.random.default_rng(6).standard_normal((3, 6, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    assert [g.nodes[n].type for n in g.topo_order()] == ["Input", kind, "Dense"]
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_a_cast_to_float32_is_the_same_tensor(tmp_path):
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT, name="c"),
             helper.make_node("Relu", ["c"], ["y"], name="r")]
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, {}, shape=(None, 5)), path)
    project, weights = onnx_import.read(path)
    x = np.random.default_rng(7).standard_normal((3, 5)).astype(np.float32)
    assert np.abs(Model(project, weights).predict(x) - np.maximum(x, 0)).max() == 0


def test_a_channel_split_and_shuffle_import(tmp_path):
    """ShuffleNet's unit: x.chunk(2, dim=1) (Slices of the channels: Reshape, Permute,
    Cropping1D and back), a branch, Concat, and the channel shuffle (Reshape to 5-D, Transpose
    [0, 2, 1, 3, 4], Reshape back: our Reshape, Permute, Reshape)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            y = torch.cat([a, torch.relu(self.conv(torch.cat([b, b], 1)))[:, :2]], 1)
            n, c, h, w = y.shape
            return y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
    torch.manual_seed(3)
    x = np.random.default_rng(8).standard_normal((2, 4, 3, 5)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    types = [n.type for n in imported.project.graph.nodes.values()]
    assert "Cropping1D" in types and "Permute" in types
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_a_sum_of_tensors_is_an_add(tmp_path):
    """ONNX's Sum (Caffe2's ResNet-50 and ShuffleNet write their residuals with it)."""
    from onnx import helper
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="r"),
             helper.make_node("Sigmoid", ["x"], ["b"], name="s"),
             helper.make_node("Sum", ["a", "b", "x"], ["y"], name="sum")]
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, {}), path)
    project, weights = onnx_import.read(path)
    assert "Add" in {n.type for n in project.graph.nodes.values()}
    x = np.random.default_rng(9).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x)
    assert np.abs(got - want).max() <= TOLERANCE


def _torch_attention(torch, heads, mask=None):
    class Net(torch.nn.Module):
        """torch's self-attention as torchvision's ViT calls it (batch_first, no weights)."""

        def __init__(self):
            super().__init__()
            self.attention = torch.nn.MultiheadAttention(12, heads, batch_first=True)

        def forward(self, x):
            return self.attention(x, x, x, need_weights=False, attn_mask=mask)[0]
    net = Net()
    with torch.no_grad():  # its biases start at zero
        net.attention.in_proj_bias.normal_(0, 0.5)
        net.attention.out_proj.bias.normal_(0, 0.5)
    return net


@pytest.mark.parametrize("dynamic", [True, False], ids=["batch-open", "batch-fixed"])
@pytest.mark.parametrize("heads", [1, 3])
def test_torch_attention_is_one_multi_head_attention(tmp_path, heads, dynamic):
    """nn.MultiheadAttention's export (the batch moved, heads folded into it, packed in_proj,
    the scale split between q and k) is one MultiHeadAttention with torch's weights in Keras'
    (D, heads, d) layout, computing torch's outputs."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    net = _torch_attention(torch, heads)
    x = np.random.default_rng(4).standard_normal((3, 5, 12)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(net, x, path, dynamic)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    assert [g.nodes[n].type for n in g.topo_order()] == ["Input", "MultiHeadAttention"]
    node = next(n for n in g.nodes.values() if n.type == "MultiHeadAttention")
    d = 12 // heads
    assert (node.params["num_heads"], node.params["key_dim"]) == (heads, d)
    a = net.attention
    w, b = a.in_proj_weight.detach().numpy(), a.in_proj_bias.detach().numpy()
    ws = {k.split("/")[1]: v for k, v in imported.weights.items()}
    for i, name in enumerate(("query", "key", "value")):
        np.testing.assert_array_equal(ws[f"{name}_kernel"],
                                      w[i * 12:(i + 1) * 12].T.reshape(12, heads, d))
        np.testing.assert_array_equal(ws[f"{name}_bias"], b[i * 12:(i + 1) * 12].reshape(heads, d))
    np.testing.assert_array_equal(ws["output_kernel"],
                                  a.out_proj.weight.detach().numpy().T.reshape(heads, d, 12))
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= 1e-5


def test_torch_attention_with_a_mask_is_refused_by_name(tmp_path):
    """An attention mask (added to the scores) has no Layerloom form: the import names the
    node where the pattern stops and what it expected."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    mask = torch.triu(torch.full((5, 5), float("-inf")), 1)
    x = np.random.default_rng(4).standard_normal((3, 5, 12)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    _torch_export(_torch_attention(torch, 2, mask), x, path)
    with pytest.raises(DataError, match=r"torch's attention .*expected the scores' Softmax, "
                                        r"found Add \(an attention mask"):
        onnx_import.from_model(onnx.load(path))


@pytest.mark.parametrize("tokens", [1, 2], ids=["class", "class-and-distillation"])
def test_class_tokens_positions_and_the_first_step_import(tmp_path, tokens):
    """A ViT's sequence: a Dense along the steps' features (MatMul of a sequence), learned
    tokens Expanded to the batch and put before it (ClassToken each; DeiT has two), a
    position table added (PositionEmbedding + Add), x[:, 0] (Cropping1D, Reshape)."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(4, 6)
            self.tokens = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(1, 1, 6)) for _ in range(tokens)])
            self.positions = torch.nn.Parameter(torch.randn(1, 5 + tokens, 6))

        def forward(self, x):
            x = self.embed(x)
            t = [p.expand(x.shape[0], -1, -1) for p in self.tokens]
            x = torch.cat(t + [x], dim=1) + self.positions
            return torch.tanh(x)[:, 0] + x[:, tokens]
    torch.manual_seed(5)
    net = Net()
    x = np.random.default_rng(7).standard_normal((3, 5, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(net, x, path)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    types = [g.nodes[n].type for n in g.topo_order()]
    assert types.count("ClassToken") == tokens and types.count("PositionEmbedding") == 1
    assert types.count("Cropping1D") == 2 and "Dense" in types
    ws = {k: v for k, v in imported.weights.items() if k.endswith("/token")}
    assert sorted(float(v[0, 0]) for v in ws.values()) == sorted(
        float(p.detach()[0, 0, 0]) for p in net.tokens)
    got = imported.predict({"x": x})["y"]
    assert np.abs(got - want).max() <= 1e-5
    # out through Layerloom's export and in again: the same layers (the Reshape to the
    # features comes back as the Flatten it is)
    from layerloom.interop import onnx_export
    again = onnx_import.from_model(onnx_export.to_onnx(imported.project, imported.weights))
    types2 = [n.type for n in again.project.graph.nodes.values()]
    assert sorted(types2) == sorted("Flatten" if t == "Reshape" else t for t in types)
    assert np.abs(again.predict({"x": x})["y"] - got).max() <= 1e-6


def test_a_token_after_the_sequence_is_refused_by_name(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.token = torch.nn.Parameter(torch.randn(1, 1, 4))

        def forward(self, x):
            return torch.cat([x, self.token.expand(x.shape[0], -1, -1)], dim=1)
    x = np.random.default_rng(7).standard_normal((3, 5, 4)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    _torch_export(Net(), x, path)
    with pytest.raises(DataError, match=r"\(Concat\): constants repeated along the batch "
                                        r"\(class tokens\) that are not all before"):
        onnx_import.from_model(onnx.load(path))


def test_a_layer_norm_over_the_channels_of_a_pooled_image_is_read(tmp_path):
    """timm's ConvNeXt head (LayerNorm2d after a global pool): Transpose [0, 2, 3, 1] of the
    pooled (N, C, 1, 1), a LayerNormalization over the last axis, the Transpose back, Flatten;
    refused before as 'only the transposes between channels-last and channels-first'."""
    from onnx import helper
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
             helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
             helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 3, 1], name="to_last"),
             helper.make_node("LayerNormalization", ["t", "g", "b"], ["n"], axis=-1,
                              epsilon=1e-6, name="norm"),
             helper.make_node("Transpose", ["n"], ["u"], perm=[0, 3, 1, 2], name="to_first"),
             helper.make_node("Flatten", ["u"], ["y"], name="flat")]
    inits = {"w": rng.standard_normal((5, 3, 3, 3)), "g": rng.uniform(0.5, 1.5, 5),
             "b": rng.standard_normal(5)}
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, inits), path)
    project, weights = onnx_import.read(path)
    assert "LayerNormalization" in [n.type for n in project.graph.nodes.values()]
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x.transpose(0, 2, 3, 1))
    assert np.abs(got - want).max() <= TOLERANCE


@pytest.mark.parametrize("perm", [[0, 1, 3, 2], [0, 2, 1, 3], [0, 3, 2, 1], [0, 3, 1, 2]])
def test_any_order_of_the_per_sample_axes_is_a_permute(tmp_path, perm):
    """A Transpose that keeps the batch first but is not a change of layout (EfficientViT's
    [0, 1, 3, 2] between its attention's products): a Permute of ours, read in ONNX's order
    after it; a second convolution after the transposed image checks the order it gets."""
    from onnx import helper
    rng = np.random.default_rng(5)
    chans = {1: 4, 2: 6, 3: 7}[perm[1]]  # the transposed tensor's axis 1: ONNX's perm[1]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
             helper.make_node("Transpose", ["c"], ["t"], perm=perm, name="t"),
             helper.make_node("Conv", ["t", "w2"], ["d"], kernel_shape=[1, 1], name="conv2"),
             helper.make_node("Flatten", ["d"], ["y"], name="flat")]
    inits = {"w": rng.standard_normal((4, 3, 3, 3)), "w2": rng.standard_normal((2, chans, 1, 1))}
    path = str(tmp_path / "m.onnx")
    onnx.save(_model(nodes, inits, shape=(None, 3, 8, 9)), path)
    project, weights = onnx_import.read(path)
    x = rng.standard_normal((3, 3, 8, 9)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = Model(project, weights).predict(x.transpose(0, 2, 3, 1))
    assert got.shape == want.shape and np.abs(got - want).max() <= TOLERANCE
