"""The editor window's editing actions: add a layer (from the palette, after the selected
node, wired; never on top of another node), copy, paste, duplicate, select all, auto-layout,
and a problem's fix as one undo step. A mixin of MainWindow (app/window/main_window.py), whose
document, scene and view it uses. Edit > Find Node (Ctrl+F): a box over the canvas; Enter
jumps to the next node whose name, type or headline holds the text, and selects it."""
import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QApplication, QLineEdit

from layerloom.core.errors import LayerloomError
from layerloom.core.layout import auto_layout

from layerloom.app.canvas.canvas_items import NODE_W, NodeItem
from layerloom.app.canvas.canvas_view import free_place
from layerloom.app.editing.clipboard import copy_text, parse_text
from layerloom.app.editing.commands import MoveNodesCmd, PasteCmd, SetFlowCmd
from layerloom.app.panels.problems_panel import REWIRING, push_fix


class FindBox(QLineEdit):
    """Ctrl+F's box at the canvas's top right: Enter finds the next node, Escape closes it."""

    def __init__(self, view, find):
        super().__init__(view)  # the view's, not its viewport's: a scroll moves those
        self.setPlaceholderText("Find node: name or type, Enter for the next")
        self.setClearButtonEnabled(True)
        self.resize(280, self.sizeHint().height())
        self.returnPressed.connect(find)
        self.last = None  # the node found last: Enter goes on from it

    def place(self):
        vp = self.parentWidget().viewport().geometry()
        self.move(max(vp.left(), vp.right() - self.width() - 8), vp.top() + 8)

    def keyPressEvent(self, event):
        if event.key() == Qt.Key_Escape:
            self.hide()
            self.parentWidget().setFocus()
            return
        super().keyPressEvent(event)


class EditActions:
    find_box = None

    def find_node(self):
        """Edit > Find Node (Ctrl+F): the find box shown with its text selected."""
        box = self.find_box
        if box is None or not shiboken6.isValid(box) or box.parentWidget() is not \
                self.view:  # (a new document has a new view)
            box = self.find_box = FindBox(self.view, self.find_next)
        box.place()
        box.show()
        box.raise_()
        box.setFocus()
        box.selectAll()
        return box

    def find_matches(self, text):
        """Ids of the nodes whose id, type or headline holds `text` (case aside), in the
        graph's order."""
        want = text.strip().lower()
        if not want:
            return []
        return [nid for nid, item in self.scene.nodes.items()
                if want in nid.lower() or want in item.title.lower()]

    def find_next(self):
        """The next node matching the find box's text after the one found last: selected,
        centred in the view (zoomed in to a readable size where the view is smaller)."""
        box = self.find_box
        text = box.text()
        matches = self.find_matches(text)
        if not matches:
            self.message(f"No node matches '{text.strip()}'" if text.strip() else
                         "Type part of a node's name or type to find it")
            return None
        at = matches.index(box.last) + 1 if box.last in matches else 0
        nid = matches[at % len(matches)]
        box.last = nid
        item = self.scene.nodes[nid]
        self.scene.clearSelection()
        item.setSelected(True)
        if self.view.transform().m11() < 0.6:
            self.view.resetTransform()
        self.view._fitted = False  # the user's view now: a resize keeps it
        self.view.centerOn(item.sceneBoundingRect().center())
        self.view.minimap.schedule()
        self.message(f"{nid}: match {at % len(matches) + 1} of {len(matches)} (Enter: next)")
        return nid

    def _add(self, type_id, pos, params=None):
        library = (type_id not in self.doc.graph.blocks
                   and type_id in getattr(self, "block_library", {}))
        if library:  # a library block's types are defined first, in the same undo step
            self.doc.undo.beginMacro(f"Add {type_id}")
        try:
            if library and not self.define_library_block(type_id):
                return None
            nid = self.scene.add_node(type_id, pos, params)
        except RuntimeError as e:
            self.message(str(e))
            return None
        finally:
            if library:
                self.doc.undo.endMacro()
        self.scene.clearSelection()
        self.scene.nodes[nid].setSelected(True)
        self.view.ensureVisible(self.scene.nodes[nid], 40, 40)  # a new node is in view
        return nid

    def free_spot(self, x, y, ignore=(), across=False):
        """(x, y), or the first place below it (right of it: across) where no node is (a new
        node never hides another)."""
        taken = [tuple(p) for nid, p in self.doc.positions().items() if nid not in ignore]
        return free_place(taken, x, y, across)

    def add_from_palette(self, type_id, params=None):
        """Double-click (or Enter) in the palette: after the one selected node, wired from its
        first output when the graph accepts it (one undo step), else at the view's centre;
        with `params` where they were typed ("dense 128 relu")."""
        ids = self.selected_ids()
        prev = self.scene.nodes.get(ids[0]) if len(ids) == 1 else None
        g = self.doc.graph
        if prev is None or not self.scene.editable() or not \
                g.nodes[prev.node_id].layer.output_names(g.nodes[prev.node_id].params):
            return self.add_at_centre(type_id, params)
        self.doc.undo.beginMacro(f"Add {type_id} after {prev.node_id}")
        try:
            if self.scene.flow == "down":
                spot = self.free_spot(prev.pos().x(), prev.pos().y() + prev.h + 76, across=True)
            else:
                spot = self.free_spot(prev.pos().x() + NODE_W + 70, prev.pos().y())
            nid = self._add(type_id, spot, params)
            if nid is not None and not g.nodes[nid].layer.is_input:
                try:
                    g.check_connect(prev.node_id, 0, nid, 0)
                    self.scene.connect_ports(prev.node_id, 0, nid, 0)
                except LayerloomError:
                    pass  # a type that cannot follow it: placed beside it, not wired
        finally:
            self.doc.undo.endMacro()
        return nid

    def add_chain(self, chain, pos=None):
        """Layers typed as one entry, [(type, parameters), ...] ("dense 64 relu", or a chain:
        "input 28 28; flatten; dense 10 softmax"): the first at `pos` (a scene point: the Tab
        box), else as the palette adds one (after the selected node); each next after the one
        before, wired where the graph accepts it; one undo step. The last is left selected, so
        the next entry goes on from it."""
        first_type, first_params = chain[0]
        if len(chain) == 1:  # one layer: the Tab box's place, or the palette's after-selection
            return (self._add(first_type, pos, first_params) if pos is not None else
                    self.add_from_palette(first_type, first_params or None))
        if not self.scene.editable():  # training runs: said in the status bar, nothing added
            return None
        added = []
        count = self.doc.undo.count()
        self.doc.undo.beginMacro(f"Add {len(chain)} layers")
        try:
            nid = (self._add(first_type, pos, first_params) if pos is not None else
                   self.add_from_palette(first_type, first_params or None))
            added.append(nid)
            for type_id, params in chain[1:]:
                if nid is None:
                    break
                nid = self.add_from_palette(type_id, params or None)
                added.append(nid)
        finally:
            self.doc.undo.endMacro()
        if not any(n is not None for n in added) and self.doc.undo.count() > count:
            # nothing was added (the first layer refused): the empty step goes (an obsolete
            # command is deleted from the stack as it is undone)
            self.doc.undo.command(self.doc.undo.index() - 1).setObsolete(True)
            self.doc.undo.undo()
        shown = self.view.mapToScene(self.view.viewport().rect()).boundingRect()
        if not all(shown.contains(self.scene.nodes[n].sceneBoundingRect())
                   for n in added if n in self.scene.nodes):
            self.view.fit(False)  # the whole chain in view where it fits at a readable size
            if nid in self.scene.nodes:  # else its end, the node the next entry follows
                self.view.ensureVisible(self.scene.nodes[nid], 40, 40)
        return nid

    def add_at_centre(self, type_id, params=None):
        c = self.view.mapToScene(self.view.viewport().rect().center())
        return self._add(type_id, self.free_spot(c.x() - 85, c.y() - 40), params)

    def selected_ids(self):
        return [i.node_id for i in self.scene.selectedItems() if isinstance(i, NodeItem)]

    def copy(self):
        ids = self.selected_ids()
        if ids:
            QApplication.clipboard().setText(copy_text(self.doc, ids))
            self.message(f"Copied {len(ids)} node(s)")

    def paste(self, text=None, at=None, beside=False):
        """Paste copied nodes: their top-left at `at` (a scene point), else at the mouse
        cursor when it is over the canvas, else (and for beside=True: Duplicate) beside the
        originals."""
        text = text if isinstance(text, str) else QApplication.clipboard().text()
        try:
            graph, pos = parse_text(text)
        except LayerloomError as e:
            self.message(f"Nothing pasted: {e}")
            return []
        if at is None and not beside:
            at = self._cursor_on_canvas()
        offset = (40, 40)
        if at is not None and pos:
            left = min(p[0] for p in pos.values())
            top = min(p[1] for p in pos.values())
            offset = (round((at.x() - left) / 20) * 20, round((at.y() - top) / 20) * 20)
        cmd = PasteCmd(self.doc, graph, pos, offset)
        try:
            self.doc.push(cmd)
        except RuntimeError as e:
            self.message(str(e))
            return []
        self.scene.clearSelection()
        for nid in cmd.ids.values():
            self.scene.nodes[nid].setSelected(True)
        return list(cmd.ids.values())

    def _cursor_on_canvas(self):
        """The scene point under the mouse cursor, or None when it is not over the canvas."""
        vp = self.view.viewport()
        p = vp.mapFromGlobal(QCursor.pos())
        return self.view.mapToScene(p) if vp.rect().contains(p) and vp.underMouse() else None

    def duplicate(self):
        ids = self.selected_ids()
        return self.paste(copy_text(self.doc, ids), beside=True) if ids else []

    def layout_cmd(self):
        """The auto-layout as one command, or None when every node is where it would go."""
        vp = self.view.viewport()  # a long graph wraps into rows of the canvas's shape
        view = (max(vp.width(), 600), max(vp.height(), 400))
        return self._moves_to(auto_layout(self.doc.graph, flow=self.scene.flow, view=view))

    def _moves_to(self, positions):
        """One command moving the nodes to {node id: (x, y)}, or None when they are there."""
        pos = self.doc.positions()
        moves = {nid: (tuple(pos.get(nid, (0, 0))), tuple(xy)) for nid, xy in positions.items()
                 if tuple(pos.get(nid, (0, 0))) != tuple(xy)}
        return MoveNodesCmd(self.doc, moves, self.scene.apply_positions) if moves else None

    def auto_layout(self):
        cmd = self.layout_cmd()
        if cmd is not None:
            try:
                self.doc.push(cmd)
            except RuntimeError as e:
                self.message(str(e))
                return
            self.scene.refresh()
            self.view.fit()

    def set_flow(self, flow):
        """Draw the graph top to bottom ("down") or left to right ("right"): laid out again
        for it, or, switching back with the same nodes, where they were in that direction
        (the third trial's hand-made two-row CNN came back as one long row); one undo step."""
        if flow == self.scene.flow:
            return
        if not self.scene.editable():
            self._flow_shown(self.scene.flow)
            return
        pos = self.doc.positions()
        self.doc.flow_positions[self.scene.flow] = {k: tuple(v) for k, v in pos.items()}
        back = self.doc.flow_positions.get(flow)
        cmd = SetFlowCmd(self.doc, flow, self._flow_shown)
        self.doc.undo.beginMacro(cmd.text())
        try:
            self.doc.push(cmd)
            same_nodes = back is not None and set(back) == set(self.doc.graph.nodes)
            layout = self._moves_to(back) if same_nodes else self.layout_cmd()
            if layout is not None:
                self.doc.push(layout)
        finally:
            self.doc.undo.endMacro()
        self.scene.refresh()
        self.view.fit()

    def _flow_shown(self, flow):
        self.scene.set_flow(flow)
        self.flow_action.blockSignals(True)
        self.flow_action.setChecked(flow == "down")
        self.flow_action.blockSignals(False)

    def _select_all(self):
        for item in self.scene.nodes.values():
            item.setSelected(True)

    def apply_fix(self, fix):
        """A problem's fix from the Problems tab: one undo step; the nodes it adds selected."""
        if self.doc.locked:
            self.message("Not fixed: the graph cannot be edited while training runs")
            return False
        rewires = any(s.kind in REWIRING for s in fix.steps)

        def tidy():  # nodes added or rewired: laid out again in the same undo step
            cmd = self.layout_cmd() if rewires else None
            if cmd is not None:
                self.doc.push(cmd)
        try:
            push_fix(self.doc, fix, after=tidy)
        except (RuntimeError, LayerloomError) as e:  # a step kind the editor has no command
            self.message(f"Not fixed: {e}")  # for is refused before anything changes
            return False
        added = [s.node for s in fix.steps if s.kind == "insert"]
        if added:
            self.scene.clearSelection()
            for nid in added:
                if nid in self.scene.nodes:
                    self.scene.nodes[nid].setSelected(True)
        self.scene.refresh()
        self.message(f"Fixed: {fix.label} (Ctrl+Z undoes it)")
        return True

