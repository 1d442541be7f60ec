"""The canvas's context menus (issue 19, item 15): on a node (add a layer after it, wired;
freeze or unfreeze the selected nodes, freeze everything before this one; duplicate, copy,
delete), on a wire (delete it), on the empty canvas (add any layer there by
category, paste there, select all, auto-layout, fit). Their actions call the window's, so a
menu entry and its shortcut do the same; while training runs the editing entries are off."""
from PySide6.QtWidgets import QMenu

from layerloom.core.registry import layer_types

from layerloom.app.editing.commands import SetTrainableCmd

from .canvas_items import EdgeItem, NodeItem, PortItem

# what most often follows a layer: offered first in "Add After"
FOLLOWERS = ("Dense", "Dropout", "Activation", "BatchNormalization", "Flatten")


def item_at(view, pos):
    """The node or wire under a viewport point (a port counts as its node), or None."""
    for item in view.items(pos):
        if isinstance(item, PortItem):
            item = item.parentItem()
        if isinstance(item, (NodeItem, EdgeItem)):
            return item
    return None


def build(win, pos):
    """The menu for viewport point `pos` of the window's canvas."""
    view, scene = win.view, win.scene
    editable = scene.editable()
    at = view.mapToScene(pos)
    item = item_at(view, pos)
    menu = QMenu(view)
    if isinstance(item, NodeItem):
        if not item.isSelected():
            scene.clearSelection()
            item.setSelected(True)
        after = menu.addMenu("Add &After")
        for t in FOLLOWERS:
            after.addAction(t, lambda t=t: win.add_from_palette(t))
        after.addSeparator()
        _by_category(after.addMenu("All Layers"), lambda t: win.add_from_palette(t))
        after.setEnabled(editable)
        menu.addSeparator()
        if item.node.layer.category == "Blocks":
            menu.addAction("&Open Block", lambda: win.open_block(item.node_id))
            menu.addAction("E&xpand Block", lambda: win.expand_block(item.node_id)).setEnabled(
                editable)
            menu.addAction("Export Bloc&k...", lambda: win.export_block(item.node.type))
        menu.addAction("Make &Block...", win.make_block).setEnabled(editable)
        menu.addSeparator()
        _freeze_entries(menu, win, item.node_id, editable)
        menu.addSeparator()
        menu.addAction("D&uplicate", win.duplicate).setEnabled(editable)
        menu.addAction("&Copy", win.copy)
        menu.addAction("&Delete", scene.delete_selection).setEnabled(editable)
    elif isinstance(item, EdgeItem):
        scene.clearSelection()
        item.setSelected(True)
        e = item.edge
        menu.addAction(f"&Delete Wire {e.src} \u2192 {e.dst}",
                       scene.delete_selection).setEnabled(editable)
    else:
        add = menu.addMenu("&Add Layer Here")
        _by_category(add, lambda t: win._add(t, (at.x(), at.y())))
        add.setEnabled(editable)
        menu.addAction("&Paste Here", lambda: win.paste(at=at)).setEnabled(editable)
        menu.addSeparator()
        menu.addAction("Select &All", win._select_all)
        menu.addAction("Auto &Layout", win.auto_layout).setEnabled(editable)
        menu.addAction("&Fit to View", lambda: view.fit(whole=True))
    return menu


def _freeze_entries(menu, win, node_id, editable):
    """Freeze/Unfreeze the selection, and Freeze Everything Before this node (fine-tuning: the
    layers it depends on, Inputs aside), each one undo step."""
    g, doc = win.doc.graph, win.doc
    ids = win.selected_ids() or [node_id]
    freeze = any(g.nodes[i].trainable for i in ids)
    what = "Node" if len(ids) == 1 else f"{len(ids)} Nodes"
    menu.addAction(f"{'&Freeze' if freeze else 'Un&freeze'} {what}", lambda: _push(
        win, SetTrainableCmd(doc, {i: not freeze for i in ids}))).setEnabled(editable)
    before = g.layers_before(node_id)
    act = menu.addAction("Freeze Everything &Before This Node", lambda: _push(
        win, SetTrainableCmd(doc, {i: False for i in before},
                             f"Freeze {len(before)} node(s) before {node_id}")))
    act.setEnabled(editable and any(g.nodes[i].trainable for i in before))


def _push(win, cmd):
    try:
        win.doc.push(cmd)
    except RuntimeError as e:  # locked while training runs
        win.message(str(e))


def _by_category(menu, add):
    cats = {}
    for layer in layer_types():
        sub = cats.get(layer.category)
        if sub is None:
            sub = cats[layer.category] = menu.addMenu(layer.category)
        sub.addAction(layer.type_id, lambda t=layer.type_id: add(t))
