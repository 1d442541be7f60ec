"""The 3-D layers (Conv3D, Max/AveragePooling3D, GlobalAverage/MaxPooling3D, UpSampling3D,
ZeroPadding3D, Cropping3D) from the tools people build them in: a Keras model using each,
saved by Keras and imported, predicts what Keras does (1e-5, as test_keras_import); a PyTorch
model of nn.Conv3d, MaxPool3d, AvgPool3d, padding, a crop and a global pooling exported to ONNX
imports and predicts what PyTorch does (1e-5, as test_onnx_import), and so does Layerloom's own
ONNX export of it read back; keras.io's 3-D CNN (examples/vision/3D_image_classification.py)
at the smallest input its four valid convolutions take. The forward and backward passes of
each layer against float64 references are test_layers' (the declarations' examples)."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

from layerloom.api import Model  # noqa: E402
from layerloom.core.errors import DataError  # noqa: E402
from layerloom.interop import export as interop_export  # noqa: E402
from layerloom.interop import keras_import  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TOLERANCE = 1e-5


def _keras_round_trip(model, tmp_path, x):
    """(imported project, max |Layerloom - Keras|) for a Keras model saved by Keras."""
    path = str(tmp_path / "m.keras")
    model.save(path)
    project, weights = keras_import.read(path)
    got = Model(project, weights).predict(x)
    return project, float(np.abs(got - model.predict(x, verbose=0)).max())


def _randomize_batchnorm(keras, model, rng):
    """Keras' BatchNormalization starts as the identity: moving statistics and scales drawn
    so that the import's reading of them shows."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta),
                               rng.normal(0, 0.1, mean), rng.uniform(0.5, 1.5, var)])


def test_keras_3d_layers_import_and_predict_what_keras_does(tmp_path):
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    L = keras.layers
    keras.utils.set_random_seed(3)
    x_in = keras.Input((7, 6, 5, 2))
    h = L.Conv3D(8, 3, padding="same", activation="relu")(x_in)
    h = L.Conv3D(4, (2, 3, 1), strides=(1, 2, 1), use_bias=False)(h)
    h = L.ZeroPadding3D(((1, 0), (0, 1), (1, 1)))(h)
    h = L.MaxPool3D(2, strides=(1, 1, 2), padding="same")(h)
    h = L.Cropping3D(((1, 0), (0, 1), (1, 0)))(h)
    h = L.UpSampling3D((1, 2, 1))(h)
    h = L.Conv3D(6, 2, dilation_rate=(2, 1, 1), activation="tanh")(h)
    a = L.AveragePooling3D((3, 1, 1), strides=(2, 1, 1))(h)
    g1 = L.GlobalAveragePooling3D()(a)
    g2 = L.Flatten()(L.GlobalMaxPooling3D(keepdims=True)(h))
    model = keras.Model(x_in, L.Dense(3)(L.Concatenate()([g1, g2])))
    x = np.random.default_rng(0).standard_normal((4, 7, 6, 5, 2)).astype(np.float32)
    project, error = _keras_round_trip(model, tmp_path, x)
    types = {n.type for n in project.graph.nodes.values()}
    assert {"Conv3D", "ZeroPadding3D", "MaxPooling3D", "Cropping3D", "UpSampling3D",
            "AveragePooling3D", "GlobalAveragePooling3D", "GlobalMaxPooling3D"} <= types
    assert error <= TOLERANCE


def test_a_keras_conv3d_with_groups_is_refused_by_name(tmp_path):
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    x_in = keras.Input((4, 4, 4, 4))
    model = keras.Model(x_in, keras.layers.Conv3D(4, 3, groups=2)(x_in))
    path = str(tmp_path / "m.keras")
    model.save(path)
    with pytest.raises(DataError, match="groups=2"):
        keras_import.read(path)


def _torch_3d_net(torch):
    nn, F = torch.nn, torch.nn.functional

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv3d(2, 8, 3, padding=1)
            self.pool1 = nn.MaxPool3d(2)
            self.conv2 = nn.Conv3d(8, 4, (3, 1, 2), stride=(1, 1, 2), bias=False)
            self.pool2 = nn.MaxPool3d(3, stride=2, padding=1)
            self.avg = nn.AvgPool3d((2, 1, 1), stride=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = self.pool1(torch.relu(self.conv1(x)))
            h = F.pad(self.conv2(h), (1, 0, 0, 1, 1, 1))  # zeros on W, H, D
            h = self.avg(self.pool2(h))[:, :, :, 1:, :-1]
            return self.fc(torch.flatten(F.adaptive_avg_pool3d(h, 1), 1))
    return Net()


def test_a_torch_3d_cnn_exported_to_onnx_imports_and_comes_back_from_our_onnx(tmp_path):
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from test_onnx_import_graphs import _torch_export
    from layerloom.interop import onnx_import
    torch.manual_seed(2)
    x = np.random.default_rng(1).standard_normal((3, 2, 8, 9, 10)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(_torch_3d_net(torch), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    types = [g.nodes[n].type for n in g.topo_order()]
    for t in ("Conv3D", "MaxPooling3D", "AveragePooling3D", "ZeroPadding3D", "Cropping3D",
              "GlobalAveragePooling3D"):
        assert t in types, types
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= TOLERANCE
    # Layerloom's ONNX export of the imported project, read back
    ours = str(tmp_path / "ours.onnx")
    interop_export(imported.project, imported.weights, ours)
    again = onnx_import.from_model(onnx.load(ours))
    assert [again.project.graph.nodes[n].type for n in again.project.graph.topo_order()] == types
    x_last = np.moveaxis(x, 1, -1)
    got = Model(again.project, again.weights).predict(x_last)
    assert np.abs(got - want).max() <= TOLERANCE


def _keras_io_3d_cnn(keras, size):
    """get_model of keras.io's examples/vision/3D_image_classification.py (commit
    0766e7be5fbe, the one bench/keras_io_examples.json lists), its input size a parameter."""
    L = keras.layers
    inputs = keras.Input((size, size, size, 1))
    x = inputs
    for filters in (16, 32, 64, 128):
        x = L.Conv3D(filters=filters, kernel_size=3, activation="relu")(x)
        x = L.MaxPool3D(pool_size=2)(x)
        x = L.BatchNormalization()(x)
    x = L.Flatten()(x)
    x = L.Dense(units=256, activation="relu")(x)
    x = L.Dropout(0.3)(x)
    outputs = L.Dense(units=1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="3dcnn")


@pytest.mark.slow
def test_the_keras_io_3d_cnn_imports_and_predicts_what_keras_does(tmp_path):
    """46 is the smallest input its four valid 3x3x3 convolutions and 2x2x2 poolings take
    (46 -> 44 -> 22 -> 20 -> 10 -> 8 -> 4 -> 2 -> 1; 16 would end at none); random weights,
    the batch normalisations' statistics drawn too."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    keras.utils.set_random_seed(7)
    model = _keras_io_3d_cnn(keras, 46)
    _randomize_batchnorm(keras, model, np.random.default_rng(4))
    x = np.random.default_rng(5).uniform(0, 1, (2, 46, 46, 46, 1)).astype(np.float32)
    project, error = _keras_round_trip(model, tmp_path, x)
    assert [n.type for n in project.graph.nodes.values()].count("Conv3D") == 4
    assert error <= 1e-4


def test_a_3d_cnn_trains_with_the_gradients_of_its_float64_reference(rt, rng):
    """The layers inside a model (the model's scratch: Conv3D's columns kept for its backward,
    the height-and-width columns in a pool the convolutions share, the input gradient's
    columns written over them): every weight's gradient of the loss against central
    differences of the graph's float64 reference, as test_model's graph gradients."""
    from test_model import check_mse_gradients
    from layerloom.core.graph import Graph
    g = Graph()
    g.add_node("Input", {"shape": [4, 5, 4, 2]}, id="x")
    chain = [("c1", "Conv3D", {"filters": 4, "kernel_size": 2, "padding": "same",
                               "activation": "relu"}),
             ("p1", "MaxPooling3D", {"pool_size": [2, 2, 2], "padding": "same"}),
             ("z", "ZeroPadding3D", {"padding": [[1, 0], [0, 0], [0, 1]]}),
             ("c2", "Conv3D", {"filters": 3, "kernel_size": [2, 2, 2], "activation": "tanh"}),
             ("u", "UpSampling3D", {"size": [2, 1, 1]}),
             ("a", "AveragePooling3D", {"pool_size": [1, 2, 1], "strides": 1}),
             ("g", "GlobalAveragePooling3D", {}), ("out", "Dense", {"units": 2})]
    prev = "x"
    for nid, t, p in chain:
        g.add_node(t, p, id=nid)
        g.connect(prev, 0, nid, 0)
        prev = nid
    checked = check_mse_gradients(rt, g, {"x": rng.normal(size=(3, 4, 5, 4, 2))},
                                  rng.normal(size=(3, 2)), seed=5)
    assert checked == {"c1/kernel", "c1/bias", "c2/kernel", "c2/bias", "out/kernel",
                       "out/bias"}


@pytest.mark.parametrize("reduce, keep, layer", [("mean", False, "GlobalAveragePooling3D"),
                                                 ("amax", True, "GlobalMaxPooling3D")])
def test_a_torch_mean_over_a_volumes_cells_imports_as_a_global_pooling(tmp_path, reduce, keep,
                                                                        layer):
    """Review: h.mean((2, 3, 4)), the usual way to write a 3-D global average pooling in
    PyTorch, was refused ('axes [2, 3, 4]') while the 2-D mean((2, 3)) imported."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from test_onnx_import_graphs import _torch_export
    from layerloom.interop import onnx_import
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(2, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = getattr(torch.relu(self.conv(x)), reduce)((2, 3, 4), keepdim=keep)
            return self.fc(torch.flatten(h, 1))
    torch.manual_seed(3)
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 5, 6)).astype(np.float32)
    path = str(tmp_path / "m.onnx")
    want = _torch_export(Net(), x, path)
    imported = onnx_import.from_model(onnx.load(path))
    g = imported.project.graph
    assert layer in [g.nodes[n].type for n in g.topo_order()]
    assert np.abs(imported.predict({"x": x})["y"] - want).max() <= TOLERANCE
