"""An output trained towards the model's own input (issue 31, item 5: an autoencoder without
the trick of a second output): dataset.targets {output: "=input:<Input id>"} is the rows that
Input receives, scaled and normalised as the model sees them."""
import numpy as np
import pytest

from layerloom.core.errors import DataError
from layerloom.core.graph import Graph
from layerloom.data import prepare
from layerloom.project import loom as projectfile
from layerloom.project.loom import Project


def autoencoder(tmp_path, normalize="standardize", target="=input:x", n=64):
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 3.0, (n, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(n, np.float32))
    g = Graph()
    g.add_node("Input", {"shape": [8]}, id="x")
    g.add_node("Dense", {"units": 3, "activation": "tanh"}, id="code")
    g.add_node("Dense", {"units": 8}, id="decoded")
    g.connect("x", 0, "code", 0)
    g.connect("code", 0, "decoded", 0)
    p = Project(g, dataset={"source": "npz", "path": str(tmp_path / "d.npz"),
                            "normalize": normalize, "targets": {"decoded": target}})
    p.training["loss"] = {"decoded": {"name": "mean_squared_error", "weight": 1.0,
                                      "from_logits": False}}
    p.training["validation_split"] = 0.25
    return p, x.astype(np.float64)


def test_the_target_is_the_input_as_the_model_receives_it(tmp_path):
    p, x = autoencoder(tmp_path)
    data = prepare.prepare_data(p)
    want = (x - x.mean(0)) / x.std(0)  # standardised with the training rows' statistics
    np.testing.assert_allclose(data.x["x"], want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(data.y["decoded"], want, rtol=1e-4, atol=1e-4)
    assert data.mapping["targets"] == {"decoded": "=input:x"}
    raw, _ = autoencoder(tmp_path, normalize="none")
    np.testing.assert_array_equal(prepare.prepare_data(raw).y["decoded"], x.astype(np.float32))
    assert prepare.input_target("=input:x") == "x" and prepare.input_target("y") is None


def test_an_autoencoder_trains_towards_its_input(tmp_path):
    from layerloom.train.session import Session
    p, x = autoencoder(tmp_path, n=256)
    p.training["optimizer"] = {"name": "adam", "params": {"learning_rate": 0.02}}
    p.training["metrics"] = []
    data = prepare.prepare_data(p)
    h = Session(p, device=None).fit(data, epochs=15)
    losses = [e["loss"] for e in h["epochs"]]
    assert "val_loss" in h["epochs"][0]
    assert losses[-1] < 0.7 * losses[0], losses  # it learns to reproduce what it is given


def test_a_target_naming_no_input_is_refused_with_the_inputs_named(tmp_path):
    p, _ = autoencoder(tmp_path, target="=input:nope")
    with pytest.raises(DataError, match=r"names no Input node 'nope'.*the Inputs: 'x'") as e:
        prepare.prepare_data(p)
    assert e.value.place == "dataset.targets.decoded"


def test_the_file_keeps_the_choice_and_renaming_the_input_follows_it(tmp_path):
    from layerloom.project.rename import rename
    p, _ = autoencoder(tmp_path)
    path = str(tmp_path / "ae.loom")
    projectfile.save(p, path)
    q = projectfile.load(path)
    assert q.dataset["targets"] == {"decoded": "=input:x"}
    rename(q, "x", "pixels")
    assert q.dataset["targets"] == {"decoded": "=input:pixels"}
    assert prepare.prepare_data(q).y["decoded"].shape == (64, 8)


# -- the Results tab's figures for outputs that are no classifier -----------------------------
def _image_autoencoder(tmp_path, n=40):
    rng = np.random.default_rng(1)
    x = rng.random((n, 6, 6, 1)).astype(np.float32)
    np.savez(tmp_path / "i.npz", x=x, y=np.zeros(n, np.float32))
    g = Graph()
    g.add_node("Input", {"shape": [6, 6, 1]}, id="image")
    g.add_node("Conv2D", {"filters": 1, "kernel_size": 3, "padding": "same",
                          "activation": "sigmoid"}, id="decoded")
    g.connect("image", 0, "decoded", 0)
    p = Project(g, dataset={"source": "npz", "path": str(tmp_path / "i.npz"),
                            "targets": {"decoded": "=input:image"}})
    p.training["loss"] = {"decoded": {"name": "mean_squared_error", "weight": 1.0,
                                      "from_logits": False}}
    return p, x


def test_results_of_an_image_output_are_inputs_beside_their_reconstructions(tmp_path):
    from layerloom.train.evaluation import output_results
    from layerloom.train.session import Session
    p, x = _image_autoencoder(tmp_path)
    s = Session(p, device=None)
    data = prepare.prepare_data(p)
    r = output_results(s, data, samples=5)
    assert (r["kind"], r["output"], r["split"]) == ("reconstruction", "decoded",
                                                    "training data (last samples)")
    pred = s.model.predict({"image": x})["decoded"].astype(np.float64)
    assert len(r["samples"]) == 5
    for i, (given, made) in enumerate(r["samples"]):
        np.testing.assert_array_equal(given, x[i])
        np.testing.assert_allclose(made, pred[i], rtol=1e-5, atol=1e-6)
    assert r["mse"] == pytest.approx(float(((pred - x) ** 2).mean()), rel=1e-4)


def test_results_of_a_regression_are_predicted_against_true_values(tmp_path):
    from layerloom.train.evaluation import output_results
    from layerloom.train.session import Session
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32))[:, None]
    np.savez(tmp_path / "r.npz", x=x, y=y)
    g = Graph()
    g.add_node("Input", {"shape": [3]}, id="x")
    g.add_node("Dense", {"units": 1}, id="value")
    g.connect("x", 0, "value", 0)
    p = Project(g, dataset={"source": "npz", "path": str(tmp_path / "r.npz")})
    p.training["loss"] = {"value": {"name": "mean_squared_error", "weight": 1.0,
                                    "from_logits": False}}
    s = Session(p, device=None)
    r = output_results(s, prepare.prepare_data(p))
    pred = s.model.predict({"x": x})["value"].astype(np.float64).ravel()
    assert (r["kind"], r["output"]) == ("regression", "value")
    np.testing.assert_allclose(r["predicted"], pred, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r["true"], y.ravel())
    t = y.ravel().astype(np.float64)
    r2 = 1 - ((t - pred) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    assert r["r2"] == pytest.approx(r2, rel=1e-4, abs=1e-6)


def test_raw_inputs_for_an_exported_model_keep_the_target_as_the_model_sees_its_input(
        tmp_path):
    """The exported model scales and normalises its input itself (prepare_data raw_inputs, as
    the Keras training script reads its data): the input stays raw, its target does not."""
    p, x = autoencoder(tmp_path)
    data = prepare.prepare_data(p, raw_inputs=True)
    np.testing.assert_array_equal(data.x["x"], x.astype(np.float32))
    want = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(data.y["decoded"], want, rtol=1e-4, atol=1e-4)


def test_the_api_trains_and_evaluates_an_input_target_on_x_alone(tmp_path):
    """Model.fit(x, y)/evaluate(x, y) on a project whose output is trained towards its input
    took the input rows and ignored the y given (a silently different target). Now x alone is
    enough, and a y for such an output is refused naming the Input it is trained towards."""
    from layerloom.api import Model
    p, x = autoencoder(tmp_path, normalize="none", n=128)
    p.training["metrics"] = []
    m = Model(p)
    h = m.fit(x.astype(np.float32), epochs=2, verbose=False)
    assert len(h["epochs"]) == 2
    got = m.evaluate(x.astype(np.float32))
    want = float(np.mean((m.predict(x.astype(np.float32)) - x) ** 2))
    assert got["loss"] == pytest.approx(want, rel=1e-3)
    with pytest.raises(DataError, match=r"'decoded' is trained towards Input 'x'") as e:
        m.fit(x.astype(np.float32), np.zeros((128, 8), np.float32), epochs=1, verbose=False)
    assert e.value.place == "y"
    with pytest.raises(DataError, match=r"'decoded' is trained towards Input 'x'"):
        m.evaluate(x.astype(np.float32), np.zeros((128, 8), np.float32))


def test_the_cli_evaluates_an_input_target_on_a_file_of_inputs(tmp_path):
    """`layerloom --evaluate --input FILE` refused an autoencoder's project ("no labels to
    evaluate against"): its target is the input, so a file of inputs is enough."""
    import subprocess
    import sys
    p, x = autoencoder(tmp_path, normalize="none", n=64)
    p.training["metrics"] = []
    path = tmp_path / "ae.loom"
    projectfile.save(p, str(path))
    np.savez(tmp_path / "inputs.npz", x=x.astype(np.float32))

    def cmd(*a):
        return subprocess.run([sys.executable, "-m", "layerloom.app", *a], capture_output=True,
                              text=True, timeout=600)
    r = cmd("--run", str(path), "--out", str(tmp_path / "out"), "--epochs", "1")
    assert r.returncode == 0, r.stderr
    r = cmd("--evaluate", str(tmp_path / "out" / "trained.loom"), "--input",
            str(tmp_path / "inputs.npz"))
    assert r.returncode == 0, r.stderr
    assert "loss" in r.stdout and "Traceback" not in r.stderr


def test_a_classifier_results_count_every_test_sample_up_to_ten_thousand(tmp_path):
    """output_results passed its 2,000-sample limit (meant for reconstructions and regressions)
    to the classifier's confusion matrix, so a test split of 3,000 rows was scored on 2,000
    and Results' accuracy differed from evaluate's."""
    from layerloom.train.evaluation import output_results
    from layerloom.train.session import Session
    rng = np.random.default_rng(4)
    n = 3000
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "c.npz", x=x, y=y, x_test=x, y_test=y)
    g = Graph()
    g.add_node("Input", {"shape": [4]}, id="x")
    g.add_node("Dense", {"units": 2, "activation": "softmax"}, id="label")
    g.connect("x", 0, "label", 0)
    p = Project(g, dataset={"source": "npz", "path": str(tmp_path / "c.npz"),
                            "normalize": "none"})
    p.training["loss"] = {"label": {"name": "sparse_categorical_crossentropy", "weight": 1.0,
                                    "from_logits": False}}
    s = Session(p, device=None)
    r = output_results(s, prepare.prepare_data(p))
    assert r["split"] == "test" and int(np.asarray(r["matrix"]).sum()) == n


NUMPY_ONLY = """
import importlib.util, json, sys
import numpy as np
sys.modules["layerloom"] = None  # as on a machine without layerloom: the numpy path
spec = importlib.util.spec_from_file_location("script", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
x, y, val, test = m.load_data()
np.savez(sys.argv[2], x=x, y=y)
"""


@pytest.mark.parametrize("normalize", ["none", "standardize"])
def test_the_exported_script_reads_an_input_target_without_layerloom(tmp_path, normalize):
    """The Keras script's numpy-only data path looked up arrays["=input:x"] (a KeyError): the
    target is the Input's rows, normalised with the statistics training fitted, as Layerloom
    trains towards them (the model itself normalises its raw inputs)."""
    import subprocess
    import sys
    import importlib.util
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("torch") is None:
        pytest.skip("the script runs on Keras with its torch backend")
    from layerloom.interop import keras_code
    p, x = autoencoder(tmp_path, normalize=normalize, n=40)
    p.training["validation_split"] = 0.0
    stats = {"kind": "standardize", "shift": [5.0] * 8, "scale": [0.5] * 8}
    if normalize != "none":
        p.dataset = {**p.dataset, "fitted": {"normalization": {"x": stats}}}
    p.path = str(tmp_path / "ae.loom")
    projectfile.save(p, p.path)
    from layerloom.api import Model
    keras_code.write_code(p, Model(p).session.model.get_weights(), str(tmp_path / "train_keras.py"))
    (tmp_path / "numpy_only.py").write_text(NUMPY_ONLY)
    r = subprocess.run([sys.executable, str(tmp_path / "numpy_only.py"),
                        str(tmp_path / "train_keras.py"), str(tmp_path / "got.npz")],
                       capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "KERAS_BACKEND": "torch"})
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.load(tmp_path / "got.npz")
    np.testing.assert_array_equal(got["x"], x.astype(np.float32))  # raw: the model scales
    want = x if normalize == "none" else (x - 5.0) * 0.5
    np.testing.assert_allclose(got["y"], want, rtol=1e-6, atol=1e-6)
