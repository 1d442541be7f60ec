"""Keras in (engine/interop/keras_import.py): models saved by Keras 3 (.keras, and its legacy
.h5) and written the way tf.keras 2 wrote them (.h5 with batch_input_shape and nested-list
inbound_nodes) become projects whose outputs are within 1e-5 (absolute, float32) of Keras' on
the same inputs. tests/data/keras/make_keras_models.py wrote the files with Keras' outputs
beside them, so these tests need no Keras; the ones at the end run Keras itself where it is
installed. What Layerloom cannot express is a DataError (exit 2) naming layer, class, option."""
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("h5py")

from layerloom.api import Model  # noqa: E402
from layerloom.core.errors import DataError, LayerloomError  # noqa: E402
from layerloom.interop import keras_import  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "keras")
FIXTURES = ["mlp.keras", "cnn.keras", "functional.keras", "recurrent.keras", "sequence.keras",
            "cnn.h5", "functional.h5", "keras2_functional.h5", "keras2_sequential.h5"]
TOLERANCE = 1e-5
CLI = [sys.executable, "-m", "layerloom.app"]


def _arrays(stem):
    """NAME_x / NAME_y: an array, or {layer name: array} from the .npz."""
    for ext in (".npy", ".npz"):
        path = os.path.join(DATA, stem + ext)
        if os.path.exists(path):
            return np.load(path) if ext == ".npy" else dict(np.load(path))
    raise FileNotFoundError(stem)


def _max_error(got, want):
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
        return max(float(np.abs(got[k] - want[k]).max()) for k in want)
    return float(np.abs(got - want).max())


def _read(name):
    return keras_import.read(os.path.join(DATA, name))


@pytest.mark.parametrize("name", FIXTURES)
def test_imported_models_match_keras(name):
    project, weights = _read(name)
    assert not project.graph.analysis().problems
    stem = name.rsplit(".", 1)[0]
    got = Model(project, weights).predict(_arrays(stem + "_x"))
    err = _max_error(got, _arrays(stem + "_y"))
    assert err <= TOLERANCE, err


def test_the_sequential_mlp_keeps_layers_options_and_compile_config():
    project, weights = _read("mlp.keras")
    g = project.graph
    assert [(n.id, n.type) for n in g.nodes.values()] == [
        ("features", "Input"), ("hidden", "Dense"), ("drop", "Dropout"), ("hidden2", "Dense"),
        ("probs", "Dense")]
    assert g.nodes["features"].params["shape"] == (8,)
    assert g.nodes["hidden2"].params["activation"] == "tanh"
    assert g.nodes["hidden2"].params["kernel_regularizer"] == {"l1": 0.0, "l2": 0.01}
    assert g.nodes["drop"].params["rate"] == 0.2
    assert sorted(weights) == ["hidden/bias", "hidden/kernel", "hidden2/bias", "hidden2/kernel",
                               "probs/bias", "probs/kernel"]
    t = project.training
    assert t["optimizer"]["name"] == "adam"
    assert t["optimizer"]["params"]["learning_rate"] == 0.005  # float32 0.004999... read back
    assert t["optimizer"]["params"]["beta_1"] == 0.8
    assert t["loss"] == {"probs": {"name": "sparse_categorical_crossentropy", "weight": 1.0,
                                   "from_logits": False}}
    assert t["metrics"] == ["accuracy"]


def test_the_functional_model_has_two_inputs_two_outputs_and_their_losses():
    # flat (blocks=False): the nested Sequential's layers inlined, as tests/
    # test_keras_import_blocks.py checks the default, where it is one block
    project, _ = keras_import.read(os.path.join(DATA, "functional.keras"), blocks=False)
    g = project.graph
    assert g.inputs() == ["image", "meta"] and sorted(g.outputs()) == ["cls", "reg"]
    types = {n.id: n.type for n in g.nodes.values()}
    assert types["residual"] == "Add" and types["bn_a"] == "BatchNormalization"
    assert types["drop"] == "Dropout"
    # the nested Sequential's layers, inlined between meta and the Concatenate
    assert types["dense_1"] == "Dense" and types["layer_normalization"] == "LayerNormalization"
    assert [e.src for e in g.in_edges("joined")] == ["pool", "layer_normalization"]
    t = project.training
    assert t["optimizer"] == {"name": "rmsprop", "params": dict(
        t["optimizer"]["params"], learning_rate=0.002, rho=0.8)}
    assert t["loss"]["cls"]["name"] == "sparse_categorical_crossentropy"
    assert t["loss"]["reg"] == {"name": "mean_squared_error", "weight": 0.5,
                                "from_logits": False}
    assert t["metrics"] == {"cls": ["accuracy"], "reg": ["mae"]}


def test_recurrent_weights_keep_keras_gate_order_and_split_the_gru_bias():
    import h5py
    project, weights = _read("recurrent.keras")
    with zipfile.ZipFile(os.path.join(DATA, "recurrent.keras")) as z:
        f = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
        gru_bias = np.asarray(f["layers/gru/cell/vars/2"])
        lstm_kernel = np.asarray(f["layers/lstm/cell/vars/0"])
    assert gru_bias.shape == (2, 12)
    np.testing.assert_array_equal(weights["gru/bias"], gru_bias[0])
    np.testing.assert_array_equal(weights["gru/recurrent_bias"], gru_bias[1])
    np.testing.assert_array_equal(weights["lstm/kernel"], lstm_kernel)
    t = project.training
    assert t["optimizer"]["params"]["learning_rate"] == {
        "schedule": "exponential_decay", "initial_learning_rate": 0.01, "decay_steps": 100,
        "decay_rate": 0.9, "staircase": False}
    assert t["metrics"] == ["accuracy", {"name": "auc", "num_thresholds": 50}]


def test_keras2_spellings():
    project, _ = _read("keras2_sequential.h5")
    g = project.graph
    assert g.inputs() == ["dense_input"]  # tf.keras 2's name for a Sequential's input
    assert g.nodes["dense_input"].params["shape"] == (3,)
    assert project.training["optimizer"]["params"]["momentum"] == 0.5
    project, _ = _read("keras2_functional.h5")
    g = project.graph
    assert g.inputs() == ["pixels", "extra"] and g.outputs() == ["dense_1"]
    assert [e.src for e in g.in_edges("concatenate")] == ["dropout", "dense"]
    assert project.training["metrics"] == {"dense_1": ["accuracy"]}
    assert project.training["optimizer"]["params"]["learning_rate"] == 0.0003


@pytest.mark.parametrize("name, words", [
    ("unsupported_layer.keras", ["'up'", "ConvLSTM1D"]),
    ("unsupported_option.keras", ["'backwards'", "(LSTM)", "go_backwards=True"]),
])
def test_what_layerloom_lacks_is_a_data_error_naming_layer_class_and_option(name, words):
    with pytest.raises(DataError) as e:
        _read(name)
    assert all(w in str(e.value) for w in words), str(e.value)


# -- configs edited by hand (no Keras needed) ---------------------------------------------------
def _edited(tmp_path, source, edit, name="edited.keras"):
    """A copy of the fixture `source` whose config.json `edit` changed."""
    with zipfile.ZipFile(os.path.join(DATA, source)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return str(path)


def _set(index, key, value):
    def edit(config):
        config["config"]["layers"][index]["config"][key] = value
    return edit


@pytest.mark.parametrize("index, key, value, words", [
    (1, "kernel_constraint", {"class_name": "NonNeg", "config": {}},
     ["'hidden'", "(Dense)", "kernel_constraint"]),
    (1, "trainable", "no", ["'hidden'", "trainable='no'", "true or false"]),
    (1, "activation", "sparsemax", ["'hidden'", "activation='sparsemax'"]),
    (1, "activity_regularizer", {"class_name": "L2", "config": {"l2": 0.1}},
     ["activity_regularizer"]),
    (1, "dtype", {"module": "keras", "class_name": "DTypePolicy",
                  "config": {"name": "mixed_float16"}}, ["'hidden'", "dtype"]),
    (1, "kernel_initializer", {"class_name": "TruncatedNormal", "config": {}},
     ["kernel_initializer"]),
    (1, "lora_rank", 4, ["'hidden'", "lora_rank=4"]),
    (2, "noise_shape", [1, None], ["'drop'", "(Dropout)", "noise_shape"]),
    (0, "batch_shape", [None, None], ["(InputLayer)", "batch_shape"]),
])
def test_edited_options_are_refused_by_name(tmp_path, index, key, value, words):
    with pytest.raises(DataError) as e:
        keras_import.read(_edited(tmp_path, "mlp.keras", _set(index, key, value)))
    assert all(w in str(e.value) for w in words), str(e.value)


def test_keras3_spellings_that_change_nothing_are_read(tmp_path):
    def edit(config):
        dense = config["config"]["layers"][1]["config"]
        dense["dtype"] = "float32"  # a string instead of a DTypePolicy
        dense["kernel_initializer"] = "he_uniform"
        dense["future_option"] = None  # unset keys of later Keras versions
    project, _ = keras_import.read(_edited(tmp_path, "mlp.keras", edit))
    assert project.graph.nodes["hidden"].params["kernel_initializer"] == "he_uniform"


def test_a_lambda_is_refused_and_a_recorded_training_flag_is_the_phases(tmp_path):
    """A Lambda holds Python code: refused. A call's recorded training=True (Keras 3's image
    preprocessing layers record their default) is not what Keras' fit, evaluate and predict
    use (they hand every layer their own flag): the layer imports and follows the phase."""
    def lam(config):
        config["config"]["layers"][2]["class_name"] = "Lambda"
    with pytest.raises(DataError, match=r"'drop' \(Lambda\).*Python function"):
        keras_import.read(_edited(tmp_path, "mlp.keras", lam))

    def training_true(config):
        for layer in config["config"]["layers"]:
            if layer["name"] == "drop":
                layer["inbound_nodes"][0]["kwargs"]["training"] = True
    project, _ = keras_import.read(_edited(tmp_path, "functional.keras", training_true))
    assert project.graph.nodes["drop"].type == "Dropout"


def test_compile_options_without_a_layerloom_form_are_refused(tmp_path):
    def amsgrad(config):
        config["compile_config"]["optimizer"]["config"]["amsgrad"] = True
    with pytest.raises(DataError, match="compile config: optimizer Adam option amsgrad"):
        keras_import.read(_edited(tmp_path, "mlp.keras", amsgrad))

    def smoothing(config):
        config["compile_config"]["loss"] = {"class_name": "CategoricalCrossentropy",
                                            "config": {"label_smoothing": 0.1}}
    with pytest.raises(DataError, match="label_smoothing"):
        keras_import.read(_edited(tmp_path, "mlp.keras", smoothing))


def test_an_uncompiled_model_gets_a_loss_from_its_output(tmp_path):
    def uncompiled(config):
        del config["compile_config"]
    project, _ = keras_import.read(_edited(tmp_path, "mlp.keras", uncompiled))
    assert project.training["loss"]["probs"]["name"] == "sparse_categorical_crossentropy"
    assert project.training["optimizer"]["name"] == "adam"


def test_an_output_that_feeds_another_layer_gets_its_own_output_node(tmp_path):
    def also_hidden(config):
        config["config"]["output_layers"].append(["joined", 0, 0])
        config["compile_config"]["loss"]["joined"] = "mse"
    project, weights = keras_import.read(_edited(tmp_path, "functional.keras", also_hidden))
    g = project.graph
    assert sorted(g.outputs()) == ["cls", "joined_output", "reg"]
    assert project.training["loss"]["joined_output"]["name"] == "mean_squared_error"
    got = Model(project, weights).predict(_arrays("functional_x"))
    assert _max_error({k: got[k] for k in ("cls", "reg")}, _arrays("functional_y")) <= TOLERANCE
    assert got["joined_output"].shape == (5, 12)


def test_without_h5py_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(LayerloomError, match=r"pip install 'layerloom\[keras\]'"):
        _read("mlp.keras")


def test_reading_needs_no_keras():
    code = ("import sys; sys.modules['keras'] = None\n"
            "from layerloom.interop import keras_import\n"
            f"p, w = keras_import.read({os.path.join(DATA, 'functional.keras')!r})\n"
            "assert 'keras' not in [m.split('.')[0] for m in sys.modules if sys.modules[m]]\n"
            "print(len(p.graph.nodes), len(w))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    p, w = _read("functional.keras")  # what the same read gives with keras importable
    assert r.returncode == 0 and r.stdout.split() == [str(len(p.graph.nodes)), str(len(w))], \
        r.stderr


# -- the command line -------------------------------------------------------------------------
@pytest.mark.slow
def test_the_command_line_writes_a_project_that_predicts_what_keras_does(tmp_path):
    to = tmp_path / "p.loom"
    r = subprocess.run(CLI + ["--import", os.path.join(DATA, "functional.keras"), "--to",
                              str(to)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["p.loom", "p.loom.weights.npz"]
    out = tmp_path / "y.npz"
    p = subprocess.run(CLI + ["--predict", str(to), "--input",
                              os.path.join(DATA, "functional_x.npz"), "--output", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert _max_error(dict(np.load(out)), _arrays("functional_y")) <= TOLERANCE


def _corrupt_zip(path):
    data = open(os.path.join(DATA, "mlp.keras"), "rb").read()
    path.write_bytes(data[: len(data) // 2])


def _no_config(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", b"")


def _not_a_model(path):
    path.write_bytes(b"this is not a model\n")


@pytest.mark.parametrize("make, words", [(_corrupt_zip, "not a"), (_no_config, "config.json"),
                                         (_not_a_model, "not a Keras model")])
def test_a_broken_file_exits_2_and_writes_nothing(tmp_path, make, words):
    src = tmp_path / "model.keras"
    make(src)
    r = subprocess.run(CLI + ["--import", str(src), "--to", str(tmp_path / "p.loom")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]


@pytest.mark.parametrize("cls, keepdims", [("GlobalAveragePooling1D", False),
                                           ("GlobalMaxPooling1D", False),
                                           ("GlobalAvgPool1D", True), ("GlobalMaxPool1D", True)])
def test_a_1d_global_pooling_built_in_keras_predicts_what_keras_does(tmp_path, cls, keepdims):
    """Keras' GlobalAverage/MaxPooling1D (and the GlobalAvg/MaxPool1D aliases), with and
    without keepdims, in a model saved by Keras itself."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    x = keras.Input((6, 4))
    h = getattr(keras.layers, cls)(keepdims=keepdims)(keras.layers.Conv1D(5, 2)(x))
    model = keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(h)))
    path = str(tmp_path / "m.keras")
    model.save(path)
    xs = np.random.default_rng(0).standard_normal((7, 6, 4)).astype(np.float32)
    project, weights = keras_import.read(path)
    want_type = "GlobalMaxPooling1D" if "Max" in cls else "GlobalAveragePooling1D"
    assert [n.params for n in project.graph.nodes.values() if n.type == want_type] == [
        {"keepdims": keepdims}]
    got = Model(project, weights).predict(xs)
    assert _max_error(got, model.predict(xs, verbose=0)) <= TOLERANCE


# -- calls with several tensors, nested models, the error's place ---------------------------------
def test_a_call_with_several_positional_tensors_maps_them_to_inputs_in_order():
    """mha(query, value) in Keras 3's config: two positional tensors, then key= by name; they
    are the layer's inputs in the order query, value, key."""
    def tensor(name):
        return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}
    node = {"args": [tensor("q"), tensor("v")], "kwargs": {"key": tensor("k"), "mask": None}}

    def fail(why):
        raise AssertionError(why)
    refs, kwargs = keras_import._inbound(node, fail, "MultiHeadAttention")
    assert refs == [("q", 0, 0), ("v", 0, 0), ("k", 0, 0)] and kwargs == {"mask": None}
    with pytest.raises(DataError, match=r"'d' \(Dense\) is called with a tensor as its "
                                        r"argument other="):
        b = keras_import._Builder(None, "--import")
        b.inbound({"name": "d", "class_name": "Dense"},
                  {"args": [tensor("q")], "kwargs": {"other": tensor("v")}})


def test_a_keras_multi_head_attention_call_names_the_layer(tmp_path):
    """MultiHeadAttention(query, value): read as a layer of two inputs, or, where Layerloom has
    no such layer, refused naming it (never a message about positional arguments)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    q, v = keras.Input((4, 6), name="q"), keras.Input((5, 6), name="v")
    y = keras.layers.MultiHeadAttention(2, 3, name="mha")(q, v)
    model = keras.Model([q, v], keras.layers.Dense(2)(y))
    path = str(tmp_path / "mha.keras")
    model.save(path)
    try:
        project, weights = keras_import.read(path)
    except DataError as e:
        assert "'mha' (MultiHeadAttention)" in str(e) and "positional" not in str(e), str(e)
        return
    assert [e.src for e in project.graph.in_edges("mha")] == ["q", "v"]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((3, 4, 6)).astype(np.float32),
          rng.standard_normal((3, 5, 6)).astype(np.float32)]
    got = Model(project, weights).predict(dict(zip(project.graph.inputs(), xs)))
    assert _max_error(got, model.predict(xs, verbose=0)) <= TOLERANCE


def test_an_import_error_names_the_file_once_on_the_command_line(tmp_path):
    r = subprocess.run(CLI + ["--import", os.path.join(DATA, "unsupported_layer.keras"),
                              "--to", str(tmp_path / "p.loom")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "'up'" in r.stderr, r.stderr
    assert r.stderr.count("unsupported_layer.keras") == 1, r.stderr
    missing = str(tmp_path / "gone.keras")
    r = subprocess.run(CLI + ["--import", missing, "--to", str(tmp_path / "p.loom")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "file not found" in r.stderr, r.stderr
    assert r.stderr.count("gone.keras") == 1, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_a_keras_application_used_as_a_layer_is_flattened_with_its_weights(tmp_path, ext):
    """base = MobileNetV2(include_top=False); base(inp) and a head, as when fine-tuning: the
    nested Functional model's layers join the graph with their weights (random here, batch
    statistics included) and the model predicts what Keras does."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    base = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35,
                                          input_shape=(32, 32, 3))
    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(base(inp))
    model = keras.Model(inp, keras.layers.Dense(3, name="head")(x))
    rng = np.random.default_rng(0)
    for v in model.weights:
        a = rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path else \
            rng.standard_normal(v.shape) * 0.3
        v.assign(a.astype(np.float32))
    path = str(tmp_path / f"m.{ext}")
    model.save(path)
    project, weights = keras_import.read(path, blocks=False)  # flat; blocks: its own test
    g = project.graph
    assert g.inputs() == ["image"] and g.outputs() == ["head"]
    assert "Conv1" in g.nodes and g.nodes["Conv1"].type == "Conv2D"
    assert len(weights) == len(model.weights)
    xs = rng.standard_normal((2, 32, 32, 3)).astype(np.float32)
    got = Model(project, weights).predict(xs)
    assert _max_error(got, model.predict(xs, verbose=0)) <= TOLERANCE
    base.trainable = False  # fine-tuning: the base's layers import frozen, the head not
    model.save(path)
    project, weights = keras_import.read(path, blocks=False)
    g = project.graph
    assert set(g.frozen()) == {n for n in g.nodes if n not in ("image", "pool", "head")}
    assert _max_error(Model(project, weights).predict(xs),
                      model.predict(xs, verbose=0)) <= TOLERANCE
