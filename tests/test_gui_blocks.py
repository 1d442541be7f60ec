"""Blocks in the editor (issue 30, item 1): Make Block (dialog and action), the instance on
the canvas, Expand Block, each one undo step carrying the trained weights; the palette's
Blocks category with the project's and the library's block types; Export and Import Block;
copy and paste of an instance into another project; save and reopen (pytest-qt, offscreen)."""
import json
import os

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from layerloom.app.editing.document import Document  # noqa: E402
from layerloom.core.blocks import BlockType  # noqa: E402
from layerloom.project import loom as projectfile  # noqa: E402
from guikit import EXAMPLES  # noqa: E402

HIDDEN = ["hidden_1", "hidden_2", "hidden_3"]


@pytest.fixture(autouse=True)
def library(tmp_path, monkeypatch):
    folder = tmp_path / "library"
    monkeypatch.setenv("LAYERLOOM_BLOCKS", str(folder))
    return folder


def _open(win, qtbot, name="spirals.loom"):
    win.set_document(Document.open(os.path.join(EXAMPLES, name)))
    qtbot.waitExposed(win)
    return win.doc.graph


def _select(win, ids):
    win.scene.clearSelection()
    for nid in ids:
        win.scene.nodes[nid].setSelected(True)


def _weights(graph, rng):
    shapes = graph.analysis().shapes
    out = {}
    for nid, node in graph.nodes.items():
        ins = [shapes[e.src][e.src_port] for e in graph.in_edges(nid)]
        for w in node.weights(ins):
            out[f"{nid}/{w.name}"] = rng.normal(size=w.shape).astype(np.float32)
    return out


def _palette_blocks(win):
    item = win.palette.blocks_item
    return [item.child(k).text(0) for k in range(item.childCount())]


def test_make_block_is_one_node_one_undo_step_and_keeps_the_model(win, qtbot, rng):
    g = _open(win, qtbot)
    win.doc.set_trained(_weights(g, rng))
    assert win.doc.has_model
    before = len(g.nodes)
    _select(win, HIDDEN)
    nid = win.make_block("Hidden", {"units": ["hidden_1.units", "hidden_2.units"]})
    assert nid == "hidden_4"  # the first free id from the block's name
    assert len(g.nodes) == before - 2 and isinstance(g.nodes[nid].layer, BlockType)
    assert not g.validate() and win.doc.has_model  # the weights moved with their layers
    assert win.doc.undo.undoText() == "Make Block Hidden"
    item = win.scene.nodes[nid]
    assert item.title == "Hidden 64" and item.isSelected()
    assert "Hidden" in _palette_blocks(win)
    win.doc.undo.undo()
    assert set(HIDDEN) <= set(g.nodes) and "Hidden" not in g.blocks
    assert win.doc.has_model and "Hidden" not in _palette_blocks(win)
    win.doc.undo.redo()
    assert nid in g.nodes and win.doc.has_model


def test_the_dialog_offers_the_parameters_and_says_a_refused_name(win, qtbot):
    from layerloom.app.window.window_blocks import MakeBlockDialog
    g = _open(win, qtbot)
    dialog = MakeBlockDialog(win, g, HIDDEN)
    assert dialog.name.text() == "Block"
    assert dialog.checks["units"].isChecked()
    assert "hidden_1.units" in dialog.checks["units"].text()
    dialog.name.setText("Dense")
    dialog._accept()
    assert dialog.made is None and "is a layer type" in dialog.error.text()
    dialog.name.setText("MLPBody")
    dialog._accept()
    assert dialog.made is not None and dialog.made.params["units"] == 32  # 64 = units*2
    dialog.deleteLater()


def test_expand_puts_the_layers_back_in_one_undo_step(win, qtbot, rng):
    g = _open(win, qtbot)
    win.doc.set_trained(_weights(g, rng))
    keys = set(win.doc.weights)
    _select(win, HIDDEN)
    nid = win.make_block("Hidden", {})
    _select(win, [nid])
    added = win.expand_block()
    assert sorted(added) == sorted(HIDDEN) and nid not in g.nodes
    assert set(win.doc.weights) == keys and win.doc.has_model and not g.validate()
    assert win.doc.undo.undoText() == f"Expand Block {nid}"
    # laid out again in the same step: no node on another (the newcomer trial's overlap)
    rects = list(win.scene.node_rects().values())
    assert not [(a, b) for i, a in enumerate(rects) for b in rects[i + 1:]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]]
    win.doc.undo.undo()
    assert nid in g.nodes and win.doc.has_model


def test_export_to_the_library_then_add_it_in_another_project(win, qtbot, library):
    g = _open(win, qtbot)
    _select(win, HIDDEN)
    nid = win.make_block("Hidden", {"units": ["hidden_1.units", "hidden_2.units",
                                              "hidden_3.units*0.5"]})
    assert nid is not None
    library.mkdir()
    path = win.export_block("Hidden", str(library / "Hidden.lblock"))
    assert json.load(open(path))["format"] == "layerloom-blocks"
    win.set_document(Document())  # a new project: the library's block is offered
    assert "Hidden" in _palette_blocks(win)
    count = win.doc.undo.count()
    win.add_at_centre("Hidden")
    g2 = win.doc.graph
    assert "Hidden" in g2.blocks and [n.type for n in g2.nodes.values()] == ["Hidden"]
    assert win.doc.undo.count() == count + 1  # the type and the node: one step
    win.doc.undo.undo()
    assert not g2.nodes and "Hidden" not in g2.blocks


def test_import_block_refuses_another_block_of_the_same_name(win, qtbot, tmp_path):
    g = _open(win, qtbot)
    _select(win, HIDDEN)
    win.make_block("Hidden", {})
    other = Document.open(os.path.join(EXAMPLES, "spirals.loom")).graph
    from layerloom.core import block_edits
    made = block_edits.make_block(other, ["hidden_1"], "Hidden", {})
    other.define_block(made.block)
    from layerloom.project import block_library
    block_library.write(str(tmp_path / "h.lblock"), other, ["Hidden"])
    count = win.doc.undo.count()
    assert win.import_block(str(tmp_path / "h.lblock")) == []
    assert win.doc.undo.count() == count
    (tmp_path / "bad.lblock").write_text("{\"format\": \"layerloom-blocks\", \"version\": 1, "
                                         "\"blocks\": {\"X\": {\"inputs\": 3}}}")
    assert win.import_block(str(tmp_path / "bad.lblock")) == []


def test_paste_carries_the_block_type_and_save_keeps_it(win, qtbot, tmp_path):
    from layerloom.app.editing.clipboard import copy_text
    g = _open(win, qtbot)
    _select(win, HIDDEN)
    nid = win.make_block("Hidden", {})
    text = copy_text(win.doc, [nid])
    win.set_document(Document())
    pasted = win.paste(text)
    assert len(pasted) == 1 and win.doc.graph.nodes[pasted[0]].type == "Hidden"
    assert "Hidden" in win.doc.graph.blocks
    win.doc.undo.undo()
    assert "Hidden" not in win.doc.graph.blocks
    # a project with a block, saved and opened again
    path = str(tmp_path / "p.loom")
    win.set_document(Document.open(os.path.join(EXAMPLES, "spirals.loom")))
    _select(win, HIDDEN)
    nid = win.make_block("Hidden", {})
    win.doc.save(path)
    again = projectfile.load(path)
    assert again.graph.nodes[nid].type == "Hidden" and not again.graph.validate()


def test_context_menu_of_a_block_offers_expand_and_export(win, qtbot):
    from layerloom.app.canvas import context_menus
    g = _open(win, qtbot)
    _select(win, HIDDEN)
    nid = win.make_block("Hidden", {})
    item = win.scene.nodes[nid]
    pos = win.view.mapFromScene(item.sceneBoundingRect().center())
    menu = context_menus.build(win, pos)
    texts = [a.text() for a in menu.actions()]
    assert "E&xpand Block" in texts and "Export Bloc&k..." in texts
    menu.deleteLater()
    assert g.nodes[nid].layer.category == "Blocks"


def test_open_block_edits_it_in_the_canvas_and_back_applies_to_every_instance(win, qtbot, rng):
    g = _open(win, qtbot)
    root = win.doc
    _select(win, ["hidden_1", "hidden_2"])
    nid = win.make_block("Pair", {"units": ["hidden_1.units", "hidden_2.units"]})
    before = g.analysis().params[nid].total
    win.scene.sigOpenNode.emit(nid)  # as a double-click does
    inner = win.doc
    assert inner is not root and win.block_path() == [(root, "Pair")]
    assert win.centralWidget().findChild(type(win.block_back), None) is not None
    assert "Pair" in win.block_crumbs.text() and not win.run_action.isEnabled()
    assert set(inner.graph.nodes) == {"x", "hidden_1", "hidden_2"}
    # an edit inside: a Dropout after hidden_2 (its output now)
    _select(win, ["hidden_2"])
    win.add_from_palette("Dropout")
    assert not win._problems_found()
    assert win.close_block(True) and win.doc is root
    assert win.doc.undo.undoText() == "Edit Block Pair"
    types = [n.type for n in g.blocks["Pair"].graph.nodes.values()]
    assert "Dropout" in types and g.analysis().params[nid].total == before
    assert not g.validate()
    win.doc.undo.undo()
    assert "Dropout" not in [n.type for n in g.blocks["Pair"].graph.nodes.values()]


def test_an_open_block_that_is_no_block_is_not_applied(win, qtbot):
    g = _open(win, qtbot)
    root = win.doc
    _select(win, ["hidden_1", "hidden_2"])
    nid = win.make_block("Pair", {})
    win.open_block(nid)
    win.doc.graph  # the inner graph: cut its input off
    _select(win, ["x"])
    win.scene.delete_selection()
    assert any("Block:" in line or "not connected" in line
               for line, *_ in win._problems_found())
    assert not win.close_block(True) and win.doc is not root  # said, still open
    assert win.close_block(False) and win.doc is root
    assert [n.type for n in g.blocks["Pair"].graph.nodes.values()].count("Input") == 1


def test_a_block_is_typed_like_a_layer_with_its_parameters(win, qtbot):
    from layerloom.core.registry import layers_from_text
    g = _open(win, qtbot)
    _select(win, ["hidden_1", "hidden_2"])
    nid = win.make_block("Pair", {"units": ["hidden_1.units", "hidden_2.units"]})
    assert layers_from_text("pair 16 repeat=2", win.palette.extra_types) == [
        ("Pair", {"units": 16, "repeat": 2})]
    win.palette.search.setText("pair 16")
    _select(win, [nid])
    win.palette._enter()
    added = [n for n in g.nodes.values() if n.type == "Pair" and n.id != nid]
    assert len(added) == 1 and added[0].params["units"] == 16


def test_a_layer_added_after_a_blocks_output_becomes_its_output(win, qtbot):
    """Newcomer trial: a Dropout added after the block's last layer (pool) became a second,
    unread output (the model unchanged, no problem said, repeat gone); the output moves to
    the new end. Back also leaves the keyboard focus on the canvas (Ctrl+Z went to the
    palette's search box)."""
    g = _open(win, qtbot)
    _select(win, ["hidden_1", "hidden_2"])
    nid = win.make_block("Pair", {})
    win.open_block(nid)
    assert win.block_ports.text() == "in: x \u2192 out: hidden_2"
    _select(win, ["hidden_2"])
    win.add_from_palette("Dropout")
    qtbot.waitUntil(lambda: win.block_ports.text() == "in: x \u2192 out: dropout_1")
    assert win.close_block(True)
    block = g.blocks["Pair"]
    assert [n for n, _ in block.output_refs] == ["dropout_1"] and block.chains
    assert [q.name for q in block.params] == ["repeat"]
    qtbot.waitUntil(lambda: win.focusWidget() is win.view)


def test_an_expanded_repeat_is_laid_out_without_overlaps(win, qtbot):
    """Newcomer trial: 21 expanded layers landed on the nodes after the block."""
    g = _open(win, qtbot)
    _select(win, ["hidden_2"])
    nid = win.make_block("Wide", {})
    g.set_params(nid, repeat=4)
    win.scene.clearSelection()
    added = win.expand_block(nid)
    assert len(added) == 4 and not g.validate()
    rects = list(win.scene.node_rects().values())
    assert not [(a, b) for i, a in enumerate(rects) for b in rects[i + 1:]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]]


def test_shared_weights_travel_with_make_expand_and_paste(win, qtbot):
    """Weights shared between layers survive Make Block, its Undo, Expand and a paste; a share
    across the selection's border is refused, not lost."""
    from layerloom.app.editing.clipboard import copy_text
    g = _open(win, qtbot)
    g.set_params("hidden_2", units=64)
    g.set_params("hidden_3", units=64)
    g.set_shares("hidden_3", "hidden_2")
    _select(win, ["hidden_3"])
    assert win.make_block("Half", {}) is None  # hidden_2 outside: refused, said
    assert g.nodes["hidden_3"].shares == "hidden_2"
    _select(win, ["hidden_2", "hidden_3"])
    nid = win.make_block("Twin", {})
    inner = g.blocks["Twin"].graph
    assert inner.nodes["hidden_3"].shares == "hidden_2"
    assert g.analysis().params[nid].total == 64 * 64 + 64  # counted once
    win.doc.undo.undo()
    assert g.nodes["hidden_3"].shares == "hidden_2"
    win.doc.undo.redo()
    win.expand_block(nid)
    assert g.nodes["hidden_3"].shares == "hidden_2" and not g.validate()
    pasted = win.paste(copy_text(win.doc, ["hidden_2", "hidden_3"]))
    a, b = pasted
    assert g.nodes[b].shares == a
    alone = win.paste(copy_text(win.doc, ["hidden_3"]))  # its owner not copied: its own
    assert g.nodes[alone[0]].shares is None


def test_a_block_opened_inside_another_joins_the_project_only_with_its_back(win, qtbot):
    """The opened block's document shared the project's block types: a block edited inside it
    changed the project's even after Discard Edits, with no undo step."""
    from layerloom.app.editing.commands import SetParamsCmd
    g = _open(win, qtbot)
    root = win.doc
    _select(win, ["hidden_1"])
    win.make_block("Inner", {})
    inner_id = next(n for n in g.nodes if g.nodes[n].type == "Inner")
    _select(win, [inner_id, "hidden_2"])
    outer_id = win.make_block("Outer", {})
    units = lambda graph: graph.blocks["Inner"].graph.nodes["hidden_1"].params["units"]  # noqa
    win.open_block(outer_id)
    win.open_block(inner_id)
    win.doc.push(SetParamsCmd(win.doc, "hidden_1", {"units": 7}))
    assert win.close_block(True)  # back in Outer: its copy of Inner edited
    assert units(g) == 64
    assert win.close_block(False) and win.doc is root  # Outer discarded: nothing joins
    assert units(g) == 64
    count = root.undo.count()
    win.open_block(outer_id)
    win.open_block(inner_id)
    win.doc.push(SetParamsCmd(win.doc, "hidden_1", {"units": 7}))
    assert win.close_block(True) and win.close_block(True) and win.doc is root
    assert units(g) == 7 and root.undo.count() == count + 1
    assert g.flat().nodes[f"{outer_id}/{inner_id}/hidden_1"].params["units"] == 7
    root.undo.undo()
    assert units(g) == 64 and g.flat().nodes[f"{outer_id}/{inner_id}/hidden_1"] \
        .params["units"] == 64


def test_back_refuses_an_edit_that_moves_a_wired_port(win, qtbot):
    from layerloom.app.window.window_blocks import _rewired
    g = _open(win, qtbot)
    _select(win, ["hidden_2"])
    nid = win.make_block("One", {})
    assert _rewired(g, "One", {0: None}, {0: 0}).startswith(f"{nid!r}'s input 0 is wired")
    assert "would give it as output 1" in _rewired(g, "One", {0: 0}, {0: 1})
    assert _rewired(g, "One", {0: 0}, {0: 0}) is None


def test_undo_and_redo_say_what_they_did(win, qtbot):
    _open(win, qtbot)
    _select(win, ["hidden_2"])
    win.make_block("One", {})
    win.undo_action.trigger()
    assert win.statusBar().currentMessage() == "Undone: Make Block One"
    win.redo_action.trigger()
    assert win.statusBar().currentMessage() == "Redone: Make Block One"
