"""The editor's File > Import Model... and File > Export: an ONNX model becomes an unsaved
project with its weights; the document's model is written as ONNX (checked with onnxruntime)
and as a Keras script shown in a highlighted preview with Copy and Save As (pytest-qt,
offscreen)."""
import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from layerloom.app.editing.document import Document  # noqa: E402

from guikit import EXAMPLES  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "data")


def wait(win, qtbot):
    qtbot.waitUntil(lambda: win.interop_task is None, timeout=120_000)


def trained_spirals(win):
    from layerloom import api
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    win.doc.set_trained(api.Model(win.doc.project).session.model.get_weights())


def test_import_an_onnx_model_as_an_unsaved_project_with_its_weights(win, qtbot):
    pytest.importorskip("onnx")
    import onnxruntime as ort
    path = os.path.join(DATA, "torch_mlp.onnx")
    assert win.import_model(path)
    wait(win, qtbot)
    assert win.doc.path is None and win.doc.dirty and win.doc.has_model
    assert len(win.scene.nodes) == len(win.doc.graph.nodes) >= 3
    assert win.predict_action.isEnabled() and "Imported" in win.log.toPlainText()
    # the document's model computes what onnxruntime computes
    from layerloom import api
    model = api.Model(win.doc.project, win.doc.weights)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal((5, inp.shape[1])).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), sess.run(None, {inp.name: x})[0], atol=1e-5)


def test_a_file_that_is_not_a_model_is_a_message(win, qtbot, tmp_path):
    pytest.importorskip("onnx")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    before = win.doc
    assert win.import_model(str(bad))
    wait(win, qtbot)
    assert win.doc is before
    log = win.log.toPlainText()
    assert "Importing broken.onnx failed" in log and "Traceback" not in log


def test_an_export_this_version_lacks_is_one_line(win, qtbot, tmp_path, monkeypatch):
    """The menu lists every format; one whose module is missing says so, no traceback."""
    import sys
    monkeypatch.setitem(sys.modules, "layerloom.interop.torch_code", None)
    trained_spirals(win)
    assert win.export_to(str(tmp_path / "train_torch.py"), "pytorch-code")
    wait(win, qtbot)
    log = win.log.toPlainText()
    assert "this Layerloom has no torch_code module" in log and "Traceback" not in log
    assert not (tmp_path / "train_torch.py").exists()


def test_export_needs_a_trained_model(win, qtbot):
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    assert not win.export_to("/nonexistent/x.onnx", "onnx")
    assert not win.preview_code("keras-code")
    assert "no trained model (not trained yet)" in win.log.toPlainText()


def test_export_onnx_computes_what_the_document_predicts(win, qtbot, tmp_path):
    pytest.importorskip("onnx")
    import onnxruntime as ort
    trained_spirals(win)
    out = tmp_path / "spirals.onnx"
    assert win.export_to(str(out), "onnx")
    wait(win, qtbot)
    assert out.exists() and f"to {out}" in win.log.toPlainText()
    from layerloom import api
    x = np.random.default_rng(1).standard_normal((7, 2)).astype(np.float32)
    want = api.Model(win.doc.project, win.doc.weights).predict(x)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"point": x})[0], want, atol=1e-5)


def test_keras_code_preview_copy_and_save(win, qtbot, tmp_path):
    pytest.importorskip("layerloom.interop.keras_code")  # not in this version yet (issue 18)
    from PySide6.QtWidgets import QApplication
    trained_spirals(win)
    assert win.preview_code("keras-code")
    wait(win, qtbot)
    p = win.code_preview
    assert p is not None and p.isVisible()
    text = p.editor.toPlainText()
    assert "def build_model" in text and "import keras" in text
    from PySide6.QtGui import QFont
    assert p.editor.isReadOnly() and p.editor.font().styleHint() == QFont.TypeWriter
    # highlighted: the first keyword of the script has the keyword colour
    block = p.editor.document().findBlockByNumber(
        next(i for i, ln in enumerate(text.splitlines()) if ln.startswith("import ")))
    formats = block.layout().formats()
    assert formats and formats[0].format.fontWeight() > 50
    p.copy()
    assert QApplication.clipboard().text() == text
    script = tmp_path / "train_keras.py"
    assert win.export_to(str(script), "keras-code")
    wait(win, qtbot)
    saved = script.read_text()  # the same script, naming the weights beside it
    assert saved.count("\n") == text.count("\n") and "train_keras.weights.npz" in saved
    assert (tmp_path / "train_keras.weights.npz").exists()


def test_pytorch_code_is_written_without_torch(win, qtbot, tmp_path, monkeypatch):
    """Issue 26, item 7: the script is text; without torch it said "training failed:
    ModuleNotFoundError: No module named 'torch'"."""
    import sys
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "torch.nn", None)
    trained_spirals(win)
    assert win.preview_code("pytorch-code")
    wait(win, qtbot)
    assert "import torch" in win.code_preview.editor.toPlainText()
    script = tmp_path / "train_torch.py"
    assert win.export_to(str(script), "pytorch-code")
    wait(win, qtbot)
    assert script.exists() and (tmp_path / "train_torch.weights.npz").exists()
    assert "failed" not in win.log.toPlainText()


def test_an_export_without_its_package_says_so_before_asking_for_a_file(win, monkeypatch):
    import sys
    from PySide6.QtWidgets import QFileDialog

    def asked(*args, **kwargs):
        raise AssertionError("asked for a file name")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", asked)
    monkeypatch.setitem(sys.modules, "keras", None)
    trained_spirals(win)
    assert not win.export_dialog("keras")
    assert win.interop_task is None
    line = win.log.toPlainText().splitlines()[-1]
    assert "pip install 'layerloom[keras-export]'" in line and "training" not in line, line
