"""Review findings on the text layers (host layers) outside the data path: fine-tuning keeps
the trained vocabulary, a Keras model whose text layer was adapted (its vocabulary in the
archive's assets, not its config) is refused by name rather than imported without it, and an
Input read by both a host layer and a device layer is a placed problem, not a crash at Run."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_text_layers import cli, needs_tf, text_project, texts, write_csv  # noqa: E402
from layerloom import api  # noqa: E402
from layerloom.project import loom as projectfile  # noqa: E402


def test_fine_tuning_keeps_the_trained_vocabulary(tmp_path):
    """The frozen Embedding's rows belong to the trained vocabulary's indices: fine-tuning on
    new data adapted a new one under it (silently other indices)."""
    xs, ys = texts(120)
    write_csv(tmp_path / "reviews.csv", zip(xs, ys), ["review", "label"])
    (tmp_path / "p.loom").write_text(json.dumps(text_project(
        {"source": "csv", "path": "reviews.csv", "header": True}, epochs=1)))
    model = api.load(str(tmp_path / "p.loom"))
    model.fit(verbose=False)
    trained = model.project.dataset["fitted"]["vocabulary"]
    shaped = model.project.dataset["fitted"]["vocabulary_params"]  # what shaped each list
    new = ["happy happy " + t for t in xs[:60]]
    write_csv(tmp_path / "new.csv", zip(new, ys[:60]), ["review", "label"])
    for data in ({"source": "csv", "path": str(tmp_path / "new.csv"), "header": True}, None):
        tuned = model.fine_tune(cut="pool", data=data, classes=2)
        assert tuned.project.dataset["fitted"]["vocabulary"] == trained
        assert tuned.project.dataset["fitted"]["vocabulary_params"] == shaped
        tuned.fit(epochs=1, verbose=False)
        assert tuned.project.dataset["fitted"]["vocabulary"] == trained


KERAS_ADAPTED = """
import numpy as np, keras, tensorflow as tf
t = keras.Input(shape=(1,), dtype="string", name="text")
vec = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=5, name="vec")
vec.adapt(tf.constant(["good plot", "bad plot", "good fun"]))
e = keras.layers.Embedding(20, 3, name="emb")(vec(t))
o = keras.layers.Dense(2, activation="softmax", name="out")(
    keras.layers.GlobalAveragePooling1D(name="pool")(e))
keras.Model(t, o).save(sys.argv[1])
print("null")
"""


@needs_tf
def test_a_keras_text_layer_adapted_in_keras_is_refused_by_name(tmp_path):
    from test_text_layers import in_keras
    src = tmp_path / "adapted.keras"
    in_keras(KERAS_ADAPTED, str(src), backend="tensorflow")
    dest = tmp_path / "k.loom"
    r = cli("--import", str(src), "--to", str(dest))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "'vec'" in r.stderr and "vocabulary" in r.stderr and "Traceback" not in r.stderr
    assert not dest.exists()


def test_an_input_read_by_a_host_layer_and_a_device_layer_is_a_placed_problem():
    g = {"nodes": [
        {"id": "code", "type": "Input", "params": {"shape": [1], "dtype": "int32"}},
        {"id": "lookup", "type": "IntegerLookup", "params": {}},
        {"id": "embed", "type": "Embedding", "params": {"input_dim": 10, "output_dim": 2}},
        {"id": "flat", "type": "Flatten", "params": {}},
        {"id": "joined", "type": "Concatenate", "params": {}},
        {"id": "out", "type": "Dense", "params": {"units": 1}}],
        "edges": [{"from": ["code", 0], "to": ["lookup", 0]},
                  {"from": ["lookup", 0], "to": ["embed", 0]},
                  {"from": ["embed", 0], "to": ["flat", 0]},
                  {"from": ["flat", 0], "to": ["joined", 0]},
                  {"from": ["code", 0], "to": ["joined", 1]},
                  {"from": ["joined", 0], "to": ["out", 0]}]}
    proj = projectfile.from_dict({"format": "layerloom-project", "version": 1, "graph": g},
                                 strict=False)
    problems = [str(p) for p in projectfile.problems_of(proj)]
    assert any("'code'" in p and "host" in p.lower() for p in problems), problems


def test_a_keras_text_vectorization_without_a_sequence_length_is_refused_by_name():
    """Keras' output_sequence_length=None pads each batch to its longest text: no fixed shape.
    It had become 16 silently (texts cut where Keras keeps them)."""
    from layerloom.core.errors import DataError
    from layerloom.interop.keras_in_layers import convert
    config = {"name": "vec", "max_tokens": 20, "standardize": "lower_and_strip_punctuation",
              "split": "whitespace", "output_mode": "int", "output_sequence_length": None,
              "vocabulary": ["good", "bad"]}
    with pytest.raises(DataError) as e:
        convert("vec", "TextVectorization", config, [(1,)])
    assert "'vec'" in e.value.message and "output_sequence_length" in e.value.message
    config["output_sequence_length"] = 7
    assert convert("vec", "TextVectorization", config, [(1,)])[1]["output_sequence_length"] == 7
