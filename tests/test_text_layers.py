"""The text layers (issue 28): StringLookup, IntegerLookup and TextVectorization run on the host
(layers/text.py, data/hostrun.py, core/host.py). End to end: a CSV text column and a folder of
.txt files train a text classifier with `layerloom --run`, `--predict` on raw text gives what
the model gives the same rows prepared as training prepares them, StringLookup on a category
column, the Keras export predicts what Layerloom predicts on the same raw strings, and bad
graphs are refused with placed messages. The layers' vocabulary, indices, padding and OOV are
checked against Keras' real layers on the same inputs.

Keras' text layers need TensorFlow (tf.strings), which Keras with the torch backend does not
install: the tests that run Keras' layers find it importable, or in the folder the environment
variable LAYERLOOM_TF_SITE names (appended to the child process's path), else skip saying so."""
import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from layerloom import api
from layerloom.core.errors import ProjectError
from layerloom.core.registry import get_layer
from layerloom.data.arrays import Arrays
from layerloom.data.prepare import prepare_data
from layerloom.project import loom as projectfile

TF_SITE = os.environ.get("LAYERLOOM_TF_SITE", "")
HAVE_TF = importlib.util.find_spec("tensorflow") is not None or (
    TF_SITE and os.path.isdir(os.path.join(TF_SITE, "tensorflow")))
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="Keras' text layers need TensorFlow: install "
                              "it or set LAYERLOOM_TF_SITE to a folder holding it")

POS = ["great", "good", "love", "excellent", "fun", "happy"]
NEG = ["bad", "awful", "hate", "boring", "sad", "terrible"]
FILL = ["the", "movie", "was", "a", "plot", "and", "it", "film"]


def texts(n, seed=0):
    """A separable task: a class's texts hold its words among shared filler, with punctuation
    and capitals (standardized away)."""
    rng = np.random.default_rng(seed)
    out, labels = [], []
    for i in range(n):
        k = int(rng.integers(0, 2))
        words = list(rng.choice(FILL, 4)) + list(rng.choice(POS if k else NEG, 2))
        rng.shuffle(words)
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", "!", "?!", ""]))
        labels.append(k)
    return out, labels


def graph(host_nodes, host_edges, inner, classes=2):
    """Input (string) -> host layers -> inner device layers -> Dense softmax."""
    nodes = [{"id": "text", "type": "Input", "params": {"shape": [1], "dtype": "string"}}]
    nodes += host_nodes + inner + [{"id": "out", "type": "Dense",
                                    "params": {"units": classes, "activation": "softmax"}}]
    chain = ["text"] + [n["id"] for n in host_nodes] + [n["id"] for n in inner] + ["out"]
    edges = [{"from": [a, 0], "to": [b, 0]} for a, b in zip(chain, chain[1:])]
    return {"nodes": nodes, "edges": edges + host_edges}


def text_project(dataset, epochs=12):
    return {"format": "layerloom-project", "version": 1, "name": "text",
            "graph": graph([{"id": "vectorize", "type": "TextVectorization",
                             "params": {"max_tokens": 50, "output_sequence_length": 8}}], [],
                           [{"id": "embed", "type": "Embedding",
                             "params": {"input_dim": 50, "output_dim": 8}},
                            {"id": "pool", "type": "GlobalAveragePooling1D", "params": {}}]),
            "dataset": dataset,
            "training": {"optimizer": {"name": "adam", "params": {"learning_rate": 0.02}},
                         "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                         "epochs": epochs, "batch_size": 16, "seed": 0}}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "layerloom.app", *args], capture_output=True,
                          text=True, timeout=600)


def write_csv(path, rows, header):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def train(tmp_path, project):
    path = tmp_path / "p.loom"
    path.write_text(json.dumps(project))
    out = tmp_path / "run"
    r = cli("--run", str(path), "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    history = json.load(open(out / "history.json"))
    return out, history["epochs"][-1]


def predict_file(trained, raw, tmp_path):
    dest = tmp_path / "pred.npy"
    r = cli("--predict", str(trained), "--input", str(raw), "--output", str(dest))
    assert r.returncode == 0, r.stdout + r.stderr
    return np.load(dest)


def as_training_prepares(trained, strings):
    """The model applied to these rows prepared as training prepares its rows (the saved
    vocabulary through prepare_data's host run)."""
    model = api.load(str(trained))
    arrays = Arrays({"x": np.array(strings, object), "y": np.zeros(len(strings), np.float32)})
    data = prepare_data(model.project, arrays)
    return model.session.model.predict(data.x)["out"], model


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("csvtext")
    xs, ys = texts(240)
    write_csv(tmp / "reviews.csv", zip(xs, ys), ["review", "label"])
    out, last = train(tmp, text_project({"source": "csv", "path": "reviews.csv",
                                         "header": True}))
    return tmp, out, last


def test_csv_text_column_trains_and_predicts_raw_text(csv_run, tmp_path):
    tmp, out, last = csv_run
    assert last["accuracy"] > 0.9, last  # chance: 0.5
    trained = json.load(open(out / "trained.loom"))
    vocab = trained["dataset"]["fitted"]["vocabulary"]["vectorize"]
    assert 0 < len(vocab) <= 48 and "great" in vocab and "the" in vocab
    new, labels = texts(30, seed=7)
    new += ["...", "unknown words only", "GREAT, great!!"]
    write_csv(tmp_path / "raw.csv", [[t] for t in new], ["review"])
    got = predict_file(out / "trained.loom", tmp_path / "raw.csv", tmp_path)
    want, _ = as_training_prepares(out / "trained.loom", new)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert (got[:30].argmax(1) == labels).mean() > 0.85


def test_text_folder_trains_and_predicts_a_folder_of_texts(tmp_path):
    xs, ys = texts(200, seed=3)
    root = tmp_path / "reviews"
    for i, (t, k) in enumerate(zip(xs, ys)):
        d = root / ("pos" if k else "neg")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:04d}.txt").write_text(t, encoding="utf-8")
    project = text_project({"source": "text_folder", "path": "reviews"})
    out, last = train(tmp_path, project)
    assert last["accuracy"] > 0.9, last
    # the classes in sorted order, as Keras' text_dataset_from_directory: neg 0, pos 1
    trained = projectfile.load(str(out / "trained.loom"))
    assert prepare_data(trained).class_names == ["neg", "pos"]
    new, labels = texts(12, seed=11)
    folder = tmp_path / "new"
    folder.mkdir()
    for i, t in enumerate(new):
        (folder / f"{i:02d}.txt").write_text(t, encoding="utf-8")
    got = predict_file(out / "trained.loom", folder, tmp_path)
    want, _ = as_training_prepares(out / "trained.loom", new)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert (got.argmax(1) == labels).mean() > 0.8


def test_string_lookup_on_a_category_column_feeds_an_embedding(tmp_path):
    rng = np.random.default_rng(1)
    colors = ["red", "green", "blue", "teal", "plum"]
    rows = [(c, colors.index(c) % 3) for c in rng.choice(colors, 300)]
    write_csv(tmp_path / "colors.csv", rows, ["color", "label"])
    project = {"format": "layerloom-project", "version": 1, "name": "lookup",
               "graph": graph([{"id": "lookup", "type": "StringLookup", "params": {}}], [],
                              [{"id": "embed", "type": "Embedding",
                                "params": {"input_dim": 6, "output_dim": 4}},
                               {"id": "flat", "type": "Flatten", "params": {}}], classes=3),
               "dataset": {"source": "csv", "path": "colors.csv", "header": True},
               "training": {"optimizer": {"name": "adam", "params": {"learning_rate": 0.05}},
                            "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                            "epochs": 15, "batch_size": 32, "seed": 0}}
    out, last = train(tmp_path, project)
    assert last["accuracy"] > 0.97, last
    vocab = json.load(open(out / "trained.loom"))["dataset"]["fitted"]["vocabulary"]["lookup"]
    counts = {c: sum(r[0] == c for r in rows) for c in colors}
    assert vocab == sorted(colors, key=lambda c: (counts[c], c), reverse=True)
    model = api.load(str(out / "trained.loom"))
    p = model.predict(np.array([["teal"], ["red"], ["never seen"]], object))
    assert p[:2].argmax(1).tolist() == [colors.index("teal") % 3, 0]
    assert p.shape == (3, 3)


def in_keras(script, *args, backend="torch"):
    """Run a script in a child process with Keras (on `backend`) and TensorFlow; its last
    line of output is JSON."""
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    pre = f"import sys; sys.path.append({TF_SITE!r})\n" if TF_SITE else ""
    r = subprocess.run([sys.executable, "-c", pre + script, *map(str, args)], capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@needs_tf
def test_keras_export_predicts_what_layerloom_predicts_on_raw_strings(csv_run, tmp_path):
    tmp, out, _ = csv_run
    dest = tmp_path / "text.keras"
    model = api.load(str(out / "trained.loom"))
    new = texts(25, seed=5)[0] + ["", "zzz qqq", "Great!!! GOOD, fun."]
    want = model.predict(np.array([[t] for t in new], object))
    got = in_keras(f"""
import json, numpy as np
from layerloom import api
api.load({str(out / 'trained.loom')!r}).export({str(dest)!r}, format="keras")
import keras, tensorflow as tf
m = keras.saving.load_model({str(dest)!r})
texts = json.loads(sys.argv[1])
print(json.dumps(np.asarray(m.predict(tf.constant([[t] for t in texts]), verbose=0)).tolist()))
""", json.dumps(new), backend="tensorflow")  # string tensors: Keras' TensorFlow backend
    np.testing.assert_allclose(np.array(got), want, rtol=0, atol=1e-5)


KERAS_LAYERS = """
import json, numpy as np, keras
cases = json.loads(sys.argv[1])
out = []
for kind, params, adapt, inputs in cases:
    layer = getattr(keras.layers, kind)(**params)
    if adapt is not None:
        layer.adapt(np.array(adapt, object if kind != "IntegerLookup" else np.int64))
    x = np.array(inputs, object if kind != "IntegerLookup" else np.int64)
    vocab = [v.item() if hasattr(v, "item") else v for v in layer.get_vocabulary()]
    out.append([vocab, np.asarray(layer(x)).tolist()])
print(json.dumps(out))
"""


def _ours(kind, params, adapt, inputs):
    layer = get_layer(kind)
    p = layer.defaults()
    p.update(params)
    vocab = p["vocabulary"] or layer.adapt_host(p, np.array(adapt, object))
    return layer.full(p, vocab), layer.apply_host(p, np.array(inputs, object), vocab)


@needs_tf
def test_vocabulary_indices_padding_and_oov_match_keras():
    rng = np.random.default_rng(4)
    words = ["Apple", "apple", "b", "c!", "d", "e.", "f", "g", "h", "héllo", "[x]", "it's"]
    sentences = [" ".join(rng.choice(words, int(rng.integers(0, 9)))) for _ in range(60)]
    sentences += ["  many   spaces\there  ", "", "Punctuation: a, b; c?"]
    probe = [[s] for s in sentences[:20]] + [["never seen words"], [""],
                                             ["a b c d e f g h i j k l m n"]]
    tokens = list(rng.choice(["x", "y", "z", "w", "v"], 40)) + ["q"]
    ints = [int(v) for v in rng.integers(0, 7, 50)]
    cases = [
        ["TextVectorization", {"max_tokens": 50, "output_sequence_length": 8}, sentences, probe],
        ["TextVectorization", {"max_tokens": 6, "output_sequence_length": 3}, sentences, probe],
        ["TextVectorization", {"output_sequence_length": 5, "standardize": "lower"},
         sentences, probe],
        ["TextVectorization", {"output_sequence_length": 4,
                               "vocabulary": ["apple", "b", "zz"]}, None, probe],
        ["StringLookup", {}, tokens, [["x"], ["q"], ["unseen"], ["v"]]],
        ["StringLookup", {"max_tokens": 3}, tokens, [["x", "y"], ["z", "w"], ["q", "v"]]],
        ["StringLookup", {"vocabulary": ["z", "x"]}, None, [["x"], ["y"], ["z"]]],
        ["IntegerLookup", {}, ints, [[0], [3], [6], [99]]],
    ]
    theirs = in_keras(KERAS_LAYERS, json.dumps(cases))
    for (kind, params, adapt, inputs), (vocab, out) in zip(cases, theirs):
        mine_vocab, mine = _ours(kind, params, adapt, inputs)
        assert [str(v) for v in mine_vocab] == [str(v) for v in vocab], (kind, params)
        np.testing.assert_array_equal(mine, np.array(out), err_msg=f"{kind} {params}")


@pytest.mark.parametrize("case,kind,words", [
    ("host_after_device", "host_input", "must read an Input"),
    ("string_to_device", "string_input", "runs on the device"),
    ("empty_vocabulary", None, "vocabulary is empty"),
    ("nothing_to_adapt", None, "found no tokens"),
])
def test_bad_text_graphs_are_refused_with_a_placed_message(tmp_path, case, kind, words):
    write_csv(tmp_path / "t.csv", [["a b", 0], ["c", 1]], ["text", "label"])
    project = text_project({"source": "csv", "path": "t.csv", "header": True}, epochs=1)
    nodes, edges = project["graph"]["nodes"], project["graph"]["edges"]
    if case == "host_after_device":  # a Dense between the Input and the TextVectorization
        nodes[0]["params"] = {"shape": [1]}
        nodes.insert(1, {"id": "dense", "type": "Dense", "params": {"units": 1}})
        edges[0] = {"from": ["text", 0], "to": ["dense", 0]}
        edges.append({"from": ["dense", 0], "to": ["vectorize", 0]})
    elif case == "string_to_device":  # the string Input straight into the Embedding
        nodes.pop(1)
        edges[:2] = [{"from": ["text", 0], "to": ["embed", 0]}]
    elif case == "empty_vocabulary":
        nodes[1]["params"]["vocabulary"] = []
    else:  # punctuation only: nothing left to count
        write_csv(tmp_path / "t.csv", [["?!", 0], [".", 1]], ["text", "label"])
    path = tmp_path / "bad.loom"
    path.write_text(json.dumps(project))
    if kind is not None:  # the project file's checks: the problem, its kind, on its node
        with pytest.raises(ProjectError) as e:
            projectfile.load(str(path))
        assert "graph.nodes[" in str(e.value) and words in str(e.value), str(e.value)
        found = projectfile.load(str(path), strict=False).graph.validate()
        assert [p.node for p in found if p.kind == kind] == [
            "vectorize" if kind == "host_input" else "embed"], found
    r = cli("--run", str(path), "--out", str(tmp_path / "o"))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and words in r.stderr, r.stderr
    assert "graph.nodes[" in r.stderr, r.stderr


def test_host_layers_are_refused_by_onnx_export_by_name(csv_run, tmp_path):
    _, out, _ = csv_run
    r = cli("--export", str(out / "trained.loom"), "--to", str(tmp_path / "m.onnx"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "TextVectorization" in r.stderr and "host" in r.stderr, r.stderr


@needs_tf
def test_keras_import_of_a_text_model_takes_the_vocabulary_from_its_config(tmp_path):
    """A Keras model (string Input, TextVectorization and StringLookup with their
    vocabularies, Embedding, pooling, Dense) imports with the vocabularies as the layers'
    parameters, and predicts on raw strings what Keras predicts (TensorFlow backend)."""
    src = tmp_path / "k.keras"
    new = ["Good fun, great", "bad awful plot", "", "unknown"]
    theirs = in_keras(f"""
import json, numpy as np, keras, tensorflow as tf
t = keras.Input(shape=(1,), dtype="string", name="text")
v = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=5,
                                   vocabulary=["good", "bad", "fun", "great", "plot"],
                                   name="vec")(t)
e = keras.layers.Embedding(7, 3, name="emb")(v)
p = keras.layers.GlobalAveragePooling1D(name="pool")(e)
o = keras.layers.Dense(2, activation="softmax", name="out")(p)
m = keras.Model(t, o)
m.save({str(src)!r})
texts = json.loads(sys.argv[1])
print(json.dumps(np.asarray(m.predict(tf.constant([[s] for s in texts]), verbose=0)).tolist()))
""", json.dumps(new), backend="tensorflow")
    dest = tmp_path / "k.loom"
    r = cli("--import", str(src), "--to", str(dest))
    assert r.returncode == 0, r.stderr
    project = projectfile.load(str(dest))
    node = project.graph.nodes["vec"]
    assert node.type == "TextVectorization"
    assert node.params["vocabulary"] == ["good", "bad", "fun", "great", "plot"]
    assert project.graph.nodes["text"].params["dtype"] == "string"
    mine = api.load(str(dest)).predict(np.array([[s] for s in new], object))
    np.testing.assert_allclose(mine, np.array(theirs), rtol=0, atol=1e-5)


def test_pytorch_code_preprocesses_raw_text_in_plain_python(csv_run, tmp_path):
    """The PyTorch export: the text layer as plain Python (preprocess, with the adapted
    vocabulary), then the device graph's module: model(preprocess(raw)) is Layerloom's
    predict on the same raw strings."""
    pytest.importorskip("torch")  # the script's module is torch's (the README's test command
    import importlib.util as iu  # installs no torch: skipped there, as the other exports' are)
    _, out, _ = csv_run
    model = api.load(str(out / "trained.loom"))
    dest = tmp_path / "train_text.py"
    model.export(str(dest), format="pytorch-code")
    spec = iu.spec_from_file_location("train_text", dest)
    script = iu.module_from_spec(spec)
    spec.loader.exec_module(script)
    new = texts(20, seed=9)[0] + ["...", "zzz", "GREAT great, fun!"]
    raw = np.array([[t] for t in new], object)
    assert script.INPUT_IDS == ["vectorize"] and script.RAW_INPUT_IDS == ["text"]
    import torch
    with torch.no_grad():
        got = script.build_model()(script.preprocess(raw)).numpy()
    np.testing.assert_allclose(got, model.predict(raw), rtol=0, atol=1e-5)


def test_a_text_column_for_a_float_input_is_refused_saying_what_to_do(tmp_path):
    write_csv(tmp_path / "t.csv", [["a b", 0], ["c", 1]], ["text", "label"])
    project = text_project({"source": "csv", "path": "t.csv", "header": True,
                            "columns": {"text": {"encoding": "text"}}}, epochs=1)
    g = project["graph"]
    g["nodes"] = [g["nodes"][0], g["nodes"][-1]]
    g["nodes"][0]["params"] = {"shape": [1]}
    g["edges"] = [{"from": ["text", 0], "to": ["out", 0]}]
    path = tmp_path / "p.loom"
    path.write_text(json.dumps(project))
    r = cli("--run", str(path), "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "holds text" in r.stderr and "dtype to string" in r.stderr, r.stderr
