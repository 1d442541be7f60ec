"""The text layers' data (issue 28 review): a vocabulary saved by training is reused only with
the parameters that shaped it (else adapted again, as normalisation's statistics are), a CSV
column only IntegerLookup reads arrives as exact integers (never float32, which merges ids
above 2^24), and a column a string Input reads arrives as its text even where it looks numeric
(zip codes keep their leading zeros), in training and in --predict."""
import json

import numpy as np
import pytest

from layerloom import api
from layerloom.core.errors import DataError
from layerloom.data import inputs as input_files
from layerloom.data.prepare import prepare_data, prepare_inputs
from test_text_layers import text_project, texts, write_csv


def _load(tmp_path, project, name="p.loom"):
    path = tmp_path / name
    path.write_text(json.dumps(project))
    return api.load(str(path))


def _node(project, nid):
    return next(n for n in project["graph"]["nodes"] if n["id"] == nid)


def _reviews(tmp_path):
    xs, ys = texts(80)
    write_csv(tmp_path / "reviews.csv", zip(xs, ys), ["review", "label"])
    return text_project({"source": "csv", "path": "reviews.csv", "header": True})


def test_a_saved_vocabulary_is_adapted_again_when_its_parameters_changed(tmp_path):
    project = _reviews(tmp_path)
    first = prepare_data(_load(tmp_path, project).project)
    assert len(first.fitted["vocabulary"]["vectorize"]) > 10
    project["dataset"]["fitted"] = json.loads(json.dumps(first.fitted))
    # the same parameters: the saved vocabulary as it is (a token the rows lack stays)
    project["dataset"]["fitted"]["vocabulary"]["vectorize"][-1] = "zzz"
    again = prepare_data(_load(tmp_path, project).project)
    assert again.fitted["vocabulary"]["vectorize"][-1] == "zzz"
    # max_tokens 6 (the Embedding's input_dim 6): adapted again to 4 tokens, indices below 6
    _node(project, "vectorize")["params"]["max_tokens"] = 6
    _node(project, "embed")["params"]["input_dim"] = 6
    data = prepare_data(_load(tmp_path, project).project)
    assert len(data.fitted["vocabulary"]["vectorize"]) == 4
    assert data.x["vectorize"].max() < 6
    # standardize changed: adapted again (capitals kept)
    _node(project, "vectorize")["params"].update(max_tokens=50, standardize="none")
    _node(project, "embed")["params"]["input_dim"] = 50
    data = prepare_data(_load(tmp_path, project).project)
    assert any(t[0].isupper() for t in data.fitted["vocabulary"]["vectorize"])


def test_predict_refuses_a_vocabulary_adapted_with_other_parameters(tmp_path):
    project = _reviews(tmp_path)
    project["dataset"]["fitted"] = prepare_data(_load(tmp_path, project).project).fitted
    _node(project, "vectorize")["params"]["max_tokens"] = 6
    model = _load(tmp_path, json.loads(json.dumps(project)))
    with pytest.raises(DataError, match="max_tokens") as e:
        prepare_inputs(model.project, {"x": np.array([["good film"]], object)})
    assert "vectorize" in str(e.value)


def test_a_saved_vocabulary_over_max_tokens_is_refused(tmp_path):
    project = _reviews(tmp_path)
    fitted = prepare_data(_load(tmp_path, project).project).fitted
    fitted["vocabulary"]["vectorize"] = [f"w{i}" for i in range(60)]  # edited by hand
    project["dataset"]["fitted"] = fitted
    with pytest.raises(DataError, match="max_tokens 50"):
        prepare_data(_load(tmp_path, project).project)


def test_a_vocabulary_saved_without_its_parameters_is_held_to_max_tokens(tmp_path):
    """A trained.loom written before the record (or a vocabulary fine-tuning carried over) is
    reused as it is, but one over max_tokens is refused, never fed past the Embedding."""
    project = _reviews(tmp_path)
    fitted = prepare_data(_load(tmp_path, project).project).fitted
    fitted.pop("vocabulary_params")
    project["dataset"]["fitted"] = fitted
    again = prepare_data(_load(tmp_path, project).project)
    assert again.fitted["vocabulary"] == fitted["vocabulary"]
    _node(project, "vectorize")["params"]["max_tokens"] = 6
    _node(project, "embed")["params"]["input_dim"] = 6
    with pytest.raises(DataError, match="more than max_tokens 6") as e:
        prepare_data(_load(tmp_path, project).project)
    assert "vectorize" in str(e.value)


def _lookup_project(column, dtype, lookup, input_dim):
    return {"format": "layerloom-project", "version": 1, "name": "lookup",
            "graph": {"nodes": [{"id": column, "type": "Input",
                                 "params": {"shape": [1], "dtype": dtype}},
                                {"id": "lookup", "type": lookup, "params": {}},
                                {"id": "embed", "type": "Embedding",
                                 "params": {"input_dim": input_dim, "output_dim": 4}},
                                {"id": "flat", "type": "Flatten", "params": {}},
                                {"id": "out", "type": "Dense",
                                 "params": {"units": 2, "activation": "softmax"}}],
                      "edges": [{"from": [a, 0], "to": [b, 0]} for a, b in
                                ((column, "lookup"), ("lookup", "embed"), ("embed", "flat"),
                                 ("flat", "out"))]},
            "dataset": {"source": "csv", "path": "t.csv", "header": True},
            "training": {"optimizer": {"name": "adam", "params": {}},
                         "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                         "epochs": 1, "batch_size": 16, "seed": 0}}


def test_integer_lookup_from_a_csv_keeps_ids_above_2_to_the_24(tmp_path):
    ids = [123456789, 123456790, 123456791, 20000001]
    write_csv(tmp_path / "t.csv", [(i, k % 2) for k, i in enumerate(ids)] * 5, ["user", "label"])
    model = _load(tmp_path, _lookup_project("user", "int32", "IntegerLookup", 8))
    data = prepare_data(model.project)
    assert sorted(data.fitted["vocabulary"]["lookup"]) == sorted(ids)
    model.project.dataset["fitted"] = data.fitted
    # --predict from a CSV: the same exact ids, the same indices
    write_csv(tmp_path / "new.csv", [(i,) for i in ids + [123456792]], ["user"])
    got = prepare_inputs(model.project, input_files.read(model.project, str(tmp_path / "new.csv"))
                         .arrays)
    vocab = data.fitted["vocabulary"]["lookup"]
    assert got["lookup"].ravel().tolist() == [vocab.index(i) + 1 for i in ids] + [0]


def test_string_lookup_reads_a_numeric_looking_column_as_its_text(tmp_path):
    rows = [("02134", 0), ("10001", 1), ("02134", 0), ("94105", 1)] * 5
    write_csv(tmp_path / "t.csv", rows, ["zip", "label"])
    model = _load(tmp_path, _lookup_project("zip", "string", "StringLookup", 8))
    data = prepare_data(model.project)
    assert data.fitted["vocabulary"]["lookup"] == ["02134", "94105", "10001"]
    model.project.dataset["fitted"] = data.fitted
    write_csv(tmp_path / "new.csv", [("02134",), ("10001",), ("2134",)], ["zip"])
    got = prepare_inputs(model.project, input_files.read(model.project, str(tmp_path / "new.csv"))
                         .arrays)
    assert got["lookup"].ravel().tolist() == [1, 3, 0]


def test_integer_lookup_refuses_float32_ids_above_2_to_the_24_by_name(tmp_path):
    """A column given encoding number arrives as float32, where ids above 2^24 merge: they
    are refused, naming the Input, never merged."""
    ids = [123456789, 123456790, 20000001, 7]
    write_csv(tmp_path / "t.csv", [(i, k % 2) for k, i in enumerate(ids)] * 5, ["code", "label"])
    project = _lookup_project("code", "int32", "IntegerLookup", 8)
    project["dataset"]["columns"] = {"code": {"encoding": "number"}}
    with pytest.raises(DataError, match=r"2\^24") as e:
        prepare_data(_load(tmp_path, project).project)
    assert "'code'" in str(e.value)
    # below 2^24 float32 is exact: accepted
    write_csv(tmp_path / "t.csv", [(i % 1000, k % 2) for k, i in enumerate(ids)] * 5,
              ["code", "label"])
    data = prepare_data(_load(tmp_path, project).project)
    assert sorted(data.fitted["vocabulary"]["lookup"]) == sorted(i % 1000 for i in ids)


@pytest.mark.parametrize("column, dtype, lookup, value", [("zip", "string", "StringLookup", "02134"),
                                                          ("user", "int32", "IntegerLookup", 7)])
def test_a_streamed_table_refuses_a_column_a_text_layer_reads_by_name(tmp_path, monkeypatch,
                                                                      column, dtype, lookup,
                                                                      value):
    monkeypatch.setenv("LAYERLOOM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LAYERLOOM_MEMORY_AVAILABLE", "1000")  # any table streams
    write_csv(tmp_path / "t.csv", [(value, k % 2) for k in range(200)], [column, "label"])
    with pytest.raises(DataError, match=f"'{column}'.*too large"):
        prepare_data(_load(tmp_path, _lookup_project(column, dtype, lookup, 8)).project)
