"""The editor with the text layers (issue 28; pytest-qt, offscreen): the palette lists
StringLookup, IntegerLookup and TextVectorization under Preprocessing; the inspector's form
shows their parameters and reads a vocabulary and a special token typed as JSON; a text
classifier opens with its shapes on the wires (the string Input's (None, 1), the
TextVectorization's sequence) and the Data tab lists a CSV's text column."""
import json
import os

import pytest

pytest.importorskip("pytestqt")

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.core.registry import get_layer  # noqa: E402

HOST = ("StringLookup", "IntegerLookup", "TextVectorization")


def test_the_palette_lists_the_text_layers_under_preprocessing(win):
    for t in HOST:
        item = win.palette.items[t]
        assert item.parent().text(0) == "Preprocessing"
        assert "host layer" in item.toolTip(0)


def test_the_inspector_form_reads_a_vocabulary_and_tokens_as_json(qapp):
    from layerloom.app.forms.paramform import ParamForm
    layer = get_layer("StringLookup")
    form = ParamForm(layer.params, layer.defaults(), place="StringLookup")
    got = []
    form.sigChanged.connect(lambda name, value: got.append((name, value)))
    assert set(form.widgets) == {q.name for q in layer.params}
    assert form.widgets["vocabulary"].text() == ""  # none: adapted to the training rows
    assert form.widgets["oov_token"].text() == "[UNK]"
    for name, text in (("vocabulary", "red, blue"), ("vocabulary", ""),
                       ("vocabulary", '["a,b", "c"]'), ("mask_token", "<pad>"),
                       ("mask_token", ""), ("vocabulary", "[]"), ("vocabulary", "x, x")):
        form.widgets[name].setText(text)
        form.widgets[name].editingFinished.emit()
    assert got == [("vocabulary", ["red", "blue"]), ("vocabulary", None),
                   ("vocabulary", ["a,b", "c"]), ("mask_token", "<pad>"), ("mask_token", None)]
    assert "holds 'x' twice" in form.errors["vocabulary"].text()
    form.set_values({"vocabulary": ["x", "y"], "oov_token": "?"})
    assert form.widgets["vocabulary"].text() == '["x", "y"]'
    ints = get_layer("IntegerLookup")
    form = ParamForm(ints.params, ints.defaults(), place="IntegerLookup")
    got = []
    form.sigChanged.connect(lambda name, value: got.append((name, value)))
    assert form.widgets["oov_token"].text() == "-1"
    form.widgets["vocabulary"].setText("3, 1, 2")
    form.widgets["vocabulary"].editingFinished.emit()
    assert got == [("vocabulary", [3, 1, 2])]


def test_a_text_classifier_shows_its_shapes_and_the_data_tab_its_text_column(win, tmp_path):
    (tmp_path / "t.csv").write_text("review,label\nGood fun,1\nBad plot,0\nGreat film,1\n")
    nodes = [{"id": "text", "type": "Input", "params": {"shape": [1], "dtype": "string"}},
             {"id": "vec", "type": "TextVectorization",
              "params": {"max_tokens": 50, "output_sequence_length": 8}},
             {"id": "emb", "type": "Embedding", "params": {"input_dim": 50, "output_dim": 4}},
             {"id": "pool", "type": "GlobalAveragePooling1D", "params": {}},
             {"id": "out", "type": "Dense", "params": {"units": 2, "activation": "softmax"}}]
    ids = [n["id"] for n in nodes]
    project = {"format": "layerloom-project", "version": 1, "name": "text",
               "graph": {"nodes": nodes, "edges": [{"from": [a, 0], "to": [b, 0]}
                                                   for a, b in zip(ids, ids[1:])]},
               "dataset": {"source": "csv", "path": "t.csv", "header": True},
               "training": {"loss": "sparse_categorical_crossentropy"}}
    path = tmp_path / "text.loom"
    path.write_text(json.dumps(project))
    win.set_document(Document.open(str(path)))
    labels = {e.edge.dst: e.label.text() for e in win.scene.edges.values()}
    assert labels["vec"] == "1" and labels["emb"] == "8" and labels["pool"] == "8x4"
    assert not win.doc.project.graph.validate()
    from layerloom.data.overview import overview  # what the Data tab shows
    view = overview(win.doc.project)
    assert view.get("error") is None and view["check"] is None, view
    assert [c[0] for c in view["columns"]] == ["review", "label"]
    assert view["columns"][0][1].startswith("text")
    assert "x -> Input 'text' (None, 1)" in view["mapping"]


def test_the_wordpiece_layers_edit_their_token_lists_and_ids_as_json(qapp, win):
    """keras_hub's WordPieceTokenizer and StartEndPacker (layers/text_pieces.py): in the
    palette under Preprocessing; the form reads reserved tokens and start/end ids as JSON and
    says what it expected of a token string where an id is wanted."""
    from layerloom.app.forms.paramform import ParamForm
    for t in ("WordPieceTokenizer", "StartEndPacker"):
        assert win.palette.items[t].parent().text(0) == "Preprocessing"
    wp = get_layer("WordPieceTokenizer")
    form = ParamForm(wp.params, wp.defaults(), place="WordPieceTokenizer")
    got = []
    form.sigChanged.connect(lambda name, value: got.append((name, value)))
    assert json.loads(form.widgets["reserved_tokens"].text())[0] == "[PAD]"
    for text in ('["[PAD]", "[UNK]", "[BOS]"]', "[PAD], [UNK]"):
        form.widgets["reserved_tokens"].setText(text)
        form.widgets["reserved_tokens"].editingFinished.emit()
    assert got == [("reserved_tokens", ["[PAD]", "[UNK]", "[BOS]"]),
                   ("reserved_tokens", ["[PAD]", "[UNK]"])]
    pack = get_layer("StartEndPacker")
    form = ParamForm(pack.params, pack.defaults(), place="StartEndPacker")
    got = []
    form.sigChanged.connect(lambda name, value: got.append((name, value)))
    assert form.widgets["start_value"].text() == ""  # none
    for text in ("2", "[2, 5]", "", "3, 4", "[BOS]"):
        form.widgets["start_value"].setText(text)
        form.widgets["start_value"].editingFinished.emit()
    assert got == [("start_value", 2), ("start_value", [2, 5]), ("start_value", None),
                   ("start_value", [3, 4])]
    assert "token id" in form.errors["start_value"].text()
    form.set_values({"start_value": [1, 2]})
    assert form.widgets["start_value"].text() == "[1, 2]"
