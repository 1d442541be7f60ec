"""Targets for any output and the defaults a newcomer expects (issue 31, items 5 and 6): every
output shows its target, the input itself among them (an autoencoder); a new project holds
out a validation split; the loss is set by itself where the output and its targets leave no
doubt, and shown as such."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.project import loom as projectfile  # noqa: E402
from guikit import EXAMPLES, build_mlp  # noqa: E402

SHOTS = os.environ.get("LAYERLOOM_SHOTS")  # a folder: the screenshots looked at


def shot(widget, name):
    if SHOTS:
        from PySide6.QtWidgets import QApplication
        for _ in range(5):
            QApplication.processEvents()
        widget.grab().save(os.path.join(SHOTS, name))


# -- item 6: defaults ------------------------------------------------------------------------
def test_a_new_project_holds_out_a_fifth_for_validation_and_an_old_file_keeps_its_meaning(
        win, tmp_path):
    assert Document().project.training["validation_split"] == 0.2
    win.new()
    assert win.doc.project.training["validation_split"] == 0.2
    assert "validation: the last 20%" in win.training.summary.text()
    # a file that says nothing of it still means none, as it always did
    with open(os.path.join(EXAMPLES, "spirals.loom")) as f:
        raw = json.load(f)
    raw["training"].pop("validation_split", None)
    path = tmp_path / "silent.loom"
    path.write_text(json.dumps(raw))
    assert projectfile.load(str(path)).training["validation_split"] == 0.0
    win.set_document(Document.open(str(path)))
    assert "validation" not in win.training.summary.text().lower()
    # a new project saved and opened again keeps its split
    win.new()
    out = build_mlp(win)[-1]
    win.doc.project.training["loss"] = {out: {"name": "mean_squared_error"}}
    win.doc.save(str(tmp_path / "new.loom"))
    assert projectfile.load(str(tmp_path / "new.loom")).training["validation_split"] == 0.2
