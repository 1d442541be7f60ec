"""The Data tab: previews, image grids, mapping and mismatch reports (pytest-qt, offscreen)."""
import json
import os

import pytest

pytest.importorskip("pytestqt")


from layerloom.app.editing.document import Document  # noqa: E402
from guikit import EXAMPLES  # noqa: E402


@pytest.mark.slow
def test_data_tab_previews_csv_and_reports_mismatches(win, qtbot):
    win.set_document(Document.open(os.path.join(EXAMPLES, "wine_csv.loom")))
    panel = win.data
    qtbot.waitUntil(lambda: "Fits the graph" in panel.status.text(), timeout=30_000)
    assert panel.columns.rowCount() == 14 and panel.preview.rowCount() == 50
    assert "cultivar_1: 4" in panel.counts.text() or "cultivar_1:" in panel.counts.text()
    assert panel.columns.cellWidget(13, 3).currentText() == "label"
    # a column made "ignore" changes the feature count: the mismatch names both sides
    panel._column_changed("proline", "role", "ignore")
    qtbot.waitUntil(lambda: "do not fit" in panel.status.text(), timeout=30_000)
    assert "samples shaped (None, 12), Input 'measurements' expects (None, 13)" in \
        panel.status.text() and "set the Input's shape to [12]" in panel.status.text()
    win.doc.undo.undo()
    assert "columns" not in win.doc.project.dataset or \
        "proline" not in win.doc.project.dataset["columns"]
    qtbot.waitUntil(lambda: "Fits the graph" in panel.status.text(), timeout=30_000)


@pytest.mark.slow
def test_data_tab_image_folder_grid(win, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    win.set_document(Document.open(os.path.join(EXAMPLES, "shapes_folder.loom")))
    panel = win.data
    qtbot.waitUntil(lambda: "Fits the graph" in panel.status.text(), timeout=60_000)
    assert "circle:" in panel.counts.text() and panel.thumb_grid.count() == 2 * 12
    win.data.use_csv(os.path.join(EXAMPLES, "data", "wine.csv"))
    assert win.doc.project.dataset["source"] == "csv"
    assert win.doc.project.dataset["inputs"] == {"image": "x"}  # the mapping is kept
    qtbot.waitUntil(lambda: "do not fit" in panel.status.text(), timeout=30_000)
    win.doc.undo.undo()
    assert win.doc.project.dataset["source"] == "images"


def inspect(project_dict, path):
    """What the Data tab shows of a project dict, read as the tab's thread reads it."""
    from layerloom.data.overview import overview
    from layerloom.project import loom
    return overview(loom.from_dict(project_dict, path, strict=False))


def test_data_tab_shows_the_mapping():
    path = os.path.join(EXAMPLES, "wine_csv.loom")
    info = inspect(json.load(open(path)), path)
    assert info["check"] is None
    assert info["mapping"] == ["x -> Input 'measurements' (None, 13)",
                               "y -> target of 'cultivar' (None, 3)"]
    assert info["counts"][0][0] == "cultivar_1" and info["sizes"]["test"] == 44


def test_data_tab_warns_when_the_output_has_more_units_than_classes():
    path = os.path.join(EXAMPLES, "wine_csv.loom")
    d = json.load(open(path))
    d["graph"]["nodes"][-1]["params"]["units"] = 10
    info = inspect(d, path)
    assert info["check"] is None
    assert info["warning"] == ("the data has 3 classes but output 'cultivar' has 10 units; 7 "
                               "will never be the answer (set its units to 3)")


def test_data_tab_check_of_a_graph_with_a_shape_problem_is_not_a_keyerror():
    """Bug: with a shape problem upstream of the output (its shape unknown), the check failed
    with "KeyError: 'cultivar'", which the Problems list then showed as a data problem."""
    path = os.path.join(EXAMPLES, "wine_csv.loom")
    d = json.load(open(path))
    d["graph"]["nodes"].insert(1, {"id": "conv", "type": "Conv2D",
                                   "params": {"filters": 2, "kernel_size": 3}})
    first = d["graph"]["edges"][0]
    d["graph"]["edges"][0:1] = [{"from": first["from"], "to": ["conv", 0]},
                                {"from": ["conv", 0], "to": first["to"]}]
    info = inspect(d, path)
    assert "error" not in info and info["check"] is None
    assert info["mapping"][0] == "x -> Input 'measurements' (None, 13)"
    assert info["mapping"][1] == "y -> target of 'cultivar' (shape unknown: see Problems)"


def test_data_tab_follows_a_rewiring(win, qtbot):
    """Bug: the Data tab's check was redone for node and dataset changes, not for a new wire."""
    from layerloom.app.editing.commands import DisconnectCmd
    from layerloom.core.graph import Edge
    win.set_document(Document.open(os.path.join(EXAMPLES, "wine_csv.loom")))
    panel = win.data
    qtbot.waitUntil(lambda: "Fits the graph" in panel.status.text(), timeout=30_000)
    (e,) = [e for e in win.doc.graph.edges if e.dst == "cultivar"]
    key = panel.shown_for
    win.doc.push(DisconnectCmd(win.doc, Edge(e.src, e.src_port, e.dst, e.dst_port)))
    panel.refresh()
    # the first read's thread may still be ending (its result shown, its finished signal not
    # yet handled, on a loaded machine): the refresh then waits for it (pending), as designed
    qtbot.waitUntil(lambda: panel.shown_for != key, timeout=30_000)


def test_data_tab_reads_a_csv_once(monkeypatch):
    """Bug: the Data tab's inspection read and parsed the CSV twice per refresh (once for the
    column table, once more to load the arrays)."""
    from layerloom.data import tabular
    reads = []
    real = tabular.read
    monkeypatch.setattr(tabular, "read", lambda *a, **k: reads.append(a) or real(*a, **k))
    path = os.path.join(EXAMPLES, "wine_csv.loom")
    info = inspect(json.load(open(path)), path)
    assert info["check"] is None and info["sizes"]["test"] == 44
    assert len(reads) == 1


def test_the_rows_say_what_the_training_split_holds_out(win):
    """Newcomer trial: the Data tab said "validation 0.00" and "Rows: 60,000 training" while
    the Training panel said the last 20% were held out for validation: both say it now."""
    from layerloom.app.editing.commands import SetSetupCmd
    win.doc.push(SetSetupCmd(win.doc, "training", "validation_split", 0.2))
    info = {"description": "Fashion-MNIST", "sizes": {"training": 60000, "test": 10000}}
    win.data.show_info(info)
    text = win.data.status.text()
    assert "Rows: 60,000 training, 10,000 test (training holds out the last 20% of the " \
        "training rows for validation: 12,000)" in text, text
    win.data.show_info({**info, "sizes": {"training": 50000, "validation": 10000}})
    assert "holds out" not in win.data.status.text()
    win.doc.push(SetSetupCmd(win.doc, "training", "validation_split", 0.0))
    win.data.show_info(info)
    assert "holds out" not in win.data.status.text()


def test_a_data_error_offers_to_read_again(win, qtbot, monkeypatch):
    """Newcomer trial: "not on this machine" stayed listed after the dataset was installed,
    with no way to look again short of File > New. An error offers Read again, which reads
    the data once more (the same project: nothing else would)."""
    win.data.show_info({"error": "fashion_mnist is not on this machine; apt-get install ..."})
    assert not win.data.read_button.isHidden() and win.data.read_button.text() == "Read again"
    reads = []
    monkeypatch.setattr(win.data, "refresh", lambda: reads.append(win.data.shown_for))
    win.data.read_button.click()
    assert reads == [None]  # what was shown is forgotten, so the read happens
    win.data.show_info({"description": "x", "sizes": {"training": 3}})
    assert win.data.read_button.isHidden()


@pytest.mark.slow
def test_the_held_out_share_follows_the_training_setting(win, qtbot):
    """Review: the status line kept "the last 20%" after the split became 0.5 (the data is
    not read again for a training setting, so its line was never redrawn)."""
    from layerloom.app.editing.commands import SetSetupCmd
    win.set_document(Document.open(os.path.join(EXAMPLES, "wine_csv.loom")))
    d = win.doc.project.dataset
    win.doc.push(SetSetupCmd(win.doc, "dataset", None, {**d, "split": {"test": 0.25,
                                                                       "validation": 0.0}}))
    win.doc.push(SetSetupCmd(win.doc, "training", "validation_split", 0.2))
    panel = win.data
    qtbot.waitUntil(lambda: "holds out the last 20%" in panel.status.text(), timeout=30_000)
    win.doc.push(SetSetupCmd(win.doc, "training", "validation_split", 0.5))
    qtbot.waitUntil(lambda: "holds out the last 50%" in panel.status.text(), timeout=10_000)
