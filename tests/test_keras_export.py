"""Keras export (engine/interop/keras_export.py: a .keras model; keras_code.py: a training
script) against the engine: every layer type's declaration examples as a one-layer graph with
random weights, run by Layerloom on the device and by Keras 3 (torch backend) on the same
float32 inputs; the bundled examples through their fitted normalisation on raw inputs, both
from the .keras file that keras.saving.load_model reads and from the written script's
build_model(); one training step from the same weights.

Tolerance: max |Keras - Layerloom| <= 1e-5 for outputs (measured: <= 1.9e-6, a Lambda's
softplus(30 x); most cases below 5e-7), and 1e-4 for the loss after one optimizer step
(measured in test_one_training_step_gives_the_same_loss). Needs keras and torch: skipped
where either is missing."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from layerloom.core.errors import LayerloomError  # noqa: E402
from layerloom.interop import export as interop_export  # noqa: E402
from layerloom.interop import keras_code, keras_export  # noqa: E402
from layerloom.project import loom  # noqa: E402
from layerloom.train.model import Model  # noqa: E402
from test_onnx_export import (CASES, EXAMPLE_PROJECTS, EXAMPLES, _case_id,  # noqa: E402
                              _graph_for, _inputs, _random_weights, example_case)

TOL = 1e-5
STEP_TOL = 1e-4
# Keras' own warnings about numpy 2's __array__ protocol, not ours
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _by_output(model, got, outputs):
    """Keras' predict result as {output id: array}."""
    if isinstance(got, dict):
        return {k: np.asarray(v) for k, v in got.items()}
    if not isinstance(got, (list, tuple)):
        got = [got]
    names = [t.name.split("/")[0] for t in model.outputs]
    assert len(got) == len(outputs)
    return dict(zip(outputs if len(outputs) == 1 else names, map(np.asarray, got)))


def _keras_in(xs):
    return next(iter(xs.values())) if len(xs) == 1 else dict(xs)


def _max_error(got, want):
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
    return max(float(np.abs(got[k] - want[k]).max()) if want[k].size else 0.0 for k in want)


@pytest.mark.parametrize("type_id,params,shapes", CASES, ids=[_case_id(*c) for c in CASES])
def test_layer_matches_engine(rt, rng, type_id, params, shapes):
    g = _graph_for(type_id, params, shapes)
    ws = _random_weights(g, rng)
    xs = _inputs(g, rng, batch=3)
    want = Model(g, rt, 3, weights=ws).predict(xs)
    model = keras_export.to_keras(loom.Project(g), ws, compile=False)
    assert [layer.name for layer in model.layers if layer.name == "node"] == ["node"]
    got = _by_output(model, model.predict(_keras_in(xs), verbose=0), g.outputs())
    assert _max_error(got, want) <= TOL


def _load_script(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", EXAMPLE_PROJECTS)
def test_bundled_example_matches_engine_on_raw_inputs(rt, tmp_path, name):
    """The .keras file and the script's build_model() take the raw arrays that Layerloom's
    predict path takes (test_onnx_export.example_case)."""
    project, weights, by_node, want = example_case(rt, name)
    outputs = project.graph.outputs()

    path = tmp_path / f"{name}.keras"
    assert interop_export(project, weights, str(path)) == "keras"
    loaded = keras.saving.load_model(str(path))
    got = _by_output(loaded, loaded.predict(_keras_in(by_node), verbose=0), outputs)
    assert _max_error(got, want) <= TOL
    assert loaded.optimizer is not None and loaded.loss is not None  # compiled as it trains

    script = tmp_path / "train_keras.py"
    interop_export(project, weights, str(script), "keras-code")
    assert (tmp_path / "train_keras.weights.npz").exists()
    model = _load_script(str(script)).build_model()
    got = _by_output(model, model.predict(_keras_in(by_node), verbose=0), outputs)
    assert _max_error(got, want) <= TOL


def _spirals(optimizer, rows=64):
    project = loom.load(os.path.join(EXAMPLES, "spirals.loom"))
    project.training = {**project.training, "optimizer": optimizer, "metrics": []}
    return project


@pytest.mark.parametrize("optimizer", [
    {"name": "sgd", "params": {"learning_rate": 0.1, "momentum": 0.9}},
    {"name": "adam", "params": {"learning_rate": 0.01}},
    {"name": "rmsprop", "params": {"learning_rate": 0.01}},
], ids=lambda o: o["name"])
def test_one_training_step_gives_the_same_loss(rt, optimizer):
    """The same 64 rows, one full batch, the same starting weights: the loss before and after
    one optimizer step agrees within 1e-4 (the update rules and the loss are Keras')."""
    import layerloom
    project = _spirals(optimizer)
    from layerloom.data.prepare import prepare_data
    data = prepare_data(project)
    x, y = data.x["point"][:64], data.y["class"][:64]
    model = layerloom.Model(project)
    start = model.get_weights() or model.session.model.get_weights()
    before = model.evaluate(x, y, batch_size=64)["loss"]
    km = keras_export.to_keras(project, start)
    k_before = float(km.test_on_batch(x, y.reshape(-1).astype(np.float32)))
    model.fit(x, y, epochs=1, batch_size=64, validation_split=0.0, verbose=False)
    after = model.evaluate(x, y, batch_size=64)["loss"]
    km.train_on_batch(x, y.reshape(-1).astype(np.float32))
    k_after = float(km.test_on_batch(x, y.reshape(-1).astype(np.float32)))
    assert abs(before - k_before) <= STEP_TOL
    assert abs(after - before) > 10 * STEP_TOL  # the step changed something
    print(f"{optimizer['name']}: loss {before:.6f} -> {after:.6f}; Keras {k_before:.6f} -> "
          f"{k_after:.6f}")
    assert abs(after - k_after) <= STEP_TOL, (before, after, k_after)


def test_an_option_without_keras_form_is_refused_naming_node_and_option(tmp_path):
    """Keras has no initializer for Layerloom's lstm_bias (its LSTM spells it
    unit_forget_bias), so a Dense with it cannot be written."""
    project = _spirals({"name": "adam", "params": {}})
    weights = layerloom_weights(project)
    project.graph.nodes["hidden_2"].params["bias_initializer"] = "lstm_bias"
    with pytest.raises(LayerloomError) as e:
        interop_export(project, weights, str(tmp_path / "m.keras"))
    assert "hidden_2" in str(e.value) and "bias_initializer" in str(e.value)
    assert os.listdir(tmp_path) == []  # nothing written


def test_a_loss_without_keras_form_is_refused_and_writes_nothing(tmp_path):
    project = _spirals({"name": "adam", "params": {}})
    project.training["loss"] = {"class": {"name": "no_such_loss"}}
    with pytest.raises(LayerloomError) as e:
        interop_export(project, None, str(tmp_path / "train.py"), "keras-code")
    assert "no_such_loss" in str(e.value)
    assert os.listdir(tmp_path) == []


def test_missing_keras_is_one_clear_message(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "keras" else object())
    with pytest.raises(keras_export.KerasMissing, match=r"pip install 'layerloom\[keras-export\]'"):
        keras_export.require_keras()


def test_the_script_reads_its_weights_in_layerloom_names(tmp_path, rng):
    """The weights file beside the script is Layerloom's own layout ("node/name"): a model
    trained by the script and saved that way comes back with `weights` in a project."""
    project = _spirals({"name": "adam", "params": {}})
    weights = layerloom_weights(project)
    text = keras_code.write_code(project, weights, str(tmp_path / "train_keras.py"))
    assert "def build_model(" in text and "keras.Input(shape=(2,), name='point')" in text
    with np.load(tmp_path / "train_keras.weights.npz") as z:
        assert set(z.files) == set(weights)
        for k in z.files:
            np.testing.assert_array_equal(z[k], weights[k])


def layerloom_weights(project):
    import layerloom
    return layerloom.Model(project).session.model.get_weights()


@pytest.mark.slow
def test_the_script_trains_as_a_program(tmp_path):
    """`python train_keras.py --epochs 2 --save model.keras` trains spirals on the project's
    data (split as Layerloom splits it) and its loss falls."""
    project = _spirals({"name": "adam", "params": {"learning_rate": 0.01}})
    project.path = os.path.join(EXAMPLES, "spirals.loom")
    script = tmp_path / "train_keras.py"
    keras_code.write_code(project, layerloom_weights(project), str(script))
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    r = subprocess.run([sys.executable, str(script), "--epochs", "3", "--save",
                        str(tmp_path / "out.keras")], capture_output=True, text=True,
                       env=env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    losses = [float(line.split("loss: ")[1].split()[0]) for line in r.stdout.splitlines()
              if " loss: " in line]
    assert len(losses) == 3 and losses[-1] < losses[0], r.stdout
    assert "test:" in r.stdout
    assert keras.saving.load_model(str(tmp_path / "out.keras")) is not None


@pytest.mark.parametrize("name", ["spirals", "multitask", "wine_csv", "shapes_folder"])
def test_exported_keras_model_imports_back_to_the_same_model(rt, tmp_path, name):
    """--export to .keras, then --import of that file: the same layers, the same weights and
    the same outputs (the Normalization layers become the project's fitted statistics:
    wine_csv's standardize, shapes_folder's x / 255)."""
    from layerloom.interop import keras_import
    project, weights, by_node, want = example_case(rt, name)
    path = tmp_path / f"{name}.keras"
    interop_export(project, weights, str(path))
    back, back_weights = keras_import.read(str(path))
    assert set(back.graph.nodes) == set(project.graph.nodes)
    for k, a in weights.items():
        np.testing.assert_allclose(back_weights[k], a, rtol=0, atol=0)
    import layerloom
    keras_import.convert(str(path), str(tmp_path / "back.loom"))  # --import's files
    got = layerloom.load(str(tmp_path / "back.loom")).predict(by_node)
    got = got if isinstance(got, dict) else {project.graph.outputs()[0]: got}
    assert _max_error({k: got[k] for k in want}, want) <= TOL


def test_a_normalization_inside_the_graph_is_a_normalization_layer(tmp_path):
    """Right after an Input a Normalization is the Input's fitted normalisation; elsewhere it
    is a Normalization layer with the statistics its config gives (tests/test_norm_shape.py
    has the adapted ones)."""
    from layerloom.interop import keras_import
    x = keras.Input(shape=(3,), name="x")
    h = keras.layers.Dense(4, name="d")(x)
    y = keras.layers.Normalization(mean=[0.5] * 4, variance=[4.0] * 4, name="norm")(h)
    path = str(tmp_path / "m.keras")
    keras.Model(x, y).save(path)
    project, weights = keras_import.read(path)
    assert project.graph.nodes["norm"].type == "Normalization"
    np.testing.assert_array_equal(weights["norm/variance"], [4.0] * 4)


def test_an_adapted_normalization_comes_in_as_the_fitted_statistics(tmp_path, rng):
    """A Keras user's Normalization layer adapted to data (its statistics are variables in
    the weights file, not config) gives the same outputs in Layerloom."""
    import layerloom
    from layerloom.interop import keras_import
    data = rng.normal(3.0, 2.0, size=(50, 3)).astype(np.float32)
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(data)
    x = keras.Input(shape=(3,), name="x")
    y = keras.layers.Dense(2, activation="softmax", name="out")(norm(x))
    model = keras.Model(x, y)
    path = str(tmp_path / "m.keras")
    model.save(path)
    keras_import.convert(path, str(tmp_path / "m.loom"))
    got = layerloom.load(str(tmp_path / "m.loom")).predict(data[:7])
    assert float(np.abs(got - model.predict(data[:7], verbose=0)).max()) <= TOL


def _spirals_example():
    return loom.load(os.path.join(EXAMPLES, "spirals.loom"))


def test_an_export_checks_its_package_first_and_names_the_extra(tmp_path, monkeypatch):
    """Issue 26, item 7: what an export needs is checked before anything is built or asked
    for, and the message names the extra that installs it; a script (text) needs nothing."""
    from layerloom import interop
    monkeypatch.setitem(sys.modules, "keras", None)
    why = interop.missing("keras")
    assert "keras" in why and "pip install 'layerloom[keras-export]'" in why
    with pytest.raises(interop.PackageMissing) as e:
        interop_export(_spirals_example(), None, str(tmp_path / "m.keras"))
    assert str(e.value) == why and e.value.exit_code == 2 and os.listdir(tmp_path) == []
    assert interop.missing("keras-code") is None and interop.missing("pytorch-code") is None
    monkeypatch.setitem(sys.modules, "keras", keras)
    for backend in ("torch", "tensorflow", "jax"):
        monkeypatch.setitem(sys.modules, backend, None)
    why = interop.missing("keras")
    assert "backend" in why and "layerloom[keras-export]" in why


def test_an_export_that_fails_is_an_export_failure_not_training(tmp_path, monkeypatch):
    from layerloom import interop

    def broken(project, weights, path):
        raise TypeError("something inside keras")
    monkeypatch.setattr(keras_export, "export", broken)
    with pytest.raises(interop.ExportFailed) as e:
        interop_export(_spirals_example(), None, str(tmp_path / "m.keras"))
    assert str(e.value) == ("writing the Keras model failed: TypeError: something inside keras")
    assert e.value.exit_code == 1


def test_the_command_line_says_what_to_install(tmp_path, monkeypatch, capsys):
    """`layerloom --export P --to m.keras` without keras said "training failed:
    ModuleNotFoundError: ..."."""
    from layerloom import api
    from layerloom.cli import main as cli
    from layerloom.core.fileio import npz_bytes
    project = _spirals_example()
    (tmp_path / "weights.npz").write_bytes(npz_bytes(
        api.Model(project).session.model.get_weights()))
    import json
    (tmp_path / "trained.loom").write_text(json.dumps(
        loom.trained_dict(project, str(tmp_path), None)))
    monkeypatch.setitem(sys.modules, "keras", None)
    code = cli.main(["--export", str(tmp_path / "trained.loom"), "--to",
                     str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'layerloom[keras-export]'" in err, err
    assert "training" not in err and not (tmp_path / "m.keras").exists()


def test_a_metric_declares_its_keras_form_for_export_and_import(monkeypatch):
    """Issue 27, item 3: the Keras export and import read a metric's declaration (its Keras
    class, arguments and other Keras names), not tables of their own."""
    from layerloom.interop import keras_compile
    from layerloom.train import metrics
    from layerloom.core.params import Float
    for name in ("KINDS", "ALIASES"):
        monkeypatch.setattr(metrics, name, dict(getattr(metrics, name)))
    metrics.register(metrics.MetricKind(
        "fake_hinge", "A metric with a Keras form.", "abs_err", lambda m, p, t: 0.0,
        (Float("margin", 1.0, help="The margin."),), keras="Hinge",
        keras_args=(("margin", "margin"),), keras_names=("hinge",)))
    assert keras_code.metric_source("fake_hinge", "mean_squared_error", "p") == \
        "keras.metrics.Hinge(margin=1.0, name='fake_hinge')"
    assert keras_code.metric_source({"name": "fake_hinge", "margin": 2.0}, "mse", "p") == \
        "keras.metrics.Hinge(margin=2.0, name='fake_hinge')"
    names = keras_compile._keras_metric_names()
    assert names["Hinge"] == names["hinge"] == "fake_hinge"
    assert names["SparseCategoricalAccuracy"] == names["acc"] == "accuracy"
    assert keras_code.metric_source("accuracy", "sparse_categorical_crossentropy", "p") == \
        "keras.metrics.SparseCategoricalAccuracy(name='accuracy')"
    assert keras_code.metric_source("acc", "mean_squared_error", "p") == "'acc'"


def test_rescaling_and_identity_import_as_layers_and_predict_what_keras_does(tmp_path, rng):
    """Keras' Rescaling right after an Input (pixels to -0.5..0.5) and an Identity are layers
    in Layerloom too, not the Input's normalisation; a per-channel scale too."""
    import layerloom
    from layerloom.interop import keras_import
    x = keras.Input(shape=(4, 4, 3), name="x")
    h = keras.layers.Rescaling(1 / 255, offset=-0.5, name="rescale")(x)
    h = keras.layers.Identity(name="same")(h)
    y = keras.layers.Dense(2, name="out")(keras.layers.Flatten(name="flat")(h))
    model = keras.Model(x, y)
    path = str(tmp_path / "m.keras")
    model.save(path)
    keras_import.convert(path, str(tmp_path / "m.loom"))
    loaded = layerloom.load(str(tmp_path / "m.loom"))
    assert {n.type for n in loaded.project.graph.nodes.values()} >= {"Rescaling", "Identity"}
    data = rng.uniform(0, 255, size=(5, 4, 4, 3)).astype(np.float32)
    assert float(np.abs(loaded.predict(data) - model.predict(data, verbose=0)).max()) <= TOL
    per_channel = keras.Model(x, keras.layers.Rescaling([0.5, 1.0, 2.0], name="rc")(x))
    per_channel.save(str(tmp_path / "pc.keras"))
    project = keras_import.read(str(tmp_path / "pc.keras"))[0]
    assert project.graph.nodes["rc"].params["scale"] == (0.5, 1.0, 2.0)
