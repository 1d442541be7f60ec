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
