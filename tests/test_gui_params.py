"""The param form (app/forms/paramform.py) and the training dock's optimizer section built from it:
every declared parameter of the chosen optimizer, written into the training section as the
project file has it, undoable, with a value's problem shown next to it (pytest-qt,
offscreen)."""
import os

import pytest

pytest.importorskip("pytestqt")

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.project import loom  # noqa: E402
from layerloom.train.optimizers import OPTIMIZERS  # noqa: E402
from guikit import EXAMPLES  # noqa: E402


def _type(widget, text):
    widget.setText(text)
    widget.editingFinished.emit()


def test_param_form_reports_valid_values_and_shows_errors_beside_the_param(qapp):
    from layerloom.app.forms.paramform import ParamForm
    decls = OPTIMIZERS["sgd"].params
    form = ParamForm(decls, {p.name: p.default for p in decls}, place="sgd")
    assert list(form.widgets) == [p.name for p in decls]
    got = []
    form.sigChanged.connect(lambda name, value: got.append((name, value)))
    _type(form.widgets["momentum"], "0.5")
    form.widgets["nesterov"].setChecked(True)
    assert got == [("momentum", 0.5), ("nesterov", True)]
    assert form.errors["momentum"].isHidden()
    _type(form.widgets["momentum"], "1.5")
    assert got == [("momentum", 0.5), ("nesterov", True)]  # not reported
    assert "expected a number >= 0 and < 1, got 1.5" in form.errors["momentum"].text()
    assert not form.errors["momentum"].isHidden() and form.errors["nesterov"].isHidden()
    form.set_values({"momentum": 0.25, "nesterov": False})  # shows, does not report
    assert form.widgets["momentum"].text() == "0.25" and not form.widgets["nesterov"].isChecked()
    assert got == [("momentum", 0.5), ("nesterov", True)] and form.errors["momentum"].isHidden()


def _multitask(win):
    win.set_document(Document.open(os.path.join(EXAMPLES, "multitask.loom")))
    return win.training


def _params(win):
    return win.doc.project.training["optimizer"]["params"]


def test_adam_shows_every_declared_param_and_an_edit_round_trips(win, tmp_path):
    tp = _multitask(win)
    form = tp.optimizer.form
    assert tp.optimizer.choice.currentText() == "adam"
    assert list(form.widgets) == [p.name for p in OPTIMIZERS["adam"].params]
    assert form.widgets["learning_rate"].number.text() == "0.003"
    assert form.widgets["beta_1"].text() == "0.9" and form.widgets["epsilon"].text() == "1e-07"
    _type(form.widgets["beta_1"], "0.8")
    opt = win.doc.project.training["optimizer"]
    assert opt["name"] == "adam" and opt["params"]["beta_1"] == 0.8
    assert opt["params"]["learning_rate"] == 0.003 and opt["params"]["beta_2"] == 0.999
    assert win.problems.count() == 0
    path = tmp_path / "edited.loom"
    path.write_text(loom.dumps(win.doc.project))
    again = loom.load(str(path))
    assert again.training["optimizer"] == opt
    win.doc.undo.undo()
    assert _params(win)["beta_1"] == 0.9 and form.widgets["beta_1"].text() == "0.9"
    win.doc.undo.redo()
    assert _params(win)["beta_1"] == 0.8 and form.widgets["beta_1"].text() == "0.8"


def test_an_invalid_value_is_shown_beside_it_and_not_written(win):
    tp = _multitask(win)
    form = tp.optimizer.form
    before = dict(_params(win))
    steps = win.doc.undo.count()
    _type(form.widgets["beta_1"], "1.5")
    assert "expected a number >= 0 and < 1, got 1.5" in form.errors["beta_1"].text()
    assert not form.errors["beta_1"].isHidden() and form.errors["beta_2"].isHidden()
    _type(form.widgets["learning_rate"].number, "-1")
    assert "expected a number > 0" in form.errors["learning_rate"].text()
    _type(form.widgets["epsilon"], "tiny")
    assert "got 'tiny'" in form.errors["epsilon"].text()
    assert _params(win) == before and win.doc.undo.count() == steps
    _type(form.widgets["beta_1"], "0.5")  # an edit: the form shows the project as it is now
    assert _params(win)["beta_1"] == 0.5
    assert all(e.isHidden() for e in form.errors.values())
    assert form.widgets["epsilon"].text() == "1e-07"


def test_switching_optimizer_switches_the_form_and_drops_the_old_keys(win, tmp_path):
    tp = _multitask(win)
    _type(tp.optimizer.form.widgets["beta_1"], "0.8")
    combo = tp.optimizer.choice
    combo.setCurrentText("sgd")
    combo.activated.emit(combo.currentIndex())
    form = tp.optimizer.form
    assert list(form.widgets) == [p.name for p in OPTIMIZERS["sgd"].params]
    assert "momentum" in form.widgets and "nesterov" in form.widgets
    opt = win.doc.project.training["optimizer"]
    assert opt["name"] == "sgd" and set(opt["params"]) == {p.name for p in OPTIMIZERS["sgd"].params}
    # what the user set carries over where SGD declares it; the rest are SGD's defaults
    assert opt["params"]["learning_rate"] == 0.003 and opt["params"]["momentum"] == 0.0
    form.widgets["nesterov"].setChecked(True)
    _type(form.widgets["momentum"], "0.9")
    assert _params(win)["nesterov"] is True and _params(win)["momentum"] == 0.9
    path = tmp_path / "sgd.loom"
    path.write_text(loom.dumps(win.doc.project))
    assert loom.load(str(path)).training["optimizer"] == win.doc.project.training["optimizer"]
    for _ in range(3):
        win.doc.undo.undo()
    assert tp.optimizer.choice.currentText() == "adam"
    assert "beta_1" in tp.optimizer.form.widgets and "momentum" not in tp.optimizer.form.widgets
    assert tp.optimizer.form.widgets["beta_1"].text() == "0.8"


def test_a_learning_rate_schedule_is_shown_and_kept(win):
    """Issue 19, item 14: a schedule is a choice and a field per parameter, not JSON text."""
    win.set_document(Document.open(os.path.join(EXAMPLES, "fashion_mnist_mlp.loom")))
    form = win.training.optimizer.form
    sched = _params(win)["learning_rate"]
    assert sched["schedule"] == "cosine_decay"
    rate = form.widgets["learning_rate"]
    assert rate.kind.currentText() == "cosine_decay" and rate.number.isHidden()
    assert rate.fields.widgets["decay_steps"].value() == sched["decay_steps"]
    _type(form.widgets["epsilon"], "1e-6")
    assert _params(win)["learning_rate"] == sched and _params(win)["epsilon"] == 1e-6
    rate = form.widgets["learning_rate"]
    rate.fields.widgets["decay_steps"].setValue(500)
    rate.fields.widgets["decay_steps"].editingFinished.emit()
    assert _params(win)["learning_rate"] == {**sched, "decay_steps": 500}
    rate = form.widgets["learning_rate"]
    _type(rate.fields.widgets["alpha"], "2")  # out of range: said beside it, not written
    assert "alpha" in form.errors["learning_rate"].text() or \
        not rate.fields.errors["alpha"].isHidden()
    assert _params(win)["learning_rate"]["alpha"] == sched["alpha"]
    # constant keeps the schedule's initial rate; a schedule starts from the constant
    rate = form.widgets["learning_rate"]
    rate.kind.setCurrentText("constant")
    rate.kind.activated.emit(0)
    assert _params(win)["learning_rate"] == sched["initial_learning_rate"]
    rate = form.widgets["learning_rate"]
    assert not rate.number.isHidden() and rate.fields is None
    _type(rate.number, "0.01")
    assert _params(win)["learning_rate"] == 0.01
    assert "learning rate 0.01" in win.training.summary.text()
    rate = form.widgets["learning_rate"]
    rate.kind.setCurrentText("exponential_decay")
    rate.kind.activated.emit(1)
    lr = _params(win)["learning_rate"]
    assert lr["schedule"] == "exponential_decay" and lr["initial_learning_rate"] == 0.01
    assert lr["decay_steps"] == 1000  # the schedule's defaults, as a loaded file has them
    win.doc.undo.undo()
    assert _params(win)["learning_rate"] == 0.01


def test_a_new_project_shows_adams_defaults(win):
    form = win.training.optimizer.form
    assert win.training.optimizer.choice.currentText() == "adam"
    assert form.widgets["learning_rate"].number.text() == "0.001"
    assert "learning rate 0.001" in win.training.summary.text()
    _type(form.widgets["beta_2"], "0.99")
    assert win.doc.project.training["optimizer"]["params"]["beta_2"] == 0.99


def test_initializers_and_regularizers_are_forms(win):
    """Issue 19, item 14: initializer and regularizer fields were JSON text ('"glorot_uniform"',
    'null'); now a box of names (constant with its value) and none/l1/l2/l1_l2 with factors."""
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    win.scene.nodes["hidden_1"].setSelected(True)
    params = lambda: win.doc.graph.nodes["hidden_1"].params  # noqa: E731
    init = win.inspector.widgets["kernel_initializer"]
    assert init.name.currentText() == "glorot_uniform" and init.constant.isHidden()
    init.name.setCurrentText("he_normal")
    init.name.activated.emit(0)
    assert params()["kernel_initializer"] == "he_normal"
    init = win.inspector.widgets["kernel_initializer"]
    init.name.setCurrentText("constant")
    init.name.activated.emit(0)
    init = win.inspector.widgets["kernel_initializer"]
    assert not init.constant.isHidden()
    _type(init.constant, "0.5")
    assert params()["kernel_initializer"] == {"name": "constant", "value": 0.5}
    reg = win.inspector.widgets["kernel_regularizer"]
    assert reg.kind.currentText() == "none" and reg.l1.isHidden() and reg.l2.isHidden()
    reg.kind.setCurrentText("l2")
    reg.kind.activated.emit(2)
    assert params()["kernel_regularizer"] == {"l1": 0.0, "l2": 0.01}
    reg = win.inspector.widgets["kernel_regularizer"]
    assert reg.l1.isHidden() and not reg.l2.isHidden()
    _type(reg.l2, "0.001")
    assert params()["kernel_regularizer"] == {"l1": 0.0, "l2": 0.001}
    reg = win.inspector.widgets["kernel_regularizer"]
    _type(reg.l2, "-1")  # refused beside it, not written
    assert params()["kernel_regularizer"] == {"l1": 0.0, "l2": 0.001}
    assert "expected null or" in win.inspector.error.text() or any(
        not e.isHidden() for e in win.inspector.form.errors.values())
    reg = win.inspector.widgets["kernel_regularizer"]
    reg.kind.setCurrentText("none")
    reg.kind.activated.emit(0)
    assert params()["kernel_regularizer"] is None
    for _ in range(3):  # none, 0.001, l2
        win.doc.undo.undo()
    assert params()["kernel_initializer"] == {"name": "constant", "value": 0.5}
    assert params()["kernel_regularizer"] is None


def test_metrics_are_ticked_in_a_menu_with_fields_for_their_parameters(win, tmp_path):
    """Issue 19, item 14: metrics were a text field of names, or JSON with quotes when they
    had parameters or differed per output."""
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    m = win.training.metrics
    assert win.doc.project.training["metrics"] == ["accuracy"]
    assert m.all.button.full == "accuracy" and not m.per_output.isVisible()
    assert sorted(n for n, a in m.all.actions.items() if a.isChecked()) == ["accuracy"]
    m.all.actions["top_k_categorical_accuracy"].trigger()
    assert win.doc.project.training["metrics"] == ["accuracy", "top_k_categorical_accuracy"]
    form = m.all.forms["top_k_categorical_accuracy"]  # its k, a spin box at Keras' 5
    k = form.widgets["k"]
    assert k.value() == 5
    k.setValue(3)
    k.editingFinished.emit()
    assert win.doc.project.training["metrics"] == [
        "accuracy", {"name": "top_k_categorical_accuracy", "k": 3}]
    assert m.all.button.full == "accuracy, top_k (k=3)"
    m.all.actions["accuracy"].trigger()  # unticked
    assert win.doc.project.training["metrics"] == [{"name": "top_k_categorical_accuracy", "k": 3}]
    win.doc.undo.undo()
    win.doc.undo.undo()
    assert win.doc.project.training["metrics"] == ["accuracy", "top_k_categorical_accuracy"]
    assert m.all.actions["accuracy"].isChecked() and m.all.forms["top_k_categorical_accuracy"]


def test_metrics_per_output_are_a_picker_each(win, tmp_path):
    win.set_document(Document.open(os.path.join(EXAMPLES, "multitask.loom")))
    m = win.training.metrics
    t = win.doc.project.training
    assert m.per_output.isChecked() and not m.all.isVisible()
    assert list(m.pickers) == ["inside", "value"]
    assert m.pickers["inside"].button.full == "accuracy" and m.pickers["value"].button.full == "mae"
    m.pickers["value"].actions["mean_squared_error"].trigger()
    assert win.doc.project.training["metrics"] == {"inside": ["accuracy"],
                                                   "value": ["mae", "mean_squared_error"]}
    assert m.pickers["value"].button.full == "mae, mse"
    m.per_output.setChecked(False)  # one list for both: every metric either had
    assert win.doc.project.training["metrics"] == ["accuracy", "mae", "mean_squared_error"]
    assert m.all.isVisible() and not m.pickers
    m.per_output.setChecked(True)  # each output's own list again (the trial found both
    # heads given every metric: the classifier a mae, the regression an accuracy)
    assert win.doc.project.training["metrics"] == {"inside": ["accuracy"],
                                                   "value": ["mae", "mean_squared_error"]}
    m.per_output.setChecked(False)
    m.all.actions["mean_absolute_error"].trigger()  # the shared list edited: it is the start
    m.per_output.setChecked(True)
    assert win.doc.project.training["metrics"] == {
        o: ["accuracy", "mean_squared_error"] for o in ("inside", "value")}
    path = tmp_path / "m.loom"
    path.write_text(loom.dumps(win.doc.project))
    assert loom.load(str(path)).training["metrics"]["value"][1] == "mean_squared_error"
    for _ in range(6):
        win.doc.undo.undo()
    assert win.doc.project.training["metrics"] == t["metrics"] == {"inside": ["accuracy"],
                                                                   "value": ["mae"]}
    assert m.per_output.isChecked() and m.pickers["value"].button.full == "mae"


def test_callbacks_are_ticked_with_their_parameters_as_fields(win, tmp_path):
    """Issue 19, item 14: callbacks could be set only in the project file's text."""
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    c = win.training.callbacks
    t = win.doc.project.training
    assert c.button.full == "none" and not t.get("callbacks")
    assert set(c.actions) == {"early_stopping", "model_checkpoint", "terminate_on_nan",
                              "reduce_lr_on_plateau"}
    assert all(a.toolTip() for a in c.actions.values())
    c.actions["early_stopping"].trigger()
    assert win.doc.project.training["callbacks"] == [{"name": "early_stopping"}]
    form = c.forms["early_stopping"]
    assert list(form.widgets) == ["monitor", "mode", "min_delta", "patience",
                                  "restore_best_weights", "start_from_epoch"]
    form.widgets["patience"].setValue(3)
    form.widgets["patience"].editingFinished.emit()
    form.widgets["restore_best_weights"].setChecked(True)
    assert win.doc.project.training["callbacks"] == [
        {"name": "early_stopping", "patience": 3, "restore_best_weights": True}]
    assert c.button.full == "early_stopping (patience=3, restore_best_weights=True)"
    c.actions["model_checkpoint"].trigger()
    path = c.forms["model_checkpoint"].widgets["filepath"]
    path.setText("../outside.weights.npz")  # refused beside the field: outside the folder
    path.editingFinished.emit()
    assert win.doc.project.training["callbacks"][1] == {"name": "model_checkpoint"}
    assert c.forms["model_checkpoint"].errors["filepath"].text()
    saved = tmp_path / "cb.loom"
    saved.write_text(loom.dumps(win.doc.project))
    cbs = loom.load(str(saved)).training["callbacks"]
    assert [cb["name"] for cb in cbs] == ["early_stopping", "model_checkpoint"]
    assert cbs[0]["patience"] == 3 and cbs[0]["restore_best_weights"] is True
    win.set_document(Document.open(str(saved)))  # read back: the defaults are not listed
    assert win.training.callbacks.button.full == \
        "early_stopping (patience=3, restore_best_weights=True), model_checkpoint"
    win.training.callbacks.actions["early_stopping"].trigger()  # unticked
    assert [cb["name"] for cb in win.doc.project.training["callbacks"]] == ["model_checkpoint"]
    win.doc.undo.undo()
    assert win.training.callbacks.actions["early_stopping"].isChecked()


def test_the_inspectors_fields_keep_their_height_and_the_dock_scrolls(win, qtbot):
    """In a short Inspector dock the Conv2D's eleven fields keep their height and the dock
    scrolls (--screenshot, grabbing before Qt had laid the new form out, showed them squeezed
    to 7 px each)."""
    from PySide6.QtWidgets import QScrollArea
    win.resize(1400, 820)
    win.show()
    qtbot.waitExposed(win)
    win.set_document(Document.open(os.path.join(EXAMPLES, "fashion_mnist_cnn.loom")))
    for nid in ("conv_1", "dense", "conv_1"):  # and again after another node
        win.scene.clearSelection()
        win.scene.nodes[nid].setSelected(True)
        qtbot.wait(50)
        for name, w in win.inspector.widgets.items():
            assert w.height() >= w.sizeHint().height() - 1, (nid, name, w.height())
    area = win.inspector.parent()
    while not isinstance(area, QScrollArea):
        area = area.parent()
    assert area.verticalScrollBar().maximum() > 0
