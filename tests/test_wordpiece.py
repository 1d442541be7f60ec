"""keras_hub's WordPieceTokenizer and StartEndPacker as host layers (layers/text_pieces.py,
issue 28). Against keras_hub's own layers on the same inputs (its TensorFlow-free path; skipped
where keras_hub is not installed): the tokenizer's ids on text with accents, capitals, Unicode
punctuation, CJK, control characters and over-long words, under each switch; the packer's
output on the tokenizer's sequences. The learned vocabulary against compute_word_piece_vocabulary's
documented example and hand-derived cases (tensorflow_text's learner, which keras_hub calls, needs
TensorFlow; the same algorithm gave the identical vocabulary on the docs' text, 8 sizes, in
development). End to end: a CSV text column trains through tokenizer -> packer -> Embedding;
--predict on raw text, the PyTorch script's preprocess and bad graphs."""
import collections
import json
import importlib.util

import numpy as np
import pytest

from layerloom import api
from layerloom.core.registry import get_layer
from layerloom.layers.text_pieces import learn_vocabulary, pretokenize
from layerloom.project import loom as projectfile
from test_text_layers import as_training_prepares, cli, predict_file, texts, write_csv

HAVE_HUB = importlib.util.find_spec("keras_hub") is not None
needs_hub = pytest.mark.skipif(not HAVE_HUB, reason="keras_hub is not installed")

WP, PACK = get_layer("WordPieceTokenizer"), get_layer("StartEndPacker")


def defaults(layer, **given):
    return {**{q.name: q.default for q in layer.params}, **given}


def keras_hub():
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras_hub as kh
    return kh


VOCAB = ["[PAD]", "[UNK]", "the", "qu", "##ick", "br", "##own", "fox", ".", ",", "!", "a",
         "##b", "##c", "cafe", "café", "naive", "é", "世", "界", "##s", "run", "##ning", "-", "'",
         "«", "»", "–", "straße", "strasse", "ß"]
TEXTS = ["The quick brown fox.", "", "   ", "Fox! the,quick", "Café naïve, CAFÉ",
         "世界 the世界fox", "runs running run's — «fox» – a-b", "abc ab abcabc",
         "tab\tnew\nline\r\x00ctrl\u200bzero", "Straße STRASSE ß", "x" * 101, "é" * 50,
         "the " * 40, "quick", "running"]


@needs_hub
@pytest.mark.parametrize("switches", [
    {}, {"lowercase": True}, {"strip_accents": True}, {"lowercase": True, "strip_accents": True},
    {"split": False}, {"split_on_cjk": False}, {"lowercase": True, "suffix_indicator": "@@"}])
def test_tokenizer_ids_are_keras_hubs(switches):
    kh = keras_hub()
    vocab = [t.replace("##", switches.get("suffix_indicator", "##")) for t in VOCAB]
    p = defaults(WP, vocabulary=vocab, sequence_length=24, **switches)
    theirs = kh.tokenizers.WordPieceTokenizer(vocabulary=vocab, sequence_length=24, **switches)
    # split off: keras_hub takes each sample as its list of words (here one: the text)
    want = np.asarray(theirs([[t] for t in TEXTS] if switches.get("split") is False else TEXTS))
    got = WP.apply_host(p, np.array(TEXTS, object), vocab)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 24)
    # not all padding or OOV: the cases tokenize (unsplit, most texts are one unknown word)
    assert (got > 1).sum() > (1 if switches.get("split") is False else 50)


@needs_hub
@pytest.mark.parametrize("params", [
    {"start_value": 2, "end_value": 3}, {"start_value": [2, 4], "end_value": 3, "pad_value": 1},
    {"start_value": 2}, {"end_value": 3, "padding_side": "left"}, {}])
def test_packer_is_keras_hubs_on_the_tokenizers_sequences(params):
    kh = keras_hub()
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(5, 30, n)) for n in (0, 1, 3, 5, 6, 7, 12)]
    padded = np.zeros((len(seqs), 12), np.float32)
    for r, s in enumerate(seqs):
        padded[r, :len(s)] = s
    theirs = kh.layers.StartEndPacker(sequence_length=6, **params)
    want = np.asarray(theirs([[int(v) for v in s] for s in seqs]))
    got = PACK.apply_host(defaults(PACK, sequence_length=6, **params), padded, [])
    np.testing.assert_array_equal(got, want)


def test_learned_vocabulary_is_compute_word_piece_vocabularys():
    # keras_hub's documented example (compute_word_piece_vocabulary(["bat sat pat mat rat"], 13))
    counts = collections.Counter("bat sat pat mat rat".split())
    assert learn_vocabulary(counts, 13, ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]) == [
        "[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", "a", "b", "m", "p", "r", "s", "t", "##at"]
    # by hand: the threshold search ends at 10 or 11 (its floor is 10); a whole word at or above
    # it is kept, taking its count from its prefixes: "run" 30 (42 as a prefix, less
    # running's 12), "running" 12, "jumping" 11; "jump" keeps 2 (13 less jumping's 11) and
    # every other prefix or ##-piece less; then the characters and their ##-forms (count 1)
    counts = collections.Counter({"running": 12, "jumping": 11, "run": 30, "jump": 2})
    vocab = learn_vocabulary(counts, 40, ["[PAD]", "[UNK]"])
    chars = sorted(set("runingjmp"))
    assert vocab == ["[PAD]", "[UNK]"] + chars + ["run", "running", "jumping"] + [
        "##" + c for c in chars]
    # 12 tokens: the search raises the threshold past 12 (only "run" is kept), then the list
    # is cut to the size
    assert learn_vocabulary(counts, 12, ["[PAD]", "[UNK]"]) == vocab[:11] + ["##g"]
    # every word of the corpus tokenizes without the OOV token
    p = defaults(WP, vocabulary=vocab, oov_token="[UNK]")
    ids = WP.apply_host(p, np.array(list(counts), object), vocab)
    assert 1 not in ids


def test_pretokenize_splits_as_bert_does():
    p = defaults(WP)
    assert pretokenize("Hi, there!  a-b 世界", p) == ["Hi", ",", "there", "!", "a", "-", "b",
                                                    "世", "界"]
    assert pretokenize("Café", dict(p, lowercase=True, strip_accents=True)) == ["cafe"]
    assert pretokenize("ß STRASSE", dict(p, lowercase=True)) == ["ss", "strasse"]
    assert pretokenize("a b", dict(p, split=False)) == ["a b"]


def project(tmp_path, texts_, labels, epochs=12, tokenizer=None, packer=None):
    write_csv(tmp_path / "reviews.csv", zip(texts_, labels), ["review", "label"])
    nodes = [{"id": "text", "type": "Input", "params": {"shape": [1], "dtype": "string"}},
             {"id": "tokens", "type": "WordPieceTokenizer",
              "params": {"vocabulary_size": 80, "sequence_length": 10, "lowercase": True,
                         **(tokenizer or {})}},
             {"id": "packed", "type": "StartEndPacker",
              "params": {"sequence_length": 12, "start_value": 1, "end_value": 2,
                         **(packer or {})}},
             {"id": "embed", "type": "Embedding", "params": {"input_dim": 80, "output_dim": 8}},
             {"id": "pool", "type": "GlobalAveragePooling1D", "params": {}},
             {"id": "out", "type": "Dense", "params": {"units": 2, "activation": "softmax"}}]
    chain = [n["id"] for n in nodes]
    path = tmp_path / "p.loom"
    path.write_text(json.dumps({
        "format": "layerloom-project", "version": 1, "name": "wordpiece",
        "graph": {"nodes": nodes, "edges": [{"from": [a, 0], "to": [b, 0]}
                                            for a, b in zip(chain, chain[1:])]},
        "dataset": {"source": "csv", "path": "reviews.csv", "header": True},
        "training": {"optimizer": {"name": "adam", "params": {"learning_rate": 0.02}},
                     "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                     "epochs": epochs, "batch_size": 16, "seed": 0}}))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wordpiece")
    xs, ys = texts(240)
    path = project(tmp, xs, ys)
    r = cli("--run", str(path), "--out", str(tmp / "run"))
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp / "run"


def test_a_text_column_trains_through_tokenizer_and_packer(trained, tmp_path):
    last = json.load(open(trained / "history.json"))["epochs"][-1]
    assert last["accuracy"] > 0.9, last  # chance: 0.5
    fitted = json.load(open(trained / "trained.loom"))["dataset"]["fitted"]
    vocab = fitted["vocabulary"]["tokens"]
    assert vocab[:5] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] and len(vocab) <= 80
    assert "great" in vocab and "packed" not in fitted["vocabulary"]  # the packer learns nothing
    new, labels = texts(30, seed=7)
    new += ["...", "Zzyzx!", "GREAT, great!!"]
    write_csv(tmp_path / "raw.csv", [[t] for t in new], ["review"])
    got = predict_file(trained / "trained.loom", tmp_path / "raw.csv", tmp_path)
    want, _ = as_training_prepares(trained / "trained.loom", new)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert (got[:30].argmax(1) == labels).mean() > 0.85
    # what the device model read: [start] ids [end] then padding
    model = api.load(str(trained / "trained.loom"))
    from layerloom.data.arrays import Arrays
    from layerloom.data.prepare import prepare_data
    data = prepare_data(model.project, Arrays({"x": np.array(["great fun", ""], object),
                                              "y": np.zeros(2, np.float32)}))
    ids = data.x["packed"]
    index = {t: i for i, t in enumerate(vocab)}
    assert ids[0].tolist() == [1, index["great"], index["fun"], 2] + [0] * 8
    assert ids[1].tolist() == [1, 2] + [0] * 10


def test_pytorch_script_preprocesses_with_the_same_code(trained, tmp_path):
    pytest.importorskip("torch")
    import importlib.util as iu
    import torch
    model = api.load(str(trained / "trained.loom"))
    dest = tmp_path / "train_wp.py"
    model.export(str(dest), format="pytorch-code")
    spec = iu.spec_from_file_location("train_wp", dest)
    script = iu.module_from_spec(spec)
    spec.loader.exec_module(script)
    raw = np.array([[t] for t in texts(20, seed=9)[0] + ["", "Ünïcode — «quotes»"]], object)
    with torch.no_grad():
        got = script.build_model()(script.preprocess(raw)).numpy()
    np.testing.assert_allclose(got, model.predict(raw), rtol=0, atol=1e-5)


@pytest.mark.parametrize("tokenizer,packer,words", [
    ({"vocabulary": ["a", "b"]}, {}, "lacks the OOV token"),
    ({}, {"start_value": [1, 1, 1, 1, 1, 1, 1], "end_value": [2] * 6}, "longer than sequence"),
    ({"reserved_tokens": ["[PAD]"]}, {}, "not among reserved_tokens"),
    ({}, {"start_value": "[BOS]"}, "token id"),
])
def test_bad_settings_are_refused_with_a_placed_message(tmp_path, tokenizer, packer, words):
    xs, ys = texts(40)
    path = project(tmp_path, xs, ys, epochs=1, tokenizer=tokenizer, packer=packer)
    r = cli("--run", str(path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and words in r.stderr, r.stderr
    assert not (tmp_path / "o" / "trained.loom").exists()


def test_a_packer_reading_strings_is_refused_on_its_node(tmp_path):
    xs, ys = texts(20)
    path = project(tmp_path, xs, ys, epochs=1)
    doc = json.loads(path.read_text())
    doc["graph"]["nodes"] = [n for n in doc["graph"]["nodes"] if n["id"] != "tokens"]
    doc["graph"]["edges"] = [e for e in doc["graph"]["edges"] if "tokens" not in
                             (e["from"][0], e["to"][0])] + [{"from": ["text", 0],
                                                             "to": ["packed", 0]}]
    path.write_text(json.dumps(doc))
    found = projectfile.load(str(path), strict=False).graph.validate()
    assert any(p.node == "packed" and "numbers" in str(p) for p in found), found
