"""Dataset sources are declarations (engine/data/sources.py): one declaration gives the file
format's keys and their validation, loading, array names, the editor's entry and the docs."""
import json
import os

import numpy as np
import pytest

from layerloom.core.errors import ProjectError
from layerloom.core.params import Float, Int
from layerloom.data import sources
from layerloom.data.arrays import Arrays
from layerloom.data.prepare import array_names, default_normalization, load_arrays, prepare_data
from layerloom.data.preprocess import apply_split
from layerloom.project import loom as projectfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPIRALS = os.path.join(ROOT, "assets", "examples", "spirals.loom")


@pytest.fixture
def constant_source(monkeypatch):
    """A source that is not part of Layerloom: two arrays of a constant, declared in a test."""
    sources.all_sources()  # the declared ones first, so that the test's copy holds them
    monkeypatch.setattr(sources, "_SOURCES", dict(sources._SOURCES))

    def load(d, project, progress=None, table=None):
        n, v = d.get("rows", 40), d.get("value", 0.5)
        x = np.full((n, 2), v, np.float32)
        y = (np.arange(n) % 2).astype(np.float32)
        return apply_split(Arrays({"x": x, "y": y}, None, f"{n} rows of {v}", 2), d)
    return sources.register(sources.Source(
        "constant", "Rows of one value.",
        keys=(Int("rows", 40, min=2, max=1000, help="How many."),
              Float("value", 0.5, help="The value.")),
        load=load, array_names=lambda d, project: ["x", "y"], normalization="standardize",
        class_names=lambda d: ["even", "odd"], editor="file", label="constant rows...",
        file_filter="(*)"))


def project_with(dataset):
    d = json.load(open(SPIRALS))
    d["dataset"] = dict(dataset, inputs={"point": "x"}, targets={"class": "y"})
    return d


def problems(dataset):
    try:
        projectfile.from_dict(project_with(dataset), path=SPIRALS)
    except ProjectError as e:
        return str(e)
    return ""


def test_a_new_source_is_one_declaration(constant_source):
    assert problems({"source": "constant", "rows": 10}) == ""
    assert "dataset.rows: expected an integer from 2 to 1000, got 1" in problems(
        {"source": "constant", "rows": 1})
    assert "dataset.rowz: unknown key; did you mean 'rows'?" in problems(
        {"source": "constant", "rowz": 10})
    assert "dataset.split.test: expected a number >= 0 and < 1, got 2" in problems(
        {"source": "constant", "split": {"test": 2}})
    p = projectfile.from_dict(project_with({"source": "constant", "rows": 30,
                                            "split": {"test": 0.2}}), path=SPIRALS)
    arrays = load_arrays(p)
    assert len(arrays.train["x"]) == 24 and len(arrays.test["x"]) == 6
    data = prepare_data(p)
    assert data.x["point"].shape == (24, 2) and data.x_test["point"].shape == (6, 2)
    assert array_names(p) == ["x", "y"]
    assert default_normalization(p.dataset) == "standardize"
    assert "| `constant` | `rows`: an integer from 2 to 1000<br>`value`: a number | Rows of one " \
        "value. |" in sources.reference()
    from layerloom.app.panels.training_panel import dataset_choices
    assert ("constant", None) in dataset_choices()
    from layerloom.train.evaluation import class_names
    assert class_names(p, 2) == ["even", "odd"]


def test_every_source_is_declared_and_unknown_ones_are_refused():
    assert [s.name for s in sources.all_sources()] == ["synthetic", "keras", "npz", "csv",
                                                      "images", "npy", "text_folder"]
    msg = problems({"source": "parquet", "path": "a.parquet"})
    assert 'dataset.source: expected one of "synthetic", "keras", "npz", "csv", "images", ' \
        '"npy", "text_folder"; got \'parquet\'' in msg
    assert "dataset.path" not in msg  # a key of an unknown source is not judged
    with pytest.raises(ValueError, match="registered twice"):
        sources.register(sources.get("csv"))


@pytest.mark.parametrize("dataset, place", [
    ({"source": "synthetic", "name": "moonz"}, "dataset.name: unknown synthetic dataset 'moonz'"),
    ({"source": "synthetic", "name": "moons", "params": {"nosie": 1}}, "dataset.params.nosie"),
    ({"source": "keras", "name": "mnist", "params": {"maxlen": 0}}, "dataset.params.maxlen"),
    ({"source": "csv", "path": "a.csv", "header": "yes"}, 'dataset.header: expected one of auto, '
     'true, false; got \'yes\''),
    ({"source": "csv", "path": "a.csv", "delimiter": ":"}, 'dataset.delimiter: expected one of '
     'auto, ",", "\\t", ";", "|"'),
    ({"source": "csv", "path": "a.csv", "columns": {"a": "label"}},
     'dataset.columns.a: expected an object {"role", "encoding"}'),
    ({"source": "images", "path": ""}, "dataset.path: expected the path of a folder"),
    ({"source": "npy", "arrays": {"x": ""}}, "dataset.arrays.x: expected a non-empty string"),
    ({"source": "npz", "path": "a.npz", "inputs": []}, "dataset.inputs: expected an object"),
], ids=["synthetic-name", "synthetic-param", "keras-param", "csv-header", "csv-delimiter",
        "csv-column", "images-path", "npy-array", "inputs-mapping"])
def test_declared_keys_are_checked_with_their_place(dataset, place):
    d = project_with(dataset)
    if "inputs" in dataset:
        d["dataset"]["inputs"] = dataset["inputs"]
    with pytest.raises(ProjectError) as e:
        projectfile.from_dict(d, path=SPIRALS)
    assert place in str(e.value)


def test_file_format_doc_lists_the_declared_sources():
    text = open(os.path.join(ROOT, "docs", "file-format.md"), encoding="utf-8").read()
    table = text.split("<!-- sources:begin -->\n", 1)[1].split("<!-- sources:end -->", 1)[0]
    assert table == sources.reference(), \
        "docs/file-format.md is stale: python -m layerloom.data.sources"


def test_a_stray_unconnected_layer_is_no_output_of_the_data_check():
    """The newcomer trial of issue 26: an unconnected Dense dropped on the spirals graph made
    the data check say "the dataset has no array 'class'" on the real output (two outputs, so
    the targets were looked for by node id). A node whose shape is unknown is the graph's
    problem, listed as such; the data still maps onto the one real output."""
    import os
    from layerloom.project import loom as projectfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = projectfile.load(os.path.join(root, "assets", "examples", "spirals.loom"))
    p.graph.add_node("Dense", {"units": 4}, id="stray")
    data = prepare_data(p)
    assert data.mapping["targets"] == {"class": "y"}
