"""ConvLSTM2D from Keras (issue 28): Keras models using it, saved by Keras and imported, predict
what Keras does on the same inputs and weights (1e-5, as test_keras_import); what Layerloom's
layer lacks is refused naming the layer and the option; keras.io's next-frame video prediction
(examples/vision/conv_lstm.py) at a small size imports and predicts Keras' outputs (1e-4, as
the 3-D CNN's in test_layers3d). The forward and backward passes against the float64 reference
are test_layers' (the declaration's examples); ONNX, PyTorch code and Keras out are
test_onnx_export's, test_torch_code's and test_keras_export's on the same examples."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

from layerloom.api import Model  # noqa: E402
from layerloom.core.errors import DataError  # noqa: E402
from layerloom.interop import keras_import  # noqa: E402
from test_layers3d import _randomize_batchnorm  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TOLERANCE = 1e-5


def _keras():
    keras = pytest.importorskip("keras")
    pytest.importorskip("h5py")
    return keras


def _imported(model, tmp_path):
    path = str(tmp_path / "m.keras")
    model.save(path)
    return keras_import.read(path)


def _error(got, want):
    if isinstance(want, (list, tuple)):
        got = [got[k] for k in sorted(got)] if isinstance(got, dict) else got
        return max(_error(g, w) for g, w in zip(got, want))
    return float(np.abs(np.asarray(got) - np.asarray(want)).max())


def _draw_weights(model, rng, scale, classes):
    """The weights of the layers of those Keras classes drawn (Keras' start has zero biases and
    a unit forget bias): a kernel's standard deviation scale / sqrt(fan in), a bias's 0.3."""
    for layer in model.layers:
        if isinstance(layer, classes):
            layer.set_weights([rng.normal(0, scale / np.sqrt(np.prod(w.shape[:-1])) if w.ndim > 1
                                          else 0.3, w.shape) for w in layer.get_weights()])


@pytest.mark.parametrize("options, steps", [
    ({"filters": 3, "kernel_size": 3, "padding": "same", "return_sequences": True}, 3),
    ({"filters": 3, "kernel_size": (3, 2)}, 3),
    ({"filters": 2, "kernel_size": 1, "activation": "relu", "return_sequences": True}, 4),
    ({"filters": 2, "kernel_size": 2, "strides": 2, "padding": "same", "use_bias": False}, 2),
    ({"filters": 4, "kernel_size": 2, "dilation_rate": 2, "padding": "same",
      "activation": "elu", "unit_forget_bias": False}, 3),
])
def test_a_keras_conv_lstm_imports_and_predicts_what_keras_does(tmp_path, options, steps):
    keras = _keras()
    keras.utils.set_random_seed(1)
    x_in = keras.Input((steps, 5, 4, 2))
    model = keras.Model(x_in, keras.layers.ConvLSTM2D(name="clstm", **options)(x_in))
    _draw_weights(model, np.random.default_rng(2), 2.0, keras.layers.ConvLSTM2D)
    project, weights = _imported(model, tmp_path)
    assert [n.type for n in project.graph.nodes.values()].count("ConvLSTM2D") == 1
    x = np.random.default_rng(3).standard_normal((3, steps, 5, 4, 2)).astype(np.float32)
    got = Model(project, weights).predict(x)
    assert _error(got, model.predict(x, verbose=0)) <= TOLERANCE


def test_a_keras_conv_lstm_with_its_states_and_a_layer_after_it(tmp_path):
    """return_state's h and c as outputs of their own, and the sequence feeding a Conv3D."""
    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(4)
    x_in = keras.Input((3, 6, 5, 1))
    seq, h, c = L.ConvLSTM2D(3, 3, padding="same", return_sequences=True, return_state=True,
                             name="clstm")(x_in)
    y = L.Conv3D(2, 3, padding="same", name="head")(seq)
    model = keras.Model(x_in, [y, L.Flatten(name="h_flat")(h), L.Flatten(name="c_flat")(c)])
    _draw_weights(model, np.random.default_rng(5), 2.0, (L.ConvLSTM2D, L.Conv3D))
    project, weights = _imported(model, tmp_path)
    x = np.random.default_rng(6).standard_normal((2, 3, 6, 5, 1)).astype(np.float32)
    want = dict(zip(["head", "h_flat", "c_flat"], model.predict(x, verbose=0)))
    got = Model(project, weights).predict(x)
    assert sorted(got) == sorted(want)
    assert max(_error(got[k], want[k]) for k in want) <= TOLERANCE


@pytest.mark.parametrize("options, words", [
    ({"go_backwards": True}, ["'clstm'", "(ConvLSTM2D)", "go_backwards=True"]),
    ({"recurrent_activation": "hard_sigmoid"}, ["(ConvLSTM2D)", "recurrent_activation"]),
    ({"activation": "gelu"}, ["(ConvLSTM2D)", "activation='gelu'"]),
    ({"recurrent_dropout": 0.2}, ["(ConvLSTM2D)", "recurrent_dropout=0.2"]),
    ({"data_format": "channels_first"}, ["(ConvLSTM2D)", "data_format='channels_first'"]),
])
def test_what_the_layer_lacks_is_refused_by_name(tmp_path, options, words):
    keras = _keras()
    shape = (3, 2, 5, 4) if options.get("data_format") == "channels_first" else (3, 5, 4, 2)
    x_in = keras.Input(shape)
    model = keras.Model(x_in, keras.layers.ConvLSTM2D(2, 3, name="clstm", **options)(x_in))
    with pytest.raises(DataError) as e:
        _imported(model, tmp_path)
    assert all(w in str(e.value) for w in words), str(e.value)


def _keras_io_conv_lstm(keras, frames, size, filters):
    """The model of keras.io's examples/vision/conv_lstm.py (commit 0a4be8bbc3ae, the one
    bench/keras_io_examples.json lists): three ConvLSTM2D (5x5, 3x3, 1x1, relu, same, the
    sequence returned) with BatchNormalization between, then a 3x3x3 Conv3D to one sigmoid
    channel; its frames, frame size and filters (64 there) parameters. Its input takes any
    number of frames (None); Layerloom's layers take a fixed number, given here."""
    L = keras.layers
    inp = L.Input(shape=(frames, size, size, 1))
    x = L.ConvLSTM2D(filters=filters, kernel_size=(5, 5), padding="same",
                     return_sequences=True, activation="relu")(inp)
    x = L.BatchNormalization()(x)
    x = L.ConvLSTM2D(filters=filters, kernel_size=(3, 3), padding="same",
                     return_sequences=True, activation="relu")(x)
    x = L.BatchNormalization()(x)
    x = L.ConvLSTM2D(filters=filters, kernel_size=(1, 1), padding="same",
                     return_sequences=True, activation="relu")(x)
    x = L.Conv3D(filters=1, kernel_size=(3, 3, 3), activation="sigmoid", padding="same")(x)
    return keras.models.Model(inp, x)


@pytest.mark.slow
def test_the_keras_io_conv_lstm_imports_and_predicts_what_keras_does(tmp_path):
    """Five frames of 16x16 (the example's are 64x64, 19 frames in), 8 filters (64 there);
    random weights large enough that the outputs spread over (0, 1) (Keras' initial ones leave
    them within 0.02 of 0.5; with these, zeroing one recurrent kernel moves an output by 0.5),
    the batch normalisations' statistics drawn."""
    keras = _keras()
    keras.utils.set_random_seed(8)
    model = _keras_io_conv_lstm(keras, 5, 16, 8)
    _draw_weights(model, np.random.default_rng(11), 3.0,
                  (keras.layers.ConvLSTM2D, keras.layers.Conv3D))
    _randomize_batchnorm(keras, model, np.random.default_rng(9))
    project, weights = _imported(model, tmp_path)
    types = [n.type for n in project.graph.nodes.values()]
    assert types.count("ConvLSTM2D") == 3 and types.count("BatchNormalization") == 2
    assert "Conv3D" in types
    x = np.random.default_rng(10).uniform(0, 1, (2, 5, 16, 16, 1)).astype(np.float32)
    assert _error(Model(project, weights).predict(x), model.predict(x, verbose=0)) <= 1e-4


def test_its_onnx_export_read_back_is_refused_naming_a_node(rng, tmp_path):
    """ONNX has no operator of its own for it: the unrolled steps of our export are refused by
    the import, naming the node it stops at, never read as other layers."""
    onnx = pytest.importorskip("onnx")
    from layerloom.interop import onnx_export, onnx_import
    from layerloom.project import loom
    from test_onnx_export import _graph_for, _random_weights
    g = _graph_for("ConvLSTM2D", {"filters": 2, "kernel_size": 3, "padding": "same"},
                   [(3, 5, 4, 2)])
    path = str(tmp_path / "m.onnx")
    onnx.save(onnx_export.to_onnx(loom.Project(g), _random_weights(g, rng)), path)
    with pytest.raises(DataError) as e:
        onnx_import.read(path)
    assert "ONNX node 'node/" in str(e.value), str(e.value)
