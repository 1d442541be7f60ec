"""Keras import's blocks (engine/interop/keras_blocks.py): nested models and the repeated units
of keras.applications' naming (`conv2_block1_...`, `block_1_...`, `block1a_...`) open as block
instances, units alike sharing one block type, and compute what Keras computes (within 1e-4 of
Keras' float32 outputs); keras_import.read(path, blocks=False) keeps the graph flat as before.
Models are built here with random weights (weights=None: nothing is downloaded); the
keras.applications ones are marked slow but ResNet50 at 64x64."""
import os

import numpy as np
import pytest

pytest.importorskip("h5py")
pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from layerloom import api  # noqa: E402
from layerloom.core.blocks import BlockType  # noqa: E402
from layerloom.interop import keras_blocks, keras_import, write_imported  # noqa: E402
from layerloom.project import loom  # noqa: E402

TOLERANCE = 1e-4
SEED = 0


def _randomize(model):
    """Weights away from Keras' initial ones (batch norms' statistics and scales included),
    so that a wrong wiring or a weight in the wrong place shows."""
    rng = np.random.default_rng(SEED)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if "variance" in v.path
                       else (rng.standard_normal(w.shape) * 0.2).astype(np.float32)
                       for v, w in zip(model.weights, model.get_weights())])


def _unit(x, stage, k, filters, project):
    """A ResNet-like unit named as keras.applications names them."""
    L, p = keras.layers, f"conv{stage}_block{k}_"
    y = L.Conv2D(filters, 1, name=p + "1_conv")(x)
    y = L.BatchNormalization(name=p + "1_bn")(y)
    y = L.Activation("relu", name=p + "1_relu")(y)
    y = L.Conv2D(filters * 2, 3, padding="same", name=p + "2_conv")(y)
    s = L.Conv2D(filters * 2, 1, name=p + "0_conv")(x) if project else x
    y = L.Add(name=p + "add")([y, s])
    return L.Activation("relu", name=p + "out")(y)


def _small_model():
    """image -> stem -> conv2 units -> a nested Functional model `body` (two conv3 units) ->
    a nested Sequential `head`."""
    L = keras.layers
    keras.utils.set_random_seed(SEED)
    image = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", name="stem")(image)
    x = _unit(x, 2, 1, 4, True)
    x = _unit(x, 2, 2, 4, False)
    inner = keras.Input((8, 8, 8), name="body_in")
    y = _unit(inner, 3, 1, 8, True)
    y = _unit(y, 3, 2, 8, False)
    body = keras.Model(inner, y, name="body")
    head = keras.Sequential([L.GlobalAveragePooling2D(name="gap"),
                             L.Dense(5, activation="softmax", name="probs")], name="head")
    model = keras.Model(image, head(body(x)), name="small")
    _randomize(model)
    return model


def _save(model, tmp_path, name):
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    return path


def _opened(path, tmp_path, blocks=True):
    """The import written as `--import` writes it, opened again: (project, Model)."""
    to = str(tmp_path / ("blocks.loom" if blocks else "flat.loom"))
    if blocks:
        keras_import.convert(path, to)  # the command line's default
    else:
        write_imported(*keras_import.read(path, blocks=False), to)
    return loom.load(to), api.load(to)


def _max_error(model, net, x):
    want = np.asarray(net.predict(x, verbose=0))
    got = np.asarray(model.predict(x))
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


def test_units_and_nested_models_open_as_blocks_and_match_keras(tmp_path):
    net = _small_model()
    path = _save(net, tmp_path, "small")
    project, model = _opened(path, tmp_path)
    g = project.graph
    assert not g.analysis().problems
    assert [(n.id, n.type) for n in g.nodes.values()] == [
        ("image", "Input"), ("stem", "Conv2D"), ("conv2_block1", "Conv2Block1"),
        ("conv2_block2", "Conv2Block2"), ("body", "Body"), ("head", "Head")]
    # the nested models: one type and one instance each, their units blocks inside
    body, head = g.blocks["Body"], g.blocks["Head"]
    assert [(n.id, n.type) for n in body.graph.nodes.values() if not n.layer.is_input] == [
        ("conv3_block1", "Conv2Block1"), ("conv3_block2", "Conv2Block2")]
    assert [n.type for n in head.graph.nodes.values()] == [
        "Input", "GlobalAveragePooling2D", "Dense"]
    # units alike share a type, filters promoted (conv2: 4, conv3: 8)
    unit = g.blocks["Conv2Block1"]
    assert sorted(n for n in unit.graph.nodes) == sorted(
        ["x", "1_conv", "1_bn", "1_relu", "2_conv", "0_conv", "add", "out"])
    assert {p.name: [t.text() for t in ts] for p, ts in unit.promoted} == {
        "filters": ["1_conv.filters", "2_conv.filters*2", "0_conv.filters*2"]}
    assert g.nodes["conv2_block1"].params["filters"] == 4
    assert body.graph.nodes["conv3_block1"].params["filters"] == 8
    assert sorted(g.blocks) == ["Body", "Conv2Block1", "Conv2Block2", "Head"]
    weights = model.get_weights()
    assert "conv2_block1/1_conv/kernel" in weights
    assert "body/conv3_block2/2_conv/kernel" in weights
    assert "head/probs/bias" in weights
    assert g.analysis().total_params().total == net.count_params()
    x = np.random.default_rng(SEED).standard_normal((3, 8, 8, 3)).astype(np.float32)
    assert _max_error(model, net, x) <= TOLERANCE


def test_blocks_off_imports_flat_and_matches_keras(tmp_path):
    net = _small_model()
    path = _save(net, tmp_path, "small")
    project, model = _opened(path, tmp_path, blocks=False)
    g = project.graph
    assert not g.blocks and not g.analysis().problems
    assert len(g.nodes) == 2 + 2 * 7 + 2 * 6 + 2  # image, stem, 4 units, gap, probs
    assert "conv3_block1_2_conv" in g.nodes and "probs" in g.nodes
    x = np.random.default_rng(SEED).standard_normal((3, 8, 8, 3)).astype(np.float32)
    assert _max_error(model, net, x) <= TOLERANCE


def test_a_nested_model_that_ends_the_model_is_its_output(tmp_path):
    L = keras.layers
    keras.utils.set_random_seed(SEED)
    inner = keras.Sequential([keras.Input((6,)), L.Dense(4, activation="relu", name="d1"),
                              L.Dense(3, name="d2")], name="mlp_core")
    x = keras.Input((6,), name="features")
    net = keras.Model(x, inner(L.Dense(6, name="pre")(x)), name="outer")
    net.compile(optimizer="adam", loss="mse")
    _randomize(net)
    path = _save(net, tmp_path, "outer")
    project, weights = keras_import.read(path)
    g = project.graph
    assert [(n.id, n.type) for n in g.nodes.values()] == [
        ("features", "Input"), ("pre", "Dense"), ("mlp_core", "MlpCore")]
    assert g.outputs() == ["mlp_core"]
    assert list(project.training["loss"]) == ["mlp_core"]
    assert sorted(weights) == ["mlp_core/d1/bias", "mlp_core/d1/kernel", "mlp_core/d2/bias",
                               "mlp_core/d2/kernel", "pre/bias", "pre/kernel"]
    xs = np.random.default_rng(SEED).standard_normal((4, 6)).astype(np.float32)
    assert _max_error(api.Model(project, weights), net, xs) <= TOLERANCE


def test_unit_names_and_block_type_names():
    assert keras_blocks.unit_of("conv2_block1_1_conv") == ("conv2_block1", "1_conv")
    assert keras_blocks.unit_of("conv4_block12_concat") == ("conv4_block12", "concat")
    assert keras_blocks.unit_of("block_3_expand_BN") == ("block_3", "expand_BN")
    assert keras_blocks.unit_of("block2b_se_reduce") == ("block2b", "se_reduce")
    assert keras_blocks.unit_of("block5_sepconv1_act") == ("block5", "sepconv1_act")
    assert keras_blocks.unit_of("expanded_conv_3_project") == ("expanded_conv_3", "project")
    assert keras_blocks.unit_of("conv1_conv") is None and keras_blocks.unit_of("add_3") is None
    assert keras_blocks.camel("resnet50") == "Resnet50"
    assert keras_blocks.camel("block_1") == "Block1"
    assert keras_blocks.camel("mobilenetv2_1.00_224") == "Mobilenetv2_1_00_224"
    assert keras_blocks.camel("3d_net") == "Block3dNet"


def test_resnet50_opens_as_25_nodes_of_3_block_types_and_matches_keras(tmp_path):
    keras.utils.set_random_seed(SEED)
    net = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    path = _save(net, tmp_path, "resnet50")
    project, model = _opened(path, tmp_path)
    g = project.graph
    assert not g.analysis().problems
    assert len(net.layers) == 177 and len(g.nodes) == 25
    units = [n for n in g.nodes.values() if isinstance(n.layer, BlockType)]
    assert [n.id for n in units] == [f"conv{s}_block{k}" for s, n in
                                     ((2, 3), (3, 4), (4, 6), (5, 3)) for k in range(1, n + 1)]
    # the projection unit of stride 1 (conv2), the strided ones (conv3..5), the identity ones
    assert sorted(g.blocks) == ["Conv2Block1", "Conv2Block2", "Conv3Block1"]
    assert sum(n.type == "Conv2Block2" for n in units) == 12
    assert [g.nodes[f"conv{s}_block2"].params["filters"] for s in (2, 3, 4, 5)] == \
        [64, 128, 256, 512]
    assert g.analysis().total_params().total == net.count_params()
    x = np.random.default_rng(SEED).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    assert _max_error(model, net, x) <= TOLERANCE


@pytest.mark.slow
def test_a_keras_application_used_as_a_layer_is_one_block(tmp_path):
    L = keras.layers
    keras.utils.set_random_seed(SEED)
    base = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    image = keras.Input((64, 64, 3), name="image")
    x = L.GlobalAveragePooling2D(name="gap")(base(image))
    net = keras.Model(image, L.Dense(4, name="probs")(x))
    path = _save(net, tmp_path, "transfer")
    project, model = _opened(path, tmp_path)
    g = project.graph
    assert not g.analysis().problems
    assert [(n.id, n.type) for n in g.nodes.values()] == [
        ("image", "Input"), ("resnet50", "Resnet50"), ("gap", "GlobalAveragePooling2D"),
        ("probs", "Dense")]
    inner = g.blocks["Resnet50"].graph
    assert len(inner.nodes) == 1 + 6 + 16  # its Input, the stem, the units
    assert sorted(g.blocks) == ["Conv2Block1", "Conv2Block2", "Conv3Block1", "Resnet50"]
    assert g.analysis().total_params().total == net.count_params()
    x = np.random.default_rng(SEED).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    assert _max_error(model, net, x) <= TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("name,size,nodes,types", [
    ("DenseNet121", 32, 81, 1), ("MobileNetV2", 32, 26, 8), ("EfficientNetB0", 32, 29, 12),
    ("Xception", 71, 37, 6), ("ResNet50V2", 32, 28, 3), ("MobileNetV3Small", 32, 26, 9)])
def test_keras_applications_open_as_blocks(name, size, nodes, types, tmp_path):
    keras.utils.set_random_seed(SEED)
    net = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                            classes=10)
    path = _save(net, tmp_path, name)
    project, model = _opened(path, tmp_path)
    g = project.graph
    assert not g.analysis().problems
    assert (len(g.nodes), len(g.blocks)) == (nodes, types)
    assert g.analysis().total_params().total == net.count_params()
    x = np.random.default_rng(SEED).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    assert _max_error(model, net, x) <= TOLERANCE
