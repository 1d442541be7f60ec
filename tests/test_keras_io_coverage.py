"""bench/keras_io_coverage.py's counting, on a small made-up examples file (not the real data)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import keras_io_coverage as cov  # noqa: E402 (bench/ is not installed)

DATA = {
    "collected": {"rule": "made up for the test"},
    "application_layers": {"TinyNet": ["Conv2D", "BatchNormalization", "ZeroPadding2D"]},
    "examples": [
        # everything present, spelled as Keras allows (alias, functional form, dotted path)
        {"path": "a.py", "layers": ["Conv2D", "MaxPool2D", "add", "keras.layers.Dense",
                                    "InputLayer"], "custom": [], "keras_hub": [],
         "applications": []},
        # present, but defines its own Layer subclass
        {"path": "b.py", "layers": ["Dense"], "custom": ["MyLayer"], "keras_hub": [],
         "applications": []},
        # an application whose layers include one Layerloom lacks
        {"path": "c.py", "layers": ["Dense"], "custom": [], "keras_hub": [],
         "applications": ["TinyNet"]},
        # a keras_hub class and a tokenizer used only on the data
        {"path": "d.py", "layers": ["Dense"], "custom": [],
         "keras_hub": ["keras_hub.tokenizers.WordPieceTokenizer",
                       "keras_hub.layers.TransformerEncoder"],
         "applications": [], "pipeline_only": ["WordPieceTokenizer"]},
        # a lookup used only on the data, and an application the data does not list
        {"path": "e.py", "layers": ["StringLookup", "Dense"], "custom": [],
         "custom_models": ["MyModel"], "keras_hub": [], "applications": ["Unlisted"],
         "pipeline_only": ["StringLookup"]},
        # one missing layer only, met again in d.py's company
        {"path": "f.py", "layers": ["layers.experimental.preprocessing.StringLookup"],
         "custom": [], "keras_hub": [], "applications": []},
    ],
}
HAVE = {"Conv2D", "MaxPooling2D", "Add", "Dense", "BatchNormalization"}


def test_counts_two_ways_and_pipeline():
    r = cov.measure(DATA, HAVE)
    assert r["examples"] == 6
    assert [x["path"] for x in r["per_example"] if x["builtin_ok"]] == ["a.py", "b.py"]
    assert [x["path"] for x in r["per_example"] if x["strict_ok"]] == ["a.py"]
    # d.py still lacks TransformerEncoder; e.py lacks the unlisted application
    assert [x["path"] for x in r["per_example"] if x["model_ok"]] == ["a.py", "b.py"]
    assert (r["builtin_ok"], r["strict_ok"], r["model_ok"]) == (2, 1, 2)
    assert r["with_custom_layers"] == 2  # b.py's Layer, e.py's Model subclass


def test_missing_per_example_and_ranking():
    r = cov.measure(DATA, HAVE)
    missing = {x["path"]: x["missing"] for x in r["per_example"]}
    assert missing["a.py"] == []
    assert missing["c.py"] == ["ZeroPadding2D"]
    assert missing["d.py"] == ["TransformerEncoder", "WordPieceTokenizer"]
    assert missing["e.py"] == ["StringLookup", "applications:Unlisted"]
    assert missing["f.py"] == ["StringLookup"]
    ranked = {x["layer"]: (x["blocks"], x["only_missing"]) for x in r["missing_ranked"]}
    assert ranked["StringLookup"] == (2, 1)
    assert ranked["ZeroPadding2D"] == (1, 1)
    assert ranked["TransformerEncoder"] == (1, 0)
    assert r["missing_ranked"][0]["layer"] == "StringLookup"


def test_more_layers_more_examples():
    r = cov.measure(DATA, HAVE | {"ZeroPadding2D", "StringLookup"})
    assert r["builtin_ok"] == 4  # a, b, c, f
    assert [x["path"] for x in r["per_example"] if x["model_ok"]] == ["a.py", "b.py", "c.py",
                                                                      "f.py"]


def test_main_reads_files_and_writes_json(tmp_path, capsys):
    data, have, out = tmp_path / "ex.json", tmp_path / "have.txt", tmp_path / "res.json"
    data.write_text(json.dumps(DATA))
    have.write_text("# classes\n" + "\n".join(sorted(HAVE)) + "\n")
    cov.main(["--data", str(data), "--have-file", str(have), "--json", str(out)])
    text = capsys.readouterr().out
    assert "use only built-in layers Layerloom has:" in text and "2 / 6" in text
    saved = json.loads(out.read_text())
    assert saved["strict_ok"] == 1 and saved["layerloom_classes"] == sorted(HAVE)


def test_registry_classes_include_keras_names():
    have = cov.layerloom_classes()
    assert {"Dense", "Conv2D", "LSTM"} <= have
