"""The editor and the layers added with their new parameter kinds (pytest-qt, offscreen): a
window's padding in an editable box (Keras' words listed, amounts typed), augmentation factors,
axis lists, per-channel numbers, optional numbers, pairs and margins as plain text that reads
back to the same value, refusals under the field; the palette's new categories with their
colours and help; the names of a node's several ports; a second output wired."""
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QRectF, Qt  # noqa: E402
from PySide6.QtGui import QImage, QPainter  # noqa: E402

from layerloom.core.registry import get_layer, layer_types  # noqa: E402


def _form(type_id, values=None):
    from layerloom.app.forms.paramform import ParamForm
    layer = get_layer(type_id)
    form = ParamForm(layer.params, {**layer.defaults(), **(values or {})}, place=type_id)
    got = []
    form.sigChanged.connect(lambda name, value: got.append((name, value)))
    return form, got


def _type(widget, text):
    """Type `text` into a field (or an editable box's field) and finish, as Enter does."""
    edit = widget.lineEdit() if hasattr(widget, "lineEdit") else widget
    edit.setText(text)
    edit.editingFinished.emit()


def test_padding_is_an_editable_box_of_the_words_taking_amounts(qapp):
    from PySide6.QtWidgets import QComboBox
    form, got = _form("Conv2D")
    box = form.widgets["padding"]
    assert isinstance(box, QComboBox) and box.isEditable()
    assert [box.itemText(i) for i in range(box.count())] == ["valid", "same"]
    assert box.currentText() == "valid"  # no JSON quotes
    _type(box, "1, 2")
    _type(box, "same")
    _type(box, "[[0, 1], [2, 3]]")
    _type(box, "2")
    assert got == [("padding", ((1, 1), (2, 2))), ("padding", "same"),
                   ("padding", ((0, 1), (2, 3))), ("padding", ((2, 2), (2, 2)))]
    assert box.count() == 2  # what was typed is not added to the list
    box.setCurrentIndex(0)
    box.activated.emit(0)  # picked from the list
    assert got[-1] == ("padding", "valid")
    form.set_values({"padding": ((1, 1), (2, 2))})
    assert box.currentText() == "1, 2"
    form.set_values({"padding": ((0, 1), (2, 3))})
    assert box.currentText() == "[[0, 1], [2, 3]]"
    form.set_values({"padding": ((3, 3), (3, 3))})
    assert box.currentText() == "3"
    n = len(got)
    _type(box, "[[1, 2], [3]]")
    _type(box, "full")
    assert len(got) == n  # refused: not reported, said under the field
    assert "expected one of valid, same, or an integer >= 0" in form.errors["padding"].text()
    assert "got 'full'" in form.errors["padding"].text()
    assert not form.errors["padding"].isHidden()
    _type(box, "valid")
    assert form.errors["padding"].isHidden() and got[-1] == ("padding", "valid")


def test_a_1d_windows_padding_lists_causal_and_takes_before_after(qapp):
    form, got = _form("Conv1D")
    box = form.widgets["padding"]
    assert [box.itemText(i) for i in range(box.count())] == ["valid", "same", "causal"]
    _type(box, "causal")
    _type(box, "0, 2")
    assert got == [("padding", "causal"), ("padding", (0, 2))]
    form.set_values({"padding": (0, 2)})
    assert box.currentText() == "0, 2"
    form, got = _form("MaxPooling1D")
    assert [form.widgets["padding"].itemText(i) for i in range(2)] == ["valid", "same"]


def test_factors_are_a_number_or_a_pair(qapp):
    form, got = _form("RandomRotation")
    field = form.widgets["factor"]
    assert field.text() == "0.1" and "lower, upper" in field.placeholderText()
    for text in ("-0.1, 0.2", "0.3", "(0, 0.5)", "0.1x0.2"):
        _type(field, text)
    assert got == [("factor", (-0.1, 0.2)), ("factor", 0.3), ("factor", (0.0, 0.5)),
                   ("factor", (0.1, 0.2))]
    form.set_values({"factor": (-0.1, 0.2)})
    assert field.text() == "-0.1, 0.2"
    _type(field, "0.1, 0.2, 0.3")
    assert "expected a number or [lower, upper]" in form.errors["factor"].text()
    assert len(got) == 4
    form, got = _form("RandomZoom")
    width = form.widgets["width_factor"]
    assert width.text() == ""  # null: the height's
    _type(width, "-0.2, 0.1")
    _type(width, "")
    assert got == [("width_factor", (-0.2, 0.1)), ("width_factor", None)]


def test_axis_lists_per_channel_numbers_and_optional_numbers_are_plain_text(qapp):
    form, got = _form("LayerNormalization")
    _type(form.widgets["axis"], "1, 2")
    _type(form.widgets["axis"], "-1")
    assert got == [("axis", (1, 2)), ("axis", (-1,))]
    form, got = _form("PReLU")
    assert form.widgets["shared_axes"].text() == ""
    _type(form.widgets["shared_axes"], "2, 1")
    _type(form.widgets["shared_axes"], "none")
    assert got == [("shared_axes", (1, 2)), ("shared_axes", None)]
    form.set_values({"shared_axes": (1, 2)})
    assert form.widgets["shared_axes"].text() == "1, 2"
    _type(form.widgets["shared_axes"], "0")
    assert "expected null, an axis from 1 to 8" in form.errors["shared_axes"].text()
    form, got = _form("Rescaling")
    _type(form.widgets["scale"], "1/255")
    _type(form.widgets["scale"], "0.5, 1, 2")
    _type(form.widgets["offset"], "-1")
    assert got == [("scale", 1 / 255), ("scale", (0.5, 1.0, 2.0)), ("offset", -1.0)]
    form.set_values({"scale": 1 / 255})
    assert float(form.widgets["scale"].text()) == 1 / 255  # shown exactly, read back the same
    form, got = _form("ReLU")
    _type(form.widgets["max_value"], "6")
    _type(form.widgets["max_value"], "")
    assert got == [("max_value", 6.0), ("max_value", None)]


def test_pairs_and_margins_without_json(qapp):
    form, got = _form("Conv2D")
    assert form.widgets["kernel_size"].text() == "3, 3"
    _type(form.widgets["kernel_size"], "5")
    _type(form.widgets["strides"], "(2, 1)")
    assert got == [("kernel_size", (5, 5)), ("strides", (2, 1))]
    form, got = _form("MaxPooling2D")
    assert form.widgets["strides"].text() == ""  # None: the pool size
    _type(form.widgets["strides"], "")
    assert got == [("strides", None)]
    form, got = _form("ZeroPadding2D")
    assert form.widgets["padding"].text() == "1"
    _type(form.widgets["padding"], "1, 2")
    _type(form.widgets["padding"], "[[0, 1], [2, 3]]")
    assert got == [("padding", ((1, 1), (2, 2))), ("padding", ((0, 1), (2, 3)))]
    form.set_values({"padding": ((0, 1), (2, 3))})
    assert form.widgets["padding"].text() == "[[0, 1], [2, 3]]"


def _example_values():
    """(layer, param, value): each declared parameter's default and each value the layer's
    harness examples give it."""
    for layer in layer_types():
        for p in layer.params:
            values = [p.default] + [ex[0][p.name] for ex in layer.examples if p.name in ex[0]]
            for v in values:
                try:
                    yield layer, p, p.validate(v, p.name)
                except Exception:  # an example of a refusal
                    continue


def test_every_new_kinds_field_reads_back_what_it_shows(qapp):
    """Every value the declarations and examples hold, shown by its field and finished
    unchanged, comes back as the same value: no kind falls back to JSON text."""
    from layerloom.app.forms.number_widgets import TEXTS
    from layerloom.app.forms.paramform import ParamForm
    kinds, checked = set(TEXTS) | {"padding", "shape"}, 0
    for layer, p, value in _example_values():
        if p.kind not in kinds:
            continue
        form = ParamForm([p], {p.name: value}, place=layer.type_id)
        got, errors = [], []
        form.sigChanged.connect(lambda name, v: got.append(v))
        form.sigError.connect(lambda name, message: errors.append(message))
        w = form.widgets[p.name]
        edit = w.lineEdit() if hasattr(w, "lineEdit") else w
        assert '"' not in edit.text(), (layer.type_id, p.name, edit.text())
        edit.editingFinished.emit()
        assert errors == [] and got == [value], (layer.type_id, p.name, edit.text(), value)
        checked += 1
    assert checked > 40


def _conv_in_inspector(win):
    """An Input 8x8x3 wired into a Conv2D, the Conv2D selected (in the inspector); its id."""
    i = win.add_at_centre("Input", {"shape": [8, 8, 3]})
    c = win.add_at_centre("Conv2D")
    assert win.scene.connect_ports(i, 0, c, 0)
    win.scene.clearSelection()
    win.scene.nodes[c].setSelected(True)
    return c


def test_the_inspector_edits_padding_and_says_a_refusal_under_the_field(win):
    c = _conv_in_inspector(win)
    assert win.inspector.node_id == c
    box = win.inspector.widgets["padding"]
    _type(box, "1, 1")
    assert win.doc.graph.nodes[c].params["padding"] == ((1, 1), (1, 1))
    assert win.doc.graph.analysis().shapes[c] == [(8, 8, 32)]
    assert box.currentText() == "1"
    _type(box, "[1]")
    error = win.inspector.form.errors["padding"]
    assert not error.isHidden() and "got [1]" in error.text()
    assert "got [1]" in win.inspector.error.text()
    assert win.doc.graph.nodes[c].params["padding"] == ((1, 1), (1, 1))
    win.doc.undo.undo()
    assert win.doc.graph.nodes[c].params["padding"] == "valid"
    assert box.currentText() == "valid"


def test_the_palette_lists_the_new_categories_with_colours_and_help(win):
    from layerloom.app.canvas.canvas_items import CATEGORY_COLORS
    palette = win.palette
    tops = [palette.tree.topLevelItem(k).text(0)
            for k in range(palette.tree.topLevelItemCount())]
    for cat in ("Activation", "Attention", "Augmentation", "Preprocessing"):
        assert cat in tops
    for layer in layer_types():
        assert layer.category in CATEGORY_COLORS, layer.type_id
        item = palette.items[layer.type_id]
        assert item.parent().text(0) == layer.category
        assert layer.help.strip() and item.toolTip(0) == layer.help, layer.type_id
    palette.search.setText("attention")
    assert {"MultiHeadAttention", "Attention", "AdditiveAttention"} <= \
        set(palette.visible_types())


def _render(scene):
    image = QImage(1600, 1000, QImage.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    scene.render(painter, QRectF(0, 0, 1600, 1000), scene.itemsBoundingRect())
    painter.end()
    return image


def test_attention_ports_have_names_and_a_second_output_wires(win):
    i = win.add_at_centre("Input", {"shape": [6, 4]})
    m = win.add_at_centre("MultiHeadAttention")
    s = win.scene
    assert s.connect_ports(i, 0, m, 0) and s.connect_ports(i, 0, m, 1)
    item = s.nodes[m]
    assert [p.name for p in item.in_ports] == ["query", "value", "key"]
    assert item.in_labels == ["query", "value", "key"] and item.out_labels == []
    assert [p.optional for p in item.in_ports] == [False, False, True]
    assert item.in_ports[2].toolTip() == "input 2: key (optional)"
    win.scene.clearSelection()
    item.setSelected(True)
    win.inspector.widgets["return_attention_scores"].setChecked(True)
    item = s.nodes[m]
    assert item.out_labels == ["y", "scores"]
    f = win.add_at_centre("Flatten")
    assert s.connect_ports(m, 1, f, 0)
    shapes = win.doc.graph.analysis().shapes
    assert shapes[m] == [(6, 4), (2, 6, 6)] and shapes[f] == [(72,)]
    assert any(e.src == m and e.src_port == 1 for e in win.doc.graph.edges)
    assert not _render(s).isNull()
    assert [n for n, _, _ in item.port_names()] == ["query", "value", "key", "y", "scores"]
    win.set_flow("down")
    assert not _render(win.scene).isNull()
    item = win.scene.nodes[m]
    names = item.port_names()  # above and below the node, each short of the next port
    assert [n for n, _, _ in names] == ["query", "value", "key", "y", "scores"]
    rects = [r for _, r, _ in names]
    x = [port.pos().x() for port in item.in_ports + item.out_ports]
    assert rects[0].right() < x[1] and rects[1].right() < x[2] and rects[3].right() < x[4]
    assert all(r.bottom() <= 0 for r in rects[:3]) and all(r.top() >= item.h for r in rects[3:])
    # a merge's numbered ports stay unnamed; a single port too
    a = win.add_at_centre("Add")
    assert win.scene.nodes[a].in_labels == [] and win.scene.nodes[f].in_labels == []
    assert not any(p.optional for p in win.scene.nodes[a].in_ports)  # a merge's next one


def test_bidirectional_without_merging_wires_both_directions(win):
    i = win.add_at_centre("Input", {"shape": [5, 3]})
    b = win.add_at_centre("Bidirectional", {"merge_mode": "none", "return_sequences": True,
                                            "units": 4})
    c = win.add_at_centre("Concatenate")
    s = win.scene
    assert s.connect_ports(i, 0, b, 0)
    assert s.nodes[b].out_labels == ["forward", "backward"]
    assert s.connect_ports(b, 0, c, 0) and s.connect_ports(b, 1, c, 1)
    assert win.doc.graph.analysis().shapes[c] == [(5, 8)]
    assert not _render(s).isNull()
    win.scene.clearSelection()
    win.scene.nodes[b].setSelected(True)
    win.inspector.widgets["return_state"].setChecked(True)
    item = s.nodes[b]
    assert item.out_labels == ["forward", "backward", "forward_h", "forward_c", "backward_h",
                               "backward_c"]
    assert len(item.port_names()) == 8  # x, mask and the six beside their ports
    win.set_flow("down")
    item = win.scene.nodes[b]  # six outputs too close for their names: their tooltips say them
    assert [n for n, _, _ in item.port_names()] == ["x", "mask"]
    assert not _render(win.scene).isNull()


def test_the_palette_search_prefers_names_and_falls_back_to_help(win):
    palette = win.palette
    palette.search.setText("lstm")  # Bidirectional's help names the LSTM it wraps: not shown
    assert sorted(palette.visible_types()) == ["ConvLSTM2D", "LSTM"]  # the names holding it
    palette.search.setText("pixel")  # no name holds it: the layers whose help does
    assert "Rescaling" in palette.visible_types()
    palette.search.setText("")
    # every layer, and the Blocks category's block types (the bundled library's)
    assert len(palette.visible_types()) == len(layer_types()) + len(palette.block_types)


def test_a_wrapped_layer_is_a_type_box_with_its_own_form(qapp):
    form, got = _form("TimeDistributed")
    w = form.widgets["layer"]
    types = [w.kind.itemText(i) for i in range(w.kind.count())]
    assert "Dense" in types and "Conv2D" in types
    assert not {"Input", "TimeDistributed", "Bidirectional", "Add", "Embedding"} & set(types)
    assert w.kind.currentText() == "Dense"
    assert w.form.widgets["units"].value() == 32
    w.form.widgets["units"].setValue(7)
    w.form.widgets["units"].editingFinished.emit()
    assert got[-1][0] == "layer" and got[-1][1]["type"] == "Dense"
    assert got[-1][1]["params"]["units"] == 7
    form.set_values({"layer": got[-1][1]})
    assert w.form.widgets["units"].value() == 7
    w.kind.setCurrentText("Conv2D")
    w.kind.activated.emit(w.kind.currentIndex())
    assert got[-1][1]["type"] == "Conv2D" and got[-1][1]["params"]["filters"] == 32
    form.set_values({"layer": got[-1][1]})
    assert "padding" in w.form.widgets and "units" not in w.form.widgets
    _type(w.form.widgets["padding"], "1, 1")
    assert got[-1][1]["params"]["padding"] == ((1, 1), (1, 1))
    _type(w.form.widgets["kernel_size"], "0")  # refused by the inner form, under its field
    assert not w.form.errors["kernel_size"].isHidden()
    assert got[-1][1]["params"]["kernel_size"] == (3, 3)


def test_the_inspector_wraps_another_layer_and_keeps_its_fields_tall(win, qtbot):
    win.resize(1400, 820)
    qtbot.waitExposed(win)
    i = win.add_at_centre("Input", {"shape": [4, 6, 6, 2]})
    t = win.add_at_centre("TimeDistributed")
    assert win.scene.connect_ports(i, 0, t, 0)
    win.scene.clearSelection()
    win.scene.nodes[t].setSelected(True)
    w = win.inspector.widgets["layer"]
    w.kind.setCurrentText("Conv2D")
    w.kind.activated.emit(w.kind.currentIndex())
    assert win.doc.graph.nodes[t].params["layer"]["type"] == "Conv2D"
    _type(w.form.widgets["padding"], "same")
    assert win.doc.graph.analysis().shapes[t] == [(4, 6, 6, 32)]
    qtbot.wait(50)
    for name, field in w.form.widgets.items():  # the longer form has room: the dock scrolls
        assert field.height() >= field.sizeHint().height() - 1, (name, field.height())
    win.doc.undo.undo()
    assert win.doc.graph.nodes[t].params["layer"]["params"]["padding"] == "valid"
    assert w.form.widgets["padding"].currentText() == "valid"


def _focused_padding_box(qtbot):
    """A shown Conv2D form's padding box with the keyboard focus, and its reports."""
    form, got = _form("Conv2D")
    qtbot.addWidget(form)
    form.show()
    box = form.widgets["padding"]
    box.setFocus()
    return box, got


def test_padding_typed_with_keys_is_reported_once(qtbot):
    """Keys into the box, Enter: one report per value (Qt also 'activates' a typed word)."""
    box, got = _focused_padding_box(qtbot)
    for text, value in (("same", "same"), ("1, 2", ((1, 1), (2, 2))), ("valid", "valid")):
        box.lineEdit().selectAll()
        qtbot.keyClicks(box.lineEdit(), text)
        qtbot.keyClick(box.lineEdit(), Qt.Key_Return)
        assert got[-1] == ("padding", value)
    assert got == [("padding", "same"), ("padding", ((1, 1), (2, 2))), ("padding", "valid")]
    assert box.count() == 2


def test_every_layer_parameter_kind_has_a_widget_of_its_own(qapp):
    """A new parameter kind gets a widget (or is added to one), never the JSON text field."""
    from layerloom.app.forms.paramform import WIDGETS
    kinds = {p.kind: layer.type_id for layer in layer_types() for p in layer.params}
    assert {k: t for k, t in kinds.items() if k not in WIDGETS} == {}


def test_padding_picked_again_after_an_undo_is_reported(win):
    """Shown from outside (an undo), the same word picked again is a new edit."""
    c = _conv_in_inspector(win)
    box = win.inspector.widgets["padding"]
    _type(box, "same")
    assert win.doc.graph.nodes[c].params["padding"] == "same"
    win.doc.undo.undo()
    assert box.currentText() == "valid"
    box.setCurrentIndex(1)
    box.activated.emit(1)
    assert win.doc.graph.nodes[c].params["padding"] == "same"
    win.doc.undo.undo()
    _type(box, "same")
    assert win.doc.graph.nodes[c].params["padding"] == "same"


def test_padding_stepped_with_the_arrow_keys_is_reported(qtbot):
    box, got = _focused_padding_box(qtbot)
    qtbot.keyClick(box, Qt.Key_Down)
    assert box.currentText() == "same" and got == [("padding", "same")]
    qtbot.keyClick(box, Qt.Key_Up)
    assert got == [("padding", "same"), ("padding", "valid")]
