"""The training dock: live curves, stop, pause, results, losses and data mapping (pytest-qt,
offscreen)."""
import os
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt, QTimer  # noqa: E402

from layerloom.app.editing.document import Document  # noqa: E402
from guikit import EXAMPLES, start_spirals, start_without_a_process  # noqa: E402


@pytest.mark.slow
def test_training_plots_live_and_window_stays_responsive(win, qtbot):
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    win.training.epochs.setValue(4)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    win.training.start_training()
    assert win.doc.locked
    # editing while training is refused, with a message
    assert win.add_at_centre("Dense") is None
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=120_000)
    timer.stop()
    assert not win.doc.locked and "Finished" in win.training.status.text()
    xs, ys = win.training.plots.series["loss"]
    assert len(xs) >= 4 and ys[-1] < ys[0]
    assert len(win.training.plots.series["val_accuracy"][0]) == 4
    assert "Epoch 4:" in win.log.toPlainText() and "Test:" in win.log.toPlainText()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 20 and max(gaps) < 0.25, max(gaps)


@pytest.mark.slow
def test_stop_leaves_a_consistent_model(win, qtbot):
    start_spirals(win, qtbot, epochs=500)
    worker = win.training.worker
    # the progress is on the toolbar, in view whatever the Training dock shows
    assert win.run_progress.isVisible() and not win.continue_action.isEnabled()
    qtbot.waitUntil(lambda: win.run_progress.value() > 0, timeout=60_000)
    assert worker.process.pid != os.getpid()  # trains in its own process
    win.training.stop_training()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=60_000)
    assert win.training.last_history["stopped"] and not worker.process.is_alive()
    w = win.training.last_weights
    assert set(w) == {"hidden_1/kernel", "hidden_1/bias", "hidden_2/kernel", "hidden_2/bias",
                      "hidden_3/kernel", "hidden_3/bias", "class/kernel", "class/bias"}
    assert all(np.isfinite(v).all() for v in w.values())
    assert win.continue_action.isEnabled() and not win.run_progress.isVisible()
    assert win.add_at_centre("Dense") is not None  # editable again


@pytest.mark.slow
def test_pause_and_resume(win, qtbot):
    start_spirals(win, qtbot, epochs=200)
    assert not win.continue_action.isEnabled()
    win.pause_action.trigger()
    # the second trial: Continue stayed off while paused, and the toolbar still said Pause
    assert win.pause_action.text() == "Resume" and win.continue_action.isEnabled()
    assert win.run_progress.format() == "paused"  # not "about 2 s left" (the third trial)
    assert win.statusBar().currentMessage().startswith("Paused")
    assert win.training.continue_run.isEnabled()
    time.sleep(0.5)
    qtbot.wait(300)
    n = len(win.training.plots.series["loss"][0])
    qtbot.wait(800)
    assert len(win.training.plots.series["loss"][0]) <= n + 1  # held between batches
    win.continue_action.trigger()  # resumes
    assert not win.training.worker.paused and win.pause_action.text() == "Pause"
    assert not win.continue_action.isEnabled()
    qtbot.waitUntil(lambda: len(win.training.plots.series["loss"][0]) > n + 1, timeout=60_000)
    win.training.toggle_pause()
    win.training.toggle_pause()
    win.training.stop_training()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=60_000)


@pytest.mark.slow
def test_build_and_train_from_an_empty_canvas_without_a_text_file(win, qtbot):
    """The acceptance path at small scale: palette, wiring, inspector, the training dock's
    setup editors, Start, curves."""
    tp = win.training
    inp, h, out = (win.add_at_centre(t) for t in ("Input", "Dense", "Dense"))
    assert win.scene.connect_ports(inp, 0, h, 0) and win.scene.connect_ports(h, 0, out, 0)
    win.scene.clearSelection()
    win.scene.nodes[h].setSelected(True)
    win.inspector.widgets["units"].setValue(16)
    win.inspector.widgets["units"].editingFinished.emit()
    win.inspector.widgets["activation"].setCurrentText("relu")
    win.scene.clearSelection()
    win.scene.nodes[out].setSelected(True)
    win.inspector.widgets["units"].setValue(2)
    win.inspector.widgets["units"].editingFinished.emit()
    win.inspector.widgets["activation"].setCurrentText("softmax")
    i = tp.dataset.findData("synthetic:moons")
    tp.dataset.setCurrentIndex(i)
    tp.dataset.activated.emit(i)
    assert win.doc.project.dataset == {"source": "synthetic", "name": "moons"}
    tp.loss.setCurrentText("sparse_categorical_crossentropy")
    tp.loss.activated.emit(tp.loss.currentIndex())
    lr = tp.optimizer.form.widgets["learning_rate"].number  # the constant rate's field
    lr.setText("0.01")
    lr.editingFinished.emit()
    tp.epochs.setValue(8)
    tp.epochs.editingFinished.emit()
    assert win.doc.project.training["epochs"] == 8
    assert win.problems.count() == 0, [win.problems.item(k).text()
                                       for k in range(win.problems.count())]
    tp.start.click()
    qtbot.waitUntil(lambda: tp.worker is None, timeout=120_000)
    assert tp.last_history["epochs"][-1]["accuracy"] > 0.8
    assert len(tp.plots.series["loss"][0]) >= 8
    # setup changes are undoable like graph edits
    win.doc.undo.undo()
    assert win.doc.project.training["epochs"] != 8 and tp.epochs.value() != 8
    # a bad learning rate is refused with the reason, shown beside it
    lr = tp.optimizer.form.widgets["learning_rate"].number  # the constant rate's field
    lr.setText("-1")
    lr.editingFinished.emit()
    assert "expected a number > 0" in tp.optimizer.form.errors["learning_rate"].text()


@pytest.mark.slow
def test_results_after_training_a_classifier(win, qtbot, tmp_path):
    """Confusion matrix and samples on the test split, for an image classifier trained on a
    small Fashion-MNIST-shaped set the test writes itself."""
    from test_data import write_idx_set
    arrays = write_idx_set(str(tmp_path / "data" / "fashion_mnist"), n_train=64, n_test=20)
    os.environ["LAYERLOOM_DATA_DIR"] = str(tmp_path / "data")
    try:
        doc = Document.open(os.path.join(EXAMPLES, "fashion_mnist_mlp.loom"))
        win.set_document(doc)
        win.training.epochs.setValue(1)
        win.training.start_training()
        qtbot.waitUntil(lambda: win.results.result is not None, timeout=120_000)
        qtbot.waitUntil(lambda: win.training.worker is None, timeout=60_000)
    finally:
        del os.environ["LAYERLOOM_DATA_DIR"]
    r = win.results.result
    assert r["split"] == "test" and r["matrix"].shape == (10, 10)
    assert r["matrix"].sum() == 20
    assert r["matrix"].sum(1).tolist() == np.bincount(
        arrays["t10k-labels-idx1-ubyte"], minlength=10).tolist()
    assert r["classes"][0] == "T-shirt/top" and len(r["samples"]) == 20
    assert r["accuracy"] == np.trace(r["matrix"]) / 20
    assert "accuracy" in win.results.title.text()


def test_per_output_losses_and_weights_in_the_dock(win, qtbot):
    win.set_document(Document.open(os.path.join(EXAMPLES, "multitask.loom")))
    tp = win.training
    assert list(tp.output_rows) == ["inside", "value"]
    assert tp.loss.currentText() == "(one per output, below)"  # was "(choose a loss)"
    combo, weight = tp.output_rows["value"]
    assert combo.currentText() == "mean_squared_error" and weight.value() == 0.5
    combo.setCurrentText("huber")
    combo.activated.emit(combo.currentIndex())
    weight.setValue(2.0)
    weight.editingFinished.emit()
    loss = win.doc.project.training["loss"]
    assert loss["value"] == {"name": "huber", "weight": 2.0, "from_logits": False, "delta": 1.0}
    assert loss["inside"]["name"] == "sparse_categorical_crossentropy"
    assert win.problems.count() == 0
    win.doc.undo.undo()  # the weight change
    assert win.doc.project.training["loss"]["value"] == {
        "name": "huber", "weight": 0.5, "from_logits": False, "delta": 1.0}
    win.doc.undo.undo()  # the loss change
    assert win.doc.project.training["loss"]["value"] == {"name": "mean_squared_error",
                                                         "weight": 0.5, "from_logits": False}
    assert tp.output_rows["value"][0].currentText() == "mean_squared_error"


def test_dataset_arrays_map_to_inputs_and_targets_in_the_dock(win, qtbot):
    win.set_document(Document.open(os.path.join(EXAMPLES, "multitask.loom")))
    tp = win.training
    rows = tp.mapping_rows
    assert set(rows) == {("inputs", "point"), ("inputs", "features"), ("targets", "inside"),
                         ("targets", "value")}
    combo = rows[("inputs", "point")]
    assert combo.currentText() == "point"
    assert [combo.itemText(i) for i in range(combo.count())] == [
        "(choose)", "features", "inside", "point", "value"]
    combo.setCurrentText("features")  # wrong on purpose: 3 features for a 2-wide Input
    combo.activated.emit(combo.currentIndex())
    assert win.doc.project.dataset["inputs"]["point"] == "features"
    tp.start_training()
    qtbot.waitUntil(lambda: tp.worker is None, timeout=60_000)
    assert "array 'features' has samples shaped (None, 3), Input 'point' expects (None, 2)" \
        in win.log.toPlainText()
    win.doc.undo.undo()
    assert win.doc.project.dataset["inputs"]["point"] == "point"
    assert rows[("inputs", "point")].currentText() == "point"


def test_dock_does_not_show_choices_that_are_not_made(win):
    """A new project has no dataset and no loss: the dock says so instead of showing the first
    entries as if they were chosen."""
    tp = win.training
    assert tp.dataset.currentText() == "(choose a dataset)"
    assert tp.loss.currentText() == "(choose a loss)"
    tp.dataset.activated.emit(tp.dataset.currentIndex())  # choosing the placeholder: no change
    assert win.doc.project.dataset == {} and not win.doc.dirty
    i = tp.dataset.findData("synthetic:moons")
    tp.dataset.setCurrentIndex(i)
    tp.dataset.activated.emit(i)
    assert tp.dataset.currentText() == "moons (synthetic)"
    # an output without a loss shows the placeholder in its own row too
    win.set_document(Document.open(os.path.join(EXAMPLES, "multitask.loom")))
    win.training.load_setup()
    from layerloom.app.editing.commands import SetSetupCmd
    win.doc.push(SetSetupCmd(win.doc, "training", "loss", {"inside": {
        "name": "sparse_categorical_crossentropy", "weight": 1.0, "from_logits": False}}))
    assert win.training.output_rows["value"][0].currentText() == "(choose a loss)"


def test_device_list_agrees_with_list_devices(win, qtbot):
    """The Device box is filled off the GUI thread from the same survey as --list-devices:
    auto names the default device, and every device's tooltip says why it is, or is not,
    the default."""
    from PySide6.QtCore import Qt
    from layerloom.backend.runtime import survey
    combo = win.training.device
    qtbot.waitUntil(lambda: not win.training.device_survey.isRunning(), timeout=120000)
    qtbot.waitUntil(lambda: combo.itemText(0).startswith("auto: "), timeout=5000)
    choices = survey(probe_all=True)
    default = next(c for c in choices if c.default)
    from layerloom.app.panels.training_panel import short_name
    assert combo.itemText(0) == f"auto: {default.pi}:{default.di} {short_name(default)}"
    from layerloom.backend.runtime import device_kind
    if device_kind(default.dev) == "cpu":  # a CPU by its driver: one CPU may have several
        assert default.dev.driver_version.strip() in combo.itemText(0)
    assert combo.itemData(0) is None and combo.count() == len(choices) + 1
    # auto's tooltip: why, and what to install where the driver drops the CPU's AVX-512
    advice = default.caps.advice
    assert combo.itemData(0, Qt.ToolTipRole) == default.why + (f"\n{advice}" if advice else "")
    for i, c in enumerate(choices, start=1):
        assert combo.itemData(i) == f"{c.pi}:{c.di}"
        assert combo.itemData(i, Qt.ToolTipRole) == c.why


def test_auto_says_what_to_install_where_the_driver_drops_the_cpus_avx512(win, qtbot):
    """The bundled PoCL 3.0 on an AMD Zen 4 (its compiler targets znver3): auto's tooltip says
    why it is the default and, on a line of its own, what to install for AVX-512."""
    from PySide6.QtCore import Qt
    from layerloom.backend.capabilities import Capabilities
    from layerloom.backend.runtime import Choice
    from test_capabilities import fake_device, fake_platform
    qtbot.waitUntil(lambda: not win.training.device_survey.isRunning(), timeout=120000)
    narrow = Capabilities(widths=(4, 8), refused={16: "changes the ABI"}, target="znver3",
                          native_width=16, gflops=123.0)
    only = Choice(0, 0, fake_platform(), fake_device(), caps=narrow,
                  why="the default: the only cpu that works (...)", default=True)
    win.training._devices_found([only])
    tip = win.training.device.itemData(0, Qt.ToolTipRole).split("\n")
    assert tip[0] == "the default: the only cpu that works (...)"
    assert tip[1] == narrow.advice and "pocl-opencl-icd" in tip[1]


@pytest.mark.slow
def test_stop_then_continue_equals_an_uninterrupted_run(win, qtbot):
    """Stop, then Continue: the run goes on where it stopped (weights, optimizer, position) and
    ends with the weights one uninterrupted run of the same epochs gives."""
    from layerloom.project import loom as projectfile
    from layerloom.train.session import Session
    from layerloom.data.prepare import prepare_data
    start_spirals(win, qtbot, epochs=6)
    assert not win.training.continue_run.isEnabled()
    win.training.stop_training()
    qtbot.waitUntil(lambda: win.training.worker is None, timeout=60_000)
    if not win.training.last_history["stopped"]:
        pytest.skip("the run finished before Stop reached it")
    assert win.training.continue_run.isEnabled()
    qtbot.mouseClick(win.training.continue_run, Qt.LeftButton)
    qtbot.waitUntil(lambda: win.training.worker is None and win.training.last_history
                    and not win.training.last_history["stopped"], timeout=120_000)
    assert [e["epoch"] for e in win.training.last_history["epochs"]] == list(range(1, 7))
    proj = projectfile.load(os.path.join(EXAMPLES, "spirals.loom"))
    proj.training["epochs"] = 6
    whole = Session(proj)
    whole.fit(prepare_data(proj))
    want, got = whole.model.get_weights(), win.training.last_weights
    assert all(np.array_equal(want[k], got[k]) for k in want)
    assert not win.training.continue_run.isEnabled()


def test_the_time_left_leaves_out_compilation_and_pauses(win):
    """Issue 19, item 16: "about 158 s left" for a 5 s run, because the first batch's wait
    (data, kernel compilation) counted as the rate; the estimate starts at the first batch
    read back and leaves the time paused out."""
    p = win.training
    p.total_batches, p.rate_from, p.paused_total, p.paused_at = 100, None, 0.0, None
    # 30 s of compiling before batch 1: no estimate from that
    assert p.time_left(1, now=30.0) == "estimating the time left..."
    assert p.time_left(3, now=30.5) == "estimating the time left..."  # under a second of batches
    assert p.time_left(11, now=31.0) == "about 9 s left"  # 10 batches a second
    p.paused_total = 60.0  # a minute paused
    assert p.time_left(21, now=92.0) == "about 8 s left"
    p.total_batches = 100_000
    assert p.time_left(21, now=92.0) == "about 167 min left"


def test_an_epochs_seconds_leave_out_the_pause(monkeypatch):
    import threading
    from layerloom.cli import train_process
    stop, pause = threading.Event(), threading.Event()
    control = train_process.Control(stop, pause)
    sent = []

    class Q:
        def put(self, item):
            sent.append(item)
    sender = train_process._Sender(Q(), control)
    sender.on_epoch_begin(1)
    pause.set()
    threading.Timer(0.4, pause.clear).start()
    assert control() is False and control.paused >= 0.35
    record = {"epoch": 1, "seconds": control.paused + 0.25, "loss": 1.0}
    sender.on_epoch_end(1, record)
    assert abs(record["seconds"] - 0.25) < 1e-9 and sent[-1][1]["seconds"] == record["seconds"]
    stop.set()
    assert control() is True


@pytest.mark.parametrize("name", ["multitask.loom", "fashion_mnist_cnn.loom", "wine_csv.loom"])
def test_the_training_dock_never_scrolls_sideways(win, qtbot, name):
    """Issue 19, item 9 at 1400x860, with per-output losses, metrics and array rows too (the
    multitask example's loss boxes widened the dock past its width and cut its labels)."""
    from PySide6.QtWidgets import QScrollArea
    win.resize(1400, 860)
    win.show()
    qtbot.waitExposed(win)
    win.set_document(Document.open(os.path.join(EXAMPLES, name)))
    m = win.training.metrics
    area = win.training.parent()
    while not isinstance(area, QScrollArea):
        area = area.parent()
    if m.pickers:  # the trial: a long metric's name widened its button and pushed k away
        m.pickers["inside"].actions["sparse_top_k_categorical_accuracy"].trigger()
        m.pickers["value"].actions["top_k_categorical_accuracy"].trigger()
        qtbot.wait(100)
        assert area.horizontalScrollBar().maximum() == 0, win.training.minimumSizeHint().width()
        m.per_output.setChecked(False)  # then the box stayed right of a long button, unseen
    qtbot.wait(100)
    assert area.horizontalScrollBar().maximum() == 0, win.training.minimumSizeHint().width()
    if name == "multitask.loom":
        box = m.per_output
        right = box.mapTo(area.viewport(), box.rect().topRight()).x()
        assert box.isVisible() and right <= area.viewport().width()
        assert m.all.button.full.startswith("accuracy, sparse_top_k_categorical_accuracy")
        assert m.all.button.text().endswith("\u2026")  # cut short, the whole in its tooltip
        assert m.all.button.full in m.all.button.toolTip()


def test_the_plots_show_the_runs_epochs_until_the_first_read_out(win, qtbot):
    """Issue 19 (the trial): at Start the loss plot's axes ran from -2 to 2 until the first
    read-out came back."""
    plots = win.training.plots
    plots.begin(epochs=7)
    qtbot.wait(50)
    for plot in (plots.loss_plot, plots.metric_plot):
        (x0, x1), (y0, y1) = plot.vb.viewRange()
        assert -0.5 < x0 <= 0 and 7 <= x1 < 7.5 and -0.15 < y0 <= 0 and 1 <= y1 < 1.15
    plots.add_point("loss", 0.5, 3.0)
    plots.add_point("loss", 1.0, 2.0)
    plots.flush()
    qtbot.wait(50)
    (x0, x1), (y0, y1) = plots.loss_plot.vb.viewRange()
    assert y0 < 2.05 and y1 > 2.95 and x1 < 2, "then they follow the data"


def test_a_losss_own_parameters_are_fields_under_its_box(win):
    """Issue 19, item 14: huber's delta and a cross-entropy's from_logits had no widget."""
    win.set_document(Document.open(os.path.join(EXAMPLES, "multitask.loom")))
    tp = win.training
    combo, weight = tp.output_rows["value"]
    combo.setCurrentText("huber")
    combo.activated.emit(combo.currentIndex())
    fields = tp.output_fields["value"]
    assert fields.isVisibleTo(tp) and list(fields.form.widgets) == ["delta"]
    delta = fields.form.widgets["delta"]
    delta.setText("0.25")
    delta.editingFinished.emit()
    assert win.doc.project.training["loss"]["value"]["delta"] == 0.25
    delta.setText("-1")  # refused beside the field, not written
    delta.editingFinished.emit()
    assert win.doc.project.training["loss"]["value"]["delta"] == 0.25
    assert fields.form.errors["delta"].text()
    inside = tp.output_fields["inside"].form.widgets["from_logits"]
    inside.setChecked(True)
    assert win.doc.project.training["loss"]["inside"]["from_logits"] is True
    assert not tp.output_fields["value"].form.widgets.get("from_logits")  # huber has none
    win.doc.undo.undo()
    assert win.doc.project.training["loss"]["inside"]["from_logits"] is False
    assert not tp.output_fields["inside"].form.widgets["from_logits"].isChecked()
    # one output: the fields sit under the Loss box and apply to it
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    tp = win.training
    assert tp.loss_fields.isVisibleTo(tp) and "from_logits" in tp.loss_fields.form.widgets
    tp.loss_fields.form.widgets["from_logits"].setChecked(True)
    out = win.doc.graph.outputs()[0]
    assert win.doc.project.training["loss"][out]["from_logits"] is True


def test_a_new_document_has_nothing_to_continue(win):
    """The third trial: after a stopped run, Ctrl+N left the toolbar's Continue on (it did
    nothing)."""
    tp = win.training
    tp.last_weights, tp.last_state = {"w": np.zeros(1)}, object()
    tp.continue_run.setEnabled(True)
    win._run_actions(False)
    assert win.continue_action.isEnabled()
    win.set_document(Document())
    assert not win.continue_action.isEnabled() and not win.training.continue_run.isEnabled()
    assert win.pause_action.text() == "Pause"


def test_one_start_serialises_the_project_once_and_parses_it_once(win, qtbot, monkeypatch):
    """Issue 27, item 5: a Start turned the project into a dict three times and parsed it
    twice. Now the panel serialises it once, checks that form (one parse), hands the same dict
    to the training process and keeps it for the run's record."""
    from layerloom.project import loom as projectfile
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    # the Data tab's inspection and the autosave serialise the project on their own timers; let
    # them settle and hold them, so only the Start is counted (CI once counted the Data tab's)
    qtbot.waitUntil(lambda: win.data.worker is None, timeout=10_000)
    win.data.shutdown()
    win.autosave_timer.stop()
    calls = {"to_dict": 0, "from_dict": 0, "loads": 0, "dumps": 0}
    for name in calls:
        real = getattr(projectfile, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)
        monkeypatch.setattr(projectfile, name, counted)
    started = start_without_a_process(win, qtbot, monkeypatch)
    assert calls == {"to_dict": 1, "from_dict": 1, "loads": 0, "dumps": 0}
    (project_dict, path, *_), = started
    assert project_dict is win.training.run_project and path == win.doc.project.path
    # the child parses that one form: what it trains is the project the window holds
    child = projectfile.from_dict(project_dict, path)
    assert projectfile.to_dict(child) == projectfile.to_dict(win.doc.project)


def test_a_curve_of_one_point_is_drawn_as_a_marker(win):
    """Newcomer trial: after a 1-epoch run the validation curves (one point each) were in the
    legend but invisible (a line needs two points; the curves draw no symbols, for speed).
    A series of one point gets a marker, dropped when the second arrives."""
    plots = win.training.plots
    plots.begin(epochs=1)
    plots.add_point("val_loss", 1, 0.5)
    plots.flush()
    assert plots.curves["val_loss"].opts["symbol"] is not None
    plots.add_point("val_loss", 2, 0.4)
    plots.flush()
    assert plots.curves["val_loss"].opts["symbol"] is None
