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
