"""Helpers the editor tests share (their window fixtures, make_window and win, are in
conftest.py)."""
import os

from PySide6.QtWidgets import QApplication

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "assets", "examples")


def start_spirals(win, qtbot, epochs):
    """Train the spirals example for `epochs` and return once the first loss is plotted."""
    from layerloom.app.editing.document import Document
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    win.training.epochs.setText(str(epochs))  # typed and committed, as a user does (a text
    win.training.epochs.editingFinished.emit()  # field: setValue alone no longer commits)
    assert win.doc.project.training["epochs"] == epochs
    win.training.start_training()
    qtbot.waitUntil(lambda: len(win.training.plots.series.get("loss", ([], []))[0]) > 0,
                    timeout=120_000)


def build_mlp(win):
    ids = [win.add_at_centre(t) for t in ("Input", "Dense", "Dense")]
    s = win.scene
    assert s.connect_ports(ids[0], 0, ids[1], 0)
    assert s.connect_ports(ids[1], 0, ids[2], 0)
    return ids


def open_shown(win, qtbot, size, name):
    """The window at size, shown, with the example project `name` opened and laid out."""
    win.resize(*size)
    qtbot.waitExposed(win)
    assert win.open_path(os.path.join(EXAMPLES, name))
    for _ in range(10):
        QApplication.processEvents()
    return win.view, win.view.viewport().rect()


def start_without_a_process(win, qtbot, monkeypatch):
    """Press Start with the training process replaced by one that ends at once; returns what
    the run was handed: [(project_dict, path, epochs, batch_size, device, resume, initial)]."""
    import queue
    import threading
    from layerloom.cli import train_process
    started = []

    class Ended:
        exitcode = 0

        def is_alive(self):
            return False

        def join(self, timeout=None):
            pass

    def start(project_dict, path, epochs, batch_size, device, resume=None, initial=None):
        started.append((project_dict, path, epochs, batch_size, device, resume, initial))
        q = queue.Queue()
        q.put(("end", None))
        return Ended(), q, threading.Event(), threading.Event()
    monkeypatch.setattr(train_process, "start", start)
    win.training.start_training()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=10_000)
    return started
